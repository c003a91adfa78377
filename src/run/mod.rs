//! One run of a command: the job's settings, the send pipeline, the dry run, accounts, verify,
//! and what the user sees of it (summary, progress).

pub mod accounts;
pub mod changes;
pub mod console;
pub mod decide;
pub mod dry_run;
pub mod fate;
pub mod handles;
pub mod job;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod row_warnings;
pub mod send;
pub mod sinks;
pub mod summary;
pub mod sync;
pub mod verify;
