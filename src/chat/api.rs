//! One owned handle on Chat for a job or a pass: the client, a pacer of its own, the retry
//! policy and the stop signal, with counters of requests and throttled answers. Every call the
//! tool makes to Chat goes through one. The handles of one job (portrait_set's, and those of the
//! reads of `--changes-only` and the batch path) name each other's pacers as siblings: an
//! app-wide 60011 on any of them slows them all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::chat::client::ChatClient;
use crate::chat::limiter::Pacer;
use crate::chat::retry::{Answer, Answered, Caller, RequestResults, RetryPolicy};

/// Chat's REST command paths.
pub mod command {
    pub const PORTRAIT_SET: &str = "profile/portrait_set";
    pub const PORTRAIT_GET: &str = "profile/portrait_get";
    pub const MULTIACCOUNT_IMPORT: &str = "im_open_login_svc/multiaccount_import";
    pub const ACCOUNT_IMPORT: &str = "im_open_login_svc/account_import";
    pub const ACCOUNT_CHECK: &str = "im_open_login_svc/account_check";

    /// Chat's documented limit for a command, in calls a second (spec §1.5): 100 for the
    /// batch account commands, 200 for the others.
    pub fn limit(command: &str) -> u32 {
        match command {
            MULTIACCOUNT_IMPORT | ACCOUNT_CHECK => 100,
            _ => 200,
        }
    }
}

/// A paced, retried way to call Chat.
pub struct ChatApi {
    client: Arc<ChatClient>,
    pacer: Arc<Pacer>,
    /// Other handles' pacers on the same app: slowed too when Chat answers 60011. Set once,
    /// when the job's handles are linked (calls before that have none).
    siblings: OnceLock<Vec<Arc<Pacer>>>,
    policy: RetryPolicy,
    stop: CancellationToken,
    requests: AtomicU64,
    throttled: AtomicU64,
    results: RequestResults,
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
            siblings: OnceLock::new(),
            policy,
            stop,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            results: RequestResults::default(),
        }
    }

    /// Makes every handle in `apis` a sibling of every other: their commands share the app's
    /// limit, so an app-wide 60011 on any of them slows them all. A handle joins one group:
    /// linking it into a second is a bug (a debug build panics; a release build keeps the
    /// first).
    pub fn link_siblings(apis: &[&ChatApi]) {
        for (index, api) in apis.iter().enumerate() {
            let others = apis
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, other)| other.shared_pacer())
                .collect();
            let first_group = api.siblings.set(others).is_ok();
            debug_assert!(first_group, "a ChatApi handle linked into two groups");
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
            siblings: self.siblings.get().map_or(&[], Vec::as_slice),
            policy: self.policy,
            stop: &self.stop,
            requests: &self.requests,
            throttled: &self.throttled,
            results: &self.results,
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

    /// How its requests were answered so far, by command.
    pub fn results(&self) -> BTreeMap<String, Answered> {
        self.results.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::client::ClientTuning;
    use crate::chat::connection::{parse_endpoint, Connection, Credentials};
    use crate::chat::usersig::SecretKey;

    fn handle(client: &Arc<ChatClient>, stop: &CancellationToken) -> ChatApi {
        ChatApi::new(client.clone(), 200, RetryPolicy::default(), stop.clone())
    }

    /// Every handle of a group names every other's pacer, and only those: a 60011 on any of
    /// them slows all the others.
    #[test]
    fn linked_handles_are_each_others_siblings() {
        let connection = Connection {
            sdkappid: 1_400_000_000,
            admin: "administrator".into(),
            base_url: parse_endpoint("http://127.0.0.1:9").expect("a loopback endpoint"),
            credentials: Credentials::Key(SecretKey::new("k")),
            usersig_ttl: 3600,
        };
        let client =
            Arc::new(ChatClient::new(connection, ClientTuning::default()).expect("client"));
        let stop = CancellationToken::new();
        let (sends, reads, checks) = (
            handle(&client, &stop),
            handle(&client, &stop),
            handle(&client, &stop),
        );
        let unlinked = handle(&client, &stop);
        ChatApi::link_siblings(&[&sends, &reads, &checks]);
        let siblings_of = |api: &ChatApi| api.siblings.get().cloned().unwrap_or_default();
        for (api, others) in [
            (&sends, [&reads, &checks]),
            (&reads, [&sends, &checks]),
            (&checks, [&sends, &reads]),
        ] {
            let siblings = siblings_of(api);
            assert_eq!(siblings.len(), 2);
            for other in others {
                assert!(siblings.iter().any(|p| Arc::ptr_eq(p, &other.pacer)));
            }
            assert!(!siblings.iter().any(|p| Arc::ptr_eq(p, &api.pacer)));
        }
        assert!(siblings_of(&unlinked).is_empty());
    }
}
