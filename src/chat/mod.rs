//! The wire to Chat: connection settings, UserSigs, the HTTP client, error codes and their
//! classes, the pacer (and when the sending thread may nap) and one call retried. Nothing
//! here knows about CSV files or runs.

pub mod accounts;
pub mod api;
pub mod client;
pub mod codes;
pub mod connection;
pub mod limiter;
pub mod nap;
pub mod portrait;
pub mod retry;
pub mod usersig;
