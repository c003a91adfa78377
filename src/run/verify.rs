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

use tokio_util::sync::CancellationToken;

use crate::input::row::RowMapper;
use crate::input::rows::Rows;
use crate::input::survey::Survey;
use crate::run::changes::tally::CheckTally;
use crate::run::changes::{check_rows, ChatReads};
use crate::run::decide::{Decider, Known};
use crate::run::job::JobInput;
use crate::run::progress::ProgressOptions;
use crate::run::summary::{Kind, Summary};

/// Everything a verify run needs: how it reads Chat (portrait_get paced at `--rate`, several
/// calls in flight, as `--changes-only` reads).
pub struct Verifier {
    pub chat: ChatReads,
    /// How its progress is shown (as an import's).
    pub progress: ProgressOptions,
}

impl Verifier {
    /// Compares Chat with the CSV of `job`. `sample`: check about this many users, chosen by
    /// a hash of the UserID (the same users every time). Invalid rows go to the job's failure
    /// CSV, differences to `diff_path`. `stop` (a signal) ends it early, with what it found.
    pub async fn run(
        &self,
        job: &JobInput,
        sample: Option<u64>,
        diff_path: &Path,
        stop: &CancellationToken,
    ) -> anyhow::Result<Summary> {
        let input = &job.input;
        let rows = Rows::open(input)?;
        let mapper = RowMapper::new(rows.columns().clone(), job.rules);
        let findings = Survey::warning().read_all(input, &mapper)?.finish(input)?;
        let mut report = Summary::of(Kind::Verify);
        report.count_read(findings.rows);
        let mut tally = CheckTally::new(report, job, &mapper, diff_path, self.progress)?;
        let total = findings.rows;
        let keep = move |user: &str| match sample {
            Some(n) if total > 0 && n < total => {
                (xxh3_64(user.as_bytes()) % 1_000_000) < n * 1_000_000 / total
            }
            _ => true,
        };
        let reads = self.chat.reads(&mapper);
        let decider = Decider::new(mapper, findings.repeated, Known::default());
        let whole = check_rows(rows, decider, reads, keep, stop, &mut tally).await?;
        if let Some(why) = self.chat.fatal() {
            anyhow::bail!("{why}");
        }
        if !whole {
            tally.report.stopped = Some(
                "interrupted: the users up to here were checked, the diff CSV has what they \
                 showed; run verify again to check them all"
                    .into(),
            );
        }
        self.chat.count_reads(&mut tally.report);
        tally.finish()
    }
}

/// The default diff path: `users.csv` → `users.diff.csv`.
pub fn default_diff_path(input: &Path) -> PathBuf {
    crate::fsutil::beside(input, ".diff.csv")
}
