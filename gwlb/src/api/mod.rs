//! The operator interface of a running gateway: the HTTP/JSON control API and the Prometheus
//! metrics endpoint (the CLI that talks to them is [`crate::cli`]).
//!
//! Both servers only translate HTTP to [`ControlHandle`](crate::control::ControlHandle) calls:
//! every change is applied (whole, or not at all) by the control loop, and every read comes
//! from it, so nothing here touches the workers. Reference: `docs/api.md`,
//! `docs/openapi.yaml`.
//!
//! - [`server`]: listeners (TCP or Unix socket), request threads, token authentication.
//! - [`routes`]: the `/v1/...` routes of the control API.
//! - [`metrics`]: the `/metrics` exposition.
//! - [`http_error`]: the JSON error body the API and its client share.

pub mod http_error;
pub mod metrics;
pub mod routes;
pub mod server;

pub use metrics::serve_metrics;
pub use server::{serve, start, ApiError, ApiServer, Limits, ListenerStats};
