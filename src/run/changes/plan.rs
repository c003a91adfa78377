//! `import --dry-run --changes-only`: the plan. Every row is read, validated and compared with
//! what Chat holds exactly as the real run does it (the same last-row rule, the same reads
//! ahead, the same comparison), and nothing is sent. It counts the users that would be created,
//! updated (per tag), left unchanged, are invalid or are missing an account, and writes each
//! value that would be sent to a plan CSV in verify's diff form (`UserID,Tag,Expected,Actual`).

use std::path::{Path, PathBuf};

use super::{check_rows, describe_actual, ChatReads, Checked, Comparison};
use crate::input::row::{failure_from, RowMapper};
use crate::input::rows::Rows;
use crate::input::survey::Survey;
use crate::outcome::Failure;
use crate::run::decide::{Decider, Known};
use crate::run::fate::{Found, RowFate};
use crate::run::job::JobInput;
use crate::run::row_warnings::RowWarnings;
use crate::run::summary::{Kind, Summary};
use crate::run::verify::DiffWriter;
use crate::store::failures::FailureWriter;

/// The default plan CSV: `users.csv` → `users.plan.csv`.
pub fn default_path(input: &Path) -> PathBuf {
    crate::fsutil::beside(input, ".plan.csv")
}

/// Makes the plan with `reads` (`--read-rate`).
pub struct Planner {
    pub chat: ChatReads,
}

impl Planner {
    /// Reads, validates and compares every row (each user once, its rows merged, as the real
    /// run sends it); writes the plan CSV to `plan_path` and invalid rows to the job's failure
    /// CSV.
    pub async fn run(&self, job: &JobInput, plan_path: &Path) -> anyhow::Result<Summary> {
        let rows = Rows::open(&job.input)?;
        let mapper = RowMapper::new(rows.columns().clone(), job.rules);
        let findings = Survey::default()
            .read_all(&job.input, &mapper)?
            .finish(&job.input)?;
        let failures = FailureWriter::lazy(&job.failures, mapper.columns(), job.input.delimiter)?;
        let mut report = Summary::of(Kind::Plan);
        report.count_read(findings.rows);
        report.creates_accounts = job.create_accounts.is_some();
        let mut tally = Tally {
            report,
            diff: DiffWriter::new(plan_path)?,
            failures,
            warnings: RowWarnings::default(),
            delimiter: job.input.delimiter,
        };
        let reads = self.chat.reads(&mapper);
        let decider = Decider::new(mapper, findings.repeated, Known::default());
        check_rows(rows, decider, reads, |_| true, |row| tally.take(row)).await?;
        if let Some(why) = self.chat.fatal() {
            anyhow::bail!("{why}");
        }
        let mut report = tally.report;
        self.chat.count_reads(&mut report);
        report.diff_csv = tally.diff.finish()?;
        report.failure_csv = tally.failures.finish()?;
        Ok(report)
    }
}

/// The plan's counts and files, row by row in file order.
struct Tally {
    report: Summary,
    diff: DiffWriter,
    failures: FailureWriter,
    warnings: RowWarnings,
    delimiter: u8,
}

impl Tally {
    fn take(&mut self, row: Checked) -> anyhow::Result<()> {
        let report = &mut self.report;
        let (user, compared) = match row {
            Checked::Compared { user, compared } => (user, compared),
            Checked::Skipped | Checked::Unsampled => {
                report.count(RowFate::Skipped);
                return Ok(());
            }
            Checked::Superseded => {
                report.count(RowFate::Superseded);
                return Ok(());
            }
            Checked::Invalid {
                record,
                line,
                violations,
                superseded,
            } => {
                report.count(RowFate::Invalid(&violations));
                self.warnings.invalid(line, &violations);
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
                report.count_comparison(Found::Same { values }, 0);
                return Ok(());
            }
            Comparison::Differs(differences) => {
                let mut tags = Vec::new();
                for difference in differences {
                    let Some(item) = compared.expected.get(difference.index) else {
                        continue;
                    };
                    let actual = describe_actual(difference.actual.as_ref());
                    self.diff.write(&user, &item.tag, &item.value, &actual)?;
                    tags.push(item.tag.as_str());
                }
                let tags_sent = tags.len() as u64;
                report.count_comparison(
                    Found::Differs {
                        values,
                        tags: &tags,
                    },
                    tags_sent,
                );
                return Ok(());
            }
            Comparison::NotAnAccount => {
                report.count_comparison(Found::NotAnAccount, values);
                match report.creates_accounts {
                    true => "(account missing: created first)",
                    false => "(account missing)",
                }
            }
            Comparison::NotCompared(_) => {
                report.count_comparison(Found::NotCompared, values);
                "(not read)"
            }
        };
        for item in &compared.expected {
            self.diff.write(&user, &item.tag, &item.value, whole)?;
        }
        Ok(())
    }
}
