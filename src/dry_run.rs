//! The dry run: every row read, mapped with the same code the real send uses, validated, and
//! reported; nothing is sent.

use std::io::Write;
use std::time::Instant;

use csv::ByteRecord;

use crate::dupes::BackgroundFinder;
use crate::failures::FailureWriter;
use crate::input::CsvInput;
use crate::job::JobInput;
use crate::row::{failure_from, RowMapper, Verdict};
use crate::summary::Summary;

/// Rows whose violations are printed on stderr; the rest are only in the failure CSV.
const PRINTED_INVALID_ROWS: u64 = 20;

/// Validates the whole file. Invalid rows go to the failure CSV.
pub fn run(job: &JobInput, show_requests: usize) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut input = CsvInput::open(&job.input)?;
    let mapper = RowMapper::new(input.columns.clone(), job.rules);
    let mut failures = FailureWriter::create(&job.failures, mapper.columns(), job.input.delimiter)?;
    let mut summary = Summary {
        dry_run: true,
        ..Summary::default()
    };
    let mut finder = BackgroundFinder::spawn()?;
    // `--state`: count what a sync would send, without sending or writing the state.
    let sync = match &job.state {
        Some(path) => {
            summary.with_state = true;
            Some((
                crate::state::load_index(path)?,
                crate::state::last_rows_of_repeated_users(&job.input, job.rules)?,
            ))
        }
        None => None,
    };
    let mut record = ByteRecord::new();
    let mut body = Vec::with_capacity(1024);
    let stdout = std::io::stdout();
    let mut shown = 0;

    while let Some(line) = input.read(&mut record)? {
        summary.rows += 1;
        if let Some(user_id) = mapper.user_id(&record).filter(|id| !id.is_empty()) {
            finder.observe(user_id);
        }
        let verdict = if input.unterminated() {
            Verdict::Invalid(vec![crate::row::unterminated_quote(line)])
        } else {
            mapper.map(&record, &mut body)
        };
        match verdict {
            Verdict::Ready { user_id, .. }
                if sync.as_ref().is_some_and(|(_, last_rows)| {
                    last_rows
                        .get(user_id)
                        .is_some_and(|&last| last != summary.rows - 1)
                }) =>
            {
                summary.superseded += 1;
            }
            Verdict::Ready { user_id, .. }
                if sync.as_ref().is_some_and(|(index, _)| {
                    !job.full && index.is_unchanged(user_id, crate::state::body_hash(&body))
                }) =>
            {
                summary.unchanged += 1;
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
                    &record,
                    line,
                    &failure_from(&violations),
                    job.input.delimiter,
                )?;
            }
        }
    }

    let finder = finder.finish()?;
    tracing::debug!(
        "pass 1 done after {:?}; duplicate check clear: {}",
        started.elapsed(),
        finder.is_clear()
    );
    if !finder.is_clear() {
        let mut recount = finder.into_recount();
        let mut input = CsvInput::open(&job.input)?;
        while input.read(&mut record)?.is_some() {
            if let Some(user_id) = mapper.user_id(&record).filter(|id| !id.is_empty()) {
                recount.observe(user_id);
            }
        }
        summary.duplicates = recount.finish();
    }
    summary.failure_csv = failures.finish()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}
