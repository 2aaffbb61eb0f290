//! The DPDK data path: ports opened from the config, pinned poll-mode workers running the
//! [`crate::pipeline`] on real mbufs, and the `gwlb run` orchestration.

pub mod copy_socket;
pub mod mbuf_buf;
pub mod ports;
pub mod run;
pub mod worker;
