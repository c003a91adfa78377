//! One CSV record to one portrait_set request body: the single code path shared by the dry run
//! and the real send, so a green dry run predicts the real run.

use csv::ByteRecord;

use crate::input::header::{ColumnRole, Columns};
use crate::input::profile::{self, EmptyPolicy, StandardField, Tag, UserIdRule, Value, ValueKind};
use crate::outcome::{Failure, FailureCode, Stage};

/// How rows are turned into requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowRules {
    pub empty: EmptyPolicy,
    pub user_id: UserIdRule,
    pub location: LocationRule,
    pub quotes: QuoteRule,
}

/// What a row whose quoted field swallowed lines that look like rows becomes (`input::quotes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QuoteRule {
    /// It is read as csv reads it; the run warns, naming the lines.
    #[default]
    Warn,
    /// `--strict-quotes`: it is invalid (`stray_quote`).
    Strict,
}

/// Which of Chat's two documented limits a Location is held to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LocationRule {
    /// Up to 500 bytes, as Chat's newest page says; Chat's 40601 decides beyond that.
    #[default]
    Documented,
    /// `--strict-location`: up to 16 bytes, as Chat's older English docs say.
    Strict,
}

/// One broken rule in one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The column's header name, when the rule concerns one column.
    pub column: Option<String>,
    pub code: FailureCode,
    /// A short stable name of the rule, for the summary's counts.
    pub rule: &'static str,
    pub message: String,
}

impl Violation {
    /// `column "Nick": is 501 bytes …`, or the bare message for row-level problems.
    pub fn describe(&self) -> String {
        match &self.column {
            Some(column) => format!("column \"{column}\": {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// What a row turned into.
#[derive(Debug)]
pub enum Verdict<'r> {
    /// The body was written into the caller's buffer.
    Ready {
        user_id: &'r str,
        items: usize,
    },
    /// Valid, but every profile cell was empty under `--empty skip`: nothing to send.
    Skipped {
        user_id: &'r str,
    },
    Invalid(Vec<Violation>),
}

/// The violation for a row whose quote never closes (see `CsvInput::unterminated`).
pub fn unterminated_quote(line: u64) -> Violation {
    Violation {
        column: None,
        code: FailureCode::UnterminatedQuote,
        rule: "unterminated quote",
        message: format!(
            "a quote opened in the row starting on line {line} never closes, so every line after it \
             was read into this row; close the quote (or double it: \"\")"
        ),
    }
}

/// The violation for a row whose quoted field swallowed `lines`, which look like rows of their
/// own (`--strict-quotes`).
pub fn stray_quote(line: u64, lines: &[u64]) -> Violation {
    Violation {
        column: None,
        code: FailureCode::StrayQuote,
        rule: "quoted field swallows rows",
        message: crate::input::quotes::explain(line, lines),
    }
}

/// Turns `Vec<Violation>` into the single failure the failure CSV records for the row.
pub fn failure_from(violations: &[Violation]) -> Failure {
    let message = violations
        .iter()
        .map(Violation::describe)
        .collect::<Vec<_>>()
        .join("; ");
    Failure {
        code: violations
            .first()
            .map_or(FailureCode::FieldCount, |v| v.code),
        message,
        stage: Stage::Validate,
        attempts: 0,
        superseded: Vec::new(),
    }
}

struct FieldColumn {
    /// The column's position in the record.
    index: usize,
    /// A custom field the app does not declare (`--custom-fields`): a value is refused.
    undeclared: bool,
    /// `,{"Tag":"<tag>","Value":`, pre-rendered so each item costs one copy (the first item
    /// of a body skips the comma).
    item_prefix: Box<[u8]>,
    kind: ValueKind,
}

/// Maps records of one file to request bodies.
pub struct RowMapper {
    columns: Columns,
    /// Per column of the record: the profile field it fills, if any. Walking the record
    /// once against this is cheaper than looking up each field's cell by index.
    slots: Vec<Option<FieldColumn>>,
    rules: RowRules,
    /// An earlier failure CSV's `_superseded` column: the cells it names are left out.
    superseded: Option<usize>,
}

impl RowMapper {
    pub fn new(columns: Columns, rules: RowRules) -> Self {
        let mut slots: Vec<Option<FieldColumn>> = columns.names.iter().map(|_| None).collect();
        for (index, tag) in columns.fields() {
            let kind = match tag {
                Tag::Standard(StandardField::Location)
                    if rules.location == LocationRule::Strict =>
                {
                    ValueKind::Text {
                        max_bytes: profile::LEGACY_LOCATION_BYTES,
                    }
                }
                _ => tag.kind(),
            };
            slots[index] = Some(FieldColumn {
                index,
                undeclared: columns.undeclared.contains(&index),
                item_prefix: format!(
                    ",{{\"Tag\":{},\"Value\":",
                    serde_json::to_string(&tag.name()).unwrap_or_default()
                )
                .into_bytes()
                .into_boxed_slice(),
                kind,
            });
        }
        RowMapper {
            superseded: columns.superseded_index(),
            columns,
            slots,
            rules,
        }
    }

    pub fn rules(&self) -> RowRules {
        self.rules
    }

    /// The columns a row of an earlier failure CSV says a later row of its user set already:
    /// they are left out of its body, unchecked.
    pub fn superseded_in(&self, record: &ByteRecord) -> Vec<usize> {
        match self.superseded.and_then(|index| record.get(index)) {
            Some(cell) if !cell.trim_ascii().is_empty() => self.columns.named_in(cell),
            _ => Vec::new(),
        }
    }

    /// The profile columns whose cells a valid record sends: every one but those left out as
    /// empty (`--empty skip`) or as superseded. Applying a user's rows one by one leaves each
    /// of these columns' tag as the last row that sends it says.
    pub fn sent_columns(&self, record: &ByteRecord) -> Vec<usize> {
        let superseded = self.superseded_in(record);
        self.slots
            .iter()
            .flatten()
            .map(|field| field.index)
            .filter(|&index| !superseded.contains(&index))
            .filter(|&index| {
                self.rules.empty == EmptyPolicy::Clear
                    || record
                        .get(index)
                        .is_some_and(|cell| !cell.trim_ascii().is_empty())
            })
            .collect()
    }

    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// True if the record's Location is longer than Chat's older 16-byte limit (the dry run
    /// warns: an app that still enforces it answers 40601).
    pub fn long_location(&self, record: &ByteRecord) -> bool {
        self.columns
            .location_index()
            .and_then(|index| record.get(index))
            .is_some_and(|cell| cell.len() > profile::LEGACY_LOCATION_BYTES)
    }

    /// The UserID cell of a record, if it is valid UTF-8 (used where the full mapping is not
    /// needed, such as counting duplicates).
    pub fn user_id<'r>(&self, record: &'r ByteRecord) -> Option<&'r str> {
        std::str::from_utf8(record.get(self.columns.user_index)?).ok()
    }

    /// Validates `record` and, when it is valid, writes its exact JSON body into `body`.
    ///
    /// Every violation in the row is reported, not just the first.
    pub fn map<'r>(&self, record: &'r ByteRecord, body: &mut Vec<u8>) -> Verdict<'r> {
        body.clear();
        let expected = self.columns.names.len();
        if record.len() != expected {
            return Verdict::Invalid(vec![Violation {
                column: None,
                code: FailureCode::FieldCount,
                rule: "wrong field count",
                message: format!(
                    "the row has {} fields but the header has {expected}",
                    record.len()
                ),
            }]);
        }
        let mut violations = Vec::new();
        // Validating the whole record at once is cheaper than field by field; only a record
        // with bad bytes falls back to the per-field check that names the column.
        let whole = std::str::from_utf8(record.as_slice()).ok();
        // One scan of the whole record usually shows no cell needs JSON escapes.
        let clean = !needs_escape(record.as_slice());
        let user_index = self.columns.user_index;
        let user_cell = whole.and_then(|w| w.get(record.range(user_index)?));
        let user_bytes = record.get(user_index).unwrap_or_default();
        let user_id = match self.cell_in(user_bytes, user_cell, user_index) {
            Ok(user_id) => {
                if let Err(err) = profile::check_user_id(user_id, self.rules.user_id) {
                    violations.push(self.violation(user_index, err));
                }
                user_id
            }
            Err(violation) => {
                violations.push(violation);
                ""
            }
        };

        // The body is about as long as the record plus the fixed JSON around each value.
        body.reserve(record.as_slice().len() + 64 * self.slots.len());
        body.extend_from_slice(b"{\"From_Account\":");
        write_json_str(body, user_id, clean);
        body.extend_from_slice(b",\"ProfileItem\":[");
        let mut items = 0;
        let superseded = self.superseded_in(record);
        // A record's fields lie back to back in `as_slice()`, so each cell's place in `whole`
        // is the sum of the lengths before it.
        let mut start = 0;
        for (bytes, slot) in record.iter().zip(&self.slots) {
            let range = start..start + bytes.len();
            start = range.end;
            let Some(field) = slot else {
                continue;
            };
            if superseded.contains(&field.index) {
                continue;
            }
            let checked = whole.and_then(|w| w.get(range));
            let cell = match checked {
                Some(cell) => cell,
                None => match self.cell_in(bytes, None, field.index) {
                    Ok(cell) => cell,
                    Err(violation) => {
                        violations.push(violation);
                        continue;
                    }
                },
            };
            match profile::normalize(field.kind, cell, self.rules.empty) {
                Ok(Some(_)) if field.undeclared => violations.push(self.undeclared(field.index)),
                Ok(Some(value)) => {
                    body.extend_from_slice(&field.item_prefix[usize::from(items == 0)..]);
                    match value {
                        Value::Text(text) => write_json_str(body, text, clean),
                        Value::Number(number) => {
                            body.extend_from_slice(itoa::Buffer::new().format(number).as_bytes())
                        }
                    }
                    body.push(b'}');
                    items += 1;
                }
                Ok(None) => {}
                Err(err) => violations.push(self.violation(field.index, err)),
            }
        }
        body.extend_from_slice(b"]}");

        if !violations.is_empty() {
            body.clear();
            Verdict::Invalid(violations)
        } else if items == 0 {
            body.clear();
            Verdict::Skipped { user_id }
        } else {
            Verdict::Ready { user_id, items }
        }
    }

    /// The cell at `index` as text: `checked` is its slice of the validated record, when the
    /// whole record was valid UTF-8.
    fn cell_in<'r>(
        &self,
        bytes: &'r [u8],
        checked: Option<&'r str>,
        index: usize,
    ) -> Result<&'r str, Violation> {
        if let Some(cell) = checked {
            return Ok(cell);
        }
        std::str::from_utf8(bytes).map_err(|err| Violation {
            column: Some(self.columns.names[index].clone()),
            code: FailureCode::BadUtf8,
            rule: "not UTF-8",
            message: format!(
                "is not valid UTF-8 (bad byte at offset {}); save the file as UTF-8",
                err.valid_up_to()
            ),
        })
    }

    /// A value in a custom column the app does not declare: what Chat would answer.
    fn undeclared(&self, index: usize) -> Violation {
        Violation {
            column: Some(self.columns.names[index].clone()),
            code: FailureCode::Chat(40009),
            rule: "custom field not declared",
            message: "is not one of the app's custom fields (--custom-fields); declare it in \
                      the console (Feature Configuration → Custom User Field) or leave the \
                      column out"
                .into(),
        }
    }

    fn violation(&self, index: usize, err: profile::ValueError) -> Violation {
        Violation {
            column: Some(self.columns.names[index].clone()),
            code: FailureCode::Chat(err.code),
            rule: err.rule,
            message: err.message,
        }
    }

    /// True if the column at `index` is copied into the failure CSV.
    pub fn is_data_column(&self, index: usize) -> bool {
        self.columns.roles.get(index) != Some(&ColumnRole::FailureInfo)
    }
}

/// Writes `text` as a JSON string. `known_clean` says the caller already knows it needs no
/// escapes.
#[inline(always)]
fn write_json_str(out: &mut Vec<u8>, text: &str, known_clean: bool) {
    // Most values need no escaping at all; those that do go through serde_json, which escapes
    // exactly as JSON requires (writing into a Vec cannot fail).
    if known_clean || !needs_escape(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// True if a JSON string needs escapes. A fold without early exit lets the compiler vectorise
/// the scan, which matters because every cell of every row passes here.
fn needs_escape(bytes: &[u8]) -> bool {
    let special = |found: bool, &b: &u8| found | (b < 0x20) | (b == b'"') | (b == b'\\');
    // Fixed-size chunks give the compiler a loop it turns into vector compares.
    let mut chunks = bytes.chunks_exact(32);
    chunks.any(|chunk| chunk.iter().fold(false, special))
        || chunks.remainder().iter().fold(false, special)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::header::{clean_name, resolve, Mapping};

    fn mapper(header: &[&str], rules: RowRules) -> RowMapper {
        let names = header.iter().map(|s| clean_name(s)).collect();
        RowMapper::new(resolve(names, &Mapping::default(), None).unwrap(), rules)
    }

    fn record(fields: &[&[u8]]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn builds_the_exact_body_with_typed_values() {
        let m = mapper(
            &[
                "UserID",
                "Nick",
                "Gender",
                "BirthDay",
                "Level",
                "Custom_Hobby",
            ],
            RowRules::default(),
        );
        let rec = record(&[
            b"u1",
            "张三 \"😀\"".as_bytes(),
            b"m",
            b"1990-01-02",
            b"7",
            b"",
        ]);
        let mut body = Vec::new();
        let verdict = m.map(&rec, &mut body);
        assert!(matches!(
            verdict,
            Verdict::Ready {
                user_id: "u1",
                items: 4
            }
        ));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "From_Account": "u1",
                "ProfileItem": [
                    {"Tag": "Tag_Profile_IM_Nick", "Value": "张三 \"😀\""},
                    {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Male"},
                    {"Tag": "Tag_Profile_IM_BirthDay", "Value": 19900102},
                    {"Tag": "Tag_Profile_IM_Level", "Value": 7},
                ]
            })
        );
    }

    #[test]
    fn clear_policy_sends_cleared_values() {
        let m = mapper(
            &["UserID", "Nick", "Level"],
            RowRules {
                empty: EmptyPolicy::Clear,
                ..RowRules::default()
            },
        );
        let mut body = Vec::new();
        assert!(matches!(
            m.map(&record(&[b"u1", b"", b""]), &mut body),
            Verdict::Ready { items: 2, .. }
        ));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["ProfileItem"][0]["Value"], "");
        assert_eq!(json["ProfileItem"][1]["Value"], 0);
    }

    #[test]
    fn reports_every_violation_in_the_row() {
        let m = mapper(&["UserID", "Nick", "Level", "Gender"], RowRules::default());
        let long = "中".repeat(167);
        let rec = record(&[b"bad id", long.as_bytes(), b"-1", b"robot"]);
        let mut body = Vec::new();
        let Verdict::Invalid(violations) = m.map(&rec, &mut body) else {
            panic!("expected invalid")
        };
        let codes: Vec<String> = violations.iter().map(|v| v.code.to_string()).collect();
        assert_eq!(codes, ["40001", "40601", "40605", "40605"]);
        let columns: Vec<_> = violations
            .iter()
            .map(|v| v.column.clone().unwrap())
            .collect();
        assert_eq!(columns, ["UserID", "Nick", "Level", "Gender"]);
        assert!(body.is_empty());
    }

    #[test]
    fn empty_row_is_skipped_and_bad_utf8_and_ragged_rows_are_invalid() {
        let m = mapper(&["UserID", "Nick"], RowRules::default());
        let mut body = Vec::new();
        assert!(matches!(
            m.map(&record(&[b"u1", b""]), &mut body),
            Verdict::Skipped { user_id: "u1" }
        ));
        let Verdict::Invalid(v) = m.map(&record(&[b"u1", b"\xff\xfe"]), &mut body) else {
            panic!()
        };
        assert_eq!(v[0].code, FailureCode::BadUtf8);
        assert_eq!(v[0].column.as_deref(), Some("Nick"));
        let Verdict::Invalid(v) = m.map(&record(&[b"u1"]), &mut body) else {
            panic!()
        };
        assert_eq!(v[0].code, FailureCode::FieldCount);
    }

    #[test]
    fn json_strings_match_serde_json() {
        for text in [
            "",
            "plain",
            "中文 😀",
            "q\"uote",
            "back\\slash",
            "tab\tnl\n",
            "\u{1}",
            "\u{7f}",
        ] {
            let mut ours = Vec::new();
            write_json_str(&mut ours, text, false);
            assert_eq!(ours, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }
}
