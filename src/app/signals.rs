//! Signals: the first SIGINT/SIGTERM (or a closed stdout or stderr) stops a run gently, a
//! second signal exits at once; and the exit status a finished import earns. Every command
//! that calls Chat runs under `until_signalled`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::exit::ExitStatus;
use crate::run::console;
use crate::run::send::SendReport;
use crate::run::sinks;
use crate::run::summary::Summary;

/// How a run that signals may stop ended.
pub enum Ended<T> {
    /// It returned `T`; `stopped` says why it stopped early, if a signal or a closed output
    /// stopped it (the status the process ends with).
    Finished {
        value: T,
        stopped: Option<ExitStatus>,
    },
    /// A second signal: given up at once, without a summary.
    Abandoned(ExitStatus),
}

/// Runs `work` until it ends. The first SIGINT/SIGTERM, or stdout or stderr found closed,
/// cancels the token `work` gets (it then stops gently and reports what it did); a second
/// signal gives up at once.
pub async fn until_signalled<F, Fut, T>(work: F) -> anyhow::Result<Ended<T>>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let stop = CancellationToken::new();
    let _closed = console::stop_on_close(stop.clone());
    let terminated = Arc::new(AtomicBool::new(false));
    let (hard_tx, hard_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::spawn(listen_for_signals(
        stop.clone(),
        terminated.clone(),
        hard_tx,
    ));
    let result = tokio::select! {
        value = work(stop.clone()) => value,
        Ok(()) = hard_rx => {
            crate::app::logging::notice(
                "WARN",
                "second signal: exiting now; rows in flight are unconfirmed, --resume re-sends them",
            );
            return Ok(Ended::Abandoned(signal_status(&terminated)));
        }
    };
    listener.abort();
    let value = result?;
    let stopped = stop.is_cancelled().then(|| {
        if console::closed() {
            ExitStatus::OutputClosed
        } else {
            signal_status(&terminated)
        }
    });
    Ok(Ended::Finished { value, stopped })
}

/// Runs an import; the first SIGINT/SIGTERM stops dispatching and lets in-flight requests
/// finish, a second one returns at once.
pub async fn import_until_signalled<F, Fut>(
    import: F,
) -> anyhow::Result<(ExitStatus, Option<Summary>)>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<SendReport>>,
{
    let (mut report, signalled) = match until_signalled(import).await? {
        Ended::Abandoned(status) => return Ok((status, None)),
        Ended::Finished { value, stopped } => (value, stopped),
    };
    let output_closed = signalled == Some(ExitStatus::OutputClosed) && report.interrupted;
    if output_closed {
        report.summary.stopped =
            Some("stdout or stderr was closed (a broken pipe); --resume continues".into());
    }
    let status = if report.fatal.is_some() {
        ExitStatus::Fatal
    } else if let (true, Some(signalled)) = (report.interrupted, signalled) {
        signalled
    } else if report.halted.is_some() || report.refused.is_some() {
        // A guard stopped the run, or refused its input: rows are not done.
        ExitStatus::RowsFailed
    } else {
        status_of(&report.summary)
    };

    sinks::print(&report.summary, status.code());
    if let Some(mut state) = report.state {
        state.finish_run()?;
    }
    Ok((status, Some(report.summary)))
}

fn signal_status(terminated: &AtomicBool) -> ExitStatus {
    if terminated.load(Ordering::Relaxed) {
        ExitStatus::Terminated
    } else {
        ExitStatus::Interrupted
    }
}

async fn listen_for_signals(
    stop: CancellationToken,
    terminated: Arc<AtomicBool>,
    hard: tokio::sync::oneshot::Sender<()>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot listen for signals; Ctrl-C will stop the run abruptly");
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => terminated.store(true, Ordering::Relaxed),
        }
        crate::app::logging::notice(
            "WARN",
            "stopping: no new rows are sent; waiting for requests in flight (signal again to exit now)",
        );
        stop.cancel();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        let _ = hard.send(());
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = hard.send(());
        }
        let _ = terminated;
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
