//! A generated input whose end state is known in advance (rows over users, some invalid, some
//! for users Chat does not know), the simulator for it, the binary importing it, and readers
//! for the journal and failure CSV a run leaves. Used by the reliability and timing tests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

pub const APP: u64 = 1_400_000_000;
pub const ADMIN: &str = "administrator";
pub const KEY: &str = "reliability-key-5e1f";

/// A user's profile as the simulator holds it: tag → value.
pub type Profile = BTreeMap<String, serde_json::Value>;

/// One generated input: rows, and what Chat should hold afterwards. A user's valid rows merge
/// (each tag takes the last row that sets it) and are sent once, at the user's last valid row;
/// its earlier valid rows are superseded.
pub struct Input {
    pub path: PathBuf,
    /// Line → the user of a known user's last valid row (these must end ok).
    pub ok_lines: BTreeMap<u64, String>,
    /// Line → the profile that row sends: the user's valid rows merged.
    pub ok_values: BTreeMap<u64, Profile>,
    /// Valid rows merged into a later row of their user.
    pub superseded_lines: BTreeSet<u64>,
    /// Lines that must end in the failure CSV, with their code.
    pub failed_lines: BTreeMap<u64, String>,
    /// user → tag → value after every valid row is applied in order.
    pub expected: BTreeMap<String, Profile>,
    pub known_users: HashSet<String>,
}

impl Input {
    /// Lines a run sends (each user's last valid row, known user or not); invalid rows never
    /// are.
    pub fn sendable_lines(&self) -> BTreeSet<u64> {
        self.ok_lines
            .keys()
            .copied()
            .chain(
                self.failed_lines
                    .iter()
                    .filter(|(_, code)| *code == "40003")
                    .map(|(line, _)| *line),
            )
            .collect()
    }

    /// The model of the file as it is now on disk (after rows were appended, say).
    pub fn reread(&self) -> Input {
        model_of(&self.path, self.known_users.clone())
    }
}

/// `rows` rows over `users` users (interleaved, so each user has several rows in order), with
/// some invalid rows (40610) and some rows for users Chat does not know (40003).
pub fn make_input(dir: &Path, rows: usize, users: usize) -> Input {
    let path = dir.join("users.csv");
    let mut writer = csv::Writer::from_path(&path).unwrap();
    writer.write_record(["UserID", "Nick", "Level"]).unwrap();
    for i in 0..rows {
        let (user, level) = if i % 97 == 13 {
            (format!("ghost_{i}"), (i % 100).to_string())
        } else if i % 89 == 7 {
            (format!("user_{:04}", i % users), "not-a-number".to_string())
        } else {
            (format!("user_{:04}", i % users), (i % 100).to_string())
        };
        let nick = format!("Nick {i} 名字");
        writer.write_record([&user, &nick, &level]).unwrap();
    }
    writer.flush().unwrap();
    model_of(&path, (0..users).map(|u| format!("user_{u:04}")).collect())
}

/// What importing the `UserID,Nick,Level` file at `path` must end with, worked out row by row
/// without the tool: a Level that is not a number is invalid (40610); a `ghost_` user is not
/// an account (40003, at its last row).
fn model_of(path: &Path, known_users: HashSet<String>) -> Input {
    let mut input = Input {
        path: path.to_path_buf(),
        ok_lines: BTreeMap::new(),
        ok_values: BTreeMap::new(),
        superseded_lines: BTreeSet::new(),
        failed_lines: BTreeMap::new(),
        expected: BTreeMap::new(),
        known_users,
    };
    let mut last_valid: BTreeMap<String, u64> = BTreeMap::new();
    let mut reader = csv::Reader::from_path(path).unwrap();
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let line = i as u64 + 2;
        let (user, nick, level) = (&record[0], &record[1], &record[2]);
        let Ok(level) = level.parse::<u64>() else {
            input.failed_lines.insert(line, "40610".into());
            continue;
        };
        if let Some(earlier) = last_valid.insert(user.to_string(), line) {
            input.superseded_lines.insert(earlier);
        }
        let profile = input.expected.entry(user.to_string()).or_default();
        profile.insert("Tag_Profile_IM_Nick".into(), nick.into());
        profile.insert("Tag_Profile_IM_Level".into(), level.into());
    }
    for (user, line) in last_valid {
        if input.known_users.contains(&user) {
            input.ok_lines.insert(line, user.clone());
            input.ok_values.insert(line, input.expected[&user].clone());
        } else {
            input.failed_lines.insert(line, "40003".into());
            input.expected.remove(&user);
        }
    }
    input
}

/// A simulator for `input`: small latency, no rate limit, only the input's known users.
pub fn sim_config(input: &Input) -> SimConfig {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.latency_min = Duration::from_millis(5);
    config.latency_max = Duration::from_millis(30);
    config.limit_per_sec = 0;
    config.accounts = Some(input.known_users.clone());
    config
}

/// The journal's final rows: line → state (and every line must appear once).
pub fn journal_lines(path: &Path) -> HashMap<u64, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = HashMap::new();
    for entry in text.lines().filter(|l| l.starts_with("r ")) {
        let fields: Vec<&str> = entry.split(' ').collect();
        let line: u64 = fields[2].parse().unwrap();
        let previous = lines.insert(line, fields[4].to_string());
        assert!(previous.is_none(), "line {line} journalled twice");
    }
    lines
}

/// `_line` → `_error_code` of every failure-CSV record (each line at most once).
pub fn failure_lines(path: &Path) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    if !path.exists() {
        return out;
    }
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let line_col = headers.iter().position(|h| h == "_line").unwrap();
    let code_col = headers.iter().position(|h| h == "_error_code").unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        let line: u64 = record[line_col].parse().unwrap();
        let previous = out.insert(line, record[code_col].to_string());
        assert!(previous.is_none(), "line {line} twice in the failure CSV");
    }
    out
}

/// Waits until the simulator has answered every request that reached it, and nothing new
/// arrived meanwhile: a killed client's last requests may still be in its socket buffers.
pub async fn settled(sim: &SimHandle) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = u64::MAX;
    loop {
        let stats = sim.stats();
        let answered: u64 = stats.codes.values().sum();
        if stats.requests == answered && stats.requests == last {
            return stats.requests;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the simulator never settled: {stats}"
        );
        last = if stats.requests == answered {
            stats.requests
        } else {
            u64::MAX
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `import <input>` against `sim` at 16 in flight, quiet, stderr piped, in a clean environment.
pub fn import_command(input: &Input, sim: &SimHandle, extra: &[&str]) -> Command {
    let mut command = super::tool_command();
    command
        .arg("import")
        .arg(&input.path)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(["--no-progress", "-q", "--concurrency", "16"])
        .args(extra)
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Checks the end state: every line in exactly one place, and Chat holds the last rows.
pub fn assert_final_state(input: &Input, sim: &SimHandle, journal: &Path, failures: &Path) {
    let journal = journal_lines(journal);
    let failed = failure_lines(failures);
    let all: HashSet<u64> = input
        .ok_lines
        .keys()
        .chain(input.failed_lines.keys())
        .chain(&input.superseded_lines)
        .copied()
        .collect();
    assert_eq!(
        journal.keys().copied().collect::<HashSet<_>>(),
        all,
        "every input line is journalled exactly once"
    );
    for line in input.ok_lines.keys() {
        assert_eq!(journal[line], "ok", "line {line}");
    }
    for line in &input.superseded_lines {
        assert_eq!(journal[line], "superseded", "line {line}");
    }
    for (line, code) in &input.failed_lines {
        assert!(
            matches!(journal[line].as_str(), "failed" | "invalid"),
            "line {line}"
        );
        assert_eq!(
            failed.get(line),
            Some(code),
            "line {line} in the failure CSV"
        );
    }
    assert_eq!(
        failed.len(),
        input.failed_lines.len(),
        "nothing else in the failure CSV"
    );
    assert_eq!(
        sim.profiles(),
        input.expected,
        "Chat holds each user's rows merged"
    );
    assert_eq!(sim.stats().max_in_flight_per_user, 1);
}
