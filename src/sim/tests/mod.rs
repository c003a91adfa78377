//! The simulator's own tests, over HTTP on loopback: shared helpers here, one file per area.

mod accounts;
mod auth;
mod faults;
mod limits;
mod portrait_get;
mod portrait_set;
mod server;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::state::State;
use super::window::unix_now;
use super::{Faults, Injected, SimConfig, SimHandle, MAX_BODY_BYTES};
use crate::chat::usersig::{self, SecretKey};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "sim-test-key";

fn config() -> SimConfig {
    SimConfig::new(APP, ADMIN, SecretKey::new(KEY))
}

fn sig_for(identifier: &str) -> String {
    usersig::generate(&SecretKey::new(KEY), APP, identifier, unix_now(), 86_400)
}

fn query(identifier: &str, usersig: &str) -> String {
    format!(
        "sdkappid={APP}&identifier={identifier}&usersig={usersig}&random=12345&contenttype=json"
    )
}

fn set_url(sim: &SimHandle) -> String {
    format!(
        "{}/v4/profile/portrait_set?{}",
        sim.url(),
        query(ADMIN, &sig_for(ADMIN))
    )
}

fn nick(user: &str, nick: &str) -> Value {
    json!({"From_Account": user, "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": nick}]})
}

/// One portrait_set of alice's Nick, with a fresh client (for the fault tests).
async fn post_alice(sim: &SimHandle) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(set_url(sim))
        .json(&nick("alice", "A"))
        .send()
        .await
}

/// Posts and returns the ErrorCode (the HTTP status must be 200).
async fn code_of(client: &reqwest::Client, url: &str, body: &Value) -> u64 {
    let response = client.post(url).json(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let code = answer["ErrorCode"].as_u64().unwrap();
    assert_eq!(
        answer["ActionStatus"],
        if code == 0 { "OK" } else { "FAIL" }
    );
    assert!(answer["ErrorInfo"].is_string() && answer["ErrorDisplay"] == "");
    code
}

const IMPORT: &str = "/v4/im_open_login_svc/account_import";
const MULTI: &str = "/v4/im_open_login_svc/multiaccount_import";
const CHECK: &str = "/v4/im_open_login_svc/account_check";
const GET: &str = "/v4/profile/portrait_get";

fn url_as(sim: &SimHandle, path: &str, identifier: &str) -> String {
    format!(
        "{}{path}?{}",
        sim.url(),
        query(identifier, &sig_for(identifier))
    )
}

fn url(sim: &SimHandle, path: &str) -> String {
    url_as(sim, path, ADMIN)
}

/// Posts and returns the whole answer after checking the envelope: HTTP 200, ActionStatus
/// matching ErrorCode, and `ErrorDisplay` only on profile-service answers.
async fn call(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = client.post(url).json(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let code = answer["ErrorCode"].as_u64().unwrap();
    assert_eq!(
        answer["ActionStatus"],
        if code == 0 { "OK" } else { "FAIL" }
    );
    assert!(answer["ErrorInfo"].is_string(), "{answer}");
    if url.contains("/v4/profile/") {
        assert_eq!(answer["ErrorDisplay"], "", "{answer}");
    } else {
        assert!(answer.get("ErrorDisplay").is_none(), "{answer}");
    }
    answer
}

async fn code(client: &reqwest::Client, url: &str, body: &Value) -> u64 {
    call(client, url, body).await["ErrorCode"].as_u64().unwrap()
}

fn known(users: &[&str]) -> Option<HashSet<String>> {
    Some(users.iter().map(|u| u.to_string()).collect())
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Waits until `done` holds for the simulator's state: checked again at every arrival, answer
/// and end of a request, failing the test after 10 s.
async fn until(sim: &SimHandle, what: &str, done: impl Fn(&State) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let changed = sim.sim.changed.notified();
        let mut changed = std::pin::pin!(changed);
        // Registered before the check, so a change between the check and the wait is seen.
        changed.as_mut().enable();
        if done(&sim.sim.state()) {
            return;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            panic!("{what}: not within 10 s");
        }
    }
}
