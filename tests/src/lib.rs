//! Shared helpers for gwlb's integration tests, benchmarks and demo: real packets built with
//! etherparse, and pcap files read and written with pcap-file.

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
