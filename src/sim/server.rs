//! The HTTP side: accepting connections, serving each with hyper (keep-alive, graceful
//! shutdown), and handling one request from arrival to answer (admission, the command, the
//! answer counts, the latency).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::answer::{Answer, InjectedReset};
use super::command::Command;
use super::state::{RequestCtx, Sim};
use super::MAX_BODY_BYTES;

/// How long `shutdown` lets in-flight requests finish before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Accepts connections until `cancel`, then closes the listener and cancels `closed`.
pub(super) async fn accept_loop(
    listener: TcpListener,
    sim: Arc<Sim>,
    cancel: CancellationToken,
    closed: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                sim.state().connections += 1;
                tokio::spawn(serve_connection(stream, Arc::clone(&sim), cancel.clone()));
            }
            Err(err) => {
                // Running out of file descriptors makes accept fail at once; pausing keeps the
                // loop from spinning until some close.
                tracing::warn!(%err, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(listener);
    closed.cancel();
}

async fn serve_connection(stream: TcpStream, sim: Arc<Sim>, cancel: CancellationToken) {
    // Small JSON answers must not wait for Nagle, or latency tests measure the kernel.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(Arc::clone(&sim), req));
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                // Injected resets end here too, so this is routine, not a warning.
                tracing::debug!(%err, "simulator connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

async fn handle(
    sim: Arc<Sim>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, InjectedReset> {
    let (parts, body) = req.into_parts();
    let command = Command::from_path(parts.uri.path());
    let sent = parts
        .headers
        .get(crate::chat::client::SENT_AT_HEADER)
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .map(Duration::from_nanos);
    let _request = sim.arrive(command, sent);
    let mut ctx = RequestCtx::default();
    // The body is read before any answer: leaving it unread would cost the keep-alive connection.
    let body = Limited::new(body, MAX_BODY_BYTES).collect().await;
    let always = sim.state().faults.always_code;
    let answer = match (always, body) {
        (Some(code), _) => Answer::fail(code, format!("injected error {code}")),
        (None, Err(err)) => Answer::fail(60002, format!("cannot read the request body: {err}")),
        (None, Ok(body)) => {
            let query = parts.uri.query().unwrap_or("");
            match sim.admit(command, &parts.method, parts.uri.path(), query) {
                Ok(command) => sim.dispatch(command, &body.to_bytes(), &mut ctx),
                Err(answer) => answer,
            }
        }
    };
    let key = answer.stats_key();
    tracing::debug!(path = parts.uri.path(), answer = %key, "simulator answered");
    sim.state().count_answer(command, key);
    sim.changed.notify_waiters();
    let delay = sim.latency() + ctx.extra_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    answer.into_response(
        command.is_none_or(Command::error_display),
        &parts.uri.to_string(),
    )
}

impl Sim {
    /// Runs an admitted request's command.
    pub(super) fn dispatch(
        self: &Arc<Self>,
        command: Command,
        body: &[u8],
        ctx: &mut RequestCtx,
    ) -> Answer {
        let result = match command {
            Command::PortraitSet => Ok(self.portrait_set(body, ctx)),
            Command::PortraitGet => self.portrait_get(body, ctx),
            Command::AccountImport => self.account_import(body, ctx),
            Command::MultiaccountImport => self.multiaccount_import(body, ctx),
            Command::AccountCheck => self.account_check(body, ctx),
        };
        result.unwrap_or_else(|answer| answer)
    }
}
