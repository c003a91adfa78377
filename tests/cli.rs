//! The command line as a user meets it: option values checked by clap in every mode, JSON
//! summaries from every command that ends in one (and `state export` to stdout), what `-v`/`-vv` show, completions, the man
//! page, `--color`, `localhost` for the simulator, and help texts that agree with the program.
//!
//! Tests that need Chat run the real binary against an in-process simulator on a port-0
//! loopback listener, on a blocking thread so the simulator keeps being served.

use std::process::{Command, Stdio};

use serde_json::Value;

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::{exec, sample, tool_command, Run, Workspace};

const APP: u64 = 1_400_000_000;
const KEY: &str = "cli-test-key-7f3a";

/// A simulator with no rate limit, where every user exists.
async fn simulator() -> SimHandle {
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    SimHandle::start(config).await.expect("start the simulator")
}

/// The binary in `ws` with `args` and the connection to `sim`, in a clean environment.
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
        .env("XDG_CONFIG_HOME", ws.dir())
        .stdin(Stdio::null());
    command
}

fn json_file(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_str(&text).expect("the summary is JSON")
}

// ── 6. JSON summaries ──────────────────────────────────────────────────────────────────────

#[test]
fn a_dry_run_writes_its_summary_json_to_a_file_or_stdout() {
    let ws = Workspace::new();
    let input = sample("users-with-errors.csv");
    let run = ws.run([
        "import".as_ref(),
        input.as_os_str(),
        "--dry-run".as_ref(),
        "--failures".as_ref(),
        "f.csv".as_ref(),
        "--summary-json".as_ref(),
        "dry.json".as_ref(),
    ]);
    run.assert_code(3);
    let json = json_file(&ws.path("dry.json"));
    assert_eq!(json["command"], "import");
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["exit_code"], 3);
    assert_eq!(json["rows"], 19);
    assert_eq!(json["invalid"], 15);

    // `-`: the JSON is all stdout carries.
    let run = ws.run([
        "import".as_ref(),
        sample("users.csv").as_os_str(),
        "--dry-run".as_ref(),
        "--summary-json".as_ref(),
        "-".as_ref(),
    ]);
    run.assert_code(0);
    let json: Value = serde_json::from_str(&run.stdout).expect("stdout is the JSON summary");
    assert_eq!(
        (json["rows"].as_u64(), json["exit_code"].as_u64()),
        (Some(30), Some(0))
    );
    assert!(!ws.path("-").exists(), "no file named -");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_path_that_cannot_be_written_stops_the_run_before_it_reads_or_sends() {
    let sim = simulator().await;
    let ws = Workspace::new();
    std::fs::copy(sample("users.csv"), ws.path("users.csv")).unwrap();
    std::fs::create_dir(ws.path("a-folder")).unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["import", "users.csv", "--summary-json", "no/such/x.json"],
            "--summary-json no/such/x.json",
        ),
        (
            &["import", "users.csv", "--summary-json", "a-folder"],
            "--summary-json a-folder is a folder",
        ),
        (
            &[
                "import",
                "users.csv",
                "--dry-run",
                "--summary-json",
                "no/x.json",
            ],
            "--summary-json no/x.json",
        ),
        (
            &["verify", "users.csv", "--diff", "a-folder"],
            "--diff a-folder is a folder",
        ),
        (
            &["check-accounts", "users.csv", "--output", "no/m.csv"],
            "--output no/m.csv",
        ),
    ];
    for (args, message) in cases {
        let run = exec(tool(&ws, &sim, args)).await;
        run.assert_code(1);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    assert_eq!(sim.stats().requests, 0, "nothing was sent or read");
    assert_eq!(
        std::fs::read_dir(ws.dir()).unwrap().count(),
        2,
        "no file was left behind (users.csv and a-folder only)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_check_accounts_write_summary_json() {
    let sim = simulator().await;
    let ws = Workspace::new();
    std::fs::copy(sample("users.csv"), ws.path("users.csv")).unwrap();
    let import = exec(tool(
        &ws,
        &sim,
        &[
            "import",
            "users.csv",
            "--no-progress",
            "--state",
            "state.db",
        ],
    ))
    .await;
    import.assert_code(0);

    // `state export --output -` writes the CSV to stdout (it used to create a file named `-`).
    let export = ws.run(["state", "export", "state.db", "--output", "-"]);
    export.assert_code(0);
    assert!(
        export.stdout.starts_with("UserID,body_hash,accepted_at\n"),
        "{}",
        export.stdout
    );
    assert_eq!(export.stdout.lines().count(), 31, "{}", export.stdout);
    assert!(!ws.path("-").exists(), "a file named - was created");

    let verify = exec(tool(
        &ws,
        &sim,
        &["verify", "users.csv", "--summary-json", "verify.json"],
    ))
    .await;
    verify.assert_code(0);
    let json = json_file(&ws.path("verify.json"));
    assert_eq!(json["command"], "verify");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["users"], 30);
    assert_eq!(json["differences"], 0);
    assert!(json["values"].as_u64().unwrap() > 30, "{json}");

    let check = exec(tool(
        &ws,
        &sim,
        &["check-accounts", "users.csv", "--summary-json", "-"],
    ))
    .await;
    check.assert_code(0);
    let json: Value = serde_json::from_str(&check.stdout).expect("stdout is the JSON summary");
    assert_eq!(json["command"], "check-accounts");
    assert_eq!(json["users_checked"], 30);
    assert_eq!(json["not_imported"], 0);
    assert_eq!(json["exit_code"], 0);
    sim.shutdown();
}

// ── 7. option values ───────────────────────────────────────────────────────────────────────

#[test]
fn zero_and_negative_option_values_are_usage_errors_in_every_mode() {
    let ws = Workspace::new();
    ws.write("u.csv", "UserID,Nick\nu1,A\n");
    let cases: [&[&str]; 10] = [
        &["--rate", "0"],
        &["--rate", "-5"],
        &["--concurrency", "0"],
        &["--concurrency", "-1"],
        &["--timeout", "0"],
        &["--timeout", "-2.5"],
        &["--timeout", "nan"],
        &["--max-attempts", "0"],
        &["--progress-interval", "0"],
        &["--max-errors", "0"],
    ];
    for bad in cases {
        for mode in [
            &["--dry-run"][..],
            &["--sdkappid", "1", "--endpoint", "http://127.0.0.1:9"],
        ] {
            let mut args = vec!["import", "u.csv"];
            args.extend_from_slice(mode);
            args.extend_from_slice(bad);
            let run = ws.run(&args);
            assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("invalid value") && run.stderr.contains(bad[0]),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    for args in [
        &["verify", "u.csv", "--rate", "0"][..],
        &["verify", "u.csv", "--sample", "0"],
    ] {
        let run = ws.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
    // Nothing ran: no failure CSV, no journal.
    assert!(!ws.path("u.failures.csv").exists());
    assert!(!ws.path("u.journal").exists());
}

// ── 8. verbosity ───────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_flags_show_settings_and_bodies_then_every_row() {
    let sim = simulator().await;
    let ws = Workspace::new();
    std::fs::copy(sample("users.csv"), ws.path("users.csv")).unwrap();
    let import = |ws: &Workspace, extra: &[&str]| {
        let mut args = vec!["import", "users.csv", "--no-progress"];
        args.extend_from_slice(extra);
        let command = tool(ws, &sim, &args);
        let _ = std::fs::remove_file(ws.path("users.journal"));
        exec(command)
    };
    let quiet = import(&ws, &[]).await;
    quiet.assert_code(0);
    assert!(!quiet.stderr.contains("INFO"), "{}", quiet.stderr);

    let info = import(&ws, &["-v"]).await;
    info.assert_code(0);
    assert!(
        info.stderr.contains("sending to http://127.0.0.1:"),
        "{}",
        info.stderr
    );
    assert_eq!(
        info.stderr
            .matches("request body {\"From_Account\"")
            .count(),
        3,
        "{}",
        info.stderr
    );
    assert!(!info.stderr.contains("DEBUG"), "{}", info.stderr);

    let debug = import(&ws, &["-vv"]).await;
    debug.assert_code(0);
    assert_eq!(
        debug.stderr.matches("ok after 1 request").count(),
        30,
        "{}",
        debug.stderr
    );
    sim.shutdown();
}

#[test]
fn the_simulator_refuses_fault_shares_outside_0_to_1() {
    let ws = Workspace::new();
    for share in ["1.5", "nan", "inf", "x"] {
        let run = ws.run(["sim", "--fail-reset", share, "--listen", "127.0.0.1:0"]);
        run.assert_code(2);
        assert!(
            run.stderr.contains("--fail-reset"),
            "{share}: {}",
            run.stderr
        );
    }
}

#[test]
fn show_requests_and_plan_belong_to_the_dry_run() {
    let ws = Workspace::new();
    ws.write("u.csv", "UserID,Nick\nu1,A\n");
    // In a real import they used to be accepted: --show-requests silently ignored, and --plan
    // ran a real --changes-only import where the user asked for its plan.
    for asked in [
        &["--show-requests", "2"][..],
        &["--changes-only", "--plan", "p.csv"],
    ] {
        let mut args = vec!["import", "u.csv", "--sdkappid", "1"];
        args.extend_from_slice(asked);
        let run = ws.run(args);
        run.assert_code(2);
        assert!(
            run.stderr.contains("--dry-run"),
            "{asked:?}: {}",
            run.stderr
        );
    }
}

// ── 17. completions, man page, colour ──────────────────────────────────────────────────────

#[test]
fn completions_for_each_shell_and_a_man_page() {
    let ws = Workspace::new();
    for (shell, marker) in [
        ("bash", "complete -F _profile__import"),
        ("zsh", "#compdef profile-import"),
        ("fish", "complete -c profile-import"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = ws.run(["completions", shell]);
        run.assert_code(0);
        assert!(
            run.stdout.contains(marker),
            "{shell}: {}",
            &run.stdout[..run.stdout.len().min(300)]
        );
        assert!(
            run.stdout.contains("check-accounts"),
            "{shell} completes subcommands"
        );
    }
    ws.run(["completions", "tcsh"]).assert_code(2);

    let man = ws.run(["man"]);
    man.assert_code(0);
    assert!(
        man.stdout.contains(".TH profile-import 1"),
        "{}",
        &man.stdout[..300]
    );
    assert!(
        man.stdout.contains("Bulk\\-import user profiles"),
        "{}",
        &man.stdout[..600]
    );
    assert!(
        man.stdout.contains(".SH \"EXIT STATUS\""),
        "the main page has the exit codes"
    );
    // The pages the main one lists under SUBCOMMANDS exist too.
    let import = ws.run(["man", "import"]);
    import.assert_code(0);
    assert!(
        import.stdout.contains(".TH profile-import-import 1"),
        "{}",
        &import.stdout[..300]
    );
    assert!(
        import.stdout.contains("\\-\\-dry\\-run"),
        "{}",
        import.stdout
    );
    ws.run(["man", "nonsense"]).assert_code(2);
}

/// The page's own sections, where man readers look (clap_mangen put the examples, exit codes
/// and config file under one EXTRA heading), with the lines of tables and commands kept.
#[test]
fn man_pages_have_exit_status_environment_files_and_examples_sections() {
    let ws = Workspace::new();
    let sections = |run: &Run| -> Vec<String> {
        run.stdout
            .lines()
            .filter_map(|line| line.strip_prefix(".SH "))
            .map(|title| title.trim_matches('"').to_string())
            .collect()
    };
    for (page, expected) in [
        (
            vec!["man"],
            &[
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "OPTIONS",
                "SUBCOMMANDS",
                "EXIT STATUS",
                "ENVIRONMENT",
                "FILES",
                "EXAMPLES",
                "VERSION",
            ][..],
        ),
        (
            vec!["man", "import"],
            &[
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "OPTIONS",
                "EXIT STATUS",
                "ENVIRONMENT",
                "FILES",
                "EXAMPLES",
                "SEE ALSO",
            ][..],
        ),
    ] {
        let run = ws.run(&page);
        run.assert_code(0);
        assert_eq!(sections(&run), expected, "{page:?}");
        assert!(!run.stdout.contains("EXTRA"), "{page:?}");
    }
    let import = ws.run(["man", "import"]).stdout;
    for text in [
        ".SH \"EXIT STATUS\"\n.nf\n0    every row valid (dry run) or accepted by Chat\n",
        "PROFILE_IMPORT_SECRET_KEY  the app",
        "/etc/profile\\-import/config.toml\n",
        ".SH EXAMPLES\n.nf\n# Validate a file without sending anything",
        ".SH \"SEE ALSO\"\n.nf\nprofile\\-import(1)\n",
    ] {
        assert!(import.contains(text), "{text:?} not in:\n{import}");
    }
    let verify = ws.run(["man", "verify"]).stdout;
    assert!(
        verify.contains("3    some values differ, accounts are missing"),
        "{verify}"
    );
}

#[test]
fn color_always_colours_logs_even_off_a_terminal_and_never_overrides_it() {
    let ws = Workspace::new();
    ws.write("u.csv", "UserID,Level\nu1,x\n");
    let colour = "\u{1b}[";
    // The harness sets NO_COLOR=1 and stderr is a pipe: auto is plain.
    let auto = ws.run(["import", "u.csv", "--dry-run"]);
    auto.assert_code(3);
    assert!(auto.stderr.contains("WARN"), "{}", auto.stderr);
    assert!(!auto.stderr.contains(colour), "{:?}", auto.stderr);
    let always = ws.run(["import", "u.csv", "--dry-run", "--color", "always"]);
    always.assert_code(3);
    assert!(always.stderr.contains(colour), "{:?}", always.stderr);
    let never = ws.run(["--color", "never", "import", "u.csv", "--dry-run"]);
    never.assert_code(3);
    assert!(!never.stderr.contains(colour), "{:?}", never.stderr);
}

// ── 14. the simulator on localhost ─────────────────────────────────────────────────────────

#[test]
fn sim_listens_on_localhost() {
    use std::io::{BufRead, BufReader};
    let mut child = tool_command()
        .args(["sim", "--listen", "localhost:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the simulator");
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.starts_with("simulator listening on http://127.0.0.1:"),
        "{first}"
    );
}

/// Every test that starts the binary keeps the runner's `PROFILE_IMPORT_*` settings (a
/// developer's real key or SDKAppID) away from it: it starts from `util::tool_command`, which
/// removes them, or its own helper clears the environment or removes them. Checked on the test
/// sources: a helper that starts `bin()` any other way fails here (as `run_with_stdin` and this
/// file's simulator test did before they used `tool_command`).
#[test]
fn every_test_that_starts_the_binary_scrubs_profile_import_settings() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    for dir in [tests.clone(), tests.join("util")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    // `bin()` as an argument (`Command::new(bin())`, `.arg(bin())`), spelt so that this
    // function does not name it.
    let call = format!("bin(){}", ')');
    let mut unscrubbed = Vec::new();
    let mut starts = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices(&call) {
            // The function around the call: from its `fn` line to the next item.
            let start = text[..at]
                .rfind("\nfn ")
                .or(text[..at].rfind("fn "))
                .unwrap_or(0);
            let end = text[at..].find("\n}\n").map_or(text.len(), |end| at + end);
            let function = &text[start..end];
            starts += 1;
            let scrubbed = function.contains(".env_clear()")
                || function.contains("starts_with(\"PROFILE_IMPORT_\")");
            if !scrubbed {
                let line = text[..at].lines().count();
                unscrubbed.push(format!("{}:{line}", path.display()));
            }
        }
    }
    assert!(
        starts >= 5,
        "found only {starts} places that start the binary"
    );
    assert!(
        unscrubbed.is_empty(),
        "start the binary from util::tool_command (or scrub PROFILE_IMPORT_*): {unscrubbed:?}"
    );
}

// ── 19. help texts agree with the program ──────────────────────────────────────────────────

#[test]
fn top_level_help_has_examples_config_locations_and_exit_codes() {
    let ws = Workspace::new();
    let run = ws.run(["--help"]);
    run.assert_code(0);
    for expected in [
        "Examples:",
        "profile-import import users.csv --dry-run",
        "profile-import completions bash",
        "$XDG_CONFIG_HOME/profile-import/config.toml",
        "/etc/profile-import/config.toml",
        "--color <WHEN>",
        "Exit codes:",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            run.stdout
        );
    }
}

/// Every `profile-import import …` example in `import --help` parses, and the ones that
/// connect name a data center (one used to fail with "missing settings: the data center").
#[test]
fn every_import_help_example_names_its_data_center() {
    let ws = Workspace::new();
    let help = ws.run(["import", "--help"]).stdout;
    let examples: Vec<&str> = help
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("profile-import import "))
        .collect();
    assert!(examples.len() >= 8, "{help}");
    for example in examples {
        let connects = !example.contains("--dry-run");
        let located = ["--region", "--endpoint", "--config"]
            .iter()
            .any(|flag| example.contains(flag));
        assert!(
            !connects || located,
            "this example has no data center: {example}"
        );
    }
}

#[test]
fn check_accounts_offers_only_options_it_uses() {
    let ws = Workspace::new();
    let help = ws.run(["check-accounts", "--help"]);
    help.assert_code(0);
    for dead in ["--failures", "--empty", "--strict-location"] {
        assert!(
            !help.stdout.contains(dead),
            "{dead} is offered:\n{}",
            help.stdout
        );
    }
    for live in [
        "--mapping",
        "--user-column",
        "--delimiter",
        "--ignore",
        "--relaxed-user-id",
        "--output",
        "--summary-json",
    ] {
        assert!(
            help.stdout.contains(live),
            "{live} is missing:\n{}",
            help.stdout
        );
    }
    ws.write("u.csv", "UserID\nu1\n");
    let run = ws.run(["check-accounts", "u.csv", "--failures", "x.csv"]);
    run.assert_code(2);
}
