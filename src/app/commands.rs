//! One function per command: runs it and says how it ended (the exit status it earns).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use clap::CommandFactory;

use crate::app::cli::{self, Cli, Command, StateCommand};
use crate::app::config::{Config, Metrics};
use crate::app::exit::ExitStatus;
use crate::app::history::Recorder;
use crate::app::signals::{status_of, Ended};
use crate::app::{demo, settings, signals, state_views};
use crate::chat::client::{ChatClient, ClientTuning};
use crate::chat::connection::Connection;
use crate::chat::usersig;
use crate::input::stdin::StdinSpool;
use crate::run::changes::ChatReads;
use crate::run::console;
use crate::run::handles::{Handles, Use};
use crate::run::send;
use crate::run::sinks::{self, Sink};
use crate::run::summary;
use crate::run::{accounts, changes, dry_run, verify};
use crate::sim;
use crate::store::state;

/// Runs one command and says how it ended. Errors returned here are fatal (exit 1), except
/// that another run holding one of this run's outputs ends it with exit 4, and an output that
/// is the input or another output is a usage error (exit 2). A run with `--metrics-file` writes
/// its end there however it ended (but not when another run holds its files: that run owns the
/// metrics too).
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let mut metrics: Metrics = None;
    let result = match run_command(cli, &mut metrics) {
        Err(err) => match ExitStatus::of_error(&err) {
            status @ (ExitStatus::Locked | ExitStatus::Usage) => {
                crate::app::logging::fatal(&format!("{err:#}"));
                Ok(status)
            }
            _ => Err(err),
        },
        other => other,
    };
    let code = match &result {
        Ok(ExitStatus::Locked) => None,
        Ok(status) => Some(status.as_ended().code()),
        Err(err) => Some(ExitStatus::of_error(err).as_ended().code()),
    };
    if let (Some(metrics), Some(code)) = (metrics, code) {
        let written = metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish_if_open(code);
        match (written, &result) {
            (Err(err), Ok(_)) => return Err(err),
            (Err(err), Err(_)) => tracing::error!("{err:#}"),
            (Ok(()), _) => {}
        }
    }
    result
}

/// Runs the command; `metrics` gets its metrics file as soon as its settings are known.
fn run_command(cli: Cli, metrics: &mut Metrics) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Import(args) => import(*args, cli.verbose, cli.quiet, metrics),
        Command::CheckAccounts(args) => check_accounts_command(*args, cli.quiet, metrics),
        Command::Verify(args) => verify_command(*args, cli.quiet, metrics),
        Command::State(StateCommand::Stats { path }) => {
            console::out(state::stats(&path)?.as_bytes());
            Ok(ExitStatus::Success)
        }
        Command::State(StateCommand::Export { path, output }) => state_export(&path, output),
        Command::State(StateCommand::Runs {
            path,
            limit,
            id,
            json,
        }) => {
            state_views::runs(&path, limit, id, json)?;
            Ok(ExitStatus::Success)
        }
        Command::State(StateCommand::Failed { path, json }) => {
            state_views::failed(&path, json)?;
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
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(
                shell,
                &mut command,
                "profile-import",
                &mut std::io::stdout(),
            );
            Ok(ExitStatus::Success)
        }
        Command::Man { command } => man_page(command),
    }
}

/// `import`: a dry run, or a real import until it ends or a signal stops it; with `--state`,
/// recorded in the state's run history whatever its end.
fn import(
    args: cli::ImportArgs,
    verbose: u8,
    quiet: bool,
    metrics: &mut Metrics,
) -> anyhow::Result<ExitStatus> {
    // Held until the run ends: the spooled standard input, if the CSV is `-`.
    let stdin = spool_stdin_for_import(&args)?;
    let mut config = Config::import(&args, stdin.as_ref(), quiet)?;
    metrics.clone_from(&config.metrics);
    if args.dry_run && !config.job.changes_only {
        let mut history = Recorder::import(&args, &config, None)?;
        let ended = dry_run_command(&args, &config, verbose, &mut history);
        return history.end(ended);
    }
    let connection = settings::connection(&args.connection, true)?;
    let mut history = Recorder::import(&args, &config, Some(connection.sdkappid))?;
    config.job.run_id = history.run_id();
    let ended = if args.dry_run {
        changes_plan_command(&args, &config, connection, &mut history)
    } else {
        send_command(&config, connection, &mut history)
    };
    history.end(ended)
}

/// `import` for real: sends until the input ends or a signal stops it.
fn send_command(
    config: &Config,
    connection: Connection,
    history: &mut Recorder,
) -> anyhow::Result<ExitStatus> {
    let settings = &config.send;
    tracing::info!(
        "sending to {} as {} (SDKAppID {}): at most {} requests/s, {} in flight, {} attempts a row, {:?} timeout",
        connection.base_url,
        connection.admin,
        connection.sdkappid,
        settings.rate,
        settings.concurrency,
        settings.retry.max_attempts,
        config.tuning.request_timeout
    );
    let client = Arc::new(ChatClient::new(connection, config.tuning)?);
    let runtime = runtime()?;
    let outcome = runtime.block_on(signals::import_until_signalled(|stop| {
        send::run(&config.job, client, settings.clone(), stop)
    }));
    let (status, summary) = outcome?;
    if let Some(summary) = &summary {
        history.summary(summary, status);
        finish_files(summary, status, config)?;
    }
    Ok(status)
}

/// `import --dry-run`: validates the file; with `--check-accounts` also asks Chat which users
/// are missing.
fn dry_run_command(
    args: &cli::ImportArgs,
    config: &Config,
    verbose: u8,
    history: &mut Recorder,
) -> anyhow::Result<ExitStatus> {
    let show = args
        .show_requests
        .unwrap_or(if verbose > 0 { 3 } else { 0 });
    let options = dry_run::DryRunOptions {
        show_requests: show,
        parallel_min_bytes: args.parallel_min_bytes,
    };
    let mut summary = match dry_run::run(&config.job, options) {
        Ok(summary) => summary,
        Err(err) => return Err(unwritable_failures(err, config)?),
    };
    warn_long_locations(&summary);
    let mut status = status_of(&summary);
    let last_rows = match &config.job.state {
        Some(path) => state::last_run_rows(path)?,
        None => None,
    };
    if let Some(why) = config.job.guards.refusal(summary.rows, last_rows) {
        tracing::error!("a real run would refuse this input: {why}");
        summary.refused = Some(why);
        status = ExitStatus::RowsFailed;
    }
    if args.check_accounts {
        sinks::print(&summary, status.code());
        let output = crate::fsutil::beside(&config.job.input.path, ".missing-accounts.csv");
        // At Chat's limit for account_check: this run's --rate is portrait_set's.
        let checks = Use::AccountChecks;
        let checked = match check_accounts(config, &args.connection, &output, checks)? {
            Ended::Finished { value, .. } => value,
            Ended::Abandoned(status) => return Ok(status),
        };
        if !checked.passed() && status == ExitStatus::Success {
            status = ExitStatus::RowsFailed;
        }
        sinks::print(&checked, status.code());
        summary.accounts_checked = checked.accounts_checked;
        history.summary(&summary, status);
        finish_files(&summary, status, config)?;
        return Ok(status);
    }
    history.summary(&summary, status);
    finish(&summary, status, config)?;
    Ok(status)
}

/// A dry run whose failure CSV could not be written still shows its counts (the summary,
/// exit status 1 in its JSON), then fails with the reason; any other error is passed on.
fn unwritable_failures(err: anyhow::Error, config: &Config) -> anyhow::Result<anyhow::Error> {
    let unwritable = match err.downcast::<dry_run::FailuresUnwritable>() {
        Ok(unwritable) => unwritable,
        Err(err) => return Ok(err),
    };
    warn_long_locations(&unwritable.summary);
    finish(&unwritable.summary, ExitStatus::Fatal, config)?;
    Ok(anyhow::anyhow!(unwritable.why))
}

/// `import --dry-run --changes-only`: the plan. Reads what Chat holds, sends nothing.
fn changes_plan_command(
    args: &cli::ImportArgs,
    config: &Config,
    connection: Connection,
    history: &mut Recorder,
) -> anyhow::Result<ExitStatus> {
    let client = Arc::new(ChatClient::new(connection, config.tuning)?);
    let plan_csv = config.report_csv.clone().unwrap_or_default();
    let ended = runtime()?.block_on(signals::until_signalled(|stop| async move {
        let uses = [Use::Reads(args.read_rate), Use::AccountChecks];
        let handles = Handles::new(&client, config.send.retry, &stop, &uses);
        let planner = changes::plan::Planner {
            chat: ChatReads::new(
                handles.reads()?.clone(),
                Some(handles.account_checks()?.clone()),
            ),
            progress: config.send.progress(),
        };
        let mut report = planner.run(&config.job, &plan_csv, &stop).await?;
        report.calls = handles.calls();
        Ok(report)
    }))?;
    finish_checked(ended, &args.input.csv, config, history)
}

/// `check-accounts`.
fn check_accounts_command(
    args: cli::CheckAccountsArgs,
    quiet: bool,
    metrics: &mut Metrics,
) -> anyhow::Result<ExitStatus> {
    let mut config = Config::check_accounts(&args)?;
    config.send.quiet = quiet;
    metrics.clone_from(&config.metrics);
    let output = config.report_csv.clone().unwrap_or_default();
    let checks = Use::AccountChecksAt(config.send.rate);
    let ended = check_accounts(&config, &args.connection, &output, checks)?;
    finish_checked(
        ended,
        &args.input.csv.clone(),
        &config,
        &mut Recorder::off(),
    )
}

/// `verify`: reads the profiles back and compares them with the CSV; with `--state`, recorded
/// in the state's run history.
fn verify_command(
    args: cli::VerifyArgs,
    quiet: bool,
    metrics: &mut Metrics,
) -> anyhow::Result<ExitStatus> {
    let mut config = Config::verify(&args)?;
    config.send.quiet = quiet;
    metrics.clone_from(&config.metrics);
    let connection = settings::connection(&args.connection, true)?;
    let mut history = Recorder::verify(&args, &config, connection.sdkappid)?;
    let ended = verify_run(&args, &config, connection, &mut history);
    history.end(ended)
}

/// `verify` itself, until it ends or a signal stops it.
fn verify_run(
    args: &cli::VerifyArgs,
    config: &Config,
    connection: Connection,
    history: &mut Recorder,
) -> anyhow::Result<ExitStatus> {
    let client = Arc::new(ChatClient::new(connection, config.tuning)?);
    let diff = config.report_csv.clone().unwrap_or_default();
    let ended = runtime()?.block_on(signals::until_signalled(|stop| async move {
        let uses = [Use::Reads(config.send.read_rate), Use::AccountChecks];
        let handles = Handles::new(&client, config.send.retry, &stop, &uses);
        let verifier = verify::Verifier {
            chat: ChatReads::new(
                handles.reads()?.clone(),
                Some(handles.account_checks()?.clone()),
            ),
            progress: config.send.progress(),
        };
        let mut report = verifier.run(&config.job, args.sample, &diff, &stop).await?;
        report.calls = handles.calls();
        Ok(report)
    }))?;
    finish_checked(ended, &args.input.csv, config, history)
}

/// The end of a command that checks rows against Chat (verify, the plan, check-accounts): its
/// report shown, written and kept for the history, and the status it earns: a signal's if one
/// stopped it, else 0 when every row passed and 3 otherwise.
fn finish_checked(
    ended: Ended<summary::Summary>,
    csv: &std::path::Path,
    config: &Config,
    history: &mut Recorder,
) -> anyhow::Result<ExitStatus> {
    let (report, stopped) = match ended {
        Ended::Finished { value, stopped } => (value, stopped),
        Ended::Abandoned(status) => return Ok(status),
    };
    warn_if_no_rows(report.rows, csv);
    let status = stopped.unwrap_or(if report.passed() {
        ExitStatus::Success
    } else {
        ExitStatus::RowsFailed
    });
    history.summary(&report, status);
    finish(&report, status, config)?;
    Ok(status)
}

/// Shows the report through its sinks: the text summary, then the files. The exit status they
/// record is the one the process ends with (a closed output makes it 141).
fn finish(report: &summary::Summary, status: ExitStatus, config: &Config) -> anyhow::Result<()> {
    sinks::TextSummary.finish(report, status.as_ended().code())?;
    finish_files(report, status, config)
}

/// The report's files: `--summary-json` and `--metrics-file`, if asked.
fn finish_files(
    report: &summary::Summary,
    status: ExitStatus,
    config: &Config,
) -> anyhow::Result<()> {
    let code = status.as_ended().code();
    if let Some(path) = &config.summary_json {
        sinks::JsonSummary(path.clone()).finish(report, code)?;
    }
    if let Some(metrics) = &config.metrics {
        metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish(report, code)?;
    }
    Ok(())
}

/// `state export`: to a file, or to stdout without `--output` (or with `--output -`).
fn state_export(
    path: &std::path::Path,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitStatus> {
    let count = match output.filter(|output| !crate::input::stdin::is_stdin(output)) {
        Some(output) => {
            let mut file = crate::fsutil::create_private(&output)
                .with_context(|| format!("cannot create {}", output.display()))?;
            state::export(path, &mut file)?
        }
        None => state::export(path, &mut std::io::stdout().lock())?,
    };
    crate::app::logging::notice("INFO", &format!("exported {count} users"));
    Ok(ExitStatus::Success)
}

/// `man [COMMAND]`: the manual page, in roff, on stdout.
fn man_page(command: Option<String>) -> anyhow::Result<ExitStatus> {
    crate::app::man::render(command.as_deref(), &mut std::io::stdout().lock())?;
    Ok(ExitStatus::Success)
}

/// `import -` (or a pipe or device given by name, such as `/dev/stdin` or `<(zcat x.gz)`):
/// the input is spooled to a temporary file for a dry run or a `--state` import. A plain
/// import needs its journal to be safe to run again, and a journal belongs to a file, so it is
/// refused, as is `--resume`.
fn spool_stdin_for_import(args: &cli::ImportArgs) -> anyhow::Result<Option<StdinSpool>> {
    let csv = &args.input.csv;
    let what = if crate::input::stdin::is_stdin(csv) {
        "standard input (`-`)".to_string()
    } else if crate::input::stdin::is_stream(csv) {
        format!("{} (read once, as `-` is)", csv.display())
    } else {
        return Ok(None);
    };
    if args.resume {
        bail!(
            "--resume needs an input file: {what} cannot be read again, so no journal is kept \
             for it; save the input to a file to import it with --resume"
        );
    }
    if !args.dry_run && args.state.is_none() {
        bail!(
            "{what} is imported only with --state PATH (which remembers what Chat accepted, so \
             a rerun sends only what is left) or checked with --dry-run; a plain import needs a \
             file, whose journal makes a rerun safe"
        );
    }
    Ok(Some(StdinSpool::read(csv)?))
}

/// An export with a header and no rows is usually a broken export, not a quiet night.
fn warn_if_no_rows(rows: u64, csv: &std::path::Path) {
    if rows == 0 {
        tracing::warn!(
            "{} has a header row but no data rows: an empty export usually means the export broke",
            csv.display()
        );
    }
}

/// The dry run's note on Locations over the older 16-byte limit (they are sent; see
/// `--strict-location`).
fn warn_long_locations(summary: &summary::Summary) {
    let rows = match summary.long_locations {
        0 => return,
        1 => "1 valid row has".to_string(),
        n => format!("{n} valid rows have"),
    };
    tracing::warn!(
        "{rows} a Location over 16 bytes: Chat's newest docs allow 500 bytes, so it is sent, \
         but an app held to the older 16-byte limit answers 40601 (--strict-location rejects \
         such rows here instead)"
    );
}

/// The runtime for network commands. One thread: the job is paced far below what one core can
/// drive, and at 200 requests a second waking threads for each other costs more CPU than the
/// requests themselves. (The CSV reader has its own thread.) Before going idle the thread naps
/// until the next pacer turn when one is near and no connection is being opened, so the answers
/// that came meanwhile are read in that one wake-up (`chat::nap`; with no pacer it never naps).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Each request in flight holds a connection: a high --rate at a high latency needs more
    // than the usual soft limit of 1,024 open files. Raise it to the hard limit; if that
    // fails the default stands and connections beyond it are retried as transport errors.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(%err, "cannot raise the open-file limit");
    }
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::chat::nap::nap_until_next_turn)
        .build()?)
}

/// Asks Chat which of the file's users are not imported (account_check paced as `checks`
/// says), until a signal stops it; writes them to `output` and reports how many.
fn check_accounts(
    config: &Config,
    connection: &cli::ConnectionArgs,
    output: &std::path::Path,
    checks: Use,
) -> anyhow::Result<Ended<summary::Summary>> {
    let connection = settings::connection(connection, true)?;
    let client = Arc::new(ChatClient::new(connection, config.tuning)?);
    let job = &config.job;
    runtime()?.block_on(signals::until_signalled(|stop| async move {
        let handles = Handles::new(&client, config.send.retry, &stop, &[checks]);
        let calls = accounts::AccountCalls {
            api: handles.account_checks()?,
        };
        let progress = config.send.progress();
        let (checked, missing, whole) =
            accounts::check_all(&job.input, job.rules, &calls, output, &stop, progress).await?;
        let mut report = summary::Summary::of(summary::Kind::CheckAccounts);
        report.count_read(checked);
        report.calls = handles.calls();
        report.accounts_checked = Some(summary::AccountsChecked {
            users: checked,
            not_imported: missing,
            missing_list: (missing > 0).then(|| output.to_path_buf()),
        });
        if !whole {
            report.stopped = Some(format!(
                "interrupted after {checked} users; the missing list has those found so far"
            ));
        }
        Ok(report)
    }))
}

/// `profile-import sim`: serves the simulator on loopback until Ctrl-C, then prints its stats.
async fn serve_simulator(args: cli::SimArgs) -> anyhow::Result<ExitStatus> {
    let addr = loopback_listen_address(&args.listen)?;
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
        account_list_ignores_existing: args.account_list_ignores_existing,
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

/// `--listen`: a loopback `IP:PORT`, or `localhost:PORT` (as 127.0.0.1, the address the
/// printed URL and most clients use for it).
fn loopback_listen_address(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    let addr = match text.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => {
            let port: u16 = port
                .parse()
                .with_context(|| format!("--listen {text:?}: {port:?} is not a port number"))?;
            std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))
        }
        _ => text.parse().with_context(|| {
            format!("--listen {text:?} is not an IP:port address or localhost:PORT")
        })?,
    };
    if !addr.ip().is_loopback() {
        bail!("--listen {addr}: the simulator serves loopback addresses only");
    }
    Ok(addr)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulator_listens_on_loopback_names_and_addresses_only() {
        let ok = |text: &str| loopback_listen_address(text).unwrap().to_string();
        assert_eq!(ok("localhost:0"), "127.0.0.1:0");
        assert_eq!(ok("LOCALHOST:8080"), "127.0.0.1:8080");
        assert_eq!(ok("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(ok("[::1]:9000"), "[::1]:9000");
        for bad in [
            "0.0.0.0:8080",
            "localhost",
            "localhost:http",
            "example.com:80",
        ] {
            assert!(loopback_listen_address(bad).is_err(), "{bad}");
        }
    }
}
