//! `--metrics-file PATH`: the run's figures in the Prometheus text format (version 0.0.4), for
//! node_exporter's textfile collector. Encoded by `prometheus-client`; written to a temporary
//! file in the same folder and renamed, so the collector never reads half a file: during a long
//! run about every `--progress-interval`, and when the run ends, however it ends. Every metric
//! carries the job's name (`--job-name`), so several syncs can share one folder and one alert
//! rule.
//!
//! `profile_import_last_success_timestamp_seconds` is the time of the last run that went through
//! all its rows (exit 0, or 3 when some rows failed but nothing stopped the run); a run that did
//! not (a fatal error, a signal, a guard) keeps the previous file's value, which is how an alert
//! on "no success for 26 hours" works.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::chat::retry::Answered;
use crate::run::sinks::Sink;
use crate::run::summary::{Kind, Summary};

/// The metric every run updates whatever it did.
const LAST_SUCCESS: &str = "profile_import_last_success_timestamp_seconds";

/// The metrics file of one job.
pub struct MetricsFile {
    path: PathBuf,
    job: String,
    started: SystemTime,
    /// The previous file's last success, kept when this run does not succeed.
    last_success: Option<f64>,
    /// When it was last written during the run, and how often it may be.
    written: Option<Instant>,
    every: Duration,
    /// The last counters seen, for a run that ends in an error before its report.
    last: Option<Summary>,
    /// The end of the run was written.
    finished: bool,
}

impl MetricsFile {
    /// The metrics of job `job`, written to `path` about `every` during the run.
    pub fn new(path: &Path, job: &str, every: Duration) -> MetricsFile {
        MetricsFile {
            path: path.to_path_buf(),
            job: job.to_string(),
            started: SystemTime::now(),
            last_success: previous_success(path, job),
            written: None,
            every,
            last: None,
            finished: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The end of a run that ended without a report of its end (an error): its last counters,
    /// if it got as far as any, and `exit_code`. Does nothing once the end was written.
    pub fn finish_if_open(&mut self, exit_code: u8) -> anyhow::Result<()> {
        if self.finished {
            return Ok(());
        }
        let last = self.last.take();
        self.write(last.as_ref(), Some(exit_code))
    }

    /// Writes the figures of `report` (if the run got as far as one) and `exit_code` (if it
    /// ended).
    pub fn write(&mut self, report: Option<&Summary>, exit_code: Option<u8>) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let went_through =
            report.is_some_and(|report| report.stopped.is_none() && report.refused.is_none());
        if exit_code.is_some_and(|code| code == 0 || (code == 3 && went_through)) {
            self.last_success = Some(seconds(now));
        }
        self.finished |= exit_code.is_some();
        let text = self.render(report, exit_code, now)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.path.with_file_name(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)
            .with_context(|| format!("cannot write the metrics file {}", tmp.display()))?;
        if let Err(err) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err)
                .with_context(|| format!("cannot write the metrics file {}", self.path.display()));
        }
        self.written = Some(Instant::now());
        Ok(())
    }

    fn render(
        &self,
        report: Option<&Summary>,
        exit_code: Option<u8>,
        now: SystemTime,
    ) -> anyhow::Result<String> {
        let mut registry = Registry::default();
        let job = vec![("job".to_string(), self.job.clone())];
        let gauge = |registry: &mut Registry, name: &str, help: &str, value: f64| {
            let family = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
            family.get_or_create(&job).set(value);
            registry.register(name, help, family);
        };
        gauge(
            &mut registry,
            "profile_import_last_run_timestamp_seconds",
            "When the last run started (Unix time)",
            seconds(self.started),
        );
        if let Some(success) = self.last_success {
            gauge(
                &mut registry,
                LAST_SUCCESS,
                "When a run last went through all its rows: exit 0, or 3 with nothing stopping it (Unix time)",
                success,
            );
        }
        let duration = now.duration_since(self.started).unwrap_or_default();
        gauge(
            &mut registry,
            "profile_import_run_duration_seconds",
            "How long the last run took, or has taken so far",
            duration.as_secs_f64(),
        );
        gauge(
            &mut registry,
            "profile_import_running",
            "1 while a run is going, 0 once it ended",
            if exit_code.is_some() { 0.0 } else { 1.0 },
        );
        if let Some(code) = exit_code {
            gauge(
                &mut registry,
                "profile_import_exit_code",
                "The exit code of the last run",
                f64::from(code),
            );
        }
        if let Some(report) = report {
            self.report_metrics(&mut registry, report, &job);
        }
        let mut text = String::new();
        encode(&mut text, &registry).context("cannot encode the metrics")?;
        Ok(text)
    }

    fn report_metrics(&self, registry: &mut Registry, report: &Summary, job: &[(String, String)]) {
        let labels = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            job.iter()
                .cloned()
                .chain(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .collect()
        };
        let rows_in_file = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        rows_in_file
            .get_or_create(&labels(&[]))
            .set(report.rows as f64);
        registry.register(
            "profile_import_rows_in_file",
            "Data rows in the input",
            rows_in_file,
        );
        let rows = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        for (outcome, count) in outcomes(report) {
            rows.get_or_create(&labels(&[("outcome", outcome)]))
                .set(count as f64);
        }
        registry.register(
            "profile_import_rows",
            "Rows by what became of them (the summary's buckets)",
            rows,
        );
        let requests = Family::<Vec<(String, String)>, Counter<u64>>::default();
        for (command, answered) in &report.calls {
            for (result, count) in results(answered) {
                requests
                    .get_or_create(&labels(&[("command", command), ("result", result)]))
                    .inc_by(count);
            }
        }
        registry.register(
            "profile_import_requests",
            "Requests to Chat by command and how Chat answered them (ok, throttled, error)",
            requests,
        );
        if let Some((_, pace)) = report.pace {
            let family = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
            family.get_or_create(&labels(&[])).set(pace);
            registry.register(
                "profile_import_pace_per_second",
                "The pace portrait_set is held to now (below --rate while Chat throttles)",
                family,
            );
        }
    }
}

impl Sink for MetricsFile {
    fn progress(&mut self, now: &Summary) {
        self.last = Some(now.clone());
        if self.written.is_some_and(|at| at.elapsed() < self.every) {
            return;
        }
        // A metrics file that cannot be written during the run is reported once it ends.
        if let Err(err) = self.write(Some(now), None) {
            tracing::debug!("{err:#}");
        }
    }

    fn finish(&mut self, report: &Summary, exit_code: u8) -> anyhow::Result<()> {
        self.write(Some(report), Some(exit_code))
    }
}

/// The summary's buckets: every row is in exactly one.
fn outcomes(report: &Summary) -> Vec<(&'static str, u64)> {
    let mut buckets = vec![
        ("invalid", report.invalid),
        ("skipped", report.skipped),
        ("superseded", report.superseded),
    ];
    match report.kind {
        Kind::DryRun => buckets.extend([("valid", report.valid), ("unchanged", report.unchanged)]),
        Kind::Import => buckets.extend([
            ("ok", report.ok),
            ("failed", report.failed),
            ("unchanged", report.unchanged),
            ("not_attempted", report.not_attempted),
        ]),
        Kind::Plan | Kind::Verify | Kind::CheckAccounts => {}
    }
    buckets
}

fn results(answered: &Answered) -> [(&'static str, u64); 3] {
    [
        ("ok", answered.ok),
        ("throttled", answered.throttled),
        ("error", answered.error),
    ]
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs() as f64)
}

/// The last success the file at `path` holds for `job`, if it holds one.
fn previous_success(path: &Path, job: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let wanted = format!("{LAST_SUCCESS}{{job=\"{}\"}}", escape_label(job));
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse().ok())
}

/// A label value as the text format writes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
