//! Network value types as written in the file and held by the validated
//! [`Config`](crate::config::Config): declared in [`crate::wire::addr`], re-exported here.

use std::net::IpAddr;

pub use crate::wire::addr::{IpNet, Ipv4Net, Ipv6Net, MacAddr, MacParseError, NetParseError};

/// What `ip` is in the subnet `net` if it cannot be a host's address: `"network"` (the
/// network address, for prefixes shorter than /31 or /127; /31 and /32 have none, RFC 3021)
/// or `"broadcast"` (IPv4 up to /30).
pub(super) fn subnet_special(net: &IpNet, ip: IpAddr) -> Option<&'static str> {
    if !net.contains(ip) {
        return None;
    }
    if ip == net.network() && net.prefix_len() < net_bits(net) - 1 {
        return Some("network");
    }
    match (net, ip) {
        (IpNet::V4(n), IpAddr::V4(a))
            if n.prefix_len <= 30 && u32::from(a) | n.mask() == u32::MAX =>
        {
            Some("broadcast")
        }
        _ => None,
    }
}

fn net_bits(net: &IpNet) -> u8 {
    if net.is_ipv4() {
        32
    } else {
        128
    }
}
