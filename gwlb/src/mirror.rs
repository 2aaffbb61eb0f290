//! Traffic mirroring: which packets a mirror session selects ([`Selector`]), and the copy
//! sent to a sensor ([`MirrorTemplate`]): the original Ethernet frame, as received (tags
//! included) or as forwarded after inspection, in VXLAN (RFC 7348, UDP 4789, the session's
//! VNI: what AWS Traffic Mirroring sends) or in Geneve (UDP 6081, protocol type Ethernet,
//! with gwlb's mirror option).
//!
//! A copy is a new buffer; the original is never changed, delayed or dropped for it. No
//! sensor, no buffer, or a copy that cannot be built: the copy is dropped and counted in
//! its session ([`MirrorCounter`]).
//!
//! The Geneve mirror option, in the experimental option class range of RFC 8926 (section
//! 7.3: 0xff00-0xffff):
//!
//! ```text
//! class 0xff67, type 0x01 (not critical), length 1 word:
//!   copy point (0 before inspection, 1 after),
//!   direction relative to the session's prefixes (bit 0: the destination is in them, bit 1:
//!   the source is; 0 for a session without prefixes),
//!   session id (16 bits, big-endian): the session's counter slot
//!   ([`SessionSlots`]), kept by its name for as long as the session exists, whatever is
//!   added, removed or reordered around it (not its position in the list, which shifts);
//!   freed when the session is removed and given to the next session created
//! ```

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crate::config::{CopyPoint, MirrorDirection, MirrorFormat, MirrorSession};
use crate::parse::{proto, ParsedPacket};
use crate::wire::{checksum, ethernet, ethertype, ipv4, udp, IpAddrBytes, IpNet, MacAddr};

/// UDP destination port of VXLAN (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// VXLAN header length.
pub const VXLAN_LEN: usize = 8;
/// The Geneve option class of gwlb's mirror option (experimental range).
pub const GENEVE_MIRROR_CLASS: u16 = 0xff67;
/// The Geneve option type of the mirror option.
pub const GENEVE_MIRROR_TYPE: u8 = 0x01;
/// Geneve header with the mirror option.
pub const GENEVE_MIRROR_LEN: usize = geneve::HEADER_LEN + 8;

/// Outer Ethernet + IPv4 + UDP: what comes before the VXLAN or Geneve header.
const OUTER_IP_UDP: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;
/// Longest outer header of a copy.
pub const MAX_OUTER_LEN: usize = OUTER_IP_UDP + GENEVE_MIRROR_LEN;

/// Per-session counters, indexed by these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum MirrorCounter {
    /// Copies sent.
    Packets = 0,
    /// Bytes of the copied frames (as truncated).
    Bytes = 1,
    /// Selected and sampled, but no healthy sensor: not copied.
    NoSensor = 2,
    /// Selected and sampled, but no buffer for the copy (the pool is empty, or the worker's
    /// room for one burst's copies is full): not copied.
    NoBuffer = 3,
    /// Of the copies made (in `Packets`), those the sensor port's transmit queue refused
    /// (also in the port-wide `tx_full`). Counted on the refusal path only.
    TxFull = 4,
}

/// Which per-worker counter slot (`0..MAX_MIRROR_SESSIONS`, the index of
/// [`crate::pipeline::Counters::mirror`]) each mirror session counts in, by name. Kept by the
/// control loop across live changes and reloads, so that a session counts where it always
/// did whatever is added, removed or reordered around it: the counters stay with the name.
/// A removed session's slot is free again; a slot given to a session is counted from what
/// it holds then (the caller keeps a base: workers' counters only grow), so a created
/// session starts from zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionSlots {
    names: [Option<String>; crate::pipeline::MAX_MIRROR_SESSIONS],
}

impl SessionSlots {
    /// Frees the slots of names `sessions` lacks and gives every session that has none the
    /// lowest free slot. Returns the slots given. With at most `MAX_MIRROR_SESSIONS`
    /// sessions (validation's limit) every session gets one.
    pub fn assign(&mut self, sessions: &[MirrorSession]) -> Vec<u8> {
        for n in &mut self.names {
            if n.as_ref()
                .is_some_and(|n| !sessions.iter().any(|m| &m.name == n))
            {
                *n = None;
            }
        }
        let mut fresh = Vec::new();
        for m in sessions {
            if self.slot(&m.name).is_some() {
                continue;
            }
            if let Some(i) = self.names.iter().position(Option::is_none) {
                self.names[i] = Some(m.name.clone());
                fresh.push(i as u8);
            }
        }
        fresh
    }

    /// The slot of session `name`.
    pub fn slot(&self, name: &str) -> Option<u8> {
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .map(|i| i as u8)
    }

    /// These slots with `sessions` assigned.
    pub fn assigned(&self, sessions: &[MirrorSession]) -> SessionSlots {
        let mut s = self.clone();
        s.assign(sessions);
        s
    }
}

impl MirrorCounter {
    /// How many counters a session has.
    pub const COUNT: usize = 5;
    /// Their names, as the API and the metrics show them.
    pub const NAMES: [&'static str; Self::COUNT] =
        ["packets", "bytes", "no_sensor", "no_buffer", "tx_full"];
}

/// What a session selects (module docs); built from the configuration once per snapshot.
#[derive(Clone, Debug)]
pub struct Selector {
    /// Bit `p` set: user port `p` is selected (all set when the session names none).
    ports: u64,
    prefixes: Vec<(u128, u128)>,
    /// Bit `n` of word `n / 64` set: IP protocol `n` is selected.
    protocols: [u64; 4],
    l4_ports: Vec<RangeInclusive<u16>>,
    direction: MirrorDirection,
    /// The zones of the endpoints selected (empty: any traffic).
    zones: Vec<u16>,
    /// The indices (in the snapshot's rules) of the steering rules selected (empty: any).
    rules: Vec<u16>,
}

impl Selector {
    /// The selector of session `m`, its endpoints and rules looked up in `endpoints` and
    /// `rules` (the snapshot's, built from the same configuration: endpoint `i` of the
    /// configuration is `endpoints[i]`).
    pub fn new(
        m: &MirrorSession,
        endpoints: &[crate::policy::EndpointView],
        rules: &[crate::policy::RuleView],
    ) -> Self {
        let zones = m
            .endpoints
            .iter()
            .filter_map(|&e| endpoints.get(e))
            .map(|e| e.zone)
            .collect();
        let mut rule_indices: Vec<u16> = m
            .endpoints
            .iter()
            .filter_map(|&e| endpoints.get(e))
            .flat_map(|e| e.rules.clone())
            .filter(|&i| {
                rules
                    .get(usize::from(i))
                    .is_some_and(|r| m.rules.contains(&r.name))
            })
            .collect();
        rule_indices.sort_unstable();
        let ports = if m.user_ports.is_empty() {
            u64::MAX
        } else {
            m.user_ports
                .iter()
                .filter(|&&p| p < 64)
                .fold(0, |acc, &p| acc | 1 << p)
        };
        let mut protocols = [0u64; 4];
        if m.protocols.is_empty() {
            protocols = [u64::MAX; 4];
        }
        for &p in &m.protocols {
            protocols[usize::from(p / 64)] |= 1 << (p % 64);
        }
        Selector {
            ports,
            prefixes: m.prefixes.iter().map(net_mask).collect(),
            protocols,
            l4_ports: m.l4_ports.clone(),
            direction: m.direction,
            zones,
            rules: rule_indices,
        }
    }

    /// Whether the session selects by endpoint (then [`Selector::selects_policy`] decides
    /// too).
    #[inline]
    pub fn by_policy(&self) -> bool {
        !self.zones.is_empty()
    }

    /// Whether a packet of endpoint zone `zone` (0: no endpoint's), whose flow the
    /// endpoint's steering rules decide with rule `rule` (an index into the snapshot's
    /// rules; only asked when the session names rules), is selected by the session's
    /// endpoints and rules.
    #[inline]
    pub fn selects_policy(&self, zone: u16, rule: impl FnOnce() -> Option<u16>) -> bool {
        if self.zones.is_empty() {
            return true;
        }
        if !self.zones.contains(&zone) {
            return false;
        }
        self.rules.is_empty() || rule().is_some_and(|r| self.rules.binary_search(&r).is_ok())
    }

    /// Whether the packet `p`, arriving on user port `in_port`, is selected.
    #[inline]
    pub fn selects(&self, p: &ParsedPacket, in_port: u16) -> bool {
        if in_port >= 64 || self.ports & (1 << in_port) == 0 {
            return false;
        }
        if self.protocols[usize::from(p.protocol / 64)] & (1 << (p.protocol % 64)) == 0 {
            return false;
        }
        if !self.l4_ports.is_empty() {
            let l4 = matches!(p.protocol, proto::TCP | proto::UDP) && p.l4_offset.is_some();
            if !l4
                || !self
                    .l4_ports
                    .iter()
                    .any(|r| r.contains(&p.src_port) || r.contains(&p.dst_port))
            {
                return false;
            }
        }
        if self.prefixes.is_empty() {
            return true;
        }
        let within = |a: &IpAddrBytes| {
            let v = u128::from_be_bytes(a.0);
            self.prefixes.iter().any(|&(net, mask)| v & mask == net)
        };
        match self.direction {
            MirrorDirection::Both => within(&p.src) || within(&p.dst),
            MirrorDirection::ToPrefixes => within(&p.dst),
            MirrorDirection::FromPrefixes => within(&p.src),
        }
    }

    /// Which way `p` goes relative to the session's prefixes, as the Geneve mirror option
    /// carries it (module docs): bit 0 the destination is in them, bit 1 the source.
    pub fn direction(&self, p: &ParsedPacket) -> u8 {
        let within = |a: &IpAddrBytes| {
            let v = u128::from_be_bytes(a.0);
            self.prefixes.iter().any(|&(net, mask)| v & mask == net)
        };
        u8::from(within(&p.dst)) | u8::from(within(&p.src)) << 1
    }
}

/// A prefix as a 128-bit network and mask over [`IpAddrBytes`] (IPv4 is IPv4-mapped).
pub(crate) fn net_mask(n: &IpNet) -> (u128, u128) {
    let (addr, len) = match n {
        IpNet::V4(n) => (
            u128::from_be_bytes(IpAddrBytes::from(n.addr).0),
            96 + u32::from(n.prefix_len),
        ),
        IpNet::V6(n) => (u128::from(n.addr), u32::from(n.prefix_len)),
    };
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    (addr & mask, mask)
}

/// Everything constant about the copies one session sends to one sensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorParams {
    /// Our MAC on the sensor's port.
    pub src_mac: [u8; 6],
    /// The sensor's MAC (or its next hop's).
    pub dst_mac: [u8; 6],
    /// Our address on the sensor's port.
    pub src_ip: Ipv4Addr,
    /// The sensor's address.
    pub dst_ip: Ipv4Addr,
    /// Outer TTL.
    pub ttl: u8,
    /// VXLAN or Geneve.
    pub format: MirrorFormat,
    /// The VNI.
    pub vni: u32,
    /// The session's id in the Geneve option: its stable counter slot ([`SessionSlots`]).
    pub session: u16,
    /// The session's copy point (in the Geneve option).
    pub copy_point: CopyPoint,
    /// The sensor link's MTU (outer IP packet): longer copies are truncated to fit.
    pub mtu: u16,
}

/// Prebuilt outer headers of the copies to one sensor (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorTemplate {
    hdr: [u8; MAX_OUTER_LEN],
    len: usize,
    /// Longest copied frame the sensor link carries.
    max_frame: usize,
    /// Where the direction byte of the Geneve mirror option is (`None`: VXLAN).
    direction_at: Option<usize>,
    /// Ones'-complement sum of the outer IPv4 header with its length and checksum 0: a
    /// copy's checksum is this plus its length, folded (no pass over the header per copy).
    ipv4_partial_sum: u32,
}

impl MirrorTemplate {
    /// The template; `None` when the VNI does not fit 24 bits or the MTU leaves no room.
    pub fn new(p: &MirrorParams) -> Option<Self> {
        if p.vni >= 1 << 24 {
            return None;
        }
        let mut hdr = [0u8; MAX_OUTER_LEN];
        ethernet::Repr {
            src_addr: MacAddr(p.src_mac),
            dst_addr: MacAddr(p.dst_mac),
            ethertype: ethertype::IPV4,
        }
        .emit(&mut ethernet::Frame::new_unchecked(&mut hdr[..]));
        let (tunnel_len, dst_port) = match p.format {
            MirrorFormat::Vxlan => (VXLAN_LEN, VXLAN_PORT),
            MirrorFormat::Geneve => (GENEVE_MIRROR_LEN, geneve::UDP_PORT),
        };
        let len = OUTER_IP_UDP + tunnel_len;
        ipv4::Repr {
            src_addr: p.src_ip.octets(),
            dst_addr: p.dst_ip.octets(),
            protocol: proto::UDP,
            payload_len: 0,
            ttl: p.ttl,
        }
        .emit(&mut ipv4::Packet::new_unchecked(
            &mut hdr[ethernet::HEADER_LEN..][..ipv4::HEADER_LEN],
        ));
        udp::Repr {
            src_port: 0,
            dst_port,
            payload_len: 0,
        }
        .emit(&mut udp::Packet::new_unchecked(
            &mut hdr[ethernet::HEADER_LEN + ipv4::HEADER_LEN..OUTER_IP_UDP],
        ));
        let t = &mut hdr[OUTER_IP_UDP..len];
        let vni = p.vni.to_be_bytes();
        match p.format {
            MirrorFormat::Vxlan => {
                t[0] = 0x08; // I flag: the VNI is valid.
                t[4..7].copy_from_slice(&vni[1..]);
            }
            MirrorFormat::Geneve => {
                t[0] = 2; // version 0, 2 words of options
                t[2..4].copy_from_slice(&geneve::PROTO_ETHERNET.to_be_bytes());
                t[4..7].copy_from_slice(&vni[1..]);
                t[8..10].copy_from_slice(&GENEVE_MIRROR_CLASS.to_be_bytes());
                t[10] = GENEVE_MIRROR_TYPE;
                t[11] = 1;
                t[12] = u8::from(p.copy_point == CopyPoint::AfterInspection);
                t[14..16].copy_from_slice(&p.session.to_be_bytes());
            }
        }
        let max_frame = usize::from(p.mtu).checked_sub(len - ethernet::HEADER_LEN)?;
        let ip = &mut hdr[ethernet::HEADER_LEN..][..ipv4::HEADER_LEN];
        let mut packet = ipv4::Packet::new_unchecked(&mut *ip);
        packet.set_total_len(0);
        packet.set_checksum(0);
        let ipv4_partial_sum = checksum::sum(0, ip);
        Some(MirrorTemplate {
            hdr,
            len,
            max_frame,
            direction_at: (p.format == MirrorFormat::Geneve).then_some(OUTER_IP_UDP + 13),
            ipv4_partial_sum,
        })
    }

    /// Whether the copies carry the direction (Geneve: the mirror option).
    pub fn carries_direction(&self) -> bool {
        self.direction_at.is_some()
    }

    /// Length of the outer headers (Ethernet to VXLAN or Geneve).
    pub fn outer_len(&self) -> usize {
        self.len
    }

    /// How many bytes of a `frame_len`-byte frame a copy carries, with the session's
    /// `snap` length (`None`: whole frames) and the sensor link's MTU.
    pub fn copied_len(&self, frame_len: usize, snap: Option<u16>) -> usize {
        frame_len
            .min(snap.map_or(usize::MAX, usize::from))
            .min(self.max_frame)
    }

    /// Writes the copy of `frame` (its first `copied` bytes, from [`copied_len`]) into `out`,
    /// which is exactly `outer_len() + copied` bytes; `flow_hash` picks the UDP source port
    /// (stable per flow, as RFC 7348 and RFC 8926 ask); `direction` (from
    /// [`Selector::direction`]) goes into the Geneve option.
    ///
    /// [`copied_len`]: MirrorTemplate::copied_len
    pub fn write(
        &self,
        out: &mut [u8],
        frame: &[u8],
        copied: usize,
        flow_hash: u32,
        direction: u8,
    ) {
        let len = self.len;
        out[..len].copy_from_slice(&self.hdr[..len]);
        if let Some(at) = self.direction_at {
            out[at] = direction;
        }
        out[len..len + copied].copy_from_slice(&frame[..copied]);
        let ip_len = (len + copied - ethernet::HEADER_LEN) as u16;
        let mut ip =
            ipv4::Packet::new_unchecked(&mut out[ethernet::HEADER_LEN..][..ipv4::HEADER_LEN]);
        ip.set_total_len(ip_len);
        ip.set_checksum(checksum::finish(self.ipv4_partial_sum + u32::from(ip_len)));
        let mut u = udp::Packet::new_unchecked(
            &mut out[ethernet::HEADER_LEN + ipv4::HEADER_LEN..OUTER_IP_UDP],
        );
        u.set_src_port(0xc000 | (flow_hash as u16 & 0x3fff));
        u.set_length(ip_len - ipv4::HEADER_LEN as u16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn params(format: MirrorFormat) -> MirrorParams {
        MirrorParams {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(10, 0, 9, 1),
            dst_ip: Ipv4Addr::new(10, 0, 9, 2),
            ttl: 64,
            format,
            vni: 0x123456,
            session: 3,
            copy_point: CopyPoint::AfterInspection,
            mtu: 1500,
        }
    }

    #[test]
    fn test_vxlan_copy_layout() {
        let t = MirrorTemplate::new(&params(MirrorFormat::Vxlan)).unwrap();
        assert_eq!(t.outer_len(), 50);
        let frame: Vec<u8> = (0..100u8).collect();
        let mut out = vec![0u8; 150];
        t.write(&mut out, &frame, 100, 0xabcd, 3);
        let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert_eq!((ip.total_len(), ip.protocol()), (136, proto::UDP));
        assert!(crate::wire::checksum::verifies(0, &out[14..34]));
        let u = udp::Packet::new_checked(&out[34..]).unwrap();
        assert_eq!(
            (u.src_port(), u.dst_port(), u.length()),
            (0xc000 | (0xabcd & 0x3fff), 4789, 116)
        );
        assert_eq!(&out[42..50], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(&out[50..], &frame[..]);
        // Truncation: the snap length, then the MTU (1500 - 36 of outer IP, UDP, VXLAN).
        assert_eq!(t.copied_len(1514, Some(128)), 128);
        assert_eq!(t.copied_len(9000, None), 1464);
        assert_eq!(t.copied_len(60, None), 60);
    }

    #[test]
    fn test_geneve_copy_layout() {
        let t = MirrorTemplate::new(&params(MirrorFormat::Geneve)).unwrap();
        assert_eq!(t.outer_len(), 58);
        let frame = [0x55u8; 80];
        let mut out = vec![0u8; 58 + 80];
        t.write(&mut out, &frame, 80, 1, 2);
        let g = geneve::Packet::new_checked(&out[42..]).unwrap();
        assert_eq!(
            (
                g.version(),
                g.options_len(),
                g.protocol_type(),
                g.vni(),
                g.critical()
            ),
            (0, 8, geneve::PROTO_ETHERNET, 0x123456, false)
        );
        match g.options_iter().next().unwrap().unwrap() {
            geneve::OptionRepr::Unknown { class, type_, data } => {
                assert_eq!((class, type_), (GENEVE_MIRROR_CLASS, GENEVE_MIRROR_TYPE));
                assert_eq!(
                    data,
                    &[1, 2, 0, 3],
                    "after inspection, from the prefixes, session 3"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(g.payload(), &frame[..]);
        assert!(MirrorTemplate::new(&MirrorParams {
            vni: 1 << 24,
            ..params(MirrorFormat::Vxlan)
        })
        .is_none());
    }

    #[test]
    fn test_selector() {
        let cfg = Config::from_toml_str(
            r#"
[[ports]]
name = "eth0"
device = "net_af_packet0,iface=veth0"
role = "both"
address = "10.0.0.1/24"
[[target_groups]]
name = "fw"
[[target_groups]]
name = "s"
user_ports = []
[[mirror_sessions]]
name = "m"
target_group = "s"
prefixes = ["10.1.0.0/16"]
protocols = [6]
l4_ports = ["80"]
direction = "to_prefixes"
"#,
        )
        .unwrap();
        let sel = Selector::new(&cfg.mirror_sessions[0], &[], &[]);
        let pkt = |src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16| ParsedPacket {
            protocol: proto,
            src: Ipv4Addr::from(src).into(),
            dst: Ipv4Addr::from(dst).into(),
            src_port: sport,
            dst_port: dport,
            l4_offset: Some(34),
            ..ParsedPacket::default()
        };
        assert!(sel.selects(&pkt([10, 2, 0, 1], [10, 1, 0, 5], 6, 40000, 80), 0));
        assert_eq!(
            sel.direction(&pkt([10, 2, 0, 1], [10, 1, 0, 5], 6, 40000, 80)),
            1
        );
        assert_eq!(
            sel.direction(&pkt([10, 1, 0, 5], [10, 2, 0, 1], 6, 80, 40000)),
            2
        );
        assert_eq!(
            sel.direction(&pkt([10, 1, 0, 5], [10, 1, 0, 6], 6, 80, 40000)),
            3
        );
        // Wrong way, wrong protocol, wrong port, outside the prefix, another port.
        assert!(!sel.selects(&pkt([10, 1, 0, 5], [10, 2, 0, 1], 6, 80, 40000), 0));
        assert!(!sel.selects(&pkt([10, 2, 0, 1], [10, 1, 0, 5], 17, 40000, 80), 0));
        assert!(!sel.selects(&pkt([10, 2, 0, 1], [10, 1, 0, 5], 6, 40000, 81), 0));
        assert!(!sel.selects(&pkt([10, 2, 0, 1], [10, 3, 0, 5], 6, 40000, 80), 0));
        assert!(sel.selects(&pkt([10, 2, 0, 1], [10, 1, 0, 5], 6, 40000, 80), 0));
        let mut all = cfg.mirror_sessions[0].clone();
        (all.prefixes, all.protocols, all.l4_ports, all.direction) =
            (vec![], vec![], vec![], MirrorDirection::Both);
        let any = Selector::new(&all, &[], &[]);
        assert!(any.selects(&pkt([1, 1, 1, 1], [2, 2, 2, 2], 50, 0, 0), 0));
        all.user_ports = vec![1];
        assert!(
            !Selector::new(&all, &[], &[]).selects(&pkt([1, 1, 1, 1], [2, 2, 2, 2], 50, 0, 0), 0)
        );
    }

    #[test]
    fn session_slots_stay_with_their_names() {
        let cfg = Config::from_toml_str(
            r#"
[[ports]]
name = "eth0"
device = "net_af_packet0,iface=veth0"
role = "both"
address = "10.0.0.1/24"
[[target_groups]]
name = "fw"
[[target_groups]]
name = "s"
user_ports = []
[[mirror_sessions]]
name = "m"
target_group = "s"
"#,
        )
        .unwrap();
        let named = |names: &[String]| -> Vec<MirrorSession> {
            names
                .iter()
                .map(|n| MirrorSession {
                    name: n.clone(),
                    ..cfg.mirror_sessions[0].clone()
                })
                .collect()
        };
        let n = |s: &str| s.to_owned();
        let mut slots = SessionSlots::default();
        assert_eq!(slots.assign(&named(&[n("a"), n("b"), n("c")])), [0, 1, 2]);
        // Deleting "a" leaves "b" and "c" where they count; "d" takes the free slot (to be
        // counted from there by the caller).
        assert_eq!(slots.assign(&named(&[n("b"), n("c")])), Vec::<u8>::new());
        assert_eq!((slots.slot("a"), slots.slot("b")), (None, Some(1)));
        assert_eq!(slots.assign(&named(&[n("c"), n("d"), n("b")])), [0]);
        assert_eq!(
            (slots.slot("b"), slots.slot("c"), slots.slot("d")),
            (Some(1), Some(2), Some(0))
        );
        // As many sessions as slots: one each.
        let many: Vec<String> = (0..crate::pipeline::MAX_MIRROR_SESSIONS)
            .map(|i| format!("s{i}"))
            .collect();
        assert_eq!(slots.assign(&named(&many)).len(), many.len());
        let mut used: Vec<u8> = many.iter().map(|m| slots.slot(m).unwrap()).collect();
        used.sort_unstable();
        used.dedup();
        assert_eq!(used.len(), many.len());
    }
}
