//! Everything a request passes before its command runs: the route, the method, the query
//! (`sdkappid`, `identifier`, `usersig` (checked in `auth`), `random`, `contenttype`), the admin
//! check and the command's sliding one-second rate limit (`window`).

use std::time::Instant;

use hyper::Method;

use super::answer::Answer;
use super::auth::check_usersig;
use super::command::Command;
use super::fields::clip;
use super::state::Sim;
use super::window::unix_now;

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
