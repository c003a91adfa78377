//! `just bench-verify`: `verify` of a 1 M-user file against a simulator that holds every value
//! (seeded directly), at Chat's limits (200 portrait_get calls/s, 100 users a call) and 20-80 ms
//! latency, beside what those limits allow (10,000 calls ÷ 200/s) and `import --changes-only` on
//! the same file, which reads through the same path and sends nothing.
//!
//! `cargo run --release --example verify_bench -- [ROWS] [OTHER_BINARY]`: with OTHER_BINARY (an
//! earlier build, say), its `verify` is measured too, for a before/after side by side.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

#[path = "seed.rs"]
mod seed;
use seed::{seed, sibling, Error};

const SDKAPPID: u64 = 1_400_000_000;
const KEY: &str = "bench-secret";

struct Measured {
    label: String,
    secs: f64,
    peak_rss_mb: f64,
    gets: u64,
    code: Option<i32>,
}

fn gets(sim: &SimHandle) -> u64 {
    sim.stats()
        .by_command
        .get("portrait_get")
        .copied()
        .unwrap_or(0)
}

/// Runs `tool` with `args` (plus the connection to `sim`), timed, with its peak RSS.
async fn measure(
    label: String,
    tool: &Path,
    sim: &SimHandle,
    dir: &Path,
    args: &[&str],
) -> Result<Measured, Error> {
    let rss = dir.join("rss");
    let mut command = Command::new("/usr/bin/time");
    command
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(tool)
        .current_dir(dir)
        .args(args)
        .args([
            "--sdkappid",
            &SDKAPPID.to_string(),
            "--endpoint",
            &sim.url(),
        ])
        .env("PROFILE_IMPORT_SECRET_KEY", KEY);
    let before = gets(sim);
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let secs = started.elapsed().as_secs_f64();
    let kb: f64 = std::fs::read_to_string(&rss)?.trim().parse()?;
    if !matches!(output.status.code(), Some(0)) {
        eprintln!("{label}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(Measured {
        label,
        secs,
        peak_rss_mb: kb / 1024.0,
        gets: gets(sim) - before,
        code: output.status.code(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let other = args.get(2).map(std::path::PathBuf::from);
    let dir = std::env::temp_dir().join(format!("verify-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("users.csv");
    Command::new(sibling("gen_profiles")?)
        .arg(rows.to_string())
        .arg(&csv)
        .status()?;

    let mut config = SimConfig::new(SDKAPPID, "administrator", SecretKey::new(KEY));
    config.latency_min = Duration::from_millis(20);
    config.latency_max = Duration::from_millis(80);
    let sim = SimHandle::start(config).await?;
    eprintln!("seeding the simulator with {rows} users (setup) …");
    let users = seed(&sim, &csv)?;
    let tool = sibling("profile-import")?;
    let csv_arg = csv.to_str().ok_or("temp path is not UTF-8")?;
    let quiet = ["--no-progress", "-q"];
    let mut runs = Vec::new();
    eprintln!("running verify …");
    let verify = ["verify", csv_arg];
    let args: Vec<&str> = verify.iter().chain(&quiet).copied().collect();
    runs.push(measure("verify".into(), &tool, &sim, &dir, &args).await?);
    eprintln!("running import --changes-only (baseline: the same reads) …");
    let changes = ["import", csv_arg, "--changes-only"];
    let args: Vec<&str> = changes.iter().chain(&quiet).copied().collect();
    runs.push(
        measure(
            "import --changes-only (same reads, sends nothing)".into(),
            &tool,
            &sim,
            &dir,
            &args,
        )
        .await?,
    );
    if let Some(other) = &other {
        eprintln!("running {} verify …", other.display());
        let label = format!("verify of {}", other.display());
        runs.push(measure(label, other, &sim, &dir, &["verify", csv_arg, "-q"]).await?);
    }
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "bench-verify: {rows} rows, {users} users Chat holds (seeded directly); simulator at Chat's limits (200 calls/s per command), 20-80 ms latency"
    );
    println!(
        "{:<52} {:>9} {:>13} {:>10} {:>6}",
        "run", "wall s", "portrait_get", "peak RSS", "exit"
    );
    for run in &runs {
        println!(
            "{:<52} {:>9.1} {:>13} {:>7.1} MB {:>6}",
            run.label,
            run.secs,
            run.gets,
            run.peak_rss_mb,
            run.code.map_or("-".into(), |c| c.to_string())
        );
    }
    let calls = users.div_ceil(100);
    println!(
        "{:<52} {:>9.1} {:>13}   (Chat's limits: {users} users ÷ 100 a call ÷ 200 calls/s)",
        "floor",
        calls as f64 / 200.0,
        calls
    );
    let verify = &runs[0];
    println!(
        "goal: verify <= 60 s: {} ({:.1} s); peak RSS <= 64 MB: {} ({:.1} MB)",
        if verify.secs <= 60.0 { "met" } else { "MISSED" },
        verify.secs,
        if verify.peak_rss_mb <= 64.0 {
            "met"
        } else {
            "MISSED"
        },
        verify.peak_rss_mb
    );
    Ok(())
}
