//! Comparing rows with what Chat holds: one comparison for `import --changes-only` (which then
//! sends only the tags that differ), its plan (`--dry-run --changes-only`, `plan`) and
//! `verify`. The users' current values are read with portrait_get, 100 users a call, ahead of
//! the rows (`ahead`). This module owns the comparison of one user, the body of only the
//! differing tags, and [`check_rows`], the read path the plan and verify share.

use std::sync::Arc;

use bytes::Bytes;
use csv::ByteRecord;
use tokio::sync::mpsc;

use crate::chat::api::ChatApi;
use crate::chat::portrait::{ProfileItem, SetBody, UserRead};
use crate::input::row::{RowMapper, Violation};
use crate::input::rows::{Row, Rows};
use crate::run::decide::{Decider, Decision};
use crate::run::summary::Summary;
use ahead::{read_ahead, Ahead};

pub mod ahead;
pub mod plan;
pub mod tally;

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
    /// `--only-if-empty`: the tags sent only where Chat holds no value.
    pub only_if_empty: Arc<OnlyIfEmpty>,
}

/// `--only-if-empty`: the tags whose value is sent only where Chat holds none, so a value a
/// user set in the app is never overwritten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OnlyIfEmpty {
    #[default]
    Off,
    All,
    /// Tags as Chat names them.
    Tags(Vec<String>),
}

impl OnlyIfEmpty {
    /// The job's `--only-if-empty` (None: off; an empty list: every tag).
    pub fn of(tags: Option<&Vec<String>>) -> OnlyIfEmpty {
        match tags {
            None => OnlyIfEmpty::Off,
            Some(tags) if tags.is_empty() => OnlyIfEmpty::All,
            Some(tags) => OnlyIfEmpty::Tags(tags.clone()),
        }
    }

    pub fn covers(&self, tag: &str) -> bool {
        match self {
            OnlyIfEmpty::Off => false,
            OnlyIfEmpty::All => true,
            OnlyIfEmpty::Tags(tags) => tags.iter().any(|t| t == tag),
        }
    }
}

/// The handles a comparison run (verify, the plan) reads Chat through, and the job-wide error
/// a read may meet (a wrong key, Chat unreachable), which stops the reads.
#[derive(Clone)]
pub struct ChatReads {
    /// portrait_get.
    pub api: Arc<ChatApi>,
    /// account_check, for reads refused whole with 40003.
    pub account_checks: Option<Arc<ChatApi>>,
    fatal: Arc<std::sync::Mutex<Option<String>>>,
}

impl ChatReads {
    pub fn new(api: Arc<ChatApi>, account_checks: Option<Arc<ChatApi>>) -> ChatReads {
        ChatReads {
            api,
            account_checks,
            fatal: Arc::default(),
        }
    }

    /// How the rows of a file (with `mapper`'s columns) are read.
    pub fn reads(&self, mapper: &RowMapper) -> Reads {
        let (fatal, stop) = (Arc::clone(&self.fatal), self.api.stop().clone());
        Reads {
            api: Arc::clone(&self.api),
            tags: Arc::new(tags_of(mapper)),
            in_flight: reads_in_flight(self.api.pacer().ceiling().round() as u32),
            account_check: self.account_checks.clone(),
            only_if_empty: Arc::default(),
            on_fatal: Arc::new(move |why| {
                fatal
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(why);
                stop.cancel();
            }),
        }
    }

    /// The reads' calls, throttled answers and pace, into `report`.
    pub fn count_reads(&self, report: &mut Summary) {
        let compared = report.compared.get_or_insert_with(Default::default);
        compared.read_calls = self.api.requests();
        compared.read_throttled = self.api.throttled();
        compared.account_checks = self
            .account_checks
            .as_ref()
            .map_or(0, |checks| checks.requests());
        compared.read_pace_lowest = self.api.pacer().lowest_rate().floor() as u32;
        compared.read_pace_ceiling = self.api.pacer().ceiling().floor() as u32;
    }

    /// The job-wide error a read met, if any.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
    /// `--only-if-empty`: the tags whose value differs but is not sent, since Chat holds one.
    pub kept: Vec<String>,
}

/// Whether Chat's value for a tag (`None`: Chat left the tag out) is the one expected: the
/// one comparison `verify` and `import --changes-only` both make.
pub fn value_matches(expected: &serde_json::Value, held: Option<&serde_json::Value>) -> bool {
    match held {
        Some(actual) => actual == expected,
        // Chat leaves unset values out; an empty string or 0 reads back as unset.
        None => expected == "" || expected == 0,
    }
}

/// Chat's value as the diff CSV's `Actual` column shows it.
pub fn describe_actual(held: Option<&serde_json::Value>) -> String {
    held.map_or("(unset)".to_string(), |v| v.to_string())
}

/// One row of a comparison run (verify, the plan), in file order.
pub enum Checked {
    Invalid {
        record: ByteRecord,
        line: u64,
        violations: Vec<Violation>,
        superseded: Vec<String>,
    },
    Skipped,
    Superseded,
    /// Left out of a sample (`verify --sample`).
    Unsampled,
    /// A user's last row (its rows merged), compared with what Chat holds.
    Compared {
        user: String,
        compared: Compared,
    },
}

/// The read path of verify and the plan: every row decided (`run::decide`, each user once,
/// its rows merged), the users to compare read ahead with `reads`, and each row handed to
/// `tally` in file order, which shows the progress once a second. `keep`: whether a user is
/// compared at all (a sample). Returns false if `stop` was cancelled (a signal) before every
/// row was taken.
pub async fn check_rows(
    rows: Rows,
    decider: Decider,
    reads: Reads,
    keep: impl Fn(&str) -> bool + Send + 'static,
    stop: &tokio_util::sync::CancellationToken,
    tally: &mut tally::CheckTally,
) -> anyhow::Result<bool> {
    let api = Arc::clone(&reads.api);
    let (rows_tx, rows_rx) = mpsc::channel(1024);
    let (out_tx, mut out_rx) = mpsc::channel(1024);
    let reader = std::thread::Builder::new()
        .name("csv-check-reader".into())
        .spawn(move || decide_rows(rows, decider, keep, rows_tx))?;
    let ahead = tokio::spawn(read_ahead(
        rows_rx,
        out_tx,
        reads,
        |row| row,
        |row: Checked, compared| match (row, compared) {
            (Checked::Compared { user, .. }, Some(compared)) => {
                Checked::Compared { user, compared }
            }
            (row, _) => row,
        },
    ));
    let mut taken = Ok(());
    let mut whole = true;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let row = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                whole = false;
                break;
            }
            row = out_rx.recv() => row,
            _ = tick.tick() => {
                tally.show_progress(api.requests(), api.pacer().current_rate());
                continue;
            }
        };
        let Some(row) = row else { break };
        taken = tally.take(row);
        if taken.is_err() {
            break;
        }
    }
    // Dropping the receiver stops the read-ahead and, in turn, the reader thread.
    drop(out_rx);
    ahead.await?;
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the CSV reader thread panicked"))?;
    taken?;
    read.map(|()| whole)
}

/// The reader thread of [`check_rows`].
fn decide_rows(
    mut rows: Rows,
    mut decider: Decider,
    keep: impl Fn(&str) -> bool,
    out: mpsc::Sender<Ahead<Checked>>,
) -> anyhow::Result<()> {
    while let Some(row) = rows.next_row()? {
        let next = checked(&row, decider.decide(&row), &keep);
        if out.blocking_send(next).is_err() {
            // The consumer stopped (an error, or a stop): it reports why.
            return Ok(());
        }
    }
    Ok(())
}

fn checked(row: &Row, decision: Decision, keep: &impl Fn(&str) -> bool) -> Ahead<Checked> {
    let ready = match decision {
        Decision::Send(ready) | Decision::Unchanged(ready) | Decision::AccountFailed(ready, _) => {
            ready
        }
        Decision::Invalid {
            violations,
            superseded,
        } => {
            return Ahead::Pass(Checked::Invalid {
                record: row.record.clone(),
                line: row.pos.line,
                violations,
                superseded,
            })
        }
        Decision::Skipped | Decision::AlreadyFailed => return Ahead::Pass(Checked::Skipped),
        Decision::Superseded => return Ahead::Pass(Checked::Superseded),
    };
    if !keep(&ready.user_id) {
        return Ahead::Pass(Checked::Unsampled);
    }
    let Some(body) = parse_body(&ready.body) else {
        return Ahead::Pass(Checked::Skipped);
    };
    Ahead::Compare {
        item: Checked::Compared {
            user: body.user.clone(),
            compared: Compared {
                expected: Vec::new(),
                outcome: Comparison::Same,
                kept: Vec::new(),
            },
        },
        user: body.user,
        expected: body.items,
    }
}

/// Compares a row's items with what a read said of its user. A tag `only_if_empty` covers is
/// kept (not sent) where Chat holds a value, and the comparison says which were.
pub fn compare(
    expected: Vec<ProfileItem>,
    read: UserRead,
    only_if_empty: &OnlyIfEmpty,
) -> Compared {
    let mut kept = Vec::new();
    let outcome = match read {
        UserRead::Held(held) => {
            let mut differences = Vec::new();
            for (index, item) in expected.iter().enumerate() {
                let actual = held.get(&item.tag);
                if value_matches(&item.value, actual) {
                    continue;
                }
                if only_if_empty.covers(&item.tag) && holds_value(actual) {
                    kept.push(item.tag.clone());
                } else {
                    differences.push(Difference {
                        index,
                        actual: actual.cloned(),
                    });
                }
            }
            match differences.is_empty() {
                true => Comparison::Same,
                false => Comparison::Differs(differences),
            }
        }
        UserRead::NotAnAccount => Comparison::NotAnAccount,
        UserRead::Unread(why) => Comparison::NotCompared(why),
    };
    Compared {
        expected,
        outcome,
        kept,
    }
}

/// Chat holds a value for the tag (it reads back unset, `""` and `0` alike, as empty).
fn holds_value(held: Option<&serde_json::Value>) -> bool {
    !value_matches(&serde_json::json!(""), held)
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
        let off = OnlyIfEmpty::Off;
        let Comparison::Differs(differences) =
            compare(expected.clone(), UserRead::Held(held), &off).outcome
        else {
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
        // A body reads back as its user and items; anything else is not a body.
        let read = parse_body(&partial_body("u1", &expected, &differences)).unwrap();
        assert_eq!(read.user, "u1");
        let items: Vec<(&str, &serde_json::Value)> = read
            .items
            .iter()
            .map(|i| (i.tag.as_str(), &i.value))
            .collect();
        assert_eq!(
            items,
            [
                ("Tag_Profile_IM_Level", &json!(7)),
                ("Tag_Profile_Custom_Hobby", &json!("chess"))
            ]
        );
        assert!(parse_body(b"{\"ActionStatus\":\"OK\"}").is_none());
        let same: HashMap<String, serde_json::Value> = [
            ("Tag_Profile_IM_Nick".to_string(), json!("Ann")),
            ("Tag_Profile_IM_Level".to_string(), json!(7)),
            ("Tag_Profile_Custom_Hobby".to_string(), json!("chess")),
        ]
        .into();
        assert_eq!(
            compare(expected.clone(), UserRead::Held(same), &off).outcome,
            Comparison::Same
        );
        assert_eq!(
            compare(expected, UserRead::NotAnAccount, &off).outcome,
            Comparison::NotAnAccount
        );
    }

    #[test]
    fn only_if_empty_keeps_a_value_chat_holds_and_fills_an_empty_one() {
        let expected = vec![
            item("Tag_Profile_IM_Nick", json!("Ann")),
            item("Tag_Profile_IM_Level", json!(7)),
            item("Tag_Profile_IM_SelfSignature", json!("hi")),
        ];
        let held: HashMap<String, serde_json::Value> = [
            (
                "Tag_Profile_IM_Nick".to_string(),
                json!("Annie (set in the app)"),
            ),
            ("Tag_Profile_IM_Level".to_string(), json!(6)),
            ("Tag_Profile_IM_SelfSignature".to_string(), json!("")),
        ]
        .into();
        let nick_and_signature = OnlyIfEmpty::Tags(vec![
            "Tag_Profile_IM_Nick".into(),
            "Tag_Profile_IM_SelfSignature".into(),
        ]);
        let compared = compare(
            expected.clone(),
            UserRead::Held(held.clone()),
            &nick_and_signature,
        );
        assert_eq!(compared.kept, vec!["Tag_Profile_IM_Nick".to_string()]);
        let Comparison::Differs(differences) = compared.outcome else {
            panic!("Level and the empty SelfSignature are sent");
        };
        let sent: Vec<usize> = differences.iter().map(|d| d.index).collect();
        assert_eq!(sent, vec![1, 2]);
        // Every tag protected, Chat holding a value for all but the empty one.
        let all = compare(expected.clone(), UserRead::Held(held), &OnlyIfEmpty::All);
        assert_eq!(all.kept.len(), 2);
        // A user Chat does not know holds nothing: everything is sent.
        let new_user = compare(expected, UserRead::NotAnAccount, &OnlyIfEmpty::All);
        assert!(new_user.kept.is_empty());
        assert_eq!(new_user.outcome, Comparison::NotAnAccount);
    }
}
