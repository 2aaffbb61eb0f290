//! The whole pure-Rust packet pipeline (`gwlb` without DPDK) under a fuzzed sequence of
//! operations: user frames (built from fuzzed fields, or raw bytes, or mutated replays),
//! appliance returns in both styles (an AWS echo of one of gwlb's own earlier encapsulations,
//! possibly mutated; a Linux-kernel return without options), forged and cross-appliance
//! returns, ICMP errors quoting earlier packets, floods that fill a small flow table, clock
//! jumps, expiry steps and snapshot changes (appliances turning unhealthy, draining, gone,
//! reused, weight 0, unresolved, initial).
//!
//! The fuzz input is read front to back by hand ([`In`]), one byte per choice, and a zero
//! byte always means the ordinary choice, so short or zero-filled inputs are ordinary traffic.
//! Byte 0 selects the group's modes (rebalance, fail-open, require_flow_cookie,
//! tcp_rst_on_drop, stickiness, tcp_unknown_non_syn) and the flow-table capacity; bytes 1-4 the appliance states
//! and the starting clock; the rest is a stream of operations (see [`Harness::step`]).
//!
//! Oracles, beyond "no panic" (overflow checks and debug assertions are on):
//! - two pipelines see the same sequence, one packet by packet (`Pipeline::process`), one in
//!   bursts (`Pipeline::process_burst`, flushed at every clock or snapshot change and at
//!   fuzzed sizes up to 70, so chunking past 32 is covered): verdicts, output bytes, all
//!   counters, flow-table length and flow-table statistics are equal;
//! - per packet (on the packet-by-packet pipeline), exactly one outcome counter moves and it
//!   matches the verdict; an encapsulated frame carries exactly the input's IP packet behind
//!   40 bytes of AWS Geneve to an appliance (at its MAC) that may take the flow (a new flow
//!   only to a healthy appliance with weight; an existing one per the rebalance / drain
//!   rules); a decapsulated frame is exactly the returned inner packet, from a registered
//!   appliance's address, MAC and port (with a cookie where required); fail-open forwarding
//!   only happens in a fail-open group with no healthy appliance; a TCP reset answers the
//!   sender; a packet for the host is left untouched and is one the host should get; the
//!   cookie of an encapsulation or an echoed return is one of the cookies of the flow whose
//!   owner a worker would compute (`owner_hash`): its hash, or a later connection's on a
//!   reused TCP tuple (`flow_table::is_flow_cookie`).
//!
//! Run it with `FUZZ_TARGET=pipeline scripts/fuzz.sh` (seeds: `gwlb/fuzz/seeds/pipeline`, one
//! short input per kind of outcome plus past reproducers). `GWLB_FUZZ_TRACE=1` prints every
//! operation and packet of an input (modes, verdicts, counters moved, bytes in and out).
//!
//! Found so far: `stateless_returns` counted a return of an unstored flow that was then
//! dropped for a wrong cookie (seed `stateless-return-counted-when-dropped`; fixed). The
//! oracle that took a flow's cookie for its hash failed on a SYN after a FIN, which now starts
//! the tuple's next connection with the next cookie (seed `reused-tcp-tuple-new-cookie`; the
//! oracle was the one to change).
//! Pipelines are reused across inputs (see [`take_pipelines`]) because creating them costs
//! more than most inputs; each input still starts from an empty table and zero counters.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::OnceLock;

use gwlb::config::{Config, UnknownNonSyn};
use gwlb::control::registry::{Registry, SlotState};
use gwlb::health::HealthState;
use gwlb::packet_buf::{PacketBuf, VecBuf};
use gwlb::parse::{self, DropReason, L3};
use gwlb::pipeline::{owner_hash, Counters, Pipeline, Verdict};
use gwlb::snapshot::{ApplianceState, LiveState, Snapshot};
use gwlb_tests::configs::{self, target_toml, CLIENT_MAC, STRANGER_MAC, TARGETS};
use gwlb_tests::frames::{eth, ethertype_of, routed};
use gwlb_tests::geneve_returns::geneve_base;
use gwlb_tests::headers::{ipv6_header, Ipv4};
use libfuzzer_sys::fuzz_target;

const GW_MAC: [u8; 6] = configs::PORT_MAC;
const GW_V4: [u8; 4] = configs::GW_V4.octets();
const GW_V6: [u8; 16] = configs::GW_V6.octets();
/// MACs a decapsulated or fail-open packet may be sent to: the configured neighbours and the
/// appliances (their addresses are neighbours too).
const NEXT_HOP_MACS: [[u8; 6]; 6] = [
    configs::ROUTER_V4,
    configs::HOST_50,
    configs::ROUTER_V6,
    TARGETS[0].mac,
    TARGETS[1].mac,
    TARGETS[2].mac,
];
/// When a draining appliance's delay ends (the starting clock is chosen around it).
const DRAIN_UNTIL: u32 = 1000;
/// Most packets one input sends.
const MAX_PACKETS: usize = 400;

/// An address of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    fn is_v6(&self) -> bool {
        matches!(self, Addr::V6(_))
    }
    const fn of(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Addr::V4(a.octets()),
            IpAddr::V6(a) => Addr::V6(a.octets()),
        }
    }
}

/// The three appliances of the configuration (the test kit's lab), in slot order: (address,
/// MAC).
const APPLIANCES: [(Addr, [u8; 6]); 3] = [
    (Addr::of(TARGETS[0].addr), TARGETS[0].mac),
    (Addr::of(TARGETS[1].addr), TARGETS[1].mac),
    (Addr::of(TARGETS[2].addr), TARGETS[2].mac),
];

/// `GWLB_FUZZ_TRACE=1`: print every packet and its verdict (to read a reproducer).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("GWLB_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

/// The fuzz input, read from the front; zeros once it is used up.
struct In<'a> {
    d: &'a [u8],
    i: usize,
}

impl In<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.d.get(self.i).copied().unwrap_or(0);
        self.i += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// 0..n (n <= 256: one byte).
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n.max(1)
    }
    /// True one time in `n`; false for a zero byte.
    fn one_in(&mut self, n: u8) -> bool {
        self.u8() % n == n - 1
    }
    fn is_empty(&self) -> bool {
        self.i >= self.d.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// What the control plane says about one appliance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Health {
    Healthy,
    Unhealthy,
    /// Deregistered, draining until [`DRAIN_UNTIL`].
    Draining,
    Gone,
    /// Its slot given to a new target (generation + 1), healthy.
    Reused,
    /// Healthy, weight 0.
    Weight0,
    /// No MAC known (no static MAC; learnable through the port's kernel interface).
    Unresolved,
    /// Registered, health checks not passed yet: no new flows, keeps the flows it has.
    Initial,
}

impl Health {
    fn from_byte(b: u8) -> Self {
        match b % 7 {
            0 => Health::Healthy,
            1 => Health::Unhealthy,
            2 => Health::Draining,
            3 => Health::Gone,
            4 => Health::Reused,
            5 => Health::Weight0,
            // Bytes from 0x80 up: the seeds' appliance bytes keep their meaning.
            _ if b >= 0x80 => Health::Initial,
            _ => Health::Unresolved,
        }
    }
}

/// The group's modes, from byte 0 of the input (bits 6-7 pick the table capacity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Modes(u8);

impl Modes {
    fn rebalance(self) -> bool {
        self.0 & 1 != 0
    }
    fn fail_open(self) -> bool {
        self.0 & 2 != 0
    }
    fn require_cookie(self) -> bool {
        self.0 & 4 != 0
    }
    fn tcp_rst(self) -> bool {
        self.0 & 8 != 0
    }
    fn stickiness(self) -> &'static str {
        match (self.0 >> 4) & 3 {
            1 => "3-tuple",
            2 => "2-tuple",
            _ => "5-tuple",
        }
    }
    /// `tcp_unknown_non_syn`: stickiness value 3 (5-tuple again) refuses TCP packets that do
    /// not open a connection of an unknown flow, with a reset when `tcp_rst` is set, else by
    /// dropping them; otherwise they are admitted.
    fn unknown_non_syn(self) -> &'static str {
        match ((self.0 >> 4) & 3, self.tcp_rst()) {
            (3, true) => "reset",
            (3, false) => "drop",
            _ => "admit",
        }
    }
}

fn config_text(modes: Modes, health: [Health; 3]) -> String {
    let mut targets = String::new();
    for (t, h) in TARGETS.iter().zip(health) {
        targets.push_str(&target_toml(
            t.addr,
            (h != Health::Unresolved).then_some(t.mac),
            Some(if h == Health::Weight0 { 0 } else { 1 }),
        ));
    }
    format!(
        r#"[dataplane]
worker_cpus = [1]
main_cpu = 0
flow_hash_seed = "{seed:#x}"
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = {addresses}
kernel_interface = "gw0"
{lab}
[[routes]]
prefix = "10.9.0.0/16"
via = "10.0.0.250"
port = "p"
[[target_groups]]
name = "fw"
geneve_vni = 77
endpoint_id = 1234
attachment_id = 5678
maglev_table_size = 307
tcp_idle_timeout_s = 60
other_idle_timeout_s = 5
stickiness = "{stickiness}"
on_unhealthy = "{on_unhealthy}"
on_all_unhealthy = "{on_all_unhealthy}"
tcp_rst_on_drop = {tcp_rst}
tcp_unknown_non_syn = "{non_syn}"
require_flow_cookie = {cookie}
[target_groups.health_check]
enabled = false
{targets}{control}"#,
        seed = configs::SEED,
        addresses = configs::PORT_ADDRESSES,
        lab = configs::lab_routes_and_neighbors_toml("p"),
        control = configs::CONTROL_OFF,
        stickiness = modes.stickiness(),
        on_unhealthy = if modes.rebalance() {
            "rebalance"
        } else {
            "no_rebalance"
        },
        on_all_unhealthy = if modes.fail_open() {
            "fail_open"
        } else {
            "fail_closed"
        },
        tcp_rst = modes.tcp_rst(),
        non_syn = modes.unknown_non_syn(),
        cookie = modes.require_cookie(),
    )
}

fn build_snapshot(modes: Modes, health: [Health; 3]) -> Snapshot {
    let cfg = Config::from_toml_str(&config_text(modes, health)).expect("fuzz config is valid");
    let mut reg = Registry::new(&cfg, 16).expect("registry");
    for (slot, h) in health.iter().enumerate() {
        let slot = slot as u16;
        match h {
            Health::Unhealthy => {
                reg.set_health(slot, false, "fuzz".into());
            }
            Health::Draining => {
                reg.slot_mut(slot).expect("slot").state = SlotState::Draining { until: DRAIN_UNTIL }
            }
            Health::Gone => reg.slot_mut(slot).expect("slot").state = SlotState::Gone,
            Health::Reused => reg.slot_mut(slot).expect("slot").generation = 1,
            Health::Initial => reg.slot_mut(slot).expect("slot").health = HealthState::Initial,
            Health::Healthy | Health::Weight0 | Health::Unresolved => {}
        }
    }
    Snapshot::build_with(&cfg, &[GW_MAC], &reg, &LiveState::default(), 1).expect("snapshot")
}

type SnapKey = (u8, [Health; 3]);

thread_local! {
    /// Snapshots by (modes, appliance states): built once per process.
    static SNAPSHOTS: RefCell<HashMap<SnapKey, Rc<Snapshot>>> = RefCell::new(HashMap::new());
}

fn snapshot(modes: Modes, health: [Health; 3]) -> Rc<Snapshot> {
    let key = (modes.0 & 0x3f, health);
    SNAPSHOTS.with(|s| {
        s.borrow_mut()
            .entry(key)
            .or_insert_with(|| Rc::new(build_snapshot(Modes(key.0), health)))
            .clone()
    })
}

// ---------------------------------------------------------------------------------------------
// Packet bytes
// ---------------------------------------------------------------------------------------------

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Offset of the L3 header of a frame (after any number of VLAN tags) and its ethertype.
fn l3_of(frame: &[u8]) -> Option<(usize, u16)> {
    let mut off = 12;
    loop {
        let et = be16(frame, off)?;
        if et == 0x8100 || et == 0x88a8 {
            off += 4;
        } else {
            return Some((off + 2, et));
        }
    }
}

/// Length of the IP packet at the start of `ip`, from its own header.
fn ip_len(ip: &[u8]) -> Option<usize> {
    match ip.first()? >> 4 {
        4 => be16(ip, 2).map(usize::from),
        6 => be16(ip, 4).map(|l| 40 + usize::from(l)),
        _ => None,
    }
}

/// The IP packet of a frame, without L2 padding.
fn ip_of_frame(frame: &[u8]) -> Option<&[u8]> {
    let (l3, _) = l3_of(frame)?;
    let ip = frame.get(l3..)?;
    ip.get(..ip_len(ip)?)
}

/// Source and destination addresses of the IP header at the start of `ip`.
fn addrs_of(ip: &[u8]) -> Option<(Addr, Addr)> {
    match ip.first()? >> 4 {
        4 => Some((
            Addr::V4(ip.get(12..16)?.try_into().ok()?),
            Addr::V4(ip.get(16..20)?.try_into().ok()?),
        )),
        6 => Some((
            Addr::V6(ip.get(8..24)?.try_into().ok()?),
            Addr::V6(ip.get(24..40)?.try_into().ok()?),
        )),
        _ => None,
    }
}

/// Offset of the L4 header in the IP packet `ip` (IPv4 IHL, or the IPv6 extension header
/// chain walked) and the final protocol; `None` for later fragments.
fn l4_of(ip: &[u8]) -> Option<(usize, u8)> {
    match ip.first()? >> 4 {
        4 => {
            if be16(ip, 6)? & 0x1fff != 0 {
                return None;
            }
            Some((usize::from(ip[0] & 0x0f) * 4, *ip.get(9)?))
        }
        6 => {
            let mut nh = *ip.get(6)?;
            let mut off = 40;
            for _ in 0..16 {
                let len = match nh {
                    0 | 43 | 60 | 135 | 139 | 140 => (usize::from(*ip.get(off + 1)?) + 1) * 8,
                    51 => (usize::from(*ip.get(off + 1)?) + 2) * 4,
                    44 => {
                        if be16(ip, off + 2)? >> 3 != 0 {
                            return None;
                        }
                        8
                    }
                    _ => return Some((off, nh)),
                };
                nh = *ip.get(off)?;
                off += len;
            }
            None
        }
        _ => None,
    }
}

/// An IPv4 header (no options, DF, identification 0x1234) for `payload_len` bytes of
/// protocol `proto`.
fn ipv4_header(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, payload_len: usize) -> Vec<u8> {
    Ipv4 {
        ttl,
        frag: 0x4000,
        ..Ipv4::new(src, dst, proto)
    }
    .header(&[], payload_len)
}

// ---------------------------------------------------------------------------------------------
// User traffic
// ---------------------------------------------------------------------------------------------

/// The transport of a user flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
    Echo,
    /// An ICMP error quoting an earlier packet (or junk).
    IcmpError,
    /// Any other protocol number, no L4 header.
    Other(u8),
}

/// A user flow, in the direction of its packet.
#[derive(Clone, Copy, Debug)]
struct Flow {
    src: Addr,
    dst: Addr,
    transport: Transport,
    sport: u16,
    dport: u16,
}

impl Flow {
    fn reversed(&self) -> Self {
        Flow {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }
}

fn v4_pool(inp: &mut In<'_>, offset: usize) -> [u8; 4] {
    const POOL: [[u8; 4]; 12] = [
        [10, 1, 0, 1],
        [10, 2, 0, 1],
        [10, 1, 0, 2],
        [10, 2, 0, 2],
        [10, 0, 0, 50],   // connected, static neighbour
        [10, 0, 0, 77],   // connected, no neighbour
        [10, 9, 0, 1],    // routed via an unresolved next hop
        [10, 0, 0, 1],    // the gateway
        [10, 0, 0, 11],   // an appliance
        [224, 0, 0, 251], // multicast
        [255, 255, 255, 255],
        [192, 0, 2, 1],
    ];
    let i = (inp.below(16) + offset) % 16;
    POOL.get(i)
        .copied()
        .unwrap_or_else(|| [inp.u8(), inp.u8(), inp.u8(), inp.u8()])
}

fn v6_pool(inp: &mut In<'_>, offset: usize) -> [u8; 16] {
    let mk = |head: [u8; 2], tail: u8| {
        let mut a = [0u8; 16];
        a[..2].copy_from_slice(&head);
        a[15] = tail;
        a
    };
    let i = (inp.below(12) + offset) % 12;
    match i {
        0 => mk([0xfd, 0x01], 1),
        1 => mk([0xfd, 0x02], 1),
        2 => mk([0xfd, 0x01], 2),
        3 => mk([0xfd, 0x02], 2),
        4 => GW_V6,
        5 => mk([0xfd, 0x00], 0x13),
        6 => mk([0xfe, 0x80], 1),
        7 => mk([0xff, 0x02], 1),
        8 => mk([0xfd, 0x00], 0x77),
        _ => {
            let mut a = [0u8; 16];
            for b in &mut a {
                *b = inp.u8();
            }
            a
        }
    }
}

fn port_pool(inp: &mut In<'_>, offset: usize) -> u16 {
    match (inp.below(8) + offset) % 8 {
        0 => 40000 + u16::from(inp.u8() & 0x0f),
        1 => 80,
        2 => 443,
        3 => 53,
        4 => 6081,
        _ => inp.u16(),
    }
}

fn new_flow(inp: &mut In<'_>) -> Flow {
    let v6 = inp.one_in(3);
    let (src, dst) = if v6 {
        (Addr::V6(v6_pool(inp, 0)), Addr::V6(v6_pool(inp, 1)))
    } else {
        (Addr::V4(v4_pool(inp, 0)), Addr::V4(v4_pool(inp, 1)))
    };
    let transport = match inp.below(10) {
        0 | 4 => Transport::Udp,
        1 | 3 => Transport::Tcp,
        2 => Transport::Echo,
        5 => Transport::IcmpError,
        6 => Transport::Other(47),
        7 => Transport::Other(50),
        8 => Transport::Other(132),
        _ => Transport::Other(inp.u8()),
    };
    Flow {
        src,
        dst,
        transport,
        sport: port_pool(inp, 0),
        dport: port_pool(inp, 1),
    }
}

/// The transport header and payload of a packet of `f`.
fn l4_bytes(inp: &mut In<'_>, f: &Flow, quotes: &[Vec<u8>], reply: bool) -> (u8, Vec<u8>) {
    let v6 = f.src.is_v6();
    let len_sel = inp.u8();
    let payload_len = if len_sel < 240 {
        usize::from(len_sel % 48)
    } else {
        usize::from(inp.u16() % 1600)
    };
    let fill = inp.u8();
    let payload: Vec<u8> = (0..payload_len).map(|i| fill ^ i as u8).collect();
    let mut l4 = Vec::with_capacity(payload_len + 40);
    let proto = match f.transport {
        Transport::Tcp => {
            let flags = match inp.u8() {
                0 if reply => 0x12,
                0 => 0x02,
                b => b,
            };
            let opt_words = if inp.one_in(4) { inp.below(11) } else { 0 };
            l4.extend_from_slice(&f.sport.to_be_bytes());
            l4.extend_from_slice(&f.dport.to_be_bytes());
            l4.extend_from_slice(&inp.u32().to_be_bytes());
            l4.extend_from_slice(&inp.u32().to_be_bytes());
            l4.extend_from_slice(&[((5 + opt_words) as u8) << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
            l4.resize(l4.len() + opt_words * 4, 1);
            6
        }
        Transport::Udp => {
            l4.extend_from_slice(&f.sport.to_be_bytes());
            l4.extend_from_slice(&f.dport.to_be_bytes());
            l4.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            17
        }
        Transport::Echo => {
            let ty = match (v6, reply) {
                (false, false) => 8,
                (false, true) => 0,
                (true, false) => 128,
                (true, true) => 129,
            };
            l4.extend_from_slice(&[ty, 0, 0, 0]);
            l4.extend_from_slice(&f.sport.to_be_bytes());
            l4.extend_from_slice(&inp.u16().to_be_bytes());
            if v6 {
                58
            } else {
                1
            }
        }
        Transport::IcmpError => {
            let ty = if v6 {
                [1u8, 2, 3, 4][inp.below(4)]
            } else {
                [3u8, 11, 12, 4, 5][inp.below(5)]
            };
            l4.extend_from_slice(&[ty, inp.u8(), 0, 0, 0, 0, 0, 0]);
            // The quote: an earlier packet, cut somewhere, or junk.
            if !quotes.is_empty() && !inp.one_in(4) {
                let q = &quotes[inp.below(quotes.len())];
                let cut = if inp.one_in(2) {
                    q.len()
                } else {
                    usize::from(inp.u8()) % (q.len() + 1)
                };
                l4.extend_from_slice(&q[..cut]);
            } else {
                let n = inp.below(64);
                l4.extend((0..n).map(|i| fill.wrapping_mul(i as u8)));
            }
            if v6 {
                58
            } else {
                1
            }
        }
        Transport::Other(p) => p,
    };
    l4.extend_from_slice(&payload);
    (proto, l4)
}

/// An IP packet of flow `f`, with fuzzed extras: IPv4 options or an IPv6 extension header
/// chain (up to 11 headers, over the limit of 8), fragments, TTL edges.
fn ip_packet(inp: &mut In<'_>, f: &Flow, quotes: &[Vec<u8>], reply: bool) -> Vec<u8> {
    let (proto, mut l4) = l4_bytes(inp, f, quotes, reply);
    let extras = inp.u8();
    let ttl = if extras & 0x80 != 0 {
        [0u8, 1, 255, 2][inp.below(4)]
    } else {
        64
    };
    match (f.src, f.dst) {
        (Addr::V4(s), Addr::V4(d)) => {
            let mut opts = Vec::new();
            if extras & 1 != 0 {
                let words = 1 + inp.below(10);
                let ty = [1u8, 0, 7, 68, 130, 148, 0x44, 0xff][inp.below(8)];
                opts.push(ty);
                opts.push(inp.u8());
                while opts.len() < words * 4 {
                    opts.push(1);
                }
            }
            let mut frag = 0x4000u16;
            if extras & 2 != 0 {
                // First fragment (MF), later fragment, or last fragment; a later fragment carries
                // no L4 header (its bytes are just data).
                frag = match inp.below(3) {
                    0 => 0x2000,
                    1 => 0x2000 | (1 + inp.u16() % 0x1ffe),
                    _ => 1 + inp.u16() % 0x1ffe,
                };
                if frag & 0x1fff != 0 && inp.one_in(2) {
                    l4.truncate(inp.below(l4.len() + 1) & !7);
                }
            }
            let id = inp.u16();
            Ipv4 {
                src: s,
                dst: d,
                proto,
                ttl,
                id,
                frag,
            }
            .packet(&opts, &l4)
        }
        (Addr::V6(s), Addr::V6(d)) => {
            let mut chain: Vec<(u8, Vec<u8>)> = Vec::new();
            if extras & 1 != 0 {
                let n = 1 + inp.below(11);
                for i in 0..n {
                    let ty = [0u8, 43, 60, 44, 51, 135, 139, 140, 60, 43][inp.below(10)];
                    // Hop-by-Hop only first, usually.
                    let ty = if ty == 0 && i > 0 && !inp.one_in(4) {
                        60
                    } else {
                        ty
                    };
                    let body = match ty {
                        51 => {
                            let l = inp.below(6);
                            let mut b = vec![0u8; (l + 2) * 4];
                            b[1] = l as u8;
                            b
                        }
                        44 => {
                            let mut b = vec![0u8; 8];
                            let off_m: u16 = if inp.one_in(2) {
                                (inp.u16() & 0xfff8) | u16::from(inp.u8() & 1)
                            } else {
                                u16::from(inp.u8() & 1)
                            };
                            b[2..4].copy_from_slice(&off_m.to_be_bytes());
                            b[4..8].copy_from_slice(&inp.u32().to_be_bytes());
                            b
                        }
                        _ => {
                            let l = inp.below(4);
                            let mut b = vec![0u8; (l + 1) * 8];
                            b[1] = l as u8;
                            b
                        }
                    };
                    chain.push((ty, body));
                }
            } else if extras & 2 != 0 {
                let mut b = vec![0u8; 8];
                let off_m: u16 = match inp.below(3) {
                    0 => 1,
                    1 => ((1 + inp.u16() % 0x1ffe) << 3) | 1,
                    _ => (1 + inp.u16() % 0x1ffe) << 3,
                };
                b[2..4].copy_from_slice(&off_m.to_be_bytes());
                b[4..8].copy_from_slice(&inp.u32().to_be_bytes());
                chain.push((44, b));
            }
            let mut body = Vec::new();
            for (i, (_, b)) in chain.iter().enumerate() {
                let next = chain.get(i + 1).map_or(proto, |c| c.0);
                let mut b = b.clone();
                b[0] = next;
                body.extend_from_slice(&b);
            }
            body.extend_from_slice(&l4);
            let first = chain.first().map_or(proto, |c| c.0);
            let mut h = ipv6_header(s, d, first, ttl, body.len());
            h.extend_from_slice(&body);
            h
        }
        _ => Vec::new(),
    }
}

/// An Ethernet frame around `ip`, with fuzzed L2 (VLAN tags, MACs, padding) and corruption.
fn user_frame(inp: &mut In<'_>, ip: &[u8]) -> Vec<u8> {
    let l2 = inp.u8();
    let (dst, src) = if l2 & 1 != 0 {
        let dst = [GW_MAC, [0xff; 6], STRANGER_MAC, APPLIANCES[0].1][inp.below(4)];
        let src = [CLIENT_MAC, APPLIANCES[1].1, APPLIANCES[2].1, STRANGER_MAC][inp.below(4)];
        (dst, src)
    } else {
        (GW_MAC, CLIENT_MAC)
    };
    let mut f = eth(dst, src, 0);
    f.truncate(12);
    if l2 & 2 != 0 {
        for _ in 0..1 + inp.below(3) {
            let tpid: u16 = if inp.one_in(3) { 0x88a8 } else { 0x8100 };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(inp.u16() & 0x3fff).to_be_bytes());
        }
    }
    f.extend_from_slice(&ethertype_of(ip).to_be_bytes());
    let l3 = f.len();
    f.extend_from_slice(ip);
    if l2 & 4 != 0 {
        // Ethernet padding.
        let n = inp.below(41);
        f.extend((0..n).map(|i| 0xee ^ i as u8));
    }
    if l2 & 8 != 0 {
        // Corruption of one header field.
        match inp.below(6) {
            0 => {
                let v = inp.u16().to_be_bytes();
                let at = if ip.first().is_some_and(|b| b >> 4 == 6) {
                    4
                } else {
                    2
                };
                if f.len() >= l3 + at + 2 {
                    f[l3 + at..l3 + at + 2].copy_from_slice(&v);
                }
            }
            1 => {
                let et = if ethertype_of(ip) == 0x0800 {
                    0x86ddu16
                } else {
                    0x0800
                };
                f[l3 - 2..l3].copy_from_slice(&et.to_be_bytes());
            }
            2 => f[l3 - 2..l3].copy_from_slice(&0x0806u16.to_be_bytes()),
            3 => {
                if let Some(b) = f.get_mut(l3) {
                    *b = (*b & 0x0f) | (inp.u8() << 4);
                }
            }
            4 => {
                if let Some(b) = f.get_mut(l3) {
                    *b = (*b & 0xf0) | (inp.u8() & 0x0f);
                }
            }
            _ => {
                let at = l3 + inp.below(f.len() - l3 + 1);
                let v = inp.u8();
                if let Some(b) = f.get_mut(at) {
                    *b = v;
                }
            }
        }
    }
    if l2 & 16 != 0 {
        // Truncated anywhere.
        let cut = usize::from(inp.u16()) % (f.len() + 1);
        f.truncate(cut);
    }
    f
}

// ---------------------------------------------------------------------------------------------
// Appliance returns
// ---------------------------------------------------------------------------------------------

/// One encapsulation gwlb made: its output frame, the inner IP packet, the appliance's slot.
struct Sent {
    enc: Vec<u8>,
    inner: Vec<u8>,
    slot: usize,
}

/// The Geneve frame of an appliance's packet back to the gateway.
fn geneve_frame(
    src_mac: [u8; 6],
    src: Addr,
    dst: Addr,
    sport: u16,
    ttl: u8,
    geneve: &[u8],
    inner: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + geneve.len() + inner.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&6081u16.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(geneve);
    udp.extend_from_slice(inner);
    let (et, ip) = match (src, dst) {
        (Addr::V4(s), Addr::V4(d)) => (0x0800, ipv4_header(s, d, 17, ttl, udp_len)),
        (Addr::V6(s), Addr::V6(d)) => (0x86dd, ipv6_header(s, d, 17, ttl, udp_len)),
        _ => (0x0800, Vec::new()),
    };
    let mut f = eth(GW_MAC, src_mac, et);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// Geneve base header with `opts` (Opt Len from their length).
fn geneve_header(protocol: u16, vni: u32, flags: u8, opts: &[u8]) -> Vec<u8> {
    let mut g = geneve_base((opts.len() / 4) as u8, flags, protocol, vni);
    g.extend_from_slice(opts);
    g
}

fn gw_addr_for(a: Addr) -> Addr {
    if a.is_v6() {
        Addr::V6(GW_V6)
    } else {
        Addr::V4(GW_V4)
    }
}

/// The Geneve header (with options) gwlb put on `enc`.
fn geneve_of_enc(enc: &[u8]) -> &[u8] {
    let at = if be16(enc, 12) == Some(0x86dd) {
        14 + 40 + 8
    } else {
        14 + 20 + 8
    };
    enc.get(at..at + 40).unwrap_or(&[])
}

/// A return: (frame, the inner packet it carries when nothing mutated it afterwards).
fn build_return(inp: &mut In<'_>, h: &Harness, kind: u8) -> (Vec<u8>, Option<Vec<u8>>) {
    let s = &h.sent[inp.below(h.sent.len())];
    let (mut addr, mut mac) = APPLIANCES[s.slot];
    let mut inner = s.inner.clone();
    let mut sport = be16(&s.enc, if s.enc[12] == 0x86 { 54 } else { 34 }).unwrap_or(0);
    let mut ttl = 2;
    let mut g = geneve_of_enc(&s.enc).to_vec();
    // Whether `inner` is what a decapsulation must yield (unless mutated below).
    let mut exact = true;
    match kind {
        // AWS echo, possibly with its header changed.
        0 => match inp.below(12) {
            0..=5 => {}
            6 => g[36] ^= 1 + inp.u8() % 255,      // wrong cookie
            7 => g[4] ^= inp.u8(),                 // VNI (informational)
            8 => g[8 + 2] |= 0x80,                 // critical bit on a known option
            9 => g[1] |= 0x40 | (inp.u8() & 0x80), // C (and maybe O) flag
            10 => g[2..4].copy_from_slice(&inp.u16().to_be_bytes()), // protocol type
            _ => inner = routed(&inner),
        },
        // Linux kernel: no options, its VNI, hashed source port, TTL 64, the packet routed.
        1 => {
            g = geneve_header(ethertype_of(&inner), inp.u32() & 0xff_ffff, 0, &[]);
            sport = inp.u16();
            ttl = 64;
            if !inp.one_in(4) {
                inner = routed(&inner);
            }
        }
        // Everything else.
        _ => {
            if inp.one_in(2) {
                g = geneve_header(ethertype_of(&inner), 9, 0, &[]);
            }
            match inp.below(10) {
                // Another registered appliance, from its own address and MAC.
                0 | 1 => (addr, mac) = APPLIANCES[(s.slot + 1 + inp.below(2)) % 3],
                // Not an appliance.
                2 => {
                    addr = if addr.is_v6() {
                        let mut a = GW_V6;
                        a[15] = 0x99;
                        Addr::V6(a)
                    } else {
                        Addr::V4([10, 0, 0, 99])
                    }
                }
                // The flow's appliance's address from another MAC (a stranger's or another
                // appliance's), or another appliance's address from the flow's appliance's MAC.
                3 => mac = STRANGER_MAC,
                4 => mac = APPLIANCES[(s.slot + 1 + inp.below(2)) % 3].1,
                5 => addr = APPLIANCES[(s.slot + 1 + inp.below(2)) % 3].0,
                // A flow never sent, from the flow's appliance.
                6 => {
                    let f = new_flow(inp);
                    inner = ip_packet(inp, &f, &[], false);
                    g = geneve_header(ethertype_of(&inner), 9, 0, &[]);
                }
                // Another sent flow's packet, from this flow's appliance.
                7 => {
                    let o = &h.sent[inp.below(h.sent.len())];
                    inner = o.inner.clone();
                }
                // Fuzzed options (lengths, classes, critical bits).
                _ => {
                    let mut opts = Vec::new();
                    for _ in 0..inp.below(5) {
                        let class: u16 = [0x0108u16, 0x0123, 0xffff, 0][inp.below(4)];
                        let ty = inp.u8();
                        let len = inp.below(8);
                        opts.extend_from_slice(&class.to_be_bytes());
                        opts.push(ty);
                        opts.push(len as u8 | (inp.u8() & 0xe0));
                        opts.resize(opts.len() + len * 4, 0x5a);
                    }
                    let flags = inp.u8() & 0xc0;
                    g = geneve_header(ethertype_of(&inner), 9, flags, &opts);
                    if inp.one_in(3) {
                        // An Opt Len that disagrees with the options: what is "inner" then
                        // depends on it.
                        g[0] = inp.u8() & 0x3f;
                        exact = false;
                    }
                }
            }
        }
    }
    let dst = if inp.one_in(8) {
        // Not to the gateway: user traffic (or the wrong family).
        [Addr::V4([10, 2, 0, 1]), Addr::V6(GW_V6), Addr::V4(GW_V4)][inp.below(3)]
    } else {
        gw_addr_for(addr)
    };
    let mut f = geneve_frame(mac, addr, dst, sport, ttl, &g, &inner);
    let known = match inp.below(8) {
        0..=4 => Some(inner),
        5 => {
            // Bytes flipped anywhere.
            for _ in 0..1 + inp.below(4) {
                let at = usize::from(inp.u16()) % f.len();
                f[at] ^= 1 + inp.u8() % 255;
            }
            None
        }
        6 => {
            let cut = usize::from(inp.u16()) % (f.len() + 1);
            f.truncate(cut);
            None
        }
        _ => {
            // Bytes after the outer IP packet (Ethernet padding / trailer).
            let n = 1 + inp.below(16);
            f.resize(f.len() + n, 0xde);
            Some(inner)
        }
    };
    (f, known.filter(|_| exact))
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

/// The scalar counters and the first appliance slots, copied cheaply per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Brief {
    packets: u64,
    encapsulated: u64,
    decapsulated: u64,
    fail_open: u64,
    to_host: u64,
    new_flows: u64,
    rebalanced_flows: u64,
    tcp_resets: u64,
    icmp_too_big: u64,
    table_full: u64,
    stateless_returns: u64,
    drops: [u64; DropReason::COUNT],
    appliance_packets: [u64; 3],
    appliance_bytes: [u64; 3],
    appliance_flows: [u64; 3],
}

fn brief(c: &Counters) -> Brief {
    let first = |v: &[u64]| [v[0], v[1], v[2]];
    Brief {
        packets: c.processed,
        encapsulated: c.encapsulated,
        decapsulated: c.decapsulated,
        fail_open: c.fail_open,
        to_host: c.to_host,
        new_flows: c.new_flows,
        rebalanced_flows: c.rebalanced_flows,
        tcp_resets: c.tcp_resets,
        icmp_too_big: c.icmp_too_big,
        table_full: c.table_full,
        stateless_returns: c.stateless_returns,
        drops: c.drops,
        appliance_packets: first(&c.appliance_packets),
        appliance_bytes: first(&c.appliance_bytes),
        appliance_flows: first(&c.appliance_flows),
    }
}

/// How many drops were counted between two copies: 0, or 1 (one reason up by one); panics
/// on anything else.
fn drops_delta(before: &Brief, after: &Brief) -> u64 {
    if before.drops == after.drops {
        return 0;
    }
    let moved: Vec<(usize, u64)> = (0..DropReason::COUNT)
        .filter(|&i| after.drops[i] != before.drops[i])
        .map(|i| (i, after.drops[i] - before.drops[i]))
        .collect();
    assert!(
        moved.len() == 1 && moved[0].1 == 1,
        "one packet, one drop: {moved:?}"
    );
    1
}

/// A packet the burst pipeline has still to see, with what the per-packet pipeline made of it.
struct Pending {
    frame: Vec<u8>,
    headroom: usize,
    verdict: Verdict,
    out: Vec<u8>,
}

/// What kind of packet this is, for the per-packet oracles.
enum Origin {
    /// User traffic (or anything else not built as a return).
    User,
    /// A Geneve return; the inner packet when it was not mutated after it was built.
    Return(Option<Vec<u8>>),
}

struct Harness {
    modes: Modes,
    health: [Health; 3],
    snap: Rc<Snapshot>,
    /// The two pipelines under test.
    pipes: Pipes,
    pending: Vec<Pending>,
    burst_size: usize,
    now: u32,
    in_port: u16,
    packets: usize,
    /// gwlb's recent encapsulations (returns echo them).
    sent: Vec<Sent>,
    /// Recent user flows (their replies and ICMP errors follow).
    flows: Vec<Flow>,
    /// Recent input IP packets (ICMP errors quote them) and frames (replayed, mutated).
    quotes: Vec<Vec<u8>>,
    frames: Vec<Vec<u8>>,
}

/// The two pipelines under test: `one` sees every packet through `Pipeline::process`, `burst`
/// the same packets through `Pipeline::process_burst`.
struct Pipes {
    one: Pipeline,
    burst: Pipeline,
    /// Buckets visited by `expire_step` since the pipelines were created (where the sweep is).
    swept: u64,
    /// The capacity they were created with (the pool's key).
    capacity: usize,
}

thread_local! {
    /// Pipelines by capacity, reused from one input to the next: creating them costs more
    /// than running most inputs (their memory is mapped and faulted in). Reset so that an
    /// input behaves as on fresh ones: flow table emptied, its expiry sweep back at bucket 0,
    /// counters zeroed (only the flow table's statistics keep counting, identically in both).
    static PIPES: RefCell<HashMap<usize, Pipes>> = RefCell::new(HashMap::new());
}

fn take_pipelines(capacity: usize, timeouts: &gwlb::flow_table::GroupTimeouts) -> Pipes {
    let reused = PIPES.with(|p| p.borrow_mut().remove(&capacity));
    let mut pipes = reused.unwrap_or_else(|| Pipes {
        one: Pipeline::new(capacity, Default::default()).expect("pipeline"),
        burst: Pipeline::new(capacity, Default::default()).expect("pipeline"),
        swept: 0,
        capacity,
    });
    for p in [&mut pipes.one, &mut pipes.burst] {
        p.flows_mut().clear();
        p.flows_mut().set_group_timeouts(timeouts);
        let buckets = p.flows().buckets();
        let at = (pipes.swept % buckets as u64) as usize;
        if at != 0 {
            p.flows_mut().expire_step(0, buckets - at);
        }
        let c = &mut p.counters;
        c.processed = 0;
        c.encapsulated = 0;
        c.decapsulated = 0;
        c.fail_open = 0;
        c.to_host = 0;
        c.new_flows = 0;
        c.rebalanced_flows = 0;
        c.tcp_resets = 0;
        c.icmp_too_big = 0;
        c.table_full = 0;
        c.stateless_returns = 0;
        c.drops.fill(0);
        c.appliance_packets.fill(0);
        c.appliance_bytes.fill(0);
        c.appliance_flows.fill(0);
    }
    pipes.swept = 0;
    pipes
}

fn give_back(pipes: Pipes) {
    PIPES.with(|p| p.borrow_mut().insert(pipes.capacity, pipes));
}

fn push_bounded<T>(v: &mut Vec<T>, x: T, max: usize) {
    if v.len() == max {
        v.remove(0);
    }
    v.push(x);
}

impl Harness {
    fn new(inp: &mut In<'_>) -> Self {
        let modes = Modes(inp.u8());
        let health = [
            Health::from_byte(inp.u8()),
            Health::from_byte(inp.u8()),
            Health::from_byte(inp.u8()),
        ];
        let snap = snapshot(modes, health);
        if trace() {
            eprintln!(
                "modes {modes:?} (rebalance {}, fail_open {}, require_cookie {}, tcp_rst {}, {}), health {health:?}",
                modes.rebalance(),
                modes.fail_open(),
                modes.require_cookie(),
                modes.tcp_rst(),
                modes.stickiness()
            );
        }
        let capacity = [64, 16, 256, 8][usize::from(modes.0 >> 6)];
        let now = match inp.below(4) {
            0 => DRAIN_UNTIL - 20,
            1 => 0,
            2 => u32::MAX - 3,
            _ => inp.u32(),
        };
        Harness {
            modes,
            health,
            pipes: take_pipelines(capacity, &snap.timeouts),
            snap,
            pending: Vec::with_capacity(80),
            burst_size: 32,
            now,
            in_port: 0,
            packets: 0,
            sent: Vec::new(),
            flows: Vec::new(),
            quotes: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// One operation; false when the input is used up or the packet budget spent.
    fn step(&mut self, inp: &mut In<'_>) -> bool {
        if inp.is_empty() || self.packets >= MAX_PACKETS {
            return false;
        }
        let op = inp.below(16);
        if trace() {
            eprintln!("op {op} at input byte {}", inp.i - 1);
        }
        match op {
            // A new user flow's packet.
            0 | 14 => {
                let f = new_flow(inp);
                self.user(inp, f, false);
            }
            // Another packet of a recent flow, either direction.
            15 => match self.flows.len() {
                0 => {
                    let f = new_flow(inp);
                    self.user(inp, f, false);
                }
                n => {
                    let f = self.flows[inp.below(n)];
                    let reply = inp.u8() & 1 == 0;
                    let f = if reply { f.reversed() } else { f };
                    self.user(inp, f, reply);
                }
            },
            // Returns: AWS echo, Linux, forged / odd.
            k @ 1..=3 => {
                if self.sent.is_empty() {
                    let f = new_flow(inp);
                    self.user(inp, f, false);
                } else {
                    let (frame, known) = build_return(inp, self, (k - 1) as u8);
                    self.packet(inp, frame, Origin::Return(known));
                }
            }
            // Raw bytes behind an Ethernet header to the gateway.
            4 => {
                let et = [0x0800u16, 0x86dd, 0x8100, 0x0806, 0x88a8][inp.below(5)];
                let mut f = eth(GW_MAC, CLIENT_MAC, et);
                for _ in 0..inp.below(120) {
                    f.push(inp.u8());
                }
                self.packet(inp, f, Origin::User);
            }
            // An earlier frame, mutated.
            5 => {
                if let Some(mut f) = (!self.frames.is_empty())
                    .then(|| self.frames[inp.below(self.frames.len())].clone())
                {
                    for _ in 0..1 + inp.below(3) {
                        if f.is_empty() {
                            break;
                        }
                        let at = usize::from(inp.u16()) % f.len();
                        match inp.below(3) {
                            0 => f[at] ^= 1 + inp.u8() % 255,
                            1 => f.truncate(at),
                            _ => f.insert(at, inp.u8()),
                        }
                    }
                    self.packet(inp, f, Origin::User);
                }
            }
            // Burst boundary, and the next burst's size (1..=70: past one 32-packet chunk).
            6 => {
                self.flush();
                self.burst_size = 1 + inp.below(70);
            }
            // Clock.
            7 => {
                self.flush();
                self.now = match inp.below(5) {
                    0 => self.now.wrapping_add(1 + inp.below(3) as u32),
                    1 => self.now.wrapping_add(4 + u32::from(inp.u16() % 400)),
                    2 => self.now.wrapping_add(61 + u32::from(inp.u16() % 400)),
                    3 => DRAIN_UNTIL
                        .wrapping_add(inp.below(3) as u32)
                        .wrapping_sub(1),
                    _ => inp.u32(),
                };
            }
            // The control plane publishes a new snapshot: appliances change state.
            8 => {
                self.flush();
                let slot = inp.below(3);
                self.health[slot] = Health::from_byte(inp.u8());
                self.snap = snapshot(self.modes, self.health);
                if trace() {
                    eprintln!("new snapshot: health {:?}", self.health);
                }
            }
            // The worker's background expiry.
            9 => {
                self.flush();
                let n = 1 + inp.below(64);
                let a = self.pipes.one.flows_mut().expire_step(self.now, n);
                let b = self.pipes.burst.flows_mut().expire_step(self.now, n);
                assert_eq!(a, b, "expire_step reclaimed differently");
                self.pipes.swept += n.min(self.pipes.one.flows().buckets()) as u64;
            }
            // Receive on another port index (no such port).
            10 => {
                self.flush();
                self.in_port = if self.in_port == 0 { 1 } else { 0 };
            }
            // A flood of new flows (fills the small table).
            11 => {
                let mut f = new_flow(inp);
                let n = 4 + inp.below(60);
                for i in 0..n {
                    f.sport = f.sport.wrapping_add(1 + i as u16);
                    let ip = ip_packet(&mut In { d: &[], i: 0 }, &f, &[], false);
                    let frame = user_frame(&mut In { d: &[], i: 0 }, &ip);
                    self.record_flow(f, ip);
                    self.packet(inp, frame, Origin::User);
                }
            }
            // An ICMP error about a recent flow, from a router or the flow's far end.
            12 => {
                if let Some(q) = (!self.quotes.is_empty())
                    .then(|| self.quotes[inp.below(self.quotes.len())].clone())
                {
                    let mut f = new_flow(inp);
                    if let (Some((s, d)), true) = (addrs_of(&q), inp.u8() & 1 == 0) {
                        // From the quoted packet's destination back to its source.
                        f.src = d;
                        f.dst = s;
                    }
                    f.transport = Transport::IcmpError;
                    if f.src.is_v6() == f.dst.is_v6() {
                        let ip = ip_packet(inp, &f, std::slice::from_ref(&q), false);
                        let frame = user_frame(inp, &ip);
                        self.packet(inp, frame, Origin::User);
                    }
                }
            }
            // A gap: nothing.
            _ => {}
        }
        true
    }

    fn record_flow(&mut self, f: Flow, ip: Vec<u8>) {
        push_bounded(&mut self.flows, f, 16);
        push_bounded(&mut self.quotes, ip, 16);
    }

    fn user(&mut self, inp: &mut In<'_>, f: Flow, reply: bool) {
        let ip = ip_packet(inp, &f, &self.quotes, reply);
        let frame = user_frame(inp, &ip);
        self.record_flow(f, ip);
        self.packet(inp, frame, Origin::User);
    }

    /// One received frame: through the per-packet pipeline now (checked), queued for the
    /// burst pipeline.
    fn packet(&mut self, inp: &mut In<'_>, frame: Vec<u8>, origin: Origin) {
        self.packets += 1;
        // Mostly an mbuf's headroom; sometimes too little for an IPv4 (68) or IPv6 (88) outer
        // header in front of an untagged frame.
        let headroom = match inp.below(16) {
            11 => 0,
            12 => 67,
            13 => 68,
            14 => 87,
            15 => 88,
            _ => VecBuf::DEFAULT_HEADROOM,
        };
        let mut b = VecBuf::with_headroom(&frame, headroom);
        let before = brief(&self.pipes.one.counters);
        let verdict = self
            .pipes
            .one
            .process(&self.snap, &mut b, self.in_port, self.now);
        let after = brief(&self.pipes.one.counters);
        if trace() {
            let how = [
                (after.encapsulated > before.encapsulated, " encapsulated"),
                (after.decapsulated > before.decapsulated, " decapsulated"),
                (
                    after.stateless_returns > before.stateless_returns,
                    " (stateless)",
                ),
                (after.fail_open > before.fail_open, " fail-open"),
                (after.tcp_resets > before.tcp_resets, " tcp-reset"),
                (after.icmp_too_big > before.icmp_too_big, " icmp-too-big"),
                (after.table_full > before.table_full, " (table full)"),
                (
                    after.rebalanced_flows > before.rebalanced_flows,
                    " (rebalanced)",
                ),
            ]
            .iter()
            .filter(|x| x.0)
            .map(|x| x.1)
            .collect::<String>();
            eprintln!(
                "packet {} (in_port {}, now {}, headroom {headroom}): {verdict:?}{how}\n  in  {}\n  out {}",
                self.packets,
                self.in_port,
                self.now,
                hex(&frame),
                hex(b.data())
            );
        }
        self.check(&frame, b.data(), verdict, &before, &after, &origin);
        if after.encapsulated > before.encapsulated {
            let slot = APPLIANCES
                .iter()
                .position(|a| a.1[..] == b.data()[0..6])
                .expect("checked: to an appliance");
            let inner = ip_of_frame(&frame).expect("checked").to_vec();
            push_bounded(
                &mut self.sent,
                Sent {
                    enc: b.data().to_vec(),
                    inner,
                    slot,
                },
                16,
            );
        }
        push_bounded(&mut self.frames, frame.clone(), 16);
        self.pending.push(Pending {
            frame,
            headroom,
            verdict,
            out: b.data().to_vec(),
        });
        if self.pending.len() >= self.burst_size {
            self.flush();
        }
    }

    /// Runs the queued packets through the burst pipeline as one burst and compares.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut bufs: Vec<VecBuf> = self
            .pending
            .iter()
            .map(|p| VecBuf::with_headroom(&p.frame, p.headroom))
            .collect();
        let mut verdicts = vec![Verdict::ToHost; bufs.len()];
        self.pipes.burst.process_burst(
            &self.snap,
            &mut bufs,
            self.in_port,
            self.now,
            &mut verdicts,
        );
        for (i, (p, (b, v))) in self
            .pending
            .iter()
            .zip(bufs.iter().zip(&verdicts))
            .enumerate()
        {
            assert_eq!(
                *v,
                p.verdict,
                "packet {i} of a burst of {}: burst verdict differs",
                verdicts.len()
            );
            assert!(
                b.data() == &p.out[..],
                "packet {i} of a burst of {}: burst output bytes differ",
                verdicts.len()
            );
        }
        let (a, b) = (&self.pipes.one.counters, &self.pipes.burst.counters);
        assert_eq!(brief(a), brief(b), "counters differ after a burst");
        assert!(
            a.drops == b.drops,
            "drop counters differ: {:?} vs {:?}",
            a.drops,
            b.drops
        );
        assert!(a == b, "per-appliance counters differ after a burst");
        assert_eq!(
            self.pipes.one.flows().len(),
            self.pipes.burst.flows().len(),
            "flow-table len"
        );
        assert_eq!(
            self.pipes.one.flows().stats(),
            self.pipes.burst.flows().stats(),
            "flow-table stats"
        );
        self.pending.clear();
    }

    /// The per-packet oracles on the packet-by-packet pipeline.
    fn check(
        &self,
        input: &[u8],
        out: &[u8],
        verdict: Verdict,
        before: &Brief,
        after: &Brief,
        origin: &Origin,
    ) {
        let d = |f: fn(&Brief) -> u64| f(after) - f(before);
        let _ = owner_hash(&self.snap, input, self.in_port);
        assert_eq!(d(|c| c.packets), 1);
        let (enc, dec, open, rst, icmp, host, dropped) = (
            d(|c| c.encapsulated),
            d(|c| c.decapsulated),
            d(|c| c.fail_open),
            d(|c| c.tcp_resets),
            d(|c| c.icmp_too_big),
            d(|c| c.to_host),
            drops_delta(before, after),
        );
        let snap = &*self.snap;
        let group = &snap.groups[0];
        match verdict {
            Verdict::Tx(port) => {
                assert_eq!(port, 0, "the only port");
                assert_eq!(self.in_port, 0, "nothing from an unknown port is sent");
                assert_eq!(
                    enc + dec + open + rst + icmp,
                    1,
                    "one way out: {before:?} -> {after:?}"
                );
                assert_eq!(host, 0);
                // A reflected answer (TCP reset, ICMP too big) replaces a drop it also counts.
                assert_eq!(dropped, rst + icmp, "a reflected answer counts its drop");
            }
            Verdict::ToHost => {
                assert_eq!(
                    (enc, dec, open, rst + icmp, dropped, host),
                    (0, 0, 0, 0, 0, 1)
                );
                assert_eq!(out, input, "a packet for the host is not touched");
                let p = parse::parse_frame(input).expect("a packet for the host parses");
                let own = p.dst.as_v4() == Some(GW_V4) || p.dst.0 == GW_V6;
                let link = match p.l3 {
                    L3::Ipv4 => p.dst.0[12] >= 224,
                    L3::Ipv6 => {
                        p.dst.0[0] == 0xff
                            || (p.dst.0[0] == 0xfe && p.dst.0[1] & 0xc0 == 0x80)
                            || (p.protocol == 58 && (133..=137).contains(&p.icmp_type))
                    }
                    L3::Arp => true,
                };
                assert!(
                    own || link,
                    "for the host but neither ours nor link-scope: {p:?}"
                );
            }
            Verdict::Drop(r) => {
                assert_eq!(
                    (enc, dec, open, rst + icmp, host, dropped),
                    (0, 0, 0, 0, 0, 1)
                );
                assert_eq!(
                    after.drops[r.index()],
                    before.drops[r.index()] + 1,
                    "counted as {r}"
                );
                // Refused as `reset`, a packet no reset may answer (a RST itself, a fragment)
                // is dropped.
                if r == DropReason::TcpNonSynNoFlow {
                    assert_ne!(
                        group.non_syn,
                        UnknownNonSyn::Admit,
                        "a non-SYN of an unknown flow refused while tcp_unknown_non_syn = admit"
                    );
                }
            }
            Verdict::Handoff(w) => panic!("a lone pipeline handed a packet to worker {w}"),
            // Too large to encapsulate and without DF: the worker splits it and processes
            // the fragments; nothing is counted for the packet itself yet.
            Verdict::Fragment(max) => {
                assert_eq!(
                    (enc, dec, open, rst + icmp, host, dropped),
                    (0, 0, 0, 0, 0, 0)
                );
                let ip = ip_of_frame(input).expect("fragmented: the input is IP");
                assert!(usize::from(max) < ip.len(), "fragmenting a packet that fits");
                assert_eq!(ip[0] >> 4, 4, "only IPv4 is fragmented");
                assert_eq!(ip[6] & 0x40, 0, "a packet with DF fragmented");
            }
            // Decapsulated, larger than the egress port and without DF: its fragments leave.
            Verdict::TxFragments(port) => {
                assert_eq!(
                    (enc, dec, open, rst + icmp, host, dropped),
                    (0, 1, 0, 0, 0, 0)
                );
                let mtu = self.snap.ports[usize::from(port)].mtu;
                assert!(usize::from(mtu) < out.len() - 14, "fragmenting a packet that fits");
            }
        }
        assert!(d(|c| c.new_flows) + d(|c| c.table_full) <= 1);

        if enc == 1 {
            self.check_encapsulated(input, out, before, after);
        }
        if dec == 1 {
            self.check_decapsulated(input, out, origin);
        } else {
            // (Found by this target: a stateless return dropped by its cookie was counted.)
            assert_eq!(
                d(|c| c.stateless_returns),
                0,
                "a return not forwarded counted as a stateless return ({verdict:?})"
            );
        }
        if open == 1 {
            assert!(
                group.fail_open && group.backends.is_empty(),
                "forwarded uninspected while an appliance takes flows"
            );
            let ip = ip_of_frame(input).expect("forwarded: the input is IP");
            assert_eq!(
                out.get(14..),
                Some(ip),
                "fail-open: the IP packet unchanged"
            );
            assert_eq!(&out[6..12], &GW_MAC);
            assert!(NEXT_HOP_MACS.iter().any(|m| m[..] == out[0..6]));
        }
        if icmp == 1 {
            assert_eq!(
                d(|c| c.drops[DropReason::Oversize.index()]),
                1,
                "an ICMP too-big answers an oversize packet"
            );
            let ip_out = ip_of_frame(out).expect("too big: the output is IP");
            let (from, to) = addrs_of(ip_out).expect("output addresses");
            assert_eq!(&out[6..12], &GW_MAC, "from the gateway's MAC");
            assert_eq!(from, gw_addr_for(to), "from the gateway's own address");
            let (l4, proto) = l4_of(ip_out).expect("too big: L4");
            let ty = ip_out.get(l4).copied();
            assert!(
                (proto == 1 && ty == Some(3) && ip_out.get(l4 + 1) == Some(&4))
                    || (proto == 58 && ty == Some(2)),
                "fragmentation needed or packet too big: proto {proto}, type {ty:?}"
            );
            let quote = &ip_out[l4 + 8..];
            assert!(!quote.is_empty(), "the error quotes the packet");
            // Either a packet too big to encapsulate (back to the frame's sender, quoting
            // it), or a returned inner packet over the egress MTU (to its source's next
            // hop, quoting the inner packet).
            let answers =
                |ip: &[u8]| addrs_of(ip).map(|a| a.0) == Some(to) && ip.starts_with(quote);
            let as_user = ip_of_frame(input).is_some_and(answers) && out[0..6] == input[6..12];
            let via_next_hop = NEXT_HOP_MACS.iter().any(|m| m[..] == out[0..6]);
            let as_return = match origin {
                Origin::Return(Some(inner)) => via_next_hop && answers(inner),
                // Mutated after it was built: its inner packet is not known here.
                Origin::Return(None) => via_next_hop,
                Origin::User => false,
            };
            assert!(
                as_user || as_return,
                "an ICMP too-big answers the packet's source, quoting it"
            );
        }
        if rst == 1 {
            let non_syn_drops = d(|c| c.drops[DropReason::TcpNonSynNoFlow.index()]);
            if non_syn_drops == 1 {
                assert_eq!(
                    group.non_syn,
                    UnknownNonSyn::Reset,
                    "a refused non-SYN reset without tcp_unknown_non_syn = reset"
                );
            } else {
                assert!(group.tcp_rst, "a reset without tcp_rst_on_drop");
            }
            let ip_in = ip_of_frame(input).expect("reset: the input is IP");
            let ip_out = ip_of_frame(out).expect("reset: the output is IP");
            let (s, dst) = addrs_of(ip_in).expect("input addresses");
            assert_eq!(
                addrs_of(ip_out),
                Some((dst, s)),
                "a reset answers the sender"
            );
            assert_eq!(
                &out[0..6],
                &input[6..12],
                "a reset goes back to the sender's MAC"
            );
            let (l4, proto) = l4_of(ip_out).expect("reset: L4");
            assert_eq!(proto, 6);
            assert!(ip_out.get(l4 + 13).is_some_and(|f| f & 4 != 0), "RST flag");
        }
    }

    fn check_encapsulated(&self, input: &[u8], out: &[u8], before: &Brief, after: &Brief) {
        let snap = &*self.snap;
        let group = &snap.groups[0];
        let ip = ip_of_frame(input).expect("encapsulated: the input is an IP packet");
        let outer = match be16(out, 12) {
            Some(0x0800) => 14 + 20,
            Some(0x86dd) => 14 + 40,
            e => panic!("outer ethertype {e:?}"),
        };
        assert_eq!(
            out.get(outer + 8 + 40..),
            Some(ip),
            "inner packet byte-exact"
        );
        assert_eq!(&out[6..12], &GW_MAC, "outer source MAC");
        let (osrc, odst) = addrs_of(&out[14..]).expect("outer addresses");
        assert_eq!(osrc, gw_addr_for(odst), "outer source: the gateway");
        assert_eq!(be16(out, outer + 2), Some(6081), "UDP to 6081");
        assert_eq!(out[outer + 8], 8, "Geneve: version 0, 8 option words");
        assert_eq!(
            be16(out, outer + 8 + 2),
            Some(ethertype_of(ip)),
            "Geneve protocol"
        );
        let cookie = out
            .get(outer + 8 + 36..outer + 8 + 40)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
        let owner = owner_hash(snap, input, self.in_port).expect("a user packet has an owner");
        let cookie = cookie.expect("the encapsulation has a cookie");
        assert!(
            gwlb::flow_table::is_flow_cookie(owner, cookie),
            "owner of a user packet: its flow hash {owner:#x}, of which cookie {cookie:#x} is not one"
        );
        let slot = APPLIANCES
            .iter()
            .position(|(a, m)| *a == odst && m[..] == out[0..6])
            .unwrap_or_else(|| panic!("encapsulated toward {odst:?}, no appliance"));
        let a = &snap.appliances[slot];
        assert_eq!(a.mac, Some(APPLIANCES[slot].1));
        assert_eq!(
            after.appliance_packets[slot] - before.appliance_packets[slot],
            1
        );
        assert_eq!(
            after.appliance_bytes[slot] - before.appliance_bytes[slot],
            ip.len() as u64
        );
        let placed = after.new_flows + after.table_full + after.rebalanced_flows
            - before.new_flows
            - before.table_full
            - before.rebalanced_flows;
        let takes_new = group.backends.contains(&(slot as u16));
        if placed > 0 {
            assert!(takes_new, "a flow placed on slot {slot} ({:?})", a.state);
            assert!(a.state == ApplianceState::Healthy && a.weight > 0);
        } else {
            // An existing flow kept on its appliance.
            let ok = match a.state {
                ApplianceState::Healthy | ApplianceState::Initial => true,
                ApplianceState::Unhealthy => !group.rebalance || group.backends.is_empty(),
                ApplianceState::Draining { until } => {
                    self.now < until || (group.rebalance && group.backends.is_empty())
                }
                ApplianceState::Gone => false,
            };
            assert!(
                ok,
                "existing flow kept on slot {slot} in state {:?} (rebalance {}, now {})",
                a.state, group.rebalance, self.now
            );
        }
        if after.appliance_flows[slot] > before.appliance_flows[slot] {
            assert!(takes_new);
        }
    }

    fn check_decapsulated(&self, input: &[u8], out: &[u8], origin: &Origin) {
        let snap = &*self.snap;
        let Origin::Return(known) = origin else {
            // A user-side frame can be a valid return too (raw or mutated frames): checked
            // the same way below, without a known inner packet.
            return self.check_decapsulated(input, out, &Origin::Return(None));
        };
        // The sender: a registered appliance's address, from its MAC, on its port.
        let (l3, _) = l3_of(input).expect("return: L3");
        let outer_ip = &input[l3..];
        let (src, _) = addrs_of(outer_ip).expect("return: outer addresses");
        let slot = APPLIANCES
            .iter()
            .position(|(a, _)| *a == src)
            .unwrap_or_else(|| panic!("decapsulated a return from {src:?}: not an appliance"));
        let a = &snap.appliances[slot];
        assert_ne!(
            a.state,
            ApplianceState::Gone,
            "a return from a gone appliance"
        );
        assert_eq!(
            a.mac.map(|m| m[..] == input[6..12]),
            Some(true),
            "return from its MAC"
        );
        assert_eq!(self.in_port, 0);
        // The inner packet, found independently: outer L4, UDP, Geneve header, inner length.
        let (l4, proto) = l4_of(outer_ip).expect("return: outer L4");
        assert_eq!(proto, 17);
        let g = l4 + 8;
        let opt_len = usize::from(outer_ip[g] & 0x3f) * 4;
        let inner_at = g + 8 + opt_len;
        let inner_ip = &outer_ip[inner_at..];
        let inner = &inner_ip[..ip_len(inner_ip).expect("inner length")];
        let udp_end = l4 + usize::from(be16(outer_ip, l4 + 4).expect("udp length"));
        assert!(
            inner_at + inner.len() <= udp_end,
            "decapsulated: the inner packet lies inside the UDP datagram"
        );
        // The first flow cookie option (class 0x0108, type 3 exactly, 4 bytes), if any.
        let opts = &outer_ip[g + 8..inner_at];
        let mut at = 0;
        let mut cookie = None;
        while at + 4 <= opts.len() {
            let (class, ty, len) = (be16(opts, at), opts[at + 2], opts[at + 3] & 0x1f);
            if cookie.is_none() && class == Some(0x0108) && ty == 3 && len == 1 {
                cookie = opts
                    .get(at + 4..at + 8)
                    .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
            }
            at += 4 + usize::from(len) * 4;
        }
        if self.modes.require_cookie() {
            assert!(
                cookie.is_some(),
                "decapsulated without a cookie in a require_flow_cookie group"
            );
        }
        if let Some(c) = cookie {
            // The cookie was checked against the flow's hash: the worker that owns the flow
            // (by `owner_hash`) is the one this return is handed to.
            let owner = owner_hash(snap, input, 0).expect("a return has an owner");
            assert!(
                gwlb::flow_table::is_flow_cookie(owner, c),
                "owner of a return: its flow's ({owner:#x}), whose cookies {c:#x} is not one of"
            );
        }
        assert_eq!(
            out.get(14..),
            Some(inner),
            "decapsulated: the inner packet byte-exact"
        );
        if let Some(k) = known {
            assert_eq!(
                inner,
                &k[..],
                "decapsulated: the packet the appliance returned"
            );
        }
        assert_eq!(&out[6..12], &GW_MAC);
        assert_eq!(be16(out, 12), Some(ethertype_of(inner)));
        assert!(
            NEXT_HOP_MACS.iter().any(|m| m[..] == out[0..6]),
            "next hop MAC"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = In { d: data, i: 0 };
    let mut h = Harness::new(&mut inp);
    while h.step(&mut inp) {}
    h.flush();
    give_back(h.pipes);
});
