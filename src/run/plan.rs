//! The plan step of an import: before the first row is sent, one place decides what the run
//! needs to know — the resume position, the row count, the repeated users, the state's
//! verdicts and the account list — and learns it in as few readings of the input as it can.
//!
//! Readings of the whole input, for any combination of flags:
//! 1. the content hash the journal keys on;
//! 2. the survey (row count, duplicate filter, `--state`'s last rows), made by the account
//!    pass itself under `--create-accounts`;
//! 3. the send, which also makes the exact duplicate count (on `--resume`, the rows before the
//!    resume point are read for their UserIDs only, and only when some user may repeat).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::chat::api::ChatApi;
use crate::chat::client::ChatClient;
use crate::chat::retry::RetryPolicy;
use crate::input::dupes::DuplicateFinder;
use crate::input::reader::{CsvInput, RowPos};
use crate::input::row::RowMapper;
use crate::input::survey::{Survey, SurveyFindings};
use crate::run::accounts::{self, AccountCalls, AccountFailure, CreateAccounts, ImportPass};
use crate::run::job::JobInput;
use crate::run::summary::{ChangesCounts, Summary};
use crate::run::sync::{SyncFilter, SyncRule};
use crate::store::failures::FailureWriter;
use crate::store::journal::{self, Final, Found, Journal, Resume};
use crate::store::lock::RunLocks;
use crate::store::state::StateDb;

/// Everything the send pipeline starts from.
pub struct Plan {
    /// Held until the run ends: no second run writes the journal, the failure CSV or the
    /// state meanwhile.
    pub locks: RunLocks,
    /// The input with its header read, for the reader thread.
    pub input: CsvInput,
    pub mapper: RowMapper,
    /// Data rows in the file.
    pub total: u64,
    /// The counts the run starts from: the rows count, and earlier runs' final rows.
    pub prior: Summary,
    pub reader: ReaderPlan,
    pub failures: FailureWriter,
    pub journal: Journal,
    pub state: Option<StateDb>,
}

/// What the reader needs to know before it starts: where to resume, what is final already,
/// and what the plan found.
#[derive(Default)]
pub struct ReaderPlan {
    /// Every record up to this one is final: seek past it.
    pub checkpoint: Option<RowPos>,
    /// Records after the checkpoint that the journal already has.
    pub journalled: HashSet<u64>,
    /// Lines already in the failure CSV (written just before a crash, not yet journalled).
    pub failed_lines: HashSet<u64>,
    /// Users whose account import failed: their rows are not sent.
    pub failed_accounts: HashMap<String, AccountFailure>,
    /// `--state`: which valid rows need sending.
    pub sync: Option<SyncFilter>,
    /// The survey's duplicate filter, for the exact count of its candidates.
    pub duplicates: Option<DuplicateFinder>,
}

/// How the plan step ended.
pub enum Prepared {
    Ready(Box<Plan>),
    /// A signal arrived during the account pass: nothing was sent; every row not final from an
    /// earlier run is left for the next one.
    Stopped(Box<Summary>),
}

/// Makes the plan. `client` and `stop` serve the account pass of `--create-accounts`.
pub async fn prepare(
    job: &JobInput,
    client: &Arc<ChatClient>,
    retry: RetryPolicy,
    stop: &CancellationToken,
) -> anyhow::Result<Prepared> {
    let mut locks = RunLocks::acquire(&job.outputs())?;
    let input = CsvInput::open(&job.input)?;
    let mapper = RowMapper::new(input.columns.clone(), job.rules);
    let identity = journal::Identity::of(&job.input.path)?;
    let mut readings = vec!["content hash"];
    let resume = journal::open_for_run(&job.journal, &identity, job.journal_policy())?;
    // `--state`: loaded (and locked) before anything is sent, and before the failure CSV and
    // the journal are opened: a state that cannot be used leaves them as they were.
    let (state, state_index) = match &job.state {
        Some(path) => {
            let sdkappid = client.connection().sdkappid;
            let (db, index) =
                StateDb::open_locked(locks.take(path), path, sdkappid, &job.input.path)?;
            (Some(db), Some(index))
        }
        None => (None, None),
    };
    let (failures, failed_lines, journal) = open_outputs(job, &mapper, &identity, resume.as_ref())?;
    // Both `--state` and `--changes-only` send only each user's last valid row.
    let survey = Survey::new(state.is_some() || job.changes_only);
    let (survey, accounts) = match survey_input(job, &mapper, client, retry, stop, survey).await? {
        Surveyed::Read(survey, accounts) => (survey, accounts),
        Surveyed::Stopped => {
            let survey = Survey::new(false).read_all(&job.input, &mapper)?;
            let findings = survey.finish(&job.input)?;
            let mut prior = prior_summary(findings.rows, resume.as_ref());
            prior.stopped = Some(
                "interrupted by a signal while importing accounts; no profile was sent".into(),
            );
            prior.not_attempted = prior.rows.saturating_sub(prior.settled());
            return Ok(Prepared::Stopped(Box::new(prior)));
        }
    };
    readings.push(if accounts.is_some() {
        "survey with the account pass"
    } else {
        "survey"
    });
    let SurveyFindings {
        rows: total,
        finder,
        last_ready,
    } = survey.finish(&job.input)?;
    let mut prior = prior_summary(total, resume.as_ref());
    let mut reader = ReaderPlan {
        failed_lines,
        duplicates: Some(finder),
        ..ReaderPlan::default()
    };
    resume_from(job, resume.as_ref(), total, &mut reader)?;
    if state_index.is_some() || job.changes_only {
        prior.with_state = true;
        reader.sync = Some(SyncFilter {
            // `--changes-only` compares every user with Chat itself, whatever the state says
            // (and so refreshes the state).
            rule: SyncRule {
                full: job.full || job.changes_only,
            },
            index: state_index.unwrap_or_default(),
            last_valid_rows: last_ready.unwrap_or_default(),
        });
    }
    if job.changes_only {
        prior.changes = Some(prior_changes(resume.as_ref()));
    }
    if let Some(pass) = accounts {
        prior.accounts = Some(format!(
            "{} imported or already there, {} failed ({} multiaccount_import calls)",
            pass.accounts - pass.failed.len() as u64,
            pass.failed.len(),
            pass.calls
        ));
        reader.failed_accounts = pass.failed;
    }
    readings.push(if reader.checkpoint.is_some() {
        "send (from the resume point; the rows before it for their UserIDs if any may repeat)"
    } else {
        "send (with the exact duplicate count)"
    });
    tracing::info!("readings of the input: {}", readings.join(", "));
    Ok(Prepared::Ready(Box::new(Plan {
        locks,
        input,
        mapper,
        total,
        prior,
        reader,
        failures,
        journal,
        state,
    })))
}

/// The failure CSV and the journal: new ones, or on `--resume` the earlier run's, appended
/// to (with the lines the failure CSV already holds).
fn open_outputs(
    job: &JobInput,
    mapper: &RowMapper,
    identity: &journal::Identity,
    resume: Option<&Resume>,
) -> anyhow::Result<(FailureWriter, HashSet<u64>, Journal)> {
    let delimiter = job.input.delimiter;
    Ok(match resume {
        Some(resume) => {
            let (failures, failed_lines) =
                FailureWriter::append(&job.failures, mapper.columns(), delimiter)?;
            (
                failures,
                failed_lines,
                Journal::append(&job.journal, resume)?,
            )
        }
        None => (
            FailureWriter::create(&job.failures, mapper.columns(), delimiter)?,
            HashSet::new(),
            Journal::create(&job.journal, identity)?,
        ),
    })
}

/// How the survey reading ended. It lives for a moment in one stack frame, so the large
/// variant is not boxed.
#[allow(clippy::large_enum_variant)]
enum Surveyed {
    /// The survey, and the account pass's outcome under `--create-accounts` batch modes.
    Read(Survey, Option<ImportPass>),
    /// A signal arrived during the account pass.
    Stopped,
}

/// Reads the whole input once for the survey: the account pass of `--create-accounts` does it
/// as it goes, otherwise a plain reading.
async fn survey_input(
    job: &JobInput,
    mapper: &RowMapper,
    client: &Arc<ChatClient>,
    retry: RetryPolicy,
    stop: &CancellationToken,
    survey: Survey,
) -> anyhow::Result<Surveyed> {
    let Some(mode @ (CreateAccounts::Batch | CreateAccounts::AccountList)) = job.create_accounts
    else {
        return Ok(Surveyed::Read(survey.read_all(&job.input, mapper)?, None));
    };
    match import_accounts(job, client, retry, stop, mode, survey).await {
        Ok((pass, survey)) => Ok(Surveyed::Read(survey, Some(pass))),
        // A signal during the account pass: nothing was sent, so the run simply stops (exit
        // 130/143, like a signal later on); a rerun starts with the accounts again.
        Err(_) if stop.is_cancelled() => Ok(Surveyed::Stopped),
        Err(err) => Err(err),
    }
}

/// On `--resume`, where the reader starts and what it skips.
fn resume_from(
    job: &JobInput,
    resume: Option<&Resume>,
    total: u64,
    reader: &mut ReaderPlan,
) -> anyhow::Result<()> {
    let Some(resume) = resume else {
        if job.resume {
            tracing::info!(
                "no journal at {}: starting a fresh run",
                job.journal.display()
            );
        }
        return Ok(());
    };
    tracing::info!(
        "resuming from {}: {} of {total} rows already final",
        job.journal.display(),
        resume.counts.values().sum::<u64>()
    );
    if !job.input.path.exists() {
        anyhow::bail!("the input disappeared");
    }
    reader.checkpoint = resume.checkpoint;
    reader.journalled = journal::skip_set(resume);
    Ok(())
}

/// The counts a run starts from: `rows`, and on `--resume` the earlier runs' final rows.
fn prior_summary(rows: u64, resume: Option<&Resume>) -> Summary {
    let mut prior = Summary {
        rows,
        ..Summary::default()
    };
    let Some(resume) = resume else {
        return prior;
    };
    for (state, count) in &resume.counts {
        match state {
            Final::Ok => prior.ok += count,
            Final::Failed => prior.failed += count,
            Final::Invalid => prior.invalid += count,
            Final::Skipped => prior.skipped += count,
            Final::Unchanged => prior.unchanged += count,
            Final::Superseded => prior.superseded += count,
        }
    }
    for ((state, code), count) in &resume.codes {
        let key = format!("{code} (earlier run)");
        match state {
            Final::Failed => *prior.failed_by_code.entry(key).or_default() += count,
            _ => *prior.invalid_by_rule.entry(key).or_default() += count,
        }
    }
    prior
}

/// `--changes-only`'s counts a run starts from: on `--resume`, what the earlier runs' final rows
/// were found to be (the reads and account checks are this run's own).
fn prior_changes(resume: Option<&Resume>) -> ChangesCounts {
    let Some(resume) = resume else {
        return ChangesCounts::default();
    };
    let rows = |found| resume.found.get(&found).copied().unwrap_or(0);
    ChangesCounts {
        users_compared: rows(Found::InChat) + rows(Found::Updated),
        unchanged_in_chat: rows(Found::InChat),
        updated: rows(Found::Updated),
        not_an_account: rows(Found::NotAnAccount),
        not_compared: rows(Found::NotCompared),
        tags_sent: resume.found_tags,
        ..ChangesCounts::default()
    }
}

/// The batch form of `--create-accounts`: every user of the file is imported with
/// multiaccount_import (100 per call, at most 100 calls a second on its own pacer) before any
/// profile is sent. The pass reads the whole file, so it makes the survey too.
async fn import_accounts(
    job: &JobInput,
    client: &Arc<ChatClient>,
    retry: RetryPolicy,
    stop: &CancellationToken,
    mode: CreateAccounts,
    survey: Survey,
) -> anyhow::Result<(ImportPass, Survey)> {
    // The account commands have a limit of their own, so a pacer of their own.
    let rate = accounts::BATCH_CALLS_PER_SECOND;
    let api = ChatApi::new(client.clone(), rate, retry, stop.clone());
    let calls = AccountCalls { api: &api };
    let started = Instant::now();
    let with_profile = mode == CreateAccounts::AccountList;
    let done = accounts::import_all(&job.input, job.rules, &calls, with_profile, survey).await?;
    tracing::info!(
        "accounts imported in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(done)
}
