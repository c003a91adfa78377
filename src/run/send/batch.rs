//! `--batch-nick-image`: the batch path. Workers hand it a row's Nick and Image; it sends them
//! 100 users a call through multiaccount_import's AccountList on a pacer of its own, and
//! answers each row only once the self-check has read a sample of its call's users back with
//! portrait_get (all of the first 100 users, then about 0.1 %). If a sample shows the values
//! did not land, the path is dropped for the rest of the run: every row not yet vouched for,
//! and every later one, is answered "fall back" and its worker sends Nick and Image with
//! portrait_set. The calls still go out after that, since they create missing accounts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::readback::{read_back, ReadBack};
use crate::chat::accounts::{fail_accounts, multiaccount_import_body, AccountEntry, BATCH};
use crate::chat::api::command::MULTIACCOUNT_IMPORT;
use crate::chat::api::ChatApi;
use crate::chat::retry::Answer;
use crate::outcome::{Failure, FailureCode, Stage};
use crate::run::summary::BatchReport;

/// A partly filled call goes out once no user came for this long, or it is this old.
const FILL_WAIT: Duration = Duration::from_millis(10);
const FILL_MAX_WAIT: Duration = Duration::from_millis(100);
/// The first users are all read back.
const FIRST_SAMPLE: u64 = 100;
/// After them, one user in this many (0.1 %).
const USERS_PER_SAMPLE: usize = 1000;
/// A check covers the calls answered since the last one: at most this many users, or what
/// came in `CHECK_WAIT`.
const CHECK_USERS: usize = 1000;
const CHECK_WAIT: Duration = Duration::from_millis(200);
/// multiaccount_import calls in flight at most.
const MAX_CALLS: usize = 32;

/// How the batch path answered for one row's Nick and Image.
#[derive(Debug)]
pub(super) enum BatchVerdict {
    /// Imported, and vouched for by the self-check.
    Applied,
    /// Imported (so the account exists), but the batch path is not trusted: send Nick and
    /// Image with portrait_set.
    FallBack,
    Failed(Failure),
    /// Not done because the job stopped; `sent`: a call went out, so Chat may hold part of it.
    NotAttempted {
        sent: bool,
    },
    /// Every later call would fail the same way: the job must stop.
    Fatal(String),
}

struct Submission {
    entry: AccountEntry,
    reply: oneshot::Sender<BatchVerdict>,
}

/// The handle the workers share.
pub(super) struct BatchPath {
    submit: mpsc::Sender<Submission>,
    report: Arc<Mutex<BatchReport>>,
    import: Arc<ChatApi>,
    check: Arc<ChatApi>,
    done: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl BatchPath {
    /// Starts the batch path on the job's multiaccount_import and self-check handles
    /// (`run::handles`).
    pub(super) fn start(import: Arc<ChatApi>, check: Arc<ChatApi>) -> BatchPath {
        let report = Arc::new(Mutex::new(BatchReport::default()));
        let (submit, submissions) = mpsc::channel(BATCH * 4);
        let done = CancellationToken::new();
        let batcher = Batcher {
            import: import.clone(),
            check: check.clone(),
            report: report.clone(),
            filling: Vec::with_capacity(BATCH),
            filling_since: Instant::now(),
            filling_last: Instant::now(),
            calls: JoinSet::new(),
            unchecked: Vec::new(),
            unchecked_since: Instant::now(),
            checking: Vec::new(),
            checks: JoinSet::new(),
            fallen_back: false,
        };
        let task = tokio::spawn(batcher.run(submissions, done.clone()));
        BatchPath {
            submit,
            report,
            import,
            check,
            done,
            task: Mutex::new(Some(task)),
        }
    }

    /// Rows the batch path can hold at once: full calls in flight, the users waiting for a
    /// check and those being checked. The send pipeline adds this many workers.
    pub(super) fn rows_in_flight() -> usize {
        BATCH * (MAX_CALLS + 1) + 2 * CHECK_USERS
    }

    /// Sends one row's Nick and Image; returns once the row's fate on this path is known.
    pub(super) async fn submit(&self, entry: AccountEntry) -> BatchVerdict {
        let (reply, answer) = oneshot::channel();
        if self.submit.send(Submission { entry, reply }).await.is_err() {
            return BatchVerdict::NotAttempted { sent: false };
        }
        answer
            .await
            .unwrap_or(BatchVerdict::NotAttempted { sent: true })
    }

    /// Counts a row whose Nick and Image went through portrait_set instead.
    pub(super) fn fell_back_row(&self) {
        lock(&self.report).fallback_rows += 1;
    }

    /// Requests made by the batch path (multiaccount_import and the check's portrait_get).
    pub(super) fn requests(&self) -> u64 {
        self.import.requests() + self.check.requests()
    }

    pub(super) fn throttled(&self) -> u64 {
        self.import.throttled() + self.check.throttled()
    }

    /// Ends the batch path once every worker is done (so nothing waits on it) and returns
    /// what it did.
    pub(super) async fn finish(&self) -> BatchReport {
        self.done.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let mut report = lock(&self.report).clone();
        let pacer = self.import.pacer();
        report.pace_lowest = pacer.lowest_rate().floor() as u32;
        report.pace_ceiling = pacer.ceiling().floor() as u32;
        report
    }
}

fn lock(report: &Mutex<BatchReport>) -> std::sync::MutexGuard<'_, BatchReport> {
    report.lock().unwrap_or_else(|e| e.into_inner())
}

/// One multiaccount_import call's answer, with the rows it carried.
struct CallDone {
    batch: Vec<Submission>,
    answer: Answer,
    requests: u32,
}

/// The task behind [`BatchPath`]: fills calls, sends them, and holds their users until a
/// check vouches for them.
struct Batcher {
    import: Arc<ChatApi>,
    check: Arc<ChatApi>,
    report: Arc<Mutex<BatchReport>>,
    filling: Vec<Submission>,
    filling_since: Instant,
    filling_last: Instant,
    calls: JoinSet<CallDone>,
    /// Imported, waiting for the next check.
    unchecked: Vec<Submission>,
    unchecked_since: Instant,
    /// Imported, covered by the check in flight.
    checking: Vec<Submission>,
    checks: JoinSet<ReadBack>,
    fallen_back: bool,
}

impl Batcher {
    async fn run(mut self, mut submissions: mpsc::Receiver<Submission>, done: CancellationToken) {
        let mut tick = tokio::time::interval(FILL_WAIT / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(answered) = self.calls.join_next(), if !self.calls.is_empty() => {
                    if let Ok(answered) = answered {
                        self.call_done(answered);
                    }
                }
                Some(checked) = self.checks.join_next(), if !self.checks.is_empty() => {
                    let checked = checked.unwrap_or(ReadBack::Stopped { calls: 0 });
                    self.check_done(checked);
                }
                submission = submissions.recv(), if self.filling.len() < BATCH => {
                    let Some(submission) = submission else { break };
                    let now = Instant::now();
                    if self.filling.is_empty() {
                        self.filling_since = now;
                    }
                    self.filling_last = now;
                    self.filling.push(submission);
                }
                _ = tick.tick() => {}
                _ = done.cancelled() => break,
            }
            if self.import.stop().is_cancelled() {
                self.drop_waiting();
            } else {
                self.launch_call();
                self.start_check();
            }
        }
    }

    /// After a stop: rows not yet in a call, and rows no check will now cover, stay pending.
    fn drop_waiting(&mut self) {
        for waiting in self.filling.drain(..) {
            let _ = waiting
                .reply
                .send(BatchVerdict::NotAttempted { sent: false });
        }
        if self.checks.is_empty() {
            for waiting in self.unchecked.drain(..) {
                let _ = waiting
                    .reply
                    .send(BatchVerdict::NotAttempted { sent: true });
            }
        }
    }

    /// Sends the filling call once it is full, or the users stopped coming, or it waited
    /// long enough.
    fn launch_call(&mut self) {
        if self.filling.is_empty() || self.calls.len() >= MAX_CALLS {
            return;
        }
        let waited = self.filling_last.elapsed() >= FILL_WAIT
            || self.filling_since.elapsed() >= FILL_MAX_WAIT;
        if self.filling.len() < BATCH && !waited {
            return;
        }
        let batch = std::mem::take(&mut self.filling);
        {
            let mut report = lock(&self.report);
            report.calls += 1;
            report.users += batch.len() as u64;
        }
        let api = self.import.clone();
        self.calls.spawn(async move {
            let entries: Vec<AccountEntry> = batch.iter().map(|s| s.entry.clone()).collect();
            let body = multiaccount_import_body(&entries, true);
            let (answer, requests) = api.call(MULTIACCOUNT_IMPORT, body).await;
            CallDone {
                batch,
                answer,
                requests,
            }
        });
    }

    /// Maps a call's answer back to its rows: FailAccounts fail, the rest wait for a check
    /// (or fall back once the path is dropped).
    fn call_done(&mut self, answered: CallDone) {
        let CallDone {
            batch,
            answer,
            requests,
        } = answered;
        let failure = |code, message: &str| Failure {
            code,
            message: message.to_string(),
            stage: Stage::Account,
            attempts: requests,
            superseded: Vec::new(),
        };
        let raw = match answer {
            Answer::Ok(_, raw) => raw,
            Answer::Failed { code, message } => {
                let failed = failure(code, &format!("multiaccount_import failed: {message}"));
                return answer_all(batch, || BatchVerdict::Failed(failed.clone()));
            }
            Answer::Fatal { why, .. } => {
                return answer_all(batch, || BatchVerdict::Fatal(why.clone()))
            }
            Answer::Stopped => {
                let sent = requests > 0;
                return answer_all(batch, || BatchVerdict::NotAttempted { sent });
            }
        };
        let Some(fail) = fail_accounts(&raw) else {
            let failed = failure(
                FailureCode::BadResponse,
                "multiaccount_import answered without a readable FailAccounts",
            );
            return answer_all(batch, || BatchVerdict::Failed(failed.clone()));
        };
        let fail: HashSet<String> = fail.into_iter().collect();
        for submission in batch {
            if fail.contains(&submission.entry.user_id) {
                lock(&self.report).fail_accounts += 1;
                let failed = failure(
                    FailureCode::AccountImport,
                    "multiaccount_import listed this account in FailAccounts",
                );
                let _ = submission.reply.send(BatchVerdict::Failed(failed));
            } else if self.fallen_back {
                let _ = submission.reply.send(BatchVerdict::FallBack);
            } else {
                if self.unchecked.is_empty() {
                    self.unchecked_since = Instant::now();
                }
                self.unchecked.push(submission);
            }
        }
    }

    /// Starts a check of the users imported since the last one, once there are enough of
    /// them or they waited long enough, and no check is in flight.
    fn start_check(&mut self) {
        if self.fallen_back || !self.checks.is_empty() || self.unchecked.is_empty() {
            return;
        }
        let mut report = lock(&self.report);
        // The first check goes as soon as the first 100 users are imported.
        let enough = match report.sample_users < FIRST_SAMPLE {
            true => FIRST_SAMPLE as usize,
            false => CHECK_USERS,
        };
        if self.unchecked.len() < enough && self.unchecked_since.elapsed() < CHECK_WAIT {
            return;
        }
        let covered = std::mem::take(&mut self.unchecked);
        let sample = {
            let sample = pick_sample(&covered, report.sample_users);
            report.sample_users += sample.len() as u64;
            sample
        };
        drop(report);
        self.checking = covered;
        let api = self.check.clone();
        self.checks
            .spawn(async move { read_back(&api, &sample).await });
    }

    /// Answers the rows a check covered; a check that fails (or cannot tell) drops the path.
    fn check_done(&mut self, checked: ReadBack) {
        let covered = std::mem::take(&mut self.checking);
        let mut report = lock(&self.report);
        let why = match checked {
            ReadBack::Landed { calls } => {
                report.check_calls += calls;
                report.confirmed_users += covered.len() as u64;
                return answer_all(covered, || BatchVerdict::Applied);
            }
            ReadBack::Stopped { calls } => {
                report.check_calls += calls;
                return answer_all(covered, || BatchVerdict::NotAttempted { sent: true });
            }
            ReadBack::Fatal { calls, why } => {
                report.check_calls += calls;
                return answer_all(covered, || BatchVerdict::Fatal(why.clone()));
            }
            ReadBack::NotLanded {
                calls,
                wrong,
                example,
            } => {
                report.check_calls += calls;
                format!("{wrong} of the sampled users differ, e.g. {example}")
            }
            ReadBack::Unknown { calls, why } => {
                report.check_calls += calls;
                format!("the read-back could not tell: {why}")
            }
        };
        tracing::warn!(
            "--batch-nick-image: the self-check found Nick/Image not applied ({why}); \
             sending them with portrait_set for the rest of the run"
        );
        report.fell_back = Some(why);
        drop(report);
        self.fallen_back = true;
        answer_all(covered, || BatchVerdict::FallBack);
        answer_all(std::mem::take(&mut self.unchecked), || {
            BatchVerdict::FallBack
        });
    }
}

fn answer_all(batch: Vec<Submission>, verdict: impl Fn() -> BatchVerdict) {
    for submission in batch {
        let _ = submission.reply.send(verdict());
    }
}

/// The users a check reads back: every one until the first 100 were, then about one in
/// 1000 (at least one), spread at random.
fn pick_sample(covered: &[Submission], sampled_so_far: u64) -> Vec<AccountEntry> {
    let owed = FIRST_SAMPLE.saturating_sub(sampled_so_far) as usize;
    let spread = covered.len().div_ceil(USERS_PER_SAMPLE);
    let wanted = owed.max(spread).min(covered.len());
    if owed > 0 {
        // The first users, in the order they were imported.
        return covered[..wanted].iter().map(|s| s.entry.clone()).collect();
    }
    rand::seq::index::sample(&mut rand::rng(), covered.len(), wanted)
        .into_iter()
        .map(|i| covered[i].entry.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(n: usize) -> Vec<Submission> {
        (0..n)
            .map(|i| Submission {
                entry: AccountEntry {
                    user_id: format!("u{i}"),
                    nick: Some(format!("n{i}")),
                    face_url: None,
                },
                reply: oneshot::channel().0,
            })
            .collect()
    }

    #[test]
    fn the_first_hundred_users_are_all_read_back_then_one_in_a_thousand() {
        let users =
            |sample: Vec<AccountEntry>| sample.into_iter().map(|e| e.user_id).collect::<Vec<_>>();
        // The first check reads back the first 100 of what it covers.
        let first = users(pick_sample(&covered(300), 0));
        assert_eq!(first.len(), 100);
        assert_eq!(first[0], "u0");
        assert_eq!(first[99], "u99");
        // A first check that covered 30 leaves 70 owed to the next.
        assert_eq!(pick_sample(&covered(30), 0).len(), 30);
        assert_eq!(pick_sample(&covered(500), 30).len(), 70);
        // Then 0.1 %, at least one.
        assert_eq!(pick_sample(&covered(1000), 100).len(), 1);
        assert_eq!(pick_sample(&covered(20), 100).len(), 1);
        assert_eq!(pick_sample(&covered(2500), 100).len(), 3);
        let spread: HashSet<String> = users(pick_sample(&covered(2500), 100))
            .into_iter()
            .collect();
        assert_eq!(spread.len(), 3, "distinct users");
    }
}
