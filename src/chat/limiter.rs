//! The job-wide pace: one governor limiter that every attempt (retries included) passes, the
//! job-wide pause that throttle codes trigger, and the adaptive rate (AIMD) that lives with a
//! server throttling below `--rate`.
//!
//! `Quota::per_second(n)` alone would admit 2n-1 requests in the first second (its burst is n).
//! We use a burst of 2, which absorbs timer overshoot so the mean stays near the target, and
//! n-2 cells per second, so any one-second window admits at most (2-1) + (n-2) = n-1 requests:
//! one request of headroom for network jitter bunching arrivals at the server.
//!
//! When Chat answers with a throttle code, the rate drops to 85 % (at most once a second) and
//! all requests pause for half a second; after two quiet seconds it climbs back by 2 % of the
//! ceiling per second, slowing to 0.5 % once it is within 10 % of the rate that was last
//! throttled, and never above the ceiling. Against a server limit L it settles between about
//! 0.85·L and L.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

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

/// The shape of the limiter for a given target rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceShape {
    /// Cells replenished per second.
    pub per_second: f64,
    pub burst: u32,
}

impl PaceShape {
    /// The limiter for "never more than `ceiling` in any one-second window".
    pub fn for_ceiling(ceiling: u32) -> PaceShape {
        Self::for_rate(f64::from(ceiling))
    }

    /// The limiter for a target of `rate` requests in any one-second window.
    ///
    /// The burst grows with the rate (one cell per 200/s, at least 2) because waits are timed
    /// on tokio's millisecond timer: above a few hundred requests a second, a burst of 2 could
    /// not keep up. Cells per second shrink by the same amount, so a window still holds at
    /// most `rate - 1`.
    pub fn for_rate(rate: f64) -> PaceShape {
        if rate >= 4.0 {
            let burst = (rate / 200.0).ceil().max(2.0);
            PaceShape {
                per_second: rate - burst,
                burst: burst as u32,
            }
        } else {
            // Too slow for a headroom cell: space requests a full period apart.
            PaceShape {
                per_second: rate.max(0.1),
                burst: 1,
            }
        }
    }

    /// The most requests any half-open one-second window can hold.
    pub fn max_per_window(self) -> u32 {
        self.burst - 1 + self.per_second.ceil() as u32
    }

    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs_f64(1.0 / self.per_second);
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// Spends a new limiter's initial burst. It replaces one that may already have spent its
/// burst in the last second; starting drained keeps a window that spans the swap within rate.
fn drain<C: Clock>(
    limiter: &RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    burst: u32,
) {
    for _ in 0..burst {
        let _ = limiter.check();
    }
}

/// Lowest rate the adaptive pace goes down to.
const MIN_RATE: f64 = 1.0;

struct PaceState {
    limiter: Arc<PaceLimiter>,
    rate: f64,
    lowest: f64,
    paused_until: Option<Instant>,
    last_decrease: Option<Instant>,
    last_increase: Instant,
    /// The rate at which Chat last throttled us: the climb slows as it nears it.
    throttled_at: Option<f64>,
}

/// Paces every request of the job.
pub struct Pacer {
    ceiling: f64,
    clock: TokioClock,
    state: Mutex<PaceState>,
    /// One waiter at a time on the limiter: governor would wake every waiting task on each
    /// cell, so hundreds of workers waiting directly would burn CPU. The tokio mutex queues
    /// them fairly instead.
    turn: tokio::sync::Mutex<()>,
}

impl Pacer {
    pub fn new(ceiling: u32) -> Pacer {
        let ceiling = f64::from(ceiling.max(1));
        let clock = TokioClock::new();
        let quota = PaceShape::for_rate(ceiling).quota();
        Pacer {
            ceiling,
            clock,
            state: Mutex::new(PaceState {
                limiter: Arc::new(RateLimiter::direct_with_clock(quota, clock)),
                rate: ceiling,
                lowest: ceiling,
                paused_until: None,
                last_decrease: None,
                last_increase: Instant::now(),
                throttled_at: None,
            }),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate the job is currently paced at (requests per second).
    pub fn current_rate(&self) -> f64 {
        self.state().rate
    }

    /// The lowest rate the job was paced at.
    pub fn lowest_rate(&self) -> f64 {
        self.state().lowest
    }

    /// Waits for this request's turn under the pace (and any throttle pause).
    pub async fn acquire(&self) {
        let _turn = self.turn.lock().await;
        loop {
            let (pause, limiter) = {
                let state = self.state();
                (state.paused_until, state.limiter.clone())
            };
            if let Some(until) = pause.filter(|until| *until > Instant::now()) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            // Waiting on tokio's own timer rather than governor's `until_ready` (which sleeps
            // on futures-timer's helper thread) keeps the whole send loop on one runtime
            // thread: at 200 requests a second the thread hand-offs cost more CPU than the
            // requests.
            match limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let now = limiter.clock().now();
                    tokio::time::sleep(not_until.wait_time_from(now)).await;
                }
            }
        }
    }

    /// Pauses every request for `delay` (extending, never shortening, a pause in force).
    pub fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut state = self.state();
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
    }

    /// Chat said "too many requests": slow the whole job down (multiplicative decrease, at
    /// most once a second so one burst of throttled answers counts once) and pause.
    pub fn on_throttled(&self) {
        let now = Instant::now();
        {
            let mut state = self.state();
            if state
                .last_decrease
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
            {
                let rate = (state.rate * 0.85).max(MIN_RATE);
                tracing::info!("Chat is throttling: pace {:.0}/s → {rate:.0}/s", state.rate);
                state.throttled_at = Some(state.rate);
                self.set_rate(&mut state, rate);
                state.lowest = state.lowest.min(rate);
                state.last_decrease = Some(now);
            }
        }
        self.pause_for(Duration::from_millis(500));
    }

    /// A request was accepted: after two quiet seconds, climb back towards the ceiling
    /// (additive increase, once a second).
    pub fn on_accepted(&self) {
        let now = Instant::now();
        let mut state = self.state();
        if state.rate >= self.ceiling
            || now.duration_since(state.last_increase) < Duration::from_secs(1)
            || state
                .last_decrease
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(2))
        {
            return;
        }
        let near_limit = state
            .throttled_at
            .is_some_and(|limit| state.rate >= limit * 0.9);
        let step = if near_limit { 0.005 } else { 0.02 } * self.ceiling;
        let rate = (state.rate + step.max(0.5)).min(self.ceiling);
        self.set_rate(&mut state, rate);
        state.last_increase = now;
    }

    fn set_rate(&self, state: &mut PaceState, rate: f64) {
        state.rate = rate;
        let shape = PaceShape::for_rate(rate);
        let limiter = RateLimiter::direct_with_clock(shape.quota(), self.clock);
        drain(&limiter, shape.burst);
        state.limiter = Arc::new(limiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::{FakeRelativeClock, Reference};

    /// Counts admissions in every one-second window on a fake clock with a saturated sender.
    fn max_in_any_window(shape: PaceShape, seconds: u64) -> u32 {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(shape.quota(), clock.clone());
        let step = Duration::from_micros(100);
        let mut admitted: Vec<Duration> = Vec::new();
        let start = clock.now();
        while Duration::from(clock.now().duration_since(start)) < Duration::from_secs(seconds) {
            if limiter.check().is_ok() {
                admitted.push(Duration::from(clock.now().duration_since(start)));
            } else {
                clock.advance(step);
            }
        }
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..admitted.len() {
            while admitted[hi] - admitted[lo] >= Duration::from_secs(1) {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best as u32
    }

    #[test]
    fn no_window_exceeds_the_ceiling() {
        for ceiling in [1, 2, 3, 4, 10, 50, 200, 500] {
            let shape = PaceShape::for_ceiling(ceiling);
            let seen = max_in_any_window(shape, 5);
            assert!(
                shape.per_second >= f64::from(ceiling) * 0.49,
                "ceiling {ceiling}: too slow"
            );
            assert!(
                seen <= ceiling,
                "ceiling {ceiling}: saw {seen} in one window"
            );
            assert_eq!(seen, shape.max_per_window(), "ceiling {ceiling}");
        }
    }

    #[tokio::test]
    async fn throttling_decreases_the_rate_and_quiet_time_restores_it() {
        let pacer = Pacer::new(200);
        pacer.on_throttled();
        assert!((pacer.current_rate() - 170.0).abs() < 1e-9);
        // A burst of throttled answers in the same second counts once.
        pacer.on_throttled();
        assert!((pacer.current_rate() - 170.0).abs() < 1e-9);
        pacer.on_accepted();
        assert!(
            (pacer.current_rate() - 170.0).abs() < 1e-9,
            "no increase right after a decrease"
        );
        let quiet = |pacer: &Pacer| {
            let mut state = pacer.state();
            state.last_decrease = Some(Instant::now() - Duration::from_secs(3));
            state.last_increase = Instant::now() - Duration::from_secs(2);
        };
        quiet(&pacer);
        pacer.on_accepted();
        // Far below where Chat throttled (200): climbs 2 % of the ceiling a second.
        assert!((pacer.current_rate() - 174.0).abs() < 1e-9);
        quiet(&pacer);
        pacer.on_accepted();
        quiet(&pacer);
        pacer.on_accepted();
        // Within 10 % of 200: climbs 0.5 % of the ceiling a second.
        assert!((pacer.current_rate() - 182.0).abs() < 1e-9);
        quiet(&pacer);
        pacer.on_accepted();
        assert!((pacer.current_rate() - 183.0).abs() < 1e-9);
        assert!((pacer.lowest_rate() - 170.0).abs() < 1e-9);
    }

    #[test]
    fn swapping_to_a_higher_rate_keeps_every_window_within_it() {
        // A saturated sender while the pace climbs one step a second, as `on_accepted` does.
        for steps in [
            [1.5, 2.0, 2.5, 3.0],
            [2.55, 3.0, 3.5, 4.0],
            [3.5, 4.0, 4.5, 5.0],
            [50.0, 51.0, 52.0, 53.0],
            [196.0, 198.0, 199.0, 200.0],
        ] {
            let clock = FakeRelativeClock::default();
            let start = clock.now();
            let mut admitted: Vec<Duration> = Vec::new();
            for (i, rate) in steps.iter().enumerate() {
                let shape = PaceShape::for_rate(*rate);
                let limiter = RateLimiter::direct_with_clock(shape.quota(), clock.clone());
                if i > 0 {
                    drain(&limiter, shape.burst);
                }
                let until = Duration::from_secs(i as u64 + 1);
                while Duration::from(clock.now().duration_since(start)) < until {
                    if limiter.check().is_ok() {
                        admitted.push(clock.now().duration_since(start).into());
                    } else {
                        clock.advance(Duration::from_micros(100));
                    }
                }
            }
            // The pace never exceeds --rate, the last step: no window may either.
            let ceiling = steps[steps.len() - 1];
            let mut lo = 0;
            for hi in 0..admitted.len() {
                while admitted[hi] - admitted[lo] >= Duration::from_secs(1) {
                    lo += 1;
                }
                assert!(
                    (hi - lo + 1) as f64 <= ceiling,
                    "{steps:?}: {} requests in the second before {:?}",
                    hi - lo + 1,
                    admitted[hi]
                );
            }
        }
    }

    /// The most of `times` (in order) that fall in any half-open one-second window, and for
    /// each admission the count in the window ending at it.
    fn window_counts(times: &[Duration]) -> Vec<usize> {
        let mut lo = 0;
        (0..times.len())
            .map(|hi| {
                while times[hi] - times[lo] >= Duration::from_secs(1) {
                    lo += 1;
                }
                hi - lo + 1
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_at_200_keeps_every_window_within_200_and_the_mean_near_it() {
        let pacer = Pacer::new(200);
        let start = Instant::now();
        let mut admitted = Vec::new();
        for _ in 0..2_000 {
            pacer.acquire().await;
            admitted.push(start.elapsed());
        }
        let most = window_counts(&admitted).into_iter().max().unwrap_or(0);
        assert!(most <= 200, "{most} in one window");
        let seconds = admitted[admitted.len() - 1].as_secs_f64();
        let mean = admitted.len() as f64 / seconds;
        assert!(mean >= 197.0, "mean {mean:.1}/s over {seconds:.2} s");
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_swaps_pause_then_keep_every_window_within_the_pace_in_force() {
        let pacer = Pacer::new(200);
        let start = Instant::now();
        let mut admitted = Vec::new();
        // The highest pace in force at or after each admission's window start.
        let mut rates = Vec::new();
        let mut throttled_at = None;
        while start.elapsed() < Duration::from_secs(14) {
            pacer.acquire().await;
            let now = start.elapsed();
            admitted.push(now);
            if throttled_at.is_none() && now >= Duration::from_secs(3) {
                pacer.on_throttled();
                throttled_at = Some(now);
            } else {
                pacer.on_accepted();
            }
            rates.push(pacer.current_rate());
        }
        let throttled_at = throttled_at.unwrap_or_default();
        // The throttle pauses every request for half a second.
        assert!(
            !admitted
                .iter()
                .any(|&t| t > throttled_at && t < throttled_at + Duration::from_millis(500)),
            "a request went out during the pause"
        );
        let counts = window_counts(&admitted);
        for (i, (&t, &count)) in admitted.iter().zip(&counts).enumerate() {
            // The pace a window may use: the highest in force during it.
            let first = i + 1 - count;
            let allowed = rates[first.saturating_sub(1)..=i]
                .iter()
                .fold(0.0f64, |a, &b| a.max(b));
            assert!(
                count as f64 <= allowed.ceil(),
                "{count} requests in the second before {t:?}, pace at most {allowed}"
            );
        }
        // Cut to 85 %, then two quiet seconds, then the climb back towards the ceiling.
        let lowest = pacer.lowest_rate();
        assert!((lowest - 170.0).abs() < 1e-9, "lowest {lowest}");
        let last = rates[rates.len() - 1];
        assert!(last > 180.0 && last <= 200.0, "climbed back to {last}");
    }

    /// Why the shape is not `Quota::per_second(n)` alone (a fact about governor, kept as the
    /// reason `PaceShape` exists): its default burst of n admits about 2n in the first second.
    #[test]
    fn governor_per_second_alone_would_burst_past_the_ceiling() {
        // The trap this module avoids: the default burst admits ~2n in the first second.
        let naive = PaceShape {
            per_second: 200.0,
            burst: 200,
        };
        assert!(max_in_any_window(naive, 3) > 390);
    }
}
