//! Shared helpers for the integration tests: a private temporary directory per test, running the
//! real binary, and reading the CSV files it writes.
//!
//! Every test builds its own [`Workspace`], and the binary runs with that directory as its
//! working directory, so tests never share a file and can run in parallel.

#![allow(dead_code)]

pub mod fixture;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use profile_import::chat::connection::{parse_endpoint, Connection, Credentials};
use profile_import::chat::usersig::SecretKey;
use profile_import::input::reader::InputOptions;
use profile_import::input::row::RowRules;
use profile_import::run::job::JobInput;
use profile_import::sim::SimHandle;

/// The failure CSV's appended columns, in order (mirrors `header::FAILURE_COLUMNS`).
pub const FAILURE_COLUMNS: [&str; 6] = [
    "_error_code",
    "_error_message",
    "_stage",
    "_attempts",
    "_superseded",
    "_line",
];

/// The built binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_profile-import")
}

/// A file under the crate's `samples/` directory.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
}

/// A temporary directory owned by one test, removed when dropped.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::Builder::new()
                .prefix("profile-import-test-")
                .tempdir()
                .expect("create a temporary directory"),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of `name` inside the workspace (the file need not exist).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `bytes` to `name` in the workspace and returns its path.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write a test file");
        path
    }

    /// Runs the binary with `args`, in this workspace.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_in(self.dir(), args)
    }
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`-1` if the process was killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The run of a finished process.
    pub fn from_output(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.code, expected,
            "unexpected exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "the binary panicked:\n{}",
            self.stderr
        );
        self
    }

    /// A counter from the summary on stderr, e.g. `count("invalid")` for
    /// `invalid                   3`.
    #[track_caller]
    pub fn count(&self, label: &str) -> u64 {
        self.stderr
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix(label)?;
                if !rest.starts_with("  ") {
                    return None;
                }
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no \"{label}\" line in the summary:\n{}", self.stderr))
    }

    /// The first stderr line that starts with `prefix`, e.g. the summary's `duplicate users` line.
    #[track_caller]
    pub fn line(&self, prefix: &str) -> &str {
        self.stderr
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting \"{prefix}\" on stderr:\n{}", self.stderr))
    }

    /// The JSON request bodies printed by `--show-requests`, one per stdout line.
    #[track_caller]
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("stdout line is not JSON ({err}): {line}"))
            })
            .collect()
    }
}

/// Runs the binary with `args` and `dir` as the working directory, with a clean environment
/// for the tool (no RUST_LOG, no PROFILE_IMPORT_* settings, no colours).
pub fn run_in<I, S>(dir: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_in_with_env(dir, args, &[])
}

/// [`run_in`] with `env` set on top of the clean environment.
pub fn run_in_with_env<I, S>(dir: &Path, args: I, env: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = tool_command();
    command.args(args).current_dir(dir);
    command.envs(env.iter().copied());
    Run::from_output(command.output().expect("run the profile-import binary"))
}

/// The binary, in a clean environment for the tool: none of the test runner's RUST_LOG or
/// PROFILE_IMPORT_* settings (a developer's real key or SDKAppID must not leak into a test),
/// and no colours. Every test that runs the binary starts from this.
pub fn tool_command() -> Command {
    let mut command = Command::new(bin());
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k == "RUST_LOG" || k.starts_with("PROFILE_IMPORT_"))
        {
            command.env_remove(key);
        }
    }
    command.env("NO_COLOR", "1");
    command
}

/// Runs a command to its end on a blocking thread, so a test's simulator keeps serving on the
/// runtime meanwhile.
pub async fn exec(mut command: Command) -> Run {
    tokio::task::spawn_blocking(move || {
        Run::from_output(command.output().expect("run the profile-import binary"))
    })
    .await
    .expect("the runner thread")
}

/// Sends `signal` (`"-INT"`, `"-TERM"`, `"-KILL"`) to process `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Starts `command`, sends it `signal` once `sim` has seen `requests` requests, and waits for
/// it to end (at most 20 s after the signal).
pub async fn signalled_after(
    mut command: Command,
    sim: &SimHandle,
    requests: u64,
    signal: &str,
) -> Run {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("start the binary");
    let pid = child.id();
    let waiter =
        tokio::task::spawn_blocking(move || Run::from_output(child.wait_with_output().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.stats().requests < requests {
        assert!(
            !waiter.is_finished(),
            "the import ended before it could be signalled"
        );
        assert!(Instant::now() < deadline, "the import never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send_signal(pid, signal);
    match tokio::time::timeout(Duration::from_secs(20), waiter).await {
        Ok(run) => run.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the import did not stop within 20 s of {signal}");
        }
    }
}

/// A running binary whose stderr is read line by line as it comes, so a test can act on what
/// the tool says (an address to connect to, "stopping: …") instead of waiting a fixed time.
pub struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr to its end; joined once the process exits, so nothing is missed.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watched {
    /// Starts `command` with stdin closed, stdout discarded and stderr watched.
    pub fn spawn(mut command: Command) -> Watched {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the binary");
        let pipe = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let all = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut all = all.lock().unwrap_or_else(|e| e.into_inner());
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
        });
        Watched {
            child,
            lines,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `text` and returns it; panics (killing the process)
    /// if none comes within `limit` or the process closes stderr first.
    #[track_caller]
    pub fn wait_for_line(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stderr line with {text:?} within {limit:?}:\n{}",
                        self.stderr()
                    );
                }
            }
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for the process to exit, at most `limit` (then kills it and panics), and for its
    /// stderr to be read to the end; returns its exit code (`-1` for a signal) and the time it
    /// took to exit.
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> (i32, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the binary") {
                let took = started.elapsed();
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return (status.code().unwrap_or(-1), took);
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the process did not exit within {limit:?}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes a CSV (header first) with the csv crate, so quotes and commas are escaped properly.
pub fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) {
    let mut writer = csv::Writer::from_path(path).expect("create a test CSV");
    writer.write_record(header).unwrap();
    for row in rows {
        assert_eq!(row.len(), header.len(), "test row of the wrong width");
        writer.write_record(row).unwrap();
    }
    writer.flush().unwrap();
}

/// The permission bits of a file (Unix).
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Reads a CSV written by the tool (header included) as text, one `Vec<String>` per record.
/// Rows may have different lengths. Panics if a cell is not UTF-8.
#[track_caller]
pub fn read_csv(path: &Path) -> Vec<Vec<String>> {
    read_csv_with(path, b',')
}

/// [`read_csv`] with another delimiter.
#[track_caller]
pub fn read_csv_with(path: &Path, delimiter: u8) -> Vec<Vec<String>> {
    read_csv_bytes_with(path, delimiter)
        .into_iter()
        .map(|record| {
            record
                .into_iter()
                .map(|cell| {
                    String::from_utf8(cell).unwrap_or_else(|err| {
                        panic!("{} has a non-UTF-8 cell: {err}", path.display())
                    })
                })
                .collect()
        })
        .collect()
}

/// Reads a CSV as raw bytes (header included), so cells that are not UTF-8 can be checked.
#[track_caller]
pub fn read_csv_bytes(path: &Path) -> Vec<Vec<Vec<u8>>> {
    read_csv_bytes_with(path, b',')
}

fn read_csv_bytes_with(path: &Path, delimiter: u8) -> Vec<Vec<Vec<u8>>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_path(path)
        .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
    reader
        .byte_records()
        .map(|record| {
            record
                .unwrap_or_else(|err| panic!("{} is not valid CSV: {err}", path.display()))
                .iter()
                .map(<[u8]>::to_vec)
                .collect()
        })
        .collect()
}

/// One record of a failure CSV, split into the input's own cells and the appended columns.
///
/// The appended columns are always the record's last five cells, even for a ragged row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRow {
    pub data: Vec<String>,
    pub code: String,
    pub message: String,
    pub stage: String,
    pub attempts: String,
    /// `_superseded`: the cells a later row of the user set (a JSON array of header names).
    pub superseded: String,
    pub line: u64,
}

/// Reads a failure CSV: checks that its header ends with the failure columns and returns the
/// header's data columns and every record.
#[track_caller]
pub fn read_failures(path: &Path) -> (Vec<String>, Vec<FailureRow>) {
    read_failures_with(path, b',')
}

/// [`read_failures`] with another delimiter.
#[track_caller]
pub fn read_failures_with(path: &Path, delimiter: u8) -> (Vec<String>, Vec<FailureRow>) {
    let mut records = read_csv_with(path, delimiter).into_iter();
    let mut header = records
        .next()
        .unwrap_or_else(|| panic!("{} has no header", path.display()));
    assert!(
        header.ends_with(&FAILURE_COLUMNS.map(String::from)),
        "the failure CSV header does not end with the failure columns: {header:?}"
    );
    header.truncate(header.len() - FAILURE_COLUMNS.len());
    let rows = records
        .map(|mut record| {
            assert!(
                record.len() >= FAILURE_COLUMNS.len(),
                "short failure record: {record:?}"
            );
            let info = record.split_off(record.len() - FAILURE_COLUMNS.len());
            let [code, message, stage, attempts, superseded, line] =
                <[String; 6]>::try_from(info).expect("six failure columns");
            FailureRow {
                data: record,
                code,
                message,
                stage,
                attempts,
                superseded,
                line: line
                    .parse()
                    .unwrap_or_else(|_| panic!("_line is not a number: {line:?}")),
            }
        })
        .collect();
    (header, rows)
}

/// Converts a row given as string slices, for comparisons.
pub fn strings(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// A plain import of `csv` (no resume, no state, no accounts), as the CLI builds it, for the
/// tests that run the pipeline in-process.
pub fn plain_job(csv: &Path, failures: PathBuf, journal: PathBuf) -> JobInput {
    let input = InputOptions {
        path: csv.to_path_buf(),
        delimiter: b',',
        user_column: None,
        mapping: None,
        ignore: Vec::new(),
        custom_fields: None,
    };
    JobInput::reading(input, RowRules::default(), failures, journal)
}

/// The connection to a simulator at `url`, signing with `key`.
pub fn sim_connection(url: &str, sdkappid: u64, admin: &str, key: &str) -> Connection {
    Connection {
        sdkappid,
        admin: admin.into(),
        base_url: parse_endpoint(url).expect("the simulator URL is a loopback endpoint"),
        credentials: Credentials::Key(SecretKey::new(key)),
        usersig_ttl: 3600,
    }
}
