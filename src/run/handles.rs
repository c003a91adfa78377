//! A job's handles on Chat, composed in one place: one handle per use the job has (each with
//! a pacer of its own, at the rate the job gives it or Chat's limit for the command), all on
//! the job's client and stop signal, and all linked as siblings, so an app-wide 60011 on any
//! of them slows every one. Every command builds its handles here, the demo included.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::chat::api::command::{self, ACCOUNT_CHECK, MULTIACCOUNT_IMPORT};
use crate::chat::api::ChatApi;
use crate::chat::client::ChatClient;
use crate::chat::retry::{Answered, RetryPolicy};

/// portrait_get calls a second for `--batch-nick-image`'s self-check (it makes about one a
/// check, so a low pace leaves the app's portrait_get limit to other readers).
const BATCH_CHECK_RATE: u32 = 20;

/// What a job calls Chat for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// portrait_set (and account_import for `--create-accounts on-demand`), at `--rate`.
    Sets(u32),
    /// portrait_get for comparisons (`--changes-only`, its plan, verify), at the given rate.
    Reads(u32),
    /// account_check, at Chat's limit for it.
    AccountChecks,
    /// account_check at a rate of its own (`check-accounts --rate`).
    AccountChecksAt(u32),
    /// multiaccount_import for the account pass of `--create-accounts`, at Chat's limit.
    AccountImports,
    /// `--batch-nick-image`: multiaccount_import's AccountList at `--batch-rate`, and the
    /// self-check's portrait_get.
    Batch(u32),
}

/// The handles of one job.
pub struct Handles {
    sets: Option<Arc<ChatApi>>,
    reads: Option<Arc<ChatApi>>,
    account_checks: Option<Arc<ChatApi>>,
    account_imports: Option<Arc<ChatApi>>,
    batch: Option<(Arc<ChatApi>, Arc<ChatApi>)>,
}

impl Handles {
    /// A handle for each use, linked as siblings.
    pub fn new(
        client: &Arc<ChatClient>,
        retry: RetryPolicy,
        stop: &CancellationToken,
        uses: &[Use],
    ) -> Handles {
        let api = |rate: u32| Arc::new(ChatApi::new(client.clone(), rate, retry, stop.clone()));
        let mut handles = Handles {
            sets: None,
            reads: None,
            account_checks: None,
            account_imports: None,
            batch: None,
        };
        for use_ in uses {
            match *use_ {
                Use::Sets(rate) => handles.sets = Some(api(rate)),
                Use::Reads(rate) => handles.reads = Some(api(rate)),
                Use::AccountChecks => {
                    handles.account_checks = Some(api(command::limit(ACCOUNT_CHECK)))
                }
                Use::AccountChecksAt(rate) => handles.account_checks = Some(api(rate)),
                Use::AccountImports => {
                    handles.account_imports = Some(api(command::limit(MULTIACCOUNT_IMPORT)))
                }
                Use::Batch(rate) => handles.batch = Some((api(rate), api(BATCH_CHECK_RATE))),
            }
        }
        ChatApi::link_siblings(&handles.all());
        handles
    }

    /// Every handle of the job.
    fn all(&self) -> Vec<&ChatApi> {
        let mut all: Vec<&ChatApi> = [
            &self.sets,
            &self.reads,
            &self.account_checks,
            &self.account_imports,
        ]
        .into_iter()
        .flatten()
        .map(|api| &**api)
        .collect();
        if let Some((import, check)) = &self.batch {
            all.extend([&**import, &**check]);
        }
        all
    }

    /// How every request of the job was answered so far, by command.
    pub fn calls(&self) -> BTreeMap<String, Answered> {
        calls_of(self.all())
    }

    /// Every handle of the job, to count their calls after the handles are handed out.
    pub fn every(&self) -> Vec<Arc<ChatApi>> {
        let mut every: Vec<Arc<ChatApi>> = [
            &self.sets,
            &self.reads,
            &self.account_checks,
            &self.account_imports,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        if let Some((import, check)) = &self.batch {
            every.extend([import.clone(), check.clone()]);
        }
        every
    }

    pub fn sets(&self) -> anyhow::Result<&Arc<ChatApi>> {
        need(&self.sets, "portrait_set")
    }

    pub fn reads(&self) -> anyhow::Result<&Arc<ChatApi>> {
        need(&self.reads, "portrait_get")
    }

    pub fn account_checks(&self) -> anyhow::Result<&Arc<ChatApi>> {
        need(&self.account_checks, "account_check")
    }

    /// The account checks, when the job has them.
    pub fn account_checks_if_any(&self) -> Option<&Arc<ChatApi>> {
        self.account_checks.as_ref()
    }

    pub fn account_imports(&self) -> anyhow::Result<&Arc<ChatApi>> {
        need(&self.account_imports, "multiaccount_import")
    }

    /// `--batch-nick-image`'s multiaccount_import and self-check handles.
    pub fn batch(&self) -> Option<(Arc<ChatApi>, Arc<ChatApi>)> {
        self.batch.clone()
    }
}

/// How the requests of `apis` were answered, by command, added up.
pub fn calls_of<'a>(apis: impl IntoIterator<Item = &'a ChatApi>) -> BTreeMap<String, Answered> {
    let mut calls: BTreeMap<String, Answered> = BTreeMap::new();
    for api in apis {
        for (command, answered) in api.results() {
            calls.entry(command).or_default().add(answered);
        }
    }
    calls
}

fn need<'a>(api: &'a Option<Arc<ChatApi>>, command: &str) -> anyhow::Result<&'a Arc<ChatApi>> {
    api.as_ref()
        .ok_or_else(|| anyhow::anyhow!("this job has no handle for {command}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::client::ClientTuning;
    use crate::chat::connection::{parse_endpoint, Connection, Credentials};
    use crate::chat::usersig::SecretKey;

    #[test]
    fn each_use_gets_its_rate_and_chats_limits_fill_the_rest() {
        let connection = Connection {
            sdkappid: 1_400_000_000,
            admin: "administrator".into(),
            base_url: parse_endpoint("http://127.0.0.1:9").expect("a loopback endpoint"),
            credentials: Credentials::Key(SecretKey::new("k")),
            usersig_ttl: 3600,
        };
        let client =
            Arc::new(ChatClient::new(connection, ClientTuning::default()).expect("client"));
        let handles = Handles::new(
            &client,
            RetryPolicy::default(),
            &CancellationToken::new(),
            &[
                Use::Sets(150),
                Use::Reads(40),
                Use::AccountChecks,
                Use::AccountImports,
                Use::Batch(60),
            ],
        );
        let rate = |api: &ChatApi| api.pacer().ceiling().round() as u32;
        assert_eq!(rate(handles.sets().unwrap()), 150);
        assert_eq!(rate(handles.reads().unwrap()), 40);
        assert_eq!(rate(handles.account_checks().unwrap()), 100);
        assert_eq!(rate(handles.account_imports().unwrap()), 100);
        let (import, check) = handles.batch().unwrap();
        assert_eq!((rate(&import), rate(&check)), (60, BATCH_CHECK_RATE));
        assert_eq!(handles.all().len(), 6);
        let only_checks = Handles::new(
            &client,
            RetryPolicy::default(),
            &CancellationToken::new(),
            &[Use::AccountChecks],
        );
        assert!(only_checks.sets().is_err());
    }
}
