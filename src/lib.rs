//! profile-import: bulk-import user profiles from CSV into Tencent Cloud Chat.
//!
//! # Architecture
//! ```text
//!   app     clap, settings, one function per command, signals, logging, run history, exit
//!    │      statuses
//!   run     job, plan, send pipeline and guards, dry run, accounts, verify, changes-only,
//!    │  ╲   summary, progress, metrics
//!   store  input      failure CSV, journal, change log, lock, state │ CSV reader, header,
//!    │  ╱             rules, rows
//!   chat    connection, UserSig, client, codes, pacer and the nap before idling, retry,
//!           portrait_get on the wire
//!    │
//!   outcome, fsutil   leaf helpers
//!
//!   sim     the built-in Chat simulator: chat types only
//! ```
//! Dependencies point down only. Nothing below `app` imports clap or picks an exit status;
//! `tests/layers.rs` parses every path a module names (`crate::`, `super::`, `self::`) and fails
//! on a cycle or an upward edge.

pub mod app;
pub mod chat;
pub mod fsutil;
pub mod input;
pub mod outcome;
pub mod run;
pub mod sim;
pub mod store;
