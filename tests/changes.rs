//! `import --changes-only` and its plan (`--dry-run --changes-only`): what Chat holds decides
//! what is sent. The simulator is seeded directly (as if an import had run), values are changed
//! in it as another writer would, and its counts say what was read and written: portrait_set
//! calls, the tags their bodies held, portrait_get calls and users read.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};

use profile_import::chat::api::command::PORTRAIT_GET;
use profile_import::chat::api::ChatApi;
use profile_import::chat::client::{ChatClient, ClientTuning};
use profile_import::chat::retry::{Answer, RetryPolicy};
use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{Faults, Injected, SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

use crate::util::fixture::{journal_lines, settled};
use crate::util::{
    read_csv, signalled_after, sim_connection, tool_command, write_csv, Run, Workspace,
};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "changes-test-key-3b7d";
const NICK: &str = "Tag_Profile_IM_Nick";
const LEVEL: &str = "Tag_Profile_IM_Level";
const HOBBY: &str = "Tag_Profile_Custom_Hobby";
const HEADER: [&str; 4] = ["UserID", "Nick", "Level", "Custom_Hobby"];

type Profile = BTreeMap<String, Value>;

/// One user's row: what the CSV says and, written out by hand, what Chat then holds.
#[derive(Clone)]
struct Person {
    id: String,
    nick: String,
    level: u32,
    hobby: String,
}

impl Person {
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.nick.clone(),
            self.level.to_string(),
            self.hobby.clone(),
        ]
    }

    fn profile(&self) -> Profile {
        [
            (NICK.to_string(), json!(self.nick)),
            (LEVEL.to_string(), json!(self.level)),
            (HOBBY.to_string(), json!(self.hobby)),
        ]
        .into()
    }
}

fn people(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| Person {
            id: format!("user_{i:03}"),
            nick: format!("Nick {i}"),
            level: (i % 60) as u32,
            hobby: ["chess", "摄影", "climbing"][i % 3].to_string(),
        })
        .collect()
}

fn write_people(path: &Path, people: &[Person]) {
    let rows: Vec<Vec<String>> = people.iter().map(Person::row).collect();
    write_csv(path, &HEADER, &rows);
}

fn sim_config() -> SimConfig {
    let mut config = SimConfig::new(APP, ADMIN, SecretKey::new(KEY));
    config.limit_per_sec = 0;
    config
}

/// A simulator that already holds `people` (as an earlier import would have left it).
async fn seeded(config: SimConfig, people: &[Person]) -> SimHandle {
    let sim = SimHandle::start(config).await.unwrap();
    for person in people {
        let profile = person.profile();
        sim.write_profile(
            &person.id,
            profile.iter().map(|(t, v)| (t.as_str(), v.clone())),
        );
    }
    sim
}

fn expected(people: &[Person]) -> BTreeMap<String, Profile> {
    people.iter().map(|p| (p.id.clone(), p.profile())).collect()
}

/// `import CSV` against `sim` with a JSON summary in the workspace, run off the runtime.
async fn import(ws: &Workspace, sim: &SimHandle, csv: &Path, extra: &[&str]) -> Run {
    let mut command = import_command(ws, sim, csv, extra);
    tokio::task::spawn_blocking(move || Run::from_output(command.output().unwrap()))
        .await
        .unwrap()
}

fn import_command(ws: &Workspace, sim: &SimHandle, csv: &Path, extra: &[&str]) -> Command {
    let mut command = tool_command();
    command
        .current_dir(ws.dir())
        .arg("import")
        .arg(csv)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .arg("--no-progress")
        .args(if extra.contains(&"--rate") {
            &[][..]
        } else {
            &["--rate", "2000"][..]
        })
        .arg("--summary-json")
        .arg(ws.path("summary.json"))
        .args(extra)
        .env("PROFILE_IMPORT_SECRET_KEY", KEY);
    command
}

fn summary(ws: &Workspace) -> Value {
    serde_json::from_slice(&std::fs::read(ws.path("summary.json")).unwrap()).unwrap()
}

fn calls(sim: &SimHandle, command: &str) -> u64 {
    sim.stats().by_command.get(command).copied().unwrap_or(0)
}

fn written(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_by_another_writer_is_repaired_by_sending_only_the_drifted_tags() {
    let ws = Workspace::new();
    let people = people(40);
    let csv = ws.path("users.csv");
    write_people(&csv, &people);
    let sim = seeded(sim_config(), &people).await;
    // Another writer (the console, a client SDK) changes three values, one of them unset.
    sim.write_profile("user_003", [(NICK, json!("Renamed in the console"))]);
    sim.write_profile("user_017", [(LEVEL, json!(99))]);
    sim.write_profile("user_029", [(HOBBY, Value::Null)]);

    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(0);
    assert_eq!(sim.profiles(), expected(&people), "the drift is repaired");
    assert_eq!(calls(&sim, "portrait_set"), 3);
    assert_eq!(
        sim.stats().written_by_tag,
        written(&[(NICK, 1), (LEVEL, 1), (HOBBY, 1)]),
        "each body held only its drifted tag"
    );
    let changes = &summary(&ws)["changes_only"];
    assert_eq!(changes["users_compared"], 40);
    assert_eq!(changes["unchanged_in_chat"], 37);
    assert_eq!(changes["updated"], 3);
    assert_eq!(changes["tags_sent"], 3);
    assert_eq!(changes["read_calls"], 1);
    assert_eq!(run.count("unchanged in Chat"), 37);
    assert_eq!(run.count("tags sent"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reimport_sends_no_portrait_set_and_reads_100_users_a_call() {
    let ws = Workspace::new();
    let people = people(250);
    let csv = ws.path("users.csv");
    write_people(&csv, &people);
    let sim = seeded(sim_config(), &people).await;

    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(0);
    assert_eq!(calls(&sim, "portrait_set"), 0);
    assert_eq!(calls(&sim, "portrait_get"), 3, "⌈250 / 100⌉ reads");
    assert_eq!(sim.stats().users_read, 250);
    let summary = summary(&ws);
    assert_eq!(summary["ok"], 0);
    assert_eq!(summary["unchanged"], 250);
    assert_eq!(summary["changes_only"]["unchanged_in_chat"], 250);
    assert_eq!(summary["changes_only"]["read_calls"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_percent_changed_in_one_tag_sends_exactly_those_users_with_only_that_tag() {
    let ws = Workspace::new();
    let base = people(1000);
    let sim = seeded(sim_config(), &base).await;
    let mut next = base.clone();
    let changed: BTreeSet<String> = next
        .iter_mut()
        .filter(|p| p.id.ends_with("42"))
        .map(|p| {
            p.level += 1;
            p.id.clone()
        })
        .collect();
    assert_eq!(changed.len(), 10, "1 % of the users");
    let csv = ws.path("next.csv");
    write_people(&csv, &next);

    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(0);
    assert_eq!(calls(&sim, "portrait_set"), 10, "only the changed users");
    assert_eq!(sim.stats().applied, 10);
    assert_eq!(sim.stats().written_by_tag, written(&[(LEVEL, 10)]));
    assert_eq!(
        sim.profiles(),
        expected(&next),
        "each changed user now holds the new Level"
    );
    assert_eq!(calls(&sim, "portrait_get"), 10);
    let changes = &summary(&ws)["changes_only"];
    assert_eq!(changes["updated"], 10);
    assert_eq!(changes["unchanged_in_chat"], 990);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_throttled_with_60007_are_retried_and_every_user_is_still_compared() {
    let ws = Workspace::new();
    let base = people(900);
    let mut config = sim_config();
    // Chat admits 4 portrait_get a second; the reads are paced at 8.
    config.limit_per_sec = 4;
    let sim = seeded(config, &base).await;
    let mut next = base.clone();
    next[450].nick = "Changed".into();
    let csv = ws.path("users.csv");
    write_people(&csv, &next);

    let run = import(&ws, &sim, &csv, &["--changes-only", "--read-rate", "8"]).await;
    run.assert_code(0);
    let stats = sim.stats();
    assert!(stats.count_for("portrait_get", "60007") > 0, "{stats}");
    assert_eq!(
        stats.count_for("portrait_get", "0"),
        9,
        "each batch read once"
    );
    let changes = &summary(&ws)["changes_only"];
    assert!(changes["read_throttled"].as_u64().unwrap() > 0);
    assert_eq!(changes["not_compared"], 0, "no read gave up");
    assert_eq!(changes["users_compared"], 900);
    assert_eq!(calls(&sim, "portrait_set"), 1);
    assert_eq!(sim.profiles(), expected(&next));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_chat_does_not_know_fail_with_40003_or_are_created_with_create_accounts() {
    let ws = Workspace::new();
    let known = people(20);
    let ghosts: Vec<Person> = ["ghost_1", "ghost_2"]
        .iter()
        .enumerate()
        .map(|(i, id)| Person {
            id: id.to_string(),
            nick: format!("Ghost {i}"),
            level: 7,
            hobby: "haunting".into(),
        })
        .collect();
    let mut config = sim_config();
    config.accounts = Some(known.iter().map(|p| p.id.clone()).collect());
    let sim = seeded(config, &known).await;
    let all: Vec<Person> = known.iter().chain(&ghosts).cloned().collect();
    let csv = ws.path("users.csv");
    write_people(&csv, &all);

    // The read answers the ghosts with ResultCode 40003 and lists them in Fail_Account: they
    // are sent whole, as a plain import would send them, and fail with 40003.
    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(3);
    let changes = &summary(&ws)["changes_only"];
    assert_eq!(changes["not_an_account"], 2);
    assert_eq!(changes["unchanged_in_chat"], 20);
    assert_eq!(calls(&sim, "portrait_set"), 2);
    assert_eq!(sim.stats().count_for("portrait_set", "40003"), 2);
    let failures = read_csv(&ws.path("users.failures.csv"));
    let failed: BTreeSet<&str> = failures[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(failed, BTreeSet::from(["ghost_1", "ghost_2"]));

    // With --create-accounts on-demand they are imported, then sent whole.
    let run = import(
        &ws,
        &sim,
        &csv,
        &["--changes-only", "--create-accounts", "on-demand"],
    )
    .await;
    run.assert_code(0);
    assert_eq!(sim.profiles(), expected(&all));
    assert_eq!(calls(&sim, "account_import"), 2);
    assert_eq!(
        sim.stats().written_by_tag,
        written(&[(NICK, 2), (LEVEL, 2), (HOBBY, 2)]),
        "the ghosts' whole rows, and nothing for the others"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_refused_whole_with_40003_sends_its_users_whole_and_skips_none() {
    let ws = Workspace::new();
    let people = people(150);
    let mut config = sim_config();
    // Every request whose first user is user_000 is refused with 40003: the portrait_get of
    // its batch, the account_check that then asks which account is missing, and user_000's own
    // portrait_set (the simulator's faults are keyed by user). The batch cannot be read.
    config.faults = Faults {
        inject_for: [("user_000".to_string(), Injected::Code(40003))].into(),
        ..Faults::default()
    };
    let sim = seeded(config, &people).await;
    let csv = ws.path("users.csv");
    write_people(&csv, &people);

    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(3);
    let changes = &summary(&ws)["changes_only"];
    assert_eq!(changes["not_compared"], 100, "the first batch of 100");
    assert_eq!(
        changes["unchanged_in_chat"], 50,
        "the second batch was compared"
    );
    assert_eq!(calls(&sim, "portrait_set"), 100, "sent whole, none skipped");
    assert_eq!(
        sim.stats().written_by_tag,
        written(&[(NICK, 99), (LEVEL, 99), (HOBBY, 99)])
    );
    assert_eq!(
        summary(&ws)["failed"],
        1,
        "user_000's own send is refused too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_changes_only_run_resumes_and_sends_each_change_once() {
    let ws = Workspace::new();
    let base = people(600);
    let mut config = sim_config();
    config.latency_min = std::time::Duration::from_millis(5);
    config.latency_max = std::time::Duration::from_millis(20);
    let sim = seeded(config, &base).await;
    let mut next = base.clone();
    for person in &mut next {
        person.nick.push_str(" (new)");
    }
    let csv = ws.path("users.csv");
    write_people(&csv, &next);

    let command = import_command(&ws, &sim, &csv, &["--changes-only", "-q", "--rate", "100"]);
    let run = signalled_after(command, &sim, 150, "-KILL").await;
    assert_eq!(run.code, -1, "killed: {}", run.stderr);
    settled(&sim).await;
    let sent_before = sim.stats().applied;
    assert!(sent_before > 0 && sent_before < 600, "{sent_before}");
    let journalled_before = std::fs::read_to_string(ws.path("users.journal")).unwrap();
    assert!(
        journalled_before.contains(" ok - updated 1\n"),
        "the killed run journalled no update for the resume to count:\n{journalled_before}"
    );

    let run = import(&ws, &sim, &csv, &["--changes-only", "--resume"]).await;
    run.assert_code(0);
    assert_eq!(sim.profiles(), expected(&next));
    assert_eq!(
        sim.stats().applied,
        600,
        "each user's change applied once: what the killed run sent is found unchanged"
    );
    let journal = journal_lines(&ws.path("users.journal"));
    assert_eq!(journal.len(), 600, "every line journalled once");
    // The resumed summary counts the killed run's comparisons too, not only its own: every
    // user was compared once and is either updated (one Nick) or, sent before the kill but
    // not journalled, found unchanged.
    let json = summary(&ws);
    let changes = &json["changes_only"];
    assert_eq!(changes["users_compared"], 600, "{json}");
    let (updated, in_chat) = (
        changes["updated"].as_u64().expect("updated"),
        changes["unchanged_in_chat"]
            .as_u64()
            .expect("unchanged_in_chat"),
    );
    assert_eq!(updated + in_chat, 600, "{json}");
    assert_eq!(changes["tags_sent"], updated, "one Nick per update: {json}");
    assert_eq!(json["ok"], updated, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_last_row_of_a_repeated_user_is_compared_and_sent() {
    let ws = Workspace::new();
    let people = people(10);
    let sim = seeded(sim_config(), &people).await;
    let mut rows: Vec<Vec<String>> = Vec::new();
    // user_001: an older row first, then the row Chat already holds: nothing to send.
    let mut old = people[1].clone();
    old.nick = "Old nick".into();
    rows.push(old.row());
    // user_002: the row Chat holds first, then a newer Nick: only the Nick is sent.
    rows.push(people[2].row());
    let mut newer = people[2].clone();
    newer.nick = "Newer nick".into();
    for person in &people {
        rows.push(if person.id == "user_002" {
            newer.row()
        } else {
            person.row()
        });
    }
    let csv = ws.path("users.csv");
    write_csv(&csv, &HEADER, &rows);

    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(0);
    assert_eq!(calls(&sim, "portrait_set"), 1);
    assert_eq!(sim.stats().written_by_tag, written(&[(NICK, 1)]));
    assert_eq!(sim.profiles()["user_002"][NICK], json!("Newer nick"));
    assert_eq!(sim.profiles()["user_001"][NICK], json!("Nick 1"));
    let summary = summary(&ws);
    assert_eq!(summary["superseded"], 2);
    assert_eq!(summary["changes_only"]["unchanged_in_chat"], 9);
    assert!(run.line("duplicate users").contains("user_00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_clear_sends_a_clear_only_where_chat_holds_a_value() {
    let ws = Workspace::new();
    let sim = SimHandle::start(sim_config()).await.unwrap();
    let sig = "Tag_Profile_IM_SelfSignature";
    sim.write_profile("u_held", [(NICK, json!("A")), (sig, json!("hello"))]);
    sim.write_profile("u_unset", [(NICK, json!("B"))]);
    let csv = ws.write(
        "users.csv",
        "UserID,Nick,SelfSignature\nu_held,A,\nu_unset,B,\n",
    );

    let run = import(&ws, &sim, &csv, &["--changes-only", "--empty", "clear"]).await;
    run.assert_code(0);
    assert_eq!(calls(&sim, "portrait_set"), 1);
    assert_eq!(sim.stats().written_by_tag, written(&[(sig, 1)]));
    assert_eq!(sim.profiles()["u_held"][sig], json!(""));
    assert!(!sim.profiles()["u_unset"].contains_key(sig));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_tags_are_compared_like_standard_ones() {
    let ws = Workspace::new();
    let city = "Tag_Profile_Custom_City";
    let sim = SimHandle::start(sim_config()).await.unwrap();
    for (user, hobby, town) in [
        ("c1", "chess", "Berlin"),
        ("c2", "go", "Paris"),
        ("c3", "ski", "Oslo"),
    ] {
        sim.write_profile(user, [(HOBBY, json!(hobby)), (city, json!(town))]);
    }
    let csv = ws.write(
        "users.csv",
        "UserID,Custom_Hobby,Custom_City\nc1,chess,Berlin\nc2,golf,Paris\nc3,ski,Bergen\n",
    );
    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(0);
    assert_eq!(calls(&sim, "portrait_set"), 2);
    assert_eq!(
        sim.stats().written_by_tag,
        written(&[(HOBBY, 1), (city, 1)])
    );
    assert_eq!(sim.profiles()["c2"][HOBBY], json!("golf"));
    assert_eq!(sim.profiles()["c3"][city], json!("Bergen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_counts_what_the_real_run_then_sends() {
    let ws = Workspace::new();
    let known = people(200);
    let mut config = sim_config();
    config.accounts = Some(known.iter().map(|p| p.id.clone()).collect());
    let sim = seeded(config, &known).await;
    for i in 10..15 {
        sim.write_profile(&format!("user_{i:03}"), [(NICK, json!("drifted"))]);
    }
    for i in 12..15 {
        sim.write_profile(&format!("user_{i:03}"), [(LEVEL, json!(77))]);
    }
    let mut rows: Vec<Vec<String>> = known.iter().map(Person::row).collect();
    rows.push(vec![
        "ghost_a".into(),
        "Ghost".into(),
        "1".into(),
        "x".into(),
    ]);
    rows.push(vec![
        "ghost_b".into(),
        "Ghost".into(),
        "2".into(),
        "y".into(),
    ]);
    rows.push(vec![
        "user_bad".into(),
        "Bad".into(),
        "not-a-level".into(),
        "z".into(),
    ]);
    let csv = ws.path("users.csv");
    write_csv(&csv, &HEADER, &rows);

    let plan = import(&ws, &sim, &csv, &["--dry-run", "--changes-only"]).await;
    plan.assert_code(3);
    assert_eq!(calls(&sim, "portrait_set"), 0, "the plan sends nothing");
    assert_eq!(calls(&sim, "portrait_get"), 3);
    assert_eq!(plan.count("to update"), 5);
    assert_eq!(plan.count("unchanged"), 195);
    assert_eq!(plan.count("missing account"), 2);
    assert_eq!(plan.count("invalid"), 1);
    assert_eq!(plan.count("would send"), 7);
    let json = summary(&ws);
    assert_eq!(json["update_by_tag"], json!({NICK: 5, LEVEL: 3}));
    let plan_csv = read_csv(&ws.path("users.plan.csv"));
    assert_eq!(plan_csv[0], ["UserID", "Tag", "Expected", "Actual"]);
    assert!(plan_csv.contains(&vec![
        "user_010".to_string(),
        NICK.to_string(),
        "\"Nick 10\"".to_string(),
        "\"drifted\"".to_string()
    ]));
    assert_eq!(
        plan_csv.len(),
        1 + 5 + 3 + 2 * 3,
        "each value that would be sent"
    );

    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(3);
    assert_eq!(
        calls(&sim, "portrait_set"),
        json["would_send"].as_u64().unwrap()
    );
    assert_eq!(
        sim.stats().written_by_tag,
        written(&[(NICK, 5), (LEVEL, 3)]),
        "the tags the plan counted (the ghosts' sends fail with 40003)"
    );
    assert_eq!(summary(&ws)["changes_only"]["updated"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changes_only_run_seeds_the_state_a_plain_state_run_would_write() {
    let ws = Workspace::new();
    let people = people(40);
    let csv = ws.path("users.csv");
    write_people(&csv, &people);
    let sim = seeded(sim_config(), &people).await;
    let state = ws.path("seeded.db");
    let state_arg = state.to_str().unwrap();

    let run = import(&ws, &sim, &csv, &["--changes-only", "--state", state_arg]).await;
    run.assert_code(0);
    assert_eq!(calls(&sim, "portrait_set"), 0);
    // A later --state run trusts it: nothing to send, no read.
    let run = import(&ws, &sim, &csv, &["--state", state_arg]).await;
    run.assert_code(0);
    assert_eq!(calls(&sim, "portrait_set"), 0);
    assert_eq!(run.count("unchanged"), 40);

    // The hashes are those a normal --state import of the same file stores.
    let fresh = SimHandle::start(sim_config()).await.unwrap();
    let imported = ws.path("imported.db");
    let run = import(&ws, &fresh, &csv, &["--state", imported.to_str().unwrap()]).await;
    run.assert_code(0);
    let hashes = |db: &Path| -> Vec<(String, String)> {
        let out = ws.run([OsStr::new("state"), OsStr::new("export"), db.as_os_str()]);
        out.assert_code(0);
        let mut reader = csv::Reader::from_reader(out.stdout.as_bytes());
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_string(), r[1].to_string())
            })
            .collect()
    };
    let seeded_hashes = hashes(&state);
    assert_eq!(seeded_hashes.len(), 40);
    assert_eq!(seeded_hashes, hashes(&imported));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_wide_60011_slows_the_sibling_pacer_and_a_60007_does_not() {
    for (code, slows) in [(60011, true), (60007, false)] {
        let mut config = sim_config();
        config.faults = Faults {
            inject_for: [("reader".to_string(), Injected::Code(code))].into(),
            max_streak_per_user: 1,
            ..Faults::default()
        };
        let sim = SimHandle::start(config).await.unwrap();
        let client = Arc::new(
            ChatClient::new(
                sim_connection(&sim.url(), APP, ADMIN, KEY),
                ClientTuning::default(),
            )
            .unwrap(),
        );
        let stop = CancellationToken::new();
        let reads = ChatApi::new(client.clone(), 200, RetryPolicy::default(), stop.clone());
        let sends = ChatApi::new(client, 200, RetryPolicy::default(), stop);
        ChatApi::link_siblings(&[&reads, &sends]);
        let body = r#"{"To_Account":["reader"],"TagList":["Tag_Profile_IM_Nick"]}"#;
        let (answer, requests) = reads.call(PORTRAIT_GET, body.into()).await;
        assert!(matches!(answer, Answer::Ok(..)), "{code}: {answer:?}");
        assert_eq!(requests, 2, "{code}: throttled once, then read");
        assert!(
            reads.pacer().current_rate() < 200.0,
            "{code} slows the reads"
        );
        assert_eq!(
            sends.pacer().current_rate() < 200.0,
            slows,
            "{code}: the sends' pacer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_ahead_keeps_input_order_whatever_order_the_reads_end_in() {
    use profile_import::chat::portrait::ProfileItem;
    use profile_import::run::changes::ahead::{read_ahead, Ahead};
    use profile_import::run::changes::{Comparison, Reads};

    let mut config = sim_config();
    // Reads end out of order.
    config.latency_min = std::time::Duration::from_millis(1);
    config.latency_max = std::time::Duration::from_millis(40);
    let sim = SimHandle::start(config).await.unwrap();
    for k in 0..300 {
        sim.write_profile(&format!("u{k}"), [(NICK, json!(format!("n{k}")))]);
    }
    let client = Arc::new(
        ChatClient::new(
            sim_connection(&sim.url(), APP, ADMIN, KEY),
            ClientTuning::default(),
        )
        .unwrap(),
    );
    let api = ChatApi::new(
        client,
        5000,
        RetryPolicy::default(),
        CancellationToken::new(),
    );
    let reads = Reads {
        api: Arc::new(api),
        tags: Arc::new(vec![NICK.to_string()]),
        in_flight: 8,
        on_fatal: Arc::new(|why| panic!("{why}")),
        account_check: None,
        only_if_empty: Arc::default(),
    };
    let (in_tx, in_rx) = tokio::sync::mpsc::channel::<usize>(16);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(16);
    // Every 7th row passes through; the others compare user u(i % 300), which repeats within a
    // batch, against the Nick "n{i}" (Chat holds "n{i % 300}": the same only for i < 300).
    let split = |i: usize| {
        if i.is_multiple_of(7) {
            return Ahead::Pass(i);
        }
        let expected = vec![ProfileItem {
            tag: NICK.into(),
            value: json!(format!("n{i}")),
        }];
        Ahead::Compare {
            user: format!("u{}", i % 300),
            expected,
            item: i,
        }
    };
    let stage = tokio::spawn(read_ahead(in_rx, out_tx, reads, split, |i, c| {
        (i, c.map(|c| c.outcome))
    }));
    tokio::spawn(async move {
        for i in 0..1000 {
            in_tx.send(i).await.unwrap();
        }
    });
    let mut seen = Vec::new();
    while let Some((i, outcome)) = out_rx.recv().await {
        match outcome {
            None => assert_eq!(i % 7, 0, "row {i} passed through"),
            Some(Comparison::Same) => assert!(i < 300, "row {i}"),
            Some(Comparison::Differs(_)) => assert!(i >= 300, "row {i}"),
            Some(other) => panic!("row {i}: {other:?}"),
        }
        seen.push(i);
    }
    stage.await.unwrap();
    assert_eq!(
        seen,
        (0..1000).collect::<Vec<_>>(),
        "every row, in input order"
    );
    let compared = (0..1000).filter(|i| i % 7 != 0).count() as u64;
    assert_eq!(
        sim.stats().users_read,
        compared,
        "each compared row read once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_refused_whole_for_unknown_accounts_is_sorted_out_with_account_check() {
    let ws = Workspace::new();
    let known = people(150);
    let mut config = sim_config();
    config.accounts = Some(known.iter().map(|p| p.id.clone()).collect());
    // The doc's other reading: one unknown account fails the whole portrait_get with 40003.
    config.get_refuses_unknown_accounts = true;
    let sim = seeded(config, &known).await;
    let mut rows: Vec<Vec<String>> = known.iter().map(Person::row).collect();
    // Two users Chat does not know, inside the first batch of 100.
    rows.insert(
        5,
        vec!["ghost_a".into(), "Ghost".into(), "1".into(), "x".into()],
    );
    rows.insert(
        60,
        vec!["ghost_b".into(), "Ghost".into(), "2".into(), "y".into()],
    );
    let csv = ws.path("users.csv");
    write_csv(&csv, &HEADER, &rows);

    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(3);
    let stats = sim.stats();
    assert_eq!(
        calls(&sim, "account_check"),
        1,
        "the refused batch, checked once"
    );
    assert_eq!(
        stats.count_for("portrait_get", "40003"),
        1,
        "refused once, then read without the ghosts"
    );
    assert_eq!(calls(&sim, "portrait_get"), 3);
    let changes = &summary(&ws)["changes_only"];
    assert_eq!(changes["not_an_account"], 2);
    assert_eq!(changes["not_compared"], 0);
    assert_eq!(
        changes["unchanged_in_chat"], 150,
        "every known user still compared"
    );
    assert_eq!(changes["account_checks"], 1);
    assert_eq!(
        calls(&sim, "portrait_set"),
        2,
        "only the ghosts, which fail"
    );
    assert_eq!(stats.count_for("portrait_set", "40003"), 2);

    // The plan finds them the same way.
    let plan = import(&ws, &sim, &csv, &["--dry-run", "--changes-only"]).await;
    plan.assert_code(3);
    assert_eq!(plan.count("missing account"), 2);
    assert_eq!(plan.count("unchanged"), 150);
    assert_eq!(plan.count("not compared"), 0);
}

/// `-v` logs the first bodies sent. Under `--changes-only` it used to log the whole row's body
/// where only the drifted tag was sent; it logs the body that went out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_the_body_sent_not_the_whole_row() {
    let ws = Workspace::new();
    let people = people(5);
    let csv = ws.path("users.csv");
    write_people(&csv, &people);
    let sim = seeded(sim_config(), &people).await;
    sim.write_profile("user_002", [(LEVEL, json!(99))]);
    let run = import(&ws, &sim, &csv, &["--changes-only", "-v"]).await;
    run.assert_code(0);
    let logged: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("request body"))
        .collect();
    assert_eq!(logged.len(), 1, "{}", run.stderr);
    let body = logged[0].split("request body ").nth(1).unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        json!({"From_Account": "user_002", "ProfileItem": [{"Tag": LEVEL, "Value": 2}]})
    );
}

/// `changes_only` is an object in the plan's JSON as in the import's (it was `true` in the
/// plan's), with the same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_only_is_the_same_object_in_the_plan_and_the_import() {
    let ws = Workspace::new();
    let people = people(6);
    let csv = ws.path("users.csv");
    write_people(&csv, &people);
    let sim = seeded(sim_config(), &people).await;
    sim.write_profile("user_004", [(NICK, json!("Drifted"))]);
    import(&ws, &sim, &csv, &["--dry-run", "--changes-only"])
        .await
        .assert_code(0);
    let plan = summary(&ws);
    import(&ws, &sim, &csv, &["--changes-only"])
        .await
        .assert_code(0);
    let import = summary(&ws);
    let keys = |json: &Value| -> Vec<String> {
        json["changes_only"]
            .as_object()
            .unwrap_or_else(|| panic!("changes_only is not an object: {json}"))
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&plan), keys(&import));
    for json in [&plan, &import] {
        assert_eq!(json["changes_only"]["updated"], 1, "{json}");
        assert_eq!(json["changes_only"]["unchanged_in_chat"], 5, "{json}");
    }
    assert_eq!(plan["update"], 1);
}

/// Values are compared exactly: a Nick or a custom value that differs from the file's only in
/// case, or in the spaces around it, is drift, whichever side has the capital or the space
/// (an ideographic space included), and the file's value is sent. The other users match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_only_in_case_or_surrounding_spaces_is_a_difference_and_is_sent() {
    let ws = Workspace::new();
    let mut people = people(12);
    // (user, tag, the file's value, what Chat holds)
    let drift: [(usize, &str, &str, &str); 7] = [
        (1, NICK, "Ann", "ann"),
        (2, NICK, "ann", "Ann"),
        (3, NICK, "Ann", "Ann "),
        (4, NICK, " Ann ", "Ann"),
        (5, NICK, "Ann", "\u{3000}Ann"),
        (6, HOBBY, "chess", "CHESS"),
        (7, HOBBY, "chess\t", "chess"),
    ];
    for &(i, tag, file, _) in &drift {
        match tag {
            NICK => people[i].nick = file.into(),
            _ => people[i].hobby = file.into(),
        }
    }
    let csv = ws.path("users.csv");
    write_people(&csv, &people);
    let sim = seeded(sim_config(), &people).await;
    for &(i, tag, _, held) in &drift {
        sim.write_profile(&people[i].id, [(tag, json!(held))]);
    }

    let run = import(&ws, &sim, &csv, &["--changes-only"]).await;
    run.assert_code(0);
    assert_eq!(
        sim.profiles(),
        expected(&people),
        "Chat holds the file's values, case and spaces as written"
    );
    assert_eq!(calls(&sim, "portrait_set"), 7, "one per drifted user");
    assert_eq!(
        sim.stats().written_by_tag,
        written(&[(NICK, 5), (HOBBY, 2)]),
        "each body held only its drifted tag"
    );
    let changes = &summary(&ws)["changes_only"];
    assert_eq!(changes["users_compared"], 12);
    assert_eq!(changes["updated"], 7);
    assert_eq!(changes["unchanged_in_chat"], 5);
}

/// The reads `--changes-only` keeps in flight stay within their bound: 10 at `--read-rate 100`
/// (`run::changes::reads_in_flight`, written out here). Chat answers in 200-250 ms, so the pace
/// alone would have about 22 out at once; the simulator's high-water mark of concurrent
/// requests (only reads are made: nothing differs) reaches the bound and never passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_in_flight_under_changes_only_stay_within_their_bound() {
    let ws = Workspace::new();
    let people = people(3000);
    let csv = ws.path("users.csv");
    write_people(&csv, &people);
    let mut config = sim_config();
    config.latency_min = std::time::Duration::from_millis(200);
    config.latency_max = std::time::Duration::from_millis(250);
    let sim = seeded(config, &people).await;

    let run = import(&ws, &sim, &csv, &["--changes-only", "--read-rate", "100"]).await;
    run.assert_code(0);
    assert_eq!(calls(&sim, "portrait_get"), 30, "{}", run.stderr);
    assert_eq!(calls(&sim, "portrait_set"), 0);
    let stats = sim.stats();
    assert_eq!(stats.requests, 30, "only the reads were made: {stats}");
    assert_eq!(
        stats.max_in_flight, 10,
        "reads in flight at most (the bound is 10 at --read-rate 100): {stats}"
    );
}
