//! `just bench-sync`: a change-only sync of a 1 M-row file in which 1 % of the rows changed.
//!
//! Seeds a `--state` database by importing the base file into the built-in simulator (at a
//! high `--rate`, it is only the setup), then measures, on the changed file: a plain dry run,
//! the sync's local pass (`--dry-run --state`: read, validate, hash, compare, send nothing),
//! and the whole sync at the default rate.
//!
//! `cargo run --release --example sync_bench -- [ROWS] [CHANGED_PERCENT]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

const SDKAPPID: u64 = 1_400_000_000;
const KEY: &str = "bench-secret";

fn sibling(name: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("no exe dir")?;
    let candidate = dir.join(name);
    if candidate.exists() {
        return Ok(candidate);
    }
    Ok(dir.parent().ok_or("no target dir")?.join(name))
}

/// Runs a command and returns (wall seconds, stderr).
fn timed(command: &mut Command) -> Result<(f64, String), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let output = command.output()?;
    let secs = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !matches!(output.status.code(), Some(0) | Some(3)) {
        return Err(format!("{command:?} failed: {stderr}").into());
    }
    Ok((secs, stderr))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn count(summary: &str, label: &str) -> u64 {
    summary
        .lines()
        .find(|l| l.starts_with(label))
        .and_then(|l| l[label.len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn dry_runs(
    tool: &Path,
    csv: &Path,
    state: Option<&Path>,
    dir: &Path,
) -> Result<(f64, String), Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    let mut last = String::new();
    for _ in 0..3 {
        let mut command = Command::new(tool);
        command.args(["import", "--dry-run"]).arg(csv);
        command.arg("--failures").arg(dir.join("dry.failures.csv"));
        if let Some(state) = state {
            command.arg("--state").arg(state);
        }
        let (secs, stderr) = timed(&mut command)?;
        times.push(secs);
        last = stderr;
    }
    Ok((median(times), last))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let changed: u64 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let tool = sibling("profile-import")?;
    let generator = sibling("gen_profiles")?;
    let dir = std::env::temp_dir().join(format!("sync-bench-{}", std::process::id()));
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
    Command::new("sync").status()?;

    let mut config = SimConfig::new(SDKAPPID, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    let sim = SimHandle::start(config).await?;
    let url = sim.url();
    let import = |csv: &Path, extra: &[&str]| {
        let mut command = Command::new(&tool);
        command
            .args(["import"])
            .arg(csv)
            .arg("--state")
            .arg(&state)
            .args(["--sdkappid", &SDKAPPID.to_string(), "--endpoint", &url])
            .args(["--no-progress", "-q"])
            .args(extra)
            .env("PROFILE_IMPORT_SECRET_KEY", KEY);
        command
    };

    eprintln!("seeding the state with {rows} rows (setup, not measured against a target) …");
    let mut seed = import(&base, &["--rate", "50000", "--concurrency", "128"]);
    let (seed_secs, _) =
        tokio::task::spawn_blocking(move || timed(&mut seed).map_err(|e| e.to_string()))
            .await?
            .map_err(|e| e.to_string())?;
    let seeded = sim.stats().requests;

    let (dry_secs, _) = dry_runs(&tool, &next, None, &dir)?;
    let (local_secs, local) = dry_runs(&tool, &next, Some(&state), &dir)?;
    let would_send = count(&local, "valid");

    let mut sync = import(&next, &[]);
    let (sync_secs, sync_out) =
        tokio::task::spawn_blocking(move || timed(&mut sync).map_err(|e| e.to_string()))
            .await?
            .map_err(|e| e.to_string())?;
    let sent = sim.stats().requests - seeded;
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    println!("bench-sync: {rows} rows, {changed}% changed (state seeded in {seed_secs:.1} s)");
    println!("{:<44} {:>10} {:>14}", "", "seconds", "rows/s");
    println!(
        "{:<44} {:>10.2} {:>14.0}",
        "dry run of the changed file (median of 3)",
        dry_secs,
        rows as f64 / dry_secs
    );
    println!(
        "{:<44} {:>10.2} {:>14.0}",
        "sync local pass: --dry-run --state (median)",
        local_secs,
        rows as f64 / local_secs
    );
    println!(
        "{:<44} {:>10.1} {:>14}",
        "whole sync at the default rate (200/s)", sync_secs, "-"
    );
    println!(
        "local pass / dry run: {:.2} (target >= 0.5); would send {would_send}, sent {sent} (simulator count), unchanged {}",
        dry_secs / local_secs,
        count(&sync_out, "unchanged")
    );
    Ok(())
}
