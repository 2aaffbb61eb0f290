//! gwlb: a gateway load balancer. Pure-Rust core (parsing, flow keys, Maglev, flow table,
//! Geneve encapsulation and decapsulation) plus, with the `dpdk` feature, the DPDK data path.
//!
//! See `docs/architecture.md` for how the pieces fit.

pub mod api;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod control;
pub mod data_path_probe;
pub mod decap;
pub mod encap;
pub mod flow;
pub mod flow_dump;
pub mod flow_table;
pub mod fragment;
pub mod health;
pub mod huge_array;
pub mod instance_lock;
pub mod logging;
pub mod maglev;
pub mod mirror;
pub mod neighbors;
pub mod numa;
pub mod packet_buf;
pub mod parse;
pub mod pipeline;
pub mod policy;
pub mod routing;
pub mod snapshot;
pub mod stats;
pub mod steering;
pub mod tcp_reset;
pub mod too_big;
pub mod wire;

#[cfg(feature = "dpdk")]
pub mod dataplane;
