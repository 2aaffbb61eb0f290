//! Geneve frames as gwlb sends them and as appliances send them back, built from the rules
//! (not from gwlb's code): the AWS header and options, gwlb's UDP source port, an outer
//! Ethernet/IP/UDP frame of either family, and the two return styles appliances use
//! (`shared/reference/appliances.md`): the AWS (gwlbtun) echo of gwlb's own encapsulation,
//! and a Linux kernel Geneve device's return.

use std::net::IpAddr;

use crate::checksum::{checksum, ones_sum, set_ipv4_checksum};
use crate::frames::{eth, ethertype_of};
use crate::headers::{ipv6_header, Ipv4};

/// The Geneve UDP port (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;

/// Geneve base header: version 0, `opt_words`, flags byte, protocol, VNI.
pub fn geneve_base(opt_words: u8, flags: u8, protocol: u16, vni: u32) -> Vec<u8> {
    let mut g = vec![opt_words & 0x3f, flags];
    g.extend_from_slice(&protocol.to_be_bytes());
    g.extend_from_slice(&vni.to_be_bytes()[1..]);
    g.push(0);
    g
}

/// A target group's identifiers, as gwlb writes them in every encapsulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AwsIds {
    /// The group's VNI.
    pub vni: u32,
    /// AWS option type 1 (GWLB endpoint id).
    pub endpoint_id: u64,
    /// AWS option type 2 (attachment id).
    pub attachment_id: u64,
}

/// The 40-byte Geneve header gwlb sends: version 0, Opt Len 8, no flags, `protocol` (the
/// inner ethertype), the VNI, then the AWS options type 1 (endpoint id), 2 (attachment id),
/// 3 (cookie), class 0x0108, non-critical.
pub fn aws_geneve_header(protocol: u16, ids: &AwsIds, cookie: u32) -> Vec<u8> {
    let mut g = geneve_base(8, 0, protocol, ids.vni);
    g.extend_from_slice(&[0x01, 0x08, 0x01, 0x02]);
    g.extend_from_slice(&ids.endpoint_id.to_be_bytes());
    g.extend_from_slice(&[0x01, 0x08, 0x02, 0x02]);
    g.extend_from_slice(&ids.attachment_id.to_be_bytes());
    g.extend_from_slice(&[0x01, 0x08, 0x03, 0x01]);
    g.extend_from_slice(&cookie.to_be_bytes());
    g
}

/// The UDP source port gwlb derives from a flow's cookie (49152..=65535).
pub fn encap_sport(cookie: u32) -> u16 {
    0xc000 | (cookie as u16 & 0x3fff)
}

/// Outer-header parameters of a Geneve frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 DF bit.
    pub df: bool,
    /// UDP source port.
    pub sport: u16,
    /// IPv4 identification.
    pub ip_id: u16,
    /// Over IPv6 the UDP checksum is always computed; over IPv4 only when this is set.
    pub udp_checksum_v4: bool,
}

impl Outer {
    /// The outer headers of an appliance's answer to the Geneve frame `encapsulated` (either
    /// family): MACs and addresses swapped, its UDP source port kept, TTL 64, DF clear,
    /// identification 0, no UDP checksum over IPv4. Callers change what their style does.
    pub fn reply_to(encapsulated: &[u8]) -> Outer {
        let mac =
            |r: std::ops::Range<usize>| -> [u8; 6] { encapsulated[r].try_into().expect("6 bytes") };
        let (src, dst, udp) = if ethertype_of(&encapsulated[14..]) == 0x86dd {
            let a = |at: usize| -> IpAddr {
                let b: [u8; 16] = encapsulated[at..at + 16].try_into().expect("16 bytes");
                b.into()
            };
            (a(22), a(38), 54)
        } else {
            let a = |at: usize| -> IpAddr {
                let b: [u8; 4] = encapsulated[at..at + 4].try_into().expect("4 bytes");
                b.into()
            };
            (a(26), a(30), 14 + usize::from(encapsulated[14] & 0x0f) * 4)
        };
        Outer {
            dst_mac: mac(6..12),
            src_mac: mac(0..6),
            src: dst,
            dst: src,
            ttl: 64,
            df: false,
            sport: u16::from_be_bytes([encapsulated[udp], encapsulated[udp + 1]]),
            ip_id: 0,
            udp_checksum_v4: false,
        }
    }
}

/// Eth + IPv4/IPv6 + UDP (dport 6081) + `payload` (the Geneve header and what follows).
pub fn udp_6081_frame(o: &Outer, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&o.sport.to_be_bytes());
    udp.extend_from_slice(&GENEVE_PORT.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = |src: &[u8], dst: &[u8]| -> u64 {
        let acc = ones_sum(ones_sum(0, src), dst);
        acc + 17 + udp_len as u64
    };
    let udp_checksum = |udp: &mut [u8], src: &[u8], dst: &[u8]| {
        let mut c = checksum(ones_sum(pseudo(src, dst), udp));
        if c == 0 {
            c = 0xffff;
        }
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    };
    match (o.src, o.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            if o.udp_checksum_v4 {
                udp_checksum(&mut udp, &s.octets(), &d.octets());
            }
            let ip = Ipv4 {
                ttl: o.ttl,
                id: o.ip_id,
                frag: if o.df { 0x4000 } else { 0 },
                ..Ipv4::new(s.octets(), d.octets(), 17)
            };
            let mut f = eth(o.dst_mac, o.src_mac, 0x0800);
            f.extend_from_slice(&ip.packet(&[], &udp));
            f
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            udp_checksum(&mut udp, &s.octets(), &d.octets());
            let mut f = eth(o.dst_mac, o.src_mac, 0x86dd);
            f.extend_from_slice(&ipv6_header(s.octets(), d.octets(), 17, o.ttl, udp_len));
            f.extend_from_slice(&udp);
            f
        }
        _ => panic!("mixed outer IP versions"),
    }
}

/// What an AWS-style appliance (gwlbtun) sends back for gwlb's Geneve frame `encapsulated`
/// (IPv4 outer): the frame echoed byte for byte, Geneve header and options included, with
/// the outer MACs and addresses swapped, gwlb's UDP source port kept, TTL 2, DF clear, UDP
/// checksum 0.
pub fn aws_echo(encapsulated: &[u8]) -> Vec<u8> {
    assert_eq!(
        u16::from_be_bytes([encapsulated[12], encapsulated[13]]),
        0x0800,
        "aws_echo: an IPv4 outer header"
    );
    let e = encapsulated;
    let mut r = e.to_vec();
    r[0..6].copy_from_slice(&e[6..12]);
    r[6..12].copy_from_slice(&e[0..6]);
    r[26..30].copy_from_slice(&e[30..34]);
    r[30..34].copy_from_slice(&e[26..30]);
    r[20] &= !0x40; // DF
    r[22] = 2; // TTL
    let udp = 14 + usize::from(e[14] & 0x0f) * 4;
    r[udp + 6..udp + 8].fill(0);
    set_ipv4_checksum(&mut r[14..]);
    r
}

/// What a Linux kernel Geneve device sends: outer headers `o`, a Geneve header without
/// options with its own `vni`, and `inner` as given (the kernel routed it: pass it
/// [`routed`](crate::frames::routed) where the test models that).
pub fn linux_return(o: &Outer, inner: &[u8], vni: u32) -> Vec<u8> {
    let mut payload = geneve_base(0, 0, ethertype_of(inner), vni);
    payload.extend_from_slice(inner);
    udp_6081_frame(o, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn outer(src: IpAddr, dst: IpAddr) -> Outer {
        Outer {
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 2],
            src,
            dst,
            ttl: 17,
            df: true,
            sport: 50000,
            ip_id: 0,
            udp_checksum_v4: true,
        }
    }

    /// Both families parse with etherparse, with valid checksums, and an echo turned around
    /// twice (but for TTL, DF and the UDP checksum) is the frame itself.
    #[test]
    fn frames_parse_and_echoes_turn_around() {
        let v4 = outer([10, 0, 0, 1].into(), [10, 0, 0, 11].into());
        let v6 = outer(
            "fd00::1".parse().expect("addr"),
            "fd00::13".parse().expect("addr"),
        );
        let ids = AwsIds {
            vni: 7,
            endpoint_id: 1,
            attachment_id: 2,
        };
        let g = aws_geneve_header(0x0800, &ids, 0xdead_beef);
        for o in [v4, v6] {
            let f = udp_6081_frame(&o, &g);
            let p = SlicedPacket::from_ethernet(&f).expect("parses");
            let Some(TransportSlice::Udp(u)) = &p.transport else {
                panic!("udp")
            };
            assert_eq!((u.source_port(), u.destination_port()), (50000, 6081));
            assert_eq!(u.payload(), &g[..]);
            if let Some(NetSlice::Ipv4(ip)) = &p.net {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                assert!(h.dont_fragment);
            }
            let r = Outer::reply_to(&f);
            assert_eq!((r.src, r.dst, r.sport), (o.dst, o.src, o.sport));
            assert_eq!((r.src_mac, r.dst_mac), (o.dst_mac, o.src_mac));
        }
        let f = udp_6081_frame(
            &Outer {
                udp_checksum_v4: false,
                ..v4
            },
            &g,
        );
        let back = aws_echo(&aws_echo(&f));
        let want = udp_6081_frame(
            &Outer {
                ttl: 2,
                df: false,
                udp_checksum_v4: false,
                ..v4
            },
            &g,
        );
        assert_eq!(back, want);
    }
}
