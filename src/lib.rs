//! profile-import: bulk-import user profiles from CSV into Tencent Cloud Chat.
//!
//! # Layout
//! - [`cli`]: clap definitions and `--help` text.
//! - [`job`]: validated job settings built from the command line.
//! - [`input`]: the CSV reader (encoding checks, header, streaming records).
//! - [`header`]: column → tag resolution and the mapping file.
//! - [`profile`]: Chat's field table and per-value rules.
//! - [`row`]: one record → one portrait_set body (shared by the dry run and the send).
//! - [`dupes`]: duplicate UserIDs in constant memory.
//! - [`failures`]: the failure CSV writer.
//! - [`dry_run`]: validation without sending.
//! - [`summary`], [`progress`], [`logging`]: what the user sees.
//! - [`exit`]: exit statuses (picked only in `main`).

pub mod cli;
pub mod dry_run;
pub mod dupes;
pub mod exit;
pub mod failures;
pub mod header;
pub mod input;
pub mod job;
pub mod logging;
pub mod outcome;
pub mod profile;
pub mod progress;
pub mod row;
pub mod summary;

use cli::{Cli, Command};
use exit::ExitStatus;
use job::JobInput;
use summary::Summary;

/// Runs one command and says how it ended. Errors returned here are fatal (exit 1).
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Import(args) => {
            let job = JobInput::from_args(&args.input)?;
            if args.dry_run {
                let show = args
                    .show_requests
                    .unwrap_or(if cli.verbose > 0 { 3 } else { 0 });
                let summary = dry_run::run(&job, show)?;
                eprint!("{summary}");
                Ok(status_of(&summary))
            } else {
                anyhow::bail!("sending is not built yet")
            }
        }
        _ => anyhow::bail!("not built yet"),
    }
}

/// The exit status a finished run earns.
pub fn status_of(summary: &Summary) -> ExitStatus {
    if summary.has_failures() {
        ExitStatus::RowsFailed
    } else {
        ExitStatus::Success
    }
}
