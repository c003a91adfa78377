//! The collector: holds the import's report (each row counted through the tally, `run::fate`),
//! the progress display, the failure CSV, the journal and the state's record of accepted rows.
//! The failure record always reaches the disk before the journal says the row failed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::guards::{AnswerGuards, GuardStop};
use super::worker::Shared;
use super::{Job, LocalRow, Outcome, Report, UNREACHABLE_AFTER};
use crate::input::row::failure_from;
use crate::outcome::{Failure, FailureCode};
use crate::run::changes::describe_actual;
use crate::run::fate::{Compared, RowFate};
use crate::run::progress::{Progress, Snapshot};
use crate::run::row_warnings::RowWarnings;
use crate::run::summary::Summary;
use crate::store::changes_log::{Change, ChangeLog};
use crate::store::failures::FailureWriter;
use crate::store::journal::{Comparison, Final, Found, Journal};
use crate::store::state::StateDb;

/// Where every row's outcome lands: the report, the progress display, the failure CSV, the
/// journal and the state.
pub(super) struct Collector {
    pub(super) failures: FailureWriter,
    pub(super) journal: Journal,
    /// `--state`: Chat's accepted rows are recorded here.
    pub(super) state: Option<StateDb>,
    pub(super) progress: Progress,
    pub(super) shared: Arc<Shared>,
    pub(super) delimiter: u8,
    pub(super) max_errors: Option<u64>,
    /// Rows that failed on transport errors since a request last got through: final once one
    /// does, pending if the job stops first (Chat unreachable, or cut off).
    pub(super) held_transport: Vec<(Job, Failure)>,
    pub(super) warnings: RowWarnings,
    /// `--max-error-rate` and the setup-code storm, judged on every row answered.
    pub(super) guards: AnswerGuards,
    /// `--changes-log`.
    pub(super) changes_log: Option<ChangeLog>,
}

impl Collector {
    /// Returns the counters and the journal; the caller closes the journal as complete only
    /// once it knows the whole file was read.
    pub(super) async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        prior: Summary,
    ) -> anyhow::Result<(Summary, Journal, Option<StateDb>)> {
        let mut summary = prior;
        let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let errors_before = summary.failed + summary.invalid;
        loop {
            tokio::select! {
                report = reports.recv() => {
                    let Some(report) = report else { break };
                    let sent = matches!(report, Report::Finished { .. });
                    self.record(report, &mut summary)?;
                    // In line order: a row's warning waits for the rows before it.
                    self.warnings.release_before(self.journal.final_before());
                    // A row Chat answered goes out to the OS at once, so a killed process
                    // never re-sends a row it had finished; rows decided locally (invalid,
                    // unchanged …) are cheap to decide again and go out in batches. The
                    // failure record always goes first.
                    if sent || self.journal.pending_bytes() > 64 * 1024 {
                        self.failures.write_out()?;
                        self.journal.write_out()?;
                    }
                    if let Some(limit) = self.max_errors {
                        // Only this run's errors count: a resumed run must be able to go on.
                        let errors = summary.failed + summary.invalid - errors_before;
                        if errors >= limit && !self.shared.api.stop().is_cancelled() {
                            self.shared.stop_job(format!(
                                "{errors} rows failed or were invalid, reaching --max-errors {limit}"
                            ));
                        }
                    }
                }
                _ = flush_tick.tick() => {
                    self.sync()?;
                    let pace = self.shared.api.pacer().current_rate();
                    let snapshot = Snapshot::import(&summary, self.shared.requests(), pace);
                    self.progress.update(snapshot);
                    self.show_live(&summary);
                }
            }
        }
        self.settle_held_transport(&mut summary)?;
        self.warnings.release_all();
        self.sync()?;
        self.progress.finish();
        summary.failure_csv = self.failures.finish()?;
        if let Some(log) = self.changes_log.take() {
            log.finish()?;
        }
        summary.journal = Some(self.journal.path().to_path_buf());
        Ok((summary, self.journal, self.state))
    }

    /// The failure CSV first, then the journal: a row is never journalled as failed before
    /// its failure record is on disk.
    fn sync(&mut self) -> anyhow::Result<()> {
        self.failures.flush()?;
        if let Some(log) = &mut self.changes_log {
            log.flush()?;
        }
        self.journal.sync()?;
        if let Some(state) = &mut self.state {
            state.commit()?;
        }
        Ok(())
    }

    fn record(&mut self, report: Report, summary: &mut Summary) -> anyhow::Result<()> {
        match report {
            Report::Local(row) => self.record_local(row, summary),
            Report::Finished {
                job,
                outcome,
                requests,
            } => self.record_sent(*job, outcome, requests, summary),
        }
    }

    /// A row decided without a request.
    fn record_local(&mut self, row: LocalRow, summary: &mut Summary) -> anyhow::Result<()> {
        match row {
            LocalRow::Skipped(pos) => {
                summary.count(RowFate::Skipped);
                self.journal.record(pos, Final::Skipped, "");
            }
            LocalRow::NotNeeded(pos, why) => {
                summary.count(match why {
                    Final::Superseded => RowFate::Superseded,
                    _ => RowFate::Unchanged,
                });
                self.journal.record(pos, why, "");
            }
            LocalRow::UnchangedInChat {
                pos,
                user_id,
                body_hash,
                values,
                kept,
            } => {
                summary.count(RowFate::Unchanged);
                let compared = Compared {
                    kept: &kept,
                    ..Compared::plain(Found::InChat, u64::from(values))
                };
                summary.count_comparison(compared, 0);
                let comparison = Comparison {
                    found: Found::InChat,
                    tags_accepted: 0,
                };
                self.journal
                    .record_compared(pos, Final::Unchanged, "", Some(comparison));
                // What Chat holds is what this row says: the hash a send of it would leave.
                if let Some(state) = &mut self.state {
                    state.accepted(&user_id, body_hash);
                }
            }
            LocalRow::AccountFailed {
                pos,
                record,
                failure,
            } => {
                let code = failure.code.to_string();
                summary.count(RowFate::Failed {
                    code: &format!("{code} (account)"),
                });
                self.failures
                    .write(&record, pos.line, &failure, self.delimiter)?;
                self.journal.record(pos, Final::Failed, &code);
            }
            LocalRow::AlreadyFailed(pos) => {
                summary.count(RowFate::Failed {
                    code: "(earlier run)",
                });
                self.journal.record(pos, Final::Failed, "earlier");
            }
            LocalRow::Invalid {
                pos,
                record,
                violations,
                superseded,
            } => {
                summary.count(RowFate::Invalid(&violations));
                self.warnings.invalid(pos.index, pos.line, &violations);
                let failure = Failure {
                    superseded,
                    ..failure_from(&violations)
                };
                self.failures
                    .write(&record, pos.line, &failure, self.delimiter)?;
                self.journal
                    .record(pos, Final::Invalid, &failure.code.to_string());
            }
        }
        Ok(())
    }

    /// A row that went to the workers: answered, failed, or left pending by a stop.
    fn record_sent(
        &mut self,
        job: Job,
        outcome: Outcome,
        requests: u32,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        summary.count_attempts(requests);
        if !matches!(outcome, Outcome::NotAttempted) {
            count_check(summary, &job, matches!(outcome, Outcome::Ok));
        }
        let outcome = match outcome {
            Outcome::Failed(failure) if failure.code == FailureCode::Transport => {
                self.hold_transport_failure(job, failure);
                return Ok(());
            }
            other => other,
        };
        if !matches!(outcome, Outcome::NotAttempted) {
            // A request got through after them, so they were not an outage. Settling them
            // first also keeps a user's rows in order: a later row never becomes final while
            // an earlier one is left pending.
            self.release_held_transport(summary)?;
        }
        match outcome {
            Outcome::Ok => {
                tracing::debug!(
                    "line {}: user {} ok after {requests} request(s)",
                    job.pos.line,
                    job.user_id
                );
                summary.count(RowFate::Ok);
                self.judge(None);
                self.log_changes(&job, "0")?;
                let comparison = comparison(&job, job.tags);
                self.journal
                    .record_compared(job.pos, Final::Ok, "", comparison);
                if let Some(state) = &mut self.state {
                    state.accepted(&job.user_id, job.body_hash);
                }
            }
            Outcome::NotAttempted => {
                summary.count(RowFate::NotAttempted);
                if requests > 0 {
                    // Cut short mid-retry: an earlier attempt may have been applied.
                    if let Some(state) = &mut self.state {
                        state.forget(&job.user_id);
                    }
                }
            }
            Outcome::Failed(failure) => self.final_failure(job, failure, summary)?,
        }
        Ok(())
    }

    /// A row Chat (or the last attempt) failed for good: into the failure CSV, then the
    /// journal.
    fn final_failure(
        &mut self,
        job: Job,
        failure: Failure,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let code = failure.code.to_string();
        summary.count(RowFate::Failed { code: &code });
        self.judge(Some(&failure));
        self.log_changes(&job, &code)?;
        let (index, line) = (job.pos.index, job.pos.line);
        self.warnings.failed(index, line, &job.user_id, &failure);
        self.failures
            .write(&job.record, job.pos.line, &failure, self.delimiter)?;
        let comparison = comparison(&job, 0);
        self.journal
            .record_compared(job.pos, Final::Failed, &code, comparison);
        if let Some(state) = &mut self.state {
            // Sent but not confirmed, refused, or not sent at all: Chat may not hold this row,
            // so the next sync sends it again, changed or not.
            state.failed(&job.user_id, &code, &failure.message);
        }
        Ok(())
    }

    /// Feeds an answer to the guards, and stops the run if one says so.
    fn judge(&mut self, failure: Option<&Failure>) {
        match self.guards.answered(failure) {
            Some(GuardStop::SetupStorm(why)) => self.shared.stop_job(why),
            Some(GuardStop::FailureShare(why)) => self.shared.halt(why),
            None => {}
        }
    }

    /// `--changes-log`: every value the row sent, with what Chat held before (when read) and
    /// the row's result.
    fn log_changes(&mut self, job: &Job, code: &str) -> anyhow::Result<()> {
        let Some(log) = &mut self.changes_log else {
            return Ok(());
        };
        for (tag, sent) in sent_values(job) {
            let before = match job.found {
                Some(Found::Updated) => {
                    let held = job.differing.iter().position(|t| *t == tag);
                    describe_actual(held.and_then(|i| job.held.get(i)).and_then(Option::as_ref))
                }
                Some(Found::NotAnAccount) => "(no account)".to_string(),
                _ => String::new(),
            };
            log.record(Change {
                user_id: &job.user_id,
                tag: &tag,
                before: &before,
                sent: &sent.to_string(),
                code,
            })?;
        }
        Ok(())
    }

    /// The live sinks (`--metrics-file`) get the counters so far.
    fn show_live(&self, summary: &Summary) {
        let live = &self.shared.settings.live;
        if live.is_empty() {
            return;
        }
        let mut now = summary.clone();
        now.requests = self.shared.requests();
        now.calls = crate::run::handles::calls_of(self.shared.every.iter().map(|api| &**api));
        let pacer = self.shared.api.pacer();
        now.pace = Some((pacer.lowest_rate(), pacer.current_rate()));
        live.progress(&now);
    }

    /// Holds a row that failed on transport errors; enough of them in a row with no answer
    /// from Chat stop the job as unreachable.
    fn hold_transport_failure(&mut self, job: Job, failure: Failure) {
        self.held_transport.push((job, failure));
        let streak = self.held_transport.len();
        if streak >= UNREACHABLE_AFTER && !self.shared.api.stop().is_cancelled() {
            self.shared.stop_job(self.shared.unreachable(streak));
        }
    }

    fn release_held_transport(&mut self, summary: &mut Summary) -> anyhow::Result<()> {
        for (job, failure) in std::mem::take(&mut self.held_transport) {
            self.final_failure(job, failure, summary)?;
        }
        Ok(())
    }

    /// At the end: held rows are final failures if the run went on to its end, and pending if
    /// it was stopped (Chat unreachable, a job-wide error, a signal): nothing says they were
    /// the rows' own fault.
    fn settle_held_transport(&mut self, summary: &mut Summary) -> anyhow::Result<()> {
        if !self.shared.api.stop().is_cancelled() {
            return self.release_held_transport(summary);
        }
        for (job, _) in std::mem::take(&mut self.held_transport) {
            summary.count(RowFate::NotAttempted);
            if let Some(state) = &mut self.state {
                state.forget(&job.user_id);
            }
        }
        Ok(())
    }
}

/// The values a row sent: its portrait_set body's items, then its batch part's Nick and Image.
fn sent_values(job: &Job) -> Vec<(String, serde_json::Value)> {
    let mut values: Vec<(String, serde_json::Value)> = job
        .body
        .as_ref()
        .and_then(|body| crate::run::changes::parse_body(body))
        .map(|body| body.items.into_iter().map(|i| (i.tag, i.value)).collect())
        .unwrap_or_default();
    if let Some(entry) = &job.nick_image {
        use crate::input::profile::{StandardField, Tag};
        let mut add = |field: StandardField, value: &Option<String>| {
            if let Some(value) = value {
                values.push((Tag::Standard(field).name(), value.clone().into()));
            }
        };
        add(StandardField::Nick, &entry.nick);
        add(StandardField::Image, &entry.face_url);
    }
    values
}

/// What the journal keeps of a sent row's `--changes-only` comparison.
fn comparison(job: &Job, tags_accepted: u32) -> Option<Comparison> {
    job.found.map(|found| Comparison {
        found,
        tags_accepted,
    })
}

/// `--changes-only`'s counters for a row sent: what the comparison found, and the tags Chat
/// accepted.
fn count_check(summary: &mut Summary, job: &Job, accepted: bool) {
    let Some(found) = job.found else {
        return;
    };
    let tags_sent = if accepted { u64::from(job.tags) } else { 0 };
    let differing: Vec<&str> = job.differing.iter().map(String::as_str).collect();
    let compared = Compared {
        found,
        values: u64::from(job.compared_values),
        differing: &differing,
        kept: &job.kept,
    };
    summary.count_comparison(compared, tags_sent);
}
