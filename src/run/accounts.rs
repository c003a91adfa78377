//! Chat accounts: importing the file's users before their profiles are set
//! (`multiaccount_import`, 100 per call at most 100 calls/s, in the plain or the AccountList
//! form), importing one on demand (`account_import`), and checking which exist
//! (`account_check`, 100 per call).
//!
//! portrait_set answers 40003 for a user who is not an account yet; Tencent's migration guide
//! says to import accounts first. These passes read the CSV on their own, before the send,
//! and take each user once.

use std::collections::HashMap;
use std::path::Path;

use crate::chat::accounts::{
    check_body, fail_accounts, import_one_body, multiaccount_import_body, not_imported,
    AccountEntry, BATCH,
};
use crate::chat::api::command::{ACCOUNT_CHECK, ACCOUNT_IMPORT, MULTIACCOUNT_IMPORT};
use crate::chat::api::ChatApi;
use crate::chat::retry::Answer;
use crate::input::header::ColumnRole;
use crate::input::profile::{StandardField, Tag};
use crate::input::reader::InputOptions;
use crate::input::row::{RowMapper, RowRules};
use crate::input::rows::Rows;
use crate::input::survey::{RepeatedUsers, Survey};
use crate::outcome::{AccountFailure, FailureCode};
use crate::run::decide::{Decider, Known};
use crate::run::progress::{Progress, ProgressOptions, Snapshot};
use crate::store::outputs::ReportCsv;

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

impl CreateAccounts {
    /// The form as `--create-accounts` names it.
    pub fn name(self) -> &'static str {
        match self {
            CreateAccounts::Batch => "batch",
            CreateAccounts::AccountList => "account-list",
            CreateAccounts::OnDemand => "on-demand",
        }
    }
}

/// What a batch import pass did.
#[derive(Debug, Default)]
pub struct ImportPass {
    pub calls: u64,
    pub accounts: u64,
    /// Users whose account could not be imported; their rows fail at stage `account`.
    pub failed: HashMap<String, AccountFailure>,
}

/// Reads the users of the file's valid rows in batches of up to 100, each user once (at its
/// last valid row), with the Nick and Image of its rows merged (for the AccountList form).
pub struct BatchReader {
    rows: Rows,
    decider: Decider,
    nick_col: Option<usize>,
    image_col: Option<usize>,
}

impl BatchReader {
    /// `repeated`: the survey's repeated users, so each user is taken once.
    pub fn open(
        input: &InputOptions,
        rules: RowRules,
        repeated: RepeatedUsers,
    ) -> anyhow::Result<BatchReader> {
        let rows = Rows::open(input)?;
        let columns = rows.columns().clone();
        let column_of = |field: StandardField| {
            columns
                .roles
                .iter()
                .position(|r| *r == ColumnRole::Field(Tag::Standard(field)))
        };
        let (nick_col, image_col) = (
            column_of(StandardField::Nick),
            column_of(StandardField::Image),
        );
        let mapper = RowMapper::new(columns, rules);
        Ok(BatchReader {
            rows,
            decider: Decider::new(mapper, repeated, Known::default()),
            nick_col,
            image_col,
        })
    }

    /// The next batch, or None at the end of the file. Reading is fast next to the calls.
    pub fn next_batch(&mut self) -> anyhow::Result<Option<Vec<AccountEntry>>> {
        let mut batch: Vec<AccountEntry> = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let Some(row) = self.rows.next_row()? else {
                break;
            };
            let Some((user_id, record)) = self.decider.account_row(&row) else {
                continue;
            };
            let cell = |col: Option<usize>| {
                col.and_then(|c| record.get(c))
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .filter(|v| !v.trim().is_empty())
                    .map(str::to_string)
            };
            batch.push(AccountEntry {
                nick: cell(self.nick_col),
                face_url: cell(self.image_col),
                user_id,
            });
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
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

    /// Imports one account with account_import (the on-demand form); the answer and the
    /// requests it took.
    pub async fn import_one(&self, user_id: &str) -> (Answer, u32) {
        self.api
            .call(ACCOUNT_IMPORT, import_one_body(user_id))
            .await
    }

    /// Asks which of up to 100 users are not imported. `Err` carries a reason to stop.
    pub async fn check_batch(&self, users: &[String]) -> Result<Vec<String>, String> {
        match self.api.call(ACCOUNT_CHECK, check_body(users)).await.0 {
            Answer::Ok(_, raw) => not_imported(&raw, users)
                .map_err(|e| format!("account_check answered something unexpected: {e}")),
            Answer::Failed { code, message } => {
                Err(format!("account_check failed: {code} {message}"))
            }
            Answer::Fatal { why, .. } => Err(why),
            Answer::Stopped => Err("stopped".into()),
        }
    }
}

/// The batch pass of `--create-accounts`: imports every valid row's user before any profile
/// is sent, each user once (`repeated`: the survey's repeated users).
pub async fn import_all(
    input: &InputOptions,
    rules: RowRules,
    repeated: &RepeatedUsers,
    calls: &AccountCalls<'_>,
    with_profile: bool,
) -> anyhow::Result<ImportPass> {
    let mut pass = ImportPass::default();
    let mut reader = BatchReader::open(input, rules, repeated.clone())?;
    while let Some(batch) = reader.next_batch()? {
        pass.calls += 1;
        pass.accounts += batch.len() as u64;
        match calls.import_batch(&batch, with_profile).await {
            Ok(failed) => pass.failed.extend(failed),
            Err(why) => anyhow::bail!("importing accounts stopped: {why}"),
        }
    }
    Ok(pass)
}

/// `profile-import check-accounts`: which of the file's users are not imported, each user once.
/// Writes them (one UserID per line, with a header) to `output`, whole (`ReportCsv`); returns
/// (users checked, not imported, whether every user was checked before `stop`). Its progress
/// (rows read, users checked, not imported) is shown as `progress` says.
pub async fn check_all(
    input: &InputOptions,
    rules: RowRules,
    calls: &AccountCalls<'_>,
    output: &Path,
    stop: &tokio_util::sync::CancellationToken,
    progress: ProgressOptions,
) -> anyhow::Result<(u64, u64, bool)> {
    let mapper = RowMapper::new(Rows::open(input)?.columns().clone(), rules);
    let findings = Survey::warning().read_all(input, &mapper)?.finish(input)?;
    let mut progress = Progress::with(Some(findings.rows), progress);
    let mut shown = std::time::Instant::now();
    let mut list = ReportCsv::new(output, &["UserID"]);
    let mut checked = 0u64;
    let mut reader = BatchReader::open(input, rules, findings.repeated)?;
    let mut whole = true;
    while let Some(batch) = reader.next_batch()? {
        if shown.elapsed() >= std::time::Duration::from_secs(1) {
            shown = std::time::Instant::now();
            let (requests, pace) = (calls.api.requests(), calls.api.pacer().current_rate());
            let rows = reader.rows.records_read();
            progress.update(Snapshot::accounts(
                rows,
                checked,
                list.records(),
                requests,
                pace,
            ));
        }
        if stop.is_cancelled() {
            whole = false;
            break;
        }
        let users: Vec<String> = batch.into_iter().map(|e| e.user_id).collect();
        match calls.check_batch(&users).await {
            Ok(missing) => {
                checked += users.len() as u64;
                for user in missing {
                    list.write([user])?;
                }
            }
            Err(_) if stop.is_cancelled() => {
                whole = false;
                break;
            }
            Err(why) => anyhow::bail!("checking accounts stopped: {why}"),
        }
    }
    progress.finish();
    let missing = list.records();
    list.finish()?;
    Ok((checked, missing, whole))
}
