//! The command line made into one validated value per command, in one place: the job (its
//! input, rules, modes and files), how it calls Chat, and the outputs it writes at the end —
//! checked against each other and the input (`store::outputs`) before anything is read or
//! written. Every command and the demo build their settings here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::{Arc, Mutex};

use anyhow::bail;

use crate::app::cli::{
    CallArgs, CheckAccountsArgs, GuardArgs, ImportArgs, InputArgs, MonitorArgs, VerifyArgs,
};
use crate::app::settings;
use crate::chat::client::ClientTuning;
use crate::chat::retry::RetryPolicy;
use crate::input::profile::UserIdRule;
use crate::input::reader::InputOptions;
use crate::input::row::{LocationRule, QuoteRule, RowRules};
use crate::input::stdin::StdinSpool;
use crate::run::job::{BatchOptions, Guards, JobInput};
use crate::run::metrics::MetricsFile;
use crate::run::send::SendSettings;
use crate::run::sinks::{LiveSinks, Sink};
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
    /// `--metrics-file`: written during the run (import) and at its end, however it ends.
    pub metrics: Metrics,
}

/// The metrics file of a run, shared by the run (which updates it as it goes) and the app
/// (which writes its end).
pub type Metrics = Option<Arc<Mutex<MetricsFile>>>;

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
        let declared = settings::custom_fields(&args.input.custom_fields, &args.connection)?;
        let mut job = job(&args.input, stdin, failures_of, declared)?;
        if let Some(journal) = &args.journal {
            job.journal = journal.clone();
        }
        job.resume = args.resume;
        job.force = args.force;
        job.create_accounts = args.create_accounts.map(Into::into);
        job.state = args.state.clone();
        job.full = args.full;
        job.only_if_empty = only_if_empty(&args.only_if_empty)?;
        job.changes_only = args.changes_only || job.only_if_empty.is_some();
        job.changes_log = args.changes_log.clone();
        job.guards = guards(&args.guards);
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
        if args.plan.is_some() && !job.changes_only {
            bail!("--plan is the plan of --dry-run --changes-only (or --only-if-empty)");
        }
        let plan = (args.dry_run && job.changes_only).then(|| {
            args.plan.clone().unwrap_or_else(|| {
                crate::run::changes::plan::default_path(named_after(&job, stdin))
            })
        });
        let metrics = metrics(&args.monitor, &args.input.csv, stdin, &send);
        if let Some(metrics) = &metrics {
            let live: Arc<Mutex<dyn Sink>> = metrics.clone();
            send.live = LiveSinks(vec![live]);
        }
        let config = Config {
            tuning: tuning(&args.sending.calls),
            job,
            send,
            report_csv: plan,
            summary_json: args.summary_json.clone(),
            metrics,
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
        let declared = settings::custom_fields(&args.input.custom_fields, &args.connection)?;
        let job = job(&args.input, None, FailuresOf::Verify, declared)?;
        let diff = args
            .diff
            .clone()
            .unwrap_or_else(|| crate::run::verify::default_diff_path(&job.input.path));
        let mut send = send_settings(args.rate, None, &args.calls, false);
        send.read_rate = args.rate;
        let config = Config {
            tuning: tuning(&args.calls),
            metrics: metrics(&args.monitor, &args.input.csv, None, &send),
            job,
            send,
            report_csv: Some(diff),
            summary_json: args.summary_json.clone(),
        };
        let mut files = config.files().output("--failures", &config.job.failures);
        if let Some(state) = &args.state {
            files = files.output("--state", state);
        }
        files
            .output_at_end("--diff", config.report_csv.as_deref())
            .check()?;
        Ok(config)
    }

    /// `check-accounts`.
    pub fn check_accounts(args: &CheckAccountsArgs) -> anyhow::Result<Config> {
        let input: InputArgs = args.input.clone().into();
        let job = job(&input, None, FailuresOf::Import, None)?;
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| crate::fsutil::beside(&job.input.path, ".missing-accounts.csv"));
        let send = send_settings(args.rate, None, &args.calls, false);
        let config = Config {
            tuning: tuning(&args.calls),
            metrics: metrics(&args.monitor, &args.input.csv, None, &send),
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
                ..RetryPolicy::default()
            },
            show_progress: true,
            quiet,
            progress_interval: Duration::from_secs(2),
            max_errors: None,
            read_rate: 200,
            live: Default::default(),
        };
        Config {
            job,
            send,
            tuning: ClientTuning::default(),
            report_csv: Some(workdir.join("users.diff.csv")),
            summary_json: None,
            metrics: None,
        }
    }

    fn metrics_path(&self) -> Option<PathBuf> {
        let metrics = self.metrics.as_ref()?;
        Some(
            metrics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .path()
                .to_path_buf(),
        )
    }

    /// The run's files: the input, the summary, the metrics and the change log; each command
    /// adds its own.
    fn files(&self) -> RunFiles {
        RunFiles::reading(&self.job.input.path)
            .output_at_end("--summary-json", self.summary_json.as_deref())
            .output_at_end("--metrics-file", self.metrics_path().as_deref())
            .output_at_end("--changes-log", self.job.changes_log.as_deref())
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

/// `--metrics-file`, written about every `--progress-interval` during the run.
fn metrics(
    monitor: &MonitorArgs,
    csv: &Path,
    stdin: Option<&StdinSpool>,
    send: &SendSettings,
) -> Metrics {
    let path = monitor.metrics_file.as_ref()?;
    let job = job_name(monitor, csv, stdin);
    let file = MetricsFile::new(path, &job, send.progress_interval);
    Some(Arc::new(Mutex::new(file)))
}

/// The metrics' job label: `--job-name`, or the input's stem (`stdin` for standard input).
fn job_name(monitor: &MonitorArgs, csv: &Path, stdin: Option<&StdinSpool>) -> String {
    if let Some(name) = &monitor.job_name {
        return name.clone();
    }
    if stdin.is_some() || crate::input::stdin::is_stdin(csv) {
        return "stdin".into();
    }
    let named = crate::fsutil::beside(csv, "");
    named
        .file_name()
        .map_or_else(|| "input".into(), |n| n.to_string_lossy().into_owned())
}

/// `--only-if-empty`: the tags, as Chat names them (`Nick` → `Tag_Profile_IM_Nick`), or an
/// empty list for `all`.
fn only_if_empty(args: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    let names: Vec<&str> = args
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
        return Ok(Some(Vec::new()));
    }
    let tags = names
        .iter()
        .map(|name| {
            crate::input::header::parse_tag(name)
                .map(|tag| tag.name())
                .map_err(|why| anyhow::anyhow!("--only-if-empty {name}: {why}"))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    Ok(Some(tags))
}

fn guards(args: &GuardArgs) -> Guards {
    Guards {
        max_error_rate: args.max_error_rate,
        error_rate_min_rows: args.error_rate_min_rows,
        setup_error_answers: args.setup_error_answers,
        min_rows: args.min_rows,
        max_shrink: args.max_shrink,
        allow_empty: args.allow_empty,
        limit: args.limit,
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
        live: Default::default(),
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
fn job(
    args: &InputArgs,
    stdin: Option<&StdinSpool>,
    run: FailuresOf,
    custom_fields: Option<Vec<String>>,
) -> anyhow::Result<JobInput> {
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
            custom_fields,
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
