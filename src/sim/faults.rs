//! Injected failures: picking one per request (by user, or from the seeded draw), capping a
//! user's streak, and turning the pick into an answer (or an extra delay).

use std::time::Duration;

use hyper::StatusCode;
use rand::Rng;

use super::answer::Answer;
use super::command::Command;
use super::config::Injected;
use super::state::{RequestCtx, Sim};

/// Whom a request's fault is for: its command and its user (portrait_set's From_Account, the
/// first UserID of the other commands).
#[derive(Debug, Clone, Copy)]
pub(super) struct FaultTarget<'a> {
    pub(super) command: Command,
    pub(super) user: &'a str,
}

impl FaultTarget<'_> {
    /// The streak key: the user for portrait_set; the command and the first UserID for the
    /// others (a retried batch starts with the same account, and different commands never
    /// share a streak).
    fn streak_key(self) -> String {
        match self.command {
            Command::PortraitSet => self.user.to_string(),
            command => format!("{}\n{}", command.name(), self.user),
        }
    }
}

/// The injected fault picked for one request.
#[derive(Debug, Clone, PartialEq)]
enum Fault {
    /// Answer this instead of doing the work.
    Answer(Answer),
    /// Do the work, then answer this much later.
    Slow(Duration),
}

impl Sim {
    /// Picks this request's fault (None: no fault), honouring the per-user streak cap.
    fn pick_fault(&self, target: FaultTarget<'_>) -> Option<Fault> {
        let mut state = self.state();
        // Drawn for every request, so a user-targeted answer does not shift the others' draws.
        let draw: f64 = state.fault_rng.random();
        let faults = &state.faults;
        let picked = match faults.inject_for.get(target.user) {
            Some(injected) => Some(Fault::Answer(answer_for(injected))),
            None => {
                let mut edge = 0.0;
                let mut hit = |p: f64| {
                    edge += p.clamp(0.0, 1.0);
                    draw < edge
                };
                if hit(faults.p_40006) {
                    Some(Fault::Answer(answer_for(&Injected::Code(40006))))
                } else if hit(faults.p_502) {
                    Some(Fault::Answer(Answer::Http(502)))
                } else if hit(faults.p_reset) {
                    Some(Fault::Answer(Answer::Reset))
                } else if hit(faults.p_slow) {
                    Some(Fault::Slow(faults.slow))
                } else if hit(faults.p_inject) {
                    faults.inject.as_ref().map(|i| Fault::Answer(answer_for(i)))
                } else {
                    None
                }
            }
        };
        let cap = faults.max_streak_per_user;
        let key = target.streak_key();
        let streak = state.streaks.get(&key).copied().unwrap_or(0);
        let picked = picked.filter(|_| cap == 0 || streak < cap);
        if picked.is_some() {
            state.streaks.insert(key, streak + 1);
        } else {
            state.streaks.remove(&key);
        }
        picked
    }

    /// Applies this request's injected fault: an injected answer comes back as the answer (so
    /// the caller writes nothing); slow sets the extra delay and lets the work go on.
    pub(super) fn inject_fault(
        &self,
        target: FaultTarget<'_>,
        ctx: &mut RequestCtx,
    ) -> Result<(), Answer> {
        match self.pick_fault(target) {
            None => Ok(()),
            Some(Fault::Answer(answer)) => Err(answer),
            Some(Fault::Slow(slow)) => {
                ctx.extra_delay = slow;
                Ok(())
            }
        }
    }
}

/// The answer an injected fault gives.
fn answer_for(injected: &Injected) -> Answer {
    match injected {
        Injected::Code(40006) => Answer::fail(40006, "internal server error, try again later"),
        Injected::Code(code) => Answer::fail(*code, format!("injected error {code}")),
        Injected::Http(status) => {
            let known = StatusCode::from_u16(*status).is_ok_and(|s| s != StatusCode::OK);
            Answer::Http(if known { *status } else { 502 })
        }
        Injected::ProxyPage => Answer::ProxyPage,
        Injected::Reset => Answer::Reset,
        Injected::OkWith(field, value) => Answer::ok_with(field, value.clone()),
    }
}
