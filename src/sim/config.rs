//! What a simulator is started with: the app ([`SimConfig`]) and the failures it injects
//! ([`Faults`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::chat::usersig::SecretKey;

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
    /// multiaccount_import add to it (see [`super::SimHandle::accounts`]).
    pub accounts: Option<HashSet<String>>,
    /// UserIDs whose import always fails: listed in multiaccount_import's `FailAccounts`,
    /// answered 70402 by account_import. For tests of per-account import failures.
    pub fail_import: HashSet<String>,
    /// Custom keywords configured "in the console" (e.g. "Hobby"); other Tag_Profile_Custom_* get 40009.
    pub custom_fields: HashSet<String>,
    /// Seed for the fault RNG so runs are reproducible.
    pub seed: u64,
    /// portrait_get refuses the whole call with 40003 when any account asked for is unknown
    /// (the other reading of its doc: "ensure that all accounts in the request are imported…
    /// otherwise, an error will be displayed"), instead of failing those users one by one.
    pub get_refuses_unknown_accounts: bool,
    /// How far the simulator's clock is ahead of the machine's when it checks a UserSig's
    /// expiry (whole seconds count), as when Chat's clock is ahead of ours: a sig then expires
    /// here before the client's own renewal is due, and the answer is 70001.
    pub clock_ahead: Duration,
}

impl SimConfig {
    /// Chat's documented limits (200/s, and 100/s for multiaccount_import and account_check),
    /// no latency, no faults, every account exists, no forced import failures, custom keywords
    /// Hobby, City and Tier, seed 1, the machine's clock.
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
            get_refuses_unknown_accounts: false,
            clock_ahead: Duration::ZERO,
        }
    }
}

/// Injected failures. Probabilities are checked in field order against one uniform draw, so
/// if they add up to more than 1 the later ones get what is left. A user named in
/// `inject_for` gets its answer instead of the draw.
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
    /// Answer `inject` with this probability (drawn after the faults above).
    pub p_inject: f64,
    /// What `p_inject` answers; None = nothing.
    pub inject: Option<Injected>,
    /// Every request for one of these users (portrait_set's From_Account, the first UserID of
    /// the other commands) gets this answer, within `max_streak_per_user` like every fault.
    pub inject_for: HashMap<String, Injected>,
    /// multiaccount_import with `AccountList` imports new accounts with their Nick and FaceUrl
    /// but leaves an existing account's profile as it was (the call still answers OK): the
    /// behaviour the newer doc page rules out, for testing the importer's self-check.
    pub account_list_ignores_existing: bool,
}

/// An answer the simulator can be told to give in place of doing the work: any Chat code, any
/// HTTP status, a page that is not Chat's at all, or an OK that cannot be read. Like the other
/// faults it writes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Injected {
    /// HTTP 200 with Chat's envelope carrying this `ErrorCode` (e.g. 60008, 70001, 70500).
    Code(u32),
    /// This HTTP status (e.g. 429, 408, 403) with a small HTML error page, as a gateway in
    /// front of Chat answers. A status of 200 or one hyper does not know gives 502.
    Http(u16),
    /// HTTP 200 with an HTML page that is not Chat's: a proxy's sign-in page echoing the
    /// request URL, UserSig included, as captive portals and corporate proxies do.
    ProxyPage,
    /// Drop the connection without any answer.
    Reset,
    /// HTTP 200 with Chat's OK envelope carrying this field (in place of the command's own),
    /// without doing the work: an answer whose command fields cannot be read, such as a
    /// multiaccount_import `FailAccounts` that is not a list of UserIDs.
    OkWith(String, serde_json::Value),
}
