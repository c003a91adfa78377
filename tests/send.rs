//! The real import against the built-in Chat simulator: exact values applied, retries of
//! transient errors, permanent failures in the failure CSV, job-wide errors, timeouts, one
//! request in flight per user, throttling, and the binary's exit codes and signals. (Pacing
//! and how soon a wrong key stops a run at full speed are wall-clock tests: tests/timing.rs.)
//!
//! Every test starts its own simulator on a free loopback port and works in its own temporary
//! directory, so the tests are independent and run in parallel. Nothing here waits on a timer
//! to make an assertion pass; timing properties are checked with counts and wide margins.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use profile_import::app::exit::ExitStatus;
use profile_import::chat::client::{ChatClient, ClientTuning};
use profile_import::chat::retry::RetryPolicy;
use profile_import::chat::usersig::SecretKey;
use profile_import::run::send::{self, SendReport, SendSettings};
use profile_import::sim::{Faults, SimConfig, SimHandle};

use crate::util::{bin, plain_job, read_failures, signalled_after, sim_connection, Run, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
/// The key the simulators verify with (and the right key for the importer).
const KEY: &str = "send-test-key-7d41c2";
/// A key the simulators do not know; distinctive so it can be searched for in the output.
const WRONG_KEY: &str = "wrong-key-c0ffee-93b7";

// ── helpers ────────────────────────────────────────────────────────────────────────────────

/// A simulator config for the test app, no latency, no faults, limit 200/s.
fn sim_config() -> SimConfig {
    SimConfig::new(APP, ADMIN, SecretKey::new(KEY))
}

async fn start(config: SimConfig) -> SimHandle {
    SimHandle::start(config).await.expect("start the simulator")
}

/// Send settings with short backoffs, no bar, no progress lines.
fn settings(rate: u32, concurrency: usize, max_attempts: u32) -> SendSettings {
    SendSettings {
        rate,
        concurrency,
        retry: RetryPolicy {
            max_attempts,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..RetryPolicy::default()
        },
        show_progress: false,
        quiet: true,
        progress_interval: Duration::from_secs(3600),
        max_errors: None,
        read_rate: 200,
        live: Default::default(),
    }
}

/// Writes a CSV (header first) with the csv crate, so quotes and commas are escaped properly.
fn write_csv(ws: &Workspace, name: &str, header: &[&str], rows: &[Vec<String>]) -> PathBuf {
    let path = ws.path(name);
    let mut writer = csv::Writer::from_path(&path).expect("create the input CSV");
    writer.write_record(header).unwrap();
    for row in rows {
        assert_eq!(row.len(), header.len(), "test row of the wrong width");
        writer.write_record(row).unwrap();
    }
    writer.flush().unwrap();
    path
}

/// `n` rows of `UserID,Nick`: `user_0000,Nick 0` …
fn simple_rows(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| vec![format!("user_{i:04}"), format!("Nick {i} ✓")])
        .collect()
}

/// Runs the real pipeline in-process on `csv` against `sim`.
async fn import_with(
    sim: &SimHandle,
    csv: &Path,
    failures: &Path,
    key: &str,
    tuning: ClientTuning,
    settings: SendSettings,
) -> SendReport {
    let job = plain_job(
        csv,
        failures.to_path_buf(),
        failures.with_extension("journal"),
    );
    let connection = sim_connection(&sim.url(), APP, ADMIN, key);
    let client = Arc::new(ChatClient::new(connection, tuning).expect("build the client"));
    send::run(&job, client, settings, CancellationToken::new())
        .await
        .expect("the import runs to its end")
}

/// [`import_with`] with the right key and the default client tuning.
async fn import(
    sim: &SimHandle,
    csv: &Path,
    failures: &Path,
    settings: SendSettings,
) -> SendReport {
    import_with(sim, csv, failures, KEY, ClientTuning::default(), settings).await
}

/// Asserts a run that should have sent every one of `rows` rows successfully.
/// Imports 120 simple rows into a simulator injecting `faults`, and asserts that every row
/// ended ok all the same.
async fn all_ok_despite(faults: Faults) -> (SimHandle, SendReport) {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.faults = faults;
    let sim = start(config).await;
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick"], &simple_rows(120));
    let failures = ws.path("failures.csv");
    let report = import(&sim, &csv, &failures, settings(200, 32, 5)).await;
    assert_all_ok(&report, 120, &failures);
    (sim, report)
}

#[track_caller]
fn assert_all_ok(report: &SendReport, rows: u64, failures: &Path) {
    assert_all_users_ok(report, rows, rows, failures);
}

/// Like `assert_all_ok` for a file of `rows` rows over `users` users: each user's rows merge
/// into one request, so `users` rows are ok and the rest superseded.
#[track_caller]
fn assert_all_users_ok(report: &SendReport, rows: u64, users: u64, failures: &Path) {
    let s = &report.summary;
    assert!(report.fatal.is_none(), "fatal: {:?}\n{s}", report.fatal);
    assert!(!report.interrupted, "{s}");
    assert_eq!(s.rows, rows, "{s}");
    assert_eq!(s.ok, users, "{s}");
    assert_eq!(s.superseded, rows - users, "{s}");
    assert_eq!(
        (s.failed, s.invalid, s.skipped, s.not_attempted),
        (0, 0, 0, 0),
        "{s}"
    );
    assert!(s.accounted(), "{s}");
    assert!(s.failure_csv.is_none(), "{s}");
    assert!(
        !failures.exists(),
        "a run without failures left {}",
        failures.display()
    );
}

/// A command for the binary with a clean environment: only PATH, NO_COLOR and `envs`.
fn binary(dir: &Path, args: &[&OsStr], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin());
    command.args(args).current_dir(dir).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.env("NO_COLOR", "1");
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

fn run_of(output: std::process::Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the binary to its end on a blocking thread, so the simulator keeps being served.
async fn run_binary(mut command: Command) -> Run {
    tokio::task::spawn_blocking(move || run_of(command.output().expect("run the binary")))
        .await
        .expect("the runner thread")
}

/// `import <csv> --sdkappid APP --endpoint <url> --failures <path> --no-progress` + `extra`.
fn import_args(csv: &Path, failures: &Path, endpoint: &str, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "import".into(),
        csv.into(),
        "--sdkappid".into(),
        APP.to_string().into(),
        "--endpoint".into(),
        endpoint.into(),
        "--failures".into(),
        failures.into(),
        "--no-progress".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    args
}

fn os(args: &[OsString]) -> Vec<&OsStr> {
    args.iter().map(OsString::as_os_str).collect()
}

// ── 1. exact values ────────────────────────────────────────────────────────────────────────

const FULL_HEADER: [&str; 9] = [
    "UserID",
    "Nick",
    "Gender",
    "BirthDay",
    "Location",
    "SelfSignature",
    "AllowType",
    "Level",
    "Custom_Hobby",
];

/// What the simulator must hold for one non-empty cell, computed independently of src/.
fn expected_item(column: &str, cell: &str) -> (String, Value) {
    let tag = |name: &str| format!("Tag_Profile_IM_{name}");
    match column {
        "Nick" | "Location" | "SelfSignature" => (tag(column), json!(cell)),
        "Gender" => {
            let exact = match cell.to_ascii_lowercase().as_str() {
                "female" | "f" => "Gender_Type_Female",
                "male" | "m" => "Gender_Type_Male",
                "unknown" => "Gender_Type_Unknown",
                other => panic!("no expectation for gender {other:?}"),
            };
            (tag("Gender"), json!(exact))
        }
        "AllowType" => {
            let exact = match cell {
                "allow_any" => "AllowType_Type_AllowAny",
                "need_confirm" => "AllowType_Type_NeedConfirm",
                "deny" => "AllowType_Type_DenyAny",
                other => panic!("no expectation for allow type {other:?}"),
            };
            (tag("AllowType"), json!(exact))
        }
        "BirthDay" => {
            let digits: String = cell.chars().filter(|c| *c != '-').collect();
            (tag("BirthDay"), json!(digits.parse::<u32>().unwrap()))
        }
        "Level" => (tag("Level"), json!(cell.parse::<u32>().unwrap())),
        "Custom_Hobby" => ("Tag_Profile_Custom_Hobby".into(), json!(cell)),
        other => panic!("no expectation for column {other}"),
    }
}

/// One row of [`FULL_HEADER`] from (user, cells after the UserID).
fn full_row(user: &str, cells: [&str; 8]) -> Vec<String> {
    std::iter::once(user.to_string())
        .chain(cells.iter().map(|c| c.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_import_applies_exactly_the_csv_values_and_the_last_row_wins() {
    let ws = Workspace::new();
    let sim = start(sim_config()).await;

    let genders = ["female", "M", "Unknown", "f", "male"];
    let allow = ["allow_any", "need_confirm", "deny", ""];
    let hobbies = ["围棋", "", "chess ♟️", "🎸 guitar, \"loud\""];
    let mut base = Vec::new();
    for i in 0..180usize {
        let user = format!("user_{i:03}");
        let nick = if i % 11 == 0 {
            String::new()
        } else {
            format!("用户{i}号 🎉")
        };
        let birthday = format!("{}-{:02}-{:02}", 1960 + i % 40, 1 + i % 12, 1 + i % 28);
        let location = ["深圳", "Berlin", "", "Zürich"][i % 4];
        let signature = if i % 7 == 0 {
            String::new()
        } else {
            format!("热爱生活，热爱代码 🚀 \"#{i}\", ok")
        };
        let level = if i % 5 == 0 {
            String::new()
        } else {
            i.to_string()
        };
        base.push(full_row(
            &user,
            [
                &nick,
                genders[i % genders.len()],
                &birthday,
                location,
                &signature,
                allow[i % allow.len()],
                &level,
                hobbies[(i / 2) % hobbies.len()],
            ],
        ));
    }
    let mut rows = Vec::new();
    // A user whose first row sets only Nick and whose last row sets only Level: both stay.
    rows.push(full_row(
        "split_user",
        ["先 first", "", "", "", "", "", "", ""],
    ));
    rows.extend(base[..100].iter().cloned());
    // Second rows for 15 users, some already sent, some still to come.
    for i in 0..15usize {
        let user = format!("user_{:03}", i * 12);
        let nick = format!("第二 {i} 😀");
        rows.push(full_row(&user, [&nick, "", "", "", "", "deny", "", ""]));
    }
    rows.extend(base[100..].iter().cloned());
    // Third rows for 5 of those users, at the very end.
    for i in 0..5usize {
        let user = format!("user_{:03}", i * 12);
        let nick = format!("third ✨ {i}");
        rows.push(full_row(&user, [&nick, "", "", "", "", "", "99", ""]));
    }
    rows.push(full_row("split_user", ["", "", "", "", "", "", "7", ""]));
    let csv = write_csv(&ws, "users.csv", &FULL_HEADER, &rows);
    let failures = ws.path("users.failures.csv");

    // Expected state: rows applied in file order, empty cells leaving the tag alone.
    let mut expected: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for row in &rows {
        let profile = expected.entry(row[0].clone()).or_default();
        for (column, cell) in FULL_HEADER.iter().zip(row).skip(1) {
            if !cell.is_empty() {
                let (tag, value) = expected_item(column, cell);
                profile.insert(tag, value);
            }
        }
    }

    let report = import(&sim, &csv, &failures, settings(200, 32, 5)).await;
    assert_all_users_ok(&report, rows.len() as u64, 181, &failures);
    assert_eq!(rows.len(), 202);
    assert_eq!(
        sim.stats().by_command.get("portrait_set"),
        Some(&181),
        "each user costs one portrait_set, its rows merged"
    );
    assert_eq!(report.summary.duplicates.users, 16, "{}", report.summary);

    let profiles = sim.profiles();
    assert_eq!(profiles.len(), 181);
    for (user, want) in &expected {
        assert_eq!(profiles.get(user), Some(want), "profile of {user}");
    }
    assert_eq!(profiles, expected);

    // Spot checks of the rules the expectation encodes.
    let split = &profiles["split_user"];
    assert_eq!(split["Tag_Profile_IM_Nick"], "先 first");
    assert_eq!(split["Tag_Profile_IM_Level"], 7);
    assert_eq!(split.len(), 2, "{split:?}");
    let u0 = &profiles["user_000"];
    assert_eq!(u0["Tag_Profile_IM_Nick"], "third ✨ 0");
    assert_eq!(u0["Tag_Profile_IM_Level"], 99);
    assert_eq!(u0["Tag_Profile_IM_AllowType"], "AllowType_Type_DenyAny");
    assert_eq!(u0["Tag_Profile_IM_BirthDay"], 19600101);
    assert_eq!(u0["Tag_Profile_IM_Gender"], "Gender_Type_Female");
    assert!(!u0.contains_key("Tag_Profile_IM_SelfSignature"), "{u0:?}");
    let u132 = &profiles["user_132"];
    assert_eq!(u132["Tag_Profile_IM_Nick"], "第二 11 😀");
    let u33 = &profiles["user_033"];
    assert!(!u33.contains_key("Tag_Profile_IM_Nick"), "{u33:?}");
    assert_eq!(
        u33["Tag_Profile_IM_SelfSignature"],
        "热爱生活，热爱代码 🚀 \"#33\", ok"
    );
    let stats = sim.stats();
    assert_eq!(stats.applied, 181, "{stats}");
    assert_eq!(stats.count("0"), 181, "{stats}");
}

// ── 2. transient Chat errors ───────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_40006_are_retried_to_success() {
    let (sim, report) = all_ok_despite(Faults {
        p_40006: 0.3,
        max_streak_per_user: 3,
        ..Faults::default()
    })
    .await;
    let stats = sim.stats();
    assert!(stats.count("40006") > 0, "{stats}");
    assert!(report.summary.retries > 0, "{}", report.summary);
    assert_eq!(report.summary.retries, stats.count("40006"), "{stats}");
    assert_eq!(report.summary.requests, stats.requests, "{stats}");
    assert_eq!(stats.applied, 120, "{stats}");
    assert_eq!(
        sim.profiles()["user_0077"]["Tag_Profile_IM_Nick"],
        "Nick 77 ✓"
    );
}

// ── 3. permanent errors ────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_land_in_the_failure_csv_with_their_codes() {
    let ws = Workspace::new();
    let ghosts = ["user_03", "user_11", "user_17"];
    let secret_setters = ["user_05", "user_20"];
    let rows: Vec<Vec<String>> = (0..30)
        .map(|i| {
            let user = format!("user_{i:02}");
            let secret = if secret_setters.contains(&user.as_str()) {
                format!("s3cret {i}")
            } else {
                String::new()
            };
            vec![user, format!("名前 {i}"), secret]
        })
        .collect();
    let mut config = sim_config();
    config.accounts = Some(
        rows.iter()
            .map(|r| r[0].clone())
            .filter(|u| !ghosts.contains(&u.as_str()))
            .collect::<HashSet<_>>(),
    );
    let sim = start(config).await;
    let header = ["UserID", "Nick", "Custom_Secret"];
    let csv = write_csv(&ws, "users.csv", &header, &rows);
    let failures = ws.path("users.failures.csv");

    let report = import(&sim, &csv, &failures, settings(200, 16, 5)).await;
    let s = &report.summary;
    assert!(report.fatal.is_none(), "{s}");
    assert_eq!((s.rows, s.ok, s.failed), (30, 25, 5), "{s}");
    assert_eq!((s.invalid, s.skipped, s.not_attempted), (0, 0, 0), "{s}");
    assert!(s.accounted(), "{s}");
    assert_eq!(s.retries, 0, "permanent errors are not retried\n{s}");
    let by_code: Vec<(&str, u64)> = s
        .failed_by_code
        .iter()
        .map(|(code, n)| (code.as_str(), *n))
        .collect();
    assert_eq!(by_code, [("40003", 3), ("40009", 2)], "{s}");
    assert_eq!(s.failure_csv.as_deref(), Some(failures.as_path()));
    assert_eq!(
        profile_import::app::signals::status_of(s),
        ExitStatus::RowsFailed
    );

    let (columns, failed) = read_failures(&failures);
    assert_eq!(columns, header);
    let mut got: Vec<(String, String, String, String, u64)> = failed
        .iter()
        .map(|r| {
            (
                r.data[0].clone(),
                r.code.clone(),
                r.stage.clone(),
                r.attempts.clone(),
                r.line,
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, String, String, String, u64)> = ghosts
        .iter()
        .map(|u| (u, "40003"))
        .chain(secret_setters.iter().map(|u| (u, "40009")))
        .map(|(user, code)| {
            let index: u64 = user["user_".len()..].parse().unwrap();
            (
                user.to_string(),
                code.to_string(),
                "send".to_string(),
                "1".to_string(),
                index + 2,
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    for row in &failed {
        // The input cells are kept exactly, so the file can be fixed and re-imported.
        let index: usize = row.data[0]["user_".len()..].parse().unwrap();
        assert_eq!(row.data, rows[index], "{row:?}");
        assert!(!row.message.is_empty(), "{row:?}");
    }

    // Nothing of a refused request is written; every other row is.
    let profiles = sim.profiles();
    assert_eq!(profiles.len(), 25);
    for user in ghosts.iter().chain(&secret_setters) {
        assert!(!profiles.contains_key(*user), "{user} was written");
    }
    let stats = sim.stats();
    assert_eq!(
        (stats.count("40003"), stats.count("40009")),
        (3, 2),
        "{stats}"
    );
}

// ── 4. a wrong key stops the job ───────────────────────────────────────────────────────────
// How few requests go out at the default pace is a wall-clock matter: see tests/timing.rs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_with_one_worker_stops_at_the_first_answer() {
    let ws = Workspace::new();
    let sim = start(sim_config()).await;
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick"], &simple_rows(500));
    let failures = ws.path("failures.csv");

    // One request in flight at a time: the first answer is back before a second request
    // could go, so exactly one is sent however slow the machine is.
    let report = import_with(
        &sim,
        &csv,
        &failures,
        WRONG_KEY,
        ClientTuning::default(),
        settings(200, 1, 5),
    )
    .await;
    let s = &report.summary;
    let fatal = report.fatal.as_deref().expect("a wrong key is fatal");
    assert!(fatal.contains("70009"), "{fatal}");
    assert!(!fatal.contains(WRONG_KEY), "{fatal}");
    let stats = sim.stats();
    assert_eq!(stats.requests, 1, "{stats}");
    assert_eq!(stats.count("70009"), 1, "{stats}");
    // A wrong key is about the whole job, not the row: every row stays pending for --resume
    // (issue 11, item 3), and none goes to the failure CSV.
    assert_eq!((s.rows, s.ok, s.failed), (500, 0, 0), "{s}");
    assert_eq!(s.not_attempted, 500, "{s}");
    assert_eq!(s.requests, 1, "{s}");
    assert!(s.accounted(), "{s}");
    assert!(sim.profiles().is_empty());
    assert!(!failures.exists(), "no row failed");
}

// ── 5. HTTP 502 and resets ─────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_502_and_connection_resets_are_retried() {
    let (sim, report) = all_ok_despite(Faults {
        p_502: 0.3,
        p_reset: 0.2,
        max_streak_per_user: 3,
        ..Faults::default()
    })
    .await;
    let stats = sim.stats();
    assert!(stats.count("http_502") > 0, "{stats}");
    assert!(stats.count("reset") > 0, "{stats}");
    assert!(report.summary.retries > 0, "{}", report.summary);
    assert_eq!(stats.applied, 120, "{stats}");
    assert_eq!(sim.profiles().len(), 120);
}

// ── 6. timeouts ────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_fail_rows_as_outcome_unknown() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.faults = Faults {
        p_slow: 1.0,
        slow: Duration::from_secs(3),
        ..Faults::default()
    };
    let sim = start(config).await;
    let rows = simple_rows(5);
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick"], &rows);
    let failures = ws.path("failures.csv");
    let tuning = ClientTuning {
        request_timeout: Duration::from_millis(300),
        ..ClientTuning::default()
    };

    let report = import_with(&sim, &csv, &failures, KEY, tuning, settings(200, 8, 2)).await;
    let s = &report.summary;
    assert!(report.fatal.is_none(), "{s}");
    assert_eq!((s.rows, s.ok, s.failed), (5, 0, 5), "{s}");
    assert!(s.accounted(), "{s}");
    assert_eq!(s.failed_by_code.get("outcome_unknown"), Some(&5), "{s}");

    let (_, failed) = read_failures(&failures);
    assert_eq!(failed.len(), 5);
    for row in &failed {
        assert_eq!(row.code, "outcome_unknown", "{row:?}");
        assert_eq!(row.stage, "send", "{row:?}");
        assert_eq!(row.attempts, "2", "{row:?}");
    }
    // The simulator applied them before answering late: that is why the outcome is unknown.
    let profiles = sim.profiles();
    for row in &rows {
        assert_eq!(
            profiles[&row[0]]["Tag_Profile_IM_Nick"], row[1],
            "{profiles:?}"
        );
    }
}

// ── 7. pacing: see tests/timing.rs ───────────────────────────────────────────────────────

// ── 8. one request in flight per user ──────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_is_sent_once_with_its_rows_merged() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.latency_min = Duration::from_millis(10);
    config.latency_max = Duration::from_millis(30);
    let sim = start(config).await;
    // 10 users × 30 rows, interleaved: row k belongs to user k % 10.
    let rows: Vec<Vec<String>> = (0..300)
        .map(|k| {
            let (user, seq) = (k % 10, k / 10);
            vec![
                format!("user_{user}"),
                format!("user {user} row {seq} ✓"),
                seq.to_string(),
            ]
        })
        .collect();
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick", "Level"], &rows);
    let failures = ws.path("failures.csv");

    let report = import(&sim, &csv, &failures, settings(200, 64, 5)).await;
    // Each user's 30 rows merge into one request.
    assert_all_users_ok(&report, 300, 10, &failures);
    let stats = sim.stats();
    assert_eq!(stats.by_command.get("portrait_set"), Some(&10), "{stats}");
    assert_eq!(stats.max_in_flight_per_user, 1, "{stats}");
    // Otherwise the test would prove nothing: different users did overlap.
    assert!(stats.max_in_flight >= 2, "{stats}");
    let profiles = sim.profiles();
    assert_eq!(profiles.len(), 10);
    for user in 0..10 {
        let profile = &profiles[&format!("user_{user}")];
        assert_eq!(
            profile["Tag_Profile_IM_Nick"],
            format!("user {user} row 29 ✓")
        );
        assert_eq!(profile["Tag_Profile_IM_Level"], 29);
    }
}

// ── 9. throttling ──────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_job_slows_down_and_every_row_ends_ok() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.limit_per_sec = 30;
    let sim = start(config).await;
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick"], &simple_rows(150));
    let failures = ws.path("failures.csv");

    let report = import(&sim, &csv, &failures, settings(200, 16, 5)).await;
    assert_all_ok(&report, 150, &failures);
    let stats = sim.stats();
    assert!(stats.count("60007") > 0, "{stats}");
    assert_eq!(stats.count("0"), 150, "{stats}");
    assert_eq!(stats.applied, 150, "{stats}");
    // The job paused after each throttle: far fewer refusals than rows.
    assert!(stats.count("60007") < 150, "{stats}");
}

// ── 10. settings errors from the binary ────────────────────────────────────────────────────

#[test]
fn binary_refuses_plain_http_to_a_non_loopback_endpoint() {
    let ws = Workspace::new();
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick"], &simple_rows(3));
    let failures = ws.path("failures.csv");
    for endpoint in ["http://example.com", "http://10.1.2.3:8080"] {
        let args = import_args(&csv, &failures, endpoint, &[]);
        let output = binary(ws.dir(), &os(&args), &[("PROFILE_IMPORT_SECRET_KEY", KEY)])
            .output()
            .unwrap();
        let run = run_of(output);
        run.assert_code(1);
        assert!(run.stderr.contains("plain http"), "{}", run.stderr);
        assert!(run.stderr.contains("loopback"), "{}", run.stderr);
        assert!(!run.stderr.contains(KEY), "{}", run.stderr);
    }
    assert!(!failures.exists());
}

#[test]
fn binary_names_every_way_to_set_missing_settings() {
    let ws = Workspace::new();
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick"], &simple_rows(3));
    // No SDKAppID and no key (a region is given).
    let run = ws.run([
        "import",
        "users.csv",
        "--region",
        "singapore",
        "--no-progress",
    ]);
    run.assert_code(1);
    let err = &run.stderr;
    assert_eq!(err.matches("missing settings").count(), 1, "{err}");
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    for way in [
        "--sdkappid",
        "PROFILE_IMPORT_SDKAPPID",
        "--config",
        "PROFILE_IMPORT_SECRET_KEY",
        "--key-file",
        "PROFILE_IMPORT_KEY_FILE",
        "PROFILE_IMPORT_USERSIG",
    ] {
        assert!(err.contains(way), "{way} not named:\n{err}");
    }
    assert!(
        !err.contains("--region REGION"),
        "the region was given:\n{err}"
    );

    // Nothing at all: the data center is named too, in the same single message.
    let run = ws.run([OsStr::new("import"), csv.as_os_str()]);
    run.assert_code(1);
    let err = &run.stderr;
    assert_eq!(err.matches("missing settings").count(), 1, "{err}");
    for way in [
        "--sdkappid",
        "PROFILE_IMPORT_SDKAPPID",
        "PROFILE_IMPORT_SECRET_KEY",
        "--key-file",
        "--region",
        "PROFILE_IMPORT_REGION",
        "--endpoint",
        "PROFILE_IMPORT_ENDPOINT",
    ] {
        assert!(err.contains(way), "{way} not named:\n{err}");
    }
    assert!(!ws.path("users.failures.csv").exists());
}

// ── 11. SIGTERM ────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_dispatching_and_finishes_rows_in_flight() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.latency_min = Duration::from_millis(40);
    config.latency_max = Duration::from_millis(60);
    let sim = start(config).await;
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick"], &simple_rows(2000));
    let failures = ws.path("failures.csv");
    let args = import_args(&csv, &failures, &sim.url(), &["--rate", "100"]);
    let command = binary(ws.dir(), &os(&args), &[("PROFILE_IMPORT_SECRET_KEY", KEY)]);
    // About a second into the run (≈100 requests at --rate 100), ask it to stop.
    let run = signalled_after(command, &sim, 100, "-TERM").await;
    run.assert_code(143);
    assert!(run.stderr.contains("not attempted"), "{}", run.stderr);
    let rows = run.count("rows read");
    let ok = run.count("ok");
    let failed = run.count("failed");
    let invalid = run.count("invalid");
    let skipped = run.count("skipped");
    let not_attempted = run.count("not attempted");
    assert_eq!(rows, 2000, "{}", run.stderr);
    assert_eq!(
        ok + failed + invalid + skipped + not_attempted,
        rows,
        "{}",
        run.stderr
    );
    assert_eq!(failed, 0, "{}", run.stderr);
    assert!(ok >= 90, "{}", run.stderr);
    assert!(not_attempted >= 1000, "{}", run.stderr);
    // Rows in flight at the signal were finished, not abandoned: the simulator applied exactly
    // the rows the summary calls ok.
    let stats = sim.stats();
    assert_eq!(stats.applied, ok, "{stats}\n{}", run.stderr);
    assert_eq!(stats.requests, ok, "{stats}\n{}", run.stderr);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    assert!(
        !failures.exists(),
        "no row failed, yet a failure CSV was left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_reports_the_duplicates_of_the_whole_file() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.limit_per_sec = 0;
    config.latency_min = Duration::from_millis(40);
    config.latency_max = Duration::from_millis(60);
    let sim = start(config).await;
    // 2,000 rows over 1,500 users: users 0 to 499 have a row early and one late.
    let rows: Vec<Vec<String>> = (0..2000)
        .map(|i| vec![format!("user_{:04}", i % 1500), format!("Nick {i}")])
        .collect();
    let csv = write_csv(&ws, "users.csv", &["UserID", "Nick"], &rows);
    let failures = ws.path("failures.csv");
    let dry = ws.run([
        OsStr::new("import"),
        csv.as_os_str(),
        OsStr::new("--dry-run"),
    ]);
    dry.assert_code(0);
    assert_eq!(dry.count("duplicate users"), 500);

    // A first run stopped after a few hundred rows leaves a checkpoint past many first rows.
    let args = import_args(&csv, &failures, &sim.url(), &["--rate", "200"]);
    let envs = [("PROFILE_IMPORT_SECRET_KEY", KEY)];
    let first = signalled_after(binary(ws.dir(), &os(&args), &envs), &sim, 300, "-TERM").await;
    first.assert_code(143);

    let mut resume_args = import_args(&csv, &failures, &sim.url(), &["--resume", "--rate", "1000"]);
    resume_args.push("--concurrency".into());
    resume_args.push("32".into());
    let second = run_binary(binary(ws.dir(), &os(&resume_args), &envs)).await;
    second.assert_code(0);
    assert_eq!(second.count("rows read"), 2000, "{}", second.stderr);
    assert_eq!(second.line("duplicate users"), dry.line("duplicate users"));
}

/// Row warnings in line order, whatever order the rows finish in: invalid rows are known at
/// once, a row Chat refuses only after its answer (200 ms here), so the old log read
/// `line 6, 8, 10, 4, 13`. Each warning now waits for the rows before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_warnings_are_logged_in_line_order() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.limit_per_sec = 0;
    config.latency_min = Duration::from_millis(200);
    config.latency_max = Duration::from_millis(200);
    config.accounts = Some((0..20).map(|i| format!("user_{i:02}")).collect());
    let sim = start(config).await;
    // Lines 4 and 13 are not accounts (40003 when sent); 6, 8 and 10 are invalid.
    let rows: Vec<Vec<String>> = (0..12)
        .map(|i| {
            let line = i + 2;
            let user = match line {
                4 | 13 => format!("ghost_{line}"),
                _ => format!("user_{i:02}"),
            };
            let level = if [6, 8, 10].contains(&line) { "x" } else { "1" };
            vec![user, level.to_string()]
        })
        .collect();
    let csv = write_csv(&ws, "users.csv", &["UserID", "Level"], &rows);
    let failures = ws.path("f.csv");
    let args = import_args(&csv, &failures, &sim.url(), &[]);
    let run = run_binary(binary(
        ws.dir(),
        &os(&args),
        &[("PROFILE_IMPORT_SECRET_KEY", KEY)],
    ))
    .await;
    run.assert_code(3);
    let lines: Vec<u64> = run
        .stderr
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("line ")? + "line ".len()..];
            rest.split(':').next()?.parse().ok()
        })
        .collect();
    assert_eq!(lines, [4, 6, 8, 10, 13], "{}", run.stderr);
}
