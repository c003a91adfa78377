//! The plan step of an import: before the first row is sent, one place decides what the run
//! needs to know — the resume position, the row count, the repeated users, the state's
//! verdicts and the account list — and learns it in as few readings of the input as it can.
//!
//! Readings of the whole input, for any combination of flags:
//! 1. the content hash the journal keys on;
//! 2. the survey (row count, duplicate filter, where each repeated user's rows end);
//! 3. under `--create-accounts` (batch forms), the account pass, each user once;
//! 4. the send, which also makes the exact duplicate count (on `--resume`, the rows before the
//!    resume point are read again only when some user may repeat, to merge its rows).

use std::collections::HashSet;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::input::dupes::DuplicateFinder;
use crate::input::row::RowMapper;
use crate::input::rows::Rows;
use crate::input::source::RowPos;
use crate::input::survey::{RepeatedUsers, Survey, SurveyFindings};
use crate::run::accounts::{self, AccountCalls, CreateAccounts, ImportPass};
use crate::run::decide::{Decider, Known};
use crate::run::fate::RowFate;
use crate::run::handles::Handles;
use crate::run::job::JobInput;
use crate::run::summary::{Comparisons, Kind, Summary};
use crate::run::sync::{SyncFilter, SyncRule};
use crate::store::failures::FailureWriter;
use crate::store::journal::{self, Final, Found, Journal, Resume};
use crate::store::lock::RunLocks;
use crate::store::state::{ForRun, StateDb};

/// Everything the send pipeline starts from.
pub struct Plan {
    /// Held until the run ends: no second run writes the journal, the failure CSV or the
    /// state meanwhile.
    pub locks: RunLocks,
    /// The input with its header read, for the reader thread.
    pub rows: Rows,
    /// Decides each row with what the plan learnt.
    pub decider: Decider,
    /// Data rows in the file.
    pub total: u64,
    /// The counts the run starts from: the rows count, and earlier runs' final rows.
    pub prior: Summary,
    pub reader: ReaderPlan,
    pub failures: FailureWriter,
    pub journal: Journal,
    pub state: Option<StateDb>,
    /// The run continues an earlier one's journal (`--resume` with one to continue).
    pub resumed: bool,
}

/// What the reader needs to know before it starts: where to resume, what is final already,
/// and what the plan found.
#[derive(Default)]
pub struct ReaderPlan {
    /// Every record up to this one is final: seek past it.
    pub checkpoint: Option<RowPos>,
    /// Records after the checkpoint that the journal already has.
    pub journalled: HashSet<u64>,
    /// The survey's duplicate filter, for the exact count of its candidates.
    pub duplicates: Option<DuplicateFinder>,
    /// `--limit`: users sent at most; the rows of the others stay pending.
    pub limit: Option<u64>,
}

/// How the plan step ended.
pub enum Prepared {
    Ready(Box<Plan>),
    /// A signal arrived during the account pass: nothing was sent; every row not final from an
    /// earlier run is left for the next one.
    Stopped(Box<Summary>),
    /// A guard refused the input (empty, too few rows, shrunk since the last run): nothing was
    /// sent, and the last run's failure CSV and journal are as they were.
    Refused(Box<Refusal>),
}

/// A guard's refusal of the input.
pub struct Refusal {
    pub summary: Summary,
    pub why: String,
    /// `--state`, to record the refused run in.
    pub state: Option<StateDb>,
}

/// Makes the plan. `handles` serve the account pass of `--create-accounts`; `stop` is the
/// signal's.
pub async fn prepare(
    job: &JobInput,
    handles: &Handles,
    stop: &CancellationToken,
) -> anyhow::Result<Prepared> {
    let mut locks = RunLocks::acquire(&job.outputs())?;
    let rows = Rows::open(&job.input)?;
    let mapper = RowMapper::new(rows.columns().clone(), job.rules);
    let identity = journal::Identity::of(&job.input.path)?;
    let mut readings = vec!["content hash", "survey"];
    let resume = journal::open_for_run(&job.journal, &identity, job.journal_policy())?;
    // `--state`: loaded (and locked) before anything is sent, and before the failure CSV and
    // the journal are opened: a state that cannot be used leaves them as they were.
    let (state, state_index) = match &job.state {
        Some(path) => {
            let sdkappid = handles.sets()?.client().connection().sdkappid;
            let run = job.run_id.map(|id| ForRun {
                id,
                input: &identity,
            });
            let (db, index) = StateDb::open_locked(locks.take(path), path, sdkappid, run)?;
            (Some(db), Some(index))
        }
        None => (None, None),
    };
    // The failure CSV and the journal are opened only after the account pass, which can stop
    // the run (a wrong admin, a signal): the last run's files stay as they were. Whether they
    // can be written is known before anything is sent.
    crate::fsutil::check_can_create(&job.failures, "--failures")?;
    crate::fsutil::check_can_create(&job.journal, "--journal")?;
    let SurveyFindings {
        rows: total,
        finder,
        repeated,
    } = Survey::warning()
        .read_all(&job.input, &mapper)?
        .finish(&job.input)?;
    let mut prior = prior_summary(total, resume.as_ref());
    if let Some(why) = refusal(job, total, state.as_ref())? {
        prior.refused = Some(why.clone());
        prior.count_many(
            RowFate::NotAttempted,
            prior.rows.saturating_sub(prior.settled()),
        );
        return Ok(Prepared::Refused(Box::new(Refusal {
            summary: prior,
            why,
            state,
        })));
    }
    let accounts = match account_pass(job, handles, &repeated, stop).await? {
        Some(AccountPass::Stopped) => {
            prior.stopped = Some(
                "interrupted by a signal while importing accounts; no profile was sent".into(),
            );
            prior.count_many(
                RowFate::NotAttempted,
                prior.rows.saturating_sub(prior.settled()),
            );
            return Ok(Prepared::Stopped(Box::new(prior)));
        }
        Some(AccountPass::Done(pass)) => {
            readings.push("account pass");
            Some(pass)
        }
        None => None,
    };
    let (failures, failed_lines, journal) = open_outputs(job, &mapper, &identity, resume.as_ref())?;
    let mut reader = ReaderPlan {
        duplicates: Some(finder),
        limit: job.guards.limit,
        ..ReaderPlan::default()
    };
    resume_from(job, resume.as_ref(), total, &mut reader)?;
    let known = known(job, failed_lines, state_index, accounts, &mut prior);
    if job.changes_only {
        prior.count_earlier_comparisons(prior_changes(resume.as_ref()));
    }
    readings.push(if reader.checkpoint.is_some() {
        "send (from the resume point; the rows before it again if any user may repeat)"
    } else {
        "send (with the exact duplicate count)"
    });
    tracing::info!("readings of the input: {}", readings.join(", "));
    Ok(Prepared::Ready(Box::new(Plan {
        locks,
        rows,
        decider: Decider::new(mapper, repeated, known),
        total,
        prior,
        reader,
        failures,
        journal,
        state,
        resumed: resume.is_some(),
    })))
}

/// Why the guards refuse an input of `total` rows (`--min-rows`, `--max-shrink` against the
/// last run in the state, a header-only file), if they do.
fn refusal(job: &JobInput, total: u64, state: Option<&StateDb>) -> anyhow::Result<Option<String>> {
    let last_rows = match state {
        Some(db) => db.last_run_rows()?,
        None => None,
    };
    Ok(job.guards.refusal(total, last_rows))
}

/// What the decisions depend on besides the rows (`run::decide`): the lines already in the
/// failure CSV, the sync rule with the state, the users whose account import failed. Notes in
/// `prior` what the run starts from.
fn known(
    job: &JobInput,
    failed_lines: HashSet<u64>,
    state_index: Option<crate::store::state::StateIndex>,
    accounts: Option<ImportPass>,
    prior: &mut Summary,
) -> Known {
    let mut known = Known {
        failed_lines,
        ..Known::default()
    };
    if state_index.is_some() || job.changes_only {
        prior.with_state = true;
        known.sync = Some(SyncFilter {
            // `--changes-only` compares every user with Chat itself, whatever the state says
            // (and so refreshes the state).
            rule: SyncRule {
                full: job.full || job.changes_only,
            },
            index: state_index.unwrap_or_default(),
        });
    }
    if let (Some(pass), Some(form)) = (accounts, job.create_accounts) {
        prior.accounts = Some(crate::run::summary::AccountsReport {
            form: form.name(),
            command: "multiaccount_import",
            calls: pass.calls,
            users: pass.accounts,
            failed: pass.failed.len() as u64,
            in_requests: 0,
        });
        known.failed_accounts = pass.failed;
    }
    known
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
            FailureWriter::fresh(&job.failures, mapper.columns(), delimiter)?,
            HashSet::new(),
            Journal::create(&job.journal, identity)?,
        ),
    })
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
    let mut prior = Summary::of(Kind::Import);
    prior.count_read(rows);
    let Some(resume) = resume else {
        return prior;
    };
    let mut counted: std::collections::BTreeMap<Final, u64> = Default::default();
    for ((state, code), count) in &resume.codes {
        prior.count_journalled(*state, code, *count);
        *counted.entry(*state).or_default() += count;
    }
    for (state, count) in &resume.counts {
        let rest = count.saturating_sub(counted.get(state).copied().unwrap_or(0));
        prior.count_journalled(*state, "", rest);
    }
    prior
}

/// `--changes-only`'s counts a run starts from: on `--resume`, what the earlier runs' final rows
/// were found to be (the reads and account checks are this run's own).
fn prior_changes(resume: Option<&Resume>) -> Comparisons {
    let Some(resume) = resume else {
        return Comparisons::default();
    };
    let rows = |found| resume.found.get(&found).copied().unwrap_or(0);
    Comparisons {
        users_compared: rows(Found::InChat) + rows(Found::Updated),
        unchanged_in_chat: rows(Found::InChat),
        updated: rows(Found::Updated),
        not_an_account: rows(Found::NotAnAccount),
        not_compared: rows(Found::NotCompared),
        tags_sent: resume.found_tags,
        ..Comparisons::default()
    }
}

/// How the account pass ended.
enum AccountPass {
    Done(ImportPass),
    /// A signal arrived during it: nothing was sent, so the run simply stops (exit 130/143,
    /// like a signal later on); a rerun starts with the accounts again.
    Stopped,
}

/// The account pass of `--create-accounts` in its batch forms; None for other runs.
async fn account_pass(
    job: &JobInput,
    handles: &Handles,
    repeated: &RepeatedUsers,
    stop: &CancellationToken,
) -> anyhow::Result<Option<AccountPass>> {
    let Some(mode @ (CreateAccounts::Batch | CreateAccounts::AccountList)) = job.create_accounts
    else {
        return Ok(None);
    };
    match import_accounts(job, handles, mode, repeated).await {
        Ok(pass) => Ok(Some(AccountPass::Done(pass))),
        Err(_) if stop.is_cancelled() => Ok(Some(AccountPass::Stopped)),
        Err(err) => Err(err),
    }
}

/// The batch form of `--create-accounts`: every user of the file is imported with
/// multiaccount_import (100 per call, at most 100 calls a second on its own pacer) before any
/// profile is sent, each user once, with its rows merged (AccountList's Nick and FaceUrl).
async fn import_accounts(
    job: &JobInput,
    handles: &Handles,
    mode: CreateAccounts,
    repeated: &RepeatedUsers,
) -> anyhow::Result<ImportPass> {
    let calls = AccountCalls {
        api: handles.account_imports()?,
    };
    let started = Instant::now();
    let with_profile = mode == CreateAccounts::AccountList;
    let pass = accounts::import_all(&job.input, job.rules, repeated, &calls, with_profile).await?;
    tracing::info!(
        "accounts imported in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(pass)
}
