//! The loop most people write first, shared by the benches as their baseline: governor's plain
//! `Quota::per_second(rate)` in front of `tasks` concurrent senders, each row's portrait_set sent
//! once, no retries, answers ignored.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use profile_import::chat::usersig::{self, SecretKey};

/// Who the naive loop signs as.
pub struct Account<'a> {
    pub sdkappid: u64,
    pub admin: &'a str,
    pub key: &'a str,
}

impl Account<'_> {
    /// portrait_set's URL at `url` with a fresh UserSig, less `random` and `contenttype`.
    pub fn portrait_set_url(&self, url: &str) -> Result<String, Box<dyn std::error::Error>> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let sig = usersig::generate(
            &SecretKey::new(self.key),
            self.sdkappid,
            self.admin,
            now,
            3600,
        );
        Ok(format!(
            "{url}/v4/profile/portrait_set?sdkappid={}&identifier={}&usersig={sig}",
            self.sdkappid, self.admin
        ))
    }
}

/// Sends `rows` portrait_set requests (`bench_000000` … with a Nick) to `url`.
pub async fn send(
    url: &str,
    account: &Account<'_>,
    rows: usize,
    rate: u32,
    tasks: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let limiter = Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(rate).ok_or("rate")?,
    )));
    let client = reqwest::Client::new();
    let base = account.portrait_set_url(url)?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks.min(rows) {
        let (limiter, client, next, base) =
            (limiter.clone(), client.clone(), next.clone(), base.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= rows {
                    break;
                }
                limiter.until_ready().await;
                let body = format!(
                    r#"{{"From_Account":"bench_{i:06}","ProfileItem":[{{"Tag":"Tag_Profile_IM_Nick","Value":"Nick {i}"}}]}}"#
                );
                let _ = client
                    .post(format!("{base}&random={i}&contenttype=json"))
                    .body(body)
                    .send()
                    .await;
            }
        }));
    }
    for handle in handles {
        handle.await?;
    }
    Ok(())
}
