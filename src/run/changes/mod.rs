//! `import --changes-only`: what Chat holds decides what is sent. Each row's values are compared
//! with the user's current values (read with portrait_get, 100 users a call, ahead of the send)
//! by `verify`'s comparison, and only the tags that differ are sent. This module owns the
//! comparison of one user and the body of only the differing tags; `ahead` reads ahead of the
//! send, and `plan` is the dry run of it (`--dry-run --changes-only`).

use std::sync::Arc;

use bytes::Bytes;

use crate::chat::api::ChatApi;
use crate::chat::portrait::{ProfileItem, SetBody, UserRead};
use crate::input::row::RowMapper;
use crate::run::verify::value_matches;

pub mod ahead;
pub mod plan;

/// Reads in flight at once for `--read-rate` calls a second: enough for the rate at 100 ms
/// latency, and at least a few.
pub fn reads_in_flight(read_rate: u32) -> usize {
    (read_rate as usize / 10).clamp(4, 64)
}

/// How the reads are made.
#[derive(Clone)]
pub struct Reads {
    /// A handle of its own (`--read-rate`), sharing the client and the stop with the sends.
    pub api: Arc<ChatApi>,
    /// The tags the file sets: every read asks for all of them.
    pub tags: Arc<Vec<String>>,
    /// Reads in flight at most.
    pub in_flight: usize,
    /// Told when a read says the whole job must stop (a wrong key, Chat unreachable).
    pub on_fatal: Arc<dyn Fn(String) + Send + Sync>,
    /// account_check (its own pacer, 100 calls a second): finds the unknown users of a read
    /// refused whole with 40003. Without it, such a read's users are not compared.
    pub account_check: Option<Arc<ChatApi>>,
}

/// The tags a file sets, in column order: what each read asks for.
pub fn tags_of(mapper: &RowMapper) -> Vec<String> {
    mapper
        .columns()
        .fields()
        .map(|(_, tag)| tag.name())
        .collect()
}

/// One tag whose value in Chat differs from the row's.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The item of the row's body.
    pub index: usize,
    /// What Chat holds (`None`: unset).
    pub actual: Option<serde_json::Value>,
}

/// A row's values against Chat's.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// Chat holds every value already: nothing to send.
    Same,
    /// These tags differ: only they are sent.
    Differs(Vec<Difference>),
    /// Chat does not know the user: the row is sent whole (and fails with 40003, or its
    /// account is created first under `--create-accounts on-demand`).
    NotAnAccount,
    /// The read failed for good: the row is sent whole, never skipped.
    NotCompared(String),
}

/// A row with its comparison.
#[derive(Debug)]
pub struct Compared {
    /// The row's items, as its body holds them.
    pub expected: Vec<ProfileItem>,
    pub outcome: Comparison,
}

/// Compares a row's items with what a read said of its user.
pub fn compare(expected: &[ProfileItem], read: UserRead) -> Comparison {
    let held = match read {
        UserRead::Held(held) => held,
        UserRead::NotAnAccount => return Comparison::NotAnAccount,
        UserRead::Unread(why) => return Comparison::NotCompared(why),
    };
    let differences: Vec<Difference> = expected
        .iter()
        .enumerate()
        .filter_map(|(index, item)| {
            let actual = held.get(&item.tag);
            (!value_matches(&item.value, actual)).then(|| Difference {
                index,
                actual: actual.cloned(),
            })
        })
        .collect();
    if differences.is_empty() {
        Comparison::Same
    } else {
        Comparison::Differs(differences)
    }
}

/// A row's body read back into its user and items (`None` if it is not a portrait_set body,
/// which the mapper never writes).
pub fn parse_body(body: &[u8]) -> Option<SetBody> {
    serde_json::from_slice(body).ok()
}

/// The portrait_set body for `user` holding only the differing items, in the row's order.
pub fn partial_body(user: &str, expected: &[ProfileItem], differences: &[Difference]) -> Bytes {
    let items: Vec<serde_json::Value> = differences
        .iter()
        .filter_map(|d| expected.get(d.index))
        .map(|item| serde_json::json!({"Tag": item.tag, "Value": item.value}))
        .collect();
    let body = serde_json::json!({"From_Account": user, "ProfileItem": items});
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn item(tag: &str, value: serde_json::Value) -> ProfileItem {
        ProfileItem {
            tag: tag.into(),
            value,
        }
    }

    #[test]
    fn only_the_differing_tags_are_kept_and_unset_empty_values_match() {
        let expected = vec![
            item("Tag_Profile_IM_Nick", json!("Ann")),
            item("Tag_Profile_IM_Level", json!(7)),
            item("Tag_Profile_IM_SelfSignature", json!("")),
            item("Tag_Profile_Custom_Hobby", json!("chess")),
        ];
        let held: HashMap<String, serde_json::Value> = [
            ("Tag_Profile_IM_Nick".to_string(), json!("Ann")),
            ("Tag_Profile_IM_Level".to_string(), json!(6)),
        ]
        .into();
        let Comparison::Differs(differences) = compare(&expected, UserRead::Held(held)) else {
            panic!("values differ");
        };
        assert_eq!(
            differences,
            vec![
                Difference {
                    index: 1,
                    actual: Some(json!(6))
                },
                Difference {
                    index: 3,
                    actual: None
                },
            ]
        );
        let body: serde_json::Value =
            serde_json::from_slice(&partial_body("u1", &expected, &differences)).unwrap();
        assert_eq!(
            body,
            json!({"From_Account": "u1", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Level", "Value": 7},
                {"Tag": "Tag_Profile_Custom_Hobby", "Value": "chess"},
            ]})
        );
        let same: HashMap<String, serde_json::Value> = [
            ("Tag_Profile_IM_Nick".to_string(), json!("Ann")),
            ("Tag_Profile_IM_Level".to_string(), json!(7)),
            ("Tag_Profile_Custom_Hobby".to_string(), json!("chess")),
        ]
        .into();
        assert_eq!(compare(&expected, UserRead::Held(same)), Comparison::Same);
        assert_eq!(
            compare(&expected, UserRead::NotAnAccount),
            Comparison::NotAnAccount
        );
    }
}
