//! `import --dry-run` end to end: reading, validation, the failure CSV, the summary, exit codes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use serde_json::json;

use crate::util::{
    read_csv, read_csv_bytes, read_failures, read_failures_with, run_in_with_env, sample, strings,
    FailureRow, Run, Workspace, FAILURE_COLUMNS,
};

/// Runs a dry run of `input` with the failure CSV at `failures`, plus `extra` arguments.
fn dry_run(ws: &Workspace, input: &Path, failures: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("import"),
        input.as_os_str(),
        OsStr::new("--dry-run"),
        OsStr::new("--failures"),
        failures.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    ws.run(args)
}

/// `(UserID, code, line)` of every failure row, for compact assertions.
fn summary_of(rows: &[FailureRow]) -> Vec<(String, String, u64)> {
    rows.iter()
        .map(|r| (r.data[0].clone(), r.code.clone(), r.line))
        .collect()
}

fn triple(user: &str, code: &str, line: u64) -> (String, String, u64) {
    (user.to_string(), code.to_string(), line)
}

/// The file names in a directory, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// True if some line of `text`, with runs of white space collapsed, equals `wanted`.
fn has_line(text: &str, wanted: &str) -> bool {
    text.lines()
        .any(|line| line.split_whitespace().collect::<Vec<_>>().join(" ") == wanted)
}

// ── the samples ────────────────────────────────────────────────────────────────────────────

#[test]
fn sample_users_csv_validates_clean() {
    let ws = Workspace::new();
    let failures = ws.path("users.failures.csv");
    let run = dry_run(
        &ws,
        &sample("users.csv"),
        &failures,
        &["--show-requests", "100"],
    );
    run.assert_code(0);
    assert_eq!(run.count("rows read"), 30);
    assert_eq!(run.count("valid"), 30);
    assert_eq!(run.count("invalid"), 0);
    assert_eq!(run.count("skipped"), 0);
    assert_eq!(run.count("duplicate users"), 0);
    assert!(
        run.stderr.contains("failure CSV      none"),
        "{}",
        run.stderr
    );
    assert!(!failures.exists(), "a clean run left a failure CSV");

    let requests = run.requests();
    assert_eq!(requests.len(), 30);
    // Friendly enum forms are sent as Chat's exact strings and dates as YYYYMMDD numbers.
    let zhang = requests
        .iter()
        .find(|r| r["From_Account"] == "zhang_san")
        .expect("zhang_san is sent");
    let items = zhang["ProfileItem"].as_array().unwrap();
    assert!(items.contains(&json!({"Tag": "Tag_Profile_IM_BirthDay", "Value": 19921008})));
    assert!(items.contains(&json!({"Tag": "Tag_Profile_Custom_City", "Value": "深圳"})));
    let alice = &requests[0];
    assert_eq!(alice["From_Account"], "alice_01");
    let items = alice["ProfileItem"].as_array().unwrap();
    assert!(items.contains(&json!({"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"})));
    assert!(items.contains(&json!({"Tag": "Tag_Profile_IM_BirthDay", "Value": 19900412})));
    assert!(items
        .contains(&json!({"Tag": "Tag_Profile_IM_AllowType", "Value": "AllowType_Type_AllowAny"})));
    // The embedded newline survives into the request.
    let tanaka = requests
        .iter()
        .find(|r| r["From_Account"] == "tanaka_yuki")
        .expect("tanaka_yuki is sent");
    let signature = tanaka["ProfileItem"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Tag"] == "Tag_Profile_IM_SelfSignature")
        .unwrap();
    assert!(signature["Value"].as_str().unwrap().contains('\n'));
}

#[test]
fn sample_users_with_errors_reports_every_invalid_row() {
    let ws = Workspace::new();
    let input = sample("users-with-errors.csv");
    let failures = ws.path("errors.failures.csv");
    let run = dry_run(&ws, &input, &failures, &[]);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 19);
    assert_eq!(run.count("valid"), 3);
    assert_eq!(run.count("invalid"), 15);
    assert_eq!(run.count("skipped"), 1);
    // Each invalid row counts once, under its first broken rule (its `_error_code`), so the
    // rule lines add up to the invalid rows (they used to count every broken rule: 19).
    for rule in [
        "40001 bad UserID 4",
        "40601 too long 3",
        "40605 not a date 1",
        "40605 not a uint32 2",
        "40605 not an allowed value 2",
        "40610 not a number 2",
        "field_count wrong field count 1",
    ] {
        assert!(
            has_line(&run.stderr, rule),
            "no \"{rule}\" in\n{}",
            run.stderr
        );
    }
    assert!(run
        .stderr
        .contains("line 17: the row has 3 fields but the header has 13"));

    let (header, rows) = read_failures(&failures);
    let input_header = read_csv(&input).remove(0);
    assert_eq!(header, input_header);
    assert_eq!(
        summary_of(&rows),
        vec![
            triple("bad user!", "40001", 4),
            triple(&"a".repeat(33), "40001", 5),
            triple("", "40001", 6),
            triple("long_nick", "40601", 7),
            triple("long_location", "40601", 8),
            triple("level_text", "40610", 9),
            triple("language_neg", "40605", 10),
            triple("role_overflow", "40605", 11),
            triple("not_leap", "40605", 12),
            triple("bad_date_format", "40610", 13),
            triple("bad_gender", "40605", 14),
            triple("bad_allow", "40605", 15),
            triple("long_custom", "40601", 16),
            triple("ragged_row", "field_count", 17),
            triple("bad.id", "40001", 19),
        ]
    );

    // Every failure row is the input row found at its `_line`, cell for cell.
    let by_line = records_by_line(&input);
    for row in &rows {
        assert_eq!(row.stage, "validate", "{row:?}");
        assert_eq!(row.attempts, "0", "{row:?}");
        assert_eq!(
            Some(&row.data),
            by_line.get(&row.line),
            "failure row for line {} differs from the input",
            row.line
        );
    }

    // A row with several violations names every one of them; its code is the first one's.
    let many = rows.iter().find(|r| r.data[0] == "bad.id").unwrap();
    for column in ["UserID", "Gender", "BirthDay", "Level", "Custom_City"] {
        assert!(
            many.message.contains(&format!("column \"{column}\"")),
            "{column} missing from {:?}",
            many.message
        );
    }
    let nick = rows.iter().find(|r| r.data[0] == "long_nick").unwrap();
    assert!(nick.message.contains("501 bytes"), "{}", nick.message);
}

/// The records of a CSV keyed by the line each starts on, computed here independently of the
/// tool: a record's line is one plus the newlines before its first byte.
fn records_by_line(path: &Path) -> HashMap<u64, Vec<String>> {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let mut map = HashMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        let mut start = record.position().unwrap().byte() as usize;
        // Skip what the previous record's terminator and blank lines left behind.
        while matches!(bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        let line = 1 + bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64;
        map.insert(line, record.iter().map(String::from).collect());
    }
    map
}

#[test]
fn sample_export_with_mapping_validates_clean() {
    let ws = Workspace::new();
    let failures = ws.path("export.failures.csv");
    let run = dry_run(
        &ws,
        &sample("export-with-mapping.csv"),
        &failures,
        &[
            "--delimiter",
            ";",
            "--mapping",
            sample("mapping.toml").to_str().unwrap(),
            "--show-requests",
            "10",
        ],
    );
    run.assert_code(0);
    assert_eq!(run.count("rows read"), 6);
    assert_eq!(run.count("valid"), 6);
    assert_eq!(run.count("invalid"), 0);
    assert!(!failures.exists());
    let requests = run.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(requests[0]["From_Account"], "m-100234");
    let first = requests[1]["ProfileItem"].as_array().unwrap();
    assert!(first.contains(&json!({"Tag": "Tag_Profile_IM_Nick", "Value": "刘洋"})));
    assert!(first
        .contains(&json!({"Tag": "Tag_Profile_IM_SelfSignature", "Value": "早睡早起; 身体好"})));
    assert!(first.contains(&json!({"Tag": "Tag_Profile_Custom_Hobby", "Value": "羽毛球"})));
    assert!(first.contains(&json!({"Tag": "Tag_Profile_Custom_City", "Value": "广州"})));
    // Ignored columns are never sent.
    assert!(!run.stdout.contains("@example"), "{}", run.stdout);
    assert!(!run.stdout.contains("newsletter"), "{}", run.stdout);
}

// ── encodings and CSV syntax ───────────────────────────────────────────────────────────────

#[test]
fn utf8_bom_on_the_header_is_ignored() {
    let ws = Workspace::new();
    let input = ws.write("bom.csv", "\u{feff}UserID,Nick,Level\nu1,Ann,1\nu2,Bob,x\n");
    let failures = ws.path("f.csv");
    let run = dry_run(&ws, &input, &failures, &["--show-requests", "5"]);
    run.assert_code(3);
    assert_eq!(run.count("valid"), 1);
    assert_eq!(
        run.requests(),
        vec![json!({
            "From_Account": "u1",
            "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Nick", "Value": "Ann"},
                {"Tag": "Tag_Profile_IM_Level", "Value": 1},
            ]
        })]
    );
    let (header, rows) = read_failures(&failures);
    assert_eq!(header, strings(&["UserID", "Nick", "Level"]));
    assert_eq!(summary_of(&rows), vec![triple("u2", "40610", 3)]);
    // The failure CSV starts with the header name itself, not a BOM.
    assert!(std::fs::read(&failures).unwrap().starts_with(b"UserID,"));
}

#[test]
fn crlf_line_endings_are_read_and_lines_are_counted() {
    let ws = Workspace::new();
    let input = ws.write(
        "crlf.csv",
        "UserID,Nick,Level\r\nu1,Ann,1\r\nu2,Bob,x\r\nu3,Cy,3\r\nu4,Di,-4\r\n",
    );
    let failures = ws.path("f.csv");
    let run = dry_run(&ws, &input, &failures, &["--show-requests", "5"]);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 4);
    let requests = run.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["ProfileItem"][1]["Value"], 1);
    assert_eq!(requests[1]["ProfileItem"][0]["Value"], "Cy");
    let (_, rows) = read_failures(&failures);
    // No cell keeps a stray carriage return.
    assert_eq!(rows[0].data, strings(&["u2", "Bob", "x"]));
    assert_eq!(rows[1].data, strings(&["u4", "Di", "-4"]));
    assert_eq!(
        summary_of(&rows),
        vec![triple("u2", "40610", 3), triple("u4", "40605", 5)],
        "_line must be the physical line in a CRLF file"
    );
    assert!(
        run.stderr.contains("line 3: column \"Level\""),
        "{}",
        run.stderr
    );
}

#[test]
fn blank_lines_are_not_rows_and_do_not_shift_line_numbers() {
    let ws = Workspace::new();
    let input = ws.write("blank.csv", "UserID,Nick,Level\nu1,Ann,1\n\n\nu2,Bob,x\n");
    let failures = ws.path("f.csv");
    let run = dry_run(&ws, &input, &failures, &[]);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 2);
    let (_, rows) = read_failures(&failures);
    assert_eq!(summary_of(&rows), vec![triple("u2", "40610", 5)]);
}

#[test]
fn lone_carriage_returns_end_lines_too() {
    // Classic Mac line endings: csv reads a lone CR as a record terminator.
    let ws = Workspace::new();
    let input = ws.write(
        "mac.csv",
        "UserID,Nick,Level\ru1,Ann,1\ru2,Bob,x\ru3,Cy,3\r",
    );
    let failures = ws.path("f.csv");
    let run = dry_run(&ws, &input, &failures, &[]);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 3);
    let (_, rows) = read_failures(&failures);
    assert_eq!(summary_of(&rows), vec![triple("u2", "40610", 3)]);
}

/// Builds a large file with the given line ending, where some rows hold quoted line breaks and
/// blank lines, and returns it with the `(UserID, line)` of every invalid row. The first row's
/// Nick is padded with `pad` letters, to move later line breaks to chosen byte offsets.
fn many_rows(eol: &str, rows: usize, pad: usize) -> (String, Vec<(String, u64)>) {
    let mut text = format!("UserID,Nick,SelfSignature,Level{eol}");
    let mut line = 2;
    let mut invalid = Vec::new();
    for i in 0..rows {
        let user = format!("user_{i:06}");
        let signature = match i % 5 {
            0 => format!("\"two{eol}lines\""),
            1 => format!("\"three{eol}{eol}lines, quoted \"\"here\"\"\""),
            _ => "plain text of some length to fill the buffer".to_string(),
        };
        let level = if i % 7 == 3 {
            "x".to_string()
        } else {
            i.to_string()
        };
        if i % 7 == 3 {
            invalid.push((user.clone(), line));
        }
        let padding = if i == 0 {
            "a".repeat(pad)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{user},Nick {i}{padding},{signature},{level}{eol}"
        ));
        line += 1 + signature.matches(eol).count() as u64;
        if i % 11 == 10 {
            text.push_str(eol); // a blank line
            line += 1;
        }
    }
    (text, invalid)
}

/// Asserts that the failure CSV holds exactly the rows `expected` lists, as (UserID, _line),
/// in order, and returns them.
#[track_caller]
fn assert_failed_rows(failures: &Path, expected: &[(String, u64)], case: &str) -> Vec<FailureRow> {
    let (_, rows) = read_failures(failures);
    let got: Vec<(String, u64)> = rows.iter().map(|r| (r.data[0].clone(), r.line)).collect();
    let first_wrong = got.iter().zip(expected).position(|(g, w)| g != w);
    assert_eq!(
        first_wrong,
        None,
        "{case}: first wrong row: got {:?}, expected {:?}",
        first_wrong.map(|i| &got[i]),
        first_wrong.map(|i| &expected[i])
    );
    assert_eq!(got.len(), expected.len(), "{case}: rows in the failure CSV");
    rows
}

#[test]
fn line_numbers_stay_right_across_read_buffers() {
    for eol in ["\n", "\r\n"] {
        let ws = Workspace::new();
        // About 400 KB: several of the reader's 64 KiB buffers. The first row is padded so that
        // a line break ends exactly at the first buffer boundary: for CRLF, the CR is the last
        // byte of one read and the LF the first byte of the next.
        const BOUNDARY: usize = 64 * 1024;
        let (plain, _) = many_rows(eol, 6000, 0);
        let last_break = plain[..BOUNDARY].rfind(eol).unwrap();
        let pad = BOUNDARY - 1 - last_break;
        let (text, invalid) = many_rows(eol, 6000, pad);
        assert_eq!(&text[BOUNDARY - 1..BOUNDARY - 1 + eol.len()], eol);
        assert!(text.len() > 300_000);
        let input = ws.write("many.csv", &text);
        let failures = ws.path("f.csv");
        let run = dry_run(&ws, &input, &failures, &[]);
        run.assert_code(3);
        assert_eq!(run.count("rows read"), 6000);
        assert_eq!(run.count("invalid"), invalid.len() as u64);
        let rows = assert_failed_rows(&failures, &invalid, &format!("eol {eol:?}"));
        // The quoted line breaks are kept exactly, CRLF included.
        let multi = rows.iter().find(|r| r.data[0] == "user_000003").unwrap();
        assert_eq!(
            multi.data[2],
            "plain text of some length to fill the buffer"
        );
        let quoted = rows.iter().find(|r| r.data[0] == "user_000010").unwrap();
        assert_eq!(quoted.data[2], format!("two{eol}lines"));
    }
}

/// Rows shaped like `many_rows`: quoted multi-line fields, blank lines, an invalid Level every
/// 7th row and on the rows listed in `also_invalid`. Returns the text and the (UserID, line)
/// of each invalid row, lines counted from `first_line`.
fn shaped_rows(
    eol: &str,
    prefix: &str,
    rows: usize,
    first_line: u64,
    also_invalid: &[usize],
) -> (String, Vec<(String, u64)>) {
    let mut text = String::new();
    let mut line = first_line;
    let mut invalid = Vec::new();
    for i in 0..rows {
        let user = format!("{prefix}{i:06}");
        let signature = match (i + 2) % 5 {
            0 => format!("\"two{eol}lines\""),
            1 => format!("\"three{eol}{eol}lines, quoted \"\"here\"\"\""),
            _ => "plain text of some length to fill the buffer".to_string(),
        };
        let bad = i % 7 == 3 || also_invalid.contains(&i);
        let level = if bad {
            "xx".to_string()
        } else {
            format!("{:02}", i % 100)
        };
        if bad {
            invalid.push((user.clone(), line));
        }
        text.push_str(&format!("{user},Nick {i:06},{signature},{level}{eol}"));
        line += 1 + signature.matches(eol).count() as u64;
        if i % 11 == 10 {
            text.push_str(eol);
            line += 1;
        }
    }
    (text, invalid)
}

/// Where the middle of `two_part_file` falls.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Middle {
    /// Inside a long one-line row followed by two blank lines: the cut lands after that row.
    OneLineRow,
    /// Inside a quoted SelfSignature of many lines of plain text: the lines right after the
    /// middle do not read as records, so the cut moves past the row.
    MultiLineText,
    /// Inside a quoted SelfSignature whose lines read as records of the right width: the cut
    /// lands inside the record and does not hold.
    MultiLineRow,
    /// Inside a long run of blank lines after a short row: the cut moves past them.
    BlankLines,
}

/// A file large enough to be read in two parts, built so that its middle falls where `middle`
/// says. The rows just before, at and just after the middle are invalid, and the second
/// half's first user is also in the first half. Returns the text, the invalid (UserID, line)
/// in file order, and the number of rows.
fn two_part_file(eol: &str, middle: Middle) -> (String, Vec<(String, u64)>, u64) {
    const ROWS: usize = 40_000; // about 2.6 MB per half: over the 4 MiB threshold together
    let header = format!("UserID,Nick,SelfSignature,Level{eol}");
    // The first half's last row is invalid too.
    let (first, mut invalid) = shaped_rows(eol, "a_", ROWS, 2, &[ROWS - 1]);
    let middle_line = 2 + first.matches(eol).count() as u64;
    let (signature, blank_lines) = match middle {
        Middle::OneLineRow => (format!("\"{}\"", "one long line, ".repeat(26)), 2),
        Middle::MultiLineText => {
            let pieces: Vec<String> = (0..40).map(|i| format!("piece {i:03}")).collect();
            (format!("\"{}\"", pieces.join(eol)), 0)
        }
        Middle::MultiLineRow => {
            let pieces: Vec<String> = (0..40).map(|i| format!("piece {i:03},a,b,c")).collect();
            (format!("\"{}\"", pieces.join(eol)), 0)
        }
        Middle::BlankLines => ("short".to_string(), 150),
    };
    let middle_row = format!(
        "middle,Nick middle,{signature},xx{eol}{}",
        eol.repeat(blank_lines)
    );
    invalid.push(("middle".to_string(), middle_line));
    let second_line = middle_line + middle_row.matches(eol).count() as u64;
    // The same shapes with a prefix of the same length, so both halves are the same size and
    // the file's middle falls in the middle row (or its blank lines). Its first user repeats
    // one of the first half's.
    let (second, second_invalid) = shaped_rows(eol, "b_", ROWS, second_line, &[0]);
    let second = second.replacen("b_000000", "a_000005", 1);
    invalid.extend(second_invalid.into_iter().map(|(user, line)| {
        (
            if user == "b_000000" {
                "a_000005".to_string()
            } else {
                user
            },
            line,
        )
    }));
    let text = format!("{header}{first}{middle_row}{second}");
    let at = text.len() / 2;
    let row_start = header.len() + first.len();
    let row_content_end = row_start + middle_row.trim_end().len();
    let inside = match middle {
        Middle::BlankLines => {
            (row_content_end + 2 * eol.len()..row_start + middle_row.len()).contains(&at)
        }
        _ => (row_start..row_content_end).contains(&at),
    };
    assert!(
        inside,
        "{middle:?}: the file's middle is not where this case needs it"
    );
    (text, invalid, 2 * ROWS as u64 + 1)
}

#[test]
fn a_large_file_read_in_two_parts_loses_and_repeats_no_row() {
    for eol in ["\n", "\r\n"] {
        for middle in [
            Middle::OneLineRow,
            Middle::MultiLineText,
            Middle::MultiLineRow,
            Middle::BlankLines,
        ] {
            cut_case(eol, middle);
        }
    }
}

fn cut_case(eol: &str, middle: Middle) {
    {
        let spanning = middle == Middle::MultiLineRow;
        let ws = Workspace::new();
        let (text, invalid, rows) = two_part_file(eol, middle);
        let input = ws.write("large.csv", &text);
        let failures = ws.path("f.csv");
        let run = dry_run(&ws, &input, &failures, &["-vv"]);
        run.assert_code(3);
        // The file took the path this case is about.
        let path = if spanning {
            "did not hold"
        } else {
            "read in two parts"
        };
        assert!(
            run.stderr.contains(path),
            "eol {eol:?}, {middle:?}: expected \"{path}\":\n{}",
            run.stderr
        );
        assert_eq!(run.count("rows read"), rows);
        assert_eq!(run.count("invalid"), invalid.len() as u64);
        assert_eq!(run.count("valid"), rows - invalid.len() as u64);
        assert_eq!(run.count("duplicate users"), 1);
        let duplicates = run.line("duplicate users");
        assert!(duplicates.ends_with("a_000005 ×2"), "{duplicates}");
        let failed = assert_failed_rows(&failures, &invalid, &format!("eol {eol:?}, {middle:?}"));
        let middle_kind = middle;
        // The row at the middle is copied whole, its quoted line breaks included.
        let middle = failed.iter().find(|r| r.data[0] == "middle").unwrap();
        let multi_line = matches!(middle_kind, Middle::MultiLineText | Middle::MultiLineRow);
        assert_eq!(
            middle.data[2].matches(eol).count(),
            if multi_line { 39 } else { 0 }
        );
    }
}

#[test]
fn a_cut_that_does_not_hold_leaves_no_trace_in_the_duplicate_check() {
    for eol in ["\n", "\r\n"] {
        let ws = Workspace::new();
        // The same file without its one repeated user: the second reader reads the second
        // half's users before the cut is found not to hold, and the first reader then reads
        // them again; only the first reader's reading may count.
        let (text, _, _) = two_part_file(eol, Middle::MultiLineRow);
        let text = text.replacen("a_000005,Nick 000000", "c_000005,Nick 000000", 1);
        let input = ws.write("large.csv", &text);
        let run = dry_run(&ws, &input, &ws.path("f.csv"), &["-vv"]);
        run.assert_code(3);
        assert!(run.stderr.contains("did not hold"), "{}", run.stderr);
        assert_eq!(run.count("duplicate users"), 0);
        // Not even a candidate to recount.
        assert!(
            run.stderr.contains("duplicate check clear: true"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn a_large_file_shows_the_first_valid_requests_even_from_its_second_part() {
    let ws = Workspace::new();
    // Every row of the first half is invalid, so the first valid rows are the second half's.
    let (text, _, _) = two_part_file("\n", Middle::OneLineRow);
    let (first, second) = text.split_at(text.find("\nmiddle,").unwrap());
    let first = (0..100).fold(first.to_string(), |text, level| {
        text.replace(&format!(",{level:02}\n"), ",xx\n")
    });
    let text = format!("{first}{second}");
    let input = ws.write("large.csv", &text);
    let run = dry_run(
        &ws,
        &input,
        &ws.path("f.csv"),
        &["-vv", "--show-requests", "2"],
    );
    run.assert_code(3);
    assert!(run.stderr.contains("read in two parts"), "{}", run.stderr);
    let users: Vec<String> = run
        .requests()
        .iter()
        .map(|body| body["From_Account"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users, ["b_000001", "b_000002"]);
}

#[test]
fn an_unclosed_quote_at_the_end_of_a_large_file_names_its_line() {
    let ws = Workspace::new();
    let (mut text, mut invalid, rows) = two_part_file("\n", Middle::OneLineRow);
    let line = 1 + text.matches('\n').count() as u64;
    text.push_str("last,Nick last,\"never closed,1\nmore\n");
    invalid.push(("last".to_string(), line));
    let input = ws.write("large.csv", &text);
    let failures = ws.path("f.csv");
    let run = dry_run(&ws, &input, &failures, &["-vv"]);
    run.assert_code(3);
    assert!(run.stderr.contains("read in two parts"), "{}", run.stderr);
    assert_eq!(run.count("rows read"), rows + 1);
    let (_, failed) = read_failures(&failures);
    let last = failed.last().unwrap();
    assert_eq!((last.data[0].as_str(), last.line), ("last", line));
    assert_eq!(last.code, "unterminated_quote");
    assert!(
        last.message.contains(&format!("starting on line {line} ")),
        "{}",
        last.message
    );
    assert_eq!(failed.len(), invalid.len());
}

/// A random CSV of awkward rows: mixed line endings, quoted fields with commas, quotes and
/// line breaks, blank lines, ragged rows, bad UTF-8, invalid values, repeated users, and
/// sometimes a last row without a line break or with a quote that never closes.
fn awkward_csv(rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    use rand::Rng;
    let endings: &[&[u8]] = match rng.random_range(0..4) {
        0 => &[b"\n"],
        1 => &[b"\r\n"],
        2 => &[b"\r"],
        _ => &[b"\n", b"\r\n", b"\r"],
    };
    let eol = |rng: &mut rand::rngs::StdRng| endings[rng.random_range(0..endings.len())];
    let mut out = b"UserID,Nick,Level,Gender".to_vec();
    out.extend_from_slice(eol(rng));
    for _ in 0..rng.random_range(1..300) {
        let user = match rng.random_range(0..20) {
            0 => "bad id".to_string(),
            1 => String::new(),
            _ => format!("u{}", rng.random_range(0..150)),
        };
        let nick: Vec<u8> = match rng.random_range(0..12) {
            0 => b"\"comma, inside\"".to_vec(),
            1 => [b"\"line".as_slice(), eol(rng), b"break\"".as_slice()].concat(),
            2 => [
                b"\"two".as_slice(),
                eol(rng),
                eol(rng),
                b"breaks, \"\"quoted\"\"\"".as_slice(),
            ]
            .concat(),
            3 => b"bad \xff utf8".to_vec(),
            4 => "长".repeat(167).into_bytes(),
            5 => Vec::new(),
            _ => format!("Nick {}", rng.random_range(0..1000)).into_bytes(),
        };
        let level = ["7", "x", "", "4294967296", "-1"][rng.random_range(0..5)];
        let gender = ["male", "robot", "", "F"][rng.random_range(0..4)];
        let mut row = [user.as_bytes(), b",", &nick, b",", level.as_bytes()].concat();
        match rng.random_range(0..25) {
            0 => {} // a field short
            1 => row.extend_from_slice(b",male,extra"),
            _ => row.extend_from_slice(&[b",", gender.as_bytes()].concat()),
        }
        out.extend_from_slice(&row);
        out.extend_from_slice(eol(rng));
        if rng.random_range(0..8) == 0 {
            out.extend_from_slice(eol(rng)); // a blank line
        }
    }
    match rng.random_range(0..6) {
        0 => out.extend_from_slice(b"last,\"never closed,1,male\nmore"),
        1 => out.extend_from_slice(b"last,no line break,1,male"),
        _ => {}
    }
    out
}

/// Everything a run shows the user, minus its debug lines and timings.
fn visible(run: &Run, failures: &Path) -> (i32, String, String, Option<Vec<u8>>) {
    let stderr = run
        .stderr
        .lines()
        .filter(|line| {
            !line.contains("DEBUG")
                && !line.starts_with("elapsed")
                && !line.starts_with("failure CSV")
        })
        .collect::<Vec<_>>()
        .join("\n");
    (
        run.code,
        run.stdout.clone(),
        stderr,
        std::fs::read(failures).ok(),
    )
}

#[test]
fn reading_in_two_parts_gives_exactly_what_reading_in_one_gives() {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261127);
    let (mut two_parts, mut fell_inside) = (0, 0);
    for case in 0..150 {
        let ws = Workspace::new();
        let input = ws.write("awkward.csv", awkward_csv(&mut rng));
        let args = |failures: &Path| -> Vec<std::ffi::OsString> {
            [
                "import",
                "--dry-run",
                "-vv",
                "--show-requests",
                "5",
                "--failures",
            ]
            .iter()
            .map(Into::into)
            .chain([failures.as_os_str().into(), input.as_os_str().into()])
            .collect()
        };
        let (one_failures, two_failures) = (ws.path("one.csv"), ws.path("two.csv"));
        let one = run_in_with_env(
            ws.dir(),
            args(&one_failures),
            &[("PROFILE_IMPORT_PARALLEL_MIN_BYTES", "18446744073709551615")],
        );
        let two = run_in_with_env(
            ws.dir(),
            args(&two_failures),
            &[("PROFILE_IMPORT_PARALLEL_MIN_BYTES", "0")],
        );
        assert!(!one.stderr.contains("read in two parts"));
        two_parts += two.stderr.contains("read in two parts") as u32;
        fell_inside += two.stderr.contains("did not hold") as u32;
        let (one, two) = (visible(&one, &one_failures), visible(&two, &two_failures));
        let first_difference = |a: &str, b: &str| {
            a.lines()
                .zip(b.lines())
                .find(|(x, y)| x != y)
                .map(|(x, y)| format!("one part: {x}\ntwo parts: {y}"))
                .unwrap_or_else(|| {
                    format!("{} lines against {}", a.lines().count(), b.lines().count())
                })
        };
        assert_eq!(one.0, two.0, "case {case}: exit codes");
        assert!(
            one.1 == two.1,
            "case {case}: stdout: {}",
            first_difference(&one.1, &two.1)
        );
        assert!(
            one.2 == two.2,
            "case {case}: stderr: {}",
            first_difference(&one.2, &two.2)
        );
        let lossy = |f: &Option<Vec<u8>>| {
            String::from_utf8_lossy(f.as_deref().unwrap_or_default()).into_owned()
        };
        assert!(
            one.3 == two.3,
            "case {case}: failure CSV: {}",
            first_difference(&lossy(&one.3), &lossy(&two.3))
        );
    }
    eprintln!("read in two parts: {two_parts}; cut inside a record: {fell_inside}");
    assert!(
        two_parts >= 50 && fell_inside >= 5,
        "{two_parts} / {fell_inside}"
    );
}

#[test]
fn quoted_fields_keep_commas_quotes_and_newlines() {
    let ws = Workspace::new();
    let input = ws.write(
        "quoted.csv",
        concat!(
            "UserID,Nick,SelfSignature,Level\n",
            "u1,\"Smith, John\",\"He said \"\"hi\"\"\nand left\",1\n",
            "u2,Bad,\"multi\nline\nsig\",x\n",
            "u3,\"Q \"\"uote\"\"\",plain,2\n",
            "u4,Ok,\"a, b\",-1\n",
        ),
    );
    let failures = ws.path("f.csv");
    let run = dry_run(&ws, &input, &failures, &["--show-requests", "5"]);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 4);
    assert_eq!(
        run.requests(),
        vec![
            json!({"From_Account": "u1", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Nick", "Value": "Smith, John"},
                {"Tag": "Tag_Profile_IM_SelfSignature", "Value": "He said \"hi\"\nand left"},
                {"Tag": "Tag_Profile_IM_Level", "Value": 1},
            ]}),
            json!({"From_Account": "u3", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Nick", "Value": "Q \"uote\""},
                {"Tag": "Tag_Profile_IM_SelfSignature", "Value": "plain"},
                {"Tag": "Tag_Profile_IM_Level", "Value": 2},
            ]}),
        ]
    );
    let (_, rows) = read_failures(&failures);
    // u2 starts on line 4 (u1 spans lines 2-3); u4 on line 8 (u2 spans 4-6, u3 is 7).
    assert_eq!(
        summary_of(&rows),
        vec![triple("u2", "40610", 4), triple("u4", "40605", 8)]
    );
    assert_eq!(
        rows[0].data,
        strings(&["u2", "Bad", "multi\nline\nsig", "x"])
    );
    assert_eq!(rows[1].data, strings(&["u4", "Ok", "a, b", "-1"]));
}

#[test]
fn ragged_rows_are_row_errors_and_the_run_goes_on() {
    let ws = Workspace::new();
    let input = ws.write(
        "ragged.csv",
        "UserID,Nick,Level\nu1,A,1\nu2,B\nu3,C,3\nu4,D,4,extra\nu5,E,5\n",
    );
    let failures = ws.path("f.csv");
    let run = dry_run(&ws, &input, &failures, &[]);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 5);
    assert_eq!(run.count("valid"), 3);
    assert_eq!(run.count("invalid"), 2);
    assert!(
        run.stderr
            .contains("line 3: the row has 2 fields but the header has 3"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("line 5: the row has 4 fields but the header has 3"),
        "{}",
        run.stderr
    );
    let (_, rows) = read_failures(&failures);
    assert_eq!(
        summary_of(&rows),
        vec![
            triple("u2", "field_count", 3),
            triple("u4", "field_count", 5)
        ]
    );
    // A ragged row is copied as it was.
    assert_eq!(rows[0].data, strings(&["u2", "B"]));
    assert_eq!(rows[1].data, strings(&["u4", "D", "4", "extra"]));
}

#[test]
fn invalid_utf8_in_a_cell_is_a_row_error_and_the_raw_bytes_are_kept() {
    let ws = Workspace::new();
    let mut bytes = b"UserID,Nick,Level\n".to_vec();
    bytes.extend_from_slice(b"u1,M\xfcller,1\n"); // Latin-1, not UTF-8
    bytes.extend_from_slice(b"u2,Ok,2\n");
    bytes.extend_from_slice(b"u\xff3,Bad id,3\n");
    bytes.extend_from_slice(b"u4,\xe4\xb8,4\n"); // a truncated 3-byte sequence
    let input = ws.write("latin1.csv", &bytes);
    let failures = ws.path("f.csv");
    let run = dry_run(&ws, &input, &failures, &[]);
    run.assert_code(3);
    assert_eq!(run.count("rows read"), 4);
    assert_eq!(run.count("valid"), 1);
    assert_eq!(run.count("invalid"), 3);
    assert!(
        run.stderr.contains("line 2: column \"Nick\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("not valid UTF-8"), "{}", run.stderr);

    let records = read_csv_bytes(&failures);
    assert_eq!(records.len(), 4);
    let expected: [(&[u8], &[u8], &[u8]); 3] = [
        (b"u1", b"M\xfcller", b"2"),
        (b"u\xff3", b"Bad id", b"4"),
        (b"u4", b"\xe4\xb8", b"5"),
    ];
    for (record, (user, nick, line)) in records[1..].iter().zip(expected) {
        assert_eq!(record[0], user, "{record:?}");
        assert_eq!(record[1], nick, "{record:?}");
        assert_eq!(record[3], b"bad_utf8", "{record:?}");
        assert_eq!(record[5], b"validate", "{record:?}");
        assert_eq!(record[8], line, "{record:?}");
    }
}

#[test]
fn utf16_input_is_refused_with_a_clear_message() {
    let ws = Workspace::new();
    let text: Vec<u8> = "UserID,Nick\nu1,A\n"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text);
    let input = ws.write("utf16.csv", bytes);
    let run = dry_run(&ws, &input, &ws.path("f.csv"), &[]);
    run.assert_code(1);
    assert!(run.stderr.contains("UTF-16"), "{}", run.stderr);
    assert!(!ws.path("f.csv").exists());
}

// ── the header ─────────────────────────────────────────────────────────────────────────────

#[test]
fn empty_file_is_fatal_with_a_clear_message() {
    for (name, bytes) in [
        ("empty.csv", &b""[..]),
        ("newline.csv", b"\n"),
        ("bom-only.csv", b"\xef\xbb\xbf"),
    ] {
        let ws = Workspace::new();
        let input = ws.write(name, bytes);
        let run = ws.run(["import", name, "--dry-run"]);
        run.assert_code(1);
        assert!(
            run.stderr.contains(&format!("{name} is empty")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("header row"), "{}", run.stderr);
        assert!(
            run.stderr.contains("accepted column names"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
        assert_eq!(files_in(ws.dir()), vec![name.to_string()], "{input:?}");
    }
}

#[test]
fn header_only_file_has_zero_rows_and_is_refused_unless_allowed() {
    for (name, text) in [
        ("header.csv", "UserID,Nick\n"),
        ("no-newline.csv", "UserID,Nick"),
    ] {
        let ws = Workspace::new();
        ws.write(name, text);
        let run = ws.run(["import", name, "--dry-run"]);
        run.assert_code(3);
        assert_eq!(run.count("rows read"), 0);
        assert_eq!(run.count("invalid"), 0);
        assert!(run.stderr.contains("refused "), "{}", run.stderr);
        let run = ws.run(["import", name, "--dry-run", "--allow-empty"]);
        run.assert_code(0);
        assert_eq!(run.count("rows read"), 0);
        assert_eq!(files_in(ws.dir()), vec![name.to_string()]);
    }
}

#[test]
fn unknown_headers_are_all_listed_and_no_failure_csv_is_created() {
    let ws = Workspace::new();
    ws.write(
        "unknown.csv",
        "UserID,Nickname,Nick,Email,Custom_Fav_Color,Phone,\nu1,a,b,c,d,e,\n",
    );
    let run = ws.run(["import", "unknown.csv", "--dry-run"]);
    run.assert_code(1);
    for expected in [
        "the header row cannot be used",
        "\"Nickname\"",
        "\"Email\"",
        "\"Phone\"",
        "\"Custom_Fav_Color\"",
        "column 7 has an empty name",
        "accepted column names",
        "UserID or From_Account",
        "Nick, Gender, BirthDay, Location, SelfSignature, AllowType, Language, Image",
        "Custom_<Keyword>",
        "--mapping",
    ] {
        assert!(
            run.stderr.contains(expected),
            "missing {expected:?} in\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("\"Nick\""), "Nick is a valid name");
    assert_eq!(files_in(ws.dir()), vec!["unknown.csv".to_string()]);
}

#[test]
fn duplicate_headers_are_fatal() {
    for (header, expected) in [
        ("UserID,Nick,Level,nick", "both set Tag_Profile_IM_Nick"),
        (
            "UserID,Nick,Tag_Profile_IM_Nick",
            "both set Tag_Profile_IM_Nick",
        ),
        (
            "UserID,Custom_Hobby,Tag_Profile_Custom_Hobby",
            "both set Tag_Profile_Custom_Hobby",
        ),
        ("UserID,From_Account,Nick", "two user columns"),
    ] {
        let ws = Workspace::new();
        ws.write("dup.csv", format!("{header}\n"));
        let run = ws.run(["import", "dup.csv", "--dry-run"]);
        run.assert_code(1);
        assert!(
            run.stderr.contains(expected),
            "{header}: missing {expected:?} in\n{}",
            run.stderr
        );
        assert_eq!(files_in(ws.dir()), vec!["dup.csv".to_string()]);
    }
}

// ── options ────────────────────────────────────────────────────────────────────────────────

#[test]
fn tab_delimiter_reads_tsv_and_writes_a_tsv_failure_file() {
    let ws = Workspace::new();
    let input = ws.write(
        "users.tsv",
        "UserID\tNick\tSelfSignature\tLevel\nu1\tA, B\tx;y\t1\nu2\tC\t\"tab\tinside\"\tnope\n",
    );
    let failures = ws.path("f.tsv");
    let run = dry_run(
        &ws,
        &input,
        &failures,
        &["--delimiter", "tab", "--show-requests", "5"],
    );
    run.assert_code(3);
    assert_eq!(
        run.requests(),
        vec![json!({"From_Account": "u1", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "A, B"},
            {"Tag": "Tag_Profile_IM_SelfSignature", "Value": "x;y"},
            {"Tag": "Tag_Profile_IM_Level", "Value": 1},
        ]})]
    );
    let (header, rows) = read_failures_with(&failures, b'\t');
    assert_eq!(
        header,
        strings(&["UserID", "Nick", "SelfSignature", "Level"])
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].data, strings(&["u2", "C", "tab\tinside", "nope"]));
    assert_eq!(rows[0].code, "40610");
    // The same input with the default comma delimiter is one unknown column.
    let run = dry_run(&ws, &input, &ws.path("g.csv"), &[]);
    run.assert_code(1);
}

#[test]
fn user_column_names_the_user_id_column() {
    let ws = Workspace::new();
    ws.write("members.csv", "member,Nick\nm1,Ann\nm2,Bob\n");
    let run = ws.run(["import", "members.csv", "--dry-run"]);
    run.assert_code(1);
    assert!(run.stderr.contains("no user column"), "{}", run.stderr);
    assert!(run.stderr.contains("\"member\""), "{}", run.stderr);

    let run = ws.run([
        "import",
        "members.csv",
        "--dry-run",
        "--user-column",
        "member",
        "--show-requests",
        "1",
    ]);
    run.assert_code(0);
    assert_eq!(run.count("valid"), 2);
    assert_eq!(
        run.requests(),
        vec![json!({"From_Account": "m1", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Ann"},
        ]})]
    );

    let run = ws.run([
        "import",
        "members.csv",
        "--dry-run",
        "--user-column",
        "account",
    ]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("no column named \"account\""),
        "{}",
        run.stderr
    );
}

#[test]
fn mapping_file_renames_and_ignores_columns() {
    let ws = Workspace::new();
    ws.write(
        "mapping.toml",
        concat!(
            "user_column = \"member_id\"\n",
            "ignore = [\"email\"]\n",
            "[columns]\n",
            "display_name = \"Nick\"\n",
            "hobby = \"Custom_Hobby\"\n",
            "tier = \"Tag_Profile_Custom_Tier\"\n",
        ),
    );
    ws.write(
        "export.csv",
        "member_id,display_name,email,hobby,tier,Level\nx-1,Ann,ann@example.com,chess,gold,3\n",
    );
    let run = ws.run([
        "import",
        "export.csv",
        "--dry-run",
        "--mapping",
        "mapping.toml",
        "--show-requests",
        "1",
    ]);
    run.assert_code(0);
    assert_eq!(
        run.requests(),
        vec![json!({"From_Account": "x-1", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Ann"},
            {"Tag": "Tag_Profile_Custom_Hobby", "Value": "chess"},
            {"Tag": "Tag_Profile_Custom_Tier", "Value": "gold"},
            {"Tag": "Tag_Profile_IM_Level", "Value": 3},
        ]})]
    );

    // Without the mapping the same file is refused.
    let run = ws.run(["import", "export.csv", "--dry-run"]);
    run.assert_code(1);
    assert!(run.stderr.contains("\"display_name\""), "{}", run.stderr);

    // A mapping to something that is not a tag, and a mapping with an unknown key, are fatal.
    ws.write("bad-tag.toml", "[columns]\ndisplay_name = \"Nickname\"\n");
    let run = ws.run([
        "import",
        "export.csv",
        "--dry-run",
        "--mapping",
        "bad-tag.toml",
    ]);
    run.assert_code(1);
    assert!(run.stderr.contains("\"display_name\""), "{}", run.stderr);
    assert!(run.stderr.contains("Nickname"), "{}", run.stderr);

    ws.write("bad-key.toml", "user_colum = \"member_id\"\n");
    let run = ws.run([
        "import",
        "export.csv",
        "--dry-run",
        "--mapping",
        "bad-key.toml",
    ]);
    run.assert_code(1);
    assert!(run.stderr.contains("bad-key.toml"), "{}", run.stderr);
    assert!(!ws.path("export.failures.csv").exists());
}

#[test]
fn empty_cells_are_skipped_by_default_and_cleared_with_empty_clear() {
    let ws = Workspace::new();
    ws.write(
        "empty.csv",
        "UserID,Nick,Gender,BirthDay,AllowType,Level,Custom_Hobby\nu1,,,,,,\nu2,Bo,,, ,,\n",
    );
    let run = ws.run(["import", "empty.csv", "--dry-run", "--show-requests", "5"]);
    run.assert_code(0);
    assert_eq!(run.count("valid"), 1);
    assert_eq!(run.count("skipped"), 1);
    assert_eq!(
        run.requests(),
        vec![json!({"From_Account": "u2", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Bo"},
        ]})]
    );

    let run = ws.run([
        "import",
        "empty.csv",
        "--dry-run",
        "--show-requests",
        "5",
        "--empty",
        "clear",
    ]);
    run.assert_code(0);
    assert_eq!(run.count("valid"), 2);
    assert_eq!(run.count("skipped"), 0);
    let requests = run.requests();
    assert_eq!(
        requests[0],
        json!({"From_Account": "u1", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": ""},
            {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Unknown"},
            {"Tag": "Tag_Profile_IM_BirthDay", "Value": 0},
            {"Tag": "Tag_Profile_IM_AllowType", "Value": "AllowType_Type_NeedConfirm"},
            {"Tag": "Tag_Profile_IM_Level", "Value": 0},
            {"Tag": "Tag_Profile_Custom_Hobby", "Value": ""},
        ]})
    );
    assert_eq!(requests[1]["ProfileItem"][0]["Value"], "Bo");
    assert_eq!(requests[1]["ProfileItem"].as_array().unwrap().len(), 6);
}

#[test]
fn show_requests_prints_only_the_first_n_valid_rows() {
    let ws = Workspace::new();
    ws.write("n.csv", "UserID,Level\nu1,x\nu2,2\nu3,3\nu4,4\n");
    let run = ws.run(["import", "n.csv", "--dry-run", "--show-requests", "2"]);
    run.assert_code(3);
    let users: Vec<_> = run
        .requests()
        .iter()
        .map(|r| r["From_Account"].clone())
        .collect();
    assert_eq!(users, vec![json!("u2"), json!("u3")]);
    let run = ws.run(["import", "n.csv", "--dry-run"]);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn relaxed_user_id_accepts_printable_ascii() {
    let ws = Workspace::new();
    ws.write("ids.csv", "UserID,Nick\na@b.c,Ann\n");
    let run = ws.run(["import", "ids.csv", "--dry-run"]);
    run.assert_code(3);
    let run = ws.run(["import", "ids.csv", "--dry-run", "--relaxed-user-id"]);
    run.assert_code(0);
    assert_eq!(run.count("valid"), 1);
}

#[test]
fn duplicate_user_ids_are_reported_in_the_summary() {
    let ws = Workspace::new();
    ws.write(
        "dups.csv",
        "UserID,Nick\nu1,A\nu2,B\nu1,C\nu3,D\nu1,E\nu2,F\n",
    );
    let run = ws.run(["import", "dups.csv", "--dry-run"]);
    run.assert_code(0);
    assert_eq!(run.count("rows read"), 6);
    // Each user is sent once, its rows merged: u1's first two rows and u2's first are merged
    // into their users' last rows.
    assert_eq!(run.count("valid"), 3);
    assert_eq!(run.count("superseded"), 3);
    assert_eq!(run.count("duplicate users"), 2);
    let line = run.line("duplicate users");
    assert!(line.contains("3 extra rows"), "{line}");
    assert!(line.contains("a user's rows are merged"), "{line}");
    assert!(line.ends_with("u1 ×3, u2 ×2"), "{line}");
}

#[test]
fn empty_user_ids_are_not_reported_as_duplicates() {
    let ws = Workspace::new();
    ws.write("blank-ids.csv", "UserID,Nick\n,A\nu1,B\n,C\n");
    let run = ws.run(["import", "blank-ids.csv", "--dry-run"]);
    run.assert_code(3);
    assert_eq!(run.count("invalid"), 2);
    assert_eq!(
        run.count("duplicate users"),
        0,
        "rows without a UserID are not a user:\n{}",
        run.stderr
    );
}

// ── the failure CSV ────────────────────────────────────────────────────────────────────────

/// A mix of valid rows and rows that each break a value rule (one with several, one with bytes
/// that are not UTF-8, one with a quoted newline).
fn mixed_input() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"UserID,Nick,Gender,Level,SelfSignature,Custom_Hobby\n");
    bytes.extend_from_slice(b"ok_1,Ann,f,1,hi,chess\n");
    bytes.extend_from_slice(b"bad id,Bob,m,2,,\n");
    bytes.extend_from_slice(b"multi.bad,,yes,x,\"line1\nline2\",\n");
    bytes.extend_from_slice(b"ok_2,Cat,,3,\"multi\nline\",\n");
    bytes.extend_from_slice(format!("long_nick,{},,4,,\n", "中".repeat(167)).as_bytes());
    bytes.extend_from_slice(b"bad_gender,Dan,robot,5,\"quote \"\"q\"\", comma\",go\n");
    bytes.extend_from_slice(b"lvl,Eve,f,-1,,\n");
    bytes.extend_from_slice(b"utf8,Fr\xe9d,m,6,,\n");
    bytes.extend_from_slice(b"ok_3,Gus,m,7,,\n");
    bytes.extend_from_slice(b"nothing,,,,,\n");
    bytes
}

/// The records of a failure CSV without the `_line` column (which differs between files).
fn without_line(records: Vec<Vec<Vec<u8>>>) -> Vec<Vec<Vec<u8>>> {
    records
        .into_iter()
        .map(|mut r| {
            r.pop();
            r
        })
        .collect()
}

#[test]
fn failure_csv_round_trips_through_a_second_run() {
    let ws = Workspace::new();
    ws.write("mixed.csv", mixed_input());
    let first = ws.run(["import", "mixed.csv", "--dry-run"]);
    first.assert_code(3);
    assert_eq!(first.count("rows read"), 10);
    assert_eq!(first.count("valid"), 3);
    assert_eq!(first.count("invalid"), 6);
    assert_eq!(first.count("skipped"), 1);
    // Default naming: `<stem>.dry-run-failures.csv` beside the input.
    let first_path = ws.path("mixed.dry-run-failures.csv");
    assert!(
        first.stderr.contains("mixed.dry-run-failures.csv"),
        "{}",
        first.stderr
    );
    let first_records = read_csv_bytes(&first_path);
    assert_eq!(first_records.len(), 7);
    let codes: Vec<&[u8]> = first_records[1..].iter().map(|r| &r[6][..]).collect();
    assert_eq!(
        codes,
        [
            &b"40001"[..],
            b"40001",
            b"40601",
            b"40605",
            b"40605",
            b"bad_utf8",
        ]
    );

    // Feed the failure CSV back in: the appended columns are ignored, the same rows fail the
    // same way, and the default name does not overwrite the file being read.
    let second = ws.run(["import", "mixed.dry-run-failures.csv", "--dry-run"]);
    second.assert_code(3);
    assert_eq!(second.count("rows read"), 6);
    assert_eq!(second.count("valid"), 0);
    assert_eq!(second.count("invalid"), 6);
    assert_eq!(second.count("skipped"), 0);
    let second_path = ws.path("mixed.dry-run-failures.dry-run-failures.csv");
    let second_records = read_csv_bytes(&second_path);
    assert_eq!(
        read_csv_bytes(&first_path),
        first_records,
        "input was changed"
    );
    assert_eq!(second_records[0], first_records[0], "same header");
    assert_eq!(
        without_line(second_records.clone()),
        without_line(first_records),
        "the second failure CSV must hold exactly the same rows, cells, codes and messages"
    );
    let lines: Vec<&[u8]> = second_records[1..]
        .iter()
        .map(|r| &r[r.len() - 1][..])
        .collect();
    // Lines in the failure CSV itself: the `multi.bad` row spans lines 3-4.
    assert_eq!(lines, [&b"2"[..], b"3", b"5", b"6", b"7", b"8"]);

    // And a third pass with an explicit --failures path gives the same again.
    let third = ws.run([
        "import",
        "mixed.dry-run-failures.dry-run-failures.csv",
        "--dry-run",
        "--failures",
        "third.csv",
    ]);
    third.assert_code(3);
    assert_eq!(read_csv_bytes(&ws.path("third.csv")), second_records);
}

#[test]
fn failure_csv_round_trip_keeps_ragged_rows_unchanged() {
    let ws = Workspace::new();
    ws.write(
        "ragged.csv",
        "UserID,Nick,Level\nu1,A,1\nu2,B\nu3,C,3,extra\nu4,D,x\n",
    );
    ws.run(["import", "ragged.csv", "--dry-run"]).assert_code(3);
    let (header, first) = read_failures(&ws.path("ragged.dry-run-failures.csv"));
    assert_eq!(header, strings(&["UserID", "Nick", "Level"]));
    let first_data: Vec<_> = first
        .iter()
        .map(|r| (r.data.clone(), r.code.clone()))
        .collect();
    assert_eq!(
        first_data,
        vec![
            (strings(&["u2", "B"]), "field_count".to_string()),
            (
                strings(&["u3", "C", "3", "extra"]),
                "field_count".to_string()
            ),
            (strings(&["u4", "D", "x"]), "40610".to_string()),
        ]
    );

    ws.run(["import", "ragged.dry-run-failures.csv", "--dry-run"])
        .assert_code(3);
    let (header, second) = read_failures(&ws.path("ragged.dry-run-failures.dry-run-failures.csv"));
    assert_eq!(header, strings(&["UserID", "Nick", "Level"]));
    let second_data: Vec<_> = second
        .iter()
        .map(|r| (r.data.clone(), r.code.clone()))
        .collect();
    assert_eq!(
        second_data, first_data,
        "re-importing a failure CSV must not change the data cells of ragged rows"
    );
}

#[cfg(unix)]
#[test]
fn failure_csv_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;

    let ws = Workspace::new();
    ws.write("in.csv", "UserID,Level\nu1,x\n");
    ws.run(["import", "in.csv", "--dry-run"]).assert_code(3);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ws.path("in.dry-run-failures.csv")), 0o600);

    // An existing, world-readable file at the path is made private too.
    let stale = ws.write("old.csv", "stale");
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
    ws.run(["import", "in.csv", "--dry-run", "--failures", "old.csv"])
        .assert_code(3);
    assert_eq!(mode(&stale), 0o600);
    assert_eq!(read_csv(&stale)[0][..2], strings(&["UserID", "Level"]));
}

#[test]
fn a_clean_run_leaves_no_failure_csv() {
    let ws = Workspace::new();
    ws.write("clean.csv", "UserID,Nick\nu1,A\nu2,\n");
    // A stale failure CSV from an earlier dry run is removed, so it is never mistaken for this
    // one's.
    ws.write(
        "clean.dry-run-failures.csv",
        "UserID,Nick,_error_code\nu1,A,40001\n",
    );
    // The failure CSV an import left is the list of rows still to retry: a dry run of the same
    // file leaves it alone.
    let import_failures = "UserID,Nick,_error_code\nu2,,40003\n";
    ws.write("clean.failures.csv", import_failures);
    let run = ws.run(["import", "clean.csv", "--dry-run"]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("failure CSV      none"),
        "{}",
        run.stderr
    );
    assert_eq!(
        files_in(ws.dir()),
        vec!["clean.csv".to_string(), "clean.failures.csv".to_string()]
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("clean.failures.csv")).unwrap(),
        import_failures
    );
}

/// Invalid rows and a failure CSV that cannot be created (its folder is missing; or, when the
/// tests do not run as root, read-only): the counts are still shown, then the reason and what
/// to do, exit 1, and the JSON summary says 1 too. Before, the run stopped at the first invalid
/// row with the error alone: no summary.
#[test]
fn a_dry_run_that_cannot_write_its_failure_csv_shows_its_counts_then_says_to_pass_failures() {
    let ws = Workspace::new();
    ws.write(
        "users.csv",
        "UserID,Nick,Level
u1,A,1
u2,B,x
u3,C,3
u4,D,y
",
    );
    let check = |run: &Run, path: &str| {
        run.assert_code(1);
        assert_eq!(
            (
                run.count("rows read"),
                run.count("valid"),
                run.count("invalid")
            ),
            (4, 2, 2),
            "{}",
            run.stderr
        );
        assert!(
            has_line(&run.stderr, "failure CSV not written"),
            "{}",
            run.stderr
        );
        let error = run.line("error: ");
        assert!(
            error.contains(&format!("cannot create the failure CSV {path}"))
                && error.contains("pass --failures PATH"),
            "{}",
            run.stderr
        );
        // The summary comes first, the reason last.
        let summary_at = run.stderr.find("rows read").unwrap();
        assert!(
            summary_at < run.stderr.find("error: ").unwrap(),
            "{}",
            run.stderr
        );
    };
    let run = ws.run([
        "import",
        "users.csv",
        "--dry-run",
        "--failures",
        "no-such-dir/f.csv",
        "--summary-json",
        "run.json",
    ]);
    check(&run, "no-such-dir/f.csv");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("run.json")).unwrap()).unwrap();
    assert_eq!(
        (json["exit_code"].as_u64(), json["invalid"].as_u64()),
        (Some(1), Some(2))
    );

    // The default path beside the input, in a folder the run cannot write to.
    use std::os::unix::fs::PermissionsExt;
    let dir = ws.path("ro");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(ws.path("users.csv"), dir.join("users.csv")).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let writable = std::fs::write(dir.join("probe"), b"").is_ok();
    let run = crate::util::run_in(&dir, ["import", "users.csv", "--dry-run"]);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if !writable {
        check(&run, "users.dry-run-failures.csv");
    }
}

#[test]
fn failure_path_equal_to_the_input_is_refused() {
    let ws = Workspace::new();
    let input = ws.write("same.csv", "UserID,Level\nu1,x\n");
    let run = ws.run([
        "import",
        "same.csv",
        "--dry-run",
        "--failures",
        "./same.csv",
    ]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("--failures ./same.csv is the input"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(&input).unwrap(), b"UserID,Level\nu1,x\n");
}

#[test]
fn missing_input_is_fatal() {
    let ws = Workspace::new();
    let run = ws.run(["import", "nope.csv", "--dry-run"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("cannot open nope.csv"),
        "{}",
        run.stderr
    );
    assert!(files_in(ws.dir()).is_empty());
}

// ── the command line ───────────────────────────────────────────────────────────────────────

#[test]
fn import_help_shows_examples_and_exit_codes() {
    let ws = Workspace::new();
    let run = ws.run(["import", "--help"]);
    run.assert_code(0);
    for expected in [
        "Examples:",
        "profile-import import users.csv --dry-run",
        "--show-requests 3",
        "--delimiter ';' --mapping mapping.toml",
        "Exit codes:",
        "0    every row valid",
        "1    fatal",
        "2    usage error",
        "3    finished, but some rows were invalid or failed",
        "--empty",
        "--failures",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            run.stdout
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let ws = Workspace::new();
    ws.write("u.csv", "UserID\nu1\n");
    for args in [
        &["import"][..],
        &["import", "u.csv", "--dry-run", "--delimiter", ";;"],
        &["import", "u.csv", "--dry-run", "--empty", "sometimes"],
        &["import", "u.csv", "--dry-run", "--no-such-flag"],
        &["import", "u.csv", "--dry-run", "--show-requests", "-1"],
    ] {
        let run = ws.run(args);
        run.assert_code(2);
        assert!(!run.stderr.is_empty(), "{args:?}");
    }
    assert_eq!(files_in(ws.dir()), vec!["u.csv".to_string()]);
}

#[test]
fn failure_columns_are_ignored_on_input() {
    let ws = Workspace::new();
    let mut header = vec!["UserID", "Nick"];
    header.extend(FAILURE_COLUMNS);
    ws.write(
        "retry.csv",
        format!("{}\nu1,Ann,40006,busy,send,5,,2\n", header.join(",")),
    );
    let run = ws.run(["import", "retry.csv", "--dry-run", "--show-requests", "1"]);
    run.assert_code(0);
    assert_eq!(
        run.requests(),
        vec![json!({"From_Account": "u1", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Ann"},
        ]})]
    );
}
