//! What verify and the `--changes-only` plan do with each row of a comparison: count it, put an
//! invalid row in the failure CSV, and write each value Chat does not hold as the file says to
//! the report CSV (verify's diff, the plan), in verify's diff form `UserID,Tag,Expected,Actual`.

use std::path::Path;

use super::{describe_actual, Checked, Comparison};
use crate::input::row::{failure_from, RowMapper};
use crate::outcome::Failure;
use crate::run::fate::{Compared, RowFate};
use crate::run::job::JobInput;
use crate::run::progress::{Progress, ProgressOptions, Snapshot};
use crate::run::row_warnings::RowWarnings;
use crate::run::summary::Summary;
use crate::store::failures::FailureWriter;
use crate::store::journal::Found;
use crate::store::outputs::ReportCsv;

/// The report CSV's columns.
pub const DIFF_HEADER: [&str; 4] = ["UserID", "Tag", "Expected", "Actual"];

/// A comparison run's counts and files, row by row in file order.
pub struct CheckTally {
    pub report: Summary,
    diff: ReportCsv,
    failures: FailureWriter,
    warnings: RowWarnings,
    delimiter: u8,
    progress: Progress,
    /// Rows taken so far.
    taken: u64,
}

impl CheckTally {
    /// The tally of `report` for `job`'s rows (read with `mapper`), writing `diff_path`, its
    /// progress shown as `progress` says.
    pub fn new(
        report: Summary,
        job: &JobInput,
        mapper: &RowMapper,
        diff_path: &Path,
        progress: ProgressOptions,
    ) -> anyhow::Result<CheckTally> {
        Ok(CheckTally {
            progress: Progress::with(Some(report.rows), progress),
            taken: 0,
            report,
            diff: ReportCsv::new(diff_path, &DIFF_HEADER),
            failures: FailureWriter::lazy(&job.failures, mapper.columns(), job.input.delimiter)?,
            warnings: RowWarnings::default(),
            delimiter: job.input.delimiter,
        })
    }

    pub fn take(&mut self, row: Checked) -> anyhow::Result<()> {
        self.taken += 1;
        let report = &mut self.report;
        let (user, compared) = match row {
            Checked::Compared { user, compared } => (user, compared),
            Checked::Skipped => {
                report.count(RowFate::Skipped);
                return Ok(());
            }
            Checked::Superseded => {
                report.count(RowFate::Superseded);
                return Ok(());
            }
            Checked::Unsampled => return Ok(()),
            Checked::Invalid {
                record,
                line,
                violations,
                superseded,
            } => {
                report.count(RowFate::Invalid(&violations));
                // Rows come here in file order: nothing to wait for.
                self.warnings.invalid(self.taken, line, &violations);
                self.warnings.release_all();
                let failure = Failure {
                    superseded,
                    ..failure_from(&violations)
                };
                return self.failures.write(&record, line, &failure, self.delimiter);
            }
        };
        let values = compared.expected.len() as u64;
        let whole = match compared.outcome {
            Comparison::Same => {
                let found = Compared {
                    kept: &compared.kept,
                    ..Compared::plain(Found::InChat, values)
                };
                self.report.count_comparison(found, 0);
                return Ok(());
            }
            Comparison::Differs(differences) => {
                let mut tags = Vec::new();
                for difference in differences {
                    let Some(item) = compared.expected.get(difference.index) else {
                        continue;
                    };
                    let actual = describe_actual(difference.actual.as_ref());
                    self.write(&user, &item.tag, &item.value, &actual)?;
                    tags.push(item.tag.as_str());
                }
                let sent = tags.len() as u64;
                let found = Compared {
                    found: Found::Updated,
                    values,
                    differing: &tags,
                    kept: &compared.kept,
                };
                self.report.count_comparison(found, sent);
                return Ok(());
            }
            Comparison::NotAnAccount => {
                let report = &mut self.report;
                report.count_comparison(Compared::plain(Found::NotAnAccount, values), values);
                match report.creates_accounts {
                    true => "(account missing: created first)",
                    false => "(account missing)",
                }
            }
            Comparison::NotCompared(why) => {
                let report = &mut self.report;
                if report.compared.as_ref().is_none_or(|c| c.not_compared == 0) {
                    tracing::warn!("user {user} could not be read: {why}");
                }
                report.count_comparison(Compared::plain(Found::NotCompared, values), values);
                "(not read)"
            }
        };
        for item in &compared.expected {
            self.write(&user, &item.tag, &item.value, whole)?;
        }
        Ok(())
    }

    /// One line: the value expected, as JSON, and what Chat holds.
    fn write(
        &mut self,
        user: &str,
        tag: &str,
        expected: &serde_json::Value,
        actual: &str,
    ) -> anyhow::Result<()> {
        self.diff.write([user, tag, &expected.to_string(), actual])
    }

    /// Shows the counts so far (`requests` made, at `pace` calls a second).
    pub fn show_progress(&mut self, requests: u64, pace: f64) {
        let snapshot = Snapshot::comparison(&self.report, self.taken, requests, pace);
        self.progress.update(snapshot);
    }

    /// The report with its files put in place.
    pub fn finish(mut self) -> anyhow::Result<Summary> {
        self.progress.finish();
        let mut report = self.report;
        report.diff_csv = self.diff.finish()?;
        report.failure_csv = self.failures.finish()?;
        Ok(report)
    }
}
