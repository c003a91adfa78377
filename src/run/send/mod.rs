//! The real import: a reader thread maps rows (with the dry run's code), a dispatcher keeps each
//! user's rows in file order and never two in flight, a bounded pool of workers sends them
//! through the shared pacer with retries, and one collector owns the counters, the progress
//! display and the failure CSV.
//!
//! ```text
//! reader thread ──events──▶ [compare] ──▶ dispatcher ──jobs──▶ workers (N) ──reports──▶ collector
//!                                            ▲                      │
//!                                            └──── user released ───┘
//! ```
//! `--changes-only` adds the compare stage (`changes`): it reads the users' values ahead of the
//! sends and lets each row on in file order, unchanged in Chat or with only its differing tags.
//! Every channel is bounded except "user released", which holds at most one message per job in
//! flight, so memory stays flat at any file size.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use csv::ByteRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chat::client::ChatClient;
use crate::chat::retry::RetryPolicy;
use crate::input::dupes::Duplicates;
use crate::input::row::Violation;
use crate::input::rows::Rows;
use crate::input::source::RowPos;
use crate::outcome::Failure;
use crate::run::accounts::CreateAccounts;
use crate::run::changes::OnlyIfEmpty;
use crate::run::decide::Decider;
use crate::run::handles::{Handles, Use};
use crate::run::job::JobInput;
use crate::run::plan::{self, Plan, Prepared, ReaderPlan};
use crate::run::progress::{Progress, ProgressOptions};
use crate::run::row_warnings::RowWarnings;
use crate::run::summary::Summary;
use crate::store::changes_log::ChangeLog;
use crate::store::journal::{Final, Found};
use crate::store::state::StateDb;

mod batch;
mod changes;
mod collector;
mod dispatch;
mod guards;
mod readback;
mod reader;
mod split;
mod worker;

use batch::BatchPath;
use collector::Collector;
use worker::Shared;

/// How rows are sent.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// Ceiling on requests in any one-second window.
    pub rate: u32,
    /// Workers, i.e. requests in flight at most.
    pub concurrency: usize,
    /// How each row's call is retried.
    pub retry: RetryPolicy,
    /// Show a bar if stderr is a terminal.
    pub show_progress: bool,
    pub quiet: bool,
    pub progress_interval: Duration,
    /// Stop the job once this many rows failed or were invalid.
    pub max_errors: Option<u64>,
    /// `--changes-only`: ceiling on portrait_get calls per second (a pacer of their own).
    pub read_rate: u32,
    /// What shows the run's counters while it goes (`--metrics-file`).
    pub live: crate::run::sinks::LiveSinks,
}

impl SendSettings {
    /// How the run's progress is shown.
    pub fn progress(&self) -> ProgressOptions {
        ProgressOptions {
            show: self.show_progress,
            quiet: self.quiet,
            interval: self.progress_interval,
        }
    }

    /// Little's law: in-flight = rate × latency. Sized for 1 s latencies with 25 % headroom,
    /// up to 4,096 (3,000/s at 600 ms needs 1,800 in flight).
    pub fn default_concurrency(rate: u32) -> usize {
        ((rate as usize * 5).div_ceil(4)).clamp(4, 4096)
    }
}

/// How a send run ended, beyond its counters.
pub struct SendReport {
    pub summary: Summary,
    /// `--state`: still open and locked, so the caller records how the run ended.
    pub state: Option<StateDb>,
    /// Set when a job-wide error stopped the run.
    pub fatal: Option<String>,
    /// Set when a guard stopped the run because too many rows failed (`--max-error-rate`).
    pub halted: Option<String>,
    /// Set when a guard refused to send (an empty or shrunken input): nothing was sent.
    pub refused: Option<String>,
    /// Set when `stop` was cancelled from outside (a signal).
    pub interrupted: bool,
}

impl SendReport {
    /// The report of a run that ended by itself with `summary`.
    fn of(summary: Summary) -> SendReport {
        SendReport {
            summary,
            state: None,
            fatal: None,
            halted: None,
            refused: None,
            interrupted: false,
        }
    }
}

/// Rows waiting behind an in-flight row of the same user; beyond this the reader pauses.
const MAX_DEFERRED: usize = 50_000;
/// Rows that fail on transport errors in a row, with no request getting through between, before
/// the job concludes Chat is unreachable and stops.
const UNREACHABLE_AFTER: usize = 50;

/// A valid row on its way to Chat.
struct Job {
    pos: RowPos,
    /// `--state`: the hash of the row's whole portrait_set body (Nick and Image included),
    /// written to the state once Chat accepts it.
    body_hash: u64,
    user_id: String,
    /// The portrait_set body; None when the row has nothing for portrait_set (with
    /// `--batch-nick-image`, a row with only Nick and/or Image).
    body: Option<Bytes>,
    /// `--batch-nick-image`: the Nick and Image that go through the batch path.
    nick_image: Option<crate::chat::accounts::AccountEntry>,
    record: ByteRecord,
    /// The tags `body` sets.
    tags: u32,
    /// What `--changes-only` found for the row (None without it), the values it compared and
    /// the tags that differ (the ones `body` sets).
    found: Option<Found>,
    compared_values: u32,
    differing: Vec<String>,
    /// What Chat held for each of `differing` (`--changes-log`'s Before).
    held: Vec<Option<serde_json::Value>>,
    /// `--only-if-empty`: the differing tags not sent, since Chat holds a value.
    kept: Vec<String>,
}

/// What the reader thread produces, in file order.
enum Event {
    Job(Job),
    /// A row to send that `--limit` holds back: it stays pending.
    Held(Job),
    /// A row decided without sending it.
    Local(LocalRow),
}

/// A row whose fate is decided locally; the dispatcher passes it straight to the collector.
enum LocalRow {
    Skipped(RowPos),
    /// `--state`: Chat already holds this row, or a later row of the user counts instead.
    NotNeeded(RowPos, Final),
    /// `--changes-only`: Chat holds every value of the row already (`body_hash`: the row's
    /// whole body, recorded in `--state` as if it had been sent).
    UnchangedInChat {
        pos: RowPos,
        user_id: String,
        body_hash: u64,
        /// The values compared.
        values: u32,
        /// `--only-if-empty`: the differing tags not sent, since Chat holds a value.
        kept: Vec<String>,
    },
    Invalid {
        pos: RowPos,
        record: ByteRecord,
        violations: Vec<Violation>,
        /// Its cells that a later row of the user sends (see `run::decide`).
        superseded: Vec<String>,
    },
    /// A row already in the failure CSV from an interrupted earlier run but not yet journalled.
    AlreadyFailed(RowPos),
    /// A row whose user's account could not be imported (`--create-accounts`).
    AccountFailed {
        pos: RowPos,
        record: ByteRecord,
        failure: Failure,
    },
}

/// What the collector receives.
enum Report {
    Local(LocalRow),
    Finished {
        job: Box<Job>,
        outcome: Outcome,
        requests: u32,
    },
}

enum Outcome {
    Ok,
    Failed(Failure),
    /// Not sent, or its retries were cut short by a stop: still pending.
    NotAttempted,
}

/// Imports every row of the input. `stop` is cancelled from outside on a signal.
pub async fn run(
    job: &JobInput,
    client: Arc<ChatClient>,
    settings: SendSettings,
    stop: CancellationToken,
) -> anyhow::Result<SendReport> {
    let started = Instant::now();
    let internal_stop = stop.child_token();
    let handles = Handles::new(
        &client,
        settings.retry,
        &internal_stop,
        &job_uses(job, &settings),
    );
    let plan = match plan::prepare(job, &handles, &stop).await? {
        Prepared::Ready(plan) => plan,
        Prepared::Stopped(summary) => {
            return Ok(SendReport {
                interrupted: true,
                ..SendReport::of(*summary)
            })
        }
        Prepared::Refused(refusal) => {
            let plan::Refusal {
                summary,
                why,
                state,
            } = *refusal;
            tracing::error!("refusing to send: {why}");
            return Ok(SendReport {
                refused: Some(why),
                state,
                ..SendReport::of(summary)
            });
        }
    };
    let batch = handles
        .batch()
        .map(|(import, check)| BatchPath::start(import, check));
    let reads = match job.changes_only {
        true => Some(worker::ReadApis {
            reads: handles.reads()?.clone(),
            account_checks: handles.account_checks()?.clone(),
        }),
        false => None,
    };
    let shared = Arc::new(Shared {
        every: handles.every(),
        api: handles.sets()?.clone(),
        reads,
        // The batch path's rows wait in workers of their own; portrait_set keeps its limit.
        set_slots: batch
            .as_ref()
            .map(|_| tokio::sync::Semaphore::new(settings.concurrency)),
        batch,
        settings: settings.clone(),
        fatal: Mutex::new(None),
        halted: Mutex::new(None),
        create_accounts: job.create_accounts,
        on_demand: worker::OnDemandAccounts::default(),
        transport_streak: std::sync::atomic::AtomicUsize::new(0),
    });
    let mut report = pipeline(job, *plan, &shared).await?;
    report.summary.elapsed = started.elapsed();
    let taken = |why: &Mutex<Option<String>>| why.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let fatal = taken(&shared.fatal);
    let halted = taken(&shared.halted);
    report.interrupted = stop.is_cancelled() && fatal.is_none() && halted.is_none();
    if let Some(why) = fatal.as_ref().or(halted.as_ref()) {
        report.summary.stopped = Some(why.clone());
    } else if report.interrupted {
        report.summary.stopped = Some("interrupted by a signal".into());
    } else if let (Some(limit), true) = (job.guards.limit, report.summary.not_attempted > 0) {
        report.summary.stopped = Some(format!(
            "--limit {limit}: the first {limit} users were sent, the {} rows after them are \
             pending (--resume, or the next run with --state, sends them)",
            report.summary.not_attempted
        ));
    }
    report.fatal = fatal;
    report.halted = halted;
    Ok(report)
}

/// What an import calls Chat for. Every handle of the job calls the same app, and the spec does
/// not say whether Chat's limits are per API or per app, so `Handles` links them all.
fn job_uses(job: &JobInput, settings: &SendSettings) -> Vec<Use> {
    let mut uses = vec![Use::Sets(settings.rate)];
    if job.changes_only {
        uses.extend([Use::Reads(settings.read_rate), Use::AccountChecks]);
    }
    if matches!(
        job.create_accounts,
        Some(CreateAccounts::Batch | CreateAccounts::AccountList)
    ) {
        uses.push(Use::AccountImports);
    }
    if let Some(batch) = job.batch_nick_image {
        uses.push(Use::Batch(batch.rate));
    }
    uses
}

/// Starts the thread that reads the rows from the plan's position and hands them on.
fn spawn_reader(
    job: &JobInput,
    rows: Rows,
    decider: Decider,
    events: mpsc::Sender<Event>,
    plan: ReaderPlan,
) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<Duplicates>>> {
    let split = job
        .batch_nick_image
        .map(|_| split::NickImageSplit::new(decider.mapper().columns(), job.rules));
    let options = job.input.clone();
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("csv-reader".into())
        .spawn(move || reader::read_rows(rows, &options, decider, split, events, runtime, plan))
}

/// The run's name in the change log: when it started, in UTC.
fn run_started() -> String {
    crate::fsutil::utc_timestamp(std::time::SystemTime::now())
}

/// The requests, throttled answers and pace of every path into the summary.
async fn count_requests(summary: &mut Summary, shared: &Shared) {
    summary.requests = shared.api.requests();
    summary.throttled = shared.api.throttled();
    if let Some(batch) = &shared.batch {
        summary.batch = Some(batch.finish().await);
        summary.requests += batch.requests();
        summary.throttled += batch.throttled();
    }
    let pacer = shared.api.pacer();
    summary.pace = Some((pacer.lowest_rate(), pacer.current_rate()));
    summary.calls = crate::run::handles::calls_of(shared.every.iter().map(|api| &**api));
    if shared.create_accounts == Some(CreateAccounts::OnDemand) {
        summary.accounts = Some(shared.on_demand.report());
    }
    changes::count_reads(summary, shared);
}

/// Starts the reader thread, the dispatcher and the workers, collects every row's outcome, and
/// closes the journal as complete when every row is final.
async fn pipeline(job: &JobInput, plan: Plan, shared: &Arc<Shared>) -> anyhow::Result<SendReport> {
    let Plan {
        locks: _locks,
        rows,
        decider,
        total,
        prior,
        reader: reader_plan,
        failures,
        journal,
        state,
        resumed,
    } = plan;
    let settings = &shared.settings;
    let tags = crate::run::changes::tags_of(decider.mapper());
    let guards = guards::AnswerGuards::new(&job.guards, job.create_accounts.is_some(), &tags);
    let changes_log = match &job.changes_log {
        Some(path) => Some(ChangeLog::open(path, &run_started(), resumed)?),
        None => None,
    };
    let (event_tx, mut event_rx) = mpsc::channel::<Event>(1024);
    let (work_tx, work_rx) = mpsc::channel::<Job>(settings.concurrency);
    let (report_tx, report_rx) = mpsc::channel::<Report>(1024);
    let (released_tx, released_rx) = mpsc::unbounded_channel::<String>();

    let reader = spawn_reader(job, rows, decider, event_tx, reader_plan)?;
    let only_if_empty = OnlyIfEmpty::of(job.only_if_empty.as_ref());
    let compare_stage = changes::spawn_stage(shared, tags, only_if_empty, &mut event_rx);
    let work_rx = Arc::new(tokio::sync::Mutex::new(work_rx));
    let batch_workers = match shared.batch {
        Some(_) => BatchPath::rows_in_flight(),
        None => 0,
    };
    let workers: Vec<_> = (0..settings.concurrency + batch_workers)
        .map(|_| {
            tokio::spawn(worker::worker(
                shared.clone(),
                work_rx.clone(),
                report_tx.clone(),
                released_tx.clone(),
            ))
        })
        .collect();
    drop(released_tx);
    let dispatcher = tokio::spawn(dispatch::dispatch(
        event_rx,
        work_tx,
        report_tx,
        released_rx,
        shared.api.stop().clone(),
    ));
    let collector = Collector {
        failures,
        journal,
        state,
        progress: Progress::new(
            Some(total),
            settings.show_progress,
            settings.quiet,
            settings.progress_interval,
        ),
        shared: shared.clone(),
        delimiter: job.input.delimiter,
        max_errors: settings.max_errors,
        held_transport: Vec::new(),
        warnings: RowWarnings::default(),
        guards,
        changes_log,
    };
    // A task of its own, not part of this future: a report then wakes the collector alone,
    // where waking the future `block_on` drives would also signal the runtime's I/O driver.
    let (mut summary, journal, state) = tokio::spawn(collector.run(report_rx, prior)).await??;
    dispatcher.await?;
    if let Some(stage) = compare_stage {
        stage.await?;
    }
    for worker in workers {
        worker.await?;
    }
    // A read error mid-file leaves the journal open, so --resume continues after it.
    let duplicates = match reader.join() {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("the CSV reader thread panicked"),
    };
    if summary.not_attempted == 0 && !shared.api.stop().is_cancelled() {
        // Every row is final: the run is complete.
        journal.complete()?;
        summary.journal = None;
    }
    summary.duplicates = duplicates;
    summary.rows = total;
    count_requests(&mut summary, shared).await;
    Ok(SendReport {
        state,
        ..SendReport::of(summary)
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_concurrency_follows_littles_law() {
        assert_eq!(SendSettings::default_concurrency(200), 250);
        assert_eq!(SendSettings::default_concurrency(1), 4);
        assert_eq!(SendSettings::default_concurrency(3000), 3750);
        assert_eq!(SendSettings::default_concurrency(100_000), 4096);
    }
}
