//! The reader thread of a real import: reads the input once from the resume point, maps every
//! row with the dry run's code, decides locally what needs no request, and hands the rest on in
//! file order. It also makes the exact duplicate count over the survey's candidates.

use bytes::Bytes;
use csv::ByteRecord;
use tokio::sync::mpsc;

use super::split::NickImageSplit;
use super::{Check, Event, Job, LocalRow};
use crate::input::dupes::{DuplicateFinder, Duplicates, Recount};
use crate::input::reader::{CsvInput, InputOptions, RowPos};
use crate::input::row::{RowMapper, Verdict};
use crate::outcome::{Failure, Stage};
use crate::run::plan::ReaderPlan;
use crate::run::sync::SyncVerdict;
use crate::store::journal::Final;

/// Request bodies logged at info level (`-v`).
const SAMPLE_BODIES: usize = 3;
/// Slots the reader waits for at once when the channel is full. A thread blocked in
/// `blocking_send` is woken for every slot the consumer frees: at the send rate that cost a
/// thread wake-up (two context switches) per row.
const SLOTS_AT_ONCE: usize = 64;

/// Reads every row and sends it on in file order; returns the duplicate report.
pub(super) fn read_rows(
    mut input: CsvInput,
    options: &InputOptions,
    mapper: RowMapper,
    split: Option<NickImageSplit>,
    events: mpsc::Sender<Event>,
    runtime: tokio::runtime::Handle,
    mut plan: ReaderPlan,
) -> anyhow::Result<Duplicates> {
    let mut slots: Option<mpsc::PermitIterator<'_, Event>> = None;
    let mut record = ByteRecord::new();
    let mut body = Vec::with_capacity(1024);
    let mut rest_body = Vec::new();
    let mut index = 0;
    // `-v` shows the first few bodies sent, as `--show-requests` does in a dry run.
    let mut sample_bodies = 0;
    let mut recount = plan
        .duplicates
        .take()
        .filter(|finder| !finder.is_clear())
        .map(DuplicateFinder::into_recount);
    let count_user = |recount: &mut Option<Recount>, record: &ByteRecord| {
        if let Some(recount) = recount {
            if let Some(user_id) = mapper.user_id(record).filter(|id| !id.is_empty()) {
                recount.observe(user_id);
            }
        }
    };
    if let Some(checkpoint) = plan.checkpoint {
        // The duplicate report covers the whole file, as a first run's does: the rows before
        // the checkpoint are read for their UserIDs only (skipped when nothing repeats).
        if recount.is_some() {
            let mut before = CsvInput::open(options)?;
            let mut read = 0;
            while read <= checkpoint.index && before.read(&mut record)?.is_some() {
                count_user(&mut recount, &record);
                read += 1;
            }
        }
        input.seek_past(checkpoint)?;
        index = checkpoint.index + 1;
    }
    while let Some(line) = input.read(&mut record)? {
        let pos = RowPos {
            index,
            line,
            byte: CsvInput::start_byte(&record),
        };
        index += 1;
        count_user(&mut recount, &record);
        if plan.journalled.contains(&pos.index) {
            continue;
        }
        let event = if plan.failed_lines.contains(&line) {
            Event::Local(LocalRow::AlreadyFailed(pos))
        } else if input.unterminated() {
            Event::Local(LocalRow::Invalid {
                pos,
                record: record.clone(),
                violations: vec![crate::input::row::unterminated_quote(line)],
            })
        } else {
            let split = split.as_ref().map(|split| (split, &mut rest_body));
            judge(&mapper, &plan, pos, &record, &mut body, split)
        };
        if let Event::Job(job) = &event {
            if sample_bodies < SAMPLE_BODIES {
                sample_bodies += 1;
                log_sample(job);
            }
        }
        let slot = match slots.as_mut().and_then(Iterator::next) {
            Some(slot) => slot,
            None => {
                let stopped =
                    || anyhow::anyhow!("the import stopped before the whole file was read");
                let reserved = runtime.block_on(events.reserve_many(SLOTS_AT_ONCE));
                slots
                    .insert(reserved.map_err(|_| stopped())?)
                    .next()
                    .ok_or_else(stopped)?
            }
        };
        slot.send(event);
    }
    drop(slots);
    drop(events);
    Ok(recount.map(|recount| recount.finish()).unwrap_or_default())
}

/// `-v`: a row's request body (and its batch part).
fn log_sample(job: &Job) {
    if let Some(body) = &job.body {
        tracing::info!(
            "line {}: request body {}",
            job.pos.line,
            String::from_utf8_lossy(body)
        );
    }
    if let Some(entry) = &job.nick_image {
        tracing::info!(
            "line {}: multiaccount_import entry {}",
            job.pos.line,
            serde_json::to_string(entry).unwrap_or_default()
        );
    }
}

/// The row's portrait_set body and batch part: with `--batch-nick-image`, Nick and Image
/// split off (the hook a change-only step would feed with only the differing values).
fn parts(
    body: &[u8],
    record: &ByteRecord,
    user_id: &str,
    split: Option<(&NickImageSplit, &mut Vec<u8>)>,
) -> (Option<Bytes>, Option<crate::run::accounts::AccountEntry>) {
    let Some((split, rest_body)) = split else {
        return (Some(Bytes::copy_from_slice(body)), None);
    };
    let row = split.split(record, user_id, rest_body);
    match row.nick_image {
        Some(entry) => (
            row.has_rest.then(|| Bytes::copy_from_slice(rest_body)),
            Some(entry),
        ),
        None => (Some(Bytes::copy_from_slice(body)), None),
    }
}

/// What happens to one well-formed record: sent, or decided here.
fn judge(
    mapper: &RowMapper,
    plan: &ReaderPlan,
    pos: RowPos,
    record: &ByteRecord,
    body: &mut Vec<u8>,
    split: Option<(&NickImageSplit, &mut Vec<u8>)>,
) -> Event {
    match mapper.map(record, body) {
        Verdict::Ready { user_id, .. } if plan.failed_accounts.contains_key(user_id) => {
            let why = &plan.failed_accounts[user_id];
            Event::Local(LocalRow::AccountFailed {
                pos,
                record: record.clone(),
                failure: Failure {
                    code: why.code,
                    message: why.message.clone(),
                    stage: Stage::Account,
                    attempts: 0,
                },
            })
        }
        Verdict::Ready { user_id, items } => {
            let body_hash = crate::store::state::body_hash(body);
            let verdict = plan.sync.as_ref().map_or(SyncVerdict::Send, |sync| {
                sync.judge(user_id, pos.index, body_hash)
            });
            match verdict {
                SyncVerdict::Send => {
                    let (body, nick_image) = parts(body, record, user_id, split);
                    Event::Job(Job {
                        pos,
                        body_hash,
                        user_id: user_id.to_string(),
                        body,
                        nick_image,
                        record: record.clone(),
                        tags: u32::try_from(items).unwrap_or(u32::MAX),
                        check: Check::NotAsked,
                    })
                }
                SyncVerdict::Unchanged => Event::Local(LocalRow::NotNeeded(pos, Final::Unchanged)),
                SyncVerdict::Superseded => {
                    Event::Local(LocalRow::NotNeeded(pos, Final::Superseded))
                }
            }
        }
        Verdict::Skipped { .. } => Event::Local(LocalRow::Skipped(pos)),
        Verdict::Invalid(violations) => Event::Local(LocalRow::Invalid {
            pos,
            record: record.clone(),
            violations,
        }),
    }
}
