//! The header row: which column is the UserID, which tag every other column sets, and the
//! optional TOML mapping file that renames or ignores columns.
//!
//! A header problem stops the run before any row is read, so this module reports every problem
//! at once rather than the first.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::input::profile::{self, StandardField, Tag, CUSTOM_TAG_PREFIX, MAX_CUSTOM_COLUMNS};

/// The columns a failure CSV appends after the input's own. They are recognised on input, so a
/// failure CSV can be fed straight back in: all are ignored but [`SUPERSEDED_COLUMN`], whose
/// cells a re-import leaves out (a later row of the same user set them already).
pub const FAILURE_COLUMNS: [&str; 6] = [
    "_error_code",
    "_error_message",
    "_stage",
    "_attempts",
    SUPERSEDED_COLUMN,
    "_line",
];

/// The failure column that names (as a JSON array of header names) the row's cells that a
/// later row of the same user set: a re-import of the row must not send them again, or an
/// older value would overwrite a newer one.
pub const SUPERSEDED_COLUMN: &str = "_superseded";

/// Header names accepted for the user column when none is named.
pub const DEFAULT_USER_COLUMNS: [&str; 2] = ["UserID", "From_Account"];

/// What one input column is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnRole {
    User,
    Field(Tag),
    /// Listed under `ignore` in the mapping file.
    Ignored,
    /// Appended by an earlier run's failure CSV.
    FailureInfo,
}

/// The resolved header: one role per column.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The header names as written in the file (BOM and surrounding spaces removed).
    pub names: Vec<String>,
    pub roles: Vec<ColumnRole>,
    pub user_index: usize,
    /// Custom columns whose keyword is not one the app declares (`--custom-fields`): a value
    /// in one is refused as Chat would (40009).
    pub undeclared: Vec<usize>,
}

impl Columns {
    /// Profile columns in file order, with their index.
    pub fn fields(&self) -> impl Iterator<Item = (usize, &Tag)> {
        self.roles.iter().enumerate().filter_map(|(i, r)| match r {
            ColumnRole::Field(tag) => Some((i, tag)),
            _ => None,
        })
    }

    /// The index of the Location column, if the file has one.
    pub fn location_index(&self) -> Option<usize> {
        self.roles
            .iter()
            .position(|role| *role == ColumnRole::Field(Tag::Standard(StandardField::Location)))
    }

    /// The column of an earlier failure CSV that names each row's superseded cells.
    pub fn superseded_index(&self) -> Option<usize> {
        self.names.iter().enumerate().position(|(i, name)| {
            name == SUPERSEDED_COLUMN && self.roles[i] == ColumnRole::FailureInfo
        })
    }

    /// The indexes of the columns named in a `_superseded` cell; names that are not columns
    /// of this file are ignored.
    pub fn named_in(&self, list: &[u8]) -> Vec<usize> {
        let names: Vec<String> = serde_json::from_slice(list).unwrap_or_default();
        names
            .iter()
            .filter_map(|name| self.names.iter().position(|n| n == name))
            .collect()
    }

    /// Indexes of the columns a failure CSV copies from the input: all but earlier failure info.
    pub fn data_indexes(&self) -> Vec<usize> {
        (0..self.roles.len())
            .filter(|&i| self.roles[i] != ColumnRole::FailureInfo)
            .collect()
    }
}

/// The optional mapping file (`--mapping FILE.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The column holding the UserID.
    pub user_column: Option<String>,
    /// Columns to ignore entirely.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Column name → tag (full tag, short standard name, or `Custom_<Keyword>`).
    #[serde(default)]
    pub columns: HashMap<String, String>,
}

impl Mapping {
    pub fn load(path: &Path) -> anyhow::Result<Mapping> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read mapping file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("mapping file {} is not valid", path.display()))
    }

    fn target_for(&self, column: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(name, _)| name.trim().eq_ignore_ascii_case(column))
            .map(|(_, target)| target.as_str())
    }

    fn ignores(&self, column: &str) -> bool {
        self.ignore
            .iter()
            .any(|name| name.trim().eq_ignore_ascii_case(column))
    }
}

/// Every problem found in a header row.
#[derive(Debug, thiserror::Error)]
pub struct HeaderError {
    pub problems: Vec<String>,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the header row cannot be used:")?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        write!(f, "{}", accepted_names_help())
    }
}

/// The list of accepted header names, shown with every header error.
pub fn accepted_names_help() -> String {
    let shorts: Vec<&str> = StandardField::ALL.iter().map(|f| f.short_name()).collect();
    format!(
        "accepted column names (case-insensitive):\n  \
         user:     UserID or From_Account (or --user-column NAME)\n  \
         standard: {} (or the full tag, e.g. Tag_Profile_IM_Nick)\n  \
         custom:   Custom_<Keyword> or Tag_Profile_Custom_<Keyword> (keyword: 1-8 letters)\n  \
         other columns: rename or ignore them in a --mapping file, or leave them out with --ignore NAME",
        shorts.join(", ")
    )
}

/// Parses a tag name as written in a header or a mapping file.
pub fn parse_tag(name: &str) -> Result<Tag, String> {
    if let Some(field) = StandardField::lookup(name) {
        return Ok(Tag::Standard(field));
    }
    let keyword = strip_prefix_ignore_case(name, CUSTOM_TAG_PREFIX)
        .or_else(|| strip_prefix_ignore_case(name, "Custom_"));
    match keyword {
        Some(keyword) => {
            profile::check_custom_keyword(keyword)?;
            Ok(Tag::Custom(keyword.to_string()))
        }
        None => Err(format!(
            "\"{}\" is not a profile tag",
            crate::input::profile::clip(name)
        )),
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Cleans a raw header cell: drops a UTF-8 BOM and surrounding white space.
pub fn clean_name(raw: &str) -> String {
    raw.trim_start_matches('\u{feff}').trim().to_string()
}

/// Resolves the header row into column roles, or lists every problem with it.
pub fn resolve(
    names: Vec<String>,
    mapping: &Mapping,
    user_column: Option<&str>,
) -> Result<Columns, HeaderError> {
    let mut problems = Vec::new();
    let user_column = user_column.or(mapping.user_column.as_deref());
    let roles = column_roles(&names, mapping, user_column, &mut problems);
    for ignored in &mapping.ignore {
        if !names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(ignored.trim()))
        {
            tracing::warn!("no column named \"{ignored}\" to ignore");
        }
    }

    let mut user_indexes = roles
        .iter()
        .filter(|(_, r)| *r == ColumnRole::User)
        .map(|(i, _)| *i);
    let user_index = user_indexes.next();
    if let Some(second) = user_indexes.next() {
        problems.push(format!(
            "two user columns: \"{}\" and \"{}\"",
            names[user_index.unwrap_or_default()],
            names[second]
        ));
    }
    if user_index.is_none() {
        problems.push(match user_column {
            Some(wanted) => {
                format!("no column named \"{wanted}\" (from --user-column or the mapping file)")
            }
            None => "no user column: name one UserID or From_Account, or pass --user-column NAME"
                .to_string(),
        });
    }

    check_fields(&names, &roles, &mut problems);

    match (problems.is_empty(), user_index) {
        (true, Some(user_index)) => Ok(Columns {
            names,
            roles: roles.into_iter().map(|(_, r)| r).collect(),
            user_index,
            undeclared: Vec::new(),
        }),
        _ => Err(HeaderError { problems }),
    }
}

/// [`resolve`], then the custom columns held to the app's declared custom fields
/// (`--custom-fields`): a keyword that differs from a declared one only in case takes the
/// declared spelling (Chat's tags are case-sensitive), and one that matches none is marked
/// undeclared. Without a declaration, a custom column whose prefix is not written as
/// `Custom_` or `Tag_Profile_Custom_` (an export that changed the case of its header) is
/// warned about: its keyword is sent exactly as written.
pub fn resolve_declared(
    names: Vec<String>,
    mapping: &Mapping,
    user_column: Option<&str>,
    declared: Option<&[String]>,
) -> Result<Columns, HeaderError> {
    let mut columns = resolve(names, mapping, user_column)?;
    for index in 0..columns.roles.len() {
        let ColumnRole::Field(Tag::Custom(keyword)) = &columns.roles[index] else {
            continue;
        };
        let name = &columns.names[index];
        match declared {
            Some(declared) => match declared.iter().find(|d| d.eq_ignore_ascii_case(keyword)) {
                Some(exact) => columns.roles[index] = ColumnRole::Field(Tag::Custom(exact.clone())),
                None => columns.undeclared.push(index),
            },
            None if !name.starts_with("Custom_") && !name.starts_with(CUSTOM_TAG_PREFIX) => {
                tracing::warn!(
                    "column \"{}\" sets Tag_Profile_Custom_{keyword}: Chat's custom tags are \
                     case-sensitive, so the keyword must be written exactly as declared in the \
                     console; pass --custom-fields to check it",
                    crate::input::profile::clip(name)
                );
            }
            None => {}
        }
    }
    Ok(columns)
}

/// Each named column's role; a column that cannot be read as one is a problem and left out.
fn column_roles(
    names: &[String],
    mapping: &Mapping,
    user_column: Option<&str>,
    problems: &mut Vec<String>,
) -> Vec<(usize, ColumnRole)> {
    let mut roles = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let position = index + 1;
        let role = if mapping.ignores(name) {
            ColumnRole::Ignored
        } else if is_user_column(name, user_column) {
            ColumnRole::User
        } else if let Some(target) = mapping.target_for(name) {
            match parse_tag(target) {
                Ok(tag) => ColumnRole::Field(tag),
                Err(why) => {
                    problems.push(format!(
                        "column {position} \"{}\": the mapping file maps it to {why}",
                        crate::input::profile::clip(name)
                    ));
                    continue;
                }
            }
        } else if FAILURE_COLUMNS.iter().any(|c| c == name) {
            ColumnRole::FailureInfo
        } else if name.is_empty() {
            problems.push(format!(
                "column {position} has an empty name (a trailing delimiter?)"
            ));
            continue;
        } else {
            match parse_tag(name) {
                Ok(tag) => ColumnRole::Field(tag),
                Err(why) => {
                    let suggestion = near_miss(name)
                        .map(|known| format!("; did you mean {known}?"))
                        .unwrap_or_default();
                    problems.push(format!(
                        "column {position} \"{}\": {why}{suggestion}",
                        crate::input::profile::clip(name)
                    ));
                    continue;
                }
            }
        };
        roles.push((index, role));
    }
    roles
}

/// Two columns setting one tag, and too many custom columns.
fn check_fields(names: &[String], roles: &[(usize, ColumnRole)], problems: &mut Vec<String>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut custom_count = 0;
    for (index, role) in roles {
        if let ColumnRole::Field(tag) = role {
            if matches!(tag, Tag::Custom(_)) {
                custom_count += 1;
            }
            // Chat's tags are case-sensitive, but two columns that differ only in case are
            // almost certainly the same field written twice.
            let key = tag.name().to_ascii_lowercase();
            if let Some(first) = seen.insert(key, *index) {
                problems.push(format!(
                    "columns {} \"{}\" and {} \"{}\" both set {tag}",
                    first + 1,
                    names[first],
                    index + 1,
                    names[*index]
                ));
            }
        }
    }
    if custom_count > MAX_CUSTOM_COLUMNS {
        problems.push(format!(
            "{custom_count} custom columns; Chat allows at most {MAX_CUSTOM_COLUMNS} custom fields"
        ));
    }
}

/// The accepted header name closest to `name`, if one is close enough to be a likely typo or a
/// longer spelling (`Nickname` → `Nick`, `Gendre` → `Gender`, `User_ID` → `UserID`).
///
/// Names are compared in lower case without `_`, `-` and spaces, by Jaro-Winkler similarity
/// (which favours a shared beginning); 0.85 keeps unrelated names such as `Email` quiet.
pub fn near_miss(name: &str) -> Option<&'static str> {
    let fold = |text: &str| -> String {
        text.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    };
    // A whole header row read as one name (a wrong delimiter) has its own hint.
    if name.contains([';', '\t', '|', ',']) {
        return None;
    }
    let wanted = fold(name);
    if wanted.is_empty() {
        return None;
    }
    DEFAULT_USER_COLUMNS
        .into_iter()
        .chain(StandardField::ALL.iter().map(|field| field.short_name()))
        .map(|known| (known, strsim::jaro_winkler(&wanted, &fold(known))))
        .filter(|&(_, score)| score >= 0.85)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(known, _)| known)
}

fn is_user_column(name: &str, wanted: Option<&str>) -> bool {
    match wanted {
        Some(wanted) => name.eq_ignore_ascii_case(wanted.trim()),
        None => DEFAULT_USER_COLUMNS
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| clean_name(s)).collect()
    }

    #[test]
    fn maps_short_full_and_custom_names() {
        let columns = resolve(
            names(&[
                "\u{feff}UserID",
                "nick",
                "Tag_Profile_IM_Gender",
                "Custom_Hobby",
                "tag_profile_custom_City",
            ]),
            &Mapping::default(),
            None,
        )
        .unwrap();
        assert_eq!(columns.user_index, 0);
        let tags: Vec<String> = columns.fields().map(|(_, t)| t.name()).collect();
        assert_eq!(
            tags,
            [
                "Tag_Profile_IM_Nick",
                "Tag_Profile_IM_Gender",
                "Tag_Profile_Custom_Hobby",
                "Tag_Profile_Custom_City"
            ]
        );
    }

    #[test]
    fn lists_every_unknown_header() {
        let err = resolve(
            names(&["UserID", "Nickname", "Nick", "Email", "Custom_Too_Long"]),
            &Mapping::default(),
            None,
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(text.contains("\"Nickname\""));
        assert!(text.contains("\"Email\""));
        assert!(text.contains("letters only"));
        assert!(text.contains("accepted column names"));
    }

    #[test]
    fn near_misses_get_a_suggestion_and_unrelated_names_none() {
        let cases = [
            ("Nickname", Some("Nick")),
            ("nick_name", Some("Nick")),
            ("Gendre", Some("Gender")),
            ("User_ID", Some("UserID")),
            ("Birthdate", Some("BirthDay")),
            ("Signature", Some("SelfSignature")),
            ("Lang", Some("Language")),
            ("Email", None),
            ("created_at", None),
            ("phone", None),
        ];
        for (name, want) in cases {
            assert_eq!(near_miss(name), want, "{name}");
        }
        let err = resolve(names(&["UserID", "Nickname"]), &Mapping::default(), None).unwrap_err();
        assert!(
            err.to_string().contains(
                "column 2 \"Nickname\": \"Nickname\" is not a profile tag; did you mean Nick?"
            ),
            "{err}"
        );
    }

    #[test]
    fn duplicate_tags_and_missing_user_column_are_errors() {
        let err = resolve(
            names(&["Nick", "Tag_Profile_IM_Nick"]),
            &Mapping::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains("both set Tag_Profile_IM_Nick"));
        assert!(err.to_string().contains("no user column"));
    }

    #[test]
    fn failure_columns_are_recognised() {
        let mut list = vec!["From_Account", "Level"];
        list.extend(FAILURE_COLUMNS);
        let columns = resolve(names(&list), &Mapping::default(), None).unwrap();
        assert_eq!(columns.data_indexes(), vec![0, 1]);
    }

    #[test]
    fn mapping_renames_ignores_and_names_the_user_column() {
        let mapping: Mapping = toml::from_str(
            r#"
            user_column = "member_id"
            ignore = ["email"]
            [columns]
            nickname = "Nick"
            hobby = "Custom_Hobby"
            "#,
        )
        .unwrap();
        let columns = resolve(
            names(&["member_id", "nickname", "email", "hobby"]),
            &mapping,
            None,
        )
        .unwrap();
        assert_eq!(columns.user_index, 0);
        assert_eq!(columns.roles[2], ColumnRole::Ignored);
        assert_eq!(
            columns.roles[3],
            ColumnRole::Field(Tag::Custom("Hobby".into()))
        );
    }

    #[test]
    fn too_many_custom_columns() {
        let mut list = vec!["UserID".to_string()];
        let letters = "ABCDEFGHIJKLMNOPQRSTU";
        for c in letters.chars() {
            list.push(format!("Custom_X{c}"));
        }
        let err = resolve(list, &Mapping::default(), None).unwrap_err();
        assert!(err.to_string().contains("21 custom columns"), "{err}");
    }
}
