//! The survey: what one reading of the input tells a run before anything is sent — how many
//! rows it has, which UserIDs may repeat, and (for `--state`) the last valid row of each user
//! that may repeat.

use std::collections::HashMap;

use csv::ByteRecord;

use crate::input::dupes::DuplicateFinder;
use crate::input::reader::{CsvInput, InputOptions};
use crate::input::row::{RowMapper, Verdict};

/// Facts gathered record by record, in file order.
pub struct Survey {
    rows: u64,
    finder: DuplicateFinder,
    /// `--state`: user → record index of their last valid row, for every user the duplicate
    /// filter reported as probably seen before. A repeated user's last row always comes after
    /// the filter saw its first, so the index is exact; a user the filter wrongly suspected has
    /// one row, which is its own last.
    last_ready: Option<HashMap<String, u64>>,
    body: Vec<u8>,
}

/// The survey's findings.
pub struct SurveyFindings {
    pub rows: u64,
    /// Feed it every row's UserID again (`into_recount`) for the exact duplicate report.
    pub finder: DuplicateFinder,
    /// Users with several valid rows (and a few suspected wrongly) → their last valid row.
    pub last_ready: Option<HashMap<String, u64>>,
}

impl Survey {
    /// A survey; `last_rows` also finds each repeated user's last valid row.
    pub fn new(last_rows: bool) -> Survey {
        Survey {
            rows: 0,
            finder: DuplicateFinder::default(),
            last_ready: last_rows.then(HashMap::new),
            body: Vec::new(),
        }
    }

    /// Notes the next record. `unterminated`: the reader reports it cut off by an unclosed
    /// quote, so it is never valid.
    pub fn observe(&mut self, record: &ByteRecord, mapper: &RowMapper, unterminated: bool) {
        let index = self.rows;
        self.rows += 1;
        let Some(user_id) = mapper.user_id(record).filter(|id| !id.is_empty()) else {
            return;
        };
        self.finder.observe(user_id);
        let Some(last_ready) = &mut self.last_ready else {
            return;
        };
        if unterminated || !self.finder.is_candidate(user_id) {
            return;
        }
        if let Verdict::Ready { user_id, .. } = mapper.map(record, &mut self.body) {
            match last_ready.get_mut(user_id) {
                Some(last) => *last = index,
                None => {
                    last_ready.insert(user_id.to_string(), index);
                }
            }
        }
    }

    /// Reads the whole input for its facts.
    pub fn read_all(mut self, input: &InputOptions, mapper: &RowMapper) -> anyhow::Result<Survey> {
        let mut csv = CsvInput::open(input)?;
        let mut record = ByteRecord::new();
        while csv.read(&mut record)?.is_some() {
            self.observe(&record, mapper, csv.unterminated());
        }
        Ok(self)
    }

    /// What the survey found. With last rows asked for, refuses a file whose repeated users
    /// are too many to track in bounded memory.
    pub fn finish(self, input: &InputOptions) -> anyhow::Result<SurveyFindings> {
        if self.last_ready.is_some() && self.finder.overflowed() {
            anyhow::bail!(
                "{}: too many repeated UserIDs to find each one's last row in bounded memory; \
                 remove the duplicates (or split the file) before a --state sync",
                input.path.display()
            );
        }
        Ok(SurveyFindings {
            rows: self.rows,
            finder: self.finder,
            last_ready: self.last_ready,
        })
    }
}
