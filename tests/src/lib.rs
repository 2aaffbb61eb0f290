//! gwlb's test kit, shared by its integration tests (`gwlb/tests`) and benchmarks (`perf/`):
//! real packets built with etherparse or byte by byte, Internet checksums, Geneve base headers,
//! and pcap files read and written with pcap-file. It depends on nothing of gwlb's, so that
//! what it builds is an independent oracle for gwlb's own wire code.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

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
}

/// An IP endpoint pair, IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ips {
    /// IPv4 source and destination.
    V4([u8; 4], [u8; 4]),
    /// IPv6 source and destination.
    V6([u8; 16], [u8; 16]),
}

/// Builds an Ethernet frame carrying one IP packet with `payload`.
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

/// Writes frames to a pcap file (Ethernet link type), one microsecond apart.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut w = PcapWriter::new(BufWriter::new(File::create(path)?)).map_err(io_err)?;
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_micros(i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .map_err(io_err)?;
    }
    Ok(())
}

/// Reads every frame of a pcap file.
pub fn read_pcap(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut r = PcapReader::new(BufReader::new(File::open(path)?)).map_err(io_err)?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.map_err(io_err)?.data.into_owned());
    }
    Ok(out)
}

fn io_err(e: pcap_file::PcapError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// An address in 10.0.0.0/8 written as bytes, for readable test code.
pub fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 4] {
    Ipv4Addr::new(a, b, c, d).octets()
}

// ---------------------------------------------------------------------------------------------
// Packet bytes
// ---------------------------------------------------------------------------------------------

/// One's-complement sum of big-endian 16-bit words.
pub fn ones_sum(mut acc: u64, bytes: &[u8]) -> u64 {
    let mut it = bytes.chunks(2);
    for c in &mut it {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        acc += u64::from(w);
    }
    acc
}

/// Final Internet checksum of an accumulator.
pub fn checksum(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
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
    let mut v = Vec::with_capacity(14);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v
}

/// Ethertype of an IP packet by its version nibble.
pub fn ethertype_of(ip: &[u8]) -> u16 {
    if ip[0] >> 4 == 6 {
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

/// The packet as a router forwards it: IPv4 TTL - 1 with the header checksum updated, or
/// IPv6 hop limit - 1.
pub fn routed(ip: &[u8]) -> Vec<u8> {
    let mut v = ip.to_vec();
    if v[0] >> 4 == 4 {
        v[8] -= 1;
        let ihl = usize::from(v[0] & 0x0f) * 4;
        v[10] = 0;
        v[11] = 0;
        let c = checksum(ones_sum(0, &v[..ihl]));
        v[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        v[7] -= 1;
    }
    v
}

/// Geneve base header: version 0, `opt_words`, flags byte, protocol, VNI.
pub fn geneve_base(opt_words: u8, flags: u8, protocol: u16, vni: u32) -> Vec<u8> {
    let mut g = vec![opt_words & 0x3f, flags];
    g.extend_from_slice(&protocol.to_be_bytes());
    g.extend_from_slice(&vni.to_be_bytes()[1..]);
    g.push(0);
    g
}

/// Sets the header checksum of the IPv4 header `h` (whatever its options).
pub fn set_ipv4_checksum(h: &mut [u8]) {
    let ihl = usize::from(h[0] & 0x0f) * 4;
    h[10..12].fill(0);
    let c = checksum(ones_sum(0, &h[..ihl]));
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The Internet checksum of `bytes` (an IPv4 header with its checksum field zeroed, say).
pub fn ipv4_checksum(bytes: &[u8]) -> u16 {
    checksum(ones_sum(0, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's example: the words 0001 f203 f4f5 f6f7 sum to 0xddf2, checksum 0x220d.
    #[test]
    fn checksum_matches_rfc_1071() {
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_sum(0, &b), 0x2_ddf0);
        assert_eq!(checksum(ones_sum(0, &b)), !0xddf2);
        let mut h = [
            0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xff, 0xff, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8,
            0, 0xc7,
        ];
        set_ipv4_checksum(&mut h);
        assert_eq!(&h[10..12], &[0xb8, 0x61]);
    }
}
