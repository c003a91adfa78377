//! The run history (`state runs`) and the users whose last send failed (`state failed`): what a
//! state remembers of the runs that used it.
//!
//! Each command run with `--state` (an import, a dry run, the plan, verify) adds its row when it
//! starts and completes it when it ends, however it ends: the exit code, its summary (the JSON of
//! `--summary-json`) or the error that stopped it. Both are short writes on a connection of
//! their own that do not take the run lock, so a dry run records itself beside a running import:
//! WAL lets them take turns, and a write waits for the other's (`db::open`'s busy timeout).
//! Only the last `keep_runs` runs are kept (1,000 unless `--keep-runs` said otherwise).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::db;
use crate::store::journal::Identity;

/// Runs kept when no `--keep-runs` was ever given.
pub const DEFAULT_KEEP_RUNS: u64 = 1_000;

/// What a run is, as recorded when it starts.
#[derive(Debug, Clone, Default)]
pub struct RunStart {
    /// `import` or `verify`.
    pub command: String,
    /// The options that change what is sent or checked, as given (`--full`, `--empty clear`).
    pub flags: Vec<String>,
    /// The input as named on the command line (`-` for standard input).
    pub input: String,
    /// Its size and content hash, when known at the start (an import notes them once its plan
    /// has hashed the input: `note_input`).
    pub identity: Option<Identity>,
    /// The app the run talks to: a state of another app is refused. None for a dry run.
    pub sdkappid: Option<u64>,
    /// `--keep-runs`: how many runs the history keeps from now on.
    pub keep_runs: Option<u64>,
}

/// The counts of a finished run, for `state runs`' table (the whole summary is kept too).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunCounts {
    pub rows: u64,
    /// Rows Chat accepted and rows that failed when sent (None for runs that send nothing).
    pub sent: Option<(u64, u64)>,
    /// Rows not sent because the state or Chat already held them (None where that is not
    /// counted).
    pub unchanged: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub exit_code: u8,
    pub counts: Option<RunCounts>,
    /// The summary's JSON, when the run got as far as one.
    pub summary: Option<serde_json::Value>,
    /// Why it ended without one (the error), or why it stopped early.
    pub note: Option<String>,
}

/// A run recorded as started, to be completed by [`RunRecord::finish`].
#[derive(Debug)]
pub struct RunRecord {
    path: PathBuf,
    id: i64,
}

/// Records that a run starts, and drops the runs beyond the ones kept.
pub fn begin(path: &Path, start: &RunStart) -> anyhow::Result<RunRecord> {
    let mut conn = db::open(path, start.sdkappid, true)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(keep) = start.keep_runs {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('keep_runs', ?1)
             ON CONFLICT(key) DO UPDATE SET value = ?1",
            [keep.to_string()],
        )?;
    }
    let keep = db::meta(&tx, "keep_runs")?
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(DEFAULT_KEEP_RUNS)
        .max(1);
    tx.execute(
        "INSERT INTO runs (started_at, input, command, flags, input_size, input_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            db::unix_now(),
            start.input,
            start.command,
            serde_json::to_string(&start.flags)?,
            start.identity.as_ref().map(|i| i.size as i64),
            start.identity.as_ref().map(|i| i.hash.clone()),
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?1)",
        [keep as i64],
    )?;
    tx.commit()
        .with_context(|| format!("cannot write the state database {}", path.display()))?;
    Ok(RunRecord {
        path: path.to_path_buf(),
        id,
    })
}

/// Notes the input's size and hash on a run that started without them (an import, whose plan
/// hashes the input after the run began).
pub(super) fn note_input(conn: &Connection, run: i64, identity: &Identity) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE runs SET input_size = ?1, input_hash = ?2 WHERE id = ?3",
        params![identity.size as i64, identity.hash, run],
    )?;
    Ok(())
}

impl RunRecord {
    /// The run's id in the history (what `state failed` and `state runs --id` name).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Records how the run ended.
    pub fn finish(&self, end: &RunEnd) -> anyhow::Result<()> {
        let conn = db::open(&self.path, None, false)?;
        let counts = end.counts.unwrap_or_default();
        let has_counts = end.counts.is_some();
        let (ok, failed) = match counts.sent {
            Some((ok, failed)) => (Some(ok as i64), Some(failed as i64)),
            None => (None, None),
        };
        conn.execute(
            "UPDATE runs SET finished_at = ?1, exit_code = ?2, summary = ?3, note = ?4,
             rows = ?5, sent = ?6, ok = ?7, failed = ?8, unchanged = ?9 WHERE id = ?10",
            params![
                db::unix_now(),
                end.exit_code,
                end.summary.as_ref().map(|s| s.to_string()),
                end.note,
                has_counts.then_some(counts.rows as i64),
                ok.zip(failed).map(|(ok, failed)| ok + failed),
                ok,
                failed,
                counts.unchanged.map(|n| n as i64),
                self.id
            ],
        )
        .with_context(|| format!("cannot write the state database {}", self.path.display()))?;
        Ok(())
    }
}

/// One run of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: i64,
    pub started_at: i64,
    /// None while it runs, or if it was killed before it could record its end.
    pub finished_at: Option<i64>,
    pub command: String,
    pub flags: Vec<String>,
    pub input: String,
    pub input_size: Option<i64>,
    pub input_hash: Option<String>,
    pub exit_code: Option<i64>,
    pub rows: Option<i64>,
    pub sent: Option<i64>,
    pub ok: Option<i64>,
    pub failed: Option<i64>,
    pub unchanged: Option<i64>,
    pub summary: Option<serde_json::Value>,
    pub note: Option<String>,
}

const RUN_COLUMNS: &str = "id, started_at, finished_at, command, flags, input, input_size,
    input_hash, exit_code, rows, sent, ok, failed, unchanged, summary, note";

impl Run {
    fn from_row(row: &rusqlite::Row) -> rusqlite::Result<Run> {
        let flags: Option<String> = row.get(4)?;
        let summary: Option<String> = row.get(14)?;
        Ok(Run {
            id: row.get(0)?,
            started_at: row.get(1)?,
            finished_at: row.get(2)?,
            command: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
            flags: flags
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
            input: row.get(5)?,
            input_size: row.get(6)?,
            input_hash: row.get(7)?,
            exit_code: row.get(8)?,
            rows: row.get(9)?,
            sent: row.get(10)?,
            ok: row.get(11)?,
            failed: row.get(12)?,
            unchanged: row.get(13)?,
            summary: summary.and_then(|text| serde_json::from_str(&text).ok()),
            note: row.get(15)?,
        })
    }

    /// When it started, in UTC.
    pub fn started(&self) -> String {
        db::format_time(self.started_at)
    }

    /// When it ended, in UTC.
    pub fn finished(&self) -> Option<String> {
        self.finished_at.map(db::format_time)
    }

    /// Seconds from start to end.
    pub fn seconds(&self) -> Option<i64> {
        self.finished_at.map(|end| end - self.started_at)
    }

    /// The run as JSON; `whole` adds its summary.
    pub fn to_json(&self, whole: bool) -> serde_json::Value {
        let mut json = serde_json::json!({
            "id": self.id,
            "started_at": self.started(),
            "finished_at": self.finished(),
            "seconds": self.seconds(),
            "command": self.command,
            "flags": self.flags,
            "input": {
                "path": self.input,
                "size": self.input_size,
                "xxh3": self.input_hash,
            },
            "exit_code": self.exit_code,
            "rows": self.rows,
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "unchanged": self.unchanged,
            "note": self.note,
        });
        if whole {
            json["summary"] = self.summary.clone().unwrap_or_default();
        }
        json
    }
}

/// The last `limit` runs, newest first.
pub fn runs(path: &Path, limit: u64) -> anyhow::Result<Vec<Run>> {
    let conn = db::open(path, None, false)?;
    let mut statement = conn.prepare(&format!(
        "SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = statement.query_map([limit.min(i64::MAX as u64) as i64], Run::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Run `id`, if the history still has it.
pub fn run(path: &Path, id: i64) -> anyhow::Result<Option<Run>> {
    let conn = db::open(path, None, false)?;
    Ok(conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
            [id],
            Run::from_row,
        )
        .optional()?)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn start(input: &str) -> RunStart {
        RunStart {
            command: "import".into(),
            flags: vec!["--dry-run".into()],
            input: input.into(),
            ..RunStart::default()
        }
    }

    #[test]
    fn a_run_is_recorded_when_it_starts_and_completed_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let record = begin(&path, &start("a.csv")).unwrap();
        let running = &runs(&path, 20).unwrap()[0];
        assert_eq!((running.id, running.finished_at), (record.id(), None));
        assert_eq!(running.flags, ["--dry-run"]);
        let end = RunEnd {
            exit_code: 3,
            counts: Some(RunCounts {
                rows: 10,
                sent: Some((7, 2)),
                unchanged: Some(1),
            }),
            summary: Some(serde_json::json!({"rows": 10})),
            note: None,
        };
        record.finish(&end).unwrap();
        let done = run(&path, record.id()).unwrap().unwrap();
        assert_eq!(done.exit_code, Some(3));
        assert_eq!(
            (done.rows, done.sent, done.ok, done.failed, done.unchanged),
            (Some(10), Some(9), Some(7), Some(2), Some(1))
        );
        assert_eq!(done.to_json(true)["summary"]["rows"], 10);
        assert!(run(&path, record.id() + 1).unwrap().is_none());
    }

    #[test]
    fn only_the_last_runs_are_kept_and_the_setting_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        for i in 0..5 {
            begin(&path, &start(&format!("{i}.csv"))).unwrap();
        }
        assert_eq!(runs(&path, 20).unwrap().len(), 5);
        let keep_two = RunStart {
            keep_runs: Some(2),
            ..start("5.csv")
        };
        begin(&path, &keep_two).unwrap();
        begin(&path, &start("6.csv")).unwrap();
        let inputs: Vec<String> = runs(&path, 20)
            .unwrap()
            .into_iter()
            .map(|r| r.input)
            .collect();
        assert_eq!(inputs, ["6.csv", "5.csv"], "newest first");
        assert_eq!(runs(&path, 1).unwrap()[0].input, "6.csv");
    }
}
