//! The account commands: `account_import`, `multiaccount_import` (both body forms) and
//! `account_check`, and the one-account import they share.

use std::sync::Arc;

use serde_json::Value;

use super::answer::{parse_json, Answer};
use super::command::Command;
use super::faults::FaultTarget;
use super::fields::{valid_user_id, IMAGE_TAG, MAX_VALUE_BYTES, NICK_TAG};
use super::state::{RequestCtx, Sim, State};
use super::MAX_BATCH;

/// Why an invalid UserID is refused (spec §5.1).
const USER_ID_RULE: &str = "UserID must be 1 to 32 bytes of letters, digits, '_' and '-'";

impl Sim {
    /// `v4/im_open_login_svc/account_import` (spec §5.2).
    pub(super) fn account_import(
        self: &Arc<Self>,
        body: &[u8],
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Answer> {
        let doc = parse_json(body)?;
        let import = Import::parse(&doc).map_err(|why| Answer::fail(70402, why))?;
        if !valid_user_id(import.user) {
            return Err(Answer::fail(70402, USER_ID_RULE));
        }
        self.inject_fault(
            FaultTarget {
                command: Command::AccountImport,
                user: import.user,
            },
            ctx,
        )?;
        if let Some((code, why)) = import.problem() {
            return Err(Answer::fail(code, why));
        }
        if self.fail_import.contains(import.user) {
            return Err(Answer::fail(70402, "injected import failure (fail_import)"));
        }
        import.apply(&mut self.state());
        Ok(Answer::ok())
    }

    /// `v4/im_open_login_svc/multiaccount_import` (spec §5.3), old and new body forms.
    pub(super) fn multiaccount_import(
        self: &Arc<Self>,
        body: &[u8],
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Answer> {
        let doc = parse_json(body)?;
        let bad = |why: &str| Answer::fail(70402, why.to_string());
        let imports: Vec<Import<'_>> = match (doc.get("Accounts"), doc.get("AccountList")) {
            (Some(_), Some(_)) => return Err(bad("send either Accounts or AccountList, not both")),
            (Some(Value::Array(list)), None) => {
                check_batch_size("Accounts", list.len())?;
                list.iter()
                    .map(|user| {
                        user.as_str().map(|user| Import {
                            user,
                            nick: None,
                            face_url: None,
                        })
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("every Accounts entry must be a string"))?
            }
            (None, Some(Value::Array(list))) => {
                check_batch_size("AccountList", list.len())?;
                list.iter()
                    .map(Import::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|why| Answer::fail(70402, format!("AccountList: {why}")))?
            }
            (None, None) => return Err(bad("Accounts or AccountList is required")),
            _ => return Err(bad("Accounts / AccountList must be an array")),
        };

        self.inject_fault(
            FaultTarget {
                command: Command::MultiaccountImport,
                user: imports[0].user,
            },
            ctx,
        )?;

        let mut failed: Vec<&str> = Vec::new();
        let mut state = self.state();
        let ignore_existing = state.faults.account_list_ignores_existing;
        for import in &imports {
            let fails = !valid_user_id(import.user)
                || import.problem().is_some()
                || self.fail_import.contains(import.user);
            if fails {
                if !failed.contains(&import.user) {
                    failed.push(import.user);
                }
            } else if ignore_existing && state.knows(import.user) {
                // The switch: an existing account keeps its profile; the answer is still OK.
            } else {
                import.apply(&mut state);
            }
        }
        Ok(Answer::ok_with("FailAccounts", Value::from(failed)))
    }

    /// `v4/im_open_login_svc/account_check` (spec §5.4).
    pub(super) fn account_check(
        self: &Arc<Self>,
        body: &[u8],
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Answer> {
        let doc = parse_json(body)?;
        let items = doc
            .get("CheckItem")
            .and_then(Value::as_array)
            .ok_or_else(|| Answer::fail(70402, "CheckItem is missing or not an array"))?;
        check_batch_size("CheckItem", items.len())?;
        let users: Vec<&str> = items
            .iter()
            .map(|item| item.get("UserID").and_then(Value::as_str))
            .collect::<Option<_>>()
            .ok_or_else(|| Answer::fail(70402, "every CheckItem needs a string UserID"))?;

        self.inject_fault(
            FaultTarget {
                command: Command::AccountCheck,
                user: users[0],
            },
            ctx,
        )?;

        let state = self.state();
        let results: Vec<Value> = users
            .into_iter()
            .map(|user| {
                if !valid_user_id(user) {
                    return serde_json::json!({
                        "UserID": user,
                        "ResultCode": 70402,
                        "ResultInfo": USER_ID_RULE,
                        "AccountStatus": "NotImported",
                    });
                }
                let imported = state.knows(user);
                serde_json::json!({
                    "UserID": user,
                    "ResultCode": 0,
                    "ResultInfo": "",
                    "AccountStatus": if imported { "Imported" } else { "NotImported" },
                })
            })
            .collect();
        Ok(Answer::ok_with("ResultItem", Value::Array(results)))
    }
}

/// One account to import: account_import's body or one AccountList entry.
struct Import<'a> {
    user: &'a str,
    nick: Option<&'a str>,
    face_url: Option<&'a str>,
}

impl<'a> Import<'a> {
    /// Reads `{"UserID","Nick"?,"FaceUrl"?}`; Err says what breaks the protocol (70402).
    fn parse(doc: &'a Value) -> Result<Import<'a>, String> {
        let object = doc
            .as_object()
            .ok_or_else(|| "an account must be a JSON object".to_string())?;
        let user = object
            .get("UserID")
            .and_then(Value::as_str)
            .ok_or_else(|| "UserID is missing or not a string".to_string())?;
        let text = |name: &str| match object.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(_) => Err(format!("{name} must be a string")),
        };
        Ok(Import {
            user,
            nick: text("Nick")?,
            face_url: text("FaceUrl")?,
        })
    }

    fn fields(&self) -> [(&'static str, &'static str, Option<&'a str>); 2] {
        [
            ("Nick", NICK_TAG, self.nick),
            ("FaceUrl", IMAGE_TAG, self.face_url),
        ]
    }

    /// A profile value Chat would refuse (40601), if any.
    fn problem(&self) -> Option<(u32, String)> {
        self.fields().into_iter().find_map(|(name, _, value)| {
            let len = value?.len();
            (len > MAX_VALUE_BYTES).then(|| {
                (
                    40601,
                    format!("{name} is {len} bytes; at most {MAX_VALUE_BYTES} allowed"),
                )
            })
        })
    }

    /// Adds the account to the known set and writes the profile values it carries.
    fn apply(&self, state: &mut State) {
        if let Some(accounts) = state.accounts.as_mut() {
            accounts.insert(self.user.to_string());
        }
        let values: Vec<(&str, &str)> = self
            .fields()
            .into_iter()
            .filter_map(|(_, tag, value)| Some((tag, value?)))
            .collect();
        if !values.is_empty() {
            let profile = state.profiles.entry(self.user.to_string()).or_default();
            for (tag, value) in values {
                profile.insert(tag.to_string(), Value::from(value));
            }
        }
    }
}

/// 70206 unless 1 to [`MAX_BATCH`] accounts are named.
fn check_batch_size(field: &str, len: usize) -> Result<(), Answer> {
    if (1..=MAX_BATCH).contains(&len) {
        Ok(())
    } else {
        Err(Answer::fail(
            70206,
            format!("{field} names {len} accounts; 1 to {MAX_BATCH} allowed"),
        ))
    }
}
