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

    #[test]
    fn classes_follow_the_spec_table() {
        for code in [40006, 60008, 70169, 70202, 70500] {
            assert_eq!(classify(code), ErrorClass::Transient, "{code}");
        }
        for code in [60007, 60011, 60018, 60019] {
            assert_eq!(classify(code), ErrorClass::Throttled, "{code}");
        }
        for code in [
            40004, 60006, 60010, 60012, 60020, 60021, 70002, 70003, 70005, 70009, 70013, 70014,
            70016, 70020, 70050, 60003,
        ] {
            assert_eq!(classify(code), ErrorClass::FatalJob, "{code}");
        }
        for code in [
            40001, 40003, 40005, 40008, 40009, 40601, 40605, 40610, 70107, 12345,
        ] {
            assert_eq!(classify(code), ErrorClass::PermanentRow, "{code}");
        }
        assert_eq!(classify(70001), ErrorClass::Expired);
    }
}
