//! `just bench-changes`: `import --changes-only` of a 1 M-row file against a simulator that
//! already holds the earlier import, with 1 % of the rows carrying a changed Nick.
//!
//! The simulator (Chat's limits: 200 calls/s per command; 20-80 ms latency) is seeded directly
//! with the base file's values, mapped by the importer's own row code, without a request. Then,
//! each run timed with its peak RSS (`/usr/bin/time`) and counted by the simulator:
//! 1. `--changes-only --state S` on the base file: rebuilds a state from what Chat holds
//!    (sends nothing);
//! 2. `--changes-only` on the changed file: reads every user, sends only the changed Nicks;
//! 3. `--state S` on the changed file: the same changes found from the state, with no read.
//!
//! `cargo run --release --example changes_bench -- [ROWS] [CHANGED_PERCENT]`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle, SimStats};

#[path = "seed.rs"]
mod seed;
use seed::{seed, sibling, Error};

const SDKAPPID: u64 = 1_400_000_000;
const KEY: &str = "bench-secret";
const CHAT_RATE: f64 = 200.0;

/// One measured run.
struct Measured {
    label: &'static str,
    secs: f64,
    peak_rss_mb: f64,
    gets: u64,
    sets: u64,
    summary: serde_json::Value,
}

fn calls(stats: &SimStats, command: &str) -> u64 {
    stats.by_command.get(command).copied().unwrap_or(0)
}

/// Runs the importer on `csv` with `extra`, timed, with its peak RSS and the simulator's counts.
async fn measure(
    label: &'static str,
    sim: &SimHandle,
    csv: &Path,
    dir: &Path,
    extra: &[&str],
) -> Result<Measured, Error> {
    let tool = sibling("profile-import")?;
    let (rss, json) = (dir.join("rss"), dir.join("summary.json"));
    let mut command = Command::new("/usr/bin/time");
    command
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(&tool)
        .arg("import")
        .arg(csv)
        .args([
            "--sdkappid",
            &SDKAPPID.to_string(),
            "--endpoint",
            &sim.url(),
        ])
        .args(["--no-progress", "-q", "--summary-json"])
        .arg(&json)
        .arg("--journal")
        .arg(dir.join(format!("{label}.journal").replace(' ', "_")))
        .args(extra)
        .env("PROFILE_IMPORT_SECRET_KEY", KEY);
    let before = sim.stats();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let secs = started.elapsed().as_secs_f64();
    if !matches!(output.status.code(), Some(0) | Some(3)) {
        return Err(format!("{label}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let after = sim.stats();
    let kb: f64 = std::fs::read_to_string(&rss)?.trim().parse()?;
    Ok(Measured {
        label,
        secs,
        peak_rss_mb: kb / 1024.0,
        gets: calls(&after, "portrait_get") - calls(&before, "portrait_get"),
        sets: calls(&after, "portrait_set") - calls(&before, "portrait_set"),
        summary: serde_json::from_slice(&std::fs::read(&json)?)?,
    })
}

fn print(rows: u64, changed: u64, seeded: (u64, f64), runs: &[Measured]) {
    println!(
        "bench-changes: {rows} rows, {changed}% of them with a changed Nick; the simulator holds \
         the base import ({} users, seeded directly in {:.1} s)",
        seeded.0, seeded.1
    );
    println!("simulator: Chat's limits (200 calls/s per command), 20-80 ms latency; default --rate 200, --read-rate 200");
    println!(
        "{:<52} {:>9} {:>13} {:>13} {:>10}",
        "run", "wall s", "portrait_get", "portrait_set", "peak RSS"
    );
    for run in runs {
        println!(
            "{:<52} {:>9.1} {:>13} {:>13} {:>7.1} MB",
            run.label, run.secs, run.gets, run.sets, run.peak_rss_mb
        );
        let s = &run.summary;
        let c = &s["changes_only"];
        if c.is_object() {
            println!(
                "    ok {} failed {} | users compared {} unchanged in Chat {} updated {} tags sent {} read calls {} ({} throttled); sends throttled {}",
                s["ok"], s["failed"], c["users_compared"], c["unchanged_in_chat"], c["updated"],
                c["tags_sent"], c["read_calls"], c["read_throttled"], s["throttled"]
            );
        } else {
            println!(
                "    ok {} failed {} | unchanged (from the state) {}; sends throttled {}",
                s["ok"], s["failed"], s["unchanged"], s["throttled"]
            );
        }
    }
    let full = Duration::from_secs_f64(rows as f64 / CHAT_RATE);
    println!(
        "{:<52} {:>9.1}   ({rows} rows ÷ 200/s, {:.0} min)",
        "full re-import estimate",
        full.as_secs_f64(),
        full.as_secs_f64() / 60.0
    );
    if let Some(run) = runs
        .iter()
        .find(|r| r.label.starts_with("--changes-only (changed"))
    {
        let time_ok = run.secs <= 120.0;
        let rss_ok = run.peak_rss_mb <= 64.0;
        println!(
            "goal: --changes-only <= 120 s: {} ({:.1} s); peak RSS <= 64 MB: {} ({:.1} MB)",
            if time_ok { "met" } else { "MISSED" },
            run.secs,
            if rss_ok { "met" } else { "MISSED" },
            run.peak_rss_mb
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let changed: u64 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let generator = sibling("gen_profiles")?;
    let dir = std::env::temp_dir().join(format!("changes-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (base, next, state) = (
        dir.join("base.csv"),
        dir.join("next.csv"),
        dir.join("state.db"),
    );
    Command::new(&generator)
        .arg(rows.to_string())
        .arg(&base)
        .status()?;
    Command::new(&generator)
        .arg(rows.to_string())
        .arg(&next)
        .args([changed.to_string(), "7".into()])
        .status()?;

    let mut config = SimConfig::new(SDKAPPID, "administrator", SecretKey::new(KEY));
    config.latency_min = Duration::from_millis(20);
    config.latency_max = Duration::from_millis(80);
    let sim = SimHandle::start(config).await?;
    eprintln!("seeding the simulator with {rows} users (setup) …");
    let started = Instant::now();
    let seeded = (seed(&sim, &base)?, started.elapsed().as_secs_f64());
    let state_arg = state.to_str().ok_or("temp path is not UTF-8")?;

    let mut runs = Vec::new();
    for (label, csv, extra) in [
        (
            "--changes-only --state S (base file: rebuild S)",
            &base,
            vec!["--changes-only", "--state", state_arg],
        ),
        (
            "--changes-only (changed file)",
            &next,
            vec!["--changes-only"],
        ),
        (
            "--state S (changed file, for comparison)",
            &next,
            vec!["--state", state_arg],
        ),
    ] {
        eprintln!("running {label} …");
        runs.push(measure(label, &sim, csv, &dir, &extra).await?);
    }
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    print(rows, changed, seeded, &runs);
    Ok(())
}
