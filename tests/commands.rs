//! The README's first command, `demo`, its first screen's migration, and the `sim` command
//! served on a port the system picks (`--listen 127.0.0.1:0`), rehearsed against with the real
//! binary.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::util::{read_csv, sample, send_signal, tool_command, Run, Watched, Workspace};

/// The distinct UserIDs of a CSV with a `UserID` first column.
fn users_of(path: &std::path::Path) -> BTreeSet<String> {
    read_csv(path)
        .into_iter()
        .skip(1)
        .map(|record| record[0].clone())
        .collect()
}

/// A new user sees a real migration on the README's first screen, right after the install:
/// the key, the import with --create-accounts, then verify, each a command the tool takes.
#[test]
fn the_readme_first_screen_shows_a_migration_in_three_lines_after_the_install() {
    use clap::Parser;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let screen: Vec<&str> = readme.lines().take(50).collect();
    let install = screen
        .iter()
        .position(|line| line.starts_with("cargo install"))
        .expect("the install is on the first screen");
    let import = screen
        .iter()
        .position(|line| {
            line.starts_with("profile-import import ") && line.contains("--create-accounts")
        })
        .unwrap_or_else(|| panic!("no migration on the first screen:\n{}", screen.join("\n")));
    assert!(install < import, "the migration follows the install");
    assert!(screen[import - 1].starts_with("export PROFILE_IMPORT_SECRET_KEY="));
    assert!(screen[import + 1].starts_with("profile-import verify users.csv"));
    for line in &screen[import..=import + 1] {
        let words = line.split('#').next().unwrap().split_whitespace();
        if let Err(err) = profile_import::app::cli::Cli::try_parse_from(words) {
            panic!("{line}: {err}");
        }
    }
}

/// Runs `profile-import demo samples/users.csv` in `ws`, which must exit 0; with the sample's
/// number of users.
fn demo_of_the_sample(ws: &Workspace) -> (Run, u64) {
    let csv = sample("users.csv");
    let users = users_of(&csv).len() as u64;
    let output = tool_command()
        .current_dir(ws.dir())
        .arg("demo")
        .arg(&csv)
        .output()
        .expect("run the demo");
    let run = Run::from_output(output);
    run.assert_code(0);
    (run, users)
}

#[test]
fn demo_imports_the_sample_and_verify_finds_no_difference() {
    let ws = Workspace::new();
    let (run, users) = demo_of_the_sample(&ws);
    // The import through the real pipeline, despite the injected faults.
    assert_eq!(run.count("ok"), users, "{}", run.stderr);
    assert_eq!(run.count("failed"), 0, "{}", run.stderr);
    // The verify line: every user read back, nothing differs.
    assert_eq!(run.count("users checked"), users, "{}", run.stderr);
    assert_eq!(run.count("differences"), 0, "{}", run.stderr);
    assert_eq!(run.count("missing accounts"), 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{users} now exist")),
        "the demo created the accounts:\n{}",
        run.stderr
    );
    // It leaves nothing in the directory it ran in.
    assert_eq!(std::fs::read_dir(ws.dir()).unwrap().count(), 0);
}

/// The demo's last step imports the file again with `--changes-only`: Chat holds every value
/// by then, so that run's own summary (the second import's, not the first's) shows every user
/// unchanged and nothing sent, and the simulator saw no portrait_set beyond the first
/// import's requests.
#[test]
fn the_demo_changes_only_rerun_sends_no_portrait_set() {
    let ws = Workspace::new();
    let (run, users) = demo_of_the_sample(&ws);
    let part = |text: &str| Run {
        code: 0,
        stdout: String::new(),
        stderr: text.to_string(),
    };
    let (first, rest) = run
        .stderr
        .split_once("demo: import --changes-only")
        .unwrap_or_else(|| panic!("no --changes-only run:\n{}", run.stderr));
    let (second, seen) = rest
        .split_once("── what the simulator saw ──")
        .unwrap_or_else(|| panic!("no simulator report:\n{}", run.stderr));
    let (first, second) = (part(first), part(second));
    assert_eq!(first.count("ok"), users, "{}", run.stderr);
    // The second import: every user read back and found unchanged, nothing sent.
    assert_eq!(second.count("rows read"), users, "{}", second.stderr);
    assert_eq!(second.count("users compared"), users, "{}", second.stderr);
    assert_eq!(second.count("unchanged"), users, "{}", second.stderr);
    assert_eq!(second.count("ok"), 0, "{}", second.stderr);
    assert_eq!(second.count("updated"), 0, "{}", second.stderr);
    assert_eq!(second.count("tags sent"), 0, "{}", second.stderr);
    assert_eq!(second.count("requests"), 0, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("the --changes-only run made 0 portrait_set"),
        "{}",
        second.stderr
    );
    // The simulator's own count: every portrait_set it saw was one of the first import's.
    let sent = first.count("requests");
    assert!(
        seen.contains(&format!("portrait_set={sent} ")),
        "the first import made {sent} requests; the simulator saw:\n{seen}"
    );
}

#[test]
fn sim_command_serves_on_a_port_it_picks_and_reports_what_it_saw_on_ctrl_c() {
    let ws = Workspace::new();
    let mut sim_command = tool_command();
    sim_command.args(["sim", "--listen", "127.0.0.1:0", "--latency-ms", "1-5"]);
    let mut sim = Watched::spawn(sim_command);
    let line = sim.wait_for_line("simulator listening on", Duration::from_secs(30));
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    assert!(!url.ends_with(":0"), "the real port is printed: {url}");

    // Rehearse with the sample, signing with the simulator's default key as its help says.
    let csv = sample("users.csv");
    let users = users_of(&csv).len() as u64;
    let connection = ["--sdkappid", "1400000000", "--endpoint", &url];
    let run = |args: &[&str]| {
        Run::from_output(
            tool_command()
                .current_dir(ws.dir())
                .args(args)
                .arg(&csv)
                .args(connection)
                .env("PROFILE_IMPORT_SECRET_KEY", "sim-secret")
                .output()
                .unwrap(),
        )
    };
    let import = run(&[
        "import",
        "--no-progress",
        "--failures",
        "f.csv",
        "--journal",
        "j",
    ]);
    import.assert_code(0);
    assert_eq!(import.count("ok"), users, "{}", import.stderr);
    let verify = run(&["verify", "--diff", "d.csv"]);
    verify.assert_code(0);
    assert_eq!(verify.count("differences"), 0, "{}", verify.stderr);

    send_signal(sim.pid(), "-INT");
    let (code, _) = sim.wait(Duration::from_secs(20));
    let stats = Run {
        code,
        stdout: String::new(),
        stderr: sim.stderr(),
    };
    stats.assert_code(0);
    // What it saw: one portrait_set per user, each applied.
    assert_eq!(stats.count("applied"), users, "{}", stats.stderr);
    assert!(
        stats.stderr.contains(&format!("portrait_set={users} ")),
        "{}",
        stats.stderr
    );
}
