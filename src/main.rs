//! The binary: parse the command line, run, and pick the exit code (the only place that does).

use std::process::ExitCode;

use clap::Parser;
use profile_import::app::cli::Cli;
use profile_import::app::exit::ExitStatus;
use profile_import::run::console;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                ExitStatus::Usage.code()
            } else {
                ExitStatus::Success.code()
            });
        }
    };
    profile_import::app::logging::init(cli.verbose, cli.quiet, cli.log_format, cli.color);
    let status = match profile_import::app::commands::run(cli) {
        Ok(status) => status,
        Err(err) => match ExitStatus::of_error(&err) {
            ExitStatus::OutputClosed => ExitStatus::OutputClosed,
            status => {
                // An error may quote a cell (a header name): its control characters are
                // escaped, the message's own line breaks kept.
                profile_import::app::logging::fatal(&format!("{err:#}"));
                status
            }
        },
    };
    // Whatever else happened, output the caller asked for was lost: say so in the status.
    if console::closed() {
        return ExitCode::from(ExitStatus::OutputClosed.code());
    }
    ExitCode::from(status.code())
}
