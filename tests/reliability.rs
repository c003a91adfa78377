//! No row lost: SIGTERM followed by `--resume`, the lock, a changed input, and the row
//! invariant under mixes of faults (repeated SIGKILLs are in `tests/timing.rs`). Every test
//! runs its own simulator on a port-0 loopback listener.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use profile_import::chat::client::{ChatClient, ClientTuning};
use profile_import::chat::retry::RetryPolicy;
use profile_import::run::send::{self, SendSettings};
use profile_import::sim::{Faults, SimHandle};
use tokio_util::sync::CancellationToken;

use crate::util::fixture::{
    assert_final_state, failure_lines, import_command, journal_lines, make_input, settled,
    sim_config, Input, Profile, ADMIN, APP, KEY,
};
use crate::util::{plain_job, sim_connection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_resume_reaches_the_same_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), 900, 200);
    let sim = SimHandle::start(sim_config(&input)).await.unwrap();
    let journal = dir.path().join("users.journal");
    let failures = dir.path().join("users.failures.csv");

    let mut child = import_command(&input, &sim, &["--rate", "150"])
        .spawn()
        .unwrap();
    while sim.stats().requests < 150 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended too early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(143));
    let journalled = journal_lines(&journal);
    assert!(journalled.len() < 900, "the run stopped early");
    // In-flight rows finished before exit: Chat applied exactly what the journal says is ok.
    let ok = journalled.values().filter(|s| *s == "ok").count() as u64;
    assert_eq!(sim.stats().applied, ok);

    let output = import_command(&input, &sim, &["--resume"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_final_state(&input, &sim, &journal, &failures);
    assert_eq!(
        sim.stats().applied,
        input.ok_lines.len() as u64,
        "nothing was sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_journal_is_refused_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), 600, 100);
    let sim = SimHandle::start(sim_config(&input)).await.unwrap();
    let mut first = import_command(&input, &sim, &["--rate", "50"])
        .spawn()
        .unwrap();
    while sim.stats().requests < 5 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the import ended too early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = import_command(&input, &sim, &[]).output().unwrap();
    first.kill().unwrap();
    let _ = first.wait();
    assert_eq!(second.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("pid {}", first.id())),
        "names the holder: {stderr}"
    );
    // The killed holder left a stale lock: the next run takes it over.
    let third = import_command(&input, &sim, &["--resume"])
        .output()
        .unwrap();
    assert_eq!(
        third.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
}

fn run_to_end(mut command: Command) -> (Option<i32>, String) {
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Appends one row to the input file and returns its line.
fn append_row(input: &Input, row: &str) -> u64 {
    let mut text = std::fs::read_to_string(&input.path).unwrap();
    text.push_str(row);
    text.push('\n');
    std::fs::write(&input.path, &text).unwrap();
    text.lines().count() as u64
}

fn profile(nick: &str, level: u64) -> Profile {
    [
        ("Tag_Profile_IM_Nick".to_string(), serde_json::json!(nick)),
        ("Tag_Profile_IM_Level".to_string(), serde_json::json!(level)),
    ]
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_a_changed_input_unless_forced_and_cron_can_always_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), 300, 100);
    let journal = dir.path().join("users.journal");
    let sim = SimHandle::start(sim_config(&input)).await.unwrap();
    // No journal yet: --resume starts a fresh run.
    let mut child = import_command(&input, &sim, &["--resume", "--rate", "50"])
        .spawn()
        .unwrap();
    while sim.stats().requests < 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended too early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let changed_line = append_row(&input, "user_0001,Changed,5");
    // A user's rows merge and go out once, at its last row: the appended row is now
    // user_0001's, and its earlier last row is superseded.
    let changed = input.reread();
    let sendable = changed.sendable_lines();

    let before = settled(&sim).await;
    let (code, stderr) = run_to_end(import_command(&input, &sim, &["--resume"]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("input changed"), "{stderr}");
    assert_eq!(
        sim.stats().requests,
        before,
        "a refused resume sends nothing"
    );

    // --force resumes by position: exactly the sendable rows the journal does not have are
    // sent (no faults, no limit: one request each), the appended row among them.
    let journalled: HashSet<u64> = journal_lines(&journal).into_keys().collect();
    let left: Vec<u64> = sendable
        .iter()
        .filter(|line| !journalled.contains(line))
        .copied()
        .collect();
    assert!(left.contains(&changed_line));
    let (code, stderr) = run_to_end(import_command(&input, &sim, &["--resume", "--force"]));
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(
        sim.stats().requests - before,
        left.len() as u64,
        "a forced resume sends the rows the journal does not have, and only those"
    );
    let expected = changed.expected.clone();
    assert_eq!(expected["user_0001"], profile("Changed", 5));
    assert_eq!(sim.profiles(), expected, "the appended row won");

    // The journal of a finished run does not block a run over new input: it starts afresh
    // and sends every sendable row again.
    let next_line = append_row(&input, "user_0002,Next night,6");
    let next = input.reread();
    assert!(next.sendable_lines().contains(&next_line));
    let before = sim.stats().requests;
    let (code, stderr) = run_to_end(import_command(&input, &sim, &["--resume"]));
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(
        sim.stats().requests - before,
        next.sendable_lines().len() as u64,
        "a new run over changed input sends the whole file, each user once"
    );
    let expected = next.expected.clone();
    assert_eq!(expected["user_0002"], profile("Next night", 6));
    assert_eq!(sim.profiles(), expected);

    // And over unchanged input, --resume of the finished journal has nothing left to send.
    let before = sim.stats().requests;
    let failure_csv = std::fs::read(dir.path().join("users.failures.csv")).unwrap();
    let (code, stderr) = run_to_end(import_command(&input, &sim, &["--resume"]));
    assert_eq!(
        code,
        Some(3),
        "the whole run is reported, failures included: {stderr}"
    );
    assert_eq!(sim.stats().requests, before, "{stderr}");
    assert_eq!(
        std::fs::read(dir.path().join("users.failures.csv")).unwrap(),
        failure_csv,
        "the failure CSV is left as it was"
    );
    assert_eq!(sim.profiles(), expected);
}

/// The in-process pipeline under one fault mix; returns the summary.
async fn run_with_faults(
    input: &Input,
    dir: &Path,
    faults: Faults,
    fatal_after: Option<u64>,
) -> (profile_import::run::summary::Summary, SimHandle) {
    let sim = SimHandle::start(sim_config(input)).await.unwrap();
    sim.set_faults(faults);
    let job = plain_job(&input.path, dir.join("f.csv"), dir.join("j"));
    let connection = sim_connection(&sim.url(), APP, ADMIN, KEY);
    let tuning = ClientTuning {
        request_timeout: Duration::from_millis(400),
        ..ClientTuning::default()
    };
    let client = Arc::new(ChatClient::new(connection, tuning).unwrap());
    let settings = SendSettings {
        rate: 400,
        concurrency: 32,
        retry: RetryPolicy {
            max_attempts: 6,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        show_progress: false,
        quiet: true,
        progress_interval: Duration::from_secs(3600),
        max_errors: None,
        read_rate: 200,
        live: Default::default(),
    };
    let run = send::run(&job, client, settings, CancellationToken::new());
    let report = if let Some(after) = fatal_after {
        let trigger = async {
            while sim.stats().requests < after {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sim.set_faults(Faults {
                always_code: Some(70009),
                ..Faults::default()
            });
            std::future::pending::<()>().await;
        };
        tokio::select! {
            report = run => report.unwrap(),
            _ = trigger => unreachable!(),
        }
    } else {
        run.await.unwrap()
    };
    let summary = report.summary;
    assert!(summary.accounted(), "{summary}");
    let journal = journal_lines(&dir.join("j"));
    let failed = failure_lines(&dir.join("f.csv"));
    // Each final row is journalled once; failed and invalid ones are in the failure CSV.
    assert_eq!(
        journal.len() as u64 + summary.not_attempted,
        summary.rows,
        "{summary}"
    );
    let failing: HashSet<u64> = journal
        .iter()
        .filter(|(_, s)| *s == "failed" || *s == "invalid")
        .map(|(l, _)| *l)
        .collect();
    assert_eq!(failing, failed.keys().copied().collect());
    assert_eq!(fatal_after.is_some(), report.fatal.is_some());
    // Each user's rows merge and reach Chat once, at its last row, so Chat holds, for every
    // user the journal calls ok, exactly the merged profile that row sent.
    let mut last_ok: BTreeMap<String, Profile> = BTreeMap::new();
    let mut ok_lines: Vec<u64> = journal
        .iter()
        .filter(|(_, state)| *state == "ok")
        .map(|(line, _)| *line)
        .collect();
    ok_lines.sort_unstable();
    for line in ok_lines {
        let user = input.ok_lines.get(&line).unwrap_or_else(|| {
            panic!(
                "line {line} is journalled ok but must fail ({:?})",
                input.failed_lines.get(&line)
            )
        });
        last_ok.insert(user.clone(), input.ok_values[&line].clone());
    }
    assert_eq!(
        sim.profiles(),
        last_ok,
        "Chat holds each user's last ok row"
    );
    (summary, sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_is_accounted_for_under_each_fault_mix() {
    let mixes = [
        (
            "40006 bursts",
            Faults {
                p_40006: 0.3,
                max_streak_per_user: 3,
                ..Faults::default()
            },
        ),
        (
            "502 and resets",
            Faults {
                p_502: 0.2,
                p_reset: 0.2,
                max_streak_per_user: 3,
                ..Faults::default()
            },
        ),
        (
            "slow answers past the timeout",
            Faults {
                p_slow: 0.05,
                slow: Duration::from_millis(800),
                ..Faults::default()
            },
        ),
    ];
    for (name, faults) in mixes {
        let dir = tempfile::tempdir().unwrap();
        let input = make_input(dir.path(), 400, 150);
        let (summary, sim) = run_with_faults(&input, dir.path(), faults, None).await;
        eprintln!(
            "{name}: rows {} ok {} failed {} invalid {} retries {}",
            summary.rows, summary.ok, summary.failed, summary.invalid, summary.retries
        );
        assert_eq!(summary.not_attempted, 0, "{name}");
        // The faults were only ever transient: the outcome is the one a fault-free run has.
        assert_eq!(summary.ok, input.ok_lines.len() as u64, "{name}: {summary}");
        assert_eq!(
            summary.failed + summary.invalid,
            input.failed_lines.len() as u64,
            "{name}: {summary}"
        );
        assert_eq!(sim.profiles(), input.expected, "{name}");
        assert_eq!(sim.stats().max_in_flight_per_user, 1, "{name}");
    }
    // A fatal error mid-run: the rest is not attempted, and still every row is accounted for.
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), 2000, 300);
    let (summary, sim) = run_with_faults(&input, dir.path(), Faults::default(), Some(100)).await;
    // About 300 requests make the whole run (one per user, at its last row): a stop after 100
    // leaves most of them.
    assert!(summary.not_attempted > 100, "{summary}");
    assert!(
        !sim.profiles().is_empty(),
        "rows were applied before the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_errors_stops_a_run_going_bad_and_the_summary_json_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), 1200, 300);
    let sim = SimHandle::start(sim_config(&input)).await.unwrap();
    let summary_path = dir.path().join("run.json");
    let output = import_command(&input, &sim, &["--max-errors", "5", "--summary-json"])
        .arg(&summary_path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-errors 5"), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["rows"], 1200);
    assert!(json["not_attempted"].as_u64().unwrap() > 0);
    assert!(json["stopped"].as_str().unwrap().contains("--max-errors"));
    assert!(json["journal"].is_string(), "the run can be resumed");
    let failed = json["failed"].as_u64().unwrap() + json["invalid"].as_u64().unwrap();
    assert!(
        (5..5 + 16 + 2).contains(&failed),
        "stops soon after the budget: {failed}"
    );

    // The resumed run completes; its JSON summary covers the whole file.
    let output = import_command(&input, &sim, &["--resume", "--summary-json"])
        .arg(&summary_path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 3);
    assert_eq!(
        json["ok"].as_u64().unwrap()
            + json["failed"].as_u64().unwrap()
            + json["invalid"].as_u64().unwrap()
            + json["superseded"].as_u64().unwrap(),
        1200
    );
    assert_eq!(json["superseded"], input.superseded_lines.len() as u64);
    assert_eq!(json["not_attempted"], 0);
    assert!(json["journal"].is_null());
}
