//! A row's fate, and the tally: the only place where a run's row counters change. Every
//! command counts through [`Summary::count`] (and [`Summary::count_comparison`] for what a
//! comparison with Chat found), so a row lands in exactly one bucket whatever the mode, and a
//! resumed run's earlier rows land in the same ones.

use crate::input::row::Violation;
use crate::run::summary::Summary;
use crate::store::journal::{Final, Found};

/// Where a row ended.
#[derive(Debug, Clone, Copy)]
pub enum RowFate<'a> {
    /// Dry run: valid, and would be sent.
    Valid,
    /// Chat accepted it.
    Ok,
    /// Failed for good; `code` is how the summary groups it (`40003`, `40003 (account)` …).
    Failed { code: &'a str },
    /// Rejected by validation. The row counts once, under its first broken rule (the code the
    /// failure CSV's `_error_code` shows), so the rule lines add up to the invalid rows.
    Invalid(&'a [Violation]),
    /// An earlier run's invalid row, counted under its code.
    InvalidEarlier { code: &'a str },
    /// Valid, with nothing to set.
    Skipped,
    /// Merged into a later row of its user, which is sent instead.
    Superseded,
    /// Not sent: Chat holds it already (`--state`: as far as the last accepted run knows;
    /// `--changes-only`: as read).
    Unchanged,
    /// Left pending by a stop: `--resume` sends it.
    NotAttempted,
}

/// What comparing one user's values with Chat found (`--changes-only`, its plan, verify): the
/// journal's words for it (`Found`), the values compared, and the tags that differ.
#[derive(Debug, Clone, Copy)]
pub struct Compared<'a> {
    pub found: Found,
    pub values: u64,
    pub differing: &'a [&'a str],
    /// `--only-if-empty`: differing tags not sent, since Chat holds a value.
    pub kept: &'a [String],
}

impl<'a> Compared<'a> {
    /// A comparison that found `found` over `values` values, none of them differing.
    pub fn plain(found: Found, values: u64) -> Compared<'a> {
        Compared {
            found,
            values,
            differing: &[],
            kept: &[],
        }
    }
}

impl Summary {
    /// Counts one row.
    pub fn count(&mut self, fate: RowFate) {
        self.count_many(fate, 1);
    }

    /// Counts `n` rows of one fate (an earlier run's, from its journal).
    pub fn count_many(&mut self, fate: RowFate, n: u64) {
        match fate {
            RowFate::Valid => self.valid += n,
            RowFate::Ok => self.ok += n,
            RowFate::Failed { code } => {
                self.failed += n;
                *self.failed_by_code.entry(code.to_string()).or_default() += n;
            }
            RowFate::Invalid(violations) => {
                self.invalid += n;
                let rule = violations
                    .first()
                    .map_or("wrong field count".to_string(), |v| {
                        format!("{} {}", v.code, v.rule)
                    });
                *self.invalid_by_rule.entry(rule).or_default() += n;
            }
            RowFate::InvalidEarlier { code } => {
                self.invalid += n;
                *self.invalid_by_rule.entry(code.to_string()).or_default() += n;
            }
            RowFate::Skipped => self.skipped += n,
            RowFate::Superseded => self.superseded += n,
            RowFate::Unchanged => self.unchanged += n,
            RowFate::NotAttempted => self.not_attempted += n,
        }
    }

    /// Moves `n` rows from one fate to another (the dry run's correction of repeated users,
    /// counted alone as the file streamed by and merged after).
    pub fn recount(&mut self, from: RowFate, to: RowFate, n: u64) {
        let take = |count: &mut u64| *count = count.saturating_sub(n);
        match from {
            RowFate::Valid => take(&mut self.valid),
            RowFate::Unchanged => take(&mut self.unchanged),
            RowFate::Superseded => take(&mut self.superseded),
            // The correction only moves rows between these.
            _ => return,
        }
        self.count_many(to, n);
    }

    /// Counts an earlier run's final rows of one journalled state.
    pub fn count_journalled(&mut self, state: Final, code: &str, n: u64) {
        let key = format!("{code} (earlier run)");
        let fate = match state {
            Final::Ok => RowFate::Ok,
            Final::Failed => RowFate::Failed { code: &key },
            Final::Invalid => RowFate::InvalidEarlier { code: &key },
            Final::Skipped => RowFate::Skipped,
            Final::Unchanged => RowFate::Unchanged,
            Final::Superseded => RowFate::Superseded,
        };
        self.count_many(fate, n);
    }

    /// Adds the row counts of a part of the file counted apart (the dry run's readers).
    pub fn add_counts(&mut self, part: &Summary) {
        self.rows += part.rows;
        self.valid += part.valid;
        self.skipped += part.skipped;
        self.long_locations += part.long_locations;
        self.invalid += part.invalid;
        for (rule, n) in &part.invalid_by_rule {
            *self.invalid_by_rule.entry(rule.clone()).or_default() += n;
        }
    }

    /// Counts rows read, whatever their fate (`rows` must end equal to the fates' sum).
    pub fn count_read(&mut self, rows: u64) {
        self.rows += rows;
    }

    /// Counts valid rows whose Location is over Chat's older 16-byte limit (the dry run warns).
    pub fn count_long_locations(&mut self, rows: u64) {
        self.long_locations += rows;
    }

    /// Counts a retry or more: attempts beyond a row's first.
    pub fn count_attempts(&mut self, requests: u32) {
        self.retries += u64::from(requests.saturating_sub(1));
    }

    /// Counts what comparing one user with Chat found, and, once its send is known, the tags
    /// Chat accepted (`tags_sent`).
    pub fn count_comparison(&mut self, compared: Compared, tags_sent: u64) {
        let counts = self.compared.get_or_insert_with(Default::default);
        counts.tags_sent += tags_sent;
        for tag in compared.kept {
            *counts.kept_by_tag.entry(tag.clone()).or_default() += 1;
        }
        match compared.found {
            Found::InChat | Found::Updated => {
                counts.users_compared += 1;
                counts.values += compared.values;
            }
            Found::NotAnAccount => counts.not_an_account += 1,
            Found::NotCompared => counts.not_compared += 1,
        }
        match compared.found {
            Found::InChat => counts.unchanged_in_chat += 1,
            Found::Updated => {
                counts.updated += 1;
                counts.differences += compared.differing.len() as u64;
                for tag in compared.differing {
                    *counts.update_by_tag.entry(tag.to_string()).or_default() += 1;
                }
            }
            Found::NotAnAccount | Found::NotCompared => {}
        }
    }

    /// Counts an earlier run's comparisons, from its journal.
    pub fn count_earlier_comparisons(&mut self, earlier: crate::run::summary::Comparisons) {
        let compared = self.compared.get_or_insert_with(Default::default);
        compared.users_compared += earlier.users_compared;
        compared.unchanged_in_chat += earlier.unchanged_in_chat;
        compared.updated += earlier.updated;
        compared.not_an_account += earlier.not_an_account;
        compared.not_compared += earlier.not_compared;
        compared.tags_sent += earlier.tags_sent;
    }
}
