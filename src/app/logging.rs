//! Log output: tracing-subscriber on stderr, text or JSON, at a level from -v/-q or RUST_LOG,
//! coloured as `--color` and NO_COLOR say. Lines go through the progress bar's writer so they
//! never tear it, and through the console, so a closed stderr never panics. Control characters
//! in a logged value (a CSV cell, Chat's ErrorInfo) are escaped here, for every log line.
//!
//! Under `--log-format json` a log line has the shape of every JSON line (`run::console`):
//! `timestamp`, `level`, `type` `log`, `message`, then the event's fields at the top level; a
//! row warning's are `line` and `column` (null for a rule about the whole row). The text
//! format leaves those two out: the message already names them.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
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
        .with_target(false);
    // A second init (tests calling `run` twice in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder
            .fmt_fields(EscapedFields)
            .with_writer(StderrWriter::default)
            .without_time()
            .try_init(),
        LogFormat::Json => builder
            .event_format(JsonLines)
            .with_writer(|| JsonControls(StderrWriter))
            .try_init(),
    };
}

/// A row warning's fields (`tracing::warn!(line, column, …)`): JSON lines carry them, text
/// lines do not repeat them (the message names both).
const ROW_FIELDS: [&str; 2] = ["line", "column"];

/// A line of the tool's own on stderr that is not a log event (a signal's notice): as it is in
/// text, one JSON log line at `level` under `--log-format json`.
pub fn notice(level: &str, text: &str) {
    if crate::run::console::json_lines() {
        crate::run::console::err_json_line(level, "log", text, &serde_json::Map::new());
    } else {
        crate::run::console::err_line(text);
    }
}

/// The error that ends the run: `error: …` in text (control characters escaped, its own line
/// breaks kept), a JSON log line at level `ERROR` under `--log-format json`.
pub fn fatal(text: &str) {
    if crate::run::console::json_lines() {
        crate::run::console::err_json_line("ERROR", "log", text, &serde_json::Map::new());
    } else {
        let text = format!("error: {text}");
        crate::run::console::err_line(&escape_controls(&text, &['\n']));
    }
}

/// `--log-format json`'s event format: one JSON line per event, in `run::console`'s shape.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        if fields.map.contains_key(ROW_FIELDS[0]) {
            fields
                .map
                .entry(ROW_FIELDS[1])
                .or_insert(serde_json::Value::Null);
        }
        let level = event.metadata().level().as_str();
        let line = crate::run::console::json_line(level, "log", &fields.message, &fields.map);
        writeln!(writer, "{line}")
    }
}

/// An event's message and its other fields as JSON values.
#[derive(Default)]
struct JsonFields {
    message: String,
    map: serde_json::Map<String, serde_json::Value>,
}

impl JsonFields {
    fn insert(&mut self, field: &Field, value: serde_json::Value) {
        let name = field.name().trim_start_matches("r#");
        // Log metadata of events bridged from the `log` crate.
        if name.starts_with("log.") {
            return;
        }
        if name == "message" {
            self.message = value.as_str().map(str::to_string).unwrap_or_default();
        } else {
            self.map.insert(name.to_string(), value);
        }
    }
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // A message arrives as `format_args!`, whose Debug is its text.
        self.insert(field, format!("{value:?}").into());
    }
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

/// `text` with every control character (C0, DEL, C1) but the line breaks in `keep` written as
/// a Rust escape (`\n`, `\0`, `\u{1b}`, `\u{9b}`): a value can then neither start a line that
/// looks like the tool's own nor send the terminal a control sequence.
pub fn escape_controls(text: &str, keep: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    // Writing to a String cannot fail.
    let _ = EscapeControls {
        out: &mut out,
        keep,
    }
    .write_str(text);
    out
}

/// A `fmt::Write` that escapes control characters on their way to `out`.
struct EscapeControls<'a, W> {
    out: W,
    keep: &'a [char],
}

impl<W: fmt::Write> fmt::Write for EscapeControls<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some((at, c)) = rest
            .char_indices()
            .find(|&(_, c)| c.is_control() && !self.keep.contains(&c))
        {
            self.out.write_str(&rest[..at])?;
            write!(self.out, "{}", c.escape_debug())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.out.write_str(rest)
    }
}

/// The text format's fields: the message, then `name=value` pairs, as tracing-subscriber's
/// default writes them, with control characters escaped in all of them. (tracing-subscriber
/// escapes ESC and a few others in the message only, and leaves line breaks and NUL alone.)
struct EscapedFields;

impl<'w> MakeVisitor<Writer<'w>> for EscapedFields {
    type Visitor = EscapingVisitor<'w>;

    fn make_visitor(&self, writer: Writer<'w>) -> EscapingVisitor<'w> {
        EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        }
    }
}

struct EscapingVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        // Log metadata of events bridged from the `log` crate, which the formatter shows itself,
        // and a row warning's line and column, which its message states.
        if self.result.is_err()
            || field.name().starts_with("log.")
            || ROW_FIELDS.contains(&field.name())
        {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        let name = field.name().trim_start_matches("r#");
        self.result = if name == "message" {
            self.writer.write_str(separator)
        } else {
            write!(self.writer, "{separator}{name}=")
        }
        .and_then(|()| {
            EscapeControls {
                out: &mut self.writer,
                keep: &[],
            }
            .write_fmt(value)
        });
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, format_args!("{value}"));
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // A message's Debug is its text: it arrives as `format_args!`.
        self.field(field, format_args!("{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// JSON log lines: serde_json already escapes C0 characters (line breaks, NUL, ESC) inside
/// strings, but writes DEL and C1 characters as they are. Outside strings a JSON line holds
/// only printable ASCII, so each of those is inside a string and becomes its `\u00XX` escape,
/// which decodes to the same text.
struct JsonControls(StderrWriter);

impl std::io::Write for JsonControls {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let raw = |c: char| c >= '\u{7f}' && c.is_control();
        let text = String::from_utf8_lossy(buf);
        if !text.contains(raw) {
            return self.0.write(buf);
        }
        let mut escaped = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if raw(c) {
                let _ = write!(escaped, "\\u{:04x}", u32::from(c));
            } else {
                escaped.push(c);
            }
        }
        self.0.write_all(escaped.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_line_breaks_kept_only_when_asked() {
        let cell = "u1\n WARN fake\r\0\t\u{1b}[31m\u{7f}\u{9b}é中";
        assert_eq!(
            escape_controls(cell, &[]),
            r"u1\n WARN fake\r\0\t\u{1b}[31m\u{7f}\u{9b}é中"
        );
        assert_eq!(escape_controls("two\nlines\0", &['\n']), "two\nlines\\0");
    }
}
