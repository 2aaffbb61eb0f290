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
//! Latency: the same layout with a paced feeder. Each packet carries the feeder's TSC at
//! enqueue in its TCP sequence/acknowledgement fields ([`gwlb_perf::STAMP_IN_IP`]); the drain
//! (same thread, so no cross-CPU clock skew) records `rdtsc at dequeue - stamp` into an
//! `hdrhistogram`. It includes both ring transfers and the worker's TX batching (`tx_flush`),
//! so it is compared with the io-forward loop measured the same way at the same rate.
//!
//! Scaling: `--workers N[,M...]` worker loops (the CPUs this process may run on, from
//! `worker_cpu` on, wrapping), one IN/OUT ring pair (rx/tx queue) each and handoff rings
//! between them as in `gwlb run`, **preloaded**: a round of 2^19 packets is put in the IN rings
//! while the workers are stopped, then the workers are released together from a start gate
//! and timed until every packet is processed or counted dropped (`tx_full`,
//! `handoff_ring_full`) while the main thread sleeps, so N workers get N CPUs (a live feeder
//! would need an N+1th). Flows are steered to their owner's queue (an RSS that agrees with
//! gwlb's owner hash) or spread over the queues (every packet of a non-owner is handed off).
//!
//! `cargo run --release -p gwlb-perf --bin dataplane [-- --smoke]` (as root; hugepages)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use clap::Parser;
use dpdk_bindings::{
    eal, lcore, MbufBurst, Mempool, Port, PortConfig, QueueId, Ring, ThreadRegistration,
    DEFAULT_DATA_ROOM, SOCKET_ID_ANY,
};
use gwlb::dataplane::worker::{self, HostPath, WorkerSetup};
use gwlb::flow_table::Timeouts;
use gwlb::mirror::MirrorCounter;
use gwlb::packet_buf::VecBuf;
use gwlb::parse::DropReason;
use gwlb::pipeline::{self, Counters, Pipeline, Verdict, MAX_APPLIANCES};
use gwlb::snapshot::Snapshot;
use gwlb::stats::WorkerStats;
use gwlb_perf::{
    bench_snapshot, bench_snapshot_mirrored, bench_snapshot_mirrored_sensors_down,
    bench_snapshot_steered, cpu_model, geneve_inner, imix_len, ip_src, print_table, stamp_offset,
    verify_decap, verify_encap, FlowGen, Frame, ImixFrames, ReturnStyle, Returns, Rng, Summary,
    FRAME_LEN, STAMP_IN_IP,
};
use hdrhistogram::Histogram;

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
    /// CPU of the worker (of the first worker in the scaling table; the others follow).
    #[arg(long, default_value_t = 1)]
    worker_cpu: usize,
    /// Worker counts of the scaling table, each against 1 worker (e.g. `--workers 2,4,8`).
    /// Default: one per CPU this process may run on (its affinity mask; no feeder runs while
    /// the preloaded rounds are timed); at least 2, even where that oversubscribes the CPUs
    /// (said in the output).
    #[arg(long, value_delimiter = ',')]
    workers: Vec<usize>,
    /// Skip the scaling table.
    #[arg(long)]
    no_scaling: bool,
    /// Offered loads of the latency table, percent of the same scenario's measured median
    /// rate in this run.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    lat_loads: Vec<f64>,
    /// Latency window per load, seconds.
    #[arg(long, default_value_t = 2.0)]
    lat_secs: f64,
    /// Skip the latency table.
    #[arg(long)]
    no_latency: bool,
    /// Skip the idle table (sleeping when idle vs polling).
    #[arg(long)]
    no_idle: bool,
    /// `idle_sleep_us` of the idle table's sleeping worker (gwlb's default: 50).
    #[arg(long, default_value_t = 50)]
    idle_sleep_us: u64,
    /// Run only the throughput scenarios whose name contains one of these words (e.g.
    /// `--only decap,storm`); the io-forward baseline always runs. For quick A/B runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Session counts of the mirroring table (each session copies every packet, before
    /// inspection, in VXLAN, to a pool of two sensors on the same port); 0 is the unmirrored
    /// snapshot, measured in the same repetitions.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    mirror_sessions: Vec<usize>,
    /// Established flows of the mirroring table (default: `--flows`).
    #[arg(long)]
    mirror_flows: Option<usize>,
    /// The packet pool's mempool driver: `stack` (LIFO, gwlb's default `dataplane.mempool`)
    /// or `ring_mp_mc` (DPDK's default FIFO).
    #[arg(long, default_value = "stack")]
    pool_ops: String,
    /// Skip the mirroring table.
    #[arg(long)]
    no_mirror: bool,
    /// Rule counts of the steering-rules table (one endpoint on the port; the traffic
    /// matches the last rule, which inspects by a second group); 0 is the endpoint with only
    /// its default action (inspecting by that group), measured in the same repetitions, as is
    /// the group's own user traffic without an endpoint.
    #[arg(long, value_delimiter = ',', default_value = "0,1,100,10000")]
    rules: Vec<usize>,
    /// Established flows of the steering-rules table (default: `--flows`).
    #[arg(long)]
    rules_flows: Option<usize>,
    /// Skip the steering-rules table.
    #[arg(long)]
    no_rules: bool,
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
    /// gwlb worker, established flows as `Established`, with `sessions` mirror sessions
    /// copying every packet (VXLAN, VNI 100 + session index, sensors 10.0.0.200-201 on the
    /// one port): the snapshot is swapped by the mirroring table. `sensors_down`: both
    /// sensors unhealthy, so every copy is counted `no_sensor` instead of made.
    Mirrored {
        flows: usize,
        sessions: usize,
        sensors_down: bool,
    },
    /// gwlb worker through the steering-rules table's snapshot (swapped in by that table):
    /// `rules` = `None` is the group's own user traffic (no endpoint), `Some(n)` the endpoint
    /// of `bench_config_steered(.., n)`, whose flows are all encapsulated toward the
    /// "steered" group; `flows` = `Some`: established (pre-inserted, random order), `None`: a
    /// new flow every packet.
    Steered {
        flows: Option<usize>,
        rules: Option<usize>,
    },
}

impl Kind {
    /// Established flows pre-inserted before the window.
    fn flows(self) -> Option<usize> {
        match self {
            Kind::Established { flows }
            | Kind::Imix { flows }
            | Kind::Decap { flows, .. }
            | Kind::Mixed { flows }
            | Kind::Mirrored { flows, .. }
            | Kind::Steered {
                flows: Some(flows), ..
            } => Some(flows),
            Kind::IoFwd | Kind::Storm | Kind::Steered { flows: None, .. } => None,
        }
    }

    /// A new flow every packet.
    fn is_storm(self) -> bool {
        matches!(self, Kind::Storm | Kind::Steered { flows: None, .. })
    }
}

/// What the worker thread hands back.
enum Done {
    Gwlb(Box<Pipeline>),
    IoFwd,
}

/// How a repetition is run besides its kind.
#[derive(Clone, Copy, Debug)]
struct RepOpts {
    /// Worker loops, one IN/OUT ring pair (rx/tx queue) each; handoff rings when > 1.
    workers: usize,
    /// Feed flow `i` to queue `i % workers` instead of its owner's (handoffs, as with an RSS
    /// that does not agree with gwlb's owner hash).
    spread: bool,
    /// Offered rate, packets/s: paced feeder, stamped packets, latency histogram. `None`: as
    /// fast as IN takes them.
    pace_pps: Option<f64>,
    /// Preloaded: no feeder while the workers run. Each round fills the IN rings with this
    /// many packets in all while the workers are stopped, starts them, and times how long
    /// they take to process everything (the main thread sleeps meanwhile), so N workers can
    /// be measured on N CPUs. The flows are inserted into each worker's table directly.
    preload: Option<usize>,
    /// The worker's `idle_sleep` (`None`: polls without pause, as every other table).
    idle_sleep: Option<Duration>,
}

impl RepOpts {
    /// One worker, unpaced (the throughput table).
    const MAX: RepOpts = RepOpts {
        workers: 1,
        spread: false,
        pace_pps: None,
        preload: None,
        idle_sleep: None,
    };
}

/// One repetition's result.
struct RepResult {
    mpps: f64,
    starved: f64,
    verified: u64,
    /// Packets a transmit queue did not take (`tx_full`).
    tx_drops: u64,
    /// Packets a full handoff ring did not take (`handoff_ring_full`).
    handoff_drops: u64,
    new_flows_in_window: u64,
    window_s: f64,
    /// Packets handed off between workers / packets processed, whole repetition.
    handed_off: f64,
    /// Paced runs: latency in TSC cycles (window only).
    hist: Option<Histogram<u64>>,
    /// Paced runs: the rate the pacer aimed at, Mpps.
    offered_mpps: f64,
    /// Paced runs: share of due packets skipped because the feeder fell behind.
    late: f64,
    /// Paced runs: outputs in the window without a plausible stamp.
    bad_stamps: u64,
    /// Mirrored copies the workers made (sessions' `packets`), whole repetition.
    copies: u64,
    /// Copies the sampled checks verified (VXLAN around exactly the input frame).
    copies_verified: u64,
    /// Packets the workers processed, whole repetition (prefill included).
    processed_all: u64,
}

struct Bench {
    pool: Mempool,
    /// Small mbufs for the preloaded scaling runs (a whole round sits in the IN rings);
    /// `None` when the scaling table is skipped.
    preload_pool: Option<Mempool>,
    snap: Arc<ArcSwap<Snapshot>>,
    tmpl: [u8; FRAME_LEN],
    gen: FlowGen,
    imix: ImixFrames,
    rets: Returns,
    hz: u64,
    tx_flush_cycles: u64,
    seq: u32,
    /// The CPU of each worker (`worker_cpus(allowed, worker_cpu, ...)`), for any worker count.
    allowed_cpus: Vec<usize>,
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
    /// One repetition of `kind`: fresh rings and port, `opts.workers` workers from
    /// `self.cpu` on, feed/drain until done.
    fn rep(
        &mut self,
        kind: Kind,
        secs: f64,
        table: usize,
        smoke: bool,
        opts: RepOpts,
    ) -> RepResult {
        self.seq += 1;
        let n = self.seq;
        let nq = opts.workers;
        assert!(
            nq >= 1 && (nq == 1 || kind != Kind::IoFwd),
            "io-forward has one loop"
        );
        // Preloaded: each IN ring holds a round's share, each OUT ring a whole round (the
        // owner of a handed-off flow transmits it).
        let (in_size, out_size) = match opts.preload {
            Some(total) => (
                (total.div_ceil(nq) + 1).next_power_of_two() as u32,
                (total + 1).next_power_of_two() as u32,
            ),
            None => (RING, OUT_RING),
        };
        // Each worker's rings (its IN and OUT, its handoff ring) on its CPU's socket, as `gwlb
        // run` places a worker's queues and handoff ring. The mbufs come from one pool (the
        // feeder's, SOCKET_ID_ANY): see perf/README.md on two-socket machines.
        let worker_cpus = gwlb_perf::worker_cpus(&self.allowed_cpus, self.cpu, nq);
        let socket = |w: usize| {
            i32::try_from(gwlb::numa::cpu_socket(worker_cpus[w])).unwrap_or(SOCKET_ID_ANY)
        };
        let rx_rings: Vec<Ring> = (0..nq)
            .map(|q| ring_on(&format!("pin{n}_{q}"), in_size, socket(q)))
            .collect();
        let tx_rings: Vec<Ring> = (0..nq)
            .map(|q| ring_on(&format!("pout{n}_{q}"), out_size, socket(q)))
            .collect();
        let rx_refs: Vec<&Ring> = rx_rings.iter().collect();
        let tx_refs: Vec<&Ring> = tx_rings.iter().collect();
        // One ring port per worker, each with one queue pair, all seen by gwlb as port index
        // 0 (the snapshot's one port): the ring PMD keeps its per-queue packet counters in one
        // array and updates them with a locked add on every burst, so queues of one port
        // polled by different CPUs would share cache lines. A NIC PMD allocates each queue on
        // its own cache lines; this keeps that property instead of measuring the PMD's false
        // sharing.
        let mut ports: Vec<Port> = (0..nq)
            .map(|q| {
                let mut port =
                    Port::from_rings(&format!("bench{n}_{q}"), &rx_refs[q..=q], &tx_refs[q..=q])
                        .expect("ring port");
                port.configure(&PortConfig::default(), &self.pool)
                    .expect("configure");
                port.start().expect("start");
                port
            })
            .collect();
        let max_pid = ports.iter().map(|p| p.id().0).max().unwrap_or(0);
        let mut port_index_by_id = vec![u16::MAX; usize::from(max_pid) + 1];
        for p in &ports {
            port_index_by_id[usize::from(p.id().0)] = 0;
        }
        // As `gwlb run` does with more than one worker: a handoff ring per worker.
        let handoff: Vec<Arc<Ring>> = if nq > 1 {
            (0..nq)
                .map(|w| Arc::new(ring_on(&format!("ho{n}_{w}"), 4096, socket(w))))
                .collect()
        } else {
            Vec::new()
        };

        let stop = Arc::new(AtomicBool::new(false));
        let stats: Vec<Arc<WorkerStats>> = (0..nq)
            .map(|_| Arc::new(WorkerStats::new(MAX_APPLIANCES)))
            .collect();
        let io_count = Arc::new(AtomicU64::new(0));
        let mut handles: Vec<JoinHandle<Done>> = Vec::new();
        // Preloaded: the workers' setups, started round by round.
        let mut pending: Vec<(usize, WorkerSetup)> = Vec::new();
        for (w, wstats) in stats.iter().enumerate() {
            let rxq = ports[w].rx_queue(QueueId(0)).expect("rxq");
            let txq = ports[w].tx_queue(QueueId(0)).expect("txq");
            let cpu = worker_cpus[w];
            handles.push(match kind {
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
                    let port_index_by_id = port_index_by_id.clone();
                    let setup = WorkerSetup {
                        index: w,
                        workers: nq,
                        rx: vec![(0, rxq)],
                        tx: vec![txq],
                        copy_sockets: Vec::new(),
                        host_path: HostPath {
                            tap_of: vec![None],
                            phys_of: vec![None],
                        },
                        port_index_by_id,
                        handoff_in: handoff.get(w).cloned(),
                        handoff_out: handoff.clone(),
                        pipeline: Pipeline::new(table, Timeouts::default()).expect("pipeline"),
                        snapshot: self.snap.clone(),
                        stats: wstats.clone(),
                        stop: stop.clone(),
                        tx_flush_cycles: self.tx_flush_cycles,
                        idle_exit_cycles: None,
                        idle_sleep: opts.idle_sleep,
                        // The gwlb default, idle_after_us = 200.
                        idle_after_cycles: self.hz / 5_000,
                        clock: worker::Clock::start(),
                        dumps: crossbeam_channel::never(),
                    };
                    if opts.preload.is_some() {
                        pending.push((cpu, setup));
                        continue;
                    }
                    spawn_worker(cpu, setup, None)
                }
            });
        }
        let sum = |f: fn(&WorkerStats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
        let processed = || match kind {
            Kind::IoFwd => io_count.load(Relaxed),
            _ => sum(|s| s.processed.load(Relaxed)),
        };
        let new_flows = || sum(|s| s.new_flows.load(Relaxed));

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
        // Owner queue of each listed flow (returns hash like their forward flow).
        let steer: Vec<u16> = if nq > 1 && !opts.spread {
            let snap = self.snap.load();
            (0..order.len() as u64)
                .map(|i| {
                    let f = Frame::of(&self.gen.flow(i));
                    pipeline::owner_hash(&snap, &f.0, 0).map_or(0, |h| owner_of(h, nq))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut feeder = Feeder::new(self, rx_refs, tx_refs, kind, &targets, &steer);
        feeder.ring_cap = in_size as usize - 1;
        if let Kind::Mirrored { .. } = kind {
            // Originals and copies leave in blocks of a burst (1 of originals, then 1 or 2 of
            // copies): a prime period checks both
            // (every burst in smoke mode, which must see copies).
            feeder.check_every = if smoke { 1 } else { 257 };
        }
        // Steering rules: every sampled encapsulation must go to the group that decides the
        // traffic (every burst in smoke mode).
        let deciding_rule = match kind {
            Kind::Steered { rules, .. } => {
                let snap = self.snap.load();
                let group = if rules.is_some() {
                    gwlb_perf::STEERED_GROUP
                } else {
                    "bench"
                };
                feeder.encap_to = gwlb_perf::group_addrs(&snap, group);
                assert!(!feeder.encap_to.is_empty(), "group {group} has appliances");
                if smoke {
                    feeder.check_every = 1;
                }
                rules.map(|n| gwlb_perf::steered_rule_index(&snap, n))
            }
            _ => None,
        };
        if opts.preload.is_some() {
            feeder.pool = self.preload_pool.as_ref().expect("preload pool");
        }

        if let Some(total) = opts.preload {
            return self.preloaded(
                &mut feeder,
                pending,
                &stats,
                &stop,
                &prefill,
                &order,
                total,
                &handoff,
                ports,
            );
        }

        if !prefill.is_empty() {
            let mut src = Source::List(&prefill, 0);
            let want = prefill.len() as u64;
            feeder.prefill = true;
            feeder.run(&mut src, |f| f.sent >= want);
            feeder.prefill = false;
            let t = Instant::now();
            // Both: a worker publishes its counters one by one.
            while (processed() < want || new_flows() < want)
                && t.elapsed() < Duration::from_secs(30)
            {
                feeder.drain();
            }
            let nf = new_flows();
            assert_eq!(nf, want, "every pre-inserted flow admitted");
        }
        let mut src = match kind {
            _ if kind.is_storm() => Source::Counter(1 << 32),
            _ => Source::List(&order, 0),
        };
        if let Some(pps) = opts.pace_pps {
            feeder.pace = Some(pps / self.hz as f64);
            feeder.stamp = true;
            feeder.hist = Some(
                Histogram::new_with_bounds(1, self.hz.saturating_mul(10).max(2), 3)
                    .expect("histogram bounds"),
            );
        }
        // Warm-up, then the window.
        let warm = Duration::from_secs_f64(if smoke { 0.05 } else { 0.3 });
        let t = Instant::now();
        feeder.reset_counts();
        feeder.run(&mut src, |_| t.elapsed() >= warm);
        feeder.reset_counts();
        feeder.recording = feeder.hist.is_some();
        let (p0, nf0, t0) = (processed(), new_flows(), Instant::now());
        let window = Duration::from_secs_f64(secs);
        let storm_limit = (table as f64 * 0.85) as u64;
        let mut n_checks = 0u32;
        let mut storm_full = false;
        feeder.run(&mut src, |_| {
            n_checks += 1;
            if kind.is_storm() && n_checks & 63 == 0 && new_flows() > storm_limit {
                storm_full = true;
                return true;
            }
            t0.elapsed() >= window
        });
        let (p1, nf1, dt) = (processed(), new_flows(), t0.elapsed().as_secs_f64());
        feeder.recording = false;
        let starved = feeder.starved as f64 / feeder.checks.max(1) as f64;
        let offered_mpps = (feeder.offered as f64) / dt / 1e6;
        let late = feeder.late as f64 / feeder.offered.max(1) as f64;

        stop.store(true, Relaxed);
        while !handles.iter().all(|h| h.is_finished()) {
            feeder.drain();
        }
        let done: Vec<Done> = handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect();
        feeder.drain();
        while feeder.drain() > 0 {}
        empty_rings(rx_rings.iter().chain(handoff.iter().map(|r| &**r)));
        let verified = feeder.verified;
        let hist = feeder.hist.take();
        let bad_stamps = feeder.bad_stamps;
        if storm_full {
            eprintln!("  (storm window ended early at 85% table load)");
        }
        let mut tx_drops = 0;
        let (mut copies, mut not_copied, mut processed_all) = (0, 0, 0);
        for d in &done {
            if let Done::Gwlb(p) = d {
                let c = &p.counters;
                assert_eq!(c.dropped(), 0, "gwlb dropped packets: {:?}", c.drops);
                assert_eq!(
                    c.encapsulated + c.decapsulated,
                    c.processed,
                    "every packet encapsulated or decapsulated"
                );
                processed_all += c.processed;
                if let Some(i) = deciding_rule {
                    // Every packet, and every new flow, decided by the one rule (prefill
                    // included): the rules before it never matched.
                    assert_eq!(
                        (c.rules[i][0], c.rules[i][2]),
                        (c.processed, c.new_flows),
                        "packets and new flows of the deciding rule"
                    );
                }
                for m in &c.mirror {
                    copies += m[MirrorCounter::Packets as usize];
                    not_copied +=
                        m[MirrorCounter::NoSensor as usize] + m[MirrorCounter::NoBuffer as usize];
                }
            }
        }
        let mut handoff_drops = 0;
        if kind != Kind::IoFwd {
            tx_drops = sum(|s| s.drops[DropReason::TxFull.index()].load(Relaxed));
            handoff_drops = sum(|s| s.drops[DropReason::HandoffRingFull.index()].load(Relaxed));
        }
        match kind {
            Kind::Mirrored {
                sessions,
                sensors_down,
                ..
            } => {
                // Every processed packet selected by every session: each one copied or
                // counted not copied, and every copy made left through OUT (drained) unless
                // the port's TX refused it (in `tx_full` with the originals it refused).
                assert_eq!(
                    copies + not_copied,
                    processed_all * sessions as u64,
                    "every packet copied once per session or counted not copied"
                );
                if sensors_down {
                    assert_eq!(copies, 0, "a copy without a healthy sensor");
                } else {
                    assert!(sessions == 0 || copies > 0, "no copy made");
                    assert!(
                        sessions == 0 || feeder.copies_verified > 0,
                        "no copy verified"
                    );
                }
                assert_eq!(
                    feeder.drained + tx_drops,
                    processed_all + copies,
                    "every original and every copy drained from OUT or counted tx_full"
                );
            }
            _ => assert_eq!(copies, 0, "copies without a mirror session"),
        }
        let handed_off = sum(|s| s.handed_off.load(Relaxed)) as f64
            / sum(|s| s.processed.load(Relaxed)).max(1) as f64;
        drop(done);
        drop(ports);
        RepResult {
            mpps: (p1 - p0) as f64 / dt / 1e6,
            starved,
            verified,
            tx_drops,
            handoff_drops,
            new_flows_in_window: nf1 - nf0,
            window_s: dt,
            handed_off,
            hist,
            offered_mpps,
            late,
            bad_stamps,
            copies,
            copies_verified: feeder.copies_verified,
            processed_all,
        }
    }

    /// The preloaded repetition of [`Bench::rep`] (see [`RepOpts::preload`]): flows inserted
    /// into each owner's table directly, one round of `total` packets put in the IN rings
    /// while no worker runs, then the workers started (pinned, registered, held at a gate)
    /// and timed from the gate until every fed packet is processed or counted dropped, while
    /// this thread sleeps (100 us polls). At the end every fed packet must be in exactly one
    /// named bucket (processed, `tx_full`, `handoff_ring_full`, or still in an IN or handoff
    /// ring, which fails the round as stalled), and every processed one drained from OUT.
    #[allow(clippy::too_many_arguments)]
    fn preloaded(
        &self,
        feeder: &mut Feeder<'_>,
        mut pending: Vec<(usize, WorkerSetup)>,
        stats: &[Arc<WorkerStats>],
        stop: &Arc<AtomicBool>,
        prefill: &[u64],
        order: &[u64],
        total: usize,
        handoff: &[Arc<Ring>],
        ports: Vec<Port>,
    ) -> RepResult {
        let nq = pending.len();
        let snap = self.snap.load_full();
        for &i in prefill {
            let f = Frame::of(&self.gen.flow(i));
            let owner = match nq {
                1 => 0,
                _ => {
                    pipeline::owner_hash(&snap, &f.0, 0).map_or(0, |h| usize::from(owner_of(h, nq)))
                }
            };
            let mut b = VecBuf::new(&f.0);
            let v = pending[owner].1.pipeline.process(&snap, &mut b, 0, 1);
            assert!(matches!(v, Verdict::Tx(_)), "prefill of flow {i}: {v:?}");
        }
        let sum_pipes = |p: &[(usize, WorkerSetup)], f: fn(&Counters) -> u64| -> u64 {
            p.iter().map(|(_, s)| f(&s.pipeline.counters)).sum()
        };
        let base = sum_pipes(&pending, |c| c.processed);
        let nf0 = sum_pipes(&pending, |c| c.new_flows);
        assert_eq!(
            nf0,
            prefill.len() as u64,
            "every pre-inserted flow admitted"
        );
        let mut src = Source::List(order, 0);
        feeder.run(&mut src, |f| f.sent >= total as u64);
        let fed = feeder.sent;

        // Every worker is pinned and registered and waits at the gate; the clock starts when
        // the last one (and this thread) arrive, so no worker floods another's handoff ring
        // while that one is still being created, and thread creation is not timed.
        let gate = Arc::new(Barrier::new(nq + 1));
        let handles: Vec<JoinHandle<Done>> = pending
            .drain(..)
            .map(|(cpu, setup)| spawn_worker(cpu, setup, Some(gate.clone())))
            .collect();
        gate.wait();
        let t0 = Instant::now();
        let sum = |f: fn(&WorkerStats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
        // Where a fed packet can end, besides processed: its transmit queue was full
        // (`tx_full`), or a worker that does not own it found the owner's handoff ring full
        // (`handoff_ring_full`: 4096 as in `gwlb run`; it fills when the owner is descheduled
        // or starts late while the other floods it, as on a loaded machine). The round ends
        // when every fed packet is in one of those buckets. Published counters are each a
        // lower bound of the worker's own (one writer, stored one by one; 0 before a worker's
        // first publish, although its pipeline already counted the prefill's `base`), so the
        // sum only reaches `base + fed` once it is true.
        let settled = || {
            sum(|s| s.processed.load(Relaxed))
                + sum(|s| s.drops[DropReason::TxFull.index()].load(Relaxed))
                + sum(|s| s.drops[DropReason::HandoffRingFull.index()].load(Relaxed))
        };
        // Gives up only when nothing moved for 10 s (a stuck worker), not after a fixed time:
        // a round on a loaded machine may take seconds.
        let (mut last, mut moved_at) = (0, Instant::now());
        let mut stalled = false;
        loop {
            let now = settled();
            if now >= base + fed {
                break;
            }
            if now != last {
                (last, moved_at) = (now, Instant::now());
            } else if moved_at.elapsed() > Duration::from_secs(10) {
                stalled = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let dt = t0.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        let done: Vec<Done> = handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect();
        // The workers are stopped and have published for the last time: every counter below
        // is final.
        let drained0 = feeder.drained;
        while feeder.drain() > 0 {}
        let drained = feeder.drained - drained0;
        let left_in_rx = empty_rings(feeder.rx_rings.iter().copied());
        let left_in_handoff = empty_rings(handoff.iter().map(|r| &**r));
        let (mut packets, mut new_flows) = (0, 0);
        for d in &done {
            if let Done::Gwlb(p) = d {
                let c = &p.counters;
                assert_eq!(c.dropped(), 0, "gwlb dropped packets: {:?}", c.drops);
                assert_eq!(c.encapsulated, c.processed, "every packet encapsulated");
                packets += c.processed;
                new_flows += c.new_flows;
            }
        }
        let tx_drops = sum(|s| s.drops[DropReason::TxFull.index()].load(Relaxed));
        let handoff_drops = sum(|s| s.drops[DropReason::HandoffRingFull.index()].load(Relaxed));
        let processed = packets - base;
        let buckets = format!(
            "fed {fed} = processed {processed} + tx_full {tx_drops} + handoff_ring_full \
             {handoff_drops} + still in IN rings {left_in_rx} + still in handoff rings \
             {left_in_handoff}"
        );
        assert_eq!(
            processed + tx_drops + handoff_drops + left_in_rx + left_in_handoff,
            fed,
            "every preloaded packet in one bucket: {buckets}"
        );
        assert!(
            !stalled,
            "round stalled (nothing settled for 10 s): {buckets}"
        );
        assert_eq!(
            left_in_rx + left_in_handoff,
            0,
            "round ended with packets in rings: {buckets}"
        );
        // What the workers processed left through their OUT rings, or was counted full.
        assert_eq!(
            drained + tx_drops,
            processed,
            "every processed packet drained from OUT or counted tx_full"
        );
        let handed_off = sum(|s| s.handed_off.load(Relaxed)) as f64 / fed.max(1) as f64;
        drop(done);
        drop(ports);
        RepResult {
            mpps: processed as f64 / dt / 1e6,
            starved: 0.0,
            verified: feeder.verified,
            tx_drops,
            handoff_drops,
            new_flows_in_window: new_flows - nf0,
            window_s: dt,
            handed_off,
            hist: None,
            offered_mpps: 0.0,
            late: 0.0,
            bad_stamps: 0,
            copies: 0,
            copies_verified: feeder.copies_verified,
            processed_all: packets,
        }
    }
}

/// Frees what `rings` hold and returns how many packets that was. Rings free their mbufs when
/// dropped, but a repetition empties IN and the handoff rings at its end so that the pool is
/// full again for the next one.
fn empty_rings<'r>(rings: impl Iterator<Item = &'r Ring>) -> u64 {
    let mut b = MbufBurst::<BURST>::new();
    let mut n = 0;
    for r in rings {
        loop {
            let k = r.dequeue_burst(&mut b);
            if k == 0 {
                break;
            }
            n += k as u64;
            b.clear();
        }
    }
    n
}

/// A ring on `socket`, or on any socket where that one has no memory (`--no-huge` memory is
/// all on socket 0; hugepages may be reserved on one node only).
fn ring_on(name: &str, size: u32, socket: i32) -> Ring {
    Ring::new(name, size, socket)
        .or_else(|_| Ring::new(name, size, SOCKET_ID_ANY))
        .expect("ring")
}

/// Starts a gwlb worker pinned on `cpu`; with a `gate`, the worker waits there (pinned and
/// registered) before its loop starts.
fn spawn_worker(cpu: usize, setup: WorkerSetup, gate: Option<Arc<Barrier>>) -> JoinHandle<Done> {
    std::thread::spawn(move || {
        pin(cpu);
        let _reg = ThreadRegistration::register().expect("register");
        if let Some(g) = gate {
            g.wait();
        }
        Done::Gwlb(Box::new(worker::run(setup)))
    })
}

fn pin(cpu: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        eprintln!("warning: could not pin to CPU {cpu}");
    }
}

/// The feeder/drain state of one repetition.
struct Feeder<'a> {
    pool: &'a Mempool,
    /// IN rings, one per worker (rx queue).
    rx_rings: Vec<&'a Ring>,
    /// OUT rings, one per worker (tx queue).
    tx_rings: Vec<&'a Ring>,
    tmpl: [u8; FRAME_LEN],
    gen: FlowGen,
    imix: &'a ImixFrames,
    rets: &'a Returns,
    targets: &'a [(u16, u32)],
    /// Queue of each listed flow (several workers, steered); others go to `flow % queues`.
    steer: &'a [u16],
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
    /// Mirrored copies verified.
    copies_verified: u64,
    /// Check one packet in this many dequeued bursts.
    check_every: u64,
    /// When not empty: every checked encapsulation must be toward one of these appliances.
    encap_to: Vec<[u8; 4]>,
    /// Paced: packets per TSC cycle.
    pace: Option<f64>,
    /// Paced: TSC at the start of the schedule.
    pace_t0: u64,
    /// Paced: packets due so far (fed or skipped as late).
    offered: u64,
    /// Paced: due packets skipped because the feeder fell more than 4 bursts behind (they
    /// would have left as one catch-up burst and queued behind each other).
    late: u64,
    /// Write the TSC into every packet ([`STAMP_IN_IP`]).
    stamp: bool,
    /// Latency in TSC cycles, recorded while `recording`.
    hist: Option<Histogram<u64>>,
    recording: bool,
    /// Outputs without a plausible stamp while recording.
    bad_stamps: u64,
    /// Stamps older than this many cycles are not plausible (10 s).
    stamp_max: u64,
    b: MbufBurst<BURST>,
    d: MbufBurst<BURST>,
    /// Per-queue staging when feeding several queues.
    qb: Vec<MbufBurst<BURST>>,
    /// Mbufs an IN ring holds.
    ring_cap: usize,
}

impl<'a> Feeder<'a> {
    fn new(
        bench: &'a Bench,
        rx_rings: Vec<&'a Ring>,
        tx_rings: Vec<&'a Ring>,
        kind: Kind,
        targets: &'a [(u16, u32)],
        steer: &'a [u16],
    ) -> Self {
        let nq = rx_rings.len();
        Self {
            pool: &bench.pool,
            rx_rings,
            tx_rings,
            tmpl: bench.tmpl,
            gen: bench.gen,
            imix: &bench.imix,
            rets: &bench.rets,
            targets,
            steer,
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
            copies_verified: 0,
            check_every: 256,
            encap_to: Vec::new(),
            pace: None,
            pace_t0: 0,
            offered: 0,
            late: 0,
            stamp: false,
            hist: None,
            recording: false,
            bad_stamps: 0,
            stamp_max: bench.hz.saturating_mul(10),
            b: MbufBurst::new(),
            d: MbufBurst::new(),
            qb: (0..nq).map(|_| MbufBurst::new()).collect(),
            ring_cap: RING as usize - 1,
        }
    }

    /// Starts the counters (and the pacing schedule) afresh.
    fn reset_counts(&mut self) {
        self.checks = 0;
        self.starved = 0;
        self.pace_t0 = lcore::rdtsc();
        self.offered = 0;
        self.late = 0;
    }

    /// Feeds and drains until `done(self)` (checked every 16 iterations).
    ///
    /// `done` must become true with the mbufs the pool has: a feed stops at an empty pool.
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

    /// Unpaced: tops IN up by at most 4 bursts. Paced: feeds the packets due by now (at
    /// most one burst; more than 4 bursts behind, the excess is skipped and counted late).
    #[inline]
    fn feed(&mut self, src: &mut Source<'_>) {
        let (mut lo, mut hi) = (usize::MAX, 0);
        for r in &self.rx_rings {
            let c = r.count();
            lo = lo.min(c);
            hi = hi.max(c);
        }
        self.checks += 1;
        if lo < 64 {
            self.starved += 1;
        }
        let room = self.ring_cap.saturating_sub(hi);
        match self.pace {
            None => {
                for _ in 0..(room / BURST).min(4) {
                    if !self.feed_burst(src, BURST) {
                        return;
                    }
                }
            }
            Some(per_cycle) => {
                let due = (lcore::rdtsc().wrapping_sub(self.pace_t0) as f64 * per_cycle) as u64;
                let mut want = due.saturating_sub(self.offered);
                if want > 4 * BURST as u64 {
                    let skip = want - BURST as u64;
                    self.late += skip;
                    self.offered += skip;
                    want = BURST as u64;
                }
                let k = (want as usize).min(BURST).min(room);
                if k > 0 && self.feed_burst(src, k) {
                    self.offered += k as u64;
                }
            }
        }
    }

    /// Allocates, writes and enqueues `k` packets (stamped when `self.stamp`), each on its
    /// flow's queue. False if the pool is empty.
    #[inline]
    fn feed_burst(&mut self, src: &mut Source<'_>, k: usize) -> bool {
        if self.pool.alloc_bulk(&mut self.b, k).is_err() {
            return false;
        }
        let mut stamp_at = [0usize; BURST];
        let mut queue = [0u16; BURST];
        for j in 0..k {
            let pkt = self.next_pkt(src);
            let m = &mut self.b.as_mut_slice()[j];
            let flow = match pkt {
                Pkt::Fwd(flow, FRAME_LEN) => {
                    let d = m.append(FRAME_LEN).expect("tailroom");
                    d.copy_from_slice(&self.tmpl);
                    Frame::patch_bytes(d, &self.gen.flow(flow));
                    stamp_at[j] = 14 + STAMP_IN_IP;
                    flow
                }
                Pkt::Fwd(flow, len) => {
                    let (t, g) = self.imix.get(len);
                    let d = m.append(len).expect("tailroom");
                    d.copy_from_slice(t);
                    Frame::patch_bytes(d, &g.flow(flow));
                    stamp_at[j] = 14 + STAMP_IN_IP;
                    flow
                }
                Pkt::Ret(flow, style) => {
                    let d = m.append(Returns::len(style)).expect("tailroom");
                    self.rets.write(style, flow, self.targets[flow as usize], d);
                    stamp_at[j] = Returns::len(style) - (FRAME_LEN - 14) + STAMP_IN_IP;
                    flow
                }
            };
            let nq = self.rx_rings.len();
            queue[j] = if nq == 1 {
                0
            } else {
                self.steer
                    .get(flow as usize)
                    .copied()
                    .unwrap_or((flow % nq as u64) as u16)
            };
        }
        if self.stamp {
            // After building the burst: the stamp is the enqueue time.
            let t = lcore::rdtsc().to_le_bytes();
            for (m, &at) in self.b.as_mut_slice().iter_mut().zip(&stamp_at) {
                m.data_mut()[at..at + 8].copy_from_slice(&t);
            }
        }
        if self.rx_rings.len() == 1 {
            self.sent += self.rx_rings[0].enqueue_burst(&mut self.b) as u64;
            self.b.clear();
        } else {
            // Pop from the back after reversing = original order.
            self.b.as_mut_slice().reverse();
            let mut j = 0;
            while let Some(m) = self.b.pop() {
                // Cannot fail: at most k <= BURST packets per queue.
                let _ = self.qb[usize::from(queue[j])].push(m);
                j += 1;
            }
            for (q, qb) in self.qb.iter_mut().enumerate() {
                if !qb.is_empty() {
                    self.sent += self.rx_rings[q].enqueue_burst(qb) as u64;
                    qb.clear();
                }
            }
        }
        true
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
            Kind::IoFwd
            | Kind::Established { .. }
            | Kind::Storm
            | Kind::Mirrored { .. }
            | Kind::Steered { .. } => Pkt::Fwd(src.next(), FRAME_LEN),
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

    /// Dequeues and frees up to 4 bursts from each OUT ring, recording latencies while
    /// `recording` and checking one packet in 256 bursts.
    #[inline]
    fn drain(&mut self) -> usize {
        let mut total = 0;
        for r in 0..self.tx_rings.len() {
            for _ in 0..4 {
                let n = self.tx_rings[r].dequeue_burst(&mut self.d);
                if n == 0 {
                    break;
                }
                if self.recording {
                    self.record(lcore::rdtsc());
                }
                total += n;
                self.drained += n as u64;
                if self.bursts_out.is_multiple_of(self.check_every) {
                    let i = (self.bursts_out / self.check_every) as usize % n;
                    self.check(i);
                }
                self.bursts_out += 1;
                self.d.clear();
            }
        }
        total
    }

    /// Records `now - stamp` of every packet of the dequeued burst.
    #[inline]
    fn record(&mut self, now: u64) {
        let Some(h) = self.hist.as_mut() else { return };
        for m in self.d.as_slice() {
            let out = m.data();
            let dt = stamp_offset(out).map(|at| {
                let mut s = [0u8; 8];
                s.copy_from_slice(&out[at..at + 8]);
                now.wrapping_sub(u64::from_le_bytes(s))
            });
            match dt {
                Some(dt) if dt < self.stamp_max => h.saturating_record(dt.max(1)),
                _ => self.bad_stamps += 1,
            }
        }
    }

    fn check(&mut self, i: usize) {
        let out = self.d.as_slice()[i].data();
        if out.len() > 38 && out[23] == 17 && out[36..38] == gwlb::mirror::VXLAN_PORT.to_be_bytes()
        {
            return self.check_copy(i);
        }
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
        // Stamped runs: the expected packet carries the stamp found in the output (the
        // stamp's own plausibility is checked by `record`).
        let stamp: Option<[u8; 8]> = if self.stamp {
            let at = stamp_offset(out).expect("stamp in output");
            out[at..at + 8].try_into().ok()
        } else {
            None
        };
        let put = |ip: &mut [u8]| {
            if let Some(s) = stamp {
                ip[STAMP_IN_IP..STAMP_IN_IP + 8].copy_from_slice(&s);
            }
        };
        let mut input = Frame::of(&self.gen.flow(idx));
        put(&mut input.0[14..]);
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
                let mut f = self.imix.frame(idx, len.clamp(FRAME_LEN, 1514));
                put(&mut f[14..]);
                verify_encap(out, &f).and_then(|dst| {
                    if self.encap_to.is_empty() || self.encap_to.contains(&dst) {
                        Ok(())
                    } else {
                        Err(format!(
                            "encapsulated toward {dst:?}, not the deciding group's {:?}",
                            self.encap_to
                        ))
                    }
                })
            }
            Kind::Decap { style, .. } => {
                let mut inner = self.rets.inner(style, idx);
                put(&mut inner);
                verify_decap(out, &inner)
            }
            _ => {
                let mut inner = self.rets.inner(ReturnStyle::Aws, idx);
                put(&mut inner);
                verify_decap(out, &inner)
            }
        };
        if let Err(e) = res {
            panic!("output of flow {idx}: {e}");
        }
        self.verified += 1;
    }
}

impl Feeder<'_> {
    /// Checks a mirrored copy: VXLAN (I flag, VNI 100 + a session index) from the port to a
    /// sensor, around exactly the frame the feeder sent (copied before inspection, 60 bytes
    /// without padding).
    fn check_copy(&mut self, i: usize) {
        let out = self.d.as_slice()[i].data();
        let Kind::Mirrored { sessions, .. } = self.kind else {
            panic!("a VXLAN copy without a mirror session: {out:02x?}");
        };
        let inner = out.get(50..).unwrap_or_default();
        let Some((a, p)) = inner.get(14..).and_then(ip_src) else {
            panic!("copy without an inner IPv4/TCP frame: {out:02x?}");
        };
        let idx = self
            .gen
            .index_of(a, p)
            .unwrap_or_else(|| panic!("unknown flow {a:#x}:{p} in a copy"));
        let input = Frame::of(&self.gen.flow(idx));
        assert_eq!(
            inner,
            &input.0[..],
            "the copy carries the frame as received"
        );
        assert_eq!(out[6..12], gwlb_perf::PORT_MAC, "copy from the port's MAC");
        assert!(
            out[30..34] == [10, 0, 0, 200] || out[30..34] == [10, 0, 0, 201],
            "copy to a sensor: {:?}",
            &out[30..34]
        );
        assert_eq!(out[42], 0x08, "VXLAN I flag");
        let vni = u32::from_be_bytes([0, out[46], out[47], out[48]]);
        assert!(
            (100..100 + sessions as u32).contains(&vni),
            "VNI {vni} of {sessions} sessions"
        );
        self.copies_verified += 1;
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
        a.lat_secs = 0.2;
    }
    // Before the EAL pins this thread to CPU 0.
    let allowed_cpus = gwlb_perf::cpus_allowed();
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
    let pool = Mempool::new_pktmbuf_by_ops(
        "perfpool",
        32767,
        256,
        DEFAULT_DATA_ROOM,
        SOCKET_ID_ANY,
        &a.pool_ops,
    )
    .expect("mempool");
    // 2^19 packets per preloaded round (2^13 in smoke mode), 512-byte data rooms: ~350 MB.
    let preload_total: usize = if a.smoke { 1 << 13 } else { 1 << 19 };
    let preload_pool = (!a.no_scaling).then(|| {
        Mempool::new_pktmbuf(
            "perfpreload",
            (preload_total + 8192) as u32,
            256,
            512,
            SOCKET_ID_ANY,
        )
        .expect("preload mempool")
    });
    let mut bench = Bench {
        pool,
        preload_pool,
        snap: Arc::new(ArcSwap::from_pointee(snap)),
        tmpl: Frame::template().0,
        gen: FlowGen::new(),
        imix: ImixFrames::new(),
        rets: Returns::new(&snap_for_returns),
        hz,
        tx_flush_cycles: (hz as u128 * cfg.dataplane.tx_flush.as_nanos() / 1_000_000_000) as u64,
        seq: 0,
        allowed_cpus,
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
    let scenarios = scenarios.into_iter().filter(|(name, kind, _)| {
        *kind == Kind::IoFwd
            || a.only.is_empty()
            || a.only.iter().any(|w| name.contains(w.as_str()))
    });
    let mut results: Vec<(String, Kind, Vec<RepResult>)> = Vec::new();
    for (name, kind, table) in scenarios {
        let mut reps = Vec::new();
        for r in 0..a.reps {
            let res = bench.rep(kind, a.secs, table, a.smoke, RepOpts::MAX);
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

    // Mirroring: the established scenario with 0, 1 and 2 sessions copying every packet,
    // interleaved within each repetition so that each count is beside the unmirrored figure
    // measured moments before (the machine's load drifts between repetitions).
    let mut mirror_rows = Vec::new();
    let mirror_flows = a.mirror_flows.unwrap_or(a.flows);
    if !a.no_mirror && !a.mirror_sessions.is_empty() {
        let plain = bench.snap.load_full();
        let mut counts = a.mirror_sessions.clone();
        counts.sort_unstable();
        counts.dedup();
        if counts[0] != 0 {
            counts.insert(0, 0);
        }
        // (row, sessions, sensors down): the counts asked for, then one session whose
        // sensors are all unhealthy (what a dead sensor pool costs the forwarding).
        let mut configs: Vec<(String, usize, bool)> =
            counts.iter().map(|&s| (s.to_string(), s, false)).collect();
        configs.push(("1, every sensor down".into(), 1, true));
        let mut reps: Vec<Vec<RepResult>> = configs.iter().map(|_| Vec::new()).collect();
        for r in 0..a.reps {
            for (k, (_, sessions, down)) in configs.iter().enumerate() {
                let (sessions, sensors_down) = (*sessions, *down);
                let snap = match (sessions, sensors_down) {
                    (0, _) => plain.clone(),
                    (_, false) => {
                        Arc::new(bench_snapshot_mirrored(a.appliances, a.table as u32, sessions).1)
                    }
                    (_, true) => Arc::new(
                        bench_snapshot_mirrored_sensors_down(
                            a.appliances,
                            a.table as u32,
                            sessions,
                        )
                        .1,
                    ),
                };
                bench.snap.store(snap);
                let kind = Kind::Mirrored {
                    flows: mirror_flows,
                    sessions,
                    sensors_down,
                };
                let res = bench.rep(kind, a.secs, a.table, a.smoke, RepOpts::MAX);
                eprintln!(
                    "mirroring {} rep {r}: {:.2} Mpps, IN starved {:.1}%, \
                     {} copies for {} packets, {} outputs and {} copies verified, tx drops {}",
                    configs[k].0,
                    res.mpps,
                    res.starved * 100.0,
                    res.copies,
                    res.processed_all,
                    res.verified,
                    res.copies_verified,
                    res.tx_drops
                );
                assert!(res.verified > 0, "no output verified");
                assert_eq!(res.new_flows_in_window, 0, "established: no new flows");
                reps[k].push(res);
            }
        }
        bench.snap.store(plain);
        for (k, (row, _, _)) in configs.iter().enumerate() {
            let m = Summary::of(&reps[k].iter().map(|r| r.mpps).collect::<Vec<_>>());
            let ratio = Summary::of(
                &reps[k]
                    .iter()
                    .zip(&reps[0])
                    .map(|(r, z)| r.mpps / z.mpps)
                    .collect::<Vec<_>>(),
            );
            let st = Summary::of(
                &reps[k]
                    .iter()
                    .map(|r| r.starved * 100.0)
                    .collect::<Vec<_>>(),
            );
            let copies: u64 = reps[k].iter().map(|r| r.copies).sum();
            let processed: u64 = reps[k].iter().map(|r| r.processed_all).sum();
            let per_packet = copies as f64 / processed.max(1) as f64;
            mirror_rows.push(vec![
                row.clone(),
                m.fmt(2),
                Summary::of(&reps[0].iter().map(|r| r.mpps).collect::<Vec<_>>()).fmt(2),
                ratio.fmt(2),
                format!("{:.2}", (m.median * (1.0 + per_packet))),
                format!("{per_packet:.2}"),
                st.fmt(1),
                reps[k].iter().map(|r| r.verified).sum::<u64>().to_string(),
                reps[k]
                    .iter()
                    .map(|r| r.copies_verified)
                    .sum::<u64>()
                    .to_string(),
                reps[k].iter().map(|r| r.tx_drops).sum::<u64>().to_string(),
            ]);
        }
    }

    // Steering rules: established flows and a new-flow storm through one endpoint with 0, 1,
    // 100 and 10,000 rules (the traffic matches the last), beside the group's own user
    // traffic, interleaved within each repetition so that every count is next to the 0-rule
    // figure of the same moment.
    let mut rule_rows = Vec::new();
    let rules_flows = a.rules_flows.unwrap_or(a.flows);
    if !a.no_rules && !a.rules.is_empty() {
        let plain = bench.snap.load_full();
        let mut counts = a.rules.clone();
        counts.sort_unstable();
        counts.dedup();
        if counts[0] != 0 {
            counts.insert(0, 0);
        }
        // `None`: no endpoint; the baseline of the ratios is `Some(0)` (index 1).
        let configs: Vec<Option<usize>> = std::iter::once(None)
            .chain(counts.iter().map(|&n| Some(n)))
            .collect();
        let snaps: Vec<Arc<Snapshot>> = configs
            .iter()
            .map(|c| match c {
                None => plain.clone(),
                Some(n) => Arc::new(bench_snapshot_steered(a.appliances, a.table as u32, *n).1),
            })
            .collect();
        // reps[config][0: established, 1: storm]
        let mut reps: Vec<[Vec<RepResult>; 2]> =
            configs.iter().map(|_| [Vec::new(), Vec::new()]).collect();
        for r in 0..a.reps {
            for (s, storm) in [false, true].into_iter().enumerate() {
                for (k, &rules) in configs.iter().enumerate() {
                    bench.snap.store(snaps[k].clone());
                    let kind = Kind::Steered {
                        flows: (!storm).then_some(rules_flows),
                        rules,
                    };
                    let table = if storm { a.storm_table } else { a.table };
                    let res = bench.rep(kind, a.secs, table, a.smoke, RepOpts::MAX);
                    eprintln!(
                        "rules {} {} rep {r}: {:.2} Mpps, IN starved {:.1}%, new flows {} in \
                         {:.2} s, {} outputs verified, tx drops {}",
                        rules.map_or("none (no endpoint)".to_string(), |n| n.to_string()),
                        if storm { "storm" } else { "established" },
                        res.mpps,
                        res.starved * 100.0,
                        res.new_flows_in_window,
                        res.window_s,
                        res.verified,
                        res.tx_drops
                    );
                    assert!(res.verified > 0, "no output verified");
                    if storm {
                        assert!(res.new_flows_in_window > 0, "storm: no new flow");
                    } else {
                        assert_eq!(res.new_flows_in_window, 0, "established: no new flows");
                    }
                    reps[k][s].push(res);
                }
            }
        }
        bench.snap.store(plain);
        let mpps = |v: &[RepResult]| v.iter().map(|r| r.mpps).collect::<Vec<_>>();
        let ratio = |v: &[RepResult], base: &[RepResult]| {
            Summary::of(
                &v.iter()
                    .zip(base)
                    .map(|(r, z)| r.mpps / z.mpps)
                    .collect::<Vec<_>>(),
            )
        };
        for (k, rules) in configs.iter().enumerate() {
            let [est, storm] = &reps[k];
            let [est0, storm0] = &reps[1];
            let starved = |v: &[RepResult]| {
                Summary::of(&v.iter().map(|r| r.starved * 100.0).collect::<Vec<_>>()).median
            };
            rule_rows.push(vec![
                match rules {
                    None => "no endpoint (group's own user traffic)".to_string(),
                    Some(0) => "0 (endpoint, default action only): baseline".to_string(),
                    Some(n) => n.to_string(),
                },
                Summary::of(&mpps(est)).fmt(2),
                Summary::of(&mpps(est0)).fmt(2),
                ratio(est, est0).fmt(2),
                Summary::of(&mpps(storm)).fmt(2),
                Summary::of(&mpps(storm0)).fmt(2),
                ratio(storm, storm0).fmt(2),
                format!("{:.1} / {:.1}", starved(est), starved(storm)),
                est.iter()
                    .chain(storm)
                    .map(|r| r.verified)
                    .sum::<u64>()
                    .to_string(),
                est.iter()
                    .chain(storm)
                    .map(|r| r.tx_drops)
                    .sum::<u64>()
                    .to_string(),
            ]);
        }
    }

    let hz = bench.hz;
    let ns = |cycles: u64| cycles as f64 * 1e9 / hz as f64;
    // Latency: paced at a share of the same scenario's median rate measured above, then the
    // io-forward loop at the same rate, stamped and drained the same way.
    let mut lat_rows = Vec::new();
    if !a.no_latency {
        let lat_scenarios = [
            (
                format!("gwlb encap, established, {} flows", a.flows),
                Kind::Established { flows: a.flows },
            ),
            (
                format!("gwlb decap, AWS-echo returns, {} flows", a.flows),
                Kind::Decap {
                    flows: a.flows,
                    style: ReturnStyle::Aws,
                },
            ),
        ];
        for (name, kind) in lat_scenarios {
            let Some((_, _, reps)) = results.iter().find(|(_, k, _)| *k == kind) else {
                continue;
            };
            let max = Summary::of(&reps.iter().map(|r| r.mpps).collect::<Vec<_>>()).median;
            for &load in &a.lat_loads {
                let opts = RepOpts {
                    pace_pps: Some(max * 1e6 * load / 100.0),
                    ..RepOpts::MAX
                };
                let g = bench.rep(kind, a.lat_secs, a.table, a.smoke, opts);
                let io = bench.rep(Kind::IoFwd, a.lat_secs, 0, a.smoke, opts);
                let (gh, ih) = (g.hist.as_ref(), io.hist.as_ref());
                let (gh, ih) = (gh.expect("histogram"), ih.expect("histogram"));
                for (label, r, h) in [
                    (&name, &g, gh),
                    (&"io-forward baseline".to_string(), &io, ih),
                ] {
                    eprintln!(
                        "latency {label} at {load}%: offered {:.3} Mpps, delivered {:.3} Mpps, \
                         late {:.2}%, {} samples, p50 {:.0} ns, p99 {:.0} ns, max {:.0} ns, \
                         {} outputs verified, {} bad stamps",
                        r.offered_mpps,
                        r.mpps,
                        r.late * 100.0,
                        h.len(),
                        ns(h.value_at_quantile(0.5)),
                        ns(h.value_at_quantile(0.99)),
                        ns(h.max()),
                        r.verified,
                        r.bad_stamps
                    );
                    assert!(!h.is_empty(), "no latency sample");
                    assert_eq!(r.bad_stamps, 0, "outputs without their stamp");
                    assert!(r.verified > 0, "no output verified");
                }
                let added = |q: f64| ns(gh.value_at_quantile(q)) - ns(ih.value_at_quantile(q));
                for (label, r, h, diff) in [
                    (
                        name.clone(),
                        &g,
                        gh,
                        format!("{:.0} / {:.0}", added(0.5), added(0.99)),
                    ),
                    (
                        "io-forward baseline, same rate".to_string(),
                        &io,
                        ih,
                        "-".to_string(),
                    ),
                ] {
                    lat_rows.push(vec![
                        label,
                        format!("{load}% of {max:.2}"),
                        format!("{:.3}", r.offered_mpps),
                        format!("{:.3}", r.mpps),
                        format!("{:.2}", r.late * 100.0),
                        h.len().to_string(),
                        format!("{:.0}", ns(h.value_at_quantile(0.5))),
                        format!("{:.0}", ns(h.value_at_quantile(0.99))),
                        format!("{:.0}", ns(h.value_at_quantile(0.999))),
                        format!("{:.0}", ns(h.max())),
                        diff,
                    ]);
                }
            }
        }
    }

    // Idle: a worker that sleeps when idle (gwlb's default) against one that polls, in the
    // same run: throughput under load (it never sleeps then), and the latency of packets
    // that find it asleep (a sparse trickle: every packet arrives after an idle gap).
    let mut idle_rows = Vec::new();
    if !a.no_idle {
        let kind = Kind::Established { flows: a.flows };
        let sleep = Some(Duration::from_micros(a.idle_sleep_us));
        for (label, idle_sleep) in [("polling", None), ("sleeping when idle", sleep)] {
            let mut reps = Vec::new();
            for _ in 0..a.reps {
                let opts = RepOpts {
                    idle_sleep,
                    ..RepOpts::MAX
                };
                reps.push(bench.rep(kind, a.secs, a.table, a.smoke, opts).mpps);
            }
            let tput = Summary::of(&reps);
            // 2000 packets/s: 500 us between packets, so the sleeping worker is asleep (idle
            // after 200 us) when each one arrives.
            let opts = RepOpts {
                idle_sleep,
                pace_pps: Some(2000.0),
                ..RepOpts::MAX
            };
            let g = bench.rep(kind, a.lat_secs.max(1.0), a.table, a.smoke, opts);
            let h = g.hist.as_ref().expect("histogram");
            assert!(!h.is_empty(), "no latency sample");
            assert_eq!(g.bad_stamps, 0, "outputs without their stamp");
            eprintln!(
                "idle {label}: {} Mpps under load; trickle p50 {:.0} ns p99 {:.0} ns ({} samples)",
                tput.fmt(2),
                ns(h.value_at_quantile(0.5)),
                ns(h.value_at_quantile(0.99)),
                h.len()
            );
            idle_rows.push((label, tput, h.clone(), g.verified));
        }
    }

    // Scaling: the established scenario with 1 and each N workers.
    let cpus = bench.allowed_cpus.len();
    let mut counts: Vec<usize> = if a.workers.is_empty() {
        vec![cpus.max(2)]
    } else {
        a.workers.iter().map(|&n| n.max(1)).collect()
    };
    counts.sort_unstable();
    counts.dedup();
    let allowed = bench.allowed_cpus.clone();
    let worker_cpus = |n: usize| {
        gwlb_perf::worker_cpus(&allowed, a.worker_cpu, n)
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let oversubscribed = counts.iter().any(|&n| n > cpus);
    let mut scale_rows = Vec::new();
    if !a.no_scaling {
        let kind = Kind::Established { flows: a.flows };
        let mut configs = vec![(1, false)];
        for &n in counts.iter().filter(|&&n| n > 1) {
            configs.extend([(n, false), (n, true)]);
        }
        let mut one_worker = f64::NAN;
        for (workers, spread) in configs {
            let feed = if workers == 1 {
                "-"
            } else if spread {
                "spread (flow % N: handoffs)"
            } else {
                "steered to the owner"
            };
            let mut reps = Vec::new();
            for r in 0..a.reps {
                let opts = RepOpts {
                    workers,
                    spread,
                    pace_pps: None,
                    preload: Some(preload_total),
                    idle_sleep: None,
                };
                let res = bench.rep(kind, a.secs, a.table, a.smoke, opts);
                eprintln!(
                    "scaling {workers} worker(s), {feed}, rep {r}: {:.2} Mpps, handed off {:.1}%, \
                     {:.1} ms for the round, {} outputs verified, tx drops {}, handoff ring full {}",
                    res.mpps,
                    res.handed_off * 100.0,
                    res.window_s * 1e3,
                    res.verified,
                    res.tx_drops,
                    res.handoff_drops
                );
                assert!(res.verified > 0, "no output verified");
                assert_eq!(res.new_flows_in_window, 0, "established: no new flows");
                if spread {
                    assert!(res.handed_off > 0.0, "spread feed: no handoff");
                } else {
                    assert_eq!(res.handed_off, 0.0, "steered feed: handoffs");
                }
                reps.push(res);
            }
            let m = Summary::of(&reps.iter().map(|r| r.mpps).collect::<Vec<_>>());
            if workers == 1 {
                one_worker = m.median;
            }
            let h = Summary::of(
                &reps
                    .iter()
                    .map(|r| r.handed_off * 100.0)
                    .collect::<Vec<_>>(),
            );
            let round = Summary::of(&reps.iter().map(|r| r.window_s * 1e3).collect::<Vec<_>>());
            scale_rows.push(vec![
                workers.to_string(),
                feed.to_string(),
                format!(
                    "{}{}",
                    worker_cpus(workers),
                    if workers > cpus {
                        " (oversubscribed)"
                    } else {
                        ""
                    }
                ),
                m.fmt(2),
                format!("{:.2}", m.median / one_worker),
                h.fmt(1),
                round.fmt(1),
                reps.iter().map(|r| r.verified).sum::<u64>().to_string(),
                reps.iter().map(|r| r.tx_drops).sum::<u64>().to_string(),
                reps.iter()
                    .map(|r| r.handoff_drops)
                    .sum::<u64>()
                    .to_string(),
            ]);
        }
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
    if !mirror_rows.is_empty() {
        println!();
        println!(
            "### Mirroring: gwlb established, {mirror_flows} flows, {}-flow table; N sessions \
             each copying every packet before inspection (VXLAN, whole 60-byte frames) to a pool \
             of two sensors on the same port (copies leave through the same OUT ring and are \
             drained and freed by the feeder's thread); 0 is the unmirrored snapshot; the counts \
             run one after another within each of {} repetitions; `vs 0` is the median of the \
             per-repetition ratios",
            a.table, a.reps
        );
        println!();
        print_table(
            &[
                "sessions",
                "Mpps (worker, originals)",
                "Mpps with 0 sessions, same reps",
                "vs 0",
                "packets out Mpps (originals + copies)",
                "copies per packet",
                "IN starved %",
                "outputs verified",
                "copies verified",
                "tx drops",
            ],
            &mirror_rows,
        );
    }
    if !rule_rows.is_empty() {
        println!();
        println!(
            "### Steering rules: one untagged endpoint on the port with N rules \
             (`bench_config_steered`: the traffic matches only the last, which inspects by the \
             group \"steered\"; up to 8 near misses before it share its destination block), \
             0 = the endpoint with only its default action (inspect by \"steered\"); \
             established: {rules_flows} flows in a {}-flow table; new flows: a new 5-tuple \
             every packet into a {}-flow table; every count runs one after another within each \
             of {} repetitions; `vs 0 rules` is the median of the per-repetition ratios",
            a.table, a.storm_table, a.reps
        );
        println!();
        print_table(
            &[
                "rules",
                "established Mpps",
                "established, 0 rules, same reps",
                "vs 0 rules",
                "new flows Mpps",
                "new flows, 0 rules, same reps",
                "vs 0 rules",
                "IN starved % (est. / new)",
                "outputs verified",
                "tx drops",
            ],
            &rule_rows,
        );
    }
    if !lat_rows.is_empty() {
        println!();
        println!(
            "### Latency: feeder TSC stamp at enqueue on IN -> drain dequeue from OUT (same \
             thread), {:.1} s window per row, paced feeder; includes both ring transfers and \
             TX batching (tx_flush {:.1} us); io-forward at the same rate measured the same way",
            a.lat_secs,
            bench.tx_flush_cycles as f64 * 1e6 / bench.hz as f64
        );
        println!();
        print_table(
            &[
                "scenario",
                "load (% of median Mpps above)",
                "offered Mpps",
                "delivered Mpps",
                "late %",
                "samples",
                "p50 ns",
                "p99 ns",
                "p99.9 ns",
                "max ns",
                "p50 / p99 over io-forward, ns",
            ],
            &lat_rows,
        );
    }
    if let [(_, poll_tput, poll_h, _), ..] = idle_rows.as_slice() {
        println!();
        println!(
            "### Idle: a worker sleeping {} us per empty turn once idle 200 us (gwlb's default) \
             against one that polls, same run: gwlb established, {} flows; throughput under \
             load ({} reps), and latency of a 2000 packets/s trickle (each packet finds the \
             worker idle)",
            a.idle_sleep_us, a.flows, a.reps
        );
        println!();
        let rows: Vec<Vec<String>> = idle_rows
            .iter()
            .map(|(label, tput, h, verified)| {
                vec![
                    label.to_string(),
                    tput.fmt(2),
                    format!("{:.2}", tput.median / poll_tput.median),
                    format!("{:.0}", ns(h.value_at_quantile(0.5))),
                    format!("{:.0}", ns(h.value_at_quantile(0.99))),
                    format!(
                        "{:.0} / {:.0}",
                        ns(h.value_at_quantile(0.5)) - ns(poll_h.value_at_quantile(0.5)),
                        ns(h.value_at_quantile(0.99)) - ns(poll_h.value_at_quantile(0.99))
                    ),
                    verified.to_string(),
                ]
            })
            .collect();
        print_table(
            &[
                "worker",
                "Mpps under load",
                "vs polling",
                "trickle p50 ns",
                "trickle p99 ns",
                "wake-up cost p50 / p99, ns",
                "outputs verified",
            ],
            &rows,
        );
    }
    if !scale_rows.is_empty() {
        println!();
        println!(
            "### Scaling: gwlb established, {} flows, {}-flow table per worker; {} rounds of \
             {preload_total} preloaded packets (IN rings filled while the workers are stopped, \
             then timed from a start gate until every packet is processed or counted dropped; \
             the main thread sleeps); workers on the {cpus} allowed CPUs from CPU {} on",
            a.flows, a.table, a.reps, a.worker_cpu
        );
        if oversubscribed {
            println!(
                "NOTE: more workers than the {cpus} CPUs: oversubscribed (threads share CPUs by \
                 time slicing); those rows only show that the multi-worker path works."
            );
        }
        println!();
        print_table(
            &[
                "workers",
                "feed",
                "worker CPUs",
                "Mpps (all workers)",
                "vs 1 worker",
                "handed off %",
                "round ms",
                "outputs verified",
                "tx drops",
                "handoff ring full",
            ],
            &scale_rows,
        );
    }
    if a.smoke {
        println!();
        println!(
            "smoke: OK (outputs verified, no drops{}{}{}{})",
            if mirror_rows.is_empty() {
                ""
            } else {
                ", mirrored copies made, counted and verified"
            },
            if rule_rows.is_empty() {
                ""
            } else {
                ", steered flows decided by the matching rule and encapsulated toward its group"
            },
            if lat_rows.is_empty() {
                ""
            } else {
                ", latency stamps recorded"
            },
            if scale_rows.is_empty() {
                ""
            } else {
                ", 1 and N workers verified"
            }
        );
    }
}

/// The worker of `nq` that owns flows of hash `h` (the workers' own rule, `Share::owner`).
fn owner_of(h: u32, nq: usize) -> u16 {
    pipeline::Share {
        me: 0,
        workers: nq as u16,
    }
    .owner(h)
}
