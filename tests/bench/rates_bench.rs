//! `just bench-rates`: the importer against the built-in simulator at other quotas, beside a
//! naive loop (governor's plain `Quota::per_second(rate)`, the default concurrency of tasks, no
//! retries), everything counted by the simulator:
//!
//! - a. `--rate` equal to the simulator's limit, for 50, 200, 1,000 and 3,000/s at 1–5, 20–80
//!   and 200–600 ms latency;
//! - b. `--rate` 5,000 and 100,000 against a 200/s limit, 6,000 rows, 20–80 ms;
//! - c. one throttle at the limit (200/s, 20–80 ms) against the same run without it, and a
//!   limit that falls from 200/s to 100/s at 8 s and comes back at 18 s.
//!
//! Row counts keep the whole run to about six minutes: each run of (a) lasts about 10 s (15 s at
//! 1,000/s and 25 s at 3,000/s), each naive run 3 s.
//! The importer runs as a child process, so its CPU time is its own.
//!
//! `cargo run --release --example rates_bench [-- a|b|c] [RATE…]` (rates choose part a's rows)

#[path = "naive.rs"]
mod naive;
#[path = "timed.rs"]
mod timed;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use timed::{Steal, Timed, TIME_FORMAT};

use profile_import::chat::usersig::SecretKey;
use profile_import::run::send::SendSettings;
use profile_import::sim::{SimConfig, SimHandle, SimStats};
use tokio::time::Instant;

const SDKAPPID: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "bench-secret";

type Error = Box<dyn std::error::Error>;

/// Something done to the simulator during a run, in seconds after its first request.
#[derive(Debug, Clone, Copy)]
enum Action {
    SetLimit(u32),
    ThrottleNext(u32),
}

/// The simulator's counters once a second, from its first request on.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: f64,
    requests: u64,
    ok: u64,
}

/// One run of the importer.
struct ToolRun {
    stats: SimStats,
    cpu: f64,
    wall: f64,
    samples: Vec<Sample>,
    pace_line: String,
    /// The machine's steal time during the run (see `timed::Steal`).
    steal: String,
}

impl ToolRun {
    fn throttled(&self) -> u64 {
        self.stats.count("60007")
    }

    /// Requests and accepted requests in each second after the first request (scaled to one
    /// second when a sample came late).
    fn per_second(&self) -> Vec<(u64, u64)> {
        self.samples
            .windows(2)
            .map(|w| {
                let per_second = |delta: u64| (delta as f64 / (w[1].at - w[0].at)).round() as u64;
                (
                    per_second(w[1].requests - w[0].requests),
                    per_second(w[1].ok - w[0].ok),
                )
            })
            .collect()
    }
}

struct Bench {
    dir: PathBuf,
    exe: PathBuf,
    /// The rates of part a.
    rates: Vec<u32>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Numbers choose the rates of part a; names choose parts.
    let rates: Vec<u32> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let parts: Vec<&String> = args.iter().filter(|a| a.parse::<u32>().is_err()).collect();
    let wants = |part: &str| parts.is_empty() || parts.iter().any(|p| *p == part);
    let dir = std::env::temp_dir().join(format!("rates-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("profile-import"))
        .ok_or("cannot find target/release/profile-import")?;
    let rates = if rates.is_empty() {
        vec![50, 200, 1000, 3000]
    } else {
        rates
    };
    let bench = Bench { dir, exe, rates };
    let started = Instant::now();
    if wants("a") {
        bench.at_the_limit().await?;
    }
    if wants("b") {
        bench.far_above().await?;
    }
    if wants("c") {
        bench.back_off().await?;
    }
    let _ = std::fs::remove_dir_all(&bench.dir);
    println!(
        "\nbench-rates took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

impl Bench {
    async fn at_the_limit(&self) -> Result<(), Error> {
        println!("a. at the limit: --rate = simulator limit; mean and 1 s windows counted by the simulator");
        println!(
            "{:>5} {:>8} {:>6} | {:<62} | naive per_second(rate)",
            "rate", "latency", "rows", "profile-import"
        );
        println!(
            "{:>5} {:>8} {:>6} | {:>17} {:>6} {:>5} {:>13} {:>8} {:>7} | {:>17} {:>6} {:>5}",
            "",
            "ms",
            "",
            "mean (% of rate)",
            "max/1s",
            "60007",
            "rows OK",
            "CPU",
            "steal",
            "mean (% of rate)",
            "max/1s",
            "60007"
        );
        for latency in [(1, 5), (20, 80), (200, 600)] {
            for &rate in &self.rates {
                let seconds = match rate {
                    1000 => 15,
                    3000 => 25,
                    _ => 10,
                };
                let rows = rate as usize * seconds;
                let tool = self.tool(rows, rate, rate, latency, &[]).await?;
                let naive = naive(rate as usize * 3, rate, rate, latency).await?;
                let pct =
                    |mean: f64| format!("{mean:.1}/s ({:.1} %)", 100.0 * mean / f64::from(rate));
                println!(
                    "{:>5} {:>8} {:>6} | {:>17} {:>6} {:>5} {:>13} {:>8} {:>7} | {:>17} {:>6} {:>5}",
                    rate,
                    format!("{}-{}", latency.0, latency.1),
                    rows,
                    pct(tool.stats.mean_rate),
                    tool.stats.max_in_any_window,
                    tool.throttled(),
                    format!("{}/{rows}", tool.stats.count("0")),
                    format!("{:.1} %", 100.0 * tool.cpu / tool.wall),
                    tool.steal,
                    pct(naive.mean_rate),
                    naive.max_in_any_window,
                    naive.count("60007"),
                );
            }
        }
        println!("targets: mean >= 98.5 % of the rate, max/1s <= the rate, 0 throttled (60007)");
        println!("steal: the machine's CPU time taken by other VMs during the run (wake-ups it delays are lost)");
        Ok(())
    }

    async fn far_above(&self) -> Result<(), Error> {
        const ROWS: usize = 6000;
        println!("\nb. far above: simulator limit 200/s, {ROWS} rows, 20-80 ms");
        println!(
            "{:>7} | {:>22} {:>24} {:>10} {:>18} | {:>22} {:>10}",
            "--rate",
            "60007 (% of requests)",
            "requests/s after 5 s",
            "rows OK",
            "pace (client)",
            "naive: 60007 (%)",
            "rows OK"
        );
        for rate in [5000u32, 100_000] {
            let tool = self.tool(ROWS, rate, 200, (20, 80), &[]).await?;
            let after: Vec<u64> = tool
                .per_second()
                .iter()
                .skip(5)
                .map(|&(requests, _)| requests)
                .collect();
            // The last whole second may be the tail of the file, not the pace.
            let steady = &after[..after.len().saturating_sub(1)];
            let naive = naive(ROWS, rate, 200, (20, 80)).await?;
            println!(
                "{:>7} | {:>22} {:>24} {:>10} {:>18} | {:>22} {:>10}",
                rate,
                share(tool.throttled(), tool.stats.requests),
                format!(
                    "{}–{} (seconds 5–{})",
                    steady.iter().min().copied().unwrap_or(0),
                    steady.iter().max().copied().unwrap_or(0),
                    5 + steady.len()
                ),
                format!("{}/{ROWS}", tool.stats.count("0")),
                tool.pace_line,
                share(naive.count("60007"), naive.requests),
                format!("{}/{ROWS}", naive.count("0")),
            );
        }
        println!("targets: 60007 <= 5 % of requests, requests/s within 10 % of 200 (180-220) after 5 s, every row OK");
        Ok(())
    }

    async fn back_off(&self) -> Result<(), Error> {
        println!("\nc. back off without giving up the rate (200/s, 20-80 ms)");
        const ROWS: usize = 3000;
        let plain = self.tool(ROWS, 200, 200, (20, 80), &[]).await?;
        let once = self
            .tool(ROWS, 200, 200, (20, 80), &[(5.0, Action::ThrottleNext(1))])
            .await?;
        let (with, without) = (accepted_mean(&once.stats), accepted_mean(&plain.stats));
        println!(
            "one throttle at 5 s, {ROWS} rows: accepted {with:.1}/s against {without:.1}/s in a run \
             without it: costs {:.2} % (60007: {} and {}; {}; steal {} and {})",
            100.0 * (1.0 - with / without),
            once.throttled(),
            plain.throttled(),
            once.pace_line,
            once.steal,
            plain.steal,
        );

        let (down, up) = (8.0, 18.0);
        let run = self
            .tool(
                6000,
                200,
                200,
                (20, 80),
                &[(down, Action::SetLimit(100)), (up, Action::SetLimit(200))],
            )
            .await?;
        let seconds = run.per_second();
        let mut trace = String::new();
        for (i, (requests, ok)) in seconds.iter().enumerate() {
            let _ = write!(trace, " {i}:{requests}/{ok}");
        }
        println!(
            "limit 200/s → 100/s at {down:.0} s → 200/s at {up:.0} s, 6000 rows; requests/accepted in each second:\n {trace}"
        );
        let within = |count: u64, limit: f64| (count as f64 - limit).abs() <= 0.1 * limit;
        // From which second on every second until the next change is within 10 % of the limit.
        let settled = |from: usize, to: usize, limit: f64| {
            (from..to).find(|&s| (s..to).all(|i| within(seconds[i].0, limit)))
        };
        let end = seconds.len().saturating_sub(1);
        let followed = |from: f64, to: usize, limit: f64| match settled(from as usize, to, limit) {
            Some(s) => format!("{:.0} s", s as f64 - from),
            None => "not within the run".to_string(),
        };
        println!(
            "followed down (requests/s within 10 % of 100) after {}; back up (within 10 % of 200) after {}; \
             60007: {} of {} requests; every row OK: {}",
            followed(down, up as usize, 100.0),
            followed(up, end, 200.0),
            run.throttled(),
            run.stats.requests,
            run.stats.count("0") == 6000,
        );
        println!("targets: one throttle costs <= 1 %; down within 5 s, up within 30 s");
        Ok(())
    }

    /// Writes (once) a CSV of `rows` rows and returns its path.
    fn csv(&self, rows: usize) -> Result<PathBuf, Error> {
        let path = self.dir.join(format!("rows-{rows}.csv"));
        if !path.exists() {
            write_csv(&path, rows)?;
        }
        Ok(path)
    }

    /// Runs the importer at `rate` against a fresh simulator, doing `actions` on the way.
    async fn tool(
        &self,
        rows: usize,
        rate: u32,
        limit: u32,
        latency: (u64, u64),
        actions: &[(f64, Action)],
    ) -> Result<ToolRun, Error> {
        let csv = self.csv(rows)?;
        let sim = SimHandle::start(sim_config(limit, latency)).await?;
        let run = self.dir.join(format!("run-{rate}-{limit}"));
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run)?;
        let mut command = Command::new("/usr/bin/time");
        command
            .current_dir(&run)
            .args(["-f", TIME_FORMAT])
            .arg(&self.exe)
            .args(["-q", "import"])
            .arg(&csv)
            .args(["--sdkappid", &SDKAPPID.to_string()])
            .args(["--endpoint", &sim.url(), "--no-progress"])
            .args(["--rate", &rate.to_string()])
            .args(["--failures", "failures.csv", "--journal", "journal"])
            .env("PROFILE_IMPORT_SECRET_KEY", KEY);
        let steal = Steal::start();
        let mut child = tokio::task::spawn_blocking(move || command.output());

        let mut first = None;
        while first.is_none() && !child.is_finished() {
            if sim.stats().requests > 0 {
                first = Some(Instant::now());
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let t0 = first.unwrap_or_else(Instant::now);
        let mut samples = vec![Sample::default()];
        let mut pending: Vec<(f64, Action)> = actions.to_vec();
        pending.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut next_second = 1.0;
        let output = loop {
            let next_action = pending.first().map_or(f64::MAX, |a| a.0);
            let wake = next_action.min(next_second);
            tokio::select! {
                output = &mut child => break output??,
                _ = tokio::time::sleep_until(t0 + Duration::from_secs_f64(wake)) => {}
            }
            while pending.first().is_some_and(|a| a.0 <= wake) {
                match pending.remove(0).1 {
                    Action::SetLimit(limit) => sim.set_limit(limit),
                    Action::ThrottleNext(n) => sim.throttle_next(n),
                }
            }
            if wake >= next_second {
                let stats = sim.stats();
                samples.push(Sample {
                    at: t0.elapsed().as_secs_f64(),
                    requests: stats.requests,
                    ok: stats.count("0"),
                });
                next_second += 1.0;
            }
        };
        let stats = sim.stats();
        let steal = steal.share();
        sim.shutdown();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            eprintln!("{stderr}");
            return Err(format!("import exited with {:?}", output.status.code()).into());
        }
        let timed = Timed::from_stderr(&stderr)?;
        let pace_line = stderr
            .lines()
            .find(|l| l.starts_with("pace"))
            .map(|l| {
                l["pace".len()..]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        Ok(ToolRun {
            stats,
            cpu: timed.cpu,
            wall: timed.wall,
            samples,
            pace_line,
            steal,
        })
    }
}

fn share(part: u64, whole: u64) -> String {
    format!(
        "{part} ({:.1} %)",
        100.0 * part as f64 / whole.max(1) as f64
    )
}

fn sim_config(limit: u32, latency: (u64, u64)) -> SimConfig {
    let mut config = SimConfig::new(SDKAPPID, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = limit;
    config.latency_min = Duration::from_millis(latency.0);
    config.latency_max = Duration::from_millis(latency.1);
    config
}

fn write_csv(path: &Path, rows: usize) -> Result<(), Error> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "UserID,Nick,Gender,Level,Custom_Hobby")?;
    for i in 0..rows {
        writeln!(
            out,
            "bench_{i:06},Nick {i},{},{},chess",
            ["male", "female"][i % 2],
            i % 100
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `rows` requests through governor's plain `per_second(rate)` from as many tasks as the
/// importer's default concurrency, each sent once; returns what a fresh simulator counted.
async fn naive(rows: usize, rate: u32, limit: u32, latency: (u64, u64)) -> Result<SimStats, Error> {
    let sim = SimHandle::start(sim_config(limit, latency)).await?;
    let url = sim.url();
    let account = naive::Account {
        sdkappid: SDKAPPID,
        admin: ADMIN,
        key: KEY,
    };
    naive::send(
        &url,
        &account,
        rows,
        rate,
        SendSettings::default_concurrency(rate),
    )
    .await?;
    let stats = sim.stats();
    sim.shutdown();
    // Thousands of connections close behind it: let them go before the next run's simulator
    // (in this process) counts arrivals.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(stats)
}

/// The mean rate of accepted requests at the simulator (its `mean_rate` counts every arrival).
fn accepted_mean(stats: &SimStats) -> f64 {
    let span = (stats.requests.saturating_sub(1)) as f64 / stats.mean_rate.max(f64::MIN_POSITIVE);
    (stats.count("0").saturating_sub(1)) as f64 / span
}
