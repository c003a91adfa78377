//! `profile-import verify`: reads profiles back with portrait_get (100 users a call, paced at
//! most `--rate` calls/s, several in flight) and compares them with what the CSV says each
//! user should hold, after the same mapping, normalisation and merge of a repeated user's rows
//! as the import (`run::decide`), through the read path `--changes-only` uses.
//!
//! Memory stays flat: users are checked as the file streams by; only the rows of users with
//! several rows (found first, in constant memory) are merged until their last row.
//!
//! Rows that fail validation cannot be compared: they are reported as not checked and written
//! to a failure CSV, as the import writes them, and the run does not pass.

use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use crate::input::reader::InputOptions;
use crate::input::row::{failure_from, RowMapper, RowRules};
use crate::input::rows::Rows;
use crate::input::survey::Survey;
use crate::outcome::Failure;
use crate::run::changes::{check_rows, describe_actual, ChatReads, Checked, Comparison};
use crate::run::decide::{Decider, Known};
use crate::run::fate::{Found, RowFate};
use crate::run::row_warnings::RowWarnings;
use crate::run::summary::{Kind, Summary};
use crate::store::failures::FailureWriter;

/// Everything a verify run needs: how it reads Chat (portrait_get paced at `--rate`, several
/// calls in flight, as `--changes-only` reads).
pub struct Verifier {
    pub chat: ChatReads,
}

impl Verifier {
    /// Compares Chat with the CSV. `sample`: check about this many users, chosen by a hash of
    /// the UserID (the same users every time). Invalid rows go to `failures_path`.
    pub async fn run(
        &self,
        input: &InputOptions,
        rules: RowRules,
        sample: Option<u64>,
        diff_path: &Path,
        failures_path: &Path,
    ) -> anyhow::Result<Summary> {
        let rows = Rows::open(input)?;
        let mapper = RowMapper::new(rows.columns().clone(), rules);
        let findings = Survey::default().read_all(input, &mapper)?.finish(input)?;
        let mut failures = FailureWriter::lazy(failures_path, mapper.columns(), input.delimiter)?;
        let mut diff = DiffWriter::new(diff_path)?;
        let mut warnings = RowWarnings::default();
        let mut report = Summary::of(Kind::Verify);
        report.count_read(findings.rows);
        let total = findings.rows;
        let keep = move |user: &str| match sample {
            Some(n) if total > 0 && n < total => {
                (xxh3_64(user.as_bytes()) % 1_000_000) < n * 1_000_000 / total
            }
            _ => true,
        };
        let reads = self.chat.reads(&mapper);
        let decider = Decider::new(mapper, findings.repeated, Known::default());
        check_rows(rows, decider, reads, keep, |row| {
            match row {
                Checked::Invalid {
                    record,
                    line,
                    violations,
                    superseded,
                } => {
                    report.count(RowFate::Invalid(&violations));
                    warnings.invalid(line, &violations);
                    let failure = Failure {
                        superseded,
                        ..failure_from(&violations)
                    };
                    failures.write(&record, line, &failure, input.delimiter)?;
                }
                Checked::Skipped => report.count(RowFate::Skipped),
                Checked::Unsampled => {}
                Checked::Superseded => report.count(RowFate::Superseded),
                Checked::Compared { user, compared } => {
                    let expected = &compared.expected;
                    let values = expected.len() as u64;
                    match compared.outcome {
                        Comparison::Same => {
                            report.count_comparison(Found::Same { values }, 0);
                        }
                        Comparison::Differs(differences) => {
                            let mut tags = Vec::new();
                            for difference in differences {
                                if let Some(item) = expected.get(difference.index) {
                                    let actual = describe_actual(difference.actual.as_ref());
                                    diff.write(&user, &item.tag, &item.value, &actual)?;
                                    tags.push(item.tag.as_str());
                                }
                            }
                            report.count_comparison(
                                Found::Differs {
                                    values,
                                    tags: &tags,
                                },
                                0,
                            );
                        }
                        Comparison::NotAnAccount => {
                            report.count_comparison(Found::NotAnAccount, 0);
                            for item in expected {
                                diff.write(&user, &item.tag, &item.value, "(account missing)")?;
                            }
                        }
                        Comparison::NotCompared(why) => {
                            if report.compared.as_ref().is_none_or(|c| c.not_compared == 0) {
                                tracing::warn!("user {user} could not be read: {why}");
                            }
                            report.count_comparison(Found::NotCompared, 0);
                        }
                    }
                }
            }
            Ok(())
        })
        .await?;
        if let Some(why) = self.chat.fatal() {
            anyhow::bail!("{why}");
        }
        self.chat.count_reads(&mut report);
        report.diff_csv = diff.finish()?;
        report.failure_csv = failures.finish()?;
        Ok(report)
    }
}

/// The diff CSV: `UserID,Tag,Expected,Actual`, created only when there is a difference.
/// `import --dry-run --changes-only` writes its plan in the same form.
pub struct DiffWriter {
    path: PathBuf,
    writer: Option<csv::Writer<std::fs::File>>,
}

impl DiffWriter {
    pub fn new(path: &Path) -> anyhow::Result<DiffWriter> {
        // A stale diff from an earlier run must not be mistaken for this one's.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        Ok(DiffWriter {
            path: path.to_path_buf(),
            writer: None,
        })
    }

    pub fn write(
        &mut self,
        user: &str,
        tag: &str,
        expected: &serde_json::Value,
        actual: &str,
    ) -> anyhow::Result<()> {
        if self.writer.is_none() {
            let mut writer = csv::Writer::from_writer(crate::fsutil::create_private(&self.path)?);
            writer.write_record(["UserID", "Tag", "Expected", "Actual"])?;
            self.writer = Some(writer);
        }
        if let Some(writer) = &mut self.writer {
            writer.write_record([user, tag, &expected.to_string(), actual])?;
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<Option<PathBuf>> {
        match self.writer {
            Some(mut writer) => {
                writer.flush()?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

/// The default diff path: `users.csv` → `users.diff.csv`.
pub fn default_diff_path(input: &Path) -> PathBuf {
    crate::fsutil::beside(input, ".diff.csv")
}
