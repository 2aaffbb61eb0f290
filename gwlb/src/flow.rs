//! Flow keys and the symmetric, deterministic flow hash.
//!
//! # Canonical keys
//! A [`FlowKey`] orders its two endpoints: `(lo_addr, lo_port) <= (hi_addr, hi_port)`. Both
//! directions of a flow therefore build the same key and the same hash, which is what makes
//! the appliance choice symmetric without per-direction state. The packet's direction
//! relative to the canonical order is returned separately ([`Direction`]) and is not part of
//! the key, so it never affects equality or hashing.
//!
//! # Stickiness
//! [`Stickiness`] selects the fields (AWS GWLB target-group semantics): 5-tuple (addresses,
//! ports, protocol), 3-tuple (addresses, protocol), 2-tuple (addresses). Fields left out are
//! zero in the key.
//!
//! # Fragments
//! Only the first fragment of a datagram carries ports, so under 5-tuple stickiness every
//! fragment (first, middle and last, IPv4 and IPv6) is keyed on the 3-tuple: ports zeroed,
//! protocol kept. All fragments of one datagram thus hash alike and reach the same appliance,
//! which can reassemble. The fragment id is not part of the key, so all fragmented datagrams
//! between two hosts for one protocol share an appliance.
//!
//! Consequence: when a 5-tuple flow (typically UDP: DNS, IPsec NAT-T, tunnels) fragments
//! some of its datagrams, those datagrams may go to a different appliance than its
//! unfragmented packets. A stateful appliance that needs to see the whole flow should use
//! 3-tuple stickiness for such traffic. The alternative (keying the first fragment on the
//! 5-tuple and remembering the id -> appliance choice for later fragments) needs per-datagram
//! state in the worker and fails when fragments arrive out of order or on another gateway
//! behind ECMP; we prefer stateless and deterministic. IPv6 atomic fragments (offset 0, M=0)
//! are complete datagrams and keyed as unfragmented (RFC 6946).
//!
//! # ICMP
//! An ICMP / ICMPv6 error whose quoted packet could be parsed
//! ([`ParsedPacket::embedded`]) is keyed on the quoted packet's flow, so "packet too big",
//! "unreachable" and "time exceeded" reach the appliance that holds the flow (PMTUD keeps
//! working through the appliance). Echo request / reply use the echo identifier as both
//! ports, so a ping and its reply share a key under 5-tuple stickiness.
//!
//! # Hash
//! [`FlowKey::hash`] is a fixed function of the key and a 64-bit seed: no per-process random
//! state, so every gateway behind ECMP computes the same value for the same flow when
//! configured with the same seed. It is not a cryptographic hash: keep the seed private to the
//! deployment so that outside hosts cannot aim flows at one appliance.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::parse::{IpAddrBytes, ParsedPacket};

/// Which fields of a packet identify its flow (AWS GWLB target-group stickiness).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stickiness {
    /// Source / destination address and port, protocol (default).
    #[default]
    #[serde(rename = "5-tuple")]
    FiveTuple,
    /// Source / destination address, protocol.
    #[serde(rename = "3-tuple")]
    ThreeTuple,
    /// Source / destination address.
    #[serde(rename = "2-tuple")]
    TwoTuple,
}

impl Stickiness {
    /// Configuration name: "5-tuple", "3-tuple" or "2-tuple".
    pub const fn as_str(self) -> &'static str {
        match self {
            Stickiness::FiveTuple => "5-tuple",
            Stickiness::ThreeTuple => "3-tuple",
            Stickiness::TwoTuple => "2-tuple",
        }
    }
}

impl fmt::Display for Stickiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a [`Stickiness`] name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown stickiness {0:?} (expected 5-tuple, 3-tuple or 2-tuple)")]
pub struct UnknownStickiness(pub String);

impl FromStr for Stickiness {
    type Err = UnknownStickiness;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "5-tuple" => Ok(Stickiness::FiveTuple),
            "3-tuple" => Ok(Stickiness::ThreeTuple),
            "2-tuple" => Ok(Stickiness::TwoTuple),
            _ => Err(UnknownStickiness(s.to_owned())),
        }
    }
}

/// Direction of a packet relative to its canonical [`FlowKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The packet's source is the key's `lo` endpoint (ties count as forward).
    Forward,
    /// The packet's source is the key's `hi` endpoint.
    Reverse,
}

impl Direction {
    /// The other direction.
    #[inline]
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::Forward => Direction::Reverse,
            Direction::Reverse => Direction::Forward,
        }
    }
}

/// Canonical, direction-free flow identity: 40 bytes, `Copy`, no padding bytes that matter
/// (the derived `Eq` / `Hash` compare fields).
///
/// `zone` keeps tenants apart: the endpoint the flow belongs to (0 for traffic of a target
/// group's `user_ports`, endpoint `i` is zone `i + 1`), so that two tenants using the same
/// addresses never share a flow. It is part of the hash only when non-zero, so zone-0 flows
/// hash as they always have (nodes of a cluster on different releases agree).
///
/// Invariant: `(lo_addr, lo_port) <= (hi_addr, hi_port)` (addresses compared as big-endian
/// 128-bit numbers, then ports). Fields outside the stickiness, and ports of fragments, are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    lo_addr: IpAddrBytes,
    hi_addr: IpAddrBytes,
    lo_port: u16,
    hi_port: u16,
    protocol: u8,
    zone: u16,
}

// wyhash's default secrets: odd, ~half the bits set, no structure.
const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
const K3: u64 = 0x5899_65cc_7537_4cc3;
const K4: u64 = 0x1d8e_4e27_c47d_124f;

/// 64x64 -> 128-bit multiply, folded by XOR of the halves. One `mul` (x86_64) or
/// `mul` + `umulh` (aarch64); every output bit depends on every input bit.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

impl FlowKey {
    /// Size of the key in bytes (40).
    pub const SIZE: usize = std::mem::size_of::<FlowKey>();

    /// Canonical key for a packet from `(src, src_port)` to `(dst, dst_port)` with exactly
    /// these fields (no stickiness applied), and the packet's direction.
    #[inline(always)]
    pub fn new(
        src: IpAddrBytes,
        src_port: u16,
        dst: IpAddrBytes,
        dst_port: u16,
        protocol: u8,
    ) -> (FlowKey, Direction) {
        let s = (u128::from_be_bytes(src.0), src_port);
        let d = (u128::from_be_bytes(dst.0), dst_port);
        if s <= d {
            (
                FlowKey {
                    lo_addr: src,
                    hi_addr: dst,
                    lo_port: src_port,
                    hi_port: dst_port,
                    protocol,
                    zone: 0,
                },
                Direction::Forward,
            )
        } else {
            (
                FlowKey {
                    lo_addr: dst,
                    hi_addr: src,
                    lo_port: dst_port,
                    hi_port: src_port,
                    protocol,
                    zone: 0,
                },
                Direction::Reverse,
            )
        }
    }

    /// Canonical key under `stickiness`; `fragmented` zeroes the ports (see module docs).
    #[inline(always)]
    pub fn with_stickiness(
        src: IpAddrBytes,
        src_port: u16,
        dst: IpAddrBytes,
        dst_port: u16,
        protocol: u8,
        fragmented: bool,
        stickiness: Stickiness,
    ) -> (FlowKey, Direction) {
        let (sp, dp, pr) = match stickiness {
            Stickiness::FiveTuple if !fragmented => (src_port, dst_port, protocol),
            Stickiness::FiveTuple | Stickiness::ThreeTuple => (0, 0, protocol),
            Stickiness::TwoTuple => (0, 0, 0),
        };
        Self::new(src, sp, dst, dp, pr)
    }

    /// Key of a parsed IP packet. ICMP errors with a parsed quote are keyed on the quoted
    /// flow; fragments on the 3-tuple (see module docs). For ARP ([`crate::parse::L3::Arp`])
    /// the key is all zero and meaningless.
    #[inline(always)]
    pub fn from_packet(p: &ParsedPacket, stickiness: Stickiness) -> FlowKey {
        Self::from_packet_directed(p, stickiness).0
    }

    /// [`FlowKey::from_packet`] plus the packet's direction relative to the key. For an ICMP
    /// error keyed on its quote, the direction is the reverse of the quoted packet's (the
    /// error travels back towards the quoted packet's source).
    #[inline(always)]
    pub fn from_packet_directed(p: &ParsedPacket, stickiness: Stickiness) -> (FlowKey, Direction) {
        if let Some(e) = p.embedded {
            let (k, d) = Self::with_stickiness(
                e.src,
                e.src_port,
                e.dst,
                e.dst_port,
                e.protocol,
                e.fragmented,
                stickiness,
            );
            return (k, d.reverse());
        }
        Self::with_stickiness(
            p.src,
            p.src_port,
            p.dst,
            p.dst_port,
            p.protocol,
            p.fragment.is_some(),
            stickiness,
        )
    }

    /// Lower endpoint address.
    #[inline]
    pub fn lo_addr(&self) -> IpAddrBytes {
        self.lo_addr
    }
    /// Higher endpoint address.
    #[inline]
    pub fn hi_addr(&self) -> IpAddrBytes {
        self.hi_addr
    }
    /// Port of the lower endpoint (0 outside 5-tuple / for fragments).
    #[inline]
    pub fn lo_port(&self) -> u16 {
        self.lo_port
    }
    /// Port of the higher endpoint.
    #[inline]
    pub fn hi_port(&self) -> u16 {
        self.hi_port
    }
    /// IP protocol (0 under 2-tuple stickiness).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.protocol
    }
    /// The flow's zone: its endpoint (see [`FlowKey`]).
    #[inline]
    pub fn zone(&self) -> u16 {
        self.zone
    }
    /// The key in zone `zone`.
    #[inline]
    #[must_use]
    pub fn in_zone(mut self, zone: u16) -> FlowKey {
        self.zone = zone;
        self
    }

    /// Deterministic 64-bit hash of the key (same value on every machine and process for the
    /// same key and seed). All 64 bits are usable: index a Maglev table with `h % M` and a
    /// flow table with the low bits.
    ///
    /// Three folded 128-bit multiplies (wyhash-style), the first two independent: about 12
    /// cycles of latency; measured ~1.9 ns per call on an AMD EPYC core, ~3 ns with
    /// [`FlowKey::from_packet`] (`parse::tests::measure_parse_and_hash`).
    /// The seed enters both operands of the first multiplies, so no input value can zero them
    /// without knowing it.
    #[inline(always)]
    pub fn hash(&self, seed: u64) -> u64 {
        let lo = u128::from_le_bytes(self.lo_addr.0);
        let hi = u128::from_le_bytes(self.hi_addr.0);
        let tail = u64::from(self.lo_port)
            | (u64::from(self.hi_port) << 16)
            | (u64::from(self.protocol) << 32)
            | (u64::from(self.zone) << 40);
        let sr = seed.rotate_left(32);
        let a = fold(lo as u64 ^ seed ^ K0, (lo >> 64) as u64 ^ sr ^ K1);
        let b = fold(hi as u64 ^ seed ^ K2, (hi >> 64) as u64 ^ sr ^ K3);
        fold(a ^ tail ^ K4, b ^ K1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_frame, parse_ip};
    use etherparse::{IpHeaders, IpNumber, Ipv4Header, Ipv6Header};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEED: u64 = 0x1234_5678_9abc_def0;

    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn addr(&mut self, v6: bool) -> IpAddrBytes {
            if v6 {
                let x = (u128::from(self.next()) << 64) | u128::from(self.next());
                IpAddrBytes(x.to_be_bytes())
            } else {
                IpAddrBytes::from_v4((self.next() as u32).to_be_bytes())
            }
        }
    }

    const ALL_MODES: [Stickiness; 3] = [
        Stickiness::FiveTuple,
        Stickiness::ThreeTuple,
        Stickiness::TwoTuple,
    ];

    fn arb_addr() -> impl Strategy<Value = IpAddrBytes> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddrBytes::from_v4),
            any::<[u8; 16]>().prop_map(IpAddrBytes),
        ]
    }

    fn arb_stickiness() -> impl Strategy<Value = Stickiness> {
        prop_oneof![
            Just(Stickiness::FiveTuple),
            Just(Stickiness::ThreeTuple),
            Just(Stickiness::TwoTuple),
        ]
    }

    proptest! {
        #[test]
        fn symmetric(a in arb_addr(), b in arb_addr(), pa: u16, pb: u16, proto: u8,
                     frag: bool, s in arb_stickiness(), seed: u64) {
            let (k1, d1) = FlowKey::with_stickiness(a, pa, b, pb, proto, frag, s);
            let (k2, d2) = FlowKey::with_stickiness(b, pb, a, pa, proto, frag, s);
            prop_assert_eq!(k1, k2);
            prop_assert_eq!(k1.hash(seed), k2.hash(seed));
            if k1.lo_addr != k1.hi_addr || k1.lo_port != k1.hi_port {
                prop_assert_ne!(d1, d2);
            }
        }

        #[test]
        fn canonical_order(a in arb_addr(), b in arb_addr(), pa: u16, pb: u16, proto: u8) {
            let (k, d) = FlowKey::new(a, pa, b, pb, proto);
            prop_assert!((u128::from_be_bytes(k.lo_addr.0), k.lo_port)
                <= (u128::from_be_bytes(k.hi_addr.0), k.hi_port));
            let src_is_lo = k.lo_addr == a && k.lo_port == pa;
            prop_assert_eq!(d == Direction::Forward, src_is_lo);
        }

        #[test]
        fn stickiness_zeroes_fields(a in arb_addr(), b in arb_addr(), pa: u16, pb: u16,
                                    proto: u8) {
            let (k3, _) = FlowKey::with_stickiness(a, pa, b, pb, proto, false,
                                                   Stickiness::ThreeTuple);
            prop_assert_eq!((k3.lo_port, k3.hi_port, k3.protocol), (0, 0, proto));
            let (k2, _) = FlowKey::with_stickiness(a, pa, b, pb, proto, false,
                                                   Stickiness::TwoTuple);
            prop_assert_eq!((k2.lo_port, k2.hi_port, k2.protocol), (0, 0, 0));
        }

        #[test]
        fn packet_symmetric_v4(a: [u8; 4], b: [u8; 4], pa: u16, pb: u16, udp: bool,
                               s in arb_stickiness()) {
            let fwd = l4_packet_v4(a, b, pa, pb, udp);
            let rev = l4_packet_v4(b, a, pb, pa, udp);
            let kf = FlowKey::from_packet(&parse_ip(&fwd).unwrap(), s);
            let kr = FlowKey::from_packet(&parse_ip(&rev).unwrap(), s);
            prop_assert_eq!(kf, kr);
            prop_assert_eq!(kf.hash(SEED), kr.hash(SEED));
        }

        #[test]
        fn packet_symmetric_v6(a: [u8; 16], b: [u8; 16], pa: u16, pb: u16, udp: bool,
                               s in arb_stickiness()) {
            let fwd = l4_packet_v6(a, b, pa, pb, udp);
            let rev = l4_packet_v6(b, a, pb, pa, udp);
            let kf = FlowKey::from_packet(&parse_ip(&fwd).unwrap(), s);
            let kr = FlowKey::from_packet(&parse_ip(&rev).unwrap(), s);
            prop_assert_eq!(kf, kr);
            prop_assert_eq!(kf.hash(SEED), kr.hash(SEED));
        }
    }

    fn l4_packet_v4(a: [u8; 4], b: [u8; 4], pa: u16, pb: u16, udp: bool) -> Vec<u8> {
        l4_packet(etherparse::PacketBuilder::ipv4(a, b, 64), pa, pb, udp)
    }

    fn l4_packet_v6(a: [u8; 16], b: [u8; 16], pa: u16, pb: u16, udp: bool) -> Vec<u8> {
        l4_packet(etherparse::PacketBuilder::ipv6(a, b, 64), pa, pb, udp)
    }

    /// A UDP or TCP packet with a 5-byte payload under the IP header `builder` starts with.
    fn l4_packet(
        builder: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
        pa: u16,
        pb: u16,
        udp: bool,
    ) -> Vec<u8> {
        let mut v = Vec::new();
        if udp {
            builder.udp(pa, pb).write(&mut v, b"hello").unwrap();
        } else {
            builder
                .tcp(pa, pb, 1, 1000)
                .write(&mut v, b"hello")
                .unwrap();
        }
        v
    }

    #[test]
    fn size_is_small() {
        assert_eq!(FlowKey::SIZE, 40);
    }

    /// Pins the function: changing it would make gateways of different versions disagree.
    #[test]
    fn hash_is_stable() {
        let (k4, _) = FlowKey::new(
            Ipv4Addr::new(10, 0, 0, 1).into(),
            40000,
            Ipv4Addr::new(192, 0, 2, 7).into(),
            443,
            6,
        );
        let (k6, _) = FlowKey::new(
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            5353,
            "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
            53,
            17,
        );
        let got = [k4.hash(0), k4.hash(SEED), k6.hash(0), k6.hash(SEED)];
        assert_eq!(got, GOLDEN, "{got:#018x?}");
    }
    const GOLDEN: [u64; 4] = [
        0xbcea_ff45_3b87_20c2,
        0xb9dc_83f7_51ce_4cbc,
        0x43ac_e37f_63b8_93b1,
        0x0f92_280e_cbb6_0c5c,
    ];

    #[test]
    fn seed_changes_hash() {
        let mut r = SplitMix(7);
        let mut same = 0;
        for _ in 0..10_000 {
            let (k, _) = FlowKey::new(r.addr(false), 1, r.addr(false), 2, 6);
            if k.hash(1) == k.hash(2) {
                same += 1;
            }
        }
        assert_eq!(same, 0);
    }

    #[test]
    fn distinct_flows_distinct_hashes() {
        let mut r = SplitMix(1);
        let mut hashes = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for i in 0..200_000u64 {
            let v6 = i % 2 == 0;
            let (k, _) = FlowKey::new(r.addr(v6), r.next() as u16, r.addr(v6), r.next() as u16, 6);
            if keys.insert(k) {
                hashes.insert(k.hash(SEED));
            }
        }
        // 64-bit hashes: any collision among 2e5 keys would be a defect.
        assert_eq!(hashes.len(), keys.len());
    }

    /// Pearson chi-square of `n` values into `buckets`: returns (chi2, threshold) where the
    /// threshold is the mean (dof) plus 6 standard deviations (sqrt(2 dof)).
    fn chi2(values: impl Iterator<Item = u64>, buckets: usize) -> (f64, f64) {
        let mut counts = vec![0u64; buckets];
        let mut n = 0u64;
        for v in values {
            counts[(v % buckets as u64) as usize] += 1;
            n += 1;
        }
        let expected = n as f64 / buckets as f64;
        let chi: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        let dof = (buckets - 1) as f64;
        (chi, dof + 6.0 * (2.0 * dof).sqrt())
    }

    #[test]
    fn distribution_random_keys() {
        for v6 in [false, true] {
            let mut r = SplitMix(if v6 { 3 } else { 2 });
            let keys: Vec<FlowKey> = (0..1_000_000)
                .map(|_| {
                    FlowKey::new(r.addr(v6), r.next() as u16, r.addr(v6), r.next() as u16, 17).0
                })
                .collect();
            for buckets in [1024, 65537] {
                let (c, t) = chi2(keys.iter().map(|k| k.hash(SEED)), buckets);
                assert!(c < t, "v6={v6} buckets={buckets}: chi2 {c} >= {t}");
            }
        }
    }

    #[test]
    fn distribution_structured_keys() {
        let server = IpAddrBytes::from(Ipv4Addr::new(192, 0, 2, 1));
        // One client, every source port, one server port.
        let client = IpAddrBytes::from(Ipv4Addr::new(10, 1, 2, 3));
        let (c, t) = chi2(
            (0..=u16::MAX).map(|p| FlowKey::new(client, p, server, 443, 6).0.hash(SEED)),
            1024,
        );
        assert!(c < t, "ports: chi2 {c} >= {t}");
        // Sequential clients in 10.0.0.0/12, fixed ports, 3-tuple style keys.
        let (c, t) = chi2(
            (0..1u32 << 20).map(|i| {
                let a = IpAddrBytes::from(Ipv4Addr::from(0x0a00_0000 | i));
                FlowKey::new(a, 0, server, 0, 17).0.hash(SEED)
            }),
            65537,
        );
        assert!(c < t, "v4 clients: chi2 {c} >= {t}");
        // Sequential IPv6 interface ids in one /64.
        let (c, t) = chi2(
            (0..1u64 << 20).map(|i| {
                let a = (0x2001_0db8_0000_0001u128 << 64) | u128::from(i);
                FlowKey::new(IpAddrBytes(a.to_be_bytes()), 1000, server, 53, 17)
                    .0
                    .hash(SEED)
            }),
            1024,
        );
        assert!(c < t, "v6 clients: chi2 {c} >= {t}");
    }

    #[test]
    fn stickiness_serde_names() {
        #[derive(Deserialize)]
        struct C {
            s: Stickiness,
        }
        for m in ALL_MODES {
            let c: C = toml::from_str(&format!("s = \"{m}\"")).unwrap();
            assert_eq!(c.s, m);
            assert_eq!(m.as_str().parse::<Stickiness>().unwrap(), m);
        }
        assert!(toml::from_str::<C>("s = \"4-tuple\"").is_err());
        assert!("FiveTuple".parse::<Stickiness>().is_err());
        assert_eq!(Stickiness::default(), Stickiness::FiveTuple);
    }

    /// IPv4 fragments of one UDP datagram: first carries the UDP header, later ones not.
    fn v4_fragments(a: [u8; 4], b: [u8; 4], sp: u16, dp: u16, id: u16) -> Vec<Vec<u8>> {
        let mut datagram = Vec::new();
        etherparse::PacketBuilder::ipv4(a, b, 64)
            .udp(sp, dp)
            .write(&mut datagram, &[0x42; 100])
            .unwrap();
        let l4 = &datagram[20..]; // 108 bytes of UDP datagram
        let mut out = Vec::new();
        for (i, chunk) in l4.chunks(48).enumerate() {
            let mut h = Ipv4Header::new(chunk.len() as u16, 64, IpNumber::UDP, a, b).unwrap();
            h.identification = id;
            h.fragment_offset = ((i * 48 / 8) as u16).try_into().unwrap();
            h.more_fragments = (i + 1) * 48 < l4.len();
            h.header_checksum = h.calc_header_checksum();
            let mut f = h.to_bytes().to_vec();
            f.extend_from_slice(chunk);
            out.push(f);
        }
        out
    }

    fn v6_fragments(a: [u8; 16], b: [u8; 16], sp: u16, dp: u16, id: u32) -> Vec<Vec<u8>> {
        let mut datagram = Vec::new();
        etherparse::PacketBuilder::ipv6(a, b, 64)
            .udp(sp, dp)
            .write(&mut datagram, &[0x42; 100])
            .unwrap();
        let l4 = &datagram[40..];
        let mut out = Vec::new();
        for (i, chunk) in l4.chunks(48).enumerate() {
            // Hand-made: etherparse 0.16 encodes the offset and M bits of the IPv6 Fragment
            // header in the wrong positions (JulianSchmid/etherparse#150, fixed in 0.20).
            let word = ((i * 48 / 8) as u16) << 3 | u16::from((i + 1) * 48 < l4.len());
            let mut fh = [IpNumber::UDP.0, 0, 0, 0, 0, 0, 0, 0];
            fh[2..4].copy_from_slice(&word.to_be_bytes());
            fh[4..8].copy_from_slice(&id.to_be_bytes());
            let h = Ipv6Header {
                traffic_class: 0,
                flow_label: Default::default(),
                payload_length: (8 + chunk.len()) as u16,
                next_header: IpNumber::IPV6_FRAGMENTATION_HEADER,
                hop_limit: 64,
                source: a,
                destination: b,
            };
            let mut f = h.to_bytes().to_vec();
            f.extend_from_slice(&fh);
            f.extend_from_slice(chunk);
            out.push(f);
        }
        out
    }

    #[test]
    fn fragments_of_one_datagram_share_a_key() {
        let (a4, b4) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let (a6, b6) = ([0x20; 16], [0x30; 16]);
        let sets = [
            v4_fragments(a4, b4, 5000, 53, 77),
            v4_fragments(b4, a4, 53, 5000, 78),
            v6_fragments(a6, b6, 5000, 53, 0xdead_beef),
            v6_fragments(b6, a6, 53, 5000, 0xdead_bef0),
        ];
        for s in ALL_MODES {
            for (i, frags) in sets.iter().enumerate() {
                assert_eq!(frags.len(), 3);
                let keys: Vec<FlowKey> = frags
                    .iter()
                    .map(|f| {
                        let p = parse_ip(f).unwrap();
                        assert!(p.fragment.is_some());
                        FlowKey::from_packet(&p, s)
                    })
                    .collect();
                assert!(keys.iter().all(|k| *k == keys[0]), "{s} set {i}: {keys:?}");
                assert_eq!(keys[0].lo_port, 0);
                // Both directions of fragmented traffic agree too.
                let other = &sets[i ^ 1];
                assert_eq!(
                    FlowKey::from_packet(&parse_ip(&other[2]).unwrap(), s),
                    keys[0]
                );
                let p0 = parse_ip(&frags[0]).unwrap();
                assert_ne!((p0.src_port, p0.dst_port), (0, 0), "{s} set {i}: {p0:?}");
            }
        }
        // The 3-tuple key of a fragment equals the 3-tuple key of the unfragmented flow.
        let whole = l4_packet_v4(a4, b4, 5000, 53, true);
        assert_eq!(
            FlowKey::from_packet(&parse_ip(&whole).unwrap(), Stickiness::ThreeTuple),
            FlowKey::from_packet(&parse_ip(&sets[0][1]).unwrap(), Stickiness::FiveTuple)
        );
    }

    #[test]
    fn icmp_error_follows_its_flow() {
        let (a, b, router) = ([10, 0, 0, 1], [192, 0, 2, 9], [10, 9, 9, 9]);
        let orig = l4_packet_v4(a, b, 40000, 443, false);
        let flow = FlowKey::from_packet_directed(&parse_ip(&orig).unwrap(), Stickiness::FiveTuple);
        // Time exceeded from a router back to `a`, quoting the first 28 bytes + a bit.
        let mut err = Vec::new();
        etherparse::PacketBuilder::ipv4(router, a, 64)
            .icmpv4_raw(11, 0, [0; 4])
            .write(&mut err, &orig[..28])
            .unwrap();
        let p = parse_ip(&err).unwrap();
        assert!(p.is_icmp_error());
        let (k, d) = FlowKey::from_packet_directed(&p, Stickiness::FiveTuple);
        assert_eq!(k, flow.0);
        assert_eq!(d, flow.1.reverse());

        // ICMPv6 packet too big quoting an IPv6 UDP packet.
        let (a6, b6, r6) = ([0x20; 16], [0x30; 16], [0x40; 16]);
        let orig6 = l4_packet_v6(a6, b6, 5000, 4789, true);
        let flow6 = FlowKey::from_packet(&parse_ip(&orig6).unwrap(), Stickiness::FiveTuple);
        let mut err6 = Vec::new();
        etherparse::PacketBuilder::ipv6(r6, a6, 64)
            .icmpv6_raw(2, 0, 1280u32.to_be_bytes())
            .write(&mut err6, &orig6)
            .unwrap();
        let p6 = parse_ip(&err6).unwrap();
        assert!(p6.is_icmp_error());
        assert_eq!(FlowKey::from_packet(&p6, Stickiness::FiveTuple), flow6);
    }

    #[test]
    fn icmp_echo_request_and_reply_share_a_key() {
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let mut req = Vec::new();
        etherparse::PacketBuilder::ipv4(a, b, 64)
            .icmpv4_echo_request(0x1234, 1)
            .write(&mut req, b"ping")
            .unwrap();
        let mut rep = Vec::new();
        etherparse::PacketBuilder::ipv4(b, a, 64)
            .icmpv4_echo_reply(0x1234, 1)
            .write(&mut rep, b"ping")
            .unwrap();
        let mut other = Vec::new();
        etherparse::PacketBuilder::ipv4(a, b, 64)
            .icmpv4_echo_request(0x1235, 1)
            .write(&mut other, b"ping")
            .unwrap();
        let k = |v: &[u8]| FlowKey::from_packet(&parse_ip(v).unwrap(), Stickiness::FiveTuple);
        assert_eq!(k(&req), k(&rep));
        assert_ne!(k(&req), k(&other));
    }

    #[test]
    fn frame_and_bare_ip_give_same_key() {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .single_vlan(100.try_into().unwrap())
            .ip(IpHeaders::Ipv4(
                Ipv4Header::new(0, 64, IpNumber::TCP, [1, 2, 3, 4], [5, 6, 7, 8]).unwrap(),
                Default::default(),
            ))
            .tcp(1, 2, 3, 4)
            .write(&mut frame, &[])
            .unwrap();
        let pf = parse_frame(&frame).unwrap();
        let pi = parse_ip(&frame[pf.l3_offset as usize..]).unwrap();
        for s in ALL_MODES {
            assert_eq!(FlowKey::from_packet(&pf, s), FlowKey::from_packet(&pi, s));
        }
    }
}
