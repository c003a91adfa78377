//! The real import: a reader thread maps rows (with the dry run's code), a dispatcher keeps each
//! user's rows in file order and never two in flight, a bounded pool of workers sends them
//! through the shared pacer with retries, and one collector owns the counters, the progress
//! display and the failure CSV.
//!
//! ```text
//! reader thread ──events──▶ dispatcher ──jobs──▶ workers (N) ──reports──▶ collector
//!                              ▲                      │
//!                              └──── user released ───┘
//! ```
//! Every channel is bounded except "user released", which holds at most one message per job in
//! flight, so memory stays flat at any file size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use csv::ByteRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accounts::CreateAccounts;
use crate::client::ChatClient;
use crate::dupes::DuplicateFinder;
use crate::failures::FailureWriter;
use crate::input::CsvInput;
use crate::job::JobInput;
use crate::journal::{self, Final, Journal, RowPos};
use crate::outcome::{Failure, FailureCode, Stage};
use crate::progress::{Progress, Snapshot};
use crate::retry::{Answer, Caller};
use crate::row::{failure_from, RowMapper, Verdict, Violation};
use crate::summary::Summary;

/// The portrait_set command path.
pub const PORTRAIT_SET: &str = "profile/portrait_set";

/// How rows are sent.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// Ceiling on requests in any one-second window.
    pub rate: u32,
    /// Workers, i.e. requests in flight at most.
    pub concurrency: usize,
    /// Attempts per row for transient errors.
    pub max_attempts: u32,
    /// First backoff window; each retry doubles it (full jitter), up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Show a bar if stderr is a terminal.
    pub allow_bar: bool,
    pub quiet: bool,
    pub progress_interval: Duration,
    /// Stop the job once this many rows failed or were invalid.
    pub max_errors: Option<u64>,
}

impl SendSettings {
    /// Little's law: in-flight = rate × latency. Sized for 1 s latencies with 25 % headroom.
    pub fn default_concurrency(rate: u32) -> usize {
        ((rate as usize * 5).div_ceil(4)).clamp(4, 1024)
    }
}

/// How a send run ended, beyond its counters.
#[derive(Debug)]
pub struct SendReport {
    pub summary: Summary,
    /// Set when a job-wide error stopped the run.
    pub fatal: Option<String>,
    /// Set when `stop` was cancelled from outside (a signal).
    pub interrupted: bool,
}

/// Rows waiting behind an in-flight row of the same user; beyond this the reader pauses.
const MAX_DEFERRED: usize = 50_000;
/// Rows that fail on transport errors in a row, with no success between, before the job
/// concludes Chat is unreachable and stops.
const UNREACHABLE_AFTER: u64 = 50;

/// A valid row on its way to Chat.
struct Job {
    pos: RowPos,
    /// `--state`: the hash of `body`, written to the state once Chat accepts it.
    body_hash: u64,
    user_id: String,
    body: Bytes,
    record: ByteRecord,
}

/// What the reader thread produces, in file order.
enum Event {
    Job(Job),
    /// A row decided without sending it.
    Local(LocalRow),
}

/// A row whose fate is decided locally; the dispatcher passes it straight to the collector.
enum LocalRow {
    Skipped(RowPos),
    /// `--state`: Chat already holds this row, or a later row of the user counts instead.
    NotNeeded(RowPos, Final),
    Invalid {
        pos: RowPos,
        record: ByteRecord,
        violations: Vec<Violation>,
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
        job: Job,
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

/// State shared by the workers.
struct Shared {
    client: Arc<ChatClient>,
    pacer: crate::limiter::Pacer,
    settings: SendSettings,
    /// Cancelled to stop dispatching (fatal error or signal).
    stop: CancellationToken,
    fatal: Mutex<Option<String>>,
    consecutive_transport_failures: AtomicU64,
    requests: AtomicU64,
    /// Throttled answers (60007 and friends, HTTP 429).
    throttled: AtomicU64,
    create_accounts: Option<CreateAccounts>,
}

impl Shared {
    fn caller(&self) -> Caller<'_> {
        Caller {
            client: &self.client,
            pacer: &self.pacer,
            max_attempts: self.settings.max_attempts,
            base_backoff: self.settings.base_backoff,
            max_backoff: self.settings.max_backoff,
            stop: &self.stop,
            requests: &self.requests,
            throttled: &self.throttled,
        }
    }

    fn stop_job(&self, why: String) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            tracing::error!("stopping the run: {why}");
            *fatal = Some(why);
        }
        self.stop.cancel();
    }
}

/// Imports every row of the input. `stop` is cancelled from outside on a signal.
pub async fn run(
    job: &JobInput,
    client: Arc<ChatClient>,
    settings: SendSettings,
    stop: CancellationToken,
) -> anyhow::Result<SendReport> {
    let started = Instant::now();
    // Held until this function returns: no second run on the same journal meanwhile.
    let _lock = crate::lock::RunLock::acquire(&job.journal)?;
    // `--state` is locked like the journal, and before any file is touched: a run refused
    // here must leave the last run's journal and failure CSV as they were.
    let _state_lock = match &job.state {
        Some(path) => Some(crate::lock::RunLock::acquire(path)?),
        None => None,
    };
    let mut input = CsvInput::open(&job.input)?;
    let mapper = RowMapper::new(input.columns.clone(), job.rules);
    let delimiter = job.input.delimiter;
    let identity = journal::Identity::of(&job.input.path)?;
    let resume = if job.resume {
        journal::read(&job.journal, &identity, job.force)?
    } else {
        None
    };
    let (failures, failed_lines) = match &resume {
        Some(_) => FailureWriter::append(&job.failures, mapper.columns(), delimiter)?,
        None => (
            FailureWriter::create(&job.failures, mapper.columns(), delimiter)?,
            HashSet::new(),
        ),
    };
    let journal = match &resume {
        Some(resume) => Journal::append(&job.journal, resume)?,
        None => Journal::create(&job.journal, &identity)?,
    };
    let total = count_rows(job)?;
    let mut prior = Summary {
        rows: total,
        ..Summary::default()
    };
    let reader_resume = match &resume {
        Some(resume) => {
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
            let done = resume.counts.values().sum::<u64>();
            tracing::info!(
                "resuming from {}: {done} of {total} rows already final",
                job.journal.display()
            );
            if !job.input.path.exists() {
                anyhow::bail!("the input disappeared");
            }
            ReaderResume {
                checkpoint: resume.checkpoint,
                journalled: journal::skip_set(resume),
                failed_lines,
                failed_accounts: HashMap::new(),
                sync: None,
            }
        }
        None => {
            if job.resume {
                tracing::info!(
                    "no journal at {}: starting a fresh run",
                    job.journal.display()
                );
            }
            ReaderResume::default()
        }
    };
    let mut reader_resume = reader_resume;
    // `--state`: loaded before anything is sent.
    let state_db = match &job.state {
        Some(path) => {
            let (db, index) =
                crate::state::StateDb::open(path, client.connection().sdkappid, &job.input.path)?;
            let (last_rows, _) = crate::state::last_rows_of_repeated_users(&job.input, job.rules)?;
            reader_resume.sync = Some(SyncFilter {
                index,
                last_rows,
                full: job.full,
            });
            prior.with_state = true;
            Some(db)
        }
        None => None,
    };
    if let Some(mode @ (CreateAccounts::Batch | CreateAccounts::AccountList)) = job.create_accounts
    {
        let pass = match import_accounts(job, &client, &settings, &stop, mode).await {
            Ok(pass) => pass,
            // A signal during the account pass: nothing was sent, so the run simply stops
            // (exit 130/143, like a signal later on); a rerun starts with the accounts again.
            Err(_) if stop.is_cancelled() => {
                prior.stopped = Some(
                    "interrupted by a signal while importing accounts; no profile was sent".into(),
                );
                // Every row not final from an earlier run is left for the next one.
                let settled = prior.ok
                    + prior.failed
                    + prior.invalid
                    + prior.skipped
                    + prior.unchanged
                    + prior.superseded;
                prior.not_attempted = prior.rows.saturating_sub(settled);
                return Ok(SendReport {
                    summary: prior,
                    fatal: None,
                    interrupted: true,
                });
            }
            Err(err) => return Err(err),
        };
        prior.accounts = Some(format!(
            "{} imported or already there, {} failed ({} multiaccount_import calls)",
            pass.accounts - pass.failed.len() as u64,
            pass.failed.len(),
            pass.calls
        ));
        reader_resume.failed_accounts = pass.failed;
    }
    // The reader opens its own handle; this one only checked the header.
    drop(std::mem::replace(&mut input, CsvInput::open(&job.input)?));

    let external_stop = stop.clone();
    let internal_stop = stop.child_token();
    let shared = Arc::new(Shared {
        client,
        pacer: crate::limiter::Pacer::new(settings.rate),
        settings: settings.clone(),
        stop: internal_stop.clone(),
        fatal: Mutex::new(None),
        consecutive_transport_failures: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
        create_accounts: job.create_accounts,
    });

    let (event_tx, event_rx) = mpsc::channel::<Event>(1024);
    let (work_tx, work_rx) = mpsc::channel::<Job>(settings.concurrency);
    let (report_tx, report_rx) = mpsc::channel::<Report>(1024);
    let (released_tx, released_rx) = mpsc::unbounded_channel::<String>();

    let reader = std::thread::Builder::new()
        .name("csv-reader".into())
        .spawn({
            let options = job.input.clone();
            move || read_rows(input, &options, mapper, event_tx, reader_resume)
        })?;

    let work_rx = Arc::new(tokio::sync::Mutex::new(work_rx));
    let mut workers = Vec::with_capacity(settings.concurrency);
    for _ in 0..settings.concurrency {
        workers.push(tokio::spawn(worker(
            shared.clone(),
            work_rx.clone(),
            report_tx.clone(),
            released_tx.clone(),
        )));
    }
    drop(released_tx);

    let dispatcher = tokio::spawn(dispatch(
        event_rx,
        work_tx,
        report_tx,
        released_rx,
        internal_stop.clone(),
    ));

    let progress = Progress::new(
        Some(total),
        settings.allow_bar,
        settings.quiet,
        settings.progress_interval,
    );
    let collector = Collector {
        failures,
        journal,
        state: state_db,
        progress,
        shared: shared.clone(),
        delimiter,
        max_errors: settings.max_errors,
    };
    let (mut summary, journal) = collector.run(report_rx, prior).await?;

    dispatcher.await?;
    for worker in workers {
        worker.await?;
    }
    // A read error mid-file leaves the journal open, so --resume continues after it.
    let duplicates = match reader.join() {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("the CSV reader thread panicked"),
    };
    if summary.not_attempted == 0 && !shared.stop.is_cancelled() {
        // Every row is final: the run is complete.
        journal.complete()?;
        summary.journal = None;
    }
    summary.duplicates = duplicates;
    summary.rows = total;
    summary.requests = shared.requests.load(Ordering::Relaxed);
    summary.throttled = shared.throttled.load(Ordering::Relaxed);
    summary.pace = Some((shared.pacer.lowest_rate(), shared.pacer.current_rate()));
    summary.elapsed = started.elapsed();
    let fatal = shared
        .fatal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let interrupted = external_stop.is_cancelled() && fatal.is_none();

    if let Some(why) = &fatal {
        summary.stopped = Some(why.clone());
    } else if interrupted {
        summary.stopped = Some("interrupted by a signal".into());
    }
    Ok(SendReport {
        summary,
        fatal,
        interrupted,
    })
}

/// The batch form of `--create-accounts`: every user of the file is imported with
/// multiaccount_import (100 per call, at most 100 calls a second on its own pacer) before any
/// profile is sent.
async fn import_accounts(
    job: &JobInput,
    client: &ChatClient,
    settings: &SendSettings,
    stop: &CancellationToken,
    mode: CreateAccounts,
) -> anyhow::Result<crate::accounts::ImportPass> {
    let pacer = crate::limiter::Pacer::new(crate::accounts::BATCH_CALLS_PER_SECOND);
    let (requests, throttled) = (AtomicU64::new(0), AtomicU64::new(0));
    let calls = crate::accounts::AccountCalls {
        client,
        pacer: &pacer,
        max_attempts: settings.max_attempts,
        stop,
        requests: &requests,
        throttled: &throttled,
    };
    let started = Instant::now();
    let pass = crate::accounts::import_all(
        &job.input,
        job.rules,
        &calls,
        mode == CreateAccounts::AccountList,
    )
    .await?;
    tracing::info!(
        "accounts imported in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(pass)
}

/// Counts data rows with a parse-only pass, for the progress total.
fn count_rows(job: &JobInput) -> anyhow::Result<u64> {
    let mut input = CsvInput::open(&job.input)?;
    let mut record = ByteRecord::new();
    let mut rows = 0;
    while input.read(&mut record)?.is_some() {
        rows += 1;
    }
    Ok(rows)
}

/// The reader thread: maps every row and sends it on in file order. Returns the rows read and
/// the duplicate report.
fn read_rows(
    mut input: CsvInput,
    options: &crate::input::InputOptions,
    mapper: RowMapper,
    events: mpsc::Sender<Event>,
    resume: ReaderResume,
) -> anyhow::Result<crate::dupes::Duplicates> {
    let mut record = ByteRecord::new();
    let mut body = Vec::with_capacity(1024);
    let mut index = 0;
    let mut finder = DuplicateFinder::default();
    if let Some(checkpoint) = resume.checkpoint {
        // The duplicate report covers the whole file, as a first run's does: the rows before
        // the checkpoint are read again for their UserIDs only.
        let mut before = CsvInput::open(options)?;
        let mut read = 0;
        while read <= checkpoint.index && before.read(&mut record)?.is_some() {
            if let Some(user_id) = mapper.user_id(&record).filter(|id| !id.is_empty()) {
                finder.observe(user_id);
            }
            read += 1;
        }
        input.seek_past(checkpoint)?;
        index = checkpoint.index + 1;
    }
    while let Some(line) = input.read(&mut record)? {
        let pos = RowPos {
            index,
            line,
            byte: CsvInput::start_byte(&record),
        };
        index += 1;
        if let Some(user_id) = mapper.user_id(&record).filter(|id| !id.is_empty()) {
            finder.observe(user_id);
        }
        if resume.journalled.contains(&pos.index) {
            continue;
        }
        let event = if resume.failed_lines.contains(&line) {
            Event::Local(LocalRow::AlreadyFailed(pos))
        } else if input.unterminated() {
            Event::Local(LocalRow::Invalid {
                pos,
                record: record.clone(),
                violations: vec![crate::row::unterminated_quote(line)],
            })
        } else {
            match mapper.map(&record, &mut body) {
                Verdict::Ready { user_id, .. } if resume.failed_accounts.contains_key(user_id) => {
                    let why = &resume.failed_accounts[user_id];
                    Event::Local(LocalRow::AccountFailed {
                        pos,
                        record: record.clone(),
                        failure: Failure {
                            code: why.code,
                            message: why.message.clone(),
                            stage: Stage::Account,
                            attempts: 0,
                        },
                    })
                }
                Verdict::Ready { user_id, .. } => {
                    let body_hash = crate::state::body_hash(&body);
                    match resume
                        .sync
                        .as_ref()
                        .and_then(|sync| sync.not_needed(user_id, pos.index, body_hash))
                    {
                        Some(why) => Event::Local(LocalRow::NotNeeded(pos, why)),
                        None => Event::Job(Job {
                            pos,
                            body_hash,
                            user_id: user_id.to_string(),
                            body: Bytes::copy_from_slice(&body),
                            record: record.clone(),
                        }),
                    }
                }
                Verdict::Skipped { .. } => Event::Local(LocalRow::Skipped(pos)),
                Verdict::Invalid(violations) => Event::Local(LocalRow::Invalid {
                    pos,
                    record: record.clone(),
                    violations,
                }),
            }
        };
        if events.blocking_send(event).is_err() {
            anyhow::bail!("the import stopped before the whole file was read");
        }
    }
    drop(events);
    if finder.is_clear() {
        return Ok(Default::default());
    }
    // The exact recount needs a second look at the UserIDs; every request has been handed
    // on already, so this delays nothing.
    let mut recount = finder.into_recount();
    let mut again = CsvInput::open(options)?;
    while again.read(&mut record)?.is_some() {
        if let Some(user_id) = mapper.user_id(&record).filter(|id| !id.is_empty()) {
            recount.observe(user_id);
        }
    }
    Ok(recount.finish())
}

/// What the reader skips when resuming.
#[derive(Default)]
struct ReaderResume {
    /// Every record up to this one is final: seek past it.
    checkpoint: Option<RowPos>,
    /// Records after the checkpoint that the journal already has.
    journalled: HashSet<u64>,
    /// Lines already in the failure CSV (written just before a crash, not yet journalled).
    failed_lines: HashSet<u64>,
    /// Users whose account import failed: their rows are not sent.
    failed_accounts: HashMap<String, crate::accounts::AccountFailure>,
    /// `--state`: what Chat last accepted, and the last row of each repeated user.
    sync: Option<SyncFilter>,
}

/// `--state`: decides which valid rows need sending.
struct SyncFilter {
    index: crate::state::StateIndex,
    /// Users with several rows → the record index of the last one (the only one that counts).
    last_rows: HashMap<String, u64>,
    /// `--full`: send everything anyway.
    full: bool,
}

impl SyncFilter {
    /// Why a ready row need not be sent, if it need not.
    fn not_needed(&self, user_id: &str, index: u64, hash: u64) -> Option<Final> {
        if self
            .last_rows
            .get(user_id)
            .is_some_and(|&last| last != index)
        {
            Some(Final::Superseded)
        } else if !self.full && self.index.is_unchanged(user_id, hash) {
            Some(Final::Unchanged)
        } else {
            None
        }
    }
}

/// Sends jobs to workers, holding back any row whose user already has one in flight.
async fn dispatch(
    mut events: mpsc::Receiver<Event>,
    work: mpsc::Sender<Job>,
    reports: mpsc::Sender<Report>,
    mut released: mpsc::UnboundedReceiver<String>,
    stop: CancellationToken,
) {
    // Users with a row in flight → their later rows, in file order.
    let mut busy: HashMap<String, VecDeque<Job>> = HashMap::new();
    let mut deferred = 0usize;
    let mut input_open = true;

    while input_open || !busy.is_empty() {
        tokio::select! {
            // Releases first: they free users and bound the deferred queue.
            biased;
            user = released.recv() => {
                let Some(user) = user else { break };
                let Some(queue) = busy.get_mut(&user) else { continue };
                match queue.pop_front() {
                    Some(job) if !stop.is_cancelled() => {
                        deferred -= 1;
                        // The user stays busy: this row is now the one in flight.
                        if let Err(err) = work.send(job).await {
                            let _ = reports.send(not_attempted(err.0)).await;
                        }
                    }
                    Some(job) => {
                        deferred -= 1;
                        let _ = reports.send(not_attempted(job)).await;
                        if let Some(rest) = busy.remove(&user) {
                            for job in rest {
                                deferred -= 1;
                                let _ = reports.send(not_attempted(job)).await;
                            }
                        }
                    }
                    None => {
                        busy.remove(&user);
                    }
                }
            }
            event = events.recv(), if input_open && deferred < MAX_DEFERRED => {
                match event {
                    None => input_open = false,
                    Some(Event::Job(job)) => {
                        if stop.is_cancelled() {
                            let _ = reports.send(not_attempted(job)).await;
                        } else if let Some(queue) = busy.get_mut(&job.user_id) {
                            queue.push_back(job);
                            deferred += 1;
                        } else {
                            busy.insert(job.user_id.clone(), VecDeque::new());
                            if let Err(err) = work.send(job).await {
                                let _ = reports.send(not_attempted(err.0)).await;
                            }
                        }
                    }
                    Some(Event::Local(row)) => {
                        let _ = reports.send(Report::Local(row)).await;
                    }
                }
            }
            _ = stop.cancelled(), if deferred > 0 => {
                // Rows held back behind in-flight ones will not be sent now.
                drain_deferred(&mut busy, &mut deferred, &reports).await;
            }
        }
    }
}

/// After a stop, reports every deferred row as not attempted (in-flight users stay busy until
/// their worker releases them).
async fn drain_deferred(
    busy: &mut HashMap<String, VecDeque<Job>>,
    deferred: &mut usize,
    reports: &mpsc::Sender<Report>,
) {
    for queue in busy.values_mut() {
        while let Some(job) = queue.pop_front() {
            *deferred -= 1;
            let _ = reports.send(not_attempted(job)).await;
        }
    }
}

fn not_attempted(job: Job) -> Report {
    Report::Finished {
        job,
        outcome: Outcome::NotAttempted,
        requests: 0,
    }
}

/// One worker: takes a job, sends it with retries, reports, releases its user.
async fn worker(
    shared: Arc<Shared>,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    reports: mpsc::Sender<Report>,
    released: mpsc::UnboundedSender<String>,
) {
    loop {
        let next = jobs.lock().await.recv().await;
        let Some(job) = next else { break };
        let (outcome, requests) = send_with_retries(&shared, &job).await;
        let user = job.user_id.clone();
        if reports
            .send(Report::Finished {
                job,
                outcome,
                requests,
            })
            .await
            .is_err()
        {
            break;
        }
        let _ = released.send(user);
    }
}

/// Sends one row until it succeeds, fails for good, or the job stops.
async fn send_with_retries(shared: &Shared, job: &Job) -> (Outcome, u32) {
    let caller = shared.caller();
    let (mut answer, mut requests) = caller.call(PORTRAIT_SET, job.body.clone()).await;
    if shared.create_accounts == Some(CreateAccounts::OnDemand)
        && matches!(
            answer,
            Answer::Failed {
                code: FailureCode::Chat(40003),
                ..
            }
        )
    {
        // Not an account yet: import it (account_import, through the same pacer) and retry
        // the row once.
        let calls = crate::accounts::AccountCalls {
            client: &shared.client,
            pacer: &shared.pacer,
            max_attempts: shared.settings.max_attempts,
            stop: &shared.stop,
            requests: &shared.requests,
            throttled: &shared.throttled,
        };
        answer = match calls.import_one(&job.user_id).await {
            Answer::Ok(..) => {
                let (again, more) = caller.call(PORTRAIT_SET, job.body.clone()).await;
                requests += more;
                again
            }
            Answer::Failed { code, message } => {
                // Like the batch form: the row failed at the account stage.
                return (
                    Outcome::Failed(Failure {
                        code,
                        message: format!("account_import failed: {message}"),
                        stage: Stage::Account,
                        attempts: requests,
                    }),
                    requests,
                );
            }
            other => other,
        };
    }
    let failed = |code, message| {
        Outcome::Failed(Failure {
            code,
            message,
            stage: Stage::Send,
            attempts: requests,
        })
    };
    match answer {
        Answer::Ok(..) => {
            shared
                .consecutive_transport_failures
                .store(0, Ordering::Relaxed);
            (Outcome::Ok, requests)
        }
        Answer::Stopped => (Outcome::NotAttempted, requests),
        Answer::Fatal { code, message, why } => {
            shared.stop_job(why);
            (failed(code, message), requests)
        }
        Answer::Failed { code, message } => {
            if code == FailureCode::Transport {
                let streak = shared
                    .consecutive_transport_failures
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if streak >= UNREACHABLE_AFTER {
                    shared.stop_job(format!(
                        "{streak} rows in a row failed to connect after {} attempts each: Chat is unreachable",
                        shared.settings.max_attempts
                    ));
                }
            } else {
                shared
                    .consecutive_transport_failures
                    .store(0, Ordering::Relaxed);
            }
            (failed(code, message), requests)
        }
    }
}

/// The single owner of the counters, the progress display, the failure CSV and the journal.
struct Collector {
    failures: FailureWriter,
    journal: Journal,
    /// `--state`: Chat's accepted rows are recorded here.
    state: Option<crate::state::StateDb>,
    progress: Progress,
    shared: Arc<Shared>,
    delimiter: u8,
    max_errors: Option<u64>,
}

impl Collector {
    /// Returns the counters and the journal; the caller closes the journal as complete only
    /// once it knows the whole file was read.
    async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        prior: Summary,
    ) -> anyhow::Result<(Summary, Journal)> {
        let mut summary = prior;
        let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rate_window: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut done = summary.ok
            + summary.failed
            + summary.invalid
            + summary.skipped
            + summary.unchanged
            + summary.superseded;
        let errors_before = summary.failed + summary.invalid;
        loop {
            tokio::select! {
                report = reports.recv() => {
                    let Some(report) = report else { break };
                    done += 1;
                    let sent = matches!(report, Report::Finished { .. });
                    self.record(report, &mut summary)?;
                    // A row Chat answered goes out to the OS at once, so a killed process
                    // never re-sends a row it had finished; rows decided locally (invalid,
                    // unchanged …) are cheap to decide again and go out in batches. The
                    // failure record always goes first.
                    if sent || self.journal.pending_bytes() > 64 * 1024 {
                        self.failures.write_out()?;
                        self.journal.write_out()?;
                    }
                    if let Some(limit) = self.max_errors {
                        // Only this run's errors count: a resumed run must be able to go on.
                        let errors = summary.failed + summary.invalid - errors_before;
                        if errors >= limit && !self.shared.stop.is_cancelled() {
                            self.shared.stop_job(format!(
                                "{errors} rows failed or were invalid, reaching --max-errors {limit}"
                            ));
                        }
                    }
                }
                _ = flush_tick.tick() => {
                    self.sync()?;
                    let now = Instant::now();
                    rate_window.push_back((now, self.shared.requests.load(Ordering::Relaxed)));
                    while rate_window.len() > 6 {
                        rate_window.pop_front();
                    }
                    let rate = match (rate_window.front(), rate_window.back()) {
                        (Some(first), Some(last)) if last.0 > first.0 => {
                            (last.1 - first.1) as f64 / (last.0 - first.0).as_secs_f64()
                        }
                        _ => 0.0,
                    };
                    self.progress.update(Snapshot {
                        done,
                        ok: summary.ok,
                        failed: summary.failed + summary.invalid,
                        retries: summary.retries,
                        rate,
                        pace: self.shared.pacer.current_rate(),
                    });
                }
            }
        }
        self.sync()?;
        self.progress.finish();
        summary.failure_csv = self.failures.finish()?;
        if let Some(state) = &mut self.state {
            let code = if self.shared.stop.is_cancelled() {
                None
            } else if summary.has_failures() {
                Some(3)
            } else {
                Some(0)
            };
            state.finish_run(&summary, code)?;
        }
        summary.journal = Some(self.journal.path().to_path_buf());
        Ok((summary, self.journal))
    }

    /// The failure CSV first, then the journal: a row is never journalled as failed before
    /// its failure record is on disk.
    fn sync(&mut self) -> anyhow::Result<()> {
        self.failures.flush()?;
        self.journal.sync()?;
        if let Some(state) = &mut self.state {
            state.commit()?;
        }
        Ok(())
    }

    fn record(&mut self, report: Report, summary: &mut Summary) -> anyhow::Result<()> {
        match report {
            Report::Local(LocalRow::Skipped(pos)) => {
                summary.skipped += 1;
                self.journal.record(pos, Final::Skipped, "");
            }
            Report::Local(LocalRow::NotNeeded(pos, why)) => {
                match why {
                    Final::Superseded => summary.superseded += 1,
                    _ => summary.unchanged += 1,
                }
                self.journal.record(pos, why, "");
            }
            Report::Local(LocalRow::AccountFailed {
                pos,
                record,
                failure,
            }) => {
                summary.failed += 1;
                let code = failure.code.to_string();
                *summary
                    .failed_by_code
                    .entry(format!("{code} (account)"))
                    .or_default() += 1;
                self.failures
                    .write(&record, pos.line, &failure, self.delimiter)?;
                self.journal.record(pos, Final::Failed, &code);
            }
            Report::Local(LocalRow::AlreadyFailed(pos)) => {
                summary.failed += 1;
                *summary
                    .failed_by_code
                    .entry("(earlier run)".into())
                    .or_default() += 1;
                self.journal.record(pos, Final::Failed, "earlier");
            }
            Report::Local(LocalRow::Invalid {
                pos,
                record,
                violations,
            }) => {
                summary.invalid += 1;
                for violation in &violations {
                    *summary
                        .invalid_by_rule
                        .entry(format!("{} {}", violation.code, violation.rule))
                        .or_default() += 1;
                    tracing::warn!("line {}: {}", pos.line, violation.describe());
                }
                let failure = failure_from(&violations);
                self.failures
                    .write(&record, pos.line, &failure, self.delimiter)?;
                self.journal
                    .record(pos, Final::Invalid, &failure.code.to_string());
            }
            Report::Finished {
                job,
                outcome,
                requests,
            } => {
                summary.retries += u64::from(requests.saturating_sub(1));
                match outcome {
                    Outcome::Ok => {
                        summary.ok += 1;
                        self.journal.record(job.pos, Final::Ok, "");
                        if let Some(state) = &mut self.state {
                            state.accepted(&job.user_id, job.body_hash);
                        }
                    }
                    Outcome::NotAttempted => {
                        summary.not_attempted += 1;
                        if requests > 0 {
                            // Cut short mid-retry: an earlier attempt may have been applied.
                            if let Some(state) = &mut self.state {
                                state.forget(&job.user_id);
                            }
                        }
                    }
                    Outcome::Failed(failure) => {
                        summary.failed += 1;
                        let code = failure.code.to_string();
                        *summary.failed_by_code.entry(code.clone()).or_default() += 1;
                        tracing::warn!(
                            "line {}: user {} failed: {} {}",
                            job.pos.line,
                            job.user_id,
                            failure.code,
                            failure.message
                        );
                        self.failures
                            .write(&job.record, job.pos.line, &failure, self.delimiter)?;
                        self.journal.record(job.pos, Final::Failed, &code);
                        if failure.attempts > 0 {
                            // Sent but not confirmed (or refused): what Chat holds for this
                            // user is no longer known, so the next sync must send it.
                            if let Some(state) = &mut self.state {
                                state.forget(&job.user_id);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_concurrency_follows_littles_law() {
        assert_eq!(SendSettings::default_concurrency(200), 250);
        assert_eq!(SendSettings::default_concurrency(1), 4);
    }
}
