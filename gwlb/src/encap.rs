//! Geneve encapsulation toward an appliance, in the AWS Gateway Load Balancer layout.
//!
//! The original IP packet (its Ethernet header and any Ethernet padding removed, otherwise
//! untouched) is wrapped in: outer Ethernet, outer IPv4 (or IPv6), UDP to port 6081, an
//! 8-byte Geneve header and the three AWS class-0x0108 options (endpoint id, attachment id,
//! flow cookie) — 68 bytes of overhead above IPv4, 88 above IPv6.
//!
//! Everything that is the same for every packet to one appliance is built once into an
//! [`EncapTemplate`]; per packet the data path copies the template in front of the inner
//! packet and patches five fields (IP length and checksum, UDP source port and length,
//! Geneve protocol type and flow cookie). The IPv4 header checksum is finished
//! incrementally from a sum precomputed over the constant fields.
//!
//! Choices, each deliberate:
//! - Outer IPv4 has DF set and identification 0 (an atomic datagram, RFC 6864): gwlb never
//!   fragments the outer packet; oversize packets are refused before encapsulation.
//! - The UDP checksum is 0 over IPv4 (allowed by RFC 8926 section 3.3 and RFC 768; AWS's
//!   appliances send 0 themselves) and computed in full over IPv6 (RFC 8200).
//! - The UDP source port is derived from the symmetric flow hash, in 49152..=65535, so
//!   appliances that spread load by outer 5-tuple see each flow on one stable port.
//! - The flow cookie is the symmetric flow hash; when an AWS-style appliance echoes it back,
//!   decapsulation checks it against the inner packet's flow.

use core::net::IpAddr;

use geneve::AwsOptions;

use crate::packet_buf::PacketBuf;

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// Geneve base header plus the three AWS options.
pub const GENEVE_AWS_LEN: usize = geneve::HEADER_LEN + geneve::AWS_OPTIONS_LEN;
/// Outer Ethernet + IPv4 + UDP + Geneve with AWS options.
pub const OUTER_V4_LEN: usize = ETH_LEN + 20 + 8 + GENEVE_AWS_LEN;
/// Outer Ethernet + IPv6 + UDP + Geneve with AWS options.
pub const OUTER_V6_LEN: usize = ETH_LEN + 40 + 8 + GENEVE_AWS_LEN;
/// Bytes added above the outer IP layer's MTU accounting: IPv4 outer (20 + 8 + 8 + 32).
pub const OVERHEAD_V4: usize = OUTER_V4_LEN - ETH_LEN;
/// Bytes added with an IPv6 outer header (40 + 8 + 8 + 32).
pub const OVERHEAD_V6: usize = OUTER_V6_LEN - ETH_LEN;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;
/// Offset of the flow cookie's 4 data bytes inside the Geneve header: base header (8),
/// endpoint-id option (4 + 8), attachment-id option (4 + 8), cookie option header (4).
const COOKIE_IN_GENEVE: usize = 8 + 12 + 12 + 4;

/// Why a packet could not be encapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The buffer has too little headroom for the outer headers.
    #[error("not enough headroom for the outer headers")]
    NoHeadroom,
    /// The packet is shorter than the lengths the parser reported.
    #[error("packet shorter than its parsed lengths")]
    Truncated,
    /// The encapsulated packet would exceed the outer link's MTU.
    #[error("encapsulated packet exceeds the outer MTU")]
    Oversize,
}

/// Everything constant about the packets sent to one appliance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncapParams {
    /// Our MAC on the appliance-facing port.
    pub src_mac: [u8; 6],
    /// The appliance's MAC (or the next hop toward it).
    pub dst_mac: [u8; 6],
    /// Our tunnel address (the outer source; appliances filter on it).
    pub src_ip: IpAddr,
    /// The appliance's address.
    pub dst_ip: IpAddr,
    /// Geneve VNI (24 bits).
    pub vni: u32,
    /// Outer TTL / hop limit.
    pub ttl: u8,
    /// AWS option type 1.
    pub endpoint_id: u64,
    /// AWS option type 2.
    pub attachment_id: u64,
    /// Largest outer IP packet the appliance-facing link carries (its MTU).
    pub mtu: u16,
}

/// Prebuilt outer headers for one appliance. Built by the control plane, read by workers.
#[derive(Clone, Debug)]
pub struct EncapTemplate {
    hdr: [u8; OUTER_V6_LEN],
    len: usize,
    ipv6: bool,
    /// One's-complement sum of the outer IPv4 header with length and checksum zero.
    ipv4_partial_sum: u32,
    /// One's-complement sum of the IPv6 pseudo-header's addresses and next header.
    ipv6_pseudo_sum: u32,
    /// Largest inner IP packet that fits the MTU once encapsulated.
    max_inner_len: usize,
}

impl EncapTemplate {
    /// Builds the template. Returns `None` when source and destination IP versions differ
    /// or the VNI does not fit 24 bits.
    pub fn new(p: &EncapParams) -> Option<Self> {
        if p.vni >= 1 << 24 {
            return None;
        }
        let mut hdr = [0u8; OUTER_V6_LEN];
        hdr[0..6].copy_from_slice(&p.dst_mac);
        hdr[6..12].copy_from_slice(&p.src_mac);
        let opts = AwsOptions {
            endpoint_id: p.endpoint_id,
            attachment_id: p.attachment_id,
            flow_cookie: 0,
        };
        let (len, ipv6, ipv4_partial_sum, ipv6_pseudo_sum) = match (p.src_ip, p.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                hdr[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let ip = &mut hdr[ETH_LEN..ETH_LEN + 20];
                ip[0] = 0x45;
                ip[6] = 0x40; // DF
                ip[8] = p.ttl;
                ip[9] = IPPROTO_UDP;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let sum = ones_sum(0, &hdr[ETH_LEN..ETH_LEN + 20]);
                (OUTER_V4_LEN, false, sum, 0)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                hdr[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                let ip = &mut hdr[ETH_LEN..ETH_LEN + 40];
                ip[0] = 0x60;
                ip[6] = IPPROTO_UDP;
                ip[7] = p.ttl;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                let mut sum = ones_sum(0, &hdr[ETH_LEN + 8..ETH_LEN + 40]);
                sum += u32::from(IPPROTO_UDP);
                (OUTER_V6_LEN, true, 0, sum)
            }
            _ => return None,
        };
        let udp = len - GENEVE_AWS_LEN - 8;
        hdr[udp + 2..udp + 4].copy_from_slice(&geneve::UDP_PORT.to_be_bytes());
        geneve::emit_aws_header(&mut hdr[udp + 8..len], geneve::PROTO_IPV4, p.vni, &opts);
        let overhead = len - ETH_LEN;
        Some(Self {
            hdr,
            len,
            ipv6,
            ipv4_partial_sum,
            ipv6_pseudo_sum,
            max_inner_len: usize::from(p.mtu).saturating_sub(overhead),
        })
    }

    /// Length of the outer headers including Ethernet.
    pub fn outer_len(&self) -> usize {
        self.len
    }

    /// Largest inner IP packet this appliance link carries once encapsulated.
    pub fn max_inner_len(&self) -> usize {
        self.max_inner_len
    }

    /// Encapsulates the frame in `buf`, whose Ethernet (+VLAN) header is `l2_len` bytes and
    /// whose IP packet is `ip_len` bytes (anything after it is Ethernet padding and is
    /// removed). `flow_hash` is the symmetric flow hash: it becomes the flow cookie and
    /// selects the UDP source port. On error the buffer is unchanged.
    ///
    /// Cost: a 82-byte copy, a 4-word checksum fold and a handful of stores.
    #[inline]
    pub fn encapsulate<B: PacketBuf>(
        &self,
        buf: &mut B,
        l2_len: usize,
        ip_len: usize,
        inner_ipv6: bool,
        flow_hash: u32,
    ) -> Result<(), EncapError> {
        let frame_len = buf.data().len();
        if l2_len + ip_len > frame_len {
            return Err(EncapError::Truncated);
        }
        if ip_len > self.max_inner_len {
            return Err(EncapError::Oversize);
        }
        let padding = frame_len - l2_len - ip_len;
        if self.len > l2_len && buf.headroom() < self.len - l2_len {
            return Err(EncapError::NoHeadroom);
        }
        // Cannot fail: checked above.
        let _ = buf.trim(padding);
        if self.len >= l2_len {
            let _ = buf.prepend(self.len - l2_len);
        } else {
            let _ = buf.adj(l2_len - self.len);
        }
        let out = buf.data_mut();
        let hdr = &mut out[..self.len];
        hdr.copy_from_slice(&self.hdr[..self.len]);

        let geneve_off = self.len - GENEVE_AWS_LEN;
        let udp_off = geneve_off - 8;
        let udp_len = (8 + GENEVE_AWS_LEN + ip_len) as u16;
        let sport = 0xc000 | (flow_hash as u16 & 0x3fff);
        hdr[udp_off..udp_off + 2].copy_from_slice(&sport.to_be_bytes());
        hdr[udp_off + 4..udp_off + 6].copy_from_slice(&udp_len.to_be_bytes());
        let proto = if inner_ipv6 {
            geneve::PROTO_IPV6
        } else {
            geneve::PROTO_IPV4
        };
        hdr[geneve_off + 2..geneve_off + 4].copy_from_slice(&proto.to_be_bytes());
        let cookie = geneve_off + COOKIE_IN_GENEVE;
        hdr[cookie..cookie + 4].copy_from_slice(&flow_hash.to_be_bytes());

        if !self.ipv6 {
            let total = udp_len + 20;
            hdr[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&total.to_be_bytes());
            let csum = fold(self.ipv4_partial_sum + u32::from(total));
            hdr[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&(!csum).to_be_bytes());
        } else {
            hdr[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&udp_len.to_be_bytes());
            // Pseudo-header (addresses, length, next header) + UDP header + payload.
            let sum = ones_sum(self.ipv6_pseudo_sum + u32::from(udp_len), &out[udp_off..]);
            let mut csum = !fold(sum);
            if csum == 0 {
                csum = 0xffff;
            }
            out[udp_off + 6..udp_off + 8].copy_from_slice(&csum.to_be_bytes());
        }
        Ok(())
    }
}

/// Adds `bytes` as big-endian 16-bit words to a one's-complement accumulator.
pub fn ones_sum(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early so long payloads cannot overflow the accumulator.
        if acc & 0x8000_0000 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a one's-complement accumulator to 16 bits.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet_buf::VecBuf;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn params(src: IpAddr, dst: IpAddr) -> EncapParams {
        EncapParams {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: src,
            dst_ip: dst,
            vni: 0x123456,
            ttl: 64,
            endpoint_id: 0x1122_3344_5566_7788,
            attachment_id: 0x99aa_bbcc_ddee_ff00,
            mtu: 9000,
        }
    }

    fn inner_frame(payload_len: usize, padding: usize) -> Vec<u8> {
        let mut f = vec![0xaa; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = 20 + payload_len;
        let mut ip = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0,
            0,
            64,
            253,
            0,
            0,
        ];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        ip.extend((0..payload_len).map(|i| i as u8));
        f.extend_from_slice(&ip);
        f.extend(std::iter::repeat_n(0, padding));
        f
    }

    #[test]
    fn ipv4_outer_layout_and_checksum() {
        let p = params(
            Ipv4Addr::new(10, 9, 0, 1).into(),
            Ipv4Addr::new(10, 9, 0, 11).into(),
        );
        let t = EncapTemplate::new(&p).unwrap();
        let frame = inner_frame(26, 6);
        let mut b = VecBuf::new(&frame);
        t.encapsulate(&mut b, 14, 46, false, 0xdead_beef).unwrap();
        let out = b.data();
        assert_eq!(out.len(), 14 + 68 + 46);
        assert_eq!(&out[82..], &frame[14..60]);
        // IPv4 header checksum verifies to zero.
        assert_eq!(fold(ones_sum(0, &out[14..34])), 0xffff);
        assert_eq!(u16::from_be_bytes([out[16], out[17]]), 68 + 46);
        assert_eq!(u16::from_be_bytes([out[36], out[37]]), 6081);
        assert_eq!(u16::from_be_bytes([out[34], out[35]]), 0xc000 | 0x3eef);
        assert_eq!(u16::from_be_bytes([out[38], out[39]]), 8 + 40 + 46);
        assert_eq!(&out[78..82], &0xdead_beefu32.to_be_bytes());
        let g = geneve::Packet::new_checked(&out[42..]).unwrap();
        assert_eq!(g.vni(), 0x123456);
        assert_eq!(g.protocol_type(), geneve::PROTO_IPV4);
        let found = geneve::AwsOptions::find(g.options());
        assert_eq!(found.endpoint_id, Some(p.endpoint_id));
        assert_eq!(found.attachment_id, Some(p.attachment_id));
        assert_eq!(found.flow_cookie, Some(0xdead_beef));
    }

    #[test]
    fn ipv6_outer_udp_checksum_verifies() {
        let p = params(
            "fd00::1".parse::<Ipv6Addr>().unwrap().into(),
            "fd00::11".parse::<Ipv6Addr>().unwrap().into(),
        );
        let t = EncapTemplate::new(&p).unwrap();
        let frame = inner_frame(31, 0);
        let mut b = VecBuf::new(&frame);
        t.encapsulate(&mut b, 14, 51, false, 7).unwrap();
        let out = b.data();
        assert_eq!(out.len(), OUTER_V6_LEN + 51);
        let udp = &out[54..];
        let mut sum = ones_sum(0, &out[22..54]);
        sum += 17 + udp.len() as u32;
        assert_eq!(fold(ones_sum(sum, udp)), 0xffff);
    }

    #[test]
    fn refusals_leave_buffer_unchanged() {
        let mut p = params(
            Ipv4Addr::new(1, 1, 1, 1).into(),
            Ipv4Addr::new(2, 2, 2, 2).into(),
        );
        p.mtu = 100;
        let t = EncapTemplate::new(&p).unwrap();
        let frame = inner_frame(40, 0);
        let mut b = VecBuf::new(&frame);
        assert_eq!(
            t.encapsulate(&mut b, 14, 60, false, 1),
            Err(EncapError::Oversize)
        );
        assert_eq!(
            t.encapsulate(&mut b, 14, 61, false, 1),
            Err(EncapError::Truncated)
        );
        let mut small = VecBuf::with_headroom(&frame, 10);
        p.mtu = 9000;
        let t = EncapTemplate::new(&p).unwrap();
        assert_eq!(
            t.encapsulate(&mut small, 14, 60, false, 1),
            Err(EncapError::NoHeadroom)
        );
        assert_eq!(b.data(), &frame[..]);
        assert_eq!(small.data(), &frame[..]);
    }

    #[test]
    fn mixed_versions_rejected() {
        let p = params(Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into());
        assert!(EncapTemplate::new(&p).is_none());
    }
}
