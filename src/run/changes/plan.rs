//! `import --dry-run --changes-only`: the plan. Every row is read, validated and compared with
//! what Chat holds exactly as the real run does it (the same last-row rule, the same reads
//! ahead, the same comparison), and nothing is sent. It counts the users that would be created,
//! updated (per tag), left unchanged, are invalid or are missing an account, and writes each
//! value that would be sent to a plan CSV in verify's diff form (`UserID,Tag,Expected,Actual`).

use std::path::{Path, PathBuf};

use super::tally::CheckTally;
use super::{check_rows, ChatReads, OnlyIfEmpty};
use crate::input::row::RowMapper;
use crate::input::rows::Rows;
use crate::input::survey::Survey;
use crate::run::decide::{Decider, Known};
use crate::run::job::JobInput;
use crate::run::progress::ProgressOptions;
use crate::run::summary::{Kind, Summary};

/// The default plan CSV: `users.csv` → `users.plan.csv`.
pub fn default_path(input: &Path) -> PathBuf {
    crate::fsutil::beside(input, ".plan.csv")
}

/// Makes the plan with `reads` (`--read-rate`).
pub struct Planner {
    pub chat: ChatReads,
    /// How its progress is shown (as an import's).
    pub progress: ProgressOptions,
}

impl Planner {
    /// Reads, validates and compares every row (each user once, its rows merged, as the real
    /// run sends it); writes the plan CSV to `plan_path` and invalid rows to the job's failure
    /// CSV.
    pub async fn run(
        &self,
        job: &JobInput,
        plan_path: &Path,
        stop: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Summary> {
        let rows = Rows::open(&job.input)?;
        let mapper = RowMapper::new(rows.columns().clone(), job.rules);
        let findings = Survey::warning()
            .read_all(&job.input, &mapper)?
            .finish(&job.input)?;
        let mut report = Summary::of(Kind::Plan);
        report.count_read(findings.rows);
        report.creates_accounts = job.create_accounts.is_some();
        let mut tally = CheckTally::new(report, job, &mapper, plan_path, self.progress)?;
        let mut reads = self.chat.reads(&mapper);
        reads.only_if_empty = std::sync::Arc::new(OnlyIfEmpty::of(job.only_if_empty.as_ref()));
        let decider = Decider::new(mapper, findings.repeated, Known::default());
        let whole = check_rows(rows, decider, reads, |_| true, stop, &mut tally).await?;
        if let Some(why) = self.chat.fatal() {
            anyhow::bail!("{why}");
        }
        if !whole {
            tally.report.stopped =
                Some("interrupted: the plan covers the rows up to here only".into());
        }
        self.chat.count_reads(&mut tally.report);
        tally.finish()
    }
}
