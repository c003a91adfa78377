//! The vocabulary of a row's fate: failure codes, the stage that failed, and the failure record
//! that the failure CSV, the summary and the journal all share.

use std::fmt;

/// Why a row failed, as written in the failure CSV's `_error_code` column.
///
/// Chat's own numeric codes are used wherever one names the problem, so local and server
/// failures read alike; the rest are short words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureCode {
    /// A Chat `ErrorCode` (from the server, or the code Chat would give for a local rule).
    Chat(u32),
    /// A row that is not valid UTF-8.
    BadUtf8,
    /// A row with a different number of fields than the header.
    FieldCount,
    /// A quote opened in the row never closes before the end of the file.
    UnterminatedQuote,
    /// A quoted field of the row spans lines that look like rows of their own
    /// (`--strict-quotes`).
    StrayQuote,
    /// A non-200 HTTP status after the last attempt.
    Http(u16),
    /// The connection failed (refused, reset, closed) on the last attempt.
    Transport,
    /// The last attempt timed out: Chat may or may not have applied the row.
    OutcomeUnknown,
    /// The response was not Chat's JSON envelope.
    BadResponse,
    /// The user's account could not be imported (listed in FailAccounts).
    AccountImport,
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCode::Chat(code) => write!(f, "{code}"),
            FailureCode::BadUtf8 => f.write_str("bad_utf8"),
            FailureCode::FieldCount => f.write_str("field_count"),
            FailureCode::UnterminatedQuote => f.write_str("unterminated_quote"),
            FailureCode::StrayQuote => f.write_str("stray_quote"),
            FailureCode::Http(status) => write!(f, "http_{status}"),
            FailureCode::Transport => f.write_str("transport"),
            FailureCode::OutcomeUnknown => f.write_str("outcome_unknown"),
            FailureCode::BadResponse => f.write_str("bad_response"),
            FailureCode::AccountImport => f.write_str("account_import"),
        }
    }
}

/// Which step of the job rejected the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Local validation before anything is sent.
    Validate,
    /// The portrait_set call.
    Send,
    /// Importing the user's account (`--create-accounts`).
    Account,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Validate => "validate",
            Stage::Send => "send",
            Stage::Account => "account",
        })
    }
}

/// One row's failure, as recorded in the failure CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: FailureCode,
    pub message: String,
    pub stage: Stage,
    /// Send attempts made (0 for validation failures).
    pub attempts: u32,
    /// Header names of the row's cells that a later row of the same user sent: a re-import
    /// of the row leaves them out (the failure CSV's `_superseded` column).
    pub superseded: Vec<String>,
}

/// Why an account could not be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFailure {
    pub code: FailureCode,
    pub message: String,
}
