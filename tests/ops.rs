//! Operations edges (issue 11): locks over every output, closed pipes, rows left by a job-wide
//! stop, verify on invalid rows, the cron recipe with a regenerated export, progress and log
//! output, and connection failures. Each test runs the real binary against its own in-process
//! simulator on a port-0 loopback listener, in its own directory.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{Faults, SimConfig, SimHandle};

use crate::util::{bin, read_failures, sample, Run, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "ops-test-key-4b2e91";

// ── helpers ────────────────────────────────────────────────────────────────────────────────

/// `UserID,Nick` with `rows` users `user_00000` …; users listed by `bad_id` get an invalid ID.
fn users_csv(ws: &Workspace, name: &str, rows: usize, bad_id: impl Fn(usize) -> bool) -> PathBuf {
    let path = ws.path(name);
    let mut writer = csv::Writer::from_path(&path).unwrap();
    writer.write_record(["UserID", "Nick"]).unwrap();
    for i in 0..rows {
        let user = if bad_id(i) {
            format!("bad user {i}!")
        } else {
            format!("user_{i:05}")
        };
        writer.write_record([user, format!("Nick {i}")]).unwrap();
    }
    writer.flush().unwrap();
    path
}

/// A simulator without rate limit; `known`: the users that are Chat accounts (None: all).
async fn simulator(known: Option<Vec<String>>) -> SimHandle {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config.accounts = known.map(|users| users.into_iter().collect());
    SimHandle::start(config).await.unwrap()
}

/// Users `user_00000` … of the even rows of [`users_csv`].
fn even_users(rows: usize) -> Vec<String> {
    (0..rows)
        .step_by(2)
        .map(|i| format!("user_{i:05}"))
        .collect()
}

/// The binary in `dir` with a clean environment and the simulator's key.
fn command<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Command {
    let mut command = Command::new(bin());
    command.args(args).current_dir(dir).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("NO_COLOR", "1")
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .stdin(Stdio::null());
    command
}

/// `import CSV --sdkappid APP --endpoint URL` + `extra`.
fn import(dir: &Path, csv: &Path, url: &str, extra: &[&str]) -> Command {
    import_as(dir, csv, &APP.to_string(), url, extra)
}

/// [`import`] with another SDKAppID.
fn import_as(dir: &Path, csv: &Path, sdkappid: &str, url: &str, extra: &[&str]) -> Command {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("import"),
        csv.as_os_str(),
        OsStr::new("--sdkappid"),
        OsStr::new(sdkappid),
        OsStr::new("--endpoint"),
        OsStr::new(url),
    ];
    args.extend(extra.iter().map(OsStr::new));
    command(dir, &args)
}

/// Runs a command to its end on a blocking thread, so the simulator keeps being served.
async fn run(mut command: Command) -> Run {
    tokio::task::spawn_blocking(move || {
        let output = command.output().expect("run the binary");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// A running binary, killed if the test fails before it ends.
struct Running(Option<Child>);

impl Running {
    fn start(command: &mut Command) -> Running {
        Running(Some(command.spawn().expect("start the binary")))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("still running")
    }

    fn take(mut self) -> Child {
        self.0.take().expect("still running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (at most 20 s) until the simulator has seen `requests` requests.
async fn until_requests(sim: &SimHandle, requests: u64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.stats().requests < requests {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended too early"
        );
        assert!(Instant::now() < deadline, "the import never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for a spawned child (at most 60 s) and collects its output.
async fn finish(child: Child) -> Run {
    let pid = child.id().to_string();
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    match tokio::time::timeout(Duration::from_secs(60), waiter).await {
        Ok(output) => {
            let output = output.unwrap();
            Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the binary did not end within 60 s");
        }
    }
}

/// The journal's final rows: input line → state; each line at most once.
fn journal_rows(path: &Path) -> HashMap<u64, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = HashMap::new();
    for entry in text.lines().filter(|l| l.starts_with("r ")) {
        let fields: Vec<&str> = entry.split(' ').collect();
        let line: u64 = fields[2].parse().unwrap();
        let state = format!("{} {}", fields[4], fields[5]);
        assert!(
            rows.insert(line, state).is_none(),
            "line {line} journalled twice"
        );
    }
    rows
}

/// The failure CSV's rows: input line → code; each line at most once; empty if there is none.
fn failure_lines(path: &Path) -> BTreeMap<u64, String> {
    if !path.exists() {
        return BTreeMap::new();
    }
    let mut lines = BTreeMap::new();
    for row in read_failures(path).1 {
        assert!(
            lines.insert(row.line, row.code).is_none(),
            "line {} twice in the failure CSV",
            row.line
        );
    }
    lines
}

/// Asserts that no `usersig=` in `text` is followed by a signature.
#[track_caller]
fn assert_no_usersig(text: &str) {
    for (at, _) in text.match_indices("usersig=") {
        assert!(
            text[at + "usersig=".len()..].starts_with("<redacted>"),
            "a UserSig leaked: {}",
            &text[at..(at + 60).min(text.len())]
        );
    }
}

// ── 1. the lock covers every output ────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_import_or_a_dry_run_onto_its_failure_csv_beside_a_running_import_stops_with_exit_4_and_no_failure_row_is_lost(
) {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "race.csv", 2000, |_| false);
    // Half the users are not accounts: 1,000 rows fail with 40003 into race.failures.csv.
    let sim = simulator(Some(even_users(2000))).await;
    let mut first = Running::start(
        import(ws.dir(), &csv, &sim.url(), &["--rate", "200", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    until_requests(&sim, 150, first.child()).await;
    let holder = format!("pid {}", first.child().id());

    // A dry run told to write the import's failure CSV is refused by its lock.
    let dry = run(command(
        ws.dir(),
        &[
            "import",
            "race.csv",
            "--dry-run",
            "--failures",
            "race.failures.csv",
        ],
    ))
    .await;
    dry.assert_code(4);
    assert!(dry.stderr.contains(&holder), "{}", dry.stderr);
    assert!(dry.stderr.contains("race.failures.csv"), "{}", dry.stderr);

    let second = run(import(
        ws.dir(),
        &csv,
        &sim.url(),
        &["--journal", "other.journal", "--no-progress"],
    ))
    .await;
    second.assert_code(4);
    assert!(second.stderr.contains(&holder), "{}", second.stderr);
    assert!(
        !ws.path("other.journal").exists(),
        "the refused run wrote nothing"
    );

    // A plain dry run has a failure CSV of its own, so it runs beside the import.
    let beside = run(command(ws.dir(), &["import", "race.csv", "--dry-run"])).await;
    beside.assert_code(0);
    assert!(!ws.path("race.dry-run-failures.csv").exists());

    assert!(
        first.child().try_wait().unwrap().is_none(),
        "the checks above ran while the import held its lock"
    );
    let first = finish(first.take()).await;
    first.assert_code(3);
    let failed = failure_lines(&ws.path("race.failures.csv"));
    let expected: Vec<u64> = (0..2000u64).filter(|i| i % 2 == 1).map(|i| i + 2).collect();
    assert_eq!(failed.keys().copied().collect::<Vec<_>>(), expected);
    assert!(failed.values().all(|code| code == "40003"));
}

#[test]
fn a_clean_dry_run_creates_no_file_so_it_works_where_it_cannot_write() {
    let ws = Workspace::new();
    users_csv(&ws, "users.csv", 50, |_| false);
    // The failure CSV's directory does not exist: a clean run never needs it.
    let run = crate::util::run_in(
        ws.dir(),
        [
            "import",
            "users.csv",
            "--dry-run",
            "--failures",
            "no-such-dir/f.csv",
        ],
    );
    run.assert_code(0);
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listing(ws.dir()), ["users.csv"]);

    // A read-only directory (meaningful when the tests do not run as root).
    use std::os::unix::fs::PermissionsExt;
    let dir = ws.path("ro");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(ws.path("users.csv"), dir.join("users.csv")).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let run = crate::util::run_in(&dir, ["import", "users.csv", "--dry-run"]);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    run.assert_code(0);
    assert_eq!(listing(&dir), ["users.csv"]);
}

// ── 2. a closed stdout or stderr ───────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_stops_an_import_cleanly_with_exit_141_and_resume_finishes_it() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 1500, |_| false);
    let sim = simulator(Some(even_users(1500))).await;
    // `import … 2>&1 | head -3`: the reader takes three lines and goes away.
    let mut child = Running::start(
        import(
            ws.dir(),
            &csv,
            &sim.url(),
            &[
                "--rate",
                "200",
                "--progress-interval",
                "1",
                "--summary-json",
                "run.json",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    );
    let stderr = child.child().stderr.take().unwrap();
    let head = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        (0..3).filter_map(|_| lines.next()?.ok()).count()
    })
    .await
    .unwrap();
    assert_eq!(head, 3);
    let closed = finish(child.take()).await;
    assert_eq!(closed.code, 141, "a closed stderr ends the run with 141");
    // The summary JSON says the status the process ended with (it said 0).
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("run.json")).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 141, "{json}");

    let journal = journal_rows(&ws.path("users.journal"));
    assert!(journal.len() < 1500, "the run stopped early");
    let failed = failure_lines(&ws.path("users.failures.csv"));
    let journalled_failed: Vec<u64> = {
        let mut lines: Vec<u64> = journal
            .iter()
            .filter(|(_, state)| state.starts_with("failed"))
            .map(|(line, _)| *line)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        failed.keys().copied().collect::<Vec<_>>(),
        journalled_failed,
        "the failure CSV and the journal agree"
    );

    let resumed = run(import(
        ws.dir(),
        &csv,
        &sim.url(),
        &["--resume", "--no-progress"],
    ))
    .await;
    resumed.assert_code(3);
    assert_eq!(resumed.count("ok"), 750, "{}", resumed.stderr);
    assert_eq!(failure_lines(&ws.path("users.failures.csv")).len(), 750);
    assert_eq!(sim.profiles().len(), 750);
}

#[test]
fn a_dry_run_whose_stdout_and_stderr_are_closed_finishes_its_failure_csv_and_exits_141() {
    let ws = Workspace::new();
    std::fs::copy(sample("users-with-errors.csv"), ws.path("e.csv")).unwrap();
    let mut child = command(
        ws.dir(),
        &["import", "e.csv", "--dry-run", "--show-requests", "3"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // `… | head -0`: both readers are gone before the first line.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141));
    assert_eq!(failure_lines(&ws.path("e.dry-run-failures.csv")).len(), 15);
}

// ── 3. rows failed by a job-wide stop are sent again ──────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stopped_by_a_wrong_sdkappid_stay_pending_and_resume_sends_them() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 400, |_| false);
    let sim = simulator(None).await;
    let wrong = import_as(ws.dir(), &csv, "1400000001", &sim.url(), &["--no-progress"]);
    let stopped = run(wrong).await;
    stopped.assert_code(1);
    assert!(stopped.stderr.contains("60006"), "{}", stopped.stderr);
    assert_eq!(stopped.count("failed"), 0, "{}", stopped.stderr);
    assert_eq!(stopped.count("not attempted"), 400, "{}", stopped.stderr);
    assert!(failure_lines(&ws.path("users.failures.csv")).is_empty());

    resume_sends_every_row(&ws, &csv, &sim, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_cut_off_when_chat_stops_answering_stay_pending_and_resume_sends_them() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 1500, |_| false);
    let sim = simulator(None).await;
    let mut child = Running::start(
        import(
            ws.dir(),
            &csv,
            &sim.url(),
            &[
                "--rate",
                "300",
                "--concurrency",
                "64",
                "--max-attempts",
                "2",
                "--no-progress",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    );
    until_requests(&sim, 100, child.child()).await;
    // Every connection is now reset without an answer.
    sim.set_faults(Faults {
        p_reset: 1.0,
        ..Faults::default()
    });
    let stopped = finish(child.take()).await;
    stopped.assert_code(1);
    assert!(stopped.stderr.contains("unreachable"), "{}", stopped.stderr);
    assert_eq!(stopped.count("failed"), 0, "{}", stopped.stderr);
    assert!(failure_lines(&ws.path("users.failures.csv")).is_empty());
    let journal = journal_rows(&ws.path("users.journal"));
    assert!(journal.values().all(|state| state.starts_with("ok")));

    sim.set_faults(Faults::default());
    resume_sends_every_row(&ws, &csv, &sim, 1500).await;
}

/// `--resume` after a job-wide stop: every row is sent and ends ok, none is counted as an
/// earlier run's failure, and no failure CSV is left.
async fn resume_sends_every_row(ws: &Workspace, csv: &Path, sim: &SimHandle, rows: u64) {
    let resumed = run(import(
        ws.dir(),
        csv,
        &sim.url(),
        &["--resume", "--no-progress"],
    ))
    .await;
    resumed.assert_code(0);
    assert!(
        !resumed.stderr.contains("earlier run"),
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.count("ok"), rows);
    assert_eq!(sim.profiles().len() as u64, rows);
    assert!(!ws.path("users.failures.csv").exists());
}

// ── 4. verify does not pass rows it did not check ─────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_invalid_rows_as_not_checked_in_a_failure_csv_and_exits_3() {
    let ws = Workspace::new();
    let csv = ws.path("e.csv");
    std::fs::copy(sample("users-with-errors.csv"), &csv).unwrap();
    let sim = simulator(None).await;
    run(import(ws.dir(), &csv, &sim.url(), &["--no-progress"]))
        .await
        .assert_code(3);
    let dry = run(command(
        ws.dir(),
        &["import", "e.csv", "--dry-run", "--failures", "dry.csv"],
    ))
    .await;
    dry.assert_code(3);
    let import_failures = std::fs::read(ws.path("e.failures.csv")).unwrap();

    let mut verify = command(
        ws.dir(),
        &[
            "verify",
            "e.csv",
            "--sdkappid",
            "1400000000",
            "--endpoint",
            &sim.url(),
        ],
    );
    verify.stdout(Stdio::piped()).stderr(Stdio::piped());
    let verified = run(verify).await;
    verified.assert_code(3);
    assert_eq!(verified.count("differences"), 0, "{}", verified.stderr);
    assert_eq!(verified.count("not checked"), 15, "{}", verified.stderr);
    let written = failure_lines(&ws.path("e.verify-failures.csv"));
    assert_eq!(written, failure_lines(&ws.path("dry.csv")));
    assert_eq!(written.len(), 15);
    // verify has a failure CSV of its own: the import's is left as it was.
    assert_eq!(
        std::fs::read(ws.path("e.failures.csv")).unwrap(),
        import_failures
    );
}

// ── 5. the cron recipe and a regenerated export ────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_state_a_journal_for_a_changed_export_is_set_aside_and_the_run_starts_fresh() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 1200, |_| false);
    let sim = simulator(None).await;
    let cron = [
        "--resume",
        "--state",
        "state.db",
        "--rate",
        "200",
        "--no-progress",
    ];
    // Night 1 is stopped part way (SIGTERM: what Chat accepted is in the state).
    let mut night = Running::start(
        import(ws.dir(), &csv, &sim.url(), &cron)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    until_requests(&sim, 150, night.child()).await;
    let pid = night.child().id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(finish(night.take()).await.code, 143);
    let journal = ws.path("users.journal");
    let unfinished = std::fs::read(&journal).unwrap();

    // Night 2: the export is regenerated with one more user.
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("user_09999,Newcomer\n");
    std::fs::write(&csv, text).unwrap();

    // Without --state the tool cannot know what Chat holds: it refuses and says what to do.
    let refused = run(import(
        ws.dir(),
        &csv,
        &sim.url(),
        &["--resume", "--no-progress"],
    ))
    .await;
    refused.assert_code(1);
    for advice in ["without --resume", "--force", "--state"] {
        assert!(refused.stderr.contains(advice), "{}", refused.stderr);
    }
    assert_eq!(std::fs::read(&journal).unwrap(), unfinished);

    let fresh = run(import(ws.dir(), &csv, &sim.url(), &cron)).await;
    fresh.assert_code(0);
    assert!(fresh.stderr.contains("set aside"), "{}", fresh.stderr);
    assert!(fresh.count("unchanged") >= 150, "{}", fresh.stderr);
    assert_eq!(sim.profiles().len(), 1201);
    let aside: Vec<PathBuf> = std::fs::read_dir(ws.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("users.journal.set-aside-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        unfinished,
        "renamed, not deleted"
    );
    assert!(std::fs::read_to_string(&journal)
        .unwrap()
        .ends_with("done\n"));
}

/// One set-aside journal per broken night would pile up: only the newest 5 are kept, and the
/// run says which it removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_five_set_aside_journals_are_kept() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 20, |_| false);
    let sim = simulator(None).await;
    // Six earlier broken nights, and tonight's unfinished journal of another export.
    let nights: Vec<String> = (1..=6)
        .map(|day| format!("users.journal.set-aside-2020-01-0{day}T023000Z"))
        .collect();
    for night in &nights {
        ws.write(night, "profile-import journal v1 size=1 xxh3=00\n");
    }
    ws.write(
        "users.journal",
        "profile-import journal v1 size=1 xxh3=00\n",
    );
    let run = run(import(
        ws.dir(),
        &csv,
        &sim.url(),
        &["--resume", "--state", "state.db", "--no-progress"],
    ))
    .await;
    run.assert_code(0);
    assert!(run.stderr.contains("set aside"), "{}", run.stderr);
    let mut aside: Vec<String> = std::fs::read_dir(ws.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("users.journal.set-aside-"))
        .collect();
    aside.sort();
    assert_eq!(aside.len(), 5, "{aside:?}");
    assert_eq!(aside[..4], nights[2..], "the two oldest are removed");
    assert!(
        !aside[4].starts_with("users.journal.set-aside-2020"),
        "tonight's is kept"
    );
    let removed = run.line(" WARN removed 2 older set-aside copies of users.journal");
    assert!(removed.contains("keeping the newest 5"), "{removed}");
    for night in &nights[..2] {
        assert!(removed.contains(night.as_str()), "{removed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_resume_over_an_unfinished_journal_warns_that_it_starts_over() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 1000, |_| false);
    let sim = simulator(None).await;
    let mut first = Running::start(
        import(
            ws.dir(),
            &csv,
            &sim.url(),
            &["--rate", "200", "--no-progress"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    );
    until_requests(&sim, 100, first.child()).await;
    drop(first); // SIGKILL
    let again = run(import(ws.dir(), &csv, &sim.url(), &["--no-progress"])).await;
    again.assert_code(0);
    assert!(again.stderr.contains("unfinished run"), "{}", again.stderr);
    assert!(again.stderr.contains("starts over"), "{}", again.stderr);
    // A finished journal gives no such warning.
    let third = run(import(ws.dir(), &csv, &sim.url(), &["--no-progress"])).await;
    third.assert_code(0);
    assert!(!third.stderr.contains("unfinished run"), "{}", third.stderr);
}

// ── 9. progress and logs ───────────────────────────────────────────────────────────────────

/// 800 rows, every 100th from the 8th with an invalid UserID: 792 ok, 8 invalid, no failure.
async fn progress_run(extra: &[&str]) -> Run {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 800, |i| i % 100 == 7);
    let sim = simulator(None).await;
    let mut args = vec!["--rate", "200", "--progress-interval", "1"];
    args.extend_from_slice(extra);
    let done = run(import(ws.dir(), &csv, &sim.url(), &args)).await;
    done.assert_code(3);
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_turns_the_progress_lines_off_too() {
    // stderr is a pipe here, as under cron: lines, not a bar, are what it would get.
    let done = progress_run(&["--no-progress"]).await;
    assert_eq!(done.count("ok"), 792, "{}", done.stderr);
    assert!(!done.stderr.contains(" progress: "), "{}", done.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_carry_the_summary_counts_a_timestamp_and_an_eta() {
    let done = progress_run(&[]).await;
    assert_eq!(done.count("invalid"), 8);
    assert_eq!(done.count("failed"), 0);
    let lines: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| l.contains(" progress: "))
        .collect();
    assert!(lines.len() >= 2, "{}", done.stderr);
    for line in &lines {
        let (stamp, rest) = line.split_once(" progress: ").unwrap();
        let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
        assert!(
            stamp.len() == 20 && stamp.ends_with('Z') && digits.len() == 14,
            "no UTC timestamp: {line}"
        );
        assert!(
            rest.contains("  failed 0  "),
            "failed counts only failures: {line}"
        );
        assert!(rest.contains("  invalid "), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("  ETA ")),
        "{}",
        done.stderr
    );
}

/// `--log-format json`: one schema for every stderr line. Each is an object whose first keys
/// are `timestamp` (UTC to the millisecond), `level`, `type` (`log`, `progress`, `summary`) and
/// `message`; a row warning carries `line` and `column` as fields. Before, warnings nested
/// `fields.message` and had microsecond timestamps and no `type`, while progress and summary
/// lines were flat, with whole-second timestamps and no `message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_gives_every_stderr_line_one_schema() {
    let done = progress_run(&["--log-format", "json"]).await;
    let texts: Vec<&str> = done.stderr.lines().collect();
    let lines: Vec<serde_json::Value> = texts
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let millis = |stamp: &str| {
        let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
        stamp.len() == 24
            && stamp.ends_with('Z')
            && stamp.as_bytes()[19] == b'.'
            && digits.len() == 17
    };
    for (text, line) in texts.iter().zip(&lines) {
        assert!(
            text.starts_with("{\"timestamp\":\"")
                && line["timestamp"].as_str().is_some_and(millis)
                && ["ERROR", "WARN", "INFO"].contains(&line["level"].as_str().unwrap_or(""))
                && ["log", "progress", "summary"].contains(&line["type"].as_str().unwrap_or(""))
                && line["message"].is_string()
                && line.get("fields").is_none(),
            "{text}"
        );
    }
    // The 8 rows with a bad UserID: each warned about with its line and column as fields.
    let warnings: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["type"] == "log" && v["level"] == "WARN" && v.get("line").is_some())
        .collect();
    assert_eq!(warnings.len(), 5, "5 one by one: {}", done.stderr);
    assert!(lines.iter().any(|v| v["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("more rows invalid"))));
    for warning in &warnings {
        let line = warning["line"].as_u64().expect("line is a number");
        assert_eq!(warning["column"], "UserID", "{warning}");
        let message = warning["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("line {line}: ")), "{warning}");
    }
    let progress: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["type"] == "progress").collect();
    assert!(!progress.is_empty(), "{}", done.stderr);
    assert!(progress.iter().all(|p| p["total"] == 800
        && p["failed"] == 0
        && p["message"].as_str().unwrap().starts_with("progress: ")));
    let summaries: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["type"] == "summary").collect();
    assert_eq!(summaries.len(), 1, "{}", done.stderr);
    let summary = summaries[0];
    assert_eq!(summary["ok"], 792);
    assert_eq!(summary["invalid"], 8);
    assert_eq!(summary["exit_code"], 3);
    assert!(summary["timestamp"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_one_code_is_grouped_and_the_summary_suggests_importing_accounts() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 300, |_| false);
    let sim = simulator(Some(Vec::new())).await;
    // The setup-code guard would stop this run at the 20th answer (tests/nightly.rs): off
    // here, to see how a whole run of one code is reported.
    let done = run(import(
        ws.dir(),
        &csv,
        &sim.url(),
        &[
            "--rate",
            "1000",
            "--no-progress",
            "--setup-error-answers",
            "0",
        ],
    ))
    .await;
    done.assert_code(3);
    assert_eq!(done.count("failed"), 300);
    let one_by_one = done.stderr.matches("failed: 40003").count();
    assert!((1..=5).contains(&one_by_one), "{}", done.stderr);
    assert_eq!(
        done.stderr.matches("more rows failed with 40003").count(),
        1,
        "{}",
        done.stderr
    );
    let hint = done.line("hint");
    assert!(
        hint.contains("--create-accounts") && hint.contains("check-accounts"),
        "{hint}"
    );
}

// ── 10. connection failures ────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_before_any_answer_stops_the_job_at_once_naming_the_host() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 30, |_| false);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let done = run(import(ws.dir(), &csv, &url, &["--no-progress"])).await;
    done.assert_code(1);
    assert!(
        done.line("stopped early")
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        done.stderr
    );
    assert_eq!(done.count("not attempted"), 30, "{}", done.stderr);
    assert_eq!(done.count("failed"), 0, "{}", done.stderr);
    // No retries: every row was tried at most once.
    assert!(done.count("requests") <= 30, "{}", done.stderr);
    assert_no_usersig(&done.stderr);
    assert!(!ws.path("users.failures.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_going_away_mid_run_stops_the_job_and_a_resume_sends_every_row_left() {
    let ws = Workspace::new();
    let csv = users_csv(&ws, "users.csv", 1500, |_| false);
    let first_sim = simulator(None).await;
    let mut child = Running::start(
        import(
            ws.dir(),
            &csv,
            &first_sim.url(),
            &["--rate", "300", "--max-attempts", "2", "--no-progress"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    );
    until_requests(&first_sim, 100, child.child()).await;
    first_sim.shutdown();
    let stopped = finish(child.take()).await;
    stopped.assert_code(1);
    let host = first_sim.url().trim_start_matches("http://").to_string();
    assert!(
        stopped.line("stopped early").contains(&host),
        "{}",
        stopped.stderr
    );
    assert_eq!(stopped.count("failed"), 0, "{}", stopped.stderr);
    assert_no_usersig(&stopped.stderr);
    let ok_before = stopped.count("ok") as usize;
    assert!(ok_before > 0 && ok_before <= first_sim.profiles().len());

    let second_sim = simulator(None).await;
    let resumed = run(import(
        ws.dir(),
        &csv,
        &second_sim.url(),
        &["--resume", "--no-progress"],
    ))
    .await;
    resumed.assert_code(0);
    assert_eq!(resumed.count("ok"), 1500);
    assert_eq!(second_sim.profiles().len(), 1500 - ok_before);
}
