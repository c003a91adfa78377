//! `import --batch-nick-image`: Nick and Image through multiaccount_import's AccountList, the
//! rest through portrait_set, the self-check and its fallback, FailAccounts in the failure
//! CSV, and a kill followed by `--resume`.
//!
//! Every test runs the real binary in its own temporary directory against its own in-process
//! simulator on a port-0 loopback listener. The expected end states are written here from the
//! generated rows, not from the tool's own mapping.

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};

use serde_json::Value;

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::fixture::{failure_lines, journal_lines, settled};
use crate::util::{exec, read_failures, signalled_after, write_csv, Run, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "batch-test-key-7c2a";

const NICK: &str = "Tag_Profile_IM_Nick";
const IMAGE: &str = "Tag_Profile_IM_Image";
const LEVEL: &str = "Tag_Profile_IM_Level";

type Profiles = BTreeMap<String, BTreeMap<String, Value>>;

/// Chat's documented limits (so the batch path's pacing is exercised), no latency.
fn sim_config() -> SimConfig {
    SimConfig::new(APP, ADMIN, SecretKey::new(KEY))
}

fn user(i: usize) -> String {
    format!("user_{i:05}")
}

/// The simulator's config, answering the first request for `user_id` (of each command) with
/// the app-wide 60011.
fn one_60011_for(user_id: &str) -> SimConfig {
    use profile_import::sim::{Faults, Injected};
    let mut config = sim_config();
    config.faults = Faults {
        inject_for: [(user_id.to_string(), Injected::Code(60011))].into(),
        max_streak_per_user: 1,
        ..Faults::default()
    };
    config
}

fn nick_of(i: usize) -> String {
    format!("Nick {i} ✓")
}

fn image_of(i: usize) -> String {
    format!("https://img.example.com/{i}.png")
}

/// `n` rows of `UserID,Nick,Image`, one user each, and what Chat must hold afterwards.
fn nick_image_rows(n: usize) -> (Vec<Vec<String>>, Profiles) {
    let rows: Vec<Vec<String>> = (0..n)
        .map(|i| vec![user(i), nick_of(i), image_of(i)])
        .collect();
    let expected = (0..n)
        .map(|i| {
            let profile = [
                (NICK.to_string(), Value::from(nick_of(i))),
                (IMAGE.to_string(), Value::from(image_of(i))),
            ];
            (user(i), profile.into_iter().collect())
        })
        .collect();
    (rows, expected)
}

/// The binary importing `csv` (in the workspace) into `sim` with `--batch-nick-image`.
fn batch_import(ws: &Workspace, sim: &SimHandle, csv: &str, extra: &[&str]) -> Command {
    let mut command = crate::util::tool_command();
    command
        .current_dir(ws.dir())
        .args(["import", csv, "--batch-nick-image", "--no-progress"])
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(["--summary-json", "summary.json"])
        .args(extra)
        .env("PROFILE_IMPORT_SECRET_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn summary_json(ws: &Workspace) -> Value {
    let text = std::fs::read_to_string(ws.path("summary.json")).expect("the summary JSON");
    serde_json::from_str(&text).expect("the summary JSON parses")
}

fn requests_to(sim: &SimHandle, command: &str) -> u64 {
    sim.stats().by_command.get(command).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nick_and_image_only_go_100_users_a_call_and_never_through_portrait_set() {
    let ws = Workspace::new();
    let (rows, expected) = nick_image_rows(20_000);
    write_csv(&ws.path("users.csv"), &["UserID", "Nick", "Image"], &rows);
    let mut config = sim_config();
    // A third of the users are accounts already; the call creates the others.
    config.accounts = Some((0..20_000).filter(|i| i % 3 == 0).map(user).collect());
    let sim = SimHandle::start(config).await.unwrap();

    let run = exec(batch_import(&ws, &sim, "users.csv", &[])).await;
    run.assert_code(0);

    assert_eq!(run.count("ok"), 20_000);
    assert_eq!(run.count("failed"), 0);
    let stats = sim.stats();
    assert_eq!(requests_to(&sim, "portrait_set"), 0, "{stats}");
    // Calls Chat took; one it throttled (60007, the pacer and Chat's window disagreeing by a
    // hair) is sent again, so arrivals may be a few more.
    let calls = stats.count_for("multiaccount_import", "0");
    assert!(
        (200..=260).contains(&calls),
        "about 200 multiaccount_import calls for 20,000 users, not {calls}: {stats}"
    );
    let throttled = stats.count_for("multiaccount_import", "60007");
    assert!(throttled * 10 < calls, "paced at Chat's 100/s: {stats}");
    assert_eq!(sim.profiles(), expected, "Chat holds the CSV");
    assert_eq!(
        sim.accounts().unwrap().len(),
        20_000,
        "every account exists"
    );
    assert!(
        run.line("self-check").contains("Nick/Image landed"),
        "{}",
        run.stderr
    );

    let json = summary_json(&ws);
    let batch = &json["batch_nick_image"];
    assert_eq!(batch["outcome"], "confirmed");
    assert_eq!(batch["users"], 20_000);
    assert_eq!(batch["multiaccount_import_calls"], calls);
    assert_eq!(batch["fallback_rows"], 0);
    let sample = batch["sample_users"].as_u64().unwrap();
    // The first 100 users, then about one in 1000 (one at least per check).
    assert!((100..=400).contains(&sample), "sample of {sample} users");
    assert_eq!(
        batch["check_portrait_get_calls"].as_u64().unwrap(),
        requests_to(&sim, "portrait_get")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_columns_go_through_portrait_set_without_nick_and_image() {
    let ws = Workspace::new();
    let mut rows = Vec::new();
    let mut expected = Profiles::new();
    let mut with_level = 0;
    for i in 0..600 {
        // Every third row has only Nick and Image; every fifth only a Level.
        let (nick, image) = match i % 5 {
            0 => (String::new(), String::new()),
            _ => (nick_of(i), image_of(i)),
        };
        let level = match i % 3 {
            0 if i % 5 != 0 => String::new(),
            _ => (i % 100).to_string(),
        };
        let profile = expected.entry(user(i)).or_default();
        if !nick.is_empty() {
            profile.insert(NICK.into(), Value::from(nick.clone()));
            profile.insert(IMAGE.into(), Value::from(image.clone()));
        }
        if !level.is_empty() {
            with_level += 1;
            profile.insert(LEVEL.into(), Value::from(i as u64 % 100));
        }
        rows.push(vec![user(i), nick, image, level]);
    }
    write_csv(
        &ws.path("users.csv"),
        &["UserID", "Nick", "Image", "Level"],
        &rows,
    );
    let sim = SimHandle::start(sim_config()).await.unwrap();

    let run = exec(batch_import(&ws, &sim, "users.csv", &[])).await;
    run.assert_code(0);

    assert_eq!(run.count("ok"), 600);
    let stats = sim.stats();
    assert_eq!(
        stats.count_for("portrait_set", "0"),
        with_level,
        "one portrait_set per row with a Level, none for Nick/Image-only rows"
    );
    assert_eq!(
        stats.portrait_set_tags.keys().collect::<Vec<_>>(),
        [LEVEL],
        "portrait_set bodies carry no Nick or Image"
    );
    assert_eq!(sim.profiles(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_that_ignores_existing_accounts_is_caught_and_portrait_set_takes_over() {
    let ws = Workspace::new();
    let (mut rows, mut expected) = nick_image_rows(3_000);
    // Some rows carry a Level too: their fallback body holds all three.
    for (i, row) in rows.iter_mut().enumerate() {
        let level = if i % 4 == 0 {
            let profile = expected.get_mut(&user(i)).unwrap();
            profile.insert(LEVEL.into(), Value::from(7u64));
            "7".to_string()
        } else {
            String::new()
        };
        row.push(level);
    }
    write_csv(
        &ws.path("users.csv"),
        &["UserID", "Nick", "Image", "Level"],
        &rows,
    );
    let mut config = sim_config();
    // Every other user is an existing account, whose Nick and FaceUrl the call ignores.
    config.accounts = Some((0..3_000).filter(|i| i % 2 == 0).map(user).collect());
    config.faults.account_list_ignores_existing = true;
    let sim = SimHandle::start(config).await.unwrap();

    let run = exec(batch_import(&ws, &sim, "users.csv", &[])).await;
    run.assert_code(0);

    assert_eq!(run.count("ok"), 3_000);
    assert_eq!(sim.profiles(), expected, "Chat holds the CSV all the same");
    let self_check = run.line("self-check");
    assert!(self_check.contains("did NOT land"), "{}", run.stderr);
    assert!(self_check.contains("batch path dropped"), "{}", run.stderr);
    eprintln!("{}\n{self_check}", run.line("batch "));

    let json = summary_json(&ws);
    let batch = &json["batch_nick_image"];
    assert_eq!(batch["outcome"], "fell back");
    assert_eq!(batch["sample_users"], 100, "caught by the first check");
    assert_eq!(batch["confirmed_users"], 0);
    assert!(batch["fell_back_because"]
        .as_str()
        .unwrap()
        .contains("differ"));
    // Every row's Nick and Image went through portrait_set: none was vouched for.
    assert_eq!(batch["fallback_rows"], 3_000);
    let stats = sim.stats();
    assert_eq!(stats.count_for("portrait_set", "0"), 3_000, "one per row");
    // Counted per request, so a retried one (60007) counts twice.
    assert!(stats.portrait_set_tags[NICK] >= 3_000);
    assert!(stats.portrait_set_tags[IMAGE] >= 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_accounts_rows_land_in_the_failure_csv_and_rerun_from_it() {
    let ws = Workspace::new();
    let header = ["UserID", "Nick", "Image", "Level"];
    let rows: Vec<Vec<String>> = (0..500)
        .map(|i| {
            let level = if i % 2 == 0 { "5" } else { "" };
            vec![user(i), nick_of(i), image_of(i), level.to_string()]
        })
        .collect();
    write_csv(&ws.path("users.csv"), &header, &rows);
    let doomed: HashSet<String> = [7, 120, 121, 499].into_iter().map(user).collect();
    let mut config = sim_config();
    config.fail_import = doomed.clone();
    let sim = SimHandle::start(config).await.unwrap();

    let run = exec(batch_import(&ws, &sim, "users.csv", &[])).await;
    run.assert_code(3);
    assert_eq!(run.count("ok"), 496);
    assert_eq!(run.count("failed"), 4);

    let (failure_header, failures) = read_failures(&ws.path("users.failures.csv"));
    assert_eq!(failure_header, header);
    let failed_users: HashSet<String> = failures.iter().map(|f| f.data[0].clone()).collect();
    assert_eq!(failed_users, doomed);
    for failure in &failures {
        assert_eq!(failure.code, "account_import");
        assert_eq!(failure.stage, "account");
        assert!(failure.message.contains("FailAccounts"), "{failure:?}");
        let i: usize = failure.data[0][5..].parse().unwrap();
        assert_eq!(failure.data, rows[i], "the row as it was read");
        assert_eq!(failure.line, i as u64 + 2);
    }
    // No half-done row: the failed users got neither part.
    let profiles = sim.profiles();
    assert!(doomed.iter().all(|u| !profiles.contains_key(u)));
    let json = summary_json(&ws);
    assert_eq!(json["batch_nick_image"]["fail_accounts"], 4);

    // The failure CSV is valid input for a rerun once Chat takes the accounts.
    let again = SimHandle::start(sim_config()).await.unwrap();
    let mut rerun = batch_import(&ws, &again, "users.failures.csv", &[]);
    rerun.args(["--failures", "rerun.failures.csv"]);
    let rerun = exec(rerun).await;
    rerun.assert_code(0);
    assert_eq!(rerun.count("ok"), 4);
    let rerun_profiles = again.profiles();
    for failure in &failures {
        let i: usize = failure.data[0][5..].parse().unwrap();
        assert_eq!(rerun_profiles[&user(i)][NICK], Value::from(nick_of(i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_batch_run_resumes_and_sends_every_row_left() {
    let ws = Workspace::new();
    let (mut rows, expected) = nick_image_rows(20_000);
    // A few users twice: the later row wins.
    for i in [10, 5_000, 15_000] {
        rows.push(vec![user(i), nick_of(i), image_of(i)]);
    }
    write_csv(&ws.path("users.csv"), &["UserID", "Nick", "Image"], &rows);
    let sim = SimHandle::start(sim_config()).await.unwrap();

    let first = batch_import(&ws, &sim, "users.csv", &[]);
    let killed = signalled_after(first, &sim, 60, "-KILL").await;
    assert_eq!(killed.code, -1, "killed: {}", killed.stderr);
    settled(&sim).await;
    let after_kill = journal_lines(&ws.path("users.journal"));
    assert!(
        after_kill.len() < rows.len(),
        "the kill came before the end ({} rows journalled)",
        after_kill.len()
    );

    let resumed = exec(batch_import(&ws, &sim, "users.csv", &["--resume"])).await;
    resumed.assert_code(0);
    // The three repeated users' first rows merge into their second.
    assert_eq!(
        resumed.count("ok"),
        rows.len() as u64 - 3,
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.count("superseded"), 3, "{}", resumed.stderr);
    assert_eq!(resumed.count("not attempted"), 0);
    assert_eq!(sim.profiles(), expected);
    assert!(failure_lines(&ws.path("users.failures.csv")).is_empty());
    // Every line final, and journalled once across the two runs.
    let lines = journal_lines(&ws.path("users.journal"));
    assert_eq!(lines.len(), rows.len());
    let superseded: Vec<u64> = lines
        .iter()
        .filter(|(_, state)| *state == "superseded")
        .map(|(line, _)| *line)
        .collect();
    assert_eq!(superseded.len(), 3);
    for line in superseded {
        assert!([12, 5_002, 15_002].contains(&line), "line {line}");
    }
    assert!(lines
        .values()
        .all(|state| state == "ok" || state == "superseded"));
    assert_eq!(requests_to(&sim, "portrait_set"), 0);
}

#[test]
fn help_says_the_flag_creates_accounts_and_checks_itself() {
    let run = crate::util::run_in(std::path::Path::new("."), ["import", "--help"]);
    run.assert_code(0);
    let help = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("--batch-nick-image"), "{help}");
    assert!(help.contains("also creates the accounts"), "{help}");
    assert!(
        help.contains("reads a sample back with portrait_get"),
        "{help}"
    );
    assert!(help.contains("--batch-rate"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_portrait_set_part_fails_is_failed_with_chat_s_reason() {
    let ws = Workspace::new();
    // Custom_Color is not configured in the simulated console: portrait_set answers 40009.
    let header = ["UserID", "Nick", "Image", "Custom_Color"];
    let rows: Vec<Vec<String>> = (0..300)
        .map(|i| {
            let color = if i % 10 == 0 { "red" } else { "" };
            vec![user(i), nick_of(i), image_of(i), color.to_string()]
        })
        .collect();
    write_csv(&ws.path("users.csv"), &header, &rows);
    let sim = SimHandle::start(sim_config()).await.unwrap();

    let run = exec(batch_import(&ws, &sim, "users.csv", &[])).await;
    run.assert_code(3);
    assert_eq!(run.count("ok"), 270);
    assert_eq!(run.count("failed"), 30);
    let (_, failures) = read_failures(&ws.path("users.failures.csv"));
    assert_eq!(failures.len(), 30);
    for failure in &failures {
        assert_eq!(failure.code, "40009", "{failure:?}");
        assert_eq!(failure.stage, "send");
        assert_eq!(failure.data[3], "red");
    }
    // The other rows are in Chat whole; a failed row's Nick went through the batch path
    // (the batch part is idempotent, and the failure CSV sends both parts again).
    let profiles = sim.profiles();
    for i in (0..300).filter(|i| i % 10 != 0) {
        assert_eq!(profiles[&user(i)][NICK], Value::from(nick_of(i)));
        assert_eq!(profiles[&user(i)][IMAGE], Value::from(image_of(i)));
    }
    assert_eq!(sim.stats().count_for("portrait_set", "40009"), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_changes_only_only_the_differing_users_are_batched() {
    let ws = Workspace::new();
    let sim = SimHandle::start(sim_config()).await.unwrap();
    let level_of = |i: usize| (i % 100) as u64;
    let mut rows = Vec::new();
    let mut expected = Profiles::new();
    for i in 0..300 {
        rows.push(vec![
            user(i),
            nick_of(i),
            image_of(i),
            level_of(i).to_string(),
        ]);
        let profile: BTreeMap<String, Value> = [
            (NICK.to_string(), Value::from(nick_of(i))),
            (IMAGE.to_string(), Value::from(image_of(i))),
            (LEVEL.to_string(), Value::from(level_of(i))),
        ]
        .into_iter()
        .collect();
        // Chat holds the CSV already, but for the drift below.
        let drifted: Vec<(&str, Value)> = match i {
            0..=2 => vec![(NICK, Value::from("renamed in the console"))],
            10 | 11 => vec![(LEVEL, Value::from(99u64))],
            20 => vec![(NICK, Value::from("")), (LEVEL, Value::from(98u64))],
            _ => Vec::new(),
        };
        sim.write_profile(
            &user(i),
            profile
                .iter()
                .map(|(tag, value)| (tag.as_str(), value.clone()))
                .chain(drifted),
        );
        expected.insert(user(i), profile);
    }
    write_csv(
        &ws.path("users.csv"),
        &["UserID", "Nick", "Image", "Level"],
        &rows,
    );

    let run = exec(batch_import(&ws, &sim, "users.csv", &["--changes-only"])).await;
    run.assert_code(0);

    assert_eq!(sim.profiles(), expected, "the drift is repaired");
    let stats = sim.stats();
    // Users 10, 11 and 20 differ in Level: their portrait_set bodies hold only the Level.
    assert_eq!(stats.count_for("portrait_set", "0"), 3, "{stats}");
    assert_eq!(
        stats.portrait_set_tags.keys().collect::<Vec<_>>(),
        [LEVEL],
        "{stats}"
    );
    let json = summary_json(&ws);
    // Users 0, 1, 2 and 20 differ in Nick: only they go through the batch path.
    assert_eq!(json["batch_nick_image"]["users"], 4, "{json}");
    assert_eq!(json["changes_only"]["unchanged_in_chat"], 294, "{json}");
    assert_eq!(json["changes_only"]["updated"], 6, "{json}");
    assert_eq!(json["changes_only"]["tags_sent"], 7, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_wide_60011_on_the_batch_path_slows_portrait_set_too() {
    let ws = Workspace::new();
    // Row 0 has only a Nick (the batch path alone); the others only a Level (portrait_set
    // alone), so portrait_set itself is never throttled.
    let mut rows = vec![vec![user(0), nick_of(0), String::new()]];
    rows.extend((1..200).map(|i| vec![user(i), String::new(), (i % 100).to_string()]));
    write_csv(&ws.path("users.csv"), &["UserID", "Nick", "Level"], &rows);
    let sim = SimHandle::start(one_60011_for(&user(0))).await.unwrap();

    let run = exec(batch_import(&ws, &sim, "users.csv", &[])).await;
    run.assert_code(0);

    let stats = sim.stats();
    assert_eq!(
        stats.count_for("multiaccount_import", "60011"),
        1,
        "{stats}"
    );
    assert_eq!(stats.count_for("portrait_set", "60011"), 0, "{stats}");
    let json = summary_json(&ws);
    let lowest = json["pace_lowest_per_second"].as_f64().expect("a pace");
    assert!(lowest < 200.0, "portrait_set's pace was not slowed: {json}");
}

/// Writes 200 rows of `UserID,Nick,Image` to `users.csv` in `ws`, and has `sim` hold them all
/// already but for the users in `renamed`, whose Nick was changed in the console.
fn hold_all_but_renamed(ws: &Workspace, sim: &SimHandle, renamed: std::ops::Range<usize>) {
    let mut rows = Vec::new();
    for i in 0..200 {
        rows.push(vec![user(i), nick_of(i), image_of(i)]);
        let held_nick = if renamed.contains(&i) {
            "renamed in the console".to_string()
        } else {
            nick_of(i)
        };
        sim.write_profile(
            &user(i),
            [
                (NICK, Value::from(held_nick)),
                (IMAGE, Value::from(image_of(i))),
            ],
        );
    }
    write_csv(&ws.path("users.csv"), &["UserID", "Nick", "Image"], &rows);
}

/// `--changes-only --batch-nick-image` over a simulator holding every user but `renamed`, whose
/// first request led by user `throttled` is answered 60011; the run must end with exit 0.
async fn changes_only_batch_run(
    ws: &Workspace,
    throttled: usize,
    renamed: std::ops::Range<usize>,
) -> (SimHandle, Run) {
    let sim = SimHandle::start(one_60011_for(&user(throttled)))
        .await
        .unwrap();
    hold_all_but_renamed(ws, &sim, renamed);
    let run = exec(batch_import(ws, &sim, "users.csv", &["--changes-only"])).await;
    run.assert_code(0);
    (sim, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_changes_only_an_app_wide_60011_on_a_read_slows_the_batch_path_too() {
    let ws = Workspace::new();
    // Chat already holds every row but ten renamed users, which alone go through the batch
    // path. user_00000 is only ever read: the 60011 comes from the first read, and from no
    // multiaccount_import.
    let (sim, run) = changes_only_batch_run(&ws, 0, 100..110).await;

    let stats = sim.stats();
    assert_eq!(stats.count_for("portrait_get", "60011"), 1, "{stats}");
    assert_eq!(
        stats.count_for("multiaccount_import", "60011"),
        0,
        "{stats}"
    );
    let json = summary_json(&ws);
    assert_eq!(json["batch_nick_image"]["users"], 10, "{json}");
    let lowest = json["batch_nick_image"]["pace_lowest_per_second"]
        .as_u64()
        .expect("the batch path's lowest pace");
    assert!(
        lowest < 100,
        "multiaccount_import's pace was not slowed by the read's 60011: {json}"
    );
    // The text summary says so under the batch line, as it does for portrait_set's pace.
    assert_slowed_under(&run.stderr, "batch  ", lowest, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_changes_only_an_app_wide_60011_on_the_batch_path_slows_the_reads_too() {
    let ws = Workspace::new();
    // Ten renamed users go through the batch path in one call led by user_00150, which no
    // read leads (reads of 100 users start at user_00000 and user_00100): the 60011s come
    // from the batch path alone (its multiaccount_import, and its self-check's read-back).
    let (sim, run) = changes_only_batch_run(&ws, 150, 150..160).await;

    let stats = sim.stats();
    assert_eq!(
        stats.count_for("multiaccount_import", "60011"),
        1,
        "{stats}"
    );
    // At most the self-check's: the reads themselves are never refused.
    assert!(stats.count_for("portrait_get", "60011") <= 1, "{stats}");
    let json = summary_json(&ws);
    assert_eq!(json["batch_nick_image"]["users"], 10, "{json}");
    assert_eq!(json["changes_only"]["read_throttled"], 0, "{json}");
    let lowest = json["changes_only"]["read_pace_lowest_per_second"]
        .as_u64()
        .expect("the reads' lowest pace");
    assert!(
        lowest < 200,
        "the reads' pace was not slowed by the batch path's 60011: {json}"
    );
    assert_slowed_under(&run.stderr, "read calls", lowest, 200);
}

/// The text summary has the line saying a pace was slowed right under the line starting `line`.
fn assert_slowed_under(summary: &str, line: &str, lowest: u64, ceiling: u64) {
    let slowed = format!("paced down to {lowest}/s of {ceiling}/s at the lowest");
    let mut lines = summary.lines().skip_while(|l| !l.starts_with(line));
    assert!(lines.next().is_some(), "no `{line}` line:\n{summary}");
    assert!(
        lines.next().is_some_and(|next| next.contains(&slowed)),
        "no `{slowed}` right under the `{line}` line:\n{summary}"
    );
}
