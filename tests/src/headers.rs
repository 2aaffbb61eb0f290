//! IP and transport headers byte by byte, for packets etherparse will not build: IPv4
//! options, odd fragment words, IPv6 extension-header chains, TCP options, truncated or
//! inconsistent lengths. Checksums: the IPv4 header's is computed; TCP, UDP and ICMP
//! checksums are left 0 (gwlb carries them untouched).

use crate::checksum::set_ipv4_checksum;

/// The fields of an IPv4 header (version 4, TOS 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Protocol number.
    pub proto: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub id: u16,
    /// The flags and fragment-offset word (0x4000: DF, 0x2000: MF, offset in 8-byte units).
    pub frag: u16,
}

impl Ipv4 {
    /// TTL 64, identification 0x1234, not fragmented, DF clear.
    pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            ttl: 64,
            id: 0x1234,
            frag: 0,
        }
    }

    /// The header with `opts` (a multiple of 4 bytes) for `payload_len` bytes behind it,
    /// checksum set.
    pub fn header(&self, opts: &[u8], payload_len: usize) -> Vec<u8> {
        assert_eq!(opts.len() % 4, 0, "options are whole words");
        let hl = 20 + opts.len();
        let mut h = vec![0x40 | (hl / 4) as u8, 0];
        h.extend_from_slice(&((hl + payload_len) as u16).to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&self.frag.to_be_bytes());
        h.extend_from_slice(&[self.ttl, self.proto, 0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(opts);
        set_ipv4_checksum(&mut h);
        h
    }

    /// The whole packet: the header with `opts`, then `payload`.
    pub fn packet(&self, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut p = self.header(opts, payload.len());
        p.extend_from_slice(payload);
        p
    }
}

/// An IPv4 packet with TTL 64 and identification 0x1234: `opts` (a multiple of 4 bytes), the
/// flags/fragment-offset word `frag`, `l4` bytes.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, opts: &[u8], frag: u16, l4: &[u8]) -> Vec<u8> {
    Ipv4 {
        frag,
        ..Ipv4::new(src, dst, proto)
    }
    .packet(opts, l4)
}

/// A fixed IPv6 header (traffic class and flow label 0) for `payload_len` bytes, whose first
/// next header is `next`.
pub fn ipv6_header(
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    hop_limit: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next, hop_limit]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

/// An IPv6 packet (hop limit 64) whose first next header is `next`, with `body` (extension
/// headers and L4).
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, body: &[u8]) -> Vec<u8> {
    let mut h = ipv6_header(src, dst, next, 64, body.len());
    h.extend_from_slice(body);
    h
}

/// A generic IPv6 extension header (Hop-by-Hop, Routing, Destination Options, ...) of
/// `units` * 8 bytes (at least 1 unit), followed by `next`, filled by one PadN option (the
/// Hop-by-Hop / Destination Options layout).
pub fn ipv6_ext(next: u8, units: usize) -> Vec<u8> {
    let mut h = vec![0u8; 8 * units.max(1)];
    h[0] = next;
    h[1] = (units.max(1) - 1) as u8;
    h[2] = 1;
    h[3] = (h.len() - 4) as u8;
    h
}

/// An IPv6 Fragment header: `offset` in 8-byte units, the M flag, identification `id`.
pub fn ipv6_fragment(next: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

/// A UDP datagram whose length field covers `payload`.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A TCP segment: sequence number `seq`, acknowledgement 0, window 65535, data offset 5 +
/// `opts` words (`opts` a multiple of 4 bytes).
pub fn tcp_segment(
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0, "options are whole words");
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.push(((5 + opts.len() / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(opts);
    t.extend_from_slice(payload);
    t
}

/// A TCP segment with sequence number 1000 and `opts` (see [`tcp_segment`]).
pub fn tcp_opts(sport: u16, dport: u16, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    tcp_segment(sport, dport, 1000, flags, opts, payload)
}

/// A TCP segment with sequence number 1000 and no options.
pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_opts(sport, dport, flags, &[], payload)
}

/// ICMP / ICMPv6 message: type, code, 4 zero bytes of rest-of-header, body.
pub fn icmp(ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut i = vec![ty, code, 0, 0, 0, 0, 0, 0];
    i.extend_from_slice(body);
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4Header, Ipv6Header};

    /// The hand-built headers say what etherparse reads.
    #[test]
    fn headers_parse_as_built() {
        let p = ipv4(
            [10, 1, 0, 1],
            [10, 2, 0, 1],
            17,
            &[1, 1, 1, 0],
            0x4000,
            &udp(1, 2, b"x"),
        );
        let (h, rest) = Ipv4Header::from_slice(&p).expect("ipv4");
        assert_eq!((h.ihl(), h.total_len, h.identification), (6, 33, 0x1234));
        assert!(h.dont_fragment);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(rest, &udp(1, 2, b"x")[..]);
        let p = ipv6([0xfd; 16], [0xfe; 16], 44, &ipv6_fragment(17, 3, true, 9));
        let (h, rest) = Ipv6Header::from_slice(&p).expect("ipv6");
        assert_eq!((h.payload_length, h.hop_limit), (8, 64));
        assert_eq!(rest, &[17, 0, 0, 0x19, 0, 0, 0, 9]);
        assert_eq!(tcp(1, 2, 0x02, b"")[12], 0x50);
        assert_eq!(ipv6_ext(6, 2)[..4], [6, 1, 1, 12]);
    }
}
