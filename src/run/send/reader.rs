//! The reader thread of a real import: reads the input once from the resume point, maps every
//! row with the dry run's code, decides locally what needs no request, and hands the rest on in
//! file order. It also makes the exact duplicate count over the survey's candidates.

use bytes::Bytes;
use csv::ByteRecord;
use tokio::sync::mpsc;

use super::split::NickImageSplit;
use super::{Event, Job, LocalRow};
use crate::input::dupes::{DuplicateFinder, Duplicates, Recount};
use crate::input::reader::InputOptions;
use crate::input::row::RowMapper;
use crate::input::rows::{Row, Rows};
use crate::input::survey::user_of;
use crate::run::decide::{Decider, Decision};
use crate::run::plan::ReaderPlan;
use crate::store::journal::Final;

/// Slots the reader waits for at once when the channel is full. A thread blocked in
/// `blocking_send` is woken for every slot the consumer frees: at the send rate that cost a
/// thread wake-up (two context switches) per row.
const SLOTS_AT_ONCE: usize = 64;

/// Reads every row and sends it on in file order; returns the duplicate report.
pub(super) fn read_rows(
    mut rows: Rows,
    options: &InputOptions,
    mut decider: Decider,
    split: Option<NickImageSplit>,
    events: mpsc::Sender<Event>,
    runtime: tokio::runtime::Handle,
    mut plan: ReaderPlan,
) -> anyhow::Result<Duplicates> {
    // `--limit`: the users sent so far (each user is one job: its rows merged).
    let mut sends = 0u64;
    let mut slots: Option<mpsc::PermitIterator<'_, Event>> = None;
    let mut rest_body = Vec::new();
    let mut recount = plan
        .duplicates
        .take()
        .filter(|finder| !finder.is_clear())
        .map(DuplicateFinder::into_recount);
    if let Some(checkpoint) = plan.checkpoint {
        // The duplicate report covers the whole file, as a first run's does, and a repeated
        // user's rows before the checkpoint still merge into its last row: the rows before
        // it are read again when some user may repeat (not otherwise).
        if recount.is_some() {
            let mut before = Rows::open(options)?;
            while let Some(row) = before.next_row()? {
                if row.pos.index > checkpoint.index {
                    break;
                }
                count_user(&mut recount, decider.mapper(), row.record);
                decider.pass_over(&row);
            }
        }
        rows.seek_past(checkpoint)?;
    }
    while let Some(row) = rows.next_row()? {
        count_user(&mut recount, decider.mapper(), row.record);
        if plan.journalled.contains(&row.pos.index) {
            decider.pass_over(&row);
            continue;
        }
        let split = split.as_ref().map(|split| (split, &mut rest_body));
        let event = match event_of(decider.decide(&row), &row, split) {
            Event::Job(job) if plan.limit.is_some_and(|limit| sends >= limit) => Event::Held(job),
            Event::Job(job) => {
                sends += 1;
                Event::Job(job)
            }
            other => other,
        };
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

/// Counts the record's UserID for the exact duplicate report.
fn count_user(recount: &mut Option<Recount>, mapper: &RowMapper, record: &ByteRecord) {
    if let (Some(recount), Some(user_id)) = (recount, user_of(mapper, record)) {
        recount.observe(user_id);
    }
}

/// The row's portrait_set body and batch part: with `--batch-nick-image`, Nick and Image
/// split off (the hook a change-only step would feed with only the differing values).
fn parts(
    body: &[u8],
    record: &ByteRecord,
    user_id: &str,
    split: Option<(&NickImageSplit, &mut Vec<u8>)>,
) -> (Option<Bytes>, Option<crate::chat::accounts::AccountEntry>) {
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

/// The reader's event for a row's decision.
fn event_of(
    decision: Decision,
    row: &Row,
    split: Option<(&NickImageSplit, &mut Vec<u8>)>,
) -> Event {
    let pos = row.pos;
    match decision {
        Decision::Send(ready) => {
            let (body, nick_image) = parts(&ready.body, &ready.record, &ready.user_id, split);
            Event::Job(Job {
                pos,
                body_hash: ready.body_hash,
                user_id: ready.user_id,
                body,
                nick_image,
                record: ready.record,
                tags: u32::try_from(ready.items).unwrap_or(u32::MAX),
                found: None,
                compared_values: 0,
                differing: Vec::new(),
                held: Vec::new(),
                kept: Vec::new(),
            })
        }
        Decision::AccountFailed(ready, failure) => Event::Local(LocalRow::AccountFailed {
            pos,
            record: ready.record,
            failure,
        }),
        Decision::Unchanged(_) => Event::Local(LocalRow::NotNeeded(pos, Final::Unchanged)),
        Decision::Superseded => Event::Local(LocalRow::NotNeeded(pos, Final::Superseded)),
        Decision::Skipped => Event::Local(LocalRow::Skipped(pos)),
        Decision::AlreadyFailed => Event::Local(LocalRow::AlreadyFailed(pos)),
        Decision::Invalid {
            violations,
            superseded,
        } => Event::Local(LocalRow::Invalid {
            pos,
            record: row.record.clone(),
            violations,
            superseded,
        }),
    }
}
