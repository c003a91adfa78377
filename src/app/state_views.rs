//! `state runs` and `state failed`: the run history and the users whose last send failed, as
//! text tables (control characters escaped, as in every line the tool prints: an input's name or
//! Chat's message could hold them) or as JSON.

use std::path::Path;

use anyhow::bail;

use crate::app::logging::escape_controls;
use crate::run::console;
use crate::store::state::history::{self, FailedUser, Run};

/// `state runs PATH [--limit N] [--id N] [--json]`.
pub fn runs(path: &Path, limit: u64, id: Option<i64>, json: bool) -> anyhow::Result<()> {
    if let Some(id) = id {
        let Some(run) = history::run(path, id)? else {
            bail!(
                "{} has no run {id} in its history (it keeps the newest runs: see --keep-runs)",
                path.display()
            );
        };
        if json {
            print_json(&run.to_json(true))?;
        } else {
            console::out(whole_run(&run).as_bytes());
        }
        return Ok(());
    }
    let runs = history::runs(path, limit)?;
    if json {
        let list: Vec<serde_json::Value> = runs.iter().map(|run| run.to_json(false)).collect();
        print_json(&serde_json::Value::Array(list))
    } else {
        console::out(runs_table(&runs).as_bytes());
        Ok(())
    }
}

fn print_json(json: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(json)?;
    text.push('\n');
    console::out(text.as_bytes());
    Ok(())
}

/// A number, or `-` when the run has none.
fn show(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The command with its flags: `import --dry-run --full`.
fn command_line(run: &Run) -> String {
    let mut words = vec![run.command.as_str()];
    words.extend(run.flags.iter().map(String::as_str));
    escape_controls(&words.join(" "), &[])
}

/// One line per run, newest first, in aligned columns.
fn runs_table(runs: &[Run]) -> String {
    const HEADER: [&str; 11] = [
        "RUN",
        "STARTED (UTC)",
        "SECS",
        "EXIT",
        "ROWS",
        "SENT",
        "OK",
        "FAILED",
        "UNCHANGED",
        "COMMAND",
        "INPUT",
    ];
    let mut lines = vec![HEADER.map(String::from).to_vec()];
    for run in runs {
        lines.push(vec![
            run.id.to_string(),
            run.started(),
            show(run.seconds()),
            show(run.exit_code),
            show(run.rows),
            show(run.sent),
            show(run.ok),
            show(run.failed),
            show(run.unchanged),
            command_line(run),
            escape_controls(&run.input, &[]),
        ]);
    }
    // Numbers right-aligned; the start, the command and the input (the last) left-aligned.
    let left = [1, 9, 10];
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, cell)| match i {
                _ if i == HEADER.len() - 1 => cell.clone(),
                _ if left.contains(&i) => format!("{cell:<w$}", w = widths[i]),
                _ => format!("{cell:>w$}", w = widths[i]),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if runs.is_empty() {
        out.push_str("(no runs recorded)\n");
    }
    out
}

/// One run whole: what ran, on which input, how it ended, and its summary.
fn whole_run(run: &Run) -> String {
    let input = match (run.input_size, &run.input_hash) {
        (Some(size), Some(hash)) => format!("{} ({size} bytes, xxh3 {hash})", run.input),
        _ => run.input.clone(),
    };
    let ended = match (run.finished(), run.seconds()) {
        (Some(at), Some(secs)) => format!("{at} ({secs} s)"),
        _ => "did not finish (still running, or killed)".to_string(),
    };
    let mut out = format!(
        "run          {}\ncommand      {}\ninput        {}\nstarted      {}\nfinished     {ended}\n\
         exit code    {}\nrows         {}\nsent         {} (ok {}, failed {})\nunchanged    {}\n",
        run.id,
        command_line(run),
        escape_controls(&input, &[]),
        run.started(),
        show(run.exit_code),
        show(run.rows),
        show(run.sent),
        show(run.ok),
        show(run.failed),
        show(run.unchanged),
    );
    if let Some(note) = &run.note {
        out.push_str(&format!("note         {}\n", escape_controls(note, &[])));
    }
    if let Some(summary) = &run.summary {
        let text = serde_json::to_string_pretty(summary).unwrap_or_default();
        out.push_str("summary      ");
        out.push_str(&escape_controls(&text, &['\n']).replace('\n', "\n             "));
        out.push('\n');
    }
    out
}

/// `state failed PATH [--json]`: streamed, so a state with a million failed users does not
/// hold them all.
pub fn failed(path: &Path, json: bool) -> anyhow::Result<()> {
    let (user_width, code_width) = history::failed_widths(path)?;
    let (user_width, code_width) = (user_width.max(4), code_width.max(4));
    let mut first = true;
    if json {
        console::out(b"[");
    } else {
        console::out_line(
            format!(
                "{:<user_width$}  {:<code_width$}  RUN  FAILED AT (UTC)       MESSAGE",
                "USER", "CODE"
            )
            .as_bytes(),
        );
    }
    let count = history::failed_users(path, &mut |user: &FailedUser| {
        if json {
            let separator = if first { "\n  " } else { ",\n  " };
            console::out(format!("{separator}{}", user.to_json()).as_bytes());
        } else {
            let line = format!(
                "{:<user_width$}  {:<code_width$}  {:>3}  {}  {}",
                user.user_id,
                user.code,
                show(user.run_id),
                user.failed(),
                user.message
            );
            console::out_line(escape_controls(&line, &[]).as_bytes());
        }
        first = false;
        // Nobody reads the rest (`| head`): stop, and end as a closed stdout does.
        if console::closed() {
            return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into());
        }
        Ok(())
    })?;
    if json {
        let close: &[u8] = if first { b"]\n" } else { b"\n]\n" };
        console::out(close);
    } else {
        let users = if count == 1 { "user" } else { "users" };
        console::err_line(&format!("{count} {users} whose last send failed"));
    }
    Ok(())
}
