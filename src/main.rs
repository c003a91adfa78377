//! The binary: parse the command line, run, and pick the exit code (the only place that does).

use std::process::ExitCode;

use clap::Parser;
use profile_import::app::cli::Cli;
use profile_import::app::exit::ExitStatus;

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
    match profile_import::app::commands::run(cli) {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::from(ExitStatus::Success.code());
            }
            eprintln!("error: {err:#}");
            ExitCode::from(ExitStatus::Fatal.code())
        }
    }
}
