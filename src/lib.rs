//! profile-import: bulk-import user profiles from CSV into Tencent Cloud Chat.
//!
//! # Architecture
//! ```text
//!   app     clap, settings, one function per command, signals, logging, exit statuses
//!    │
//!   run     job, plan, send pipeline, dry run, accounts, verify, changes-only, summary, progress
//!    │  ╲
//!   store  input      failure CSV, journal, lock, state │ CSV reader, header, rules, rows
//!    │  ╱
//!   chat    connection, UserSig, client, codes, pacer and the nap before idling, retry,
//!           portrait_get on the wire
//!    │
//!   outcome, fsutil   leaf helpers
//!
//!   sim     the built-in Chat simulator: chat types only
//! ```
//! Dependencies point down only. Nothing below `app` imports clap or picks an exit status;
//! `tests/layers.rs` parses every `use crate::` and fails on a cycle or an upward edge.

pub mod app;
pub mod chat;
pub mod fsutil;
pub mod input;
pub mod outcome;
pub mod run;
pub mod sim;
pub mod store;
