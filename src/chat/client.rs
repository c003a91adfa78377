//! The HTTP client for Chat's REST API: one pooled reqwest client, request URLs with a fresh
//! UserSig and `random`, and the decoding of Chat's answer envelope.
//!
//! This module knows nothing of CSV files or retries. Errors it returns never contain the URL,
//! because the URL carries the UserSig.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Deserialize;
use url::Url;

use crate::chat::connection::{Connection, Credentials};
use crate::chat::usersig;

/// Chat's answer envelope (spec §1.3).
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(rename = "ActionStatus", default)]
    pub action_status: String,
    #[serde(rename = "ErrorCode", default)]
    pub error_code: u32,
    #[serde(rename = "ErrorInfo", default)]
    pub error_info: String,
}

impl Envelope {
    /// Success is `ActionStatus` OK with `ErrorCode` 0, and nothing else.
    pub fn is_ok(&self) -> bool {
        self.action_status == "OK" && self.error_code == 0
    }
}

/// A call that got no usable Chat answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer within the request timeout: Chat may or may not have applied the call.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No connection could be made (DNS failure, refused, unreachable, connect timeout): the
    /// request was never sent. The text names the host.
    #[error("{0}")]
    Connect(String),
    /// Sending or reading failed on an open connection (reset, closed).
    #[error("connection failed: {0}")]
    Transport(String),
    /// A non-200 HTTP status.
    #[error("HTTP {0}")]
    Http(u16),
    /// HTTP 200 but not Chat's JSON envelope.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
}

/// Test hook: the header a request carries its send time in when
/// [`ClientTuning::stamp_sends`] is on, as nanoseconds since the Unix epoch. The simulator
/// records it beside the arrival, so a timing test can count the client's own windows apart from
/// the jitter between client and server.
pub const SENT_AT_HEADER: &str = "x-profile-import-sent-at";

/// Test hook: set (to anything but empty) in a binary's environment, it turns
/// [`ClientTuning::stamp_sends`] on. Only tests set it; Chat ignores the header.
pub const STAMP_SENDS_ENV: &str = "PROFILE_IMPORT_TEST_STAMP_SENDS";

/// Test hook: a UserSig lifetime in seconds below the CLI's 60 s minimum (1 to 59; anything
/// else is ignored), so a test can run longer than several lifetimes and watch the renewals.
/// Only tests set it.
pub const TEST_USERSIG_TTL_ENV: &str = "PROFILE_IMPORT_TEST_USERSIG_TTL";

/// How far back a UserSig's `TLS.time` is set, in case our clock is ahead of Chat's: 30 s, or
/// half the lifetime when that is shorter (only the test hook's lifetimes are), so a short-lived
/// sig is not born expired.
const SIGN_BACK: u64 = 30;

/// Client timeouts and pool settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientTuning {
    /// Whole-request timeout; Chat's own is 3 s, so this must be above it.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Below common server keep-alives (nginx 75 s, ALB 60 s) to avoid the keep-alive race.
    pub pool_idle_timeout: Duration,
    /// Test hook: each request carries its send time in [`SENT_AT_HEADER`]. Off unless
    /// [`STAMP_SENDS_ENV`] is set; when off it costs one branch per request.
    pub stamp_sends: bool,
}

impl Default for ClientTuning {
    fn default() -> Self {
        ClientTuning {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(30),
            stamp_sends: std::env::var_os(STAMP_SENDS_ENV).is_some_and(|v| !v.is_empty()),
        }
    }
}

struct CurrentSig {
    usersig: String,
    /// Unix time after which the sig is renewed.
    renew_at: u64,
    /// Per command, the request URL up to `random` with this sig: building and encoding it
    /// for every request cost a tenth of the send loop's CPU.
    urls: HashMap<String, Url>,
}

/// A client for one app, signing as its admin.
pub struct ChatClient {
    http: reqwest::Client,
    connection: Connection,
    tuning: ClientTuning,
    sig: Mutex<CurrentSig>,
    /// Some request got an HTTP answer: the endpoint is right and reachable.
    answered: AtomicBool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The test hook's lifetime from [`TEST_USERSIG_TTL_ENV`], if set to 1-59 seconds.
fn test_usersig_ttl() -> Option<u64> {
    std::env::var(TEST_USERSIG_TTL_ENV)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|ttl| (1..60).contains(ttl))
}

impl ChatClient {
    pub fn new(mut connection: Connection, tuning: ClientTuning) -> anyhow::Result<ChatClient> {
        if let Some(ttl) = test_usersig_ttl() {
            connection.usersig_ttl = ttl;
        }
        let mut builder = reqwest::Client::builder()
            .timeout(tuning.request_timeout)
            .connect_timeout(tuning.connect_timeout)
            .pool_idle_timeout(tuning.pool_idle_timeout)
            .tcp_nodelay(true)
            // Chat never redirects; following one would carry the UserSig to another URL.
            .redirect(reqwest::redirect::Policy::none())
            // Retries are `chat::retry`'s, through the pacer. reqwest's own (for HTTP/2 refused
            // streams) would also copy every request's headers in case it retries.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            // The sending thread must not nap while a connection is being opened.
            .connector_layer(crate::chat::nap::CountConnecting::new())
            .user_agent(concat!("profile-import/", env!("CARGO_PKG_VERSION")))
            .https_only(connection.base_url.scheme() == "https");
        if connection.base_url.scheme() == "http" {
            // Plain http is only ever loopback (see config::parse_endpoint): never via a proxy.
            builder = builder.no_proxy();
        }
        let http = builder.build()?;
        let sig = Mutex::new(Self::fresh_sig(&connection));
        Ok(ChatClient {
            http,
            connection,
            tuning,
            sig,
            answered: AtomicBool::new(false),
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// True once any request got an HTTP answer. Until then, failing to connect means the
    /// endpoint, the region or the network is wrong, not that one request was unlucky.
    pub fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    fn fresh_sig(connection: &Connection) -> CurrentSig {
        match &connection.credentials {
            Credentials::Key(key) => {
                let ttl = connection.usersig_ttl;
                let time = unix_now().saturating_sub(SIGN_BACK.min(ttl / 2));
                // A tenth of the lifetime before it ends, at most an hour and at least a
                // second: a whole second, because Chat counts expiry in whole seconds.
                let margin = (ttl / 10).clamp(1, 3600);
                CurrentSig {
                    usersig: usersig::generate(
                        key,
                        connection.sdkappid,
                        &connection.admin,
                        time,
                        ttl,
                    ),
                    renew_at: time.saturating_add(ttl.saturating_sub(margin)),
                    urls: HashMap::new(),
                }
            }
            Credentials::FixedUserSig(sig) => CurrentSig {
                usersig: sig.expose().to_string(),
                renew_at: u64::MAX,
                urls: HashMap::new(),
            },
        }
    }

    /// The current UserSig, renewed before it expires.
    pub fn usersig(&self) -> String {
        self.current_sig().usersig.clone()
    }

    fn current_sig(&self) -> std::sync::MutexGuard<'_, CurrentSig> {
        let mut sig = self.sig.lock().unwrap_or_else(|e| e.into_inner());
        if unix_now() >= sig.renew_at {
            *sig = Self::fresh_sig(&self.connection);
        }
        sig
    }

    /// Forces a new UserSig (after 70001). Returns false if it cannot be renewed.
    pub fn renew_usersig(&self) -> bool {
        if matches!(self.connection.credentials, Credentials::FixedUserSig(_)) {
            return false;
        }
        let mut sig = self.sig.lock().unwrap_or_else(|e| e.into_inner());
        *sig = Self::fresh_sig(&self.connection);
        true
    }

    /// The request URL for `service/command` with a fresh `random`.
    fn url(&self, command: &str) -> Url {
        let mut url = {
            let mut sig = self.current_sig();
            let usersig = sig.usersig.clone();
            sig.urls
                .entry(command.to_string())
                .or_insert_with(|| {
                    let mut url = self.connection.base_url.clone();
                    // Under the endpoint's own path: a proxy at `https://proxy/chat/` serves
                    // Chat at `/chat/v4/...` (parse_endpoint ends the path with `/`).
                    url.set_path(&format!("{}v4/{command}", self.connection.base_url.path()));
                    url.query_pairs_mut()
                        .clear()
                        .append_pair("sdkappid", &self.connection.sdkappid.to_string())
                        .append_pair("identifier", &self.connection.admin)
                        .append_pair("usersig", &usersig);
                    url
                })
                .clone()
        };
        url.query_pairs_mut()
            .append_pair("random", &rand::random::<u32>().to_string())
            .append_pair("contenttype", "json");
        url
    }

    /// POSTs a JSON body to `command` (e.g. `profile/portrait_set`) and decodes the envelope.
    /// Returns the envelope and the raw answer body (for APIs that return more).
    pub async fn call(&self, command: &str, body: Bytes) -> Result<(Envelope, Bytes), CallError> {
        let sent_at = self.tuning.stamp_sends.then(SystemTime::now);
        let mut request = self.http.post(self.url(command)).header(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        if let Some(sent_at) = sent_at {
            let nanos = sent_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            request = request.header(SENT_AT_HEADER, nanos.to_string());
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|err| self.describe(err))?;
        self.answered.store(true, Ordering::Relaxed);
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(CallError::Http(status.as_u16()));
        }
        let bytes = response.bytes().await.map_err(|err| self.describe(err))?;
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(envelope) if !envelope.action_status.is_empty() => Ok((envelope, bytes)),
            // A proxy's page may echo the request URL, UserSig included.
            _ => Err(CallError::BadResponse(redact_usersig(&format!(
                "not a Chat answer: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
            )))),
        }
    }

    /// Turns a reqwest error into a `CallError` without the URL (it carries the UserSig).
    fn describe(&self, err: reqwest::Error) -> CallError {
        // Checked before the timeout: a connect timeout never sent the request.
        let connect = err.is_connect();
        if err.is_timeout() && !connect {
            return CallError::Timeout(self.tuning.request_timeout);
        }
        let err = err.without_url();
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        let text = redact_usersig(&text);
        if connect {
            let host = crate::chat::connection::host_of(&self.connection.base_url);
            return CallError::Connect(format!("cannot connect to {host}: {text}"));
        }
        CallError::Transport(text)
    }
}

/// Removes any `usersig=` query value from a text, as a second line of defence.
pub fn redact_usersig(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("usersig=") {
        out.push_str(&rest[..pos + "usersig=".len()]);
        out.push_str("<redacted>");
        rest = &rest[pos + "usersig=".len()..];
        let end = rest
            .find(|c: char| c == '&' || c.is_whitespace() || c == ')' || c == '"')
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiring_usersig_is_renewed_and_a_fixed_one_is_not() {
        let connection = |credentials| Connection {
            sdkappid: 1400000000,
            admin: "administrator".into(),
            base_url: Url::parse("https://console.tim.qq.com").unwrap(),
            credentials,
            usersig_ttl: 86_400,
        };
        let key = crate::chat::usersig::SecretKey::new("k");
        let client = ChatClient::new(
            connection(Credentials::Key(key.clone())),
            ClientTuning::default(),
        )
        .unwrap();
        let fresh = client.usersig();
        let doc = crate::chat::usersig::decode(&fresh).unwrap();
        assert_eq!(doc.expire, 86_400);
        // Near the end of its life the sig is replaced before use.
        {
            let mut sig = client.sig.lock().unwrap();
            sig.usersig = "stale".into();
            sig.renew_at = 0;
        }
        let renewed = client.usersig();
        assert_ne!(renewed, "stale");
        assert!(crate::chat::usersig::verify(
            &renewed,
            &key,
            1400000000,
            "administrator",
            unix_now()
        )
        .is_ok());
        // After 70001 the sig is replaced at once, even though its renewal is not due.
        {
            let mut sig = client.sig.lock().unwrap();
            sig.usersig = "rejected".into();
            sig.renew_at = u64::MAX;
        }
        assert_eq!(client.usersig(), "rejected", "not due: kept");
        assert!(client.renew_usersig());
        let forced = client.usersig();
        assert_ne!(forced, "rejected");
        assert!(crate::chat::usersig::verify(
            &forced,
            &key,
            1400000000,
            "administrator",
            unix_now()
        )
        .is_ok());

        let fixed = ChatClient::new(
            connection(Credentials::FixedUserSig(
                crate::chat::usersig::SecretKey::new("given"),
            )),
            ClientTuning::default(),
        )
        .unwrap();
        assert_eq!(fixed.usersig(), "given");
        assert!(!fixed.renew_usersig(), "a ready UserSig cannot be renewed");
    }

    /// A sig is signed a little in the past and renewed a tenth of its life before it ends: 30 s
    /// back and up to an hour early for real lifetimes (60 s and more), half the lifetime back
    /// and a whole second early for the test hook's short ones, so none is born expired.
    #[test]
    fn a_usersig_is_valid_when_made_and_renewed_before_it_ends() {
        let key = crate::chat::usersig::SecretKey::new("k");
        for (ttl, back, early) in [
            (3, 1, 1),
            (10, 5, 1),
            (60, 30, 6),
            (86_400, 30, 3600),
            (315_360_000, 30, 3600),
        ] {
            let connection = Connection {
                sdkappid: 1400000000,
                admin: "administrator".into(),
                base_url: Url::parse("https://console.tim.qq.com").unwrap(),
                credentials: Credentials::Key(key.clone()),
                usersig_ttl: ttl,
            };
            let before = unix_now();
            let sig = ChatClient::fresh_sig(&connection);
            let after = unix_now();
            let doc = crate::chat::usersig::decode(&sig.usersig).unwrap();
            assert_eq!(doc.expire, ttl);
            assert!(
                (before - back..=after - back).contains(&doc.time),
                "ttl {ttl}: signed at {} for {before}..{after}",
                doc.time
            );
            assert_eq!(sig.renew_at, doc.time + ttl - early, "ttl {ttl}");
            assert!(crate::chat::usersig::verify(
                &sig.usersig,
                &key,
                1400000000,
                "administrator",
                after
            )
            .is_ok());
        }
    }

    #[test]
    fn redacts_usersig_values() {
        assert_eq!(
            redact_usersig("error sending request for url (http://h/v4/x?usersig=abc*-_&random=1)"),
            "error sending request for url (http://h/v4/x?usersig=<redacted>&random=1)"
        );
        assert_eq!(redact_usersig("plain"), "plain");
    }
}
