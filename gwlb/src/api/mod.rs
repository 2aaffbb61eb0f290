//! The operator interface of a running gateway: the HTTP/JSON control API, the Prometheus
//! metrics endpoint, and the client the `gwlb` CLI uses to talk to them.
//!
//! Both servers only translate HTTP to [`ControlHandle`](crate::control::ControlHandle) calls:
//! every change is applied (whole, or not at all) by the control loop, and every read comes
//! from it, so nothing here touches the workers. Reference: `docs/api.md`,
//! `docs/openapi.yaml`.
//!
//! - [`server`]: listeners (TCP or Unix socket), request threads, token authentication.
//! - [`routes`]: the `/v1/...` routes of the control API.
//! - [`metrics`]: the `/metrics` exposition.
//! - [`http_error`]: the JSON error body both sides share.
//! - [`client`]: the HTTP client of the CLI.
//! - [`cli`]: the CLI subcommands that use it.
//! - [`tables`]: the CLI's human-readable tables.

pub mod cli;
pub mod client;
pub mod http_error;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod tables;

pub use metrics::serve_metrics;
pub use server::{serve, start, ApiError, ApiServer, Limits, ListenerStats};
