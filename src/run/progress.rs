//! Progress display on stderr: an indicatif bar when stderr is a terminal, plain periodic lines
//! when it is not (cron: each with a UTC timestamp, JSON lines under `--log-format json`), and
//! a log writer that prints above the bar instead of through it, for every command that calls
//! Chat (import, verify, the `--changes-only` plan, check-accounts). The counters are the
//! summary's, under the summary's names; the ETA appears once rows have been done.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::console;
use crate::run::summary::{Kind, Summary};

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

/// What progress shows at one moment: rows done of the total, the command's counters under
/// its summary's names, and how fast Chat is being called.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Rows done so far (final, for an import; earlier runs' included).
    pub done: u64,
    /// (name, count, shown even when 0), in the summary's words: `ok`, `users checked` …
    pub counts: Vec<(&'static str, u64, bool)>,
    /// Attempts beyond the first (an import's).
    pub retries: Option<u64>,
    /// Requests made so far, for the rate over the last few seconds.
    pub requests: u64,
    /// The pace the calls are held to now (below the ceiling while Chat throttles).
    pub pace: f64,
}

impl Snapshot {
    /// An import's: the rows whose fate is final and how they ended, so the rows done always
    /// add up to the counters shown (rows in flight, or held after a transport error, are
    /// neither).
    pub fn import(summary: &Summary, requests: u64, pace: f64) -> Snapshot {
        Snapshot {
            done: summary.settled(),
            counts: vec![
                ("ok", summary.ok, true),
                ("failed", summary.failed, true),
                ("invalid", summary.invalid, true),
                ("skipped", summary.skipped, false),
                ("unchanged", summary.unchanged, false),
                ("superseded", summary.superseded, false),
            ],
            retries: Some(summary.retries),
            requests,
            pace,
        }
    }

    /// verify's and the `--changes-only` plan's: `done` rows taken in file order, and what the
    /// comparison found so far.
    pub fn comparison(summary: &Summary, done: u64, requests: u64, pace: f64) -> Snapshot {
        let compared = summary.compared.clone().unwrap_or_default();
        let counts = match summary.kind {
            Kind::Plan => vec![
                ("to update", compared.updated, true),
                ("unchanged", compared.unchanged_in_chat, true),
                ("not an account", compared.not_an_account, true),
                ("invalid", summary.invalid, true),
                ("not compared", compared.not_compared, false),
            ],
            _ => vec![
                (
                    "users checked",
                    compared.users_compared + compared.not_an_account + compared.not_compared,
                    true,
                ),
                ("differences", compared.differences, true),
                ("missing accounts", compared.not_an_account, true),
                ("not checked", summary.invalid, true),
                ("not compared", compared.not_compared, false),
            ],
        };
        Snapshot {
            done,
            counts,
            retries: None,
            requests,
            pace,
        }
    }

    /// check-accounts': `done` rows read, the users checked and those not imported.
    pub fn accounts(done: u64, checked: u64, missing: u64, requests: u64, pace: f64) -> Snapshot {
        Snapshot {
            done,
            counts: vec![
                ("users checked", checked, true),
                ("not imported", missing, true),
            ],
            retries: None,
            requests,
            pace,
        }
    }
}

/// How progress is shown: `--no-progress` (`show` false), `-q`, `--progress-interval`.
#[derive(Debug, Clone, Copy)]
pub struct ProgressOptions {
    pub show: bool,
    pub quiet: bool,
    pub interval: Duration,
}

/// Updates kept to measure how fast rows are done (for the ETA).
const ETA_WINDOW: usize = 30;
/// Updates kept to measure the request rate (about the last five seconds).
const RATE_WINDOW: usize = 6;

/// How progress is shown.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: Option<u64>,
    interval: Duration,
    last_line: Instant,
    enabled: bool,
    /// (when, rows done) of recent updates.
    done_window: VecDeque<(Instant, u64)>,
    /// (when, requests made) of recent updates.
    rate_window: VecDeque<(Instant, u64)>,
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
        // Under `--log-format json` every stderr line is JSON: periodic lines, even on a
        // terminal.
        let terminal = std::io::stderr().is_terminal() && !console::json_lines();
        let bar = (enabled && terminal).then(|| {
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
            rate_window: VecDeque::new(),
        }
    }

    /// [`Progress::new`] with the command's options.
    pub fn with(total: Option<u64>, options: ProgressOptions) -> Progress {
        Progress::new(total, options.show, options.quiet, options.interval)
    }

    /// Shows the latest counters. Meant for about once a second: the rate and the ETA are
    /// measured over the last updates, and lines are printed every `interval`.
    pub fn update(&mut self, snap: Snapshot) {
        let now = Instant::now();
        let eta = self.eta(now, snap.done);
        let rate = self.rate(now, snap.requests);
        let retries = snap
            .retries
            .map(|n| format!("  retries {n}"))
            .unwrap_or_default();
        if let Some(bar) = &self.bar {
            bar.set_position(snap.done);
            let eta = eta.map(|eta| format!("  ETA {}", short_duration(eta)));
            bar.set_message(format!(
                "{}{retries}  {rate:.0}/s (pace {:.0}/s){}",
                counts(&snap),
                snap.pace,
                eta.unwrap_or_default()
            ));
        } else if self.enabled && self.last_line.elapsed() >= self.interval {
            self.last_line = now;
            let of_total = self.total.map(|t| format!("/{t}")).unwrap_or_default();
            let eta_text = eta.map(|eta| format!("  ETA {}", short_duration(eta)));
            let text = format!(
                "progress: {}{of_total} rows  {}{retries}  {rate:.0} req/s  pace {:.0}/s{}",
                snap.done,
                counts(&snap),
                snap.pace,
                eta_text.unwrap_or_default()
            );
            if console::json_lines() {
                let fields = self.json_fields(&snap, rate, eta);
                console::err_json_line("INFO", "progress", &text, &fields);
                return;
            }
            let timestamp = crate::fsutil::utc_timestamp(SystemTime::now());
            let _ = writeln!(StderrWriter, "{timestamp} {text}");
        }
    }

    /// A progress line's own fields under `--log-format json`: the counts under the summary's
    /// names (`users checked` as `users_checked`), the total, the rate, the pace and the ETA.
    fn json_fields(
        &self,
        snap: &Snapshot,
        rate: f64,
        eta: Option<Duration>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut json = serde_json::Map::new();
        json.insert("done".into(), snap.done.into());
        json.insert("total".into(), self.total.into());
        for (name, count, _) in &snap.counts {
            json.insert(name.replace(' ', "_"), (*count).into());
        }
        if let Some(retries) = snap.retries {
            json.insert("retries".into(), retries.into());
        }
        json.insert("requests_per_second".into(), rate.round().into());
        json.insert("pace_per_second".into(), snap.pace.round().into());
        json.insert("eta_seconds".into(), eta.map(|eta| eta.as_secs()).into());
        json
    }

    /// Requests per second over the last updates.
    fn rate(&mut self, now: Instant, requests: u64) -> f64 {
        self.rate_window.push_back((now, requests));
        while self.rate_window.len() > RATE_WINDOW {
            self.rate_window.pop_front();
        }
        match (self.rate_window.front(), self.rate_window.back()) {
            (Some(first), Some(last)) if last.0 > first.0 => {
                last.1.saturating_sub(first.1) as f64 / (last.0 - first.0).as_secs_f64()
            }
            _ => 0.0,
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

/// `ok 3  failed 1  invalid 2`, plus the counters that apply to this run (those shown only
/// when not 0).
fn counts(snap: &Snapshot) -> String {
    snap.counts
        .iter()
        .filter(|(_, count, always)| *always || *count > 0)
        .map(|(name, count, _)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join("  ")
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
    use crate::run::fate::RowFate;

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
    fn the_progress_counters_use_the_summary_names_and_add_up_to_the_rows_done() {
        let mut summary = Summary::of(Kind::Import);
        for fate in [RowFate::Ok; 5] {
            summary.count(fate);
        }
        summary.count(RowFate::Failed { code: "40003" });
        summary.count_many(RowFate::Unchanged, 2);
        // A row left pending is not done, and shows nowhere.
        summary.count(RowFate::NotAttempted);
        let snap = Snapshot::import(&summary, 0, 200.0);
        assert_eq!(counts(&snap), "ok 5  failed 1  invalid 0  unchanged 2");
        assert_eq!(snap.done, 8);
    }
}
