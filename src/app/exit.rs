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

impl ExitStatus {
    /// The status an error ends a command with: another run holding one of its files 4, an
    /// output that is the input or another output 2, a closed stdout or stderr 141, anything
    /// else 1.
    pub fn of_error(err: &anyhow::Error) -> ExitStatus {
        if err.downcast_ref::<crate::store::lock::Locked>().is_some() {
            ExitStatus::Locked
        } else if err
            .downcast_ref::<crate::store::outputs::OutputClash>()
            .is_some()
        {
            ExitStatus::Usage
        } else if err
            .chain()
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        {
            ExitStatus::OutputClosed
        } else {
            ExitStatus::Fatal
        }
    }

    /// The status the process ends with: once stdout or stderr was found closed, whatever the
    /// run earned is 141 (output the caller asked for was lost), and the summary JSON and the
    /// run history must say so too.
    pub fn as_ended(self) -> ExitStatus {
        if crate::run::console::closed() {
            ExitStatus::OutputClosed
        } else {
            self
        }
    }
}
