//! portrait_get on the wire (spec §5.6): the request for up to 100 users' tags, and its answer
//! read into what each user holds, or why it could not be read. Used by `verify` and by
//! `import --changes-only`.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::Deserialize;

/// Users per portrait_get call (spec §5.6).
pub const USERS_PER_READ: usize = 100;

/// The code Chat gives a user that is not an account of the app.
const NOT_AN_ACCOUNT: u32 = 40003;

/// One `{"Tag","Value"}` item, as portrait_set takes it and portrait_get gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProfileItem {
    #[serde(rename = "Tag")]
    pub tag: String,
    #[serde(rename = "Value")]
    pub value: serde_json::Value,
}

/// A portrait_set body, read back (the importer writes them; tests and comparisons read them).
#[derive(Debug, Deserialize)]
pub struct SetBody {
    #[serde(rename = "From_Account")]
    pub user: String,
    #[serde(rename = "ProfileItem")]
    pub items: Vec<ProfileItem>,
}

#[derive(Deserialize)]
struct GetAnswer {
    #[serde(rename = "UserProfileItem", default)]
    users: Vec<UserProfile>,
    #[serde(rename = "Fail_Account", default)]
    failed: Vec<String>,
}

#[derive(Deserialize)]
struct UserProfile {
    #[serde(rename = "To_Account")]
    user: String,
    #[serde(rename = "ProfileItem", default)]
    items: Vec<ProfileItem>,
    #[serde(rename = "ResultCode", default)]
    code: u32,
}

/// What a read says of one user.
#[derive(Debug, Clone, PartialEq)]
pub enum UserRead {
    /// The values Chat holds for the tags asked (unset tags are absent).
    Held(HashMap<String, serde_json::Value>),
    /// Chat does not know the user (ResultCode 40003, or listed in `Fail_Account`).
    NotAnAccount,
    /// Chat answered this user with another code (e.g. 40007, no read permission), or not
    /// at all.
    Unread(String),
}

/// The body of a portrait_get for `users` and `tags`.
pub fn get_request(users: &[&str], tags: &[String]) -> Bytes {
    let request = serde_json::json!({ "To_Account": users, "TagList": tags });
    Bytes::from(request.to_string())
}

/// Reads a portrait_get answer: what it says of each user asked for, in the order asked.
pub fn read_answer(raw: &[u8], users: &[&str]) -> Result<Vec<UserRead>, serde_json::Error> {
    let answer: GetAnswer = serde_json::from_slice(raw)?;
    let failed: HashSet<&str> = answer.failed.iter().map(String::as_str).collect();
    let mut profiles: HashMap<&str, &UserProfile> =
        answer.users.iter().map(|u| (u.user.as_str(), u)).collect();
    Ok(users
        .iter()
        .map(|user| match profiles.remove(user) {
            Some(profile) if profile.code == NOT_AN_ACCOUNT => UserRead::NotAnAccount,
            Some(profile) if profile.code != 0 => {
                UserRead::Unread(format!("portrait_get answered {} for it", profile.code))
            }
            _ if failed.contains(user) => UserRead::NotAnAccount,
            Some(profile) => UserRead::Held(
                profile
                    .items
                    .iter()
                    .map(|item| (item.tag.clone(), item.value.clone()))
                    .collect(),
            ),
            None => UserRead::Unread("not in portrait_get's answer".into()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_is_read_per_user_in_the_order_asked() {
        let raw = json!({
            "ActionStatus": "OK", "ErrorCode": 0,
            "UserProfileItem": [
                {"To_Account": "b", "ResultCode": 40003, "ResultInfo": "no"},
                {"To_Account": "a", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": "A"}],
                 "ResultCode": 0},
                {"To_Account": "c", "ResultCode": 40007},
                {"To_Account": "e", "ProfileItem": [], "ResultCode": 0},
            ],
            "Fail_Account": ["b", "d"],
        })
        .to_string();
        let read = read_answer(raw.as_bytes(), &["a", "b", "c", "d", "e", "f"]).unwrap();
        let nick: HashMap<String, serde_json::Value> =
            [("Tag_Profile_IM_Nick".to_string(), json!("A"))].into();
        assert_eq!(read[0], UserRead::Held(nick));
        assert_eq!(read[1], UserRead::NotAnAccount);
        assert!(matches!(read[2], UserRead::Unread(_)));
        assert_eq!(
            read[3],
            UserRead::NotAnAccount,
            "listed in Fail_Account only"
        );
        assert_eq!(read[4], UserRead::Held(HashMap::new()));
        assert!(
            matches!(read[5], UserRead::Unread(_)),
            "left out of the answer"
        );
    }
}
