//! Wall-clock properties, in a test binary of their own: the pace at `--rate 50`, how soon a
//! wrong key stops a run at the default pace, the adaptive pace under a server limit, and the
//! re-sends each SIGKILL costs.
//!
//! Cargo runs test binaries one after another, and the tests here take turns (`SERIAL`), so
//! none of them shares the two cores with the heavy integration tests or with each other.
//! Bounds are the README's promises, counts, or wide margins; nothing waits on a timer to make
//! an assertion pass.

mod util;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use profile_import::chat::client::{ChatClient, ClientTuning, STAMP_SENDS_ENV};
use profile_import::chat::retry::RetryPolicy;
use profile_import::chat::usersig::SecretKey;
use profile_import::run::send::{self, SendReport, SendSettings};
use profile_import::sim::{Faults, SimConfig, SimHandle, StampedArrival};
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use util::fixture::{self, assert_final_state, import_command, journal_lines, make_input, settled};
use util::{plain_job, sim_connection, tool_command, write_csv, Run, Workspace};

/// Held for the whole of each test: one test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "timing-test-key-2a9d";
const WRONG_KEY: &str = "wrong-key-c0ffee-93b7";

/// `n` rows of `UserID,Nick`: `user_0000,Nick 0 ✓` …
fn simple_rows(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| vec![format!("user_{i:04}"), format!("Nick {i} ✓")])
        .collect()
}

/// Send settings with short backoffs, no bar, no progress lines.
fn settings(rate: u32, concurrency: usize) -> SendSettings {
    SendSettings {
        rate,
        concurrency,
        retry: RetryPolicy {
            max_attempts: 5,
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

/// Runs the real pipeline in-process on `csv` against `sim`, signing with `key`.
async fn import_in_process(
    sim: &SimHandle,
    csv: &Path,
    failures: &Path,
    key: &str,
    settings: SendSettings,
) -> SendReport {
    let job = plain_job(
        csv,
        failures.to_path_buf(),
        failures.with_extension("journal"),
    );
    let connection = sim_connection(&sim.url(), APP, ADMIN, key);
    let tuning = ClientTuning {
        stamp_sends: true,
        ..ClientTuning::default()
    };
    let client = Arc::new(ChatClient::new(connection, tuning).unwrap());
    send::run(&job, client, settings, CancellationToken::new())
        .await
        .expect("the import runs to its end")
}

/// Runs the binary to its end on a blocking thread, so the simulator keeps being served.
async fn run_binary(mut command: std::process::Command) -> Run {
    tokio::task::spawn_blocking(move || Run::from_output(command.output().expect("run")))
        .await
        .expect("the runner thread")
}

// ── pacing ─────────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_50_never_exceeds_50_requests_in_any_second() {
    const RATE: u32 = 50;
    let _serial = SERIAL.lock().await;
    let ws = Workspace::new();
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.latency_min = Duration::from_millis(5);
    config.latency_max = Duration::from_millis(20);
    let sim = SimHandle::start(config).await.unwrap();
    let csv = ws.path("users.csv");
    write_csv(&csv, &["UserID", "Nick"], &simple_rows(300));
    let failures = ws.path("failures.csv");

    let report = import_in_process(
        &sim,
        &csv,
        &failures,
        KEY,
        settings(RATE, SendSettings::default_concurrency(RATE)),
    )
    .await;
    assert!(report.fatal.is_none(), "{}", report.summary);
    assert_eq!(report.summary.ok, 300, "{}", report.summary);
    let stats = sim.stats();
    assert_eq!(stats.requests, 300, "{stats}");
    let paced = Paced::of(&sim, RATE);
    eprintln!("[rate 50] {paced}");
    paced.assert_within(300);
    // Over the whole run the pace is a count no delay can push up: 300 requests took at least
    // (300 - burst) / 49.5 seconds. One request too many per window (50.5/s) fails here too.
    assert!(stats.mean_rate <= 50.0, "{stats}");
    assert!(stats.mean_rate >= 40.0, "{stats}");
}

/// How much an arrival at the simulator may lag its send more than another arrival does, when
/// the simulator counts a window. The client's own windows are checked exactly (the pace leaves
/// `JITTER_ROOM`, 6 ms, for this); on a busy machine a simulator in the test's process, or the
/// binary's thread, is now and then not running when a request comes in (8-13 ms measured, 51
/// arrivals in a window while the client never sent more than 50), so `rate` + 1 arrivals
/// must span at least 1 s less this. A request written a whole turn (20 ms at 50/s) after its
/// send time is caught by the close-arrival count of
/// `requests_on_new_connections_keep_their_spacing`.
const ARRIVAL_JITTER: Duration = Duration::from_millis(15);

/// The most of `times` (sorted) in any half-open window `[t, t + window)`.
fn most_in_any_window(times: &[Duration], window: Duration) -> usize {
    let mut first = 0;
    let mut most = 0;
    for (last, at) in times.iter().enumerate() {
        while *at - times[first] >= window {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

/// A run's pace at both ends: the client's send times (stamped by the client, the test hook
/// `STAMP_SENDS_ENV`) and the simulator's arrivals of the same requests.
struct Paced {
    rate: usize,
    sent: Vec<Duration>,
    arrived: Vec<Duration>,
    /// Each request's arrival less its send: the wire and the scheduler, lowest and highest.
    lag: (Duration, Duration),
}

impl Paced {
    fn of(sim: &SimHandle, rate: u32) -> Paced {
        let stamped = sim.stamped_arrivals("portrait_set");
        let mut sent: Vec<Duration> = stamped.iter().map(|s| s.sent).collect();
        let mut arrived: Vec<Duration> = stamped.iter().map(|s| s.arrived).collect();
        sent.sort_unstable();
        arrived.sort_unstable();
        let lags = stamped.iter().map(|s| s.arrived.saturating_sub(s.sent));
        let lag = (
            lags.clone().min().unwrap_or_default(),
            lags.max().unwrap_or_default(),
        );
        Paced {
            rate: rate as usize,
            sent,
            arrived,
            lag,
        }
    }

    /// The client sent at most `rate` in any second, exactly; the simulator saw more only by
    /// what `ARRIVAL_JITTER` explains; and every one of `requests` was stamped.
    #[track_caller]
    fn assert_within(&self, requests: usize) {
        assert_eq!(self.sent.len(), requests, "stamped sends: {self}");
        let second = Duration::from_secs(1);
        assert!(
            most_in_any_window(&self.sent, second) <= self.rate,
            "the client sent too many: {self}"
        );
        assert!(
            most_in_any_window(&self.arrived, second - ARRIVAL_JITTER) <= self.rate,
            "more arrivals than jitter explains: {self}"
        );
    }
}

impl std::fmt::Display for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let second = Duration::from_secs(1);
        write!(
            f,
            "at {}/s: client sent at most {} in any 1 s; simulator saw at most {} in any 1 s, \
             {} in any {:?}; lag {:.1}-{:.1} ms",
            self.rate,
            most_in_any_window(&self.sent, second),
            most_in_any_window(&self.arrived, second),
            most_in_any_window(&self.arrived, second - ARRIVAL_JITTER),
            second - ARRIVAL_JITTER,
            self.lag.0.as_secs_f64() * 1e3,
            self.lag.1.as_secs_f64() * 1e3,
        )
    }
}

/// The binary's import of `rows` simple rows (written to `users.csv` in `ws`) at `--rate rate`
/// against `sim`.
fn import_at_rate(
    ws: &Workspace,
    sim: &SimHandle,
    rows: usize,
    rate: u32,
) -> std::process::Command {
    write_csv(
        &ws.path("users.csv"),
        &["UserID", "Nick"],
        &simple_rows(rows),
    );
    let mut command = tool_command();
    command
        .current_dir(ws.dir())
        .args(["import", "users.csv", "--no-progress", "--rate"])
        .arg(rate.to_string())
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .env("PROFILE_IMPORT_SECRET_KEY", KEY);
    command
}

/// One run of the binary at `--rate` against a simulator with a limit.
struct LimitRun {
    ws: Workspace,
    sim: SimHandle,
    run: Run,
    wall: Duration,
}

impl LimitRun {
    /// Imports `rows` rows with the binary at `--rate rate` against a simulator that admits
    /// `limit` a second (5-20 ms latency).
    async fn go(rate: u32, limit: u32, rows: usize) -> LimitRun {
        let ws = Workspace::new();
        let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
        config.limit_per_sec = limit;
        config.latency_min = Duration::from_millis(5);
        config.latency_max = Duration::from_millis(20);
        let sim = SimHandle::start(config).await.unwrap();
        let mut command = import_at_rate(&ws, &sim, rows, rate);
        command.args(["--summary-json", "run.json"]);
        let started = Instant::now();
        let run = run_binary(command).await;
        let wall = started.elapsed();
        LimitRun { ws, sim, run, wall }
    }

    /// The summary JSON the run wrote.
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.ws.path("run.json")).unwrap()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_servers_limit_a_throttled_answer_is_rare_and_every_row_lands() {
    let _serial = SERIAL.lock().await;
    for rate in [50u32, 200, 600] {
        let rows = rate as usize * 5;
        let done = LimitRun::go(rate, rate, rows).await;
        let (run, stats, json) = (&done.run, done.sim.stats(), done.json());
        run.assert_code(0);
        assert_eq!(stats.count_for("portrait_set", "0"), rows as u64, "{stats}");
        // The pace leaves 6 ms of room for arrival jitter, so the server's windows stay within
        // the limit: the paused-clock model (`chat::limiter::tests`) asserts exactly 0 throttled
        // answers with that jitter. On a real, shared machine a stall past 6 ms now and then
        // lets one window overflow by a request or two (one CI run saw 602 at 600/s); each
        // costs a throttled answer and a 2 % cut. More than that would mean the pace itself
        // is wrong (the naive `per_second(rate)` loop gets a third of its requests refused).
        let throttled = stats.count_for("portrait_set", "60007");
        assert!(
            throttled <= 2,
            "rate {rate}: {throttled} throttled\n{stats}"
        );
        assert!(
            stats.max_in_any_window <= u64::from(rate) + 2,
            "rate {rate}: {stats}"
        );
        assert_eq!(json["throttled"], throttled, "{json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_above_the_servers_limit_few_requests_are_throttled_and_every_row_lands() {
    let _serial = SERIAL.lock().await;
    const ROWS: usize = 2_000;
    let done = LimitRun::go(5_000, 200, ROWS).await;
    let (run, stats, json) = (&done.run, done.sim.stats(), done.json());
    run.assert_code(0);
    let throttled = stats.count_for("portrait_set", "60007");
    assert_eq!(stats.count_for("portrait_set", "0"), ROWS as u64, "{stats}");
    // The start allowance and the cut to what the server accepted keep the waste to a few
    // requests at the start and a few jitter cuts after (the old ×0.85 cuts threw 43 % of
    // requests at a 200/s server from --rate 100000); 10 % is a wide margin.
    assert!(
        throttled * 10 <= stats.requests,
        "{throttled} of {} requests throttled\n{stats}",
        stats.requests
    );
    let last = json["pace_final_per_second"].as_f64().expect("a pace");
    assert!((150.0..=210.0).contains(&last), "{json}");
}

/// `--rate 100000` against a 200/s limit costs a few throttled answers however small the file:
/// the start lets 200 requests and a probe into the first second, not a round trip's worth at
/// the doubled pace (before: 639 requests in the first second, 13 % of 3,446 throttled for
/// 3,000 rows, a quarter of the requests for 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_above_the_servers_limit_a_small_file_costs_few_throttled_answers() {
    let _serial = SERIAL.lock().await;
    for rows in [500, 3_000] {
        let done = LimitRun::go(100_000, 200, rows).await;
        let (run, stats) = (&done.run, done.sim.stats());
        run.assert_code(0);
        assert_eq!(stats.count_for("portrait_set", "0"), rows as u64, "{stats}");
        let throttled = stats.count_for("portrait_set", "60007");
        eprintln!(
            "[--rate 100000, limit 200, {rows} rows] {} requests, {throttled} throttled, {:.1} s",
            stats.requests,
            done.wall.as_secs_f64()
        );
        assert!(
            throttled * 20 <= stats.requests,
            "{rows} rows: {throttled} of {} requests throttled\n{stats}",
            stats.requests
        );
    }
}

// ── a wrong key at the default pace ────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_stops_the_run_after_a_few_requests() {
    let _serial = SERIAL.lock().await;
    let ws = Workspace::new();
    let sim = SimHandle::start(SimConfig::new(APP, ADMIN, SecretKey::new(KEY)))
        .await
        .unwrap();
    let csv = ws.path("users.csv");
    write_csv(&csv, &["UserID", "Nick"], &simple_rows(5000));
    let failures = ws.path("failures.csv");

    let report = import_in_process(
        &sim,
        &csv,
        &failures,
        WRONG_KEY,
        settings(200, SendSettings::default_concurrency(200)),
    )
    .await;
    let s = &report.summary;
    let fatal = report.fatal.as_deref().expect("a wrong key is fatal");
    assert!(fatal.contains("70009"), "{fatal}");
    assert!(!fatal.contains(WRONG_KEY), "{fatal}");
    assert!(!report.interrupted);
    let stats = sim.stats();
    // At 200/s with 250 workers, what goes out before the first answer is back is a handful.
    assert!(stats.requests <= 30, "{stats}");
    assert!(stats.requests >= 1, "{stats}");
    assert_eq!(stats.count("70009"), stats.requests, "{stats}");
    assert_eq!(s.rows, 5000, "{s}");
    assert_eq!(s.ok, 0, "{s}");
    assert!(s.failed <= 30, "{s}");
    assert!(s.not_attempted >= 4970, "{s}");
    assert!(s.accounted(), "{s}");
    assert!(s.stopped.is_some(), "{s}");
    assert!(sim.profiles().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_binary_exits_1_without_leaking_the_key_or_a_usersig() {
    let _serial = SERIAL.lock().await;
    let ws = Workspace::new();
    let sim = SimHandle::start(SimConfig::new(APP, ADMIN, SecretKey::new(KEY)))
        .await
        .unwrap();
    let csv = ws.path("users.csv");
    write_csv(&csv, &["UserID", "Nick"], &simple_rows(5000));
    let failures = ws.path("failures.csv");
    let mut command = tool_command();
    command
        .current_dir(ws.dir())
        .arg("import")
        .arg(&csv)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .arg("--failures")
        .arg(&failures)
        .args(["--no-progress", "-vv"])
        .env("PROFILE_IMPORT_SECRET_KEY", WRONG_KEY);
    let run = run_binary(command).await;
    run.assert_code(1);
    assert!(run.stderr.contains("70009"), "{}", run.stderr);
    assert!(
        !run.stderr.contains(WRONG_KEY) && !run.stdout.contains(WRONG_KEY),
        "the key leaked:\n{}",
        run.stderr
    );
    assert_no_usersig(&run.stderr);
    assert_no_usersig(&run.stdout);
    assert_eq!(run.count("rows read"), 5000);
    assert!(run.count("not attempted") >= 4970, "{}", run.stderr);
    let stats = sim.stats();
    assert!(stats.requests <= 30, "{stats}");
    if failures.exists() {
        let text = std::fs::read_to_string(&failures).unwrap();
        assert!(!text.contains(WRONG_KEY));
        assert_no_usersig(&text);
    }
}

/// Asserts that no `usersig=` in `text` is followed by a signature (only by `<redacted>` or
/// nothing sig-like).
#[track_caller]
fn assert_no_usersig(text: &str) {
    for (at, _) in text.match_indices("usersig=") {
        let rest = &text[at + "usersig=".len()..];
        let sig_chars = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "*-_%".contains(*c))
            .count();
        assert!(
            rest.starts_with("<redacted>") || sig_chars < 8,
            "a UserSig leaked into the output: {}",
            &text[at..(at + 60).min(text.len())]
        );
    }
}

// ── the adaptive pace under a server limit ─────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_rate_settles_near_a_server_limit_below_the_ceiling() {
    const LIMIT: u32 = 80;
    const CEILING: u32 = 200;
    const ROWS: usize = 1500;
    let _serial = SERIAL.lock().await;
    let LimitRun { ws, sim, run, wall } = LimitRun::go(CEILING, LIMIT, ROWS).await;
    let stats = sim.stats();
    let throttled = stats.count_for("portrait_set", "60007");
    let accepted = stats.count_for("portrait_set", "0");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("run.json")).unwrap()).unwrap();
    eprintln!(
        "[adaptive] sim limit {LIMIT}/s, --rate {CEILING}, {ROWS} rows: sim mean {:.1} requests/s, \
         {} requests, {throttled} throttled (60007, {:.1} %), {accepted} accepted, \
         max {} portrait_set arrivals in any 1 s window, wall {:.1}s | client: pace lowest {} final {}",
        stats.mean_rate,
        stats.requests,
        100.0 * throttled as f64 / stats.requests.max(1) as f64,
        stats.max_in_any_window,
        wall.as_secs_f64(),
        json["pace_lowest_per_second"],
        json["pace_final_per_second"],
    );

    run.assert_code(0);
    assert_eq!(run.count("ok"), ROWS as u64, "{}", run.stderr);
    assert!(!ws.path("users.failures.csv").exists());
    // Nothing lost, nothing applied twice.
    assert_eq!(accepted, ROWS as u64, "{stats}");
    assert_eq!(stats.applied, ROWS as u64, "{stats}");
    assert_eq!(sim.profiles().len(), ROWS);
    // Settles near the server's limit, not near --rate, and not far below it.
    assert!(
        (50.0..=85.0).contains(&stats.mean_rate),
        "mean {:.1}/s\n{stats}",
        stats.mean_rate
    );
    // It did meet the limit, and backed off instead of hammering it.
    assert!(throttled > 0, "{stats}");
    assert!(
        throttled * 10 < stats.requests,
        "{throttled} throttled of {} requests\n{stats}",
        stats.requests
    );
    // What the client controls: it noticed every throttled answer and counted every request,
    // its pace came down to the server's limit without collapsing, and it never went above
    // --rate, not even in the first second before Chat pushed back.
    assert_eq!(json["throttled"], throttled, "{json}");
    assert_eq!(json["requests"], stats.requests, "{json}");
    let lowest = json["pace_lowest_per_second"].as_f64().expect("a pace");
    let last = json["pace_final_per_second"].as_f64().expect("a pace");
    assert!(
        (f64::from(LIMIT) / 2.0..=f64::from(LIMIT)).contains(&lowest),
        "{json}"
    );
    assert!(last <= f64::from(CEILING), "{json}");
    assert!(stats.max_in_any_window <= u64::from(CEILING), "{stats}");
}

// ── SIGKILL and --resume ───────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_resume_repeatedly_loses_nothing_and_resends_at_most_the_concurrency() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // 2,400 rows over 1,500 users: each user is sent once (its rows merged), so about 1,500
    // requests, long enough to be killed five times at the default pace; 900 users have two
    // rows, whose merge must survive a kill between them.
    let input = make_input(dir.path(), 2400, 1500);
    let sim = SimHandle::start(fixture::sim_config(&input)).await.unwrap();
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
        // The dead client's last requests may still be on their way in; count once Chat has
        // answered everything it received.
        settled(&sim).await;
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

// ── wake-ups and naps ──────────────────────────────────────────────────────────────────────

/// A simulator that never throttles, answering in `min_ms`–`max_ms`.
async fn unlimited_sim(min_ms: u64, max_ms: u64) -> SimHandle {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.latency_min = Duration::from_millis(min_ms);
    config.latency_max = Duration::from_millis(max_ms);
    config.limit_per_sec = 0;
    SimHandle::start(config).await.unwrap()
}

/// The sending thread's voluntary context switches so far (Linux: it is the main thread).
#[cfg(target_os = "linux")]
fn voluntary_switches(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

/// At 200/s the sending thread naps until the next turn and reads the answers that came
/// meanwhile in the same wake-up: about one sleep per request, not one for the turn and another
/// for each answer. Each wake-up costs CPU (tens of µs on a virtual machine), which is what
/// `just bench-send` measures.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_200_per_second_the_sending_thread_wakes_about_once_per_request() {
    let _serial = SERIAL.lock().await;
    const ROWS: u64 = 1_000;
    let ws = Workspace::new();
    let sim = unlimited_sim(20, 80).await;
    let mut command = import_at_rate(&ws, &sim, ROWS as usize, 200);
    command
        .arg("-q")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("start the import");
    let pid = child.id();
    // The last reading before the process ends: the count only grows.
    let (switches, status) = tokio::task::spawn_blocking(move || {
        let mut last = 0;
        loop {
            if let Some(n) = voluntary_switches(pid) {
                last = last.max(n);
            }
            if let Some(status) = child.try_wait().expect("poll the import") {
                return (last, status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("the watcher thread");
    assert!(status.success(), "{status:?}");
    let stats = sim.stats();
    assert_eq!(stats.count_for("portrait_set", "0"), ROWS, "{stats}");
    // Without the nap it is about 2 a request (one timer, one answer); with it about 1.
    assert!(
        switches * 2 <= ROWS * 3,
        "{switches} voluntary context switches for {ROWS} requests"
    );
    assert!(
        switches >= ROWS / 2,
        "{switches}: the reading missed the run"
    );
}

/// A request on a new connection is written as soon as the connection is up: the thread does
/// not nap while one is being opened. Napping through it wrote such a request a whole turn
/// late, right beside the next one (at 50/s, pairs 0.4 ms apart at the server, and a window
/// of 51). At 200–600 ms latency, 50/s needs a new connection for each of the first ~20
/// requests.
///
/// A busy machine makes such pairs too: a request whose writer (the binary's sending thread)
/// or reader (the simulator, on this process's threads) waits for a CPU arrives late, beside
/// the next one. So a close pair counts only when its squeeze (how much more one of the two
/// lagged behind its send time than the other) is more than those threads spent waiting for a
/// CPU while the pair was on its way, plus the 5 ms the lags vary by on a quiet machine. A nap
/// is a sleep, not a wait for a CPU: on a quiet machine a request written a turn late is
/// squeezed by about 20 ms with next to no such wait (2 such pairs a run when the nap ignored
/// connects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_new_connections_keep_their_spacing() {
    let _serial = SERIAL.lock().await;
    const ROWS: usize = 120;
    let ws = Workspace::new();
    let sim = unlimited_sim(200, 600).await;
    let mut command = import_at_rate(&ws, &sim, ROWS, 50);
    command.env(STAMP_SENDS_ENV, "1");
    let (run, waits) = run_binary_watching_cpu_waits(command).await;
    assert_eq!(run.code, 0, "{run:?}");
    let stats = sim.stats();
    assert_eq!(stats.count_for("portrait_set", "0"), ROWS as u64, "{stats}");
    let paced = Paced::of(&sim, 50);
    paced.assert_within(ROWS);

    // The pace spaces requests 20.2 ms apart, less at most 4 ms made up after a late wake-up.
    let arrivals = sim.stamped_arrivals("portrait_set");
    let lag = |a: &StampedArrival| a.arrived.saturating_sub(a.sent);
    let pairs: Vec<(Duration, Duration)> = arrivals
        .windows(2)
        .filter(|pair| pair[1].arrived - pair[0].arrived < Duration::from_millis(5))
        .map(|pair| {
            let squeeze = lag(&pair[0]).abs_diff(lag(&pair[1]));
            let waited = waits.between(pair[0].sent.min(pair[1].sent), pair[1].arrived);
            (squeeze, waited)
        })
        .collect();
    let unexplained = pairs
        .iter()
        .filter(|(squeeze, waited)| *squeeze > *waited + QUIET_LAG_SPREAD)
        .count();
    let figures = format!(
        "{paced}; close pairs (squeeze, CPU wait meanwhile): {:?}",
        pairs
            .iter()
            .map(|(s, w)| format!("{:.1} ms, {:.1} ms", ms(*s), ms(*w)))
            .collect::<Vec<_>>()
    );
    eprintln!("[new connections] {figures}");
    assert!(
        unexplained <= 1,
        "{unexplained} of {ROWS} requests arrived within 5 ms of the one before, squeezed by \
         more than the CPU waits explain: {figures}\n{stats}"
    );
}

/// How much the lags of requests (arrival less send time) vary on a quiet machine: 1-5 ms
/// measured at 50/s, new connections included.
const QUIET_LAG_SPREAD: Duration = Duration::from_millis(5);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The nanoseconds a thread has spent runnable but waiting for a CPU (Linux schedstat), from
/// its `/proc/.../schedstat`.
fn cpu_wait(schedstat: &str) -> Option<u64> {
    std::fs::read_to_string(schedstat)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's threads' waits for a CPU so far, the calling thread's left out.
fn own_cpu_wait() -> u64 {
    let all: u64 = std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|task| cpu_wait(&format!("{}/schedstat", task.ok()?.path().display())))
                .sum()
        })
        .unwrap_or(0);
    all.saturating_sub(cpu_wait("/proc/thread-self/schedstat").unwrap_or(0))
}

/// How long the binary's sending thread and this process's threads waited for a CPU, sampled
/// against the wall clock every few ms while the binary ran. Without /proc it holds nothing,
/// and no wait explains anything.
struct CpuWaits {
    /// (Unix time, cumulative nanoseconds of waiting).
    samples: Vec<(Duration, u64)>,
}

impl CpuWaits {
    /// The waits between `from` and `to` (Unix times), widened to the samples around them.
    fn between(&self, from: Duration, to: Duration) -> Duration {
        let before = self
            .samples
            .iter()
            .rev()
            .find(|(at, _)| *at <= from)
            .or(self.samples.first());
        let after = self
            .samples
            .iter()
            .find(|(at, _)| *at >= to)
            .or(self.samples.last());
        match (before, after) {
            (Some((_, a)), Some((_, b))) => Duration::from_nanos(b.saturating_sub(*a)),
            _ => Duration::ZERO,
        }
    }
}

/// Runs the binary to its end on a blocking thread (so the simulator keeps being served),
/// sampling the CPU waits of its sending thread (the main thread) and of this process.
async fn run_binary_watching_cpu_waits(mut command: std::process::Command) -> (Run, CpuWaits) {
    use std::process::Stdio;
    tokio::task::spawn_blocking(move || {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let sending_thread = format!("/proc/{0}/task/{0}/schedstat", child.id());
        let mut child = child;
        let mut samples = Vec::new();
        let mut binary_wait = 0;
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            // The count only grows; a reading after the thread ended keeps the last.
            binary_wait = cpu_wait(&sending_thread).unwrap_or(0).max(binary_wait);
            samples.push((now, binary_wait + own_cpu_wait()));
            if child.try_wait().expect("poll the binary").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let run = Run::from_output(child.wait_with_output().expect("the binary's output"));
        (run, CpuWaits { samples })
    })
    .await
    .expect("the runner thread")
}
