//! Whole Ethernet frames: user traffic built with etherparse ([`frame`], [`mixed_traffic`]),
//! and the small operations tests apply to frames (Ethernet header, 802.1Q tag, the IP packet
//! inside, routing, padding).

use std::net::Ipv4Addr;

use etherparse::{IpNumber, PacketBuilder};

use crate::checksum::set_ipv4_checksum;

/// Transport of a generated packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with the given flags byte (0x02 = SYN, 0x10 = ACK, 0x18 = PSH|ACK).
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    /// UDP.
    Udp { src_port: u16, dst_port: u16 },
    /// ICMP(v6) echo request.
    Echo { id: u16, seq: u16 },
    /// Any other IP protocol number: the payload is the whole IP payload.
    Other(u8),
}

/// An IP endpoint pair, IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ips {
    /// IPv4 source and destination.
    V4([u8; 4], [u8; 4]),
    /// IPv6 source and destination.
    V6([u8; 16], [u8; 16]),
}

/// Builds an Ethernet frame carrying one IP packet (TTL / hop limit 64) with `payload`.
pub fn frame(src_mac: [u8; 6], dst_mac: [u8; 6], ips: Ips, l4: L4, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ip = match ips {
        Ips::V4(s, d) => eth.ipv4(s, d, 64),
        Ips::V6(s, d) => eth.ipv6(s, d, 64),
    };
    let v6 = matches!(ips, Ips::V6(..));
    let mut out = Vec::new();
    match l4 {
        L4::Tcp {
            src_port,
            dst_port,
            flags,
        } => {
            let mut b = ip.tcp(src_port, dst_port, 1000, 65535);
            if flags & 0x02 != 0 {
                b = b.syn();
            }
            if flags & 0x10 != 0 {
                b = b.ack(1);
            }
            if flags & 0x08 != 0 {
                b = b.psh();
            }
            if flags & 0x01 != 0 {
                b = b.fin();
            }
            if flags & 0x04 != 0 {
                b = b.rst();
            }
            b.write(&mut out, payload).expect("tcp frame");
        }
        L4::Udp { src_port, dst_port } => {
            ip.udp(src_port, dst_port)
                .write(&mut out, payload)
                .expect("udp frame");
        }
        L4::Echo { id, seq } if v6 => {
            ip.icmpv6_echo_request(id, seq)
                .write(&mut out, payload)
                .expect("icmpv6 frame");
        }
        L4::Echo { id, seq } => {
            ip.icmpv4_echo_request(id, seq)
                .write(&mut out, payload)
                .expect("icmp frame");
        }
        L4::Other(proto) => {
            ip.write(&mut out, IpNumber(proto), payload)
                .expect("ip frame");
        }
    }
    out
}

/// A fixed mix of client traffic: IPv4 and IPv6, TCP, UDP and ICMP, `flows` flows from
/// 10.1.0.0/16 (fd01::/64) to 10.2.0.0/16 (fd02::/64), `per_flow` packets each.
pub fn mixed_traffic(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    flows: u16,
    per_flow: u16,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in 0..flows {
        let hi = (f >> 8) as u8;
        let lo = f as u8;
        let ips = if f % 4 == 3 {
            let mut s = [0u8; 16];
            s[..2].copy_from_slice(&[0xfd, 0x01]);
            s[14] = hi;
            s[15] = lo;
            let mut d = s;
            d[1] = 0x02;
            Ips::V6(s, d)
        } else {
            Ips::V4([10, 1, hi, lo], [10, 2, hi, lo.wrapping_add(1)])
        };
        let l4 = match f % 3 {
            0 => L4::Tcp {
                src_port: 30000 + f,
                dst_port: 80,
                flags: 0x18,
            },
            1 => L4::Udp {
                src_port: 40000 + f,
                dst_port: 53,
            },
            _ => L4::Echo { id: f, seq: 0 },
        };
        for p in 0..per_flow {
            let payload: Vec<u8> = (0..(16 + (p as usize * 37) % 200))
                .map(|i| i as u8)
                .collect();
            out.push(frame(src_mac, dst_mac, ips, l4, &payload));
        }
    }
    out
}

/// An IPv4 address written as bytes, for readable test code.
pub fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 4] {
    Ipv4Addr::new(a, b, c, d).octets()
}

/// The IP packet inside an Ethernet frame (after any 802.1Q tags), without padding, read
/// from the frame's own bytes.
pub fn ip_packet(frame: &[u8]) -> &[u8] {
    let mut off = 12;
    while u16::from_be_bytes([frame[off], frame[off + 1]]) == 0x8100 {
        off += 4;
    }
    let ip = &frame[off + 2..];
    let len = match ip[0] >> 4 {
        4 => usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        6 => 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])),
        v => panic!("not IP: version {v}"),
    };
    &ip[..len]
}

/// `dst`, `src`, ethertype.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(1600);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v
}

/// Ethertype of an IP packet by its version nibble (IPv4 unless it says 6, or is empty).
pub fn ethertype_of(ip: &[u8]) -> u16 {
    if ip.first().is_some_and(|b| b >> 4 == 6) {
        0x86dd
    } else {
        0x0800
    }
}

/// An Ethernet frame carrying `ip`.
pub fn eth_ip(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut v = eth(dst, src, ethertype_of(ip));
    v.extend_from_slice(ip);
    v
}

/// Inserts an 802.1Q tag after the MAC addresses.
pub fn vlan_tagged(frame: &[u8], pcp: u8, vid: u16) -> Vec<u8> {
    let tci = (u16::from(pcp) << 13) | (vid & 0x0fff);
    let mut v = frame[..12].to_vec();
    v.extend_from_slice(&[0x81, 0x00]);
    v.extend_from_slice(&tci.to_be_bytes());
    v.extend_from_slice(&frame[12..]);
    v
}

/// The packet as a router forwards it (as a Linux appliance returns it): IPv4 TTL - 1 with
/// the header checksum updated, or IPv6 hop limit - 1. The TTL wraps (0 becomes 255), and
/// bytes too short for an IP header are returned unchanged, so fuzzed packets may pass.
pub fn routed(ip: &[u8]) -> Vec<u8> {
    let mut v = ip.to_vec();
    match v.first().map(|b| b >> 4) {
        Some(4) if v.len() >= 20 => {
            v[8] = v[8].wrapping_sub(1);
            set_ipv4_checksum(&mut v);
        }
        Some(6) if v.len() >= 40 => v[7] = v[7].wrapping_sub(1),
        _ => {}
    }
    v
}

/// `f` padded with 0xee bytes to `len` (Ethernet padding of a short frame).
pub fn pad_to(mut f: Vec<u8>, len: usize) -> Vec<u8> {
    while f.len() < len {
        f.push(0xee);
    }
    f
}
