//! Per-row warnings in the log, grouped by code: the first few rows of each code are logged one
//! by one, then a single line says the rest are only counted (summary) and listed (failure CSV);
//! at `-vv` each of them is still logged, at debug level. A run in which 2,500 users are not
//! Chat accounts logs a handful of lines, not 2,500.

use std::collections::HashMap;

use crate::input::row::Violation;
use crate::outcome::Failure;

/// Rows logged one by one for each code.
pub const SHOWN_PER_CODE: u64 = 5;

/// Counts the rows logged for each code.
#[derive(Debug, Default)]
pub struct RowWarnings {
    seen: HashMap<String, u64>,
}

impl RowWarnings {
    /// A row that failed when sent (or at the account stage).
    pub fn failed(&mut self, line: u64, user: &str, failure: &Failure) {
        let text = format!(
            "line {line}: user {user} failed: {} {}",
            failure.code, failure.message
        );
        self.log(format!("failed with {}", failure.code), &text);
    }

    /// A row rejected by validation: one line per broken rule.
    pub fn invalid(&mut self, line: u64, violations: &[Violation]) {
        for violation in violations {
            let text = format!("line {line}: {}", violation.describe());
            self.log(
                format!("invalid: {} {}", violation.code, violation.rule),
                &text,
            );
        }
    }

    fn log(&mut self, group: String, text: &str) {
        let seen = self.seen.entry(group.clone()).or_default();
        *seen += 1;
        if *seen <= SHOWN_PER_CODE {
            tracing::warn!("{text}");
            return;
        }
        if *seen == SHOWN_PER_CODE + 1 {
            tracing::warn!(
                "more rows {group} follow: not logged one by one (-vv shows each); they are \
                 counted in the summary and listed in the failure CSV"
            );
        }
        tracing::debug!("{text}");
    }
}
