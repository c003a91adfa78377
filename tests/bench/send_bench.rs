//! `just bench-send`: sends ROWS rows to the built-in simulator at the default rate, once with
//! the real importer (a child process, so its CPU time is its own) and once with a naive
//! baseline (governor's plain `Quota::per_second(200)` and 250 concurrent tasks, the loop most
//! people write first), and prints what the simulator counted side by side.
//!
//! `cargo run --release --example send_bench -- ROWS MIN_MS-MAX_MS`

#[path = "naive.rs"]
mod naive;
#[path = "timed.rs"]
mod timed;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};
use timed::{Timed, TIME_FORMAT};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

const SDKAPPID: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "bench-secret";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
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
    let url = sim.url();
    let csv_path = csv.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("/usr/bin/time")
            .args(["-f", TIME_FORMAT])
            .arg(&exe)
            .args(["-q", "import"])
            .arg(&csv_path)
            .args([
                "--sdkappid",
                &SDKAPPID.to_string(),
                "--endpoint",
                &url,
                "--no-progress",
            ])
            .env("PROFILE_IMPORT_SECRET_KEY", KEY)
            .output()
    })
    .await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let timed = Timed::from_stderr(&stderr)?;
    let (cpu, wall, rss_kb) = (timed.cpu, timed.wall, timed.rss_kb);
    let tool = sim.stats();
    sim.shutdown();
    if !output.status.success() {
        eprintln!("{stderr}");
        return Err(format!("import exited with {:?}", output.status.code()).into());
    }

    // The naive baseline, against a fresh simulator.
    let sim = SimHandle::start(sim_config()).await?;
    let naive_started = Instant::now();
    let account = naive::Account {
        sdkappid: SDKAPPID,
        admin: ADMIN,
        key: KEY,
    };
    naive::send(&sim.url(), &account, rows, 200, 250).await?;
    let naive_wall = naive_started.elapsed().as_secs_f64();
    let naive = sim.stats();
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    println!("bench-send: {rows} rows, simulator latency {latency} ms, ceiling 200/s");
    println!(
        "{:<34} {:>16} {:>22}",
        "", "profile-import", "naive per_second(200)"
    );
    let row = |name: &str, a: String, b: String| println!("{name:<34} {a:>16} {b:>22}");
    row(
        "mean rate (sim)  [target >= 197/s]",
        format!("{:.1}/s", tool.mean_rate),
        format!("{:.1}/s", naive.mean_rate),
    );
    row(
        "max in any 1 s window [<= 200]",
        tool.max_in_any_window.to_string(),
        naive.max_in_any_window.to_string(),
    );
    row(
        "answers OK",
        tool.count("0").to_string(),
        naive.count("0").to_string(),
    );
    row(
        "wall time",
        format!("{wall:.1} s"),
        format!("{naive_wall:.1} s"),
    );
    row(
        "import CPU time [<= 5% of a core]",
        format!("{cpu:.2} s ({:.1}%)", 100.0 * cpu / wall),
        "-".into(),
    );
    row(
        "import peak RSS",
        format!("{:.1} MB", rss_kb / 1024.0),
        "-".into(),
    );
    Ok(())
}
