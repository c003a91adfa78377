//! Injected failures: picking one per request from the seeded draw, capping a user's streak,
//! and turning the pick into an answer (or an extra delay).

use super::answer::Answer;
use super::command::Command;
use super::state::{RequestCtx, Sim};
use rand::Rng;
use std::time::Duration;

/// The injected fault picked for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Busy,
    BadGateway,
    Reset,
    Slow,
}

impl Sim {
    /// Picks this request's fault, honouring the per-user streak cap.
    fn pick_fault(&self, streak_key: &str) -> (Fault, Duration) {
        let mut state = self.state();
        let faults = state.faults.clone();
        let draw: f64 = state.fault_rng.random();
        let mut fault = Fault::None;
        let mut edge = 0.0;
        for (p, candidate) in [
            (faults.p_40006, Fault::Busy),
            (faults.p_502, Fault::BadGateway),
            (faults.p_reset, Fault::Reset),
            (faults.p_slow, Fault::Slow),
        ] {
            edge += p.clamp(0.0, 1.0);
            if draw < edge {
                fault = candidate;
                break;
            }
        }
        let streak = state.streaks.get(streak_key).copied().unwrap_or(0);
        if fault != Fault::None
            && faults.max_streak_per_user > 0
            && streak >= faults.max_streak_per_user
        {
            fault = Fault::None;
        }
        if fault == Fault::None {
            state.streaks.remove(streak_key);
        } else {
            state.streaks.insert(streak_key.to_string(), streak + 1);
        }
        (fault, faults.slow)
    }

    /// Applies this request's injected fault: 40006, 502 and reset come back as the answer (so
    /// the caller writes nothing); slow sets the extra delay and lets the work go on.
    pub(super) fn inject_fault(
        &self,
        streak_key: &str,
        ctx: &mut RequestCtx,
    ) -> Result<(), Answer> {
        match self.pick_fault(streak_key) {
            (Fault::None, _) => Ok(()),
            (Fault::Busy, _) => Err(Answer::fail(
                40006,
                "internal server error, try again later",
            )),
            (Fault::BadGateway, _) => Err(Answer::BadGateway),
            (Fault::Reset, _) => Err(Answer::Reset),
            (Fault::Slow, slow) => {
                ctx.extra_delay = slow;
                Ok(())
            }
        }
    }
}

/// The fault-streak key of a command other than portrait_set: the command and the first UserID.
pub(super) fn batch_streak_key(command: Command, first_user: &str) -> String {
    format!("{}\n{first_user}", command.name())
}
