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

use crate::client::{CallError, ChatClient};
use crate::codes::{classify, ErrorClass};
use crate::dupes::DuplicateFinder;
use crate::failures::FailureWriter;
use crate::input::CsvInput;
use crate::job::JobInput;
use crate::journal::{self, Final, Journal, RowPos};
use crate::outcome::{Failure, FailureCode, Stage};
use crate::progress::{Progress, Snapshot};
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
/// Throttled answers one row may get before it is recorded as failed.
const MAX_THROTTLED: u32 = 20;

/// A valid row on its way to Chat.
struct Job {
    pos: RowPos,
    user_id: String,
    body: Bytes,
    record: ByteRecord,
}

/// What the reader thread produces, in file order.
enum Event {
    Job(Job),
    Skipped(RowPos),
    Invalid {
        pos: RowPos,
        record: ByteRecord,
        violations: Vec<Violation>,
    },
    /// A row already in the failure CSV from an interrupted earlier run but not yet journalled.
    AlreadyFailed(RowPos),
}

/// What the collector receives.
enum Report {
    Skipped(RowPos),
    Invalid {
        pos: RowPos,
        record: ByteRecord,
        violations: Vec<Violation>,
    },
    AlreadyFailed(RowPos),
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
}

impl Shared {
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
    let mut prior = Summary::default();
    let reader_resume = match &resume {
        Some(resume) => {
            for (state, count) in &resume.counts {
                match state {
                    Final::Ok => prior.ok += count,
                    Final::Failed => prior.failed += count,
                    Final::Invalid => prior.invalid += count,
                    Final::Skipped => prior.skipped += count,
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
        progress,
        shared: shared.clone(),
        delimiter,
        max_errors: settings.max_errors,
    };
    let mut summary = collector.run(report_rx, prior).await?;

    dispatcher.await?;
    for worker in workers {
        worker.await?;
    }
    let duplicates = match reader.join() {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("the CSV reader thread panicked"),
    };
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
    if let Some(checkpoint) = resume.checkpoint {
        input.seek_past(checkpoint)?;
        index = checkpoint.index + 1;
    }
    let mut finder = DuplicateFinder::default();
    while let Some(line) = input.read(&mut record)? {
        let pos = RowPos {
            index,
            line,
            byte: CsvInput::start_byte(&record),
        };
        index += 1;
        if resume.journalled.contains(&pos.index) {
            continue;
        }
        if let Some(user_id) = mapper.user_id(&record).filter(|id| !id.is_empty()) {
            finder.observe(user_id);
        }
        let event = if resume.failed_lines.contains(&line) {
            Event::AlreadyFailed(pos)
        } else {
            match mapper.map(&record, &mut body) {
                Verdict::Ready { user_id, .. } => Event::Job(Job {
                    pos,
                    user_id: user_id.to_string(),
                    body: Bytes::copy_from_slice(&body),
                    record: record.clone(),
                }),
                Verdict::Skipped { .. } => Event::Skipped(pos),
                Verdict::Invalid(violations) => Event::Invalid {
                    pos,
                    record: record.clone(),
                    violations,
                },
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
                    Some(Event::Skipped(pos)) => {
                        let _ = reports.send(Report::Skipped(pos)).await;
                    }
                    Some(Event::Invalid { pos, record, violations }) => {
                        let _ = reports.send(Report::Invalid { pos, record, violations }).await;
                    }
                    Some(Event::AlreadyFailed(pos)) => {
                        let _ = reports.send(Report::AlreadyFailed(pos)).await;
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
    let settings = &shared.settings;
    let mut attempts = 0u32;
    let mut throttled = 0u32;
    let mut renewed = false;
    loop {
        if shared.stop.is_cancelled() {
            return (Outcome::NotAttempted, attempts + throttled);
        }
        tokio::select! {
            _ = shared.pacer.acquire() => {}
            _ = shared.stop.cancelled() => return (Outcome::NotAttempted, attempts + throttled),
        }
        if shared.stop.is_cancelled() {
            return (Outcome::NotAttempted, attempts + throttled);
        }
        attempts += 1;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let result = shared.client.call(PORTRAIT_SET, job.body.clone()).await;
        let requests = attempts + throttled;
        let failure = |code: FailureCode, message: String| {
            Outcome::Failed(Failure {
                code,
                message,
                stage: Stage::Send,
                attempts: requests,
            })
        };
        let retryable = match result {
            Ok((envelope, _)) if envelope.is_ok() => {
                shared
                    .consecutive_transport_failures
                    .store(0, Ordering::Relaxed);
                shared.pacer.on_accepted();
                return (Outcome::Ok, requests);
            }
            Ok((envelope, _)) => {
                shared
                    .consecutive_transport_failures
                    .store(0, Ordering::Relaxed);
                let code = envelope.error_code;
                let message = format!("{} ({})", envelope.error_info, describe_code(code));
                match classify(code) {
                    ErrorClass::PermanentRow => {
                        return (failure(FailureCode::Chat(code), message), requests)
                    }
                    ErrorClass::FatalJob => {
                        shared.stop_job(format!("Chat answered {code}: {message}"));
                        return (failure(FailureCode::Chat(code), message), requests);
                    }
                    ErrorClass::Expired => {
                        if renewed || !shared.client.renew_usersig() {
                            shared.stop_job(format!(
                                "Chat answered {code} (UserSig expired) even after renewal: check the clock and the key"
                            ));
                            return (failure(FailureCode::Chat(code), message), requests);
                        }
                        renewed = true;
                        attempts -= 1;
                        continue;
                    }
                    ErrorClass::Throttled => {
                        throttled += 1;
                        attempts -= 1;
                        if throttled > MAX_THROTTLED {
                            return (failure(FailureCode::Chat(code), message), requests);
                        }
                        let pause = backoff_window(settings, throttled).max(Duration::from_secs(1));
                        tracing::info!(
                            "Chat throttled the job ({code}); pausing all requests for {pause:?}"
                        );
                        shared.pacer.pause_for(pause);
                        continue;
                    }
                    ErrorClass::Transient => Some(failure(FailureCode::Chat(code), message)),
                }
            }
            Err(CallError::Http(status)) if status >= 500 || status == 408 => {
                Some(failure(FailureCode::Http(status), format!("HTTP {status}")))
            }
            Err(CallError::Http(429)) => {
                throttled += 1;
                attempts -= 1;
                shared
                    .pacer
                    .pause_for(backoff_window(settings, throttled).max(Duration::from_secs(1)));
                if throttled > MAX_THROTTLED {
                    return (failure(FailureCode::Http(429), "HTTP 429".into()), requests);
                }
                continue;
            }
            Err(CallError::Http(status)) => {
                shared.stop_job(format!(
                    "the endpoint answered HTTP {status}: check --endpoint / --region"
                ));
                return (
                    failure(FailureCode::Http(status), format!("HTTP {status}")),
                    requests,
                );
            }
            Err(CallError::BadResponse(text)) => {
                shared.stop_job(format!(
                    "the endpoint does not answer like Chat ({text}): check --endpoint"
                ));
                return (failure(FailureCode::BadResponse, text), requests);
            }
            Err(CallError::Timeout(after)) => Some(failure(
                FailureCode::OutcomeUnknown,
                format!("no answer within {after:?} on the last attempt; Chat may have applied it"),
            )),
            Err(CallError::Transport(text)) => Some(failure(FailureCode::Transport, text)),
        };
        let Some(last_failure) = retryable else {
            continue;
        };
        if attempts >= settings.max_attempts {
            if let Outcome::Failed(Failure {
                code: FailureCode::Transport,
                ..
            }) = &last_failure
            {
                let streak = shared
                    .consecutive_transport_failures
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if streak >= UNREACHABLE_AFTER {
                    shared.stop_job(format!(
                        "{streak} rows in a row failed to connect after {} attempts each: Chat is unreachable",
                        settings.max_attempts
                    ));
                }
            }
            return (last_failure, requests);
        }
        let sleep = rand::random_range(Duration::ZERO..=backoff_window(settings, attempts));
        tracing::debug!(
            line = job.pos.line,
            attempt = attempts,
            "retrying in {sleep:?}"
        );
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            // A stop cancels the backoff: the row stays pending.
            _ = shared.stop.cancelled() => return (Outcome::NotAttempted, requests),
        }
    }
}

/// The full-jitter window before retry `n` (1-based): base × 2^(n-1), capped.
fn backoff_window(settings: &SendSettings, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(16);
    settings
        .base_backoff
        .saturating_mul(factor)
        .min(settings.max_backoff)
}

fn describe_code(code: u32) -> &'static str {
    match code {
        40001 => "bad request parameter",
        40003 => "account not imported into Chat",
        40004 => "identifier is not an app admin",
        40005 => "sensitive words",
        40006 => "internal server error",
        40008 => "no admin write permission on the field",
        40009 => "tag does not exist (configure custom fields in the console)",
        40601 => "value longer than 500 bytes",
        40605 => "bad value for a standard field",
        40610 => "wrong value type",
        60006 => "invalid SDKAppID",
        60007 | 60011 | 60018 | 60019 => "rate limited",
        60010 | 70403 => "needs app admin permission",
        70001 => "UserSig expired",
        70003 | 70005 => "invalid UserSig",
        70009 => "UserSig does not match the key",
        70013 => "UserSig made for another identifier",
        70014 => "UserSig made for another SDKAppID",
        70016 | 70020 => "SDKAppID not found in this data center (check --region)",
        70050 => "too many failed UserSig checks",
        _ => "see Chat's error code table",
    }
}

/// The single owner of the counters, the progress display, the failure CSV and the journal.
struct Collector {
    failures: FailureWriter,
    journal: Journal,
    progress: Progress,
    shared: Arc<Shared>,
    delimiter: u8,
    max_errors: Option<u64>,
}

impl Collector {
    async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        prior: Summary,
    ) -> anyhow::Result<Summary> {
        let mut summary = prior;
        let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rate_window: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut done = summary.ok + summary.failed + summary.invalid + summary.skipped;
        loop {
            tokio::select! {
                report = reports.recv() => {
                    let Some(report) = report else { break };
                    done += 1;
                    self.record(report, &mut summary)?;
                    // Out to the OS at once, so a killed process loses no finished row; the
                    // failure record goes first.
                    self.failures.write_out()?;
                    self.journal.write_out()?;
                    if let Some(limit) = self.max_errors {
                        if summary.failed + summary.invalid >= limit && !self.shared.stop.is_cancelled() {
                            self.shared.stop_job(format!(
                                "{} rows failed or were invalid, reaching --max-errors {limit}",
                                summary.failed + summary.invalid
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
        let complete = summary.not_attempted == 0 && !self.shared.stop.is_cancelled();
        if complete {
            self.journal.complete()?;
        } else {
            summary.journal = Some(self.journal.path().to_path_buf());
        }
        Ok(summary)
    }

    /// The failure CSV first, then the journal: a row is never journalled as failed before
    /// its failure record is on disk.
    fn sync(&mut self) -> anyhow::Result<()> {
        self.failures.flush()?;
        self.journal.sync()
    }

    fn record(&mut self, report: Report, summary: &mut Summary) -> anyhow::Result<()> {
        match report {
            Report::Skipped(pos) => {
                summary.skipped += 1;
                self.journal.record(pos, Final::Skipped, "");
            }
            Report::AlreadyFailed(pos) => {
                summary.failed += 1;
                *summary
                    .failed_by_code
                    .entry("(earlier run)".into())
                    .or_default() += 1;
                self.journal.record(pos, Final::Failed, "earlier");
            }
            Report::Invalid {
                pos,
                record,
                violations,
            } => {
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
                    }
                    Outcome::NotAttempted => summary.not_attempted += 1,
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
