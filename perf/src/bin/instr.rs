//! Instructions per packet of the gwlb pipeline under callgrind: a stable figure on a noisy,
//! shared machine (instruction counts do not depend on other tenants; cache misses do, and
//! callgrind does not count them as time).
//!
//! `instr` (the driver) runs itself once per scenario under
//! `valgrind --tool=callgrind`, reads the inclusive instruction counts of the two measured
//! functions with `callgrind_annotate` and prints a table:
//!
//! - `measured_total`: load each input frame into a [`BenchBuf`] (copy), then process it;
//! - `measured_baseline`: the same loads without processing;
//! - instructions per packet = (total - baseline) / packets.
//!
//! `instr --scenario S [--mode packet|burst]` is one child run (also usable without
//! valgrind: it verifies the outputs and prints the counters).
//!
//! Scenarios (all through `Pipeline` on real frames, one port, 16 appliances):
//! `encap` (64 B, established flows, random order), `imix` (7:4:1 of 64/570/1518 B),
//! `decap-aws`, `decap-linux` (returns of established flows), `storm` (a new flow every
//! packet), `mixed` (1/64 new flows, the rest half forward, half AWS returns);
//! `rules-N-encap`/`rules-N-storm` (an endpoint with N rules that match nothing) and
//! `steer-N-encap`/`steer-N-storm` (the dataplane's steering-rules endpoint: N rules, the
//! traffic matching the last; outputs checked to go to the group it names).
//! Established flows: 125 000 in a 262 144-slot table (48% load, as 1 M in 2 M).

use std::hint::black_box;
use std::process::Command;

use clap::Parser;
use gwlb::flow_table::Timeouts;
use gwlb::packet_buf::PacketBuf;
use gwlb::pipeline::{owner_hash, Pipeline, Share, Verdict};
use gwlb::snapshot::Snapshot;
use gwlb_perf::{
    bench_snapshot, bench_snapshot_mirrored, bench_snapshot_steered, bench_snapshot_with_rules,
    group_addrs, imix_len, print_table, verify_decap, verify_encap, BenchBuf, ImixFrames,
    ReturnStyle, Returns, Rng, FRAME_LEN, STEERED_GROUP,
};

#[derive(Parser, Debug)]
#[command(about = "gwlb instructions per packet under callgrind")]
struct Args {
    /// One scenario (child run); without it, run every scenario under callgrind.
    #[arg(long)]
    scenario: Option<String>,
    /// `packet` (Pipeline::process per packet), `burst` (Pipeline::process_burst), `shared`
    /// (Pipeline::process_burst_shared as one of several workers that owns every packet: what
    /// a steered worker pays) or `owner+burst` (owner_hash of each packet, then
    /// process_burst: what a steered worker paid before the owner came from the first pass).
    #[arg(long, default_value = "burst")]
    mode: String,
    /// Packets measured.
    #[arg(long, default_value_t = 100_000)]
    packets: usize,
    /// Established flows.
    #[arg(long, default_value_t = 125_000)]
    flows: usize,
    /// Flow-table capacity.
    #[arg(long, default_value_t = 262_144)]
    table: usize,
    /// Modes the driver runs (comma-separated).
    #[arg(long, default_value = "packet,burst")]
    modes: String,
    /// Scenarios the driver runs (comma-separated; `maglev-N` is one rebuild for N backends).
    #[arg(
        long,
        default_value = "encap,imix,decap-aws,decap-linux,storm,mixed,maglev-10,maglev-100,maglev-1000"
    )]
    scenarios: String,
    /// Smaller sizes (CI smoke: the driver is not run, a child run verifies).
    #[arg(long)]
    smoke: bool,
}

const NOW: u32 = 1;
const BURST: usize = 32;

/// Every input frame, back to back.
struct Inputs {
    bytes: Vec<u8>,
    /// `(offset, length)` of each frame.
    frames: Vec<(usize, usize)>,
}

impl Inputs {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            frames: Vec::new(),
        }
    }
    fn push(&mut self, f: &[u8]) {
        self.frames.push((self.bytes.len(), f.len()));
        self.bytes.extend_from_slice(f);
    }
    #[inline(always)]
    fn get(&self, i: usize) -> &[u8] {
        let (o, l) = self.frames[i];
        &self.bytes[o..o + l]
    }
}

/// What the output of an input must be.
#[derive(Clone, Copy)]
enum Expect {
    Encap,
    Decap(ReturnStyle, u64),
}

#[inline(never)]
fn measured_baseline(bufs: &mut [BenchBuf], inputs: &Inputs) -> u64 {
    let mut acc = 0u64;
    for start in (0..inputs.frames.len()).step_by(BURST) {
        let n = BURST.min(inputs.frames.len() - start);
        for (j, b) in bufs[..n].iter_mut().enumerate() {
            b.load(inputs.get(start + j));
        }
        black_box(&mut bufs[..n]);
        acc += n as u64;
    }
    acc
}

#[inline(never)]
fn measured_total(
    pipe: &mut Pipeline,
    snap: &Snapshot,
    bufs: &mut [BenchBuf],
    inputs: &Inputs,
    mode: Mode,
) -> u64 {
    let mut tx = 0u64;
    let mut verdicts = [Verdict::ToHost; BURST];
    for start in (0..inputs.frames.len()).step_by(BURST) {
        let n = BURST.min(inputs.frames.len() - start);
        for (j, b) in bufs[..n].iter_mut().enumerate() {
            b.load(inputs.get(start + j));
        }
        black_box(&mut bufs[..n]);
        run_mode(pipe, snap, &mut bufs[..n], &mut verdicts[..n], mode);
        tx += verdicts[..n]
            .iter()
            .filter(|v| matches!(v, Verdict::Tx(_)))
            .count() as u64;
    }
    tx
}

/// How the measured loop hands packets to the pipeline (`--mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Packet,
    Burst,
    Shared,
    OwnerThenBurst,
}

impl Mode {
    fn parse(s: &str) -> Mode {
        match s {
            "packet" => Mode::Packet,
            "burst" => Mode::Burst,
            "shared" => Mode::Shared,
            "owner+burst" => Mode::OwnerThenBurst,
            m => panic!("unknown mode {m}"),
        }
    }
}

#[inline(always)]
fn run_mode(
    pipe: &mut Pipeline,
    snap: &Snapshot,
    bufs: &mut [BenchBuf],
    v: &mut [Verdict],
    mode: Mode,
) {
    let mut sink = |c: BenchBuf, _, _| {
        black_box(c.data()[0]);
        c.recycle();
        true
    };
    if snap.mirror_before {
        if mode == Mode::Burst {
            // What a single worker does: the copies in the pipeline's own pass.
            pipe.process_burst_mirrored(snap, bufs, 0, NOW, v, &mut sink);
            return;
        }
        // The copies first, from the packets as received (a worker of several).
        pipe.mirror_before(snap, bufs, 0, NOW, &mut sink);
    }
    match mode {
        Mode::Packet => {
            for (b, v) in bufs.iter_mut().zip(v.iter_mut()) {
                *v = pipe.process(snap, b, 0, NOW);
            }
        }
        Mode::Burst => pipe.process_burst(snap, bufs, 0, NOW, v),
        // One worker of one: it owns every packet, through the shared path.
        Mode::Shared => {
            let share = Share { me: 0, workers: 1 };
            pipe.process_burst_shared(snap, bufs, 0, NOW, share, v)
        }
        Mode::OwnerThenBurst => {
            let mut owners = 0u32;
            for b in bufs.iter() {
                owners ^= owner_hash(snap, b.data(), 0).unwrap_or(0);
            }
            black_box(owners);
            pipe.process_burst(snap, bufs, 0, NOW, v)
        }
    }
}

/// One Maglev rebuild (warm scratch), for `maglev-N` scenarios.
#[inline(never)]
fn measured_maglev(
    b: &mut gwlb::maglev::MaglevBuilder,
    backends: &[gwlb::maglev::MaglevBackend],
    t: &mut gwlb::maglev::MaglevTable,
) {
    b.build_into(backends, t).expect("build");
}

fn maglev_child(n: usize) {
    use gwlb::maglev::{MaglevBackend, MaglevBuilder, DEFAULT_TABLE_SIZE};
    use std::net::{IpAddr, Ipv4Addr};
    let backends: Vec<MaglevBackend> = (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000u32 + 11 + i as u32);
            MaglevBackend::from_addr(IpAddr::V4(ip), 1)
        })
        .collect();
    let mut b = MaglevBuilder::new(DEFAULT_TABLE_SIZE, 0x5eed).expect("builder");
    let mut t = b.build(&backends).expect("build");
    let first = t.clone();
    measured_maglev(&mut b, &backends, &mut t);
    assert!(t == first, "rebuild differs");
    let counts = t.counts(n);
    let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(
        hi - lo <= 1,
        "equal weights: {lo}..{hi} entries per backend"
    );
    println!("maglev-{n}: one rebuild, {lo}..{hi} entries per backend");
}

fn child(a: &Args, scenario: &str) {
    if let Some(n) = scenario.strip_prefix("maglev-") {
        maglev_child(n.parse().expect("maglev-N"));
        return;
    }
    let mode = Mode::parse(&a.mode);
    // `mirror-N`: the encap scenario with N sessions copying every packet.
    let sessions: usize = scenario
        .strip_prefix("mirror-")
        .map_or(0, |n| n.parse().expect("mirror-N"));
    // `rules-N-encap` / `rules-N-storm`: encap or storm through an endpoint with N
    // steering rules that match nothing (its default action inspects).
    let rules: Option<(usize, &str)> = scenario.strip_prefix("rules-").map(|r| {
        let (n, what) = r.split_once('-').expect("rules-N-encap or rules-N-storm");
        (n.parse().expect("rules-N"), what)
    });
    // `steer-N-encap` / `steer-N-storm`: the same through the endpoint of the dataplane's
    // steering-rules table (`bench_config_steered`): N realistic rules, the traffic matching
    // the last, which sends it to the group "steered" (N = 0: the default action does).
    let steer: Option<(usize, &str)> = scenario.strip_prefix("steer-").map(|r| {
        let (n, what) = r.split_once('-').expect("steer-N-encap or steer-N-storm");
        (n.parse().expect("steer-N"), what)
    });
    let (_cfg, snap) = if sessions > 0 {
        bench_snapshot_mirrored(16, a.table as u32, sessions)
    } else if let Some((n, _)) = rules {
        bench_snapshot_with_rules(16, a.table as u32, n)
    } else if let Some((n, _)) = steer {
        bench_snapshot_steered(16, a.table as u32, n)
    } else {
        bench_snapshot(16, a.table as u32)
    };
    // Where every encapsulation must go (empty: anywhere).
    let encap_to = steer.map_or(Vec::new(), |_| group_addrs(&snap, STEERED_GROUP));
    let scenario = rules.or(steer).map_or(scenario, |(_, what)| what);
    let imix = ImixFrames::new();
    let rets = Returns::new(&snap);
    let mut pipe = Pipeline::new(a.table, Timeouts::default()).expect("pipeline");
    let mut bufs: Vec<BenchBuf> = (0..BURST).map(|_| BenchBuf::new()).collect();

    // Established flows, inserted through the pipeline (not measured).
    let established = scenario != "storm";
    if established {
        let mut pre = Inputs::new();
        for i in 0..a.flows as u64 {
            pre.push(&imix.frame(i, FRAME_LEN));
        }
        let tx = measured_prefill(&mut pipe, &snap, &mut bufs, &pre);
        assert_eq!(tx, a.flows as u64);
        assert_eq!(pipe.counters.new_flows, a.flows as u64);
    }
    let mut order: Vec<u64> = (0..a.flows as u64).collect();
    Rng::new(42).shuffle(&mut order);
    let mut rng = Rng::new(7);
    let mut inputs = Inputs::new();
    let mut expect = Vec::new();
    let mut new_flow = 1u64 << 32;
    let mut ret = vec![0u8; 256];
    for i in 0..a.packets {
        let est = order[i % order.len()];
        let fwd = |flow: u64, len: usize, inputs: &mut Inputs| {
            inputs.push(&imix.frame(flow, len));
            Expect::Encap
        };
        let mut back = |style: ReturnStyle, flow: u64, inputs: &mut Inputs| {
            let len = Returns::len(style);
            rets.write(style, flow, rets.target(flow), &mut ret[..len]);
            inputs.push(&ret[..len]);
            Expect::Decap(style, flow)
        };
        let e = match scenario {
            "encap" => fwd(est, FRAME_LEN, &mut inputs),
            s if s.starts_with("mirror-") => fwd(est, FRAME_LEN, &mut inputs),
            "imix" => fwd(est, imix_len(i as u64), &mut inputs),
            "decap-aws" => back(ReturnStyle::Aws, est, &mut inputs),
            "decap-linux" => back(ReturnStyle::Linux, est, &mut inputs),
            "storm" => {
                new_flow += 1;
                fwd(new_flow, FRAME_LEN, &mut inputs)
            }
            "mixed" => {
                if i.is_multiple_of(64) {
                    new_flow += 1;
                    fwd(new_flow, FRAME_LEN, &mut inputs)
                } else if rng.next_u64() & 1 == 0 {
                    fwd(est, FRAME_LEN, &mut inputs)
                } else {
                    back(ReturnStyle::Aws, est, &mut inputs)
                }
            }
            s => panic!("unknown scenario {s}"),
        };
        expect.push(e);
    }

    let before = pipe.counters.clone();
    let base = measured_baseline(&mut bufs, &inputs);
    let tx = measured_total(&mut pipe, &snap, &mut bufs, &inputs, mode);
    assert_eq!(base, a.packets as u64);
    let c = pipe.counters.clone();
    assert_eq!(
        tx, a.packets as u64,
        "every packet transmitted; drops {:?}",
        c.drops
    );
    assert_eq!(c.dropped(), before.dropped(), "no drops");
    let new = c.new_flows - before.new_flows;
    let copies: u64 = c.mirror.iter().map(|m| m[0]).sum();
    // The measured run and the verification below: every packet copied once per session.
    assert!(
        copies >= (a.packets * sessions) as u64,
        "{copies} copies of {} packets, {sessions} sessions",
        a.packets
    );
    match scenario {
        "storm" => assert_eq!(new, a.packets as u64),
        "mixed" => assert_eq!(new, a.packets.div_ceil(64) as u64),
        _ => assert_eq!(new, 0),
    }
    // Verify a sample through the same entry point, in a burst of its own.
    for i in (0..a.packets).step_by((a.packets / 97).max(1)) {
        let n = BURST.min(a.packets - i);
        for (j, b) in bufs[..n].iter_mut().enumerate() {
            b.load(inputs.get(i + j));
        }
        let mut v = [Verdict::ToHost; BURST];
        run_mode(&mut pipe, &snap, &mut bufs[..n], &mut v[..n], mode);
        for j in 0..n {
            assert_eq!(v[j], Verdict::Tx(0), "packet {}", i + j);
            let out = bufs[j].data();
            let r = match expect[i + j] {
                Expect::Encap => verify_encap(out, inputs.get(i + j)).and_then(|dst| {
                    if encap_to.is_empty() || encap_to.contains(&dst) {
                        Ok(())
                    } else {
                        Err(format!("to {dst:?}, not the steered group's {encap_to:?}"))
                    }
                }),
                Expect::Decap(style, flow) => verify_decap(out, &rets.inner(style, flow)),
            };
            if let Err(e) = r {
                panic!("{scenario} packet {}: {e}", i + j);
            }
        }
    }
    println!(
        "{scenario} {}: {} packets, {} encapsulated, {} decapsulated, {} new flows, verified",
        a.mode,
        a.packets,
        c.encapsulated - before.encapsulated,
        c.decapsulated - before.decapsulated,
        new
    );
}

/// The prefill, kept out of the measured functions.
#[inline(never)]
fn measured_prefill(
    pipe: &mut Pipeline,
    snap: &Snapshot,
    bufs: &mut [BenchBuf],
    inputs: &Inputs,
) -> u64 {
    let mut tx = 0;
    for i in 0..inputs.frames.len() {
        bufs[0].load(inputs.get(i));
        if let Verdict::Tx(_) = pipe.process(snap, &mut bufs[0], 0, NOW) {
            tx += 1;
        }
    }
    tx
}

/// Inclusive instruction count of the function whose name contains `name`.
fn inclusive(annotated: &str, name: &str) -> Option<u64> {
    annotated
        .lines()
        .find(|l| l.contains(name) && l.contains("instr::"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
}

fn driver(a: &Args) {
    let exe = std::env::current_exe().expect("own path");
    let dir = std::env::temp_dir();
    let modes: Vec<&str> = a.modes.split(',').collect();
    let mut rows = Vec::new();
    println!("# gwlb instructions per packet (callgrind)");
    println!();
    println!(
        "{} packets per scenario; {} established flows in a {}-slot table; \
         per packet = (measured_total - measured_baseline) / packets, inclusive Ir",
        a.packets, a.flows, a.table
    );
    println!();
    let (maglev, pipeline): (Vec<&str>, Vec<&str>) = a
        .scenarios
        .split(',')
        .partition(|s| s.starts_with("maglev-"));
    for sc in pipeline {
        let mut row = vec![sc.to_string()];
        for m in &modes {
            let (packets, flows, table) = (
                a.packets.to_string(),
                a.flows.to_string(),
                a.table.to_string(),
            );
            let text = callgrind(
                &exe,
                &dir.join(format!("gwlb-instr-{}-{sc}-{m}.out", std::process::id())),
                &[
                    "--scenario",
                    sc,
                    "--mode",
                    m,
                    "--packets",
                    &packets,
                    "--flows",
                    &flows,
                    "--table",
                    &table,
                ],
            );
            let total = inclusive(&text, "measured_total").expect("measured_total in profile");
            let base = inclusive(&text, "measured_baseline").expect("measured_baseline in profile");
            let per = (total as f64 - base as f64) / a.packets as f64;
            eprintln!("{sc} {m}: total {total} baseline {base} -> {per:.1} instr/packet");
            row.push(format!("{per:.1}"));
        }
        rows.push(row);
    }
    let mut mrows = Vec::new();
    for sc in maglev {
        let n = sc.trim_start_matches("maglev-");
        let out = dir.join(format!("gwlb-instr-{}-{sc}.out", std::process::id()));
        let text = callgrind(&exe, &out, &["--scenario", sc]);
        let ir = inclusive(&text, "measured_maglev").expect("measured_maglev in profile");
        mrows.push(vec![n.to_string(), format!("{:.2} M", ir as f64 / 1e6)]);
    }
    let mut header = vec!["scenario".to_string()];
    header.extend(modes.iter().map(|m| format!("instructions/packet, {m}")));
    let h: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    print_table(&h, &rows);
    println!();
    println!("Maglev rebuild (M = 65537, equal weights, warm scratch, build_into):");
    println!();
    print_table(&["backends", "instructions per rebuild"], &mrows);
}

/// Runs `exe args` under callgrind with its profile in `out` and returns the inclusive
/// annotation (`callgrind_annotate --inclusive=yes`); the profile file is removed.
fn callgrind(exe: &std::path::Path, out: &std::path::Path, args: &[&str]) -> String {
    let st = Command::new("valgrind")
        .args(["--tool=callgrind", "-q"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(args)
        .status()
        .expect("valgrind (apt-get install valgrind)");
    assert!(st.success(), "callgrind run of {args:?} failed");
    let ann = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(out)
        .output()
        .expect("callgrind_annotate");
    let _ = std::fs::remove_file(out);
    String::from_utf8_lossy(&ann.stdout).into_owned()
}

fn main() {
    let mut a = Args::parse();
    if a.smoke {
        a.packets = a.packets.min(4096);
        a.flows = a.flows.min(2000);
        a.table = a.table.min(8192);
    }
    match a.scenario.clone() {
        Some(s) => child(&a, &s),
        None if a.smoke => {
            for s in a.scenarios.split(',') {
                // One Maglev build per scenario, whatever the mode.
                let modes = if s.starts_with("maglev-") {
                    "packet"
                } else {
                    a.modes.as_str()
                };
                for m in modes.split(',') {
                    let mut b = Args::parse();
                    b.packets = a.packets;
                    b.flows = a.flows;
                    b.table = a.table;
                    b.mode = m.to_string();
                    child(&b, s);
                }
            }
        }
        None => driver(&a),
    }
}
