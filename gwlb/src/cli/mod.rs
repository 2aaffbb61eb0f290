//! The `gwlb` command-line client of a running gateway: it talks to the control API over
//! HTTP, like any other client, and prints tables or JSON.
//!
//! - [`commands`]: the subcommands (`targets`, `register`, `flows`, `stats`, `drain`, ...).
//! - [`client`]: the HTTP client of the API (also used by tests).
//! - [`tables`]: the human-readable tables.
//! - [`assets`]: man pages and shell completions generated from the CLI definition.

pub mod assets;
pub mod client;
pub mod commands;
pub mod tables;
