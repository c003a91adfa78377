//! `just bench-batch`: 1 M Nick+Image rows into the built-in simulator with
//! `--batch-nick-image` at the default rates (multiaccount_import 100/s, portrait_set 200/s)
//! and Chat's documented limits in the simulator, with 20-80 ms of latency. Prints the wall
//! time, the requests by command, the import's peak RSS (from /usr/bin/time), and beside them
//! what the same file costs through portrait_set (rows ÷ 200/s, not run).
//!
//! `cargo run --release --example batch_bench -- [ROWS]`

#[path = "timed.rs"]
mod timed;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use timed::{Steal, Timed, TIME_FORMAT};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

const SDKAPPID: u64 = 1_400_000_000;
const KEY: &str = "bench-secret";
/// The goals from issue 14.
const GOAL_SECONDS: f64 = 180.0;
const GOAL_RSS_MB: f64 = 64.0;

fn release_binary() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("no exe dir")?;
    let candidate = dir.join("profile-import");
    if candidate.exists() {
        return Ok(candidate);
    }
    Ok(dir.parent().ok_or("no target dir")?.join("profile-import"))
}

/// `rows` rows of `UserID,Nick,Image`, one user each.
fn write_input(path: &PathBuf, rows: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut writer = csv::Writer::from_path(path)?;
    writer.write_record(["UserID", "Nick", "Image"])?;
    for i in 0..rows {
        writer.write_record([
            format!("bench_{i:08}"),
            format!("Nick {i} 名字"),
            format!("https://img.example.com/avatars/{i}.png"),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let exe = release_binary()?;
    let dir = std::env::temp_dir().join(format!("batch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("users.csv");
    write_input(&csv, rows)?;

    let mut config = SimConfig::new(SDKAPPID, "administrator", SecretKey::new(KEY));
    config.latency_min = Duration::from_millis(20);
    config.latency_max = Duration::from_millis(80);
    let sim = SimHandle::start(config).await?;
    let url = sim.url();
    let input = csv.clone();
    let steal = Steal::start();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("/usr/bin/time")
            .args(["-f", TIME_FORMAT])
            .arg(&exe)
            .arg("import")
            .arg(&input)
            .args(["--batch-nick-image", "--no-progress"])
            .args(["--sdkappid", &SDKAPPID.to_string(), "--endpoint", &url])
            .env("PROFILE_IMPORT_SECRET_KEY", KEY)
            .output()
    })
    .await??;
    let steal = steal.share();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stats = sim.stats();
    let held = sim.profiles().len();
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    if !output.status.success() {
        eprintln!("{stderr}");
        return Err(format!("import exited with {:?}", output.status.code()).into());
    }
    let timed = Timed::from_stderr(&stderr)?;
    let (cpu, wall, rss_mb) = (timed.cpu, timed.wall, timed.rss_kb / 1024.0);

    println!("bench-batch: {rows} Nick+Image rows, simulator at Chat's limits, 20-80 ms latency");
    for line in stderr.lines().filter(|l| {
        [
            "ok ",
            "failed ",
            "requests ",
            "batch ",
            "self-check ",
            "elapsed ",
        ]
        .iter()
        .any(|p| l.starts_with(p))
    }) {
        println!("  {line}");
    }
    println!(
        "{:<40} {:>12.1} s   (goal <= {GOAL_SECONDS:.0} s)",
        "wall time, --batch-nick-image", wall
    );
    println!("{:<40} {:>12.1} s", "import CPU (user + system)", cpu);
    println!("{:<40} {:>14}", "machine's steal time (other VMs)", steal);
    println!(
        "{:<40} {:>12.1} MB  (goal <= {GOAL_RSS_MB:.0} MB)",
        "import peak RSS", rss_mb
    );
    let by_command: Vec<String> = stats
        .by_command
        .iter()
        .map(|(command, n)| format!("{command}={n}"))
        .collect();
    println!(
        "{:<40} {}",
        "requests by command (simulator)",
        by_command.join(" ")
    );
    println!("{:<40} {held}", "profiles the simulator holds");
    let naive = rows as f64 / 200.0;
    println!(
        "{:<40} {:>12.1} s   ({:.0} min; rows / 200 per s, not run)",
        "the same file through portrait_set",
        naive,
        naive / 60.0
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "goals: wall time {}, peak RSS {}; speed-up {:.0}x",
        verdict(wall <= GOAL_SECONDS),
        verdict(rss_mb <= GOAL_RSS_MB),
        naive / wall
    );
    Ok(())
}
