//! Neighbour (ARP / ND) learning through the host kernel.
//!
//! When a port has a `kernel_interface`, the kernel owns the gateway's addresses on a TAP
//! interface (the exception path): it answers ARP and neighbour solicitations, runs ARP/ND for
//! its own traffic (health checks) and keeps a neighbour table with the usual refresh and
//! expiry (NUD). gwlb learns appliance and next-hop MACs from that table instead of
//! re-implementing ARP and ND: [`solicit`] makes the kernel resolve an address, and
//! [`read_kernel_neighbors`] reads what it resolved. Entries in states FAILED and INCOMPLETE
//! carry no MAC and are skipped, so a packet is never sent with a stale or made-up MAC: until
//! a MAC is known, the data path drops with `neighbor_unresolved`.

use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// One resolved neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbor {
    /// Its address.
    pub addr: IpAddr,
    /// Its MAC.
    pub mac: [u8; 6],
}

/// Parses `ip -o neigh show` output: `ADDR dev IF lladdr MAC STATE`. Lines without a MAC
/// (INCOMPLETE, FAILED) are skipped, as are interfaces not in `ifnames`.
pub fn parse_ip_neigh(text: &str, ifnames: &[String]) -> Vec<Neighbor> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(addr) = f.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
            continue;
        };
        let field = |k: &str| {
            f.iter()
                .position(|x| *x == k)
                .and_then(|i| f.get(i + 1))
                .copied()
        };
        let (Some(dev), Some(mac)) = (field("dev"), field("lladdr")) else {
            continue;
        };
        if !ifnames.iter().any(|n| n == dev) || line.contains("FAILED") {
            continue;
        }
        if let Some(mac) = parse_mac(mac) {
            out.push(Neighbor { addr, mac });
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.addr == b.addr);
    out
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Reads the kernel's resolved neighbours on the given interfaces (both address families).
pub fn read_kernel_neighbors(ifnames: &[String]) -> std::io::Result<Vec<Neighbor>> {
    let out = std::process::Command::new("ip")
        .args(["-o", "neigh", "show"])
        .output()?;
    Ok(parse_ip_neigh(
        &String::from_utf8_lossy(&out.stdout),
        ifnames,
    ))
}

/// Makes the kernel resolve `addr` on `ifname` by sending it one empty UDP datagram to the
/// discard port (9) from a socket bound to the interface. The datagram itself is harmless;
/// what matters is the ARP request / neighbour solicitation the kernel sends first.
pub fn solicit(addr: IpAddr, ifname: &str) -> std::io::Result<()> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_nonblocking(true)?;
    let _ = s.send_to(&[], &SocketAddr::new(addr, 9).into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolved_entries_only() {
        let text = "10.0.0.254 dev gw0 lladdr 02:00:00:00:00:fe REACHABLE\n\
                    10.0.0.11 dev gw0 lladdr 02:00:00:00:00:0b STALE\n\
                    10.0.0.12 dev gw0  INCOMPLETE\n\
                    10.0.0.13 dev gw0 lladdr 02:00:00:00:00:0d FAILED\n\
                    10.9.0.1 dev eth0 lladdr 02:00:00:00:00:01 REACHABLE\n\
                    fd00::fe dev gw0 lladdr 02:00:00:00:00:fe router REACHABLE\n";
        let n = parse_ip_neigh(text, &["gw0".to_owned()]);
        let addrs: Vec<String> = n.iter().map(|x| x.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.11", "10.0.0.254", "fd00::fe"]);
        assert_eq!(n[1].mac, [2, 0, 0, 0, 0, 0xfe]);
    }

    #[test]
    fn bad_macs_are_skipped() {
        let n = parse_ip_neigh(
            "10.0.0.1 dev gw0 lladdr 02:00:zz:00:00:01 REACHABLE\n",
            &["gw0".into()],
        );
        assert!(n.is_empty());
        assert_eq!(parse_mac("02:00:00:00:00:01:02"), None);
    }
}
