//! The one report of a run, for every command (import, dry run, the `--changes-only` plan,
//! verify, check-accounts): its counters (changed only by the tally, `run::fate`) and its JSON;
//! its text is in `text`, and what shows it is a sink (`run::sinks`).
//!
//! Every input row lands in exactly one of: ok, failed, invalid, skipped, unchanged,
//! superseded, not attempted (or, in a dry run, valid). `accounted()` checks that the counters
//! add up to the rows read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::chat::retry::Answered;
use crate::input::dupes::Duplicates;

mod text;

/// Which command the report is of.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Import,
    DryRun,
    /// `import --dry-run --changes-only`.
    Plan,
    Verify,
    CheckAccounts,
}

/// The report of one run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub kind: Kind,
    /// Data rows read (the header not counted).
    pub rows: u64,
    /// Rows that passed validation. In a dry run these are the rows that would be sent.
    pub valid: u64,
    /// Rows rejected by validation (each is in the failure CSV).
    pub invalid: u64,
    /// Invalid rows by their first broken rule, e.g. `40601 too long` → 3.
    pub invalid_by_rule: BTreeMap<String, u64>,
    /// Valid rows with nothing to set (every profile cell empty under `--empty skip`).
    pub skipped: u64,
    /// Rows Chat already holds (not sent): `--state` (as the last accepted run left them) or
    /// `--changes-only` (as read).
    pub unchanged: u64,
    /// Rows merged into a later row of the same user, which is sent instead.
    pub superseded: u64,
    /// `--state` was used: show `unchanged`.
    pub with_state: bool,
    pub duplicates: Duplicates,
    /// Rows Chat accepted.
    pub ok: u64,
    /// Rows that failed when sent (each is in the failure CSV).
    pub failed: u64,
    /// Send failures by code.
    pub failed_by_code: BTreeMap<String, u64>,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Throttled answers from Chat (60007, 60011, 60018, 60019, HTTP 429).
    pub throttled: u64,
    /// The adaptive pace: (lowest, final) requests per second.
    pub pace: Option<(f64, f64)>,
    /// Valid rows never attempted because the run stopped early.
    pub not_attempted: u64,
    pub elapsed: Duration,
    /// Where the failure CSV was written, if any row failed.
    pub failure_csv: Option<PathBuf>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Why a guard refused the input (empty, too few rows, shrunk since the last run): an
    /// import then sends nothing, a dry run ends with exit 3.
    pub refused: Option<String>,
    /// The journal to resume from, if rows are left.
    pub journal: Option<PathBuf>,
    /// What `--create-accounts` did.
    pub accounts: Option<AccountsReport>,
    /// Dry run: valid rows whose Location is over Chat's older 16-byte limit.
    pub long_locations: u64,
    /// `--changes-only`, its plan, verify: what the comparison with Chat found.
    pub compared: Option<Comparisons>,
    /// The plan: missing accounts would be created first (`--create-accounts`).
    pub creates_accounts: bool,
    /// verify's diff CSV, or the plan CSV.
    pub diff_csv: Option<PathBuf>,
    /// `--batch-nick-image`: what the batch path and its self-check did.
    pub batch: Option<BatchReport>,
    /// check-accounts (and `import --dry-run --check-accounts`).
    pub accounts_checked: Option<AccountsChecked>,
    /// How the requests were answered, by command (`portrait_set` …).
    pub calls: BTreeMap<String, Answered>,
    /// When the run started (for the metrics and the change log).
    pub started: Option<std::time::SystemTime>,
}

/// What comparing users with Chat found (`--changes-only`, its plan, verify). A resumed
/// `--changes-only` run starts the row counts from the journal's; the read calls, their
/// throttled answers, the account checks and the read pace are its own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparisons {
    /// Users whose values were read and compared (the same in Chat, or differing).
    pub users_compared: u64,
    /// Users whose every value Chat holds already: not sent.
    pub unchanged_in_chat: u64,
    /// Users with values that differ: only those tags are sent.
    pub updated: u64,
    /// Users Chat does not know: sent whole.
    pub not_an_account: u64,
    /// Users whose read failed for good: sent whole.
    pub not_compared: u64,
    /// Values compared, and those that differ.
    pub values: u64,
    pub differences: u64,
    /// The differing tags: tag → users.
    pub update_by_tag: BTreeMap<String, u64>,
    /// `--only-if-empty`: tags not sent because Chat holds a value: tag → users.
    pub kept_by_tag: BTreeMap<String, u64>,
    /// Tags in the bodies Chat accepted.
    pub tags_sent: u64,
    /// portrait_get requests, retries included.
    pub read_calls: u64,
    /// Throttled answers to them.
    pub read_throttled: u64,
    /// account_check requests, made when a read was refused whole with 40003.
    pub account_checks: u64,
    /// The lowest pace the reads were slowed to (whole calls a second): the read rate unless
    /// Chat throttled them or, app-wide, a sibling command.
    pub read_pace_lowest: u32,
    /// The read rate, for the text summary to say whether the reads were slowed.
    pub read_pace_ceiling: u32,
}

impl Comparisons {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "users_compared": self.users_compared,
            "unchanged_in_chat": self.unchanged_in_chat,
            "updated": self.updated,
            "not_an_account": self.not_an_account,
            "not_compared": self.not_compared,
            "values": self.values,
            "differences": self.differences,
            "update_by_tag": self.update_by_tag,
            "kept_by_tag": self.kept_by_tag,
            "tags_sent": self.tags_sent,
            "read_calls": self.read_calls,
            "read_throttled": self.read_throttled,
            "account_checks": self.account_checks,
            "read_pace_lowest_per_second": self.read_pace_lowest,
        })
    }
}

/// What `--create-accounts` did, in any of its forms: the batch pass before the send
/// (`batch`, `account-list`: multiaccount_import), or account_import when portrait_set answered
/// 40003 (`on-demand`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AccountsReport {
    /// `batch`, `account-list` or `on-demand`.
    pub form: &'static str,
    /// The Chat command that imported them.
    pub command: &'static str,
    /// Calls made (retries not counted): one per 100 users in a batch form, one per user on
    /// demand.
    pub calls: u64,
    /// Users sent to the command, and those it did not import (their rows failed at stage
    /// `account`).
    pub users: u64,
    pub failed: u64,
    /// Requests of the command, retries included, that are part of the run's `requests`
    /// (on demand: they share portrait_set's handle and pacer; the batch pass has its own).
    pub in_requests: u64,
}

impl AccountsReport {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "form": self.form,
            "command": self.command,
            "calls": self.calls,
            "users": self.users,
            "imported": self.users - self.failed.min(self.users),
            "failed": self.failed,
        })
    }
}

/// What `check-accounts` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AccountsChecked {
    pub users: u64,
    pub not_imported: u64,
    /// The list of users not imported, when there are any.
    pub missing_list: Option<PathBuf>,
}

/// What `--batch-nick-image` did: the multiaccount_import calls, the self-check's sample and
/// its outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// multiaccount_import calls made (retries not counted).
    pub calls: u64,
    /// Users sent in those calls.
    pub users: u64,
    /// Users Chat listed in FailAccounts (their rows are in the failure CSV).
    pub fail_accounts: u64,
    /// portrait_get calls of the self-check, and the users they read back.
    pub check_calls: u64,
    pub sample_users: u64,
    /// Users whose Nick and Image a passed check vouched for.
    pub confirmed_users: u64,
    /// Why the batch path was dropped, if it was.
    pub fell_back: Option<String>,
    /// Rows whose Nick and Image went through portrait_set after the batch path was dropped.
    pub fallback_rows: u64,
    /// The lowest pace multiaccount_import's calls were slowed to (whole calls a second):
    /// `--batch-rate` unless Chat throttled them or, app-wide, a sibling command.
    pub pace_lowest: u32,
    /// `--batch-rate`, for the text summary to say whether the batch path was slowed.
    pub pace_ceiling: u32,
}

impl BatchReport {
    /// `confirmed`, `fell back` or `not checked` (the run ended before any check finished).
    pub fn outcome(&self) -> &'static str {
        if self.fell_back.is_some() {
            "fell back"
        } else if self.confirmed_users > 0 {
            "confirmed"
        } else {
            "not checked"
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "multiaccount_import_calls": self.calls,
            "users": self.users,
            "fail_accounts": self.fail_accounts,
            "check_portrait_get_calls": self.check_calls,
            "sample_users": self.sample_users,
            "confirmed_users": self.confirmed_users,
            "outcome": self.outcome(),
            "fell_back_because": self.fell_back,
            "fallback_rows": self.fallback_rows,
            "pace_lowest_per_second": self.pace_lowest,
        })
    }
}

impl Summary {
    /// An empty report of `kind`.
    pub fn of(kind: Kind) -> Summary {
        Summary {
            kind,
            ..Summary::default()
        }
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.kind, Kind::DryRun | Kind::Plan)
    }

    /// True when every row read is in exactly one bucket.
    pub fn accounted(&self) -> bool {
        let state = self.unchanged + self.superseded;
        if self.kind == Kind::DryRun {
            self.rows == self.valid + self.invalid + self.skipped + state
        } else {
            self.rows
                == self.ok + self.failed + self.invalid + self.skipped + self.not_attempted + state
        }
    }

    /// True if some row was rejected or failed.
    pub fn has_failures(&self) -> bool {
        self.invalid > 0 || self.failed > 0
    }

    /// True when the run found nothing to report: every row valid and accepted (or, for the
    /// plan and verify, every user read and, for verify, every value as expected; for
    /// check-accounts, every user imported).
    pub fn passed(&self) -> bool {
        let compared = self.compared.clone().unwrap_or_default();
        let accounts = self.accounts_checked.clone().unwrap_or_default();
        let base = !self.has_failures() && accounts.not_imported == 0;
        match self.kind {
            Kind::Import | Kind::DryRun | Kind::CheckAccounts => base,
            Kind::Plan => {
                base && compared.not_compared == 0
                    && (self.creates_accounts || compared.not_an_account == 0)
            }
            Kind::Verify => {
                base && compared.differences == 0
                    && compared.not_an_account == 0
                    && compared.not_compared == 0
            }
        }
    }

    /// Rows whose fate is final: everything but the rows not attempted.
    pub fn settled(&self) -> u64 {
        self.ok + self.failed + self.invalid + self.skipped + self.unchanged + self.superseded
    }

    /// The plan: portrait_set calls the real run would make first (retries aside).
    pub fn would_send(&self) -> u64 {
        self.compared
            .as_ref()
            .map_or(0, |c| c.updated + c.not_an_account + c.not_compared)
    }

    /// When most failures say the user is not a Chat account (40003), what to do about it.
    pub fn missing_accounts_hint(&self) -> Option<String> {
        let missing = self.failed_by_code.get("40003").copied().unwrap_or(0);
        (missing > 0 && missing * 2 > self.failed).then(|| {
            format!(
                "{missing} rows failed with 40003 (not a Chat account yet): import the accounts \
                 with --create-accounts, or list them with check-accounts"
            )
        })
    }

    /// Requests per second over the whole run.
    pub fn mean_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The report and the exit code the run ends with, as JSON: the keys every command has,
    /// then the command's own.
    pub fn to_json(&self, exit_code: u8) -> serde_json::Value {
        let command = match self.kind {
            Kind::Import | Kind::DryRun | Kind::Plan => "import",
            Kind::Verify => "verify",
            Kind::CheckAccounts => "check-accounts",
        };
        let mut json = serde_json::json!({
            "command": command,
            "exit_code": exit_code,
            "dry_run": self.is_dry_run(),
            "rows": self.rows,
            "invalid": self.invalid,
            "invalid_by_rule": self.invalid_by_rule,
            "skipped": self.skipped,
            "superseded": self.superseded,
            "duplicate_users": self.duplicates.users,
            "elapsed_seconds": round_ms(self.elapsed.as_secs_f64()),
            "failure_csv": self.failure_csv,
            "stopped": self.stopped,
            "refused": self.refused,
            "requests_by_command": self.calls,
        });
        let compared = self.compared.clone().unwrap_or_default();
        let own = match self.kind {
            Kind::Import | Kind::DryRun => self.import_json(),
            Kind::Plan => serde_json::json!({
                "create": if self.creates_accounts { compared.not_an_account } else { 0 },
                "update": compared.updated,
                "update_by_tag": compared.update_by_tag,
                "kept_by_tag": compared.kept_by_tag,
                "unchanged": compared.unchanged_in_chat,
                "missing_accounts": if self.creates_accounts { 0 } else { compared.not_an_account },
                "not_compared": compared.not_compared,
                "would_send": self.would_send(),
                "read_calls": compared.read_calls,
                "plan_csv": self.diff_csv,
                "changes_only": compared.to_json(),
            }),
            Kind::Verify => serde_json::json!({
                "users": compared.users_compared + compared.not_an_account + compared.not_compared,
                "values": compared.values,
                "differences": compared.differences,
                "missing_accounts": compared.not_an_account,
                "not_compared": compared.not_compared,
                "portrait_get_calls": compared.read_calls,
                "diff_csv": self.diff_csv,
                "not_checked": self.invalid,
            }),
            Kind::CheckAccounts => serde_json::Value::Object(Default::default()),
        };
        if let (Some(json), serde_json::Value::Object(own)) = (json.as_object_mut(), own) {
            json.extend(own);
            if let Some(checked) = &self.accounts_checked {
                json.insert("users_checked".into(), checked.users.into());
                json.insert("not_imported".into(), checked.not_imported.into());
                json.insert(
                    "missing_list".into(),
                    serde_json::json!(checked.missing_list),
                );
            }
        }
        json
    }

    /// The import's and the dry run's own keys.
    fn import_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "ok": self.ok,
            "failed": self.failed,
            "failed_by_code": self.failed_by_code,
            "unchanged": self.unchanged,
            "not_attempted": self.not_attempted,
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "pace_lowest_per_second": self.pace.map(|p| round_ms(p.0)),
            "pace_final_per_second": self.pace.map(|p| round_ms(p.1)),
            "long_locations": self.long_locations,
            "mean_requests_per_second": round_ms(self.mean_rate()),
            "journal": self.journal,
            "accounts": self.accounts.as_ref().map(AccountsReport::to_json),
        });
        if let Some(compared) = &self.compared {
            json["changes_only"] = compared.to_json();
        }
        if let Some(batch) = &self.batch {
            json["batch_nick_image"] = batch.to_json();
        }
        json
    }
}

/// A figure in the JSON to the millisecond (a float's binary noise, 3.1673418939999998, is
/// not a figure anyone measured).
fn round_ms(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
