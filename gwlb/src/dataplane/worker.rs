//! A poll-mode worker: pinned to one CPU, run to completion on bursts of 32.
//!
//! The worker owns its RX queues (one per port), one TX queue per port with a staging burst
//! each, its [`Pipeline`] (flow-table shard and counters) and the consumer end of its handoff
//! ring. It shares only read-only state (the [`Snapshot`], swapped by the control plane) and
//! the producer ends of the other workers' handoff rings (lock-free multi-producer rings).
//!
//! Flow ownership: a flow belongs to worker `flow_hash % workers`. A packet received by
//! another worker (RSS spreads by outer headers, and an appliance's return says nothing about
//! the flow in its outer header) is passed to the owner through its ring, so both directions
//! and the returns of a flow always meet the same flow-table entry. With one worker the
//! ownership step is skipped.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dpdk_bindings::port::{RxQueue, TxQueue};
use dpdk_bindings::{lcore, Mbuf, MbufBurst, Ring};

use super::stats::WorkerStats;
use crate::decap;
use crate::flow::FlowKey;
use crate::parse::{self, proto};
use crate::pipeline::{Pipeline, Verdict};
use crate::snapshot::Snapshot;

/// Packets per RX/TX burst.
pub const BURST: usize = 32;

/// Everything a worker needs, moved onto its thread.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Worker index (0-based).
    pub index: usize,
    /// Number of workers (flow owner = hash % workers).
    pub workers: usize,
    /// `(port index, queue)` pairs this worker polls.
    pub rx: Vec<(u16, RxQueue)>,
    /// One TX queue per port, indexed by port index (config ports first, then TAP ports).
    pub tx: Vec<TxQueue>,
    /// The exception path: which TAP port belongs to which config port.
    pub host_path: HostPath,
    /// DPDK port id -> port index (for packets arriving through the handoff ring).
    pub port_index_by_id: Vec<u16>,
    /// This worker's handoff ring (consumer side).
    pub handoff_in: Option<Arc<Ring>>,
    /// Every worker's handoff ring, by worker index.
    pub handoff_out: Vec<Arc<Ring>>,
    /// The worker's pipeline.
    pub pipeline: Pipeline,
    /// The current snapshot.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Published counters.
    pub stats: Arc<WorkerStats>,
    /// Set to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// TX drain deadline in TSC cycles.
    pub tx_flush_cycles: u64,
    /// Optional: stop after this many cycles without receiving anything, once something was
    /// received (offline pcap runs).
    pub idle_exit_cycles: Option<u64>,
}

/// Port pairs of the exception path to the kernel. Port indexes below the number of config
/// ports are config ports; the TAP ports follow them.
#[derive(Clone, Debug, Default)]
pub struct HostPath {
    /// Config port index -> its TAP port index.
    pub tap_of: Vec<Option<u16>>,
    /// Port index -> the config port a TAP port belongs to (`None` for config ports).
    pub phys_of: Vec<Option<u16>>,
}

/// Counters that live only in the worker loop.
#[derive(Debug, Default)]
struct LoopCounters {
    rx: u64,
    tx: u64,
    handed_off: u64,
    tx_drops: u64,
}

/// Runs the worker loop until `stop` is set. Returns the pipeline for final reporting.
pub fn run(mut w: WorkerSetup) -> Pipeline {
    let hz = lcore::tsc_hz().max(1);
    let start = lcore::rdtsc();
    let mut staged: Vec<MbufBurst<BURST>> = (0..w.tx.len()).map(|_| MbufBurst::new()).collect();
    let mut deadline = vec![u64::MAX; w.tx.len()];
    let mut lc = LoopCounters::default();
    let mut snap = w.snapshot.load_full();
    let mut rx_burst: MbufBurst<BURST> = MbufBurst::new();
    let mut last_rx = start;
    let mut published_gen = u64::MAX;

    while !w.stop.load(Relaxed) {
        let tsc = lcore::rdtsc();
        // Whole seconds since start, plus one so that 0 never means "now".
        let now = ((tsc - start) / hz) as u32 + 1;
        {
            let cur = w.snapshot.load();
            if cur.generation != snap.generation {
                snap = arc_swap::Guard::into_inner(cur);
            }
        }

        let mut got = 0;
        for (port_idx, q) in w.rx.iter_mut() {
            let n = q.rx_burst(&mut rx_burst);
            if n == 0 {
                continue;
            }
            got += n;
            lc.rx += n as u64;
            process_burst(
                &mut w.pipeline,
                &snap,
                &mut rx_burst,
                Some(*port_idx),
                &w.port_index_by_id,
                &w.host_path,
                w.index,
                w.workers,
                &w.handoff_out,
                &mut staged,
                &mut deadline,
                &mut w.tx,
                &mut lc,
                now,
                tsc + w.tx_flush_cycles,
            );
        }
        if let Some(ring) = &w.handoff_in {
            let n = ring.dequeue_burst(&mut rx_burst);
            if n > 0 {
                got += n;
                process_burst(
                    &mut w.pipeline,
                    &snap,
                    &mut rx_burst,
                    None,
                    &w.port_index_by_id,
                    &w.host_path,
                    w.index,
                    1,
                    &w.handoff_out,
                    &mut staged,
                    &mut deadline,
                    &mut w.tx,
                    &mut lc,
                    now,
                    tsc + w.tx_flush_cycles,
                );
            }
        }

        for (p, b) in staged.iter_mut().enumerate() {
            if !b.is_empty() && (got == 0 || tsc >= deadline[p]) {
                flush(&mut w.tx[p], b, &mut lc);
                deadline[p] = u64::MAX;
            }
        }

        if got > 0 {
            last_rx = tsc;
            w.stats.publish(
                &w.pipeline.counters,
                lc.rx,
                lc.tx,
                lc.handed_off,
                lc.tx_drops,
            );
        } else {
            // Idle: reclaim expired flows a little at a time.
            w.pipeline.flows_mut().expire_step(now, 64);
            if published_gen != snap.generation || tsc.wrapping_sub(last_rx) > hz / 10 {
                w.stats.publish(
                    &w.pipeline.counters,
                    lc.rx,
                    lc.tx,
                    lc.handed_off,
                    lc.tx_drops,
                );
                w.stats
                    .publish_appliances(&w.pipeline.counters, snap.appliances.len());
                w.stats
                    .active_flows
                    .store(w.pipeline.flows().len() as u64, Relaxed);
                published_gen = snap.generation;
            }
            if let Some(limit) = w.idle_exit_cycles {
                if lc.rx > 0 && tsc.wrapping_sub(last_rx) > limit {
                    break;
                }
            }
        }
    }
    for (p, b) in staged.iter_mut().enumerate() {
        flush(&mut w.tx[p], b, &mut lc);
    }
    w.stats.publish(
        &w.pipeline.counters,
        lc.rx,
        lc.tx,
        lc.handed_off,
        lc.tx_drops,
    );
    w.stats
        .publish_appliances(&w.pipeline.counters, snap.appliances.len());
    w.stats
        .active_flows
        .store(w.pipeline.flows().len() as u64, Relaxed);
    w.pipeline
}

/// Transmits a staging burst; what the queue does not take is freed and counted.
#[inline]
fn flush(tx: &mut TxQueue, b: &mut MbufBurst<BURST>, lc: &mut LoopCounters) {
    let n = tx.tx_burst(b);
    lc.tx += n as u64;
    lc.tx_drops += b.len() as u64;
    b.clear();
}

/// Processes one received burst. `in_port` is `None` for handoff packets (their port is in
/// the mbuf).
#[allow(clippy::too_many_arguments)]
#[inline]
fn process_burst(
    pipeline: &mut Pipeline,
    snap: &Snapshot,
    burst: &mut MbufBurst<BURST>,
    in_port: Option<u16>,
    port_index_by_id: &[u16],
    host: &HostPath,
    me: usize,
    workers: usize,
    handoff_out: &[Arc<Ring>],
    staged: &mut [MbufBurst<BURST>],
    deadline: &mut [u64],
    tx: &mut [TxQueue],
    lc: &mut LoopCounters,
    now: u32,
    flush_at: u64,
) {
    // Pop from the back after reversing = original order, so packets leave in arrival order.
    burst.as_mut_slice().reverse();
    while let Some(mut m) = burst.pop() {
        let port = match in_port {
            Some(p) => p,
            None => port_index_by_id
                .get(usize::from(m.port().0))
                .copied()
                .unwrap_or(u16::MAX),
        };
        // From the kernel: out the paired port as the kernel built it.
        if let Some(phys) = host.phys_of.get(usize::from(port)).copied().flatten() {
            stage(staged, deadline, tx, lc, phys, m, flush_at);
            continue;
        }
        if workers > 1 {
            let owner = owner_of(snap, m.data(), port, workers);
            if owner != me {
                m.set_port(dpdk_bindings::port::PortId(port_id_of(
                    port_index_by_id,
                    port,
                )));
                let mut one: MbufBurst<1> = MbufBurst::new();
                let _ = one.push(m);
                if handoff_out[owner].enqueue_burst(&mut one) == 1 {
                    lc.handed_off += 1;
                } else {
                    lc.tx_drops += 1;
                }
                continue;
            }
        }
        match pipeline.process(snap, &mut m, port, now) {
            Verdict::Tx(p) => stage(staged, deadline, tx, lc, p, m, flush_at),
            Verdict::ToHost => match host.tap_of.get(usize::from(port)).copied().flatten() {
                Some(tap) => stage(staged, deadline, tx, lc, tap, m, flush_at),
                // No exception path configured: counted (to_host) and freed.
                None => drop(m),
            },
            Verdict::Drop(_) => drop(m),
        }
    }
}

/// Stages an mbuf for TX on port `p`, flushing at a full burst.
#[inline]
fn stage(
    staged: &mut [MbufBurst<BURST>],
    deadline: &mut [u64],
    tx: &mut [TxQueue],
    lc: &mut LoopCounters,
    p: u16,
    m: Mbuf,
    flush_at: u64,
) {
    let p = usize::from(p);
    let b = &mut staged[p];
    if b.is_empty() {
        deadline[p] = flush_at;
    }
    let _ = b.push(m);
    if b.is_full() {
        flush(&mut tx[p], b, lc);
        deadline[p] = u64::MAX;
    }
}

fn port_id_of(port_index_by_id: &[u16], index: u16) -> u16 {
    port_index_by_id
        .iter()
        .position(|&i| i == index)
        .unwrap_or(0) as u16
}

/// The worker that owns the flow of this frame: `flow_hash % workers`. Frames that cannot
/// be parsed, or are not flow traffic, stay with worker 0 (they are dropped or go to the
/// host there).
fn owner_of(snap: &Snapshot, frame: &[u8], port: u16, workers: usize) -> usize {
    let Ok(p) = parse::parse_frame(frame) else {
        return 0;
    };
    let Some(pv) = snap.ports.get(usize::from(port)) else {
        return 0;
    };
    if pv.is_own(&p.dst) {
        if p.protocol == proto::UDP && p.dst_port == geneve::UDP_PORT {
            let Some(slot) = snap.appliance_by_addr(&p.src) else {
                return 0;
            };
            let Ok(ret) = decap::parse_return(frame, &p) else {
                return 0;
            };
            let g = &snap.groups[usize::from(snap.appliances[usize::from(slot)].group)];
            let key = FlowKey::from_packet(&ret.inner, g.stickiness);
            return (key.hash(snap.seed) as u32 as usize) % workers;
        }
        return 0;
    }
    let Some(g) = snap.group_for_port(port) else {
        return 0;
    };
    let key = FlowKey::from_packet(&p, snap.groups[usize::from(g)].stickiness);
    (key.hash(snap.seed) as u32 as usize) % workers
}
