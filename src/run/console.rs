//! The tool's only way to stdout and stderr. A write never panics: when the reader of either
//! stream has gone away (a broken pipe, e.g. `| head -3`), the stream is marked closed, nothing
//! more is written to it, and the running import is stopped the way SIGTERM stops it (no new
//! rows sent, rows in flight finished, journal and failure CSV synced). The app layer turns a
//! closed stream into its own exit status.
//!
//! It also knows whether stderr carries JSON lines (`--log-format json`), and writes each of
//! them in the one shape every JSON line has (log lines, progress lines, the summary):
//! `timestamp` (UTC, RFC 3339 with milliseconds), `level`, `type` (`log`, `progress` or
//! `summary`) and `message`, then the line's own fields.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
static JSON_LINES: AtomicBool = AtomicBool::new(false);
/// The running import's stop token, cancelled when a stream closes.
static STOP: Mutex<Option<CancellationToken>> = Mutex::new(None);

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn closed_flag(self) -> &'static AtomicBool {
        match self {
            Stream::Stdout => &STDOUT_CLOSED,
            Stream::Stderr => &STDERR_CLOSED,
        }
    }
}

/// Writes to stdout (flushed at once). Does nothing once stdout is closed.
pub fn out(bytes: &[u8]) {
    write(Stream::Stdout, bytes);
}

/// Writes one line to stdout.
pub fn out_line(bytes: &[u8]) {
    let mut line = Vec::with_capacity(bytes.len() + 1);
    line.extend_from_slice(bytes);
    line.push(b'\n');
    out(&line);
}

/// Writes to stderr. Does nothing once stderr is closed.
pub fn err(text: &str) {
    write(Stream::Stderr, text.as_bytes());
}

/// Writes one line to stderr.
pub fn err_line(text: &str) {
    err(&format!("{text}\n"));
}

/// True once stdout or stderr has been found closed.
pub fn closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed) || STDERR_CLOSED.load(Ordering::Relaxed)
}

/// Progress lines and the summary are JSON lines (`--log-format json`).
pub fn set_json_lines(on: bool) {
    JSON_LINES.store(on, Ordering::Relaxed);
}

pub fn json_lines() -> bool {
    JSON_LINES.load(Ordering::Relaxed)
}

/// Writes one JSON line on stderr: the keys every line has, then `fields` (any of those keys
/// in `fields` is left out).
pub fn err_json_line(
    level: &str,
    kind: &str,
    message: &str,
    fields: &serde_json::Map<String, serde_json::Value>,
) {
    err_line(&json_line(level, kind, message, fields));
}

/// The text of one JSON line (see [`err_json_line`]).
pub fn json_line(
    level: &str,
    kind: &str,
    message: &str,
    fields: &serde_json::Map<String, serde_json::Value>,
) -> String {
    let string = |text: &str| serde_json::Value::from(text).to_string();
    let timestamp = crate::fsutil::utc_timestamp_millis(std::time::SystemTime::now());
    // Written by hand so the common keys come first, in this order, on every line.
    let mut line = format!(
        "{{\"timestamp\":{},\"level\":{},\"type\":{},\"message\":{}",
        string(&timestamp),
        string(level),
        string(kind),
        string(message)
    );
    for (key, value) in fields {
        if !COMMON_KEYS.contains(&key.as_str()) {
            line.push_str(&format!(",{}:{value}", string(key)));
        }
    }
    line.push('}');
    line
}

/// The keys every JSON line starts with.
pub const COMMON_KEYS: [&str; 4] = ["timestamp", "level", "type", "message"];

/// While the guard lives, a closed stream cancels `stop` (at once if one is closed already).
pub fn stop_on_close(stop: CancellationToken) -> StopOnClose {
    if closed() {
        stop.cancel();
    }
    *STOP.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop);
    StopOnClose(())
}

/// Unregisters the stop token when dropped.
pub struct StopOnClose(());

impl Drop for StopOnClose {
    fn drop(&mut self) {
        *STOP.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn write(stream: Stream, bytes: &[u8]) {
    if stream.closed_flag().load(Ordering::Relaxed) {
        return;
    }
    let result = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Stream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
    match result {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => close(stream),
        // Any other failure (a full disk under a redirect) loses this text only; the run's
        // own files report their own errors.
        Err(_) => {}
    }
}

fn close(stream: Stream) {
    if stream.closed_flag().swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(stop) = STOP.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        stop.cancel();
    }
}
