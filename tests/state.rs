//! Change-only syncs (`--state`): what a rerun sends, counted by the simulator, and what a kill
//! leaves in the state database.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::tool_command;

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
    let mut command = tool_command();
    command
        .arg("import")
        .arg(csv)
        .arg("--state")
        .arg(state)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(["--no-progress", "-q", "--concurrency", "32"])
        .args(rate)
        .args(extra)
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
    // The state holds, for every user, the hash of the body of their last row.
    assert_eq!(exported(&state), hex(&expected_hashes(10_000, 9_000)));

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
    let dry = tool_command()
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

    let stats = tool_command()
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
    let dry = tool_command()
        .args(["import", "--dry-run", "-vv", "--state"])
        .arg(&state)
        .arg(&csv)
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

/// The request body for one row of [`write_csv`], written out by hand: what the README calls
/// the body Chat accepted, and what the state's hash stands for.
fn hand_built_body(user: &str, nick: &str, level: u64) -> String {
    format!(
        r#"{{"From_Account":"{user}","ProfileItem":[{{"Tag":"Tag_Profile_IM_Nick","Value":"{nick}"}},{{"Tag":"Tag_Profile_IM_Level","Value":{level}}}]}}"#
    )
}

/// The state's hash of each user's last row of a [`write_csv`] file with no changed rows,
/// computed from hand-built bodies rather than the importer's own row mapper.
fn expected_hashes(rows: usize, users: usize) -> HashMap<String, u64> {
    (0..rows)
        .map(|i| {
            let user = format!("user_{:05}", i % users);
            let body = hand_built_body(&user, &format!("Nick {i}"), (i % 100) as u64);
            let hash = profile_import::store::state::body_hash(body.as_bytes());
            (user, hash)
        })
        .collect()
}

fn hex(hashes: &HashMap<String, u64>) -> BTreeMap<String, String> {
    hashes
        .iter()
        .map(|(user, hash)| (user.clone(), format!("{hash:016x}")))
        .collect()
}

fn exported(state: &Path) -> BTreeMap<String, String> {
    let output = tool_command()
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
    let expected = expected_hashes(4_000, 4_000);
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

/// The rows of `journal` that say `ok`.
fn journalled_ok(journal: &Path) -> u64 {
    std::fs::read_to_string(journal)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("r ") && line.split(' ').nth(4) == Some("ok"))
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_with_resume_after_a_kill_sends_only_the_unjournalled_rows_and_the_next_sync_the_rest(
) {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    write_csv(&csv, 3_000, 3_000, &[]);
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.latency_min = Duration::from_millis(2);
    config.latency_max = Duration::from_millis(10);
    let sim = SimHandle::start(config).await.unwrap();

    let mut child = import(&sim, &csv, &state, &["--rate", "800", "--resume"])
        .spawn()
        .unwrap();
    while sim.stats().applied < 1_000 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the import ended before the kill: {status}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let before = crate::util::fixture::settled(&sim).await;
    let ok_at_kill = journalled_ok(&dir.path().join("users.journal"));
    let state_at_kill = exported(&state).len() as u64;
    // Chat's acceptance reaches the journal at once and the state about once a second.
    assert!(
        state_at_kill <= ok_at_kill,
        "{state_at_kill} > {ok_at_kill}"
    );

    // --resume with --state: the journal's rows are not read again, and every other row is
    // sent (none of them can be in the state, which only ever lags the journal).
    let resumed = ran(import(&sim, &csv, &state, &["--resume"]).output().unwrap());
    assert_eq!(
        sim.stats().requests - before,
        3_000 - ok_at_kill,
        "{resumed}"
    );
    // Rows the journal had but the state had not committed are left to the next sync, which
    // sends exactly those and nothing else.
    let in_state = exported(&state).len() as u64;
    let before = sim.stats().requests;
    let sync = ran(import(&sim, &csv, &state, &[]).output().unwrap());
    assert_eq!(sim.stats().requests - before, 3_000 - in_state, "{sync}");
    assert_eq!(count(&sync, "unchanged"), in_state, "{sync}");
    assert_eq!(exported(&state), hex(&expected_hashes(3_000, 3_000)));
    let profiles = sim.profiles();
    for i in 0..3_000 {
        let user = format!("user_{i:05}");
        assert_eq!(profiles[&user]["Tag_Profile_IM_Nick"], format!("Nick {i}"));
    }
    let before = sim.stats().requests;
    ran(import(&sim, &csv, &state, &["--resume"]).output().unwrap());
    ran(import(&sim, &csv, &state, &[]).output().unwrap());
    assert_eq!(sim.stats().requests, before, "nothing left to send");
}

/// Every file in `dir` but the input has mode 0600.
#[cfg(unix)]
fn assert_private_files(dir: &Path, input: &Path) {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == input {
            continue;
        }
        assert_eq!(
            crate::util::mode(&path),
            0o600,
            "{} is not private",
            path.display()
        );
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    assert!(
        checked.iter().any(|name| name == "s.db"),
        "the state was checked: {checked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_with_create_accounts_imports_the_accounts_and_syncs_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    write_csv(&csv, 500, 500, &[]);
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    // A new app: no user is an account yet.
    config.accounts = Some(Default::default());
    let sim = SimHandle::start(config).await.unwrap();
    let by_command = |command: &str| sim.stats().by_command.get(command).copied().unwrap_or(0);

    ran(import(&sim, &csv, &state, &["--create-accounts"])
        .output()
        .unwrap());
    assert_eq!(by_command("multiaccount_import"), 5);
    assert_eq!(by_command("portrait_set"), 500);
    assert_eq!(sim.stats().count_for("portrait_set", "0"), 500);
    assert_eq!(sim.accounts().unwrap().len(), 500);
    assert_eq!(exported(&state), hex(&expected_hashes(500, 500)));

    // The unchanged rerun imports the accounts again (harmless, README) but sends no profile.
    let rerun = ran(import(&sim, &csv, &state, &["--create-accounts"])
        .output()
        .unwrap());
    assert_eq!(count(&rerun, "unchanged"), 500, "{rerun}");
    assert_eq!(by_command("portrait_set"), 500);
    assert_eq!(by_command("multiaccount_import"), 10);

    // Two changed rows: two profiles sent.
    write_csv(&csv, 500, 500, &[3, 250]);
    ran(import(&sim, &csv, &state, &["--create-accounts"])
        .output()
        .unwrap());
    assert_eq!(by_command("portrait_set"), 502);
    let profiles = sim.profiles();
    assert_eq!(
        profiles["user_00003"]["Tag_Profile_IM_Nick"],
        "Nick 3 (changed)"
    );
    assert_eq!(
        profiles["user_00250"]["Tag_Profile_IM_Nick"],
        "Nick 250 (changed)"
    );
    assert_eq!(profiles["user_00004"]["Tag_Profile_IM_Nick"], "Nick 4");

    // The state database and everything else the runs wrote are private.
    #[cfg(unix)]
    {
        let export = dir.path().join("export.csv");
        let output = tool_command()
            .args(["state", "export"])
            .arg(&state)
            .arg("--output")
            .arg(&export)
            .output()
            .unwrap();
        assert!(output.status.success());
        assert_private_files(dir.path(), &csv);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_cannot_be_used_leaves_the_last_run_s_failure_csv_and_journal_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "UserID,Tag_Profile_IM_Level\nu1,5\nu2,not-a-number\n").unwrap();
    let sim = sim().await;
    let first = import(&sim, &csv, &dir.path().join("s.db"), &[])
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(3), "u2 is invalid");
    let (failures, journal) = (
        dir.path().join("users.failures.csv"),
        dir.path().join("users.journal"),
    );
    let before = (
        std::fs::read(&failures).unwrap(),
        std::fs::read(&journal).unwrap(),
    );

    // A file that is not a state database (a typo in a cron line, or a corrupt file).
    let not_a_state = dir.path().join("notes.txt");
    std::fs::write(&not_a_state, "not a state database\n").unwrap();
    let refused = import(&sim, &csv, &not_a_state, &[]).output().unwrap();
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        (
            std::fs::read(&failures).unwrap(),
            std::fs::read(&journal).unwrap()
        ),
        before,
        "the refused run changed the failure CSV or the journal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_is_locked_while_a_run_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.db");
    let (first_csv, second_csv) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    write_csv(&first_csv, 300, 300, &[]);
    std::fs::write(&second_csv, "UserID,Nick\nother_1,Other\n").unwrap();
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.latency_min = Duration::from_millis(20);
    config.latency_max = Duration::from_millis(40);
    let sim = SimHandle::start(config).await.unwrap();

    let mut first = import(&sim, &first_csv, &state, &["--rate", "50"])
        .spawn()
        .unwrap();
    while sim.stats().requests < 5 {
        assert!(first.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lock = dir.path().join("s.db.lock");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        first.id().to_string(),
        "the lock names its holder"
    );
    #[cfg(unix)]
    assert_eq!(crate::util::mode(&lock), 0o600);

    // Another input (its own journal) on the same state is refused: exit 4, nothing sent,
    // and nothing of that input's last run touched (its failure CSV still lists what failed).
    let earlier_failures = "UserID,Nick,_error_code,_error_message,_stage,_attempts,_line\n\
                            other_0,Old,40003,not an account,send,1,2\n";
    std::fs::write(dir.path().join("b.failures.csv"), earlier_failures).unwrap();
    let second = import(&sim, &second_csv, &state, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    assert!(stderr.contains("s.db.lock"), "{stderr}");
    assert!(!sim.profiles().contains_key("other_1"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b.failures.csv")).unwrap(),
        earlier_failures,
        "the refused run replaced the last run's failure CSV"
    );
    assert!(
        !dir.path().join("b.journal").exists(),
        "the refused run wrote a journal"
    );

    // The killed holder's lock is stale: the next run takes it over.
    first.kill().unwrap();
    let _ = first.wait();
    ran(import(&sim, &second_csv, &state, &[]).output().unwrap());
    assert_eq!(sim.profiles()["other_1"]["Tag_Profile_IM_Nick"], "Other");
    assert!(!lock.exists(), "the lock is removed at the end of a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_500_000_repeated_users_are_refused_under_state() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    // 500,001 users, each with two rows.
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    writeln!(file, "UserID,Level").unwrap();
    for pass in 0..2 {
        for i in 0..500_001 {
            writeln!(file, "u{i:06},{pass}").unwrap();
        }
    }
    file.flush().unwrap();
    drop(file);
    let refused = "too many repeated UserIDs";
    // Only the sync itself is run: a debug build reads these million rows for about ten
    // seconds of CPU per command (`import --dry-run --state` refuses with the same message).
    let sim = sim().await;
    let output = import(&sim, &csv, &state, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(refused), "{stderr}");
    assert_eq!(sim.stats().requests, 0, "nothing is sent");
}

/// `state runs PATH --json` plus `extra`, newest first.
fn runs_json(state: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let output = tool_command()
        .args(["state", "runs"])
        .arg(state)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout).unwrap() {
        serde_json::Value::Array(runs) => runs,
        one => vec![one],
    }
}

/// One key of every run, newest first.
fn column(runs: &[serde_json::Value], key: &str) -> Vec<serde_json::Value> {
    runs.iter().map(|run| run[key].clone()).collect()
}

/// `state failed PATH --json`: (UserID, code, run).
fn failed_users(state: &Path) -> Vec<(String, String, i64)> {
    let output = tool_command()
        .args(["state", "failed"])
        .arg(state)
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success());
    let list: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    list.iter()
        .map(|user| {
            (
                user["user_id"].as_str().unwrap().to_string(),
                user["code"].as_str().unwrap().to_string(),
                user["run"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn text_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// Issue 23: a row that failed is sent again by the next run although its line did not change,
/// until it succeeds; rows that succeeded and did not change are not sent again. `state failed`
/// lists the user until then, `state runs` has every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_row_is_sent_again_by_every_run_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    // Only u2 sets the custom field Mood, which the first app's console does not have (40009).
    std::fs::write(
        &csv,
        "UserID,Nick,Custom_Mood\nu1,Ann,\nu2,Bo,calm\nu3,Cy,\n",
    )
    .unwrap();
    let first_app = sim().await;
    let code = |output: Output| output.status.code();

    let run_1 = import(&first_app, &csv, &state, &[]).output().unwrap();
    assert_eq!(code(run_1), Some(3));
    assert_eq!(first_app.stats().count_for("portrait_set", "40009"), 1);
    assert_eq!(first_app.stats().requests, 3);
    assert_eq!(
        failed_users(&state),
        [("u2".to_string(), "40009".to_string(), 1)]
    );

    // The same file: only u2 is sent, and fails again.
    let run_2 = import(&first_app, &csv, &state, &[]).output().unwrap();
    assert_eq!(code(run_2), Some(3));
    assert_eq!(first_app.stats().requests, 4);
    assert_eq!(first_app.stats().count_for("portrait_set", "40009"), 2);
    assert_eq!(
        failed_users(&state),
        [("u2".to_string(), "40009".to_string(), 2)]
    );

    // The console now has Mood: u2 is sent once more and succeeds; u1 and u3 are not sent.
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.custom_fields.insert("Mood".into());
    let fixed_app = SimHandle::start(config).await.unwrap();
    ran(import(&fixed_app, &csv, &state, &[]).output().unwrap());
    assert_eq!(fixed_app.stats().requests, 1);
    let profiles = fixed_app.profiles();
    assert_eq!(profiles.len(), 1, "only u2 was sent");
    assert_eq!(profiles["u2"]["Tag_Profile_Custom_Mood"], "calm");
    assert!(failed_users(&state).is_empty());
    let text = tool_command()
        .args(["state", "failed"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stderr).contains("0 users whose last send failed"));

    let runs = runs_json(&state, &[]);
    assert_eq!(column(&runs, "id"), [3, 2, 1]);
    assert_eq!(column(&runs, "exit_code"), [0, 3, 3]);
    assert_eq!(column(&runs, "sent"), [1, 1, 3]);
    assert_eq!(column(&runs, "ok"), [1, 0, 2]);
    assert_eq!(column(&runs, "failed"), [0, 1, 1]);
    assert_eq!(column(&runs, "unchanged"), [2, 2, 0]);
    let table = text_of(tool_command().args(["state", "runs"]).arg(&state));
    eprintln!("{table}");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "RUN",
            "STARTED",
            "(UTC)",
            "SECS",
            "EXIT",
            "ROWS",
            "SENT",
            "OK",
            "FAILED",
            "UNCHANGED",
            "COMMAND",
            "INPUT"
        ]
    );
    // RUN, EXIT, ROWS, SENT, OK, FAILED, UNCHANGED, COMMAND of each run, newest first.
    let cells: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| [&l[..1], &l[3..10]].concat())
        .collect();
    assert_eq!(
        cells,
        [
            ["3", "0", "3", "1", "1", "0", "2", "import"],
            ["2", "3", "3", "1", "0", "1", "2", "import"],
            ["1", "3", "3", "3", "2", "1", "0", "import"],
        ]
    );
}

/// Every command run with `--state` is recorded: what ran, the flags that change what it sends
/// or checks, the input's path, size and hash (the journal's), the counts and the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_an_import_and_a_verify_are_recorded_with_flags_input_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    write_csv(&csv, 30, 30, &[]);
    let sim = sim().await;
    let dry_run = tool_command()
        .args(["import", "--dry-run", "--empty", "clear", "--state"])
        .arg(&state)
        .arg(&csv)
        .output()
        .unwrap();
    ran(dry_run);
    ran(import(
        &sim,
        &csv,
        &state,
        &["--empty", "clear", "--create-accounts", "on-demand"],
    )
    .output()
    .unwrap());
    let verify = tool_command()
        .arg("verify")
        .arg(&csv)
        .arg("--state")
        .arg(&state)
        .args([
            "--sample",
            "10",
            "--sdkappid",
            &APP.to_string(),
            "--endpoint",
            &sim.url(),
        ])
        .args(["--no-progress", "-q"])
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    ran(verify);

    let runs = runs_json(&state, &[]);
    assert_eq!(column(&runs, "command"), ["verify", "import", "import"]);
    assert_eq!(
        column(&runs, "flags"),
        [
            serde_json::json!(["--sample 10"]),
            serde_json::json!(["--create-accounts on-demand", "--empty clear"]),
            serde_json::json!(["--dry-run", "--empty clear"]),
        ]
    );
    assert_eq!(column(&runs, "exit_code"), [0, 0, 0]);
    assert_eq!(column(&runs, "rows"), [30, 30, 30]);
    assert_eq!(
        column(&runs, "sent"),
        [serde_json::Value::Null, 30.into(), serde_json::Value::Null]
    );
    // The journal's header names the input's size and xxh3: every run recorded the same.
    let journal = std::fs::read_to_string(dir.path().join("users.journal")).unwrap();
    let header = journal.lines().next().unwrap();
    let size = std::fs::metadata(&csv).unwrap().len();
    for run in &runs {
        assert_eq!(run["input"]["path"], csv.display().to_string());
        assert_eq!(run["input"]["size"], size);
        let hash = run["input"]["xxh3"].as_str().unwrap();
        assert!(
            header.contains(&format!("size={size} xxh3={hash}")),
            "{header}"
        );
        assert!(run["finished_at"].is_string() && run["seconds"].is_i64());
    }
    // One run whole: its summary, as --summary-json has it.
    let whole = &runs_json(&state, &["--id", "2"])[0];
    assert_eq!(whole["summary"]["command"], "import");
    assert_eq!(whole["summary"]["ok"], 30);
    assert_eq!(whole["summary"]["exit_code"], 0);
    let text = text_of(
        tool_command()
            .args(["state", "runs", "--id", "2"])
            .arg(&state),
    );
    assert!(
        text.contains("command      import --create-accounts on-demand --empty clear"),
        "{text}"
    );
    assert!(text.contains(&format!("({size} bytes, xxh3 ")), "{text}");
    assert!(text.contains("\"ok\": 30"), "{text}");
    assert_eq!(column(&runs_json(&state, &["--limit", "1"]), "id"), [3]);
    let missing = tool_command()
        .args(["state", "runs", "--id", "9"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no run 9"));

    // A verify against another app's state is refused before it reads anything.
    let other_app = tool_command()
        .arg("verify")
        .arg(&csv)
        .arg("--state")
        .arg(&state)
        .args(["--sdkappid", "1400000001", "--endpoint", &sim.url(), "-q"])
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(other_app.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other_app.stderr).contains("belongs to SDKAppID"));
    assert_eq!(runs_json(&state, &[]).len(), 3);
}

/// A dry run records itself beside a running import without waiting for its lock; an import
/// refused by that lock (exit 4), an import stopped by SIGTERM (143) and one that failed on
/// its input (1) are recorded with the status they ended with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_recorded_with_how_they_ended_even_beside_a_running_import() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.db");
    let (csv, other) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    write_csv(&csv, 300, 300, &[]);
    std::fs::write(&other, "UserID,Nick\nother_1,Other\n").unwrap();
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.latency_min = Duration::from_millis(20);
    config.latency_max = Duration::from_millis(40);
    let sim = SimHandle::start(config).await.unwrap();

    let mut running = import(&sim, &csv, &state, &["--rate", "50"])
        .spawn()
        .unwrap();
    while sim.stats().requests < 5 {
        assert!(running.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dry_run = tool_command()
        .args(["import", "--dry-run", "--state"])
        .arg(&state)
        .arg(&csv)
        .output()
        .unwrap();
    ran(dry_run);
    let refused = import(&sim, &other, &state, &[]).output().unwrap();
    assert_eq!(refused.status.code(), Some(4));
    let meanwhile = runs_json(&state, &[]);
    assert_eq!(
        column(&meanwhile, "exit_code"),
        [serde_json::json!(4), 0.into(), serde_json::Value::Null]
    );
    assert!(
        meanwhile[2]["finished_at"].is_null(),
        "the import is still running"
    );
    assert!(running.try_wait().unwrap().is_none());

    crate::util::send_signal(running.id(), "-TERM");
    let stopped = running.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(143));
    // An input without a UserID column fails the run at its start.
    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, "Nick,Level\nAnn,1\n").unwrap();
    let failed = import(&sim, &broken, &state, &[]).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));

    let runs = runs_json(&state, &[]);
    assert_eq!(column(&runs, "id"), [4, 3, 2, 1]);
    assert_eq!(column(&runs, "exit_code"), [1, 4, 0, 143]);
    assert!(
        runs[0]["note"].as_str().unwrap().contains("UserID"),
        "{}",
        runs[0]
    );
    assert!(runs[1]["note"]
        .as_str()
        .unwrap()
        .contains("another profile-import run"));
    let sigterm = &runs_json(&state, &["--id", "1"])[0];
    assert!(sigterm["summary"]["stopped"].is_string(), "{sigterm}");
    assert_eq!(sigterm["summary"]["exit_code"], 143);
    assert!(sigterm["ok"].as_i64().unwrap() >= 5);
}

/// `--keep-runs N` keeps the newest N runs, and later runs keep to it without the flag.
#[test]
fn the_history_keeps_the_newest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    write_csv(&csv, 5, 5, &[]);
    let dry_run = |extra: &[&str]| {
        let output = tool_command()
            .args(["import", "--dry-run", "-q", "--state"])
            .arg(&state)
            .arg(&csv)
            .args(extra)
            .output()
            .unwrap();
        ran(output);
    };
    dry_run(&[]);
    dry_run(&[]);
    dry_run(&["--keep-runs", "2"]);
    assert_eq!(column(&runs_json(&state, &[]), "id"), [3, 2]);
    dry_run(&[]);
    assert_eq!(column(&runs_json(&state, &[]), "id"), [4, 3]);
}

/// A state written by the previous version (schema 1) opens: it is migrated in place, its
/// users still count as sent and its runs are in the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_written_by_the_previous_version_is_migrated_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    write_csv(&csv, 50, 50, &[]);
    {
        // Schema 1 as the previous version created it, with what a run of it left.
        let conn = rusqlite::Connection::open(&state).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE users (user_id TEXT PRIMARY KEY, user_key INTEGER NOT NULL,
                 body_hash INTEGER NOT NULL, accepted_at INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 1),
                 taken_at INTEGER NOT NULL, data BLOB NOT NULL);
             CREATE TABLE recent (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 user_key INTEGER NOT NULL, body_hash INTEGER);
             CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,
                 finished_at INTEGER, input TEXT NOT NULL, rows INTEGER, sent INTEGER,
                 ok INTEGER, failed INTEGER, unchanged INTEGER, exit_code INTEGER);
             INSERT INTO meta VALUES ('schema', '1'), ('sdkappid', '1400000000');
             INSERT INTO runs VALUES (1, 1700000000, 1700000009, 'users.csv', 50, 50, 50, 0, 0, 0);",
        )
        .unwrap();
        let mut insert = conn
            .prepare("INSERT INTO users VALUES (?1, ?2, ?3, 1700000000)")
            .unwrap();
        for (user, hash) in expected_hashes(50, 50) {
            let key = profile_import::store::state::user_key(&user);
            insert
                .execute(rusqlite::params![user, key as i64, hash as i64])
                .unwrap();
        }
    }
    let sim = sim().await;
    let rerun = ran(import(&sim, &csv, &state, &[]).output().unwrap());
    assert_eq!(sim.stats().requests, 0, "{rerun}");
    assert_eq!(count(&rerun, "unchanged"), 50);
    let runs = runs_json(&state, &[]);
    assert_eq!(column(&runs, "id"), [2, 1]);
    assert_eq!(column(&runs, "command"), ["import", "import"]);
    assert_eq!(column(&runs, "exit_code"), [0, 0]);
    assert_eq!(column(&runs, "unchanged"), [50, 0]);
    assert_eq!(runs[1]["started_at"], "2023-11-14T22:13:20Z");
    assert_eq!(exported(&state), hex(&expected_hashes(50, 50)));
}

/// A second signal gives the run up at once, without a summary: its record says so, with the
/// signal's exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_given_up_by_a_second_signal_is_recorded_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, state) = (dir.path().join("users.csv"), dir.path().join("s.db"));
    write_csv(&csv, 100, 100, &[]);
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    // Chat answers only after a minute: the first signal would wait for those answers.
    config.faults = profile_import::sim::Faults {
        p_slow: 1.0,
        slow: Duration::from_secs(60),
        ..Default::default()
    };
    let sim = SimHandle::start(config).await.unwrap();
    let mut child = crate::util::Watched::spawn(import(&sim, &csv, &state, &[]));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sim.stats().requests < 5 {
        assert!(std::time::Instant::now() < deadline, "{}", child.stderr());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    crate::util::send_signal(child.pid(), "-INT");
    child.wait_for_line("stopping:", Duration::from_secs(20));
    crate::util::send_signal(child.pid(), "-INT");
    let (code, _) = child.wait(Duration::from_secs(30));
    assert_eq!(code, 130, "{}", child.stderr());

    let run = &runs_json(&state, &["--id", "1"])[0];
    assert_eq!(run["exit_code"], 130, "{run}");
    assert!(run["summary"].is_null() && run["rows"].is_null(), "{run}");
    assert!(
        run["note"].as_str().unwrap().contains("second signal"),
        "{run}"
    );
}
