//! `profile-import demo`: a whole migration against an in-process simulator with a few injected
//! faults: the accounts are created, the profiles set through the real pipeline, and then read
//! back and compared with the CSV, and imported again with `--changes-only`, which finds
//! nothing to send. Needs no Chat app, key or network.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::app::cli::DemoArgs;
use crate::app::config::Config;
use crate::app::exit::ExitStatus;
use crate::chat::client::{ChatClient, ClientTuning};
use crate::chat::connection::{Connection, Credentials};
use crate::chat::retry::RetryPolicy;
use crate::chat::usersig::SecretKey;
use crate::run::changes::ChatReads;
use crate::run::console;
use crate::run::handles::{Handles, Use};
use crate::run::job::JobInput;
use crate::run::send::{self, SendSettings};
use crate::run::sinks;
use crate::sim::{Faults, SimConfig, SimHandle};

/// The sample shipped in the binary, used when samples/users.csv is not at hand.
const SAMPLE_CSV: &str = include_str!("../../samples/users.csv");
const DEMO_SDKAPPID: u64 = 1_400_000_000;
const DEMO_ADMIN: &str = "administrator";

pub async fn run(args: DemoArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let workdir = tempfile_dir()?;
    let csv = if args.csv.exists() {
        args.csv.clone()
    } else {
        let path = workdir.join("users.csv");
        std::fs::write(&path, SAMPLE_CSV)?;
        path
    };
    // The demo key is random per run: nothing about it is secret, but nothing is reused either.
    let key = SecretKey::new(format!("demo-{:016x}", rand::random::<u64>()));
    let sim = start_simulator(key.clone()).await?;

    let config = Config::demo(&csv, &workdir, quiet);
    let job = &config.job;
    let connection = Connection {
        sdkappid: DEMO_SDKAPPID,
        admin: DEMO_ADMIN.into(),
        base_url: crate::chat::connection::parse_endpoint(&sim.url())?,
        credentials: Credentials::Key(key),
        usersig_ttl: 3600,
    };
    let client = Arc::new(ChatClient::new(connection, ClientTuning::default())?);
    console::err_line(&format!(
        "demo: import --create-accounts {}\n",
        csv.display()
    ));
    let settings = config.send.clone();
    let (status, _) = crate::app::signals::import_until_signalled(|stop| {
        send::run(job, client.clone(), settings.clone(), stop)
    })
    .await?;

    console::err_line(&format!(
        "\ndemo: verify {} (portrait_get, compared with the CSV)\n",
        csv.display()
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let uses = [Use::Reads(200), Use::AccountChecks];
    let handles = Handles::new(&client, RetryPolicy::default(), &stop, &uses);
    let verifier = crate::run::verify::Verifier {
        chat: ChatReads::new(
            handles.reads()?.clone(),
            Some(handles.account_checks()?.clone()),
        ),
        progress: settings.progress(),
    };
    let mut verified = job.clone();
    verified.failures = workdir.join("users.verify-failures.csv");
    let diff = config.report_csv.clone().unwrap_or_default();
    let report = verifier.run(&verified, None, &diff, &stop).await?;
    sinks::print(&report, 0);
    let again = import_changes_only(job, &client, settings, &sim).await?;

    show_simulator(&sim);
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&workdir);
    Ok(if !report.passed() && status == ExitStatus::Success {
        ExitStatus::RowsFailed
    } else if status == ExitStatus::Success {
        again
    } else {
        status
    })
}

/// The same file again with `--changes-only`: Chat now holds every value, so the run reads
/// (1 portrait_get per 100 users) and sends nothing.
async fn import_changes_only(
    job: &JobInput,
    client: &Arc<ChatClient>,
    settings: SendSettings,
    sim: &SimHandle,
) -> anyhow::Result<ExitStatus> {
    console::err_line(&format!(
        "\ndemo: import --changes-only {} (again: reads what Chat holds, sends only what differs)\n",
        job.input.path.display()
    ));
    let calls = |command: &str| sim.stats().by_command.get(command).copied().unwrap_or(0);
    let (sets, gets) = (calls("portrait_set"), calls("portrait_get"));
    let again = JobInput {
        changes_only: true,
        create_accounts: None,
        ..job.clone()
    };
    let (status, _) = crate::app::signals::import_until_signalled(|stop| {
        send::run(&again, client.clone(), settings, stop)
    })
    .await?;
    console::err_line(&format!(
        "demo: the --changes-only run made {} portrait_set and {} portrait_get calls",
        calls("portrait_set") - sets,
        calls("portrait_get") - gets
    ));
    Ok(status)
}

/// A simulator of a new app (no accounts yet) with latency and injected faults.
async fn start_simulator(key: SecretKey) -> anyhow::Result<SimHandle> {
    let mut config = SimConfig::new(DEMO_SDKAPPID, DEMO_ADMIN, key);
    // A new app: none of the users is an account yet.
    config.accounts = Some(Default::default());
    config.latency_min = Duration::from_millis(20);
    config.latency_max = Duration::from_millis(80);
    config.faults = Faults {
        p_40006: 0.15,
        p_502: 0.05,
        p_reset: 0.05,
        max_streak_per_user: 2,
        ..Faults::default()
    };
    let sim = SimHandle::start(config).await?;
    console::err_line(&format!(
        "demo: simulator on {} (a new app with no accounts; latency 20-80 ms; injecting 15% 40006, 5% HTTP 502, 5% connection resets)",
        sim.url()
    ));
    Ok(sim)
}

/// What the simulator saw, and the profiles it now holds.
fn show_simulator(sim: &SimHandle) {
    let stats = sim.stats();
    console::err_line(&format!("\n── what the simulator saw ──\n{stats}"));
    let accounts = sim.accounts().map_or(0, |a| a.len());
    console::err_line(&format!("accounts   {accounts} now exist"));
    console::err_line("── profiles the simulator holds ──");
    for (user, tags) in sim.profiles() {
        let fields: Vec<String> = tags
            .iter()
            .map(|(tag, value)| {
                let short = tag
                    .trim_start_matches("Tag_Profile_IM_")
                    .trim_start_matches("Tag_Profile_");
                format!("{short}={value}")
            })
            .collect();
        console::err_line(&format!("{user:<16} {}", fields.join("  ")));
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "profile-import-demo-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    crate::fsutil::create_private_dir(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
