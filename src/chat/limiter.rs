//! The pace of one Chat command: a `Pacer` that every request of it (retries included) passes.
//! It keeps every one-second window at the server within the pace, with room for arrival
//! jitter; starts gently when `--rate` is above Chat's default limit; and follows Chat's
//! throttling down to the rate Chat accepts and back up.
//!
//! - **Spacing** (governor). A pace of `p` is `p` requests per `PACE_WINDOW` (1.010 s): a GCRA
//!   emission interval of 1.010 s / `p` with `CATCH_UP` (4 ms) of tolerance, so a wake-up that
//!   came late is made up rather than lost. Any `n` requests then span at least
//!   (n-1)·1.010 s/p − 4 ms, so a server's one-second window holds at most `p` of them even when
//!   arrival times wander up to `JITTER_ROOM` (6 ms) against send times. The mean is 99 % of
//!   `p`. Governor's tolerance comes in whole cells, so a request costs `CELLS` cells: the
//!   tolerance is then 4 ms at any rate, not 0 or a whole interval.
//! - **Start.** A `--rate` above `RAMP_ABOVE` (3,000/s) starts at Chat's default limit
//!   (`START_RATE`, 200/s) and doubles every `RAMP_STEP` (25 ms), and until Chat has accepted
//!   more, at most `START_RATE` of its requests go in any `GUARD`, plus probes: one at first,
//!   and two more for each probe accepted (doubling each round trip, as TCP's slow start does).
//!   The pace alone did not hold the first second: the 200th request went out after about
//!   135 ms, and by the time the 201st one's throttled answer came back (a round trip later)
//!   the doubled pace had sent hundreds more into the full window (639 requests in the first
//!   second against a 200/s limit, 13 % of 3,446 throttled for 3,000 rows). Now a limit of
//!   200/s costs one throttled probe, and a higher one is found in a round trip per doubling.
//!   Up to 3,000/s the ramp would end within 0.1 s, after about 75 requests and before a
//!   200/s window could fill, so it would cost only time (0.3 % of a 25 s run at 3,000/s):
//!   such a `--rate` starts at full pace.
//! - **Throttled.** A throttled answer to a request sent at `s` says the server's window before
//!   `s` was full: the limit is at most our requests in the second before `s` that were not
//!   refused (unanswered ones counted). The pace is cut to just below that count — from far
//!   above, the limit in one step (TCP's cut to the delivery rate, not a fixed factor); at the
//!   limit, about 2 %; never more than halfway down in one cut, since a count near 0 means
//!   other traffic took the window or our sending had only just begun. Throttles of requests sent before the last cut are its consequence, not
//!   news, and do not cut again. After a cut, requests are held until our last `GUARD` holds
//!   fewer than the new pace, so the server's window has room when they go.
//! - **Accepted.** Once a second, if a request sent since the last change was accepted, the
//!   pace rises by a step that starts at 0.5 % and doubles each time, up to `--rate`: a cut
//!   that was only jitter is undone in a few seconds, a limit that came back up is found within
//!   about ten.
//! - **Turns.** Each wait for a turn is posted to `chat::nap`, so the sending thread can nap
//!   until it instead of waking for each answer.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::chat::nap;

/// Governor's clock on tokio's time, so the limiter and the waits in `Pacer::acquire` share
/// one clock (and a test can drive both with tokio's paused time).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: Instant,
}

impl TokioClock {
    fn new() -> TokioClock {
        TokioClock {
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Instant::now().duration_since(self.start))
    }
}

type PaceLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// The window a server counts requests in.
const WINDOW: Duration = Duration::from_secs(1);
/// How far a server's arrival times may wander against our send times (loopback on a busy
/// machine measured a few ms; see `just bench-rates`) with every window still within the pace.
pub const JITTER_ROOM: Duration = Duration::from_millis(6);
/// How late a wake-up may come and still be made up (tokio's timer has 1 ms steps).
const CATCH_UP: Duration = Duration::from_millis(4);
/// A pace of `p` is `p` requests per this: the window, the jitter room and the catch-up.
pub const PACE_WINDOW: Duration = Duration::from_millis(1010);
/// Cells per request, so governor's whole-cell tolerance can be `CATCH_UP` at any rate.
const CELLS: u64 = 1000;
/// Chat's default limit per command: a `--rate` above `RAMP_ABOVE` starts here and ramps up.
pub const START_RATE: f64 = 200.0;
/// A `--rate` up to this starts at full pace: a ramp to it would end before a 200/s window filled.
const RAMP_ABOVE: f64 = 3000.0;
/// The ramp doubles the pace this often.
const RAMP_STEP: Duration = Duration::from_millis(25);
/// After a cut, requests wait until our last `GUARD` holds fewer than the new pace.
const GUARD: Duration = Duration::from_millis(1006);
/// How long sends are remembered, for the count behind a late throttled answer.
const MEMORY: Duration = Duration::from_secs(3);
/// A cut lands this far below the count of accepted requests.
const CUT_BELOW: f64 = 0.99;
/// The first climb after a change; each next one doubles.
const FIRST_STEP: f64 = 0.005;
/// Lowest pace.
const MIN_RATE: f64 = 1.0;

/// A governor limiter spacing requests at a pace, and the cells each request costs.
struct Spacing {
    limiter: PaceLimiter,
    cells: NonZeroU32,
}

/// The quota for `pace` requests per `PACE_WINDOW`, the cells a request costs, and the burst.
fn shape(pace: f64) -> (Quota, NonZeroU32, NonZeroU32) {
    let interval = PACE_WINDOW.as_nanos() as f64 / pace.max(MIN_RATE);
    let cell = ((interval / CELLS as f64).floor() as u64).max(1);
    // Round the interval up to whole cells: never faster than the pace.
    let cells = (interval / cell as f64).ceil() as u64;
    let tolerance = (CATCH_UP.as_nanos() as u64).div_ceil(cell);
    let to_u32 = |n: u64| NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX).max(1));
    let (cells, burst) = match (to_u32(cells), to_u32(cells + tolerance)) {
        (Some(cells), Some(burst)) => (cells, burst),
        _ => (NonZeroU32::MIN, NonZeroU32::MIN),
    };
    let quota = Quota::with_period(Duration::from_nanos(cell))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    (quota, cells, burst)
}

impl Spacing {
    /// `pace` requests per `PACE_WINDOW`, starting drained: the limiter it replaces may have
    /// just let a request go, so the first one waits a whole interval.
    fn new(pace: f64, clock: TokioClock) -> Spacing {
        let (quota, cells, burst) = shape(pace);
        let limiter = RateLimiter::direct_with_clock(quota, clock);
        let _ = limiter.check_n(burst);
        Spacing { limiter, cells }
    }

    /// Takes this request's turn, or says how long to wait for it.
    fn try_take(&self) -> Result<(), Duration> {
        match self.limiter.check_n(self.cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.limiter.clock().now())),
            // Cannot happen (a request's cells are within the burst); never block for it.
            Err(_) => Ok(()),
        }
    }
}

/// One request that went out: which it was, for its answer to report back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What the pacer remembers of a request it let go.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    refused: bool,
    /// Sent during the start with more than `START_RATE` of our sends in its `GUARD`: its
    /// acceptance says Chat's limit is higher.
    probe: bool,
}

struct PaceState {
    spacing: Arc<Spacing>,
    rate: f64,
    /// The lowest pace a throttle cut to (the start ramp does not count).
    lowest: f64,
    /// Requests wait until then (after a cut, until the server's window has room).
    held_until: Option<Instant>,
    /// While ramping up to the ceiling: when the pace next doubles.
    next_doubling: Option<Instant>,
    /// During the start (until a throttle, or until it reaches the ceiling): at most this many
    /// of our sends in any `GUARD`.
    allowance: Option<usize>,
    /// The first ticket sent within the last `GUARD`, as far as `in_guard` has looked.
    guard_first: u64,
    /// Sends of the last `MEMORY`, oldest first; `first_ticket` is the ticket of the first.
    sent: VecDeque<Sent>,
    first_ticket: u64,
    /// Requests from this ticket on were sent at the pace in force.
    changed_at_ticket: u64,
    /// Requests from this ticket on were sent after the last cut.
    cut_at_ticket: u64,
    last_change: Instant,
    last_cut: Option<Instant>,
    /// The next climb, as a fraction of the pace.
    step: f64,
}

impl PaceState {
    fn next_ticket(&self) -> u64 {
        self.first_ticket + self.sent.len() as u64
    }

    fn sent_mut(&mut self, ticket: Ticket) -> Option<&mut Sent> {
        let index = ticket.0.checked_sub(self.first_ticket)?;
        self.sent.get_mut(usize::try_from(index).ok()?)
    }

    fn forget_before(&mut self, cutoff: Instant) {
        while self.sent.front().is_some_and(|s| s.at < cutoff) {
            self.sent.pop_front();
            self.first_ticket += 1;
        }
    }

    /// Our requests in the second before `ticket`'s that the server did not refuse.
    fn accepted_before(&self, ticket: Ticket) -> Option<usize> {
        let index = usize::try_from(ticket.0.checked_sub(self.first_ticket)?).ok()?;
        let at = self.sent.get(index)?.at;
        let count = self
            .sent
            .range(..index)
            .rev()
            .take_while(|s| at.duration_since(s.at) < WINDOW)
            .filter(|s| !s.refused)
            .count();
        Some(count)
    }

    /// Our sends in the last `GUARD` (and moves `guard_first` up to the first of them).
    fn in_guard(&mut self, now: Instant) -> usize {
        let mut first = self.guard_first.max(self.first_ticket);
        while let Some(sent) = usize::try_from(first - self.first_ticket)
            .ok()
            .and_then(|index| self.sent.get(index))
        {
            if now.duration_since(sent.at) < GUARD {
                break;
            }
            first += 1;
        }
        self.guard_first = first;
        usize::try_from(self.next_ticket() - first).unwrap_or(usize::MAX)
    }

    /// With a start allowance that our last `GUARD` of sends has used up: when the oldest of
    /// them leaves it.
    fn allowance_frees_at(&mut self, now: Instant) -> Option<Instant> {
        let allowance = self.allowance?;
        if self.in_guard(now) < allowance {
            return None;
        }
        let index = usize::try_from(self.guard_first - self.first_ticket).ok()?;
        self.sent.get(index).map(|s| s.at + GUARD)
    }

    /// When our last `GUARD` of sends holds fewer than `pace`.
    fn room_for(&self, pace: f64, now: Instant) -> Option<Instant> {
        let recent = self
            .sent
            .iter()
            .rev()
            .take_while(|s| now.duration_since(s.at) < GUARD)
            .count();
        let pace = pace.floor().max(1.0) as usize;
        if recent < pace {
            return None;
        }
        // The send that must leave the guard window: the (recent - pace + 1)-th oldest in it.
        let leaving = self.sent.len() - recent + (recent - pace);
        self.sent.get(leaving).map(|s| s.at + GUARD)
    }
}

/// Paces every request of one command.
pub struct Pacer {
    ceiling: f64,
    clock: TokioClock,
    state: Mutex<PaceState>,
    /// One waiter at a time on the limiter: waking every waiting worker on each turn would
    /// burn CPU. The tokio mutex queues them fairly instead.
    turn: tokio::sync::Mutex<()>,
    /// Wakes the waiter when an accepted probe (or a throttle) changes the start allowance.
    allowance_changed: tokio::sync::Notify,
}

impl Pacer {
    pub fn new(ceiling: u32) -> Pacer {
        let ceiling = f64::from(ceiling.max(1));
        let clock = TokioClock::new();
        let now = Instant::now();
        let (rate, next_doubling, allowance) = if ceiling > RAMP_ABOVE {
            (
                START_RATE,
                Some(now + RAMP_STEP),
                Some(START_RATE as usize + 1),
            )
        } else {
            (ceiling, None, None)
        };
        Pacer {
            ceiling,
            clock,
            state: Mutex::new(PaceState {
                spacing: Arc::new(Spacing::new(rate, clock)),
                rate,
                lowest: ceiling,
                held_until: None,
                next_doubling,
                allowance,
                guard_first: 0,
                sent: VecDeque::new(),
                first_ticket: 0,
                changed_at_ticket: 0,
                cut_at_ticket: 0,
                last_change: now,
                last_cut: None,
                step: FIRST_STEP,
            }),
            turn: tokio::sync::Mutex::new(()),
            allowance_changed: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pace in force (requests per second).
    pub fn current_rate(&self) -> f64 {
        self.state().rate
    }

    /// The pace it never exceeds (`--rate` and its kin).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The lowest pace a throttle cut to.
    pub fn lowest_rate(&self) -> f64 {
        self.state().lowest
    }

    /// Waits for a request's turn under the pace; the ticket goes back with its answer.
    pub async fn acquire(&self) -> Ticket {
        let _turn = self.turn.lock().await;
        loop {
            let now = Instant::now();
            let (held_until, spacing, allowance_frees) = {
                let mut state = self.state();
                if state.next_doubling.is_some_and(|at| at <= now) {
                    let rate = (state.rate * 2.0).min(self.ceiling);
                    self.set_rate(&mut state, rate, now);
                    state.next_doubling = (rate < self.ceiling).then_some(now + RAMP_STEP);
                }
                let frees = state.allowance_frees_at(now);
                (state.held_until, state.spacing.clone(), frees)
            };
            if let Some(until) = held_until.filter(|until| *until > now) {
                nap::next_turn_in(until - now);
                tokio::time::sleep_until(until).await;
                continue;
            }
            if let Some(until) = allowance_frees {
                // Not posted as a turn: an accepted probe may free it any moment, and a nap
                // would read that answer late.
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = self.allowance_changed.notified() => {}
                }
                continue;
            }
            // Waiting on tokio's own timer rather than governor's `until_ready` (which sleeps
            // on futures-timer's helper thread) keeps the send loop on one runtime thread.
            match spacing.try_take() {
                Ok(()) => {
                    let mut state = self.state();
                    state.forget_before(now.checked_sub(MEMORY).unwrap_or(now));
                    let probe =
                        state.allowance.is_some() && state.in_guard(now) >= START_RATE as usize;
                    let ticket = Ticket(state.next_ticket());
                    state.sent.push_back(Sent {
                        at: now,
                        refused: false,
                        probe,
                    });
                    return ticket;
                }
                Err(wait) => {
                    nap::next_turn_in(wait);
                    tokio::time::sleep(wait).await
                }
            }
        }
    }

    /// Chat refused `ticket`'s request as too many: cut the pace to just below what the server
    /// accepted in the second before it was sent, unless an earlier cut already explains it.
    pub fn on_throttled(&self, ticket: Ticket) {
        let now = Instant::now();
        let mut state = self.state();
        if let Some(sent) = state.sent_mut(ticket) {
            sent.refused = true;
        }
        if ticket.0 < state.cut_at_ticket {
            return;
        }
        self.end_start(&mut state);
        // A request sent so long ago that it is forgotten: cut by the at-limit step.
        let accepted = state
            .accepted_before(ticket)
            .map_or(state.rate, |n| n as f64);
        // One cut goes at most halfway down from the pace (or from 200/s above it): a count
        // near 0 means other traffic took the window, or our sending had only just begun.
        let floor = 0.5 * state.rate.min(START_RATE);
        let rate = (accepted * CUT_BELOW)
            .floor()
            .max(floor)
            .min(state.rate * CUT_BELOW)
            .max(MIN_RATE);
        tracing::info!("Chat is throttling: pace {:.0}/s → {rate:.0}/s", state.rate);
        self.cut(&mut state, rate, now);
        state.held_until = state.room_for(rate, now);
    }

    /// Chat throttled another command of the app with an app-wide code: cut this pace too, by
    /// the at-limit step, unless it was cut within the last second.
    pub fn on_throttled_elsewhere(&self) {
        let now = Instant::now();
        let mut state = self.state();
        if state
            .last_cut
            .is_some_and(|at| now.duration_since(at) < WINDOW)
        {
            return;
        }
        self.end_start(&mut state);
        let rate = (state.rate * CUT_BELOW).max(MIN_RATE);
        self.cut(&mut state, rate, now);
    }

    /// Chat accepted `ticket`'s request: once a second, if it was sent at the pace in force,
    /// climb back towards `--rate`.
    pub fn on_accepted(&self, ticket: Ticket) {
        let now = Instant::now();
        let mut state = self.state();
        if let Some(allowance) = state.allowance {
            if state.sent_mut(ticket).is_some_and(|sent| sent.probe) {
                // Chat took one request beyond what it had taken: two more may go.
                let grown = allowance + 2;
                state.allowance = (grown < self.ceiling as usize).then_some(grown);
                self.allowance_changed.notify_one();
            }
        }
        if state.rate >= self.ceiling
            || state.next_doubling.is_some()
            || ticket.0 < state.changed_at_ticket
            || now.duration_since(state.last_change) < WINDOW
        {
            return;
        }
        let rate = (state.rate * (1.0 + state.step)).min(self.ceiling);
        self.set_rate(&mut state, rate, now);
        state.step *= 2.0;
    }

    /// Chat throttled: the start is over (no more doubling, no start allowance).
    fn end_start(&self, state: &mut PaceState) {
        state.next_doubling = None;
        if state.allowance.take().is_some() {
            self.allowance_changed.notify_one();
        }
    }

    fn cut(&self, state: &mut PaceState, rate: f64, now: Instant) {
        self.set_rate(state, rate, now);
        state.cut_at_ticket = state.next_ticket();
        state.last_cut = Some(now);
        state.lowest = state.lowest.min(rate);
        state.step = FIRST_STEP;
    }

    fn set_rate(&self, state: &mut PaceState, rate: f64, now: Instant) {
        state.rate = rate;
        state.spacing = Arc::new(Spacing::new(rate, self.clock));
        state.changed_at_ticket = state.next_ticket();
        state.last_change = now;
    }
}

#[cfg(test)]
mod tests;
