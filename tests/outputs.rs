//! A run's files: an output that is the input, or another output, by any name, is refused
//! before anything is read or written; locks are the operating system's and die with their
//! process; and a verify or check-accounts stopped by a signal reports what it did and leaves
//! whole files.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::{exec, read_csv, signalled_after, write_csv, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "outputs-key-3f9a";

fn sim_config() -> SimConfig {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config
}

fn tool(ws: &Workspace, sim: &SimHandle, args: &[&str]) -> Command {
    let mut command = crate::util::tool_command();
    command
        .current_dir(ws.dir())
        .args(args)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .stdin(Stdio::null());
    command
}

/// `verify u.csv --diff u.csv` deleted the input before sending anything, `check-accounts
/// --output u.csv` cut it to its header, `--summary-json u.csv` and `--plan u.csv` overwrote
/// it, and a hard link of the input passed as `--failures` got past the old check. Each is now
/// a usage error (exit 2) before anything is read, sent or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_is_the_input_or_another_output_is_refused_with_exit_2() {
    let ws = Workspace::new();
    let input = "UserID,Nick\nu1,Ann\nu2,Bob\n";
    ws.write("u.csv", input);
    std::fs::hard_link(ws.path("u.csv"), ws.path("hard.csv")).unwrap();
    std::os::unix::fs::symlink(ws.path("u.csv"), ws.path("link.csv")).unwrap();
    let sim = SimHandle::start(sim_config()).await.unwrap();
    let cases: [(&[&str], &str); 12] = [
        (
            &["verify", "u.csv", "--diff", "u.csv"],
            "--diff u.csv is the input",
        ),
        (
            &["check-accounts", "u.csv", "--output", "u.csv"],
            "--output u.csv is the input",
        ),
        (
            &["import", "u.csv", "--summary-json", "u.csv"],
            "--summary-json u.csv is the input",
        ),
        (
            &[
                "import",
                "u.csv",
                "--dry-run",
                "--changes-only",
                "--plan",
                "u.csv",
            ],
            "--plan u.csv is the input",
        ),
        (
            &["import", "u.csv", "--failures", "hard.csv"],
            "--failures hard.csv is the input",
        ),
        (
            &["import", "u.csv", "--failures", "./u.csv"],
            "--failures ./u.csv is the input",
        ),
        (
            &["import", "u.csv", "--journal", "link.csv"],
            "--journal link.csv is the input",
        ),
        (
            &["import", "u.csv", "--state", "hard.csv"],
            "--state hard.csv is the input",
        ),
        (
            &["import", "u.csv", "--dry-run", "--failures", "link.csv"],
            "--failures link.csv is the input",
        ),
        (
            &[
                "import",
                "u.csv",
                "--failures",
                "f.csv",
                "--journal",
                "./f.csv",
            ],
            "--failures f.csv and --journal ./f.csv are the same file",
        ),
        (
            &[
                "import",
                "u.csv",
                "--dry-run",
                "--changes-only",
                "--plan",
                "x.json",
                "--summary-json",
                "x.json",
            ],
            "are the same file",
        ),
        (
            &["verify", "u.csv", "--diff", "d.csv", "--failures", "d.csv"],
            "are the same file",
        ),
    ];
    for (args, message) in cases {
        let run = exec(tool(&ws, &sim, args)).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
        assert_eq!(std::fs::read_to_string(ws.path("u.csv")).unwrap(), input);
    }
    assert_eq!(sim.stats().requests, 0, "nothing was sent or read");
    let mut left: Vec<String> = std::fs::read_dir(ws.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["hard.csv", "link.csv", "u.csv"],
        "nothing was written"
    );
}

/// A lock file left by a run the OOM killer or a reboot ended, naming a pid that now belongs
/// to another live process, used to block every later run with exit 4. The lock is the
/// operating system's now: the file's pid does not matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_file_naming_a_live_pid_does_not_block_a_run() {
    let ws = Workspace::new();
    ws.write("u.csv", "UserID,Nick\nu1,Ann\n");
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    for lock in ["u.journal.lock", "u.failures.csv.lock"] {
        ws.write(lock, format!("{}\n", other.id()));
    }
    let sim = SimHandle::start(sim_config()).await.unwrap();
    let run = exec(tool(&ws, &sim, &["import", "u.csv", "--no-progress"])).await;
    other.kill().unwrap();
    let _ = other.wait();
    run.assert_code(0);
    assert!(
        !ws.path("u.journal.lock").exists(),
        "the run removed its lock"
    );
    assert_eq!(sim.stats().requests, 1);
}

fn big_file(ws: &Workspace, users: usize) {
    let rows: Vec<Vec<String>> = (0..users)
        .map(|i| vec![format!("user_{i:05}"), format!("Nick {i}")])
        .collect();
    write_csv(&ws.path("u.csv"), &["UserID", "Nick"], &rows);
}

/// Ctrl-C on verify used to leave no summary and no JSON, and a diff CSV cut mid-record. Now the
/// reads stop, the summary says how far it got, the JSON has the signal's exit code, and the
/// diff CSV holds whole records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_verify_reports_and_leaves_a_whole_diff_csv() {
    let ws = Workspace::new();
    big_file(&ws, 20_000);
    let mut config = sim_config();
    config.latency_min = Duration::from_millis(20);
    config.latency_max = Duration::from_millis(40);
    let sim = SimHandle::start(config).await.unwrap();
    // Nothing is in Chat: every value differs, so the diff grows with every read.
    let verify = tool(
        &ws,
        &sim,
        &[
            "verify",
            "u.csv",
            "--rate",
            "20",
            "--summary-json",
            "v.json",
        ],
    );
    let run = signalled_after(verify, &sim, 10, "-INT").await;
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert!(
        run.line("stopped early").contains("interrupted"),
        "{}",
        run.stderr
    );
    let json: Value = serde_json::from_slice(&std::fs::read(ws.path("v.json")).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 130);
    assert!(json["stopped"].as_str().unwrap().contains("interrupted"));
    let diff = read_csv(&ws.path("u.diff.csv"));
    assert_eq!(diff[0], ["UserID", "Tag", "Expected", "Actual"]);
    let users = diff.len() as u64 - 1;
    assert!(users > 0 && users < 20_000, "{users} differences");
    assert!(diff.iter().all(|row| row.len() == 4));
    assert_eq!(json["differences"], users, "{json}");
    assert!(!ws.path(".u.diff.csv.tmp").exists());
}

/// SIGTERM on check-accounts used to leave a 0-byte missing-accounts list that looked real and
/// no summary. Now it reports how many users it checked, and the list holds whole records of
/// the users found missing so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_check_accounts_reports_and_leaves_a_whole_list() {
    let ws = Workspace::new();
    big_file(&ws, 20_000);
    let mut config = sim_config();
    config.accounts = Some(HashSet::new());
    config.latency_min = Duration::from_millis(20);
    config.latency_max = Duration::from_millis(40);
    let sim = SimHandle::start(config).await.unwrap();
    let check = tool(
        &ws,
        &sim,
        &[
            "check-accounts",
            "u.csv",
            "--rate",
            "20",
            "--summary-json",
            "c.json",
        ],
    );
    let run = signalled_after(check, &sim, 10, "-TERM").await;
    assert_eq!(run.code, 143, "{}", run.stderr);
    let checked = run.count("users checked");
    assert!(checked > 0 && checked < 20_000, "{}", run.stderr);
    assert!(
        run.line("stopped early").contains("interrupted"),
        "{}",
        run.stderr
    );
    let json: Value = serde_json::from_slice(&std::fs::read(ws.path("c.json")).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 143);
    assert_eq!(json["users_checked"], checked);
    let list = read_csv(&ws.path("u.missing-accounts.csv"));
    assert_eq!(list[0], ["UserID"]);
    assert_eq!(
        list.len() as u64 - 1,
        checked,
        "every user checked is missing here"
    );
}
