//! Signals (README "Progress, logs and the summary"): SIGINT while sending stops dispatching,
//! lets requests in flight finish and exits 130; a second signal exits at once and leaves a
//! journal that `--resume` continues from; a stop cancels a backoff sleep and leaves that row
//! pending for the next run. (SIGTERM while sending is in `send.rs`, a signal during the
//! account pass in `accounts.rs`.)

use std::sync::Arc;
use std::time::Duration;

use profile_import::chat::client::{ChatClient, ClientTuning};
use profile_import::chat::retry::RetryPolicy;
use profile_import::chat::usersig::SecretKey;
use profile_import::run::send::{self, SendSettings};
use profile_import::sim::{Faults, SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

use crate::util::fixture::journal_lines;
use crate::util::{
    plain_job, send_signal, signalled_after, sim_connection, tool_command, write_csv, Run, Watched,
    Workspace,
};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "signals-test-key-5c0e";

fn rows(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| vec![format!("user_{i:04}"), format!("Nick {i} ✓")])
        .collect()
}

/// `import users.csv` against `sim`, in the workspace, plus `extra`.
fn import(ws: &Workspace, sim: &SimHandle, extra: &[&str]) -> std::process::Command {
    let mut command = tool_command();
    command
        .current_dir(ws.dir())
        .args(["import", "users.csv", "--no-progress"])
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(extra)
        .env("PROFILE_IMPORT_SECRET_KEY", KEY);
    command
}

async fn run_binary(mut command: std::process::Command) -> Run {
    tokio::task::spawn_blocking(move || Run::from_output(command.output().expect("run")))
        .await
        .expect("the runner thread")
}

/// Asserts that Chat holds `Nick i ✓` for every user of [`rows`]`(n)`.
#[track_caller]
fn assert_all_applied(sim: &SimHandle, n: usize) {
    let profiles = sim.profiles();
    assert_eq!(profiles.len(), n);
    for i in 0..n {
        assert_eq!(
            profiles[&format!("user_{i:04}")]["Tag_Profile_IM_Nick"],
            format!("Nick {i} ✓")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_sending_finishes_rows_in_flight_exits_130_and_resume_completes() {
    let ws = Workspace::new();
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.latency_min = Duration::from_millis(40);
    config.latency_max = Duration::from_millis(60);
    let sim = SimHandle::start(config).await.unwrap();
    write_csv(&ws.path("users.csv"), &["UserID", "Nick"], &rows(2000));

    let run = signalled_after(import(&ws, &sim, &["--rate", "100"]), &sim, 100, "-INT").await;
    run.assert_code(130);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    let ok = run.count("ok");
    let not_attempted = run.count("not attempted");
    assert_eq!(run.count("rows read"), 2000);
    assert_eq!(run.count("failed"), 0, "{}", run.stderr);
    assert_eq!(ok + not_attempted, 2000, "{}", run.stderr);
    assert!(not_attempted >= 1000, "{}", run.stderr);
    // Requests in flight were answered and counted, not abandoned.
    let stats = sim.stats();
    assert_eq!(stats.applied, ok, "{stats}\n{}", run.stderr);
    assert_eq!(stats.requests, ok, "{stats}\n{}", run.stderr);
    assert!(
        run.line("resume with").contains("users.journal"),
        "{}",
        run.stderr
    );

    // --resume sends the rest, and nothing twice.
    let resumed = run_binary(import(&ws, &sim, &["--resume", "--rate", "1000"])).await;
    resumed.assert_code(0);
    assert_eq!(resumed.count("ok"), 2000, "{}", resumed.stderr);
    assert_eq!(sim.stats().applied, 2000);
    assert_all_applied(&sim, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_resume_resends_only_the_rows_in_flight() {
    let ws = Workspace::new();
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    let sim = SimHandle::start(config).await.unwrap();
    write_csv(&ws.path("users.csv"), &["UserID", "Nick"], &rows(600));

    let mut child = Watched::spawn(import(&ws, &sim, &["--rate", "100", "--concurrency", "20"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sim.stats().applied < 50 {
        assert!(std::time::Instant::now() < deadline, "{}", child.stderr());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // From now on Chat applies each row at once but answers only after a minute: the first
    // signal would wait for those answers.
    sim.set_faults(Faults {
        p_slow: 1.0,
        slow: Duration::from_secs(60),
        ..Faults::default()
    });
    let slow_from = sim.stats().requests;
    while sim.stats().requests < slow_from + 10 {
        assert!(std::time::Instant::now() < deadline, "{}", child.stderr());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    send_signal(child.pid(), "-INT");
    child.wait_for_line("stopping:", Duration::from_secs(20));
    send_signal(child.pid(), "-INT");
    let (code, took) = child.wait(Duration::from_secs(30));
    let stderr = child.stderr();
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("second signal: exiting now"), "{stderr}");
    assert!(
        took < Duration::from_secs(20),
        "exited {took:?} after the second signal, as if it waited for the slow answers"
    );

    // The journal holds only rows Chat answered; the rows in flight are not in it. --resume
    // sends exactly the rows the journal lacks and ends with every profile in Chat.
    let journal = journal_lines(&ws.path("users.journal"));
    assert!(journal.values().all(|state| state == "ok"), "{journal:?}");
    assert!(
        journal.len() >= 50 && journal.len() < 600,
        "{}",
        journal.len()
    );
    let applied_at_exit = sim.stats().applied;
    let in_flight = applied_at_exit - journal.len() as u64;
    assert!(
        (10..=20).contains(&in_flight),
        "{in_flight} rows applied but unconfirmed; at most --concurrency"
    );
    sim.set_faults(Faults::default());
    let before = sim.stats().requests;
    let resumed = run_binary(import(&ws, &sim, &["--resume", "--rate", "1000"])).await;
    resumed.assert_code(0);
    assert_eq!(
        sim.stats().requests - before,
        600 - journal.len() as u64,
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.count("ok"), 600, "{}", resumed.stderr);
    assert_all_applied(&sim, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_cancels_backoff_sleeps_and_leaves_those_rows_pending() {
    let ws = Workspace::new();
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    // Every answer is the transient 40006, so every row is always either being sent or
    // waiting out its backoff (an hour's window: a whole run could not wait it out).
    config.faults = Faults {
        p_40006: 1.0,
        ..Faults::default()
    };
    let sim = SimHandle::start(config).await.unwrap();
    let csv = ws.path("users.csv");
    write_csv(&csv, &["UserID", "Nick"], &rows(5));
    let (failures, journal) = (ws.path("users.failures.csv"), ws.path("users.journal"));
    let settings = SendSettings {
        rate: 200,
        concurrency: 8,
        retry: RetryPolicy {
            max_attempts: 1000,
            base_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            ..RetryPolicy::default()
        },
        show_progress: false,
        quiet: true,
        progress_interval: Duration::from_secs(3600),
        max_errors: None,
        read_rate: 200,
        live: Default::default(),
    };
    let connection = sim_connection(&sim.url(), APP, ADMIN, KEY);
    let client = Arc::new(ChatClient::new(connection, ClientTuning::default()).unwrap());
    let stop = CancellationToken::new();
    let job = plain_job(&csv, failures.clone(), journal.clone());
    let run = tokio::spawn({
        let (client, stop, settings) = (client.clone(), stop.clone(), settings.clone());
        async move { send::run(&job, client, settings, stop).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sim.stats().count("40006") < 5 {
        assert!(std::time::Instant::now() < deadline, "{}", sim.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the stop cut the hour-long backoffs short")
        .unwrap()
        .unwrap();
    let s = &report.summary;
    assert!(report.interrupted, "{s}");
    assert!(report.fatal.is_none(), "{s}");
    assert_eq!(
        (s.rows, s.ok, s.failed, s.not_attempted),
        (5, 0, 0, 5),
        "{s}"
    );
    assert!(s.accounted(), "{s}");
    // Pending: neither journalled nor in the failure CSV.
    assert!(journal_lines(&journal).is_empty());
    assert!(!failures.exists(), "a cancelled retry is not a failure");
    assert_eq!(s.journal.as_deref(), Some(journal.as_path()));

    // The next run (--resume) sends them again, and they succeed.
    sim.set_faults(Faults::default());
    let mut job = plain_job(&csv, failures.clone(), journal.clone());
    job.resume = true;
    let report = send::run(&job, client, settings, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.summary.ok, 5, "{}", report.summary);
    assert_all_applied(&sim, 5);
    assert_eq!(journal_lines(&journal).len(), 5);
}
