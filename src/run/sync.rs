//! The sync rule of `--state`, the one place that decides what a change-only sync does with a
//! valid row. The dry run predicts the sync with it and the send applies it, so the two cannot
//! drift apart.

use std::collections::HashMap;

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

/// The send's side of `--state`: the rule, the state as the run began, and the last valid row
/// of every user that may repeat (from the survey).
pub struct SyncFilter {
    pub rule: SyncRule,
    pub index: StateIndex,
    /// Users with several valid rows → the record index of the last one.
    pub last_valid_rows: HashMap<String, u64>,
}

impl SyncFilter {
    /// The verdict for the valid row at record `row` of `user_id`.
    pub fn judge(&self, user_id: &str, row: u64, hash: u64) -> SyncVerdict {
        let later = self
            .last_valid_rows
            .get(user_id)
            .is_some_and(|&last| last != row);
        self.rule.judge(&self.index, user_key(user_id), hash, later)
    }
}
