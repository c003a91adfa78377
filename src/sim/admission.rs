//! Everything a request passes before its command runs: the route, the method, the query
//! (`sdkappid`, `identifier`, `usersig` (checked in `auth`), `random`, `contenttype`), the admin check and the
//! command's sliding one-second rate limit.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::Method;

use super::answer::Answer;
use super::auth::check_usersig;
use super::command::Command;
use super::fields::clip;
use super::state::Sim;

impl Sim {
    /// Everything before the command itself: route, auth, admin and the rate limit.
    pub(super) fn admit(
        &self,
        command: Option<Command>,
        method: &Method,
        path: &str,
        query: &str,
    ) -> Result<Command, Answer> {
        let command = command
            .ok_or_else(|| Answer::fail(60009, format!("unknown REST command {}", clip(path))))?;
        if method != Method::POST {
            return Err(Answer::fail(
                60002,
                format!("{method} is not supported; REST calls are POST"),
            ));
        }
        let identifier = self.check_query(query)?;
        if identifier != self.admin {
            return Err(Answer::fail(
                command.not_admin_code(),
                format!("{} is not an app admin", clip(&identifier)),
            ));
        }
        let admitted = {
            let mut state = self.state();
            if state.forced_throttles > 0 {
                state.forced_throttles -= 1;
                false
            } else {
                state
                    .limiters
                    .get_mut(&command)
                    .is_none_or(|limiter| limiter.admit(Instant::now()))
            }
        };
        if !admitted {
            return Err(Answer::fail(
                60007,
                "REST API call frequency limit exceeded",
            ));
        }
        Ok(command)
    }

    /// The query parameters of spec §1.1, in order; returns the identifier.
    fn check_query(&self, query: &str) -> Result<String, Answer> {
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
                format!("invalid SDKAppID {}", clip(&sdkappid)),
            ));
        }
        let identifier = param("identifier")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Answer::fail(60010, "identifier is missing; it must be an app admin"))?;
        let usersig = param("usersig").unwrap_or_default();
        let now = unix_now().saturating_add(self.clock_ahead.as_secs());
        let lifetime = check_usersig(&usersig, &self.key, self.sdkappid, &identifier, now)
            .map_err(|(code, why)| Answer::fail(code, why))?;
        self.state().usersig_passed(lifetime, now);
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
        Ok(identifier)
    }
}

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
