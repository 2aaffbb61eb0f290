//! Path MTU discovery through the gateway: ICMP "fragmentation needed" (RFC 792, RFC 1191)
//! and ICMPv6 "packet too big" (RFC 4443) for user packets too large to encapsulate.
//!
//! Encapsulation adds 68 bytes (88 with an IPv6 outer header) toward an appliance. A user
//! packet that no longer fits the appliance port's MTU cannot be sent; an IPv4 packet with
//! DF set, and every IPv6 packet (IPv6 routers never fragment), is then answered with an
//! ICMP error carrying the largest inner packet that fits, so the sender lowers its path
//! MTU and retransmits smaller (what a router does on a smaller link). IPv4 packets without
//! DF are fragmented instead ([`crate::fragment`]).
//!
//! The error is built in place in the packet's buffer (nothing is allocated) and sent back
//! out the port the packet came in on, to the MAC it came from, from the gateway's own
//! address on that port; it quotes as much of the packet as fits in 576 bytes (IPv4, RFC
//! 1812 4.3.2.3) or 1280 (IPv6, RFC 4443 2.4 c). As RFC 1122 3.2.2 and RFC 4443 2.4 e ask,
//! no error answers an ICMP error, a non-first fragment, or a packet from or to a multicast
//! or broadcast address. The pipeline rate-limits the errors per worker
//! (`[dataplane] icmp_errors_per_s`).

use crate::packet_buf::PacketBuf;
use crate::parse::{IpAddrBytes, ParsedPacket, L3};
use crate::wire::{checksum, ethernet, icmp, ipv4, ipv6, proto, MacAddr};

/// TTL / hop limit of the errors.
const ERROR_TTL: u8 = 64;
/// Largest IPv4 ICMP error datagram (RFC 1812 4.3.2.3).
const MAX_V4_ERROR: usize = 576;
/// Largest IPv6 ICMP error packet: the minimum IPv6 MTU (RFC 4443 2.4 c).
const MAX_V6_ERROR: usize = 1280;

/// Whether `p` (a parsed user packet over its path MTU) may be answered with a "too big"
/// error: IPv4 with DF, or IPv6; not an ICMP error, not a non-first fragment, not from or to
/// a multicast or broadcast address.
pub fn answerable(frame: &[u8], p: &ParsedPacket) -> bool {
    if p.fragment.is_some_and(|f| !f.first) || p.icmp_error {
        return false;
    }
    match p.l3 {
        L3::Ipv4 => {
            let Some(h) = frame.get(usize::from(p.l3_offset)..) else {
                return false;
            };
            if h.len() < ipv4::HEADER_LEN || !ipv4::Packet::new_unchecked(h).dont_frag() {
                return false;
            }
            let (s, d) = (p.src.low_octets(), p.dst.low_octets());
            !(s[0] >= 224 || d[0] >= 224 || s == [0; 4])
        }
        L3::Ipv6 => p.src.0[0] != 0xff && p.dst.0[0] != 0xff && p.src != IpAddrBytes::default(),
        _ => false,
    }
}

/// Turns `buf`, holding the user packet `p`, into the "too big" error that answers it:
/// source `from` and `mac` (the gateway's address and MAC on the arrival port), the packet's
/// source as destination (the frame goes back to the MAC it came from), next-hop MTU `mtu`
/// (the largest packet that fits).
/// Returns `false`, leaving the buffer unchanged, when [`answerable`] says no or the buffer
/// lacks the headroom.
pub fn reflect<B: PacketBuf>(
    buf: &mut B,
    p: &ParsedPacket,
    from: &IpAddrBytes,
    mac: [u8; 6],
    mtu: u16,
) -> bool {
    if !answerable(buf.data(), p) {
        return false;
    }
    let v6 = p.l3 == L3::Ipv6;
    let (ip_len, max_error) = if v6 {
        (ipv6::HEADER_LEN, MAX_V6_ERROR)
    } else {
        (ipv4::HEADER_LEN, MAX_V4_ERROR)
    };
    let l2 = usize::from(p.l2_len);
    let l3 = usize::from(p.l3_offset);
    let packet_len = usize::from(p.l3_len);
    if l3 != l2 || buf.data().len() < l3 + packet_len {
        return false;
    }
    let grow = ip_len + icmp::HEADER_LEN;
    if buf.headroom() < grow {
        return false;
    }
    // The quote: the start of the offending packet, as much as fits.
    let quote_len = packet_len.min(max_error - grow);
    let len = buf.data().len();
    let _ = buf.trim(len - (l3 + quote_len));
    let _ = buf.prepend(grow);
    let d = buf.data_mut();
    // The L2 header (VLAN tags included) moves to the front, back to the sender.
    d.copy_within(grow..grow + l2, 0);
    let mut eth = ethernet::Frame::new_unchecked(&mut d[..l2]);
    eth.swap_addrs();
    eth.set_src_addr(MacAddr(mac));

    let icmp_len = (icmp::HEADER_LEN + quote_len) as u16;
    let (ip, msg) = d[l2..].split_at_mut(ip_len);
    let pseudo = if v6 {
        let dst = p.src.0;
        ipv6::Repr {
            src_addr: from.0,
            dst_addr: dst,
            next_header: proto::ICMPV6,
            payload_len: icmp_len,
            hop_limit: ERROR_TTL,
        }
        .emit(&mut ipv6::Packet::new_unchecked(ip));
        checksum::pseudo_header_v6(&from.0, &dst, proto::ICMPV6, icmp_len)
    } else {
        ipv4::Repr {
            src_addr: from.low_octets(),
            dst_addr: p.src.low_octets(),
            protocol: proto::ICMP,
            payload_len: icmp_len,
            ttl: ERROR_TTL,
        }
        .emit(&mut ipv4::Packet::new_unchecked(ip));
        0
    };
    let mut m = icmp::Packet::new_unchecked(&mut msg[..]);
    if v6 {
        m.set_msg_type(icmp::v6::PKT_TOO_BIG);
        m.set_msg_code(0);
        m.set_mtu_v6(u32::from(mtu));
    } else {
        m.set_msg_type(icmp::v4::DST_UNREACHABLE);
        m.set_msg_code(icmp::v4::FRAG_NEEDED);
        m.set_next_hop_mtu_v4(mtu);
    }
    m.set_checksum(0);
    let c = checksum::finish(checksum::sum(pseudo, &msg[..usize::from(icmp_len)]));
    icmp::Packet::new_unchecked(&mut msg[..]).set_checksum(c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet_buf::VecBuf;
    use crate::parse::parse_frame;
    use etherparse::{
        Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
    };

    const HOST: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn v4(df: bool, payload: usize) -> Vec<u8> {
        let mut ip = etherparse::Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::TCP,
            [10, 1, 0, 2],
            [10, 2, 0, 2],
        )
        .unwrap();
        ip.dont_fragment = df;
        let b = PacketBuilder::ethernet2(HOST, GW)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()));
        let mut out = Vec::new();
        b.tcp(40000, 443, 7, 1000)
            .write(&mut out, &vec![0x5a; payload])
            .unwrap();
        out
    }

    fn gw4() -> IpAddrBytes {
        IpAddrBytes::from(std::net::IpAddr::from([10, 1, 0, 1]))
    }

    #[test]
    fn ipv4_df_gets_fragmentation_needed_quoting_the_packet() {
        // (HOST's MAC ends 00 0a: the old frame's bytes under the unused field are not zero.)
        let f = v4(true, 1460);
        let p = parse_frame(&f).unwrap();
        let mut b = VecBuf::new(&f);
        assert!(reflect(&mut b, &p, &gw4(), GW, 1432));
        let out = b.data();
        assert_eq!(out.len(), 14 + MAX_V4_ERROR, "576-byte datagram");
        assert_eq!((&out[0..6], &out[6..12]), (&HOST[..], &GW[..]));
        let s = SlicedPacket::from_ethernet(out).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &s.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().source(), [10, 1, 0, 1]);
        assert_eq!(ip.header().destination(), [10, 1, 0, 2]);
        assert!(ip.header().to_header().calc_header_checksum() == ip.header().header_checksum());
        let Some(TransportSlice::Icmpv4(m)) = &s.transport else {
            panic!("not ICMP")
        };
        match m.icmp_type() {
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
            ) => assert_eq!(next_hop_mtu, 1432),
            t => panic!("{t:?}"),
        }
        assert!(checksum::verifies(0, &out[34..]), "ICMP checksum");
        assert_eq!(&out[38..40], &[0, 0], "the unused half-word is zero");
        assert_eq!(&out[42..42 + 548], &f[14..14 + 548], "the quote");
    }

    #[test]
    fn ipv6_gets_packet_too_big() {
        let b6 = PacketBuilder::ethernet2(HOST, GW).ipv6([0xfd; 16], [0xfe; 16], 64);
        let mut f = Vec::new();
        b6.udp(5000, 53).write(&mut f, &[1u8; 1400]).unwrap();
        let p = parse_frame(&f).unwrap();
        let from = IpAddrBytes([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let mut b = VecBuf::new(&f);
        assert!(reflect(&mut b, &p, &from, GW, 1412));
        let out = b.data();
        assert_eq!(out.len(), 14 + MAX_V6_ERROR);
        let s = SlicedPacket::from_ethernet(out).unwrap();
        let Some(TransportSlice::Icmpv6(m)) = &s.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(m.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1412 });
        let Some(NetSlice::Ipv6(ip)) = &s.net else {
            panic!()
        };
        let icmp = &out[54..];
        let pseudo = checksum::pseudo_header_v6(
            &ip.header().source(),
            &ip.header().destination(),
            proto::ICMPV6,
            icmp.len() as u16,
        );
        assert!(checksum::verifies(pseudo, icmp), "ICMPv6 checksum");
    }

    #[test]
    fn what_is_never_answered() {
        // IPv4 without DF.
        let f = v4(false, 1460);
        assert!(!answerable(&f, &parse_frame(&f).unwrap()));
        // An ICMP error.
        let mut e = Vec::new();
        PacketBuilder::ethernet2(HOST, GW)
            .ipv4([10, 1, 0, 2], [10, 2, 0, 2], 64)
            .icmpv4(Icmpv4Type::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
            ))
            .write(&mut e, &[0u8; 1400])
            .unwrap();
        e[20] |= 0x40; // DF
        assert!(!answerable(&e, &parse_frame(&e).unwrap()));
        // Multicast destination.
        let mut m = v4(true, 100);
        m[30..34].copy_from_slice(&[224, 0, 0, 5]);
        assert!(!answerable(&m, &parse_frame(&m).unwrap_or_default()));
        // No headroom: unchanged.
        let f = v4(true, 1460);
        let p = parse_frame(&f).unwrap();
        let mut b = VecBuf::with_headroom(&f, 8);
        assert!(!reflect(&mut b, &p, &gw4(), GW, 1432));
        assert_eq!(b.data(), &f[..]);
    }
}
