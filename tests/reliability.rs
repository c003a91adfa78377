//! No row lost: SIGKILL and SIGTERM followed by `--resume`, and the row invariant under mixes
//! of faults. Every test runs its own simulator on a port-0 loopback listener.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use profile_import::chat::client::{ChatClient, ClientTuning};
use profile_import::chat::retry::RetryPolicy;
use profile_import::chat::usersig::SecretKey;
use profile_import::run::send::{self, SendSettings};
use profile_import::sim::{Faults, SimConfig, SimHandle};
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::util::{plain_job, sim_connection};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "reliability-key-5e1f";

/// One generated input: rows, and what Chat should hold afterwards.
struct Input {
    path: PathBuf,
    /// Line → the user of a valid, known-user row (these must end ok).
    ok_lines: BTreeMap<u64, String>,
    /// Lines that must end in the failure CSV, with their code.
    failed_lines: BTreeMap<u64, String>,
    /// user → tag → value after the last row wins.
    expected: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    known_users: HashSet<String>,
}

/// `rows` rows over `users` users (interleaved, so each user has several rows in order), with
/// some invalid rows (40610) and some rows for users Chat does not know (40003).
fn make_input(dir: &Path, rows: usize, users: usize) -> Input {
    let path = dir.join("users.csv");
    let mut writer = csv::Writer::from_path(&path).unwrap();
    writer.write_record(["UserID", "Nick", "Level"]).unwrap();
    let mut input = Input {
        path: path.clone(),
        ok_lines: BTreeMap::new(),
        failed_lines: BTreeMap::new(),
        expected: BTreeMap::new(),
        known_users: (0..users).map(|u| format!("user_{u:04}")).collect(),
    };
    for i in 0..rows {
        let line = i as u64 + 2;
        let (user, level) = if i % 97 == 13 {
            (format!("ghost_{i}"), (i % 100).to_string())
        } else if i % 89 == 7 {
            (format!("user_{:04}", i % users), "not-a-number".to_string())
        } else {
            (format!("user_{:04}", i % users), (i % 100).to_string())
        };
        let nick = format!("Nick {i} 名字");
        writer.write_record([&user, &nick, &level]).unwrap();
        if user.starts_with("ghost") {
            input.failed_lines.insert(line, "40003".into());
        } else if level == "not-a-number" {
            input.failed_lines.insert(line, "40610".into());
        } else {
            input.ok_lines.insert(line, user.clone());
            let profile = input.expected.entry(user).or_default();
            profile.insert("Tag_Profile_IM_Nick".into(), nick.into());
            profile.insert(
                "Tag_Profile_IM_Level".into(),
                serde_json::Value::from(i as u64 % 100),
            );
        }
    }
    writer.flush().unwrap();
    input
}

fn sim_config(input: &Input) -> SimConfig {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.latency_min = Duration::from_millis(5);
    config.latency_max = Duration::from_millis(30);
    config.limit_per_sec = 0;
    config.accounts = Some(input.known_users.clone());
    config
}

/// The journal's final rows: line → state (and every line must appear once).
fn journal_lines(path: &Path) -> HashMap<u64, String> {
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
fn failure_lines(path: &Path) -> BTreeMap<u64, String> {
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

fn import_command(input: &Input, sim: &SimHandle, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_profile-import"));
    command
        .arg("import")
        .arg(&input.path)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(["--no-progress", "-q", "--concurrency", "16"])
        .args(extra)
        .env_remove("RUST_LOG")
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Checks the end state: every line in exactly one place, and Chat holds the last rows.
fn assert_final_state(input: &Input, sim: &SimHandle, journal: &Path, failures: &Path) {
    let journal = journal_lines(journal);
    let failed = failure_lines(failures);
    let all: HashSet<u64> = input
        .ok_lines
        .keys()
        .chain(input.failed_lines.keys())
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
        "Chat holds each user's last row"
    );
    assert_eq!(sim.stats().max_in_flight_per_user, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_resume_repeatedly_loses_nothing_and_resends_at_most_the_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), 1800, 300);
    let sim = SimHandle::start(sim_config(&input)).await.unwrap();
    sim.set_faults(Faults {
        p_40006: 0.1,
        max_streak_per_user: 2,
        ..Faults::default()
    });
    let journal = dir.path().join("users.journal");
    let failures = dir.path().join("users.failures.csv");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut excess_before = 0i64;
    let mut kills = 0;
    for round in 0..6 {
        let mut command = import_command(&input, &sim, &["--resume"]);
        let mut child = command.spawn().unwrap();
        let wait = Duration::from_millis(rng.random_range(300..1500));
        tokio::time::sleep(wait).await;
        // On a loaded machine the binary may not have reached its journal yet: the kill is
        // meant to land mid-run, so it waits for the journal (the random wait still applies).
        while !journal.exists() && child.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        kills += 1;
        // Rows Chat applied but the journal does not have: these are the ones a resume sends
        // again. A kill can add at most the requests in flight, i.e. the concurrency.
        let ok_journalled = journal_lines(&journal)
            .values()
            .filter(|s| *s == "ok")
            .count() as i64;
        let excess = sim.stats().applied as i64 - ok_journalled;
        assert!(
            excess - excess_before <= 16,
            "round {round}: {} unjournalled applications after one kill",
            excess - excess_before
        );
        eprintln!(
            "kill {kills} after {wait:?}: journal ok {ok_journalled}, applied {}, re-sends from this kill <= {}",
            sim.stats().applied,
            excess - excess_before
        );
        excess_before = excess;
    }
    assert!(
        kills >= 5,
        "the file finished too fast to be killed 5 times"
    );
    let output = import_command(&input, &sim, &["--resume"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "finished with failed rows: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_final_state(&input, &sim, &journal, &failures);
    let stats = sim.stats();
    let resent = stats.applied as i64 - input.ok_lines.len() as i64;
    eprintln!(
        "{kills} kills, {resent} re-sends in all, {} requests",
        stats.requests
    );
    assert!(resent <= 16 * kills as i64);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_a_changed_input_unless_forced_and_cron_can_always_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), 300, 100);
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
    let mut text = std::fs::read_to_string(&input.path).unwrap();
    text.push_str("user_0001,Changed,5\n");
    std::fs::write(&input.path, text).unwrap();
    let refused = import_command(&input, &sim, &["--resume"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("input changed"));
    let forced = import_command(&input, &sim, &["--resume", "--force"])
        .output()
        .unwrap();
    assert_eq!(
        forced.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    // The journal of a finished run does not block a run over new input.
    let mut text = std::fs::read_to_string(&input.path).unwrap();
    text.push_str("user_0002,Next night,6\n");
    std::fs::write(&input.path, text).unwrap();
    let next = import_command(&input, &sim, &["--resume"])
        .output()
        .unwrap();
    assert_eq!(
        next.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
}

/// The in-process pipeline under one fault mix; returns the summary.
async fn run_with_faults(
    input: &Input,
    dir: &Path,
    faults: Faults,
    fatal_after: Option<u64>,
) -> profile_import::run::summary::Summary {
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
        },
        allow_bar: false,
        quiet: true,
        progress_interval: Duration::from_secs(3600),
        max_errors: None,
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
    summary
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
        let summary = run_with_faults(&input, dir.path(), faults, None).await;
        eprintln!(
            "{name}: rows {} ok {} failed {} invalid {} retries {}",
            summary.rows, summary.ok, summary.failed, summary.invalid, summary.retries
        );
        assert_eq!(summary.not_attempted, 0, "{name}");
    }
    // A fatal error mid-run: the rest is not attempted, and still every row is accounted for.
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), 2000, 300);
    let summary = run_with_faults(&input, dir.path(), Faults::default(), Some(100)).await;
    assert!(summary.not_attempted > 1000, "{summary}");
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
            + json["invalid"].as_u64().unwrap(),
        1200
    );
    assert_eq!(json["not_attempted"], 0);
    assert!(json["journal"].is_null());
}
