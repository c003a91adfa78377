//! The run's counters and the final report, shared by the dry run and the real import.
//!
//! Every input row lands in exactly one of: ok, failed, invalid, skipped, not attempted (or, in a
//! dry run, valid). `accounted()` checks that the counters add up to the rows read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::dupes::Duplicates;

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
    /// Valid rows never attempted because the run stopped early.
    pub not_attempted: u64,
    pub elapsed: Duration,
    /// Where the failure CSV was written, if any row failed.
    pub failure_csv: Option<PathBuf>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
}

impl Summary {
    /// True when every row read is in exactly one bucket.
    pub fn accounted(&self) -> bool {
        if self.dry_run {
            self.rows == self.valid + self.invalid + self.skipped
        } else {
            self.rows == self.ok + self.failed + self.invalid + self.skipped + self.not_attempted
        }
    }

    /// True if some row was rejected or failed.
    pub fn has_failures(&self) -> bool {
        self.invalid > 0 || self.failed > 0
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
        if !self.dry_run {
            writeln!(f, "not attempted    {:>10}", self.not_attempted)?;
            writeln!(
                f,
                "requests         {:>10}   ({} retries)",
                self.requests, self.retries
            )?;
        }
        let dupes = &self.duplicates;
        if dupes.users > 0 {
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
            )?;
        } else {
            writeln!(f, "duplicate users  {:>10}", 0)?;
        }
        let secs = self.elapsed.as_secs_f64();
        if self.dry_run {
            let rate = if secs > 0.0 {
                self.rows as f64 / secs
            } else {
                0.0
            };
            writeln!(f, "elapsed          {secs:>9.2}s   ({rate:.0} rows/s)")?;
        } else {
            writeln!(
                f,
                "elapsed          {secs:>9.1}s   (mean {:.1} requests/s)",
                self.mean_rate()
            )?;
        }
        match &self.failure_csv {
            Some(path) => writeln!(f, "failure CSV      {}", path.display())?,
            None => writeln!(f, "failure CSV      none (no row failed)")?,
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "stopped early    {why}")?;
        }
        Ok(())
    }
}
