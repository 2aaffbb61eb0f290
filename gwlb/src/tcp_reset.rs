//! TCP resets for flows the gateway has to end (`tcp_rst_on_drop`).
//!
//! When a TCP packet is dropped because its flow can no longer be served (its appliance was
//! deregistered and has drained under `no_rebalance`, or no appliance is healthy and the
//! group fails closed), the gateway can answer it with a RST instead of dropping it silently,
//! so the endpoints learn at once that the connection is gone instead of retransmitting into
//! a black hole. Each end gets its RST in answer to its own next packet: both ends of a
//! connection are reset as soon as they send.
//!
//! The RST is built in place in the dropped packet's buffer (nothing is allocated) and sent
//! back out the port it came in on, to the MAC it came from, per RFC 9293 section 3.10.7.1:
//! if the packet carried an ACK, `seq = its ack`, flags `RST`; otherwise `seq = 0`,
//! `ack = its seq + its length` (SYN and FIN count one), flags `RST|ACK`. IP options and
//! IPv6 extension headers are not copied; VLAN tags are kept.

use crate::packet_buf::PacketBuf;
use crate::parse::{ParsedPacket, TcpFlags, L3};
use crate::wire::{checksum, ethernet, ipv4, ipv6, proto, tcp};

/// TTL / hop limit of the resets.
const RESET_TTL: u8 = 64;
/// A reset is a bare TCP header.
const SEGMENT_LEN: u16 = tcp::HEADER_LEN as u16;

/// Turns `buf`, holding the TCP packet `p`, into the RST that answers it (addresses, ports and
/// MACs swapped). Returns `false`, leaving the buffer unusable for anything but a drop, when
/// the packet must not be answered: not TCP, a RST itself, or a non-first fragment.
pub fn reflect_rst<B: PacketBuf>(buf: &mut B, p: &ParsedPacket) -> bool {
    if p.protocol != proto::TCP || p.tcp_flags.0 & TcpFlags::RST != 0 || p.fragment.is_some() {
        return false;
    }
    let Some(l4) = p.l4_offset.map(usize::from) else {
        return false;
    };
    let l3 = usize::from(p.l3_offset);
    let ip_end = l3 + usize::from(p.l3_len);
    let d = buf.data();
    if d.len() < l4 + tcp::HEADER_LEN || ip_end < l4 + tcp::HEADER_LEN {
        return false;
    }
    let seg = tcp::Packet::new_unchecked(&d[l4..]);
    let (seq, ack, header_len) = (seg.seq_number(), seg.ack_number(), seg.header_len());
    let flags = p.tcp_flags.0;
    let payload = ip_end.saturating_sub(l4 + header_len) as u32;
    let (rst_seq, rst_ack, rst_flags) = if flags & TcpFlags::ACK != 0 {
        (ack, 0, TcpFlags::RST)
    } else {
        let syn_fin = u32::from(flags & TcpFlags::SYN != 0) + u32::from(flags & TcpFlags::FIN != 0);
        (
            0,
            seq.wrapping_add(payload).wrapping_add(syn_fin),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    let v6 = p.l3 == L3::Ipv6;
    let ip_len = if v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let total = l3 + ip_len + tcp::HEADER_LEN;
    let len = buf.data().len();
    if len < total {
        return false;
    }
    let _ = buf.trim(len - total);

    let d = buf.data_mut();
    // Ethernet: back to the sender (`l3 >= 14`, so the header is there).
    ethernet::Frame::new_unchecked(&mut *d).swap_addrs();

    let (src_ip, dst_ip) = (p.dst, p.src);
    let (ip, seg) = d[l3..total].split_at_mut(ip_len);
    let pseudo = if v6 {
        let (s, d) = (src_ip.0, dst_ip.0);
        ipv6::Repr {
            src_addr: s,
            dst_addr: d,
            next_header: proto::TCP,
            payload_len: SEGMENT_LEN,
            hop_limit: RESET_TTL,
        }
        .emit(&mut ipv6::Packet::new_unchecked(ip));
        checksum::pseudo_header_v6(&s, &d, proto::TCP, SEGMENT_LEN)
    } else {
        let (s, d) = (src_ip.low_octets(), dst_ip.low_octets());
        ipv4::Repr {
            src_addr: s,
            dst_addr: d,
            protocol: proto::TCP,
            payload_len: SEGMENT_LEN,
            ttl: RESET_TTL,
        }
        .emit(&mut ipv4::Packet::new_unchecked(ip));
        checksum::pseudo_header_v4(&s, &d, proto::TCP, SEGMENT_LEN)
    };
    let mut seg = tcp::Packet::new_unchecked(seg);
    tcp::Repr {
        src_port: p.dst_port,
        dst_port: p.src_port,
        seq_number: rst_seq,
        ack_number: rst_ack,
        flags: TcpFlags(rst_flags),
        window_len: 0,
    }
    .emit(&mut seg);
    seg.fill_checksum(pseudo);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet_buf::VecBuf;
    use crate::parse::parse_frame;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn tcp_frame(v6: bool, syn: bool, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(A, B);
        let b = if v6 {
            b.ipv6([0xfd; 16], [0xfe; 16], 30)
        } else {
            b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 30)
        };
        let mut b = b.tcp(40000, 443, 1000, 4096);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        f
    }

    fn reset_of(frame: &[u8]) -> Option<Vec<u8>> {
        let p = parse_frame(frame).unwrap();
        let mut buf = VecBuf::with_headroom(frame, 0);
        reflect_rst(&mut buf, &p).then(|| buf.data().to_vec())
    }

    /// Checks addresses, ports, flags, seq/ack and both checksums with etherparse.
    fn check(rst: &[u8], v6: bool, seq: u32, ack: Option<u32>) {
        let eth = ethernet::Frame::new_checked(rst).unwrap();
        assert_eq!(eth.dst_addr().0, A, "back to the sender's MAC");
        assert_eq!(eth.src_addr().0, B);
        let s = SlicedPacket::from_ethernet(rst).expect("valid frame");
        match &s.net {
            Some(NetSlice::Ipv4(ip)) => {
                assert!(!v6);
                let h = ip.header().to_header();
                assert_eq!(h.source, [10, 0, 0, 2]);
                assert_eq!(h.destination, [10, 0, 0, 1]);
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
            }
            Some(NetSlice::Ipv6(ip)) => {
                assert!(v6);
                assert_eq!(ip.header().source(), [0xfe; 16]);
                assert_eq!(ip.header().destination(), [0xfd; 16]);
            }
            _ => panic!("no IP"),
        }
        let Some(TransportSlice::Tcp(t)) = s.transport else {
            panic!("no TCP")
        };
        assert_eq!((t.source_port(), t.destination_port()), (443, 40000));
        assert!(t.rst());
        assert_eq!(t.sequence_number(), seq);
        assert_eq!(t.ack(), ack.is_some());
        if let Some(a) = ack {
            assert_eq!(t.acknowledgment_number(), a);
        }
        assert!(t.payload().is_empty());
        let expect = match &s.net {
            Some(NetSlice::Ipv4(ip)) => t
                .to_header()
                .calc_checksum_ipv4(&ip.header().to_header(), &[])
                .unwrap(),
            Some(NetSlice::Ipv6(ip)) => t
                .to_header()
                .calc_checksum_ipv6(&ip.header().to_header(), &[])
                .unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(t.checksum(), expect, "TCP checksum");
    }

    #[test]
    fn ack_segment_gets_rst_with_its_ack_as_seq() {
        for v6 in [false, true] {
            let rst = reset_of(&tcp_frame(v6, false, Some(777), b"hello")).unwrap();
            check(&rst, v6, 777, None);
            assert_eq!(rst.len(), 14 + if v6 { 40 } else { 20 } + 20);
        }
    }

    #[test]
    fn syn_gets_rst_ack_of_seq_plus_one() {
        for v6 in [false, true] {
            let rst = reset_of(&tcp_frame(v6, true, None, b"")).unwrap();
            check(&rst, v6, 0, Some(1001));
        }
    }

    #[test]
    fn payload_without_ack_is_acknowledged_whole() {
        let rst = reset_of(&tcp_frame(false, false, None, b"12345")).unwrap();
        check(&rst, false, 0, Some(1005));
    }

    #[test]
    fn resets_and_non_tcp_are_never_answered() {
        let mut rst = tcp_frame(false, false, Some(1), b"");
        // Set RST on the original.
        let l4 = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
        let mut seg = tcp::Packet::new_unchecked(&mut rst[l4..]);
        let flags = seg.flags().0;
        seg.set_flags(TcpFlags(flags | TcpFlags::RST));
        assert!(reset_of(&rst).is_none());
        let b = etherparse::PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 30)
            .udp(1, 2);
        let mut udp = Vec::new();
        b.write(&mut udp, b"x").unwrap();
        assert!(reset_of(&udp).is_none());
    }
}
