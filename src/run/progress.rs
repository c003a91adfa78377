//! Progress display on stderr: an indicatif bar when stderr is a terminal, plain periodic lines
//! when it is not (cron), and a log writer that prints above the bar instead of through it.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar currently drawn, if any, so log lines can be printed above it.
fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();
    BAR.get_or_init(|| Mutex::new(None))
}

/// A stderr writer for tracing that suspends the progress bar while a line is written.
#[derive(Default)]
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Every log line passes here, including other crates' at RUST_LOG=trace: the last
        // guard that a request URL (it carries the UserSig) never reaches a log.
        let text = String::from_utf8_lossy(buf);
        let redacted = crate::chat::client::redact_usersig(&text);
        let bar = active_bar().lock().ok().and_then(|slot| slot.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(redacted.as_bytes()))?,
            None => std::io::stderr().write_all(redacted.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Counters shown while sending.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    pub done: u64,
    pub ok: u64,
    pub failed: u64,
    pub retries: u64,
    /// Requests per second over the last few seconds.
    pub rate: f64,
    /// The pace the job is held to now (below `--rate` while Chat throttles).
    pub pace: f64,
}

/// How progress is shown.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: Option<u64>,
    interval: Duration,
    last_line: Instant,
    enabled: bool,
}

impl Progress {
    /// A bar if stderr is a terminal and `allow_bar`; periodic lines otherwise; nothing if
    /// `quiet`.
    pub fn new(total: Option<u64>, allow_bar: bool, quiet: bool, interval: Duration) -> Progress {
        let bar = (allow_bar && !quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} rows  {msg}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            if let Ok(mut slot) = active_bar().lock() {
                *slot = Some(bar.clone());
            }
            bar
        });
        Progress {
            bar,
            total,
            interval,
            last_line: Instant::now(),
            enabled: !quiet,
        }
    }

    /// Shows the latest counters (cheap to call often; lines are rate-limited).
    pub fn update(&mut self, snap: Snapshot) {
        if let Some(bar) = &self.bar {
            bar.set_position(snap.done);
            bar.set_message(format!(
                "ok {}  failed {}  retries {}  {:.0}/s (pace {:.0}/s)",
                snap.ok, snap.failed, snap.retries, snap.rate, snap.pace
            ));
        } else if self.enabled && self.last_line.elapsed() >= self.interval {
            self.last_line = Instant::now();
            let of_total = self.total.map(|t| format!("/{t}")).unwrap_or_default();
            let _ = writeln!(
                StderrWriter,
                "progress: {}{of_total} rows  ok {}  failed {}  retries {}  {:.0} req/s  pace {:.0}/s",
                snap.done, snap.ok, snap.failed, snap.retries, snap.rate, snap.pace
            );
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Ok(mut slot) = active_bar().lock() {
                *slot = None;
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
