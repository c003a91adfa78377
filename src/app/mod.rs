//! The application layer: clap definitions, turning arguments into plain settings, one function
//! per command, signals, logging and exit statuses. Only this layer knows clap or exit codes.

pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod exit;
pub mod help;
pub mod history;
pub mod logging;
pub mod man;
pub mod settings;
pub mod signals;
pub mod state_views;
