//! A renewed UserSig is the one on the wire, end to end through the binary: renewed before it
//! expires during a run longer than its lifetime, and renewed after Chat answers 70001. The
//! simulator checks every sig's expiry against its own clock and counts the sigs that passed by
//! their lifetime (`SimStats::usersigs`), so a test sees which sigs the requests carried.
//!
//! The CLI's shortest `--usersig-ttl` is 60 s; the binary here gets a few seconds through the
//! test hook `PROFILE_IMPORT_TEST_USERSIG_TTL`. Assertions are on counts and whole seconds of
//! margin, never on timings.

use profile_import::chat::client::TEST_USERSIG_TTL_ENV;
use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle, SimStats};

use crate::util::{tool_command, write_csv, Run, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "usersig-renewal-test-key-5c1a";
/// 400 rows at 50/s: about 8 s, several lifetimes of the short sigs below.
const ROWS: usize = 400;
const RATE: &str = "50";

/// Imports `ROWS` rows with the binary against `sim`, its UserSigs living `ttl` seconds.
async fn import_with_ttl(sim: &SimHandle, ttl: u64) -> (Run, Workspace) {
    let ws = Workspace::new();
    let rows: Vec<Vec<String>> = (0..ROWS)
        .map(|i| vec![format!("user_{i:04}"), format!("Nick {i}")])
        .collect();
    write_csv(&ws.path("users.csv"), &["UserID", "Nick"], &rows);
    let mut command = tool_command();
    command
        .current_dir(ws.dir())
        .args(["import", "users.csv", "--no-progress", "--rate", RATE])
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .env(TEST_USERSIG_TTL_ENV, ttl.to_string());
    // On a blocking thread, so the simulator keeps being served.
    let run = tokio::task::spawn_blocking(move || {
        Run::from_output(command.output().expect("run the binary"))
    })
    .await
    .expect("the runner thread");
    (run, ws)
}

/// Every request that passed the UserSig check carried a sig of `ttl` seconds that was valid
/// when it arrived, and more than one sig passed: the renewed ones were on the wire. Returns
/// how many distinct sigs passed.
#[track_caller]
fn assert_renewed_sigs_on_the_wire(stats: &SimStats, ttl: u64) -> usize {
    assert!(stats.usersigs.len() >= 2, "one UserSig all run\n{stats:#?}");
    for seen in &stats.usersigs {
        assert_eq!(seen.expire, ttl, "{seen:?}");
        assert!(
            seen.last_at <= seen.time + seen.expire,
            "a request passed with an expired sig: {seen:?}"
        );
    }
    let passed: u64 = stats.usersigs.iter().map(|seen| seen.requests).sum();
    assert_eq!(passed, stats.requests - stats.count("70001"), "{stats}");
    stats.usersigs.len()
}

/// With a 3 s lifetime the client signs 1 s back and renews a whole second before the end, so
/// each sig is used for about a second and still has 2 s to live at its last use: a request
/// would have to take 2 s to arrive to meet an expired sig. Not one 70001 over ~8 s means the
/// renewals reached the request URLs (which are cached per command with the sig).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usersig_renewed_before_it_expires_is_the_one_on_the_wire() {
    const TTL: u64 = 3;
    let sim = SimHandle::start(SimConfig::new(APP, ADMIN, SecretKey::new(KEY)))
        .await
        .expect("start the simulator");
    let (run, ws) = import_with_ttl(&sim, TTL).await;
    let stats = sim.stats();
    run.assert_code(0);
    assert_eq!(stats.count_for("portrait_set", "0"), ROWS as u64, "{stats}");
    assert_eq!(stats.count("70001"), 0, "{stats}");
    let sigs = assert_renewed_sigs_on_the_wire(&stats, TTL);
    // The run outlived a lifetime, so the sigs it used could not all have been the first.
    let first = stats.usersigs.iter().map(|s| s.first_at).min().unwrap_or(0);
    let last = stats.usersigs.iter().map(|s| s.last_at).max().unwrap_or(0);
    assert!(last - first > TTL, "{first}..{last}: {sigs} sigs");
    assert!(!ws.path("users.failures.csv").exists());
}

/// A simulator whose clock is 3 s ahead expires a 10 s sig (signed 5 s back) 2-3 s after it
/// was made, before the client's own renewal (a second before the end by the client's clock):
/// each sig meets a 70001, the client renews and sends the row again, and the renewed sig,
/// valid at the simulator for 2 s more, must be the one in the URL. Were the old sig still
/// there, the second 70001 would stop the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_70001_the_renewed_usersig_is_the_one_on_the_wire() {
    const TTL: u64 = 10;
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.clock_ahead = std::time::Duration::from_secs(3);
    let sim = SimHandle::start(config).await.expect("start the simulator");
    let (run, ws) = import_with_ttl(&sim, TTL).await;
    let stats = sim.stats();
    run.assert_code(0);
    assert!(!run.stderr.contains("even after renewal"), "{}", run.stderr);
    let expired = stats.count("70001");
    assert!(expired >= 1, "the simulator never expired a sig\n{stats}");
    // Each 70001 cost one more request and nothing else: every row landed once.
    assert_eq!(stats.count_for("portrait_set", "0"), ROWS as u64, "{stats}");
    assert_eq!(stats.requests, ROWS as u64 + expired, "{stats}");
    assert_renewed_sigs_on_the_wire(&stats, TTL);
    assert!(!ws.path("users.failures.csv").exists());
}
