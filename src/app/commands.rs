//! One function per command: runs it and says how it ended (the exit status it earns).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use crate::app::cli::{self, Cli, Command, SendArgs, StateCommand};
use crate::app::exit::ExitStatus;
use crate::app::signals::status_of;
use crate::app::{demo, settings, signals};
use crate::chat::api::ChatApi;
use crate::chat::client::{ChatClient, ClientTuning};
use crate::chat::retry::RetryPolicy;
use crate::chat::usersig;
use crate::run::console;
use crate::run::job::JobInput;
use crate::run::send::{self, SendSettings};
use crate::run::summary;
use crate::run::{accounts, dry_run, verify};
use crate::sim;
use crate::store::{lock, state};

/// Runs one command and says how it ended. Errors returned here are fatal (exit 1), except
/// that another run holding one of this run's outputs ends it with exit 4.
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match run_command(cli) {
        Err(err) if err.downcast_ref::<lock::Locked>().is_some() => {
            console::err_line(&format!("error: {err:#}"));
            Ok(ExitStatus::Locked)
        }
        other => other,
    }
}

fn run_command(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Import(args) => {
            let mut job = settings::job_input(&args.input)?;
            if let Some(journal) = &args.journal {
                job.journal = journal.clone();
            }
            job.check_paths()?;
            job.resume = args.resume;
            job.force = args.force;
            job.create_accounts = args.create_accounts.map(Into::into);
            job.state = args.state.clone();
            job.full = args.full;
            if args.dry_run {
                let show = args
                    .show_requests
                    .unwrap_or(if cli.verbose > 0 { 3 } else { 0 });
                let options = dry_run::DryRunOptions {
                    show_requests: show,
                    parallel_min_bytes: args.parallel_min_bytes,
                };
                let summary = dry_run::run(&job, options)?;
                let mut status = status_of(&summary);
                summary::print(&summary, status.code());
                if args.check_accounts {
                    let missing = check_accounts(&job, &args.connection, None)?;
                    if missing > 0 && status == ExitStatus::Success {
                        status = ExitStatus::RowsFailed;
                    }
                }
                return Ok(status);
            }
            let connection = settings::connection(&args.connection, true)?;
            let mut settings = send_settings(&args.sending, cli.quiet)?;
            settings.max_errors = args.max_errors;
            let tuning = ClientTuning {
                request_timeout: Duration::try_from_secs_f64(args.sending.timeout)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .context("--timeout must be a positive number of seconds")?,
                ..ClientTuning::default()
            };
            if tuning.request_timeout <= Duration::from_secs(3) {
                tracing::warn!(
                    "--timeout {:?} is not above Chat's own 3 s timeout; slow answers will be cut off",
                    tuning.request_timeout
                );
            }
            let client = Arc::new(ChatClient::new(connection, tuning)?);
            let runtime = runtime()?;
            let summary_json = args.summary_json.clone();
            let outcome = runtime.block_on(signals::import_until_signalled(|stop| {
                send::run(&job, client, settings, stop)
            }));
            let (status, summary) = outcome?;
            if let (Some(path), Some(summary)) = (summary_json, &summary) {
                summary::write_json(&path, summary, status.code())?;
            }
            Ok(status)
        }
        Command::CheckAccounts(args) => {
            let job = settings::job_input(&args.input)?;
            let missing = check_accounts(&job, &args.connection, args.output.clone())?;
            Ok(if missing > 0 {
                ExitStatus::RowsFailed
            } else {
                ExitStatus::Success
            })
        }
        Command::Verify(args) => {
            let job = settings::job_input(&args.input)?;
            let connection = settings::connection(&args.connection, true)?;
            let client = Arc::new(ChatClient::new(connection, ClientTuning::default())?);
            let diff = args
                .diff
                .clone()
                .unwrap_or_else(|| verify::default_diff_path(&job.input.path));
            let stop = CancellationToken::new();
            let api = ChatApi::new(client, args.rate.max(1), RetryPolicy::default(), stop);
            let verifier = verify::Verifier { api: &api };
            let report = runtime()?.block_on(verifier.run(
                &job.input,
                job.rules,
                args.sample,
                &diff,
                &job.failures,
            ))?;
            console::err(&report.to_string());
            Ok(if report.passed() {
                ExitStatus::Success
            } else {
                ExitStatus::RowsFailed
            })
        }
        Command::State(StateCommand::Stats { path }) => {
            console::out(state::stats(&path)?.as_bytes());
            Ok(ExitStatus::Success)
        }
        Command::State(StateCommand::Export { path, output }) => {
            let count = match output {
                Some(output) => {
                    let mut file = crate::fsutil::create_private(&output)
                        .with_context(|| format!("cannot create {}", output.display()))?;
                    state::export(&path, &mut file)?
                }
                None => state::export(&path, &mut std::io::stdout().lock())?,
            };
            console::err_line(&format!("exported {count} users"));
            Ok(ExitStatus::Success)
        }
        Command::Usersig(args) => {
            let connection = settings::connection(&args.connection, false)?;
            let client = ChatClient::new(connection, ClientTuning::default())?;
            console::out_line(client.usersig().as_bytes());
            Ok(ExitStatus::Success)
        }
        Command::Sim(args) => runtime()?.block_on(serve_simulator(args)),
        Command::Demo(args) => runtime()?.block_on(demo::run(args, cli.quiet)),
    }
}

/// The runtime for network commands. One thread: the job is paced far below what one core can
/// drive, and at 200 requests a second waking threads for each other costs more CPU than the
/// requests themselves. (The CSV reader has its own thread.)
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Asks Chat which of the file's users are not imported; writes them to `output` (default
/// beside the input) and returns how many.
fn check_accounts(
    job: &JobInput,
    connection: &cli::ConnectionArgs,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<u64> {
    let connection = settings::connection(connection, true)?;
    let client = Arc::new(ChatClient::new(connection, ClientTuning::default())?);
    let output =
        output.unwrap_or_else(|| crate::fsutil::beside(&job.input.path, ".missing-accounts.csv"));
    let rate = accounts::BATCH_CALLS_PER_SECOND;
    let api = ChatApi::new(
        client,
        rate,
        RetryPolicy::default(),
        CancellationToken::new(),
    );
    let calls = accounts::AccountCalls { api: &api };
    let (checked, missing) =
        runtime()?.block_on(accounts::check_all(&job.input, job.rules, &calls, &output))?;
    let mut report = format!(
        "── check-accounts ──\nusers checked    {checked:>10}\nnot imported     {missing:>10}\n"
    );
    if missing > 0 {
        report.push_str(&format!("missing list     {}\n", output.display()));
    } else {
        let _ = std::fs::remove_file(&output);
        report.push_str("missing list     none (every user is imported)\n");
    }
    console::err(&report);
    Ok(missing)
}

/// Validated send settings from the command line.
pub fn send_settings(args: &SendArgs, quiet: bool) -> anyhow::Result<SendSettings> {
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    if args.max_attempts == 0 {
        bail!("--max-attempts must be at least 1");
    }
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| SendSettings::default_concurrency(args.rate));
    if concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    Ok(SendSettings {
        rate: args.rate,
        concurrency,
        retry: RetryPolicy {
            max_attempts: args.max_attempts,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        },
        allow_bar: !args.no_progress,
        quiet,
        progress_interval: Duration::from_secs(args.progress_interval.max(1)),
        max_errors: None,
    })
}

/// `profile-import sim`: serves the simulator on loopback until Ctrl-C, then prints its stats.
async fn serve_simulator(args: cli::SimArgs) -> anyhow::Result<ExitStatus> {
    let addr: std::net::SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?} is not an IP:port address", args.listen))?;
    if !addr.ip().is_loopback() {
        bail!("--listen {addr}: the simulator serves loopback addresses only");
    }
    let key = std::env::var("PROFILE_IMPORT_SIM_KEY").unwrap_or_else(|_| "sim-secret".into());
    let mut config = sim::SimConfig::new(args.sdkappid, &args.admin, usersig::SecretKey::new(key));
    let (min, max) = parse_range_ms(&args.latency_ms)?;
    config.latency_min = min;
    config.latency_max = max;
    config.limit_per_sec = args.limit;
    config.faults = sim::Faults {
        p_40006: args.fail_40006,
        p_502: args.fail_502,
        p_reset: args.fail_reset,
        p_slow: args.fail_slow,
        slow: Duration::from_millis(args.slow_ms),
        max_streak_per_user: args.max_fault_streak,
        ..sim::Faults::default()
    };
    config.custom_fields = args
        .custom_fields
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(path) = &args.accounts {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        config.accounts = Some(
            text.lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect(),
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let handle = sim::SimHandle::start_on(listener, config).await;
    console::err_line(&format!(
        "simulator listening on {url} (SDKAppID {id}, admin {admin}); import into it with:\n  \
         PROFILE_IMPORT_SECRET_KEY=<the PROFILE_IMPORT_SIM_KEY value, default sim-secret> \\\n    \
         profile-import import users.csv --sdkappid {id} --admin {admin} --endpoint {url}\n\
         Ctrl-C stops it and prints what it saw.",
        url = handle.url(),
        id = args.sdkappid,
        admin = args.admin,
    ));
    tokio::signal::ctrl_c().await?;
    handle.shutdown();
    console::err_line(&handle.stats().to_string());
    Ok(ExitStatus::Success)
}

fn parse_range_ms(text: &str) -> anyhow::Result<(Duration, Duration)> {
    let parse = |s: &str| -> anyhow::Result<u64> {
        s.trim()
            .parse::<u64>()
            .with_context(|| format!("{text:?} is not a millisecond range like 20-80"))
    };
    let (min, max) = match text.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(text)?, parse(text)?),
    };
    if min > max {
        bail!("latency range {text:?}: the minimum is above the maximum");
    }
    Ok((Duration::from_millis(min), Duration::from_millis(max)))
}
