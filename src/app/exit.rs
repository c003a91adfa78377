//! The exit statuses the tool can end with. Only `main` turns one into a process exit code.

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every row valid (dry run) or accepted.
    Success,
    /// Fatal: unreadable input, bad header, unwritable output, bad settings, job-wide Chat error.
    Fatal,
    /// Bad command line.
    Usage,
    /// The run finished but some rows were invalid or failed.
    RowsFailed,
    /// Another run holds the lock.
    Locked,
    /// Stopped by SIGINT.
    Interrupted,
    /// Stopped by SIGTERM.
    Terminated,
    /// stdout or stderr was closed (a broken pipe): output stopped, and an import stopped as
    /// on SIGTERM. 141 is what a shell reports for a process ended by SIGPIPE.
    OutputClosed,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Fatal => 1,
            ExitStatus::Usage => 2,
            ExitStatus::RowsFailed => 3,
            ExitStatus::Locked => 4,
            ExitStatus::Interrupted => 130,
            ExitStatus::Terminated => 143,
            ExitStatus::OutputClosed => 141,
        }
    }
}
