//! The survey: what one reading of the input tells a run before anything is sent — how many
//! rows it has, which UserIDs repeat, and, for each user that may repeat, where its last valid
//! row is and which row last sent each column. With that, the rows of a repeated user can be
//! merged (`input::merge`) as the send reads them, in bounded memory.

use std::collections::HashMap;

use csv::ByteRecord;

use crate::input::dupes::DuplicateFinder;
use crate::input::quotes::SwallowedWarnings;
use crate::input::reader::InputOptions;
use crate::input::row::{QuoteRule, RowMapper, Verdict};
use crate::input::rows::{Row, Rows};

/// What the survey knows of one user the duplicate filter saw more than once. Rows before the
/// filter noticed the user (only its first row) are not counted, which is exact for every
/// question asked of it: each is about the rows after a given one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaterRows {
    /// The last row with something to set.
    pub last_ready: Option<u64>,
    /// The last valid row, with or without something to set (the user's account is handled
    /// there).
    pub last_valid: Option<u64>,
    /// (column, the last row that sent it), for every column a valid row sent.
    sent: Vec<(usize, u64)>,
}

impl LaterRows {
    /// The columns that a valid row after `row` sends.
    pub fn sent_after(&self, row: u64) -> impl Iterator<Item = usize> + '_ {
        self.sent
            .iter()
            .filter(move |&&(_, last)| last > row)
            .map(|&(column, _)| column)
    }

    fn note(&mut self, row: u64, verdict: &Verdict, sent: &[usize]) {
        match verdict {
            Verdict::Ready { .. } => {
                self.last_ready = Some(row);
                self.last_valid = Some(row);
                for &column in sent {
                    match self.sent.iter_mut().find(|(c, _)| *c == column) {
                        Some(entry) => entry.1 = row,
                        None => self.sent.push((column, row)),
                    }
                }
            }
            Verdict::Skipped { .. } => self.last_valid = Some(row),
            Verdict::Invalid(_) => {}
        }
    }
}

/// Users that may have several rows → what their later rows hold.
pub type RepeatedUsers = HashMap<Box<str>, LaterRows>;

/// Facts gathered record by record, in file order. It also warns about the rows whose quoted
/// field swallowed lines that look like rows (`input::quotes`), unless `quiet`: the survey is
/// the first reading of every command but the dry run, whose own pass warns.
#[derive(Default)]
pub struct Survey {
    rows: u64,
    finder: DuplicateFinder,
    repeated: RepeatedUsers,
    body: Vec<u8>,
    stray_quotes: Option<SwallowedWarnings>,
}

/// The survey's findings.
pub struct SurveyFindings {
    pub rows: u64,
    /// Feed it every row's UserID again (`into_recount`) for the exact duplicate report.
    pub finder: DuplicateFinder,
    /// Users with several rows (and a few suspected wrongly, whose one row is their own last).
    pub repeated: RepeatedUsers,
}

impl Survey {
    /// A survey that warns about stray quotes (see [`Survey`]).
    pub fn warning() -> Survey {
        Survey {
            stray_quotes: Some(SwallowedWarnings::default()),
            ..Survey::default()
        }
    }

    /// Notes the next row.
    pub fn observe(&mut self, row: &Row, mapper: &RowMapper) {
        self.rows += 1;
        if let (false, Some(warnings)) = (row.swallowed.is_empty(), &mut self.stray_quotes) {
            if mapper.rules().quotes == QuoteRule::Warn {
                warnings.note(row.pos.line, row.swallowed);
            }
        }
        let Some(user_id) = mapper.user_id(row.record).filter(|id| !id.is_empty()) else {
            return;
        };
        self.finder.observe(user_id);
        if !self.finder.is_candidate(user_id) {
            return;
        }
        let verdict = judge(mapper, row, &mut self.body);
        let sent = match verdict {
            Verdict::Ready { .. } => mapper.sent_columns(row.record),
            _ => Vec::new(),
        };
        match self.repeated.get_mut(user_id) {
            Some(later) => later.note(row.pos.index, &verdict, &sent),
            None => {
                let mut later = LaterRows::default();
                later.note(row.pos.index, &verdict, &sent);
                self.repeated.insert(user_id.into(), later);
            }
        }
    }

    /// Reads the whole input for its facts.
    pub fn read_all(mut self, input: &InputOptions, mapper: &RowMapper) -> anyhow::Result<Survey> {
        let mut rows = Rows::open(input)?;
        while let Some(row) = rows.next_row()? {
            self.observe(&row, mapper);
        }
        Ok(self)
    }

    /// What the survey found. Refuses a file whose repeated users are too many to track in
    /// bounded memory.
    pub fn finish(self, input: &InputOptions) -> anyhow::Result<SurveyFindings> {
        if self.finder.overflowed() {
            anyhow::bail!(
                "{}: too many repeated UserIDs (over {}) to merge each user's rows in bounded \
                 memory; remove the duplicates (or split the file) first",
                input.path.display(),
                crate::input::dupes::MAX_CANDIDATES
            );
        }
        Ok(SurveyFindings {
            rows: self.rows,
            finder: self.finder,
            repeated: self.repeated,
        })
    }
}

/// A row's verdict: an unclosed quote makes it invalid whatever its cells say, and so, under
/// `--strict-quotes`, does a quoted field that swallowed lines that look like rows.
pub fn judge<'r>(mapper: &RowMapper, row: &Row<'r>, body: &mut Vec<u8>) -> Verdict<'r> {
    if row.unterminated {
        body.clear();
        Verdict::Invalid(vec![crate::input::row::unterminated_quote(row.pos.line)])
    } else if !row.swallowed.is_empty() && mapper.rules().quotes == QuoteRule::Strict {
        body.clear();
        let violation = crate::input::row::stray_quote(row.pos.line, row.swallowed);
        Verdict::Invalid(vec![violation])
    } else {
        mapper.map(row.record, body)
    }
}

/// The record's UserID for counting, when it has one.
pub fn user_of<'r>(mapper: &RowMapper, record: &'r ByteRecord) -> Option<&'r str> {
    mapper.user_id(record).filter(|id| !id.is_empty())
}
