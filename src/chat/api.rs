//! One owned handle on Chat for a job or a pass: the client, a pacer of its own, the retry
//! policy and the stop signal, with counters of requests and throttled answers. Every call the
//! tool makes to Chat goes through one. Handles that share an app (the reads and the sends of
//! `--changes-only`) name each other's pacers as siblings: an app-wide 60011 slows them all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::chat::client::ChatClient;
use crate::chat::limiter::Pacer;
use crate::chat::retry::{Answer, Caller, RetryPolicy};

/// Chat's REST command paths.
pub mod command {
    pub const PORTRAIT_SET: &str = "profile/portrait_set";
    pub const PORTRAIT_GET: &str = "profile/portrait_get";
    pub const MULTIACCOUNT_IMPORT: &str = "im_open_login_svc/multiaccount_import";
    pub const ACCOUNT_IMPORT: &str = "im_open_login_svc/account_import";
    pub const ACCOUNT_CHECK: &str = "im_open_login_svc/account_check";
}

/// A paced, retried way to call Chat.
pub struct ChatApi {
    client: Arc<ChatClient>,
    pacer: Arc<Pacer>,
    /// Other handles' pacers on the same app: slowed too when Chat answers 60011.
    siblings: Vec<Arc<Pacer>>,
    policy: RetryPolicy,
    stop: CancellationToken,
    requests: AtomicU64,
    throttled: AtomicU64,
}

impl ChatApi {
    /// A handle whose calls go out at most `rate` a second, retried by `policy`, until `stop`.
    pub fn new(
        client: Arc<ChatClient>,
        rate: u32,
        policy: RetryPolicy,
        stop: CancellationToken,
    ) -> ChatApi {
        ChatApi {
            client,
            pacer: Arc::new(Pacer::new(rate)),
            siblings: Vec::new(),
            policy,
            stop,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Also slows `sibling` (another handle's pacer, see [`ChatApi::shared_pacer`]) whenever
    /// Chat answers this handle's calls with 60011, the app-wide limit.
    pub fn add_sibling(&mut self, sibling: Arc<Pacer>) {
        self.siblings.push(sibling);
    }

    /// Makes every handle in `apis` a sibling of every other: their commands share the app's
    /// limit, so an app-wide 60011 on any of them slows them all.
    pub fn link_siblings(apis: &mut [&mut ChatApi]) {
        let pacers: Vec<Arc<Pacer>> = apis.iter().map(|api| api.shared_pacer()).collect();
        for (index, api) in apis.iter_mut().enumerate() {
            for (other, pacer) in pacers.iter().enumerate() {
                if other != index {
                    api.add_sibling(Arc::clone(pacer));
                }
            }
        }
    }

    /// This handle's pacer, to be named as another handle's sibling.
    pub fn shared_pacer(&self) -> Arc<Pacer> {
        Arc::clone(&self.pacer)
    }

    /// Makes one call until it succeeds, fails for good, or the job stops. Returns how it
    /// ended and how many requests it took.
    pub async fn call(&self, command: &str, body: Bytes) -> (Answer, u32) {
        Caller {
            client: &self.client,
            pacer: &self.pacer,
            siblings: &self.siblings,
            policy: self.policy,
            stop: &self.stop,
            requests: &self.requests,
            throttled: &self.throttled,
        }
        .call(command, body)
        .await
    }

    pub fn client(&self) -> &ChatClient {
        &self.client
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Cancelled when the job stops; calls in backoff are then left pending.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Throttled answers so far (60007 and friends, HTTP 429).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}
