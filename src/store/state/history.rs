//! What a state remembers of the runs that used it: the users whose last send failed (`state
//! failed`), with the code and the run, until a later send of the user is accepted.

use std::path::Path;

use super::db;

/// A user whose last send failed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedUser {
    pub user_id: String,
    /// The failure CSV's `_error_code` (`40009`, `outcome_unknown` …).
    pub code: String,
    pub message: String,
    /// The run it failed in (None when the state was written outside a recorded run).
    pub run_id: Option<i64>,
    pub failed_at: i64,
}

impl FailedUser {
    /// When it failed, in UTC.
    pub fn failed(&self) -> String {
        db::format_time(self.failed_at)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "user_id": self.user_id,
            "code": self.code,
            "message": self.message,
            "run": self.run_id,
            "failed_at": self.failed(),
        })
    }
}

/// Hands every user whose last send failed to `each`, by UserID, without holding them all;
/// returns how many there were.
pub fn failed_users(
    path: &Path,
    each: &mut dyn FnMut(&FailedUser) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let conn = db::open(path, None, false)?;
    let mut statement = conn
        .prepare("SELECT user_id, code, message, run_id, failed_at FROM failed ORDER BY user_id")?;
    let mut rows = statement.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        each(&FailedUser {
            user_id: row.get(0)?,
            code: row.get(1)?,
            message: row.get(2)?,
            run_id: row.get(3)?,
            failed_at: row.get(4)?,
        })?;
        count += 1;
    }
    Ok(count)
}

/// The longest UserID and code among the failed users, in characters (for a text table's
/// columns).
pub fn failed_widths(path: &Path) -> anyhow::Result<(usize, usize)> {
    let conn = db::open(path, None, false)?;
    let (user, code): (i64, i64) = conn.query_row(
        "SELECT COALESCE(MAX(LENGTH(user_id)), 0), COALESCE(MAX(LENGTH(code)), 0) FROM failed",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((user.max(0) as usize, code.max(0) as usize))
}
