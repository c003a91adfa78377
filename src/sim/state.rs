//! The simulator's shared state: the app it plays ([`Sim`]), everything that changes while it
//! runs ([`State`]: profiles, accounts, limiters, counters), and the in-flight bookkeeping of
//! one request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::auth::Lifetime;
use super::command::Command;
use super::config::{Faults, SimConfig};
use super::fields::valid_user_id;
use super::stats::{SimStats, StampedArrival, UserSigSeen, WindowCounter, CLOSE_GAPS_MS};
use super::window::SlidingLimiter;
use crate::chat::usersig::SecretKey;

/// State a handler leaves behind for the rest of the request. It lives until the answer is
/// returned, so the per-user guard also covers the latency sleep.
#[derive(Default)]
pub(super) struct RequestCtx {
    pub(super) user: Option<FlightGuard>,
    pub(super) extra_delay: Duration,
}

/// Counts a request as in flight (overall, or for one user) until dropped, so a client that
/// gives up mid-request cannot leave the counters high.
pub(super) struct FlightGuard {
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
        self.sim.changed.notify_waiters();
    }
}

pub(super) struct State {
    pub(super) profiles: BTreeMap<String, BTreeMap<String, Value>>,
    /// In `State` rather than the config because the import commands add to it.
    pub(super) accounts: Option<HashSet<String>>,
    pub(super) faults: Faults,
    pub(super) fault_rng: StdRng,
    // Separate from the fault stream so changing latency does not change which requests fail.
    pub(super) latency_rng: StdRng,
    pub(super) streaks: HashMap<String, u32>,
    /// One per command (see `Command::batch_limited`).
    pub(super) limiters: HashMap<Command, SlidingLimiter>,
    /// Requests still to be refused with 60007 whatever the limit (`SimHandle::throttle_next`).
    pub(super) forced_throttles: u32,
    /// Every arrival, whatever its path.
    pub(super) window: WindowCounter,
    /// Arrivals by command (known paths only).
    pub(super) windows: HashMap<Command, WindowCounter>,
    pub(super) in_flight: u64,
    pub(super) in_flight_by_user: HashMap<String, u64>,
    pub(super) max_in_flight: u64,
    pub(super) max_in_flight_per_user: u64,
    pub(super) codes: BTreeMap<String, u64>,
    pub(super) answers_by_command: BTreeMap<String, BTreeMap<String, u64>>,
    pub(super) applied: u64,
    /// Users named in portrait_get calls that were answered.
    pub(super) users_read: u64,
    /// Tags written by applied portrait_set calls: tag → writes.
    pub(super) written_by_tag: BTreeMap<String, u64>,
    /// ProfileItem tags portrait_set received, by tag (see `SimStats::portrait_set_tags`).
    pub(super) set_tags: BTreeMap<String, u64>,
    /// Accepted TCP connections, so tests can see keep-alive at work.
    pub(super) connections: u64,
    /// The UserSigs that passed the check, by `TLS.time` and `TLS.expire`.
    pub(super) usersigs: BTreeMap<(u64, u64), UserSigSeen>,
    /// Arrivals of requests that carried the client's send time, by command.
    pub(super) stamped: HashMap<Command, Vec<StampedArrival>>,
}

impl State {
    /// Whether `user` is an account of the app: one whose UserID follows Chat's rule (no other
    /// can ever be imported) and that is known, or any such one with `accounts: None`.
    pub(super) fn knows(&self, user: &str) -> bool {
        valid_user_id(user)
            && self
                .accounts
                .as_ref()
                .is_none_or(|accounts| accounts.contains(user))
    }

    /// Counts a request whose UserSig, of `lifetime`, passed the check at `now` (the
    /// simulator's clock).
    pub(super) fn usersig_passed(&mut self, lifetime: Lifetime, now: u64) {
        let seen = self
            .usersigs
            .entry((lifetime.time, lifetime.expire))
            .or_insert(UserSigSeen {
                time: lifetime.time,
                expire: lifetime.expire,
                requests: 0,
                first_at: now,
                last_at: now,
            });
        seen.requests += 1;
        seen.first_at = seen.first_at.min(now);
        seen.last_at = seen.last_at.max(now);
    }
}

/// The simulated app: what is fixed at start, and the state behind one lock.
pub(super) struct Sim {
    pub(super) sdkappid: u64,
    pub(super) admin: String,
    pub(super) key: SecretKey,
    latency_min: Duration,
    latency_max: Duration,
    pub(super) custom_fields: HashSet<String>,
    pub(super) fail_import: HashSet<String>,
    pub(super) get_refuses_unknown_accounts: bool,
    pub(super) clock_ahead: Duration,
    state: Mutex<State>,
    /// Woken at every arrival, answer and end of a request, so tests can wait for a condition
    /// on the state instead of sleeping.
    pub(super) changed: tokio::sync::Notify,
}

impl Sim {
    pub(super) fn new(config: SimConfig) -> Sim {
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
            get_refuses_unknown_accounts: config.get_refuses_unknown_accounts,
            clock_ahead: config.clock_ahead,
            state: Mutex::new(State {
                profiles: BTreeMap::new(),
                accounts: config.accounts,
                faults: config.faults,
                fault_rng: StdRng::seed_from_u64(config.seed),
                latency_rng: StdRng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15),
                streaks: HashMap::new(),
                limiters,
                forced_throttles: 0,
                window: WindowCounter::default(),
                windows: HashMap::new(),
                in_flight: 0,
                in_flight_by_user: HashMap::new(),
                max_in_flight: 0,
                max_in_flight_per_user: 0,
                codes: BTreeMap::new(),
                answers_by_command: BTreeMap::new(),
                applied: 0,
                users_read: 0,
                written_by_tag: BTreeMap::new(),
                set_tags: BTreeMap::new(),
                connections: 0,
                usersigs: BTreeMap::new(),
                stamped: HashMap::new(),
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an arrival (for `command`, if the path names one, with the client's send time
    /// when the request carried one) and counts it in flight until the guard drops.
    pub(super) fn arrive(
        self: &Arc<Self>,
        command: Option<Command>,
        sent: Option<Duration>,
    ) -> FlightGuard {
        let mut state = self.state();
        // Taken under the lock so arrivals are recorded in order.
        let now = Instant::now();
        state.window.record(now);
        if let Some(command) = command {
            state.windows.entry(command).or_default().record(now);
            if let Some(sent) = sent {
                let arrived = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let arrival = StampedArrival { sent, arrived };
                state.stamped.entry(command).or_default().push(arrival);
            }
        }
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        self.changed.notify_waiters();
        FlightGuard {
            sim: Arc::clone(self),
            user: None,
        }
    }

    /// Counts a request as in flight for `user` until the guard drops.
    pub(super) fn enter_user(self: &Arc<Self>, user: &str) -> FlightGuard {
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

    /// This request's network latency, drawn from the configured range.
    pub(super) fn latency(&self) -> Duration {
        if self.latency_max.is_zero() {
            return Duration::ZERO;
        }
        self.state()
            .latency_rng
            .random_range(self.latency_min..=self.latency_max)
    }
}

impl State {
    pub(super) fn stats(&self) -> SimStats {
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
            users_read: self.users_read,
            written_by_tag: self.written_by_tag.clone(),
            portrait_set_tags: self.set_tags.clone(),
            close_arrivals: {
                let close = self
                    .windows
                    .get(&Command::PortraitSet)
                    .map_or([0; CLOSE_GAPS_MS.len()], |window| window.close);
                std::array::from_fn(|i| (CLOSE_GAPS_MS[i], close[i]))
            },
            usersigs: self.usersigs.values().cloned().collect(),
        }
    }

    /// Counts one answer under its key, overall and for its command.
    pub(super) fn count_answer(&mut self, command: Option<Command>, key: String) {
        *self.codes.entry(key.clone()).or_insert(0) += 1;
        if let Some(command) = command {
            *self
                .answers_by_command
                .entry(command.name().to_string())
                .or_default()
                .entry(key)
                .or_insert(0) += 1;
        }
    }
}
