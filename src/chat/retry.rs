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

/// Throttled answers one call may get: the last of them gives it up (README: "at most 20
/// throttled answers per row").
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
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
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
        if *throttled >= MAX_THROTTLED {
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
