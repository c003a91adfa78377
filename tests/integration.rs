//! Integration tests: each runs the real `profile-import` binary on files in its own temporary
//! directory. Shared helpers live in `util`; add one module per area below. Wall-clock tests
//! are a test binary of their own: `tests/timing.rs`.

mod util;

mod accounts;
mod commands;
mod corpus;
mod dry_run;
mod reliability;
mod resume;
mod security;
mod send;
mod settings;
mod signals;
mod state;
