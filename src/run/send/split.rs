//! `--batch-nick-image`: splits a valid row into its Nick and Image values (for
//! multiaccount_import's AccountList) and the portrait_set body of its other columns.
//!
//! The batch path takes the values, never the raw record, so a later step that decides which
//! of a user's tags differ (`--changes-only`) can hand it only those.

use csv::ByteRecord;

use crate::chat::accounts::AccountEntry;
use crate::input::header::{ColumnRole, Columns};
use crate::input::profile::{self, EmptyPolicy, StandardField, Tag, Value};
use crate::input::row::{RowMapper, RowRules, Verdict};

/// Splits rows of one file.
pub(super) struct NickImageSplit {
    /// Maps every column but Nick and Image.
    rest: RowMapper,
    nick: Option<usize>,
    image: Option<usize>,
    empty: EmptyPolicy,
}

/// One row, split.
pub(super) struct SplitRow {
    /// The row's other columns have something to set: `rest_body` holds their portrait_set body.
    pub(super) has_rest: bool,
    /// The Nick and Image the row sets, if any.
    pub(super) nick_image: Option<AccountEntry>,
}

impl NickImageSplit {
    pub(super) fn new(columns: &Columns, rules: RowRules) -> NickImageSplit {
        let mut rest = columns.clone();
        let (mut nick, mut image) = (None, None);
        for (index, role) in rest.roles.iter_mut().enumerate() {
            match role {
                ColumnRole::Field(Tag::Standard(StandardField::Nick)) => nick = Some(index),
                ColumnRole::Field(Tag::Standard(StandardField::Image)) => image = Some(index),
                _ => continue,
            }
            *role = ColumnRole::Ignored;
        }
        NickImageSplit {
            rest: RowMapper::new(rest, rules),
            nick,
            image,
            empty: rules.empty,
        }
    }

    /// Splits a record the full mapper found valid (so every cell here is valid too).
    pub(super) fn split(
        &self,
        record: &ByteRecord,
        user_id: &str,
        rest_body: &mut Vec<u8>,
    ) -> SplitRow {
        let has_rest = matches!(
            self.rest.map(record, rest_body),
            Verdict::Ready { items, .. } if items > 0
        );
        let nick = self.value(record, self.nick, StandardField::Nick);
        let face_url = self.value(record, self.image, StandardField::Image);
        let nick_image = (nick.is_some() || face_url.is_some()).then(|| AccountEntry {
            user_id: user_id.to_string(),
            nick,
            face_url,
        });
        SplitRow {
            has_rest,
            nick_image,
        }
    }

    /// The value the full mapper would send for this column, under the same empty policy.
    fn value(
        &self,
        record: &ByteRecord,
        column: Option<usize>,
        field: StandardField,
    ) -> Option<String> {
        let cell = std::str::from_utf8(record.get(column?)?).ok()?;
        match profile::normalize(Tag::Standard(field).kind(), cell, self.empty) {
            Ok(Some(Value::Text(text))) => Some(text.to_string()),
            _ => None,
        }
    }
}

/// A portrait_set body carrying `rest_body`'s items (if any) and the entry's Nick and Image:
/// the fallback when the batch path cannot be trusted.
pub(super) fn with_nick_image(rest_body: Option<&[u8]>, entry: &AccountEntry) -> bytes::Bytes {
    let mut items: Vec<serde_json::Value> = rest_body
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
        .and_then(|mut doc| doc.get_mut("ProfileItem").map(serde_json::Value::take))
        .and_then(|items| match items {
            serde_json::Value::Array(items) => Some(items),
            _ => None,
        })
        .unwrap_or_default();
    let tags = [
        (profile::StandardField::Nick, &entry.nick),
        (profile::StandardField::Image, &entry.face_url),
    ];
    for (field, value) in tags {
        if let Some(value) = value {
            items.push(serde_json::json!({ "Tag": Tag::Standard(field).name(), "Value": value }));
        }
    }
    let body = serde_json::json!({ "From_Account": entry.user_id, "ProfileItem": items });
    bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::header::{clean_name, resolve, Mapping};

    fn columns(header: &[&str]) -> Columns {
        let names = header.iter().map(|s| clean_name(s)).collect();
        resolve(names, &Mapping::default(), None).unwrap()
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn nick_and_image_are_split_off_the_portrait_set_body() {
        let split = NickImageSplit::new(
            &columns(&["UserID", "Nick", "Level", "Image"]),
            RowRules::default(),
        );
        let mut rest = Vec::new();
        let record = ByteRecord::from(vec!["u1", "Ann", "7", "http://x/a.png"]);
        let row = split.split(&record, "u1", &mut rest);
        assert!(row.has_rest);
        assert_eq!(
            json(&rest),
            serde_json::json!({"From_Account": "u1",
                "ProfileItem": [{"Tag": "Tag_Profile_IM_Level", "Value": 7}]})
        );
        let entry = row.nick_image.unwrap();
        assert_eq!(entry.nick.as_deref(), Some("Ann"));
        assert_eq!(entry.face_url.as_deref(), Some("http://x/a.png"));
        // Only Nick: nothing left for portrait_set.
        let record = ByteRecord::from(vec!["u2", "Bo", "", ""]);
        let row = split.split(&record, "u2", &mut rest);
        assert!(!row.has_rest);
        let entry = row.nick_image.unwrap();
        assert_eq!((entry.nick.as_deref(), entry.face_url), (Some("Bo"), None));
        // No Nick or Image: no batch part.
        let record = ByteRecord::from(vec!["u3", "", "9", ""]);
        assert!(split.split(&record, "u3", &mut rest).nick_image.is_none());
    }

    #[test]
    fn the_fallback_body_carries_the_rest_and_nick_and_image() {
        let entry = AccountEntry {
            user_id: "u1".into(),
            nick: Some("Ann \"A\"".into()),
            face_url: None,
        };
        let rest =
            br#"{"From_Account":"u1","ProfileItem":[{"Tag":"Tag_Profile_IM_Level","Value":7}]}"#;
        assert_eq!(
            json(&with_nick_image(Some(rest), &entry)),
            serde_json::json!({"From_Account": "u1", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Level", "Value": 7},
                {"Tag": "Tag_Profile_IM_Nick", "Value": "Ann \"A\""},
            ]})
        );
        assert_eq!(
            json(&with_nick_image(None, &entry)),
            serde_json::json!({"From_Account": "u1", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Nick", "Value": "Ann \"A\""},
            ]})
        );
    }
}
