//! The sync rule of `--state`: whether Chat already holds a user's body, as the state says. The
//! dry run predicts the sync with it and the send applies it (`run::decide`), so the two cannot
//! drift apart.

use crate::store::state::{user_key, StateIndex};

/// The rule, with what it needs to know.
#[derive(Debug, Clone, Copy)]
pub struct SyncRule {
    /// `--full`: send every row anyway (and refresh the state).
    pub full: bool,
}

impl SyncRule {
    /// True if Chat already holds the body that hashes to `hash` for the user with key `key`
    /// (see `state::user_key`), as the last accepted run left it, and `--full` is off.
    pub fn unchanged(&self, index: &StateIndex, key: u64, hash: u64) -> bool {
        !self.full && index.is_unchanged_key(key, hash)
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
        self.rule.unchanged(&self.index, user_key(user_id), hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state::{body_hash, load_index, StateDb};

    /// A user's body is unchanged only when the state holds exactly its hash for that user,
    /// and `--full` sends it anyway.
    #[test]
    fn a_body_is_unchanged_only_when_the_state_holds_its_hash_and_full_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let held = body_hash(br#"{"From_Account":"ann","ProfileItem":[]}"#);
        let (mut db, _) = StateDb::open(&path, 1).unwrap();
        db.accepted("ann", held);
        db.finish_run().unwrap();
        let filter = |full| SyncFilter {
            rule: SyncRule { full },
            index: load_index(&path).unwrap(),
        };
        let sync = filter(false);
        assert!(sync.unchanged("ann", held));
        assert!(!sync.unchanged("ann", held ^ 1), "another body");
        assert!(!sync.unchanged("bob", held), "another user");
        assert!(!filter(true).unchanged("ann", held), "--full");
    }
}
