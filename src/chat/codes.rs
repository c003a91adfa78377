//! What each Chat `ErrorCode` means for the job: retry, slow down, renew the UserSig, fail the
//! row, or stop the whole run (spec §1.7).

/// The job's reaction to a Chat error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A passing server problem: retry with backoff.
    Transient,
    /// A rate limit: slow the whole job down, then retry.
    Throttled,
    /// The UserSig expired: renew it once and retry.
    Expired,
    /// Every later request would fail the same way (key, SDKAppID, admin, region): stop.
    FatalJob,
    /// Only this row is wrong: record it and go on.
    PermanentRow,
}

/// Classifies a non-zero Chat error code.
pub fn classify(code: u32) -> ErrorClass {
    match code {
        40006 | 60008 | 70169 | 70202 | 70500 => ErrorClass::Transient,
        60007 | 60011 | 60018 | 60019 => ErrorClass::Throttled,
        70001 | 70052 => ErrorClass::Expired,
        // Configuration: SDKAppID, admin, source IP, plan, UserSig family, region.
        40004
        | 60002
        | 60004
        | 60005
        | 60006
        | 60009
        | 60010
        | 60012
        | 60016
        | 60017
        | 60020
        | 60021
        | 70002..=70020
        | 70050
        | 70403 => ErrorClass::FatalJob,
        // Our own request is malformed: a bug that every row would hit.
        60003 | 60013 | 60015 => ErrorClass::FatalJob,
        // 40001, 40003, 40005, 40008, 40009, 40601, 40605, 40610, 70107, 70402 and anything
        // undocumented: fail the row, keep going. Unknown codes are not retried (they may be
        // permanent) and do not stop the job (they may concern only this row).
        _ => ErrorClass::PermanentRow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    /// Every code in the spec's tables (§1.6 common and account codes, §2.4 portrait_set codes
    /// and the portrait_get / account_delete codes named beside them), with the class the
    /// spec's §1.7 recommendation gives it, written out here rather than derived from
    /// `classify`.
    const SPEC_CODES: &[(u32, ErrorClass)] = &[
        // §1.7 transient / server: retry with backoff.
        (40006, Transient),
        (60008, Transient),
        (70169, Transient),
        (70202, Transient),
        (70500, Transient),
        // §1.7 throttled: slow the job, retry.
        (60007, Throttled),
        (60011, Throttled),
        (60018, Throttled),
        (60019, Throttled),
        // §1.7 credentials: renew the UserSig once.
        (70001, Expired),
        (70052, Expired),
        // §1.7 fatal config: stop the job.
        (40004, FatalJob),
        (60002, FatalJob),
        (60004, FatalJob),
        (60005, FatalJob),
        (60006, FatalJob),
        (60009, FatalJob),
        (60010, FatalJob),
        (60012, FatalJob),
        (60016, FatalJob),
        (60017, FatalJob),
        (60020, FatalJob),
        (60021, FatalJob),
        (70002, FatalJob),
        (70003, FatalJob),
        (70005, FatalJob),
        (70009, FatalJob),
        (70013, FatalJob),
        (70014, FatalJob),
        (70016, FatalJob),
        (70020, FatalJob),
        (70050, FatalJob),
        (70403, FatalJob),
        // §1.7 bug (our JSON is wrong): treated as fatal.
        (60003, FatalJob),
        (60013, FatalJob),
        (60015, FatalJob),
        // §1.7 per-row permanent.
        (40001, PermanentRow),
        (40003, PermanentRow),
        (40005, PermanentRow),
        (40601, PermanentRow),
        (40605, PermanentRow),
        (40610, PermanentRow),
        (70107, PermanentRow),
        (70402, PermanentRow),
        // §1.7 per-row or config: fail the row.
        (40008, PermanentRow),
        (40009, PermanentRow),
        // In the tables but not classified by §1.7: failed with the row, like any code the
        // spec does not name (README: "any undocumented code").
        (40002, PermanentRow), // §2.4 / §5.6: portrait_get without To_Account
        (40007, PermanentRow), // §5.6: no read permission
        (60014, PermanentRow), // §1.6: account switching timeout
        (70051, PermanentRow), // §1.6: account blocklisted
        (70114, PermanentRow), // §1.6: restricted for security reasons
        (70206, PermanentRow), // §1.6: invalid batch quantity
        (70398, PermanentRow), // §1.6: account count over the limit
        (71000, PermanentRow), // §1.6 / §5.5: account delete not allowed
        (72000, PermanentRow), // §1.6: trial DAU quota exceeded
        (80001, PermanentRow), // §1.6: sensitive content (message APIs)
        (80002, PermanentRow), // §1.6: message over 8 KB (message APIs)
        (30006, PermanentRow), // §5.5: account_delete error
        (30007, PermanentRow), // §5.5: account_delete error
        (30008, PermanentRow), // §5.5, §7: write conflict
    ];

    #[test]
    fn every_code_in_the_spec_tables_has_the_spec_class() {
        for &(code, class) in SPEC_CODES {
            assert_eq!(classify(code), class, "{code}");
        }
        let mut codes: Vec<u32> = SPEC_CODES.iter().map(|(code, _)| *code).collect();
        codes.sort_unstable();
        let listed = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), listed, "a code is listed twice");
    }

    #[test]
    fn the_readme_range_70002_to_70020_is_fatal_and_unknown_codes_fail_the_row() {
        // README: "70002–70020" stops the job, the undocumented codes inside it included.
        for code in [70004, 70008, 70015, 70019] {
            assert_eq!(classify(code), FatalJob, "{code}");
        }
        for code in [0, 12345, 60001, 60022, 70021, 99999] {
            assert_eq!(classify(code), PermanentRow, "{code}");
        }
    }
}
