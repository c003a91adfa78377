//! The built-in Chat simulator: an HTTP/1.1 server that answers the REST commands the import
//! job uses the way the spec (§1–§5) says Chat does, with a sliding one-second rate limit per
//! command, seeded fault injection and the statistics the tests use to prove the client paces,
//! retries and serializes per user.
//!
//! Commands served (request and answer shapes as in spec §2 and §5.2–§5.6):
//! - `v4/profile/portrait_set`: `{"From_Account","ProfileItem":[{"Tag","Value"}]}` → envelope.
//! - `v4/profile/portrait_get`: `{"To_Account":[..],"TagList":[..]}` → envelope +
//!   `UserProfileItem:[{"To_Account","ProfileItem":[{"Tag","Value"}],"ResultCode","ResultInfo"}]`
//!   and, only when some user failed, `Fail_Account:[..]`.
//! - `v4/im_open_login_svc/account_import`: `{"UserID","Nick"?,"FaceUrl"?}` → envelope.
//! - `v4/im_open_login_svc/multiaccount_import`: `{"Accounts":[..]}` or
//!   `{"AccountList":[{"UserID","Nick"?,"FaceUrl"?}]}` → envelope + `FailAccounts:[..]`.
//! - `v4/im_open_login_svc/account_check`: `{"CheckItem":[{"UserID"}]}` → envelope +
//!   `ResultItem:[{"UserID","ResultCode","ResultInfo","AccountStatus"}]`.
//!
//! To add a command: a `Command` variant (and its entry in `Command::ALL`), its path in
//! `from_path`, its name, its non-admin code in `not_admin_code`, whether it is a 100/s API in
//! `batch_limited`, and a handler in `Sim::dispatch`.
//!
//! Decisions where the spec is silent (all documented so tests can rely on them):
//! - Order of checks: `always_code` → route (60009) → method (60002) → query (`sdkappid` 60012 /
//!   60006, `identifier` 60010, `usersig` 700xx, `random` / `contenttype` 60002) → admin
//!   (40004 for profile commands, 70403 for account commands) → the command's rate limit
//!   (60007) → body (60003, then the command's decode checks) → injected faults → value checks
//!   and the work itself. Decode checks: portrait_set 40001 / 40003; portrait_get 40002 / 40001;
//!   account_import 70402; multiaccount_import and account_check 70402 / 70206. Value checks:
//!   portrait_set 40009 / 40610 / 40605 / 40601; portrait_get 40009; account_import 40601.
//! - The simulator knows one app, so any `sdkappid` other than the configured one is "invalid"
//!   (60006). 70014 comes from a sig made for another SDKAppID sent with the right `sdkappid`.
//! - Bodies over [`MAX_BODY_BYTES`] get 60002 (no documented code exists for this).
//! - A portrait_set is all-or-nothing: nothing is written unless every item is valid.
//! - 40006, 502 and reset faults write nothing; a slow fault does the work, then answers late.
//!   The 40006 fault is used for every command, although account_check's page does not list
//!   40006 (its "try again" codes are 70169 / 70202 / 70500).
//! - `max_streak_per_user` is keyed by From_Account for portrait_set, and by command plus the
//!   first UserID of the request for the other commands (a retried batch starts with the same
//!   account, so its streak is capped too; different commands never share a streak).
//! - The rate limit is one sliding limiter per command (spec §1.5 is silent on per-API vs.
//!   per-app): portrait_set, portrait_get and account_import admit
//!   [`SimConfig::limit_per_sec`]; multiaccount_import and account_check admit
//!   [`SimConfig::limit_batch_per_sec`]. `limit_per_sec == 0` turns every limiter off.
//! - Account commands answer the account envelope `{"ActionStatus","ErrorCode","ErrorInfo"}`
//!   with no `ErrorDisplay`, as their doc pages show; profile commands and unknown paths carry
//!   `ErrorDisplay: ""`.
//! - A UserID is valid when it is 1 to [`MAX_USER_ID_BYTES`] bytes; characters are not checked.
//!   `Nick` / `FaceUrl` must be JSON strings when present (`null` is a protocol error, 70402);
//!   they are written as `Tag_Profile_IM_Nick` / `Tag_Profile_IM_Image`, empty strings included,
//!   and each may be at most 500 bytes (40601). Re-importing an account is OK and overwrites the
//!   Nick / FaceUrl it carries; others are kept.
//! - Batch sizes: an empty or over-100 `Accounts` / `AccountList` / `CheckItem` gets 70206
//!   ("invalid batch quantity"); sending both `Accounts` and `AccountList` gets 70402. A
//!   portrait_get with over 100 `To_Account` gets 40001; a missing, `null` or empty one 40002;
//!   a missing or empty `TagList` 40001; any unknown tag in `TagList` fails the call with 40009.
//! - multiaccount_import answers OK with `FailAccounts` always present (empty when nothing
//!   failed). An account fails when its UserID is invalid, its Nick / FaceUrl is over 500 bytes
//!   or it is in [`SimConfig::fail_import`]; each failed UserID is listed once, in request
//!   order. Entries that are not strings (`Accounts`) or not objects with a string `UserID`
//!   (`AccountList`) cannot be listed, so they fail the whole call with 70402.
//! - account_import of a UserID in [`SimConfig::fail_import`] answers 70402.
//! - account_check gives an invalid UserID `ResultCode` 70402 and `AccountStatus`
//!   `"NotImported"`; with `accounts: None` every valid UserID is `"Imported"`.
//! - portrait_get answers OK even when some users fail: an unknown account (only possible when
//!   `accounts` is Some) gets a `UserProfileItem` `{"To_Account","ResultCode":40003,
//!   "ResultInfo"}` without `ProfileItem` (as in the doc's failed-user sample) and is listed in
//!   `Fail_Account`. Known users get `ProfileItem` in `TagList` order (duplicates once), holding
//!   only the tags that have a value; a user with none gets `ProfileItem: []`.
//! - Only portrait_set counts a user as in flight (`max_in_flight_per_user`) and in `applied`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::chat::usersig::{self, SecretKey};
use crate::input::profile::{StandardField, ValueKind, CUSTOM_TAG_PREFIX, MAX_STRING_BYTES};

/// Request bodies larger than this are refused; a portrait_set body is a few KB at most.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest UserID Chat accepts, in bytes (spec §5.1).
pub const MAX_USER_ID_BYTES: usize = 32;

/// The most accounts one multiaccount_import, account_check or portrait_get may name.
pub const MAX_BATCH: usize = 100;

/// How long `shutdown` lets in-flight requests finish before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Everything the simulated app is configured with.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub sdkappid: u64,
    pub admin: String,
    pub key: SecretKey,
    /// Admitted requests per sliding one-second window, per command, before answering 60007,
    /// for portrait_set, portrait_get and account_import (Chat: 200/s). 0 = no limit for any
    /// command, whatever `limit_batch_per_sec` says.
    pub limit_per_sec: u32,
    /// The same for multiaccount_import and account_check (Chat: 100/s). 0 = no limit.
    pub limit_batch_per_sec: u32,
    pub latency_min: Duration,
    pub latency_max: Duration,
    pub faults: Faults,
    /// Known accounts; None = every UserID exists. Others get 40003. account_import and
    /// multiaccount_import add to it (see [`SimHandle::accounts`]).
    pub accounts: Option<HashSet<String>>,
    /// UserIDs whose import always fails: listed in multiaccount_import's `FailAccounts`,
    /// answered 70402 by account_import. For tests of per-account import failures.
    pub fail_import: HashSet<String>,
    /// Custom keywords configured "in the console" (e.g. "Hobby"); other Tag_Profile_Custom_* get 40009.
    pub custom_fields: HashSet<String>,
    /// Seed for the fault RNG so runs are reproducible.
    pub seed: u64,
}

impl SimConfig {
    /// Chat's documented limits (200/s, and 100/s for multiaccount_import and account_check),
    /// no latency, no faults, every account exists, no forced import failures, custom keywords
    /// Hobby, City and Tier, seed 1.
    pub fn new(sdkappid: u64, admin: &str, key: SecretKey) -> Self {
        SimConfig {
            sdkappid,
            admin: admin.to_string(),
            key,
            limit_per_sec: 200,
            limit_batch_per_sec: 100,
            latency_min: Duration::ZERO,
            latency_max: Duration::ZERO,
            faults: Faults::default(),
            accounts: None,
            fail_import: HashSet::new(),
            custom_fields: ["Hobby", "City", "Tier"]
                .into_iter()
                .map(String::from)
                .collect(),
            seed: 1,
        }
    }
}

/// Injected failures. Probabilities are checked in field order against one uniform draw, so
/// if they add up to more than 1 the later ones get what is left.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer HTTP 200 `{"ActionStatus":"FAIL","ErrorCode":40006,...}`.
    pub p_40006: f64,
    /// Answer HTTP 502.
    pub p_502: f64,
    /// Drop the connection without any response.
    pub p_reset: f64,
    /// Apply the update, then delay the response by `slow`.
    pub p_slow: f64,
    pub slow: Duration,
    /// Never inject more than this many faults in a row for one From_Account (0 = no cap),
    /// so "bursts of 40006 are retried to success" is deterministic with enough attempts.
    /// For the other commands the streak is keyed by command and the request's first UserID.
    pub max_streak_per_user: u32,
    /// Answer EVERY request with this ErrorCode (e.g. 70009) — for fatal-error tests. None = off.
    pub always_code: Option<u32>,
}

/// What the simulator has seen so far.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimStats {
    /// Every HTTP request that reached the handler, whatever its path.
    pub requests: u64,
    /// The most portrait_set arrivals (requests to its path) in any half-open one-second
    /// window `[t, t+1s)`. Other commands are in `max_in_any_window_by_command`.
    pub max_in_any_window: u64,
    /// `(n-1) / (t_last - t_first)` over all arrivals; 0 with fewer than two.
    pub mean_rate: f64,
    /// Answers by kind, over every request: `"0"`, `"40006"`, `"60007"`, …, `"http_502"`,
    /// `"reset"`. Per-command answers are in `answers_by_command`.
    pub codes: BTreeMap<String, u64>,
    /// Requests by command name (`"portrait_set"`, `"portrait_get"`, `"account_import"`,
    /// `"multiaccount_import"`, `"account_check"`), counted by path on arrival. Requests to
    /// unknown paths are only in `requests`. Commands never called are absent.
    pub by_command: BTreeMap<String, u64>,
    /// Answers by command name, then by kind (the keys of `codes`).
    pub answers_by_command: BTreeMap<String, BTreeMap<String, u64>>,
    /// Like `max_in_any_window`, for each command that was called.
    pub max_in_any_window_by_command: BTreeMap<String, u64>,
    /// The most concurrent requests ever seen for one From_Account (a correct client keeps 1).
    pub max_in_flight_per_user: u64,
    /// The most concurrent requests overall.
    pub max_in_flight: u64,
    /// Successful portrait_set updates applied.
    pub applied: u64,
}

impl SimStats {
    /// How many answers carried this key (`"0"`, `"60007"`, `"http_502"`, `"reset"`, …).
    pub fn count(&self, key: &str) -> u64 {
        self.codes.get(key).copied().unwrap_or(0)
    }

    /// How many answers to `command` (e.g. `"account_check"`) carried this key.
    pub fn count_for(&self, command: &str, key: &str) -> u64 {
        self.answers_by_command
            .get(command)
            .and_then(|codes| codes.get(key))
            .copied()
            .unwrap_or(0)
    }
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests   {} (mean {:.1}/s, at most {} in any 1 s window)",
            self.requests, self.mean_rate, self.max_in_any_window
        )?;
        writeln!(f, "applied    {}", self.applied)?;
        if !self.by_command.is_empty() {
            let commands: Vec<String> = self
                .by_command
                .iter()
                .map(|(command, n)| {
                    let max = self
                        .max_in_any_window_by_command
                        .get(command)
                        .copied()
                        .unwrap_or(0);
                    format!("{command}={n} (at most {max} in 1 s)")
                })
                .collect();
            writeln!(f, "commands   {}", commands.join(" "))?;
        }
        writeln!(
            f,
            "in flight  at most {} overall, {} for one user",
            self.max_in_flight, self.max_in_flight_per_user
        )?;
        let answers: Vec<String> = self
            .codes
            .iter()
            .map(|(code, n)| format!("{code}={n}"))
            .collect();
        let answers = if answers.is_empty() {
            "none".to_string()
        } else {
            answers.join(" ")
        };
        writeln!(f, "answers    {answers}")
    }
}

/// A running simulator. Dropping it shuts the server down, so keep it alive while in use.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    cancel: CancellationToken,
}

impl SimHandle {
    /// Bind 127.0.0.1:0 and serve.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Ok(SimHandle::start_on(listener, config).await)
    }

    /// Serve on an already-bound listener (for `profile-import sim --listen`).
    pub async fn start_on(listener: TcpListener, config: SimConfig) -> SimHandle {
        let addr = listener.local_addr().unwrap_or_else(|err| {
            tracing::warn!(%err, "simulator cannot read its listening address");
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
        });
        let sim = Arc::new(Sim::new(config));
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(listener, Arc::clone(&sim), cancel.clone()));
        tracing::info!(%addr, "Chat simulator listening");
        SimHandle { addr, sim, cancel }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:8080`. An unspecified listen address (0.0.0.0)
    /// is given as loopback so the URL can be connected to.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{addr}")
    }

    pub fn stats(&self) -> SimStats {
        self.sim.state().stats()
    }

    /// The profiles the simulator holds: UserID -> (Tag -> JSON value), sorted.
    pub fn profiles(&self) -> BTreeMap<String, BTreeMap<String, Value>> {
        self.sim.state().profiles.clone()
    }

    /// The known accounts, sorted: the configured ones plus those imported since. None when
    /// the simulator was started with `accounts: None` (every UserID exists).
    pub fn accounts(&self) -> Option<BTreeSet<String>> {
        self.sim
            .state()
            .accounts
            .as_ref()
            .map(|accounts| accounts.iter().cloned().collect())
    }

    /// Change faults while running (e.g. turn off after a while). Streak counts carry over.
    pub fn set_faults(&self, faults: Faults) {
        self.sim.state().faults = faults;
    }

    /// Stop accepting and close connections. Requests already being handled get
    /// [`SHUTDOWN_GRACE`] to finish; idle keep-alive connections close at once.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(listener: TcpListener, sim: Arc<Sim>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                sim.state().connections += 1;
                tokio::spawn(serve_connection(stream, Arc::clone(&sim), cancel.clone()));
            }
            Err(err) => {
                // Running out of file descriptors makes accept fail at once; pausing keeps the
                // loop from spinning until some close.
                tracing::warn!(%err, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, sim: Arc<Sim>, cancel: CancellationToken) {
    // Small JSON answers must not wait for Nagle, or latency tests measure the kernel.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(Arc::clone(&sim), req));
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                // Injected resets end here too, so this is routine, not a warning.
                tracing::debug!(%err, "simulator connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

/// Returned from the service to make hyper drop the connection without answering.
#[derive(Debug)]
struct InjectedReset;

impl fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for InjectedReset {}

/// What one request gets.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// HTTP 200 with Chat's envelope; `extra` holds command-specific fields (e.g. `ResultItem`).
    Chat {
        code: u32,
        info: String,
        extra: Map<String, Value>,
    },
    BadGateway,
    Reset,
}

impl Answer {
    fn ok() -> Answer {
        Answer::Chat {
            code: 0,
            info: String::new(),
            extra: Map::new(),
        }
    }

    /// OK with one command-specific field, e.g. `FailAccounts`.
    fn ok_with(field: &str, value: Value) -> Answer {
        let mut extra = Map::new();
        extra.insert(field.to_string(), value);
        Answer::Chat {
            code: 0,
            info: String::new(),
            extra,
        }
    }

    fn fail(code: u32, info: impl Into<String>) -> Answer {
        Answer::Chat {
            code,
            info: info.into(),
            extra: Map::new(),
        }
    }

    /// The key this answer is counted under in [`SimStats::codes`].
    fn stats_key(&self) -> String {
        match self {
            Answer::Chat { code, .. } => code.to_string(),
            Answer::BadGateway => "http_502".to_string(),
            Answer::Reset => "reset".to_string(),
        }
    }

    /// `error_display`: whether the envelope carries `ErrorDisplay` (profile APIs do, account
    /// APIs do not).
    fn into_response(self, error_display: bool) -> Result<Response<Full<Bytes>>, InjectedReset> {
        match self {
            Answer::Chat { code, info, extra } => {
                let mut envelope = Map::new();
                let status = if code == 0 { "OK" } else { "FAIL" };
                envelope.insert("ActionStatus".into(), status.into());
                envelope.insert("ErrorCode".into(), code.into());
                envelope.insert("ErrorInfo".into(), info.into());
                if error_display {
                    envelope.insert("ErrorDisplay".into(), "".into());
                }
                envelope.extend(extra);
                let body = serde_json::to_vec(&Value::Object(envelope)).unwrap_or_default();
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                Ok(response)
            }
            Answer::BadGateway => {
                let mut response = Response::new(Full::new(Bytes::from_static(
                    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                )));
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
                Ok(response)
            }
            Answer::Reset => Err(InjectedReset),
        }
    }
}

/// The REST commands the simulator serves. To add one: a variant (also in `ALL`), its path in
/// `from_path`, its name, its admin-refusal code, its rate class in `batch_limited`, and a
/// handler in `Sim::dispatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Command {
    PortraitSet,
    PortraitGet,
    AccountImport,
    MultiaccountImport,
    AccountCheck,
}

impl Command {
    const ALL: [Command; 5] = [
        Command::PortraitSet,
        Command::PortraitGet,
        Command::AccountImport,
        Command::MultiaccountImport,
        Command::AccountCheck,
    ];

    fn from_path(path: &str) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|command| command.path() == path)
    }

    fn path(self) -> &'static str {
        match self {
            Command::PortraitSet => "/v4/profile/portrait_set",
            Command::PortraitGet => "/v4/profile/portrait_get",
            Command::AccountImport => "/v4/im_open_login_svc/account_import",
            Command::MultiaccountImport => "/v4/im_open_login_svc/multiaccount_import",
            Command::AccountCheck => "/v4/im_open_login_svc/account_check",
        }
    }

    /// The key used in [`SimStats`]: the last path segment.
    fn name(self) -> &'static str {
        let path = self.path();
        path.rsplit('/').next().unwrap_or(path)
    }

    /// Each service refuses a non-admin identifier with its own code (spec §1.6, §2.4, §5).
    fn not_admin_code(self) -> u32 {
        match self {
            Command::PortraitSet | Command::PortraitGet => 40004,
            Command::AccountImport | Command::MultiaccountImport | Command::AccountCheck => 70403,
        }
    }

    /// The 100/s APIs (spec §1.5); the others are 200/s.
    fn batch_limited(self) -> bool {
        matches!(self, Command::MultiaccountImport | Command::AccountCheck)
    }

    /// Profile-service answers carry `ErrorDisplay`; account-service answers do not.
    fn error_display(self) -> bool {
        matches!(self, Command::PortraitSet | Command::PortraitGet)
    }
}

/// State a handler leaves behind for the rest of the request. It lives until the answer is
/// returned, so the per-user guard also covers the latency sleep.
#[derive(Default)]
struct RequestCtx {
    user: Option<FlightGuard>,
    extra_delay: Duration,
}

/// Counts a request as in flight (overall, or for one user) until dropped, so a client that
/// gives up mid-request cannot leave the counters high.
struct FlightGuard {
    sim: Arc<Sim>,
    user: Option<String>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut state = self.sim.state();
        match self.user.take() {
            None => state.in_flight = state.in_flight.saturating_sub(1),
            Some(user) => {
                if let Some(n) = state.in_flight_by_user.get_mut(&user) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        state.in_flight_by_user.remove(&user);
                    }
                }
            }
        }
    }
}

/// The most arrivals within any half-open one-second window, in O(window) memory: the best
/// window always starts at an arrival, so it is enough to count, at each arrival, the arrivals
/// less than a second before it.
#[derive(Debug, Default)]
struct WindowCounter {
    recent: VecDeque<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    count: u64,
    max: u64,
}

impl WindowCounter {
    fn record(&mut self, at: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|&t| at.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        self.recent.push_back(at);
        self.max = self.max.max(self.recent.len() as u64);
        self.first.get_or_insert(at);
        self.last = Some(at);
        self.count += 1;
    }

    fn mean_rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if self.count >= 2 => {
                let span = last.saturating_duration_since(first).as_secs_f64();
                if span > 0.0 {
                    (self.count - 1) as f64 / span
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }
}

/// Chat's limiter as we model it: a request is admitted if fewer than `limit` were admitted in
/// the second before it. Refused requests do not count against later ones.
#[derive(Debug)]
struct SlidingLimiter {
    limit: u32,
    admitted: VecDeque<Instant>,
}

impl SlidingLimiter {
    fn new(limit: u32) -> Self {
        SlidingLimiter {
            limit,
            admitted: VecDeque::new(),
        }
    }

    fn admit(&mut self, now: Instant) -> bool {
        if self.limit == 0 {
            return true;
        }
        while self
            .admitted
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.admitted.pop_front();
        }
        if self.admitted.len() >= self.limit as usize {
            return false;
        }
        self.admitted.push_back(now);
        true
    }
}

/// The injected fault picked for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Busy,
    BadGateway,
    Reset,
    Slow,
}

struct State {
    profiles: BTreeMap<String, BTreeMap<String, Value>>,
    /// In `State` rather than the config because the import commands add to it.
    accounts: Option<HashSet<String>>,
    faults: Faults,
    fault_rng: StdRng,
    // Separate from the fault stream so changing latency does not change which requests fail.
    latency_rng: StdRng,
    streaks: HashMap<String, u32>,
    /// One per command (see `Command::batch_limited`).
    limiters: HashMap<Command, SlidingLimiter>,
    /// Every arrival, whatever its path.
    window: WindowCounter,
    /// Arrivals by command (known paths only).
    windows: HashMap<Command, WindowCounter>,
    in_flight: u64,
    in_flight_by_user: HashMap<String, u64>,
    max_in_flight: u64,
    max_in_flight_per_user: u64,
    codes: BTreeMap<String, u64>,
    answers_by_command: BTreeMap<String, BTreeMap<String, u64>>,
    applied: u64,
    /// Accepted TCP connections, so tests can see keep-alive at work.
    connections: u64,
}

impl State {
    fn stats(&self) -> SimStats {
        let by_name = |value: fn(&WindowCounter) -> u64| -> BTreeMap<String, u64> {
            self.windows
                .iter()
                .map(|(command, window)| (command.name().to_string(), value(window)))
                .collect()
        };
        SimStats {
            requests: self.window.count,
            max_in_any_window: self
                .windows
                .get(&Command::PortraitSet)
                .map_or(0, |window| window.max),
            mean_rate: self.window.mean_rate(),
            codes: self.codes.clone(),
            by_command: by_name(|window| window.count),
            answers_by_command: self.answers_by_command.clone(),
            max_in_any_window_by_command: by_name(|window| window.max),
            max_in_flight_per_user: self.max_in_flight_per_user,
            max_in_flight: self.max_in_flight,
            applied: self.applied,
        }
    }
}

struct Sim {
    sdkappid: u64,
    admin: String,
    key: SecretKey,
    latency_min: Duration,
    latency_max: Duration,
    custom_fields: HashSet<String>,
    fail_import: HashSet<String>,
    state: Mutex<State>,
}

impl Sim {
    fn new(config: SimConfig) -> Sim {
        let (latency_min, latency_max) = if config.latency_min <= config.latency_max {
            (config.latency_min, config.latency_max)
        } else {
            (config.latency_max, config.latency_min)
        };
        let limiters = Command::ALL
            .into_iter()
            .map(|command| {
                let limit = match (config.limit_per_sec, command.batch_limited()) {
                    (0, _) => 0,
                    (_, true) => config.limit_batch_per_sec,
                    (limit, false) => limit,
                };
                (command, SlidingLimiter::new(limit))
            })
            .collect();
        Sim {
            sdkappid: config.sdkappid,
            admin: config.admin,
            key: config.key,
            latency_min,
            latency_max,
            custom_fields: config.custom_fields,
            fail_import: config.fail_import,
            state: Mutex::new(State {
                profiles: BTreeMap::new(),
                accounts: config.accounts,
                faults: config.faults,
                fault_rng: StdRng::seed_from_u64(config.seed),
                latency_rng: StdRng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15),
                streaks: HashMap::new(),
                limiters,
                window: WindowCounter::default(),
                windows: HashMap::new(),
                in_flight: 0,
                in_flight_by_user: HashMap::new(),
                max_in_flight: 0,
                max_in_flight_per_user: 0,
                codes: BTreeMap::new(),
                answers_by_command: BTreeMap::new(),
                applied: 0,
                connections: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an arrival (for `command`, if the path names one) and counts it in flight until
    /// the guard drops.
    fn arrive(self: &Arc<Self>, command: Option<Command>) -> FlightGuard {
        let mut state = self.state();
        // Taken under the lock so arrivals are recorded in order.
        let now = Instant::now();
        state.window.record(now);
        if let Some(command) = command {
            state.windows.entry(command).or_default().record(now);
        }
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        FlightGuard {
            sim: Arc::clone(self),
            user: None,
        }
    }

    fn enter_user(self: &Arc<Self>, user: &str) -> FlightGuard {
        let mut state = self.state();
        let n = state.in_flight_by_user.entry(user.to_string()).or_insert(0);
        *n += 1;
        let n = *n;
        state.max_in_flight_per_user = state.max_in_flight_per_user.max(n);
        FlightGuard {
            sim: Arc::clone(self),
            user: Some(user.to_string()),
        }
    }

    fn latency(&self) -> Duration {
        if self.latency_max.is_zero() {
            return Duration::ZERO;
        }
        self.state()
            .latency_rng
            .random_range(self.latency_min..=self.latency_max)
    }

    /// Everything before the command itself: route, auth, admin and the rate limit.
    fn admit(
        &self,
        command: Option<Command>,
        method: &Method,
        path: &str,
        query: &str,
    ) -> Result<Command, Answer> {
        let command = command.ok_or_else(|| {
            Answer::fail(
                60009,
                format!("unknown REST command {}", crate::input::profile::clip(path)),
            )
        })?;
        if method != Method::POST {
            return Err(Answer::fail(
                60002,
                format!("{method} is not supported; REST calls are POST"),
            ));
        }
        let param = |name: &str| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let sdkappid = param("sdkappid")
            .ok_or_else(|| Answer::fail(60012, "sdkappid is missing from the URL"))?;
        if sdkappid.parse::<u64>().ok() != Some(self.sdkappid) {
            return Err(Answer::fail(
                60006,
                format!(
                    "invalid SDKAppID {}",
                    crate::input::profile::clip(&sdkappid)
                ),
            ));
        }
        let identifier = param("identifier")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Answer::fail(60010, "identifier is missing; it must be an app admin"))?;
        let usersig = param("usersig").unwrap_or_default();
        usersig::verify(&usersig, &self.key, self.sdkappid, &identifier, unix_now())
            .map_err(|err| Answer::fail(err.chat_code(), err.to_string()))?;
        if param("random")
            .and_then(|r| r.parse::<u32>().ok())
            .is_none()
        {
            return Err(Answer::fail(
                60002,
                "random must be an unsigned 32-bit integer",
            ));
        }
        if param("contenttype").as_deref() != Some("json") {
            return Err(Answer::fail(60002, "contenttype must be json"));
        }
        if identifier != self.admin {
            return Err(Answer::fail(
                command.not_admin_code(),
                format!(
                    "{} is not an app admin",
                    crate::input::profile::clip(&identifier)
                ),
            ));
        }
        let admitted = self
            .state()
            .limiters
            .get_mut(&command)
            .is_none_or(|limiter| limiter.admit(Instant::now()));
        if !admitted {
            return Err(Answer::fail(
                60007,
                "REST API call frequency limit exceeded",
            ));
        }
        Ok(command)
    }

    fn dispatch(self: &Arc<Self>, command: Command, body: &[u8], ctx: &mut RequestCtx) -> Answer {
        let result = match command {
            Command::PortraitSet => Ok(self.portrait_set(body, ctx)),
            Command::PortraitGet => self.portrait_get(body, ctx),
            Command::AccountImport => self.account_import(body, ctx),
            Command::MultiaccountImport => self.multiaccount_import(body, ctx),
            Command::AccountCheck => self.account_check(body, ctx),
        };
        result.unwrap_or_else(|answer| answer)
    }

    /// Picks this request's fault, honouring the per-user streak cap.
    fn pick_fault(&self, streak_key: &str) -> (Fault, Duration) {
        let mut state = self.state();
        let faults = state.faults.clone();
        let draw: f64 = state.fault_rng.random();
        let mut fault = Fault::None;
        let mut edge = 0.0;
        for (p, candidate) in [
            (faults.p_40006, Fault::Busy),
            (faults.p_502, Fault::BadGateway),
            (faults.p_reset, Fault::Reset),
            (faults.p_slow, Fault::Slow),
        ] {
            edge += p.clamp(0.0, 1.0);
            if draw < edge {
                fault = candidate;
                break;
            }
        }
        let streak = state.streaks.get(streak_key).copied().unwrap_or(0);
        if fault != Fault::None
            && faults.max_streak_per_user > 0
            && streak >= faults.max_streak_per_user
        {
            fault = Fault::None;
        }
        if fault == Fault::None {
            state.streaks.remove(streak_key);
        } else {
            state.streaks.insert(streak_key.to_string(), streak + 1);
        }
        (fault, faults.slow)
    }

    fn portrait_set(self: &Arc<Self>, body: &[u8], ctx: &mut RequestCtx) -> Answer {
        let doc: Value = match serde_json::from_slice(body) {
            Ok(doc) => doc,
            Err(err) => return Answer::fail(60003, format!("the body is not JSON: {err}")),
        };
        let decode_fail =
            |why: &str| Answer::fail(40001, format!("Err_Profile_Comm_Decode_Fail: {why}"));
        let Some(user) = doc.get("From_Account").and_then(Value::as_str) else {
            return decode_fail("From_Account is missing or not a string");
        };
        ctx.user = Some(self.enter_user(user));
        let items = match doc.get("ProfileItem").and_then(Value::as_array) {
            Some(items) if !items.is_empty() => items,
            _ => return decode_fail("ProfileItem is missing, empty or not an array"),
        };
        let mut updates = Vec::with_capacity(items.len());
        for item in items {
            match (item.get("Tag").and_then(Value::as_str), item.get("Value")) {
                (Some(tag), Some(value)) => updates.push((tag, value)),
                _ => return decode_fail("every ProfileItem needs a string Tag and a Value"),
            }
        }
        let known = match &self.state().accounts {
            Some(accounts) => accounts.contains(user),
            None => true,
        };
        if !known {
            return Answer::fail(
                40003,
                format!(
                    "account {} does not exist",
                    crate::input::profile::clip(user)
                ),
            );
        }

        if let Err(answer) = self.inject_fault(user, ctx) {
            return answer;
        }

        for (tag, value) in &updates {
            if let Err((code, info)) = self.check_item(tag, value) {
                return Answer::fail(code, info);
            }
        }
        let mut state = self.state();
        let profile = state.profiles.entry(user.to_string()).or_default();
        for (tag, value) in updates {
            profile.insert(tag.to_string(), value.clone());
        }
        state.applied += 1;
        Answer::ok()
    }

    /// `v4/profile/portrait_get` (spec §5.6).
    fn portrait_get(self: &Arc<Self>, body: &[u8], ctx: &mut RequestCtx) -> Result<Answer, Answer> {
        let doc = parse_json(body)?;
        let decode_fail =
            |why: &str| Answer::fail(40001, format!("Err_Profile_Comm_Decode_Fail: {why}"));
        let to = match doc.get("To_Account") {
            None | Some(Value::Null) => return Err(Answer::fail(40002, "To_Account is missing")),
            Some(Value::Array(to)) if to.is_empty() => {
                return Err(Answer::fail(40002, "To_Account is empty"))
            }
            Some(Value::Array(to)) => to,
            Some(_) => return Err(decode_fail("To_Account is not an array")),
        };
        if to.len() > MAX_BATCH {
            return Err(decode_fail(&format!(
                "To_Account names {} users; at most {MAX_BATCH} allowed",
                to.len()
            )));
        }
        let users: Vec<&str> = to
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(|| decode_fail("every To_Account entry must be a string"))?;
        let tags: Vec<&str> = match doc.get("TagList").and_then(Value::as_array) {
            Some(tags) if !tags.is_empty() => tags
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .ok_or_else(|| decode_fail("every TagList entry must be a string"))?,
            _ => return Err(decode_fail("TagList is missing, empty or not an array")),
        };

        self.inject_fault(&batch_streak_key(Command::PortraitGet, users[0]), ctx)?;

        let mut wanted: Vec<&str> = Vec::with_capacity(tags.len());
        for tag in tags {
            if self.tag_kind(tag).is_none() {
                return Err(Answer::fail(
                    40009,
                    format!(
                        "profile tag {} does not exist",
                        crate::input::profile::clip(tag)
                    ),
                ));
            }
            if !wanted.contains(&tag) {
                wanted.push(tag);
            }
        }
        let state = self.state();
        let mut items = Vec::with_capacity(users.len());
        let mut failed = Vec::new();
        for user in users {
            let known = state
                .accounts
                .as_ref()
                .is_none_or(|accounts| accounts.contains(user));
            if !known {
                items.push(serde_json::json!({
                    "To_Account": user,
                    "ResultCode": 40003,
                    "ResultInfo": format!("account {} does not exist", crate::input::profile::clip(user)),
                }));
                failed.push(Value::from(user));
                continue;
            }
            let profile = state.profiles.get(user);
            let profile_items: Vec<Value> = wanted
                .iter()
                .filter_map(|tag| {
                    let value = profile?.get(*tag)?;
                    Some(serde_json::json!({"Tag": tag, "Value": value}))
                })
                .collect();
            items.push(serde_json::json!({
                "To_Account": user,
                "ProfileItem": profile_items,
                "ResultCode": 0,
                "ResultInfo": "",
            }));
        }
        let mut answer = Answer::ok_with("UserProfileItem", Value::Array(items));
        if !failed.is_empty() {
            if let Answer::Chat { extra, .. } = &mut answer {
                extra.insert("Fail_Account".into(), Value::Array(failed));
            }
        }
        Ok(answer)
    }

    /// `v4/im_open_login_svc/account_import` (spec §5.2).
    fn account_import(
        self: &Arc<Self>,
        body: &[u8],
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Answer> {
        let doc = parse_json(body)?;
        let import = Import::parse(&doc).map_err(|why| Answer::fail(70402, why))?;
        if !valid_user_id(import.user) {
            return Err(Answer::fail(
                70402,
                format!("UserID must be 1 to {MAX_USER_ID_BYTES} bytes"),
            ));
        }
        self.inject_fault(&batch_streak_key(Command::AccountImport, import.user), ctx)?;
        if let Some((code, why)) = import.problem() {
            return Err(Answer::fail(code, why));
        }
        if self.fail_import.contains(import.user) {
            return Err(Answer::fail(70402, "injected import failure (fail_import)"));
        }
        import.apply(&mut self.state());
        Ok(Answer::ok())
    }

    /// `v4/im_open_login_svc/multiaccount_import` (spec §5.3), old and new body forms.
    fn multiaccount_import(
        self: &Arc<Self>,
        body: &[u8],
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Answer> {
        let doc = parse_json(body)?;
        let bad = |why: &str| Answer::fail(70402, why.to_string());
        let imports: Vec<Import<'_>> = match (doc.get("Accounts"), doc.get("AccountList")) {
            (Some(_), Some(_)) => return Err(bad("send either Accounts or AccountList, not both")),
            (Some(Value::Array(list)), None) => {
                check_batch_size("Accounts", list.len())?;
                list.iter()
                    .map(|user| {
                        user.as_str().map(|user| Import {
                            user,
                            nick: None,
                            face_url: None,
                        })
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("every Accounts entry must be a string"))?
            }
            (None, Some(Value::Array(list))) => {
                check_batch_size("AccountList", list.len())?;
                list.iter()
                    .map(Import::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|why| Answer::fail(70402, format!("AccountList: {why}")))?
            }
            (None, None) => return Err(bad("Accounts or AccountList is required")),
            _ => return Err(bad("Accounts / AccountList must be an array")),
        };

        self.inject_fault(
            &batch_streak_key(Command::MultiaccountImport, imports[0].user),
            ctx,
        )?;

        let mut failed: Vec<&str> = Vec::new();
        let mut state = self.state();
        for import in &imports {
            let fails = !valid_user_id(import.user)
                || import.problem().is_some()
                || self.fail_import.contains(import.user);
            if fails {
                if !failed.contains(&import.user) {
                    failed.push(import.user);
                }
            } else {
                import.apply(&mut state);
            }
        }
        Ok(Answer::ok_with("FailAccounts", Value::from(failed)))
    }

    /// `v4/im_open_login_svc/account_check` (spec §5.4).
    fn account_check(
        self: &Arc<Self>,
        body: &[u8],
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Answer> {
        let doc = parse_json(body)?;
        let items = doc
            .get("CheckItem")
            .and_then(Value::as_array)
            .ok_or_else(|| Answer::fail(70402, "CheckItem is missing or not an array"))?;
        check_batch_size("CheckItem", items.len())?;
        let users: Vec<&str> = items
            .iter()
            .map(|item| item.get("UserID").and_then(Value::as_str))
            .collect::<Option<_>>()
            .ok_or_else(|| Answer::fail(70402, "every CheckItem needs a string UserID"))?;

        self.inject_fault(&batch_streak_key(Command::AccountCheck, users[0]), ctx)?;

        let state = self.state();
        let results: Vec<Value> = users
            .into_iter()
            .map(|user| {
                if !valid_user_id(user) {
                    return serde_json::json!({
                        "UserID": user,
                        "ResultCode": 70402,
                        "ResultInfo": format!("UserID must be 1 to {MAX_USER_ID_BYTES} bytes"),
                        "AccountStatus": "NotImported",
                    });
                }
                let imported = state
                    .accounts
                    .as_ref()
                    .is_none_or(|accounts| accounts.contains(user));
                serde_json::json!({
                    "UserID": user,
                    "ResultCode": 0,
                    "ResultInfo": "",
                    "AccountStatus": if imported { "Imported" } else { "NotImported" },
                })
            })
            .collect();
        Ok(Answer::ok_with("ResultItem", Value::Array(results)))
    }

    /// Applies this request's injected fault: 40006, 502 and reset come back as the answer (so
    /// the caller writes nothing); slow sets the extra delay and lets the work go on.
    fn inject_fault(&self, streak_key: &str, ctx: &mut RequestCtx) -> Result<(), Answer> {
        match self.pick_fault(streak_key) {
            (Fault::None, _) => Ok(()),
            (Fault::Busy, _) => Err(Answer::fail(
                40006,
                "internal server error, try again later",
            )),
            (Fault::BadGateway, _) => Err(Answer::BadGateway),
            (Fault::Reset, _) => Err(Answer::Reset),
            (Fault::Slow, slow) => {
                ctx.extra_delay = slow;
                Ok(())
            }
        }
    }

    /// The value kind of a tag Chat knows (a standard field or a configured custom keyword).
    /// Only the exact spellings Chat uses are accepted.
    fn tag_kind(&self, tag: &str) -> Option<ValueKind> {
        StandardField::ALL
            .into_iter()
            .find(|field| field.tag() == tag)
            .map(StandardField::kind)
            .or_else(|| {
                tag.strip_prefix(CUSTOM_TAG_PREFIX)
                    .filter(|keyword| self.custom_fields.contains(*keyword))
                    .map(|_| ValueKind::Text {
                        max_bytes: MAX_STRING_BYTES,
                    })
            })
    }

    /// One item against Chat's rules.
    fn check_item(&self, tag: &str, value: &Value) -> Result<(), (u32, String)> {
        let shown = crate::input::profile::clip(tag);
        let kind = self
            .tag_kind(tag)
            .ok_or_else(|| (40009, format!("profile tag {shown} does not exist")))?;
        let wrong_type = || (40610, format!("{shown} has a value of the wrong JSON type"));
        match kind {
            ValueKind::Uint32 | ValueKind::Date => match value {
                Value::Number(n) if n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) => Ok(()),
                Value::Number(n) => Err((40605, format!("{shown}: {n} is not a uint32"))),
                _ => Err(wrong_type()),
            },
            ValueKind::Text { max_bytes } => match value {
                Value::String(s) if s.len() > max_bytes => Err((
                    40601,
                    format!("{shown} is {} bytes; at most {max_bytes} allowed", s.len()),
                )),
                Value::String(_) => Ok(()),
                _ => Err(wrong_type()),
            },
            ValueKind::Enum(spec) => match value {
                Value::String(s) if spec.values.iter().any(|(exact, _)| exact == s) => Ok(()),
                Value::String(s) => Err((
                    40605,
                    format!(
                        "{shown}: {:?} is not an allowed value",
                        crate::input::profile::clip(s)
                    ),
                )),
                _ => Err(wrong_type()),
            },
        }
    }
}

/// One account to import: account_import's body or one AccountList entry.
struct Import<'a> {
    user: &'a str,
    nick: Option<&'a str>,
    face_url: Option<&'a str>,
}

impl<'a> Import<'a> {
    /// Reads `{"UserID","Nick"?,"FaceUrl"?}`; Err says what breaks the protocol (70402).
    fn parse(doc: &'a Value) -> Result<Import<'a>, String> {
        let object = doc
            .as_object()
            .ok_or_else(|| "an account must be a JSON object".to_string())?;
        let user = object
            .get("UserID")
            .and_then(Value::as_str)
            .ok_or_else(|| "UserID is missing or not a string".to_string())?;
        let text = |name: &str| match object.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(_) => Err(format!("{name} must be a string")),
        };
        Ok(Import {
            user,
            nick: text("Nick")?,
            face_url: text("FaceUrl")?,
        })
    }

    fn fields(&self) -> [(&'static str, &'static str, Option<&'a str>); 2] {
        [
            ("Nick", StandardField::Nick.tag(), self.nick),
            ("FaceUrl", StandardField::Image.tag(), self.face_url),
        ]
    }

    /// A profile value Chat would refuse (40601), if any.
    fn problem(&self) -> Option<(u32, String)> {
        self.fields().into_iter().find_map(|(name, _, value)| {
            let len = value?.len();
            (len > MAX_STRING_BYTES).then(|| {
                (
                    40601,
                    format!("{name} is {len} bytes; at most {MAX_STRING_BYTES} allowed"),
                )
            })
        })
    }

    /// Adds the account to the known set and writes the profile values it carries.
    fn apply(&self, state: &mut State) {
        if let Some(accounts) = state.accounts.as_mut() {
            accounts.insert(self.user.to_string());
        }
        let values: Vec<(&str, &str)> = self
            .fields()
            .into_iter()
            .filter_map(|(_, tag, value)| Some((tag, value?)))
            .collect();
        if !values.is_empty() {
            let profile = state.profiles.entry(self.user.to_string()).or_default();
            for (tag, value) in values {
                profile.insert(tag.to_string(), Value::from(value));
            }
        }
    }
}

fn valid_user_id(user: &str) -> bool {
    !user.is_empty() && user.len() <= MAX_USER_ID_BYTES
}

/// The fault-streak key of a command other than portrait_set: the command and the first UserID.
fn batch_streak_key(command: Command, first_user: &str) -> String {
    format!("{}\n{first_user}", command.name())
}

/// 70206 unless 1 to [`MAX_BATCH`] accounts are named.
fn check_batch_size(field: &str, len: usize) -> Result<(), Answer> {
    if (1..=MAX_BATCH).contains(&len) {
        Ok(())
    } else {
        Err(Answer::fail(
            70206,
            format!("{field} names {len} accounts; 1 to {MAX_BATCH} allowed"),
        ))
    }
}

fn parse_json(body: &[u8]) -> Result<Value, Answer> {
    serde_json::from_slice(body)
        .map_err(|err| Answer::fail(60003, format!("the body is not JSON: {err}")))
}

async fn handle(
    sim: Arc<Sim>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, InjectedReset> {
    let (parts, body) = req.into_parts();
    let command = Command::from_path(parts.uri.path());
    let _request = sim.arrive(command);
    let mut ctx = RequestCtx::default();
    // The body is read before any answer: leaving it unread would cost the keep-alive connection.
    let body = Limited::new(body, MAX_BODY_BYTES).collect().await;
    let always = sim.state().faults.always_code;
    let answer = match (always, body) {
        (Some(code), _) => Answer::fail(code, format!("injected error {code}")),
        (None, Err(err)) => Answer::fail(60002, format!("cannot read the request body: {err}")),
        (None, Ok(body)) => {
            let query = parts.uri.query().unwrap_or("");
            match sim.admit(command, &parts.method, parts.uri.path(), query) {
                Ok(command) => sim.dispatch(command, &body.to_bytes(), &mut ctx),
                Err(answer) => answer,
            }
        }
    };
    let key = answer.stats_key();
    tracing::debug!(path = parts.uri.path(), answer = %key, "simulator answered");
    {
        let mut state = sim.state();
        *state.codes.entry(key.clone()).or_insert(0) += 1;
        if let Some(command) = command {
            *state
                .answers_by_command
                .entry(command.name().to_string())
                .or_default()
                .entry(key)
                .or_insert(0) += 1;
        }
    }
    let delay = sim.latency() + ctx.extra_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    answer.into_response(command.is_none_or(Command::error_display))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APP: u64 = 1_400_000_000;
    const ADMIN: &str = "administrator";
    const KEY: &str = "sim-test-key";

    fn config() -> SimConfig {
        SimConfig::new(APP, ADMIN, SecretKey::new(KEY))
    }

    fn sig_for(identifier: &str) -> String {
        usersig::generate(&SecretKey::new(KEY), APP, identifier, unix_now(), 86_400)
    }

    fn query(identifier: &str, usersig: &str) -> String {
        format!("sdkappid={APP}&identifier={identifier}&usersig={usersig}&random=12345&contenttype=json")
    }

    fn set_url(sim: &SimHandle) -> String {
        format!(
            "{}/v4/profile/portrait_set?{}",
            sim.url(),
            query(ADMIN, &sig_for(ADMIN))
        )
    }

    fn nick(user: &str, nick: &str) -> Value {
        json!({"From_Account": user, "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": nick}]})
    }

    /// One portrait_set of alice's Nick, with a fresh client (for the fault tests).
    async fn post_alice(sim: &SimHandle) -> reqwest::Result<reqwest::Response> {
        reqwest::Client::new()
            .post(set_url(sim))
            .json(&nick("alice", "A"))
            .send()
            .await
    }

    /// Posts and returns the ErrorCode (the HTTP status must be 200).
    async fn code_of(client: &reqwest::Client, url: &str, body: &Value) -> u64 {
        let response = client.post(url).json(body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        let code = answer["ErrorCode"].as_u64().unwrap();
        assert_eq!(
            answer["ActionStatus"],
            if code == 0 { "OK" } else { "FAIL" }
        );
        assert!(answer["ErrorInfo"].is_string() && answer["ErrorDisplay"] == "");
        code
    }

    #[tokio::test]
    async fn valid_request_applies_and_keeps_other_tags() {
        let sim = SimHandle::start(config()).await.unwrap();
        let client = reqwest::Client::new();
        let url = set_url(&sim);
        let first = json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"},
            {"Tag": "Tag_Profile_IM_BirthDay", "Value": 19900102},
            {"Tag": "Tag_Profile_IM_Level", "Value": 4294967295u64},
            {"Tag": "Tag_Profile_Custom_Hobby", "Value": "chess"},
        ]});
        assert_eq!(code_of(&client, &url, &first).await, 0);
        assert_eq!(code_of(&client, &url, &nick("alice", "Al")).await, 0);
        let profiles = sim.profiles();
        let alice = &profiles["alice"];
        assert_eq!(alice["Tag_Profile_IM_Nick"], "Al");
        assert_eq!(alice["Tag_Profile_IM_Gender"], "Gender_Type_Female");
        assert_eq!(alice["Tag_Profile_IM_BirthDay"], 19900102);
        assert_eq!(alice["Tag_Profile_IM_Level"], 4294967295u64);
        assert_eq!(alice["Tag_Profile_Custom_Hobby"], "chess");
        let stats = sim.stats();
        assert_eq!((stats.requests, stats.applied, stats.count("0")), (2, 2, 2));
        assert_eq!(stats.max_in_flight_per_user, 1);
        assert!(stats.to_string().contains("answers    0=2"), "{stats}");
    }

    #[tokio::test]
    async fn auth_failures_use_chat_codes() {
        let sim = SimHandle::start(config()).await.unwrap();
        let client = reqwest::Client::new();
        let body = nick("alice", "A");
        let base = format!("{}/v4/profile/portrait_set", sim.url());
        let admin_sig = sig_for(ADMIN);
        let other_key = usersig::generate(&SecretKey::new("wrong"), APP, ADMIN, unix_now(), 86_400);
        let other_app = usersig::generate(&SecretKey::new(KEY), APP + 1, ADMIN, unix_now(), 86_400);
        let expired = usersig::generate(&SecretKey::new(KEY), APP, ADMIN, 1_000_000, 60);
        let cases = [
            (query(ADMIN, &other_key), 70009),
            (query("bob", &sig_for("bob")), 40004),
            (query("bob", &admin_sig), 70013),
            (query(ADMIN, &other_app), 70014),
            (query(ADMIN, &expired), 70001),
            (query(ADMIN, ""), 70002),
            (query(ADMIN, "garbage"), 70003),
            (query("", &admin_sig), 60010),
            (
                query(ADMIN, &admin_sig).replace("sdkappid=1400000000&", ""),
                60012,
            ),
            (
                query(ADMIN, &admin_sig).replace("sdkappid=1400000000", "sdkappid=abc"),
                60006,
            ),
            (
                query(ADMIN, &admin_sig).replace("sdkappid=1400000000", "sdkappid=1400000001"),
                60006,
            ),
            (
                query(ADMIN, &admin_sig).replace("random=12345", "random=-1"),
                60002,
            ),
            (
                query(ADMIN, &admin_sig).replace("random=12345", "random=4294967296"),
                60002,
            ),
            (
                query(ADMIN, &admin_sig).replace("contenttype=json", "contenttype=xml"),
                60002,
            ),
        ];
        for (q, expected) in cases {
            let url = format!("{base}?{q}");
            assert_eq!(code_of(&client, &url, &body).await, expected, "{q}");
        }
        let unknown = format!(
            "{}/v4/im_open_login_svc/account_delete?{}",
            sim.url(),
            query(ADMIN, &admin_sig)
        );
        assert_eq!(code_of(&client, &unknown, &body).await, 60009);
        assert!(sim.profiles().is_empty());
    }

    #[tokio::test]
    async fn percent_encoded_query_works_and_huge_bodies_are_refused() {
        let sim = SimHandle::start(config()).await.unwrap();
        let client = reqwest::Client::new();
        let encoded: String = url::form_urlencoded::byte_serialize(sig_for(ADMIN).as_bytes())
            .collect::<String>()
            .replace('*', "%2A");
        let url = format!(
            "{}/v4/profile/portrait_set?{}",
            sim.url(),
            query(ADMIN, &encoded)
        );
        assert_eq!(code_of(&client, &url, &nick("alice", "A")).await, 0);
        let huge = nick("alice", &"x".repeat(MAX_BODY_BYTES));
        assert_eq!(code_of(&client, &url, &huge).await, 60002);
    }

    #[tokio::test]
    async fn bad_sig_is_70009() {
        let sim = SimHandle::start(config()).await.unwrap();
        let sig = usersig::generate(
            &SecretKey::new("not-the-key"),
            APP,
            ADMIN,
            unix_now(),
            86_400,
        );
        let url = format!(
            "{}/v4/profile/portrait_set?{}",
            sim.url(),
            query(ADMIN, &sig)
        );
        let code = code_of(&reqwest::Client::new(), &url, &nick("alice", "A")).await;
        assert_eq!(code, 70009);
    }

    #[tokio::test]
    async fn non_admin_identifier_is_40004() {
        let sim = SimHandle::start(config()).await.unwrap();
        let url = format!(
            "{}/v4/profile/portrait_set?{}",
            sim.url(),
            query("bob", &sig_for("bob"))
        );
        let code = code_of(&reqwest::Client::new(), &url, &nick("alice", "A")).await;
        assert_eq!(code, 40004);
    }

    #[tokio::test]
    async fn item_rules_match_chat_and_nothing_partial_is_written() {
        let mut cfg = config();
        cfg.accounts = Some(["alice".to_string()].into_iter().collect());
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let url = set_url(&sim);
        let item = |tag: &str, value: Value| {
            json!({"From_Account": "alice", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Nick", "Value": "partial"},
                {"Tag": tag, "Value": value},
            ]})
        };
        let cases = [
            (item("Tag_Profile_IM_Nickname", json!("x")), 40009),
            (item("tag_profile_im_nick", json!("x")), 40009),
            (item("Tag_Profile_Custom_Pet", json!("x")), 40009),
            (item("Tag_Profile_IM_Level", json!("10")), 40610),
            (item("Tag_Profile_IM_Level", json!(-1)), 40605),
            (item("Tag_Profile_IM_Level", json!(4294967296u64)), 40605),
            (item("Tag_Profile_IM_BirthDay", json!("19900102")), 40610),
            (item("Tag_Profile_IM_Nick", json!("n".repeat(501))), 40601),
            (item("Tag_Profile_IM_Nick", json!(5)), 40610),
            (
                item("Tag_Profile_Custom_Hobby", json!("h".repeat(501))),
                40601,
            ),
            (
                item("Tag_Profile_IM_Location", json!("x".repeat(17))),
                40601,
            ),
            (item("Tag_Profile_IM_Gender", json!("male")), 40605),
            (
                item("Tag_Profile_IM_Gender", json!("gender_type_male")),
                40605,
            ),
            (item("Tag_Profile_IM_Gender", json!(1)), 40610),
            (
                json!({"From_Account": "mallory", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Nick", "Value": "M"}]}),
                40003,
            ),
            (
                json!({"ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": "M"}]}),
                40001,
            ),
            (json!({"From_Account": 7, "ProfileItem": []}), 40001),
            (json!({"From_Account": "alice", "ProfileItem": []}), 40001),
            (
                json!({"From_Account": "alice", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick"}]}),
                40001,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(code_of(&client, &url, &body).await, expected, "{body}");
        }
        let not_json = client.post(&url).body("{not json").send().await.unwrap();
        let answer: Value = not_json.json().await.unwrap();
        assert_eq!(answer["ErrorCode"], 60003);
        assert!(sim.profiles().is_empty(), "{:?}", sim.profiles());
        assert_eq!(sim.stats().applied, 0);
        // The exact values still pass.
        let ok = item("Tag_Profile_IM_AllowType", json!("AllowType_Type_DenyAny"));
        assert_eq!(code_of(&client, &url, &ok).await, 0);
    }

    #[tokio::test]
    async fn specific_rejections_from_the_brief() {
        let mut cfg = config();
        cfg.accounts = Some(["alice".to_string()].into_iter().collect());
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let url = set_url(&sim);
        let one = |user: &str, tag: &str, value: Value| json!({"From_Account": user, "ProfileItem": [{"Tag": tag, "Value": value}]});
        let cases = [
            (one("alice", "Tag_Profile_IM_Unknown", json!("x")), 40009),
            (one("alice", "Tag_Profile_IM_Level", json!("3")), 40610),
            (
                one("alice", "Tag_Profile_IM_Nick", json!("n".repeat(501))),
                40601,
            ),
            (one("alice", "Tag_Profile_IM_Gender", json!("male")), 40605),
            (one("nobody", "Tag_Profile_IM_Nick", json!("n")), 40003),
        ];
        for (body, expected) in cases {
            assert_eq!(code_of(&client, &url, &body).await, expected, "{body}");
        }
        let at_limit = one("alice", "Tag_Profile_IM_Nick", json!("n".repeat(500)));
        assert_eq!(code_of(&client, &url, &at_limit).await, 0);
    }

    #[tokio::test]
    async fn rate_limit_answers_60007_and_stats_count_the_window() {
        let mut cfg = config();
        cfg.limit_per_sec = 5;
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let url = set_url(&sim);
        let mut codes = Vec::new();
        for i in 0..10 {
            codes.push(code_of(&client, &url, &nick(&format!("u{i}"), "n")).await);
        }
        assert_eq!(codes, [0, 0, 0, 0, 0, 60007, 60007, 60007, 60007, 60007]);
        let stats = sim.stats();
        assert_eq!(stats.requests, 10);
        assert_eq!(stats.max_in_any_window, 10);
        assert_eq!((stats.count("0"), stats.count("60007")), (5, 5));
        assert_eq!(stats.applied, 5);
        assert!(stats.mean_rate > 10.0, "{stats}");
    }

    #[test]
    fn window_counter_uses_half_open_windows() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut window = WindowCounter::default();
        for ms in [0, 500, 1000] {
            window.record(at(ms));
        }
        // [0, 1s) holds 0 and 500 but not 1000.
        assert_eq!(window.max, 2);
        let mut window = WindowCounter::default();
        for ms in [0, 200, 400, 1000, 1100, 1200, 1399, 2400] {
            window.record(at(ms));
        }
        // [400, 1400) holds 400, 1000, 1100, 1200 and 1399.
        assert_eq!(window.max, 5);
        assert_eq!(window.count, 8);
        assert!((window.mean_rate() - 7.0 / 2.4).abs() < 1e-9);
        let mut single = WindowCounter::default();
        single.record(t0);
        assert_eq!(single.mean_rate(), 0.0);
    }

    #[test]
    fn limiter_admits_limit_per_sliding_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut limiter = SlidingLimiter::new(2);
        assert!(limiter.admit(at(0)));
        assert!(limiter.admit(at(100)));
        assert!(!limiter.admit(at(999)));
        // The arrival at 0 has left the window; refused requests never entered it.
        assert!(limiter.admit(at(1000)));
        assert!(!limiter.admit(at(1099)));
        assert!(limiter.admit(at(1100)));
        let mut unlimited = SlidingLimiter::new(0);
        assert!((0..1000).all(|_| unlimited.admit(t0)));
    }

    #[tokio::test]
    async fn reset_fault_closes_the_connection_without_an_answer() {
        let mut cfg = config();
        cfg.faults.p_reset = 1.0;
        let sim = SimHandle::start(cfg).await.unwrap();
        let err = post_alice(&sim).await.unwrap_err();
        let chain = format!("{err:?}");
        assert!(chain.contains("IncompleteMessage"), "{chain}");
        assert_eq!(sim.stats().count("reset"), 1);
        assert!(sim.profiles().is_empty());
    }

    #[tokio::test]
    async fn bad_gateway_fault_is_http_502() {
        let mut cfg = config();
        cfg.faults.p_502 = 1.0;
        let sim = SimHandle::start(cfg).await.unwrap();
        let response = post_alice(&sim).await.unwrap();
        assert_eq!(response.status(), 502);
        assert_eq!(sim.stats().count("http_502"), 1);
        assert!(sim.profiles().is_empty());
    }

    #[tokio::test]
    async fn always_code_answers_every_request() {
        let mut cfg = config();
        cfg.faults.always_code = Some(70009);
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        assert_eq!(
            code_of(&client, &set_url(&sim), &nick("a", "A")).await,
            70009
        );
        let other = format!("{}/v4/nothing/here", sim.url());
        assert_eq!(code_of(&client, &other, &json!({})).await, 70009);
        assert_eq!(sim.stats().count("70009"), 2);
    }

    #[tokio::test]
    async fn fault_streaks_are_capped_per_user_and_faults_can_be_turned_off() {
        let mut cfg = config();
        cfg.faults.p_40006 = 1.0;
        cfg.faults.max_streak_per_user = 2;
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let url = set_url(&sim);
        let mut codes = Vec::new();
        for _ in 0..6 {
            codes.push(code_of(&client, &url, &nick("alice", "A")).await);
        }
        assert_eq!(codes, [40006, 40006, 0, 40006, 40006, 0]);
        // Another user's streak is its own.
        assert_eq!(code_of(&client, &url, &nick("bob", "B")).await, 40006);
        sim.set_faults(Faults::default());
        assert_eq!(code_of(&client, &url, &nick("bob", "B")).await, 0);
        assert_eq!(sim.stats().applied, 3);
    }

    #[tokio::test]
    async fn same_seed_same_faults() {
        let run = || async {
            let mut cfg = config();
            cfg.faults.p_40006 = 0.5;
            cfg.seed = 42;
            let sim = SimHandle::start(cfg).await.unwrap();
            let client = reqwest::Client::new();
            let url = set_url(&sim);
            let mut codes = Vec::new();
            for i in 0..20 {
                codes.push(code_of(&client, &url, &nick(&format!("u{i}"), "n")).await);
            }
            codes
        };
        let first = run().await;
        assert_eq!(first, run().await);
        assert!(first.contains(&0) && first.contains(&40006), "{first:?}");
    }

    #[tokio::test]
    async fn slow_fault_applies_then_answers_late() {
        let mut cfg = config();
        cfg.faults.p_slow = 1.0;
        cfg.faults.slow = Duration::from_millis(300);
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let url = set_url(&sim);
        let timed_out = client
            .post(&url)
            .json(&nick("alice", "late"))
            .timeout(Duration::from_millis(100))
            .send()
            .await;
        assert!(timed_out.is_err());
        assert_eq!(sim.profiles()["alice"]["Tag_Profile_IM_Nick"], "late");
        let started = Instant::now();
        assert_eq!(code_of(&client, &url, &nick("bob", "B")).await, 0);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn in_flight_is_tracked_per_user_and_released_on_cancel() {
        let mut cfg = config();
        cfg.latency_min = Duration::from_millis(150);
        cfg.latency_max = Duration::from_millis(200);
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let url = set_url(&sim);
        let bodies = [nick("alice", "1"), nick("alice", "2"), nick("bob", "3")];
        let (a, b, c) = tokio::join!(
            code_of(&client, &url, &bodies[0]),
            code_of(&client, &url, &bodies[1]),
            code_of(&client, &url, &bodies[2]),
        );
        assert_eq!((a, b, c), (0, 0, 0));
        let stats = sim.stats();
        assert_eq!(stats.max_in_flight_per_user, 2);
        assert_eq!(stats.max_in_flight, 3);
        // A client that gives up must not leave the request counted.
        let gave_up = client
            .post(&url)
            .json(&nick("carol", "C"))
            .timeout(Duration::from_millis(50))
            .send()
            .await;
        assert!(gave_up.is_err());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let state = sim.sim.state();
        assert_eq!(state.in_flight, 0);
        assert!(state.in_flight_by_user.is_empty());
    }

    #[tokio::test]
    async fn keep_alive_reuses_one_connection_and_shutdown_stops_serving() {
        let sim = SimHandle::start(config()).await.unwrap();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let url = set_url(&sim);
        for _ in 0..3 {
            assert_eq!(code_of(&client, &url, &nick("alice", "A")).await, 0);
        }
        let get = client.get(&url).send().await.unwrap();
        assert_eq!(get.json::<Value>().await.unwrap()["ErrorCode"], 60002);
        assert_eq!(sim.sim.state().connections, 1);
        sim.shutdown();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fresh = reqwest::Client::new();
        assert!(fresh.post(&url).json(&nick("a", "A")).send().await.is_err());
    }

    // ── account and read commands ─────────────────────────────────────────────────────────

    const IMPORT: &str = "/v4/im_open_login_svc/account_import";
    const MULTI: &str = "/v4/im_open_login_svc/multiaccount_import";
    const CHECK: &str = "/v4/im_open_login_svc/account_check";
    const GET: &str = "/v4/profile/portrait_get";

    fn url_as(sim: &SimHandle, path: &str, identifier: &str) -> String {
        format!(
            "{}{path}?{}",
            sim.url(),
            query(identifier, &sig_for(identifier))
        )
    }

    fn url(sim: &SimHandle, path: &str) -> String {
        url_as(sim, path, ADMIN)
    }

    /// Posts and returns the whole answer after checking the envelope: HTTP 200, ActionStatus
    /// matching ErrorCode, and `ErrorDisplay` only on profile-service answers.
    async fn call(client: &reqwest::Client, url: &str, body: &Value) -> Value {
        let response = client.post(url).json(body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        let code = answer["ErrorCode"].as_u64().unwrap();
        assert_eq!(
            answer["ActionStatus"],
            if code == 0 { "OK" } else { "FAIL" }
        );
        assert!(answer["ErrorInfo"].is_string(), "{answer}");
        if url.contains("/v4/profile/") {
            assert_eq!(answer["ErrorDisplay"], "", "{answer}");
        } else {
            assert!(answer.get("ErrorDisplay").is_none(), "{answer}");
        }
        answer
    }

    async fn code(client: &reqwest::Client, url: &str, body: &Value) -> u64 {
        call(client, url, body).await["ErrorCode"].as_u64().unwrap()
    }

    fn known(users: &[&str]) -> Option<HashSet<String>> {
        Some(users.iter().map(|u| u.to_string()).collect())
    }

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[tokio::test]
    async fn account_import_adds_the_account_and_writes_nick_and_face_url() {
        let mut cfg = config();
        cfg.accounts = known(&["alice"]);
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let import = url(&sim, IMPORT);
        // Not imported yet: portrait_set refuses the account.
        assert_eq!(
            code(&client, &set_url(&sim), &nick("bob", "B")).await,
            40003
        );
        let body = json!({"UserID": "bob", "Nick": "Bob", "FaceUrl": "http://x/b.png"});
        let answer = call(&client, &import, &body).await;
        assert_eq!(
            answer,
            json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
        );
        let accounts = sim.accounts().unwrap();
        assert_eq!(
            accounts.iter().map(String::as_str).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        let bob = &sim.profiles()["bob"];
        assert_eq!(bob["Tag_Profile_IM_Nick"], "Bob");
        assert_eq!(bob["Tag_Profile_IM_Image"], "http://x/b.png");
        // Idempotent; a re-import overwrites what it carries and keeps the rest.
        assert_eq!(code(&client, &import, &body).await, 0);
        let renamed = json!({"UserID": "bob", "Nick": "Robert"});
        assert_eq!(code(&client, &import, &renamed).await, 0);
        let bob = &sim.profiles()["bob"];
        assert_eq!(bob["Tag_Profile_IM_Nick"], "Robert");
        assert_eq!(bob["Tag_Profile_IM_Image"], "http://x/b.png");
        // Without Nick / FaceUrl only the account is created.
        assert_eq!(code(&client, &import, &json!({"UserID": "carol"})).await, 0);
        assert!(!sim.profiles().contains_key("carol"));
        assert_eq!(sim.accounts().unwrap().len(), 3);
        assert_eq!(code(&client, &set_url(&sim), &nick("bob", "B")).await, 0);
        // With `accounts: None` there is no set to report.
        let open = SimHandle::start(config()).await.unwrap();
        assert_eq!(
            code(&client, &url(&open, IMPORT), &json!({"UserID": "x"})).await,
            0
        );
        assert_eq!(open.accounts(), None);
        let stats = sim.stats();
        assert_eq!(stats.count_for("account_import", "0"), 4);
        assert_eq!(stats.applied, 1, "only portrait_set counts as applied");
    }

    #[tokio::test]
    async fn account_import_error_codes() {
        let mut cfg = config();
        cfg.accounts = known(&[]);
        cfg.fail_import = ["doomed".to_string()].into_iter().collect();
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let import = url(&sim, IMPORT);
        let cases = [
            (json!({}), 70402),
            (json!({"UserID": ""}), 70402),
            (json!({"UserID": 7}), 70402),
            (json!(["alice"]), 70402),
            (json!({"UserID": "u".repeat(33)}), 70402),
            (json!({"UserID": "alice", "Nick": 5}), 70402),
            (json!({"UserID": "alice", "FaceUrl": null}), 70402),
            (json!({"UserID": "alice", "Nick": "n".repeat(501)}), 40601),
            (
                json!({"UserID": "alice", "FaceUrl": "f".repeat(501)}),
                40601,
            ),
            (json!({"UserID": "doomed"}), 70402),
        ];
        for (body, expected) in cases {
            assert_eq!(code(&client, &import, &body).await, expected, "{body}");
        }
        assert_eq!(sim.accounts().unwrap().len(), 0);
        assert!(sim.profiles().is_empty());
        let not_json = client.post(&import).body("{nope").send().await.unwrap();
        assert_eq!(not_json.json::<Value>().await.unwrap()["ErrorCode"], 60003);
        let bob = url_as(&sim, IMPORT, "bob");
        let refused = call(&client, &bob, &json!({"UserID": "bob"})).await;
        assert_eq!(refused["ErrorCode"], 70403);
        // The limits themselves pass.
        let at_limits = json!({"UserID": "u".repeat(32), "Nick": "n".repeat(500),
            "FaceUrl": "f".repeat(500)});
        assert_eq!(code(&client, &import, &at_limits).await, 0);
        assert_eq!(sim.accounts().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn multiaccount_import_both_forms_and_fail_accounts() {
        let mut cfg = config();
        cfg.accounts = known(&["alice"]);
        cfg.fail_import = ["doomed".to_string()].into_iter().collect();
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let multi = url(&sim, MULTI);
        let long = "u".repeat(33);
        let old = json!({"Accounts": ["bob", "", "doomed", &long, "carol", "doomed", "alice"]});
        let answer = call(&client, &multi, &old).await;
        assert_eq!(
            answer,
            json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
                "FailAccounts": ["", "doomed", long]})
        );
        let accounts: Vec<String> = sim.accounts().unwrap().into_iter().collect();
        assert_eq!(accounts, ["alice", "bob", "carol"]);
        assert!(sim.profiles().is_empty(), "the old form writes no profile");
        // Nothing failed: FailAccounts is still there, empty.
        let answer = call(&client, &multi, &json!({"Accounts": ["dave"]})).await;
        assert_eq!(answer["FailAccounts"], json!([]));
        // The new form writes Nick / FaceUrl, also for accounts that already exist.
        let new = json!({"AccountList": [
            {"UserID": "alice", "Nick": "Alice", "FaceUrl": "http://x/a.png"},
            {"UserID": "erin"},
            {"UserID": "frank", "Nick": "n".repeat(501)},
            {"UserID": "doomed", "Nick": "D"},
        ]});
        let answer = call(&client, &multi, &new).await;
        assert_eq!(answer["ErrorCode"], 0);
        assert_eq!(answer["FailAccounts"], json!(["frank", "doomed"]));
        let profiles = sim.profiles();
        assert_eq!(profiles["alice"]["Tag_Profile_IM_Nick"], "Alice");
        assert_eq!(profiles["alice"]["Tag_Profile_IM_Image"], "http://x/a.png");
        assert!(!profiles.contains_key("frank") && !profiles.contains_key("doomed"));
        let accounts = sim.accounts().unwrap();
        assert!(accounts.contains("erin") && !accounts.contains("frank"));
        assert!(!accounts.contains("doomed"));
        let update = json!({"AccountList": [{"UserID": "alice", "Nick": "Al"}]});
        assert_eq!(code(&client, &multi, &update).await, 0);
        assert_eq!(sim.profiles()["alice"]["Tag_Profile_IM_Nick"], "Al");
        assert_eq!(
            sim.profiles()["alice"]["Tag_Profile_IM_Image"],
            "http://x/a.png"
        );
    }

    #[tokio::test]
    async fn multiaccount_import_error_codes_and_the_100_limit() {
        let mut cfg = config();
        cfg.accounts = known(&[]);
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let multi = url(&sim, MULTI);
        let hundred = names("u", 100);
        let too_many = names("v", 101);
        let list =
            |users: &[String]| -> Value { users.iter().map(|u| json!({"UserID": u})).collect() };
        let cases = [
            (json!({}), 70402),
            (json!({"Accounts": "alice"}), 70402),
            (json!({"Accounts": null}), 70402),
            (json!({"Accounts": ["a", 7]}), 70402),
            (
                json!({"Accounts": ["a"], "AccountList": [{"UserID": "b"}]}),
                70402,
            ),
            (json!({"AccountList": [{"Nick": "no id"}]}), 70402),
            (json!({"AccountList": ["a"]}), 70402),
            (json!({"AccountList": [{"UserID": "a", "Nick": 1}]}), 70402),
            (json!({"Accounts": []}), 70206),
            (json!({"AccountList": []}), 70206),
            (json!({"Accounts": too_many}), 70206),
            (json!({"AccountList": list(&too_many)}), 70206),
        ];
        for (body, expected) in cases {
            assert_eq!(code(&client, &multi, &body).await, expected, "{body}");
        }
        assert!(sim.accounts().unwrap().is_empty());
        let refused = call(
            &client,
            &url_as(&sim, MULTI, "bob"),
            &json!({"Accounts": ["a"]}),
        )
        .await;
        assert_eq!(refused["ErrorCode"], 70403);
        // Exactly 100 is fine, in either form.
        let answer = call(&client, &multi, &json!({"Accounts": hundred})).await;
        assert_eq!(answer["FailAccounts"], json!([]));
        let answer = call(
            &client,
            &multi,
            &json!({"AccountList": list(&names("w", 100))}),
        )
        .await;
        assert_eq!(answer["FailAccounts"], json!([]));
        assert_eq!(sim.accounts().unwrap().len(), 200);
    }

    #[tokio::test]
    async fn account_check_reports_import_status() {
        let mut cfg = config();
        cfg.accounts = known(&["alice"]);
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let check = url(&sim, CHECK);
        let body = json!({"CheckItem": [{"UserID": "alice"}, {"UserID": "bob"}, {"UserID": ""}]});
        let answer = call(&client, &check, &body).await;
        assert_eq!(answer["ErrorCode"], 0);
        let items = answer["ResultItem"].as_array().unwrap();
        assert_eq!(
            items[..2],
            [
                json!({"UserID": "alice", "ResultCode": 0, "ResultInfo": "",
                    "AccountStatus": "Imported"}),
                json!({"UserID": "bob", "ResultCode": 0, "ResultInfo": "",
                    "AccountStatus": "NotImported"}),
            ]
        );
        assert_eq!(items[2]["ResultCode"], 70402);
        assert_eq!(items[2]["AccountStatus"], "NotImported");
        // An import changes the answer.
        let import = url(&sim, IMPORT);
        assert_eq!(code(&client, &import, &json!({"UserID": "bob"})).await, 0);
        let answer = call(&client, &check, &json!({"CheckItem": [{"UserID": "bob"}]})).await;
        assert_eq!(answer["ResultItem"][0]["AccountStatus"], "Imported");
        // With `accounts: None` every account exists.
        let open = SimHandle::start(config()).await.unwrap();
        let answer = call(
            &client,
            &url(&open, CHECK),
            &json!({"CheckItem": [{"UserID": "zed"}]}),
        )
        .await;
        assert_eq!(answer["ResultItem"][0]["AccountStatus"], "Imported");
    }

    #[tokio::test]
    async fn account_check_error_codes_and_the_100_limit() {
        let sim = SimHandle::start(config()).await.unwrap();
        let client = reqwest::Client::new();
        let check = url(&sim, CHECK);
        let items =
            |n: usize| -> Value { names("u", n).iter().map(|u| json!({"UserID": u})).collect() };
        let cases = [
            (json!({}), 70402),
            (json!({"CheckItem": "alice"}), 70402),
            (json!({"CheckItem": [{"User": "alice"}]}), 70402),
            (json!({"CheckItem": ["alice"]}), 70402),
            (json!({"CheckItem": []}), 70206),
            (json!({"CheckItem": items(101)}), 70206),
        ];
        for (body, expected) in cases {
            assert_eq!(code(&client, &check, &body).await, expected, "{body}");
        }
        let answer = call(&client, &check, &json!({"CheckItem": items(100)})).await;
        assert_eq!(answer["ResultItem"].as_array().unwrap().len(), 100);
        let refused = call(
            &client,
            &url_as(&sim, CHECK, "bob"),
            &json!({"CheckItem": items(1)}),
        )
        .await;
        assert_eq!(refused["ErrorCode"], 70403);
    }

    #[tokio::test]
    async fn portrait_get_returns_only_set_tags_and_flags_unknown_accounts() {
        let mut cfg = config();
        cfg.accounts = known(&["alice", "bob"]);
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let set = json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            {"Tag": "Tag_Profile_IM_Level", "Value": 7},
            {"Tag": "Tag_Profile_Custom_Hobby", "Value": "chess"},
        ]});
        assert_eq!(code(&client, &set_url(&sim), &set).await, 0);
        let get = url(&sim, GET);
        let tags = [
            "Tag_Profile_Custom_Hobby",
            "Tag_Profile_IM_Gender",
            "Tag_Profile_IM_Level",
            "Tag_Profile_IM_Nick",
            "Tag_Profile_IM_Level",
        ];
        let body = json!({"To_Account": ["alice", "bob"], "TagList": tags});
        let answer = call(&client, &get, &body).await;
        assert_eq!(
            answer,
            json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "ErrorDisplay": "",
            "UserProfileItem": [
                {"To_Account": "alice", "ResultCode": 0, "ResultInfo": "", "ProfileItem": [
                    {"Tag": "Tag_Profile_Custom_Hobby", "Value": "chess"},
                    {"Tag": "Tag_Profile_IM_Level", "Value": 7},
                    {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
                ]},
                {"To_Account": "bob", "ResultCode": 0, "ResultInfo": "", "ProfileItem": []},
            ]})
        );
        // An unknown account fails on its own: 40003 in its item, listed in Fail_Account.
        let body = json!({"To_Account": ["mallory", "alice"], "TagList": ["Tag_Profile_IM_Nick"]});
        let answer = call(&client, &get, &body).await;
        assert_eq!(answer["ErrorCode"], 0);
        assert_eq!(answer["Fail_Account"], json!(["mallory"]));
        let mallory = &answer["UserProfileItem"][0];
        assert_eq!(mallory["To_Account"], "mallory");
        assert_eq!(mallory["ResultCode"], 40003);
        assert!(mallory.get("ProfileItem").is_none(), "{mallory}");
        assert_eq!(
            answer["UserProfileItem"][1]["ProfileItem"],
            json!([{"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"}])
        );
        // Imported accounts become readable.
        let import = url(&sim, IMPORT);
        let body = json!({"UserID": "mallory", "Nick": "M"});
        assert_eq!(code(&client, &import, &body).await, 0);
        let body = json!({"To_Account": ["mallory"], "TagList": ["Tag_Profile_IM_Nick", "Tag_Profile_IM_Image"]});
        let answer = call(&client, &get, &body).await;
        assert!(answer.get("Fail_Account").is_none(), "{answer}");
        assert_eq!(
            answer["UserProfileItem"][0]["ProfileItem"],
            json!([{"Tag": "Tag_Profile_IM_Nick", "Value": "M"}])
        );
    }

    #[tokio::test]
    async fn portrait_get_error_codes_and_the_100_limit() {
        let sim = SimHandle::start(config()).await.unwrap();
        let client = reqwest::Client::new();
        let get = url(&sim, GET);
        let nick_tag = json!(["Tag_Profile_IM_Nick"]);
        let cases = [
            (json!({"TagList": nick_tag}), 40002),
            (json!({"To_Account": null, "TagList": nick_tag}), 40002),
            (json!({"To_Account": [], "TagList": nick_tag}), 40002),
            (json!({"To_Account": "alice", "TagList": nick_tag}), 40001),
            (
                json!({"To_Account": ["alice", 7], "TagList": nick_tag}),
                40001,
            ),
            (
                json!({"To_Account": names("u", 101), "TagList": nick_tag}),
                40001,
            ),
            (json!({"To_Account": ["alice"]}), 40001),
            (json!({"To_Account": ["alice"], "TagList": []}), 40001),
            (json!({"To_Account": ["alice"], "TagList": [1]}), 40001),
            (
                json!({"To_Account": ["alice"], "TagList": ["Tag_Profile_IM_Nick", "Tag_Profile_IM_Nickname"]}),
                40009,
            ),
            (
                json!({"To_Account": ["alice"], "TagList": ["Tag_Profile_Custom_Pet"]}),
                40009,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(code(&client, &get, &body).await, expected, "{body}");
        }
        let body = json!({"To_Account": names("u", 100), "TagList": nick_tag});
        let answer = call(&client, &get, &body).await;
        assert_eq!(answer["UserProfileItem"].as_array().unwrap().len(), 100);
        let refused = call(&client, &url_as(&sim, GET, "bob"), &body).await;
        assert_eq!(refused["ErrorCode"], 40004);
    }

    #[tokio::test]
    async fn each_command_has_its_own_limiter() {
        let mut cfg = config();
        cfg.limit_per_sec = 4;
        cfg.limit_batch_per_sec = 2;
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let check = json!({"CheckItem": [{"UserID": "a"}]});
        let multi = json!({"Accounts": ["a"]});
        let get = json!({"To_Account": ["a"], "TagList": ["Tag_Profile_IM_Nick"]});
        let import = json!({"UserID": "a"});
        let mut seen = BTreeMap::new();
        for (path, body, n) in [
            (CHECK, &check, 3),
            (MULTI, &multi, 3),
            (IMPORT, &import, 5),
            (GET, &get, 5),
        ] {
            let url = url(&sim, path);
            let mut codes = Vec::new();
            for _ in 0..n {
                codes.push(code(&client, &url, body).await);
            }
            seen.insert(path, codes);
        }
        let set = set_url(&sim);
        let mut codes = Vec::new();
        for i in 0..5 {
            codes.push(code(&client, &set, &nick(&format!("u{i}"), "n")).await);
        }
        assert_eq!(seen[CHECK], [0, 0, 60007]);
        assert_eq!(seen[MULTI], [0, 0, 60007]);
        assert_eq!(seen[IMPORT], [0, 0, 0, 0, 60007]);
        assert_eq!(seen[GET], [0, 0, 0, 0, 60007]);
        assert_eq!(
            codes,
            [0, 0, 0, 0, 60007],
            "portrait_set keeps its own budget"
        );
        let stats = sim.stats();
        assert_eq!(stats.requests, 21);
        assert_eq!(stats.max_in_any_window, 5, "portrait_set only: {stats}");
        let by_command: Vec<(&str, u64)> = stats
            .by_command
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            by_command,
            [
                ("account_check", 3),
                ("account_import", 5),
                ("multiaccount_import", 3),
                ("portrait_get", 5),
                ("portrait_set", 5),
            ]
        );
        assert_eq!(stats.max_in_any_window_by_command["account_check"], 3);
        assert_eq!(stats.count_for("account_check", "60007"), 1);
        assert_eq!(stats.count_for("portrait_set", "0"), 4);
        assert_eq!((stats.count("0"), stats.count("60007")), (16, 5));
        assert!(
            stats
                .to_string()
                .contains("account_check=3 (at most 3 in 1 s)"),
            "{stats}"
        );
    }

    #[tokio::test]
    async fn zero_limit_per_sec_turns_every_limiter_off() {
        let mut cfg = config();
        cfg.limit_per_sec = 0;
        cfg.limit_batch_per_sec = 1;
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let check = url(&sim, CHECK);
        for _ in 0..5 {
            let body = json!({"CheckItem": [{"UserID": "a"}]});
            assert_eq!(code(&client, &check, &body).await, 0);
        }
    }

    #[tokio::test]
    async fn faults_apply_to_the_new_commands_with_their_own_streaks() {
        let mut cfg = config();
        cfg.accounts = known(&[]);
        cfg.faults.p_40006 = 1.0;
        cfg.faults.max_streak_per_user = 2;
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let multi = url(&sim, MULTI);
        let body = json!({"Accounts": ["alice", "bob"]});
        let mut codes = Vec::new();
        for _ in 0..3 {
            codes.push(code(&client, &multi, &body).await);
            if codes.len() < 3 {
                assert!(
                    sim.accounts().unwrap().is_empty(),
                    "a 40006 imports nothing"
                );
            }
        }
        assert_eq!(codes, [40006, 40006, 0]);
        assert_eq!(sim.accounts().unwrap().len(), 2);
        // account_check starting with alice, and portrait_set for alice, have their own streaks.
        let check = url(&sim, CHECK);
        let body = json!({"CheckItem": [{"UserID": "alice"}]});
        assert_eq!(code(&client, &check, &body).await, 40006);
        assert_eq!(
            code(&client, &set_url(&sim), &nick("alice", "A")).await,
            40006
        );
        let mut faults = Faults {
            p_502: 1.0,
            ..Faults::default()
        };
        sim.set_faults(faults.clone());
        let response = client
            .post(url(&sim, IMPORT))
            .json(&json!({"UserID": "carol"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        faults.p_502 = 0.0;
        faults.p_reset = 1.0;
        sim.set_faults(faults);
        let get = json!({"To_Account": ["alice"], "TagList": ["Tag_Profile_IM_Nick"]});
        assert!(client.post(url(&sim, GET)).json(&get).send().await.is_err());
        assert!(!sim.accounts().unwrap().contains("carol"));
        let stats = sim.stats();
        assert_eq!(stats.count_for("multiaccount_import", "40006"), 2);
        assert_eq!(stats.count_for("account_import", "http_502"), 1);
        assert_eq!(stats.count_for("portrait_get", "reset"), 1);
    }

    #[tokio::test]
    async fn slow_fault_imports_then_answers_late() {
        let mut cfg = config();
        cfg.accounts = known(&[]);
        cfg.faults.p_slow = 1.0;
        cfg.faults.slow = Duration::from_millis(300);
        let sim = SimHandle::start(cfg).await.unwrap();
        let timed_out = reqwest::Client::new()
            .post(url(&sim, IMPORT))
            .json(&json!({"UserID": "late"}))
            .timeout(Duration::from_millis(100))
            .send()
            .await;
        assert!(timed_out.is_err());
        assert!(sim.accounts().unwrap().contains("late"));
    }
}
