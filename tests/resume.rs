//! Resume and the files a run leaves (README "Resume, locking and the cron contract"):
//! `--journal PATH`, a torn failure-CSV record cut off on `--resume`, rows already in the
//! failure CSV but not yet journalled, the failure CSV of rows that failed when sent fed back
//! in, and every field of `--summary-json`.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{Faults, SimConfig, SimHandle};

use crate::util::fixture::{failure_lines, journal_lines};
use crate::util::{read_failures, send_signal, tool_command, write_csv, Run, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "resume-test-key-0b7f";

/// `import <csv>` against `sim`, run in the workspace, quiet, plus `extra`.
fn import(ws: &Workspace, sim: &SimHandle, csv: &str, extra: &[&str]) -> Command {
    let mut command = tool_command();
    command
        .current_dir(ws.dir())
        .args(["import", csv, "--no-progress", "--concurrency", "16"])
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(extra)
        .env("PROFILE_IMPORT_SECRET_KEY", KEY);
    command
}

async fn run_binary(mut command: Command) -> Run {
    tokio::task::spawn_blocking(move || Run::from_output(command.output().expect("run")))
        .await
        .expect("the runner thread")
}

/// `n` rows; users `ghost_*` (every 10th row) are not Chat accounts.
fn rows_with_ghosts(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            let user = if i % 10 == 3 {
                format!("ghost_{i:04}")
            } else {
                format!("user_{i:04}")
            };
            vec![user, format!("Nick {i}, \"quoted\"\n2nd line")]
        })
        .collect()
}

/// A simulator knowing every `user_*` of [`rows_with_ghosts`] and no `ghost_*`.
async fn sim_without_ghosts(n: usize, latency: Duration) -> SimHandle {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.latency_min = latency;
    config.latency_max = latency;
    config.accounts = Some(
        rows_with_ghosts(n)
            .into_iter()
            .map(|row| row[0].clone())
            .filter(|user| user.starts_with("user_"))
            .collect(),
    );
    SimHandle::start(config).await.unwrap()
}

/// Starts `command`, and once `sim` has seen `requests` requests calls `during` and sends
/// SIGTERM; returns the run (exit 143 expected).
async fn terminated_after(
    command: Command,
    sim: &SimHandle,
    requests: u64,
    during: impl FnOnce(u32),
) -> Run {
    let mut child = crate::util::Watched::spawn(command);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sim.stats().requests < requests {
        assert!(
            std::time::Instant::now() < deadline,
            "the import never got going:\n{}",
            child.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    during(child.pid());
    send_signal(child.pid(), "-TERM");
    let (code, _) = child.wait(Duration::from_secs(20));
    Run {
        code,
        stdout: String::new(),
        stderr: child.stderr(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_option_puts_the_journal_and_its_lock_where_asked() {
    let ws = Workspace::new();
    let sim = sim_without_ghosts(600, Duration::from_millis(10)).await;
    write_csv(
        &ws.path("users.csv"),
        &["UserID", "Nick"],
        &rows_with_ghosts(600),
    );
    std::fs::create_dir(ws.path("state")).unwrap();
    let journal = ws.path("state/nightly.journal");
    let lock = ws.path("state/nightly.journal.lock");
    let args = ["--journal", "state/nightly.journal", "--rate", "100"];

    let first = terminated_after(import(&ws, &sim, "users.csv", &args), &sim, 50, |pid| {
        assert_eq!(
            std::fs::read_to_string(&lock).unwrap().trim(),
            pid.to_string(),
            "the lock sits beside the given journal"
        );
    })
    .await;
    assert_eq!(first.code, 143, "{}", first.stderr);
    assert!(
        first.line("resume with").contains("state/nightly.journal"),
        "{}",
        first.stderr
    );
    let journalled = journal_lines(&journal);
    assert!(!journalled.is_empty() && journalled.len() < 600);

    let resumed = run_binary(import(
        &ws,
        &sim,
        "users.csv",
        &["--journal", "state/nightly.journal", "--resume"],
    ))
    .await;
    resumed.assert_code(3);
    // In-flight rows were finished before the stop, so nothing was sent twice.
    assert_eq!(sim.stats().requests, 600, "{}", sim.stats());
    assert_eq!(journal_lines(&journal).len(), 600);
    assert!(std::fs::read_to_string(&journal)
        .unwrap()
        .ends_with("done\n"));
    assert!(!lock.exists());
    assert!(
        !ws.path("users.journal").exists(),
        "nothing at the default path"
    );
}

/// An import killed (SIGKILL) before any row failed leaves no failure CSV, not even a header,
/// and the earlier run's list is gone too (this run sends its rows again): the file's presence
/// means rows need attention. The resumed run finishes with none. Before, a header-only file
/// was left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_before_any_row_failed_leaves_no_failure_csv() {
    let ws = Workspace::new();
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    let sim = SimHandle::start(config).await.unwrap();
    let rows: Vec<Vec<String>> = (0..400)
        .map(|i| vec![format!("user_{i:04}"), format!("Nick {i}")])
        .collect();
    write_csv(&ws.path("users.csv"), &["UserID", "Nick"], &rows);
    let failures = ws.path("users.failures.csv");
    std::fs::write(&failures, "UserID,Nick,_error_code\nold_user,x,40003\n").unwrap();

    let killed = crate::util::signalled_after(
        import(&ws, &sim, "users.csv", &["--rate", "50"]),
        &sim,
        5,
        "-KILL",
    )
    .await;
    assert_eq!(killed.code, -1, "killed: {}", killed.stderr);
    assert!(ws.path("users.journal").exists(), "the run had started");
    assert!(
        !failures.exists(),
        "a failure CSV was left: {:?}",
        std::fs::read_to_string(&failures)
    );

    let resumed = run_binary(import(&ws, &sim, "users.csv", &["--resume"])).await;
    resumed.assert_code(0);
    assert!(!failures.exists());
    assert_eq!(sim.profiles().len(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_cuts_a_torn_failure_record_and_appends_after_it() {
    let ws = Workspace::new();
    let sim = sim_without_ghosts(600, Duration::from_millis(10)).await;
    let rows = rows_with_ghosts(600);
    write_csv(&ws.path("users.csv"), &["UserID", "Nick"], &rows);
    let failures = ws.path("users.failures.csv");

    let first = terminated_after(
        import(&ws, &sim, "users.csv", &["--rate", "100"]),
        &sim,
        150,
        |_| {},
    )
    .await;
    assert_eq!(first.code, 143, "{}", first.stderr);
    let before = failure_lines(&failures);
    assert!(!before.is_empty(), "some ghosts failed before the stop");
    // A crash in the middle of writing a record: an open quote with a line break in it.
    let mut bytes = std::fs::read(&failures).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice("ghost_9999,\"Nick torn, \"\"half\n a rec".as_bytes());
    std::fs::write(&failures, &bytes).unwrap();

    let resumed = run_binary(import(&ws, &sim, "users.csv", &["--resume"])).await;
    resumed.assert_code(3);
    let after = std::fs::read(&failures).unwrap();
    assert_eq!(
        after[..whole],
        bytes[..whole],
        "the whole records are kept as they were"
    );
    assert!(!String::from_utf8_lossy(&after).contains("torn"));
    // Every ghost once, with its cells exactly as read; nothing else.
    let (header, records) = read_failures(&failures);
    assert_eq!(header, ["UserID", "Nick"]);
    // Each row spans two lines (its Nick has a line break): row i starts on line 2 + 2i.
    let ghosts: BTreeMap<u64, Vec<String>> = rows
        .iter()
        .enumerate()
        .filter(|(_, row)| row[0].starts_with("ghost_"))
        .map(|(i, row)| (2 * i as u64 + 2, row.clone()))
        .collect();
    let got: BTreeMap<u64, Vec<String>> = records
        .iter()
        .map(|r| {
            assert_eq!(r.code, "40003", "{r:?}");
            (r.line, r.data.clone())
        })
        .collect();
    assert_eq!(got.len(), records.len(), "a line twice");
    assert_eq!(got, ghosts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_already_in_the_failure_csv_but_not_journalled_are_not_sent_again() {
    let ws = Workspace::new();
    let sim = sim_without_ghosts(200, Duration::ZERO).await;
    write_csv(
        &ws.path("users.csv"),
        &["UserID", "Nick"],
        &rows_with_ghosts(200),
    );
    let (failures, journal) = (ws.path("users.failures.csv"), ws.path("users.journal"));
    run_binary(import(&ws, &sim, "users.csv", &[]))
        .await
        .assert_code(3);
    let failed = failure_lines(&failures);
    assert_eq!(failed.len(), 20);

    // A crash just after the failure records reached the file and before the journal said so:
    // the journal loses those rows (and its checkpoints and end).
    let text = std::fs::read_to_string(&journal).unwrap();
    let kept: String = text
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[0] {
                "r" => fields[4] != "failed",
                "c" | "done" => false,
                _ => true,
            }
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&journal, kept).unwrap();
    let csv_before = std::fs::read(&failures).unwrap();
    let requests = sim.stats().requests;

    let resumed = run_binary(import(&ws, &sim, "users.csv", &["--resume"])).await;
    resumed.assert_code(3);
    assert_eq!(sim.stats().requests, requests, "{}", resumed.stderr);
    assert_eq!(resumed.count("failed"), 20, "{}", resumed.stderr);
    assert_eq!(
        std::fs::read(&failures).unwrap(),
        csv_before,
        "no record written twice"
    );
    let journalled = journal_lines(&journal);
    assert_eq!(journalled.len(), 200);
    let failing: HashSet<u64> = journalled
        .iter()
        .filter(|(_, state)| *state == "failed")
        .map(|(line, _)| *line)
        .collect();
    assert_eq!(failing, failed.keys().copied().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_csv_of_rows_refused_by_chat_imports_once_the_app_is_fixed() {
    let ws = Workspace::new();
    let header = ["UserID", "Nick", "Level", "Custom_Secret"];
    let rows: Vec<Vec<String>> = (0..40)
        .map(|i| {
            let (user, secret) = match i % 8 {
                2 => (format!("ghost_{i}"), String::new()),
                5 => (format!("user_{i}"), format!("s3cret, \"{i}\"\n名字")),
                _ => (format!("user_{i}"), String::new()),
            };
            vec![user, format!("Nick {i} ✓, \"q\""), i.to_string(), secret]
        })
        .collect();
    write_csv(&ws.path("users.csv"), &header, &rows);
    // The app as it is: no ghost accounts, no custom field "Secret".
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.accounts = Some(
        rows.iter()
            .filter(|row| row[0].starts_with("user_"))
            .map(|row| row[0].clone())
            .collect(),
    );
    let sim = SimHandle::start(config).await.unwrap();
    run_binary(import(&ws, &sim, "users.csv", &[]))
        .await
        .assert_code(3);
    let (_, failed) = read_failures(&ws.path("users.failures.csv"));
    let codes: BTreeMap<String, usize> = failed.iter().fold(BTreeMap::new(), |mut m, r| {
        assert_eq!(r.stage, "send", "{r:?}");
        *m.entry(r.code.clone()).or_default() += 1;
        m
    });
    assert_eq!(
        codes,
        BTreeMap::from([("40003".into(), 5), ("40009".into(), 5)])
    );

    // The app fixed (accounts imported, the field configured): the failure CSV itself is the
    // input, its appended columns ignored, and every refused row now lands as written.
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.custom_fields = ["Secret".to_string()].into();
    let fixed = SimHandle::start(config).await.unwrap();
    let rerun = run_binary(import(&ws, &fixed, "users.failures.csv", &[])).await;
    rerun.assert_code(0);
    assert_eq!(rerun.count("ok"), 10, "{}", rerun.stderr);
    let want: BTreeMap<String, BTreeMap<String, Value>> = rows
        .iter()
        .filter(|row| row[0].starts_with("ghost_") || !row[3].is_empty())
        .map(|row| {
            let mut profile = BTreeMap::from([
                ("Tag_Profile_IM_Nick".to_string(), json!(row[1])),
                (
                    "Tag_Profile_IM_Level".to_string(),
                    json!(row[2].parse::<u32>().unwrap()),
                ),
            ]);
            if !row[3].is_empty() {
                profile.insert("Tag_Profile_Custom_Secret".into(), json!(row[3]));
            }
            (row[0].clone(), profile)
        })
        .collect();
    assert_eq!(want.len(), 10);
    assert_eq!(fixed.profiles(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_has_every_documented_field_with_the_run_s_values() {
    let ws = Workspace::new();
    // 31 rows: 3 ghosts (40003), 2 invalid (40610, 40605), 1 with nothing to set, user_0001
    // twice.
    let mut rows: Vec<Vec<String>> = (0..24)
        .map(|i| vec![format!("user_{i:04}"), format!("Nick {i}"), i.to_string()])
        .collect();
    for i in 0..3 {
        rows.push(vec![format!("ghost_{i}"), "Ghost".into(), "1".into()]);
    }
    rows.push(vec!["user_0100".into(), "Bad".into(), "x".into()]);
    rows.push(vec!["user_0101".into(), "Bad".into(), "-1".into()]);
    rows.push(vec!["user_0102".into(), String::new(), String::new()]);
    rows.push(vec!["user_0001".into(), "Again".into(), "1".into()]);
    assert_eq!(rows.len(), 31);
    write_csv(&ws.path("users.csv"), &["UserID", "Nick", "Level"], &rows);
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.accounts = Some((0..24).map(|i| format!("user_{i:04}")).collect());
    config.faults = Faults {
        p_40006: 0.3,
        max_streak_per_user: 2,
        ..Faults::default()
    };
    let sim = SimHandle::start(config).await.unwrap();
    std::fs::create_dir(ws.path("out")).unwrap();
    let run = run_binary(import(
        &ws,
        &sim,
        "users.csv",
        &["--summary-json", "out/run.json"],
    ))
    .await;
    run.assert_code(3);
    let path = ws.path("out/run.json");
    let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let stats = sim.stats();

    let keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want_keys = vec![
        "command",
        "exit_code",
        "dry_run",
        "rows",
        "ok",
        "failed",
        "failed_by_code",
        "invalid",
        "invalid_by_rule",
        "skipped",
        "unchanged",
        "superseded",
        "not_attempted",
        "requests",
        "retries",
        "throttled",
        "pace_lowest_per_second",
        "pace_final_per_second",
        "duplicate_users",
        "long_locations",
        "elapsed_seconds",
        "mean_requests_per_second",
        "failure_csv",
        "journal",
        "stopped",
        "refused",
        "requests_by_command",
        "accounts",
    ];
    want_keys.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, want_keys);

    assert_eq!(json["command"], "import");
    assert!(json["long_locations"].is_u64(), "{json}");
    assert_eq!(json["exit_code"], 3);
    assert_eq!(json["dry_run"], false);
    assert_eq!(json["rows"], 31);
    // The repeated user's two rows merge: one is ok, the other superseded.
    assert_eq!(json["ok"], 24, "{json}");
    assert_eq!(json["failed"], 3);
    assert_eq!(json["failed_by_code"], json!({ "40003": 3 }));
    assert_eq!(json["invalid"], 2);
    assert_eq!(
        json["invalid_by_rule"],
        json!({ "40610 not a number": 1, "40605 not a uint32": 1 }),
        "{json}"
    );
    assert_eq!(json["skipped"], 1);
    assert_eq!(json["unchanged"], 0);
    assert_eq!(json["superseded"], 1);
    assert_eq!(json["not_attempted"], 0);
    // The client's counts are Chat's: every request, every 40006 retried.
    assert_eq!(json["requests"], stats.requests, "{stats}");
    assert_eq!(json["retries"], stats.count("40006"), "{stats}");
    assert!(stats.count("40006") > 0, "{stats}");
    assert_eq!(json["throttled"], 0);
    assert_eq!(json["pace_lowest_per_second"], 200.0);
    assert_eq!(json["pace_final_per_second"], 200.0);
    assert_eq!(json["duplicate_users"], 1);
    let elapsed = json["elapsed_seconds"].as_f64().unwrap();
    let mean = json["mean_requests_per_second"].as_f64().unwrap();
    assert!(elapsed > 0.0);
    assert!(
        (mean * elapsed - stats.requests as f64).abs() < 0.5,
        "mean × elapsed = requests: {json}"
    );
    let failure_csv = json["failure_csv"].as_str().expect("a path");
    assert!(failure_csv.ends_with("users.failures.csv"), "{json}");
    assert_eq!(failure_lines(&ws.dir().join(failure_csv)).len(), 5);
    assert_eq!(
        json["journal"],
        Value::Null,
        "a finished run has nothing to resume"
    );
    assert_eq!(json["stopped"], Value::Null);
    #[cfg(unix)]
    assert_eq!(crate::util::mode(&path), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(ws.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["run.json"], "no temporary file left behind");
}
