//! Time as the simulator keeps it: the sliding one-second limit it applies to each command,
//! as Chat's limiter is modelled, and the wall clock UserSigs are checked against.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Chat's limiter as we model it: a request is admitted if fewer than `limit` were admitted in
/// the second before it. Refused requests do not count against later ones.
#[derive(Debug)]
pub(super) struct SlidingLimiter {
    limit: u32,
    admitted: VecDeque<Instant>,
}

impl SlidingLimiter {
    pub(super) fn new(limit: u32) -> Self {
        SlidingLimiter {
            limit,
            admitted: VecDeque::new(),
        }
    }

    pub(super) fn set_limit(&mut self, limit: u32) {
        if limit == 0 {
            self.admitted.clear();
        }
        self.limit = limit;
    }

    pub(super) fn admit(&mut self, now: Instant) -> bool {
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

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A lower limit set mid-window counts the admissions already in it.
        let mut changed = SlidingLimiter::new(3);
        assert!(changed.admit(at(0)) && changed.admit(at(10)));
        changed.set_limit(2);
        assert!(!changed.admit(at(20)));
        assert!(changed.admit(at(1000)));
    }
}
