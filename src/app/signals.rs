//! Signals: the first SIGINT/SIGTERM stops a run gently, a second one exits at once; and the
//! exit status a finished import earns.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::exit::ExitStatus;
use crate::run::console;
use crate::run::send::SendReport;
use crate::run::sinks;
use crate::run::summary::Summary;
use crate::store::state::RunTotals;

/// Runs an import; the first SIGINT/SIGTERM stops dispatching and lets in-flight requests
/// finish, a second one returns at once.
pub async fn import_until_signalled<F, Fut>(
    import: F,
) -> anyhow::Result<(ExitStatus, Option<Summary>)>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<SendReport>>,
{
    let stop = CancellationToken::new();
    // A closed stdout or stderr stops the run the way SIGTERM does.
    let _closed = console::stop_on_close(stop.clone());
    let terminated = Arc::new(AtomicBool::new(false));
    let (hard_tx, hard_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::spawn(listen_for_signals(
        stop.clone(),
        terminated.clone(),
        hard_tx,
    ));
    let result = tokio::select! {
        report = import(stop.clone()) => report,
        Ok(()) = hard_rx => {
            console::err_line("second signal: exiting now; rows in flight are unconfirmed, --resume re-sends them");
            return Ok((signal_status(&terminated), None));
        }
    };
    listener.abort();
    let mut report = result?;
    let output_closed = report.interrupted && console::closed();
    if output_closed {
        report.summary.stopped =
            Some("stdout or stderr was closed (a broken pipe); --resume continues".into());
    }
    let stopped = report.fatal.is_some() || report.interrupted;
    let status = if report.fatal.is_some() {
        ExitStatus::Fatal
    } else if output_closed {
        ExitStatus::OutputClosed
    } else if report.interrupted {
        signal_status(&terminated)
    } else {
        status_of(&report.summary)
    };
    sinks::print(&report.summary, status.code());
    if let Some(mut state) = report.state {
        let summary = &report.summary;
        let totals = RunTotals {
            rows: summary.rows,
            ok: summary.ok,
            failed: summary.failed,
            unchanged: summary.unchanged,
        };
        state.finish_run(totals, (!stopped).then(|| status.code()))?;
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
        console::err_line("stopping: no new rows are sent; waiting for requests in flight (signal again to exit now)");
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
