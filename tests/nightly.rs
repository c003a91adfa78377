//! A nightly sync run unattended: the metrics file (read back by a real Prometheus text
//! parser), the change log, the guards that stop a doomed run early or refuse a broken export,
//! the canary `--limit`, and `--only-if-empty`. Each test runs the real binary against a
//! simulator of its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::{exec, read_csv, tool_command, write_csv, Run, Workspace};

const APP: u64 = 1_400_000_777;
const ADMIN: &str = "administrator";
const KEY: &str = "nightly-test-key-51c2";
const NICK: &str = "Tag_Profile_IM_Nick";
const LEVEL: &str = "Tag_Profile_IM_Level";

/// A simulator at Chat's limits when `limited`, unlimited otherwise; custom keywords `custom`.
async fn simulator(limited: bool, custom: &[&str]) -> SimHandle {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    if !limited {
        config.limit_per_sec = 0;
    }
    config.custom_fields = custom.iter().map(|c| c.to_string()).collect();
    SimHandle::start(config).await.unwrap()
}

fn command(ws: &Workspace, sim: &SimHandle, csv: &Path, args: &[&str]) -> Command {
    let mut command = tool_command();
    command
        .current_dir(ws.dir())
        .arg("import")
        .arg(csv)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(["--no-progress", "--summary-json"])
        .arg(ws.path("summary.json"))
        .args(args)
        .env("PROFILE_IMPORT_SECRET_KEY", KEY);
    command
}

/// `import CSV ARGS` against `sim`, run off the runtime; `--rate 2000` unless ARGS set one.
async fn import(ws: &Workspace, sim: &SimHandle, csv: &Path, args: &[&str]) -> Run {
    let mut args = args.to_vec();
    if !args.contains(&"--rate") {
        args.extend(["--rate", "2000"]);
    }
    exec(command(ws, sim, csv, &args)).await
}

fn summary(ws: &Workspace) -> Value {
    serde_json::from_slice(&std::fs::read(ws.path("summary.json")).unwrap()).unwrap()
}

fn portrait_sets(sim: &SimHandle) -> u64 {
    sim.stats()
        .by_command
        .get("portrait_set")
        .copied()
        .unwrap_or(0)
}

/// `n` users `u0000`… with a Nick and a Level.
fn users_csv(ws: &Workspace, name: &str, n: usize) -> std::path::PathBuf {
    let rows: Vec<Vec<String>> = (0..n)
        .map(|i| {
            vec![
                format!("u{i:04}"),
                format!("Nick {i}"),
                (i % 50).to_string(),
            ]
        })
        .collect();
    let path = ws.path(name);
    write_csv(&path, &["UserID", "Nick", "Level"], &rows);
    path
}

// ── metrics ────────────────────────────────────────────────────────────────────────────────

/// The metrics file, parsed by `prometheus-parse`: (name, labels) → value.
fn metrics(path: &Path) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format");
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{}: unexpected {other:?}", sample.metric),
            };
            let labels = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ((sample.metric, labels), value)
        })
        .collect()
}

fn metric(
    all: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.get(&(name.to_string(), labels)).copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_metrics_file_parses_and_holds_its_figures_under_the_job_name() {
    let ws = Workspace::new();
    let sim = simulator(false, &[]).await;
    // 30 users, one of them invalid (Level out of range): 29 sent.
    let mut rows: Vec<Vec<String>> = (0..30)
        .map(|i| vec![format!("u{i:02}"), format!("N{i}"), "3".to_string()])
        .collect();
    rows[7][2] = "abc".into();
    let csv = ws.path("nightly-users.csv");
    write_csv(&csv, &["UserID", "Nick", "Level"], &rows);
    let prom = ws.path("profile_import.prom");
    let run = import(&ws, &sim, &csv, &["--metrics-file", prom.to_str().unwrap()]).await;
    run.assert_code(3);

    let all = metrics(&prom);
    let job = ("job", "nightly-users");
    assert_eq!(metric(&all, "profile_import_exit_code", &[job]), Some(3.0));
    assert_eq!(
        metric(&all, "profile_import_rows_in_file", &[job]),
        Some(30.0)
    );
    assert_eq!(
        metric(&all, "profile_import_rows", &[job, ("outcome", "ok")]),
        Some(29.0)
    );
    assert_eq!(
        metric(&all, "profile_import_rows", &[job, ("outcome", "invalid")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&all, "profile_import_rows", &[job, ("outcome", "failed")]),
        Some(0.0)
    );
    let requests = [job, ("command", "portrait_set"), ("result", "ok")];
    assert_eq!(
        metric(&all, "profile_import_requests_total", &requests),
        Some(29.0)
    );
    let throttled = [job, ("command", "portrait_set"), ("result", "throttled")];
    assert_eq!(
        metric(&all, "profile_import_requests_total", &throttled),
        Some(0.0)
    );
    assert!(metric(&all, "profile_import_pace_per_second", &[job]).is_some_and(|p| p > 0.0));
    assert_eq!(metric(&all, "profile_import_running", &[job]), Some(0.0));
    let started = metric(&all, "profile_import_last_run_timestamp_seconds", &[job]).unwrap();
    let success = metric(
        &all,
        "profile_import_last_success_timestamp_seconds",
        &[job],
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started <= success && success <= now + 1.0 && now - started < 120.0);
    assert!(metric(&all, "profile_import_run_duration_seconds", &[job]).is_some());
    let leftovers: Vec<_> = std::fs::read_dir(ws.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_keeps_the_last_success_of_the_run_before_it() {
    let ws = Workspace::new();
    let sim = simulator(false, &[]).await;
    let csv = users_csv(&ws, "users.csv", 20);
    let empty = ws.write("empty.csv", "UserID,Nick\n");
    let prom = ws.path("metrics.prom");
    let flags = [
        "--metrics-file",
        prom.to_str().unwrap(),
        "--job-name",
        "sync",
        "--rate",
        "2000",
    ];
    let job = [("job", "sync")];
    // The metrics file after a run of `input` (with `key` for the secret key) exiting `code`.
    let run = |input: &Path, key: Option<&str>, code: i32| {
        let mut command = command(&ws, &sim, input, &flags);
        if let Some(key) = key {
            command.env("PROFILE_IMPORT_SECRET_KEY", key);
        }
        let prom = &prom;
        async move {
            exec(command).await.assert_code(code);
            metrics(prom)
        }
    };
    let last_success =
        |file: &_| metric(file, "profile_import_last_success_timestamp_seconds", &job);

    let first = run(&csv, None, 0).await;
    let succeeded = last_success(&first).expect("a success is recorded");
    // The whole seconds must move on, so that a kept value is told from a new one.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        < succeeded + 1.0
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A wrong key: Chat refuses the UserSig, a job-wide error (exit 1).
    let second = run(&csv, Some("not-the-key"), 1).await;
    assert_eq!(metric(&second, "profile_import_exit_code", &job), Some(1.0));
    assert_eq!(
        last_success(&second),
        Some(succeeded),
        "the failed run keeps the last success"
    );
    let started = metric(&second, "profile_import_last_run_timestamp_seconds", &job).unwrap();
    assert!(started > succeeded, "the failed run is the last run");

    // A run stopped by a guard is no success either; a clean rerun is.
    let third = run(&empty, None, 3).await;
    assert_eq!(last_success(&third), Some(succeeded));
    let fourth = run(&csv, None, 0).await;
    assert!(last_success(&fourth).unwrap() > succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_check_accounts_write_metrics_too() {
    let ws = Workspace::new();
    let sim = simulator(false, &[]).await;
    let csv = users_csv(&ws, "users.csv", 12);
    import(&ws, &sim, &csv, &[]).await.assert_code(0);
    for command in ["verify", "check-accounts"] {
        let prom = ws.path(&format!("{command}.prom"));
        let mut run = tool_command();
        run.current_dir(ws.dir())
            .arg(command)
            .arg(&csv)
            .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
            .arg("--metrics-file")
            .arg(&prom)
            .env("PROFILE_IMPORT_SECRET_KEY", KEY);
        exec(run).await.assert_code(0);
        let all = metrics(&prom);
        let job = ("job", "users");
        assert_eq!(metric(&all, "profile_import_exit_code", &[job]), Some(0.0));
        assert_eq!(
            metric(&all, "profile_import_rows_in_file", &[job]),
            Some(12.0),
            "{command}"
        );
        let read_command = match command {
            "verify" => "portrait_get",
            _ => "account_check",
        };
        let ok = [job, ("command", read_command), ("result", "ok")];
        assert!(
            metric(&all, "profile_import_requests_total", &ok).is_some_and(|n| n >= 1.0),
            "{command}: {all:?}"
        );
    }
}

// ── the storm of one setup code ────────────────────────────────────────────────────────────

/// 2,000 rows whose Hobby the app never declared: Chat answers 40009 to every one.
fn undeclared_hobby_csv(ws: &Workspace) -> std::path::PathBuf {
    let rows: Vec<Vec<String>> = (0..2000)
        .map(|i| vec![format!("u{i:04}"), format!("Nick {i}"), "chess".to_string()])
        .collect();
    let path = ws.path("hobbies.csv");
    write_csv(&path, &["UserID", "Nick", "Custom_Hobby"], &rows);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_40009_stops_within_the_first_20_answers_and_says_what_to_declare() {
    let ws = Workspace::new();
    let sim = simulator(true, &[]).await;
    let csv = undeclared_hobby_csv(&ws);
    let started = Instant::now();
    let run = import(&ws, &sim, &csv, &["--rate", "200"]).await;
    let guarded = started.elapsed();
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("the first 20 answers all failed with 40009"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("declare Tag_Profile_Custom_Hobby"),
        "{}",
        run.stderr
    );
    let summary = summary(&ws);
    let (failed, pending) = (
        summary["failed"].as_u64().unwrap(),
        summary["not_attempted"].as_u64().unwrap(),
    );
    assert_eq!(failed + pending, 2000, "every row failed or pending");
    // The 20th answer stops the run; the rows already in flight are answered too (a retry of
    // one whose answer was lost under load is one more call).
    let calls = portrait_sets(&sim);
    assert!(
        calls >= failed && calls < 400,
        "{calls} calls: {summary}\n{}",
        run.stderr
    );
    assert!((20..2000).contains(&failed), "{failed}");

    // The same file with the guard off runs to its end: 2,000 answers at 200 a second.
    let sim = simulator(true, &[]).await;
    let ws = Workspace::new();
    let csv = undeclared_hobby_csv(&ws);
    let started = Instant::now();
    let unguarded = import(
        &ws,
        &sim,
        &csv,
        &["--rate", "200", "--setup-error-answers", "0"],
    )
    .await;
    let full = started.elapsed();
    unguarded.assert_code(3);
    assert_eq!(self::summary(&ws)["failed"], 2000);
    // At Chat's limit, arrival jitter can make the simulator throttle a request: one more call.
    assert!(portrait_sets(&sim) >= 2000);
    eprintln!(
        "2,000 rows of 40009: stopped after {failed} answers in {:.1} s; without the guard \
         {:.1} s ({:.1} s saved)",
        guarded.as_secs_f64(),
        full.as_secs_f64(),
        (full - guarded).as_secs_f64()
    );
    assert!(full >= Duration::from_secs(9), "2,000 calls at 200/s");
    assert!(guarded * 3 < full, "{guarded:?} vs {full:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_40003_points_to_create_accounts_and_mixed_answers_are_no_storm() {
    let ws = Workspace::new();
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.accounts = Some(Default::default());
    let sim = SimHandle::start(config).await.unwrap();
    let csv = users_csv(&ws, "users.csv", 300);
    let run = import(&ws, &sim, &csv, &["--concurrency", "4"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("--create-accounts"), "{}", run.stderr);
    assert!(portrait_sets(&sim) < 300);

    // Only every other user is an account: the first answers are mixed, the run goes on.
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.accounts = Some((0..300).step_by(2).map(|i| format!("u{i:04}")).collect());
    let sim = SimHandle::start(config).await.unwrap();
    let run = import(&ws, &sim, &csv, &["--concurrency", "4"]).await;
    run.assert_code(3);
    assert_eq!(portrait_sets(&sim), 300);
    assert_eq!(summary(&ws)["failed"], 150);
}

// ── the failure share ──────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_share_stops_the_run_and_resume_sends_every_row_left_once() {
    let ws = Workspace::new();
    // City is not declared: every third row, which sets it, fails with 40009.
    let sim = simulator(false, &["Hobby"]).await;
    let rows: Vec<Vec<String>> = (0..1000)
        .map(|i| {
            let city = if i % 3 == 0 { "Paris" } else { "" };
            vec![format!("u{i:04}"), format!("Nick {i}"), city.to_string()]
        })
        .collect();
    let csv = ws.path("cities.csv");
    write_csv(&csv, &["UserID", "Nick", "Custom_City"], &rows);
    let guard = [
        "--max-error-rate",
        "10",
        "--error-rate-min-rows",
        "100",
        "--concurrency",
        "8",
    ];
    let run = import(&ws, &sim, &csv, &guard).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("over --max-error-rate 10 %") && run.stderr.contains("most with 40009"),
        "{}",
        run.stderr
    );
    let first = summary(&ws);
    let (ok, failed, pending) = (
        first["ok"].as_u64().unwrap(),
        first["failed"].as_u64().unwrap(),
        first["not_attempted"].as_u64().unwrap(),
    );
    assert_eq!(ok + failed + pending, 1000);
    assert!(pending > 500, "stopped early: {first}");
    assert!(first["stopped"].as_str().unwrap().contains("--resume"));
    let sent_first = portrait_sets(&sim);
    assert_eq!(
        sent_first,
        ok + failed,
        "every row answered is counted once"
    );

    let run = import(&ws, &sim, &csv, &["--resume", "--concurrency", "8"]).await;
    run.assert_code(3);
    let second = summary(&ws);
    assert_eq!(second["not_attempted"], 0);
    assert_eq!(second["ok"].as_u64().unwrap(), 666);
    assert_eq!(second["failed"].as_u64().unwrap(), 334);
    assert_eq!(
        portrait_sets(&sim),
        1000,
        "each row sent exactly once in the two runs"
    );
    assert_eq!(sim.profiles().len(), 666);
}

// ── input guards, canary ───────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_sends_the_first_users_and_leaves_the_rest_for_resume() {
    let ws = Workspace::new();
    let sim = simulator(false, &[]).await;
    let csv = users_csv(&ws, "users.csv", 300);
    let run = import(&ws, &sim, &csv, &["--limit", "50"]).await;
    run.assert_code(0);
    assert_eq!(portrait_sets(&sim), 50);
    let first = summary(&ws);
    assert_eq!(first["ok"], 50);
    assert_eq!(first["not_attempted"], 250);
    assert!(first["stopped"].as_str().unwrap().contains("--limit 50"));
    let sent: Vec<String> = sim.profiles().keys().cloned().collect();
    let expected: Vec<String> = (0..50).map(|i| format!("u{i:04}")).collect();
    assert_eq!(sent, expected, "the first 50 users of the file");
    let run = import(&ws, &sim, &csv, &["--resume"]).await;
    run.assert_code(0);
    assert_eq!(portrait_sets(&sim), 300);
    assert_eq!(summary(&ws)["ok"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_rows_and_an_empty_export_refuse_to_send_and_leave_the_last_runs_files() {
    let ws = Workspace::new();
    let sim = simulator(false, &[]).await;
    // An earlier run left a failure CSV behind.
    let earlier = ws.write("users.failures.csv", "an earlier run's failures\n");
    let csv = users_csv(&ws, "users.csv", 10);
    let run = import(&ws, &sim, &csv, &["--min-rows", "100"]).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("fewer than --min-rows 100"),
        "{}",
        run.stderr
    );
    assert_eq!(portrait_sets(&sim), 0);
    assert_eq!(
        std::fs::read_to_string(&earlier).unwrap(),
        "an earlier run's failures\n"
    );
    let refused = summary(&ws);
    assert_eq!(refused["not_attempted"], 10);
    assert!(refused["refused"].as_str().unwrap().contains("--min-rows"));

    ws.write("users.csv", "UserID,Nick,Level\n");
    let run = import(&ws, &sim, &csv, &[]).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("has a header and no data rows"),
        "{}",
        run.stderr
    );
    import(&ws, &sim, &csv, &["--allow-empty"])
        .await
        .assert_code(0);
    assert_eq!(portrait_sets(&sim), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_shrink_refuses_an_export_that_lost_too_many_rows_since_the_last_run() {
    let ws = Workspace::new();
    let sim = simulator(false, &[]).await;
    let state = ws.path("sync.db");
    let state_args = ["--state", state.to_str().unwrap(), "--max-shrink", "20"];
    let csv = users_csv(&ws, "users.csv", 100);
    import(&ws, &sim, &csv, &state_args).await.assert_code(0);
    assert_eq!(portrait_sets(&sim), 100);

    // Half the export went missing.
    let csv = users_csv(&ws, "users.csv", 50);
    let run = import(&ws, &sim, &csv, &state_args).await;
    run.assert_code(3);
    assert!(
        run.stderr
            .contains("50 data rows, 50.0 % fewer than the last run's 100"),
        "{}",
        run.stderr
    );
    assert_eq!(portrait_sets(&sim), 100, "nothing sent");
    // The refused run is no baseline: 85 rows is 15 % fewer than the last real run's 100.
    let csv = users_csv(&ws, "users.csv", 85);
    import(&ws, &sim, &csv, &state_args).await.assert_code(0);
    // The dry run says the same of a shrunken file.
    let csv = users_csv(&ws, "users.csv", 10);
    let run = import(
        &ws,
        &sim,
        &csv,
        &[
            "--dry-run",
            "--state",
            state.to_str().unwrap(),
            "--max-shrink",
            "20",
        ],
    )
    .await;
    run.assert_code(3);
    assert!(run.stderr.contains("--max-shrink 20"), "{}", run.stderr);
}

// ── the change log, set-if-empty ───────────────────────────────────────────────────────────

/// A simulator holding users `u0000`… `u0009` with Nick "Nick i" and Level i.
async fn seeded() -> SimHandle {
    let sim = simulator(false, &[]).await;
    for i in 0..10 {
        sim.write_profile(
            &format!("u{i:04}"),
            [(NICK, json!(format!("Nick {i}"))), (LEVEL, json!(i))],
        );
    }
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_of_a_changes_only_run_holds_each_changed_value_with_the_one_before() {
    let ws = Workspace::new();
    let sim = seeded().await;
    let mut rows: Vec<Vec<String>> = (0..10)
        .map(|i| vec![format!("u{i:04}"), format!("Nick {i}"), i.to_string()])
        .collect();
    rows[3][1] = "Renamed".into();
    rows[6][2] = "42".into();
    rows[8] = vec!["u0008".into(), "New nick".into(), "9".into()];
    rows.push(vec!["u0100".into(), "Newcomer".into(), "1".into()]);
    let csv = ws.path("users.csv");
    write_csv(&csv, &["UserID", "Nick", "Level"], &rows);
    let log = ws.path("changes.csv");
    let run = import(
        &ws,
        &sim,
        &csv,
        &["--changes-only", "--changes-log", log.to_str().unwrap()],
    )
    .await;
    run.assert_code(0);
    let lines = read_csv(&log);
    assert_eq!(lines[0], ["Run", "UserID", "Tag", "Before", "Sent", "Code"]);
    // In the order Chat answered: sorted here.
    let mut changes: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l[1..].iter().map(String::as_str).collect())
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        vec![
            vec!["u0003", NICK, "\"Nick 3\"", "\"Renamed\"", "0"],
            vec!["u0006", LEVEL, "6", "42", "0"],
            vec!["u0008", LEVEL, "8", "9", "0"],
            vec!["u0008", NICK, "\"Nick 8\"", "\"New nick\"", "0"],
            vec!["u0100", LEVEL, "(unset)", "1", "0"],
            vec!["u0100", NICK, "(unset)", "\"Newcomer\"", "0"],
        ],
        "nothing for the unchanged users"
    );
    let run_id = &lines[1][0];
    assert!(lines[1..].iter().all(|l| &l[0] == run_id), "one run");
    assert!(run_id.ends_with('Z') && run_id.len() == 20, "{run_id}");
    let rerun = import(
        &ws,
        &sim,
        &csv,
        &["--changes-only", "--changes-log", log.to_str().unwrap()],
    )
    .await;
    rerun.assert_code(0);
    assert_eq!(
        read_csv(&log).len(),
        1,
        "a run that changed nothing logs nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_empty_nick_keeps_the_nicks_chat_holds_and_fills_the_empty_ones() {
    let ws = Workspace::new();
    let sim = simulator(false, &[]).await;
    // Users 0-9 renamed themselves in the app; users 10-14 have no Nick in Chat yet.
    for i in 0..10 {
        sim.write_profile(
            &format!("u{i:04}"),
            [
                (NICK, json!(format!("Set in the app {i}"))),
                (LEVEL, json!(1)),
            ],
        );
    }
    for i in 10..15 {
        sim.write_profile(&format!("u{i:04}"), [(LEVEL, json!(1))]);
    }
    let rows: Vec<Vec<String>> = (0..15)
        .map(|i| {
            vec![
                format!("u{i:04}"),
                format!("From the database {i}"),
                "2".into(),
            ]
        })
        .collect();
    let csv = ws.path("users.csv");
    write_csv(&csv, &["UserID", "Nick", "Level"], &rows);

    let plan = import(&ws, &sim, &csv, &["--dry-run", "--only-if-empty", "Nick"]).await;
    plan.assert_code(0);
    assert_eq!(
        summary(&ws)["kept_by_tag"][NICK],
        10,
        "the plan shows the kept Nicks"
    );
    assert!(
        plan.stderr.contains("(Chat has a value: not sent)"),
        "{}",
        plan.stderr
    );
    assert_eq!(portrait_sets(&sim), 0);

    let run = import(&ws, &sim, &csv, &["--only-if-empty", "Nick"]).await;
    run.assert_code(0);
    let profiles = sim.profiles();
    for i in 0..15 {
        let profile = &profiles[&format!("u{i:04}")];
        let nick = if i < 10 {
            format!("Set in the app {i}")
        } else {
            format!("From the database {i}")
        };
        assert_eq!(profile[NICK], json!(nick), "user {i}");
        assert_eq!(profile[LEVEL], json!(2), "user {i}: other tags still sync");
    }
    let changes = &summary(&ws)["changes_only"];
    assert_eq!(changes["kept_by_tag"][NICK], 10);
    assert_eq!(
        sim.stats().written_by_tag.get(NICK).copied(),
        Some(5),
        "only the empty Nicks were written"
    );
}

// ── declared custom fields ─────────────────────────────────────────────────────────────────

#[test]
fn declared_custom_fields_fix_a_keywords_case_and_refuse_an_undeclared_one_in_the_dry_run() {
    let ws = Workspace::new();
    ws.write(
        "u.csv",
        "UserID,custom_hobby,Custom_City\nu1,chess,\nu2,go,Paris\n",
    );
    let declared = ws.run([
        "import",
        "u.csv",
        "--dry-run",
        "--custom-fields",
        "Hobby,Tier",
        "--show-requests",
        "5",
    ]);
    declared.assert_code(3);
    assert!(
        declared
            .stdout
            .contains("\"Tag\":\"Tag_Profile_Custom_Hobby\",\"Value\":\"chess\""),
        "the declared spelling is sent: {}",
        declared.stdout
    );
    let failures = read_csv(&ws.path("u.dry-run-failures.csv"));
    assert_eq!(failures.len(), 2, "one row refused: {failures:?}");
    let row = failures[1].join(",");
    assert!(
        row.starts_with("u2,go,Paris,40009,") && row.contains("Custom_City") && row.ends_with(",3"),
        "line 3, the column and Chat's code: {row}"
    );

    // Without a declaration the keyword goes as written, with a warning about its case.
    let undeclared = ws.run(["import", "u.csv", "--dry-run", "--show-requests", "5"]);
    undeclared.assert_code(0);
    assert!(
        undeclared.stdout.contains("Tag_Profile_Custom_hobby"),
        "{}",
        undeclared.stdout
    );
    assert!(
        undeclared
            .stderr
            .contains("column \"custom_hobby\" sets Tag_Profile_Custom_hobby")
            && undeclared.stderr.contains("case-sensitive"),
        "{}",
        undeclared.stderr
    );

    // The config file declares them too.
    ws.write("chat.toml", "custom_fields = [\"Hobby\", \"City\"]\n");
    let configured = ws.run([
        "import",
        "u.csv",
        "--dry-run",
        "--config",
        "chat.toml",
        "--show-requests",
        "5",
    ]);
    configured.assert_code(0);
    assert!(
        configured.stdout.contains("Tag_Profile_Custom_Hobby")
            && configured.stdout.contains("Tag_Profile_Custom_City"),
        "{}",
        configured.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_import_writes_its_metrics_while_it_runs() {
    let ws = Workspace::new();
    let sim = simulator(false, &[]).await;
    let csv = users_csv(&ws, "users.csv", 60);
    let prom = ws.path("metrics.prom");
    // 60 rows at 20 a second: about 3 seconds, with the file written every second.
    let args = [
        "--rate",
        "20",
        "--progress-interval",
        "1",
        "--metrics-file",
        prom.to_str().unwrap(),
    ];
    let mut watched = crate::util::Watched::spawn(command(&ws, &sim, &csv, &args));
    let deadline = Instant::now() + Duration::from_secs(20);
    let during = loop {
        if let Ok(text) = std::fs::read_to_string(&prom) {
            if text.contains("profile_import_running{job=\"users\"} 1") {
                break metrics(&prom);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no metrics written during the run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let job = [("job", "users")];
    assert_eq!(metric(&during, "profile_import_exit_code", &job), None);
    assert_eq!(
        metric(&during, "profile_import_rows_in_file", &job),
        Some(60.0)
    );
    let (code, _) = tokio::task::spawn_blocking(move || watched.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let after = metrics(&prom);
    assert_eq!(metric(&after, "profile_import_running", &job), Some(0.0));
    assert_eq!(
        metric(&after, "profile_import_rows", &[job[0], ("outcome", "ok")]),
        Some(60.0)
    );
}
