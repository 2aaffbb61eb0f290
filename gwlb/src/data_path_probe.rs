//! Data-path probes: a synthetic packet sent through an appliance exactly as user traffic is
//! (Geneve, the group's VNI and AWS options, an inner IPv4/UDP packet) and expected back.
//!
//! A TCP or HTTP health check proves that the appliance's own stack answers; it does not
//! prove that the appliance forwards. The usual ways an appliance fails in a gateway load
//! balancer (IP forwarding off, rp_filter reset on the tunnel interface, a source/destination
//! check) all pass such a check and drop every packet. A data-path probe fails in each of
//! them, because it takes the path user packets take.
//!
//! The probe, built here and sent by the health checker ([`crate::health`]) through the
//! kernel's exception path from the gateway's address on the appliance-facing port, UDP port
//! 6081 to the appliance's port 6081:
//!
//! ```text
//! Geneve (VNI, endpoint id, attachment id, flow cookie derived from the two addresses)
//!   IPv4  source -> destination (the group's `data_path_source` / `data_path_destination`), TTL 64, DF
//!     UDP  PROBE_SOURCE_PORT -> PROBE_UDP_PORT, checksum 0
//!       "gwlb-dpp" nonce (8 bytes, big-endian)
//! ```
//!
//! Everything but the nonce is the same for every probe of a group, so an appliance sees its
//! probes as one long-lived UDP flow, not one new flow per probe (its flow table and logs
//! stay small).
//!
//! A Linux-kernel Geneve appliance routes the inner packet back into its tunnel (its
//! `ip rule iif gnv0` table); an AWS-style one echoes it. Either way the return reaches the
//! data path as a Geneve return from a registered appliance; [`Matcher::matches`] tells the
//! pipeline that it is a probe (inner UDP to [`PROBE_UDP_PORT`] between the group's probe
//! addresses), which hands it to the host unchanged, where the checker's socket on port 6081
//! receives the Geneve payload and [`echoed_nonce`] reads the nonce back. The nonce is random
//! per probe: a forged probe return proves nothing and is ignored.

use geneve::AwsOptions;

pub use crate::config::DataPathProbe as Addresses;
use crate::parse::{self, proto, ParsedPacket};
use crate::wire::{ipv4, udp, IpAddrBytes};

/// Inner UDP destination port of a probe (traceroute's first port: appliances that filter
/// usually let it through, and nothing listens on it).
pub const PROBE_UDP_PORT: u16 = 33434;

/// Inner UDP source port of a probe (the first dynamic port).
pub const PROBE_SOURCE_PORT: u16 = 49152;

/// The payload's first bytes.
const MAGIC: [u8; 8] = *b"gwlb-dpp";

/// Payload: the magic and the nonce.
const PAYLOAD_LEN: usize = MAGIC.len() + 8;

/// Inner IPv4 + UDP + payload.
const INNER_LEN: usize = ipv4::HEADER_LEN + udp::HEADER_LEN + PAYLOAD_LEN;

/// Bytes of a probe datagram (the UDP payload: Geneve with the AWS options and the inner packet).
pub const DATAGRAM_LEN: usize = geneve::AWS_HEADER_LEN + INNER_LEN;

/// The tunnel fields a probe carries, as the group's user packets carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// Geneve VNI (24 bits).
    pub vni: u32,
    /// AWS option type 1.
    pub endpoint_id: u64,
    /// AWS option type 2.
    pub attachment_id: u64,
}

/// The probe datagram with `nonce` (module documentation for the layout).
pub fn build(tunnel: &Tunnel, addrs: &Addresses, nonce: u64) -> [u8; DATAGRAM_LEN] {
    let mut d = [0u8; DATAGRAM_LEN];
    let opts = AwsOptions {
        endpoint_id: tunnel.endpoint_id,
        attachment_id: tunnel.attachment_id,
        flow_cookie: u32::from(addrs.source) ^ u32::from(addrs.destination).rotate_left(16),
    };
    let (geneve, inner) = d.split_at_mut(geneve::AWS_HEADER_LEN);
    geneve::emit_aws_header(geneve, geneve::PROTO_IPV4, tunnel.vni & 0x00ff_ffff, &opts);
    let (ip, rest) = inner.split_at_mut(ipv4::HEADER_LEN);
    ipv4::Repr {
        src_addr: addrs.source.octets(),
        dst_addr: addrs.destination.octets(),
        protocol: proto::UDP,
        payload_len: (udp::HEADER_LEN + PAYLOAD_LEN) as u16,
        ttl: 64,
    }
    .emit(&mut ipv4::Packet::new_unchecked(ip));
    let (u, payload) = rest.split_at_mut(udp::HEADER_LEN);
    udp::Repr {
        src_port: PROBE_SOURCE_PORT,
        dst_port: PROBE_UDP_PORT,
        payload_len: PAYLOAD_LEN as u16,
    }
    .emit(&mut udp::Packet::new_unchecked(u));
    payload[..MAGIC.len()].copy_from_slice(&MAGIC);
    payload[MAGIC.len()..].copy_from_slice(&nonce.to_be_bytes());
    d
}

/// The nonce of a probe that came back: `datagram` is the UDP payload received on port
/// 6081 (Geneve, with or without options; an IPv4 inner packet, or an Ethernet frame holding
/// one). `None` for anything that is not a well-formed probe.
pub fn echoed_nonce(datagram: &[u8]) -> Option<u64> {
    let g = geneve::Packet::new_checked(datagram).ok()?;
    if g.version() != 0 || g.oam() {
        return None;
    }
    let inner = match g.protocol_type() {
        geneve::PROTO_IPV4 => g.payload(),
        geneve::PROTO_ETHERNET => {
            let frame = g.payload();
            let p = parse::parse_frame(frame).ok()?;
            frame.get(usize::from(p.l3_offset)..)?
        }
        _ => return None,
    };
    let p = parse::parse_ip(inner).ok()?;
    if p.protocol != proto::UDP || p.dst_port != PROBE_UDP_PORT {
        return None;
    }
    let at = usize::from(p.l4_offset?) + udp::HEADER_LEN;
    let payload = inner.get(at..at + PAYLOAD_LEN)?;
    let (magic, nonce) = payload.split_at(MAGIC.len());
    (magic == MAGIC).then(|| u64::from_be_bytes(nonce.try_into().unwrap_or_default()))
}

/// What the data path compares a return's inner packet with to recognise a group's probe
/// (kept in the snapshot's group view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matcher {
    source: IpAddrBytes,
    destination: IpAddrBytes,
}

impl Matcher {
    /// The matcher of probes between `addrs`.
    pub fn new(addrs: &Addresses) -> Self {
        Matcher {
            source: addrs.source.into(),
            destination: addrs.destination.into(),
        }
    }

    /// Whether the parsed inner packet of a return is a probe of this group: UDP to
    /// [`PROBE_UDP_PORT`] from the probe source to the probe destination.
    #[inline]
    pub fn matches(&self, inner: &ParsedPacket) -> bool {
        inner.protocol == proto::UDP
            && inner.dst_port == PROBE_UDP_PORT
            && inner.dst == self.destination
            && inner.src == self.source
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const TUNNEL: Tunnel = Tunnel {
        vni: 77,
        endpoint_id: 0x1122_3344_5566_7788,
        attachment_id: 9,
    };
    const ADDRS: Addresses = Addresses {
        source: Ipv4Addr::new(198, 18, 0, 1),
        destination: Ipv4Addr::new(198, 18, 0, 2),
    };

    #[test]
    fn test_probe_layout() {
        let d = build(&TUNNEL, &ADDRS, 0x0102_0304_0506_0708);
        let h = geneve::parse_aws_header(&d).expect("AWS header");
        assert_eq!(h.vni, 77);
        assert_eq!(h.protocol_type, geneve::PROTO_IPV4);
        assert_eq!(
            h.options.complete(),
            Some(AwsOptions {
                endpoint_id: TUNNEL.endpoint_id,
                attachment_id: 9,
                flow_cookie: 0xc612_0001 ^ 0x0002_c612
            })
        );
        let inner = &d[geneve::AWS_HEADER_LEN..];
        let p = parse::parse_ip(inner).expect("inner parses");
        assert_eq!(p.protocol, proto::UDP);
        assert_eq!(
            (p.src_port, p.dst_port),
            (PROBE_SOURCE_PORT, PROBE_UDP_PORT)
        );
        // Only the nonce differs between probes.
        let other = build(&TUNNEL, &ADDRS, 0x0102_0304_0506_0709);
        assert_eq!(d[..DATAGRAM_LEN - 1], other[..DATAGRAM_LEN - 1]);
        assert_eq!(p.ttl, 64);
        assert_eq!(usize::from(p.l3_len), INNER_LEN);
        assert!(crate::wire::checksum::verifies(0, &inner[..20]));
        assert!(Matcher::new(&ADDRS).matches(&p));
        assert_eq!(&inner[28..36], b"gwlb-dpp");
    }

    #[test]
    fn test_echo_of_either_appliance_kind() {
        let nonce = 0xdead_beef_0bad_cafe;
        let d = build(&TUNNEL, &ADDRS, nonce);
        // AWS-style: echoed as sent.
        assert_eq!(echoed_nonce(&d), Some(nonce));
        // Linux kernel: no options, inner routed (TTL 63, checksum changed), IP payload.
        let mut linux = vec![0u8; 8];
        linux[2..4].copy_from_slice(&geneve::PROTO_IPV4.to_be_bytes());
        linux[4..7].copy_from_slice(&77u32.to_be_bytes()[1..]);
        let mut inner = d[geneve::AWS_HEADER_LEN..].to_vec();
        inner[8] = 63;
        inner[10..12].copy_from_slice(&[0, 0]);
        let sum = crate::wire::checksum::finish(crate::wire::checksum::sum(0, &inner[..20]));
        inner[10..12].copy_from_slice(&sum.to_be_bytes());
        linux.extend_from_slice(&inner);
        assert_eq!(echoed_nonce(&linux), Some(nonce));
        // Ethernet payload (a device without innerprotoinherit).
        let mut eth = linux[..8].to_vec();
        eth[2..4].copy_from_slice(&geneve::PROTO_ETHERNET.to_be_bytes());
        eth.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]);
        eth.extend_from_slice(&inner);
        assert_eq!(echoed_nonce(&eth), Some(nonce));
    }

    #[test]
    fn test_not_a_probe() {
        let d = build(&TUNNEL, &ADDRS, 5);
        for cut in 0..d.len() {
            assert_eq!(echoed_nonce(&d[..cut]), None, "truncated to {cut}");
        }
        let mut bad = d;
        bad[DATAGRAM_LEN - 9] ^= 1; // the magic
        assert_eq!(echoed_nonce(&bad), None);
        let mut port = d;
        let dport = geneve::AWS_HEADER_LEN + ipv4::HEADER_LEN + 2;
        port[dport + 1] ^= 1;
        assert_eq!(echoed_nonce(&port), None);
        let mut oam = d;
        oam[1] |= 0x80;
        assert_eq!(echoed_nonce(&oam), None);

        let inner = parse::parse_ip(&d[geneve::AWS_HEADER_LEN..]).unwrap();
        let other = Matcher::new(&Addresses {
            source: ADDRS.source,
            destination: Ipv4Addr::new(198, 18, 0, 3),
        });
        assert!(!other.matches(&inner));
        let swapped = Matcher::new(&Addresses {
            source: ADDRS.destination,
            destination: ADDRS.source,
        });
        assert!(!swapped.matches(&inner));
    }
}
