//! When the sending thread may nap before it goes idle: until the nearest pacer turn (posted by
//! `chat::limiter`), and never while a connection is being opened (counted by a connector
//! layer on `chat::client`'s HTTP client). Answers that arrive during a nap are read in the
//! turn's wake-up instead of waking the thread one by one.
//!
//! Why the connection rule: a request on a new connection is written only when its connect
//! (and TLS handshake) completes. Napping through that completion would write it up to one turn
//! late, right next to the following request, and a server's one-second window could then see
//! one request too many (measured: 51 in a window at 50/s, and one 60007).
//!
//! The board is process-wide: a nap never lasts past the nearest turn any pacer posted, so a
//! second runtime in the same process (as in tests) can only shorten or skip a nap.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The longest nap: below this pace (40/s) answers are read as they come.
pub const MAX_NAP: Duration = Duration::from_millis(25);
/// The shortest nap: above this pace (500/s) turns come so often that waking for them alone
/// already reads the answers in few wake-ups, and napping past a turn's timer only makes the
/// pace less even (with naps at every pace, 3,000/s at 200–600 ms reached 90.9 % of the rate
/// in `just bench-rates`, against 97.4–98.1 % without).
pub const MIN_NAP: Duration = Duration::from_millis(2);
/// A nap ends this far past the turn: tokio's timer rounds a deadline up to its next
/// millisecond, and waking before it would cost a second wake-up.
pub const NAP_PAST_TURN: Duration = Duration::from_micros(1200);

/// The nearest pacer turn and the connections being opened.
pub(crate) struct TurnBoard {
    /// The real time at which the earliest known turn of any pacer is due, in nanoseconds
    /// since `epoch` (0: none known).
    next: AtomicU64,
    epoch: Instant,
    /// Connections being opened (connect, TLS handshake) right now.
    connecting: AtomicUsize,
}

impl TurnBoard {
    pub(crate) fn new() -> TurnBoard {
        TurnBoard {
            next: AtomicU64::new(0),
            epoch: Instant::now(),
            connecting: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// A pacer's next turn comes `wait` from now (real time).
    pub(crate) fn turn_in(&self, wait: Duration) {
        let now = self.now();
        let turn = now.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        let _ = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |known| {
                // A known turn that has passed is stale; an earlier one still to come stands.
                (known <= now || turn < known).then_some(turn)
            });
    }

    /// How long to nap: until just past the next turn, if it is near but not imminent and no
    /// connection is being opened. Takes the turn off the board (the pacer that waits for it puts up its
    /// next one).
    pub(crate) fn nap(&self) -> Option<Duration> {
        if self.connecting.load(Ordering::Acquire) > 0 {
            return None;
        }
        let turn = self.next.swap(0, Ordering::Relaxed);
        let now = self.now();
        let nap = Duration::from_nanos(turn.checked_sub(now).filter(|wait| *wait > 0)?);
        (MIN_NAP..=MAX_NAP)
            .contains(&nap)
            .then_some(nap + NAP_PAST_TURN)
    }

    /// Counts a connection being opened until the guard drops.
    fn connecting(&'static self) -> Connecting {
        self.connecting.fetch_add(1, Ordering::AcqRel);
        Connecting { board: self }
    }
}

/// A connection being opened: counted on the board until dropped (done, failed or abandoned).
struct Connecting {
    board: &'static TurnBoard,
}

impl Drop for Connecting {
    fn drop(&mut self) {
        self.board.connecting.fetch_sub(1, Ordering::AcqRel);
    }
}

fn board() -> &'static TurnBoard {
    static BOARD: OnceLock<TurnBoard> = OnceLock::new();
    BOARD.get_or_init(TurnBoard::new)
}

/// Records that a pacer's next turn comes `wait` from now.
pub(crate) fn next_turn_in(wait: Duration) {
    board().turn_in(wait);
}

/// For a sending runtime's `on_thread_park`: when the thread would go idle, sleeps until just
/// past the next pacer turn if it is near and no connection is being opened, so answers that
/// arrive meanwhile are read in the same wake-up as the turn. A wake-up costs tens of µs of CPU
/// on a virtual machine, and at 200/s there would otherwise be two per request; an answer
/// waits at most one turn longer to be read.
pub fn nap_until_next_turn() {
    if let Some(nap) = board().nap() {
        std::thread::sleep(nap);
    }
}

/// A connector layer for reqwest: counts each connection being opened on the board, so the
/// thread does not nap through its completion.
#[derive(Clone, Copy)]
pub struct CountConnecting {
    board: &'static TurnBoard,
}

impl CountConnecting {
    /// Counts on the process's board, the one `nap_until_next_turn` reads.
    pub fn new() -> CountConnecting {
        CountConnecting { board: board() }
    }
}

impl Default for CountConnecting {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> tower::Layer<S> for CountConnecting {
    type Service = CountedConnector<S>;

    fn layer(&self, inner: S) -> CountedConnector<S> {
        CountedConnector {
            inner,
            board: self.board,
        }
    }
}

/// A connector whose connection attempts are counted on the board while they run.
#[derive(Clone)]
pub struct CountedConnector<S> {
    inner: S,
    board: &'static TurnBoard,
}

impl<S, Request> tower::Service<Request> for CountedConnector<S>
where
    S: tower::Service<Request>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let connecting = self.board.connecting();
        let connect = self.inner.call(request);
        Box::pin(async move {
            let _connecting = connecting;
            connect.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime's nap before going idle lasts until just past the nearest turn any pacer
    /// waits for, and never when none is near: answers are then read at the turn, in one
    /// wake-up.
    #[test]
    fn a_nap_lasts_until_just_past_the_nearest_turn_and_only_when_one_is_near() {
        let board = TurnBoard::new();
        assert_eq!(board.nap(), None, "no turn known");

        board.turn_in(Duration::from_millis(5));
        board.turn_in(Duration::from_millis(3));
        board.turn_in(Duration::from_millis(4));
        let nap = board.nap().expect("a turn 3 ms away");
        assert!(
            nap > Duration::from_millis(2) + NAP_PAST_TURN
                && nap <= Duration::from_millis(3) + NAP_PAST_TURN,
            "{nap:?}: until just past the nearest turn"
        );
        assert_eq!(board.nap(), None, "a turn is napped for once");

        board.turn_in(MAX_NAP + Duration::from_millis(1));
        assert_eq!(
            board.nap(),
            None,
            "a far turn: answers are read as they come"
        );

        board.turn_in(MIN_NAP - Duration::from_micros(100));
        assert_eq!(
            board.nap(),
            None,
            "an imminent turn: its timer wakes the thread anyway"
        );

        // A turn that has passed is stale: a later one replaces it.
        board.turn_in(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
        board.turn_in(Duration::from_millis(10));
        let nap = board.nap().expect("the later turn");
        assert!(nap > Duration::from_millis(8), "{nap:?}");
    }

    /// While a connection is being opened the thread never naps, so the request waiting for
    /// it is written as soon as it is up, not at the next turn beside another request.
    #[test]
    fn no_nap_while_a_connection_is_being_opened() {
        let board: &'static TurnBoard = Box::leak(Box::new(TurnBoard::new()));
        let connecting = board.connecting();
        board.turn_in(Duration::from_millis(5));
        assert_eq!(board.nap(), None, "a connection is being opened");
        drop(connecting);
        assert!(board.nap().is_some(), "the turn still stands once it is up");

        let first = board.connecting();
        let second = board.connecting();
        drop(first);
        board.turn_in(Duration::from_millis(5));
        assert_eq!(board.nap(), None, "one of two is still being opened");
        drop(second);
        assert!(board.nap().is_some());
    }

    /// The layer counts a connect from the call until its future is done or dropped.
    #[tokio::test]
    async fn the_connector_layer_counts_a_connect_until_it_ends() {
        use tower::{Layer, Service};
        let board: &'static TurnBoard = Box::leak(Box::new(TurnBoard::new()));
        let layer = CountConnecting { board };
        let connecting = || board.connecting.load(Ordering::Acquire);

        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let mut connector = layer.layer(tower::service_fn(
            |wait: tokio::sync::oneshot::Receiver<()>| wait,
        ));
        let connect = connector.call(released);
        assert_eq!(connecting(), 1, "counted from the call");
        release.send(()).expect("the connect waits");
        connect.await.expect("connected");
        assert_eq!(connecting(), 0, "done");

        let (_never, pending) = tokio::sync::oneshot::channel::<()>();
        let abandoned = connector.call(pending);
        assert_eq!(connecting(), 1);
        drop(abandoned);
        assert_eq!(connecting(), 0, "abandoned");
    }
}
