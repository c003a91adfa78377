//! One Chat call, made until it succeeds, fails for good, or the job stops: every attempt
//! through the shared pacer, transient errors retried with exponential backoff and full
//! jitter, throttle codes slowing the whole job, an expired UserSig renewed once.
//!
//! Used for every API the job calls (portrait_set, the account APIs, portrait_get), so they
//! all follow the same error table (spec §1.7, see `codes`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::chat::client::{CallError, ChatClient, Envelope};
use crate::chat::codes::{classify, ErrorClass};
use crate::chat::limiter::{Pacer, Ticket};
use crate::outcome::FailureCode;

/// Chat's app-wide frequency limit ("SDKAppID request frequency exceeded"), as opposed to
/// 60007, the limit of one API.
const APP_WIDE_THROTTLE: u32 = 60011;

/// Throttled answers one call may get by default: the last of them gives it up (README: "at
/// most 20 throttled answers per row").
const MAX_THROTTLED: u32 = 20;

/// How a call ended.
#[derive(Debug)]
pub enum Answer {
    /// Chat answered OK; the envelope and the whole body (for APIs that return more).
    Ok(Envelope, Bytes),
    /// This call failed for good; other calls may still succeed.
    Failed { code: FailureCode, message: String },
    /// Every later call would fail the same way: the job must stop.
    Fatal {
        code: FailureCode,
        message: String,
        why: String,
    },
    /// The job stopped before the call could (finish being) made.
    Stopped,
}

/// How every call is retried: the one policy for all of Chat's APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call for transient errors, the first included.
    pub max_attempts: u32,
    /// First backoff window; each retry doubles it (full jitter), up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Throttled answers per call (they use up no attempt); the last of them gives it up.
    pub max_throttled: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_throttled: MAX_THROTTLED,
        }
    }
}

impl RetryPolicy {
    /// The default policy with `max_attempts` attempts per call.
    pub fn with_attempts(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        }
    }

    /// The full-jitter window before retry `n` (1-based): base × 2^(n-1), capped.
    fn backoff_window(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How the requests of one command were answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Answered {
    /// Chat answered OK.
    pub ok: u64,
    /// Chat throttled them (60007 and friends, HTTP 429): sent again later.
    pub throttled: u64,
    /// Any other answer: a failure code, an HTTP error, a transport error or a timeout.
    pub error: u64,
}

impl Answered {
    pub fn add(&mut self, other: Answered) {
        self.ok += other.ok;
        self.throttled += other.throttled;
        self.error += other.error;
    }
}

/// What became of each request, by command.
#[derive(Debug, Default)]
pub struct RequestResults {
    by_command: Mutex<BTreeMap<String, Answered>>,
}

/// What became of one request, for [`RequestResults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestResult {
    Ok,
    Throttled,
    Error,
}

impl RequestResults {
    pub(crate) fn note(&self, command: &str, answer: RequestResult) {
        let mut by_command = self.by_command.lock().unwrap_or_else(|e| e.into_inner());
        let counts = match by_command.get_mut(command) {
            Some(counts) => counts,
            None => by_command.entry(command.to_string()).or_default(),
        };
        match answer {
            RequestResult::Ok => counts.ok += 1,
            RequestResult::Throttled => counts.throttled += 1,
            RequestResult::Error => counts.error += 1,
        }
    }

    /// The counts so far, by command (its last path segment: `portrait_set`).
    pub fn snapshot(&self) -> BTreeMap<String, Answered> {
        let by_command = self.by_command.lock().unwrap_or_else(|e| e.into_inner());
        by_command
            .iter()
            .map(|(command, counts)| {
                let name = command.rsplit('/').next().unwrap_or(command);
                (name.to_string(), *counts)
            })
            .collect()
    }
}

/// What one call borrows from its `ChatApi`.
pub(crate) struct Caller<'a> {
    pub client: &'a ChatClient,
    pub pacer: &'a Pacer,
    /// Pacers of other handles on the same app, slowed too by an app-wide 60011.
    pub siblings: &'a [Arc<Pacer>],
    pub policy: RetryPolicy,
    pub stop: &'a CancellationToken,
    /// Counts every request made.
    pub requests: &'a AtomicU64,
    /// Counts throttled answers.
    pub throttled: &'a AtomicU64,
    /// Counts what became of each request, by command.
    pub results: &'a RequestResults,
}

impl Caller<'_> {
    /// Makes the call. Returns how it ended and how many requests it took.
    pub async fn call(&self, command: &str, body: Bytes) -> (Answer, u32) {
        let mut attempts = 0u32;
        let mut throttled = 0u32;
        let mut renewed = false;
        loop {
            // A retry after a renewal is a request too, though not an attempt.
            let requests = attempts + throttled + u32::from(renewed);
            if self.stop.is_cancelled() {
                return (Answer::Stopped, requests);
            }
            let ticket = tokio::select! {
                ticket = self.pacer.acquire() => ticket,
                _ = self.stop.cancelled() => return (Answer::Stopped, requests),
            };
            if self.stop.is_cancelled() {
                return (Answer::Stopped, requests);
            }
            attempts += 1;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = self.client.call(command, body.clone()).await;
            let requests = attempts + throttled + u32::from(renewed);
            let step = judge(result);
            self.results.note(command, step.result());
            let (code, message) = match step {
                Step::Done(answer) => {
                    if matches!(answer, Answer::Ok(..)) {
                        self.pacer.on_accepted(ticket);
                    }
                    return (answer, requests);
                }
                Step::Renew { code, message } => {
                    if renewed || !self.client.renew_usersig() {
                        let why = format!(
                            "Chat answered {code} (UserSig expired) even after renewal: check the clock and the key"
                        );
                        let code = FailureCode::Chat(code);
                        return (Answer::Fatal { code, message, why }, requests);
                    }
                    renewed = true;
                    attempts -= 1;
                    continue;
                }
                Step::Throttled(code, message) => {
                    let app_wide = code == FailureCode::Chat(APP_WIDE_THROTTLE);
                    if let Some(answer) =
                        self.throttle(ticket, &mut attempts, &mut throttled, app_wide)
                    {
                        let gave_up = Answer::Failed { code, message };
                        return (answer.unwrap_or(gave_up), requests);
                    }
                    continue;
                }
                Step::Connect(text) => {
                    if let Some(fatal) = self.unreachable(&text, attempts) {
                        return (fatal, requests);
                    }
                    (FailureCode::Transport, text)
                }
                Step::Retry(code, message) => (code, message),
            };
            if attempts >= self.policy.max_attempts {
                return (Answer::Failed { code, message }, requests);
            }
            let sleep = rand::random_range(Duration::ZERO..=self.policy.backoff_window(attempts));
            tracing::debug!(command, attempt = attempts, "{code}: retrying in {sleep:?}");
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                // A stop cancels the backoff: the call is left pending.
                _ = self.stop.cancelled() => return (Answer::Stopped, requests),
            }
        }
    }

    /// A failure to connect is about the whole job, not the call, when no request has been
    /// answered yet (a wrong endpoint or region, no network), or when a call's last attempt
    /// still fails to connect (Chat has become unreachable).
    fn unreachable(&self, text: &str, attempts: u32) -> Option<Answer> {
        let why = if !self.client.has_answered() {
            format!("{text}: check --endpoint / --region and the network")
        } else if attempts >= self.policy.max_attempts {
            format!("Chat is unreachable: {text} ({attempts} attempts)")
        } else {
            return None;
        };
        Some(Answer::Fatal {
            code: FailureCode::Transport,
            message: text.to_string(),
            why,
        })
    }

    /// Handles a throttled answer: slows the job and says to retry (`None`), or gives up
    /// (`Some(None)`: the caller names the code).
    /// `app_wide` (60011): the sibling pacers slow down too, since the limit is the app's.
    fn throttle(
        &self,
        ticket: Ticket,
        attempts: &mut u32,
        throttled: &mut u32,
        app_wide: bool,
    ) -> Option<Option<Answer>> {
        *attempts -= 1;
        *throttled += 1;
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.pacer.on_throttled(ticket);
        if *throttled >= self.policy.max_throttled {
            return Some(None);
        }
        if app_wide {
            for sibling in self.siblings {
                sibling.on_throttled_elsewhere();
            }
        }
        None
    }
}

/// What one answer means for the call.
enum Step {
    /// The call is over.
    Done(Answer),
    /// The UserSig expired: renew it once and try again.
    Renew { code: u32, message: String },
    /// Chat is throttling: slow the job and try again.
    Throttled(FailureCode, String),
    /// A transient failure: back off and try again, if attempts are left.
    Retry(FailureCode, String),
    /// No connection could be made: the job may have to stop (see `Caller::unreachable`).
    Connect(String),
}

impl Step {
    /// What the request this step answers became, for the counts by command.
    fn result(&self) -> RequestResult {
        match self {
            Step::Done(Answer::Ok(..)) => RequestResult::Ok,
            Step::Throttled(..) => RequestResult::Throttled,
            _ => RequestResult::Error,
        }
    }
}

/// Classifies one answer by Chat's error table (spec §1.7, see `codes`) and the HTTP status.
fn judge(result: Result<(Envelope, Bytes), CallError>) -> Step {
    let fatal = |code, message, why| Step::Done(Answer::Fatal { code, message, why });
    match result {
        Ok((envelope, body)) if envelope.is_ok() => Step::Done(Answer::Ok(envelope, body)),
        Ok((envelope, _)) => {
            let code = envelope.error_code;
            let message = format!("{} ({})", envelope.error_info, describe_code(code));
            match classify(code) {
                ErrorClass::PermanentRow => Step::Done(Answer::Failed {
                    code: FailureCode::Chat(code),
                    message,
                }),
                ErrorClass::FatalJob => {
                    let why = format!("Chat answered {code}: {message}");
                    fatal(FailureCode::Chat(code), message, why)
                }
                ErrorClass::Expired => Step::Renew { code, message },
                ErrorClass::Throttled => Step::Throttled(FailureCode::Chat(code), message),
                ErrorClass::Transient => Step::Retry(FailureCode::Chat(code), message),
            }
        }
        Err(CallError::Http(status)) if status >= 500 || status == 408 => {
            Step::Retry(FailureCode::Http(status), format!("HTTP {status}"))
        }
        Err(CallError::Http(429)) => Step::Throttled(FailureCode::Http(429), "HTTP 429".into()),
        Err(CallError::Http(status)) => fatal(
            FailureCode::Http(status),
            format!("HTTP {status}"),
            format!("the endpoint answered HTTP {status}: check --endpoint / --region"),
        ),
        Err(CallError::BadResponse(text)) => fatal(
            FailureCode::BadResponse,
            text.clone(),
            format!("the endpoint does not answer like Chat ({text}): check --endpoint"),
        ),
        Err(CallError::Timeout(after)) => Step::Retry(
            FailureCode::OutcomeUnknown,
            format!("no answer within {after:?} on the last attempt; Chat may have applied it"),
        ),
        Err(CallError::Connect(text)) => Step::Connect(text),
        Err(CallError::Transport(text)) => Step::Retry(FailureCode::Transport, text),
    }
}

/// A short explanation of a Chat code for failure messages.
pub fn describe_code(code: u32) -> &'static str {
    match code {
        40001 => "bad request parameter",
        40002 => "no account given",
        40003 => "account not imported into Chat",
        40004 => "identifier is not an app admin",
        40005 => "sensitive words",
        40006 => "internal server error",
        40007 => "no admin read permission on the field",
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
        70107 => "account does not exist",
        70206 => "invalid batch size",
        70398 => "account limit reached (trial apps allow 100)",
        70402 => "invalid parameter",
        _ => "see Chat's error code table",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::chat::api::command::PORTRAIT_SET;
    use crate::chat::api::ChatApi;
    use crate::chat::client::ClientTuning;
    use crate::chat::connection::{parse_endpoint, Connection, Credentials};
    use crate::chat::usersig::SecretKey;
    use crate::sim::{Faults, Injected, SimConfig, SimHandle};

    const APP: u64 = 1_400_000_000;
    const ADMIN: &str = "administrator";
    const KEY: &str = "retry-test-key";

    /// How a call ended, in a few words.
    fn ended(answer: &Answer) -> String {
        match answer {
            Answer::Ok(..) => "ok".into(),
            Answer::Failed { code, .. } => format!("failed {code}"),
            Answer::Fatal { code, .. } => format!("fatal {code}"),
            Answer::Stopped => "stopped".into(),
        }
    }

    /// What one answer means, in a few words.
    fn meaning(result: Result<(Envelope, Bytes), CallError>) -> String {
        match judge(result) {
            Step::Done(answer) => ended(&answer),
            Step::Renew { code, .. } => format!("renew {code}"),
            Step::Throttled(code, _) => format!("throttled {code}"),
            Step::Retry(code, _) => format!("retry {code}"),
            Step::Connect(_) => "connect".into(),
        }
    }

    fn envelope(status: &str, code: u32) -> Result<(Envelope, Bytes), CallError> {
        let envelope = Envelope {
            action_status: status.into(),
            error_code: code,
            error_info: "info".into(),
        };
        Ok((envelope, Bytes::new()))
    }

    /// Chat's error table (spec §1.7) and the HTTP statuses, as each answer is acted on.
    #[test]
    fn each_answer_is_retried_slowed_renewed_failed_or_fatal_as_the_table_says() {
        for (result, expected) in [
            (envelope("OK", 0), "ok"),
            (envelope("OK", 40003), "failed 40003"),
            (envelope("FAIL", 0), "failed 0"),
            (envelope("FAIL", 40003), "failed 40003"),
            (envelope("FAIL", 40006), "retry 40006"),
            (envelope("FAIL", 60007), "throttled 60007"),
            (envelope("FAIL", 60011), "throttled 60011"),
            (envelope("FAIL", 70001), "renew 70001"),
            (envelope("FAIL", 70009), "fatal 70009"),
            (Err(CallError::Http(500)), "retry http_500"),
            (Err(CallError::Http(502)), "retry http_502"),
            (Err(CallError::Http(503)), "retry http_503"),
            (Err(CallError::Http(408)), "retry http_408"),
            (Err(CallError::Http(429)), "throttled http_429"),
            (Err(CallError::Http(499)), "fatal http_499"),
            (Err(CallError::Http(404)), "fatal http_404"),
            (Err(CallError::Http(400)), "fatal http_400"),
            (
                Err(CallError::BadResponse("<html>".into())),
                "fatal bad_response",
            ),
            (
                Err(CallError::Timeout(Duration::from_secs(10))),
                "retry outcome_unknown",
            ),
            (Err(CallError::Transport("reset".into())), "retry transport"),
            (Err(CallError::Connect("refused".into())), "connect"),
        ] {
            let shown = format!("{result:?}");
            assert_eq!(meaning(result), expected, "{shown}");
        }
    }

    /// The counts by command (the summary's answers table): OK, throttled, anything else.
    #[test]
    fn requests_are_counted_by_command_and_answer() {
        let step_result = |result| judge(result).result();
        assert_eq!(step_result(envelope("OK", 0)), RequestResult::Ok);
        assert_eq!(
            step_result(envelope("FAIL", 60007)),
            RequestResult::Throttled
        );
        assert_eq!(
            step_result(Err(CallError::Http(429))),
            RequestResult::Throttled
        );
        for other in [
            envelope("FAIL", 40003),
            envelope("FAIL", 40006),
            envelope("FAIL", 70001),
            Err(CallError::Http(502)),
        ] {
            assert_eq!(step_result(other), RequestResult::Error);
        }

        let results = RequestResults::default();
        for answer in [
            RequestResult::Ok,
            RequestResult::Ok,
            RequestResult::Throttled,
            RequestResult::Error,
        ] {
            results.note("v4/profile/portrait_set", answer);
        }
        results.note("v4/profile/portrait_get", RequestResult::Throttled);
        let counts = results.snapshot();
        let set = Answered {
            ok: 2,
            throttled: 1,
            error: 1,
        };
        let get = Answered {
            ok: 0,
            throttled: 1,
            error: 0,
        };
        assert_eq!(
            counts,
            BTreeMap::from([
                ("portrait_get".to_string(), get),
                ("portrait_set".to_string(), set)
            ])
        );
        let mut total = set;
        total.add(get);
        total.add(set);
        assert_eq!(
            total,
            Answered {
                ok: 4,
                throttled: 3,
                error: 2
            }
        );
    }

    /// The backoff window doubles from the base for each retry, up to the cap; `--max-attempts`
    /// changes only the attempts.
    #[test]
    fn the_backoff_doubles_from_the_base_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let windows: Vec<u64> = (1..=8)
            .map(|n| policy.backoff_window(n).as_millis() as u64)
            .collect();
        assert_eq!(
            windows,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(policy.backoff_window(1000), Duration::from_secs(30));
        assert_eq!(
            RetryPolicy::with_attempts(3),
            RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            }
        );
        assert_eq!(RetryPolicy::default().max_throttled, 20);
    }

    fn sim_config(faults: Faults, latency: Duration) -> SimConfig {
        let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
        config.limit_per_sec = 0;
        config.faults = faults;
        config.latency_min = latency;
        config.latency_max = latency;
        config
    }

    /// Every request for `user` answered `injected`, at most `streak` times in a row (0: always).
    fn inject(user: &str, injected: Injected, streak: u32) -> Faults {
        Faults {
            inject_for: HashMap::from([(user.to_string(), injected)]),
            max_streak_per_user: streak,
            ..Faults::default()
        }
    }

    async fn sim(faults: Faults) -> SimHandle {
        SimHandle::start(sim_config(faults, Duration::ZERO))
            .await
            .expect("start the simulator")
    }

    /// Retries at once (1-4 ms backoff), `max_attempts` attempts and `max_throttled` throttles.
    fn quick(max_attempts: u32, max_throttled: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            max_throttled,
        }
    }

    fn client(url: &str) -> Arc<ChatClient> {
        let connection = Connection {
            sdkappid: APP,
            admin: ADMIN.into(),
            base_url: parse_endpoint(url).expect("a loopback endpoint"),
            credentials: Credentials::Key(SecretKey::new(KEY)),
            usersig_ttl: 3600,
        };
        Arc::new(ChatClient::new(connection, ClientTuning::default()).expect("a client"))
    }

    fn api(url: &str, policy: RetryPolicy, stop: &CancellationToken) -> ChatApi {
        ChatApi::new(client(url), 1000, policy, stop.clone())
    }

    fn body(user: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"From_Account":"{user}","ProfileItem":[{{"Tag":"Tag_Profile_IM_Nick","Value":"Ann"}}]}}"#
        ))
    }

    async fn call(api: &ChatApi, user: &str) -> (String, u32) {
        let (answer, requests) = api.call(PORTRAIT_SET, body(user)).await;
        (ended(&answer), requests)
    }

    #[tokio::test]
    async fn a_transient_answer_is_retried_until_it_succeeds_or_the_attempts_run_out() {
        let sim = sim(inject("u1", Injected::Code(40006), 2)).await;
        let stop = CancellationToken::new();
        let retried = api(&sim.url(), quick(3, 20), &stop);
        assert_eq!(call(&retried, "u1").await, ("ok".into(), 3));
        assert_eq!(retried.requests(), 3);
        let answered = Answered {
            ok: 1,
            throttled: 0,
            error: 2,
        };
        assert_eq!(retried.results()["portrait_set"], answered);
        // Two attempts are not enough for two transient answers in a row.
        let short = api(&sim.url(), quick(2, 20), &stop);
        assert_eq!(call(&short, "u1").await, ("failed 40006".into(), 2));
        assert_eq!(sim.stats().applied, 1);
    }

    /// Throttled answers use up no attempt: one attempt and three throttles still succeed, with
    /// four requests; a call gives up at the policy's number of throttled answers.
    #[tokio::test]
    async fn throttled_answers_use_up_no_attempt_and_give_up_at_the_policys_count() {
        let sim = sim(inject("u1", Injected::Code(60007), 3)).await;
        let stop = CancellationToken::new();
        let api = api(&sim.url(), quick(1, 20), &stop);
        assert_eq!(call(&api, "u1").await, ("ok".into(), 4));
        assert_eq!((api.requests(), api.throttled()), (4, 3));
        assert_eq!(api.results()["portrait_set"].throttled, 3);

        let endless = self::sim(inject("u2", Injected::Http(429), 0)).await;
        let api = self::api(&endless.url(), quick(5, 4), &stop);
        let ended = tokio::time::timeout(Duration::from_secs(10), call(&api, "u2")).await;
        assert_eq!(ended.ok(), Some(("failed http_429".into(), 4)));
        assert_eq!(api.throttled(), 4);
    }

    /// 60011 is the app's limit: the sibling handles slow down too. 60007 is one API's.
    #[tokio::test]
    async fn an_app_wide_throttle_slows_the_siblings_and_an_apis_own_does_not() {
        let mut faults = inject("u1", Injected::Code(60011), 1);
        faults.inject_for.insert("u2".into(), Injected::Code(60007));
        let sim = sim(faults).await;
        let stop = CancellationToken::new();
        let (sends, reads) = (
            api(&sim.url(), quick(3, 20), &stop),
            api(&sim.url(), quick(3, 20), &stop),
        );
        ChatApi::link_siblings(&[&sends, &reads]);
        assert_eq!(call(&sends, "u2").await, ("ok".into(), 2));
        assert_eq!(reads.pacer().current_rate(), 1000.0, "60007 is one API's");
        assert_eq!(call(&sends, "u1").await, ("ok".into(), 2));
        assert_eq!(reads.pacer().current_rate(), 990.0, "60011 is the app's");
    }

    /// 70001: the UserSig is renewed once and the call made again (a request, not an attempt);
    /// a second 70001 stops the job.
    #[tokio::test]
    async fn an_expired_usersig_is_renewed_once_then_stops_the_job() {
        let sim = sim(inject("u1", Injected::Code(70001), 1)).await;
        let stop = CancellationToken::new();
        let api = api(&sim.url(), quick(1, 20), &stop);
        assert_eq!(call(&api, "u1").await, ("ok".into(), 2));

        let always = self::sim(inject("u1", Injected::Code(70001), 0)).await;
        let api = self::api(&always.url(), quick(3, 20), &stop);
        assert_eq!(call(&api, "u1").await, ("fatal 70001".into(), 2));
    }

    /// No connection before any answer: a wrong endpoint, the job stops at once. After answers,
    /// a call that cannot connect on its last attempt means Chat became unreachable.
    #[tokio::test]
    async fn a_failure_to_connect_stops_the_job_at_once_or_after_the_last_attempt() {
        let stop = CancellationToken::new();
        let sim = sim(Faults::default()).await;
        let url = sim.url();
        let api = api(&url, quick(3, 20), &stop);
        assert_eq!(call(&api, "u1").await, ("ok".into(), 1));
        sim.shutdown();
        sim.closed().await;
        assert_eq!(call(&api, "u1").await, ("fatal transport".into(), 3));
        // A fresh client that never got an answer, against the closed port.
        let never = self::api(&url, quick(3, 20), &stop);
        assert_eq!(call(&never, "u1").await, ("fatal transport".into(), 1));
    }

    /// A stop is seen between requests, whatever the last answer was, and the call says how
    /// many requests it made: here one, answered after the stop (the simulator takes 300 ms).
    #[tokio::test]
    async fn a_stop_ends_the_call_between_requests_with_the_requests_made() {
        for injected in [
            Injected::Code(60007),
            Injected::Code(70001),
            Injected::Code(40006),
        ] {
            let config = sim_config(
                inject("u1", injected.clone(), 0),
                Duration::from_millis(300),
            );
            let sim = SimHandle::start(config).await.expect("start the simulator");
            let stop = CancellationToken::new();
            let api = api(&sim.url(), quick(5, 20), &stop);
            let call = call(&api, "u1");
            let stopper = async {
                while sim.stats().requests == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                stop.cancel();
            };
            let (ended, ()) = tokio::join!(call, stopper);
            assert_eq!(ended, ("stopped".into(), 1), "{injected:?}");
        }
        let stop = CancellationToken::new();
        stop.cancel();
        let api = api("http://127.0.0.1:9", quick(5, 20), &stop);
        assert_eq!(call(&api, "u1").await, ("stopped".into(), 0));
    }
}
