//! Log output: tracing-subscriber on stderr, text or JSON, at a level from -v/-q or RUST_LOG,
//! coloured as `--color` and NO_COLOR say. Lines go through the progress bar's writer so they
//! never tear it, and through the console, so a closed stderr never panics.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::app::cli::{ColorChoice, LogFormat};
use crate::run::progress::StderrWriter;

pub fn init(verbose: u8, quiet: bool, format: LogFormat, color: ColorChoice) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("profile_import={level},warn")));
    let colour = use_colour(color);
    // The progress bar draws through the `console` crate; it follows the same choice.
    console::set_colors_enabled_stderr(colour);
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

/// `auto`: colour only for a person at a terminal (cron logs and pipes get plain text), and
/// never with NO_COLOR set (https://no-color.org). `always`/`never` decide alone.
fn use_colour(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}
