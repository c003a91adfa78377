//! One rule for a user with several rows, in every mode: the user's valid rows merge tag by tag
//! in file order (each tag takes the last row that sets it) and the user is sent once. A plain
//! import, `--state`, `--changes-only`, `--batch-nick-image`, the plan, verify and the account
//! commands all see the same merged user, and a row of the failure CSV that a later row of its
//! user superseded never writes an old value over a newer one when it is retried.

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::{exec, read_failures, write_csv, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "repeated-users-key-7c1";

fn sim_config() -> SimConfig {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config
}

fn tool(ws: &Workspace, sim: &SimHandle, args: &[&str]) -> Command {
    let mut command = crate::util::tool_command();
    command
        .current_dir(ws.dir())
        .args(args)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .stdin(Stdio::null());
    command
}

fn portrait_sets(sim: &SimHandle) -> u64 {
    sim.stats()
        .by_command
        .get("portrait_set")
        .copied()
        .unwrap_or(0)
}

fn profile(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(tag, value)| (format!("Tag_Profile_IM_{tag}"), value.clone()))
        .collect()
}

/// `dup1,FirstNick,` then `dup1,,7`: a plain import left Nick and Level; `--state` and
/// `--changes-only` used to send only the last row and leave Nick unset, exit 0 and say
/// nothing. Every mode now leaves both, in one portrait_set, and verify agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_user_keeps_every_field_in_every_mode() {
    let want = profile(&[("Nick", json!("FirstNick")), ("Level", json!(7))]);
    let modes: [&[&str]; 4] = [
        &[],
        &["--state", "state.db"],
        &["--changes-only"],
        &["--batch-nick-image"],
    ];
    for extra in modes {
        let ws = Workspace::new();
        ws.write("u.csv", "UserID,Nick,Level\ndup1,FirstNick,\ndup1,,7\n");
        let sim = SimHandle::start(sim_config()).await.unwrap();
        let mut args = vec!["import", "u.csv", "--no-progress"];
        args.extend(extra);
        let run = exec(tool(&ws, &sim, &args)).await;
        run.assert_code(0);
        assert_eq!(run.count("ok"), 1, "{extra:?}: {}", run.stderr);
        assert_eq!(run.count("superseded"), 1, "{extra:?}: {}", run.stderr);
        assert_eq!(sim.profiles()["dup1"], want, "{extra:?}");
        if extra != ["--batch-nick-image"] {
            assert_eq!(portrait_sets(&sim), 1, "{extra:?}: one call for the user");
        }
        let verify = exec(tool(&ws, &sim, &["verify", "u.csv"])).await;
        verify.assert_code(0);
        assert_eq!(verify.count("differences"), 0, "{}", verify.stderr);
        assert_eq!(verify.count("users checked"), 1, "{}", verify.stderr);

        // An unchanged rerun sends nothing under --state and --changes-only.
        if extra == ["--state", "state.db"] || extra == ["--changes-only"] {
            let before = portrait_sets(&sim);
            exec(tool(&ws, &sim, &args)).await.assert_code(0);
            assert_eq!(
                portrait_sets(&sim),
                before,
                "{extra:?}: a rerun sent something"
            );
        }
    }
}

/// The plan of `--changes-only` and the dry run count the merged user the way the import sends
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_and_the_dry_run_count_the_merged_user() {
    let ws = Workspace::new();
    ws.write(
        "u.csv",
        "UserID,Nick,Level\ndup1,FirstNick,\ndup1,,7\nsolo,S,1\n",
    );
    let sim = SimHandle::start(sim_config()).await.unwrap();
    sim.write_profile("dup1", [("Tag_Profile_IM_Nick", json!("FirstNick"))]);
    let plan = exec(tool(
        &ws,
        &sim,
        &["import", "u.csv", "--dry-run", "--changes-only"],
    ))
    .await;
    // dup1 needs Level only (Chat holds its merged Nick); solo needs both.
    assert_eq!(plan.count("to update"), 2, "{}", plan.stderr);
    assert_eq!(plan.count("superseded"), 1, "{}", plan.stderr);
    let plan_csv = crate::util::read_csv(&ws.path("u.plan.csv"));
    assert!(plan_csv.contains(&vec![
        "dup1".to_string(),
        "Tag_Profile_IM_Level".to_string(),
        "7".to_string(),
        "(unset)".to_string(),
    ]));
    assert!(!plan_csv
        .iter()
        .any(|row| row[0] == "dup1" && row[1].ends_with("Nick")));

    let dry = exec(tool(
        &ws,
        &sim,
        &["import", "u.csv", "--dry-run", "--show-requests", "9"],
    ))
    .await;
    dry.assert_code(0);
    assert_eq!(dry.count("valid"), 2, "{}", dry.stderr);
    assert_eq!(dry.count("superseded"), 1, "{}", dry.stderr);
    assert_eq!(
        dry.requests()[0],
        json!({"From_Account": "dup1", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "FirstNick"},
            {"Tag": "Tag_Profile_IM_Level", "Value": 7},
        ]})
    );
}

/// `x1,OldNick,abc` then `x1,NewNick,5`: the first row is invalid, the second succeeds. The
/// README's retry recipe (fix the failure CSV, import it) used to leave Chat with OldNick. The
/// failure CSV now names the cells a later row set (`_superseded`), and a re-import leaves them
/// out, so the retried row only sets what no later row did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_failure_row_never_writes_an_old_value_over_a_newer_one() {
    let ws = Workspace::new();
    ws.write(
        "u.csv",
        "UserID,Nick,Level,Role\nx1,OldNick,abc,\nx1,NewNick,5,\nx2,Old2,abc,9\nx2,New2,6,\n",
    );
    let sim = SimHandle::start(sim_config()).await.unwrap();
    let run = exec(tool(&ws, &sim, &["import", "u.csv", "--no-progress"])).await;
    run.assert_code(3);
    let (header, rows) = read_failures(&ws.path("u.failures.csv"));
    assert_eq!(header, ["UserID", "Nick", "Level", "Role"]);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].superseded, r#"["Nick","Level"]"#);
    assert_eq!(rows[1].superseded, r#"["Nick","Level"]"#);

    // The recipe: fix the bad cells, import the failure CSV.
    let fixed = std::fs::read_to_string(ws.path("u.failures.csv"))
        .unwrap()
        .replace(",abc,", ",3,");
    ws.write("fixed.csv", fixed);
    let retry = exec(tool(&ws, &sim, &["import", "fixed.csv", "--no-progress"])).await;
    retry.assert_code(0);
    // x1's row sets nothing the later row did not: skipped. x2's still sets its Role.
    assert_eq!(retry.count("skipped"), 1, "{}", retry.stderr);
    assert_eq!(retry.count("ok"), 1, "{}", retry.stderr);
    let profiles = sim.profiles();
    assert_eq!(
        profiles["x1"],
        profile(&[("Nick", json!("NewNick")), ("Level", json!(5))])
    );
    assert_eq!(
        profiles["x2"],
        profile(&[
            ("Nick", json!("New2")),
            ("Level", json!(6)),
            ("Role", json!(9))
        ])
    );
}

/// A merged user whose send fails goes to the failure CSV once, as one record holding each
/// column's cell from the row that set it: re-importing it sends what the file meant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_user_that_fails_is_one_failure_record_that_imports_whole() {
    let ws = Workspace::new();
    ws.write("u.csv", "UserID,Nick,Level\nghost,First,\nghost,,4\n");
    let mut config = sim_config();
    config.accounts = Some(HashSet::new());
    let sim = SimHandle::start(config).await.unwrap();
    let run = exec(tool(&ws, &sim, &["import", "u.csv", "--no-progress"])).await;
    run.assert_code(3);
    let (_, rows) = read_failures(&ws.path("u.failures.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].data, ["ghost", "First", "4"]);
    assert_eq!((rows[0].code.as_str(), rows[0].line), ("40003", 3));
    // Once the account exists (here: a simulator that knows it), the failure CSV imports.
    let mut config = sim_config();
    config.accounts = Some(["ghost".to_string()].into());
    let fixed = SimHandle::start(config).await.unwrap();
    let retry = exec(tool(
        &ws,
        &fixed,
        &["import", "u.failures.csv", "--no-progress"],
    ))
    .await;
    retry.assert_code(0);
    assert_eq!(
        fixed.profiles()["ghost"],
        profile(&[("Nick", json!("First")), ("Level", json!(4))])
    );
}

/// check-accounts and `--create-accounts` take each user once across batches of 100: they used
/// to list a user once per batch its rows fell in (1,995 entries for 1,959 missing users).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_commands_count_users_not_rows() {
    let ws = Workspace::new();
    // 300 users, each twice, 150 rows apart: every repeat lands in another batch.
    let rows: Vec<Vec<String>> = (0..600)
        .map(|i| vec![format!("u{:03}", i % 300), format!("Nick {i}")])
        .collect();
    write_csv(&ws.path("u.csv"), &["UserID", "Nick"], &rows);
    let known: HashSet<String> = (0..300)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("u{i:03}"))
        .collect();
    let mut config = sim_config();
    config.accounts = Some(known);
    let sim = SimHandle::start(config).await.unwrap();
    let check = exec(tool(
        &ws,
        &sim,
        &["check-accounts", "u.csv", "--summary-json", "c.json"],
    ))
    .await;
    check.assert_code(3);
    assert_eq!(check.count("users checked"), 300, "{}", check.stderr);
    assert_eq!(check.count("not imported"), 100, "{}", check.stderr);
    let listed = crate::util::read_csv(&ws.path("u.missing-accounts.csv"));
    let distinct: HashSet<&String> = listed[1..].iter().map(|row| &row[0]).collect();
    assert_eq!(listed.len() - 1, 100, "one line per missing user");
    assert_eq!(distinct.len(), 100);
    let json: Value = serde_json::from_slice(&std::fs::read(ws.path("c.json")).unwrap()).unwrap();
    assert_eq!(
        (json["users_checked"].clone(), json["not_imported"].clone()),
        (json!(300), json!(100))
    );

    let import = exec(tool(
        &ws,
        &sim,
        &["import", "u.csv", "--create-accounts", "--no-progress"],
    ))
    .await;
    import.assert_code(0);
    let accounts = import.line("accounts");
    assert!(
        accounts.contains("300 imported or already there, 0 failed (3 multiaccount_import calls)"),
        "{accounts}"
    );
    assert_eq!(import.count("ok"), 300, "{}", import.stderr);
    assert_eq!(import.count("superseded"), 300, "{}", import.stderr);
}
