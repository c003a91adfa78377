//! Integration tests: each runs the real `profile-import` binary on files in its own temporary
//! directory. Shared helpers live in `util`; add one module per area below. Wall-clock tests
//! are a test binary of their own: `tests/timing.rs`.

mod util;

mod accounts;
mod batch;
mod changes;
mod cli;
mod commands;
mod corpus;
mod dry_run;
mod error_classes;
mod input_edges;
mod layers;
mod nightly;
mod ops;
mod outputs;
mod reliability;
mod repeated_users;
mod resume;
mod security;
mod send;
mod settings;
mod signals;
mod standard_fields;
mod state;
mod usersig_renewal;
