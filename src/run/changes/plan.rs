//! `import --dry-run --changes-only`: the plan. Every row is read, validated and compared with
//! what Chat holds exactly as the real run does it (the same last-row rule, the same reads
//! ahead, the same comparison), and nothing is sent. It counts the users that would be created,
//! updated (per tag), left unchanged, are invalid or are missing an account, and writes each
//! value that would be sent to a plan CSV in verify's diff form (`UserID,Tag,Expected,Actual`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use csv::ByteRecord;
use tokio::sync::mpsc;

use super::ahead::{read_ahead, Ahead};
use super::{Compared, Comparison, Reads};
use crate::chat::api::ChatApi;
use crate::input::reader::CsvInput;
use crate::input::row::{failure_from, unterminated_quote, RowMapper, Verdict, Violation};
use crate::input::survey::Survey;
use crate::run::job::JobInput;
use crate::run::row_warnings::RowWarnings;
use crate::run::sync::{SyncFilter, SyncRule, SyncVerdict};
use crate::run::verify::{describe_actual, DiffWriter};
use crate::store::failures::FailureWriter;

/// The default plan CSV: `users.csv` → `users.plan.csv`.
pub fn default_path(input: &Path) -> PathBuf {
    crate::fsutil::beside(input, ".plan.csv")
}

/// What the plan found.
#[derive(Debug, Default, Clone)]
pub struct PlanReport {
    pub rows: u64,
    /// Users Chat does not know, imported first by `--create-accounts`, then sent whole.
    pub create: u64,
    /// Users sent with only the tags that differ.
    pub update: u64,
    /// The differing tags: tag → users.
    pub update_tags: BTreeMap<String, u64>,
    /// Users whose every value Chat holds: not sent.
    pub unchanged: u64,
    /// Users Chat does not know, without `--create-accounts`: sent whole, failing with 40003.
    pub missing_accounts: u64,
    /// Users whose read failed for good: sent whole.
    pub not_compared: u64,
    pub invalid: u64,
    /// Rows with nothing to set.
    pub skipped: u64,
    /// Rows whose user has a later valid row, which counts instead.
    pub superseded: u64,
    /// portrait_get requests, retries included.
    pub read_calls: u64,
    pub plan_csv: Option<PathBuf>,
    pub failure_csv: Option<PathBuf>,
}

impl PlanReport {
    /// portrait_set calls the real run would make first (retries aside).
    pub fn would_send(&self) -> u64 {
        self.create + self.update + self.missing_accounts + self.not_compared
    }

    /// True when every row is valid, every user is an account (or will be) and was read.
    pub fn passed(&self) -> bool {
        self.invalid == 0 && self.missing_accounts == 0 && self.not_compared == 0
    }

    pub fn to_json(&self, exit_code: u8) -> serde_json::Value {
        serde_json::json!({
            "command": "import",
            "dry_run": true,
            "changes_only": true,
            "exit_code": exit_code,
            "rows": self.rows,
            "create": self.create,
            "update": self.update,
            "update_by_tag": self.update_tags,
            "unchanged": self.unchanged,
            "missing_accounts": self.missing_accounts,
            "not_compared": self.not_compared,
            "invalid": self.invalid,
            "skipped": self.skipped,
            "superseded": self.superseded,
            "would_send": self.would_send(),
            "read_calls": self.read_calls,
            "plan_csv": self.plan_csv,
            "failure_csv": self.failure_csv,
        })
    }
}

impl std::fmt::Display for PlanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>, label: &str, n: u64, note: &str| {
            let line = format!("{label:<17}{n:>10}   {note}");
            writeln!(f, "{}", line.trim_end())
        };
        writeln!(f, "── plan: import --changes-only (nothing sent) ──")?;
        line(f, "rows read", self.rows, "")?;
        line(
            f,
            "to create",
            self.create,
            "(not accounts yet: --create-accounts imports them, then they are sent whole)",
        )?;
        line(
            f,
            "to update",
            self.update,
            "(users; only the tags that differ are sent)",
        )?;
        for (tag, count) in &self.update_tags {
            writeln!(f, "  {tag:<28} {count:>6}")?;
        }
        line(
            f,
            "unchanged",
            self.unchanged,
            "(Chat holds every value: not sent)",
        )?;
        line(
            f,
            "missing account",
            self.missing_accounts,
            "(not Chat accounts: sent whole, they fail with 40003; see --create-accounts)",
        )?;
        line(
            f,
            "not compared",
            self.not_compared,
            "(read failed: sent whole)",
        )?;
        line(f, "invalid", self.invalid, "")?;
        line(f, "skipped", self.skipped, "(nothing to set)")?;
        line(
            f,
            "superseded",
            self.superseded,
            "(a later row for the same user counts)",
        )?;
        line(f, "would send", self.would_send(), "portrait_set calls")?;
        line(f, "read calls", self.read_calls, "portrait_get")?;
        match &self.plan_csv {
            Some(path) => writeln!(f, "plan CSV         {}", path.display())?,
            None => writeln!(f, "plan CSV         none (nothing to send)")?,
        }
        match &self.failure_csv {
            Some(path) => writeln!(f, "failure CSV      {}", path.display()),
            None => writeln!(f, "failure CSV      none (every row is valid)"),
        }
    }
}

/// A row on its way through the plan.
enum PlanRow {
    Compare {
        user: String,
        line: u64,
    },
    Invalid {
        record: ByteRecord,
        line: u64,
        violations: Vec<Violation>,
    },
    Skipped,
    Superseded,
}

/// Makes the plan with reads through `api` (`--read-rate`), `in_flight` at once.
pub struct Planner {
    pub api: Arc<ChatApi>,
    /// account_check, for reads refused whole with 40003 (see `ahead`).
    pub account_check: Arc<ChatApi>,
    pub in_flight: usize,
}

impl Planner {
    /// Reads, validates and compares every row; writes the plan CSV to `plan_path` and invalid
    /// rows to the job's failure CSV.
    pub async fn run(&self, job: &JobInput, plan_path: &Path) -> anyhow::Result<PlanReport> {
        let input = CsvInput::open(&job.input)?;
        let mapper = RowMapper::new(input.columns.clone(), job.rules);
        let survey = Survey::new(true).read_all(&job.input, &mapper)?;
        let findings = survey.finish(&job.input)?;
        let sync = SyncFilter {
            rule: SyncRule { full: true },
            index: Default::default(),
            last_valid_rows: findings.last_ready.unwrap_or_default(),
        };
        let failures = FailureWriter::lazy(&job.failures, mapper.columns(), job.input.delimiter)?;
        let fatal: Arc<Mutex<Option<String>>> = Arc::default();
        let reads = Reads {
            api: Arc::clone(&self.api),
            tags: Arc::new(super::tags_of(&mapper)),
            in_flight: self.in_flight,
            account_check: Some(Arc::clone(&self.account_check)),
            on_fatal: {
                let (fatal, stop) = (Arc::clone(&fatal), self.api.stop().clone());
                Arc::new(move |why| {
                    fatal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(why);
                    stop.cancel();
                })
            },
        };
        let (rows_tx, rows_rx) = mpsc::channel(1024);
        let (out_tx, out_rx) = mpsc::channel(1024);
        let reader = std::thread::Builder::new()
            .name("csv-plan-reader".into())
            .spawn(move || read_rows(input, mapper, sync, rows_tx))?;
        let ahead = tokio::spawn(read_ahead(
            rows_rx,
            out_tx,
            reads,
            |row| row,
            |row, c| (row, c),
        ));
        let mut tally = Tally {
            report: PlanReport {
                rows: findings.rows,
                ..PlanReport::default()
            },
            diff: DiffWriter::new(plan_path)?,
            failures,
            warnings: RowWarnings::default(),
            create_accounts: job.create_accounts.is_some(),
            delimiter: job.input.delimiter,
        };
        tally.take_all(out_rx).await?;
        ahead.await?;
        match reader.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("the CSV reader thread panicked"),
        }
        if let Some(why) = fatal.lock().unwrap_or_else(|e| e.into_inner()).take() {
            anyhow::bail!("{why}");
        }
        let mut report = tally.report;
        report.read_calls = self.api.requests();
        report.plan_csv = tally.diff.finish()?;
        report.failure_csv = tally.failures.finish()?;
        Ok(report)
    }
}

/// The reader thread: every record, judged as the real run's reader judges it.
fn read_rows(
    mut input: CsvInput,
    mapper: RowMapper,
    sync: SyncFilter,
    rows: mpsc::Sender<Ahead<PlanRow>>,
) -> anyhow::Result<()> {
    let mut record = ByteRecord::new();
    let mut body = Vec::new();
    let mut index = 0u64;
    while let Some(line) = input.read(&mut record)? {
        let row = index;
        index += 1;
        let verdict = if input.unterminated() {
            Verdict::Invalid(vec![unterminated_quote(line)])
        } else {
            mapper.map(&record, &mut body)
        };
        let next = match verdict {
            Verdict::Invalid(violations) => Ahead::Pass(PlanRow::Invalid {
                record: record.clone(),
                line,
                violations,
            }),
            Verdict::Skipped { .. } => Ahead::Pass(PlanRow::Skipped),
            Verdict::Ready { user_id, .. } => {
                let hash = crate::store::state::body_hash(&body);
                match (sync.judge(user_id, row, hash), super::parse_body(&body)) {
                    (SyncVerdict::Send, Some(parsed)) => Ahead::Compare {
                        item: PlanRow::Compare {
                            user: parsed.user.clone(),
                            line,
                        },
                        user: parsed.user,
                        expected: parsed.items,
                    },
                    _ => Ahead::Pass(PlanRow::Superseded),
                }
            }
        };
        if rows.blocking_send(next).is_err() {
            anyhow::bail!("the plan stopped before the whole file was read");
        }
    }
    Ok(())
}

/// The plan's counts and files, row by row in file order.
struct Tally {
    report: PlanReport,
    diff: DiffWriter,
    failures: FailureWriter,
    warnings: RowWarnings,
    create_accounts: bool,
    delimiter: u8,
}

impl Tally {
    async fn take_all(
        &mut self,
        mut rows: mpsc::Receiver<(PlanRow, Option<Compared>)>,
    ) -> anyhow::Result<()> {
        while let Some((row, compared)) = rows.recv().await {
            self.take(row, compared)?;
        }
        Ok(())
    }

    fn take(&mut self, row: PlanRow, compared: Option<Compared>) -> anyhow::Result<()> {
        let report = &mut self.report;
        let (user, compared) = match (row, compared) {
            (PlanRow::Compare { user, .. }, Some(compared)) => (user, compared),
            (PlanRow::Compare { user, line }, None) => {
                anyhow::bail!("line {line}: user {user} was not compared")
            }
            (PlanRow::Skipped, _) => {
                report.skipped += 1;
                return Ok(());
            }
            (PlanRow::Superseded, _) => {
                report.superseded += 1;
                return Ok(());
            }
            (
                PlanRow::Invalid {
                    record,
                    line,
                    violations,
                },
                _,
            ) => {
                report.invalid += 1;
                self.warnings.invalid(line, &violations);
                let failure = failure_from(&violations);
                return self.failures.write(&record, line, &failure, self.delimiter);
            }
        };
        let whole = match compared.outcome {
            Comparison::Same => {
                report.unchanged += 1;
                return Ok(());
            }
            Comparison::Differs(differences) => {
                report.update += 1;
                for difference in differences {
                    let Some(item) = compared.expected.get(difference.index) else {
                        continue;
                    };
                    *report.update_tags.entry(item.tag.clone()).or_default() += 1;
                    let actual = describe_actual(difference.actual.as_ref());
                    self.diff.write(&user, &item.tag, &item.value, &actual)?;
                }
                return Ok(());
            }
            Comparison::NotAnAccount if self.create_accounts => {
                report.create += 1;
                "(account missing: created first)"
            }
            Comparison::NotAnAccount => {
                report.missing_accounts += 1;
                "(account missing)"
            }
            Comparison::NotCompared(_) => {
                report.not_compared += 1;
                "(not read)"
            }
        };
        for item in &compared.expected {
            self.diff.write(&user, &item.tag, &item.value, whole)?;
        }
        Ok(())
    }
}
