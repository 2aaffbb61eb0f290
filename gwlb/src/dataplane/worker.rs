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
use crossbeam_channel::Receiver;
use dpdk_bindings::port::{RxQueue, TxQueue};
use dpdk_bindings::{lcore, Mbuf, MbufBurst, Ring};

use super::copy_socket::CopySocket;
use crate::control::Now;
use crate::flow_dump::{self, FlowDumpRequest};
use crate::fragment::MAX_FRAGMENTS;
use crate::mirror::MirrorCounter;
use crate::parse::DropReason;
use crate::pipeline::{Pipeline, Share, Verdict, MAX_MIRROR_SESSIONS};
use crate::snapshot::Snapshot;
use crate::stats::{LoopIo, WorkerStats};

/// Packets per RX/TX burst.
pub const BURST: usize = 32;

/// Loop turns between two looks at the flow-dump channel while traffic flows.
const DUMP_POLL_EVERY: u32 = 256;

/// The data path's clock: whole seconds since a common TSC epoch, plus one (0 never means
/// "now"). Workers and the control loop share the epoch, so a deadline computed by one (a
/// drain's end) means the same instant to the others.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: u64,
    hz: u64,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self {
            epoch: lcore::rdtsc(),
            hz: lcore::tsc_hz().max(1),
        }
    }

    /// Seconds at TSC value `tsc`.
    #[inline]
    pub fn secs_at(&self, tsc: u64) -> u32 {
        (tsc.saturating_sub(self.epoch) / self.hz) as u32 + 1
    }
}

impl Now for Clock {
    fn now(&self) -> u32 {
        self.secs_at(lcore::rdtsc())
    }
}

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
    /// Per port (same index): the socket its mirrored copies leave through, for ports
    /// backed by a kernel ring whose transmit waits when full ([`CopySocket`]); `None`:
    /// copies share the port's TX queue.
    pub copy_sockets: Vec<Option<CopySocket>>,
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
    /// Sleep this long per empty loop turn once idle (`None`: poll without pause).
    pub idle_sleep: Option<std::time::Duration>,
    /// Cycles without a packet after which the worker counts as idle.
    pub idle_after_cycles: u64,
    /// The shared seconds clock.
    pub clock: Clock,
    /// Flow-dump requests from the control loop.
    pub dumps: Receiver<FlowDumpRequest>,
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

/// The worker's transmit side: one staging burst per port, flushed when full, at the end of a
/// loop turn in which every receive queue came back short of a burst (the worker caught up),
/// or when its TSC deadline passes; what a queue does not take is freed and counted.
struct TxStage {
    staged: Vec<MbufBurst<BURST>>,
    deadline: Vec<u64>,
    tx: Vec<TxQueue>,
    /// Ports from this index on are the exception path's TAPs.
    first_tap: usize,
    /// Packets for each other worker, gathered over one received burst and enqueued on its
    /// handoff ring together (one ring operation per owner and burst, not per packet).
    handoff: Vec<MbufBurst<BURST>>,
    lc: LoopIo,
    /// Per port, bit `k`: staged packet `k` is a mirrored copy, of the session whose counter
    /// slot is `copy_slot[port][k]` (set only when a copy is staged; originals cost nothing).
    copy_mask: Vec<u32>,
    copy_slot: Vec<[u8; BURST]>,
    /// Copies a transmit queue refused, per session slot, not yet moved into the pipeline's
    /// counters ([`TxStage::take_refused_copies`]); `refused_any`: some are.
    refused: [u64; MAX_MIRROR_SESSIONS],
    refused_any: bool,
    /// Per port: the copies staged for its [`CopySocket`], where it has one.
    copy_out: Vec<Option<CopyOut>>,
}

/// The mirrored copies of one port sent through its own [`CopySocket`] (not its TX queue).
struct CopyOut {
    socket: CopySocket,
    staged: MbufBurst<BURST>,
    /// Each staged copy's session counter slot.
    slots: [u8; BURST],
    deadline: u64,
}

impl TxStage {
    fn new(
        tx: Vec<TxQueue>,
        copy_sockets: Vec<Option<CopySocket>>,
        first_tap: usize,
        workers: usize,
    ) -> Self {
        let mut copy_out: Vec<Option<CopyOut>> = copy_sockets
            .into_iter()
            .map(|s| {
                s.map(|socket| CopyOut {
                    socket,
                    staged: MbufBurst::new(),
                    slots: [0; BURST],
                    deadline: u64::MAX,
                })
            })
            .collect();
        copy_out.resize_with(tx.len(), || None);
        Self {
            copy_out,
            staged: (0..tx.len()).map(|_| MbufBurst::new()).collect(),
            deadline: vec![u64::MAX; tx.len()],
            first_tap,
            handoff: (0..workers).map(|_| MbufBurst::new()).collect(),
            lc: LoopIo::default(),
            copy_mask: vec![0; tx.len()],
            copy_slot: vec![[0; BURST]; tx.len()],
            refused: [0; MAX_MIRROR_SESSIONS],
            refused_any: false,
            tx,
        }
    }

    /// Enqueues every gathered handoff on its owner's ring; what a full ring does not take
    /// is freed and counted (`handoff_ring_full`).
    #[inline]
    fn flush_handoffs(&mut self, rings: &[Arc<Ring>]) {
        for (b, ring) in self.handoff.iter_mut().zip(rings) {
            if b.is_empty() {
                continue;
            }
            let n = ring.enqueue_burst(b);
            self.lc.handed_off += n as u64;
            self.lc.handoff_full += b.len() as u64;
            b.clear();
        }
    }

    /// Stages an mbuf for port `p`; the burst is sent at 32 packets or at `flush_at`.
    #[inline]
    fn stage(&mut self, p: u16, m: Mbuf, flush_at: u64) {
        let p = usize::from(p);
        if self.staged[p].is_empty() {
            self.deadline[p] = flush_at;
        }
        let _ = self.staged[p].push(m);
        if self.staged[p].is_full() {
            self.flush(p);
        }
    }

    /// Stages mirrored copy `m` of the session in counter slot `slot` for port `p`, marked
    /// so that a refusal by the transmit queue is counted in that session.
    #[inline]
    fn stage_copy(&mut self, p: u16, m: Mbuf, slot: u8, flush_at: u64) {
        if let Some(c) = self
            .copy_out
            .get_mut(usize::from(p))
            .and_then(Option::as_mut)
        {
            if c.staged.is_empty() {
                c.deadline = flush_at;
            }
            c.slots[c.staged.len() % BURST] = slot;
            let _ = c.staged.push(m);
            if c.staged.is_full() {
                self.flush_copies(usize::from(p));
            }
            return;
        }
        let (i, k) = (usize::from(p), self.staged[usize::from(p)].len());
        if k < BURST {
            self.copy_mask[i] |= 1 << k;
            self.copy_slot[i][k] = slot;
        }
        self.stage(p, m, flush_at);
    }

    /// Transmits port `p`'s staging burst.
    #[inline]
    fn flush(&mut self, p: usize) {
        let b = &mut self.staged[p];
        let n = self.tx[p].tx_burst(b);
        self.lc.tx += n as u64;
        let refused = b.len();
        if p >= self.first_tap {
            self.lc.host_queue_full += refused as u64;
        } else {
            self.lc.tx_full += refused as u64;
        }
        b.clear();
        self.deadline[p] = u64::MAX;
        if self.copy_mask[p] != 0 {
            if refused > 0 {
                self.count_refused_copies(p, n, refused);
            }
            self.copy_mask[p] = 0;
        }
    }

    /// Sends port `p`'s copies staged for its [`CopySocket`]; what the socket refuses (its
    /// send buffer full of copies still in flight) is freed and counted in each session's
    /// and the port-wide `tx_full`.
    fn flush_copies(&mut self, p: usize) {
        let Some(c) = self.copy_out[p].as_mut() else {
            return;
        };
        let n = c.socket.send(c.staged.as_slice());
        let len = c.staged.len();
        self.lc.tx += n as u64;
        self.lc.tx_full += (len - n) as u64;
        for &s in &c.slots[n..len] {
            self.refused[usize::from(s) % MAX_MIRROR_SESSIONS] += 1;
            self.refused_any = true;
        }
        // The kernel copied what it took: every mbuf is freed here.
        c.staged.clear();
        c.deadline = u64::MAX;
    }

    /// Counts, per session, the copies among staged packets `sent..sent + refused` of port
    /// `p` (those its transmit queue refused).
    #[cold]
    fn count_refused_copies(&mut self, p: usize, sent: usize, refused: usize) {
        for k in sent..(sent + refused).min(BURST) {
            if self.copy_mask[p] & (1 << k) != 0 {
                let s = usize::from(self.copy_slot[p][k]) % MAX_MIRROR_SESSIONS;
                self.refused[s] += 1;
                self.refused_any = true;
            }
        }
    }

    /// Moves the refused copies counted since the last call into `counters` (each session's
    /// `tx_full`), before they are published.
    #[inline]
    fn take_refused_copies(&mut self, counters: &mut crate::pipeline::Counters) {
        if !self.refused_any {
            return;
        }
        for (m, r) in counters.mirror.iter_mut().zip(&mut self.refused) {
            m[MirrorCounter::TxFull as usize] += std::mem::take(r);
        }
        self.refused_any = false;
    }

    /// Flushes every non-empty burst whose deadline passed, or all of them when `all`.
    #[inline]
    fn flush_due(&mut self, tsc: u64, all: bool) {
        for p in 0..self.staged.len() {
            if !self.staged[p].is_empty() && (all || tsc >= self.deadline[p]) {
                self.flush(p);
            }
            if let Some(c) = &self.copy_out[p] {
                if !c.staged.is_empty() && (all || tsc >= c.deadline) {
                    self.flush_copies(p);
                }
            }
        }
    }
}

/// Where packets go besides the pipeline's verdicts: handoffs to owning workers and the
/// exception path. Read-only during the loop.
struct Routing {
    me: usize,
    workers: usize,
    handoff_out: Vec<Arc<Ring>>,
    port_index_by_id: Vec<u16>,
    /// Port index -> DPDK port id (the inverse of `port_index_by_id`), stamped on handed-off
    /// mbufs so the owner knows their port.
    port_id_by_index: Vec<u16>,
    host: HostPath,
}

/// Publishes everything the control plane reads.
fn publish_all(stats: &WorkerStats, pipeline: &mut Pipeline, out: &mut TxStage, snap: &Snapshot) {
    out.take_refused_copies(&mut pipeline.counters);
    let lc = &out.lc;
    stats.publish(pipeline, lc);
    stats.publish_appliances(
        &pipeline.counters,
        snap.appliances.len(),
        snap.rule_at.len(),
    );
}

/// Runs the worker loop until `stop` is set. Returns the pipeline for final reporting.
pub fn run(mut w: WorkerSetup) -> Pipeline {
    let hz = lcore::tsc_hz().max(1);
    let start = lcore::rdtsc();
    let mut turns = 0u32;
    // The TAPs follow the config ports, one `tap_of` entry each.
    let first_tap = w.host_path.tap_of.len();
    let mut out = TxStage::new(
        std::mem::take(&mut w.tx),
        std::mem::take(&mut w.copy_sockets),
        first_tap,
        w.workers,
    );
    let mut port_id_by_index = vec![0u16; out.tx.len()];
    for (id, &index) in w.port_index_by_id.iter().enumerate() {
        if let Some(slot) = port_id_by_index.get_mut(usize::from(index)) {
            *slot = id as u16;
        }
    }
    let routing = Routing {
        me: w.index,
        workers: w.workers,
        handoff_out: std::mem::take(&mut w.handoff_out),
        port_index_by_id: std::mem::take(&mut w.port_index_by_id),
        port_id_by_index,
        host: std::mem::take(&mut w.host_path),
    };
    let mut snap = w.snapshot.load_full();
    let mut rx_burst: MbufBurst<BURST> = MbufBurst::new();
    let mut last_rx = start;
    let mut published_gen = u64::MAX;
    let mut last_full_publish = start;
    if w.idle_sleep.is_some() {
        // Sleeps as short as asked: the default timer slack (50 us) would add to every
        // wake-up after idle.
        // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only this thread's slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64);
        }
    }

    while !w.stop.load(Relaxed) {
        let tsc = lcore::rdtsc();
        let now = w.clock.secs_at(tsc);
        {
            let cur = w.snapshot.load();
            if cur.generation != snap.generation {
                snap = arc_swap::Guard::into_inner(cur);
                if snap.timeouts != *w.pipeline.flows().timeouts() {
                    w.pipeline.flows_mut().set_group_timeouts(&snap.timeouts);
                }
            }
        }
        let flush_at = tsc + w.tx_flush_cycles;

        let mut got = 0;
        // A full burst from any queue: more may be waiting (keep batching the TX side).
        let mut backlog = false;
        for (port_idx, q) in w.rx.iter_mut() {
            let n = q.rx_burst(&mut rx_burst);
            backlog |= n == BURST;
            if n > 0 {
                got += n;
                out.lc.rx += n as u64;
                let port = Some(*port_idx);
                process_burst(
                    &mut w.pipeline,
                    &snap,
                    &mut rx_burst,
                    port,
                    &routing,
                    &mut out,
                    now,
                    flush_at,
                );
            }
        }
        if let Some(ring) = &w.handoff_in {
            let n = ring.dequeue_burst(&mut rx_burst);
            backlog |= n == BURST;
            if n > 0 {
                got += n;
                process_burst(
                    &mut w.pipeline,
                    &snap,
                    &mut rx_burst,
                    None,
                    &routing,
                    &mut out,
                    now,
                    flush_at,
                );
            }
        }
        // Every queue came back short of a burst: the worker has caught up, and what it staged
        // leaves now instead of waiting for company (at 1 Mpps, filling a burst of 32 would
        // add ~30 us). Under a backlog the bursts fill by themselves; the deadline covers a
        // port that only gets a trickle from a busy worker.
        out.flush_due(tsc, !backlog);
        turns = turns.wrapping_add(1);
        if got == 0 || turns.is_multiple_of(DUMP_POLL_EVERY) {
            if let Ok(req) = w.dumps.try_recv() {
                flow_dump::serve(&w.pipeline, req, now);
            }
        }

        if got > 0 {
            last_rx = tsc;
            w.stats.publish(&w.pipeline, &out.lc);
        } else {
            // Idle: reclaim expired flows a little at a time.
            w.pipeline.flows_mut().expire_step(now, 64);
        }
        // Everything else (per-appliance counters, flow-table occupancy) every 100 ms and on
        // a new snapshot, busy or not: a gateway under constant load must still report.
        if published_gen != snap.generation || tsc.wrapping_sub(last_full_publish) > hz / 10 {
            publish_all(&w.stats, &mut w.pipeline, &mut out, &snap);
            // Proof of life for the control loop (a stalled worker withdraws the BGP
            // announcement): it changes every 100 ms while the loop turns.
            w.stats.heartbeat.store(tsc, Relaxed);
            published_gen = snap.generation;
            last_full_publish = tsc;
        }
        if got == 0 {
            if let Some(limit) = w.idle_exit_cycles {
                if out.lc.rx > 0 && tsc.wrapping_sub(last_rx) > limit {
                    break;
                }
            }
            // Idle for a while (and everything staged has left: a turn without packets
            // flushes all): yield the core until the next look. Under load a turn always
            // has packets, so the loop never gets here and polls as before.
            if let Some(d) = w.idle_sleep {
                if tsc.wrapping_sub(last_rx) > w.idle_after_cycles {
                    std::thread::sleep(d);
                }
            }
        }
    }
    out.flush_due(0, true);
    publish_all(&w.stats, &mut w.pipeline, &mut out, &snap);
    w.pipeline
}

/// Processes one received burst. `in_port` is `None` for handoff packets (their port is in
/// the mbuf); those are already on their owner and are never handed off again.
///
/// A burst from the kernel leaves as the kernel built it, out the paired port. Otherwise
/// the pipeline decides every packet in one pass ([`Pipeline::process_burst_shared`] with
/// more than one worker: the same parse finds each packet's owner), then packets are staged
/// in arrival order and those owned by another worker are gathered per owner and enqueued on
/// its ring once per burst.
#[allow(clippy::too_many_arguments)]
#[inline]
fn process_burst(
    pipeline: &mut Pipeline,
    snap: &Snapshot,
    burst: &mut MbufBurst<BURST>,
    in_port: Option<u16>,
    r: &Routing,
    out: &mut TxStage,
    now: u32,
    flush_at: u64,
) {
    let n = burst.len();
    let mut ports = [0u16; BURST];
    let mut verdicts = [Verdict::ToHost; BURST];
    // Bit i: packet i was decapsulated (the after-inspection copy point).
    let mut decapsulated = 0u64;
    // Mirrored copies, made only while a session exists.
    let mut copies: Option<HeldCopies> = None;
    match in_port {
        Some(port) => {
            // From the kernel: out the paired port as the kernel built it.
            if let Some(phys) = r.host.phys_of.get(usize::from(port)).copied().flatten() {
                burst.as_mut_slice().reverse();
                while let Some(m) = burst.pop() {
                    out.stage(phys, m, flush_at);
                }
                return;
            }
            ports[..n].fill(port);
            if r.workers > 1 {
                // The pipeline's first pass reads each mbuf header for the data address:
                // start those loads for the whole burst first, so that their cache misses
                // overlap (perf harness, preloaded cold packets, 2 workers steered: 0.44x of
                // one worker without this prefetch, 0.77-0.87x with it).
                for m in burst.as_slice() {
                    crate::flow_table::prefetch_line(m.as_ptr());
                }
            }
            let share = Share {
                me: r.me as u16,
                workers: r.workers as u16,
            };
            let (bufs, v) = (burst.as_mut_slice(), &mut verdicts[..n]);
            match (snap.mirror_before, r.workers > 1) {
                // Copies of what arrives, made in the pipeline's own pass (one parse per
                // packet; the receiving worker copies handed-off packets too), held until
                // the originals are staged, so that a full port refuses copies first.
                (true, shared) => {
                    let held = copies.get_or_insert_with(HeldCopies::new);
                    let emit = &mut |m, p, s| held.hold(m, p, s);
                    if shared {
                        pipeline
                            .process_burst_shared_mirrored(snap, bufs, port, now, share, v, emit);
                    } else {
                        pipeline.process_burst_mirrored(snap, bufs, port, now, v, emit);
                    }
                }
                (false, true) => pipeline.process_burst_shared(snap, bufs, port, now, share, v),
                (false, false) => pipeline.process_burst(snap, bufs, port, now, v),
            }
            decapsulated = pipeline.decapsulated_mask();
        }
        None => {
            for (p, m) in ports.iter_mut().zip(burst.as_slice()) {
                *p = r
                    .port_index_by_id
                    .get(usize::from(m.port().0))
                    .copied()
                    .unwrap_or(u16::MAX);
            }
            // Runs of packets from the same port, each decided as one burst.
            let mut i = 0;
            while i < n {
                let port = ports[i];
                let end = ports[i..n]
                    .iter()
                    .position(|&p| p != port)
                    .map_or(n, |k| i + k);
                pipeline.process_burst(
                    snap,
                    &mut burst.as_mut_slice()[i..end],
                    port,
                    now,
                    &mut verdicts[i..end],
                );
                decapsulated |= pipeline.decapsulated_mask() << i;
                i = end;
            }
        }
    }
    if snap.mirror_after && decapsulated != 0 {
        let held = copies.get_or_insert_with(HeldCopies::new);
        pipeline.mirror_after(
            snap,
            burst.as_slice(),
            &verdicts[..n],
            decapsulated,
            now,
            &mut |m, p, s| held.hold(m, p, s),
        );
    }
    // Pop from the back after reversing = arrival order, so packets leave in that order.
    burst.as_mut_slice().reverse();
    let mut handed_off = false;
    for (&v, &port) in verdicts[..n].iter().zip(&ports[..n]) {
        let Some(m) = burst.pop() else { break };
        let sent = Sent {
            port,
            now,
            flush_at,
        };
        handed_off |= dispatch(pipeline, snap, v, m, sent, r, out, false);
    }
    if handed_off {
        out.flush_handoffs(&r.handoff_out);
    }
    // The mirrored copies, after the originals.
    if let Some(held) = copies.as_mut() {
        held.stage_all(out, flush_at);
    }
}

/// Where and when a packet being dispatched was received.
#[derive(Clone, Copy)]
struct Sent {
    /// Its arrival port (index).
    port: u16,
    /// The pipeline's clock (seconds).
    now: u32,
    /// The staging deadline (TSC).
    flush_at: u64,
}

/// Sends packet `m` where its verdict `v` says: staged for a port, the host, freed, gathered
/// for its owning worker (then `true`), or split into fragments ([`Verdict::Fragment`],
/// [`Verdict::TxFragments`]). `fragment`: `m` is itself a fragment gwlb made, which is not
/// split again (a fragment too large for its own appliance is dropped, `oversize`).
#[allow(clippy::too_many_arguments)]
#[inline]
fn dispatch(
    pipeline: &mut Pipeline,
    snap: &Snapshot,
    v: Verdict,
    mut m: Mbuf,
    at: Sent,
    r: &Routing,
    out: &mut TxStage,
    fragment: bool,
) -> bool {
    match v {
        Verdict::Tx(p) => out.stage(p, m, at.flush_at),
        Verdict::ToHost => match r.host.tap_of.get(usize::from(at.port)).copied().flatten() {
            Some(tap) => out.stage(tap, m, at.flush_at),
            // No exception path configured: counted (to_host) and freed.
            None => drop(m),
        },
        Verdict::Drop(_) => drop(m),
        Verdict::Handoff(owner) => {
            m.set_port(dpdk_bindings::port::PortId(
                r.port_id_by_index[usize::from(at.port)],
            ));
            let owner = usize::from(owner);
            // Full only when fragments add to a burst's handoffs: send those gathered first.
            if out.handoff[owner].is_full() {
                out.flush_handoffs(&r.handoff_out);
            }
            let _ = out.handoff[owner].push(m);
            return true;
        }
        Verdict::TxFragments(port) => {
            let mtu = snap.ports[usize::from(port)].mtu;
            pipeline.fragment(&m, mtu, &mut |f| {
                out.stage(port, f, at.flush_at);
                true
            });
        }
        Verdict::Fragment(max) if !fragment => {
            return fragment_and_process(pipeline, snap, m, max, at, r, out);
        }
        Verdict::Fragment(_) => {
            pipeline.counters.drops[DropReason::Oversize.index()] += 1;
            drop(m);
        }
    }
    false
}

/// Splits user packet `m` into fragments of at most `max` bytes ([`Verdict::Fragment`]) and
/// processes them as a burst received on its port, then dispatches each. Whether any was
/// gathered for another worker.
#[cold]
fn fragment_and_process(
    pipeline: &mut Pipeline,
    snap: &Snapshot,
    m: Mbuf,
    max: u16,
    at: Sent,
    r: &Routing,
    out: &mut TxStage,
) -> bool {
    let mut frags: MbufBurst<MAX_FRAGMENTS> = MbufBurst::new();
    let split = pipeline.fragment(&m, max, &mut |f| frags.push(f).is_ok());
    drop(m);
    if !split {
        // Counted (oversize); the fragments made are freed with `frags`.
        return false;
    }
    let k = frags.len();
    let mut verdicts = [Verdict::ToHost; MAX_FRAGMENTS];
    if r.workers > 1 {
        let share = Share {
            me: r.me as u16,
            workers: r.workers as u16,
        };
        let v = &mut verdicts[..k];
        pipeline.process_burst_shared(snap, frags.as_mut_slice(), at.port, at.now, share, v);
    } else {
        pipeline.process_burst(
            snap,
            frags.as_mut_slice(),
            at.port,
            at.now,
            &mut verdicts[..k],
        );
    }
    frags.as_mut_slice().reverse();
    let mut handed_off = false;
    for &v in &verdicts[..k] {
        let Some(f) = frags.pop() else { break };
        handed_off |= dispatch(pipeline, snap, v, f, at, r, out, true);
    }
    handed_off
}

/// Most mirrored copies one burst may make (two sessions copying every packet of a full
/// burst); more are refused and counted (`no_buffer`).
const MAX_HELD_COPIES: usize = 2 * BURST;

/// The mirrored copies of one burst, held until its originals are staged.
struct HeldCopies {
    copies: MbufBurst<MAX_HELD_COPIES>,
    ports: [u16; MAX_HELD_COPIES],
    /// Each copy's session counter slot.
    slots: [u8; MAX_HELD_COPIES],
}

impl HeldCopies {
    fn new() -> Self {
        HeldCopies {
            copies: MbufBurst::new(),
            ports: [0; MAX_HELD_COPIES],
            slots: [0; MAX_HELD_COPIES],
        }
    }

    /// Holds copy `m` of the session in counter slot `slot` for port `port`; `false` (and
    /// `m` freed) when full.
    fn hold(&mut self, m: Mbuf, port: u16, slot: u8) -> bool {
        let k = self.copies.len();
        match self.copies.push(m) {
            Ok(()) => {
                self.ports[k] = port;
                self.slots[k] = slot;
                true
            }
            Err(m) => {
                drop(m);
                false
            }
        }
    }

    /// Stages every held copy on its port, in the order they were made.
    fn stage_all(&mut self, out: &mut TxStage, flush_at: u64) {
        let n = self.copies.len();
        self.copies.as_mut_slice().reverse();
        for i in 0..n {
            if let Some(m) = self.copies.pop() {
                out.stage_copy(self.ports[i], m, self.slots[i], flush_at);
            }
        }
    }
}
