//! Throughput of the real gwlb worker loop (`gwlb::dataplane::worker::run`) on ring-backed
//! ethdev ports, with real packet content.
//!
//! Layout (2 CPUs): the worker runs pinned on CPU 1 and polls one port made of two rings
//! (`Port::from_rings`: rx queue <- ring IN, tx queue -> ring OUT). The main thread (EAL main
//! lcore, CPU 0) is the feeder and the drain: it allocates mbufs in bulk, copies a 60-byte
//! Ethernet/IPv4/TCP frame into each (64 B on the wire), patches the flow's source address,
//! port and checksum, and enqueues them on IN whenever IN has room; it dequeues OUT and frees
//! in bulk, checking a sample of the outputs (Geneve around exactly the input packet for gwlb,
//! the unchanged frame for the io-forward baseline).
//!
//! Rates are the worker's own counters (`WorkerStats::processed` for gwlb, a per-burst counter
//! for the io-forward loop) over the measurement window. `IN starved` is the share of the
//! feeder's checks that found IN nearly empty (under 64 packets): near 0% means the worker was
//! the bottleneck; a high value means the feeder was and the rate is a lower bound.
//!
//! `cargo run --release -p gwlb-perf --bin dataplane [-- --smoke]` (as root; hugepages)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use clap::Parser;
use dpdk_bindings::{
    eal, lcore, MbufBurst, Mempool, Port, PortConfig, QueueId, Ring, ThreadRegistration,
    DEFAULT_DATA_ROOM, SOCKET_ID_ANY,
};
use gwlb::dataplane::stats::WorkerStats;
use gwlb::dataplane::worker::{self, HostPath, WorkerSetup};
use gwlb::flow_table::Timeouts;
use gwlb::parse::DropReason;
use gwlb::pipeline::{Pipeline, MAX_APPLIANCES};
use gwlb::snapshot::Snapshot;
use gwlb_perf::{
    bench_snapshot, cpu_model, geneve_inner, imix_len, ip_src, print_table, verify_decap,
    verify_encap, FlowGen, Frame, ImixFrames, ReturnStyle, Returns, Rng, Summary, FRAME_LEN,
};

#[derive(Parser, Debug)]
#[command(about = "gwlb worker-loop throughput on ring ports (DPDK)")]
struct Args {
    /// Short runs, one repetition, verification only (for CI; no speed claims).
    #[arg(long)]
    smoke: bool,
    /// Repetitions per scenario.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Measurement window per repetition, seconds.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Established flows (scenario "established").
    #[arg(long, default_value_t = 1_000_000)]
    flows: usize,
    /// Flow-table capacity for the established scenarios.
    #[arg(long, default_value_t = 2_097_152)]
    table: usize,
    /// Flow-table capacity for the new-flow storm (the window ends at 85% of it).
    #[arg(long, default_value_t = 8_388_608)]
    storm_table: usize,
    /// Appliances in the target group.
    #[arg(long, default_value_t = 16)]
    appliances: usize,
    /// Use --no-huge instead of hugepages.
    #[arg(long)]
    no_huge: bool,
    /// Skip the dpdk-testpmd anchor.
    #[arg(long)]
    no_testpmd: bool,
    /// CPU of the worker.
    #[arg(long, default_value_t = 1)]
    worker_cpu: usize,
}

/// IN ring size (like a NIC's 1024 RX descriptors).
const RING: u32 = 1024;
/// OUT ring size: larger, so that the drain sharing CPU 0 may stall for ~0.5 ms (noisy
/// shared host) before the worker's tx_burst finds it full.
const OUT_RING: u32 = 8192;
const BURST: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// rx_burst -> tx_burst, nothing else.
    IoFwd,
    /// gwlb worker, established flows (pre-inserted, random order).
    Established { flows: usize },
    /// gwlb worker, a new 5-tuple every packet.
    Storm,
    /// gwlb worker, established flows, IMIX frame sizes (7:4:1 of 64/570/1518 B).
    Imix { flows: usize },
    /// gwlb worker, appliance returns of established flows.
    Decap { flows: usize, style: ReturnStyle },
    /// gwlb worker, both directions: 1 packet in 64 a new flow, the others half forward,
    /// half AWS-style returns of established flows.
    Mixed { flows: usize },
}

impl Kind {
    /// Established flows pre-inserted before the window.
    fn flows(self) -> Option<usize> {
        match self {
            Kind::Established { flows }
            | Kind::Imix { flows }
            | Kind::Decap { flows, .. }
            | Kind::Mixed { flows } => Some(flows),
            Kind::IoFwd | Kind::Storm => None,
        }
    }
}

/// What the worker thread hands back.
enum Done {
    Gwlb(Box<Pipeline>),
    IoFwd,
}

/// One repetition's result.
struct RepResult {
    mpps: f64,
    starved: f64,
    verified: u64,
    tx_drops: u64,
    new_flows_in_window: u64,
    window_s: f64,
}

struct Bench {
    pool: Mempool,
    snap: Arc<ArcSwap<Snapshot>>,
    tmpl: [u8; FRAME_LEN],
    gen: FlowGen,
    imix: ImixFrames,
    rets: Returns,
    hz: u64,
    tx_flush_cycles: u64,
    seq: u32,
    cpu: usize,
}

/// The feeder's flow source.
enum Source<'a> {
    /// Cycle through this list of flow indexes.
    List(&'a [u64], usize),
    /// Flow indexes counting up from here (every packet a new flow).
    Counter(u64),
}

impl Source<'_> {
    #[inline]
    fn next(&mut self) -> u64 {
        match self {
            Source::List(l, i) => {
                let r = l[*i];
                *i += 1;
                if *i == l.len() {
                    *i = 0;
                }
                r
            }
            Source::Counter(c) => {
                *c += 1;
                *c
            }
        }
    }
}

/// What the feeder writes next.
#[derive(Clone, Copy)]
enum Pkt {
    /// A client frame of flow `.0`, `.1` bytes.
    Fwd(u64, usize),
    /// An appliance return of flow `.0`.
    Ret(u64, ReturnStyle),
}

impl Bench {
    /// One repetition of `kind`: fresh rings and port, a worker on `self.cpu`, feed/drain
    /// until done. `pipeline` is used (and returned) for gwlb kinds.
    fn rep(&mut self, kind: Kind, secs: f64, table: usize, smoke: bool) -> RepResult {
        self.seq += 1;
        let n = self.seq;
        let rx_ring = Ring::new(&format!("pin{n}"), RING, SOCKET_ID_ANY).expect("ring");
        let tx_ring = Ring::new(&format!("pout{n}"), OUT_RING, SOCKET_ID_ANY).expect("ring");
        let mut port =
            Port::from_rings(&format!("bench{n}"), &[&rx_ring], &[&tx_ring]).expect("ring port");
        port.configure(&PortConfig::default(), &self.pool)
            .expect("configure");
        port.start().expect("start");
        let pid = port.id();
        let rxq = port.rx_queue(QueueId(0)).expect("rxq");
        let txq = port.tx_queue(QueueId(0)).expect("txq");

        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WorkerStats::new(MAX_APPLIANCES));
        let io_count = Arc::new(AtomicU64::new(0));
        let cpu = self.cpu;
        let handle: JoinHandle<Done> = match kind {
            Kind::IoFwd => {
                let (stop, count) = (stop.clone(), io_count.clone());
                let (mut rxq, mut txq) = (rxq, txq);
                std::thread::spawn(move || {
                    pin(cpu);
                    let _reg = ThreadRegistration::register().expect("register");
                    let mut b = MbufBurst::<BURST>::new();
                    let mut sent = 0u64;
                    while !stop.load(Relaxed) {
                        if rxq.rx_burst(&mut b) > 0 {
                            sent += txq.tx_burst(&mut b) as u64;
                            b.clear();
                            count.store(sent, Relaxed);
                        }
                    }
                    Done::IoFwd
                })
            }
            _ => {
                let mut port_index_by_id = vec![u16::MAX; usize::from(pid.0) + 1];
                port_index_by_id[usize::from(pid.0)] = 0;
                let setup = WorkerSetup {
                    index: 0,
                    workers: 1,
                    rx: vec![(0, rxq)],
                    tx: vec![txq],
                    host_path: HostPath {
                        tap_of: vec![None],
                        phys_of: vec![None],
                    },
                    port_index_by_id,
                    handoff_in: None,
                    handoff_out: Vec::new(),
                    pipeline: Pipeline::new(table, Timeouts::default()).expect("pipeline"),
                    snapshot: self.snap.clone(),
                    stats: stats.clone(),
                    stop: stop.clone(),
                    tx_flush_cycles: self.tx_flush_cycles,
                    idle_exit_cycles: None,
                    clock: worker::Clock::start(),
                    dumps: crossbeam_channel::never(),
                };
                std::thread::spawn(move || {
                    pin(cpu);
                    let _reg = ThreadRegistration::register().expect("register");
                    Done::Gwlb(Box::new(worker::run(setup)))
                })
            }
        };
        let processed = || match kind {
            Kind::IoFwd => io_count.load(Relaxed),
            _ => stats.processed.load(Relaxed),
        };

        // Flow lists: established flows are pre-inserted in index order, then visited in a
        // random order.
        let (prefill, order): (Vec<u64>, Vec<u64>) = match kind.flows() {
            Some(flows) => {
                let v: Vec<u64> = (0..flows as u64).collect();
                let mut o = v.clone();
                Rng::new(42 + u64::from(n)).shuffle(&mut o);
                (v, o)
            }
            None if kind == Kind::IoFwd => {
                let mut o: Vec<u64> = (0..4096u64).collect();
                Rng::new(1).shuffle(&mut o);
                (Vec::new(), o)
            }
            None => (Vec::new(), Vec::new()),
        };
        // Appliance and cookie of each established flow (for returns).
        let targets: Vec<(u16, u32)> = match kind {
            Kind::Decap { .. } | Kind::Mixed { .. } => (0..order.len() as u64)
                .map(|i| self.rets.target(i))
                .collect(),
            _ => Vec::new(),
        };
        let mut feeder = Feeder::new(self, &rx_ring, &tx_ring, kind, &targets);

        if !prefill.is_empty() {
            let mut src = Source::List(&prefill, 0);
            let want = prefill.len() as u64;
            feeder.prefill = true;
            feeder.run(&mut src, |f| f.sent >= want);
            feeder.prefill = false;
            let t = Instant::now();
            while processed() < want && t.elapsed() < Duration::from_secs(30) {
                feeder.drain();
            }
            let nf = stats.new_flows.load(Relaxed);
            assert_eq!(nf, want, "every pre-inserted flow admitted");
        }
        let mut src = match kind {
            Kind::Storm => Source::Counter(1 << 32),
            _ => Source::List(&order, 0),
        };
        // Warm-up, then the window.
        let warm = Duration::from_secs_f64(if smoke { 0.05 } else { 0.3 });
        let t = Instant::now();
        feeder.run(&mut src, |_| t.elapsed() >= warm);
        feeder.reset_counts();
        let (p0, nf0, t0) = (processed(), stats.new_flows.load(Relaxed), Instant::now());
        let window = Duration::from_secs_f64(secs);
        let storm_limit = (table as f64 * 0.85) as u64;
        let mut n_checks = 0u32;
        let mut storm_full = false;
        feeder.run(&mut src, |_| {
            n_checks += 1;
            if kind == Kind::Storm
                && n_checks & 63 == 0
                && stats.new_flows.load(Relaxed) > storm_limit
            {
                storm_full = true;
                return true;
            }
            t0.elapsed() >= window
        });
        let (p1, nf1, dt) = (
            processed(),
            stats.new_flows.load(Relaxed),
            t0.elapsed().as_secs_f64(),
        );
        let starved = feeder.starved as f64 / feeder.checks.max(1) as f64;

        stop.store(true, Relaxed);
        while !handle.is_finished() {
            feeder.drain();
        }
        let done = handle.join().expect("worker thread");
        feeder.drain();
        while feeder.drain() > 0 {}
        // Rings do not free the mbufs they hold: empty IN explicitly.
        let mut b = MbufBurst::<BURST>::new();
        while rx_ring.dequeue_burst(&mut b) > 0 {
            b.clear();
        }
        let verified = feeder.verified;
        if storm_full {
            eprintln!("  (storm window ended early at 85% table load)");
        }
        let tx_drops = match &done {
            Done::Gwlb(p) => {
                let c = &p.counters;
                assert_eq!(c.dropped(), 0, "gwlb dropped packets: {:?}", c.drops);
                assert_eq!(
                    c.encapsulated + c.decapsulated,
                    c.packets,
                    "every packet encapsulated or decapsulated"
                );
                stats.drops[DropReason::TxFull.index()].load(Relaxed)
            }
            Done::IoFwd => 0,
        };
        drop(done);
        drop(port);
        RepResult {
            mpps: (p1 - p0) as f64 / dt / 1e6,
            starved,
            verified,
            tx_drops,
            new_flows_in_window: nf1 - nf0,
            window_s: dt,
        }
    }
}

fn pin(cpu: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        eprintln!("warning: could not pin to CPU {cpu}");
    }
}

/// The feeder/drain state of one repetition.
struct Feeder<'a> {
    pool: &'a Mempool,
    rx_ring: &'a Ring,
    tx_ring: &'a Ring,
    tmpl: [u8; FRAME_LEN],
    gen: FlowGen,
    imix: &'a ImixFrames,
    rets: &'a Returns,
    targets: &'a [(u16, u32)],
    kind: Kind,
    /// Feeding the pre-inserted flows (forward 64 B frames whatever the kind).
    prefill: bool,
    seq: u64,
    new_flow: u64,
    sent: u64,
    drained: u64,
    bursts_out: u64,
    checks: u64,
    starved: u64,
    verified: u64,
    b: MbufBurst<BURST>,
    d: MbufBurst<BURST>,
}

impl<'a> Feeder<'a> {
    fn new(
        bench: &'a Bench,
        rx_ring: &'a Ring,
        tx_ring: &'a Ring,
        kind: Kind,
        targets: &'a [(u16, u32)],
    ) -> Self {
        Self {
            pool: &bench.pool,
            rx_ring,
            tx_ring,
            tmpl: bench.tmpl,
            gen: bench.gen,
            imix: &bench.imix,
            rets: &bench.rets,
            targets,
            kind,
            prefill: false,
            seq: 0,
            new_flow: 1 << 40,
            sent: 0,
            drained: 0,
            bursts_out: 0,
            checks: 0,
            starved: 0,
            verified: 0,
            b: MbufBurst::new(),
            d: MbufBurst::new(),
        }
    }

    fn reset_counts(&mut self) {
        self.checks = 0;
        self.starved = 0;
    }

    /// Feeds and drains until `done(self)` (checked every 16 iterations).
    fn run(&mut self, src: &mut Source<'_>, mut done: impl FnMut(&Self) -> bool) {
        let mut it = 0u32;
        loop {
            it = it.wrapping_add(1);
            if it & 15 == 0 && done(self) {
                return;
            }
            self.feed(src);
            self.drain();
        }
    }

    /// Tops IN up by at most 4 bursts.
    #[inline]
    fn feed(&mut self, src: &mut Source<'_>) {
        let queued = self.rx_ring.count();
        self.checks += 1;
        if queued < 64 {
            self.starved += 1;
        }
        let room = (RING as usize).saturating_sub(queued) / BURST;
        for _ in 0..room.min(4) {
            if self.pool.alloc_bulk(&mut self.b, BURST).is_err() {
                return;
            }
            for j in 0..BURST {
                let pkt = self.next_pkt(src);
                let m = &mut self.b.as_mut_slice()[j];
                match pkt {
                    Pkt::Fwd(flow, FRAME_LEN) => {
                        let d = m.append(FRAME_LEN).expect("tailroom");
                        d.copy_from_slice(&self.tmpl);
                        Frame::patch_bytes(d, &self.gen.flow(flow));
                    }
                    Pkt::Fwd(flow, len) => {
                        let (t, g) = self.imix.get(len);
                        let d = m.append(len).expect("tailroom");
                        d.copy_from_slice(t);
                        Frame::patch_bytes(d, &g.flow(flow));
                    }
                    Pkt::Ret(flow, style) => {
                        let d = m.append(Returns::len(style)).expect("tailroom");
                        self.rets.write(style, flow, self.targets[flow as usize], d);
                    }
                }
            }
            self.sent += self.rx_ring.enqueue_burst(&mut self.b) as u64;
            self.b.clear();
        }
    }

    /// The next packet of this kind.
    #[inline]
    fn next_pkt(&mut self, src: &mut Source<'_>) -> Pkt {
        let seq = self.seq;
        self.seq += 1;
        if self.prefill {
            return Pkt::Fwd(src.next(), FRAME_LEN);
        }
        match self.kind {
            Kind::IoFwd | Kind::Established { .. } | Kind::Storm => Pkt::Fwd(src.next(), FRAME_LEN),
            Kind::Imix { .. } => Pkt::Fwd(src.next(), imix_len(seq)),
            Kind::Decap { style, .. } => Pkt::Ret(src.next(), style),
            Kind::Mixed { .. } => {
                if seq.is_multiple_of(64) {
                    self.new_flow += 1;
                    Pkt::Fwd(self.new_flow, FRAME_LEN)
                } else if seq & 1 == 0 {
                    Pkt::Fwd(src.next(), FRAME_LEN)
                } else {
                    Pkt::Ret(src.next(), ReturnStyle::Aws)
                }
            }
        }
    }

    /// Dequeues and frees up to 4 bursts from OUT, checking one packet in 256 bursts.
    #[inline]
    fn drain(&mut self) -> usize {
        let mut total = 0;
        for _ in 0..4 {
            let n = self.tx_ring.dequeue_burst(&mut self.d);
            if n == 0 {
                break;
            }
            total += n;
            self.drained += n as u64;
            if self.bursts_out & 255 == 0 {
                let i = (self.bursts_out / 256) as usize % n;
                self.check(i);
            }
            self.bursts_out += 1;
            self.d.clear();
        }
        total
    }

    fn check(&mut self, i: usize) {
        let out = self.d.as_slice()[i].data();
        // Geneve (UDP 6081 at the usual offset) or a decapsulated packet.
        let encap = out.len() > 38 && out[23] == 17 && out[36..38] == [0x17, 0xc1];
        let ip = match self.kind {
            Kind::IoFwd => out.get(14..),
            _ if encap => geneve_inner(out),
            _ => out.get(14..),
        };
        let Some((a, p)) = ip.and_then(ip_src) else {
            panic!(
                "output {} has no inner IPv4/TCP: {out:02x?}",
                self.bursts_out
            );
        };
        let idx = self
            .gen
            .index_of(a, p)
            .unwrap_or_else(|| panic!("unknown flow {a:#x}:{p} in output"));
        let input = Frame::of(&self.gen.flow(idx));
        if let (Some(flows), false) = (self.kind.flows(), matches!(self.kind, Kind::Mixed { .. })) {
            assert!(idx < flows as u64, "flow {idx} not in the established set");
        }
        let res = match self.kind {
            Kind::IoFwd => {
                assert_eq!(out, &input.0[..], "io-forward changed the frame");
                Ok(())
            }
            _ if encap => {
                let len = ip.map_or(0, |ip| ip.len()) + 14;
                let f = self.imix.frame(idx, len.clamp(FRAME_LEN, 1514));
                verify_encap(out, &f).map(|_| ())
            }
            Kind::Decap { style, .. } => verify_decap(out, &self.rets.inner(style, idx)),
            _ => verify_decap(out, &self.rets.inner(ReturnStyle::Aws, idx)),
        };
        if let Err(e) = res {
            panic!("output of flow {idx}: {e}");
        }
        self.verified += 1;
    }
}

/// Runs dpdk-testpmd io-forward between two net_null vdevs on CPUs 0,1 for `secs` seconds
/// and returns the per-second Rx-pps of both ports summed (startup periods skipped).
fn testpmd(huge: bool, secs: u64) -> Result<Vec<f64>, String> {
    let prefix = format!("gwlbperf{}", std::process::id());
    let mut args: Vec<String> = vec!["-l".into(), "0,1".into()];
    if huge {
        args.push("--in-memory".into());
    } else {
        // -m 512 is too small for testpmd's default mbuf pool (155456 mbufs).
        args.extend(["--no-huge".into(), "-m".into(), "1024".into()]);
    }
    args.extend(
        [
            "--no-pci",
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
            "--file-prefix",
            &prefix,
            "--log-level=lib.eal:error",
            "--",
            "--forward-mode=io",
            "--stats-period",
            "1",
            "-a",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let mut child = Command::new("dpdk-testpmd")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("dpdk-testpmd: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let out = child.stdout.take().expect("piped");
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        // SAFETY: signalling the child we spawned (it may have exited: then ESRCH).
        unsafe { libc::kill(pid, libc::SIGINT) };
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: as above; SIGKILL if SIGINT was not enough.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut periods = Vec::new();
    let mut cur = 0.0;
    let mut ports_seen = 0;
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        // "  Rx-pps:     31234567          Rx-bps: ..."
        if let Some(rest) = line.trim().strip_prefix("Rx-pps:") {
            if let Some(v) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            {
                cur += v;
                ports_seen += 1;
                if ports_seen == 2 {
                    periods.push(cur / 1e6);
                    cur = 0.0;
                    ports_seen = 0;
                }
            }
        }
    }
    let _ = child.wait();
    let _ = killer.join();
    // Skip the periods before forwarding started and the first (partial) one.
    let first = periods
        .iter()
        .position(|&p| p > 0.0)
        .unwrap_or(periods.len());
    let v: Vec<f64> = periods.into_iter().skip(first + 1).collect();
    if v.is_empty() {
        return Err("testpmd printed no full stat period".into());
    }
    Ok(v)
}

fn main() {
    let mut a = Args::parse();
    if a.smoke {
        a.reps = 1;
        a.secs = 0.2;
        a.flows = 10_000;
        a.table = 32_768;
        a.storm_table = 1 << 20;
        a.no_testpmd = true;
    }
    let mut eal_args = vec![
        "-l",
        "0",
        "--no-shconf",
        "--no-pci",
        "--no-telemetry",
        "--log-level=lib.eal:error",
        "--log-level=pmd.net.ring:error",
    ];
    // Smoke runs must work on a machine without reserved hugepages (CI); timings from such
    // a run are not comparable, and smoke mode makes no speed claims.
    if a.no_huge || (a.smoke && !gwlb::dataplane::ports::use_hugepages_auto()) {
        eal_args.extend(["--no-huge", "-m", "1024"]);
    } else {
        eal_args.push("--in-memory");
    }
    let _eal = eal::init_once(&eal_args).expect("EAL init (root, hugepages? try --no-huge)");
    let hz = lcore::tsc_hz();
    let (cfg, snap) = bench_snapshot(a.appliances, a.table as u32);
    let snap_for_returns = bench_snapshot(a.appliances, a.table as u32).1;
    let pool = Mempool::new_pktmbuf("perfpool", 32767, 256, DEFAULT_DATA_ROOM, SOCKET_ID_ANY)
        .expect("mempool");
    let mut bench = Bench {
        pool,
        snap: Arc::new(ArcSwap::from_pointee(snap)),
        tmpl: Frame::template().0,
        gen: FlowGen::new(),
        imix: ImixFrames::new(),
        rets: Returns::new(&snap_for_returns),
        hz,
        tx_flush_cycles: (hz as u128 * cfg.dataplane.tx_flush.as_nanos() / 1_000_000_000) as u64,
        seq: 0,
        cpu: a.worker_cpu,
    };

    println!("# gwlb dataplane benchmark (real worker loop, ring ports)");
    println!("load average at start: {}", gwlb_perf::loadavg());
    println!();
    println!(
        "CPU: {} ({} CPUs online), TSC {:.3} GHz; worker on CPU {}, feeder/drain on CPU 0; \
         {}; {} x {:.1} s windows; median (min-max){}",
        cpu_model(),
        gwlb_perf::cpus_online(),
        bench.hz as f64 / 1e9,
        a.worker_cpu,
        if a.no_huge {
            "--no-huge"
        } else {
            "hugepages (--in-memory)"
        },
        a.reps,
        a.secs,
        if a.smoke {
            "; SMOKE MODE (numbers meaningless)"
        } else {
            ""
        }
    );
    println!();

    let scenarios: Vec<(String, Kind, usize)> = vec![
        (
            "io-forward baseline (rx_burst -> tx_burst, same feeder)".into(),
            Kind::IoFwd,
            0,
        ),
        (
            format!(
                "gwlb established, {} flows in a {}-flow table, random order",
                a.flows, a.table
            ),
            Kind::Established { flows: a.flows },
            a.table,
        ),
        (
            "gwlb established, 10000 flows (cache-resident table)".into(),
            Kind::Established {
                flows: a.flows.min(10_000),
            },
            16_384,
        ),
        (
            format!(
                "gwlb new-flow storm (new 5-tuple every packet), {}-flow table",
                a.storm_table
            ),
            Kind::Storm,
            a.storm_table,
        ),
        (
            format!(
                "gwlb established IMIX 7:4:1 (64/570/1518 B), {} flows",
                a.flows
            ),
            Kind::Imix { flows: a.flows },
            a.table,
        ),
        (
            format!("gwlb decap, AWS-echo returns, {} flows", a.flows),
            Kind::Decap {
                flows: a.flows,
                style: ReturnStyle::Aws,
            },
            a.table,
        ),
        (
            format!("gwlb decap, Linux-kernel returns, {} flows", a.flows),
            Kind::Decap {
                flows: a.flows,
                style: ReturnStyle::Linux,
            },
            a.table,
        ),
        (
            format!(
                "gwlb mixed: both directions, 1/64 new flows, {} flows",
                a.flows
            ),
            Kind::Mixed { flows: a.flows },
            a.table,
        ),
    ];
    let mut results: Vec<(String, Kind, Vec<RepResult>)> = Vec::new();
    for (name, kind, table) in scenarios {
        let mut reps = Vec::new();
        for r in 0..a.reps {
            let res = bench.rep(kind, a.secs, table, a.smoke);
            eprintln!(
                "{name} rep {r}: {:.2} Mpps, IN starved {:.1}%, {} outputs verified, tx drops {}, \
                 new flows {} in {:.2} s",
                res.mpps,
                res.starved * 100.0,
                res.verified,
                res.tx_drops,
                res.new_flows_in_window,
                res.window_s
            );
            assert!(res.verified > 0, "no output verified");
            if let Kind::Established { .. } | Kind::Imix { .. } | Kind::Decap { .. } = kind {
                assert_eq!(res.new_flows_in_window, 0, "established: no new flows");
            }
            reps.push(res);
        }
        results.push((name, kind, reps));
    }

    let io_median = Summary::of(&results[0].2.iter().map(|r| r.mpps).collect::<Vec<_>>()).median;
    let mut rows = Vec::new();
    for (name, _kind, reps) in &results {
        let m = Summary::of(&reps.iter().map(|r| r.mpps).collect::<Vec<_>>());
        let st = Summary::of(&reps.iter().map(|r| r.starved * 100.0).collect::<Vec<_>>());
        rows.push(vec![
            name.clone(),
            m.fmt(2),
            format!("{:.0}", 1e3 / m.median),
            format!("{:.0}", bench.hz as f64 / (m.median * 1e6)),
            format!("{:.2}", m.median / io_median),
            st.fmt(1),
            reps.iter().map(|r| r.verified).sum::<u64>().to_string(),
            reps.iter().map(|r| r.tx_drops).sum::<u64>().to_string(),
        ]);
    }

    let mut anchors = Vec::new();
    if !a.no_testpmd {
        for huge in [!a.no_huge, a.no_huge] {
            match testpmd(huge, 12) {
                Ok(v) => {
                    let s = Summary::of(&v);
                    anchors.push((huge, s));
                    eprintln!("testpmd huge={huge}: {v:.1?} Mpps per period");
                }
                Err(e) => eprintln!("testpmd anchor failed: {e}"),
            }
        }
    }

    println!("load average at end: {}", gwlb_perf::loadavg());
    println!();
    print_table(
        &[
            "scenario",
            "Mpps (worker)",
            "ns/pkt",
            "TSC cycles/pkt",
            "vs io-forward",
            "IN starved %",
            "outputs verified",
            "tx drops",
        ],
        &rows,
    );
    for (huge, s) in &anchors {
        println!();
        println!(
            "anchor: dpdk-testpmd io-forward net_null0<->net_null1, 1 forwarding core, {}: {} Mpps \
             (both ports' Rx-pps summed, per-second periods)",
            if *huge {
                "hugepages (--in-memory)"
            } else {
                "--no-huge -m 1024"
            },
            s.fmt(1)
        );
    }
    if a.smoke {
        println!();
        println!("smoke: OK (outputs verified, no drops)");
    }
}
