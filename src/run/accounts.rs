//! Chat accounts: importing the file's users before their profiles are set
//! (`multiaccount_import`, 100 per call at most 100 calls/s, in the plain or the AccountList
//! form), importing one on demand (`account_import`), and checking which exist
//! (`account_check`, 100 per call).
//!
//! portrait_set answers 40003 for a user who is not an account yet; Tencent's migration guide
//! says to import accounts first. These passes read the CSV on their own, before the send.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use bytes::Bytes;
use csv::ByteRecord;
use serde::{Deserialize, Serialize};

use crate::chat::api::command::{ACCOUNT_CHECK, ACCOUNT_IMPORT, MULTIACCOUNT_IMPORT};
use crate::chat::api::ChatApi;
use crate::chat::retry::Answer;
use crate::input::header::ColumnRole;
use crate::input::profile::{StandardField, Tag};
use crate::input::reader::{CsvInput, InputOptions};
use crate::input::row::{RowMapper, RowRules, Verdict};
use crate::input::survey::Survey;
use crate::outcome::FailureCode;
use anyhow::Context;

/// Accounts per batch call (spec §5.3, §5.4).
pub const BATCH: usize = 100;
/// multiaccount_import and account_check allow 100 calls a second (spec §1.5).
pub const BATCH_CALLS_PER_SECOND: u32 = 100;

/// How `--create-accounts` imports accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateAccounts {
    /// Before sending profiles, import every user of the file with multiaccount_import.
    Batch,
    /// Like `batch`, with the AccountList form: Nick and FaceUrl (the Image column) are set
    /// at import.
    AccountList,
    /// Import one account with account_import when portrait_set answers 40003, then retry.
    OnDemand,
}

/// One account to import.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccountEntry {
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "Nick", skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    #[serde(rename = "FaceUrl", skip_serializing_if = "Option::is_none")]
    pub face_url: Option<String>,
}

/// Why an account could not be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFailure {
    pub code: FailureCode,
    pub message: String,
}

/// What a batch import pass did.
#[derive(Debug, Default)]
pub struct ImportPass {
    pub calls: u64,
    pub accounts: u64,
    /// Users whose account could not be imported; their rows fail at stage `account`.
    pub failed: HashMap<String, AccountFailure>,
}

/// Reads the distinct UserIDs of valid rows in batches of up to 100, with the Nick and Image
/// of their latest row in the batch (for the AccountList form).
pub struct BatchReader {
    csv: CsvInput,
    mapper: RowMapper,
    nick_col: Option<usize>,
    image_col: Option<usize>,
    record: ByteRecord,
    body: Vec<u8>,
    /// Notes every record it reads, so the account pass is also the run's survey.
    survey: Option<Survey>,
}

impl BatchReader {
    pub fn open(input: &InputOptions, rules: RowRules) -> anyhow::Result<BatchReader> {
        let csv = CsvInput::open(input)?;
        let mapper = RowMapper::new(csv.columns.clone(), rules);
        let column_of = |field: StandardField| {
            csv.columns
                .roles
                .iter()
                .position(|r| *r == ColumnRole::Field(Tag::Standard(field)))
        };
        let (nick_col, image_col) = (
            column_of(StandardField::Nick),
            column_of(StandardField::Image),
        );
        Ok(BatchReader {
            csv,
            mapper,
            nick_col,
            image_col,
            record: ByteRecord::new(),
            body: Vec::new(),
            survey: None,
        })
    }

    /// The next batch, or None at the end of the file. Reading is fast next to the calls.
    pub fn next_batch(&mut self) -> anyhow::Result<Option<Vec<AccountEntry>>> {
        let mut batch: Vec<AccountEntry> = Vec::with_capacity(BATCH);
        let mut in_batch: HashMap<String, usize> = HashMap::new();
        while batch.len() < BATCH {
            if self.csv.read(&mut self.record)?.is_none() {
                break;
            }
            if let Some(survey) = &mut self.survey {
                survey.observe(&self.record, &self.mapper, self.csv.unterminated());
            }
            let user_id = match self.mapper.map(&self.record, &mut self.body) {
                Verdict::Ready { user_id, .. } | Verdict::Skipped { user_id } => {
                    user_id.to_string()
                }
                Verdict::Invalid(_) => continue,
            };
            let record = &self.record;
            let cell = |col: Option<usize>| {
                col.and_then(|c| record.get(c))
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .filter(|v| !v.trim().is_empty())
                    .map(str::to_string)
            };
            let entry = AccountEntry {
                user_id: user_id.clone(),
                nick: cell(self.nick_col),
                face_url: cell(self.image_col),
            };
            match in_batch.get(&user_id) {
                // A later row for the same user wins, field by field.
                Some(&i) => {
                    let kept = &mut batch[i];
                    kept.nick = entry.nick.or(kept.nick.take());
                    kept.face_url = entry.face_url.or(kept.face_url.take());
                }
                None => {
                    in_batch.insert(user_id, batch.len());
                    batch.push(entry);
                }
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}

/// The shape of multiaccount_import's answer beyond the envelope.
#[derive(Debug, Deserialize)]
struct MultiImportAnswer {
    #[serde(rename = "FailAccounts", default)]
    fail_accounts: Vec<String>,
}

/// multiaccount_import's body: the AccountList form (`with_profile`, Nick and FaceUrl
/// included) or the plain Accounts form.
pub fn multiaccount_import_body(batch: &[AccountEntry], with_profile: bool) -> Bytes {
    let body = if with_profile {
        serde_json::json!({ "AccountList": batch })
    } else {
        serde_json::json!({
            "Accounts": batch.iter().map(|e| e.user_id.as_str()).collect::<Vec<_>>()
        })
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// The `FailAccounts` of a multiaccount_import answer; None when the answer cannot be read
/// (then nothing is known to be imported).
pub fn fail_accounts(raw: &[u8]) -> Option<Vec<String>> {
    serde_json::from_slice::<MultiImportAnswer>(raw)
        .ok()
        .map(|answer| answer.fail_accounts)
}

/// The account calls, made through a job's (or a pass's own) `ChatApi`.
pub struct AccountCalls<'a> {
    pub api: &'a ChatApi,
}

impl AccountCalls<'_> {
    /// Imports one batch with multiaccount_import. Returns the users that failed, or the
    /// reason the whole job must stop.
    pub async fn import_batch(
        &self,
        batch: &[AccountEntry],
        with_profile: bool,
    ) -> Result<Vec<(String, AccountFailure)>, String> {
        let body = multiaccount_import_body(batch, with_profile);
        let (answer, _) = self.api.call(MULTIACCOUNT_IMPORT, body).await;
        match answer {
            Answer::Ok(_, raw) => {
                let Some(fail) = fail_accounts(&raw) else {
                    // Without a readable FailAccounts nothing is known to be imported.
                    return Ok(batch
                        .iter()
                        .map(|e| {
                            (
                                e.user_id.clone(),
                                AccountFailure {
                                    code: FailureCode::BadResponse,
                                    message: "multiaccount_import answered without a readable FailAccounts".into(),
                                },
                            )
                        })
                        .collect());
                };
                Ok(fail
                    .into_iter()
                    .map(|user| {
                        (
                            user,
                            AccountFailure {
                                code: FailureCode::AccountImport,
                                message: "multiaccount_import listed this account in FailAccounts"
                                    .into(),
                            },
                        )
                    })
                    .collect())
            }
            Answer::Failed { code, message } => Ok(batch
                .iter()
                .map(|e| {
                    (
                        e.user_id.clone(),
                        AccountFailure {
                            code,
                            message: format!("multiaccount_import failed: {message}"),
                        },
                    )
                })
                .collect()),
            Answer::Fatal { why, .. } => Err(why),
            Answer::Stopped => Err("stopped".into()),
        }
    }

    /// Imports one account with account_import (the on-demand form).
    pub async fn import_one(&self, user_id: &str) -> Answer {
        let body = serde_json::json!({ "UserID": user_id });
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        self.api.call(ACCOUNT_IMPORT, body).await.0
    }

    /// Asks which of up to 100 users are not imported. `Err` carries a reason to stop.
    pub async fn check_batch(&self, users: &[String]) -> Result<Vec<String>, String> {
        let items: Vec<_> = users
            .iter()
            .map(|u| serde_json::json!({ "UserID": u }))
            .collect();
        let body = Bytes::from(
            serde_json::to_vec(&serde_json::json!({ "CheckItem": items })).unwrap_or_default(),
        );
        match self.api.call(ACCOUNT_CHECK, body).await.0 {
            Answer::Ok(_, raw) => {
                let answer: CheckAnswer = serde_json::from_slice(&raw)
                    .map_err(|e| format!("account_check answered something unexpected: {e}"))?;
                let answered: HashSet<&str> = answer
                    .result_item
                    .iter()
                    .map(|r| r.user_id.as_str())
                    .collect();
                let mut missing: Vec<String> = answer
                    .result_item
                    .iter()
                    .filter(|r| r.account_status != "Imported")
                    .map(|r| r.user_id.clone())
                    .collect();
                // A user the answer leaves out is not known to be imported.
                missing.extend(
                    users
                        .iter()
                        .filter(|u| !answered.contains(u.as_str()))
                        .cloned(),
                );
                Ok(missing)
            }
            Answer::Failed { code, message } => {
                Err(format!("account_check failed: {code} {message}"))
            }
            Answer::Fatal { why, .. } => Err(why),
            Answer::Stopped => Err("stopped".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct CheckAnswer {
    #[serde(rename = "ResultItem", default)]
    result_item: Vec<CheckItem>,
}

#[derive(Debug, Deserialize)]
struct CheckItem {
    #[serde(rename = "UserID", default)]
    user_id: String,
    #[serde(rename = "AccountStatus", default)]
    account_status: String,
}

/// The batch pass of `--create-accounts`: imports every valid row's user before any profile
/// is sent. It reads the whole file, so it takes the run's survey along.
pub async fn import_all(
    input: &InputOptions,
    rules: RowRules,
    calls: &AccountCalls<'_>,
    with_profile: bool,
    survey: Survey,
) -> anyhow::Result<(ImportPass, Survey)> {
    let mut pass = ImportPass::default();
    let mut reader = BatchReader::open(input, rules)?;
    reader.survey = Some(survey);
    while let Some(batch) = reader.next_batch()? {
        pass.calls += 1;
        pass.accounts += batch.len() as u64;
        match calls.import_batch(&batch, with_profile).await {
            Ok(failed) => {
                // A user whose rows span two batches may have failed in one and been
                // imported in the other: the later answer counts.
                let failed_now: HashSet<&str> = failed.iter().map(|(u, _)| u.as_str()).collect();
                for entry in &batch {
                    if !failed_now.contains(entry.user_id.as_str()) {
                        pass.failed.remove(&entry.user_id);
                    }
                }
                pass.failed.extend(failed);
            }
            Err(why) => anyhow::bail!("importing accounts stopped: {why}"),
        }
    }
    let survey = reader
        .survey
        .take()
        .context("the account pass lost its survey")?;
    Ok((pass, survey))
}

/// `profile-import check-accounts`: which of the file's users are not imported. Writes them
/// (one UserID per line, with a header) to `output`; returns (users checked, not imported).
pub async fn check_all(
    input: &InputOptions,
    rules: RowRules,
    calls: &AccountCalls<'_>,
    output: &Path,
) -> anyhow::Result<(u64, u64)> {
    let mut writer = csv::Writer::from_writer(crate::fsutil::create_private(output)?);
    writer.write_record(["UserID"])?;
    let (mut checked, mut missing_count) = (0u64, 0u64);
    let mut reader = BatchReader::open(input, rules)?;
    while let Some(batch) = reader.next_batch()? {
        let users: Vec<String> = batch.into_iter().map(|e| e.user_id).collect();
        checked += users.len() as u64;
        match calls.check_batch(&users).await {
            Ok(missing) => {
                for user in missing {
                    writer.write_record([user])?;
                    missing_count += 1;
                }
            }
            Err(why) => anyhow::bail!("checking accounts stopped: {why}"),
        }
    }
    writer.flush()?;
    Ok((checked, missing_count))
}
