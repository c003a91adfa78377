//! Input a user actually has: a near-miss header name, a file split by another delimiter,
//! columns to drop without a mapping file, a whole file in the wrong encoding, a gzip export,
//! standard input, an empty export, Location values over the older 16-byte limit, and config
//! files found in their usual places with key files beside them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use profile_import::chat::usersig;
use profile_import::chat::usersig::SecretKey;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::{bin, read_csv_bytes, read_failures, sample, tool_command, Run, Workspace};

/// Runs the binary in `ws` with `stdin` piped in.
fn run_with_stdin(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut child = tool_command()
        .current_dir(dir)
        .args(args)
        .env("XDG_CONFIG_HOME", dir)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut pipe = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn dry_run(ws: &Workspace, input: &str, extra: &[&str]) -> Run {
    let mut args = vec!["import", input, "--dry-run", "--failures", "f.csv"];
    args.extend_from_slice(extra);
    ws.run(args)
}

// ── 11. header near-misses, delimiters, --ignore ───────────────────────────────────────────

#[test]
fn a_near_miss_header_gets_a_suggestion() {
    let ws = Workspace::new();
    ws.write(
        "u.csv",
        "UserID,Nickname,Gendre,Email\nu1,A,m,a@example.com\n",
    );
    let run = dry_run(&ws, "u.csv", &[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains(
            "column 2 \"Nickname\": \"Nickname\" is not a profile tag; did you mean Nick?"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did you mean Gender?"),
        "{}",
        run.stderr
    );
    // An unrelated name gets no guess.
    let email = run
        .stderr
        .lines()
        .find(|l| l.contains("\"Email\""))
        .unwrap();
    assert!(!email.contains("did you mean"), "{email}");
}

#[test]
fn a_semicolon_or_tab_file_read_with_commas_names_its_delimiter() {
    let ws = Workspace::new();
    ws.write("semi.csv", "UserID;Nick;Level\nu1;A;1\n");
    let run = dry_run(&ws, "semi.csv", &[]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("looks ';'-separated; pass --delimiter ';'"),
        "{}",
        run.stderr
    );
    ws.write("tabs.csv", "UserID\tNick\tLevel\nu1\tA\t1\n");
    let run = dry_run(&ws, "tabs.csv", &[]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("looks tab-separated; pass --delimiter tab"),
        "{}",
        run.stderr
    );
    // The advice works.
    dry_run(&ws, "tabs.csv", &["--delimiter", "tab"]).assert_code(0);
}

#[test]
fn ignore_drops_columns_without_a_mapping_file() {
    let ws = Workspace::new();
    ws.write(
        "u.csv",
        "UserID,Nick,email,created_at\nu1,A,a@example.com,2024-01-01\n",
    );
    dry_run(&ws, "u.csv", &[]).assert_code(1);
    let run = dry_run(
        &ws,
        "u.csv",
        &[
            "--ignore",
            "Email",
            "--ignore",
            "created_at",
            "--show-requests",
            "1",
        ],
    );
    run.assert_code(0);
    let bodies = run.requests();
    assert_eq!(
        bodies[0],
        serde_json::json!({"From_Account": "u1", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "A"}]})
    );
    // A name that matches no column is worth a warning (a typo would otherwise pass unseen).
    let run = dry_run(
        &ws,
        "u.csv",
        &[
            "--ignore",
            "email",
            "--ignore",
            "created_at",
            "--ignore",
            "phone",
        ],
    );
    run.assert_code(0);
    assert!(
        run.stderr.contains("no column named \"phone\" to ignore"),
        "{}",
        run.stderr
    );
}

// ── 12. a whole file in another encoding ───────────────────────────────────────────────────

/// A GBK export: Chinese names in GBK bytes, plus ASCII-only rows that used to pass as valid.
fn gbk_file() -> Vec<u8> {
    // 张三 李四 王五 赵六 钱七 孙八 周九 吴十 in GBK.
    let names: [&[u8]; 8] = [
        b"\xd5\xc5\xc8\xfd",
        b"\xc0\xee\xcb\xc4",
        b"\xcd\xf5\xce\xe5",
        b"\xd5\xd4\xc1\xf9",
        b"\xc7\xae\xc6\xdf",
        b"\xcb\xef\xb0\xcb",
        b"\xd6\xdc\xbe\xc5",
        b"\xce\xe2\xca\xae",
    ];
    let mut out = b"UserID,Nick,Level\n".to_vec();
    for (i, name) in names.iter().enumerate() {
        out.extend_from_slice(format!("cn_{i},").as_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(b",1\n");
        out.extend_from_slice(format!("en_{i},Alice,2\n").as_bytes());
    }
    out
}

/// A Latin-1 export: accented European names, and ASCII-only rows.
fn latin1_file() -> Vec<u8> {
    let names: [&[u8]; 6] = [
        b"M\xfcller",
        b"Jos\xe9",
        b"Caf\xe9 Cr\xe8me",
        b"Fran\xe7ois",
        b"S\xf8ren",
        b"Zo\xeb",
    ];
    let mut out = b"UserID,Nick\n".to_vec();
    for (i, name) in names.iter().enumerate() {
        out.extend_from_slice(format!("eu_{i},").as_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(b"\n");
        out.extend_from_slice(format!("en_{i},Bob\n").as_bytes());
    }
    out
}

#[test]
fn a_gbk_or_latin1_file_is_refused_as_a_whole_with_one_message() {
    for (name, bytes, looks_like) in [
        ("gbk.csv", gbk_file(), "it looks like GBK"),
        (
            "latin1.csv",
            latin1_file(),
            "it looks like Latin-1 (ISO-8859-1) or Windows-1252",
        ),
    ] {
        let ws = Workspace::new();
        ws.write(name, &bytes);
        let run = dry_run(&ws, name, &[]);
        run.assert_code(1);
        assert!(
            run.stderr.contains("is not UTF-8"),
            "{name}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(looks_like), "{name}: {}", run.stderr);
        assert!(run.stderr.contains("iconv -f"), "{name}: {}", run.stderr);
        // One message, not one warning per cell, and no row was judged.
        assert!(!run.stderr.contains("WARN"), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("rows read"), "{name}: {}", run.stderr);
        assert!(
            !ws.path("f.csv").exists(),
            "{name}: a failure CSV was written"
        );
    }
}

#[test]
fn a_utf8_file_with_a_few_bad_cells_is_still_read_row_by_row() {
    // Six Latin-1 cells among UTF-8 CJK names: the file is UTF-8; those rows are damaged.
    let ws = Workspace::new();
    let mut bytes = b"UserID,Nick\n".to_vec();
    for i in 0..6 {
        bytes.extend_from_slice(format!("zh_{i},\u{5f20}\u{4e09}\n").as_bytes());
    }
    let latin = latin1_file();
    bytes.extend_from_slice(&latin[latin.iter().position(|&b| b == b'\n').unwrap() + 1..]);
    ws.write("mixed.csv", &bytes);
    let run = dry_run(&ws, "mixed.csv", &[]);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 18);
    assert_eq!(run.count("invalid"), 6);
    assert_eq!(run.count("valid"), 12);
    // The failure CSV keeps the Latin-1 bytes as read, so read it as bytes.
    let records = read_csv_bytes(&ws.path("f.csv"));
    assert_eq!(records.len(), 7);
    for record in &records[1..] {
        assert_eq!(record[2], b"bad_utf8", "{record:?}");
    }
}

// ── 13. gzip and standard input ────────────────────────────────────────────────────────────

#[test]
fn a_gzip_file_is_read_like_the_plain_one() {
    let ws = Workspace::new();
    let plain = std::fs::read(sample("users-with-errors.csv")).unwrap();
    ws.write("users.csv", &plain);
    ws.write("users.csv.gz", gzip(&plain));
    let one = ws.run(["import", "users.csv", "--dry-run", "--show-requests", "100"]);
    let two = ws.run([
        "import",
        "users.csv.gz",
        "--dry-run",
        "--show-requests",
        "100",
        "--failures",
        "gz.failures.csv",
    ]);
    one.assert_code(3);
    two.assert_code(3);
    assert_eq!(one.stdout, two.stdout);
    for label in ["rows read", "valid", "invalid", "skipped"] {
        assert_eq!(one.count(label), two.count(label), "{label}");
    }
    assert_eq!(
        std::fs::read(ws.path("users.dry-run-failures.csv")).unwrap(),
        std::fs::read(ws.path("gz.failures.csv")).unwrap()
    );
    // Outputs are named after what the archive holds: users.csv.gz →
    // users.dry-run-failures.csv.
    std::fs::remove_file(ws.path("users.dry-run-failures.csv")).unwrap();
    ws.run(["import", "users.csv.gz", "--dry-run"])
        .assert_code(3);
    assert!(ws.path("users.dry-run-failures.csv").exists());
}

#[test]
fn a_large_gzip_file_with_repeated_users_is_read_in_one_part() {
    // Over the 4 MiB two-part threshold once decompressed, with 50,000 repeated users (so the
    // exact recount reads the file a second time).
    let ws = Workspace::new();
    let mut csv = String::from("UserID,Nick,Level\n");
    for i in 0..150_000 {
        csv.push_str(&format!(
            "user_{:06},Nick number {i},{}\n",
            i % 100_000,
            i % 50
        ));
    }
    assert!(csv.len() > 4 << 20);
    ws.write("big.csv.gz", gzip(csv.as_bytes()));
    let run = ws.run(["import", "big.csv.gz", "--dry-run", "-vv"]);
    run.assert_code(0);
    // Each user once: the 50,000 repeated users' first rows merge into their second.
    assert_eq!(run.count("valid"), 100_000);
    assert_eq!(run.count("superseded"), 50_000);
    assert_eq!(run.count("duplicate users"), 50_000);
    assert!(!run.stderr.contains("read in two parts"), "{}", run.stderr);
}

#[test]
fn standard_input_works_for_a_dry_run() {
    let ws = Workspace::new();
    let bytes = std::fs::read(sample("users-with-errors.csv")).unwrap();
    let run = run_with_stdin(ws.dir(), &["import", "-", "--dry-run"], &[], &bytes);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 19);
    assert_eq!(run.count("invalid"), 15);
    // The failure CSV goes to the working folder, since standard input has no folder.
    let (_, rows) = read_failures(&ws.path("stdin.dry-run-failures.csv"));
    assert_eq!(rows.len(), 15);
    // A gzip stream too.
    let run = run_with_stdin(
        ws.dir(),
        &["import", "-", "--dry-run", "--failures", "z.csv"],
        &[],
        &gzip(&bytes),
    );
    run.assert_code(3);
    assert_eq!(run.count("invalid"), 15);
}

#[test]
fn standard_input_is_refused_with_a_reason_where_it_cannot_work() {
    let ws = Workspace::new();
    let bytes = std::fs::read(sample("users.csv")).unwrap();
    let env = [("PROFILE_IMPORT_SECRET_KEY", "k")];
    let connect = ["--sdkappid", "1", "--endpoint", "http://127.0.0.1:9"];
    let cases: [(Vec<&str>, &str); 4] = [
        (
            [&["import", "-"][..], &connect].concat(),
            "imported only with --state",
        ),
        (
            [
                &["import", "-", "--state", "s.db", "--resume"][..],
                &connect,
            ]
            .concat(),
            "--resume needs an input file",
        ),
        (
            [&["verify", "-"][..], &connect].concat(),
            "give this command a file",
        ),
        (
            [&["check-accounts", "-"][..], &connect].concat(),
            "give this command a file",
        ),
    ];
    for (args, why) in cases {
        let run = run_with_stdin(ws.dir(), &args, &env, &bytes);
        run.assert_code(1);
        assert!(run.stderr.contains(why), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("Illegal seek"), "{}", run.stderr);
        // The same reasons for a pipe given by name.
        let named: Vec<&str> = args
            .iter()
            .map(|&arg| if arg == "-" { "/dev/stdin" } else { arg })
            .collect();
        let run = run_with_stdin(ws.dir(), &named, &env, &bytes);
        run.assert_code(1);
        assert!(run.stderr.contains(why), "{named:?}: {}", run.stderr);
        assert!(run.stderr.contains("/dev/stdin"), "{}", run.stderr);
    }
}

/// What can be read once from start to end works where `-` does: `/dev/stdin` fed by a pipe,
/// a named pipe (as `<(zcat users.csv.gz)` is), even `/dev/stdin` redirected from a file. The
/// outputs are named as `-`'s, in the working folder (never beside /dev/stdin, in /dev).
#[test]
fn a_pipe_given_by_name_is_read_as_standard_input_is() {
    let ws = Workspace::new();
    let bytes = std::fs::read(sample("users-with-errors.csv")).unwrap();
    let failures = ws.path("stdin.dry-run-failures.csv");
    let check = |run: &Run| {
        run.assert_code(3);
        assert_eq!(run.count("rows read"), 19, "{}", run.stderr);
        assert_eq!(run.count("invalid"), 15);
        let (_, rows) = read_failures(&failures);
        assert_eq!(rows.len(), 15);
        std::fs::remove_file(&failures).unwrap();
    };
    check(&run_with_stdin(
        ws.dir(),
        &["import", "/dev/stdin", "--dry-run"],
        &[],
        &bytes,
    ));

    // A named pipe, with a writer that opens it once the tool does; gzip through it too.
    let fifo = ws.path("export.pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for data in [bytes.clone(), gzip(&bytes)] {
        let path = fifo.clone();
        let writer = std::thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            // The old binary hung up without reading; that is its failure, not the writer's.
            let _ = pipe.write_all(&data);
        });
        let fifo = fifo.to_str().unwrap();
        check(&run_with_stdin(
            ws.dir(),
            &["import", fifo, "--dry-run"],
            &[],
            &[],
        ));
        writer.join().unwrap();
    }

    // /dev/stdin redirected from a file is that file, under /dev: outputs still go here.
    let output = crate::util::tool_command()
        .current_dir(ws.dir())
        .args(["import", "/dev/stdin", "--dry-run"])
        .stdin(std::fs::File::open(sample("users-with-errors.csv")).unwrap())
        .output()
        .unwrap();
    let run = Run::from_output(output);
    check(&run);
    assert!(!Path::new("/dev/stdin.dry-run-failures.csv").exists());
}

/// The plan of `--dry-run --changes-only` over `-` or a pipe goes to the working folder as
/// `stdin.plan.csv` (it was written beside the temporary copy, and removed with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_of_standard_input_or_a_pipe_is_kept_in_the_working_folder() {
    const KEY: &str = "plan-stdin-key";
    let mut config = SimConfig::new(1_400_000_000, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    let sim = SimHandle::start(config).await.unwrap();
    let bytes = std::fs::read(sample("users.csv")).unwrap();
    for input in ["-", "/dev/stdin"] {
        let ws = Workspace::new();
        let (dir, bytes, url) = (ws.dir().to_path_buf(), bytes.clone(), sim.url());
        let run = tokio::task::spawn_blocking(move || {
            run_with_stdin(
                &dir,
                &[
                    "import",
                    input,
                    "--dry-run",
                    "--changes-only",
                    "--sdkappid",
                    "1400000000",
                    "--endpoint",
                    &url,
                ],
                &[("PROFILE_IMPORT_SECRET_KEY", KEY)],
                &bytes,
            )
        })
        .await
        .unwrap();
        run.assert_code(0);
        let plan = ws.path("stdin.plan.csv");
        assert!(plan.exists(), "{input}: {}", run.stderr);
        assert!(
            run.stderr.contains("plan CSV         stdin.plan.csv"),
            "{}",
            run.stderr
        );
        // 30 users, every one to be created or updated: their values are in the plan.
        assert!(read_csv_bytes(&plan).len() > 30, "{input}");
    }
    sim.shutdown();
}

#[test]
fn a_directory_as_input_is_called_a_directory() {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path("exports")).unwrap();
    let connect = ["--sdkappid", "1", "--endpoint", "http://127.0.0.1:9"];
    for args in [
        vec!["import", "exports", "--dry-run"],
        [&["verify", "exports"][..], &connect].concat(),
    ] {
        let run =
            crate::util::run_in_with_env(ws.dir(), &args, &[("PROFILE_IMPORT_SECRET_KEY", "k")]);
        run.assert_code(1);
        assert!(
            run.stderr
                .contains("exports is a directory: give the path of a CSV file"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("pipe"), "{}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_input_imports_with_a_state_and_a_rerun_sends_nothing() {
    const KEY: &str = "stdin-test-key";
    let mut config = SimConfig::new(1_400_000_000, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    let sim = SimHandle::start(config).await.unwrap();
    let ws = Workspace::new();
    let bytes = std::fs::read(sample("users.csv")).unwrap();
    let url = sim.url();
    let import = |ws_dir: std::path::PathBuf, bytes: Vec<u8>, url: String| {
        tokio::task::spawn_blocking(move || {
            run_with_stdin(
                &ws_dir,
                &[
                    "import",
                    "-",
                    "--state",
                    "state.db",
                    "--no-progress",
                    "--sdkappid",
                    "1400000000",
                    "--endpoint",
                    &url,
                ],
                &[("PROFILE_IMPORT_SECRET_KEY", KEY)],
                &bytes,
            )
        })
    };
    let first = import(ws.dir().to_path_buf(), bytes.clone(), url.clone())
        .await
        .unwrap();
    first.assert_code(0);
    assert_eq!(first.count("ok"), 30);
    let second = import(ws.dir().to_path_buf(), bytes, url).await.unwrap();
    second.assert_code(0);
    assert_eq!(second.count("unchanged"), 30);
    assert_eq!(second.count("ok"), 0);
    assert_eq!(sim.profiles().len(), 30);
    // No journal is left behind for standard input.
    let leftovers: Vec<String> = std::fs::read_dir(ws.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("journal"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    sim.shutdown();
}

/// `import -` copies standard input to `<temp dir>/profile-import-stdin-…/stdin` before
/// reading it: rows carry personal data, so the folder is 0700 and the file 0600 while they
/// exist (checked here while standard input is still open, the copy half written), and both
/// are gone when the run ends, whether it passed (0), found invalid rows (3) or stopped on a
/// bad header (1).
#[test]
fn the_standard_input_copy_is_private_while_it_exists_and_removed_at_the_end() {
    let ws = Workspace::new();
    let tmp = ws.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let cases: [(&[u8], &[u8], i32); 3] = [
        (b"UserID,Nick\n", b"u1,Ann\nu2,Bob\n", 0),
        (b"UserID,Nick\n", b"u1,Ann\nu 2,Bob\n", 3),
        (b"Nope,Nick\n", b"u1,Ann\n", 1),
    ];
    for (head, rest, code) in cases {
        let mut child = tool_command()
            .current_dir(ws.dir())
            .args(["import", "-", "--dry-run", "--failures", "f.csv"])
            .env("XDG_CONFIG_HOME", ws.dir())
            .env("TMPDIR", &tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(head).unwrap();
        pipe.flush().unwrap();
        // The copy is made before standard input ends: find it while the pipe is open.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let (dir, copy) = loop {
            let found = std::fs::read_dir(&tmp)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .find(|path| {
                    path.file_name().is_some_and(|name| {
                        name.to_string_lossy().starts_with("profile-import-stdin-")
                    }) && path.join("stdin").exists()
                });
            if let Some(dir) = found {
                let copy = dir.join("stdin");
                break (dir, copy);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no copy of standard input appeared in {}",
                tmp.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(crate::util::mode(&dir), 0o700, "{}", dir.display());
        assert_eq!(crate::util::mode(&copy), 0o600, "{}", copy.display());
        pipe.write_all(rest).unwrap();
        drop(pipe);
        let run = Run::from_output(child.wait_with_output().unwrap());
        run.assert_code(code);
        assert!(!dir.exists(), "{} is left after the run", dir.display());
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(left.is_empty(), "left in the temporary folder: {left:?}");
    }
}

// ── 14. empty exports, config files ────────────────────────────────────────────────────────

#[test]
fn a_header_only_file_is_refused_as_a_broken_export_unless_allowed() {
    let ws = Workspace::new();
    ws.write("empty-export.csv", "UserID,Nick,Level\n");
    let run = dry_run(&ws, "empty-export.csv", &[]);
    run.assert_code(3);
    assert!(
        run.stderr.contains("has a header and no data rows"),
        "{}",
        run.stderr
    );
    let allowed = dry_run(&ws, "empty-export.csv", &["--allow-empty"]);
    allowed.assert_code(0);
    assert!(
        !allowed.stderr.contains("no data rows"),
        "{}",
        allowed.stderr
    );
    ws.write("one.csv", "UserID,Nick\nu1,A\n");
    let run = dry_run(&ws, "one.csv", &[]);
    run.assert_code(0);
    assert!(!run.stderr.contains("no data rows"), "{}", run.stderr);
}

/// `usersig` in `cwd` with `args`, a clean environment plus `env`.
fn usersig_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(bin());
    command.current_dir(cwd).arg("usersig").args(args);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("PROFILE_IMPORT_"))
        {
            command.env_remove(key);
        }
    }
    let output = command.envs(env.iter().copied()).output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Asserts `run` printed a UserSig for `sdkappid` signed with `key`.
#[track_caller]
fn assert_signed(run: &Run, sdkappid: u64, key: &str) {
    run.assert_code(0);
    let doc = usersig::decode(run.stdout.trim()).expect("a UserSig");
    assert_eq!(doc.sdkappid, sdkappid);
    let expected = usersig::signature(
        &SecretKey::new(key),
        &doc.identifier,
        doc.sdkappid,
        doc.time,
        doc.expire,
    );
    assert_eq!(doc.sig, expected, "signed with {key:?}");
}

#[test]
fn a_relative_key_file_in_a_config_is_found_beside_the_config() {
    let ws = Workspace::new();
    let etc = ws.path("etc");
    std::fs::create_dir(&etc).unwrap();
    private_file(&etc.join("key"), "beside-the-config\n");
    std::fs::write(
        etc.join("chat.toml"),
        "sdkappid = 1400000005\nkey_file = \"key\"\n",
    )
    .unwrap();
    // Run from elsewhere, as cron does (its working folder is the home folder).
    let elsewhere = ws.path("home");
    std::fs::create_dir(&elsewhere).unwrap();
    let run = usersig_in(
        &elsewhere,
        &["--config", "../etc/chat.toml"],
        &[("XDG_CONFIG_HOME", elsewhere.to_str().unwrap())],
    );
    assert_signed(&run, 1400000005, "beside-the-config");
}

#[test]
fn the_user_config_file_is_read_when_no_config_is_given() {
    let ws = Workspace::new();
    let xdg = ws.path("xdg");
    std::fs::create_dir_all(xdg.join("profile-import")).unwrap();
    private_file(&xdg.join("profile-import").join("key"), "xdg-key");
    std::fs::write(
        xdg.join("profile-import").join("config.toml"),
        "sdkappid = 1400000006\nkey_file = \"key\"\n",
    )
    .unwrap();
    let run = usersig_in(ws.dir(), &[], &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
    assert_signed(&run, 1400000006, "xdg-key");

    // Without XDG_CONFIG_HOME: ~/.config/profile-import/config.toml.
    let home = ws.path("home");
    std::fs::create_dir_all(home.join(".config").join("profile-import")).unwrap();
    private_file(&home.join(".config/profile-import/key"), "home-key");
    std::fs::write(
        home.join(".config/profile-import/config.toml"),
        "sdkappid = 1400000007\nkey_file = \"key\"\n",
    )
    .unwrap();
    let mut command = Command::new(bin());
    command
        .current_dir(ws.dir())
        .arg("usersig")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", &home);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("PROFILE_IMPORT_"))
        {
            command.env_remove(key);
        }
    }
    let output = command.output().unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_signed(&run, 1400000007, "home-key");

    // --config wins over the default file.
    std::fs::write(ws.path("other.toml"), "sdkappid = 1400000008\n").unwrap();
    let run = usersig_in(
        ws.dir(),
        &["--config", "other.toml"],
        &[
            ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
            ("PROFILE_IMPORT_SECRET_KEY", "env-key"),
        ],
    );
    assert_signed(&run, 1400000008, "env-key");
}

// ── 15. Location ───────────────────────────────────────────────────────────────────────────

#[test]
fn a_location_up_to_500_bytes_is_sent_with_a_warning_and_strict_keeps_the_16_byte_rule() {
    let ws = Workspace::new();
    let long = "深".repeat(166); // 498 bytes
    ws.write(
        "loc.csv",
        format!(
            "UserID,Location\nkl,\"Kuala Lumpur, Malaysia\"\nsz,{long}\nparis,Paris\ntoo_long,{}\n",
            "x".repeat(501)
        ),
    );
    let run = dry_run(&ws, "loc.csv", &["--show-requests", "10"]);
    run.assert_code(3);
    assert_eq!(run.count("valid"), 3);
    assert_eq!(run.count("invalid"), 1);
    assert!(
        run.stderr
            .contains("2 valid rows have a Location over 16 bytes"),
        "{}",
        run.stderr
    );
    let sent: Vec<String> = run
        .requests()
        .iter()
        .map(|b| b["From_Account"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["kl", "sz", "paris"]);

    let strict = dry_run(&ws, "loc.csv", &["--strict-location"]);
    strict.assert_code(3);
    assert_eq!(strict.count("valid"), 1);
    assert_eq!(strict.count("invalid"), 3);
    assert!(
        strict.stderr.contains("at most 16 bytes allowed"),
        "{}",
        strict.stderr
    );
}

/// JSON Lines, the second input format (one file and one registration in `input`): the first
/// object's keys are the header; a bad line is rejected naming its line, a repeated user's
/// objects merge, and the failure CSV is a CSV of the same columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_lines_export_imports_like_a_csv() {
    const KEY: &str = "jsonl-test-key";
    let mut config = SimConfig::new(1_400_000_000, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    let sim = SimHandle::start(config).await.unwrap();
    let ws = Workspace::new();
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&format!(
            "{{\"UserID\": \"j{i:03}\", \"Nick\": \"Név {i}\", \"Level\": {}}}\n",
            i % 50
        ));
    }
    text.push_str("{\"UserID\": \"bad1\", \"Nick\": \"B\", \"Level\": \"high\"}\n");
    text.push_str("{\"UserID\": \"j000\", \"Level\": 99}\n");
    ws.write("users.jsonl", &text);
    let tool = |args: &[&str]| {
        let mut command = crate::util::tool_command();
        command
            .current_dir(ws.dir())
            .args(args)
            .args(["--sdkappid", "1400000000", "--endpoint", &sim.url()])
            .env("PROFILE_IMPORT_SECRET_KEY", KEY);
        command
    };
    let dry = Run::from_output(
        tool(&["import", "users.jsonl", "--dry-run"])
            .output()
            .unwrap(),
    );
    dry.assert_code(3);
    assert_eq!(dry.count("valid"), 300, "{}", dry.stderr);
    assert_eq!(dry.count("superseded"), 1, "{}", dry.stderr);
    assert!(
        dry.stderr.contains("line 301: column \"Level\""),
        "{}",
        dry.stderr
    );

    let mut import = tool(&["import", "users.jsonl", "--no-progress"]);
    let run = tokio::task::spawn_blocking(move || Run::from_output(import.output().unwrap()))
        .await
        .unwrap();
    run.assert_code(3);
    assert_eq!(run.count("ok"), 300, "{}", run.stderr);
    let profiles = sim.profiles();
    assert_eq!(profiles["j000"]["Tag_Profile_IM_Nick"], "Név 0");
    assert_eq!(profiles["j000"]["Tag_Profile_IM_Level"], 99);
    assert_eq!(profiles["j123"]["Tag_Profile_IM_Level"], 23);
    let (header, rows) = read_failures(&ws.path("users.failures.csv"));
    assert_eq!(header, ["UserID", "Nick", "Level"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].data, ["bad1", "B", "high"]);
    assert_eq!(rows[0].line, 301);
}

/// The boundary, in bytes: 16 is neither warned about nor (with `--strict-location`) rejected,
/// 17 is; 500 is sent, 501 is rejected either way. The cells mix CJK (3 bytes) and ASCII so a
/// count of characters would put every boundary elsewhere.
#[test]
fn location_boundaries_are_16_and_500_bytes_with_and_without_strict_location() {
    let ws = Workspace::new();
    let cjk = "深".repeat(166); // 498 bytes
    let cells = [
        ("l16", "深圳市南山a".to_string()), // 16 bytes, 6 characters
        ("l17", "深圳市南山ab".to_string()),
        ("l500", format!("{cjk}ab")),
        ("l501", format!("{cjk}abc")),
    ];
    let mut text = String::from("UserID,Location\n");
    for (user, cell) in &cells {
        text.push_str(&format!("{user},{cell}\n"));
    }
    ws.write("loc.csv", text);
    // The rows in the failure CSV, with their codes.
    let failed = || -> Vec<(String, String)> {
        let (_, rows) = read_failures(&ws.path("f.csv"));
        rows.into_iter()
            .map(|row| (row.data[0].clone(), row.code))
            .collect()
    };

    let run = dry_run(
        &ws,
        "loc.csv",
        &["--show-requests", "10", "--summary-json", "run.json"],
    );
    run.assert_code(3);
    assert_eq!((run.count("valid"), run.count("invalid")), (3, 1));
    let sent: Vec<String> = run
        .requests()
        .iter()
        .map(|b| b["From_Account"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["l16", "l17", "l500"]);
    assert!(
        run.stderr
            .contains("2 valid rows have a Location over 16 bytes"),
        "{}",
        run.stderr
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("run.json")).unwrap()).unwrap();
    assert_eq!(json["long_locations"], 2, "{json}");
    assert_eq!(failed(), [("l501".to_string(), "40601".to_string())]);

    let strict = dry_run(&ws, "loc.csv", &["--strict-location"]);
    strict.assert_code(3);
    assert_eq!((strict.count("valid"), strict.count("invalid")), (1, 3));
    assert!(
        !strict.stderr.contains("over 16 bytes"),
        "{}",
        strict.stderr
    );
    let rejected = failed();
    let users: Vec<&str> = rejected.iter().map(|(user, _)| user.as_str()).collect();
    assert_eq!(users, ["l17", "l500", "l501"]);
    assert!(
        rejected.iter().all(|(_, code)| code == "40601"),
        "{rejected:?}"
    );

    // Alone, the 16-byte Location draws no warning and the 17-byte one does.
    for (cell, warned) in [(&cells[0].1, false), (&cells[1].1, true)] {
        ws.write("one.csv", format!("UserID,Location\nu1,{cell}\n"));
        let run = dry_run(&ws, "one.csv", &[]);
        run.assert_code(0);
        assert_eq!(
            run.stderr
                .contains("1 valid row has a Location over 16 bytes"),
            warned,
            "{} bytes: {}",
            cell.len(),
            run.stderr
        );
    }
}

// ── 16. a stray quote that closes lines later ─────────────────────────────────────────────

/// A quote typed by mistake on line 3 that line 5 happens to close: csv reads u2's Nick as
/// `Bob,2⏎u3,Carl,3⏎u4,Dan` and one valid row, so u3 and u4 would never be sent.
const STRAY_QUOTE: &str =
    "UserID,Nick,Level\nu1,A,1\nu2,\"Bob,2\nu3,Carl,3\nu4,Dan\",4\nu5,Eve,5\n";

/// The warning about the row starting on `line`.
#[track_caller]
fn stray_warning(run: &Run, line: u64) -> &str {
    let start = format!("line {line}: a quoted field");
    run.stderr
        .lines()
        .find(|l| l.contains(&start))
        .unwrap_or_else(|| panic!("no warning about line {line}:\n{}", run.stderr))
}

/// The dry run names the lines; `--strict-quotes` makes the row invalid (`stray_quote`), in the
/// failure CSV and the JSON summary's rule counts. Before, the dry run said rows read 3,
/// valid 3, exit 0, and nothing else.
#[test]
fn a_stray_quote_that_swallows_rows_is_reported_and_strict_quotes_rejects_the_row() {
    let ws = Workspace::new();
    ws.write("users.csv", STRAY_QUOTE);
    let run = dry_run(&ws, "users.csv", &[]);
    run.assert_code(0);
    assert_eq!((run.count("rows read"), run.count("valid")), (3, 3));
    let warning = stray_warning(&run, 3);
    assert!(
        warning.contains("runs to line 5") && warning.contains("line(s) 4-5"),
        "{}",
        run.stderr
    );
    assert!(warning.contains("--strict-quotes"), "{warning}");

    let strict = dry_run(
        &ws,
        "users.csv",
        &["--strict-quotes", "--summary-json", "run.json"],
    );
    strict.assert_code(3);
    assert_eq!((strict.count("valid"), strict.count("invalid")), (2, 1));
    let (_, rows) = read_failures(&ws.path("f.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].data[0], "u2");
    assert_eq!(rows[0].code, "stray_quote");
    assert_eq!(rows[0].line, 3);
    assert!(rows[0].message.contains("line(s) 4-5"), "{rows:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("run.json")).unwrap()).unwrap();
    assert_eq!(
        json["invalid_by_rule"]["stray_quote quoted field swallows rows"], 1,
        "{json}"
    );

    // The same rule when the file is read in two halves at once (the second half's lines
    // count from the cut).
    let mut text = String::from("UserID,Nick,Level\n");
    for i in 0..40 {
        text.push_str(&format!("p{i},N,1\n"));
    }
    text.push_str(&STRAY_QUOTE["UserID,Nick,Level\n".len()..]);
    ws.write("halves.csv", &text);
    let halves = ws.run([
        "import",
        "halves.csv",
        "--dry-run",
        "--failures",
        "h.csv",
        "--parallel-min-bytes",
        "0",
    ]);
    halves.assert_code(0);
    assert!(
        stray_warning(&halves, 43).contains("line(s) 44-45"),
        "{}",
        halves.stderr
    );
}

/// The import warns before it sends (the survey reads every row first), and with
/// `--strict-quotes` sends u1 and u5 only, with u2's row in the failure CSV. Before, it sent
/// u2 with a Nick holding u3's and u4's rows, and said nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_warns_about_a_stray_quote_and_strict_quotes_keeps_the_row_out() {
    const KEY: &str = "stray-quote-key";
    let mut config = SimConfig::new(1_400_000_000, "administrator", SecretKey::new(KEY));
    config.limit_per_sec = 0;
    let sim = SimHandle::start(config).await.unwrap();
    let ws = Workspace::new();
    ws.write("users.csv", STRAY_QUOTE);
    let import = |extra: &'static [&'static str]| {
        let mut command = tool_command();
        command
            .current_dir(ws.dir())
            .args(["import", "users.csv", "--no-progress"])
            .args(extra)
            .args(["--sdkappid", "1400000000", "--endpoint", &sim.url()])
            .env("PROFILE_IMPORT_SECRET_KEY", KEY);
        async move {
            tokio::task::spawn_blocking(move || Run::from_output(command.output().unwrap()))
                .await
                .unwrap()
        }
    };
    let run = import(&[]).await;
    run.assert_code(0);
    assert!(
        stray_warning(&run, 3).contains("line(s) 4-5"),
        "{}",
        run.stderr
    );

    let strict = import(&["--strict-quotes"]).await;
    strict.assert_code(3);
    assert_eq!((strict.count("ok"), strict.count("invalid")), (2, 1));
    let (_, rows) = read_failures(&ws.path("users.failures.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].data[0].as_str(), rows[0].code.as_str()),
        ("u2", "stray_quote")
    );
}
