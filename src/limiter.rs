//! The job-wide pace: one governor limiter that every attempt (retries included) passes, and
//! the job-wide pause that throttle codes trigger.
//!
//! `Quota::per_second(n)` alone would admit 2n-1 requests in the first second (its burst is n).
//! We use a burst of 2, which absorbs timer overshoot so the mean stays near the ceiling, and a
//! period of 1/(n-2) s, so any one-second window admits at most (2-1) + (n-2) = n-1 requests:
//! one request of headroom for network jitter bunching arrivals at the server.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// The shape of the limiter for a given ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceShape {
    /// Cells replenished per second.
    pub per_second: u32,
    pub burst: u32,
}

impl PaceShape {
    /// The limiter for "never more than `ceiling` in any one-second window".
    pub fn for_ceiling(ceiling: u32) -> PaceShape {
        if ceiling >= 4 {
            PaceShape {
                per_second: ceiling - 2,
                burst: 2,
            }
        } else {
            // Too slow for a headroom cell: space requests a full period apart.
            PaceShape {
                per_second: ceiling.max(1),
                burst: 1,
            }
        }
    }

    /// The most requests any half-open one-second window can hold.
    pub fn max_per_window(self) -> u32 {
        self.burst - 1 + self.per_second
    }

    fn quota(self) -> Quota {
        let per_second = NonZeroU32::new(self.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(per_second).allow_burst(burst)
    }
}

/// Paces every request of the job.
pub struct Pacer {
    limiter: DefaultDirectRateLimiter,
    shape: PaceShape,
    /// One waiter at a time on the limiter: governor wakes every waiting task on each cell,
    /// so hundreds of workers waiting directly would burn CPU. The tokio mutex queues them
    /// fairly instead.
    turn: tokio::sync::Mutex<()>,
    /// While set, no request starts: a throttle code slows the whole job, not just one row.
    paused_until: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(ceiling: u32) -> Pacer {
        let shape = PaceShape::for_ceiling(ceiling);
        Pacer {
            limiter: RateLimiter::direct(shape.quota()),
            shape,
            turn: tokio::sync::Mutex::new(()),
            paused_until: Mutex::new(None),
        }
    }

    pub fn shape(&self) -> PaceShape {
        self.shape
    }

    /// Waits for this request's turn under the ceiling (and any throttle pause).
    pub async fn acquire(&self) {
        let _turn = self.turn.lock().await;
        loop {
            let pause = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match pause {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        // Waiting on tokio's own timer rather than governor's `until_ready` (which sleeps on
        // futures-timer's helper thread) keeps the whole send loop on one runtime thread: at
        // 200 requests a second the thread hand-offs cost more CPU than the requests.
        while let Err(not_until) = self.limiter.check() {
            let now = governor::clock::Clock::now(self.limiter.clock());
            tokio::time::sleep(not_until.wait_time_from(now)).await;
        }
    }

    /// Pauses every request for `delay` (extending, never shortening, a pause in force).
    pub fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::{Clock, FakeRelativeClock, Reference};

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
                seen <= ceiling,
                "ceiling {ceiling}: saw {seen} in one window"
            );
            assert_eq!(seen, shape.max_per_window(), "ceiling {ceiling}");
        }
    }

    #[test]
    fn per_second_alone_bursts_past_the_ceiling() {
        // The trap this module avoids: the default burst admits ~2n in the first second.
        let naive = PaceShape {
            per_second: 200,
            burst: 200,
        };
        assert!(max_in_any_window(naive, 3) > 390);
    }
}
