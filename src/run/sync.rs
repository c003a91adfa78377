//! The sync rule of `--state`: whether Chat already holds a user's body, as the state says. The
//! dry run predicts the sync with it and the send applies it (`run::decide`), so the two cannot
//! drift apart.

use crate::store::state::{user_key, StateIndex};

/// What a sync does with a valid row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncVerdict {
    Send,
    /// Chat already holds exactly this body for the user.
    Unchanged,
    /// A later valid row of the same user counts instead.
    Superseded,
}

/// The rule, with what it needs to know.
#[derive(Debug, Clone, Copy)]
pub struct SyncRule {
    /// `--full`: send every row anyway (and refresh the state).
    pub full: bool,
}

impl SyncRule {
    /// Judges a valid row of the user with key `key` (see `state::user_key`) whose body hashes
    /// to `hash`. `later_valid_row`: the file holds a later valid row for the same user.
    pub fn judge(
        &self,
        index: &StateIndex,
        key: u64,
        hash: u64,
        later_valid_row: bool,
    ) -> SyncVerdict {
        if later_valid_row {
            SyncVerdict::Superseded
        } else if !self.full && index.is_unchanged_key(key, hash) {
            SyncVerdict::Unchanged
        } else {
            SyncVerdict::Send
        }
    }
}

/// The send's side of `--state`: the rule and the state as the run began.
pub struct SyncFilter {
    pub rule: SyncRule,
    pub index: StateIndex,
}

impl SyncFilter {
    /// True if Chat already holds `hash` for `user_id` (and `--full` is off). The row judged is
    /// the user's last valid one, merged with the user's earlier rows.
    pub fn unchanged(&self, user_id: &str, hash: u64) -> bool {
        self.rule.judge(&self.index, user_key(user_id), hash, false) == SyncVerdict::Unchanged
    }
}
