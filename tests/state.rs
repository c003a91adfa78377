//! Change-only syncs (`--state`): what a rerun sends, counted by the simulator, and what a kill
//! leaves in the state database.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use profile_import::chat::usersig::SecretKey;
use profile_import::input::header::{clean_name, resolve, Mapping};
use profile_import::input::row::{RowMapper, RowRules, Verdict};
use profile_import::sim::{SimConfig, SimHandle};

const APP: u64 = 1_400_000_000;
const KEY: &str = "state-test-key-91c2";

/// `rows` rows over `users` users; the rows listed in `changed` get another Nick.
fn write_csv(path: &Path, rows: usize, users: usize, changed: &[usize]) {
    write_padded_csv(path, rows, users, changed, 0);
}

/// `write_csv` with every Nick padded by `pad` bytes, to make large files of few rows.
fn write_padded_csv(path: &Path, rows: usize, users: usize, changed: &[usize], pad: usize) {
    let padding = "~".repeat(pad);
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(["UserID", "Nick", "Level"]).unwrap();
    for i in 0..rows {
        let nick = if changed.contains(&i) {
            format!("Nick {i} (changed){padding}")
        } else {
            format!("Nick {i}{padding}")
        };
        writer
            .write_record([
                format!("user_{:05}", i % users),
                nick,
                (i % 100).to_string(),
            ])
            .unwrap();
    }
    writer.flush().unwrap();
}

/// An import with `--state`; `extra` may set `--rate` (default 5000).
fn import(sim: &SimHandle, csv: &Path, state: &Path, extra: &[&str]) -> Command {
    let rate: &[&str] = if extra.contains(&"--rate") {
        &[]
    } else {
        &["--rate", "5000"]
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_profile-import"));
    command
        .arg("import")
        .arg(csv)
        .arg("--state")
        .arg(state)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(["--no-progress", "-q", "--concurrency", "32"])
        .args(rate)
        .args(extra)
        .env_remove("RUST_LOG")
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn ran(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    stderr
}

fn count(summary: &str, label: &str) -> u64 {
    summary
        .lines()
        .find(|l| l.starts_with(label))
        .and_then(|l| l[label.len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {summary}"))
}

async fn sim() -> SimHandle {
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.latency_max = Duration::from_millis(3);
    SimHandle::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_rerun_sends_nothing_and_100_changes_send_exactly_100() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("state.db"));
    // 10,000 rows over 9,000 users: 1,000 users have two rows, and only the last one counts.
    write_csv(&csv, 10_000, 9_000, &[]);
    let sim = sim().await;
    let first = ran(import(&sim, &csv, &state, &[]).output().unwrap());
    let sent_first = sim.stats().requests;
    assert_eq!(sent_first, 9_000, "{first}");
    assert_eq!(count(&first, "superseded"), 1_000);

    let second = ran(import(&sim, &csv, &state, &[]).output().unwrap());
    let sent_second = sim.stats().requests - sent_first;
    eprintln!("unchanged rerun of 10,000 rows: {sent_second} requests");
    assert_eq!(sent_second, 0, "{second}");
    assert_eq!(count(&second, "unchanged"), 9_000);

    // Change 100 rows that count (the last row of their user).
    let changed: Vec<usize> = (1_000..10_000).step_by(90).take(100).collect();
    write_csv(&csv, 10_000, 9_000, &changed);
    let third = ran(import(&sim, &csv, &state, &[]).output().unwrap());
    let sent_third = sim.stats().requests - sent_first;
    eprintln!("100 changed rows: {sent_third} requests");
    assert_eq!(sent_third, 100, "{third}");
    assert_eq!(count(&third, "unchanged"), 8_900);
    let profiles = sim.profiles();
    for &i in &changed {
        let user = format!("user_{:05}", i % 9_000);
        assert_eq!(
            profiles[&user]["Tag_Profile_IM_Nick"],
            format!("Nick {i} (changed)")
        );
    }

    // A dry run with the state predicts the next sync: nothing to send.
    let dry = Command::new(env!("CARGO_BIN_EXE_profile-import"))
        .args(["import", "--dry-run", "--state"])
        .arg(&state)
        .arg(&csv)
        .output()
        .unwrap();
    let dry = ran(dry);
    assert_eq!(count(&dry, "valid"), 0, "{dry}");
    assert_eq!(count(&dry, "unchanged"), 9_000);

    // --full sends everything again.
    ran(import(&sim, &csv, &state, &["--full"]).output().unwrap());
    assert_eq!(sim.stats().requests - sent_first - sent_third, 9_000);

    let stats = Command::new(env!("CARGO_BIN_EXE_profile-import"))
        .args(["state", "stats"])
        .arg(&state)
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    assert!(stats.contains("users            9000"), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_of_a_large_file_predicts_the_sync_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("state.db"));
    // About 4.5 MB: large enough for the dry run to read it in two parts. Rows 9,000 and on
    // repeat the users of rows 0 to 999, so a user's rows sit in both parts.
    write_padded_csv(&csv, 10_000, 9_000, &[], 430);
    assert!(std::fs::metadata(&csv).unwrap().len() > 4 << 20);
    let sim = sim().await;
    ran(import(&sim, &csv, &state, &[]).output().unwrap());
    let sent_first = sim.stats().requests;
    assert_eq!(sent_first, 9_000);

    // Changes in both parts, to rows that count and to rows a later row supersedes.
    let counted: Vec<usize> = (1_000..10_000).step_by(90).collect();
    let superseded: Vec<usize> = (0..1_000).step_by(50).collect();
    let changed: Vec<usize> = counted.iter().chain(&superseded).copied().collect();
    write_padded_csv(&csv, 10_000, 9_000, &changed, 430);
    let dry = Command::new(env!("CARGO_BIN_EXE_profile-import"))
        .args(["import", "--dry-run", "-vv", "--state"])
        .arg(&state)
        .arg(&csv)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let dry = ran(dry);
    assert!(dry.contains("read in two parts"), "{dry}");
    assert_eq!(count(&dry, "valid"), counted.len() as u64, "{dry}");
    assert_eq!(count(&dry, "unchanged"), 9_000 - counted.len() as u64);
    assert_eq!(count(&dry, "superseded"), 1_000);

    let sync = ran(import(&sim, &csv, &state, &[]).output().unwrap());
    assert_eq!(
        sim.stats().requests - sent_first,
        counted.len() as u64,
        "{sync}"
    );
}

/// The hash of each user's last valid row, as the importer computes it.
fn expected_hashes(csv: &Path) -> HashMap<String, u64> {
    let mut reader = csv::ReaderBuilder::new().from_path(csv).unwrap();
    let names = reader.headers().unwrap().iter().map(clean_name).collect();
    let mapper = RowMapper::new(
        resolve(names, &Mapping::default(), None).unwrap(),
        RowRules::default(),
    );
    let mut out = HashMap::new();
    let mut body = Vec::new();
    for record in reader.byte_records() {
        let record = record.unwrap();
        if let Verdict::Ready { user_id, .. } = mapper.map(&record, &mut body) {
            out.insert(
                user_id.to_string(),
                profile_import::store::state::body_hash(&body),
            );
        }
    }
    out
}

fn exported(state: &Path) -> BTreeMap<String, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_profile-import"))
        .args(["state", "export"])
        .arg(state)
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_leaves_state_and_chat_consistent_and_a_rerun_completes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state): (PathBuf, PathBuf) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    write_csv(&csv, 4_000, 4_000, &[]);
    let expected = expected_hashes(&csv);
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.latency_min = Duration::from_millis(2);
    config.latency_max = Duration::from_millis(10);
    let sim = SimHandle::start(config).await.unwrap();

    let mut child = import(&sim, &csv, &state, &["--rate", "800"])
        .spawn()
        .unwrap();
    while sim.stats().applied < 1_500 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the import ended before the kill: {status}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();

    // No unsent change is marked as sent: every user in the state holds, in Chat, exactly the
    // row the state's hash stands for.
    let after_kill = exported(&state);
    let profiles = sim.profiles();
    assert!(!after_kill.is_empty(), "the state committed during the run");
    for (user, hash) in &after_kill {
        assert_eq!(*hash, format!("{:016x}", expected[user]), "{user}");
        assert!(
            profiles.contains_key(user),
            "{user} is in the state but not in Chat"
        );
    }
    let applied_at_kill = sim.stats().applied;
    eprintln!(
        "kill: Chat applied {applied_at_kill}, the state had {} (the rest are re-sent)",
        after_kill.len()
    );

    // The rerun sends what the state does not have, and then the two agree on every user.
    ran(import(&sim, &csv, &state, &[]).output().unwrap());
    let resent = sim.stats().applied - applied_at_kill;
    assert_eq!(resent as usize, 4_000 - after_kill.len());
    let final_state = exported(&state);
    assert_eq!(final_state.len(), 4_000);
    for (user, hash) in &expected {
        assert_eq!(final_state[user], format!("{hash:016x}"), "{user}");
    }
    let profiles = sim.profiles();
    for i in 0..4_000 {
        let user = format!("user_{i:05}");
        assert_eq!(profiles[&user]["Tag_Profile_IM_Nick"], format!("Nick {i}"));
    }
    // And a third run has nothing left to send.
    let before = sim.stats().requests;
    ran(import(&sim, &csv, &state, &[]).output().unwrap());
    assert_eq!(sim.stats().requests, before);
}
