//! Micro-benchmarks of the gwlb core, without DPDK.
//!
//! - per-packet cost of `Pipeline::process` (parse, hash, flow lookup/insert, Maglev pick,
//!   encapsulation) on real 60-byte Ethernet/IPv4/TCP frames (64 B on the wire) in a
//!   `VecBuf`, for established flows and for a new flow every packet. The buffer is reset
//!   before every packet (undo the prepend, copy the 60-byte template in, patch the flow's
//!   address, port and IPv4 checksum); the same reset loop without `process` runs in the
//!   same repetition and is reported as the baseline, and `net` = total - baseline;
//! - Maglev table builds (`MaglevBuilder`, M = 65537) for N = 10, 100, 1000 backends;
//! - flow-table memory per entry and for 10 M flows.
//!
//! `cargo run --release -p gwlb-perf --bin micro [-- --smoke] [--reps N]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::Parser;
use gwlb::flow::FlowKey;
use gwlb::flow_table::{FlowTable, Timeouts};
use gwlb::maglev::{MaglevBackend, MaglevBuilder, DEFAULT_TABLE_SIZE};
use gwlb::packet_buf::{PacketBuf, VecBuf};
use gwlb::pipeline::{Pipeline, Verdict};
use gwlb::snapshot::Snapshot;
use gwlb_perf::{
    bench_snapshot, cpu_model, print_table, tsc, verify_encap, FlowGen, FlowRec, Frame, Rng,
    Summary, FRAME_LEN,
};

#[derive(Parser, Debug)]
#[command(about = "gwlb micro-benchmarks (no DPDK)")]
struct Args {
    /// Tiny sizes, one repetition, verification only (for CI; no speed claims).
    #[arg(long)]
    smoke: bool,
    /// Repetitions per measurement.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Established flows pre-inserted (scenario a).
    #[arg(long, default_value_t = 1_000_000)]
    flows: usize,
    /// Flow-table capacity (flows) for the 1M-flow and new-flow scenarios.
    #[arg(long, default_value_t = 2_097_152)]
    table: usize,
    /// Appliances in the target group.
    #[arg(long, default_value_t = 16)]
    appliances: usize,
    /// Experiment: madvise(MADV_HUGEPAGE) every allocation of 2 MiB or more (the flow table),
    /// to measure what transparent huge pages would change. gwlb itself does not do this.
    #[arg(long)]
    thp: bool,
}

/// The system allocator, optionally asking for transparent huge pages on large blocks.
struct ThpAlloc;

static THP: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards to `System`; madvise only gives advice on memory we just got.
unsafe impl GlobalAlloc for ThpAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn advise(p: *mut u8, size: usize) {
    const HUGE: usize = 2 << 20;
    if p.is_null() || size < HUGE || !THP.load(Relaxed) {
        return;
    }
    let start = (p as usize).next_multiple_of(HUGE);
    let end = (p as usize + size) & !(HUGE - 1);
    if end > start {
        // SAFETY: [start, end) lies inside the block just allocated; advice only.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

#[global_allocator]
static GLOBAL: ThpAlloc = ThpAlloc;

/// The workers' coarse clock; constant here (nothing expires during a run).
const NOW: u32 = 1;

/// Puts the frame of flow `r` into `buf`: undoes the previous encapsulation's prepend, copies
/// the template in and patches the flow fields.
#[inline(always)]
fn reset(buf: &mut VecBuf, tmpl: &[u8; FRAME_LEN], r: &FlowRec) {
    let extra = buf.data().len() - FRAME_LEN;
    let _ = buf.adj(extra);
    let d = buf.data_mut();
    d.copy_from_slice(tmpl);
    Frame::patch_bytes(d, r);
}

/// One timed pass over `n` packets, flow of packet `i` = `flow(i)`. With `PROCESS` false only
/// the buffer reset runs (the baseline). Returns (wall time, TSC ticks, packets sent).
#[inline(never)]
fn pass<const PROCESS: bool>(
    pipe: &mut Pipeline,
    snap: &Snapshot,
    buf: &mut VecBuf,
    tmpl: &[u8; FRAME_LEN],
    n: usize,
    flow: impl Fn(usize) -> FlowRec,
) -> (Duration, u64, u64) {
    let mut tx = 0u64;
    let t0 = Instant::now();
    let c0 = tsc::now();
    for i in 0..n {
        let r = flow(i);
        reset(buf, tmpl, &r);
        black_box(&mut *buf);
        if PROCESS {
            if let Verdict::Tx(_) = pipe.process(snap, buf, 0, NOW) {
                tx += 1;
            }
        }
    }
    let c1 = tsc::now();
    (t0.elapsed(), c1 - c0, black_box(tx))
}

/// Per-repetition results of one scenario, per packet.
#[derive(Default)]
struct Samples {
    total_ns: Vec<f64>,
    base_ns: Vec<f64>,
    net_ns: Vec<f64>,
    net_tsc: Vec<f64>,
}

impl Samples {
    fn add(&mut self, n: usize, total: (Duration, u64), base: (Duration, u64)) {
        let n = n as f64;
        let t = total.0.as_nanos() as f64 / n;
        let b = base.0.as_nanos() as f64 / n;
        self.total_ns.push(t);
        self.base_ns.push(b);
        self.net_ns.push(t - b);
        self.net_tsc.push((total.1 as f64 - base.1 as f64) / n);
    }

    fn row(&self, name: &str, n: usize) -> Vec<String> {
        let net = Summary::of(&self.net_ns);
        vec![
            name.to_string(),
            n.to_string(),
            Summary::of(&self.total_ns).fmt(1),
            Summary::of(&self.base_ns).fmt(1),
            net.fmt(1),
            Summary::of(&self.net_tsc).fmt(0),
            format!("{:.1}", 1e3 / net.median),
        ]
    }
}

/// Processes `frame` once in a fresh buffer and checks the output.
fn verify_one(pipe: &mut Pipeline, snap: &Snapshot, r: &FlowRec) {
    let f = Frame::of(r);
    let mut b = VecBuf::new(&f.0);
    let v = pipe.process(snap, &mut b, 0, NOW);
    assert_eq!(v, Verdict::Tx(0), "verdict for flow {r:?}");
    if let Err(e) = verify_encap(b.data(), &f.0) {
        panic!("flow {r:?}: {e}");
    }
}

fn main() {
    let mut a = Args::parse();
    THP.store(a.thp, Relaxed);
    if a.smoke {
        a.reps = 1;
        a.flows = 10_000;
        a.table = 32_768;
    }
    let hz = tsc::hz(Duration::from_millis(if a.smoke { 20 } else { 200 }));
    println!("# gwlb micro-benchmarks");
    println!("load average at start: {}", gwlb_perf::loadavg());
    println!();
    println!(
        "CPU: {} ({} CPUs online), TSC {:.3} GHz; {} repetitions; median (min-max){}{}",
        cpu_model(),
        gwlb_perf::cpus_online(),
        hz / 1e9,
        a.reps,
        if a.smoke {
            "; SMOKE MODE (tiny sizes, numbers meaningless)"
        } else {
            ""
        },
        if a.thp {
            "; --thp: large allocations madvise(MADV_HUGEPAGE)"
        } else {
            ""
        }
    );
    println!();

    let (_cfg, snap) = bench_snapshot(a.appliances, a.table as u32);
    let gen = FlowGen::new();
    let tmpl = Frame::template().0;
    let timeouts = Timeouts::default();
    let mut buf = VecBuf::new(&tmpl);
    let mut rows = Vec::new();

    // (a) established flows: `flows` pre-inserted, visited in a random order.
    {
        let mut pipe = Pipeline::new(a.table, timeouts).expect("pipeline");
        let mut order: Vec<FlowRec> = (0..a.flows as u64).map(|i| gen.flow(i)).collect();
        let t = Instant::now();
        let (_, _, tx) = pass::<true>(&mut pipe, &snap, &mut buf, &tmpl, order.len(), |i| order[i]);
        let insert_time = t.elapsed();
        assert_eq!(tx, a.flows as u64);
        assert_eq!(
            pipe.counters.new_flows, a.flows as u64,
            "all flows admitted"
        );
        assert_eq!(pipe.flows().len(), a.flows, "all flows in the table");
        assert_eq!(pipe.flows().stats().full_misses, 0);
        Rng::new(42).shuffle(&mut order);
        for r in order.iter().step_by((a.flows / 64).max(1)) {
            verify_one(&mut pipe, &snap, r);
        }
        let mut s = Samples::default();
        for _ in 0..a.reps {
            let new_before = pipe.counters.new_flows;
            let base = pass::<false>(&mut pipe, &snap, &mut buf, &tmpl, order.len(), |i| order[i]);
            let tot = pass::<true>(&mut pipe, &snap, &mut buf, &tmpl, order.len(), |i| order[i]);
            assert_eq!(tot.2, a.flows as u64);
            assert_eq!(
                pipe.counters.new_flows, new_before,
                "established: no new flow"
            );
            s.add(order.len(), (tot.0, tot.1), (base.0, base.1));
        }
        let name = format!(
            "(a) established, {} flows in {} slots ({:.0}% load, {} MiB), random order",
            a.flows,
            pipe.flows().capacity(),
            100.0 * a.flows as f64 / pipe.flows().capacity() as f64,
            pipe.flows().memory_bytes() >> 20
        );
        rows.push(s.row(&name, order.len()));
        println!(
            "(pre-insert of {} flows through process(): {:.1} ns/packet, cold)",
            a.flows,
            insert_time.as_nanos() as f64 / a.flows as f64
        );
    }

    // (a') established, cache-resident: 10k flows in a 16k-slot table, 1M packets.
    {
        let nflows = if a.smoke { 1000 } else { 10_000 };
        let mut pipe = Pipeline::new(16_384, timeouts).expect("pipeline");
        let mut order: Vec<FlowRec> = (0..nflows as u64).map(|i| gen.flow(i)).collect();
        pass::<true>(&mut pipe, &snap, &mut buf, &tmpl, order.len(), |i| order[i]);
        assert_eq!(pipe.flows().len(), nflows);
        Rng::new(7).shuffle(&mut order);
        verify_one(&mut pipe, &snap, &order[0]);
        let n = if a.smoke { 10_000 } else { 1_000_000 };
        let mut s = Samples::default();
        for _ in 0..a.reps {
            let new_before = pipe.counters.new_flows;
            let base = pass::<false>(&mut pipe, &snap, &mut buf, &tmpl, n, |i| order[i % nflows]);
            let tot = pass::<true>(&mut pipe, &snap, &mut buf, &tmpl, n, |i| order[i % nflows]);
            assert_eq!(tot.2, n as u64);
            assert_eq!(pipe.counters.new_flows, new_before);
            s.add(n, (tot.0, tot.1), (base.0, base.1));
        }
        let name = format!(
            "(a') established, {nflows} flows in {} slots (cache-resident)",
            pipe.flows().capacity()
        );
        rows.push(s.row(&name, n));
    }

    // (b) a new flow every packet: `flows` new flows into a fresh table per repetition.
    {
        let mut s = Samples::default();
        let mut cap = 0;
        for rep in 0..a.reps {
            let mut pipe = Pipeline::new(a.table, timeouts).expect("pipeline");
            cap = pipe.flows().capacity();
            // Never-seen flows: indexes above the established ones, distinct per repetition.
            let base_idx = (1u64 << 31) + (rep as u64) * (a.flows as u64);
            let base = pass::<false>(&mut pipe, &snap, &mut buf, &tmpl, a.flows, |i| {
                gen.flow(base_idx + i as u64)
            });
            let tot = pass::<true>(&mut pipe, &snap, &mut buf, &tmpl, a.flows, |i| {
                gen.flow(base_idx + i as u64)
            });
            assert_eq!(tot.2, a.flows as u64);
            assert_eq!(pipe.counters.new_flows, a.flows as u64, "every packet new");
            assert_eq!(pipe.flows().stats().full_misses, 0);
            verify_one(&mut pipe, &snap, &gen.flow(base_idx + 3));
            verify_one(&mut pipe, &snap, &gen.flow(base_idx + a.flows as u64 + 1));
            s.add(a.flows, (tot.0, tot.1), (base.0, base.1));
        }
        let name = format!(
            "(b) new flow every packet, {} inserts into an empty {cap}-slot table (0->{:.0}% load)",
            a.flows,
            100.0 * a.flows as f64 / cap as f64
        );
        rows.push(s.row(&name, a.flows));
    }

    println!();
    println!("## Pipeline::process per packet (64 B Eth/IPv4/TCP, VecBuf)");
    println!();
    print_table(
        &[
            "scenario",
            "packets/rep",
            "total ns/pkt",
            "baseline (reset+copy) ns/pkt",
            "net ns/pkt",
            "net TSC cycles/pkt",
            "net Mpps (1 core, median)",
        ],
        &rows,
    );

    // Maglev rebuilds.
    println!();
    println!("## Maglev table build, M = {DEFAULT_TABLE_SIZE}, equal weights, MaglevBuilder");
    println!();
    let mut rows = Vec::new();
    let reps = if a.smoke { 2 } else { a.reps.max(20) };
    for n in [10usize, 100, 1000] {
        let backends: Vec<MaglevBackend> = (0..n)
            .map(|i| {
                let ip = Ipv4Addr::from(0x0a00_0000u32 + 11 + i as u32);
                MaglevBackend::from_addr(IpAddr::V4(ip), 1)
            })
            .collect();
        let t = Instant::now();
        let mut b = MaglevBuilder::new(DEFAULT_TABLE_SIZE, 0x5eed).expect("builder");
        let first = b.build(&backends).expect("build");
        let cold = t.elapsed();
        let counts = first.counts(n);
        let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        let mut v = Vec::new();
        let mut table = first;
        for _ in 0..reps {
            let t = Instant::now();
            b.build_into(&backends, &mut table).expect("build");
            v.push(t.elapsed().as_secs_f64() * 1e3);
            black_box(&table);
        }
        rows.push(vec![
            n.to_string(),
            format!("{:.3}", cold.as_secs_f64() * 1e3),
            Summary::of(&v).fmt(3),
            reps.to_string(),
            format!("{lo}..{hi}"),
        ]);
    }
    print_table(
        &[
            "backends N",
            "first build ms (new builder)",
            "rebuild ms, warm scratch (build_into)",
            "runs",
            "entries per backend",
        ],
        &rows,
    );

    // Flow-table memory.
    println!();
    println!("## Flow table memory (FlowTable<FlowKey>)");
    println!();
    let want = if a.smoke { 100_000 } else { 10_000_000 };
    let t = Instant::now();
    let ft = FlowTable::<FlowKey>::with_capacity(want, timeouts).expect("table");
    let alloc = t.elapsed();
    let per_slot = FlowTable::<FlowKey>::bytes_per_slot();
    print_table(
        &[
            "requested flows",
            "slots (capacity)",
            "bytes/slot",
            "memory",
            "bytes per requested flow",
            "allocate+prefault",
        ],
        &[vec![
            want.to_string(),
            ft.capacity().to_string(),
            per_slot.to_string(),
            format!("{:.1} MiB", ft.memory_bytes() as f64 / (1 << 20) as f64),
            format!("{:.1}", ft.memory_bytes() as f64 / want as f64),
            format!("{:.0} ms", alloc.as_secs_f64() * 1e3),
        ]],
    );
    assert_eq!(ft.memory_bytes(), ft.capacity() * per_slot);
    drop(ft);
    println!();
    println!(
        "baseline = the same loop without process() (undo prepend + copy 60 B + patch 8 B), \
         measured in the same repetition; net = total - baseline. TSC cycles are reference \
         cycles at {:.3} GHz, not core clocks.",
        hz / 1e9
    );
    println!("load average at end: {}", gwlb_perf::loadavg());
    if a.smoke {
        println!("smoke: OK (all outputs verified as Geneve around the input packet)");
    }
}
