//! The compare stage of `--changes-only`, between the reader and the dispatcher: every row to
//! send is compared with what Chat holds (read ahead, see `run::changes::ahead`) and goes on
//! in file order as a row unchanged in Chat, or as a job carrying only the differing tags (the
//! whole row when its user is not an account or could not be read).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::worker::{ReadApis, Shared};
use super::{Event, Job, LocalRow};
use crate::chat::accounts::AccountEntry;
use crate::chat::portrait::ProfileItem;
use crate::input::profile::{StandardField, Tag};
use crate::run::changes::ahead::{read_ahead, Ahead};
use crate::run::changes::{self, Compared, Comparison, Difference, OnlyIfEmpty, Reads};
use crate::run::summary::Summary;
use crate::store::journal::Found;

/// `--changes-only`: starts the compare stage on the rows of `events`, which then receives
/// the compared rows instead.
pub(super) fn spawn_stage(
    shared: &Arc<Shared>,
    tags: Vec<String>,
    only_if_empty: OnlyIfEmpty,
    events: &mut mpsc::Receiver<Event>,
) -> Option<JoinHandle<()>> {
    let apis = shared.reads.as_ref()?;
    let (compared_tx, compared_rx) = mpsc::channel::<Event>(1024);
    let rows = std::mem::replace(events, compared_rx);
    let reads = reads(shared, apis, tags, only_if_empty);
    Some(tokio::spawn(compare_ahead(rows, compared_tx, reads)))
}

/// The reads' requests, throttled answers and lowest pace, into the summary.
pub(super) fn count_reads(summary: &mut Summary, shared: &Shared) {
    if let (Some(changes), Some(apis)) = (&mut summary.compared, &shared.reads) {
        changes.read_calls = apis.reads.requests();
        changes.read_throttled = apis.reads.throttled();
        changes.account_checks = apis.account_checks.requests();
        let pacer = apis.reads.pacer();
        changes.read_pace_lowest = pacer.lowest_rate().floor() as u32;
        changes.read_pace_ceiling = pacer.ceiling().floor() as u32;
    }
}

/// The reads of this job: a read that finds the whole job wrong stops it, as a send would.
fn reads(
    shared: &Arc<Shared>,
    apis: &ReadApis,
    tags: Vec<String>,
    only_if_empty: OnlyIfEmpty,
) -> Reads {
    let account_check = Some(Arc::clone(&apis.account_checks));
    let shared = Arc::clone(shared);
    Reads {
        account_check,
        only_if_empty: Arc::new(only_if_empty),
        api: Arc::clone(&apis.reads),
        tags: Arc::new(tags),
        in_flight: changes::reads_in_flight(shared.settings.read_rate),
        on_fatal: Arc::new(move |why| shared.stop_job(why)),
    }
}

/// Compares the rows from `events` with Chat and hands them on to `compared`, in order.
async fn compare_ahead(events: mpsc::Receiver<Event>, compared: mpsc::Sender<Event>, reads: Reads) {
    let only_if_empty = Arc::clone(&reads.only_if_empty);
    read_ahead(events, compared, reads, split, move |event, compared| {
        settle(event, compared, &only_if_empty)
    })
    .await;
}

/// Jobs are compared; rows decided already pass through. With `--batch-nick-image` a job's
/// Nick and Image are compared too, after its body's items.
fn split(event: Event) -> Ahead<Event> {
    let Event::Job(job) = event else {
        return Ahead::Pass(event);
    };
    let mut expected = match &job.body {
        Some(body) => match changes::parse_body(body) {
            Some(body) => body.items,
            None => return Ahead::Pass(Event::Job(job)),
        },
        None => Vec::new(),
    };
    if let Some(entry) = &job.nick_image {
        expected.extend(nick_image_items(entry));
    }
    if expected.is_empty() {
        return Ahead::Pass(Event::Job(job));
    }
    Ahead::Compare {
        user: job.user_id.clone(),
        expected,
        item: Event::Job(job),
    }
}

/// A batch entry's Nick and Image as the profile items portrait_get reads back.
fn nick_image_items(entry: &AccountEntry) -> Vec<ProfileItem> {
    let item = |field: StandardField, value: &Option<String>| {
        value.as_ref().map(|value| ProfileItem {
            tag: Tag::Standard(field).name(),
            value: serde_json::Value::String(value.clone()),
        })
    };
    [
        item(StandardField::Nick, &entry.nick),
        item(StandardField::Image, &entry.face_url),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What a comparison makes of a job.
fn settle(event: Event, compared: Option<Compared>, only_if_empty: &OnlyIfEmpty) -> Event {
    let (mut job, compared) = match (event, compared) {
        (Event::Job(job), Some(compared)) => (job, compared),
        (event, _) => return event,
    };
    job.compared_values = u32::try_from(compared.expected.len()).unwrap_or(u32::MAX);
    job.kept = compared.kept;
    match compared.outcome {
        Comparison::Same => {
            return Event::Local(LocalRow::UnchangedInChat {
                pos: job.pos,
                user_id: job.user_id,
                body_hash: job.body_hash,
                values: u32::try_from(compared.expected.len()).unwrap_or(u32::MAX),
                kept: job.kept,
            })
        }
        Comparison::Differs(differences) => {
            job.tags = u32::try_from(differences.len()).unwrap_or(u32::MAX);
            job.found = Some(Found::Updated);
            (job.differing, job.held) = differences
                .iter()
                .filter_map(|d| {
                    let item = compared.expected.get(d.index)?;
                    Some((item.tag.clone(), d.actual.clone()))
                })
                .unzip();
            // Items past the body's are the batch path's Nick and Image: only those that
            // differ go through it, and a user whose only differences they are makes no
            // portrait_set call.
            let body_items = compared.expected.len()
                - job
                    .nick_image
                    .as_ref()
                    .map_or(0, |e| nick_image_items(e).len());
            let (in_body, batched): (Vec<_>, Vec<_>) =
                differences.into_iter().partition(|d| d.index < body_items);
            job.body = (!in_body.is_empty())
                .then(|| changes::partial_body(&job.user_id, &compared.expected, &in_body));
            job.nick_image = job.nick_image.take().and_then(|entry| {
                let differs = |tag: String| {
                    batched
                        .iter()
                        .any(|d| compared.expected.get(d.index).is_some_and(|i| i.tag == tag))
                };
                let nick = entry
                    .nick
                    .filter(|_| differs(Tag::Standard(StandardField::Nick).name()));
                let face_url = entry
                    .face_url
                    .filter(|_| differs(Tag::Standard(StandardField::Image).name()));
                (nick.is_some() || face_url.is_some()).then_some(AccountEntry {
                    user_id: entry.user_id,
                    nick,
                    face_url,
                })
            });
        }
        Comparison::NotAnAccount => job.found = Some(Found::NotAnAccount),
        Comparison::NotCompared(why) => {
            job.found = Some(Found::NotCompared);
            if leave_out_unknown(&mut job, &compared.expected, only_if_empty) {
                tracing::warn!(
                    "line {}: user {} could not be read ({why}): sent without the \
                     --only-if-empty tags, which wait for a run that can read them",
                    job.pos.line,
                    job.user_id
                );
                if job.body.is_none() && job.nick_image.is_none() {
                    // Nothing left to send: the row stays pending for such a run.
                    return Event::Held(job);
                }
            } else {
                tracing::debug!(
                    "line {}: user {} not compared ({why}): sent whole",
                    job.pos.line,
                    job.user_id
                );
            }
        }
    }
    Event::Job(job)
}

/// `--only-if-empty` on a user whose read failed: whether Chat holds a value is not known, so
/// the protected tags are left out of the body (and the batch part). The row's hash is then
/// not the one `--state` keeps, so the next run sends (and reads) the user again. Returns
/// whether any tag was left out.
fn leave_out_unknown(job: &mut Job, expected: &[ProfileItem], only_if_empty: &OnlyIfEmpty) -> bool {
    let body_items = job.body.as_ref().map_or(0, |_| {
        expected.len()
            - job
                .nick_image
                .as_ref()
                .map_or(0, |e| nick_image_items(e).len())
    });
    let protected = |index: usize| {
        expected
            .get(index)
            .is_some_and(|item| only_if_empty.covers(&item.tag))
    };
    if !(0..expected.len()).any(protected) {
        return false;
    }
    let rest: Vec<Difference> = (0..body_items)
        .filter(|index| !protected(*index))
        .map(|index| Difference {
            index,
            actual: None,
        })
        .collect();
    job.body = (!rest.is_empty()).then(|| changes::partial_body(&job.user_id, expected, &rest));
    job.nick_image = job.nick_image.take().and_then(|entry| {
        let nick = entry
            .nick
            .filter(|_| !only_if_empty.covers(&Tag::Standard(StandardField::Nick).name()));
        let face_url = entry
            .face_url
            .filter(|_| !only_if_empty.covers(&Tag::Standard(StandardField::Image).name()));
        (nick.is_some() || face_url.is_some()).then_some(AccountEntry {
            user_id: entry.user_id,
            nick,
            face_url,
        })
    });
    job.body_hash = 0;
    true
}
