//! What the simulator has seen: [`SimStats`] and its text form, and the sliding-window
//! counter behind its "most requests in any one-second window" figures.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

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
    /// Answers by kind, over every request: `"0"`, `"40006"`, `"60007"`, …, `"http_502"` (any
    /// `"http_NNN"`), `"proxy_page"`, `"reset"`. Per-command answers are in `answers_by_command`.
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
    /// Users named in the portrait_get calls answered (up to 100 a call).
    pub users_read: u64,
    /// Tags written by the portrait_set updates applied: tag → writes (what the bodies held).
    pub written_by_tag: BTreeMap<String, u64>,
    /// ProfileItem tags in the portrait_set requests that could be decoded, by tag, whatever
    /// the answer: which fields went through portrait_set at all.
    pub portrait_set_tags: BTreeMap<String, u64>,
    /// portrait_set arrivals that came within 1, 2, 5 and 10 ms of the one before, as
    /// `(ms, count)`: a paced client's requests arrive one interval apart, not in pairs.
    pub close_arrivals: [(u64, u64); CLOSE_GAPS_MS.len()],
    /// The UserSigs that passed the check (never the sigs themselves), oldest `TLS.time` first.
    pub usersigs: Vec<UserSigSeen>,
}

/// A UserSig that passed the simulator's check, known by its lifetime.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserSigSeen {
    /// `TLS.time` and `TLS.expire`: valid up to and including second `time + expire`.
    pub time: u64,
    pub expire: u64,
    /// Requests that carried it and passed the check.
    pub requests: u64,
    /// The simulator's clock (Unix seconds, `SimConfig::clock_ahead` included) at the first and
    /// the last of them.
    pub first_at: u64,
    pub last_at: u64,
}

/// A request that carried the client's send time (the test hook
/// `chat::client::SENT_AT_HEADER`) and when it arrived, both since the Unix epoch by the
/// machine's clock: the client's own pace, and the jitter between it and the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StampedArrival {
    pub sent: Duration,
    pub arrived: Duration,
}

/// The gaps `SimStats::close_arrivals` counts arrivals within.
pub const CLOSE_GAPS_MS: [u64; 4] = [1, 2, 5, 10];

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
        if self.users_read > 0 {
            writeln!(f, "read       {} users (portrait_get)", self.users_read)?;
        }
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

/// The most arrivals within any half-open one-second window, in O(window) memory: the best
/// window always starts at an arrival, so it is enough to count, at each arrival, the arrivals
/// less than a second before it.
#[derive(Debug, Default)]
pub(super) struct WindowCounter {
    recent: VecDeque<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    pub(super) count: u64,
    pub(super) max: u64,
    /// Arrivals within each of `CLOSE_GAPS_MS` of the one before.
    pub(super) close: [u64; CLOSE_GAPS_MS.len()],
}

impl WindowCounter {
    pub(super) fn record(&mut self, at: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|&t| at.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        self.recent.push_back(at);
        self.max = self.max.max(self.recent.len() as u64);
        if let Some(last) = self.last {
            let gap = at.saturating_duration_since(last);
            for (close, ms) in self.close.iter_mut().zip(CLOSE_GAPS_MS) {
                *close += u64::from(gap < Duration::from_millis(ms));
            }
        }
        self.first.get_or_insert(at);
        self.last = Some(at);
        self.count += 1;
    }

    pub(super) fn mean_rate(&self) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn window_counter_counts_arrivals_close_to_the_one_before() {
        let t0 = Instant::now();
        let mut window = WindowCounter::default();
        // Gaps: 20, 0.5, 1.5, 4, 9, 20 ms.
        for us in [0, 20_000, 20_500, 22_000, 26_000, 35_000, 55_000] {
            window.record(t0 + Duration::from_micros(us));
        }
        // Within 1, 2, 5 and 10 ms of the one before.
        assert_eq!(window.close, [1, 2, 3, 4]);
    }
}
