//! Run history: with `--state`, every import (a dry run and the plan too) and every verify is
//! recorded in the state (`store::state::history`): the command and the options that change
//! what it sends or checks, its input, and how it ended — the exit status the process ends
//! with, its summary, or the error that stopped it. The record starts once the command's
//! settings are known (a usage error or missing settings leave none) and ends here, however the
//! command ended.

use std::path::Path;

use clap::ValueEnum;

use crate::app::cli::{EmptyArg, ImportArgs, InputArgs, VerifyArgs};
use crate::app::config::Config;
use crate::app::exit::ExitStatus;
use crate::run::summary::{Kind, Summary};
use crate::store::journal::Identity;
use crate::store::state::history::{self, RunCounts, RunEnd, RunRecord, RunStart};

/// A run being recorded, or not (no `--state`).
#[derive(Debug, Default)]
pub struct Recorder {
    record: Option<RunRecord>,
    end: RunEnd,
}

impl Recorder {
    /// Records nothing.
    pub fn off() -> Recorder {
        Recorder::default()
    }

    /// `import` in any mode, with `--state`; `sdkappid` is the app it talks to (None for a dry
    /// run, which talks to none).
    pub fn import(
        args: &ImportArgs,
        config: &Config,
        sdkappid: Option<u64>,
    ) -> anyhow::Result<Recorder> {
        let Some(state) = &args.state else {
            return Ok(Recorder::off());
        };
        // A real import's plan hashes the input anyway, and notes it in the record
        // (`StateDb::open_locked`); the other modes are hashed here. An input that cannot be
        // read fails the run itself, with a clearer message, and that is what gets recorded.
        let identity = args
            .dry_run
            .then(|| Identity::of(&config.job.input.path).ok())
            .flatten();
        let start = RunStart {
            command: "import".into(),
            flags: import_flags(args),
            input: args.input.csv.display().to_string(),
            identity,
            sdkappid,
            keep_runs: args.keep_runs,
        };
        Recorder::begin(state, &start)
    }

    /// `verify` with `--state`: history only.
    pub fn verify(args: &VerifyArgs, config: &Config, sdkappid: u64) -> anyhow::Result<Recorder> {
        let Some(state) = &args.state else {
            return Ok(Recorder::off());
        };
        let mut flags = Vec::new();
        if let Some(sample) = args.sample {
            flags.push(format!("--sample {sample}"));
        }
        input_flags(&args.input, &mut flags);
        let start = RunStart {
            command: "verify".into(),
            flags,
            input: args.input.csv.display().to_string(),
            identity: Identity::of(&config.job.input.path).ok(),
            sdkappid: Some(sdkappid),
            keep_runs: None,
        };
        Recorder::begin(state, &start)
    }

    fn begin(state: &Path, start: &RunStart) -> anyhow::Result<Recorder> {
        Ok(Recorder {
            record: Some(history::begin(state, start)?),
            end: RunEnd::default(),
        })
    }

    /// The run's id in the history, when it is recorded.
    pub fn run_id(&self) -> Option<i64> {
        self.record.as_ref().map(RunRecord::id)
    }

    /// Keeps the run's report, as `--summary-json` writes it, for the record of its end.
    pub fn summary(&mut self, summary: &Summary, status: ExitStatus) {
        if self.record.is_none() {
            return;
        }
        self.end.summary = Some(summary.to_json(status.as_ended().code()));
        self.end.counts = Some(RunCounts {
            rows: summary.rows,
            sent: (summary.kind == Kind::Import).then_some((summary.ok, summary.failed)),
            unchanged: matches!(summary.kind, Kind::Import | Kind::DryRun)
                .then_some(summary.unchanged),
        });
        self.end.note = summary.stopped.clone();
    }

    /// Records how the run ended, and passes its result on. A record that cannot be written
    /// leaves the run's result as it was, with a warning: the run itself is over by then.
    pub fn end(self, result: anyhow::Result<ExitStatus>) -> anyhow::Result<ExitStatus> {
        let Some(record) = self.record else {
            return result;
        };
        let mut end = self.end;
        let status = match &result {
            // Every command's report reaches `summary` unless a second signal gave it up.
            Ok(status) if end.summary.is_none() => {
                end.note = Some("stopped at once by a second signal, without a summary".into());
                *status
            }
            Ok(status) => *status,
            Err(err) => {
                end.note = Some(format!("{err:#}"));
                ExitStatus::of_error(err)
            }
        };
        end.exit_code = status.as_ended().code();
        if let Err(err) = record.finish(&end) {
            tracing::warn!(
                "the run's end is not recorded in the state's history (run {}): {err:#}",
                record.id()
            );
        }
        result
    }
}

/// The import's options that change what it sends (or, in a dry run, checks), as given.
fn import_flags(args: &ImportArgs) -> Vec<String> {
    let mut flags: Vec<String> = [
        (args.dry_run, "--dry-run"),
        (args.changes_only, "--changes-only"),
        (args.check_accounts, "--check-accounts"),
        (args.full, "--full"),
        (args.resume, "--resume"),
        (args.force, "--force"),
        (args.batch_nick_image, "--batch-nick-image"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, flag)| flag.to_string())
    .collect();
    if let Some(how) = args.create_accounts {
        flags.push(format!("--create-accounts {}", value_name(how)));
    }
    if let Some(max) = args.max_errors {
        flags.push(format!("--max-errors {max}"));
    }
    if !args.only_if_empty.is_empty() {
        flags.push(format!("--only-if-empty {}", args.only_if_empty.join(",")));
    }
    if let Some(limit) = args.guards.limit {
        flags.push(format!("--limit {limit}"));
    }
    if let Some(rate) = args.guards.max_error_rate {
        flags.push(format!("--max-error-rate {rate}"));
    }
    input_flags(&args.input, &mut flags);
    flags
}

/// The input options that change the rows' bodies or which rows are valid.
fn input_flags(input: &InputArgs, flags: &mut Vec<String>) {
    if input.empty != EmptyArg::Skip {
        flags.push(format!("--empty {}", value_name(input.empty)));
    }
    if let Some(mapping) = &input.mapping {
        flags.push(format!("--mapping {}", mapping.display()));
    }
    if let Some(column) = &input.user_column {
        flags.push(format!("--user-column {column}"));
    }
    if input.delimiter != b',' {
        flags.push(format!(
            "--delimiter {}",
            (input.delimiter as char).escape_default()
        ));
    }
    for column in &input.ignore {
        flags.push(format!("--ignore {column}"));
    }
    if input.relaxed_user_id {
        flags.push("--relaxed-user-id".into());
    }
    if input.strict_location {
        flags.push("--strict-location".into());
    }
    if !input.custom_fields.is_empty() {
        flags.push(format!("--custom-fields {}", input.custom_fields.join(",")));
    }
}

/// A value's name on the command line (`on-demand`, `clear`).
fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}
