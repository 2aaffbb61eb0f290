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
//! - The flow cookie is the symmetric flow hash (stepped for each later TCP connection on the
//!   same 5-tuple, `flow_table::flow_cookie`); when an AWS-style appliance echoes it back,
//!   decapsulation checks it against the inner packet's flow.

use core::net::IpAddr;

use geneve::AwsOptions;

use crate::packet_buf::PacketBuf;
use crate::wire::{checksum, ethernet, ethertype, ipv4, ipv6, proto, udp, MacAddr};

/// Ethernet header length.
pub const ETH_LEN: usize = ethernet::HEADER_LEN;
/// Geneve base header plus the three AWS options.
pub const GENEVE_AWS_LEN: usize = geneve::AWS_HEADER_LEN;
/// Outer Ethernet + IPv4 + UDP + Geneve with AWS options.
pub const OUTER_V4_LEN: usize = ETH_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + GENEVE_AWS_LEN;
/// Outer Ethernet + IPv6 + UDP + Geneve with AWS options.
pub const OUTER_V6_LEN: usize = ETH_LEN + ipv6::HEADER_LEN + udp::HEADER_LEN + GENEVE_AWS_LEN;
/// Bytes added above the outer IP layer's MTU accounting: IPv4 outer (20 + 8 + 8 + 32).
pub const OVERHEAD_V4: usize = OUTER_V4_LEN - ETH_LEN;
/// Bytes added with an IPv6 outer header (40 + 8 + 8 + 32).
pub const OVERHEAD_V6: usize = OUTER_V6_LEN - ETH_LEN;

/// Outer UDP source ports: 14 bits of the flow hash in the dynamic range 49152..=65535
/// (RFC 6335 section 6; RFC 8926 section 3.3 asks for a flow-derived source port).
const SPORT_BASE: u16 = 0xc000;
const SPORT_HASH_BITS: u16 = 0x3fff;

/// Where the UDP header starts in outer headers of `outer_len` bytes.
const fn udp_at(outer_len: usize) -> usize {
    outer_len - GENEVE_AWS_LEN - udp::HEADER_LEN
}

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

/// The tenant an encapsulation is for, when it is not the target group's own user traffic
/// (an endpoint's: `config::Endpoint`): written over the template's VNI and AWS options
/// type 1 and 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AwsIdentity {
    /// The VNI (24 bits); `None`: the template's (the group's `geneve_vni`).
    pub vni: Option<u32>,
    /// AWS option type 1.
    pub endpoint_id: u64,
    /// AWS option type 2.
    pub attachment_id: u64,
}

/// Prebuilt outer headers for one appliance. Built by the control plane, read by workers.
#[derive(Clone, Debug)]
pub struct EncapTemplate {
    hdr: [u8; OUTER_V6_LEN],
    /// The VNI written in `hdr`.
    vni: u32,
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
        let opts = AwsOptions {
            endpoint_id: p.endpoint_id,
            attachment_id: p.attachment_id,
            flow_cookie: 0,
        };
        // Per packet the IP length and checksum, the UDP source port and length, the
        // Geneve protocol type and the flow cookie are patched in: they are 0 here.
        let (len, ipv6, ipv4_partial_sum, ipv6_pseudo_sum) = match (p.src_ip, p.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut ip = ipv4::Packet::new_unchecked(&mut hdr[ETH_LEN..][..ipv4::HEADER_LEN]);
                ipv4::Repr {
                    src_addr: s.octets(),
                    dst_addr: d.octets(),
                    protocol: proto::UDP,
                    payload_len: 0,
                    ttl: p.ttl,
                }
                .emit(&mut ip);
                ip.set_total_len(0);
                ip.set_checksum(0);
                let sum = checksum::sum(0, ip.into_inner());
                (OUTER_V4_LEN, false, sum, 0)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let (s, d) = (s.octets(), d.octets());
                ipv6::Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: proto::UDP,
                    payload_len: 0,
                    hop_limit: p.ttl,
                }
                .emit(&mut ipv6::Packet::new_unchecked(&mut hdr[ETH_LEN..]));
                let sum = checksum::pseudo_addresses_v6(&s, &d, proto::UDP);
                (OUTER_V6_LEN, true, 0, sum)
            }
            _ => return None,
        };
        ethernet::Repr {
            src_addr: MacAddr(p.src_mac),
            dst_addr: MacAddr(p.dst_mac),
            ethertype: ethertype::of_ip(ipv6),
        }
        .emit(&mut ethernet::Frame::new_unchecked(&mut hdr[..]));
        let udp = udp_at(len);
        let mut u = udp::Packet::new_unchecked(&mut hdr[udp..len - GENEVE_AWS_LEN]);
        udp::Repr {
            src_port: 0,
            dst_port: geneve::UDP_PORT,
            payload_len: 0,
        }
        .emit(&mut u);
        u.set_length(0);
        geneve::emit_aws_header(
            &mut hdr[len - GENEVE_AWS_LEN..len],
            geneve::PROTO_IPV4,
            p.vni,
            &opts,
        );
        let overhead = len - ETH_LEN;
        Some(Self {
            hdr,
            vni: p.vni,
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
    /// removed). `flow_hash` is the flow's cookie (the symmetric flow hash for the first
    /// connection on a 5-tuple, `flow_table::flow_cookie` for later ones): it becomes the flow cookie and
    /// selects the UDP source port. On error the buffer is unchanged.
    ///
    /// Cost: a fixed-size 82-byte copy (inlined, no `memcpy` call), a 2-word checksum fold
    /// and a handful of stores; every field is written through a wire view over a
    /// fixed-size array, so no store is bounds-checked.
    #[inline(always)]
    pub fn encapsulate<B: PacketBuf>(
        &self,
        buf: &mut B,
        l2_len: usize,
        ip_len: usize,
        inner_ipv6: bool,
        flow_hash: u32,
    ) -> Result<(), EncapError> {
        self.encapsulate_as(buf, l2_len, ip_len, inner_ipv6, flow_hash, None)
    }

    /// [`EncapTemplate::encapsulate`] for the tenant `identity` (`None`: the template's
    /// own, the group's user traffic): its VNI and ids are patched in with the per-packet
    /// fields (three more stores).
    #[inline(always)]
    pub fn encapsulate_as<B: PacketBuf>(
        &self,
        buf: &mut B,
        l2_len: usize,
        ip_len: usize,
        inner_ipv6: bool,
        flow_hash: u32,
        identity: Option<&AwsIdentity>,
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
        let udp_len = (udp::HEADER_LEN + GENEVE_AWS_LEN + ip_len) as u16;
        let patch = Patch {
            sport: SPORT_BASE | (flow_hash as u16 & SPORT_HASH_BITS),
            udp_len,
            protocol_type: if inner_ipv6 {
                geneve::PROTO_IPV6
            } else {
                geneve::PROTO_IPV4
            },
            flow_cookie: flow_hash,
            identity: identity.map(|id| (id.vni.unwrap_or(self.vni), id)),
        };
        // The buffer now holds the outer headers and the inner packet: the `else` branches
        // cannot be taken.
        if !self.ipv6 {
            let Some(hdr) = out.first_chunk_mut::<OUTER_V4_LEN>() else {
                return Err(EncapError::Truncated);
            };
            hdr.copy_from_slice(&self.hdr[..OUTER_V4_LEN]);
            patch.apply(hdr);
            let total = udp_len + ipv4::HEADER_LEN as u16;
            let mut ip = ipv4::Packet::new_unchecked(&mut hdr[ETH_LEN..]);
            ip.set_total_len(total);
            // The template's sum covers every other word (its length and checksum are 0).
            ip.set_checksum(checksum::finish(self.ipv4_partial_sum + u32::from(total)));
        } else {
            let Some((hdr, inner)) = out.split_first_chunk_mut::<OUTER_V6_LEN>() else {
                return Err(EncapError::Truncated);
            };
            hdr.copy_from_slice(&self.hdr);
            patch.apply(hdr);
            ipv6::Packet::new_unchecked(&mut hdr[ETH_LEN..]).set_payload_len(udp_len);
            // Pseudo-header (addresses, length, next header) + UDP header + payload. The
            // outer part is 48 bytes: splitting the sum there changes nothing.
            const UDP_AT: usize = udp_at(OUTER_V6_LEN);
            let acc = self.ipv6_pseudo_sum + u32::from(udp_len);
            let acc = checksum::sum(checksum::sum(acc, &hdr[UDP_AT..]), inner);
            udp::Packet::new_unchecked(&mut hdr[UDP_AT..]).set_checksum(udp::checksum_field(acc));
        }
        Ok(())
    }
}

/// The per-packet fields of UDP and Geneve, the same for both outer IP versions.
struct Patch<'a> {
    sport: u16,
    udp_len: u16,
    protocol_type: u16,
    flow_cookie: u32,
    /// A tenant's VNI and ids, written over the template's.
    identity: Option<(u32, &'a AwsIdentity)>,
}

impl Patch<'_> {
    /// Writes the fields into a copy of a template of `N` bytes (every offset is a constant
    /// of `N`: no bounds check).
    #[inline(always)]
    fn apply<const N: usize>(&self, hdr: &mut [u8; N]) {
        let (head, gen) = hdr.split_at_mut(N - GENEVE_AWS_LEN);
        let mut u = udp::Packet::new_unchecked(&mut head[udp_at(N)..]);
        u.set_src_port(self.sport);
        u.set_length(self.udp_len);
        geneve::Packet::new_unchecked(&mut *gen).set_protocol_type(self.protocol_type);
        geneve::set_aws_flow_cookie(gen, self.flow_cookie);
        if let Some((vni, id)) = self.identity {
            patch_identity(gen, vni, id);
        }
    }
}

/// A tenant's VNI and ids over a template's ([`Patch::identity`]); out of line, so that a
/// group's own traffic carries none of it.
#[inline(never)]
fn patch_identity(geneve_header: &mut [u8], vni: u32, id: &AwsIdentity) {
    geneve::set_aws_identity(geneve_header, vni, id.endpoint_id, id.attachment_id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet_buf::VecBuf;
    use crate::wire::checksum::{fold, sum as ones_sum};
    use core::net::{Ipv4Addr, Ipv6Addr};

    /// The outer headers of `ipv4_outer_layout_and_checksum`, as the implementation before the
    /// wire layer wrote them (byte for byte).
    static OUTER_V4_BYTES: [u8; 82] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x72, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0x5e, 0x0a, 0x09, 0x00, 0x01,
        0x0a, 0x09, 0x00, 0x0b, 0xfe, 0xef, 0x17, 0xc1, 0x00, 0x5e, 0x00, 0x00, 0x08, 0x00, 0x08,
        0x00, 0x12, 0x34, 0x56, 0x00, 0x01, 0x08, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
        0x77, 0x88, 0x01, 0x08, 0x02, 0x02, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x01,
        0x08, 0x03, 0x01, 0xde, 0xad, 0xbe, 0xef,
    ];

    /// The outer headers of `outer_headers_are_unchanged`'s IPv6 case, from the same source.
    static OUTER_V6_BYTES: [u8; 102] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x63, 0x11, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0xc0, 0x07, 0x17, 0xc1, 0x00, 0x63,
        0x5e, 0x43, 0x08, 0x00, 0x86, 0xdd, 0x12, 0x34, 0x56, 0x00, 0x01, 0x08, 0x01, 0x02, 0x11,
        0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x01, 0x08, 0x02, 0x02, 0x99, 0xaa, 0xbb, 0xcc,
        0xdd, 0xee, 0xff, 0x00, 0x01, 0x08, 0x03, 0x01, 0x00, 0x00, 0x00, 0x07,
    ];

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
    fn outer_headers_are_unchanged() {
        let p = params(
            Ipv4Addr::new(10, 9, 0, 1).into(),
            Ipv4Addr::new(10, 9, 0, 11).into(),
        );
        let mut b = VecBuf::new(&inner_frame(26, 6));
        let t = EncapTemplate::new(&p).unwrap();
        t.encapsulate(&mut b, 14, 46, false, 0xdead_beef).unwrap();
        assert_eq!(&b.data()[..OUTER_V4_LEN], &OUTER_V4_BYTES[..]);

        let p = params(
            "fd00::1".parse::<Ipv6Addr>().unwrap().into(),
            "fd00::11".parse::<Ipv6Addr>().unwrap().into(),
        );
        let mut b = VecBuf::new(&inner_frame(31, 0));
        let t = EncapTemplate::new(&p).unwrap();
        t.encapsulate(&mut b, 14, 51, true, 7).unwrap();
        assert_eq!(&b.data()[..OUTER_V6_LEN], &OUTER_V6_BYTES[..]);
    }

    /// A tenant's identity written per packet gives the bytes of a template built with it
    /// (both outer families: the IPv6 UDP checksum covers the patched options).
    #[test]
    fn an_identity_patches_like_a_template_built_with_it() {
        let addrs: [(IpAddr, IpAddr); 2] = [
            (
                Ipv4Addr::new(10, 9, 0, 1).into(),
                Ipv4Addr::new(10, 9, 0, 11).into(),
            ),
            (
                "fd00::1".parse::<Ipv6Addr>().unwrap().into(),
                "fd00::11".parse::<Ipv6Addr>().unwrap().into(),
            ),
        ];
        for (src, dst) in addrs {
            let p = params(src, dst);
            let id = AwsIdentity {
                vni: Some(0x00ab_cdef),
                endpoint_id: 0x0102_0304_0506_0708,
                attachment_id: 42,
            };
            let tenant = EncapParams {
                vni: 0x00ab_cdef,
                endpoint_id: id.endpoint_id,
                attachment_id: id.attachment_id,
                ..p
            };
            let frame = inner_frame(26, 6);
            let (mut patched, mut fresh) = (VecBuf::new(&frame), VecBuf::new(&frame));
            let t = EncapTemplate::new(&p).unwrap();
            t.encapsulate_as(&mut patched, 14, 46, false, 9, Some(&id))
                .unwrap();
            EncapTemplate::new(&tenant)
                .unwrap()
                .encapsulate(&mut fresh, 14, 46, false, 9)
                .unwrap();
            assert_eq!(patched.data(), fresh.data());
            // Without a VNI of its own the tenant keeps the template's.
            let mut kept = VecBuf::new(&frame);
            let id = AwsIdentity { vni: None, ..id };
            t.encapsulate_as(&mut kept, 14, 46, false, 9, Some(&id))
                .unwrap();
            let off = if src.is_ipv4() { 42 } else { 62 };
            assert_eq!(
                geneve::Packet::new_checked(&kept.data()[off..])
                    .unwrap()
                    .vni(),
                p.vni
            );
        }
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
