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
        let host = 11 + i;
        s.push_str(&format!(
            "\n[[target_groups.targets]]\naddress = \"10.0.{}.{}\"\nmac = \"02:00:00:00:{:02x}:{:02x}\"\n",
            host / 256,
            host % 256,
            (host >> 8) & 0xff,
            host & 0xff
        ));
    }
    s.push_str(
        "\n[control]\napi_listen = \"off\"\nmetrics_listen = \"off\"\nlog_format = \"human\"\n",
    );
    s
}

/// Parses [`bench_config`] and builds its snapshot.
pub fn bench_snapshot(appliances: usize, flow_table_capacity: u32) -> (Config, Snapshot) {
    let cfg = Config::from_toml_str(&bench_config(appliances, flow_table_capacity))
        .expect("bench config parses");
    let snap = Snapshot::build(&cfg, &[PORT_MAC], &LiveState::default(), 1)
        .expect("bench snapshot builds");
    assert!(
        snap.appliances.iter().all(|a| a.template.is_some()),
        "every appliance has an encapsulation template"
    );
    (cfg, snap)
}

/// Ones' complement sum of big-endian 16-bit words.
fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
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
        let t = Frame::template();
        let mut hdr = [0u8; 20];
        hdr.copy_from_slice(&t.0[14..34]);
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
        f[0..6].copy_from_slice(&PORT_MAC);
        f[6..12].copy_from_slice(&CLIENT_MAC);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        let total = (20 + 20 + PAYLOAD.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[100, 64, 0, 0]);
        ip[16..20].copy_from_slice(&SERVER_IP);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&1024u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&SERVER_PORT.to_be_bytes());
        tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18; // PSH|ACK
        tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
        f[54..60].copy_from_slice(&PAYLOAD);
        let mut fr = Frame(f);
        fr.patch(&FlowGen { base_sum: 0 }.flow(0));
        let mut hdr = [0u8; 20];
        hdr.copy_from_slice(&fr.0[14..34]);
        hdr[10..12].fill(0);
        fr.0[24..26].copy_from_slice(&(!fold(sum16(&hdr))).to_be_bytes());
        fr
    }

    /// Writes a flow's source address, port and IPv4 checksum into a frame (the TCP checksum
    /// is left as is: nobody on this path verifies it).
    #[inline(always)]
    pub fn patch_bytes(f: &mut [u8], r: &FlowRec) {
        f[24..26].copy_from_slice(&r.ip_csum.to_be_bytes());
        f[26..30].copy_from_slice(&r.src_ip.to_be_bytes());
        f[34..36].copy_from_slice(&r.src_port.to_be_bytes());
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
    use gwlb::packet_buf::{PacketBuf, VecBuf};
    use gwlb::pipeline::{Pipeline, Verdict};

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
    }
}
