//! What shows a run's report: the sinks. While the run goes they get its counters about once a
//! second (`progress`), and at the end the report and the exit code it earns (`finish`). The
//! app gives each run its sinks (`app::commands`); a new output is one more implementation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::run::console;
use crate::run::summary::Summary;

/// Something that shows a run's report.
pub trait Sink: Send {
    fn progress(&mut self, _now: &Summary) {}

    fn finish(&mut self, _report: &Summary, _exit_code: u8) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The sinks a run updates while it goes; the app, which made them, finishes them.
#[derive(Clone, Default)]
pub struct LiveSinks(pub Vec<Arc<Mutex<dyn Sink>>>);

impl LiveSinks {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The run's counters so far.
    pub fn progress(&self, now: &Summary) {
        for sink in &self.0 {
            sink.lock().unwrap_or_else(|e| e.into_inner()).progress(now);
        }
    }
}

impl std::fmt::Debug for LiveSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveSinks({})", self.0.len())
    }
}

/// The text summary on stderr (one JSON line under `--log-format json`).
pub struct TextSummary;

impl Sink for TextSummary {
    fn finish(&mut self, report: &Summary, exit_code: u8) -> anyhow::Result<()> {
        print(report, exit_code);
        Ok(())
    }
}

/// `--summary-json PATH` (or `-`).
pub struct JsonSummary(pub PathBuf);

impl Sink for JsonSummary {
    fn finish(&mut self, report: &Summary, exit_code: u8) -> anyhow::Result<()> {
        write_json_value(&self.0, &report.to_json(exit_code))
    }
}

/// Prints the summary on stderr: the text table, or one JSON line under `--log-format json`
/// (type `summary`, with the fields of `--summary-json`).
pub fn print(summary: &Summary, exit_code: u8) {
    if console::json_lines() {
        let json = summary.to_json(exit_code);
        let message = format!(
            "{} summary: {} rows read, exit code {exit_code}",
            json["command"].as_str().unwrap_or("run"),
            summary.rows
        );
        let fields = json.as_object().cloned().unwrap_or_default();
        console::err_json_line("INFO", "summary", &message, &fields);
    } else {
        console::err(&summary.to_string());
    }
}

/// The file a summary is written to before it is renamed into place.
fn json_tmp_path(path: &Path) -> PathBuf {
    path.with_extension("json.tmp")
}

/// Writes a JSON summary to `path` atomically (a temporary file renamed into place), mode 0600;
/// or to stdout when `path` is `-`.
pub fn write_json_value(path: &Path, json: &serde_json::Value) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    if crate::input::stdin::is_stdin(path) {
        let mut text = serde_json::to_string_pretty(json)?;
        text.push('\n');
        crate::run::console::out(text.as_bytes());
        return Ok(());
    }
    let tmp = json_tmp_path(path);
    let mut file = crate::fsutil::create_private(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    serde_json::to_writer_pretty(&mut file, json)?;
    file.write_all(b"\n")?;
    file.sync_data()?;
    if let Err(err) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err).with_context(|| format!("cannot write the summary {}", path.display()));
    }
    Ok(())
}
