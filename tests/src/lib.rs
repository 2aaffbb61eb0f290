//! gwlb's test kit, shared by its integration tests (`gwlb/tests`), its benchmarks (`perf/`)
//! and its pipeline fuzz target (`gwlb/fuzz`). It depends on nothing of gwlb's, so that what
//! it builds is an independent oracle for gwlb's own wire code.
//!
//! - [`frames`]: whole Ethernet frames of user traffic (etherparse), and frame operations
//!   (802.1Q tag, the IP packet inside, routing, padding);
//! - [`headers`]: IP, TCP, UDP and ICMP headers byte by byte (options, fragments, extension
//!   chains, broken lengths);
//! - [`geneve_returns`]: Geneve frames as gwlb sends them, and appliance returns in both
//!   styles (AWS echo, Linux kernel);
//! - [`configs`]: the one-port lab's address plan and TOML snippets written from it;
//! - [`checksum`]: the Internet checksum;
//! - [`pcap`]: pcap files.

pub mod checksum;
pub mod configs;
pub mod frames;
pub mod geneve_returns;
pub mod headers;
pub mod pcap;
