//! The profile commands: `v4/profile/portrait_set` (validate every item, then write all or
//! nothing) and `v4/profile/portrait_get` (read back the tags asked for).

use std::sync::Arc;

use serde_json::{json, Value};

use super::answer::{parse_json, Answer};
use super::command::Command;
use super::faults::FaultTarget;
use super::fields::{check_item, clip, tag_kind};
use super::state::{RequestCtx, Sim, State};
use super::MAX_BATCH;

impl Sim {
    /// `v4/profile/portrait_set` (spec §2).
    pub(super) fn portrait_set(self: &Arc<Self>, body: &[u8], ctx: &mut RequestCtx) -> Answer {
        let doc = match parse_json(body) {
            Ok(doc) => doc,
            Err(answer) => return answer,
        };
        let Some(user) = doc.get("From_Account").and_then(Value::as_str) else {
            return decode_fail("From_Account is missing or not a string");
        };
        ctx.user = Some(self.enter_user(user));
        let items = match doc.get("ProfileItem").and_then(Value::as_array) {
            Some(items) if !items.is_empty() => items,
            _ => return decode_fail("ProfileItem is missing, empty or not an array"),
        };
        let mut updates = Vec::with_capacity(items.len());
        for item in items {
            match (item.get("Tag").and_then(Value::as_str), item.get("Value")) {
                (Some(tag), Some(value)) => updates.push((tag, value)),
                _ => return decode_fail("every ProfileItem needs a string Tag and a Value"),
            }
        }
        {
            let mut state = self.state();
            for (tag, _) in &updates {
                *state.set_tags.entry(tag.to_string()).or_default() += 1;
            }
        }
        if !self.state().knows(user) {
            return Answer::fail(40003, format!("account {} does not exist", clip(user)));
        }

        if let Err(answer) = self.inject_fault(
            FaultTarget {
                command: Command::PortraitSet,
                user,
            },
            ctx,
        ) {
            return answer;
        }

        for (tag, value) in &updates {
            if let Err((code, info)) = check_item(&self.custom_fields, tag, value) {
                return Answer::fail(code, info);
            }
        }
        let mut state = self.state();
        for (tag, _) in &updates {
            *state.written_by_tag.entry(tag.to_string()).or_insert(0) += 1;
        }
        let profile = state.profiles.entry(user.to_string()).or_default();
        for (tag, value) in updates {
            profile.insert(tag.to_string(), value.clone());
        }
        state.applied += 1;
        Answer::ok()
    }

    /// `v4/profile/portrait_get` (spec §5.6).
    pub(super) fn portrait_get(
        self: &Arc<Self>,
        body: &[u8],
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Answer> {
        let doc = parse_json(body)?;
        let (users, tags) = decode_get(&doc)?;

        self.inject_fault(
            FaultTarget {
                command: Command::PortraitGet,
                user: users[0],
            },
            ctx,
        )?;

        let mut wanted: Vec<&str> = Vec::with_capacity(tags.len());
        for tag in tags {
            if tag_kind(&self.custom_fields, tag).is_none() {
                return Err(Answer::fail(
                    40009,
                    format!("profile tag {} does not exist", clip(tag)),
                ));
            }
            if !wanted.contains(&tag) {
                wanted.push(tag);
            }
        }
        let mut state = self.state();
        if self.get_refuses_unknown_accounts {
            if let Some(unknown) = users.iter().find(|user| !state.knows(user)) {
                return Err(Answer::fail(
                    40003,
                    format!("account {} does not exist", clip(unknown)),
                ));
            }
        }
        state.users_read += users.len() as u64;
        Ok(read_profiles(&state, &users, &wanted))
    }
}

fn decode_fail(why: &str) -> Answer {
    Answer::fail(40001, format!("Err_Profile_Comm_Decode_Fail: {why}"))
}

/// portrait_get's `To_Account` and `TagList`, or the answer that refuses them.
fn decode_get(doc: &Value) -> Result<(Vec<&str>, Vec<&str>), Answer> {
    let to = match doc.get("To_Account") {
        None | Some(Value::Null) => return Err(Answer::fail(40002, "To_Account is missing")),
        Some(Value::Array(to)) if to.is_empty() => {
            return Err(Answer::fail(40002, "To_Account is empty"))
        }
        Some(Value::Array(to)) => to,
        Some(_) => return Err(decode_fail("To_Account is not an array")),
    };
    if to.len() > MAX_BATCH {
        return Err(decode_fail(&format!(
            "To_Account names {} users; at most {MAX_BATCH} allowed",
            to.len()
        )));
    }
    let users: Vec<&str> = to
        .iter()
        .map(Value::as_str)
        .collect::<Option<_>>()
        .ok_or_else(|| decode_fail("every To_Account entry must be a string"))?;
    let tags: Vec<&str> = match doc.get("TagList").and_then(Value::as_array) {
        Some(tags) if !tags.is_empty() => tags
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(|| decode_fail("every TagList entry must be a string"))?,
        _ => return Err(decode_fail("TagList is missing, empty or not an array")),
    };
    Ok((users, tags))
}

/// portrait_get's answer: each user's `wanted` tags that have a value, unknown users failed.
fn read_profiles(state: &State, users: &[&str], wanted: &[&str]) -> Answer {
    let mut items = Vec::with_capacity(users.len());
    let mut failed = Vec::new();
    for &user in users {
        if !state.knows(user) {
            items.push(json!({
                "To_Account": user,
                "ResultCode": 40003,
                "ResultInfo": format!("account {} does not exist", clip(user)),
            }));
            failed.push(Value::from(user));
            continue;
        }
        let profile = state.profiles.get(user);
        let profile_items: Vec<Value> = wanted
            .iter()
            .filter_map(|tag| {
                let value = profile?.get(*tag)?;
                Some(json!({"Tag": tag, "Value": value}))
            })
            .collect();
        items.push(json!({
            "To_Account": user,
            "ProfileItem": profile_items,
            "ResultCode": 0,
            "ResultInfo": "",
        }));
    }
    let mut answer = Answer::ok_with("UserProfileItem", Value::Array(items));
    if !failed.is_empty() {
        if let Answer::Chat { extra, .. } = &mut answer {
            extra.insert("Fail_Account".into(), Value::Array(failed));
        }
    }
    answer
}
