//! Any bytes → CSV reader → header resolution → request bodies.
//!
//! Run from `tests/fuzz`:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir . csv_to_requests corpus/csv_to_requests ../data ../../samples -- -max_total_time=300 -jobs=1 -dict=csv.dict`
//!
//! Invariants checked on every input:
//! - reading, header resolution and mapping never panic (errors are fine);
//! - the resolved header names resolve again to the same roles, and naming any one of them as
//!   the user column resolves or fails without panicking;
//! - each record's line is the physical line it starts on, counted independently here, and the
//!   tool reads exactly as many records as that independent count;
//! - a `Ready` body is valid JSON whose `From_Account` is the row's UserID and whose
//!   `ProfileItem` has one item per non-blank profile cell, in column order, with the column's
//!   tag and a value equal to the cell (text exactly, numbers and dates as parsed, enums as
//!   the exact value an independent friendly-to-exact table here gives for the cell);
//! - a `Skipped` or `Invalid` verdict leaves the body empty, and `Invalid` names a violation;
//! - `Row::unterminated` flags the last record, and only it, exactly when the input ends
//!   inside a quoted field (computed independently here), and nothing is read after it.

#![no_main]

use csv::ByteRecord;
use libfuzzer_sys::fuzz_target;
use profile_import::input::header::{self, Mapping};
use profile_import::input::reader::{CsvInput, InputOptions};
use profile_import::input::rows::Rows;
use profile_import::input::profile::ValueKind;
use profile_import::input::row::{RowMapper, Verdict};

fuzz_target!(|data: &[u8]| {
    let options = InputOptions {
        path: "fuzz.csv".into(),
        delimiter: b',',
        user_column: None,
        mapping: None,
        ignore: Vec::new(),
        custom_fields: None,
    };
    let Ok(input) = CsvInput::from_bytes(data.to_vec(), &options) else {
        return;
    };
    let mut input = Rows::from_source(Box::new(input));
    let columns = input.columns().clone();

    let names = columns.names.clone();
    let again = header::resolve(names.clone(), &Mapping::default(), None)
        .expect("resolved header names resolve again");
    assert_eq!(again.roles, columns.roles);
    assert_eq!(again.user_index, columns.user_index);
    for name in &names {
        let _ = header::resolve(names.clone(), &Mapping::default(), Some(name));
        let _ = header::parse_tag(name);
    }

    let expected_lines = record_lines(data);
    let fields: Vec<(usize, String, ValueKind)> = columns
        .fields()
        .map(|(i, tag)| (i, tag.name(), tag.kind()))
        .collect();
    let mapper = RowMapper::new(columns.clone(), Default::default());
    let mut body = Vec::new();
    let mut index = 0;
    let mut flagged = false;
    let mut last_flagged = false;
    let mut read_to_the_end = false;
    loop {
        let row = match input.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => {
                read_to_the_end = true;
                break;
            }
            Err(_) => break,
        };
        let (line, record) = (row.pos.line, row.record);
        assert!(!flagged, "a record was read after the unterminated one");
        assert!(
            index < expected_lines.len(),
            "record {index} read, but the independent count has only {} records",
            expected_lines.len()
        );
        assert_eq!(line, expected_lines[index], "record {index}");
        index += 1;
        flagged = row.unterminated;
        last_flagged = flagged;
        match mapper.map(record, &mut body) {
            Verdict::Ready { user_id, items } => {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|err| {
                    panic!(
                        "body is not JSON ({err}): {}",
                        String::from_utf8_lossy(&body)
                    )
                });
                assert_eq!(json["From_Account"].as_str(), Some(user_id));
                let list = json["ProfileItem"].as_array().expect("ProfileItem array");
                assert_eq!(list.len(), items);
                assert!(items > 0);
                let cells = fields.iter().filter_map(|(i, tag, kind)| {
                    let cell = std::str::from_utf8(&record[*i]).expect("a Ready row is UTF-8");
                    (!cell.trim_ascii().is_empty()).then_some((cell, tag, kind))
                });
                let mut count = 0;
                for ((cell, tag, kind), item) in cells.zip(list) {
                    count += 1;
                    assert_eq!(item["Tag"].as_str(), Some(tag.as_str()), "{item}");
                    let value = &item["Value"];
                    match kind {
                        ValueKind::Text { max_bytes } => {
                            assert_eq!(value.as_str(), Some(cell), "{item}");
                            assert!(cell.len() <= *max_bytes);
                        }
                        ValueKind::Uint32 => {
                            let n: u64 = cell.trim_ascii().parse().expect("digits");
                            assert_eq!(value.as_u64(), Some(n), "{item}");
                        }
                        ValueKind::Date => {
                            let digits = cell.trim_ascii().replace('-', "");
                            let n: u64 = digits.parse().expect("digits");
                            assert_eq!(value.as_u64(), Some(n), "{item}");
                        }
                        ValueKind::Enum(_) => {
                            let sent = value.as_str().expect("an enum is a string");
                            let want = exact_enum_value(tag, cell).unwrap_or_else(|| {
                                panic!("{tag}: {cell:?} is not an accepted spelling, yet was sent as {sent:?}")
                            });
                            assert_eq!(sent, want, "{tag}: {cell:?}");
                        }
                    }
                }
                assert_eq!(count, items, "items vs non-blank profile cells");
            }
            Verdict::Skipped { .. } => assert!(body.is_empty()),
            Verdict::Invalid(violations) => {
                assert!(!violations.is_empty());
                assert!(body.is_empty());
            }
        }
    }
    if read_to_the_end {
        assert_eq!(
            index,
            expected_lines.len(),
            "records read vs the independent count"
        );
    }
    if index > 0 {
        assert_eq!(
            last_flagged,
            ends_in_quote(data),
            "the unterminated flag on the last record"
        );
    }
});

/// The exact Chat value for an enum cell, from a table written out here rather than taken
/// from the tool, so a wrong entry in the tool's table (say `m` → `Gender_Type_Female`) fails:
/// the exact values are spec §3's, the friendly spellings the README's plus the short forms the
/// tool also accepts (`u`, `unset`, `confirm`, `allow`, `deny`, `sendout` …). A cell matches
/// case-insensitively after trimming ASCII white space, as numbers do. `None` if the cell is
/// not an accepted spelling. Panics for a tag that is not an enum field.
fn exact_enum_value(tag: &str, cell: &str) -> Option<&'static str> {
    const GENDER: &[(&str, &[&str])] = &[
        ("Gender_Type_Unknown", &["unknown", "u", "none", "unset"]),
        ("Gender_Type_Female", &["female", "f"]),
        ("Gender_Type_Male", &["male", "m"]),
    ];
    const ALLOW_TYPE: &[(&str, &[&str])] = &[
        (
            "AllowType_Type_NeedConfirm",
            &["need_confirm", "needconfirm", "confirm"],
        ),
        (
            "AllowType_Type_AllowAny",
            &["allow_any", "allowany", "allow"],
        ),
        ("AllowType_Type_DenyAny", &["deny_any", "denyany", "deny"]),
    ];
    const ADMIN_FORBID_TYPE: &[(&str, &[&str])] = &[
        ("AdminForbid_Type_None", &["none"]),
        ("AdminForbid_Type_SendOut", &["send_out", "sendout"]),
    ];
    let table = match tag {
        "Tag_Profile_IM_Gender" => GENDER,
        "Tag_Profile_IM_AllowType" => ALLOW_TYPE,
        "Tag_Profile_IM_AdminForbidType" => ADMIN_FORBID_TYPE,
        other => panic!("{other} is sent as an enum, but it is not one of Chat's enum fields"),
    };
    let cell = cell.trim_ascii().to_ascii_lowercase();
    table.iter().find_map(|(exact, friendly)| {
        (cell == exact.to_ascii_lowercase() || friendly.contains(&cell.as_str())).then_some(*exact)
    })
}

/// True if `data` ends inside a quoted field, read the way csv reads quotes: a quote opens a
/// quoted field only at the start of a field, `""` inside one is a literal quote, and a UTF-8
/// BOM at the very start is skipped.
fn ends_in_quote(data: &[u8]) -> bool {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let (mut at_field_start, mut quoted, mut quote_seen) = (true, false, false);
    for &b in data {
        if quoted {
            if quote_seen {
                quote_seen = false;
                if b == b'"' {
                    continue; // "" inside quotes
                }
                quoted = false; // the quote closed the quoted part; fall through for `b`
            } else {
                quote_seen = b == b'"';
                continue;
            }
        }
        match b {
            b',' | b'\n' | b'\r' => at_field_start = true,
            b'"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            _ => at_field_start = false,
        }
    }
    quoted && !quote_seen
}

/// The physical line each data record starts on, computed independently of the tool: one plus
/// the line breaks (`\r\n`, `\n` or a lone `\r`) before the record's first byte.
fn record_lines(data: &[u8]) -> Vec<u64> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut lines = Vec::new();
    let mut record = ByteRecord::new();
    let mut first = true;
    while let Ok(true) = reader.read_byte_record(&mut record) {
        if std::mem::take(&mut first) {
            continue; // the header
        }
        let mut start = record.position().map_or(0, |p| p.byte()) as usize;
        while matches!(data.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        let prefix = &data[..start.min(data.len())];
        let breaks = prefix
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && prefix.get(i + 1) != Some(&b'\n')))
            .count() as u64;
        lines.push(breaks + 1);
    }
    lines
}
