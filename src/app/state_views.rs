//! `state failed`: the users whose last send failed, as a text table (control characters
//! escaped, as in every line the tool prints: Chat's message could hold them) or as JSON.

use std::path::Path;

use crate::app::logging::escape_controls;
use crate::run::console;
use crate::store::state::history::{self, FailedUser};

/// A number, or `-` when there is none.
fn show(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
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
