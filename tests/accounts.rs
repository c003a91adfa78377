//! Chat accounts and read-back: portrait_set's 40003 for users who are not accounts,
//! `--create-accounts` (batch, account-list, on-demand), `check-accounts`, `verify`, and a
//! signal during the account pass.
//!
//! Every test runs the real binary in its own temporary directory against its own in-process
//! simulator on a port-0 loopback listener. The binary runs on a blocking thread while the
//! simulator is served by the other runtime worker. Nothing waits on a timer to make an
//! assertion pass; rates are checked with wide margins.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{Injected, SimConfig, SimHandle};

use crate::util::{exec, read_csv, read_failures, Run, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "accounts-test-key-4b8e1d";

const NICK: &str = "Tag_Profile_IM_Nick";
const IMAGE: &str = "Tag_Profile_IM_Image";
const LEVEL: &str = "Tag_Profile_IM_Level";

// ── helpers ────────────────────────────────────────────────────────────────────────────────

/// The test app with no rate limit (functional tests send fast), no latency, no faults.
fn sim_config() -> SimConfig {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config
}

async fn start(config: SimConfig) -> SimHandle {
    SimHandle::start(config).await.expect("start the simulator")
}

fn user(i: usize) -> String {
    format!("user_{i:04}")
}

/// 30 % of users are not accounts: those whose index ends in 3, 6 or 9.
fn is_missing(i: usize) -> bool {
    matches!(i % 10, 3 | 6 | 9)
}

/// The accounts a simulator knows when 30 % of `n` users are missing.
fn known_accounts(n: usize) -> HashSet<String> {
    (0..n).filter(|&i| !is_missing(i)).map(user).collect()
}

/// Writes a CSV (header first) into the workspace with the csv crate.
fn write_csv(ws: &Workspace, name: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut writer = csv::Writer::from_path(ws.path(name)).expect("create a test CSV");
    writer.write_record(header).unwrap();
    for row in rows {
        assert_eq!(row.len(), header.len(), "test row of the wrong width");
        writer.write_record(row).unwrap();
    }
    writer.flush().unwrap();
}

/// `n` rows of `UserID,Nick`, one per user: `user_0000,Nick 0 ✓` …
fn nick_rows(n: usize) -> Vec<Vec<String>> {
    (0..n).map(|i| vec![user(i), nick_of(i)]).collect()
}

fn nick_of(i: usize) -> String {
    format!("Nick {i} ✓")
}

/// The binary with `args` (file names relative to the workspace) and the connection to `sim`,
/// in a clean environment holding only the simulator's key.
fn tool(ws: &Workspace, sim: &SimHandle, args: &[&str]) -> Command {
    let mut command = crate::util::tool_command();
    command.current_dir(ws.dir()).args(args).args([
        "--sdkappid",
        &APP.to_string(),
        "--endpoint",
        &sim.url(),
    ]);
    command
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .stdin(Stdio::null());
    command
}

/// `import <csv>` against an unlimited simulator: fast pace, 32 workers, plus `extra`.
async fn import(ws: &Workspace, sim: &SimHandle, csv: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "import",
        csv,
        "--no-progress",
        "--rate",
        "1000",
        "--concurrency",
        "32",
    ];
    args.extend_from_slice(extra);
    exec(tool(ws, sim, &args)).await
}

/// The first stderr line starting with `label`, trimmed (for printing summary lines).
fn line_of<'a>(run: &'a Run, label: &str) -> &'a str {
    run.stderr
        .lines()
        .find(|line| line.starts_with(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no \"{label}\" line on stderr:\n{}", run.stderr))
}

fn by_command(sim: &SimHandle, command: &str) -> u64 {
    sim.stats().by_command.get(command).copied().unwrap_or(0)
}

// ── 1. 40003 without --create-accounts ─────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_missing_accounts_fail_with_40003_without_create_accounts() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(known_accounts(1000));
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(1000));

    let run = import(&ws, &sim, "users.csv", &[]).await;
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 1000);
    assert_eq!(run.count("ok"), 700, "{}", run.stderr);
    assert_eq!(run.count("failed"), 300, "{}", run.stderr);

    let (header, failures) = read_failures(&ws.path("users.failures.csv"));
    assert_eq!(header, ["UserID", "Nick"]);
    assert_eq!(failures.len(), 300);
    let mut failed_users = BTreeSet::new();
    for row in &failures {
        let i: usize = row.data[0]["user_".len()..].parse().unwrap();
        assert!(
            is_missing(i),
            "{} is an account but failed: {row:?}",
            row.data[0]
        );
        assert_eq!(row.data, [user(i), nick_of(i)], "{row:?}");
        assert_eq!(row.code, "40003", "{row:?}");
        assert_eq!(row.stage, "send", "{row:?}");
        assert_eq!(row.line, i as u64 + 2, "{row:?}");
        assert!(failed_users.insert(row.data[0].clone()), "twice: {row:?}");
    }
    let missing: BTreeSet<String> = (0..1000).filter(|&i| is_missing(i)).map(user).collect();
    assert_eq!(failed_users, missing);

    let profiles = sim.profiles();
    assert_eq!(profiles.len(), 700);
    for i in (0..1000).filter(|&i| !is_missing(i)) {
        assert_eq!(
            profiles[&user(i)].get(NICK),
            Some(&Value::from(nick_of(i))),
            "{}",
            user(i)
        );
    }
    assert_eq!(by_command(&sim, "multiaccount_import"), 0);
    assert_eq!(by_command(&sim, "account_import"), 0);
}

// ── 2. --create-accounts (batch), then verify ──────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_accounts_imports_them_all_and_verify_finds_no_difference() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(known_accounts(1000));
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(1000));

    let run = import(
        &ws,
        &sim,
        "users.csv",
        &["--create-accounts", "--summary-json", "run.json"],
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.count("rows read"), 1000);
    let json: Value = serde_json::from_slice(&std::fs::read(ws.path("run.json")).unwrap()).unwrap();
    assert_eq!(
        json["accounts"],
        json!({"form": "batch", "command": "multiaccount_import", "calls": 10, "users": 1000,
               "imported": 1000, "failed": 0}),
        "{json}"
    );
    assert!(
        line_of(&run, "requests").ends_with("(0 retries, 0 throttled)"),
        "the batch pass has its own handle: {}",
        run.stderr
    );
    assert_eq!(run.count("ok"), 1000, "{}", run.stderr);
    assert!(!ws.path("users.failures.csv").exists());
    let accounts = sim.accounts().expect("the simulator lists accounts");
    let everyone: BTreeSet<String> = (0..1000).map(user).collect();
    assert_eq!(accounts, everyone);
    let stats = sim.stats();
    assert_eq!(
        stats.by_command.get("multiaccount_import"),
        Some(&10),
        "{stats}"
    );
    assert_eq!(stats.count_for("portrait_set", "0"), 1000, "{stats}");
    assert_eq!(stats.count_for("portrait_set", "40003"), 0, "{stats}");
    // What Chat holds, against values written here (not the importer's own mapping).
    let profiles = sim.profiles();
    assert_eq!(profiles.len(), 1000);
    for i in 0..1000 {
        let want: BTreeMap<String, Value> = [(NICK.to_string(), Value::from(nick_of(i)))].into();
        assert_eq!(profiles[&user(i)], want, "{}", user(i));
    }

    let verify = exec(tool(&ws, &sim, &["verify", "users.csv"])).await;
    verify.assert_code(0);
    assert_eq!(verify.count("differences"), 0, "{}", verify.stderr);
    assert_eq!(verify.count("users checked"), 1000, "{}", verify.stderr);
    assert_eq!(verify.count("values compared"), 1000, "{}", verify.stderr);
    assert!(!ws.path("users.diff.csv").exists());

    // And verify does see a value Chat holds that the CSV does not say: one user changed
    // behind its back is exactly one difference, named in the diff CSV.
    write_csv(
        &ws,
        "planted.csv",
        &["UserID", "Nick"],
        &[vec![user(7), "Planted".into()]],
    );
    import(&ws, &sim, "planted.csv", &[]).await.assert_code(0);
    let verify = exec(tool(&ws, &sim, &["verify", "users.csv"])).await;
    verify.assert_code(3);
    assert_eq!(verify.count("differences"), 1, "{}", verify.stderr);
    let diff = read_csv(&ws.path("users.diff.csv"));
    assert_eq!(
        diff[1..],
        [vec![
            user(7),
            NICK.to_string(),
            json!(nick_of(7)).to_string(),
            json!("Planted").to_string(),
        ]]
    );

    eprintln!(
        "[create_accounts] rows {} ok {} | {} | requests by command {:?} | verify: users {} values {} differences {}",
        run.count("rows read"),
        run.count("ok"),
        line_of(&run, "accounts"),
        sim.stats().by_command,
        verify.count("users checked"),
        verify.count("values compared"),
        verify.count("differences"),
    );
}

// ── 3. FailAccounts → stage `account` ──────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_accounts_are_mapped_back_to_their_rows() {
    let ws = Workspace::new();
    let failing: BTreeSet<String> = [5, 10, 20].into_iter().map(user).collect();
    let mut config = sim_config();
    config.accounts = Some(HashSet::new());
    config.fail_import = failing.iter().cloned().collect();
    let sim = start(config).await;

    // 60 users one row each, then second rows for two failing and two other users.
    let mut rows = nick_rows(60);
    for i in [10, 20, 30, 31] {
        rows.push(vec![user(i), format!("Second {i}")]);
    }
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &rows);
    // A user's rows merge into its last row, which is the one that fails (once per user).
    let mut expected_lines: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        if failing.contains(&row[0]) {
            expected_lines.retain(|_, kept| kept[0] != row[0]);
            expected_lines.insert(index as u64 + 2, row.clone());
        }
    }
    assert_eq!(expected_lines.len(), 3);

    let run = import(&ws, &sim, "users.csv", &["--create-accounts", "batch"]).await;
    run.assert_code(3);
    assert_eq!(run.count("ok"), 57, "{}", run.stderr);
    assert_eq!(run.count("failed"), 3, "{}", run.stderr);
    assert_eq!(run.count("superseded"), 4, "{}", run.stderr);

    let (_, failures) = read_failures(&ws.path("users.failures.csv"));
    let got: BTreeMap<u64, Vec<String>> = failures
        .iter()
        .map(|row| {
            assert_eq!(row.stage, "account", "{row:?}");
            assert_eq!(row.code, "account_import", "{row:?}");
            (row.line, row.data.clone())
        })
        .collect();
    assert_eq!(got.len(), failures.len(), "a line twice in the failure CSV");
    assert_eq!(got, expected_lines);

    let profiles = sim.profiles();
    for user in &failing {
        assert!(!profiles.contains_key(user), "{user} reached Chat");
    }
    assert_eq!(profiles.len(), 57);
    assert_eq!(profiles[&user(30)][NICK], Value::from("Second 30"));
    let stats = sim.stats();
    // Nothing was sent for the failing users: one portrait_set per other user, all accepted.
    assert_eq!(stats.by_command.get("portrait_set"), Some(&57), "{stats}");
    assert_eq!(stats.count_for("portrait_set", "0"), 57, "{stats}");
    let accounts = sim.accounts().unwrap();
    assert_eq!(accounts.len(), 57);
    assert!(accounts.is_disjoint(&failing));
}

/// README: `bad_response` in the failure CSV. A multiaccount_import that answers OK with a
/// `FailAccounts` that cannot be read leaves every account of its batch unknown: those rows fail
/// at the account stage with `bad_response` and their profiles are not sent; the other batches
/// go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_fail_accounts_fails_its_batch_rows_with_bad_response() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(HashSet::new());
    // The second batch (users 100-199) starts with user_0100.
    config.faults.inject_for = [(
        user(100),
        Injected::OkWith("FailAccounts".into(), json!("not a list")),
    )]
    .into_iter()
    .collect();
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(250));

    let run = import(&ws, &sim, "users.csv", &["--create-accounts", "batch"]).await;
    run.assert_code(3);
    assert_eq!(run.count("ok"), 150, "{}", run.stderr);
    assert_eq!(run.count("failed"), 100, "{}", run.stderr);

    let (_, failures) = read_failures(&ws.path("users.failures.csv"));
    let mut lines: Vec<u64> = failures
        .iter()
        .map(|row| {
            assert_eq!(row.code, "bad_response", "{row:?}");
            assert_eq!(row.stage, "account", "{row:?}");
            assert!(row.message.contains("FailAccounts"), "{row:?}");
            row.line
        })
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, (102..202).collect::<Vec<u64>>());
    let stats = sim.stats();
    assert_eq!(stats.count_for("portrait_set", "0"), 150, "{stats}");
    assert_eq!(stats.by_command.get("portrait_set"), Some(&150), "{stats}");
    let profiles = sim.profiles();
    assert!((100..200).all(|i| !profiles.contains_key(&user(i))));
}

// ── 4. on-demand ───────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_imports_one_account_on_40003_and_retries() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(known_accounts(1000));
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(1000));

    let run = import(
        &ws,
        &sim,
        "users.csv",
        &[
            "--create-accounts",
            "on-demand",
            "--summary-json",
            "run.json",
        ],
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.count("ok"), 1000, "{}", run.stderr);
    assert!(!ws.path("users.failures.csv").exists());
    // The 300 account_import calls are in the requests, said apart from the 300 retries (the
    // rows sent again once their account exists), and have a line and a JSON object of their
    // own. Before: `requests 1600 (300 retries, …)`, no accounts line, `"accounts": null`.
    assert_eq!(run.count("requests"), 1600, "{}", run.stderr);
    assert!(
        line_of(&run, "requests").ends_with("(300 account_import, 300 retries, 0 throttled)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        line_of(&run, "accounts"),
        "accounts         300 imported on demand (portrait_set answered 40003), 0 failed \
         (300 account_import calls)"
    );
    let json: Value = serde_json::from_slice(&std::fs::read(ws.path("run.json")).unwrap()).unwrap();
    assert_eq!(
        json["accounts"],
        json!({"form": "on-demand", "command": "account_import", "calls": 300, "users": 300,
               "imported": 300, "failed": 0}),
        "{json}"
    );
    assert_eq!(
        (json["requests"].as_u64(), json["retries"].as_u64()),
        (Some(1600), Some(300))
    );

    let stats = sim.stats();
    assert_eq!(
        stats.by_command.get("account_import"),
        Some(&300),
        "{stats}"
    );
    assert_eq!(stats.count_for("account_import", "0"), 300, "{stats}");
    assert_eq!(stats.by_command.get("multiaccount_import"), None, "{stats}");
    // Each missing user: one 40003, then the retry after its import.
    assert_eq!(stats.count_for("portrait_set", "40003"), 300, "{stats}");
    assert_eq!(stats.count_for("portrait_set", "0"), 1000, "{stats}");
    let profiles = sim.profiles();
    assert_eq!(profiles.len(), 1000);
    for i in 0..1000 {
        assert_eq!(profiles[&user(i)][NICK], Value::from(nick_of(i)));
    }
    assert_eq!(sim.accounts().unwrap().len(), 1000);
}

// ── 5. account-list ────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_list_form_sets_nick_and_face_url_at_import() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(HashSet::new());
    let sim = start(config).await;
    let image = |i: usize| format!("https://img.example.com/{i}.png");
    let rows: Vec<Vec<String>> = (0..150)
        .map(|i| vec![user(i), nick_of(i), image(i), (i % 50).to_string()])
        .collect();
    write_csv(
        &ws,
        "users.csv",
        &["UserID", "Nick", "Image", "Level"],
        &rows,
    );

    let run = import(
        &ws,
        &sim,
        "users.csv",
        &["--create-accounts", "account-list"],
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.count("ok"), 150, "{}", run.stderr);
    let stats = sim.stats();
    assert_eq!(
        stats.by_command.get("multiaccount_import"),
        Some(&2),
        "{stats}"
    );
    assert_eq!(stats.count_for("portrait_set", "40003"), 0, "{stats}");
    let profiles = sim.profiles();
    assert_eq!(profiles.len(), 150);
    for i in 0..150 {
        let profile = &profiles[&user(i)];
        assert_eq!(profile[NICK], Value::from(nick_of(i)), "{}", user(i));
        assert_eq!(profile[IMAGE], Value::from(image(i)), "{}", user(i));
        assert_eq!(profile[LEVEL], json!(i % 50), "{}", user(i));
    }

    // portrait_set would set Nick and Image too; to see what the import itself carried, a
    // second app refuses every portrait_set (an unconfigured custom field: 40009). The
    // profiles then hold exactly what the AccountList form sent — the later row winning
    // field by field within a batch.
    let ws2 = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(HashSet::new());
    config.custom_fields = HashSet::new();
    let sim2 = start(config).await;
    let rows = vec![
        vec![
            user(1),
            "Old".into(),
            "https://img/old.png".into(),
            "x".into(),
        ],
        vec![user(2), "Two".into(), "".into(), "x".into()],
        vec![user(1), "New".into(), "".into(), "y".into()],
    ];
    write_csv(
        &ws2,
        "users.csv",
        &["UserID", "Nick", "Image", "Custom_Hobby"],
        &rows,
    );
    let run = import(
        &ws2,
        &sim2,
        "users.csv",
        &["--create-accounts", "account-list"],
    )
    .await;
    run.assert_code(3);
    let (_, mut failures) = read_failures(&ws2.path("users.failures.csv"));
    failures.sort_by_key(|f| f.line);
    // One record per user: user 1's rows merged (its later row's Nick and Hobby, the Image
    // only its first row set), so a re-import of the failure CSV sets what the file did.
    assert_eq!(failures.len(), 2);
    assert!(failures
        .iter()
        .all(|f| f.code == "40009" && f.stage == "send"));
    assert_eq!(
        failures[0].data,
        [user(2), "Two".into(), "".into(), "x".into()]
    );
    assert_eq!(
        failures[1].data,
        [
            user(1),
            "New".into(),
            "https://img/old.png".into(),
            "y".into()
        ]
    );
    assert_eq!(failures[1].line, 4);
    let profiles = sim2.profiles();
    assert_eq!(profiles[&user(1)][NICK], Value::from("New"));
    assert_eq!(
        profiles[&user(1)][IMAGE],
        Value::from("https://img/old.png")
    );
    assert_eq!(profiles[&user(2)][NICK], Value::from("Two"));
    assert!(
        !profiles[&user(2)].contains_key(IMAGE),
        "an empty Image cell sent a FaceUrl: {:?}",
        profiles[&user(2)]
    );
    let stats = sim2.stats();
    assert_eq!(stats.by_command.get("multiaccount_import"), Some(&1));
    assert_eq!(stats.count_for("portrait_set", "0"), 0, "{stats}");
}

// ── 6. check-accounts ──────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accounts_lists_the_missing_users() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(known_accounts(250));
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(250));
    let missing: Vec<Vec<String>> = (0..250)
        .filter(|&i| is_missing(i))
        .map(|i| vec![user(i)])
        .collect();
    assert_eq!(missing.len(), 75);

    let run1 = exec(tool(&ws, &sim, &["check-accounts", "users.csv"])).await;
    run1.assert_code(3);
    assert_eq!(run1.count("users checked"), 250, "{}", run1.stderr);
    assert_eq!(run1.count("not imported"), 75, "{}", run1.stderr);
    let listed = read_csv(&ws.path("users.missing-accounts.csv"));
    assert_eq!(listed[0], ["UserID"]);
    assert_eq!(listed[1..], missing[..]);
    assert_eq!(
        by_command(&sim, "account_check"),
        3,
        "ceil(250 / 100) calls"
    );
    // Checking imports nothing.
    assert_eq!(sim.accounts().unwrap().len(), 175);
    assert_eq!(by_command(&sim, "portrait_set"), 0);

    let run2 = exec(tool(
        &ws,
        &sim,
        &["check-accounts", "users.csv", "--output", "elsewhere.csv"],
    ))
    .await;
    run2.assert_code(3);
    let listed = read_csv(&ws.path("elsewhere.csv"));
    assert_eq!(listed[0], ["UserID"]);
    assert_eq!(listed[1..], missing[..]);
    assert_eq!(by_command(&sim, "account_check"), 6);

    // A dry run that also checks accounts fails when some are missing, even with every row
    // valid.
    let dry = exec(tool(
        &ws,
        &sim,
        &["import", "users.csv", "--dry-run", "--check-accounts"],
    ))
    .await;
    dry.assert_code(3);
    assert_eq!(dry.count("valid"), 250, "{}", dry.stderr);
    assert_eq!(dry.count("invalid"), 0, "{}", dry.stderr);
    assert_eq!(dry.count("not imported"), 75, "{}", dry.stderr);
    assert_eq!(by_command(&sim, "portrait_set"), 0, "a dry run sent a row");

    // Every account present: exit 0 and no list.
    let everyone = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some((0..250).map(user).collect());
    let sim_all = start(config).await;
    write_csv(&everyone, "users.csv", &["UserID", "Nick"], &nick_rows(250));
    let run3 = exec(tool(&everyone, &sim_all, &["check-accounts", "users.csv"])).await;
    run3.assert_code(0);
    assert_eq!(run3.count("not imported"), 0);
    assert!(!everyone.path("users.missing-accounts.csv").exists());
    assert_eq!(by_command(&sim_all, "account_check"), 3);
    let dry = exec(tool(
        &everyone,
        &sim_all,
        &["import", "users.csv", "--dry-run", "--check-accounts"],
    ))
    .await;
    dry.assert_code(0);
    assert!(!everyone.path("users.missing-accounts.csv").exists());
}

// ── 7. verify ──────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_each_difference_and_writes_a_diff_csv() {
    let ws = Workspace::new();
    let sim = start(sim_config()).await;
    let row = |user: &str, nick: &str, level: u32| {
        vec![user.to_string(), nick.to_string(), level.to_string()]
    };

    // What is imported: 100 users, `dup_a` with two rows (the second wins), `dup_b` once.
    let mut imported: Vec<Vec<String>> = (0..100)
        .map(|i| row(&user(i), &nick_of(i), i as u32))
        .collect();
    imported.push(row("dup_a", "First A", 1));
    imported.push(row("dup_b", "B", 5));
    imported.push(row("dup_a", "Second A", 2));
    write_csv(&ws, "import.csv", &["UserID", "Nick", "Level"], &imported);
    import(&ws, &sim, "import.csv", &[]).await.assert_code(0);
    assert_eq!(sim.profiles()["dup_a"][NICK], Value::from("Second A"));

    // What is verified: the same, except 4 changed Nicks, a changed Level, and `dup_b` given
    // two rows whose second changes its Nick.
    let mut expected = imported.clone();
    for (i, row) in expected.iter_mut().enumerate().take(5).skip(1) {
        row[1] = format!("Changed {i}");
    }
    expected[10][2] = "11".into();
    expected.push(row("dup_b", "B changed", 5));
    write_csv(&ws, "expected.csv", &["UserID", "Nick", "Level"], &expected);

    let verify = exec(tool(
        &ws,
        &sim,
        &["verify", "expected.csv", "--diff", "found.diff.csv"],
    ))
    .await;
    verify.assert_code(3);
    assert_eq!(verify.count("users checked"), 102, "{}", verify.stderr);
    assert_eq!(verify.count("values compared"), 204, "{}", verify.stderr);
    assert_eq!(verify.count("differences"), 6, "{}", verify.stderr);
    assert_eq!(verify.count("missing accounts"), 0, "{}", verify.stderr);
    assert!(
        !ws.path("expected.diff.csv").exists(),
        "--diff was not used"
    );

    let mut diff = read_csv(&ws.path("found.diff.csv"));
    assert_eq!(diff.remove(0), ["UserID", "Tag", "Expected", "Actual"]);
    diff.sort();
    let mut want: Vec<Vec<String>> = (1..=4)
        .map(|i| {
            vec![
                user(i),
                NICK.into(),
                json!(format!("Changed {i}")).to_string(),
                json!(nick_of(i)).to_string(),
            ]
        })
        .collect();
    want.push(vec![user(10), LEVEL.into(), "11".into(), "10".into()]);
    want.push(vec![
        "dup_b".into(),
        NICK.into(),
        "\"B changed\"".into(),
        "\"B\"".into(),
    ]);
    want.sort();
    assert_eq!(diff, want);

    // Chat holds the imported file's values, as written here: `dup_a`'s last row.
    let profiles = sim.profiles();
    for i in 0..100 {
        let want: BTreeMap<String, Value> = [
            (NICK.to_string(), Value::from(nick_of(i))),
            (LEVEL.to_string(), json!(i)),
        ]
        .into();
        assert_eq!(profiles[&user(i)], want, "{}", user(i));
    }
    assert_eq!(profiles["dup_a"][NICK], Value::from("Second A"));
    assert_eq!(profiles["dup_a"][LEVEL], json!(2));
    assert_eq!(profiles["dup_b"][NICK], Value::from("B"));
    // The imported file itself matches: `dup_a` is compared with its last row, not its first.
    let same = exec(tool(&ws, &sim, &["verify", "import.csv"])).await;
    same.assert_code(0);
    assert_eq!(same.count("differences"), 0, "{}", same.stderr);
    assert!(!ws.path("import.diff.csv").exists());

    // --sample: about 50 of 1,000 users, and exit 0 when nothing differs.
    let big: Vec<Vec<String>> = (0..1000)
        .map(|i| vec![format!("s_{i:04}"), nick_of(i)])
        .collect();
    write_csv(&ws, "big.csv", &["UserID", "Nick"], &big);
    import(&ws, &sim, "big.csv", &[]).await.assert_code(0);
    let calls_before = by_command(&sim, "portrait_get");
    let sample = exec(tool(&ws, &sim, &["verify", "big.csv", "--sample", "50"])).await;
    sample.assert_code(0);
    let checked = sample.count("users checked");
    assert!((20..=100).contains(&checked), "{}", sample.stderr);
    assert_eq!(sample.count("differences"), 0, "{}", sample.stderr);
    assert!(by_command(&sim, "portrait_get") - calls_before <= 2);
    assert!(!ws.path("big.diff.csv").exists());
    eprintln!(
        "[verify] differences {} of {} values; --sample 50 of 1000 checked {checked} users",
        verify.count("differences"),
        verify.count("values compared"),
    );
}

/// `check-accounts --rate N` paces account_check at N calls a second. Before, the option was
/// accepted and ignored: the calls went at Chat's 100/s, all 20 here in one window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accounts_rate_paces_account_check() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(known_accounts(2000));
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(2000));
    let run = exec(tool(
        &ws,
        &sim,
        &["check-accounts", "users.csv", "--rate", "10"],
    ))
    .await;
    run.assert_code(3);
    let stats = sim.stats();
    assert_eq!(by_command(&sim, "account_check"), 20, "{stats}");
    let most = stats.max_in_any_window_by_command["account_check"];
    assert!(
        most <= 10,
        "{most} account_check calls in one second\n{stats}"
    );
}

/// verify and check-accounts show the import's progress: with stderr not a terminal, a line
/// every `--progress-interval` seconds, counting rows of the file's total, under the summary's
/// names. Each run here takes about 3 s (30 calls at 10 a second), so at least one line comes
/// whatever the machine's speed. Before, both printed nothing until their summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_check_accounts_print_progress_lines_when_stderr_is_not_a_terminal() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(known_accounts(3000));
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(3000));
    let progress_lines = |run: &Run| -> Vec<String> {
        run.stderr
            .lines()
            .filter(|line| line.contains(" progress: "))
            .map(str::to_string)
            .collect()
    };
    let slow = ["--rate", "10", "--progress-interval", "1"];

    let mut args = vec!["verify", "users.csv"];
    args.extend(slow);
    let verify = exec(tool(&ws, &sim, &args)).await;
    verify.assert_code(3);
    let lines = progress_lines(&verify);
    assert!(!lines.is_empty(), "no progress line:\n{}", verify.stderr);
    for line in &lines {
        assert!(
            line.contains("/3000 rows")
                && line.contains("users checked")
                && line.contains("missing accounts")
                && line.contains("pace 10/s"),
            "{line}"
        );
    }
    // Lines come before the summary, never after it.
    let summary_at = verify.stderr.find("── verify ──").unwrap();
    assert!(verify.stderr.rfind(" progress: ").unwrap() < summary_at);

    let mut args = vec!["check-accounts", "users.csv"];
    args.extend(slow);
    let checked = exec(tool(&ws, &sim, &args)).await;
    checked.assert_code(3);
    let lines = progress_lines(&checked);
    assert!(!lines.is_empty(), "no progress line:\n{}", checked.stderr);
    for line in &lines {
        assert!(
            line.contains("/3000 rows") && line.contains("not imported"),
            "{line}"
        );
    }

    // --no-progress turns them off.
    let mut args = vec!["check-accounts", "users.csv", "--no-progress"];
    args.extend(slow);
    let quiet = exec(tool(&ws, &sim, &args)).await;
    quiet.assert_code(3);
    assert!(progress_lines(&quiet).is_empty(), "{}", quiet.stderr);
}

/// `verify --sample N` picks its users by a hash of the UserID, so every run checks the same
/// ones: run twice, and once over the same rows in reverse order. Chat holds another Nick for
/// every user, so the diff CSV names exactly the users a run checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_sample_checks_the_same_users_every_time_whatever_the_row_order() {
    let ws = Workspace::new();
    let sim = start(sim_config()).await;
    for i in 0..1000 {
        sim.write_profile(&user(i), [(NICK, json!(format!("Old {i}")))]);
    }
    let rows = nick_rows(1000);
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &rows);
    let reversed: Vec<Vec<String>> = rows.iter().rev().cloned().collect();
    write_csv(&ws, "reversed.csv", &["UserID", "Nick"], &reversed);

    let mut sampled = Vec::new();
    for (csv, diff) in [
        ("users.csv", "first.diff.csv"),
        ("users.csv", "second.diff.csv"),
        ("reversed.csv", "reversed.diff.csv"),
    ] {
        let run = exec(tool(
            &ws,
            &sim,
            &["verify", csv, "--sample", "50", "--diff", diff],
        ))
        .await;
        run.assert_code(3);
        let users: BTreeSet<String> = read_csv(&ws.path(diff))
            .into_iter()
            .skip(1)
            .map(|row| row[0].clone())
            .collect();
        assert_eq!(
            run.count("users checked"),
            users.len() as u64,
            "{}",
            run.stderr
        );
        assert!(
            (20..=100).contains(&users.len()),
            "{csv}: {} users",
            users.len()
        );
        sampled.push(users);
    }
    assert_eq!(sampled[0], sampled[1], "two runs checked different users");
    assert_eq!(sampled[0], sampled[2], "the reversed file's sample differs");
}

// ── 7b. verify and typed fields ────────────────────────────────────────────────────────────

/// Friendly spellings, dates and padded numbers: Chat must hold the exact values written out
/// here, and verify (which maps the CSV the way the import does) must agree with Chat. A
/// mapping mistake shared by the import and verify (say `m` sent as Gender_Type_Female) would
/// leave verify at zero differences; the hand-written values catch it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_chat_agree_with_hand_written_values_of_typed_fields() {
    let ws = Workspace::new();
    let sim = start(sim_config()).await;
    let header = [
        "UserID",
        "Gender",
        "AllowType",
        "AdminForbidType",
        "BirthDay",
        "Level",
        "Language",
        "Role",
        "Location",
        "SelfSignature",
    ];
    let rows: Vec<Vec<String>> = [
        [
            "typed_1",
            "m",
            "deny",
            "send_out",
            "1990-04-12",
            " 007 ",
            "2",
            "1",
            "Zürich",
            "Hi, \"all\"",
        ],
        [
            "typed_2",
            "F",
            "allow_any",
            "none",
            "19851130",
            "0",
            "0",
            "4294967295",
            "深圳",
            "热爱生活 🚀",
        ],
        [
            "typed_3",
            "Gender_Type_Unknown",
            "NEED_CONFIRM",
            "AdminForbid_Type_None",
            "0",
            "12",
            "1",
            "0",
            "",
            "",
        ],
    ]
    .iter()
    .map(|row| row.iter().map(|c| c.to_string()).collect())
    .collect();
    write_csv(&ws, "typed.csv", &header, &rows);
    import(&ws, &sim, "typed.csv", &[]).await.assert_code(0);

    let tag = |name: &str| format!("Tag_Profile_IM_{name}");
    let profile = |items: &[(&str, Value)]| -> BTreeMap<String, Value> {
        items.iter().map(|(n, v)| (tag(n), v.clone())).collect()
    };
    let want: BTreeMap<String, BTreeMap<String, Value>> = [
        (
            "typed_1".to_string(),
            profile(&[
                ("Gender", json!("Gender_Type_Male")),
                ("AllowType", json!("AllowType_Type_DenyAny")),
                ("AdminForbidType", json!("AdminForbid_Type_SendOut")),
                ("BirthDay", json!(19900412)),
                ("Level", json!(7)),
                ("Language", json!(2)),
                ("Role", json!(1)),
                ("Location", json!("Zürich")),
                ("SelfSignature", json!("Hi, \"all\"")),
            ]),
        ),
        (
            "typed_2".to_string(),
            profile(&[
                ("Gender", json!("Gender_Type_Female")),
                ("AllowType", json!("AllowType_Type_AllowAny")),
                ("AdminForbidType", json!("AdminForbid_Type_None")),
                ("BirthDay", json!(19851130)),
                ("Level", json!(0)),
                ("Language", json!(0)),
                ("Role", json!(4294967295u32)),
                ("Location", json!("深圳")),
                ("SelfSignature", json!("热爱生活 🚀")),
            ]),
        ),
        (
            "typed_3".to_string(),
            profile(&[
                ("Gender", json!("Gender_Type_Unknown")),
                ("AllowType", json!("AllowType_Type_NeedConfirm")),
                ("AdminForbidType", json!("AdminForbid_Type_None")),
                ("BirthDay", json!(0)),
                ("Level", json!(12)),
                ("Language", json!(1)),
                ("Role", json!(0)),
            ]),
        ),
    ]
    .into();
    assert_eq!(sim.profiles(), want);

    let verify = exec(tool(&ws, &sim, &["verify", "typed.csv"])).await;
    verify.assert_code(0);
    assert_eq!(verify.count("users checked"), 3, "{}", verify.stderr);
    assert_eq!(verify.count("differences"), 0, "{}", verify.stderr);
}

// ── 8. a signal during the account pass ─────────────────────────────────────────────────
// (The adaptive pace under a server limit is a wall-clock test: tests/timing.rs.)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_the_account_pass_stops_with_130_and_sends_no_profile() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(known_accounts(3000));
    // Slow answers, so the 30 multiaccount_import calls take seconds.
    config.latency_min = Duration::from_millis(300);
    config.latency_max = Duration::from_millis(400);
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(3000));
    let mut command = tool(
        &ws,
        &sim,
        &["import", "users.csv", "--no-progress", "--create-accounts"],
    );
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().expect("start the binary");
    let pid = child.id().to_string();
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while by_command(&sim, "multiaccount_import") < 2 {
        assert!(!waiter.is_finished(), "the import ended before the signal");
        assert!(
            Instant::now() < deadline,
            "the account pass never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill")
        .success());
    let output = match tokio::time::timeout(Duration::from_secs(20), waiter).await {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the import did not stop within 20 s of SIGINT");
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("while importing accounts"), "{stderr}");
    let run = Run {
        code: 130,
        stdout: String::new(),
        stderr: stderr.into_owned(),
    };
    assert_eq!(run.count("rows read"), 3000);
    assert_eq!(run.count("not attempted"), 3000);
    assert_eq!(by_command(&sim, "portrait_set"), 0);
    assert!(by_command(&sim, "multiaccount_import") < 30);
}

/// Issue 24, items 9 and 10: `verify` against an app that does not know the users counts them
/// as missing accounts, not as differences; a `--state` run says its unchanged rows are
/// unchanged since the last accepted run (what the state knows), not that Chat holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_counts_missing_accounts_apart_and_state_says_what_it_knows() {
    let ws = Workspace::new();
    let mut config = sim_config();
    config.accounts = Some(known_accounts(10));
    let sim = start(config).await;
    write_csv(&ws, "users.csv", &["UserID", "Nick"], &nick_rows(10));
    let verify = exec(tool(&ws, &sim, &["verify", "users.csv"])).await;
    verify.assert_code(3);
    assert_eq!(verify.count("users checked"), 10, "{}", verify.stderr);
    assert_eq!(verify.count("missing accounts"), 3, "{}", verify.stderr);
    assert_eq!(verify.count("differences"), 7, "{}", verify.stderr);
    assert_eq!(verify.count("values compared"), 7, "{}", verify.stderr);
    assert!(
        verify
            .stderr
            .contains("(users that are not Chat accounts: their values were not compared)"),
        "{}",
        verify.stderr
    );

    let mut config = sim_config();
    config.accounts = None;
    let sim = start(config).await;
    let args = [
        "import",
        "users.csv",
        "--state",
        "state.db",
        "--no-progress",
    ];
    exec(tool(&ws, &sim, &args)).await.assert_code(0);
    let again = exec(tool(&ws, &sim, &args)).await;
    again.assert_code(0);
    assert!(
        again
            .stderr
            .contains("(unchanged since the last accepted run: not sent)")
            && !again.stderr.contains("Chat already holds"),
        "{}",
        again.stderr
    );
}
