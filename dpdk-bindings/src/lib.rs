//! DPDK bindings. Work in progress.
