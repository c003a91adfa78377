//! Per-row warnings in the log, grouped by code and printed in line order: the first few rows
//! of each code are logged one by one, then a single line says the rest are only counted
//! (summary) and listed (failure CSV); at `-vv` each of them is still logged, at debug level.
//! A run in which 2,500 users are not Chat accounts logs a handful of lines, not 2,500.
//!
//! An import finishes rows out of order (an invalid row is known at once, a row in retries
//! much later), so a warning waits until every row before it is final
//! ([`RowWarnings::release_before`]); the rows that pass a group's quota are dropped as they
//! come, so what waits is bounded by the groups, not by the rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::input::row::Violation;
use crate::outcome::Failure;

/// Rows logged one by one for each code.
pub const SHOWN_PER_CODE: u64 = 5;

/// A warning's place: the row's index, then the order it came in.
type Key = (u64, u64);

/// A row's warning: its text, and the line and column it names (fields of a JSON log line).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Warning {
    text: String,
    line: u64,
    column: Option<String>,
}

impl Warning {
    fn warn(&self) {
        let column = self.column.as_deref();
        tracing::warn!(line = self.line, column, "{}", self.text);
    }

    fn debug(&self) {
        let column = self.column.as_deref();
        tracing::debug!(line = self.line, column, "{}", self.text);
    }
}

/// A line to log.
#[derive(Debug, PartialEq, Eq)]
enum Logged {
    Warn(Warning),
    /// The note that a group's other rows are only counted.
    Note(String),
    Debug(Warning),
}

/// The warnings of rows not yet logged, and how many of each group were.
#[derive(Debug, Default)]
pub struct RowWarnings {
    /// Warnings whose turn came so far (logged one by one, or past the quota), per group.
    seen: HashMap<String, u64>,
    /// Warnings waiting for the rows before them, in line order, with their group.
    waiting: BTreeMap<Key, (String, Warning)>,
    /// The same, per group.
    waiting_by_group: HashMap<String, BTreeSet<Key>>,
    /// Warnings taken so far (the second part of a key).
    taken: u64,
}

impl RowWarnings {
    /// A row (record `index`, starting on `line`) that failed when sent (or at the account
    /// stage).
    pub fn failed(&mut self, index: u64, line: u64, user: &str, failure: &Failure) {
        let text = format!(
            "line {line}: user {user} failed: {} {}",
            failure.code, failure.message
        );
        let warning = Warning {
            text,
            line,
            column: None,
        };
        self.hold(index, format!("failed with {}", failure.code), warning);
    }

    /// A row rejected by validation: one line per broken rule.
    pub fn invalid(&mut self, index: u64, line: u64, violations: &[Violation]) {
        for violation in violations {
            let warning = Warning {
                text: format!("line {line}: {}", violation.describe()),
                line,
                column: violation.column.clone(),
            };
            let group = format!("invalid: {} {}", violation.code, violation.rule);
            self.hold(index, group, warning);
        }
    }

    /// Logs, in line order, the warnings of the rows before record `index`: every row before
    /// it is final, so no earlier warning can come any more.
    pub fn release_before(&mut self, index: u64) {
        for line in self.lines_before(index) {
            match line {
                Logged::Warn(warning) => warning.warn(),
                Logged::Note(text) => tracing::warn!("{text}"),
                Logged::Debug(warning) => warning.debug(),
            }
        }
    }

    /// What [`RowWarnings::release_before`] logs.
    fn lines_before(&mut self, index: u64) -> Vec<Logged> {
        let mut lines = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 >= index {
                break;
            }
            let key = *entry.key();
            let (group, warning) = entry.remove();
            if let Some(keys) = self.waiting_by_group.get_mut(&group) {
                keys.remove(&key);
            }
            let seen = self.seen.entry(group.clone()).or_default();
            *seen += 1;
            if *seen <= SHOWN_PER_CODE {
                lines.push(Logged::Warn(warning));
                continue;
            }
            if *seen == SHOWN_PER_CODE + 1 {
                lines.push(Logged::Note(format!(
                    "more rows {group} follow: not logged one by one (-vv shows each); they are \
                     counted in the summary and listed in the failure CSV"
                )));
            }
            lines.push(Logged::Debug(warning));
        }
        lines
    }

    /// Logs every warning still waiting (the run is over), in line order.
    pub fn release_all(&mut self) {
        self.release_before(u64::MAX);
    }

    /// Keeps a warning until the rows before it are final. A group logs only its first
    /// `SHOWN_PER_CODE` rows and one note, so it keeps at most that many of its lowest lines
    /// waiting: any other could never be logged one by one.
    fn hold(&mut self, index: u64, group: String, warning: Warning) {
        let seen = self.seen.get(&group).copied().unwrap_or(0);
        let room = (SHOWN_PER_CODE + 1).saturating_sub(seen) as usize;
        let key = (index, self.taken);
        self.taken += 1;
        let keys = self.waiting_by_group.entry(group.clone()).or_default();
        if keys.len() >= room {
            match keys.last().copied() {
                Some(last) if last > key => {
                    keys.remove(&last);
                    if let Some((_, dropped)) = self.waiting.remove(&last) {
                        dropped.debug();
                    }
                }
                // Past the group's quota: logged at debug level only. The group keeps enough
                // earlier rows waiting to log the note about the rest when their turn comes.
                _ => return warning.debug(),
            }
        }
        if let Some(keys) = self.waiting_by_group.get_mut(&group) {
            keys.insert(key);
        }
        self.waiting.insert(key, (group, warning));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{FailureCode, Stage};

    fn failure(code: u32) -> Failure {
        Failure {
            code: FailureCode::Chat(code),
            message: "no".into(),
            stage: Stage::Send,
            attempts: 1,
            superseded: Vec::new(),
        }
    }

    fn warned(lines: &[Logged]) -> Vec<String> {
        lines
            .iter()
            .filter_map(|line| match line {
                Logged::Warn(warning) => Some(format!("line {}", warning.line)),
                Logged::Note(text) => Some(text.split(':').next().unwrap_or("").to_string()),
                Logged::Debug(_) => None,
            })
            .collect()
    }

    #[test]
    fn warnings_come_out_in_line_order_once_the_rows_before_them_are_final() {
        let mut warnings = RowWarnings::default();
        // Rows finish out of order: 5, 7, 9 (invalid, known at once) before 3 (sent).
        for index in [5, 7, 9] {
            warnings.failed(index, index + 1, "u", &failure(40001));
        }
        assert!(warnings.lines_before(3).is_empty());
        warnings.failed(3, 4, "u", &failure(40003));
        warnings.failed(12, 13, "u", &failure(40003));
        assert_eq!(
            warned(&warnings.lines_before(10)),
            ["line 4", "line 6", "line 8", "line 10"]
        );
        assert_eq!(warned(&warnings.lines_before(u64::MAX)), ["line 13"]);
    }

    #[test]
    fn a_group_logs_its_first_rows_by_line_then_one_note_and_keeps_little_waiting() {
        let mut warnings = RowWarnings::default();
        // 1,000 rows of one code, the later ones first.
        for index in (0..1000).rev() {
            warnings.failed(index, index + 2, "u", &failure(40003));
        }
        assert!(warnings.waiting.len() <= SHOWN_PER_CODE as usize + 1);
        let lines = warnings.lines_before(u64::MAX);
        let warned = warned(&lines);
        assert_eq!(
            warned[..5],
            ["line 2", "line 3", "line 4", "line 5", "line 6"]
        );
        assert_eq!(warned.len(), 6);
        assert!(warned[5].starts_with("more rows failed with 40003 follow"));
    }
}
