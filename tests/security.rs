//! Secrets: a sentinel key and a sentinel UserSig must never appear in anything the tool
//! prints or writes, at any verbosity; every file it writes is private (mode 0600); a cell's
//! control characters reach the logs escaped, never raw.

use std::path::Path;
use std::process::Stdio;

use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::tool_command;

const APP: u64 = 1_400_000_000;
const SENTINEL_KEY: &str = "SENTINEL-KEY-7f3a9c";
const SENTINEL_SIG: &str = "SENTINEL-USERSIG-41d2e8";

fn write_input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("users.csv");
    let mut text = String::from("UserID,Nick,Level\n");
    for i in 0..60 {
        let level = if i % 10 == 3 {
            "bad".to_string()
        } else {
            i.to_string()
        };
        text.push_str(&format!("user_{i:03},Nick {i},{level}\n"));
    }
    text.push_str("ghost_1,Nobody,1\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary at trace level; returns stdout + stderr.
fn run(dir: &Path, input: &Path, sim: &SimHandle, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = tool_command()
        .arg("-vvv")
        .arg("import")
        .arg(input)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .args(["--no-progress", "--max-attempts", "2"])
        .arg("--summary-json")
        .arg(dir.join("summary.json"))
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// Every file in `dir` except the input: contents must hold no secret, mode must be 0600.
fn check_files(dir: &Path, input: &Path, secrets: &[&str]) -> usize {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == input {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{} contains a secret",
                path.display()
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
        }
        checked += 1;
    }
    checked
}

fn assert_no_usersig_value(output: &str) {
    for (i, _) in output.match_indices("usersig=") {
        let after = &output[i + "usersig=".len()..];
        assert!(
            after.starts_with("<redacted>") || after.starts_with('&') || after.is_empty(),
            "a UserSig value is printed: {}",
            &output[i..(i + 60).min(output.len())]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_key_never_appears_in_logs_errors_summaries_or_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let mut config = SimConfig::new(APP, "administrator", SecretKey::new(SENTINEL_KEY));
    config.accounts = Some((0..60).map(|i| format!("user_{i:03}")).collect());
    let sim = SimHandle::start(config).await.unwrap();
    let (code, output) = run(
        dir.path(),
        &input,
        &sim,
        &[("PROFILE_IMPORT_SECRET_KEY", SENTINEL_KEY)],
    );
    assert_eq!(code, Some(3), "{output}");
    assert!(sim.stats().count("0") > 0, "the run really sent rows");
    assert!(!output.contains(SENTINEL_KEY), "the key is printed");
    assert_no_usersig_value(&output);
    // The failure CSV, the journal and the summary JSON exist and are clean.
    assert!(check_files(dir.path(), &input, &[SENTINEL_KEY, "usersig="]) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_usersig_never_appears_even_when_chat_rejects_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let sim = SimHandle::start(SimConfig::new(APP, "administrator", SecretKey::new("k")))
        .await
        .unwrap();
    let (code, output) = run(
        dir.path(),
        &input,
        &sim,
        &[("PROFILE_IMPORT_USERSIG", SENTINEL_SIG)],
    );
    assert_eq!(code, Some(1), "an invalid UserSig stops the job: {output}");
    assert!(output.contains("70003"), "{output}");
    assert!(!output.contains(SENTINEL_SIG), "the UserSig is printed");
    assert_no_usersig_value(&output);
    check_files(dir.path(), &input, &[SENTINEL_SIG, "usersig="]);
}

/// What `usersig` is for: one line on stdout that Chat accepts as the admin's UserSig for
/// the configured app, valid for the default day; the key appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usersig_command_prints_one_usersig_that_chat_accepts_and_never_the_key() {
    let output = tool_command()
        .args(["usersig", "--sdkappid", &APP.to_string()])
        .env("PROFILE_IMPORT_SECRET_KEY", SENTINEL_KEY)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let sig = stdout.trim();
    assert!(!stdout.contains(SENTINEL_KEY) && !stderr.contains(SENTINEL_KEY));
    assert!(!stderr.contains(sig), "the UserSig is on stderr too");
    let doc = profile_import::chat::usersig::decode(sig).unwrap();
    assert_eq!(
        (doc.identifier.as_str(), doc.sdkappid, doc.expire),
        ("administrator", APP, 86_400)
    );

    // A simulator holding the same key accepts it for a real call.
    let sim = SimHandle::start(SimConfig::new(
        APP,
        "administrator",
        SecretKey::new(SENTINEL_KEY),
    ))
    .await
    .unwrap();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/v4/profile/portrait_set?sdkappid={APP}&identifier=administrator&usersig={sig}&random=7&contenttype=json",
            sim.url()
        ))
        .body(r#"{"From_Account":"user_1","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"n"}]}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["ErrorCode"], 0, "{answer}");
    assert_eq!(sim.profiles()["user_1"]["Tag_Profile_IM_Nick"], "n");
}

// ── control characters in cells ───────────────────────────────────────────────────────────

/// A UserID cell that tries to start a log line of its own, and one with NUL, CR, DEL and a C1
/// CSI; beside it, the same file with harmless bad UserIDs.
fn write_forged_and_plain(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let forged = dir.join("forged.csv");
    std::fs::write(
        &forged,
        "UserID,Nick\n\"u1\n WARN fake line\",A\n\"u2\0\r\u{7f}\u{9b}2J\",B\nok_1,C\n",
    )
    .unwrap();
    let plain = dir.join("plain.csv");
    std::fs::write(&plain, "UserID,Nick\nbad user 1,A\nbad user 2,B\nok_1,C\n").unwrap();
    (forged, plain)
}

/// Every control character in `stderr` but the line ends.
fn raw_controls(stderr: &[u8]) -> Vec<char> {
    String::from_utf8_lossy(stderr)
        .chars()
        .filter(|&c| c.is_control() && c != '\n')
        .collect()
}

fn dry_run_stderr(dir: &Path, input: &Path, log_format: &str) -> Vec<u8> {
    let output = tool_command()
        .current_dir(dir)
        .arg("import")
        .arg(input)
        .args(["--dry-run", "--log-format", log_format])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stderr
}

#[test]
fn a_cell_can_neither_forge_a_log_line_nor_send_control_characters_to_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (forged, plain) = write_forged_and_plain(dir.path());

    let text = dry_run_stderr(dir.path(), &forged, "text");
    let shown = String::from_utf8_lossy(&text);
    assert_eq!(raw_controls(&text), [] as [char; 0], "{shown:?}");
    let expected_lines = dry_run_stderr(dir.path(), &plain, "text")
        .split(|&b| b == b'\n')
        .count();
    // The cells' line breaks inside quotes also draw the stray-quote warning (lines 3 and 5
    // look like rows): two more lines, which name lines only, never the cells.
    let stray = |line: &&str| line.contains("a quoted field opened on line");
    assert_eq!(shown.lines().filter(stray).count(), 2, "{shown}");
    assert_eq!(shown.split('\n').count(), expected_lines + 2, "{shown}");
    let warnings: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("WARN") && !stray(l))
        .collect();
    assert_eq!(warnings.len(), 2, "{shown}");
    assert!(
        warnings[0].starts_with(" WARN line 2: ") && warnings[0].contains(r"u1\n WARN fake line"),
        "{shown}"
    );
    assert!(warnings[1].contains(r#""u2\0\r\u{7f}\u{9b}2J""#), "{shown}");

    // JSON lines: one object a line, the cell exact once decoded, no raw DEL or C1 either.
    let json = dry_run_stderr(dir.path(), &forged, "json");
    assert_eq!(raw_controls(&json), [] as [char; 0]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each stderr line is JSON"))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter(|line| line["level"] == "WARN")
        .map(|line| line["message"].as_str().unwrap())
        .filter(|message| !stray(message))
        .collect();
    assert_eq!(messages.len(), 2, "{lines:?}");
    assert!(
        messages[0].contains("\"u1\n WARN fake line\""),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("\"u2\0\r\u{7f}\u{9b}2J\""),
        "{messages:?}"
    );
    assert_eq!(
        lines.len(),
        5,
        "two warnings, two stray-quote warnings and the summary: {lines:?}"
    );
}

/// The import logs rejected rows through another path (grouped row warnings): escaped too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_logs_a_forged_cell_escaped_too() {
    let dir = tempfile::tempdir().unwrap();
    let (forged, _) = write_forged_and_plain(dir.path());
    let sim = SimHandle::start(SimConfig::new(APP, "administrator", SecretKey::new("k")))
        .await
        .unwrap();
    let mut command = tool_command();
    command
        .current_dir(dir.path())
        .args(["-vv", "import"])
        .arg(&forged)
        .args(["--sdkappid", &APP.to_string(), "--endpoint", &sim.url()])
        .arg("--no-progress")
        .env("PROFILE_IMPORT_SECRET_KEY", "k")
        .stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{shown}");
    assert_eq!(raw_controls(&output.stderr), [] as [char; 0], "{shown:?}");
    assert!(
        !shown.lines().any(|line| line.starts_with(" WARN fake")),
        "{shown}"
    );
    assert!(shown.contains(r"u1\n WARN fake line"), "{shown}");
}

/// A fatal error that quotes a header cell (an unknown column name) escapes it too, and keeps
/// its own line breaks.
#[test]
fn an_error_quoting_a_header_cell_escapes_its_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("h.csv");
    std::fs::write(&input, "UserID,\"Ni\u{1b}[2Jck\u{7f}\"\nu1,A\n").unwrap();
    let output = tool_command()
        .current_dir(dir.path())
        .arg("import")
        .arg(&input)
        .arg("--dry-run")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert_eq!(raw_controls(&output.stderr), [] as [char; 0], "{shown:?}");
    assert!(
        shown.contains(r#""Ni\u{1b}[2Jck\u{7f}" is not a profile tag"#),
        "{shown}"
    );
    assert!(
        shown.lines().count() > 3,
        "the list of accepted names: {shown}"
    );
}
