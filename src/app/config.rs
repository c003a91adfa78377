//! The command line made into one validated value per command, in one place: the job (its
//! input, rules, modes and files), how it calls Chat, and the outputs it writes at the end —
//! checked against each other and the input (`store::outputs`) before anything is read or
//! written. Every command and the demo build their settings here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use crate::app::cli::{CallArgs, CheckAccountsArgs, ImportArgs, InputArgs, VerifyArgs};
use crate::chat::client::ClientTuning;
use crate::chat::retry::RetryPolicy;
use crate::input::profile::UserIdRule;
use crate::input::reader::InputOptions;
use crate::input::row::{LocationRule, QuoteRule, RowRules};
use crate::input::stdin::StdinSpool;
use crate::run::job::{BatchOptions, JobInput};
use crate::run::send::SendSettings;
use crate::store::failures::{self, FailuresOf};
use crate::store::outputs::RunFiles;

/// One command's settings.
pub struct Config {
    pub job: JobInput,
    pub send: SendSettings,
    pub tuning: ClientTuning,
    /// The report CSV: the plan (`--plan`), verify's diff (`--diff`) or check-accounts' list of
    /// missing users (`--output`).
    pub report_csv: Option<PathBuf>,
    pub summary_json: Option<PathBuf>,
}

impl Config {
    /// `import` (a dry run, the plan, or a real import). `stdin`: the spooled copy when the
    /// input is `-` or a pipe.
    pub fn import(
        args: &ImportArgs,
        stdin: Option<&StdinSpool>,
        quiet: bool,
    ) -> anyhow::Result<Config> {
        let failures_of = if args.dry_run {
            FailuresOf::DryRun
        } else {
            FailuresOf::Import
        };
        let mut job = job(&args.input, stdin, failures_of)?;
        if let Some(journal) = &args.journal {
            job.journal = journal.clone();
        }
        job.resume = args.resume;
        job.force = args.force;
        job.create_accounts = args.create_accounts.map(Into::into);
        job.state = args.state.clone();
        job.full = args.full;
        job.changes_only = args.changes_only;
        job.batch_nick_image = args.batch_nick_image.then_some(BatchOptions {
            rate: args.batch_rate,
        });
        let mut send = send_settings(
            args.sending.rate,
            args.sending.concurrency,
            &args.sending.calls,
            quiet,
        );
        send.max_errors = args.max_errors;
        send.read_rate = args.read_rate;
        let plan = (args.dry_run && args.changes_only).then(|| {
            args.plan.clone().unwrap_or_else(|| {
                crate::run::changes::plan::default_path(named_after(&job, stdin))
            })
        });
        let config = Config {
            tuning: tuning(&args.sending.calls),
            job,
            send,
            report_csv: plan,
            summary_json: args.summary_json.clone(),
        };
        let mut files = config.files().output("--failures", &config.job.failures);
        if !args.dry_run {
            files = files.output("--journal", &config.job.journal);
            if let Some(state) = &config.job.state {
                files = files.output("--state", state);
            }
        }
        files
            .output_at_end("--plan", config.report_csv.as_deref())
            .check()?;
        Ok(config)
    }

    /// `verify`.
    pub fn verify(args: &VerifyArgs) -> anyhow::Result<Config> {
        let job = job(&args.input, None, FailuresOf::Verify)?;
        let diff = args
            .diff
            .clone()
            .unwrap_or_else(|| crate::run::verify::default_diff_path(&job.input.path));
        let mut send = send_settings(args.rate, None, &args.calls, false);
        send.read_rate = args.rate;
        let config = Config {
            tuning: tuning(&args.calls),
            job,
            send,
            report_csv: Some(diff),
            summary_json: args.summary_json.clone(),
        };
        config
            .files()
            .output("--failures", &config.job.failures)
            .output_at_end("--diff", config.report_csv.as_deref())
            .check()?;
        Ok(config)
    }

    /// `check-accounts`.
    pub fn check_accounts(args: &CheckAccountsArgs) -> anyhow::Result<Config> {
        let input: InputArgs = args.input.clone().into();
        let job = job(&input, None, FailuresOf::Import)?;
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| crate::fsutil::beside(&job.input.path, ".missing-accounts.csv"));
        let send = send_settings(args.rate, None, &args.calls, false);
        let config = Config {
            tuning: tuning(&args.calls),
            job,
            send,
            report_csv: Some(output),
            summary_json: args.summary_json.clone(),
        };
        config
            .files()
            .output_at_end("--output", config.report_csv.as_deref())
            .check()?;
        Ok(config)
    }

    /// The demo's import of `csv`, its outputs in `workdir`: a new app's migration, with the
    /// accounts created first, at Chat's default limit, with short backoffs.
    pub fn demo(csv: &Path, workdir: &Path, quiet: bool) -> Config {
        let mut job = JobInput::reading(
            InputOptions {
                path: csv.to_path_buf(),
                delimiter: b',',
                ..InputOptions::default()
            },
            RowRules::default(),
            workdir.join("users.failures.csv"),
            workdir.join("users.journal"),
        );
        job.create_accounts = Some(crate::run::accounts::CreateAccounts::Batch);
        let send = SendSettings {
            rate: 200,
            concurrency: SendSettings::default_concurrency(200),
            retry: RetryPolicy {
                max_attempts: 5,
                base_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
            },
            show_progress: true,
            quiet,
            progress_interval: Duration::from_secs(2),
            max_errors: None,
            read_rate: 200,
        };
        Config {
            job,
            send,
            tuning: ClientTuning::default(),
            report_csv: Some(workdir.join("users.diff.csv")),
            summary_json: None,
        }
    }

    /// The run's files: the input and the summary; each command adds its own.
    fn files(&self) -> RunFiles {
        RunFiles::reading(&self.job.input.path)
            .output_at_end("--summary-json", self.summary_json.as_deref())
    }
}

/// What a spooled input's outputs are named after: `stdin`, in the working folder.
fn named_after<'a>(job: &'a JobInput, stdin: Option<&StdinSpool>) -> &'a Path {
    if stdin.is_some() {
        Path::new("stdin")
    } else {
        job.input.path.as_path()
    }
}

/// How requests are sent, at most `rate` a second with `concurrency` in flight (clap has
/// already refused zero and negative values).
fn send_settings(
    rate: u32,
    concurrency: Option<usize>,
    args: &CallArgs,
    quiet: bool,
) -> SendSettings {
    SendSettings {
        rate,
        concurrency: concurrency.unwrap_or_else(|| SendSettings::default_concurrency(rate)),
        retry: RetryPolicy::with_attempts(args.max_attempts),
        show_progress: !args.no_progress,
        quiet,
        progress_interval: Duration::from_secs(args.progress_interval),
        max_errors: None,
        read_rate: 200,
    }
}

/// The client's timeouts: `--timeout` per request (checked by clap: a positive number of
/// seconds a Duration holds).
fn tuning(args: &CallArgs) -> ClientTuning {
    let tuning = ClientTuning {
        request_timeout: Duration::from_secs_f64(args.timeout),
        ..ClientTuning::default()
    };
    if tuning.request_timeout <= Duration::from_secs(3) {
        tracing::warn!(
            "--timeout {:?} is not above Chat's own 3 s timeout; slow answers will be cut off",
            tuning.request_timeout
        );
    }
    tuning
}

/// The job's input and rules from `--failures`, `--mapping`, `--user-column`, `--delimiter`,
/// `--empty`, `--relaxed-user-id`, `--ignore`, `--strict-location` and `--strict-quotes`.
///
/// `run`: whose failure CSV it is, for its default name beside the input (`--failures` says
/// otherwise). `stdin`: the spooled input when the CSV is `-` or a pipe or device given by name
/// (`/dev/stdin`); its failure CSV goes to the working folder (`stdin.failures.csv`,
/// `stdin.dry-run-failures.csv`). Without a spool such input is refused: only the callers that
/// can read it spool it.
fn job(args: &InputArgs, stdin: Option<&StdinSpool>, run: FailuresOf) -> anyhow::Result<JobInput> {
    let path = match stdin {
        Some(spool) => spool.path().to_path_buf(),
        None if crate::input::stdin::is_stdin(&args.csv) => bail!(
            "`-` (standard input) can be read by `import --dry-run` and by `import --state PATH` \
             only; give this command a file"
        ),
        None if crate::input::stdin::is_stream(&args.csv) => bail!(
            "{} is read once from start to end, as `-` (standard input) is (a pipe, a device, or \
             a name under /dev or /proc), so it can be read by `import --dry-run` and by \
             `import --state PATH` only; give this command a file",
            args.csv.display()
        ),
        None => args.csv.clone(),
    };
    let named_after = if stdin.is_some() {
        Path::new("stdin")
    } else {
        path.as_path()
    };
    let failures = args
        .failures
        .clone()
        .unwrap_or_else(|| failures::default_path(named_after, run));
    let journal = crate::store::journal::default_path(&path);
    Ok(JobInput::reading(
        InputOptions {
            path,
            delimiter: args.delimiter,
            user_column: args.user_column.clone(),
            mapping: args.mapping.clone(),
            ignore: args.ignore.clone(),
        },
        RowRules {
            empty: args.empty.into(),
            user_id: if args.relaxed_user_id {
                UserIdRule::PrintableAscii
            } else {
                UserIdRule::Strict
            },
            location: if args.strict_location {
                LocationRule::Strict
            } else {
                LocationRule::Documented
            },
            quotes: if args.strict_quotes {
                QuoteRule::Strict
            } else {
                QuoteRule::Warn
            },
        },
        failures,
        journal,
    ))
}
