//! Helpers for the pcap data-path tests: one configuration, a model of what gwlb must send
//! (outer headers built here from the rules in `encap.rs`, independently of gwlb's own code;
//! only the flow hash and the Maglev pick come from the `gwlb` library), builders for appliance
//! returns in both styles (AWS echo, Linux kernel), and a runner for the real `gwlb` binary on
//! net_pcap ports.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gwlb::config::Config;
use gwlb::flow::{FlowKey, Stickiness};
use gwlb::snapshot::{LiveState, Snapshot};
use gwlb_tests::configs::{
    lab_routes_and_neighbors_toml, mac_str, neighbor_toml, target_toml, CONTROL_OFF, PORT_ADDRESSES,
};

// The shared test kit (the `gwlb-tests` crate): the lab's address plan, packet builders,
// checksums, pcap files. Each test crate that includes this module uses its own subset.
#[allow(unused_imports)]
pub use gwlb_tests::checksum::{checksum, ones_sum, set_ipv4_checksum};
#[allow(unused_imports)]
pub use gwlb_tests::configs::{
    gw_addr_for, Target, CLIENT_MAC, GW_V4, GW_V6, HOST_50, PORT_MAC, ROUTER_10_2, ROUTER_V4,
    ROUTER_V6, SEED, STRANGER_MAC, TARGETS,
};
#[allow(unused_imports)]
pub use gwlb_tests::frames::{
    eth, eth_ip, ethertype_of, frame, ip_packet, pad_to, routed, v4, vlan_tagged, Ips, L4,
};
#[allow(unused_imports)]
pub use gwlb_tests::geneve_returns::{
    encap_sport as sport_of, geneve_base, udp_6081_frame, AwsIds, Outer,
};
#[allow(unused_imports)]
pub use gwlb_tests::headers::{
    icmp, ipv4, ipv6, ipv6_ext, ipv6_fragment, tcp, tcp_opts, udp, Ipv4,
};
#[allow(unused_imports)]
pub use gwlb_tests::pcap::{read_pcap, write_pcap};

/// Geneve VNI of the target group.
pub const VNI: u32 = 0x00ab_cdef;
/// AWS option type 1.
pub const ENDPOINT_ID: u64 = 0x0123_4567_89ab_cdef;
/// AWS option type 2.
pub const ATTACHMENT_ID: u64 = 0xfedc_ba98_7654_3210;
/// The group's identifiers in every encapsulation.
pub const IDS: AwsIds = AwsIds {
    vni: VNI,
    endpoint_id: ENDPOINT_ID,
    attachment_id: ATTACHMENT_ID,
};
/// Outer TTL / hop limit (not the default, so that the test sees it is applied).
pub const OUTER_TTL: u8 = 17;

/// The configuration every test runs with.
pub fn config_toml(rx: &Path, tx: &Path, file_prefix: &str) -> String {
    config_toml_mtu(rx, tx, file_prefix, 1500)
}

/// [`config_toml`] with the port's MTU.
pub fn config_toml_mtu(rx: &Path, tx: &Path, file_prefix: &str, mtu: u16) -> String {
    let targets: String = TARGETS
        .iter()
        .map(|t| target_toml(t.addr, Some(t.mac), None))
        .collect();
    format!(
        r#"[dataplane]
worker_cpus = [1]
main_cpu = 0
hugepages = "off"
memory_mb = 256
eal_args = ["--no-pci", "--file-prefix={file_prefix}"]
mbufs_per_worker = 4096
flow_table_capacity = 65536
flow_hash_seed = "{SEED:#x}"

[[ports]]
name = "pcap"
device = "net_pcap0,rx_pcap={rx},tx_pcap={tx}"
role = "both"
address = {PORT_ADDRESSES}
mac = "{port_mac}"
promiscuous = false
mtu = {mtu}
{lab}
[[routes]]
prefix = "10.2.0.0/16"
via = "10.0.0.253"
port = "pcap"
{router_10_2}
[[target_groups]]
name = "fw"
geneve_vni = {VNI}
endpoint_id = "{ENDPOINT_ID:#x}"
attachment_id = "{ATTACHMENT_ID:#x}"
outer_ttl = {OUTER_TTL}

[target_groups.health_check]
enabled = false
{targets}{CONTROL_OFF}"#,
        rx = rx.display(),
        tx = tx.display(),
        port_mac = mac_str(PORT_MAC),
        lab = lab_routes_and_neighbors_toml("pcap"),
        router_10_2 = neighbor_toml("10.0.0.253", ROUTER_10_2, "pcap"),
    )
}

/// Which appliance gwlb must pick for a frame, and its flow cookie (the symmetric flow hash),
/// from the same configuration through the `gwlb` library.
#[derive(Debug)]
pub struct Model {
    snap: Snapshot,
}

impl Model {
    /// Builds the snapshot gwlb builds at start.
    pub fn new() -> Self {
        let text = config_toml(Path::new("/in.pcap"), Path::new("/out.pcap"), "model");
        let cfg = Config::from_toml_str(&text).expect("test config is valid");
        assert!(
            cfg.warnings().is_empty(),
            "test config has warnings: {:?}",
            cfg.warnings()
        );
        let snap = Snapshot::build(&cfg, &[PORT_MAC], &LiveState::default(), 1).expect("snapshot");
        Self { snap }
    }

    fn hash(&self, frame: &[u8]) -> u64 {
        let p = gwlb::parse::parse_frame(frame).expect("model: frame parses");
        FlowKey::from_packet(&p, Stickiness::FiveTuple).hash(SEED)
    }

    /// The flow cookie gwlb writes for this user frame.
    pub fn cookie(&self, frame: &[u8]) -> u32 {
        self.hash(frame) as u32
    }

    /// The appliance Maglev picks for this user frame.
    pub fn target(&self, frame: &[u8]) -> Target {
        let g = &self.snap.groups[0];
        let b = g
            .maglev
            .lookup((self.hash(frame) >> 32) as u32)
            .expect("maglev has backends");
        let addr = self.snap.appliances[usize::from(g.backends[usize::from(b)])].addr;
        *TARGETS
            .iter()
            .find(|t| t.addr == addr)
            .expect("appliance is a target")
    }

    /// The first `i` (0, 1, ...) for which Maglev sends the frame `make(i)` to `want`.
    pub fn find_flow(&self, want: IpAddr, make: impl Fn(u16) -> Vec<u8>) -> u16 {
        (0..2000)
            .find(|&i| self.target(&make(i)).addr == want)
            .unwrap_or_else(|| panic!("no flow found for appliance {want}"))
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Packet bytes
// ---------------------------------------------------------------------------------------------

/// The 40-byte Geneve header gwlb sends for `inner` in this configuration (see
/// [`gwlb_tests::geneve_returns::aws_geneve_header`]).
pub fn aws_geneve_header(inner: &[u8], cookie: u32) -> Vec<u8> {
    gwlb_tests::geneve_returns::aws_geneve_header(ethertype_of(inner), &IDS, cookie)
}

/// Exactly what gwlb must send to `t` for the user frame `user` (cookie from the model).
pub fn expected_encap(user: &[u8], t: &Target, cookie: u32) -> Vec<u8> {
    let inner = ip_packet(user);
    let mut payload = aws_geneve_header(inner, cookie);
    payload.extend_from_slice(inner);
    udp_6081_frame(
        &Outer {
            dst_mac: t.mac,
            src_mac: PORT_MAC,
            src: gw_addr_for(t),
            dst: t.addr,
            ttl: OUTER_TTL,
            df: true,
            sport: sport_of(cookie),
            ip_id: 0,
            udp_checksum_v4: false,
        },
        &payload,
    )
}

/// Outer headers of an appliance's packet back to the gateway.
pub fn from_appliance(t: &Target, ttl: u8, sport: u16) -> Outer {
    Outer {
        dst_mac: PORT_MAC,
        src_mac: t.mac,
        src: t.addr,
        dst: gw_addr_for(t),
        ttl,
        df: false,
        sport,
        ip_id: 0x1234,
        udp_checksum_v4: false,
    }
}

/// An AWS-style (gwlbtun) return: our Geneve header echoed byte for byte, outer addresses
/// and MACs swapped, our UDP source port kept, TTL 2, DF clear, UDP checksum 0 over IPv4.
pub fn aws_return(t: &Target, inner: &[u8], cookie: u32) -> Vec<u8> {
    let mut payload = aws_geneve_header(inner, cookie);
    payload.extend_from_slice(inner);
    udp_6081_frame(&from_appliance(t, 2, sport_of(cookie)), &payload)
}

/// A Linux-kernel-style return: no options, its own VNI, a hashed UDP source port (here
/// `sport`, possibly below 1024), TTL 64, UDP checksum 0 over IPv4; the inner packet is
/// routed (TTL decremented), so the caller passes it already [`routed`].
pub fn linux_return(t: &Target, inner: &[u8], vni: u32, sport: u16) -> Vec<u8> {
    gwlb_tests::geneve_returns::linux_return(&from_appliance(t, 64, sport), inner, vni)
}

/// A Geneve frame from `t` with an arbitrary Geneve payload (malformed cases).
pub fn raw_return(t: &Target, geneve_payload: &[u8]) -> Vec<u8> {
    udp_6081_frame(&from_appliance(t, 64, 700), geneve_payload)
}

// ---------------------------------------------------------------------------------------------
// Running gwlb
// ---------------------------------------------------------------------------------------------

/// gwlb runs one at a time: each run busy-polls a pinned CPU.
static GWLB_LOCK: Mutex<()> = Mutex::new(());
static RUN_SEQ: AtomicU32 = AtomicU32::new(0);

/// A per-test directory under the system temp dir; removed when the test passes.
#[derive(Debug)]
pub struct TestDir {
    /// Its path.
    pub path: PathBuf,
}

impl TestDir {
    /// A fresh, unique directory.
    pub fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "gwlb-it-{name}-{}-{}-{nanos}",
            std::process::id(),
            RUN_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create test dir");
        Self { path }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Final counters printed by `gwlb run`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `worker 0:` fields (rx, tx, encapsulated, decapsulated, to_host, new_flows, ...).
    pub worker: BTreeMap<String, u64>,
    /// `drop <reason>: n` lines (only the non-zero ones are printed).
    pub drops: BTreeMap<String, u64>,
    /// `appliance <addr>: packets p bytes b flows f`.
    pub appliances: BTreeMap<String, [u64; 3]>,
}

impl Report {
    /// Parses gwlb's stdout (one worker).
    pub fn parse(stdout: &str) -> Self {
        let mut r = Report::default();
        let mut workers = 0;
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("worker ") {
                workers += 1;
                let (_, fields) = rest.split_once(": ").expect("worker line");
                let t: Vec<&str> = fields.split_whitespace().collect();
                for kv in t.chunks(2) {
                    r.worker
                        .insert(kv[0].to_owned(), kv[1].parse().expect("worker counter"));
                }
            } else if let Some(rest) = line.strip_prefix("  drop ") {
                let (k, v) = rest.split_once(": ").expect("drop line");
                r.drops
                    .insert(k.to_owned(), v.trim().parse().expect("drop count"));
            } else if let Some(rest) = line.strip_prefix("appliance ") {
                let (addr, fields) = rest.split_once(": ").expect("appliance line");
                let t: Vec<&str> = fields.split_whitespace().collect();
                assert_eq!(t.len(), 6, "appliance line: {line}");
                assert_eq!((t[0], t[2], t[4]), ("packets", "bytes", "flows"));
                let n = |s: &str| s.parse::<u64>().expect("appliance counter");
                r.appliances
                    .insert(addr.to_owned(), [n(t[1]), n(t[3]), n(t[5])]);
            }
        }
        assert_eq!(workers, 1, "expected one worker line in:\n{stdout}");
        r
    }

    /// A `worker 0:` counter.
    pub fn get(&self, k: &str) -> u64 {
        *self
            .worker
            .get(k)
            .unwrap_or_else(|| panic!("no counter {k} in {:?}", self.worker))
    }
}

/// The outcome of one `gwlb run`.
#[derive(Debug)]
pub struct RunOutput {
    /// Frames gwlb wrote to tx_pcap, in order.
    pub frames: Vec<Vec<u8>>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Parsed final counters.
    pub report: Report,
    /// The test directory (out.pcap is `dir.path/out.pcap`).
    pub dir: TestDir,
}

/// Runs `gwlb run --exit-when-idle-ms 300` on a net_pcap port that reads `input`; asserts it
/// exits 0 within 60 s.
pub fn run_gwlb(name: &str, input: &[Vec<u8>]) -> RunOutput {
    run_gwlb_mtu(name, input, 1500)
}

/// [`run_gwlb`] with the port's MTU.
pub fn run_gwlb_mtu(name: &str, input: &[Vec<u8>], mtu: u16) -> RunOutput {
    run_gwlb_with(name, input, mtu, "")
}

/// [`run_gwlb_mtu`] with `extra` appended to the configuration (more groups, mirror
/// sessions).
pub fn run_gwlb_with(name: &str, input: &[Vec<u8>], mtu: u16, extra: &str) -> RunOutput {
    let _serial = GWLB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new(name);
    let rx = dir.path.join("in.pcap");
    let tx = dir.path.join("out.pcap");
    write_pcap(&rx, input).expect("write input pcap");
    let cfg = dir.path.join("gwlb.toml");
    let prefix = dir
        .path
        .file_name()
        .expect("dir name")
        .to_string_lossy()
        .into_owned();
    fs::write(&cfg, config_toml_mtu(&rx, &tx, &prefix, mtu) + extra).expect("write config");
    let out_path = dir.path.join("stdout.txt");
    let err_path = dir.path.join("stderr.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gwlb"))
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--exit-when-idle-ms", "300"])
        .env("GWLB_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn gwlb");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait gwlb") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gwlb did not exit within 60 s; stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = fs::read_to_string(&out_path).expect("read stdout");
    let stderr = fs::read_to_string(&err_path).expect("read stderr");
    assert!(
        status.success(),
        "gwlb exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let frames = read_pcap(&tx).expect("read output pcap");
    let report = Report::parse(&stdout);
    RunOutput {
        frames,
        stdout,
        stderr,
        report,
        dir,
    }
}

/// Hex dump for assertion messages.
pub fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts two frames are identical, reporting the first differing offset.
pub fn assert_frame_eq(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: frames differ at byte {at} (got {} bytes, want {})\ngot:\n{}\nwant:\n{}",
            got.len(),
            want.len(),
            hex(got),
            hex(want)
        );
    }
}
