//! `[bgp]`: the service prefixes this node announces, the routers it peers with, BFD and the
//! worker-stall timeout that withdraws the announcement (see docs/architecture.md,
//! "Scale-out").

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{check_host_ip, invalid, parse_field, ranged};
use crate::config::raw::RawBgp;
use crate::config::{Bgp, BgpNeighbor, ConfigError, IpNet, Port};

/// AS_TRANS (RFC 6793): never a real AS.
const AS_TRANS: i64 = 23456;

fn asn(field: &str, v: i64) -> Result<u32, ConfigError> {
    if v == AS_TRANS {
        return Err(invalid(
            field,
            "23456 is AS_TRANS (RFC 6793), not a usable AS number",
        ));
    }
    ranged(field, v, 1..=i64::from(u32::MAX))
}

pub(super) fn validate_bgp(raw: &RawBgp, ports: &[Port]) -> Result<Bgp, ConfigError> {
    let bird = PathBuf::from(&raw.bird);
    if !bird.is_absolute() {
        return Err(invalid(
            "bgp.bird",
            "must be an absolute path (e.g. /usr/sbin/bird)",
        ));
    }
    let state_dir = PathBuf::from(&raw.state_dir);
    if !state_dir.is_absolute() {
        return Err(invalid("bgp.state_dir", "must be an absolute path"));
    }
    let local_as = asn("bgp.local_as", raw.local_as)?;
    let router_id: IpAddr = parse_field("bgp.router_id", &raw.router_id)?;
    let router_id = match router_id {
        IpAddr::V4(v4) if !v4.is_unspecified() => v4,
        _ => {
            return Err(invalid(
                "bgp.router_id",
                format!("{router_id} is not a non-zero IPv4 address (a BGP identifier is 32 bits)"),
            ))
        }
    };
    if raw.prefixes.is_empty() {
        return Err(invalid(
            "bgp.prefixes",
            "at least one service prefix to announce",
        ));
    }
    let mut prefixes: Vec<IpNet> = Vec::new();
    for (i, p) in raw.prefixes.iter().enumerate() {
        let f = format!("bgp.prefixes[{i}]");
        let net: IpNet = parse_field(&f, p)?;
        if net.addr() != net.network() {
            return Err(invalid(
                &f,
                format!(
                    "{p} has host bits set (the network is {}/{})",
                    net.network(),
                    net.prefix_len()
                ),
            ));
        }
        if prefixes.contains(&net) {
            return Err(invalid(&f, format!("{p} is listed twice")));
        }
        prefixes.push(net);
    }
    if raw.neighbors.is_empty() {
        return Err(invalid("bgp.neighbors", "at least one router to peer with"));
    }
    let mut neighbors: Vec<BgpNeighbor> = Vec::new();
    for (i, n) in raw.neighbors.iter().enumerate() {
        let f = format!("bgp.neighbors[{i}]");
        let address = check_host_ip(&format!("{f}.address"), &n.address)?;
        if neighbors.iter().any(|m| m.address == address) {
            return Err(invalid(
                format!("{f}.address"),
                format!("{address} is listed twice"),
            ));
        }
        // The session runs through the exception path: the router must be on a connected
        // subnet of a port that has a kernel interface.
        let on_port = ports.iter().find(|p| match address {
            IpAddr::V4(a) => p.ipv4.is_some_and(|n| n.contains(a)),
            IpAddr::V6(a) => p.ipv6.is_some_and(|n| n.contains(a)),
        });
        match on_port {
            Some(p) if p.kernel_interface.is_some() => {}
            Some(p) => {
                return Err(invalid(
                    format!("{f}.address"),
                    format!("port {:?} has no kernel_interface: the BGP session runs through the exception path", p.name),
                ))
            }
            None => {
                return Err(invalid(
                    format!("{f}.address"),
                    format!("{address} is not in a connected subnet of any port"),
                ))
            }
        }
        let remote_as = asn(&format!("{f}.remote_as"), n.remote_as)?;
        neighbors.push(BgpNeighbor { address, remote_as });
    }
    for (i, p) in prefixes.iter().enumerate() {
        if !neighbors.iter().any(|n| n.address.is_ipv4() == p.is_ipv4()) {
            return Err(invalid(
                format!("bgp.prefixes[{i}]"),
                format!(
                    "no {} router in bgp.neighbors to announce {p} to",
                    if p.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            ));
        }
    }
    let cluster_addresses = cluster_addresses(raw, ports, &neighbors)?;
    Ok(Bgp {
        cluster_addresses,
        bird,
        state_dir,
        local_as,
        router_id,
        prefixes,
        neighbors,
        bfd: raw.bfd,
        bfd_interval: Duration::from_millis(ranged(
            "bgp.bfd_interval_ms",
            raw.bfd_interval_ms,
            10..=10_000,
        )?),
        bfd_multiplier: ranged("bgp.bfd_multiplier", raw.bfd_multiplier, 1..=255)?,
        hold_time: Duration::from_secs(ranged("bgp.hold_time_s", raw.hold_time_s, 3..=65_535)?),
        accept_unseen_returns: raw.accept_unseen_returns,
        stall_timeout: Duration::from_millis(ranged(
            "bgp.stall_timeout_ms",
            raw.stall_timeout_ms,
            100..=60_000,
        )?),
    })
}

/// `bgp.cluster_addresses`: at most one per family, each routed to the nodes (never on a
/// port's connected subnet, where appliances would look for it by ARP or ND and no node
/// answers), and with a router of its family to announce it to.
fn cluster_addresses(
    raw: &RawBgp,
    ports: &[Port],
    neighbors: &[BgpNeighbor],
) -> Result<Vec<IpAddr>, ConfigError> {
    let mut out: Vec<IpAddr> = Vec::new();
    for (i, text) in raw.cluster_addresses.iter().enumerate() {
        let f = format!("bgp.cluster_addresses[{i}]");
        let a = check_host_ip(&f, text)?;
        if out.iter().any(|b| b.is_ipv4() == a.is_ipv4()) {
            return Err(invalid(
                &f,
                format!(
                    "a second {} cluster address (at most one per family)",
                    super::family(a)
                ),
            ));
        }
        for p in ports {
            let connected = match a {
                IpAddr::V4(v4) => p.ipv4.is_some_and(|n| n.contains(v4)),
                IpAddr::V6(v6) => p.ipv6.is_some_and(|n| n.contains(v6)),
            };
            if connected {
                return Err(invalid(
                    &f,
                    format!(
                        "{a} is in the connected subnet of port {:?}: the cluster address must be routed to the nodes (announced by BGP), not on a link",
                        p.name
                    ),
                ));
            }
        }
        if !neighbors.iter().any(|n| n.address.is_ipv4() == a.is_ipv4()) {
            return Err(invalid(
                &f,
                format!(
                    "no {} router in bgp.neighbors to announce {a} to",
                    super::family(a)
                ),
            ));
        }
        out.push(a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    /// A two-arm config whose user port has a kernel interface, plus `[bgp]` with `body`.
    fn bgp(body: &str) -> String {
        let base = TWO_ARM.replacen(
            "role = \"user\"",
            "role = \"user\"\nkernel_interface = \"gw-user\"",
            1,
        );
        format!("{base}\n[bgp]\n{body}")
    }

    const OK: &str = "local_as = 65001\nrouter_id = \"10.0.1.1\"\nprefixes = [\"10.250.100.0/24\", \"10.250.101.0/24\"]\n[[bgp.neighbors]]\naddress = \"10.0.1.254\"\nremote_as = 65000\n";

    #[test]
    fn test_bgp_rules() {
        let text = bgp(OK);
        assert!(text.contains("kernel_interface = \"gw-user\""), "{text}");
        let c = parse(&text);
        let b = c.bgp.as_ref().unwrap();
        assert_eq!((b.local_as, b.prefixes.len(), b.bfd), (65001, 2, true));
        assert_eq!(b.hold_time.as_secs(), 9);
        assert_eq!(
            &c.revalidated().unwrap(),
            &c,
            "round trip through the file's mirror"
        );
        for (body, field, msg) in [
            (OK.replace("65001", "0"), "bgp.local_as", "out of range"),
            (OK.replace("65001", "23456"), "bgp.local_as", "AS_TRANS"),
            (
                OK.replace("\"10.0.1.1\"", "\"fd00::1\""),
                "bgp.router_id",
                "IPv4",
            ),
            (
                OK.replace("10.250.100.0/24", "10.250.100.1/24"),
                "bgp.prefixes[0]",
                "host bits",
            ),
            (
                OK.replace("10.250.101.0/24", "10.250.100.0/24"),
                "bgp.prefixes[1]",
                "twice",
            ),
            (
                OK.replace("10.250.101.0/24", "fd00:250:100::/64"),
                "bgp.prefixes[1]",
                "no IPv6 router",
            ),
            (
                OK.replace(
                    "prefixes = [\"10.250.100.0/24\", \"10.250.101.0/24\"]",
                    "prefixes = []",
                ),
                "bgp.prefixes",
                "at least one",
            ),
            (
                OK.replace("10.0.1.254", "10.9.9.9"),
                "bgp.neighbors[0].address",
                "not in a connected subnet",
            ),
            (
                OK.replace("remote_as = 65000", "remote_as = 4294967296"),
                "bgp.neighbors[0].remote_as",
                "out of range",
            ),
            (
                OK.replace("[[bgp.neighbors]]", "hold_time_s = 1\n[[bgp.neighbors]]"),
                "bgp.hold_time_s",
                "out of range",
            ),
            (
                format!("cluster_addresses = [\"10.0.1.9\"]\n{OK}"),
                "bgp.cluster_addresses[0]",
                "connected subnet of port \"user\"",
            ),
            (
                format!("cluster_addresses = [\"10.250.200.1\", \"10.250.200.2\"]\n{OK}"),
                "bgp.cluster_addresses[1]",
                "at most one per family",
            ),
            (
                format!("cluster_addresses = [\"fd00:250:200::1\"]\n{OK}"),
                "bgp.cluster_addresses[0]",
                "no IPv6 router",
            ),
            (
                format!("cluster_addresses = [\"0.0.0.0\"]\n{OK}"),
                "bgp.cluster_addresses[0]",
                "not a unicast host address",
            ),
        ] {
            expect_err(&bgp(&body), field, msg);
        }
        // A cluster address is announced as a host route after the service prefixes.
        let c = parse(&bgp(&format!(
            "cluster_addresses = [\"10.250.200.1\"]\n{OK}"
        )));
        let b = c.bgp.as_ref().unwrap();
        let announced: Vec<String> = b.announced().iter().map(ToString::to_string).collect();
        assert_eq!(
            announced,
            ["10.250.100.0/24", "10.250.101.0/24", "10.250.200.1/32"]
        );
        assert_eq!(&c.revalidated().unwrap(), &c, "cluster address round trip");
        // A router on a port without a kernel interface cannot be peered with.
        let no_tap = bgp(OK).replace("kernel_interface = \"gw-user\"\n", "");
        expect_err(&no_tap, "bgp.neighbors[0].address", "no kernel_interface");
        expect_err(
            &bgp(&format!("bird = \"bird\"\n{OK}")),
            "bgp.bird",
            "absolute",
        );
    }
}
