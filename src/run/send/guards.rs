//! The guards that stop a real import going nowhere, judged on the answers as they come: the
//! failure share (`--max-error-rate`) and a storm of one setup code in the first answers
//! (`--setup-error-answers`). The collector feeds them every row Chat answered for good.

use std::collections::BTreeMap;

use crate::outcome::{Failure, FailureCode};
use crate::run::job::Guards;

/// Why a guard stopped the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum GuardStop {
    /// The app is not set up for this file: a job-wide error (exit 1), with what to do.
    SetupStorm(String),
    /// Too many rows fail: the rows left stay pending (exit 3).
    FailureShare(String),
}

/// The answers so far, as the guards judge them.
pub(super) struct AnswerGuards {
    max_error_rate: Option<f64>,
    error_rate_min_rows: u64,
    storm_answers: u64,
    /// 40003 is a setup error only when accounts are not created by the run.
    creates_accounts: bool,
    /// The file's custom tags, named in the advice when Chat's message names none.
    custom_tags: Vec<String>,
    answered: u64,
    failed: u64,
    failed_by_code: BTreeMap<String, u64>,
    storm: Storm,
    stopped: bool,
}

/// The first answers' code, while every one of them is the same setup code.
enum Storm {
    NoAnswerYet,
    Code {
        code: u32,
        /// The tags Chat's messages named.
        tags: Vec<String>,
    },
    /// An answer broke the pattern (or enough answers came): no storm.
    Over,
}

impl AnswerGuards {
    pub(super) fn new(guards: &Guards, creates_accounts: bool, tags: &[String]) -> AnswerGuards {
        AnswerGuards {
            max_error_rate: guards.max_error_rate,
            error_rate_min_rows: guards.error_rate_min_rows.max(1),
            storm_answers: guards.setup_error_answers,
            creates_accounts,
            custom_tags: tags
                .iter()
                .filter(|tag| tag.starts_with("Tag_Profile_Custom_"))
                .cloned()
                .collect(),
            answered: 0,
            failed: 0,
            failed_by_code: BTreeMap::new(),
            storm: if guards.setup_error_answers == 0 {
                Storm::Over
            } else {
                Storm::NoAnswerYet
            },
            stopped: false,
        }
    }

    /// One row answered for good: accepted (`None`) or failed. Returns the stop it calls for,
    /// once.
    pub(super) fn answered(&mut self, failure: Option<&Failure>) -> Option<GuardStop> {
        self.answered += 1;
        if let Some(failure) = failure {
            self.failed += 1;
            *self
                .failed_by_code
                .entry(failure.code.to_string())
                .or_default() += 1;
        }
        if self.stopped {
            return None;
        }
        let stop = self
            .storm(failure)
            .map(GuardStop::SetupStorm)
            .or_else(|| self.failure_share().map(GuardStop::FailureShare));
        self.stopped = stop.is_some();
        stop
    }

    /// The storm guard: the first `storm_answers` answers all failed with one setup code.
    fn storm(&mut self, failure: Option<&Failure>) -> Option<String> {
        let code = failure.and_then(|f| match f.code {
            FailureCode::Chat(code) if self.is_setup_code(code) => Some(code),
            _ => None,
        });
        let named = failure.and_then(|f| tag_named_in(&f.message));
        self.storm = match (std::mem::replace(&mut self.storm, Storm::Over), code) {
            (Storm::NoAnswerYet, Some(code)) => Storm::Code {
                code,
                tags: named.into_iter().collect(),
            },
            (
                Storm::Code {
                    code: first,
                    mut tags,
                },
                Some(code),
            ) if code == first => {
                if let Some(tag) = named.filter(|tag| !tags.contains(tag)) {
                    tags.push(tag);
                }
                Storm::Code { code, tags }
            }
            _ => Storm::Over,
        };
        match &self.storm {
            Storm::Code { code, tags } if self.answered >= self.storm_answers => {
                let advice = self.advice(*code, tags);
                self.storm = Storm::Over;
                Some(advice)
            }
            _ => None,
        }
    }

    fn is_setup_code(&self, code: u32) -> bool {
        matches!(code, 40008 | 40009) || (code == 40003 && !self.creates_accounts)
    }

    /// What to do about a storm of `code`.
    fn advice(&self, code: u32, named: &[String]) -> String {
        let first = format!("the first {} answers all failed with {code}", self.answered);
        let tags = if named.is_empty() {
            &self.custom_tags
        } else {
            named
        };
        let tags = match tags.len() {
            0 => "the file's custom fields".to_string(),
            _ => tags.join(", "),
        };
        let what = match code {
            40009 => format!(
                "(the profile field does not exist): declare {tags} in the Chat console \
                 (Feature Configuration > Custom User Field; a new field takes 5-10 minutes to \
                 work), or leave the column out; --custom-fields makes the dry run find such \
                 columns"
            ),
            40008 => format!(
                "(no permission to write the field): make {tags} \"writable by app admin\" in \
                 the Chat console"
            ),
            _ => "(the users are not Chat accounts): import the accounts with \
                  --create-accounts, or list the missing ones with check-accounts"
                .to_string(),
        };
        format!("{first} {what}; the rows left are pending and --resume sends them")
    }

    /// The failure-share guard: more than `--max-error-rate` of the rows answered failed.
    fn failure_share(&self) -> Option<String> {
        let limit = self.max_error_rate?;
        if self.answered < self.error_rate_min_rows {
            return None;
        }
        let share = self.failed as f64 * 100.0 / self.answered as f64;
        if share <= limit {
            return None;
        }
        let (code, count) = self
            .failed_by_code
            .iter()
            .max_by_key(|(_, count)| **count)
            .map_or(("?", 0), |(code, count)| (code.as_str(), *count));
        Some(format!(
            "{} of the {} rows sent failed ({share:.1} %, over --max-error-rate {limit} %), \
             most with {code} ({count} rows); the rows left are pending and --resume sends them",
            self.failed, self.answered
        ))
    }
}

/// The profile tag Chat's error message names, if it names one.
fn tag_named_in(message: &str) -> Option<String> {
    let start = message.find("Tag_Profile_")?;
    let tag: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Stage;

    fn failure(code: u32, message: &str) -> Failure {
        Failure {
            code: FailureCode::Chat(code),
            message: message.into(),
            stage: Stage::Send,
            attempts: 1,
            superseded: Vec::new(),
        }
    }

    fn guards(max_error_rate: Option<f64>, min_rows: u64, storm: u64) -> Guards {
        Guards {
            max_error_rate,
            error_rate_min_rows: min_rows,
            setup_error_answers: storm,
            ..Guards::default()
        }
    }

    #[test]
    fn a_storm_of_one_setup_code_stops_at_the_nth_answer_and_names_the_tag() {
        let tags = vec!["Tag_Profile_Custom_Hobby".to_string()];
        let mut watch = AnswerGuards::new(&guards(None, 500, 20), false, &tags);
        let storm = failure(40009, "profile tag Tag_Profile_Custom_Hobby does not exist");
        for _ in 0..19 {
            assert_eq!(watch.answered(Some(&storm)), None);
        }
        let Some(GuardStop::SetupStorm(why)) = watch.answered(Some(&storm)) else {
            panic!("the 20th answer stops the run");
        };
        assert!(
            why.contains("first 20 answers all failed with 40009"),
            "{why}"
        );
        assert!(why.contains("declare Tag_Profile_Custom_Hobby"), "{why}");
        assert_eq!(watch.answered(Some(&storm)), None, "stopped once");
    }

    #[test]
    fn one_other_answer_among_the_first_ends_the_storm_watch() {
        for other in [None, Some(failure(40001, "")), Some(failure(40008, ""))] {
            let mut watch = AnswerGuards::new(&guards(None, 500, 5), false, &[]);
            for _ in 0..3 {
                watch.answered(Some(&failure(40009, "")));
            }
            assert_eq!(watch.answered(other.as_ref()), None);
            for _ in 0..30 {
                assert_eq!(watch.answered(Some(&failure(40009, ""))), None);
            }
        }
    }

    #[test]
    fn not_an_account_is_a_setup_code_only_without_create_accounts() {
        let missing = failure(40003, "account not found");
        let mut watch = AnswerGuards::new(&guards(None, 500, 3), false, &[]);
        watch.answered(Some(&missing));
        watch.answered(Some(&missing));
        let Some(GuardStop::SetupStorm(why)) = watch.answered(Some(&missing)) else {
            panic!("a storm of 40003 stops the run");
        };
        assert!(why.contains("--create-accounts"), "{why}");
        let mut creating = AnswerGuards::new(&guards(None, 500, 3), true, &[]);
        for _ in 0..10 {
            assert_eq!(creating.answered(Some(&missing)), None);
        }
    }

    #[test]
    fn the_failure_share_is_judged_after_the_minimum_rows_and_names_the_dominant_code() {
        let mut watch = AnswerGuards::new(&guards(Some(10.0), 100, 0), false, &[]);
        // 50 failures first: over 10 %, but fewer than 100 rows answered.
        for n in 0..50 {
            let code = if n % 5 == 0 { 40001 } else { 40601 };
            assert_eq!(watch.answered(Some(&failure(code, ""))), None);
        }
        for _ in 0..49 {
            assert_eq!(watch.answered(None), None);
        }
        let Some(GuardStop::FailureShare(why)) = watch.answered(None) else {
            panic!("50 of 100 failed, over 10 %");
        };
        assert!(
            why.contains("50 of the 100 rows sent failed (50.0 %"),
            "{why}"
        );
        assert!(why.contains("most with 40601 (40 rows)"), "{why}");
    }

    #[test]
    fn a_share_at_the_limit_goes_on() {
        let mut watch = AnswerGuards::new(&guards(Some(10.0), 10, 0), false, &[]);
        assert_eq!(watch.answered(Some(&failure(40601, ""))), None);
        for _ in 0..100 {
            assert_eq!(watch.answered(None), None);
        }
    }
}
