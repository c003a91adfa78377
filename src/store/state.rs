//! The sync state (`--state PATH`): an embedded SQLite database (WAL) that holds, for each
//! UserID, a hash of the last profile body Chat accepted and when, so a scheduled sync sends
//! only the rows that changed since.
//!
//! A user's entry is written only after Chat answered OK, in transactions committed about once
//! a second, so a crash can only make the next run send a row again, never skip a change.
//! At start the hashes are loaded into a compact in-memory index (about 24 bytes per user), so
//! deciding "unchanged" costs a hash lookup per row, not a query.
//!
//! A row that fails removes its user's entry the same way, so the next run sends it again
//! whether or not its line changed, and records the failure (`state failed`) until a later
//! send of the user succeeds. The file, its schema and migrations are in `db`; the run history
//! and the failed users' listing in `history`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::store::journal::Identity;

mod db;
pub mod history;

use db::unix_now;

/// The key a user is indexed by: a 64-bit hash of the UserID. Two users sharing a key can
/// never look "unchanged" by mistake, because the body hash covers the UserID too.
pub fn user_key(user_id: &str) -> u64 {
    xxh3_64(user_id.as_bytes())
}

/// The hash of a normalised request body (the exact JSON the import sends).
pub fn body_hash(body: &[u8]) -> u64 {
    xxh3_64_with_seed(body, 0x5eed)
}

/// The keys are already hashes: hashing them again would only cost time.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyIsHash(u64);

impl std::hash::Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap = HashMap<u64, u64, std::hash::BuildHasherDefault<KeyIsHash>>;

/// Hashes of what Chat last accepted, for lookups on the reader thread.
#[derive(Debug, Default)]
pub struct StateIndex {
    accepted: KeyMap,
}

impl StateIndex {
    /// True if Chat already holds exactly this body for this user.
    pub fn is_unchanged(&self, user_id: &str, hash: u64) -> bool {
        self.is_unchanged_key(user_key(user_id), hash)
    }

    /// `is_unchanged` with the user's key already computed.
    pub fn is_unchanged_key(&self, key: u64, hash: u64) -> bool {
        self.accepted.get(&key) == Some(&hash)
    }

    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }
}

/// The recorded run a state is opened for (`history::begin`), and its input.
#[derive(Debug, Clone, Copy)]
pub struct ForRun<'a> {
    pub id: i64,
    pub input: &'a Identity,
}

/// The open state database, locked against a second run until dropped.
pub struct StateDb {
    path: PathBuf,
    _lock: crate::store::lock::RunLock,
    conn: Connection,
    /// Changes since the last commit, in the order they happened.
    pending: Vec<Change>,
    /// The run the failures it records are charged to.
    run_id: Option<i64>,
    /// Users with a failure on record: an accepted send of one of these clears it.
    failing: HashSet<String>,
}

enum Change {
    /// Chat accepted this body hash for this user.
    Accepted {
        user_id: String,
        key: u64,
        hash: u64,
        at: i64,
    },
    /// A send may have reached Chat without an answer: what Chat holds is unknown.
    Forget(String),
    /// The user's row failed for good: forgotten, and the failure on record.
    Failed {
        user_id: String,
        code: String,
        message: String,
        at: i64,
    },
}

impl StateDb {
    /// Opens the state against `sdkappid` outside a recorded run, and loads the index.
    pub fn open(path: &Path, sdkappid: u64) -> anyhow::Result<(StateDb, StateIndex)> {
        StateDb::open_locked(None, path, sdkappid, None)
    }

    /// Opens the state for `run` (noting its input's size and hash in the history) with its
    /// lock already taken (with the run's other outputs), or `None` to take it here, and loads
    /// the index.
    pub fn open_locked(
        lock: Option<crate::store::lock::RunLock>,
        path: &Path,
        sdkappid: u64,
        run: Option<ForRun>,
    ) -> anyhow::Result<(StateDb, StateIndex)> {
        let lock = match lock {
            Some(lock) => lock,
            None => crate::store::lock::RunLock::acquire(path)?,
        };
        let conn = db::open(path, Some(sdkappid), true)?;
        let accepted = read_index(&conn)?;
        let failing = conn
            .prepare("SELECT user_id FROM failed")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if let Some(run) = run {
            history::note_input(&conn, run.id, run.input)?;
        }
        Ok((
            StateDb {
                path: path.to_path_buf(),
                _lock: lock,
                conn,
                pending: Vec::new(),
                run_id: run.map(|run| run.id),
                failing,
            },
            StateIndex { accepted },
        ))
    }

    /// Notes that Chat accepted `hash` for `user_id` (committed at the next `commit`).
    pub fn accepted(&mut self, user_id: &str, hash: u64) {
        self.pending.push(Change::Accepted {
            user_id: user_id.to_string(),
            key: user_key(user_id),
            hash,
            at: unix_now(),
        });
    }

    /// Drops a user's entry after a send that may have reached Chat but was not confirmed
    /// (a timeout, a dropped connection, a stop mid-retry): the next sync sends the row again.
    pub fn forget(&mut self, user_id: &str) {
        self.pending.push(Change::Forget(user_id.to_string()));
    }

    /// Notes that a user's row failed for good with `code` (the failure CSV's `_error_code`):
    /// its entry is dropped, so the next run sends the row again even if it did not change,
    /// and the failure is on record (`state failed`) until a send of the user is accepted.
    pub fn failed(&mut self, user_id: &str, code: &str, message: &str) {
        self.pending.push(Change::Failed {
            user_id: user_id.to_string(),
            code: code.to_string(),
            message: message.to_string(),
            at: unix_now(),
        });
    }

    /// Commits every pending entry in one transaction.
    pub fn commit(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO users (user_id, user_key, body_hash, accepted_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(user_id) DO UPDATE SET user_key = ?2, body_hash = ?3, accepted_at = ?4",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM users WHERE user_id = ?1")?;
            // The same changes, in order, for the next load on top of the snapshot.
            let mut recent =
                tx.prepare_cached("INSERT INTO recent (user_key, body_hash) VALUES (?1, ?2)")?;
            let mut fail = tx.prepare_cached(
                "INSERT INTO failed (user_id, code, message, run_id, failed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(user_id) DO UPDATE SET code = ?2, message = ?3, run_id = ?4,
                 failed_at = ?5",
            )?;
            let mut cleared = tx.prepare_cached("DELETE FROM failed WHERE user_id = ?1")?;
            for change in &self.pending {
                match change {
                    Change::Accepted {
                        user_id,
                        key,
                        hash,
                        at,
                    } => {
                        upsert.execute(params![user_id, *key as i64, *hash as i64, at])?;
                        recent.execute(params![*key as i64, *hash as i64])?;
                        if self.failing.remove(user_id) {
                            cleared.execute([user_id])?;
                        }
                    }
                    Change::Forget(user_id) => {
                        delete.execute([user_id])?;
                        recent.execute(params![user_key(user_id) as i64, None::<i64>])?;
                    }
                    Change::Failed {
                        user_id,
                        code,
                        message,
                        at,
                    } => {
                        delete.execute([user_id])?;
                        recent.execute(params![user_key(user_id) as i64, None::<i64>])?;
                        fail.execute(params![user_id, code, message, self.run_id, at])?;
                        self.failing.insert(user_id.clone());
                    }
                }
            }
        }
        tx.commit()
            .with_context(|| format!("cannot write the state database {}", self.path.display()))?;
        self.pending.clear();
        Ok(())
    }

    /// The rows of the last earlier run that got as far as its rows: what `--max-shrink`
    /// compares with.
    pub fn last_run_rows(&self) -> anyhow::Result<Option<u64>> {
        last_rows_before(&self.conn, self.run_id.unwrap_or(i64::MAX))
            .with_context(|| format!("cannot read the state database {}", self.path.display()))
    }

    /// At the end of a run, however it ended: commits what is pending and takes the snapshot
    /// the next run loads. (How the run ended is recorded by whoever started it:
    /// `history::RunRecord::finish`.)
    pub fn finish_run(&mut self) -> anyhow::Result<()> {
        self.commit()?;
        self.take_snapshot()
    }
}

impl StateDb {
    /// Replaces the snapshot with the users table as it is now and clears the change log, in
    /// one transaction, so the next run loads one blob instead of scanning every row.
    fn take_snapshot(&mut self) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        let mut data = Vec::new();
        {
            let mut statement = tx.prepare("SELECT user_key, body_hash FROM users")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                data.extend_from_slice(&(row.get::<_, i64>(0)? as u64).to_le_bytes());
                data.extend_from_slice(&(row.get::<_, i64>(1)? as u64).to_le_bytes());
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO snapshot (id, taken_at, data) VALUES (1, ?1, ?2)",
            params![unix_now(), data],
        )?;
        tx.execute("DELETE FROM recent", [])?;
        tx.commit()
            .with_context(|| format!("cannot write the state database {}", self.path.display()))?;
        Ok(())
    }
}

/// The rows of the last run recorded in the state at `path` that got as far as its rows, for a
/// dry run's `--max-shrink`; None without a state file or such a run.
pub fn last_run_rows(path: &Path) -> anyhow::Result<Option<u64>> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = db::open(path, None, false)?;
    last_rows_before(&conn, i64::MAX)
        .with_context(|| format!("cannot read the state database {}", path.display()))
}

/// The rows of the last real import before run `id` that got as far as its rows: a dry run, a
/// run a guard refused, or one that stopped before any row was settled, is no baseline.
fn last_rows_before(conn: &Connection, id: i64) -> rusqlite::Result<Option<u64>> {
    let rows: Option<i64> = conn
        .query_row(
            "SELECT rows FROM runs WHERE id < ?1 AND exit_code IS NOT NULL
             AND ok + failed + unchanged > 0 AND command = 'import'
             AND (flags IS NULL OR flags NOT LIKE '%\"--dry-run\"%')
             ORDER BY id DESC LIMIT 1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(rows.map(|rows| rows.max(0) as u64))
}

/// Opens the state read-only, for a dry run. None if there is no state file yet.
pub fn load_index(path: &Path) -> anyhow::Result<StateIndex> {
    if !path.exists() {
        return Ok(StateIndex::default());
    }
    let conn = db::open(path, None, false)?;
    Ok(StateIndex {
        accepted: read_index(&conn)?,
    })
}

/// Loads the accepted hashes: the snapshot taken at the end of the last finished run (one
/// blob, read in one go) plus the changes committed since, in order; or, with no snapshot
/// yet, a scan of the users table.
fn read_index(conn: &Connection) -> anyhow::Result<KeyMap> {
    let snapshot = conn
        .query_row("SELECT data FROM snapshot WHERE id = 1", [], |r| {
            let data = r.get_ref(0)?.as_blob()?;
            let mut accepted =
                KeyMap::with_capacity_and_hasher(data.len() / 16, Default::default());
            for pair in data.chunks_exact(16) {
                let (key, hash) = pair.split_at(8);
                accepted.insert(
                    u64::from_le_bytes(key.try_into().unwrap_or_default()),
                    u64::from_le_bytes(hash.try_into().unwrap_or_default()),
                );
            }
            Ok(accepted)
        })
        .optional()?;
    if let Some(mut accepted) = snapshot {
        let mut statement = conn.prepare("SELECT user_key, body_hash FROM recent ORDER BY seq")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let key = row.get::<_, i64>(0)? as u64;
            match row.get::<_, Option<i64>>(1)? {
                Some(hash) => accepted.insert(key, hash as u64),
                None => accepted.remove(&key),
            };
        }
        return Ok(accepted);
    }
    scan_users(conn)
}

fn scan_users(conn: &Connection) -> anyhow::Result<KeyMap> {
    let users: i64 = conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
    let mut accepted = KeyMap::with_capacity_and_hasher(users.max(0) as usize, Default::default());
    let mut statement = conn.prepare("SELECT user_key, body_hash FROM users")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        accepted.insert(row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64);
    }
    Ok(accepted)
}

/// `profile-import state stats PATH`.
pub fn stats(path: &Path) -> anyhow::Result<String> {
    let conn = db::open(path, None, false)?;
    let count = |table: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
    };
    let mut out = format!(
        "state            {}\nSDKAppID         {}\nusers            {}\nfailed users     {}\n",
        path.display(),
        db::meta(&conn, "sdkappid")?.unwrap_or_else(|| "-".into()),
        count("users")?,
        count("failed")?,
    );
    drop(conn);
    match history::runs(path, 1)?.pop() {
        Some(run) => {
            let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
            let command = std::iter::once(run.command.as_str())
                .chain(run.flags.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            out.push_str(&format!(
                "last run         {}: {command}, started {} ({}), {}\n                 input {}\n                 rows {}, sent {}, ok {}, unchanged {}, exit code {}\n",
                run.id,
                run.started(),
                run.started_at,
                match run.finished_at {
                    Some(at) => format!("finished {}", db::format_time(at)),
                    None => "did not finish (still running, or killed)".into(),
                },
                run.input,
                show(run.rows),
                show(run.sent),
                show(run.ok),
                show(run.unchanged),
                show(run.exit_code),
            ));
        }
        None => out.push_str("last run         none\n"),
    }
    Ok(out)
}

/// `profile-import state export PATH`: `UserID,body_hash,accepted_at` as CSV.
pub fn export(path: &Path, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
    let conn = db::open(path, None, false)?;
    let mut writer = csv::Writer::from_writer(out);
    writer
        .write_record(["UserID", "body_hash", "accepted_at"])
        .map_err(io_error)?;
    let mut statement =
        conn.prepare("SELECT user_id, body_hash, accepted_at FROM users ORDER BY user_id")?;
    let mut rows = statement.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let user: String = row.get(0)?;
        let hash: i64 = row.get(1)?;
        let at: i64 = row.get(2)?;
        writer
            .write_record([user, format!("{:016x}", hash as u64), db::format_time(at)])
            .map_err(io_error)?;
        count += 1;
    }
    writer.flush()?;
    Ok(count)
}

/// Unwraps csv's I/O errors so `main` can tell a closed pipe (`| head`) from a real failure.
fn io_error(err: csv::Error) -> anyhow::Error {
    match err.into_kind() {
        csv::ErrorKind::Io(io) => io.into(),
        other => anyhow::anyhow!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_hashes_survive_reopening_and_other_apps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let body = br#"{"From_Account":"u1","ProfileItem":[]}"#;
        {
            let (mut db, index) = StateDb::open(&path, 1400000000).unwrap();
            assert!(index.is_empty());
            db.accepted("u1", body_hash(body));
            db.commit().unwrap();
        }
        let (_, index) = StateDb::open(&path, 1400000000).unwrap();
        assert!(index.is_unchanged("u1", body_hash(body)));
        assert!(!index.is_unchanged("u1", body_hash(b"other")));
        assert!(!index.is_unchanged("u2", body_hash(body)));
        let err = StateDb::open(&path, 1400000001).err().unwrap().to_string();
        assert!(err.contains("belongs to SDKAppID 1400000000"), "{err}");
        assert!(stats(&path).unwrap().contains("users            1"));
    }

    #[test]
    fn an_unconfirmed_send_forgets_the_user_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut db, _) = StateDb::open(&path, 1).unwrap();
        db.accepted("u1", 11);
        db.accepted("u2", 22);
        db.forget("u1");
        db.forget("u2");
        db.accepted("u2", 23);
        db.commit().unwrap();
        drop(db);
        let (_, index) = StateDb::open(&path, 1).unwrap();
        assert!(!index.is_unchanged("u1", 11), "forgotten after its accept");
        assert!(
            index.is_unchanged("u2", 23),
            "accepted again after the forget"
        );
    }

    #[test]
    fn the_index_is_the_snapshot_plus_later_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut db, _) = StateDb::open(&path, 1).unwrap();
        db.accepted("u1", 11);
        db.accepted("u2", 22);
        db.finish_run().unwrap();
        // A later run that dies after committing, before its snapshot.
        db.accepted("u3", 33);
        db.forget("u1");
        db.accepted("u2", 23);
        db.commit().unwrap();
        drop(db);
        let index = load_index(&path).unwrap();
        assert_eq!(index.len(), 2);
        assert!(!index.is_unchanged("u1", 11));
        assert!(index.is_unchanged("u2", 23) && index.is_unchanged("u3", 33));
        // The same as reading every row.
        let conn = db::open(&path, None, false).unwrap();
        assert_eq!(scan_users(&conn).unwrap(), index.accepted);
    }

    /// The users `state failed` lists: (UserID, code, run).
    fn failed_list(path: &Path) -> Vec<(String, String, Option<i64>)> {
        let mut list = Vec::new();
        history::failed_users(path, &mut |user| {
            list.push((user.user_id.clone(), user.code.clone(), user.run_id));
            Ok(())
        })
        .unwrap();
        list
    }

    #[test]
    fn a_failure_forgets_the_user_until_a_later_send_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let start = history::RunStart {
            command: "import".into(),
            ..Default::default()
        };
        let identity = Identity {
            size: 12,
            hash: "ab".into(),
        };
        let first = history::begin(&path, &start).unwrap();
        let run = ForRun {
            id: first.id(),
            input: &identity,
        };
        let (mut db, _) = StateDb::open_locked(None, &path, 1, Some(run)).unwrap();
        db.accepted("u1", 11);
        db.accepted("u2", 22);
        db.failed("u1", "40009", "no such field");
        db.failed("u3", "outcome_unknown", "timed out");
        db.finish_run().unwrap();
        drop(db);
        let index = load_index(&path).unwrap();
        assert!(!index.is_unchanged("u1", 11), "a failed user is sent again");
        assert!(index.is_unchanged("u2", 22));
        let recorded = history::run(&path, first.id()).unwrap().unwrap();
        assert_eq!(recorded.input_size, Some(12));
        let run_1 = Some(first.id());
        assert_eq!(
            failed_list(&path),
            [
                ("u1".to_string(), "40009".to_string(), run_1),
                ("u3".into(), "outcome_unknown".into(), run_1)
            ]
        );

        // The next run: u1 fails again, u3 is accepted (in a state opened afresh, so the
        // failures on record are known from the file).
        let second = history::begin(&path, &start).unwrap();
        let run = ForRun {
            id: second.id(),
            input: &identity,
        };
        let (mut db, _) = StateDb::open_locked(None, &path, 1, Some(run)).unwrap();
        db.failed("u1", "40009", "no such field");
        db.accepted("u3", 33);
        db.finish_run().unwrap();
        drop(db);
        assert_eq!(
            failed_list(&path),
            [("u1".to_string(), "40009".to_string(), Some(second.id()))]
        );
        assert!(load_index(&path).unwrap().is_unchanged("u3", 33));
    }

    #[test]
    fn a_corrupt_file_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(
            &path,
            b"this is not a database at all, just some bytes ......",
        )
        .unwrap();
        let err = StateDb::open(&path, 1).err().unwrap().to_string();
        assert!(
            err.contains("not a usable profile-import state database"),
            "{err}"
        );
    }
}
