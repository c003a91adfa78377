//! The dry run: every row read, mapped with the same code the real send uses, validated, and
//! reported; nothing is sent.
//!
//! A reader thread parses the file (and feeds the duplicate check) into a small fixed pool of
//! record batches; the calling thread maps and validates them. The pool's batches are reused,
//! so the two cores share the work without allocating per row.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

use csv::ByteRecord;

use crate::dupes::DuplicateFinder;
use crate::failures::FailureWriter;
use crate::input::CsvInput;
use crate::job::JobInput;
use crate::row::{failure_from, RowMapper, Verdict};
use crate::summary::Summary;

/// Rows whose violations are printed on stderr; the rest are only in the failure CSV.
const PRINTED_INVALID_ROWS: u64 = 20;
/// Records per batch handed from the reader thread, and batches in the pool.
const BATCH_ROWS: usize = 1024;
const POOL: usize = 4;

/// Records read by the reader thread; the allocations are reused batch after batch.
#[derive(Default)]
struct Batch {
    records: Vec<ByteRecord>,
    /// (line, a quote never closes) per record.
    meta: Vec<(u64, bool)>,
    len: usize,
}

/// Validates the whole file. Invalid rows go to the failure CSV.
pub fn run(job: &JobInput, show_requests: usize) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let input = CsvInput::open(&job.input)?;
    let mapper = RowMapper::new(input.columns.clone(), job.rules);
    let mut failures = FailureWriter::create(&job.failures, mapper.columns(), job.input.delimiter)?;
    let mut summary = Summary {
        dry_run: true,
        ..Summary::default()
    };
    // `--state`: count what a sync would send, without sending or writing the state. Rows
    // are judged as they stream by; users with several rows are put right after the pass (only
    // their last row counts), so no extra pass is needed before the first row.
    // The lookups miss the cache, so they run on a thread of their own, fed in batches.
    let mut sync = match &job.state {
        Some(path) => {
            summary.with_state = true;
            let index = std::sync::Arc::new(crate::state::load_index(path)?);
            tracing::debug!("state loaded after {:?}", started.elapsed());
            let (tx, rx) = sync_channel::<Vec<(u64, u64)>>(8);
            let lookups = {
                let index = index.clone();
                std::thread::Builder::new()
                    .name("state-lookups".into())
                    .spawn(move || {
                        rx.into_iter()
                            .flatten()
                            .filter(|&(key, hash)| index.is_unchanged_key(key, hash))
                            .count() as u64
                    })?
            };
            Some(StateCheck {
                index,
                batch: Vec::with_capacity(LOOKUP_BATCH),
                tx,
                lookups,
            })
        }
        None => None,
    };
    let mut body = Vec::with_capacity(1024);
    let stdout = std::io::stdout();
    let mut shown = 0;

    let (full_tx, full_rx) = sync_channel::<Batch>(POOL);
    let (empty_tx, empty_rx) = sync_channel::<Batch>(POOL);
    for _ in 0..POOL {
        let _ = empty_tx.send(Batch::default());
    }
    let reader = std::thread::Builder::new()
        .name("csv-reader".into())
        .spawn(move || read_batches(input, full_tx, empty_rx))?;
    let mut duplicates = DuplicateFeed::spawn()?;

    for batch in full_rx {
        for (record, &(line, unterminated)) in batch.records[..batch.len].iter().zip(&batch.meta) {
            summary.rows += 1;
            let verdict = if unterminated {
                Verdict::Invalid(vec![crate::row::unterminated_quote(line)])
            } else {
                mapper.map(record, &mut body)
            };
            // Every row with a readable UserID counts toward duplicates, invalid ones too.
            match &verdict {
                Verdict::Ready { user_id, .. } | Verdict::Skipped { user_id } => {
                    duplicates.push(user_id)
                }
                Verdict::Invalid(_) => duplicates.push(mapper.user_id(record).unwrap_or_default()),
            }
            match verdict {
                Verdict::Ready { user_id, .. } if sync.is_some() => {
                    // Counted as to send; the lookup thread says how many are unchanged.
                    summary.valid += 1;
                    if let Some(check) = sync.as_mut().filter(|_| !job.full) {
                        check.push(user_id, &body);
                    }
                }
                Verdict::Ready { .. } => {
                    summary.valid += 1;
                    if shown < show_requests {
                        shown += 1;
                        let mut out = stdout.lock();
                        out.write_all(&body)?;
                        out.write_all(b"\n")?;
                    }
                }
                Verdict::Skipped { .. } => summary.skipped += 1,
                Verdict::Invalid(violations) => {
                    summary.invalid += 1;
                    for violation in &violations {
                        let key = format!("{} {}", violation.code, violation.rule);
                        *summary.invalid_by_rule.entry(key).or_default() += 1;
                    }
                    if summary.invalid <= PRINTED_INVALID_ROWS {
                        for violation in &violations {
                            tracing::warn!("line {line}: {}", violation.describe());
                        }
                    } else if summary.invalid == PRINTED_INVALID_ROWS + 1 {
                        tracing::warn!("more invalid rows follow; all are in the failure CSV");
                    }
                    failures.write(
                        record,
                        line,
                        &failure_from(&violations),
                        job.input.delimiter,
                    )?;
                }
            }
        }
        // Back to the pool; if the reader has finished, the batch is simply dropped.
        let _ = empty_tx.try_send(batch);
    }
    match reader.join() {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("the CSV reader thread panicked"),
    };
    let finder = duplicates.finish()?;
    tracing::debug!(
        "pass 1 done after {:?}; duplicate check clear: {}",
        started.elapsed(),
        finder.is_clear()
    );
    if !finder.is_clear() {
        let mut recount = finder.into_recount();
        let mut input = CsvInput::open(&job.input)?;
        let mut record = ByteRecord::new();
        while input.read(&mut record)?.is_some() {
            if let Some(user_id) = mapper.user_id(&record).filter(|id| !id.is_empty()) {
                recount.observe(user_id);
            }
        }
        let (duplicates, repeated) = recount.finish_with_users();
        if let Some(index) = sync.as_ref().map(|check| check.index.clone()) {
            if duplicates.lower_bound {
                anyhow::bail!(
                    "{}: too many repeated UserIDs to find each one's last row in bounded memory; \
                     remove the duplicates (or split the file) before a --state sync",
                    job.input.path.display()
                );
            }
            if !repeated.is_empty() {
                let unchanged = sync.take().map_or(Ok(0), StateCheck::finish)?;
                summary.valid -= unchanged;
                summary.unchanged += unchanged;
                count_superseded(job, &mapper, &index, &repeated, &mut summary)?;
            }
        }
        summary.duplicates = duplicates;
    }
    if let Some(check) = sync.take() {
        let unchanged = check.finish()?;
        summary.valid -= unchanged;
        summary.unchanged += unchanged;
    }
    summary.failure_csv = failures.finish()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Ready rows waiting for the lookup thread, per batch.
const LOOKUP_BATCH: usize = 4096;

/// `--state` in a dry run: (user key, body hash) of each ready row go to a lookup thread.
struct StateCheck {
    index: std::sync::Arc<crate::state::StateIndex>,
    batch: Vec<(u64, u64)>,
    tx: SyncSender<Vec<(u64, u64)>>,
    lookups: std::thread::JoinHandle<u64>,
}

impl StateCheck {
    fn push(&mut self, user_id: &str, body: &[u8]) {
        self.batch.push((
            crate::state::user_key(user_id),
            crate::state::body_hash(body),
        ));
        if self.batch.len() == LOOKUP_BATCH {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(LOOKUP_BATCH));
            let _ = self.tx.send(full);
        }
    }

    /// How many ready rows Chat already holds.
    fn finish(self) -> anyhow::Result<u64> {
        let _ = self.tx.send(self.batch);
        drop(self.tx);
        self.lookups
            .join()
            .map_err(|_| anyhow::anyhow!("the state lookup thread panicked"))
    }
}

/// `--state`: with several rows for a user only the last one counts. The pass counted every
/// ready row as unchanged or to send; this moves all but each repeated user's last ready row
/// to `superseded`, as the real sync would judge them.
fn count_superseded(
    job: &JobInput,
    mapper: &RowMapper,
    index: &crate::state::StateIndex,
    repeated: &std::collections::HashSet<String>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut rows_of: std::collections::HashMap<String, Vec<bool>> = Default::default();
    let mut input = CsvInput::open(&job.input)?;
    let mut record = ByteRecord::new();
    let mut body = Vec::new();
    while input.read(&mut record)?.is_some() {
        let user = mapper.user_id(&record).filter(|id| repeated.contains(*id));
        if user.is_none() || input.unterminated() {
            continue;
        }
        if let Verdict::Ready { user_id, .. } = mapper.map(&record, &mut body) {
            let unchanged =
                !job.full && index.is_unchanged(user_id, crate::state::body_hash(&body));
            rows_of
                .entry(user_id.to_string())
                .or_default()
                .push(unchanged);
        }
    }
    for rows in rows_of.values() {
        for &unchanged in &rows[..rows.len().saturating_sub(1)] {
            if unchanged {
                summary.unchanged -= 1;
            } else {
                summary.valid -= 1;
            }
            summary.superseded += 1;
        }
    }
    Ok(())
}

/// UserIDs on their way to the duplicate filter, which runs on a thread of its own (its
/// lookups miss the cache), fed in batches.
struct DuplicateFeed {
    ids: String,
    ends: Vec<usize>,
    tx: SyncSender<(String, Vec<usize>)>,
    filter: std::thread::JoinHandle<DuplicateFinder>,
}

/// UserIDs per batch sent to the duplicate filter.
const DUPLICATE_BATCH: usize = 4096;

impl DuplicateFeed {
    fn spawn() -> std::io::Result<DuplicateFeed> {
        let (tx, rx) = sync_channel::<(String, Vec<usize>)>(4);
        let filter = std::thread::Builder::new()
            .name("duplicates".into())
            .spawn(move || {
                let mut finder = DuplicateFinder::default();
                for (ids, ends) in rx {
                    let mut start = 0;
                    let user_ids: Vec<&str> = ends
                        .iter()
                        .map(|&end| {
                            let user_id = &ids[start..end];
                            start = end;
                            user_id
                        })
                        .collect();
                    finder.observe_many(&user_ids);
                }
                finder
            })?;
        Ok(DuplicateFeed {
            ids: String::with_capacity(DUPLICATE_BATCH * 16),
            ends: Vec::with_capacity(DUPLICATE_BATCH),
            tx,
            filter,
        })
    }

    /// Notes one row's UserID; empty ones are not counted.
    fn push(&mut self, user_id: &str) {
        if user_id.is_empty() {
            return;
        }
        self.ids.push_str(user_id);
        self.ends.push(self.ids.len());
        if self.ends.len() == DUPLICATE_BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        let ids = std::mem::replace(&mut self.ids, String::with_capacity(DUPLICATE_BATCH * 16));
        let ends = std::mem::replace(&mut self.ends, Vec::with_capacity(DUPLICATE_BATCH));
        // The filter thread only stops early by panicking, which `finish` reports.
        let _ = self.tx.send((ids, ends));
    }

    fn finish(mut self) -> anyhow::Result<DuplicateFinder> {
        if !self.ends.is_empty() {
            self.send();
        }
        drop(self.tx);
        self.filter
            .join()
            .map_err(|_| anyhow::anyhow!("the duplicate-check thread panicked"))
    }
}

/// The reader thread: parses records into pooled batches. A read error ends the file early
/// and is returned after the rows before it.
fn read_batches(
    mut input: CsvInput,
    full: SyncSender<Batch>,
    empty: Receiver<Batch>,
) -> anyhow::Result<()> {
    while let Ok(mut batch) = empty.recv() {
        batch.len = 0;
        while batch.len < BATCH_ROWS {
            if batch.records.len() == batch.len {
                batch.records.push(ByteRecord::with_capacity(256, 16));
                batch.meta.push((0, false));
            }
            let record = &mut batch.records[batch.len];
            let Some(line) = input.read(record)? else {
                break;
            };
            batch.meta[batch.len] = (line, input.unterminated());
            batch.len += 1;
        }
        let last = batch.len < BATCH_ROWS;
        if batch.len > 0 && full.send(batch).is_err() {
            break;
        }
        if last {
            break;
        }
    }
    Ok(())
}
