//! The built-in Chat simulator: an HTTP/1.1 server that answers the REST commands the import
//! job uses the way the spec (§1–§5) says Chat does, with a sliding one-second rate limit per
//! command, seeded fault injection and the statistics the tests use to prove the client paces,
//! retries and serializes per user. This file owns the public handle ([`SimHandle`]); the
//! parts live in the submodules below.
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
//! Layout: `server` (accepting, serving and handling one request), `admission` (route,
//! query, admin and rate limit), `auth` (the UserSig check), `command` (the command list and
//! dispatch), `profile` and `accounts` (the commands), `fields` (Chat's field table and
//! UserID rule), `faults` (injected failures), `answer` (the HTTP answers), `state` (the
//! shared state), `stats` (what the simulator saw), `config` (what it is started with).
//!
//! To add a command: a `Command` variant (and its entry in `Command::ALL`), its path, its
//! non-admin code in `not_admin_code`, whether it is a 100/s API in `batch_limited`, and a
//! handler in `Sim::dispatch` (all in `command.rs`).
//!
//! The simulator knows nothing of the importer's own tables: its field table, UserID rule and
//! UserSig check are written here from the spec, so a mistake in the importer is not repeated
//! in the server that tests it.
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
//! - 40006, 502, reset and injected (`Faults::inject`, `Faults::inject_for`) faults write
//!   nothing; a slow fault does the work, then answers late.
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
//! - A UserID is valid when it follows spec §5.1: 1 to [`MAX_USER_ID_BYTES`] bytes of
//!   `A-Za-z0-9_-`. One that breaks the rule can never be imported, so portrait_set and
//!   portrait_get treat it as an unknown account (40003) even with `accounts: None`.
//!   `Nick` / `FaceUrl` must be JSON strings when present (`null` is a protocol error, 70402);
//!   they are written as `Tag_Profile_IM_Nick` / `Tag_Profile_IM_Image`, empty strings included,
//!   and each may be at most 500 bytes (40601). Re-importing an account is OK and overwrites the
//!   Nick / FaceUrl it carries; others are kept. That holds for existing accounts in the
//!   `AccountList` form too, as the newer page says ("it will be updated with the new
//!   parameters provided"), unless `Faults::account_list_ignores_existing` is on: then an
//!   account that already existed keeps its profile and the call still answers OK.
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
//!   only the tags that have a value; a user with none gets `ProfileItem: []`. With
//!   [`SimConfig::get_refuses_unknown_accounts`] the whole call is refused with 40003 instead
//!   (the doc can be read either way).
//! - Only portrait_set counts a user as in flight (`max_in_flight_per_user`) and in `applied`;
//!   portrait_get counts the users it answered for in `users_read`.
//! - A UserSig expires by the machine's clock plus [`SimConfig::clock_ahead`] (0 unless a test
//!   plays a Chat whose clock is ahead). Each sig that passes is counted by its `TLS.time` and
//!   `TLS.expire` in `SimStats::usersigs`; the sig itself is never kept.
//! - A request carrying the client's send time (the test hook `chat::client::SENT_AT_HEADER`)
//!   is recorded with its arrival on the machine's clock ([`SimHandle::stamped_arrivals`]).

mod accounts;
mod admission;
mod answer;
mod auth;
mod command;
mod config;
mod faults;
mod fields;
mod profile;
mod server;
mod state;
mod stats;
mod window;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Faults, Injected, SimConfig};
pub use stats::{SimStats, StampedArrival, UserSigSeen};

use command::Command;
use state::Sim;

/// Request bodies larger than this are refused; a portrait_set body is a few KB at most.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest UserID Chat accepts, in bytes (spec §5.1).
pub const MAX_USER_ID_BYTES: usize = 32;

/// The most accounts one multiaccount_import, account_check or portrait_get may name.
pub const MAX_BATCH: usize = 100;

/// A running simulator. Dropping it shuts the server down, so keep it alive while in use.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    cancel: CancellationToken,
    /// Cancelled once the listener is closed (after `shutdown`).
    closed: CancellationToken,
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
        let closed = CancellationToken::new();
        tokio::spawn(server::accept_loop(
            listener,
            Arc::clone(&sim),
            cancel.clone(),
            closed.clone(),
        ));
        tracing::info!(%addr, "Chat simulator listening");
        SimHandle {
            addr,
            sim,
            cancel,
            closed,
        }
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

    /// The arrivals of `command` (e.g. `"portrait_set"`) that carried the client's send time,
    /// in arrival order: empty unless the client stamps its sends (a test hook, see
    /// `chat::client::STAMP_SENDS_ENV`).
    pub fn stamped_arrivals(&self, command: &str) -> Vec<StampedArrival> {
        let state = self.sim.state();
        Command::ALL
            .into_iter()
            .find(|c| c.name() == command)
            .and_then(|c| state.stamped.get(&c).cloned())
            .unwrap_or_default()
    }

    /// The profiles the simulator holds: UserID -> (Tag -> JSON value), sorted.
    pub fn profiles(&self) -> BTreeMap<String, BTreeMap<String, Value>> {
        self.sim.state().profiles.clone()
    }

    /// Writes values into a user's profile as another writer would (the console, a client
    /// SDK): no request, no counter, no rate limit. A `null` value unsets the tag. Tests use it
    /// for drift; benchmarks to seed a simulator that already holds an import.
    pub fn write_profile<'a>(
        &self,
        user: &str,
        values: impl IntoIterator<Item = (&'a str, Value)>,
    ) {
        let mut state = self.sim.state();
        let profile = state.profiles.entry(user.to_string()).or_default();
        for (tag, value) in values {
            if value.is_null() {
                profile.remove(tag);
            } else {
                profile.insert(tag.to_string(), value);
            }
        }
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

    /// Change the per-command limit of portrait_set, portrait_get and account_import while
    /// running, as when another system of the app starts or stops using the quota (0 = no
    /// limit). Admissions of the last second still count against the new limit.
    pub fn set_limit(&self, per_sec: u32) {
        let mut state = self.sim.state();
        for (command, limiter) in state.limiters.iter_mut() {
            if !command.batch_limited() {
                limiter.set_limit(per_sec);
            }
        }
    }

    /// Answers the next `n` requests that pass the admin check with 60007, whatever the
    /// limit: an isolated throttle, as a server counting its windows differently would cause.
    pub fn throttle_next(&self, n: u32) {
        self.sim.state().forced_throttles += n;
    }

    /// Stop accepting and close connections. Requests already being handled get
    /// `server::SHUTDOWN_GRACE` to finish; idle keep-alive connections close at once.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Resolves once the listener is closed after [`SimHandle::shutdown`]: from then on new
    /// connections are refused.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
