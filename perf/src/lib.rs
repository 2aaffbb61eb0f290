//! gwlb benchmark harness: shared pieces of the `micro` and `dataplane` binaries.
//!
//! - [`bench_config`]: a gwlb configuration (one port facing users and appliances, one target
//!   group) adapted from `gwlb/examples/pcap-offline.toml`, parsed by `Config::from_toml_str`;
//! - [`FlowGen`]/[`Frame`]: real 60-byte Ethernet/IPv4/TCP frames (64 bytes on the wire with
//!   the FCS), one 5-tuple per flow index, patched in place;
//! - [`verify_encap`]: checks that an output frame is Geneve (AWS layout) around the input;
//! - [`Summary`] and the markdown table printer;
//! - [`tsc`]: the time-stamp counter and its frequency.

use std::time::{Duration, Instant};

use gwlb::config::Config;
use gwlb::snapshot::{LiveState, Snapshot};
use gwlb_tests::checksum::ones_sum;
use gwlb_tests::configs::{target_toml, CONTROL_OFF};
use gwlb_tests::frames::eth_ip;
use gwlb_tests::geneve_returns::{aws_echo, encap_sport, linux_return, Outer};
use gwlb_tests::headers::{tcp_segment, Ipv4};

/// MAC of the gateway's data port in [`bench_config`].
pub const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Source MAC of the generated client frames.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
/// Destination of every generated flow (a server behind the gateway).
pub const SERVER_IP: [u8; 4] = [192, 168, 1, 10];
/// Destination port of every generated flow.
pub const SERVER_PORT: u16 = 80;
/// Frame length without FCS (64 bytes on the wire).
pub const FRAME_LEN: usize = 60;
/// TCP payload bytes in the frame (so that a 60-byte frame has no Ethernet padding).
const PAYLOAD: [u8; 6] = *b"gwlb!\n";

/// A gwlb configuration for the benchmarks: one port `p0` (role `both`, 10.0.0.1/24), one
/// target group of `appliances` targets (10.0.0.11.., static MACs, no health checks), a
/// flow table of `flow_table_capacity` flows.
pub fn bench_config(appliances: usize, flow_table_capacity: u32) -> String {
    let mut s = format!(
        r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
hugepages = "off"
memory_mb = 256
eal_args = ["--no-pci"]
mbufs_per_worker = 4096
flow_table_capacity = {flow_table_capacity}
stats_interval_s = 1

[[ports]]
name = "p0"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
mac = "02:00:00:00:00:01"
mtu = 9000
promiscuous = false

[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.0.254"
port = "p0"

[[neighbors]]
address = "10.0.0.254"
mac = "02:00:00:00:00:fe"
port = "p0"

[[target_groups]]
name = "bench"

[target_groups.health_check]
enabled = false
"#
    );
    for i in 0..appliances {
        let [_, _, hi, lo] = (11 + i as u32).to_be_bytes();
        s.push_str(&target_toml(
            format!("10.0.{hi}.{lo}"),
            Some([0x02, 0, 0, 0, hi, lo]),
            None,
        ));
    }
    s.push_str(CONTROL_OFF);
    s
}

/// [`bench_config`] with a pool of two sensors and `sessions` mirror sessions that copy every
/// user packet before inspection, in VXLAN (the mirroring cost scenarios).
pub fn bench_config_mirrored(
    appliances: usize,
    flow_table_capacity: u32,
    sessions: usize,
) -> String {
    let mut s = bench_config(appliances, flow_table_capacity);
    s.push_str(
        r#"
[[target_groups]]
name = "sensors"
user_ports = []
[target_groups.health_check]
enabled = false
"#,
    );
    for lo in [200u8, 201] {
        s.push_str(&target_toml(
            format!("10.0.0.{lo}"),
            Some([0x02, 0, 0, 0, 0, lo]),
            None,
        ));
    }
    for i in 0..sessions {
        s.push_str(&format!(
            "\n[[mirror_sessions]]\nname = \"all-{i}\"\ntarget_group = \"sensors\"\nvni = {}\n",
            100 + i
        ));
    }
    s
}

/// Parses [`bench_config_mirrored`] and builds its snapshot.
pub fn bench_snapshot_mirrored(
    appliances: usize,
    flow_table_capacity: u32,
    sessions: usize,
) -> (Config, Snapshot) {
    snapshot_of(&bench_config_mirrored(
        appliances,
        flow_table_capacity,
        sessions,
    ))
}

/// [`bench_snapshot_mirrored`] with both sensors unhealthy: every copy the sessions select
/// is counted `no_sensor` instead of made (what a dead sensor pool costs).
pub fn bench_snapshot_mirrored_sensors_down(
    appliances: usize,
    flow_table_capacity: u32,
    sessions: usize,
) -> (Config, Snapshot) {
    let text = bench_config_mirrored(appliances, flow_table_capacity, sessions);
    let cfg = Config::from_toml_str(&text).expect("bench config parses");
    let mut registry =
        gwlb::control::registry::Registry::new(&cfg, usize::from(u16::MAX)).expect("bench slots");
    registry.assume_healthy();
    for lo in [200u8, 201] {
        let slot = registry
            .find("sensors", std::net::IpAddr::from([10, 0, 0, lo]))
            .expect("sensor slot");
        registry.set_health(slot, false, "down".into());
    }
    let snap = Snapshot::build_with(&cfg, &[PORT_MAC], &registry, &LiveState::default(), 1)
        .expect("bench snapshot builds");
    (cfg, snap)
}

/// [`bench_config`] with its port taken by one untagged endpoint, "bench-tenant", whose
/// `rules` steering rules match none of the benchmark's flows (each names a /32 source in
/// 172.16.0.0/16, both ways, so every rule is evaluated twice before the default action,
/// inspect by "bench", decides): the cost of the rule count on new and established flows.
pub fn bench_config_with_rules(
    appliances: usize,
    flow_table_capacity: u32,
    rules: usize,
) -> String {
    let mut s = bench_config(appliances, flow_table_capacity);
    s.push_str(
        "\n[[endpoints]]\nname = \"bench-tenant\"\nports = [\"p0\"]\ntarget_group = \"bench\"\n",
    );
    for k in 0..rules {
        s.push_str(&format!(
            "[[endpoints.rules]]\nname = \"r{k}\"\nsources = [\"172.16.{}.{}/32\"]\naction = \"bypass\"\n",
            k / 256,
            k % 256
        ));
    }
    s
}

/// Parses [`bench_config_with_rules`] and builds its snapshot.
pub fn bench_snapshot_with_rules(
    appliances: usize,
    flow_table_capacity: u32,
    rules: usize,
) -> (Config, Snapshot) {
    snapshot_of(&bench_config_with_rules(
        appliances,
        flow_table_capacity,
        rules,
    ))
}

/// Name of the target group the steering rules of [`bench_config_steered`] send the
/// benchmark's traffic to.
pub const STEERED_GROUP: &str = "steered";
/// Name of the rule of [`bench_config_steered`] that the benchmark's traffic matches (the last
/// of the list).
pub const STEERED_RULE: &str = "web-to-steered";
/// Destination ports of the rules of [`bench_config_steered`] that share the traffic's
/// destination block (so a new flow tries them) but not its port ([`SERVER_PORT`]).
const NEAR_MISS_PORTS: [&str; 8] = [
    "443",
    "22",
    "8443",
    "25",
    "3389",
    "5432",
    "6379",
    "8000-8079",
];

/// `rules` steering rules for one endpoint, as `[[endpoints.rules]]` tables: rules that look
/// like a tenant's policy (distinct prefixes, protocols and ports, every action) of which the
/// benchmark's traffic (TCP from 100.64.0.0/10 to [`SERVER_IP`]:[`SERVER_PORT`], both the
/// established flows and the storm's) matches only the last, [`STEERED_RULE`], which inspects
/// by [`STEERED_GROUP`]. Before it:
///
/// - up to 8 near misses, spread over the list: TCP to the server's /24 on other ports
///   ([`NEAR_MISS_PORTS`]), bypassed; they sit in the index under the traffic's destination
///   block, so every new flow tries them (and fails on the port) before the match;
/// - the rest, by rule number `k` mod 4: a /32 source in 172.16.0.0/12 (bypass); TCP to a
///   /24 in 10.128.0.0/9 on port 1024 + k (inspect by "bench"); UDP 53 from a /30 in
///   198.18.0.0/15 (drop); a /48 source in 2001:db8::/32 (bypass). They are indexed under
///   blocks the traffic's addresses are not in: a new flow never tries them, and pays for
///   their number only in the index's binary searches.
///
/// `rules` = 0 gives no rule (the endpoint's default action decides).
pub fn steering_rules_toml(rules: usize) -> String {
    let mut s = String::new();
    let Some(fillers) = rules.checked_sub(1) else {
        return s;
    };
    let mut near: Vec<usize> = (1..=NEAR_MISS_PORTS.len())
        .map(|j| j * fillers / (NEAR_MISS_PORTS.len() + 1))
        .filter(|&k| k < fillers)
        .collect();
    near.dedup();
    let mut next_near = 0;
    for k in 0..fillers {
        if near.get(next_near) == Some(&k) {
            s.push_str(&format!(
                "[[endpoints.rules]]\nname = \"near-{k}\"\ndestinations = [\"{}.{}.{}.0/24\"]\n\
                 protocols = [6]\ndestination_ports = [\"{}\"]\naction = \"bypass\"\n",
                SERVER_IP[0], SERVER_IP[1], SERVER_IP[2], NEAR_MISS_PORTS[next_near]
            ));
            next_near += 1;
            continue;
        }
        let (hi, lo) = ((k >> 8) & 0xff, k & 0xff);
        let body = match k % 4 {
            0 => format!(
                "sources = [\"172.{}.{hi}.{lo}/32\"]\naction = \"bypass\"\n",
                16 + (k >> 16)
            ),
            1 => format!(
                "destinations = [\"10.{}.{lo}.0/24\"]\nprotocols = [6]\n\
                 destination_ports = [\"{}\"]\naction = \"inspect\"\ntarget_group = \"bench\"\n",
                128 + (hi & 0x7f),
                1024 + k
            ),
            2 => format!(
                "sources = [\"198.{}.{}.{}/30\"]\nprotocols = [17]\ndestination_ports = [\"53\"]\n\
                 action = \"drop\"\n",
                18 + ((k >> 14) & 1),
                (k >> 6) & 0xff,
                (k & 0x3f) * 4
            ),
            _ => format!("sources = [\"2001:db8:{k:x}::/48\"]\naction = \"bypass\"\n"),
        };
        s.push_str(&format!("[[endpoints.rules]]\nname = \"r{k}\"\n{body}"));
    }
    s.push_str(&format!(
        "[[endpoints.rules]]\nname = \"{STEERED_RULE}\"\ndestinations = [\"{}.{}.{}.0/24\"]\n\
         protocols = [6]\ndestination_ports = [\"{SERVER_PORT}\"]\naction = \"inspect\"\n\
         target_group = \"{STEERED_GROUP}\"\n",
        SERVER_IP[0], SERVER_IP[1], SERVER_IP[2]
    ));
    s
}

/// [`bench_config`] plus a second group, [`STEERED_GROUP`] (4 appliances, 10.0.0.101-104),
/// with the port taken by one untagged endpoint, "bench-tenant", whose flows are all
/// encapsulated toward that group: with `rules` = 0 by the endpoint's default action; with
/// `rules` >= 1 by the last of [`steering_rules_toml`]`(rules)` (the default action then
/// inspects by "bench", which the traffic never reaches). So every rule count sends the same
/// traffic to the same appliances, and only the rules differ.
pub fn bench_config_steered(appliances: usize, flow_table_capacity: u32, rules: usize) -> String {
    let mut s = bench_config(appliances, flow_table_capacity);
    s.push_str(&format!(
        "\n[[target_groups]]\nname = \"{STEERED_GROUP}\"\nuser_ports = []\n\
         [target_groups.health_check]\nenabled = false\n"
    ));
    for lo in 101u8..=104 {
        s.push_str(&target_toml(
            format!("10.0.0.{lo}"),
            Some([0x02, 0, 0, 0, 0, lo]),
            None,
        ));
    }
    let default = if rules == 0 { STEERED_GROUP } else { "bench" };
    s.push_str(&format!(
        "\n[[endpoints]]\nname = \"bench-tenant\"\nports = [\"p0\"]\ntarget_group = \"{default}\"\n"
    ));
    s.push_str(&steering_rules_toml(rules));
    s
}

/// Parses [`bench_config_steered`] and builds its snapshot.
pub fn bench_snapshot_steered(
    appliances: usize,
    flow_table_capacity: u32,
    rules: usize,
) -> (Config, Snapshot) {
    snapshot_of(&bench_config_steered(
        appliances,
        flow_table_capacity,
        rules,
    ))
}

/// The IPv4 addresses of group `name`'s appliances in `snap` (empty for an unknown group).
pub fn group_addrs(snap: &Snapshot, name: &str) -> Vec<[u8; 4]> {
    let Some(g) = snap.groups.iter().position(|g| g.name == name) else {
        return Vec::new();
    };
    snap.appliances
        .iter()
        .filter(|a| usize::from(a.group) == g)
        .filter_map(|a| match a.addr {
            std::net::IpAddr::V4(v4) => Some(v4.octets()),
            std::net::IpAddr::V6(_) => None,
        })
        .collect()
}

/// The global index (as the per-rule counters are indexed) of the rule that decides the
/// benchmark's traffic in [`bench_config_steered`]`(.., rules)`: [`STEERED_RULE`], or the
/// endpoint's default action when there is no rule.
pub fn steered_rule_index(snap: &Snapshot, rules: usize) -> usize {
    let name = if rules == 0 { "default" } else { STEERED_RULE };
    snap.rules
        .iter()
        .position(|r| r.zone != 0 && r.name == name)
        .expect("the deciding rule is in the snapshot")
}

/// Parses [`bench_config`] and builds its snapshot.
pub fn bench_snapshot(appliances: usize, flow_table_capacity: u32) -> (Config, Snapshot) {
    let (cfg, snap) = snapshot_of(&bench_config(appliances, flow_table_capacity));
    assert!(
        snap.appliances.iter().all(|a| a.template.is_some()),
        "every appliance has an encapsulation template"
    );
    (cfg, snap)
}

/// Parses a benchmark configuration and builds its snapshot (the port's MAC, no learned
/// neighbours).
fn snapshot_of(text: &str) -> (Config, Snapshot) {
    let cfg = Config::from_toml_str(text).expect("bench config parses");
    let snap = Snapshot::build(&cfg, &[PORT_MAC], &LiveState::default(), 1)
        .expect("bench snapshot builds");
    (cfg, snap)
}

/// Ones' complement sum of big-endian 16-bit words (of a header: it fits in 32 bits).
fn sum16(bytes: &[u8]) -> u32 {
    ones_sum(0, bytes) as u32
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The per-flow part of a frame: what [`Frame::patch`] writes (8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRec {
    /// Client IPv4 address (host order).
    pub src_ip: u32,
    /// Client TCP port.
    pub src_port: u16,
    /// IPv4 header checksum for this source address.
    pub ip_csum: u16,
}

/// Maps a flow index to a distinct client 5-tuple toward [`SERVER_IP`]:[`SERVER_PORT`].
/// Index `i` uses source 100.64.0.0 + (i >> 14) and port 1024 + (i & 0x3fff): 2^14 ports per
/// address, distinct for every `i < 2^32`.
#[derive(Clone, Copy, Debug)]
pub struct FlowGen {
    /// Checksum sum of the template IPv4 header without the source address.
    base_sum: u32,
}

impl FlowGen {
    /// A generator for frames built by [`Frame::template`].
    pub fn new() -> Self {
        Self::for_frame(&Frame::template().0)
    }

    /// A generator for frames built from `template` (e.g. [`template_of_len`]).
    pub fn for_frame(template: &[u8]) -> Self {
        let mut hdr = [0u8; 20];
        hdr.copy_from_slice(&template[14..34]);
        hdr[10..12].fill(0);
        hdr[12..16].fill(0);
        Self {
            base_sum: sum16(&hdr),
        }
    }

    /// The 5-tuple of flow `i`.
    #[inline(always)]
    pub fn flow(&self, i: u64) -> FlowRec {
        let src_ip = 0x6440_0000u32.wrapping_add((i >> 14) as u32);
        let src_port = 1024 + (i & 0x3fff) as u16;
        let s = self.base_sum + (src_ip >> 16) + (src_ip & 0xffff);
        FlowRec {
            src_ip,
            src_port,
            ip_csum: !fold(s),
        }
    }

    /// The flow index of a 5-tuple made by [`FlowGen::flow`] (from a frame's source address
    /// and port), or `None` if no index maps to it.
    pub fn index_of(&self, src_ip: u32, src_port: u16) -> Option<u64> {
        let hi = u64::from(src_ip.wrapping_sub(0x6440_0000));
        let lo = u64::from(src_port.checked_sub(1024).filter(|p| *p < 0x4000)?);
        Some(hi << 14 | lo)
    }
}

/// Source address and port of an IPv4/TCP packet starting at `ip`.
pub fn ip_src(ip: &[u8]) -> Option<(u32, u16)> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let a = u32::from_be_bytes(ip.get(12..16)?.try_into().ok()?);
    let p = u16::from_be_bytes(ip.get(ihl..ihl + 2)?.try_into().ok()?);
    Some((a, p))
}

/// The inner IP packet of a Geneve frame (Ethernet/IPv4/UDP/Geneve), without checks.
pub fn geneve_inner(out: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(out.get(14)? & 0x0f) * 4;
    let g = out.get(14 + ihl + 8..)?;
    let h = geneve::parse_aws_header(g).ok()?;
    g.get(h.header_len..)
}

impl Default for FlowGen {
    fn default() -> Self {
        Self::new()
    }
}

/// A 60-byte Ethernet/IPv4/TCP frame (client -> server, through the gateway's MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame(pub [u8; FRAME_LEN]);

impl Frame {
    /// The template frame (flow fields of flow 0, valid checksums).
    pub fn template() -> Frame {
        let mut f = [0u8; FRAME_LEN];
        f.copy_from_slice(&template_of_len(FRAME_LEN));
        Frame(f)
    }

    /// Writes a flow's source address, port and IPv4 checksum into a frame (the TCP checksum
    /// is left as is: nobody on this path verifies it).
    #[inline(always)]
    pub fn patch_bytes(f: &mut [u8], r: &FlowRec) {
        patch_ip(&mut f[14..], r);
    }

    /// [`Frame::patch_bytes`] on this frame.
    pub fn patch(&mut self, r: &FlowRec) {
        Self::patch_bytes(&mut self.0, r);
    }

    /// The frame of flow `r`.
    pub fn of(r: &FlowRec) -> Frame {
        let mut f = Self::template();
        f.patch(r);
        f
    }
}

/// Writes a flow's source address, port and IPv4 checksum into an IPv4/TCP packet (no
/// options) starting at `ip[0]`.
#[inline(always)]
pub fn patch_ip(ip: &mut [u8], r: &FlowRec) {
    ip[10..12].copy_from_slice(&r.ip_csum.to_be_bytes());
    ip[12..16].copy_from_slice(&r.src_ip.to_be_bytes());
    ip[20..22].copy_from_slice(&r.src_port.to_be_bytes());
}

/// A client frame (Ethernet/IPv4/TCP, flow 0, valid IPv4 checksum) of `len` bytes without
/// FCS (`len` >= 60; 64..1518 on the wire). The TCP payload repeats `gwlb!\n`.
pub fn template_of_len(len: usize) -> Vec<u8> {
    assert!((FRAME_LEN..=1514).contains(&len), "frame length {len}");
    let payload: Vec<u8> = PAYLOAD.iter().copied().cycle().take(len - 54).collect();
    let tcp = tcp_segment(1024, SERVER_PORT, 1, 0x18, &[], &payload); // PSH|ACK
    let ip = Ipv4 {
        frag: 0x4000, // DF
        ..Ipv4::new([100, 64, 0, 0], SERVER_IP, 6)
    };
    eth_ip(PORT_MAC, CLIENT_MAC, &ip.packet(&[], &tcp))
}

/// Simple IMIX (7:4:1 of 64, 570 and 1518 bytes on the wire): frame lengths without FCS and
/// their weights.
pub const IMIX: [(usize, u32); 3] = [(60, 7), (566, 4), (1514, 1)];

/// The IMIX frame length of packet `i` (a fixed 12-packet cycle: 7 x 60, 4 x 566, 1 x 1514,
/// interleaved).
#[inline(always)]
pub fn imix_len(i: u64) -> usize {
    const CYCLE: [usize; 12] = [60, 566, 60, 60, 566, 60, 1514, 60, 566, 60, 60, 566];
    CYCLE[(i % 12) as usize]
}

/// Client frame templates, one per IMIX length (index = position in [`IMIX`]).
#[derive(Clone, Debug)]
pub struct ImixFrames {
    /// `(template, its checksum generator)` by frame length.
    pub by_len: Vec<(Vec<u8>, FlowGen)>,
}

impl ImixFrames {
    /// Templates for every [`IMIX`] length.
    pub fn new() -> Self {
        Self {
            by_len: IMIX
                .iter()
                .map(|&(len, _)| {
                    let t = template_of_len(len);
                    let g = FlowGen::for_frame(&t);
                    (t, g)
                })
                .collect(),
        }
    }

    /// Template and generator of a frame length from [`imix_len`].
    #[inline(always)]
    pub fn get(&self, len: usize) -> &(Vec<u8>, FlowGen) {
        match len {
            60 => &self.by_len[0],
            566 => &self.by_len[1],
            _ => &self.by_len[2],
        }
    }

    /// The frame of flow index `flow` with length `len`.
    pub fn frame(&self, flow: u64, len: usize) -> Vec<u8> {
        let (t, g) = self.get(len);
        let mut f = t.clone();
        Frame::patch_bytes(&mut f, &g.flow(flow));
        f
    }
}

impl Default for ImixFrames {
    fn default() -> Self {
        Self::new()
    }
}

/// How an appliance sends a flow's packets back (`shared/reference/appliances.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnStyle {
    /// gwlbtun: our Geneve header and options echoed byte for byte, outer addresses swapped,
    /// our UDP source port, outer TTL 2, DF clear, UDP checksum 0; inner packet unchanged.
    Aws,
    /// Linux kernel Geneve device: no options, its own VNI (77), a hashed UDP source port,
    /// TTL 64, UDP checksum 0; the inner packet routed (TTL - 1, checksum updated).
    Linux,
}

/// Outer headers of an AWS-style return: Eth 14 + IPv4 20 + UDP 8 + Geneve with options 40.
pub const AWS_RETURN_HDR: usize = 82;
/// Outer headers of a Linux-style return: Eth 14 + IPv4 20 + UDP 8 + Geneve 8.
pub const LINUX_RETURN_HDR: usize = 50;
/// Next-hop MAC of decapsulated packets in [`bench_config`] (the default route's neighbour).
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

/// Builds appliance returns of 60-byte client frames ([`Frame`]) for the flows of
/// [`FlowGen`]: which appliance holds a flow and its cookie are computed the way gwlb computes
/// them (symmetric flow hash, Maglev), so a return matches the flow gwlb created for the
/// forward packet.
#[derive(Clone, Debug)]
pub struct Returns {
    gen: FlowGen,
    /// Same checksums with TTL 63 (the routed inner packet of Linux returns).
    routed_gen: FlowGen,
    seed: u64,
    maglev: gwlb::maglev::MaglevTable,
    backends: Vec<u16>,
    aws_hdr: Vec<[u8; AWS_RETURN_HDR]>,
    linux_hdr: Vec<[u8; LINUX_RETURN_HDR]>,
    tmpl: Frame,
}

impl Returns {
    /// Templates for every appliance of `snap` (built by [`bench_snapshot`]).
    pub fn new(snap: &Snapshot) -> Self {
        use gwlb::packet_buf::{PacketBuf, VecBuf};
        let tmpl = Frame::template();
        let mut aws_hdr = Vec::new();
        let mut linux_hdr = Vec::new();
        for a in &snap.appliances {
            // Our own encapsulation of the template, turned around by each style.
            let t = a.template.as_ref().expect("template");
            let mut b = VecBuf::new(&tmpl.0);
            t.encapsulate(&mut b, 14, FRAME_LEN - 14, false, 0)
                .expect("encapsulate");
            let o = b.data();
            let mut h = [0u8; AWS_RETURN_HDR];
            h.copy_from_slice(&aws_echo(o)[..AWS_RETURN_HDR]);
            aws_hdr.push(h);
            // The UDP source port (bytes 34..36) is written per flow.
            let linux = Outer {
                df: true,
                sport: 0,
                ..Outer::reply_to(o)
            };
            let mut l = [0u8; LINUX_RETURN_HDR];
            l.copy_from_slice(&linux_return(&linux, &tmpl.0[14..], 77)[..LINUX_RETURN_HDR]);
            linux_hdr.push(l);
        }
        let mut routed = tmpl;
        routed.0[22] -= 1;
        let g = &snap.groups[0];
        Self {
            gen: FlowGen::new(),
            routed_gen: FlowGen::for_frame(&routed.0),
            seed: snap.seed,
            maglev: g.maglev.clone(),
            backends: g.backends.clone(),
            aws_hdr,
            linux_hdr,
            tmpl,
        }
    }

    /// `(appliance slot, flow cookie)` of flow `i` (gwlb's `flow_of` and Maglev pick).
    pub fn target(&self, i: u64) -> (u16, u32) {
        use gwlb::flow::{FlowKey, Stickiness};
        use gwlb::parse::IpAddrBytes;
        let r = self.gen.flow(i);
        let (k, _) = FlowKey::with_stickiness(
            IpAddrBytes::from_v4(r.src_ip.to_be_bytes()),
            r.src_port,
            IpAddrBytes::from_v4(SERVER_IP),
            SERVER_PORT,
            6,
            false,
            Stickiness::FiveTuple,
        );
        let h = k.hash(self.seed);
        let b = self
            .maglev
            .lookup((h >> 32) as u32)
            .expect("non-empty pool");
        (self.backends[usize::from(b)], h as u32)
    }

    /// Frame length of a return.
    pub fn len(style: ReturnStyle) -> usize {
        FRAME_LEN - 14
            + match style {
                ReturnStyle::Aws => AWS_RETURN_HDR,
                ReturnStyle::Linux => LINUX_RETURN_HDR,
            }
    }

    /// Writes the return of flow `i` (appliance and cookie from [`Returns::target`]) into
    /// `out` (exactly [`Returns::len`] bytes).
    #[inline]
    pub fn write(&self, style: ReturnStyle, i: u64, target: (u16, u32), out: &mut [u8]) {
        let (slot, cookie) = target;
        let inner = &self.tmpl.0[14..];
        match style {
            ReturnStyle::Aws => {
                out[..AWS_RETURN_HDR].copy_from_slice(&self.aws_hdr[usize::from(slot)]);
                out[34..36].copy_from_slice(&encap_sport(cookie).to_be_bytes());
                out[78..82].copy_from_slice(&cookie.to_be_bytes());
                let ip = &mut out[AWS_RETURN_HDR..];
                ip.copy_from_slice(inner);
                patch_ip(ip, &self.gen.flow(i));
            }
            ReturnStyle::Linux => {
                out[..LINUX_RETURN_HDR].copy_from_slice(&self.linux_hdr[usize::from(slot)]);
                // Any source port, possibly below 1024.
                let sport = (cookie >> 16) as u16 | 1;
                out[34..36].copy_from_slice(&sport.to_be_bytes());
                let ip = &mut out[LINUX_RETURN_HDR..];
                ip.copy_from_slice(inner);
                ip[8] -= 1;
                patch_ip(ip, &self.routed_gen.flow(i));
            }
        }
    }

    /// The inner IP packet a return of flow `i` carries (what gwlb must forward unchanged).
    pub fn inner(&self, style: ReturnStyle, i: u64) -> Vec<u8> {
        let mut ip = self.tmpl.0[14..].to_vec();
        match style {
            ReturnStyle::Aws => patch_ip(&mut ip, &self.gen.flow(i)),
            ReturnStyle::Linux => {
                ip[8] -= 1;
                patch_ip(&mut ip, &self.routed_gen.flow(i));
            }
        }
        ip
    }
}

/// Where the latency benchmark writes its 8-byte TSC stamp in an IPv4/TCP packet without
/// options (offset from the IP header): the TCP sequence and acknowledgement numbers. gwlb
/// carries them unchanged in both directions and nobody on the bench path checks the TCP
/// checksum, so the packet is otherwise the real one.
pub const STAMP_IN_IP: usize = 24;

/// Offset of the latency stamp in an output frame: behind the Geneve header (its option
/// length read from the packet) for an encapsulated frame, behind Ethernet otherwise
/// (decapsulated or forwarded unchanged). `None` if the frame is too short.
#[inline]
pub fn stamp_offset(out: &[u8]) -> Option<usize> {
    let encap = out.len() > 38 && out[23] == 17 && out[36..38] == geneve::UDP_PORT.to_be_bytes();
    let ip = if encap {
        let g = 14 + usize::from(out[14] & 0x0f) * 4 + 8;
        g + 8 + usize::from(out.get(g)? & 0x3f) * 4
    } else {
        14
    };
    let at = ip + usize::from(out.get(ip)? & 0x0f) * 4 + 4;
    (at + 8 <= out.len()).then_some(at)
}

/// The latency stamp of an output frame (see [`stamp_offset`]).
#[inline]
pub fn read_stamp(out: &[u8]) -> Option<u64> {
    let at = stamp_offset(out)?;
    Some(u64::from_le_bytes(out[at..at + 8].try_into().ok()?))
}

/// Checks that `out` is the decapsulated `inner` IP packet under Ethernet from the gateway's
/// MAC to the next hop ([`NEXT_HOP_MAC`]).
pub fn verify_decap(out: &[u8], inner: &[u8]) -> Result<(), VerifyError> {
    if out.len() != 14 + inner.len() {
        return Err(format!(
            "length {} for a {}-byte inner packet",
            out.len(),
            inner.len()
        ));
    }
    if out[0..6] != NEXT_HOP_MAC || out[6..12] != PORT_MAC || out[12..14] != [0x08, 0] {
        return Err(format!("Ethernet header {:02x?}", &out[..14]));
    }
    if &out[14..] != inner {
        return Err(format!(
            "inner differs: {:02x?} vs {inner:02x?}",
            &out[14..]
        ));
    }
    Ok(())
}

/// A reusable packet buffer for the pipeline-level benchmarks: 128 bytes of headroom (as a
/// DPDK mbuf) and room for a 1518-byte frame plus encapsulation. [`BenchBuf::load`] resets it.
#[derive(Clone, Debug)]
pub struct BenchBuf {
    buf: Box<[u8; BenchBuf::SIZE]>,
    start: usize,
    end: usize,
}

impl BenchBuf {
    /// Headroom (`RTE_PKTMBUF_HEADROOM`).
    pub const HEADROOM: usize = 128;
    const SIZE: usize = 2048 + Self::HEADROOM;

    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            buf: Box::new([0; Self::SIZE]),
            start: Self::HEADROOM,
            end: Self::HEADROOM,
        }
    }

    /// Replaces the content with `frame` at the default headroom.
    #[inline(always)]
    pub fn load(&mut self, frame: &[u8]) {
        self.start = Self::HEADROOM;
        self.end = Self::HEADROOM + frame.len();
        self.buf[self.start..self.end].copy_from_slice(frame);
    }
}

thread_local! {
    // Boxed on purpose: a buffer moves between the list and a `BenchBuf` without a copy.
    #[allow(clippy::vec_box)]
    static BENCH_POOL: std::cell::RefCell<Vec<Box<[u8; BenchBuf::SIZE]>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl BenchBuf {
    /// Returns the buffer to the per-thread free list [`PacketBuf::alloc_like`] takes from.
    ///
    /// [`PacketBuf::alloc_like`]: gwlb::packet_buf::PacketBuf::alloc_like
    pub fn recycle(self) {
        BENCH_POOL.with(|p| p.borrow_mut().push(self.buf));
    }
}

impl Default for BenchBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl gwlb::packet_buf::PacketBuf for BenchBuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    #[inline(always)]
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    #[inline(always)]
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    #[inline(always)]
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
    #[inline(always)]
    fn headroom(&self) -> usize {
        self.start
    }
    /// From a per-thread free list ([`BenchBuf::recycle`] returns to it), so that a measured
    /// copy costs a pool pop, as an mbuf allocation does, not a heap allocation.
    fn alloc_like(&self, len: usize) -> Option<Self> {
        if len > Self::SIZE - Self::HEADROOM {
            return None;
        }
        let buf = BENCH_POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| Box::new([0; Self::SIZE]));
        Some(BenchBuf {
            buf,
            start: Self::HEADROOM,
            end: Self::HEADROOM + len,
        })
    }
}

/// Why an output frame is not the expected encapsulation.
pub type VerifyError = String;

/// Checks that `out` is Ethernet/IPv4/UDP(6081)/Geneve (AWS options, protocol IPv4) from the
/// gateway's MAC to one of the appliances, with a valid outer IPv4 checksum, around exactly
/// the IP packet of `input` (a 60-byte frame without padding). Returns the outer destination
/// address.
pub fn verify_encap(out: &[u8], input: &[u8]) -> Result<[u8; 4], VerifyError> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(out).map_err(|e| format!("outer: {e}"))?;
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return Err("outer is not IPv4".into());
    };
    if out[6..12] != PORT_MAC {
        return Err(format!("outer source MAC {:02x?}", &out[6..12]));
    }
    let hdr = ip.header();
    let mut h = hdr.to_header();
    let got = h.header_checksum;
    h.header_checksum = h.calc_header_checksum();
    if got != h.header_checksum {
        return Err("outer IPv4 checksum".into());
    }
    if hdr.source() != [10, 0, 0, 1] {
        return Err(format!("outer source {:?}", hdr.source()));
    }
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        return Err("outer is not UDP".into());
    };
    if udp.destination_port() != geneve::UDP_PORT {
        return Err(format!("UDP port {}", udp.destination_port()));
    }
    let g = geneve::parse_aws_header(udp.payload()).map_err(|e| format!("geneve: {e:?}"))?;
    if g.protocol_type != geneve::PROTO_IPV4 || g.options.complete().is_none() {
        return Err(format!("geneve header {g:?}"));
    }
    let inner = &udp.payload()[g.header_len..];
    if inner != &input[14..] {
        return Err(format!(
            "inner packet differs: {:02x?} vs {:02x?}",
            inner,
            &input[14..]
        ));
    }
    Ok(hdr.destination())
}

/// Median, minimum and maximum of a set of runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Number of runs.
    pub n: usize,
}

impl Summary {
    /// Summarises `v` (not empty).
    pub fn of(v: &[f64]) -> Summary {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        assert!(n > 0, "no samples");
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Summary {
            median,
            min: s[0],
            max: s[n - 1],
            n,
        }
    }

    /// `median (min-max)` with `prec` decimals.
    pub fn fmt(&self, prec: usize) -> String {
        format!(
            "{:.p$} ({:.p$}-{:.p$})",
            self.median,
            self.min,
            self.max,
            p = prec
        )
    }
}

/// Prints a markdown table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// Time-stamp counter.
pub mod tsc {
    use super::*;

    /// Reads the TSC (0 on other architectures).
    #[inline(always)]
    pub fn now() -> u64 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: RDTSC has no preconditions; every x86_64 CPU has it.
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
        #[cfg(not(target_arch = "x86_64"))]
        0
    }

    /// TSC ticks per second, calibrated against the monotonic clock over `over`.
    pub fn hz(over: Duration) -> f64 {
        let (t0, c0) = (Instant::now(), now());
        while t0.elapsed() < over {
            std::hint::spin_loop();
        }
        let (c1, dt) = (now(), t0.elapsed());
        (c1 - c0) as f64 / dt.as_secs_f64()
    }
}

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// CPUs online (not the calling thread's affinity, which EAL narrows to one CPU).
pub fn cpus_online() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(0)
}

/// The CPUs the calling thread may run on (its affinity mask: `taskset`, a cgroup cpuset), in
/// ascending order; every CPU online when the mask cannot be read. Call it before the EAL
/// starts, which pins the main thread to one CPU.
pub fn cpus_allowed() -> Vec<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => {
            let mut v: Vec<usize> = ids.into_iter().map(|c| c.id).collect();
            v.sort_unstable();
            v
        }
        _ => (0..cpus_online().max(1)).collect(),
    }
}

/// The CPU of each of `n` workers: `allowed` in order from `first` (or from the first allowed
/// CPU above it, wrapping), one worker per CPU while there are CPUs, then round again
/// (oversubscribed). `allowed` must not be empty.
pub fn worker_cpus(allowed: &[usize], first: usize, n: usize) -> Vec<usize> {
    let start = allowed.iter().position(|&c| c >= first).unwrap_or(0);
    (0..n)
        .map(|w| allowed[(start + w) % allowed.len()])
        .collect()
}

/// `/proc/loadavg`'s first three fields (other work on the machine skews every number).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A small deterministic PRNG (xorshift64*), for shuffles.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (seed 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_cpus_follow_the_allowed_set_from_the_first() {
        // 2-vCPU VM, first worker on CPU 1: the second wraps to CPU 0.
        assert_eq!(worker_cpus(&[0, 1], 1, 1), [1]);
        assert_eq!(worker_cpus(&[0, 1], 1, 2), [1, 0]);
        // 16 CPUs: N workers on N distinct CPUs, CPU 0 (the main thread's) last.
        let all: Vec<usize> = (0..16).collect();
        assert_eq!(worker_cpus(&all, 1, 4), [1, 2, 3, 4]);
        let w = worker_cpus(&all, 1, 16);
        assert_eq!(w.len(), 16);
        assert_eq!(w[15], 0);
        let mut d = w.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 16);
        // A cpuset with holes (taskset -c 2,4,6): only those, from the first at or above 3.
        assert_eq!(worker_cpus(&[2, 4, 6], 3, 3), [4, 6, 2]);
        // Oversubscribed: round again.
        assert_eq!(worker_cpus(&[0, 1], 1, 3), [1, 0, 1]);
        // `first` above every allowed CPU: from the lowest.
        assert_eq!(worker_cpus(&[0, 1], 7, 2), [0, 1]);
    }
    use gwlb::packet_buf::{PacketBuf, VecBuf};
    use gwlb::pipeline::{Pipeline, Verdict};

    #[test]
    fn steering_rules_send_the_traffic_to_the_steered_group() {
        let g = FlowGen::new();
        for rules in [0usize, 1, 2, 100, 10_000] {
            let (cfg, snap) = bench_snapshot_steered(4, 1 << 12, rules);
            assert_eq!(cfg.endpoints[0].rules.len(), rules);
            let steered = group_addrs(&snap, STEERED_GROUP);
            assert_eq!(steered.len(), 4);
            let idx = steered_rule_index(&snap, rules);
            let mut pipe = Pipeline::new(1 << 12, gwlb::flow_table::Timeouts::default()).unwrap();
            // Established-range and storm-range flows, twice each (new, then established).
            for i in [0u64, 1, 77_777, 1 << 32, (1 << 32) + 7_000_000] {
                for _ in 0..2 {
                    let f = Frame::of(&g.flow(i));
                    let mut b = VecBuf::new(&f.0);
                    assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0), "{rules}");
                    let dst = verify_encap(b.data(), &f.0).unwrap();
                    assert!(steered.contains(&dst), "{rules} rules: to {dst:?}");
                }
            }
            let c = &pipe.counters;
            assert_eq!((c.new_flows, c.encapsulated), (5, 10));
            assert_eq!(
                c.rules[idx],
                [10, 10 * (FRAME_LEN as u64 - 14), 5],
                "{rules}"
            );
            // The same client to port 443: a near miss when there is one (bypassed), else the
            // default action.
            let mut f = Frame::of(&g.flow(3));
            f.0[36..38].copy_from_slice(&443u16.to_be_bytes());
            let mut b = VecBuf::new(&f.0);
            assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
            assert_eq!(pipe.counters.bypassed, u64::from(rules >= 2), "{rules}");
        }
    }

    #[test]
    fn frames_are_valid_and_encapsulate() {
        let (_cfg, snap) = bench_snapshot(4, 1 << 12);
        let g = FlowGen::new();
        let mut pipe = Pipeline::new(1 << 12, gwlb::flow_table::Timeouts::default()).unwrap();
        for i in [0u64, 1, 77_777, 1 << 20] {
            let f = Frame::of(&g.flow(i));
            let p = etherparse::SlicedPacket::from_ethernet(&f.0).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
                panic!()
            };
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            let mut b = VecBuf::new(&f.0);
            assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
            verify_encap(b.data(), &f.0).unwrap();
        }
        // Returns of those flows, both styles, come back out decapsulated.
        let rets = Returns::new(&snap);
        for style in [ReturnStyle::Aws, ReturnStyle::Linux] {
            for i in [0u64, 1, 77_777, 1 << 20] {
                let mut f = vec![0u8; Returns::len(style)];
                rets.write(style, i, rets.target(i), &mut f);
                let mut b = VecBuf::new(&f);
                assert_eq!(
                    pipe.process(&snap, &mut b, 0, 1),
                    Verdict::Tx(0),
                    "{style:?} {i}"
                );
                verify_decap(b.data(), &rets.inner(style, i)).unwrap();
            }
        }
        assert_eq!(pipe.counters.decapsulated, 8);
        // A latency stamp in the input is found at the same place in every output.
        let stamp = 0x0123_4567_89ab_cdefu64.to_le_bytes();
        let mut f = Frame::of(&g.flow(5)).0;
        f[14 + STAMP_IN_IP..14 + STAMP_IN_IP + 8].copy_from_slice(&stamp);
        assert_eq!(read_stamp(&f), Some(u64::from_le_bytes(stamp)));
        let mut b = VecBuf::new(&f);
        assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
        verify_encap(b.data(), &f).unwrap();
        assert_eq!(read_stamp(b.data()), Some(u64::from_le_bytes(stamp)));
        for style in [ReturnStyle::Aws, ReturnStyle::Linux] {
            let mut r = vec![0u8; Returns::len(style)];
            rets.write(style, 5, rets.target(5), &mut r);
            let at = Returns::len(style) - (FRAME_LEN - 14) + STAMP_IN_IP;
            r[at..at + 8].copy_from_slice(&stamp);
            let mut b = VecBuf::new(&r);
            assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
            assert_eq!(
                read_stamp(b.data()),
                Some(u64::from_le_bytes(stamp)),
                "{style:?}"
            );
        }
        // IMIX frames encapsulate (the bench port has a 9000-byte MTU).
        let imix = ImixFrames::new();
        for i in 0..12 {
            let f = imix.frame(i, imix_len(i));
            let mut b = VecBuf::new(&f);
            assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
            verify_encap(b.data(), &f).unwrap();
        }
    }
}
