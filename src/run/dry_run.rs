//! The dry run: every row read, mapped with the same code the real send uses, validated, and
//! reported; nothing is sent.
//!
//! A large file is cut in two at a line break near its middle, and each half is read, mapped
//! and validated on a core of its own; the calling thread takes their results in file order
//! (failure CSV, printed rows). Handing records from a parsing thread to a mapping thread
//! would move every record between cores; cutting the file moves only results.
//!
//! Whether the cut fell between records is known only when the first reader reaches it (a
//! quoted field may span it). If not, the first reader reads on to the end, the second
//! reader's results are dropped, and the duplicate check starts over from a plain read.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::ScopedJoinHandle;
use std::time::Instant;

use csv::ByteRecord;

use crate::input::dupes::DuplicateFinder;
use crate::input::parts::{joined, CutGuard, CutSeen, CutWatch, PartEnd};
use crate::input::quotes::SwallowedWarnings;
use crate::input::row::{failure_from, QuoteRule, RowMapper, Verdict, Violation};
use crate::input::rows::{Row, Rows};
use crate::input::survey::{judge, user_of, Survey};
use crate::run::decide::{Decider, Decision, Known, UserRows};
use crate::run::fate::RowFate;
use crate::run::job::JobInput;
use crate::run::summary::{Kind, Summary};
use crate::run::sync::SyncRule;
use crate::store::failures::FailureWriter;
use crate::store::state::StateIndex;

/// Rows whose violations are printed on stderr; the rest are only in the failure CSV.
const PRINTED_INVALID_ROWS: u64 = 20;
/// Files smaller than this are read by one thread: a second would not pay for itself.
pub const PARALLEL_MIN_BYTES: u64 = 4 << 20;

/// How the dry run reads and what it shows.
#[derive(Debug, Clone, Copy)]
pub struct DryRunOptions {
    /// Print the bodies of the first N valid rows.
    pub show_requests: usize,
    /// The size from which a file is read in two parts (`PARALLEL_MIN_BYTES` by default).
    pub parallel_min_bytes: u64,
}

/// Invalid rows per chunk handed to the collector, the bytes they may hold,
/// and chunks waiting. The second half's chunks wait until the first half is done, so this
/// bounds the memory they take (about 16 MiB at most).
const CHUNK_ROWS: usize = 256;
const CHUNK_BYTES: usize = 1 << 20;
const CHUNKS_WAITING: usize = 16;

/// What a reader hands to the collector, in file order: the rows whose order matters.
struct Chunk {
    /// The line of the reader's first row, counted from where the reader started.
    part_first_line: u64,
    /// Invalid rows: the record, its line (counted like `part_first_line`), what is wrong.
    invalid: Vec<(ByteRecord, u64, Rejected)>,
    /// The bytes of the records above.
    bytes: usize,
}

/// Why a row was rejected, or warned about. The messages name lines, which only the
/// collector knows for the second part, so those violations are made there.
enum Rejected {
    Violations(Vec<Violation>),
    /// Its quote never closes.
    UnterminatedQuote,
    /// A quoted field swallowed these lines (counted like the row's), which look like rows:
    /// invalid under `--strict-quotes`, else a valid row warned about.
    StrayQuote {
        lines: Vec<u64>,
        strict: bool,
    },
}

/// What every reader needs to know.
struct ReadPlan<'a> {
    mapper: &'a RowMapper,
    /// `--state`: ready rows are looked up.
    state: Option<&'a StateCheck>,
    /// `--full`: every ready row counts as to send, so nothing is looked up.
    full: bool,
}

/// Validates the whole file. Invalid rows go to the failure CSV.
pub fn run(job: &JobInput, options: DryRunOptions) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let rows = Rows::open(&job.input)?;
    let mapper = RowMapper::new(rows.columns().clone(), job.rules);
    let mut failures = FailureWriter::lazy(&job.failures, mapper.columns(), job.input.delimiter)?;
    let mut summary = Summary::of(Kind::DryRun);
    // `--state`: count what a sync would send, without sending or writing the state. Rows
    // are judged as they stream by; users with several rows are judged again after the pass
    // (only their last row counts), so no extra pass is needed before the first row.
    let index = match &job.state {
        Some(path) => {
            summary.with_state = true;
            let index = Arc::new(crate::store::state::load_index(path)?);
            tracing::debug!("state loaded after {:?}", started.elapsed());
            Some(index)
        }
        None => None,
    };
    let rule = SyncRule { full: job.full };
    let state = index
        .clone()
        .map(|index| StateCheck::spawn(index, rule))
        .transpose()?;
    let plan = ReadPlan {
        mapper: &mapper,
        state: state.as_ref(),
        full: job.full,
    };
    let mut collector = Collector {
        summary: &mut summary,
        failures: &mut failures,
        delimiter: job.input.delimiter,
        stray_quotes: SwallowedWarnings::default(),
        unwritable: None,
    };
    let guard = Arc::new(CutGuard::default());
    let second = rows.second_half(options.parallel_min_bytes, guard.clone())?;
    let cut = second.as_ref().map(|(cut, _)| *cut);
    let filter = DuplicateFilter::spawn()?;
    let second_counted = read_in_parts(rows, second, guard, &plan, &filter, &mut collector)?;
    let unwritable = collector.unwritable.take();
    let mut finder = filter.finish()?;
    if cut.is_some() && !second_counted || finder.is_discarded() {
        // The second reader's UserIDs were misread from a cut inside a record; they may have
        // marked any user as seen, so the check is made again from the file.
        finder = duplicate_pass(job, &mapper)?;
    }
    let unchanged = match state {
        Some(state) => {
            let [first, second] = state.finish()?;
            first + if second_counted { second } else { 0 }
        }
        None => 0,
    };
    summary.recount(RowFate::Valid, RowFate::Unchanged, unchanged);
    tracing::debug!(
        "pass 1 done after {:?}; duplicate check clear: {}",
        started.elapsed(),
        finder.is_clear()
    );
    if !finder.is_clear() {
        let sync = index.as_deref().map(|index| (rule, index));
        summary.duplicates = count_duplicates(job, &mapper, finder, sync, options, &mut summary)?;
        tracing::debug!("recount done after {:?}", started.elapsed());
    }
    if options.show_requests > 0 {
        show_requests(job, mapper, options.show_requests)?;
    }
    summary.elapsed = started.elapsed();
    if let Some(err) = unwritable {
        let why = format!(
            "{err:#}: the {} invalid rows are counted above but listed nowhere; pass \
             --failures PATH with a path this run can write to list them",
            summary.invalid
        );
        return Err(FailuresUnwritable {
            summary: Box::new(summary),
            why,
        }
        .into());
    }
    summary.failure_csv = failures.finish()?;
    Ok(summary)
}

/// The dry run read every row but could not write its failure CSV (a folder it cannot write
/// to): its report, complete but for the file, and why. The app shows the report, then the
/// reason, and the run fails.
#[derive(Debug)]
pub struct FailuresUnwritable {
    pub summary: Box<Summary>,
    pub why: String,
}

impl std::fmt::Display for FailuresUnwritable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for FailuresUnwritable {}

/// `--show-requests N`: the first N bodies the import would send, exactly as it decides them
/// (`run::decide`: a repeated user once, its rows merged, at its last row). This costs a
/// survey of the file and a reading up to the N-th body.
fn show_requests(job: &JobInput, mapper: RowMapper, count: usize) -> anyhow::Result<()> {
    let survey = Survey::default()
        .read_all(&job.input, &mapper)?
        .finish(&job.input)?;
    let mut decider = Decider::new(mapper, survey.repeated, Known::default());
    let mut rows = Rows::open(&job.input)?;
    let mut shown = 0;
    while let Some(row) = rows.next_row()? {
        if shown == count {
            break;
        }
        if let Decision::Send(ready) = decider.decide(&row) {
            crate::run::console::out_line(&ready.body);
            shown += 1;
        }
    }
    Ok(())
}

/// Reads the file, in two parts at once when there is a cut, and hands every part's results
/// to the collector in file order. True if the second part's rows were counted (the cut held).
fn read_in_parts(
    rows: Rows,
    second: Option<(u64, Rows)>,
    guard: Arc<CutGuard>,
    plan: &ReadPlan,
    filter: &DuplicateFilter,
    collector: &mut Collector,
) -> anyhow::Result<bool> {
    let (cut, second) = match second {
        Some((cut, rows)) => (Some(cut), Some(rows)),
        None => (None, None),
    };
    std::thread::scope(|scope| -> anyhow::Result<bool> {
        let (first, first_chunks) = spawn_reader(
            scope,
            "csv-first-half",
            rows,
            CutWatch::new(cut, &guard),
            0,
            plan,
            filter,
        )?;
        let second = second
            .map(|rows| {
                spawn_reader(
                    scope,
                    "csv-second-half",
                    rows,
                    CutWatch::none(),
                    1,
                    plan,
                    filter,
                )
            })
            .transpose()?;
        for chunk in first_chunks {
            collector.take(chunk, 0)?;
        }
        let (end, counts) = joined(first)?;
        collector.count(&counts);
        let (Some((second, second_chunks)), Some(cut)) = (second, cut) else {
            return Ok(false);
        };
        let PartEnd::Cut { line } = end else {
            // The cut fell inside a quoted field (or only blank lines followed it), so the
            // first reader read on to the end; the second reader's rows are dropped.
            tracing::debug!(
                "the cut at byte {cut} did not hold; one reader read the file to its end"
            );
            guard.fail();
            drop(second_chunks);
            let _ = second.join();
            return Ok(false);
        };
        tracing::debug!("read in two parts; the second began at byte {cut}, line {line}");
        // The second reader counts lines from the cut; its first row is the record the first
        // reader stopped at, whose line in the file is known.
        for chunk in second_chunks {
            let offset = line.saturating_sub(chunk.part_first_line);
            collector.take(chunk, offset)?;
        }
        let (_, counts) = joined(second)?;
        collector.count(&counts);
        Ok(true)
    })
}

/// The exact duplicate report from the filter's candidates, and the repeated users' counts
/// corrected: the pass counted each row alone, but a user's rows merge (`run::decide`), so all
/// but a user's last row with something to set are superseded, and with `--state` the merged
/// body is what the sync rule judges.
fn count_duplicates(
    job: &JobInput,
    mapper: &RowMapper,
    finder: DuplicateFinder,
    sync: Option<(SyncRule, &StateIndex)>,
    options: DryRunOptions,
    summary: &mut Summary,
) -> anyhow::Result<crate::input::dupes::Duplicates> {
    if finder.overflowed() {
        anyhow::bail!(
            "{}: too many repeated UserIDs (over {}) to merge each user's rows in bounded \
             memory; remove the duplicates (or split the file) first",
            job.input.path.display(),
            crate::input::dupes::MAX_CANDIDATES
        );
    }
    let (recount, candidates) = recount(job, mapper, finder, sync.is_some(), options)?;
    let duplicates = recount.finish();
    for candidate in candidates {
        candidate.correct(mapper, sync, summary);
    }
    Ok(duplicates)
}

/// The duplicate filter fed from one plain reading of the file, for when the first pass's
/// feeding cannot be trusted.
fn duplicate_pass(job: &JobInput, mapper: &RowMapper) -> anyhow::Result<DuplicateFinder> {
    let mut finder = DuplicateFinder::default();
    let mut rows = Rows::open(&job.input)?;
    let (mut ids, mut ends) = (String::new(), Vec::new());
    loop {
        let row = rows.next_row()?;
        let more = row.is_some();
        if let Some(user_id) = row.and_then(|row| user_of(mapper, row.record)) {
            ids.push_str(user_id);
            ends.push(ids.len());
        }
        if ends.len() == DUPLICATE_BATCH || !more {
            finder.observe_many(&split_ids(&ids, &ends));
            ids.clear();
            ends.clear();
        }
        if !more {
            return Ok(finder);
        }
    }
}

/// The exact count of the duplicate filter's candidates: a second pass over the UserIDs,
/// in two parts at once like the first. It also counts each candidate's rows with something to
/// set and, with `--state`, merges them.
fn recount(
    job: &JobInput,
    mapper: &RowMapper,
    finder: DuplicateFinder,
    keep_rows: bool,
    options: DryRunOptions,
) -> anyhow::Result<(crate::input::dupes::Recount, Vec<UserRows>)> {
    let mut recount = finder.into_recount();
    let rows = Rows::open(&job.input)?;
    let guard = Arc::new(CutGuard::default());
    let (cut, second) = match rows.second_half(options.parallel_min_bytes, guard.clone())? {
        Some((cut, rows)) => (Some(cut), Some(rows)),
        None => (None, None),
    };
    type PartTally = (PartEnd, Vec<u64>, Vec<UserRows>);
    let count_part = |mut rows: Rows, mut watch: CutWatch| {
        let recount = &recount;
        move || -> anyhow::Result<PartTally> {
            let mut tally = recount.tally();
            let mut candidates: Vec<UserRows> = Vec::new();
            candidates.resize_with(tally.len(), UserRows::default);
            let mut body = Vec::new();
            while let Some(row) = rows.next_row()? {
                if let CutSeen::Holds(end) = watch.check(row.record, row.pos.line) {
                    return Ok((end, tally, candidates));
                }
                let Some(user_id) = user_of(mapper, row.record) else {
                    continue;
                };
                let Some(slot) = recount.slot_of(user_id) else {
                    continue;
                };
                tally[slot] += 1;
                if let Verdict::Ready { .. } = judge(mapper, &row, &mut body) {
                    candidates[slot].add(mapper, row.record, &body, keep_rows);
                }
            }
            Ok((PartEnd::FileEnd, tally, candidates))
        }
    };
    let parts = std::thread::scope(|scope| -> anyhow::Result<Vec<PartTally>> {
        let first = std::thread::Builder::new()
            .name("recount-first-half".into())
            .spawn_scoped(scope, count_part(rows, CutWatch::new(cut, &guard)))?;
        let second = second
            .map(|rows| {
                std::thread::Builder::new()
                    .name("recount-second-half".into())
                    .spawn_scoped(scope, count_part(rows, CutWatch::none()))
            })
            .transpose()?;
        let first = joined(first)?;
        let cut_held = matches!(first.0, PartEnd::Cut { .. });
        let mut parts = vec![first];
        if let Some(second) = second {
            if cut_held {
                parts.push(joined(second)?);
            } else {
                // Stops the second reader at its next read.
                guard.fail();
                let _ = second.join();
            }
        }
        Ok(parts)
    })?;
    let mut merged: Vec<UserRows> = Vec::new();
    for (_, tally, candidates) in parts {
        recount.add(&tally);
        if merged.is_empty() {
            merged = candidates;
        } else {
            for (kept, later) in merged.iter_mut().zip(candidates) {
                kept.then(later);
            }
        }
    }
    Ok((recount, merged))
}

type Reader<'scope> = (
    ScopedJoinHandle<'scope, anyhow::Result<(PartEnd, Summary)>>,
    Receiver<Chunk>,
);

/// Starts a reader thread for one part of the file.
fn spawn_reader<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    name: &str,
    rows: Rows,
    watch: CutWatch,
    part: usize,
    plan: &'scope ReadPlan<'scope>,
    filter: &DuplicateFilter,
) -> std::io::Result<Reader<'scope>> {
    let (tx, rx) = sync_channel::<Chunk>(CHUNKS_WAITING);
    let feed = filter.feed();
    let state = plan
        .state
        .filter(|_| !plan.full)
        .map(|state| state.feed(part));
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(scope, move || read_part(rows, watch, plan, feed, state, tx))?;
    Ok((thread, rx))
}

/// Takes the readers' results in file order: counts, failure CSV, printed rows.
struct Collector<'a> {
    summary: &'a mut Summary,
    failures: &'a mut FailureWriter,
    delimiter: u8,
    stray_quotes: SwallowedWarnings,
    /// Why the failure CSV could not be written, once that happened: the rows are still
    /// counted, and no more writes are tried.
    unwritable: Option<anyhow::Error>,
}

impl Collector<'_> {
    /// Adds a reader's counts (its valid and skipped rows; the invalid ones come in chunks).
    fn count(&mut self, counts: &Summary) {
        self.summary.add_counts(counts);
    }

    /// `line_offset` turns the chunk's line numbers into the file's.
    fn take(&mut self, chunk: Chunk, line_offset: u64) -> anyhow::Result<()> {
        let summary = &mut *self.summary;
        for (record, line, rejected) in chunk.invalid {
            let line = line + line_offset;
            let violations = match rejected {
                Rejected::Violations(violations) => violations,
                Rejected::UnterminatedQuote => vec![crate::input::row::unterminated_quote(line)],
                Rejected::StrayQuote { lines, strict } => {
                    let lines: Vec<u64> = lines.iter().map(|l| l + line_offset).collect();
                    if !strict {
                        self.stray_quotes.note(line, &lines);
                        continue;
                    }
                    vec![crate::input::row::stray_quote(line, &lines)]
                }
            };
            summary.count(RowFate::Invalid(&violations));
            if summary.invalid <= PRINTED_INVALID_ROWS {
                for violation in &violations {
                    let column = violation.column.as_deref();
                    tracing::warn!(line, column, "line {line}: {}", violation.describe());
                }
            } else if summary.invalid == PRINTED_INVALID_ROWS + 1 {
                tracing::warn!("more invalid rows follow; all are in the failure CSV");
            }
            if self.unwritable.is_none() {
                let failure = failure_from(&violations);
                if let Err(err) = self.failures.write(&record, line, &failure, self.delimiter) {
                    self.unwritable = Some(err);
                }
            }
        }
        Ok(())
    }
}

/// A row's verdict as a reader sees it, and what the collector must be told beyond its
/// violations: a quote that never closes, or a quoted field that swallowed lines that look
/// like rows (an invalid row under `--strict-quotes`, else a warning). Their messages name
/// lines, which only the collector knows for the second part.
fn judge_part<'r>(
    row: &Row<'r>,
    mapper: &RowMapper,
    body: &mut Vec<u8>,
) -> (Verdict<'r>, Option<Rejected>) {
    let strict = mapper.rules().quotes == QuoteRule::Strict;
    let stray = (!row.swallowed.is_empty()).then(|| Rejected::StrayQuote {
        lines: row.swallowed.to_vec(),
        strict,
    });
    if row.unterminated {
        (
            Verdict::Invalid(Vec::new()),
            Some(Rejected::UnterminatedQuote),
        )
    } else if strict && stray.is_some() {
        (Verdict::Invalid(Vec::new()), stray)
    } else {
        (mapper.map(row.record, body), stray)
    }
}

/// One reader: parses its part of the file, maps and validates every row, and hands on the
/// rows whose order matters. With `cut`, it stops at the first record at or past the cut if
/// the cut lies between records; otherwise it reads on to the end of the file.
///
/// A read error ends the part early and is returned after the rows before it.
fn read_part(
    mut rows: Rows,
    mut watch: CutWatch,
    plan: &ReadPlan,
    mut duplicates: DuplicateFeed,
    mut state: Option<StateFeed>,
    chunks: SyncSender<Chunk>,
) -> anyhow::Result<(PartEnd, Summary)> {
    let mut body = Vec::with_capacity(1024);
    let mut counts = Summary::of(Kind::DryRun);
    let mut part_first_line = None;
    let mut chunk = None::<Chunk>;
    let mut end = PartEnd::FileEnd;
    while let Some(row) = rows.next_row()? {
        let (record, line) = (row.record, row.pos.line);
        match watch.check(record, line) {
            CutSeen::No => {}
            CutSeen::Holds(cut) => {
                end = cut;
                break;
            }
            CutSeen::Failed => duplicates.discard(),
        }
        counts.count_read(1);
        let part_first_line = *part_first_line.get_or_insert(line);
        let (verdict, rejected) = judge_part(&row, plan.mapper, &mut body);
        let new_chunk = || Chunk {
            part_first_line,
            invalid: Vec::new(),
            bytes: 0,
        };
        let rejected = match rejected {
            // A row that stays valid: warned about in file order with the rows around it
            // (the record is not needed).
            Some(warning @ Rejected::StrayQuote { strict: false, .. }) => {
                let chunk = chunk.get_or_insert_with(new_chunk);
                chunk.invalid.push((ByteRecord::new(), line, warning));
                None
            }
            other => other,
        };
        // Every row with a readable UserID counts toward duplicates, invalid ones too.
        match &verdict {
            Verdict::Ready { user_id, .. } | Verdict::Skipped { user_id } => {
                duplicates.push(user_id)
            }
            Verdict::Invalid(_) => duplicates.push(plan.mapper.user_id(record).unwrap_or_default()),
        }
        match verdict {
            Verdict::Ready { user_id, .. } => {
                counts.count(RowFate::Valid);
                counts.count_long_locations(u64::from(plan.mapper.long_location(record)));
                if let Some(state) = &mut state {
                    state.push(user_id, &body);
                }
            }
            Verdict::Skipped { .. } => counts.count(RowFate::Skipped),
            Verdict::Invalid(violations) => {
                let rejected = rejected.unwrap_or(Rejected::Violations(violations));
                let chunk = chunk.get_or_insert_with(new_chunk);
                chunk.bytes += record.as_slice().len();
                chunk.invalid.push((record.clone(), line, rejected));
            }
        }
        if chunk
            .as_ref()
            .is_some_and(|c| c.invalid.len() >= CHUNK_ROWS || c.bytes >= CHUNK_BYTES)
        {
            if let Some(full) = chunk.take() {
                if chunks.send(full).is_err() {
                    // The collector no longer wants this part (the cut fell inside a record).
                    return Ok((end, counts));
                }
            }
        }
    }
    if let Some(last) = chunk {
        let _ = chunks.send(last);
    }
    duplicates.flush();
    if let Some(state) = &mut state {
        state.flush();
    }
    Ok((end, counts))
}

/// Ready rows per batch sent to the state lookup thread.
const LOOKUP_BATCH: usize = 4096;

/// `--state` in a dry run: the lookups miss the cache, so they run on a thread of their own,
/// fed (user key, body hash) of each ready row in batches, and counted per part of the file.
struct StateCheck {
    tx: SyncSender<(usize, Vec<(u64, u64)>)>,
    lookups: std::thread::JoinHandle<[u64; 2]>,
}

/// One reader's ready rows on their way to the lookup thread.
struct StateFeed {
    part: usize,
    batch: Vec<(u64, u64)>,
    tx: SyncSender<(usize, Vec<(u64, u64)>)>,
}

impl StateCheck {
    /// Counts the rows the sync rule finds unchanged, judging each as its user's last valid
    /// row (repeated users are judged again after the pass, see `judge_repeated_rows`).
    fn spawn(index: Arc<StateIndex>, rule: SyncRule) -> std::io::Result<StateCheck> {
        let (tx, rx) = sync_channel::<(usize, Vec<(u64, u64)>)>(8);
        let lookups = std::thread::Builder::new()
            .name("state-lookups".into())
            .spawn(move || {
                let mut unchanged = [0; 2];
                for (part, batch) in rx {
                    unchanged[part] += batch
                        .into_iter()
                        .filter(|&(key, hash)| rule.unchanged(&index, key, hash))
                        .count() as u64;
                }
                unchanged
            })?;
        Ok(StateCheck { tx, lookups })
    }

    fn feed(&self, part: usize) -> StateFeed {
        StateFeed {
            part,
            batch: Vec::with_capacity(LOOKUP_BATCH),
            tx: self.tx.clone(),
        }
    }

    /// How many ready rows of each part Chat already holds.
    fn finish(self) -> anyhow::Result<[u64; 2]> {
        drop(self.tx);
        self.lookups
            .join()
            .map_err(|_| anyhow::anyhow!("the state lookup thread panicked"))
    }
}

impl StateFeed {
    fn push(&mut self, user_id: &str, body: &[u8]) {
        self.batch.push((
            crate::store::state::user_key(user_id),
            crate::store::state::body_hash(body),
        ));
        if self.batch.len() == LOOKUP_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(LOOKUP_BATCH));
            // The lookup thread only stops early by panicking, which `finish` reports.
            let _ = self.tx.send((self.part, full));
        }
    }
}

/// The duplicate filter, on a thread of its own (its lookups miss the cache), fed UserIDs in
/// batches by each reader.
struct DuplicateFilter {
    tx: SyncSender<FilterNote>,
    thread: std::thread::JoinHandle<DuplicateFinder>,
}

/// What the readers tell the duplicate filter.
enum FilterNote {
    /// UserIDs, back to back in `ids`, each ending at the next of `ends`.
    UserIds { ids: String, ends: Vec<usize> },
    /// The cut did not hold: the second reader's UserIDs were misread, so stop (the check is
    /// made again after the pass).
    Discard,
}

/// One reader's UserIDs on their way to the duplicate filter.
struct DuplicateFeed {
    ids: String,
    ends: Vec<usize>,
    tx: SyncSender<FilterNote>,
}

/// UserIDs per batch sent to the duplicate filter.
const DUPLICATE_BATCH: usize = 4096;

/// The UserIDs packed back to back in `ids`, each ending at the next of `ends`.
fn split_ids<'a>(ids: &'a str, ends: &[usize]) -> Vec<&'a str> {
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let user_id = &ids[start..end];
            start = end;
            user_id
        })
        .collect()
}

impl DuplicateFilter {
    fn spawn() -> std::io::Result<DuplicateFilter> {
        let (tx, rx) = sync_channel::<FilterNote>(4);
        let thread = std::thread::Builder::new()
            .name("duplicates".into())
            .spawn(move || {
                let mut finder = DuplicateFinder::default();
                for note in rx {
                    match note {
                        FilterNote::UserIds { ids, ends } => {
                            finder.observe_many(&split_ids(&ids, &ends))
                        }
                        FilterNote::Discard => finder.discard(),
                    }
                }
                finder
            })?;
        Ok(DuplicateFilter { tx, thread })
    }

    fn feed(&self) -> DuplicateFeed {
        DuplicateFeed {
            ids: String::with_capacity(DUPLICATE_BATCH * 16),
            ends: Vec::with_capacity(DUPLICATE_BATCH),
            tx: self.tx.clone(),
        }
    }

    /// Waits for every feed to be flushed or dropped, then for the filter.
    fn finish(self) -> anyhow::Result<DuplicateFinder> {
        drop(self.tx);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the duplicate-check thread panicked"))
    }
}

impl DuplicateFeed {
    /// Notes one row's UserID; empty ones are not counted.
    fn push(&mut self, user_id: &str) {
        if user_id.is_empty() {
            return;
        }
        self.ids.push_str(user_id);
        self.ends.push(self.ids.len());
        if self.ends.len() == DUPLICATE_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.ends.is_empty() {
            return;
        }
        let ids = std::mem::replace(&mut self.ids, String::with_capacity(DUPLICATE_BATCH * 16));
        let ends = std::mem::replace(&mut self.ends, Vec::with_capacity(DUPLICATE_BATCH));
        // The filter thread only stops early by panicking, which `finish` reports.
        let _ = self.tx.send(FilterNote::UserIds { ids, ends });
    }

    /// Tells the filter that the cut did not hold, so it stops early instead of collecting
    /// candidates that will be thrown away.
    fn discard(&mut self) {
        let _ = self.tx.send(FilterNote::Discard);
    }
}
