//! Integration tests: each runs the real `profile-import` binary on files in its own temporary
//! directory. Shared helpers live in `util`; add one module per area below.

mod util;

mod accounts;
mod cli;
mod corpus;
mod dry_run;
mod error_classes;
mod input_edges;
mod layers;
mod ops;
mod reliability;
mod security;
mod send;
mod settings;
mod standard_fields;
mod state;
