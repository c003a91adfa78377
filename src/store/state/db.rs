//! The state database file itself: how it is opened (WAL, a busy timeout, mode 0600), its schema
//! and the migrations that bring a state written by an older version up to date, and the
//! SDKAppID it belongs to.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

/// The schema this version writes. An older state is migrated when opened; a newer one is
/// refused, since its meaning is not known here.
pub(super) const SCHEMA_VERSION: u32 = 2;

/// Schema 1, as the first version created it. A new state is created this way and then
/// migrated like any schema-1 state, so a new state and a migrated one cannot differ.
const SCHEMA_1: &str = "
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY,
        user_key INTEGER NOT NULL,
        body_hash INTEGER NOT NULL,
        accepted_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        taken_at INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS recent (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        user_key INTEGER NOT NULL,
        body_hash INTEGER
    );
    CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        input TEXT NOT NULL,
        rows INTEGER, sent INTEGER, ok INTEGER, failed INTEGER, unchanged INTEGER,
        exit_code INTEGER
    );";

/// `MIGRATIONS[i]` takes a state from schema `i + 1` to `i + 2`.
const MIGRATIONS: &[&str] = &[
    // 2: the run history records every command run with --state (schema 1 recorded imports
    // only): what ran with which flags, the input's size and hash, its summary, and why it
    // ended; and the users whose last send failed.
    "ALTER TABLE runs ADD COLUMN command TEXT;
     ALTER TABLE runs ADD COLUMN flags TEXT;
     ALTER TABLE runs ADD COLUMN input_size INTEGER;
     ALTER TABLE runs ADD COLUMN input_hash TEXT;
     ALTER TABLE runs ADD COLUMN summary TEXT;
     ALTER TABLE runs ADD COLUMN note TEXT;
     UPDATE runs SET command = 'import' WHERE command IS NULL;
     CREATE TABLE failed (
         user_id TEXT PRIMARY KEY,
         code TEXT NOT NULL,
         message TEXT NOT NULL,
         run_id INTEGER,
         failed_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
];

/// How long a write waits for another process's to end (an import's commit or its closing
/// snapshot, a dry run recording its run) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Opens (or, with `create`, creates) a state database, migrated to [`SCHEMA_VERSION`]; with
/// `sdkappid`, refuses a state of another app and records the app in a state that has none.
pub(super) fn open(path: &Path, sdkappid: Option<u64>, create: bool) -> anyhow::Result<Connection> {
    let flags = if create {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    if !create && !path.exists() {
        bail!("no state database at {}", path.display());
    }
    let existed = path.exists();
    let mut conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open the state database {}", path.display()))?;
    if !existed {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let corrupt = |err: rusqlite::Error| {
        anyhow::anyhow!(
            "{} is not a usable profile-import state database ({err}); move it away to start a new state",
            path.display()
        )
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(corrupt)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(corrupt)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(corrupt)?;
    let version = schema_version(&conn).map_err(corrupt)?;
    if version != Some(SCHEMA_VERSION.to_string()) {
        migrate(&mut conn, path)?;
    }
    if let Some(sdkappid) = sdkappid {
        check_app(&conn, path, sdkappid)?;
    }
    Ok(conn)
}

/// The schema a state says it has; None for a new file.
fn schema_version(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
        r.get(0)
    })
    .optional()
}

/// Creates a new state, or brings an older one up to [`SCHEMA_VERSION`], in one transaction
/// that holds the write lock from its start: two runs opening the same old state at once
/// migrate it once.
fn migrate(conn: &mut Connection, path: &Path) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = match schema_version(&tx)? {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(version) if (1..=SCHEMA_VERSION).contains(&version) => Some(version),
            _ => bail!(
                "{} was written by a newer version of profile-import (schema {text}; this one \
                 reads schema {SCHEMA_VERSION} and older)",
                path.display()
            ),
        },
    };
    let from = found.unwrap_or(1);
    if from == SCHEMA_VERSION {
        return Ok(()); // another process migrated it meanwhile
    }
    tx.execute_batch(SCHEMA_1)?;
    for migration in &MIGRATIONS[from as usize - 1..] {
        tx.execute_batch(migration)
            .with_context(|| format!("cannot migrate the state database {}", path.display()))?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema', ?1)
         ON CONFLICT(key) DO UPDATE SET value = ?1",
        [SCHEMA_VERSION.to_string()],
    )?;
    tx.commit()
        .with_context(|| format!("cannot write the state database {}", path.display()))?;
    if found.is_some() {
        tracing::info!(
            "state {} migrated from schema {from} to {SCHEMA_VERSION}",
            path.display()
        );
    }
    Ok(())
}

/// Refuses a state that belongs to another app; records the app in a state that has none.
fn check_app(conn: &Connection, path: &Path, sdkappid: u64) -> anyhow::Result<()> {
    let recorded: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'sdkappid'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match recorded {
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('sdkappid', ?1)",
                [sdkappid.to_string()],
            )?;
        }
        Some(recorded) if recorded == sdkappid.to_string() => {}
        Some(recorded) => bail!(
            "the state database {} belongs to SDKAppID {recorded}, not {sdkappid}; use one state file per app",
            path.display()
        ),
    }
    Ok(())
}

/// A value of the `meta` table.
pub(super) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
pub(super) fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
    }

    /// A state as schema 1 left it: two users, a snapshot, a finished run and a stopped one.
    fn schema_1_state(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(SCHEMA_1).unwrap();
        conn.execute_batch(
            "INSERT INTO meta VALUES ('schema', '1'), ('sdkappid', '1400000000');
             INSERT INTO users VALUES ('u1', 11, 101, 1700000000), ('u2', 22, 202, 1700000000);
             INSERT INTO runs VALUES (1, 1700000000, 1700000060, 'in.csv', 2, 2, 2, 0, 0, 0);
             INSERT INTO runs (id, started_at, input) VALUES (2, 1700000100, 'in.csv');",
        )
        .unwrap();
    }

    #[test]
    fn a_schema_1_state_is_migrated_in_place_and_keeps_its_users_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        schema_1_state(&path);
        let conn = open(&path, Some(1_400_000_000), false).unwrap();
        assert_eq!(
            schema_version(&conn).unwrap(),
            Some(SCHEMA_VERSION.to_string())
        );
        let users: i64 = conn
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 2);
        let runs: Vec<(i64, String, Option<i64>)> = conn
            .prepare("SELECT id, command, exit_code FROM runs ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            runs,
            [
                (1, "import".to_string(), Some(0)),
                (2, "import".into(), None)
            ],
            "schema 1 recorded imports only"
        );
        let failed: i64 = conn
            .query_row("SELECT COUNT(*) FROM failed", [], |r| r.get(0))
            .unwrap();
        assert_eq!(failed, 0);
        drop(conn);
        // Opening it again finds nothing to do.
        open(&path, None, false).unwrap();
    }

    #[test]
    fn a_new_state_has_the_migrated_schema_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = (dir.path().join("new.db"), dir.path().join("old.db"));
        schema_1_state(&old);
        let columns = |path: &Path| -> Vec<String> {
            let conn = open(path, None, true).unwrap();
            let mut statement = conn
                .prepare(
                    "SELECT name || ': ' || COALESCE(sql, '') FROM sqlite_master ORDER BY name",
                )
                .unwrap();
            let rows = statement.query_map([], |r| r.get(0)).unwrap();
            rows.map(Result::unwrap).collect()
        };
        assert_eq!(columns(&new), columns(&old));

        let conn = Connection::open(&new).unwrap();
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema'", [])
            .unwrap();
        drop(conn);
        let err = open(&new, None, false).unwrap_err().to_string();
        assert!(
            err.contains("newer version of profile-import (schema 3"),
            "{err}"
        );
    }
}
