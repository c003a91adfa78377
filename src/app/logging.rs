//! Log output: tracing-subscriber on stderr, text or JSON, at a level from -v/-q or RUST_LOG.
//! Lines go through the progress bar's writer so they never tear it, and through the console,
//! so a closed stderr never panics.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::app::cli::LogFormat;
use crate::run::progress::StderrWriter;

pub fn init(verbose: u8, quiet: bool, format: LogFormat) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("profile_import={level},warn")));
    // Colour only for a person at a terminal: cron logs and pipes get plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    crate::run::console::set_json_lines(format == LogFormat::Json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // A write error would be reported with eprintln!, which panics on a closed stderr.
        .log_internal_errors(false)
        .with_ansi(colour)
        .with_writer(StderrWriter::default)
        .with_target(false);
    // A second init (tests calling `run` twice in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
