//! The run's counters and the final report, shared by the dry run and the real import.
//!
//! Every input row lands in exactly one of: ok, failed, invalid, skipped, not attempted (or, in a
//! dry run, valid). `accounted()` checks that the counters add up to the rows read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::input::dupes::Duplicates;
use crate::run::console;

/// Counters for one run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub dry_run: bool,
    /// Data rows read (the header not counted).
    pub rows: u64,
    /// Rows that passed validation. In a dry run these are the rows that would be sent.
    pub valid: u64,
    /// Rows rejected by validation (each is in the failure CSV).
    pub invalid: u64,
    /// Violations by rule, e.g. `40601 too long` → 3. A row can break several rules.
    pub invalid_by_rule: BTreeMap<String, u64>,
    /// Valid rows with nothing to set (every profile cell empty under `--empty skip`).
    pub skipped: u64,
    /// `--state`: rows Chat already holds exactly (not sent).
    pub unchanged: u64,
    /// `--state`: earlier rows of a user whose last row counts instead (not sent).
    pub superseded: u64,
    /// `--state` was used: show the two counters above.
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
    /// The journal to resume from, if rows are left.
    pub journal: Option<PathBuf>,
    /// What `--create-accounts` did, in words.
    pub accounts: Option<String>,
    /// Dry run: valid rows whose Location is over Chat's older 16-byte limit.
    pub long_locations: u64,
    /// `--changes-only`: what the comparison with Chat found.
    pub changes: Option<ChangesCounts>,
    /// `--batch-nick-image`: what the batch path and its self-check did.
    pub batch: Option<BatchReport>,
}

/// The counters of `--changes-only`. A resumed run starts the row counts from the journal's; the
/// read calls, their throttled answers, the account checks and the read pace are its own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChangesCounts {
    /// Users whose values were read and compared (unchanged in Chat, or updated).
    pub users_compared: u64,
    /// Rows whose every value Chat holds already: not sent (also in `unchanged`).
    pub unchanged_in_chat: u64,
    /// Rows sent with only the tags that differ.
    pub updated: u64,
    /// Rows whose user Chat does not know: sent whole.
    pub not_an_account: u64,
    /// Rows whose read failed for good: sent whole.
    pub not_compared: u64,
    /// Tags in the bodies Chat accepted.
    pub tags_sent: u64,
    /// portrait_get requests, retries included.
    pub read_calls: u64,
    /// Throttled answers to them.
    pub read_throttled: u64,
    /// account_check requests, made when a read was refused whole with 40003.
    pub account_checks: u64,
    /// The lowest pace the reads were slowed to (whole calls a second): `--read-rate` unless
    /// Chat throttled them or, app-wide, a sibling command.
    pub read_pace_lowest: u32,
    /// `--read-rate`, for the text summary to say whether the reads were slowed.
    pub read_pace_ceiling: u32,
}

impl ChangesCounts {
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "users compared   {:>10}", self.users_compared)?;
        writeln!(
            f,
            "unchanged in Chat{:>10}   (not sent)",
            self.unchanged_in_chat
        )?;
        writeln!(
            f,
            "updated          {:>10}   (only the tags that differ sent)",
            self.updated
        )?;
        writeln!(
            f,
            "not an account   {:>10}   (sent whole)",
            self.not_an_account
        )?;
        writeln!(
            f,
            "not compared     {:>10}   (read failed: sent whole)",
            self.not_compared
        )?;
        writeln!(f, "tags sent        {:>10}", self.tags_sent)?;
        writeln!(
            f,
            "read calls       {:>10}   (portrait_get, {} throttled)",
            self.read_calls, self.read_throttled
        )?;
        if self.read_pace_lowest < self.read_pace_ceiling {
            writeln!(
                f,
                "{}",
                slowed(self.read_pace_lowest, self.read_pace_ceiling)
            )?;
        }
        if self.account_checks > 0 {
            writeln!(
                f,
                "account checks   {:>10}   (account_check, for reads refused whole with 40003)",
                self.account_checks
            )?;
        }
        Ok(())
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "users_compared": self.users_compared,
            "unchanged_in_chat": self.unchanged_in_chat,
            "updated": self.updated,
            "not_an_account": self.not_an_account,
            "not_compared": self.not_compared,
            "tags_sent": self.tags_sent,
            "read_calls": self.read_calls,
            "read_throttled": self.read_throttled,
            "account_checks": self.account_checks,
            "read_pace_lowest_per_second": self.read_pace_lowest,
        })
    }
}

/// The line under a command's counts when Chat's throttling (its own, or app-wide through a
/// sibling command) slowed its pace below its ceiling at some point.
fn slowed(lowest: u32, ceiling: u32) -> String {
    format!(
        "                 paced down to {lowest}/s of {ceiling}/s at the lowest (Chat throttled \
         it, or the app through another command)"
    )
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

impl fmt::Display for BatchReport {
    /// The summary's two lines about the batch path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "batch            {} users in {} multiaccount_import calls ({} in FailAccounts)",
            self.users, self.calls, self.fail_accounts
        )?;
        if self.pace_lowest < self.pace_ceiling {
            writeln!(f, "{}", slowed(self.pace_lowest, self.pace_ceiling))?;
        }
        let sample = format!(
            "read back {} users in {} portrait_get calls",
            self.sample_users, self.check_calls
        );
        match &self.fell_back {
            Some(why) => {
                writeln!(
                    f,
                    "self-check       {sample}: Nick/Image did NOT land ({why}); batch path \
                     dropped, {} rows got Nick/Image through portrait_set",
                    self.fallback_rows
                )?;
                if self.confirmed_users > 0 {
                    // A sample vouched for them before the failing one: they were not re-sent.
                    writeln!(
                        f,
                        "                 {} users vouched for by earlier checks were not sent \
                         again: run verify to be sure",
                        self.confirmed_users
                    )?;
                }
                Ok(())
            }
            None if self.confirmed_users > 0 => writeln!(
                f,
                "self-check       {sample}: Nick/Image landed ({} users vouched for)",
                self.confirmed_users
            ),
            None => writeln!(f, "self-check       {sample}: no check finished"),
        }
    }
}

impl Summary {
    /// True when every row read is in exactly one bucket.
    pub fn accounted(&self) -> bool {
        let state = self.unchanged + self.superseded;
        if self.dry_run {
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

    /// Rows whose fate is final: everything but the rows not attempted.
    pub fn settled(&self) -> u64 {
        self.ok + self.failed + self.invalid + self.skipped + self.unchanged + self.superseded
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
}

impl Summary {
    /// The counters, codes, timings and the exit code the run ends with, as JSON.
    pub fn to_json(&self, exit_code: u8) -> serde_json::Value {
        let summary = self;
        let mut json = serde_json::json!({
            "command": "import",
            "exit_code": exit_code,
            "dry_run": summary.dry_run,
            "rows": summary.rows,
            "ok": summary.ok,
            "failed": summary.failed,
            "failed_by_code": summary.failed_by_code,
            "invalid": summary.invalid,
            "invalid_by_rule": summary.invalid_by_rule,
            "skipped": summary.skipped,
            "unchanged": summary.unchanged,
            "superseded": summary.superseded,
            "not_attempted": summary.not_attempted,
            "requests": summary.requests,
            "retries": summary.retries,
            "throttled": summary.throttled,
            "pace_lowest_per_second": summary.pace.map(|p| p.0),
            "pace_final_per_second": summary.pace.map(|p| p.1),
            "duplicate_users": summary.duplicates.users,
            "long_locations": summary.long_locations,
            "elapsed_seconds": summary.elapsed.as_secs_f64(),
            "mean_requests_per_second": summary.mean_rate(),
            "failure_csv": summary.failure_csv,
            "journal": summary.journal,
            "stopped": summary.stopped,
        });
        if let (Some(changes), Some(json)) = (summary.changes, json.as_object_mut()) {
            json.insert("changes_only".into(), changes.to_json());
        }
        if let Some(batch) = &summary.batch {
            json["batch_nick_image"] = batch.to_json();
        }
        json
    }
}

/// Prints the summary on stderr: the text table, or one JSON line under `--log-format json`.
pub fn print(summary: &Summary, exit_code: u8) {
    if console::json_lines() {
        let mut json = summary.to_json(exit_code);
        json["timestamp"] = crate::fsutil::utc_timestamp(std::time::SystemTime::now()).into();
        json["level"] = "INFO".into();
        json["type"] = "summary".into();
        console::err_json(&json);
    } else {
        console::err(&summary.to_string());
    }
}

/// Writes the summary and the exit code the run ends with as JSON (see `write_json_value`).
pub fn write_json(path: &std::path::Path, summary: &Summary, exit_code: u8) -> anyhow::Result<()> {
    write_json_value(path, &summary.to_json(exit_code))
}

/// `verify`'s counts and exit code as JSON.
pub fn verify_json(report: &crate::run::verify::VerifyReport, exit_code: u8) -> serde_json::Value {
    serde_json::json!({
        "command": "verify",
        "exit_code": exit_code,
        "users": report.users,
        "values": report.values,
        "differences": report.differences,
        "missing_accounts": report.missing_accounts,
        "portrait_get_calls": report.calls,
        "diff_csv": report.diff_csv,
        "not_checked": report.invalid,
        "failure_csv": report.failure_csv,
    })
}

/// Writes a JSON summary to `path` atomically (a temporary file renamed into place), mode 0600;
/// or to stdout when `path` is `-`.
/// The file a summary is written to before it is renamed into place.
fn json_tmp_path(path: &std::path::Path) -> std::path::PathBuf {
    path.with_extension("json.tmp")
}

pub fn write_json_value(path: &std::path::Path, json: &serde_json::Value) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    if crate::input::stdin::is_stdin(path) {
        let mut text = serde_json::to_string_pretty(json)?;
        text.push('\n');
        crate::run::console::out(text.as_bytes());
        return Ok(());
    }
    let tmp = json_tmp_path(path);
    let mut file = crate::fsutil::create_private(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    serde_json::to_writer_pretty(&mut file, json)?;
    file.write_all(b"\n")?;
    file.sync_data()?;
    if let Err(err) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err).with_context(|| format!("cannot write the summary {}", path.display()));
    }
    Ok(())
}

impl Summary {
    /// The send's own lines: rows left pending, requests, the pace, the account pass.
    fn write_requests(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "not attempted    {:>10}", self.not_attempted)?;
        writeln!(
            f,
            "requests         {:>10}   ({} retries, {} throttled)",
            self.requests, self.retries, self.throttled
        )?;
        match self.pace {
            Some((lowest, now)) if self.throttled > 0 => writeln!(
                f,
                "pace             {now:>8.0}/s   (lowest {lowest:.0}/s while Chat throttled)"
            )?,
            Some((_, now)) => writeln!(f, "pace             {now:>8.0}/s")?,
            None => {}
        }
        if let Some(accounts) = &self.accounts {
            writeln!(f, "accounts         {accounts}")?;
        }
        if let Some(batch) = &self.batch {
            write!(f, "{batch}")?;
        }
        Ok(())
    }

    fn write_duplicates(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dupes = &self.duplicates;
        if dupes.users == 0 {
            return writeln!(f, "duplicate users  {:>10}", 0);
        }
        let at_least = if dupes.lower_bound { "at least " } else { "" };
        let examples: Vec<String> = dupes
            .examples
            .iter()
            .map(|(id, n)| format!("{id} ×{n}"))
            .collect();
        writeln!(
            f,
            "duplicate users  {:>10}   ({at_least}{} extra rows; the last row for a user wins): {}",
            dupes.users,
            dupes.extra_rows,
            examples.join(", ")
        )
    }

    fn write_elapsed(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        if self.dry_run {
            let rate = if secs > 0.0 {
                self.rows as f64 / secs
            } else {
                0.0
            };
            writeln!(f, "elapsed          {secs:>9.2}s   ({rate:.0} rows/s)")
        } else {
            writeln!(
                f,
                "elapsed          {secs:>9.1}s   (mean {:.1} requests/s)",
                self.mean_rate()
            )
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = if self.dry_run {
            "dry run (nothing sent)"
        } else {
            "import"
        };
        writeln!(f, "── {title} ──")?;
        writeln!(f, "rows read        {:>10}", self.rows)?;
        if self.dry_run {
            writeln!(f, "valid            {:>10}   (would be sent)", self.valid)?;
        } else {
            writeln!(f, "ok               {:>10}", self.ok)?;
            writeln!(f, "failed           {:>10}", self.failed)?;
            for (code, count) in &self.failed_by_code {
                writeln!(f, "  {code:<28} {count:>6}")?;
            }
            if let Some(hint) = self.missing_accounts_hint() {
                writeln!(f, "hint             {hint}")?;
            }
        }
        writeln!(f, "invalid          {:>10}", self.invalid)?;
        for (rule, count) in &self.invalid_by_rule {
            writeln!(f, "  {rule:<28} {count:>6}")?;
        }
        writeln!(
            f,
            "skipped          {:>10}   (nothing to set)",
            self.skipped
        )?;
        if self.with_state {
            writeln!(
                f,
                "unchanged        {:>10}   (Chat already holds them: not sent)",
                self.unchanged
            )?;
            writeln!(
                f,
                "superseded       {:>10}   (a later row for the same user counts)",
                self.superseded
            )?;
        }
        if let Some(changes) = &self.changes {
            changes.write(f)?;
        }
        if !self.dry_run {
            self.write_requests(f)?;
        }
        self.write_duplicates(f)?;
        self.write_elapsed(f)?;
        match &self.failure_csv {
            Some(path) => writeln!(f, "failure CSV      {}", path.display())?,
            None => writeln!(f, "failure CSV      none (no row failed)")?,
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "stopped early    {why}")?;
        }
        if let Some(journal) = &self.journal {
            writeln!(
                f,
                "resume with      --resume   (journal {})",
                journal.display()
            )?;
        }
        Ok(())
    }
}
