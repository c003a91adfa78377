//! One decision per row, for every command that reads rows (import, verify, the
//! `--changes-only` plan, the account passes): invalid, skipped, superseded by a later row of
//! its user, already failed in an interrupted run, account failed, unchanged since the last
//! accepted run, or send — and what to send: for a user with several rows, the rows merged by
//! `input::merge`, at the user's last row with something to set. Each user therefore costs at
//! most one request per run, and every mode applies the same rule.
//!
//! The dry run reads a file in two halves at once and so cannot merge as it goes: it counts each
//! row alone, gathers the repeated users' rows apart ([`UserRows`]) and then corrects their
//! counts, by the same merge and the same sync rule. These are the two strategies of the rule;
//! `tests` below check they agree.

use std::collections::{HashMap, HashSet};

use csv::ByteRecord;

use crate::input::merge::MergedCells;
use crate::input::row::{RowMapper, Verdict, Violation};
use crate::input::rows::Row;
use crate::input::survey::{judge, RepeatedUsers};
use crate::outcome::{AccountFailure, Failure, Stage};
use crate::run::fate::RowFate;
use crate::run::summary::Summary;
use crate::run::sync::{SyncFilter, SyncRule};
use crate::store::state::StateIndex;

/// What happens to one row.
#[derive(Debug)]
pub enum Decision {
    /// Rejected by validation. `superseded`: the header names of its cells that a later valid
    /// row of the user sends (the failure CSV says so, and a re-import leaves them out).
    Invalid {
        violations: Vec<Violation>,
        superseded: Vec<String>,
    },
    /// Valid, with nothing to set.
    Skipped,
    /// Valid, and merged into the user's last row, which is sent instead.
    Superseded,
    /// `--state`: Chat holds this body already, as far as the last accepted run knows.
    Unchanged(Ready),
    /// Its line is in the failure CSV of the interrupted run being resumed.
    AlreadyFailed,
    /// The user's account could not be imported (`--create-accounts`).
    AccountFailed(Ready, Failure),
    Send(Ready),
}

/// A user's body to send: the row's own, or the user's rows merged.
#[derive(Debug, Clone)]
pub struct Ready {
    pub user_id: String,
    /// The record the body was made from (the merged one for a repeated user): what the
    /// failure CSV gets if the send fails.
    pub record: ByteRecord,
    pub body: Vec<u8>,
    /// The tags the body sets.
    pub items: usize,
    /// For `--state`: the hash Chat holds once it accepts the body.
    pub body_hash: u64,
}

/// What the decisions depend on beyond the rows themselves (an import's plan).
#[derive(Default)]
pub struct Known {
    /// Lines already in the failure CSV being appended to (`--resume`).
    pub failed_lines: HashSet<u64>,
    /// Users whose account import failed (`--create-accounts`).
    pub failed_accounts: HashMap<String, AccountFailure>,
    /// `--state` or `--changes-only`.
    pub sync: Option<SyncFilter>,
}

/// Decides rows in file order.
pub struct Decider {
    mapper: RowMapper,
    repeated: RepeatedUsers,
    known: Known,
    /// Repeated users whose last row has not come yet: their rows so far, merged.
    merging: HashMap<Box<str>, MergedCells>,
    body: Vec<u8>,
}

impl Decider {
    pub fn new(mapper: RowMapper, repeated: RepeatedUsers, known: Known) -> Decider {
        Decider {
            mapper,
            repeated,
            known,
            merging: HashMap::new(),
            body: Vec::with_capacity(1024),
        }
    }

    pub fn mapper(&self) -> &RowMapper {
        &self.mapper
    }

    /// The fate of the next row. Rows must come in file order, and every row of a repeated
    /// user must pass here or through [`Decider::pass_over`].
    pub fn decide(&mut self, row: &Row) -> Decision {
        if self.known.failed_lines.contains(&row.pos.line) {
            self.pass_over(row);
            return Decision::AlreadyFailed;
        }
        let index = row.pos.index;
        let (user_id, items) = match judge(&self.mapper, row, &mut self.body) {
            Verdict::Ready { user_id, items } => (user_id, items),
            Verdict::Skipped { .. } => return Decision::Skipped,
            Verdict::Invalid(violations) => {
                let superseded = self.superseded_after(row);
                return Decision::Invalid {
                    violations,
                    superseded,
                };
            }
        };
        let (record, items) = match self
            .repeated
            .get(user_id)
            .and_then(|later| later.last_ready)
        {
            Some(last) if index < last => {
                self.merging
                    .entry(user_id.into())
                    .or_default()
                    .add(&self.mapper, row.record);
                return Decision::Superseded;
            }
            Some(last) if index == last => match self.merging.remove(user_id) {
                Some(mut merged) => {
                    merged.add(&self.mapper, row.record);
                    let record = merged.record(&self.mapper, row.record);
                    match self.mapper.map(&record, &mut self.body) {
                        Verdict::Ready { items, .. } => (record, items),
                        // Every merged cell was valid in its own row, so this cannot happen;
                        // if it did, the row's own body is the safe one to send.
                        _ => {
                            judge(&self.mapper, row, &mut self.body);
                            (row.record.clone(), items)
                        }
                    }
                }
                None => (row.record.clone(), items),
            },
            _ => (row.record.clone(), items),
        };
        let ready = Ready {
            user_id: user_id.to_string(),
            body_hash: crate::store::state::body_hash(&self.body),
            body: self.body.clone(),
            items,
            record,
        };
        if let Some(why) = self.known.failed_accounts.get(user_id) {
            let failure = Failure {
                code: why.code,
                message: why.message.clone(),
                stage: Stage::Account,
                attempts: 0,
                superseded: Vec::new(),
            };
            return Decision::AccountFailed(ready, failure);
        }
        match &self.known.sync {
            Some(sync) if sync.unchanged(&ready.user_id, ready.body_hash) => {
                Decision::Unchanged(ready)
            }
            _ => Decision::Send(ready),
        }
    }

    /// Notes a row that is not decided again (final in the journal of the run being resumed),
    /// so a later row of its user still merges it.
    pub fn pass_over(&mut self, row: &Row) {
        let Some(user_id) = self.mapper.user_id(row.record) else {
            return;
        };
        let later = match self
            .repeated
            .get(user_id)
            .and_then(|later| later.last_ready)
        {
            Some(last) if row.pos.index < last => last,
            _ => return,
        };
        if let Verdict::Ready { .. } = judge(&self.mapper, row, &mut self.body) {
            debug_assert!(row.pos.index < later);
            self.merging
                .entry(user_id.into())
                .or_default()
                .add(&self.mapper, row.record);
        }
    }

    /// For the account passes: the user's record at the row where its account is handled
    /// (its last valid row: each user once), merged with its earlier rows; None for every
    /// other row.
    pub fn account_row(&mut self, row: &Row) -> Option<(String, ByteRecord)> {
        let index = row.pos.index;
        let ready = match judge(&self.mapper, row, &mut self.body) {
            Verdict::Ready { .. } => true,
            Verdict::Skipped { .. } => false,
            Verdict::Invalid(_) => return None,
        };
        let user_id = self.mapper.user_id(row.record)?.to_string();
        let last_valid = self
            .repeated
            .get(user_id.as_str())
            .and_then(|l| l.last_valid);
        match last_valid {
            Some(last) if index < last => {
                if ready {
                    self.merging
                        .entry(user_id.as_str().into())
                        .or_default()
                        .add(&self.mapper, row.record);
                }
                None
            }
            _ => {
                let mut merged = self.merging.remove(user_id.as_str()).unwrap_or_default();
                if ready {
                    merged.add(&self.mapper, row.record);
                }
                let record = merged.record(&self.mapper, row.record);
                Some((user_id, record))
            }
        }
    }

    /// The header names of an invalid row's cells that a later valid row of its user sends.
    fn superseded_after(&self, row: &Row) -> Vec<String> {
        let Some(later) = self
            .mapper
            .user_id(row.record)
            .and_then(|user_id| self.repeated.get(user_id))
        else {
            return Vec::new();
        };
        let names = &self.mapper.columns().names;
        later
            .sent_after(row.pos.index)
            .filter_map(|column| names.get(column).cloned())
            .collect()
    }
}

/// The dry run's strategy: a repeated user's rows with something to set, gathered apart (in
/// parts of the file at once, joined in file order by [`UserRows::then`]), then judged at once
/// by [`UserRows::correct`].
#[derive(Default)]
pub struct UserRows {
    /// Its rows with something to set.
    ready: u64,
    /// With `--state`: each such row's own body hash, in file order (how the pass judged it),
    /// the rows merged, and the last of them (for the columns that set no tag).
    own_hashes: Vec<u64>,
    merged: MergedCells,
    last: Option<ByteRecord>,
}

impl UserRows {
    /// Notes a row with something to set (`body`: its own body); `keep`: gather what `--state`
    /// needs to judge the merged body.
    pub fn add(&mut self, mapper: &RowMapper, record: &ByteRecord, body: &[u8], keep: bool) {
        self.ready += 1;
        if keep {
            self.own_hashes.push(crate::store::state::body_hash(body));
            self.merged.add(mapper, record);
            self.last = Some(record.clone());
        }
    }

    /// Adds what a later part of the file found.
    pub fn then(&mut self, later: UserRows) {
        self.ready += later.ready;
        self.own_hashes.extend(later.own_hashes);
        self.merged.then(later.merged);
        if later.last.is_some() {
            self.last = later.last;
        }
    }

    /// Moves the user's rows from how the pass counted them (each alone, judged by its own
    /// body) to how [`Decider`] decides them: all but the last superseded, and the last judged
    /// by the merged body.
    pub fn correct(
        &self,
        mapper: &RowMapper,
        sync: Option<(SyncRule, &StateIndex)>,
        summary: &mut Summary,
    ) {
        if self.ready < 2 {
            return;
        }
        let Some((rule, index)) = sync else {
            summary.recount(RowFate::Valid, RowFate::Superseded, self.ready - 1);
            return;
        };
        let Some(last) = self.last.as_ref() else {
            return;
        };
        let mut body = Vec::new();
        let record = self.merged.record(mapper, last);
        let Verdict::Ready { user_id, .. } = mapper.map(&record, &mut body) else {
            return;
        };
        let key = crate::store::state::user_key(user_id);
        let merged_hash = crate::store::state::body_hash(&body);
        let fate = |unchanged| match unchanged {
            true => RowFate::Unchanged,
            false => RowFate::Valid,
        };
        // Each row leaves the count the pass gave it; the first takes the merged body's
        // verdict and the others become superseded.
        let mut to = fate(rule.unchanged(index, key, merged_hash));
        for &own in &self.own_hashes {
            summary.recount(fate(rule.unchanged(index, key, own)), to, 1);
            to = RowFate::Superseded;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::input::reader::InputOptions;
    use crate::input::row::RowRules;
    use crate::input::rows::Rows;
    use crate::input::survey::Survey;
    use crate::run::dry_run::{self, DryRunOptions};
    use crate::run::job::JobInput;
    use crate::store::state::StateDb;

    /// A file of `rows` rows over a few users: repeats, empty cells, invalid cells.
    fn random_file(rng: &mut rand::rngs::StdRng, rows: usize) -> String {
        let mut text = String::from("UserID,Nick,Level,Gender\n");
        for _ in 0..rows {
            let user = format!("u{}", rng.random_range(0..rows / 3 + 1));
            let nick = ["", "Ann", "Bo", "Cy"][rng.random_range(0..4)];
            let level = ["", "1", "2", "x"][rng.random_range(0..4)];
            let gender = ["", "m", "f"][rng.random_range(0..3)];
            text.push_str(&format!("{user},{nick},{level},{gender}\n"));
        }
        text
    }

    /// (valid, unchanged, superseded, skipped, invalid) as the import decides the rows.
    /// The rows of `input` and a decider over them, as the import builds it: the survey first.
    fn open_decider(input: &InputOptions, rules: RowRules, known: Known) -> (Rows, Decider) {
        let rows = Rows::open(input).unwrap();
        let mapper = RowMapper::new(rows.columns().clone(), rules);
        let survey = Survey::default()
            .read_all(input, &mapper)
            .unwrap()
            .finish(input)
            .unwrap();
        (rows, Decider::new(mapper, survey.repeated, known))
    }

    fn decided(job: &JobInput, sync: Option<SyncFilter>) -> [u64; 5] {
        let known = Known {
            sync,
            ..Known::default()
        };
        let (mut rows, mut decider) = open_decider(&job.input, job.rules, known);
        let mut counts = [0; 5];
        while let Some(row) = rows.next_row().unwrap() {
            let slot = match decider.decide(&row) {
                Decision::Send(_) => 0,
                Decision::Unchanged(_) => 1,
                Decision::Superseded => 2,
                Decision::Skipped => 3,
                Decision::Invalid { .. } => 4,
                other => panic!("{other:?}"),
            };
            counts[slot] += 1;
        }
        counts
    }

    /// The same counts from the dry run's strategy (each row alone, then corrected), reading
    /// the file in two halves.
    fn dry_run_counts(job: &JobInput) -> [u64; 5] {
        let options = DryRunOptions {
            show_requests: 0,
            parallel_min_bytes: 0,
        };
        let s = dry_run::run(job, options).unwrap();
        [s.valid, s.unchanged, s.superseded, s.skipped, s.invalid]
    }

    #[test]
    fn the_import_and_the_dry_run_decide_repeated_users_alike() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for case in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("u.csv");
            std::fs::write(&path, random_file(&mut rng, 5 + case * 3)).unwrap();
            let mut job = JobInput::reading(
                InputOptions {
                    path: path.clone(),
                    delimiter: b',',
                    ..InputOptions::default()
                },
                crate::input::row::RowRules::default(),
                dir.path().join("f.csv"),
                dir.path().join("j"),
            );
            assert_eq!(decided(&job, None), dry_run_counts(&job), "case {case}");
            // With a state that holds some users' merged bodies (from an import of the same
            // file) and stale hashes for others.
            let state = dir.path().join("s.db");
            seed_state(&state, &job, &mut rng);
            job.state = Some(state.clone());
            let sync = || SyncFilter {
                rule: SyncRule { full: false },
                index: crate::store::state::load_index(&state).unwrap(),
            };
            assert_eq!(
                decided(&job, Some(sync())),
                dry_run_counts(&job),
                "case {case} with a state"
            );
        }
    }

    /// A decider over the CSV `text`, with its rows, as the import reads them.
    fn decider_of(dir: &Path, text: &str) -> (Rows, Decider) {
        let path = dir.join("u.csv");
        std::fs::write(&path, text).unwrap();
        let input = InputOptions {
            path,
            delimiter: b',',
            ..InputOptions::default()
        };
        open_decider(&input, RowRules::default(), Known::default())
    }

    /// The tags and values of a body.
    fn items(body: &[u8]) -> Vec<(String, serde_json::Value)> {
        let body: serde_json::Value = serde_json::from_slice(body).unwrap();
        body["ProfileItem"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    item["Tag"].as_str().unwrap().to_string(),
                    item["Value"].clone(),
                )
            })
            .collect()
    }

    fn cells(record: &ByteRecord) -> Vec<String> {
        record
            .iter()
            .map(|cell| String::from_utf8_lossy(cell).into_owned())
            .collect()
    }

    const ANN_THEN_LEVEL: &str = "UserID,Nick,Level\nu1,Ann,\nu2,Bo,\nu1,,7\n";

    /// A resumed run passes over the rows that are final in the journal; a later row of their
    /// user still merges them, so the body sent sets what the earlier rows set too.
    #[test]
    fn rows_passed_over_on_a_resume_still_merge_into_the_users_last_row() {
        let dir = tempfile::tempdir().unwrap();
        let (mut rows, mut decider) = decider_of(dir.path(), ANN_THEN_LEVEL);
        for _ in 0..2 {
            let row = rows.next_row().unwrap().unwrap();
            decider.pass_over(&row);
        }
        let last = rows.next_row().unwrap().unwrap();
        let Decision::Send(ready) = decider.decide(&last) else {
            panic!("u1's last row is sent");
        };
        assert_eq!(
            items(&ready.body),
            [
                ("Tag_Profile_IM_Nick".to_string(), serde_json::json!("Ann")),
                ("Tag_Profile_IM_Level".to_string(), serde_json::json!(7)),
            ]
        );
        // Every row final (an interrupted run that had finished them all): passing over the
        // users' last rows merges nothing more than their earlier rows did.
        let (mut rows, mut decider) = decider_of(dir.path(), ANN_THEN_LEVEL);
        let mut merged_before_last = None;
        while let Some(row) = rows.next_row().unwrap() {
            if row.pos.index == 2 {
                merged_before_last = Some(decider.merging.clone());
            }
            decider.pass_over(&row);
        }
        assert_eq!(Some(decider.merging), merged_before_last);
    }

    /// The account passes handle each user once, at its last valid row, with its rows merged.
    #[test]
    fn the_account_passes_see_each_user_once_at_its_last_valid_row() {
        let dir = tempfile::tempdir().unwrap();
        let text = "UserID,Nick,Level\nu1,Ann,\nu2,Bo,3\nu1,,7\nu1,,x\n";
        let (mut rows, mut decider) = decider_of(dir.path(), text);
        let mut seen = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            seen.push(
                decider
                    .account_row(&row)
                    .map(|(user, record)| (user, cells(&record))),
            );
        }
        let user =
            |id: &str, record: [&str; 3]| Some((id.to_string(), record.map(String::from).to_vec()));
        assert_eq!(
            seen,
            [
                None,
                user("u2", ["u2", "Bo", "3"]),
                user("u1", ["u1", "Ann", "7"]),
                None,
            ]
        );
    }

    /// An invalid row names the cells a later valid row of its user sends (the failure CSV's
    /// `_superseded`), and only those.
    #[test]
    fn an_invalid_row_names_the_cells_a_later_row_of_its_user_sends() {
        let dir = tempfile::tempdir().unwrap();
        let text = "UserID,Nick,Level\nu1,Ann,x\nu1,,7\nu2,Bo,y\n";
        let (mut rows, mut decider) = decider_of(dir.path(), text);
        let mut superseded = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            if let Decision::Invalid {
                superseded: names, ..
            } = decider.decide(&row)
            {
                superseded.push(names);
            }
        }
        assert_eq!(superseded, [vec!["Level".to_string()], vec![]]);
    }

    /// A state holding, for about half the users, the hash the import would send (the rest a
    /// stale one).
    fn seed_state(path: &Path, job: &JobInput, rng: &mut rand::rngs::StdRng) {
        let (mut db, _) = StateDb::open(path, 1).unwrap();
        let (mut rows, mut decider) = open_decider(&job.input, job.rules, Known::default());
        while let Some(row) = rows.next_row().unwrap() {
            if let Decision::Send(ready) = decider.decide(&row) {
                let hash = if rng.random_bool(0.5) {
                    ready.body_hash
                } else {
                    ready.body_hash ^ 1
                };
                db.accepted(&ready.user_id, hash);
            }
        }
        db.finish_run().unwrap();
    }
}
