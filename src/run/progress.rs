//! Progress display on stderr: an indicatif bar when stderr is a terminal, plain periodic lines
//! when it is not (cron: each with a UTC timestamp, JSON lines under `--log-format json`), and
//! a log writer that prints above the bar instead of through it. The counters are the
//! summary's, under the summary's names; the ETA appears once rows have been done.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::console;

/// The bar currently drawn, if any, so log lines can be printed above it.
fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();
    BAR.get_or_init(|| Mutex::new(None))
}

/// A stderr writer for tracing that suspends the progress bar while a line is written. It
/// never fails: a closed stderr is the console's business (it stops the run).
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
            Some(bar) => bar.suspend(|| console::err(&redacted)),
            None => console::err(&redacted),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counters shown while sending: the summary's counters so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    /// Rows final so far, earlier runs' included.
    pub done: u64,
    pub ok: u64,
    pub failed: u64,
    pub invalid: u64,
    pub skipped: u64,
    pub unchanged: u64,
    pub superseded: u64,
    pub retries: u64,
    /// Requests per second over the last few seconds.
    pub rate: f64,
    /// The pace the job is held to now (below `--rate` while Chat throttles).
    pub pace: f64,
}

/// Updates kept to measure how fast rows are done (for the ETA).
const ETA_WINDOW: usize = 30;

/// How progress is shown.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: Option<u64>,
    interval: Duration,
    last_line: Instant,
    enabled: bool,
    /// (when, rows done) of recent updates.
    done_window: VecDeque<(Instant, u64)>,
}

impl Progress {
    /// With `show_progress` (no `--no-progress`) and not `quiet`: a bar if stderr is a terminal,
    /// periodic lines otherwise. Nothing else.
    pub fn new(
        total: Option<u64>,
        show_progress: bool,
        quiet: bool,
        interval: Duration,
    ) -> Progress {
        let enabled = show_progress && !quiet;
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} rows  {msg}")
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
            enabled,
            done_window: VecDeque::new(),
        }
    }

    /// Shows the latest counters (cheap to call often; lines are rate-limited).
    pub fn update(&mut self, snap: Snapshot) {
        let eta = self.eta(Instant::now(), snap.done);
        if let Some(bar) = &self.bar {
            bar.set_position(snap.done);
            let eta = eta.map(|eta| format!("  ETA {}", short_duration(eta)));
            bar.set_message(format!(
                "{}  retries {}  {:.0}/s (pace {:.0}/s){}",
                counts(&snap),
                snap.retries,
                snap.rate,
                snap.pace,
                eta.unwrap_or_default()
            ));
        } else if self.enabled && self.last_line.elapsed() >= self.interval {
            self.last_line = Instant::now();
            let timestamp = crate::fsutil::utc_timestamp(SystemTime::now());
            if console::json_lines() {
                console::err_json(&serde_json::json!({
                    "timestamp": timestamp,
                    "level": "INFO",
                    "type": "progress",
                    "done": snap.done,
                    "total": self.total,
                    "ok": snap.ok,
                    "failed": snap.failed,
                    "invalid": snap.invalid,
                    "skipped": snap.skipped,
                    "unchanged": snap.unchanged,
                    "superseded": snap.superseded,
                    "retries": snap.retries,
                    "requests_per_second": snap.rate.round(),
                    "pace_per_second": snap.pace.round(),
                    "eta_seconds": eta.map(|eta| eta.as_secs()),
                }));
                return;
            }
            let of_total = self.total.map(|t| format!("/{t}")).unwrap_or_default();
            let eta = eta.map(|eta| format!("  ETA {}", short_duration(eta)));
            let _ = writeln!(
                StderrWriter,
                "{timestamp} progress: {}{of_total} rows  {}  retries {}  {:.0} req/s  pace {:.0}/s{}",
                snap.done,
                counts(&snap),
                snap.retries,
                snap.rate,
                snap.pace,
                eta.unwrap_or_default()
            );
        }
    }

    /// The time left at the pace of the last updates; none until rows are being done.
    fn eta(&mut self, now: Instant, done: u64) -> Option<Duration> {
        self.done_window.push_back((now, done));
        while self.done_window.len() > ETA_WINDOW {
            self.done_window.pop_front();
        }
        let (first, last) = (self.done_window.front()?, self.done_window.back()?);
        let rows = last.1.checked_sub(first.1).filter(|&rows| rows > 0)?;
        let secs = last.0.duration_since(first.0).as_secs_f64();
        let left = self.total?.saturating_sub(done);
        // Rounded up: "ETA 0s" while rows are left would be wrong.
        (secs > 0.0).then(|| Duration::from_secs((left as f64 * secs / rows as f64).ceil() as u64))
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

/// `ok 3  failed 1  invalid 2`, plus the counters that apply to this run.
fn counts(snap: &Snapshot) -> String {
    let mut text = format!(
        "ok {}  failed {}  invalid {}",
        snap.ok, snap.failed, snap.invalid
    );
    for (label, count) in [
        ("skipped", snap.skipped),
        ("unchanged", snap.unchanged),
        ("superseded", snap.superseded),
    ] {
        if count > 0 {
            text.push_str(&format!("  {label} {count}"));
        }
    }
    text
}

/// `45s`, `3m05s`, `2h07m`.
fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_eta_before_rows_are_done_then_the_pace_of_the_last_updates() {
        let mut progress = Progress::new(Some(1000), false, true, Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(progress.eta(start, 0), None);
        assert_eq!(progress.eta(start + Duration::from_secs(1), 0), None);
        // 100 rows in the 3 s measured: 900 left at 33 rows/s.
        let eta = progress.eta(start + Duration::from_secs(3), 100).unwrap();
        assert_eq!(eta, Duration::from_secs(27));
        assert_eq!(short_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(short_duration(Duration::from_secs(7620)), "2h07m");
    }

    #[test]
    fn the_progress_counters_use_the_summary_names() {
        let snap = Snapshot {
            ok: 5,
            failed: 1,
            invalid: 6,
            unchanged: 2,
            ..Snapshot::default()
        };
        assert_eq!(counts(&snap), "ok 5  failed 1  invalid 6  unchanged 2");
    }
}
