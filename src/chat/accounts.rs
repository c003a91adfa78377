//! The account commands on the wire (spec §5.2–§5.4): multiaccount_import in its plain and
//! AccountList forms, account_import, and account_check, each request's body and what its
//! answer says. Nothing here knows about CSV files or runs.

use std::collections::HashSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Accounts per multiaccount_import or account_check call (spec §5.3, §5.4).
pub const BATCH: usize = 100;

/// One account to import.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccountEntry {
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "Nick", skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    #[serde(rename = "FaceUrl", skip_serializing_if = "Option::is_none")]
    pub face_url: Option<String>,
}

/// The shape of multiaccount_import's answer beyond the envelope.
#[derive(Debug, Deserialize)]
struct MultiImportAnswer {
    #[serde(rename = "FailAccounts", default)]
    fail_accounts: Vec<String>,
}

/// multiaccount_import's body: the AccountList form (`with_profile`, Nick and FaceUrl
/// included) or the plain Accounts form.
pub fn multiaccount_import_body(batch: &[AccountEntry], with_profile: bool) -> Bytes {
    let body = if with_profile {
        serde_json::json!({ "AccountList": batch })
    } else {
        serde_json::json!({
            "Accounts": batch.iter().map(|e| e.user_id.as_str()).collect::<Vec<_>>()
        })
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// The `FailAccounts` of a multiaccount_import answer; None when the answer cannot be read
/// (then nothing is known to be imported).
pub fn fail_accounts(raw: &[u8]) -> Option<Vec<String>> {
    serde_json::from_slice::<MultiImportAnswer>(raw)
        .ok()
        .map(|answer| answer.fail_accounts)
}

/// account_import's body for one user.
pub fn import_one_body(user_id: &str) -> Bytes {
    let body = serde_json::json!({ "UserID": user_id });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// account_check's body for up to [`BATCH`] users.
pub fn check_body(users: &[String]) -> Bytes {
    let items: Vec<_> = users
        .iter()
        .map(|u| serde_json::json!({ "UserID": u }))
        .collect();
    Bytes::from(serde_json::to_vec(&serde_json::json!({ "CheckItem": items })).unwrap_or_default())
}

/// The users of an account_check answer that are not imported; a user the answer leaves out is
/// not known to be imported, so it counts as not imported.
pub fn not_imported(raw: &[u8], users: &[String]) -> Result<Vec<String>, serde_json::Error> {
    let answer: CheckAnswer = serde_json::from_slice(raw)?;
    let answered: HashSet<&str> = answer
        .result_item
        .iter()
        .map(|r| r.user_id.as_str())
        .collect();
    let mut missing: Vec<String> = answer
        .result_item
        .iter()
        .filter(|r| r.account_status != "Imported")
        .map(|r| r.user_id.clone())
        .collect();
    missing.extend(
        users
            .iter()
            .filter(|u| !answered.contains(u.as_str()))
            .cloned(),
    );
    Ok(missing)
}

#[derive(Debug, Deserialize)]
struct CheckAnswer {
    #[serde(rename = "ResultItem", default)]
    result_item: Vec<CheckItem>,
}

#[derive(Debug, Deserialize)]
struct CheckItem {
    #[serde(rename = "UserID", default)]
    user_id: String,
    #[serde(rename = "AccountStatus", default)]
    account_status: String,
}
