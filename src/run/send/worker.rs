//! The workers: each takes a row, sends it through the shared pacer with retries (importing the
//! account first with `--create-accounts on-demand`; with `--batch-nick-image`, its Nick and
//! Image through the batch path first), reports the outcome and releases the user. A job-wide
//! error or too many unreachable rows in a row stop the run.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::batch::{BatchPath, BatchVerdict};
use super::{Job, Outcome, Report, SendSettings, UNREACHABLE_AFTER};
use crate::chat::api::command::PORTRAIT_SET;
use crate::chat::api::ChatApi;
use crate::chat::retry::Answer;
use crate::outcome::{Failure, FailureCode, Stage};
use crate::run::accounts::CreateAccounts;

/// The handles the reads of `--changes-only` go through.
pub(super) struct ReadApis {
    /// portrait_get, at `--read-rate`.
    pub(super) reads: Arc<ChatApi>,
    /// account_check, at its own limit, for reads refused whole with 40003.
    pub(super) account_checks: Arc<ChatApi>,
}

/// State shared by the workers.
pub(super) struct Shared {
    /// Every Chat handle of the job, for the counts of their calls.
    pub(super) every: Vec<Arc<ChatApi>>,
    /// The job's handle on Chat; its stop is cancelled to stop dispatching (a job-wide error
    /// or a signal).
    pub(super) api: Arc<ChatApi>,
    /// `--changes-only`: the reads' own handles (same client and stop, pacers of their own).
    pub(super) reads: Option<ReadApis>,
    /// `--batch-nick-image`: the batch path, and the slots that keep portrait_set within
    /// `--concurrency` while the batch path's rows wait in extra workers.
    pub(super) batch: Option<BatchPath>,
    pub(super) set_slots: Option<tokio::sync::Semaphore>,
    pub(super) settings: SendSettings,
    pub(super) fatal: Mutex<Option<String>>,
    /// Why a guard stopped the run because too many rows fail (`--max-error-rate`): the rows
    /// left stay pending, as after a job-wide error, but the run ends with exit 3.
    pub(super) halted: Mutex<Option<String>>,
    pub(super) create_accounts: Option<CreateAccounts>,
    /// `--create-accounts on-demand`: what its account_import calls did.
    pub(super) on_demand: OnDemandAccounts,
    /// Rows in a row, in the order the workers finished them, that got no answer.
    pub(super) transport_streak: AtomicUsize,
}

impl Shared {
    /// Requests made so far, the batch path's included.
    pub(super) fn requests(&self) -> u64 {
        self.api.requests() + self.batch.as_ref().map_or(0, BatchPath::requests)
    }

    /// Chat is unreachable once `UNREACHABLE_AFTER` rows in a row got no answer. Judged as
    /// each row finishes, before its worker takes the next one, so no row goes out after the
    /// one that completes the streak (the collector holds the rows and judges the same way).
    fn note_transport(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Failed(failure) if failure.code == FailureCode::Transport => {
                let streak = self.transport_streak.fetch_add(1, Ordering::Relaxed) + 1;
                if streak >= UNREACHABLE_AFTER && !self.api.stop().is_cancelled() {
                    self.stop_job(self.unreachable(streak));
                }
            }
            Outcome::NotAttempted => {}
            _ => self.transport_streak.store(0, Ordering::Relaxed),
        }
    }

    /// Why the job stops when `streak` rows in a row got no answer.
    pub(super) fn unreachable(&self, streak: usize) -> String {
        let host = crate::chat::connection::host_of(&self.api.client().connection().base_url);
        format!(
            "Chat at {host} is unreachable: {streak} rows in a row got no answer after {} attempts each",
            self.api.policy().max_attempts
        )
    }

    /// Stops dispatching because too many rows fail; the rows left stay pending.
    pub(super) fn halt(&self, why: String) {
        let mut halted = self.halted.lock().unwrap_or_else(|e| e.into_inner());
        if halted.is_none() {
            tracing::error!("stopping the run: {why}");
            *halted = Some(why);
        }
        self.api.stop().cancel();
    }

    pub(super) fn stop_job(&self, why: String) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            tracing::error!("stopping the run: {why}");
            *fatal = Some(why);
        }
        self.api.stop().cancel();
    }
}

/// `--create-accounts on-demand`: account_import calls made, the accounts they did not import,
/// and their requests (which go through portrait_set's handle, so they are in its count).
#[derive(Default)]
pub(super) struct OnDemandAccounts {
    calls: AtomicU64,
    failed: AtomicU64,
    requests: AtomicU64,
}

impl OnDemandAccounts {
    fn note(&self, answer: &Answer, requests: u32) {
        if requests == 0 {
            return;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.requests
            .fetch_add(u64::from(requests), Ordering::Relaxed);
        if matches!(answer, Answer::Failed { .. }) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What they did, for the summary.
    pub(super) fn report(&self) -> crate::run::summary::AccountsReport {
        let calls = self.calls.load(Ordering::Relaxed);
        crate::run::summary::AccountsReport {
            form: CreateAccounts::OnDemand.name(),
            command: "account_import",
            calls,
            users: calls,
            failed: self.failed.load(Ordering::Relaxed),
            in_requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// One worker: takes a job, sends it with retries, reports, releases its user.
pub(super) async fn worker(
    shared: Arc<Shared>,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    reports: mpsc::Sender<Report>,
    released: mpsc::UnboundedSender<String>,
) {
    loop {
        let next = jobs.lock().await.recv().await;
        let Some(job) = next else { break };
        let (outcome, requests) = send_row(&shared, &job).await;
        shared.note_transport(&outcome);
        let user = job.user_id.clone();
        if reports
            .send(Report::Finished {
                job: Box::new(job),
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

/// Sends one row: its Nick and Image through the batch path if it has any, then the rest with
/// portrait_set. The row is ok only when both parts are.
async fn send_row(shared: &Shared, job: &Job) -> (Outcome, u32) {
    let (Some(batch), Some(entry)) = (&shared.batch, &job.nick_image) else {
        return match &job.body {
            Some(body) => send_set(shared, job, body.clone()).await,
            None => (Outcome::Ok, 0),
        };
    };
    // Batch first: it creates the account portrait_set needs.
    match batch.submit(entry.clone()).await {
        BatchVerdict::Applied => match &job.body {
            Some(body) => send_set(shared, job, body.clone()).await,
            None => (Outcome::Ok, 0),
        },
        BatchVerdict::FallBack => {
            batch.fell_back_row();
            let body = super::split::with_nick_image(job.body.as_deref(), entry);
            send_set(shared, job, body).await
        }
        BatchVerdict::Failed(failure) => {
            let attempts = failure.attempts;
            (Outcome::Failed(failure), attempts)
        }
        BatchVerdict::NotAttempted { sent } => (Outcome::NotAttempted, u32::from(sent)),
        BatchVerdict::Fatal(why) => {
            shared.stop_job(why);
            (Outcome::NotAttempted, 1)
        }
    }
}

/// portrait_set of `body`, within `--concurrency` calls in flight.
async fn send_set(shared: &Shared, job: &Job, body: bytes::Bytes) -> (Outcome, u32) {
    let _slot = match &shared.set_slots {
        Some(slots) => slots.acquire().await.ok(),
        None => None,
    };
    send_with_retries(shared, job, body).await
}

/// Sends one portrait_set until it succeeds, fails for good, or the job stops.
async fn send_with_retries(shared: &Shared, job: &Job, body: bytes::Bytes) -> (Outcome, u32) {
    let api = &shared.api;
    let (mut answer, mut requests) = api.call(PORTRAIT_SET, body.clone()).await;
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
        let calls = crate::run::accounts::AccountCalls { api };
        let (imported, import_requests) = calls.import_one(&job.user_id).await;
        shared.on_demand.note(&imported, import_requests);
        answer = match imported {
            Answer::Ok(..) => {
                let (again, more) = api.call(PORTRAIT_SET, body).await;
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
                        superseded: Vec::new(),
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
            superseded: Vec::new(),
        })
    };
    match answer {
        Answer::Ok(..) => (Outcome::Ok, requests),
        Answer::Stopped => (Outcome::NotAttempted, requests),
        // The answer is about the whole job (settings, Chat unreachable), not this row: it
        // stays pending, and --resume sends it once the job is put right.
        Answer::Fatal { why, .. } => {
            shared.stop_job(why);
            (Outcome::NotAttempted, requests)
        }
        Answer::Failed { code, message } => (failed(code, message), requests),
    }
}
