//! `just bench-send`: sends ROWS rows to the built-in simulator at the default rate, once with
//! the real importer (a child process, so its CPU time is its own), once with a naive baseline
//! (governor's plain `Quota::per_second(200)` and 250 concurrent tasks, the loop most people
//! write first), and once with a bare loop (also a child process: the same requests with
//! nothing around them, the CPU floor of reqwest, tokio and this machine), and prints what the
//! simulator counted side by side.
//!
//! `cargo run --release --example send_bench -- ROWS MIN_MS-MAX_MS`

#[path = "naive.rs"]
mod naive;
#[path = "timed.rs"]
mod timed;

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timed::{Steal, Timed, TIME_FORMAT};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

const SDKAPPID: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "bench-secret";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare") {
        // The child: `send_bench bare URL ROWS`, on one thread like the importer's sending.
        let url = args.get(2).ok_or("bare URL ROWS")?;
        let rows: usize = args.get(3).ok_or("bare URL ROWS")?.parse()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ok = runtime.block_on(bare(url, &ACCOUNT, rows, 200))?;
        println!("{ok}");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(args))
}

const ACCOUNT: naive::Account<'static> = naive::Account {
    sdkappid: SDKAPPID,
    admin: ADMIN,
    key: KEY,
};

/// Runs `exe ARGS` under `/usr/bin/time`: its output, and its CPU time, wall time and peak RSS.
async fn timed_child(
    exe: std::path::PathBuf,
    args: Vec<String>,
) -> Result<(std::process::Output, Timed), Box<dyn std::error::Error>> {
    let name = exe.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("/usr/bin/time")
            .args(["-f", TIME_FORMAT])
            .arg(&exe)
            .args(&args)
            .env("PROFILE_IMPORT_SECRET_KEY", KEY)
            .output()
    })
    .await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        eprintln!("{stderr}");
        return Err(format!("{name} exited with {:?}", output.status.code()).into());
    }
    let timed = Timed::from_stderr(&stderr)?;
    Ok((output, timed))
}

async fn bench(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let rows: usize = args.get(1).map_or(Ok(6000), |s| s.parse())?;
    let latency = args.get(2).cloned().unwrap_or_else(|| "20-80".into());
    let (lo, hi) = latency.split_once('-').ok_or("latency like 20-80")?;
    let (lo, hi) = (
        Duration::from_millis(lo.parse()?),
        Duration::from_millis(hi.parse()?),
    );
    let dir = std::env::temp_dir().join(format!("send-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("bench.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv)?);
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

    let sim_config = || {
        let mut config = SimConfig::new(SDKAPPID, ADMIN, SecretKey::new(KEY));
        config.latency_min = lo;
        config.latency_max = hi;
        // The bench measures the client's pacing, so the simulator counts but never throttles.
        config.limit_per_sec = 0;
        config
    };

    // The importer, as a user runs it.
    let sim = SimHandle::start(sim_config()).await?;
    let exe = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("profile-import"))
        .ok_or("cannot find target/release/profile-import")?;
    let import_args = [
        "-q",
        "import",
        &csv.display().to_string(),
        "--sdkappid",
        &SDKAPPID.to_string(),
        "--endpoint",
        &sim.url(),
        "--no-progress",
    ]
    .map(String::from)
    .to_vec();
    let steal = Steal::start();
    let (_, timed) = timed_child(exe, import_args).await?;
    let tool_steal = steal.share();
    let (wall, rss_kb) = (timed.wall, timed.rss_kb);
    let tool = sim.stats();
    sim.shutdown();

    // The bare loop, against a fresh simulator.
    let sim = SimHandle::start(sim_config()).await?;
    let bare_args = vec!["bare".to_string(), sim.url(), rows.to_string()];
    let steal = Steal::start();
    let (bare_output, bare_timed) = timed_child(std::env::current_exe()?, bare_args).await?;
    let bare_steal = steal.share();
    let bare_ok = String::from_utf8_lossy(&bare_output.stdout)
        .trim()
        .to_string();
    let bare = sim.stats();
    sim.shutdown();

    // The naive baseline, against a fresh simulator.
    let sim = SimHandle::start(sim_config()).await?;
    let naive_started = Instant::now();
    let steal = Steal::start();
    naive::send(&sim.url(), &ACCOUNT, rows, 200, 250).await?;
    let naive_wall = naive_started.elapsed().as_secs_f64();
    let naive_steal = steal.share();
    let naive = sim.stats();
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    println!("bench-send: {rows} rows, simulator latency {latency} ms, ceiling 200/s");
    println!(
        "{:<34} {:>16} {:>16} {:>22}",
        "", "profile-import", "bare loop", "naive per_second(200)"
    );
    let row = |name: &str, a: String, b: String, c: String| {
        println!("{name:<34} {a:>16} {b:>16} {c:>22}")
    };
    row(
        "mean rate (sim)  [target >= 197/s]",
        format!("{:.1}/s", tool.mean_rate),
        format!("{:.1}/s", bare.mean_rate),
        format!("{:.1}/s", naive.mean_rate),
    );
    row(
        "max in any 1 s window [<= 200]",
        tool.max_in_any_window.to_string(),
        bare.max_in_any_window.to_string(),
        naive.max_in_any_window.to_string(),
    );
    row(
        "answers OK",
        tool.count("0").to_string(),
        bare_ok,
        naive.count("0").to_string(),
    );
    row(
        "wall time",
        format!("{wall:.1} s"),
        format!("{:.1} s", bare_timed.wall),
        format!("{naive_wall:.1} s"),
    );
    let cpu_share = |timed: &Timed| {
        format!(
            "{:.2} s ({:.1}%)",
            timed.cpu,
            100.0 * timed.cpu / timed.wall
        )
    };
    row(
        "CPU time [import: <= 5% of a core]",
        cpu_share(&timed),
        cpu_share(&bare_timed),
        "-".into(),
    );
    row(
        "machine's steal time (other VMs)",
        tool_steal,
        bare_steal,
        naive_steal,
    );
    row(
        "peak RSS",
        format!("{:.1} MB", rss_kb / 1024.0),
        format!("{:.1} MB", bare_timed.rss_kb / 1024.0),
        "-".into(),
    );
    Ok(())
}

/// The least a client can do for the same requests: one thread, one request started every
/// `1/rate` s by a plain tokio interval, each answer read and its `ErrorCode` checked, and
/// nothing else (no CSV, no validation, no journal, no pacer bookkeeping, no retries). Its CPU
/// time is the floor that reqwest, tokio and this machine's kernel set for `rows` requests.
/// Returns how many answered `ErrorCode` 0.
pub async fn bare(
    url: &str,
    account: &naive::Account<'_>,
    rows: usize,
    rate: u32,
) -> Result<usize, Box<dyn std::error::Error>> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .build()?;
    let base: Arc<str> = account.portrait_set_url(url)?.into();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut requests = tokio::task::JoinSet::new();
    let mut ok = 0;
    for i in 0..rows {
        tick.tick().await;
        let (client, base) = (client.clone(), base.clone());
        requests.spawn(async move {
            let body = format!(
                r#"{{"From_Account":"bench_{i:06}","ProfileItem":[{{"Tag":"Tag_Profile_IM_Nick","Value":"Nick {i}"}}]}}"#
            );
            let answer = client
                .post(format!("{base}&random={i}&contenttype=json"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .ok()?
                .bytes()
                .await
                .ok()?;
            let answer: serde_json::Value = serde_json::from_slice(&answer).ok()?;
            (answer["ErrorCode"] == 0).then_some(())
        });
        while let Some(done) = requests.try_join_next() {
            ok += usize::from(matches!(done, Ok(Some(()))));
        }
    }
    while let Some(done) = requests.join_next().await {
        ok += usize::from(matches!(done, Ok(Some(()))));
    }
    Ok(ok)
}
