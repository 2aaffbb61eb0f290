//! The per-packet decision, independent of DPDK: every packet a worker receives comes out
//! encapsulated toward an appliance, decapsulated toward its next hop, handed to the host, or
//! dropped with a counted [`DropReason`].
//!
//! One [`Pipeline`] per worker: it owns the worker's flow-table shard and counters and reads
//! the shared [`Snapshot`]. Nothing here allocates, locks or writes shared memory.

use crate::config::{CopyPoint, UnknownNonSyn};
use crate::decap;
use crate::decap::VlanTags;
use crate::encap::EncapError;
use crate::flow::{Direction, FlowKey};
use crate::flow_table::{
    flow_cookie, is_flow_cookie, prefetch_line, FlowEntry, FlowTable, FlowTableError, ProtoClass,
    Timeouts, COOKIE_INSTANCES,
};
use crate::fragment::FragmentError;
use crate::mirror::MirrorCounter;
use crate::packet_buf::PacketBuf;
use crate::parse::{self, proto, DropReason, ParsedPacket, TcpFlags, L3};
use crate::policy::Action;
use crate::snapshot::{ApplianceState, NoNextHop, Snapshot};
use crate::steering::{self, ExistingFlow};
use crate::tcp_reset;
use crate::too_big;
use crate::wire::IpAddrBytes;
use crate::wire::{ethernet, icmp};

/// What to do with a packet after [`Pipeline::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit on this port index (the buffer has been rewritten).
    Tx(u16),
    /// For the gateway itself (ARP, ND, ICMP echo, health-check sessions): the kernel's
    /// exception path.
    ToHost,
    /// Drop; counted under the reason.
    Drop(DropReason),
    /// Another worker's flow: hand the packet, unchanged, to worker `0` (its index). Only
    /// [`Pipeline::process_burst_shared`] decides this; the owner processes and counts it.
    Handoff(u16),
    /// An IPv4 user packet without DF, too large to encapsulate toward its appliance: split
    /// it with [`Pipeline::fragment`] into fragments of at most `0` bytes (IP) and process
    /// each like a packet received on the same port (they are fragments, keyed as such).
    /// The packet itself is unchanged.
    Fragment(u16),
    /// A decapsulated IPv4 packet without DF, rewritten for port `0` but larger than its MTU
    /// (`Snapshot::ports`): split it with [`Pipeline::fragment`] into fragments of at most
    /// that MTU and transmit each on the port. (The port alone keeps `Verdict` at 4 bytes.)
    TxFragments(u16),
}

/// The workers that share a node's flows, as one of them sees it: each flow belongs to the
/// worker [`Share::owner`] names, and only that worker keeps its flow-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// This worker's index.
    pub me: u16,
    /// How many workers there are (at least 1).
    pub workers: u16,
}

impl Share {
    /// The worker that owns flows of flow-table hash `hash` (the low 32 bits of the flow
    /// hash, as [`owner_hash`] returns it).
    #[inline(always)]
    pub fn owner(self, hash: u32) -> u16 {
        (hash % u32::from(self.workers.max(1))) as u16
    }
}

/// Per-worker counters. Plain integers: the worker publishes them once per burst.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Packets processed.
    pub processed: u64,
    /// Packets encapsulated toward an appliance.
    pub encapsulated: u64,
    /// Appliance returns decapsulated and forwarded.
    pub decapsulated: u64,
    /// Packets forwarded uninspected (fail-open).
    pub fail_open: u64,
    /// Packets forwarded uninspected by a steering rule (`bypass`).
    pub bypassed: u64,
    /// Packets for the host.
    pub to_host: u64,
    /// New flows admitted.
    pub new_flows: u64,
    /// Flows moved to another appliance (rebalance, drain expiry).
    pub rebalanced_flows: u64,
    /// TCP connections started on the 5-tuple of a closed or long idle flow
    /// ([`steering::starts_new_connection`]): new flows with the next cookie, also counted
    /// in `new_flows`.
    pub restarted_flows: u64,
    /// TCP flows started by a packet that does not open a connection (no SYN, or SYN+ACK),
    /// admitted under `tcp_unknown_non_syn = "admit"`: connections picked up mid-stream
    /// after a restart or an ECMP move. Also counted in `new_flows`.
    pub admitted_non_syn: u64,
    /// TCP resets sent in place of dropped packets (`tcp_rst_on_drop`).
    pub tcp_resets: u64,
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" sent in place of packets too
    /// large to encapsulate (path MTU discovery; [`crate::too_big`]).
    pub icmp_too_big: u64,
    /// IPv4 packets without DF split into fragments because they were too large for the
    /// appliance side or, after decapsulation, for their egress port ([`crate::fragment`]).
    pub fragmented: u64,
    /// Packets of new flows the full flow table could not store: encapsulated toward the
    /// appliance the group's Maglev table picks for the flow (stateless), not counted as
    /// new flows.
    pub table_full: u64,
    /// Appliance returns of flows the table does not hold, accepted because the returning
    /// appliance is the one the group's Maglev table picks for the flow (see
    /// `Pipeline::decapsulate_flow`).
    pub stateless_returns: u64,
    /// Drops by reason, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Packets sent to each appliance slot.
    pub appliance_packets: Box<[u64]>,
    /// Bytes (inner IP) sent to each appliance slot.
    pub appliance_bytes: Box<[u64]>,
    /// New flows given to each appliance slot.
    pub appliance_flows: Box<[u64]>,
    /// Per mirror session (by its slot, [`crate::snapshot::MirrorView::counter`]), its
    /// [`MirrorCounter`]s.
    pub mirror: [[u64; MirrorCounter::COUNT]; MAX_MIRROR_SESSIONS],
    /// Per steering rule (by id, [`crate::policy::RuleIds`]): packets, bytes (IP) and new
    /// flows of the user traffic it decided.
    pub rules: Box<[[u64; 3]]>,
}

impl Counters {
    /// Counters for up to `max_appliances` appliance slots.
    pub fn new(max_appliances: usize) -> Self {
        Self {
            processed: 0,
            encapsulated: 0,
            decapsulated: 0,
            fail_open: 0,
            bypassed: 0,
            to_host: 0,
            new_flows: 0,
            rebalanced_flows: 0,
            restarted_flows: 0,
            admitted_non_syn: 0,
            tcp_resets: 0,
            icmp_too_big: 0,
            fragmented: 0,
            table_full: 0,
            stateless_returns: 0,
            drops: [0; DropReason::COUNT],
            appliance_packets: vec![0; max_appliances].into_boxed_slice(),
            appliance_bytes: vec![0; max_appliances].into_boxed_slice(),
            appliance_flows: vec![0; max_appliances].into_boxed_slice(),
            mirror: [[0; MirrorCounter::COUNT]; MAX_MIRROR_SESSIONS],
            rules: vec![[0; 3]; MAX_RULE_SLOTS].into_boxed_slice(),
        }
    }

    /// Total drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Most appliance slots a worker keeps counters for.
pub const MAX_APPLIANCES: usize = 4096;

/// Rule ids a worker keeps counters for: id 0, every rule, every endpoint's default.
pub const MAX_RULE_SLOTS: usize = crate::policy::RuleIds::COUNT;

/// A worker's packet pipeline: flow-table shard plus counters.
#[derive(Debug)]
pub struct Pipeline {
    flows: FlowTable<FlowKey>,
    /// This worker's counters.
    pub counters: Counters,
    /// Per-packet results of the first pass of [`Pipeline::process_burst`] (taken out while
    /// in use).
    burst: Option<Box<BurstScratch>>,
    /// ICMP errors this worker may still send in second [`Pipeline::icmp_second`].
    icmp_left: u32,
    /// The coarse second `icmp_left` belongs to.
    icmp_second: u32,
    /// Bit `i`: packet `i` of the last burst call was decapsulated (see
    /// [`Pipeline::decapsulated_mask`]).
    decapsulated: u64,
    /// Per mirror session, packets selected since its last copy (1-in-N sampling).
    mirror_seen: [u32; MAX_MIRROR_SESSIONS],
}

/// Most mirror sessions (the configuration's limit).
pub const MAX_MIRROR_SESSIONS: usize = crate::config::MAX_MIRROR_SESSIONS;

impl Pipeline {
    /// A pipeline with a flow table of `capacity` flows. All memory is allocated here.
    pub fn new(capacity: usize, timeouts: Timeouts) -> Result<Self, FlowTableError> {
        Ok(Self {
            flows: FlowTable::with_capacity(capacity, timeouts)?,
            counters: Counters::new(MAX_APPLIANCES),
            burst: Some(Box::new(BurstScratch::new())),
            icmp_left: 0,
            icmp_second: u32::MAX,
            decapsulated: 0,
            mirror_seen: [0; MAX_MIRROR_SESSIONS],
        })
    }

    /// Which packets of the last [`Pipeline::process_burst`] (or `_shared`) call were
    /// decapsulated and forwarded: bit `i` for packet `i` (the first 64).
    pub fn decapsulated_mask(&self) -> u64 {
        self.decapsulated
    }

    /// The copy point "before inspection": copies, for every mirror session that selects
    /// them, the user packets of `bufs` (received on `in_port`, not yet processed) to the
    /// session's sensor, through `emit(copy, port, slot)` (`slot`: the session's counter slot,
    /// [`crate::snapshot::MirrorView::counter`]), which returns whether it took the copy
    /// (a copy it refuses is counted `no_buffer`). Call before [`Pipeline::process_burst`]
    /// (`now`: its clock); the originals are only read.
    pub fn mirror_before<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        bufs: &[B],
        in_port: u16,
        now: u32,
        emit: &mut impl FnMut(B, u16, u8) -> bool,
    ) {
        for b in bufs {
            // A chained frame is dropped as `oversize` by the pipeline (it is longer than
            // any port's MTU): no copy of its first segment alone.
            if b.is_segmented() {
                continue;
            }
            let Ok(p) = parse::parse_frame(b.data()) else {
                continue;
            };
            if let Dispatch::User(u) = dispatch(snap, &p, in_port) {
                let at = (in_port, Some(u.zone), CopyPoint::BeforeInspection);
                self.mirror_copies(snap, b, &p, at, now, emit);
            }
        }
    }

    /// The copy point "after inspection": copies the packets of `bufs` that the last burst
    /// call decapsulated (`decapsulated`, from [`Pipeline::decapsulated_mask`]; their
    /// verdicts in `verdicts`) as they leave, selected by the port they leave on.
    pub fn mirror_after<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        bufs: &[B],
        verdicts: &[Verdict],
        decapsulated: u64,
        now: u32,
        emit: &mut impl FnMut(B, u16, u8) -> bool,
    ) {
        for (i, (b, v)) in bufs.iter().zip(verdicts).enumerate().take(64) {
            let Verdict::Tx(out) = *v else { continue };
            if decapsulated & (1 << i) == 0 {
                continue;
            }
            if let Ok(p) = parse::parse_frame(b.data()) {
                // The endpoint, if a session asks: the one the frame, tags restored, belongs
                // to on the port it leaves on.
                let at = (out, None, CopyPoint::AfterInspection);
                self.mirror_copies(snap, b, &p, at, now, emit);
            }
        }
    }

    /// The copies of one packet `p` (in `b`) at `(port, zone, point)`: `port` is the user
    /// port the sessions' port selection looks at, `zone` the packet's endpoint zone (`None`:
    /// found from `port` if a session selects by endpoint), `point` the copy point; `now`
    /// the pipeline's clock.
    fn mirror_copies<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        b: &B,
        p: &ParsedPacket,
        (port, mut zone, point): (u16, Option<u16>, CopyPoint),
        now: u32,
        emit: &mut impl FnMut(B, u16, u8) -> bool,
    ) {
        for m in snap.mirrors.iter().take(MAX_MIRROR_SESSIONS) {
            if m.copy_point != point || !m.selector.selects(p, port) {
                continue;
            }
            if m.selector.by_policy() {
                let z = *zone.get_or_insert_with(|| match dispatch(snap, p, port) {
                    Dispatch::User(u) => u.zone,
                    _ => 0,
                });
                // The rule of the packet's flow (only for sessions that name rules): the
                // one its entry keeps, or, for a flow this worker has no entry of (a new
                // one, or another worker's), what the endpoint's rules decide for it.
                let flows = &self.flows;
                let rule = || {
                    let ep = snap.endpoint(z)?;
                    let (key, h) = flow_of(snap, User { zone: z, group: 0 }, p);
                    Some(match flows.get(&key, h as u32, now) {
                        Some(e) => ep.rule_index(e.rule, &snap.rule_at),
                        None => crate::policy::decide(&snap.rules, ep, p).0,
                    })
                };
                if !m.selector.selects_policy(z, rule) {
                    continue;
                }
            }
            // The session's own slot (kept by name across changes), always in range.
            let s = usize::from(m.counter) % MAX_MIRROR_SESSIONS;
            let seen = &mut self.mirror_seen[s];
            *seen += 1;
            if *seen < m.sample_one_in {
                continue;
            }
            *seen = 0;
            let counters = &mut self.counters.mirror[s];
            let pool = &snap.groups[usize::from(m.group)];
            if pool.backends.is_empty() {
                // No healthy sensor at all: no flow hash to compute.
                counters[MirrorCounter::NoSensor as usize] += 1;
                continue;
            }
            // Both directions of a flow to one sensor: the symmetric flow hash.
            let (_, h) = flow_of(
                snap,
                User {
                    zone: 0,
                    group: m.group,
                },
                p,
            );
            let sensor = pool.pick((h >> 32) as u32).and_then(|slot| {
                let t = m.templates.get(usize::from(slot))?.as_ref()?;
                Some((t, snap.appliances[usize::from(slot)].port))
            });
            let Some((t, out)) = sensor else {
                counters[MirrorCounter::NoSensor as usize] += 1;
                continue;
            };
            // The frame without Ethernet padding.
            let frame =
                &b.data()[..(usize::from(p.l3_offset) + usize::from(p.l3_len)).min(b.data().len())];
            let copied = t.copied_len(frame.len(), m.snap);
            let Some(mut c) = b.alloc_like(t.outer_len() + copied) else {
                counters[MirrorCounter::NoBuffer as usize] += 1;
                continue;
            };
            let direction = if t.carries_direction() {
                m.selector.direction(p)
            } else {
                0
            };
            t.write(c.data_mut(), frame, copied, h as u32, direction);
            if emit(c, out, s as u8) {
                counters[MirrorCounter::Packets as usize] += 1;
                counters[MirrorCounter::Bytes as usize] += copied as u64;
            } else {
                counters[MirrorCounter::NoBuffer as usize] += 1;
            }
        }
    }

    /// The flow table (for dumps and occupancy).
    pub fn flows(&self) -> &FlowTable<FlowKey> {
        &self.flows
    }

    /// Mutable flow table (for expiry steps and timeout changes).
    pub fn flows_mut(&mut self) -> &mut FlowTable<FlowKey> {
        &mut self.flows
    }

    /// Processes one frame received on port `in_port` at time `now` (coarse seconds).
    #[inline]
    pub fn process<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        in_port: u16,
        now: u32,
    ) -> Verdict {
        let v = self.classify(snap, buf, in_port, now);
        self.count(v);
        v
    }

    /// Counts a packet this worker processed, under its verdict.
    #[inline(always)]
    fn count(&mut self, v: Verdict) {
        self.counters.processed += 1;
        match v {
            Verdict::Drop(r) => self.counters.drops[r.index()] += 1,
            Verdict::ToHost => self.counters.to_host += 1,
            Verdict::Tx(_)
            | Verdict::Handoff(_)
            | Verdict::Fragment(_)
            | Verdict::TxFragments(_) => {}
        }
    }

    /// Splits the IPv4 packet in `buf` (left unchanged) into fragments of at most
    /// `max_ip_len` bytes, as a [`Verdict::Fragment`] or [`Verdict::TxFragments`] asked,
    /// handing each to `sink` (which returns whether it took it). Counted `fragmented`, or,
    /// when the packet cannot be split (IP options, no buffer; see [`crate::fragment`]),
    /// dropped as `oversize`; `false` then, and the caller drops the fragments it took.
    #[cold]
    pub fn fragment<B: PacketBuf>(
        &mut self,
        buf: &B,
        max_ip_len: u16,
        sink: &mut impl FnMut(B) -> bool,
    ) -> bool {
        let split = parse::parse_frame(buf.data())
            .map_err(|_| FragmentError::NotFragmentable)
            .and_then(|p| crate::fragment::split(buf, &p, usize::from(max_ip_len), sink));
        match split {
            Ok(_) => {
                self.counters.fragmented += 1;
                true
            }
            Err(_) => {
                self.counters.drops[DropReason::Oversize.index()] += 1;
                false
            }
        }
    }

    /// Processes a burst of frames received on port `in_port`: `verdicts[i]` is the verdict
    /// of `bufs[i]`, and buffers, verdicts, counters and flow table end up exactly as after
    /// [`Pipeline::process`] on each packet in order (`verdicts` must be at least as long as
    /// `bufs`).
    ///
    /// Works in [`BURST_MAX`] chunks, in three passes so that the flow-table cache misses of
    /// a burst overlap instead of queueing behind each other: (1) parse, dispatch and hash
    /// every packet and prefetch both candidate tag lines of its flow; (2) prefetch the
    /// matching slots; (3) look up / insert, encapsulate or decapsulate in arrival order.
    /// Nothing in passes 1-2 depends on the flow table, so the order of table operations and
    /// every result are those of the per-packet path.
    pub fn process_burst<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        bufs: &mut [B],
        in_port: u16,
        now: u32,
        verdicts: &mut [Verdict],
    ) {
        self.burst_chunks(
            snap,
            bufs,
            in_port,
            now,
            None,
            None::<&mut fn(B, u16, u8) -> bool>,
            verdicts,
        );
    }

    /// [`Pipeline::process_burst`] with the before-inspection mirror copies made in the same
    /// pass (what [`Pipeline::mirror_before`] then `process_burst` do, without parsing and
    /// dispatching each packet twice): between the pass that parses and plans the burst and
    /// the one that rewrites it, each user packet is offered to the sessions, and its copies
    /// go to `emit` (as for `mirror_before`). For a worker that owns every flow it receives
    /// (with several workers: [`Pipeline::process_burst_shared_mirrored`]).
    pub fn process_burst_mirrored<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        bufs: &mut [B],
        in_port: u16,
        now: u32,
        verdicts: &mut [Verdict],
        emit: &mut impl FnMut(B, u16, u8) -> bool,
    ) {
        self.burst_chunks(snap, bufs, in_port, now, None, Some(emit), verdicts);
    }

    /// [`Pipeline::process_burst`] on a worker that shares the node's flows with others
    /// (`share`): a packet of a flow another worker owns is left unchanged, uncounted and
    /// untouched by this worker's flow table, with the verdict [`Verdict::Handoff`] naming
    /// its owner, decided by the same first pass that parses it for processing (one parse
    /// per packet). Packets for the host go to worker 0, which owns the exception path;
    /// packets dropped before any flow is known (unparseable, no route, a refused return)
    /// are dropped and counted here. The rest is processed as by `process_burst`, and the
    /// owners then see exactly the packets [`owner_hash`] would give them.
    pub fn process_burst_shared<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        bufs: &mut [B],
        in_port: u16,
        now: u32,
        share: Share,
        verdicts: &mut [Verdict],
    ) {
        self.burst_chunks(
            snap,
            bufs,
            in_port,
            now,
            Some(share),
            None::<&mut fn(B, u16, u8) -> bool>,
            verdicts,
        );
    }

    /// [`Pipeline::process_burst_shared`] that also makes the before-inspection mirror
    /// copies in its own pass, as [`Pipeline::process_burst_mirrored`] does: of every user
    /// packet received, handed-off ones included (their owner, receiving them through its
    /// handoff ring, makes none).
    #[allow(clippy::too_many_arguments)]
    pub fn process_burst_shared_mirrored<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        bufs: &mut [B],
        in_port: u16,
        now: u32,
        share: Share,
        verdicts: &mut [Verdict],
        emit: &mut impl FnMut(B, u16, u8) -> bool,
    ) {
        self.burst_chunks(snap, bufs, in_port, now, Some(share), Some(emit), verdicts);
    }

    /// Runs [`Pipeline::burst_chunk`] over [`BURST_MAX`] chunks of `bufs`; `copies`: where
    /// before-inspection mirror copies go, if this pass makes them.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn burst_chunks<B: PacketBuf, E: FnMut(B, u16, u8) -> bool>(
        &mut self,
        snap: &Snapshot,
        bufs: &mut [B],
        in_port: u16,
        now: u32,
        share: Option<Share>,
        mut copies: Option<&mut E>,
        verdicts: &mut [Verdict],
    ) {
        assert!(verdicts.len() >= bufs.len(), "one verdict per buffer");
        self.decapsulated = 0;
        let Some(mut sc) = self.burst.take() else {
            // Unreachable (the scratch is always put back); stay correct anyway.
            for (b, v) in bufs.iter_mut().zip(verdicts.iter_mut()) {
                *v = self.process(snap, b, in_port, now);
            }
            return;
        };
        for (k, (bufs, verdicts)) in bufs
            .chunks_mut(BURST_MAX)
            .zip(verdicts.chunks_mut(BURST_MAX))
            .enumerate()
        {
            let copies = copies.as_deref_mut();
            self.burst_chunk(&mut sc, snap, bufs, in_port, now, share, copies, verdicts);
            if snap.mirror_after {
                // Which returns were forwarded, for the after-inspection copies: kept out of
                // the per-packet loop, whose code it slows by 10-16 instructions a packet
                // (callgrind) even when nobody mirrors.
                let mut m = 0u64;
                for (i, (plan, v)) in sc.plan.iter().zip(verdicts.iter()).enumerate() {
                    if matches!(plan, Plan::Return(_)) && matches!(v, Verdict::Tx(_)) {
                        m |= 1 << i;
                    }
                }
                self.decapsulated |= m.checked_shl((k * BURST_MAX) as u32).unwrap_or(0);
            }
        }
        self.burst = Some(sc);
    }

    /// One chunk of at most [`BURST_MAX`] packets of [`Pipeline::process_burst`] (and of
    /// [`Pipeline::process_burst_shared`] when `share` is set).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn burst_chunk<B: PacketBuf, E: FnMut(B, u16, u8) -> bool>(
        &mut self,
        sc: &mut BurstScratch,
        snap: &Snapshot,
        bufs: &mut [B],
        in_port: u16,
        now: u32,
        share: Option<Share>,
        copies: Option<&mut E>,
        verdicts: &mut [Verdict],
    ) {
        let n = bufs.len();
        for b in bufs.iter() {
            prefetch_data(b.data());
        }
        // Whose flow of hash `h` is: `None` for this worker's own.
        let elsewhere = |h: u64| {
            share.and_then(|s| {
                let w = s.owner(h as u32);
                (w != s.me).then_some(w)
            })
        };
        for (i, b) in bufs.iter().enumerate() {
            let p = &mut sc.parsed[i];
            let parsed = if b.is_segmented() {
                Err(DropReason::Oversize)
            } else {
                parse::parse_frame_into(b.data(), p)
            };
            sc.plan[i] = match parsed {
                Err(r) => Plan::Done(Verdict::Drop(received_error(snap, b.data(), in_port, r))),
                Ok(()) => match dispatch(snap, p, in_port) {
                    Dispatch::Host => Plan::Done(for_host(share)),
                    Dispatch::NoRoute => Plan::Done(Verdict::Drop(DropReason::NoRoute)),
                    Dispatch::NoEndpoint => Plan::Done(Verdict::Drop(DropReason::NoEndpoint)),
                    Dispatch::User(user) => {
                        let (key, hash) = flow_of(snap, user, p);
                        if let Some(w) = elsewhere(hash) {
                            Plan::Done(Verdict::Handoff(w))
                        } else {
                            self.flows.prefetch(hash as u32);
                            Plan::Encap { user, key, hash }
                        }
                    }
                    Dispatch::Return => {
                        match return_flow(snap, b.data(), p, in_port, &mut sc.inner[i]) {
                            Ok(Returned::Probe) => Plan::Done(for_host(share)),
                            Ok(Returned::Flow(r)) => match elsewhere(r.hash) {
                                Some(w) => Plan::Done(Verdict::Handoff(w)),
                                None => {
                                    self.flows.prefetch(r.hash as u32);
                                    Plan::Return(r)
                                }
                            },
                            Err(r) => Plan::Done(Verdict::Drop(r)),
                        }
                    }
                },
            };
        }
        for plan in &sc.plan[..n] {
            if let Plan::Encap { hash, .. } | Plan::Return(Return { hash, .. }) = plan {
                self.flows.prefetch_slots(*hash as u32);
            }
        }
        if let Some(emit) = copies {
            // The before-inspection copies, from the packets as received and parsed.
            for (i, b) in bufs.iter().enumerate() {
                let user = match sc.plan[i] {
                    Plan::Encap { user, .. } => user,
                    // Handed off unchanged: its copies are this worker's to make, if it is user
                    // traffic (not a return). Dispatched again from the parse (not stored in
                    // the plan, which costs every burst instructions even unmirrored).
                    Plan::Done(Verdict::Handoff(_)) => match dispatch(snap, &sc.parsed[i], in_port)
                    {
                        Dispatch::User(user) => user,
                        _ => continue,
                    },
                    _ => continue,
                };
                let at = (in_port, Some(user.zone), CopyPoint::BeforeInspection);
                self.mirror_copies(snap, b, &sc.parsed[i], at, now, emit);
            }
        }
        for (i, (b, v)) in bufs.iter_mut().zip(verdicts.iter_mut()).enumerate() {
            *v = match sc.plan[i] {
                // Another worker's: it counts the packet when it processes it.
                Plan::Done(h @ Verdict::Handoff(_)) => {
                    *v = h;
                    continue;
                }
                Plan::Done(d) => d,
                Plan::Encap { user, key, hash } => {
                    self.encapsulate_keyed(snap, b, &sc.parsed[i], user, in_port, key, hash, now)
                }
                Plan::Return(ref r) => self.decapsulate_flow(snap, b, r, &sc.inner[i], now),
            };
            self.count(*v);
        }
    }

    fn classify<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        in_port: u16,
        now: u32,
    ) -> Verdict {
        if buf.is_segmented() {
            return Verdict::Drop(DropReason::Oversize);
        }
        let p = match parse::parse_frame(buf.data()) {
            Ok(p) => p,
            Err(r) => return Verdict::Drop(received_error(snap, buf.data(), in_port, r)),
        };
        match dispatch(snap, &p, in_port) {
            Dispatch::Host => Verdict::ToHost,
            Dispatch::Return => self.decapsulate(snap, buf, &p, in_port, now),
            Dispatch::User(u) => self.encapsulate(snap, buf, &p, u, in_port, now),
            Dispatch::NoRoute => Verdict::Drop(DropReason::NoRoute),
            Dispatch::NoEndpoint => Verdict::Drop(DropReason::NoEndpoint),
        }
    }

    fn encapsulate<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        p: &ParsedPacket,
        user: User,
        in_port: u16,
        now: u32,
    ) -> Verdict {
        let (key, h) = flow_of(snap, user, p);
        self.encapsulate_keyed(snap, buf, p, user, in_port, key, h, now)
    }

    /// [`Pipeline::encapsulate`] with the flow key and hash already computed.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn encapsulate_keyed<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        p: &ParsedPacket,
        user: User,
        in_port: u16,
        key: FlowKey,
        h: u64,
        now: u32,
    ) -> Verdict {
        let (table_hash, lb_hash) = (h as u32, (h >> 32) as u32);
        let zone = user.zone;
        // The group of an existing flow: the one that decided it (an endpoint's rules may
        // have chosen any of its groups); a group's own user traffic, its port's.
        let group_of = |e: &FlowEntry| if zone == 0 { user.group } else { e.group };

        // A TCP SYN on the tuple of a closed (or long idle) flow starts the next connection:
        // a new flow, whose entry replaces the old one's (`restart` holds its instance).
        let mut restart = None;
        let found = match self.flows.lookup_idle(&key, table_hash, now) {
            // Established TCP data and everything else: one test of the flags.
            Some((e, _))
                if p.tcp_flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) == 0 =>
            {
                Some(e)
            }
            Some((e, idle)) if p.protocol == parse::proto::TCP => {
                let flags = p.tcp_flags.0;
                let reuse_idle = snap
                    .groups
                    .get(usize::from(group_of(e)))
                    .map_or(u32::MAX, |g| g.tcp_reuse_idle);
                if steering::starts_new_connection(flags, e.closed(), idle, reuse_idle) {
                    restart = Some(e.instance().wrapping_add(1) % COOKIE_INSTANCES);
                    None
                } else {
                    if flags & (TcpFlags::FIN | TcpFlags::RST) != 0 {
                        e.set_closed();
                    }
                    Some(e)
                }
            }
            found => found.map(|(e, _)| e),
        };
        let ip_len = usize::from(p.l3_len);
        // The slot, its appliance and the flow's cookie, indexed once.
        let (slot, a, cookie) = match found {
            // A chained flow's reply visits the chain from its last stage.
            Some(e) if e.is_chained() && direction_of(snap, e.group, p) != e.opened() => {
                let (id, cookie, class, first) = (e.rule, e.cookie, e.class(), e.group);
                let Some(ep) = snap.endpoint(zone) else {
                    return Verdict::Drop(DropReason::ApplianceGone);
                };
                let counted = ep.counted_id(id, &snap.rule_at);
                count_rule(&mut self.counters.rules, counted, ip_len, false);
                // The flow's rule must still be a chain from the flow's first group (a live
                // change can edit or remove it: see `chain_of`).
                let Some(c) = chain_of(snap, ep.rule_index(id, &snap.rule_at), first) else {
                    return Verdict::Drop(DropReason::ApplianceGone);
                };
                let at = ChainAt {
                    key,
                    hash: h,
                    zone,
                    rule: id,
                    cookie,
                    class,
                };
                let last = c.groups().len() - 1;
                let (l2_len, v6) = (usize::from(p.l2_len), p.l3 == L3::Ipv6);
                return self.send_to_stage(snap, buf, l2_len, ip_len, v6, &at, &c, last, now);
            }
            Some(e) if zone != 0 && e.is_bypass() => {
                let id = snap
                    .endpoint(zone)
                    .map_or(0, |ep| ep.counted_id(e.rule, &snap.rule_at));
                count_rule(&mut self.counters.rules, id, ip_len, false);
                return forward(snap, buf, p, zone, &mut self.counters.bypassed);
            }
            Some(e) => {
                if zone != 0 {
                    let id = snap
                        .endpoint(zone)
                        .map_or(0, |ep| ep.counted_id(e.rule, &snap.rule_at));
                    count_rule(&mut self.counters.rules, id, ip_len, false);
                }
                let cookie = e.cookie;
                let Some(g) = snap.groups.get(usize::from(group_of(e))) else {
                    // The group that decided the flow is no longer configured.
                    return Verdict::Drop(DropReason::ApplianceGone);
                };
                let a = &snap.appliances[usize::from(e.appliance)];
                // An entry of an earlier generation names the slot's previous target: gone.
                let state = if e.generation == a.generation {
                    a.state
                } else {
                    ApplianceState::Gone
                };
                match steering::existing_flow(state, g.rebalance, now) {
                    ExistingFlow::Keep => (e.appliance, a, cookie),
                    // The entry stays (and blackholes the flow) until it idles out, so the
                    // flow's remaining packets are never re-steered mid-connection.
                    ExistingFlow::End => {
                        return self.drop_or_reset(
                            g.tcp_rst,
                            buf,
                            p,
                            in_port,
                            DropReason::ApplianceGone,
                        )
                    }
                    ExistingFlow::Move => match g.pick(lb_hash) {
                        Some(s) => {
                            let new = &snap.appliances[usize::from(s)];
                            e.appliance = s;
                            e.generation = new.generation;
                            self.counters.rebalanced_flows += 1;
                            self.counters.appliance_flows[usize::from(s)] += 1;
                            (s, new, cookie)
                        }
                        None => {
                            match steering::when_no_appliance_left(e.generation == a.generation) {
                                ExistingFlow::Keep => (e.appliance, a, cookie),
                                _ => {
                                    return self.drop_or_reset(
                                        g.tcp_rst,
                                        buf,
                                        p,
                                        in_port,
                                        DropReason::ApplianceGone,
                                    )
                                }
                            }
                        }
                    },
                }
            }
            None => {
                // A new flow: an endpoint's rules decide it (once: the entry keeps the
                // decision), a group's own user traffic goes to the group.
                // `rule`: the deciding rule's id (what the entry keeps and counters use).
                let (group, rule, chained) = match snap.endpoint(zone) {
                    None => (user.group, 0, false),
                    // An ICMP error opens no flow of an endpoint: it would be decided on the
                    // flow it quotes, which its sender chooses.
                    Some(_) if p.embedded.is_some() => {
                        return Verdict::Drop(DropReason::IcmpErrorWithoutFlow)
                    }
                    Some(ep) => match crate::policy::decide(&snap.rules, ep, p) {
                        (i, Action::Inspect(g)) => (g, snap.rules[usize::from(i)].id, false),
                        // A chain's first stage; the entry remembers the chain (its rule).
                        (i, Action::Chain(c)) => {
                            (c.groups()[0], snap.rules[usize::from(i)].id, true)
                        }
                        (i, Action::Bypass) => {
                            let rule = snap.rules[usize::from(i)].id;
                            let mut entry = FlowEntry::new(
                                class_of(p.protocol),
                                FlowEntry::BYPASS,
                                ep.timeout_group,
                                table_hash,
                            );
                            entry.rule = rule;
                            let stored = self.store(key, table_hash, entry, restart.is_some(), now);
                            self.counters.new_flows += u64::from(stored);
                            count_rule(&mut self.counters.rules, rule, ip_len, true);
                            return forward(snap, buf, p, zone, &mut self.counters.bypassed);
                        }
                        (i, Action::Drop { reset }) => {
                            let rule = snap.rules[usize::from(i)].id;
                            count_rule(&mut self.counters.rules, rule, ip_len, false);
                            return self.drop_or_reset(
                                reset,
                                buf,
                                p,
                                in_port,
                                DropReason::PolicyDrop,
                            );
                        }
                    },
                };
                let g = &snap.groups[usize::from(group)];
                if g.refuse_non_syn && !opens_connection(p) {
                    let reset = g.non_syn == UnknownNonSyn::Reset;
                    return self.drop_or_reset(reset, buf, p, in_port, DropReason::TcpNonSynNoFlow);
                }
                match g.pick(lb_hash) {
                    Some(s) => {
                        let a = &snap.appliances[usize::from(s)];
                        let (cookie, stored) = match restart {
                            None => {
                                let mut entry =
                                    FlowEntry::new(class_of(p.protocol), s, group, table_hash);
                                entry.generation = a.generation;
                                entry.rule = rule;
                                if chained {
                                    entry.set_chained(direction_of(snap, group, p));
                                }
                                (table_hash, self.store(key, table_hash, entry, false, now))
                            }
                            Some(instance) => {
                                // Replaces the closed connection's entry in place.
                                let cookie = flow_cookie(table_hash, instance);
                                let mut entry =
                                    FlowEntry::new(class_of(p.protocol), s, group, cookie);
                                entry.generation = a.generation;
                                entry.set_instance(instance);
                                entry.rule = rule;
                                if chained {
                                    entry.set_chained(direction_of(snap, group, p));
                                }
                                self.counters.restarted_flows += 1;
                                (cookie, self.store(key, table_hash, entry, true, now))
                            }
                        };
                        if stored {
                            self.counters.new_flows += 1;
                            self.counters.appliance_flows[usize::from(s)] += 1;
                            // Refused above unless admitted: a connection picked up mid-stream.
                            self.counters.admitted_non_syn += u64::from(!opens_connection(p));
                        } else {
                            // A full table: the packet still goes to the appliance Maglev picks
                            // for the flow (what an entry would have said), and the return is
                            // accepted by the same rule (`decapsulate_flow`).
                            self.counters.table_full += 1;
                        }
                        if zone != 0 {
                            count_rule(&mut self.counters.rules, rule, ip_len, stored);
                        }
                        (s, a, cookie)
                    }
                    None if g.fail_open => {
                        return forward(snap, buf, p, zone, &mut self.counters.fail_open)
                    }
                    None => {
                        return self.drop_or_reset(
                            g.tcp_rst,
                            buf,
                            p,
                            in_port,
                            DropReason::NoHealthyAppliance,
                        )
                    }
                }
            }
        };
        let Some(t) = a.template.as_ref() else {
            return Verdict::Drop(DropReason::NeighborUnresolved);
        };
        let v6 = p.l3 == L3::Ipv6;
        let l2_len = usize::from(p.l2_len);
        let identity = if zone == 0 {
            None
        } else {
            snap.endpoint(zone).map(|e| &e.identity)
        };
        match t.encapsulate_as(buf, l2_len, ip_len, v6, cookie, identity) {
            Ok(()) => {
                self.counters.encapsulated += 1;
                self.counters.appliance_packets[usize::from(slot)] += 1;
                self.counters.appliance_bytes[usize::from(slot)] += ip_len as u64;
                Verdict::Tx(a.port)
            }
            Err(EncapError::Oversize) => {
                let mtu = u16::try_from(t.max_inner_len()).unwrap_or(u16::MAX);
                self.too_big(snap, buf, p, in_port, mtu, now)
            }
            Err(EncapError::NoHeadroom | EncapError::Truncated) => {
                Verdict::Drop(DropReason::Oversize)
            }
        }
    }

    /// Stores a new flow's entry: in place of the closed connection on its tuple when
    /// `replaces` (a restart), else only if the key is absent. Whether the table took it.
    #[inline]
    fn store(
        &mut self,
        key: FlowKey,
        hash: u32,
        entry: FlowEntry,
        replaces: bool,
        now: u32,
    ) -> bool {
        if replaces {
            self.flows.insert(key, hash, entry, now).is_ok()
        } else {
            self.flows.insert_absent(key, hash, entry, now).is_ok()
        }
    }

    fn decapsulate<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        outer: &ParsedPacket,
        in_port: u16,
        now: u32,
    ) -> Verdict {
        let mut inner = ParsedPacket::default();
        match return_flow(snap, buf.data(), outer, in_port, &mut inner) {
            Ok(Returned::Flow(r)) => self.decapsulate_flow(snap, buf, &r, &inner, now),
            Ok(Returned::Probe) => Verdict::ToHost,
            Err(r) => Verdict::Drop(r),
        }
    }

    /// [`Pipeline::decapsulate`] of a validated return `r` whose inner packet is `inner`.
    #[inline]
    fn decapsulate_flow<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        r: &Return,
        inner: &ParsedPacket,
        now: u32,
    ) -> Verdict {
        let (slot, h) = (r.slot, r.hash);
        let table_hash = h as u32;
        // Whether the flow has no entry here, and the cookie an echo must carry: the entry's,
        // or (no entry) the flow's table hash, which is what the encapsulation wrote.
        let (stateless, cookie) = match self.flows.lookup(&r.key, table_hash, now) {
            Some(e) if e.is_chained() => {
                let base = ChainBase {
                    appliance: e.appliance,
                    group: e.group,
                    generation: e.generation,
                    rule: e.rule,
                    cookie: e.cookie,
                    class: e.class(),
                    opened: e.opened(),
                };
                return self.chain_return(snap, buf, r, inner, base, now);
            }
            Some(e) if e.appliance == slot && e.generation == r.generation => (false, e.cookie),
            Some(_) => return Verdict::Drop(DropReason::ReturnFromOtherAppliance),
            None => {
                // A flow the table does not hold. If the table had no room for it (both its
                // buckets full of live flows), its packets went to the appliance the group's
                // Maglev table picks for it, statelessly: a return from that appliance is
                // accepted. Behind ECMP (`accept_unseen_returns`) another node may have
                // encapsulated the flow, to the same Maglev choice: accepted from it too.
                // Otherwise, or from any other appliance, it is dropped (appliances cannot
                // source flows).
                if !snap.accept_unseen_returns && !self.flows.is_full_for(table_hash, now) {
                    return Verdict::Drop(DropReason::NoFlowForReturn);
                }
                let g = &snap.groups[usize::from(r.group)];
                if g.pick((h >> 32) as u32) != Some(slot) {
                    return Verdict::Drop(DropReason::NoFlowForReturn);
                }
                (true, table_hash)
            }
        };
        // Without an entry the connection on the tuple is unknown: any of its cookies.
        let cookie_ok = |c: u32| {
            if stateless {
                is_flow_cookie(table_hash, c)
            } else {
                c == cookie
            }
        };
        if r.flow_cookie.is_some_and(|c| !cookie_ok(c)) {
            return Verdict::Drop(DropReason::NoFlowForReturn);
        }
        // A FIN or RST the appliance sends back (its own reset of a connection it refuses,
        // say) ends the connection as one from either user does: the next SYN on the tuple
        // is a new flow with the next cookie.
        if !stateless && inner.tcp_flags.0 & (TcpFlags::FIN | TcpFlags::RST) != 0 {
            self.close_returned(&r.key, table_hash, now);
        }
        self.forward_return(snap, buf, r, inner, stateless, now)
    }

    /// Forwards a validated return `r` (inner packet `inner`) to its destination: rewritten
    /// for its next hop, counted decapsulated (and `stateless_returns` when `stateless`).
    #[inline(always)]
    fn forward_return<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        r: &Return,
        inner: &ParsedPacket,
        stateless: bool,
        now: u32,
    ) -> Verdict {
        let inner_offset = usize::from(r.inner_offset);
        let hop = match egress(snap, r.zone, &inner.dst) {
            Ok(h) => h,
            Err(why) => return Verdict::Drop(why),
        };
        let out = &snap.ports[usize::from(hop.port)];
        let too_big = inner.l3_len > out.mtu;
        if too_big && !self.fragmentable_at(buf, inner_offset, inner) {
            let (offset, mtu) = (inner_offset, out.mtu);
            return self.too_big_after_decap(snap, buf, offset, inner, r.zone, mtu, now);
        }
        if !decap::replace_l2_tagged(buf, inner_offset, inner, hop.mac, out.mac, &hop.tags) {
            return Verdict::Drop(DropReason::GeneveMalformed);
        }
        self.counters.decapsulated += 1;
        // Counted only once forwarded (a stateless return can still fail the checks above).
        self.counters.stateless_returns += u64::from(stateless);
        if too_big {
            // Without DF: its fragments leave instead (the worker splits it).
            return Verdict::TxFragments(hop.port);
        }
        Verdict::Tx(hop.port)
    }

    /// A return of a chained flow (`base`: its entry, of the chain's first stage): accepted
    /// only from the appliance the flow's stage went to (the stage is the returning
    /// appliance's group's place in the chain), then sent on to the next stage in the
    /// packet's direction (first to last for the direction the flow opened in, last to
    /// first for the reply), or, after the last, forwarded to its destination.
    #[cold]
    fn chain_return<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        r: &Return,
        inner: &ParsedPacket,
        base: ChainBase,
        now: u32,
    ) -> Verdict {
        let chain = snap
            .endpoint(r.zone)
            .and_then(|ep| chain_of(snap, ep.rule_index(base.rule, &snap.rule_at), base.group));
        let Some(c) = chain else {
            return Verdict::Drop(DropReason::NoFlowForReturn);
        };
        let Some(stage) = c.stage_of(r.group) else {
            return Verdict::Drop(DropReason::ReturnFromOtherAppliance);
        };
        let (appliance, generation) = if stage == 0 {
            (base.appliance, base.generation)
        } else {
            let key = r.key.at_stage(stage as u8);
            match self.flows.lookup(&key, key.hash(snap.seed) as u32, now) {
                Some(e) => (e.appliance, e.generation),
                None => return Verdict::Drop(DropReason::NoFlowForReturn),
            }
        };
        if appliance != r.slot || generation != r.generation {
            return Verdict::Drop(DropReason::ReturnFromOtherAppliance);
        }
        if r.flow_cookie.is_some_and(|c| c != base.cookie) {
            return Verdict::Drop(DropReason::NoFlowForReturn);
        }
        if inner.tcp_flags.0 & (TcpFlags::FIN | TcpFlags::RST) != 0 {
            self.close_returned(&r.key, r.hash as u32, now);
        }
        let next = if direction_of(snap, r.group, inner) == base.opened {
            stage + 1
        } else {
            stage.wrapping_sub(1)
        };
        if next >= c.groups().len() {
            return self.forward_return(snap, buf, r, inner, false, now);
        }
        let at = ChainAt {
            key: r.key,
            hash: r.hash,
            zone: r.zone,
            rule: base.rule,
            cookie: base.cookie,
            class: base.class,
        };
        let (offset, ip_len) = (usize::from(r.inner_offset), usize::from(inner.l3_len));
        let v6 = inner.l3 == L3::Ipv6;
        self.send_to_stage(snap, buf, offset, ip_len, v6, &at, &c, next, now)
    }

    /// Encapsulates the IP packet of `ip_len` bytes behind `l2_len` bytes of headers in `buf`
    /// (a user frame, or a return's outer headers) toward stage `stage` of chain `c` for the
    /// flow `at`: to the appliance its stage entry names, or, for a stage not seen yet, the
    /// one the stage's group's Maglev table picks for the flow (then stored).
    #[allow(clippy::too_many_arguments)]
    fn send_to_stage<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        l2_len: usize,
        ip_len: usize,
        v6: bool,
        at: &ChainAt,
        c: &crate::config::Chain,
        stage: usize,
        now: u32,
    ) -> Verdict {
        let group = c.groups()[stage];
        let Some(slot) = self.stage_appliance(snap, at, stage, group, now) else {
            return Verdict::Drop(DropReason::NoHealthyAppliance);
        };
        let a = &snap.appliances[usize::from(slot)];
        let Some(t) = a.template.as_ref() else {
            return Verdict::Drop(DropReason::NeighborUnresolved);
        };
        let identity = snap.endpoint(at.zone).map(|e| &e.identity);
        match t.encapsulate_as(buf, l2_len, ip_len, v6, at.cookie, identity) {
            Ok(()) => {
                self.counters.encapsulated += 1;
                self.counters.appliance_packets[usize::from(slot)] += 1;
                self.counters.appliance_bytes[usize::from(slot)] += ip_len as u64;
                Verdict::Tx(a.port)
            }
            Err(_) => Verdict::Drop(DropReason::Oversize),
        }
    }

    /// The appliance of stage `stage` (group `group`) of the chained flow `at`: stage 0's is
    /// the flow's own entry's; a later stage's is its entry under the flow's key at that
    /// stage, made on first use from the group's Maglev choice (again when its appliance's
    /// slot has been reused).
    fn stage_appliance(
        &mut self,
        snap: &Snapshot,
        at: &ChainAt,
        stage: usize,
        group: u16,
        now: u32,
    ) -> Option<u16> {
        let live = |e: &FlowEntry| {
            snap.appliances
                .get(usize::from(e.appliance))
                .is_some_and(|a| a.generation == e.generation)
        };
        if stage == 0 {
            let e = self.flows.lookup(&at.key, at.hash as u32, now)?;
            return live(e).then_some(e.appliance);
        }
        let key = at.key.at_stage(stage as u8);
        let hash = key.hash(snap.seed) as u32;
        if let Some(e) = self.flows.lookup(&key, hash, now) {
            if live(e) {
                return Some(e.appliance);
            }
        }
        let s = snap
            .groups
            .get(usize::from(group))?
            .pick((at.hash >> 32) as u32)?;
        let mut entry = FlowEntry::new(at.class, s, group, at.cookie);
        entry.generation = snap.appliances[usize::from(s)].generation;
        entry.rule = at.rule;
        if self.flows.insert(key, hash, entry, now).is_ok() {
            self.counters.appliance_flows[usize::from(s)] += 1;
        }
        Some(s)
    }

    /// Whether the packet `p`, parsed from `buf` at `offset` (the inner packet of a return),
    /// may be fragmented ([`crate::fragment::fragmentable`]). Out of line: only packets over
    /// their egress MTU ask.
    #[cold]
    fn fragmentable_at<B: PacketBuf>(&self, buf: &B, offset: usize, p: &ParsedPacket) -> bool {
        let packet = buf.data().get(offset..).unwrap_or_default();
        crate::fragment::fragmentable(packet, p)
    }

    /// Marks the flow of a returned FIN or RST closed (out of line: few packets carry one).
    #[cold]
    fn close_returned(&mut self, key: &FlowKey, hash: u32, now: u32) {
        if let Some(e) = self.flows.lookup(key, hash, now) {
            e.set_closed();
        }
    }

    /// Drops a packet the gateway will not carry (a flow it ends, or a TCP packet of an
    /// unknown flow it does not admit), answering it with a TCP RST back out `in_port` when
    /// `reset` (the group's `tcp_rst_on_drop` or `tcp_unknown_non_syn = "reset"`). The drop
    /// is counted under `why` either way.
    fn drop_or_reset<B: PacketBuf>(
        &mut self,
        reset: bool,
        buf: &mut B,
        p: &ParsedPacket,
        in_port: u16,
        why: DropReason,
    ) -> Verdict {
        if reset && tcp_reset::reflect_rst(buf, p) {
            self.counters.drops[why.index()] += 1;
            self.counters.tcp_resets += 1;
            return Verdict::Tx(in_port);
        }
        Verdict::Drop(why)
    }

    /// A packet too large to encapsulate: an IPv4 packet without DF is left to the worker to
    /// fragment into pieces of `mtu` ([`Verdict::Fragment`]); any other is answered with an
    /// ICMP "too big" carrying `mtu` where [`too_big::reflect`] allows it and this second's
    /// budget (`[dataplane] icmp_errors_per_s`) is not spent, else dropped; `oversize` either
    /// way.
    #[cold]
    fn too_big<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        p: &ParsedPacket,
        in_port: u16,
        mtu: u16,
        now: u32,
    ) -> Verdict {
        if crate::fragment::fragmentable(buf.data(), p) {
            return Verdict::Fragment(mtu);
        }
        if self.icmp_second != now {
            self.icmp_second = now;
            self.icmp_left = snap.icmp_errors_per_s;
        }
        let port = &snap.ports[usize::from(in_port)];
        let from = if p.l3 == L3::Ipv6 {
            port.ipv6
        } else {
            port.ipv4
        };
        if let Some(from) = from.filter(|_| self.icmp_left > 0) {
            if too_big::reflect(buf, p, &from, port.mac, mtu) {
                self.icmp_left -= 1;
                self.counters.drops[DropReason::Oversize.index()] += 1;
                self.counters.icmp_too_big += 1;
                return Verdict::Tx(in_port);
            }
        }
        Verdict::Drop(DropReason::Oversize)
    }

    /// A returned inner packet larger than its egress port's MTU: answered with an ICMP "too
    /// big" (`mtu`) to the inner packet's source, through that source's next hop, where
    /// [`Pipeline::too_big`] allows it; else dropped (`oversize`).
    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn too_big_after_decap<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        buf: &mut B,
        inner_offset: usize,
        inner: &ParsedPacket,
        zone: u16,
        mtu: u16,
        now: u32,
    ) -> Verdict {
        let Ok(back) = egress(snap, zone, &inner.src) else {
            return Verdict::Drop(DropReason::Oversize);
        };
        // The inner packet as if it had arrived from the source's next hop: then the error
        // is built and sent exactly as for a packet too big to encapsulate.
        let ours = snap.ports[usize::from(back.port)].mac;
        if !decap::replace_l2_tagged(buf, inner_offset, inner, ours, back.mac, &back.tags) {
            return Verdict::Drop(DropReason::Oversize);
        }
        let l2 = (ethernet::HEADER_LEN + usize::from(back.tags.count) * ethernet::TAG_LEN) as u16;
        let mut p = *inner;
        p.l2_len = l2;
        p.l3_offset = l2;
        if let Some(l4) = inner.l4_offset {
            p.l4_offset = Some(l4 + l2);
        }
        self.too_big(snap, buf, &p, back.port, mtu, now)
    }
}

/// Forwards the original packet of zone `zone` to its next hop without inspection (fail-open,
/// or a rule's bypass), counting it in `counted` when it leaves.
fn forward<B: PacketBuf>(
    snap: &Snapshot,
    buf: &mut B,
    p: &ParsedPacket,
    zone: u16,
    counted: &mut u64,
) -> Verdict {
    let hop = match egress(snap, zone, &p.dst) {
        Ok(h) => h,
        Err(r) => return Verdict::Drop(r),
    };
    let src = snap.ports[usize::from(hop.port)].mac;
    // A parsed frame holds its whole IP packet after at least 14 bytes of L2 header: the
    // rewrite is refused only when tags must be added and there is no headroom for them.
    if !decap::replace_l2_tagged(buf, usize::from(p.l3_offset), p, hop.mac, src, &hop.tags) {
        return Verdict::Drop(DropReason::Oversize);
    }
    *counted += 1;
    Verdict::Tx(hop.port)
}

/// Counts a user packet of `ip_len` bytes (and, with `new_flow`, a flow) under rule `rule`
/// in `rules` ([`Counters::rules`]).
#[inline]
fn count_rule(rules: &mut [[u64; 3]], rule: u16, ip_len: usize, new_flow: bool) {
    if let Some(c) = rules.get_mut(usize::from(rule)) {
        c[0] += 1;
        c[1] += ip_len as u64;
        c[2] += u64::from(new_flow);
    }
}

/// Where a packet of zone `zone` for `dst` leaves: through its endpoint's routes, with its
/// tags, when the endpoint has routes; else through the node's routes, untagged.
#[inline(always)]
fn egress(snap: &Snapshot, zone: u16, dst: &IpAddrBytes) -> Result<Egress, DropReason> {
    if zone != 0 {
        if let Some(e) = endpoint_egress(snap, zone, dst) {
            return e;
        }
    }
    match snap.next_hop(dst) {
        Ok(h) => Ok(Egress {
            port: h.port,
            mac: h.mac,
            tags: VlanTags::default(),
        }),
        Err(NoNextHop::NoRoute) => Err(DropReason::NoRoute),
        Err(NoNextHop::Unresolved) => Err(DropReason::NeighborUnresolved),
    }
}

/// [`egress`] through the routes of zone `zone`'s endpoint; `None` when it has none (the
/// node's routes apply).
#[inline(never)]
fn endpoint_egress(
    snap: &Snapshot,
    zone: u16,
    dst: &IpAddrBytes,
) -> Option<Result<Egress, DropReason>> {
    let ep = snap.endpoint(zone).filter(|e| !e.routes.is_empty())?;
    Some(match ep.next_hop(dst) {
        Some(h) => Ok(Egress {
            port: h.port,
            mac: h.mac,
            tags: ep.tags,
        }),
        None => Err(DropReason::NoRoute),
    })
}

/// A forwarded packet's way out ([`egress`]).
struct Egress {
    port: u16,
    mac: [u8; 6],
    tags: VlanTags,
}

/// Where a parsed frame goes. [`Pipeline::process`] and [`owner_hash`] both decide through
/// this one function, so a flow's owner is chosen by the same rules that process it.
enum Dispatch {
    /// For the gateway itself (ARP/ND, link-scope traffic, anything to our addresses).
    Host,
    /// A Geneve return from an appliance.
    Return,
    /// User traffic.
    User(User),
    /// Nowhere: unknown port, or transit traffic on a port that takes none.
    NoRoute,
    /// On a port endpoints arrive on, but no endpoint's.
    NoEndpoint,
}

/// Whose user traffic a packet is: a target group's own (`zone` 0, from its `user_ports`),
/// or an endpoint's (its zone; `group` is unused: the endpoint's rules choose).
#[derive(Clone, Copy, Debug)]
struct User {
    zone: u16,
    group: u16,
}

/// Why a frame received on `in_port` that failed to parse with `r` is dropped: `oversize`
/// where the receiver cut it at the port's MTU or beyond, else `r`
/// ([`parse::received_error`]). Out of line: only parse errors come here.
#[cold]
#[inline(never)]
fn received_error(snap: &Snapshot, frame: &[u8], in_port: u16, r: DropReason) -> DropReason {
    match snap.ports.get(usize::from(in_port)) {
        Some(port) => parse::received_error(frame, r, port.mtu),
        None => r,
    }
}

#[inline(always)]
fn dispatch(snap: &Snapshot, p: &ParsedPacket, in_port: u16) -> Dispatch {
    let Some(port) = snap.ports.get(usize::from(in_port)) else {
        return Dispatch::NoRoute;
    };
    // The host (its TAP) and the appliances speak untagged: a tagged frame on a port
    // endpoints arrive on is an endpoint's (or nobody's), whatever its addresses.
    if p.vlan_count != 0 && snap.has_endpoints(in_port) {
        return dispatch_endpoint(snap, p, in_port);
    }
    if p.l3 == L3::Arp {
        return Dispatch::Host;
    }
    if port.is_own(&p.dst) {
        let geneve = port.role.faces_appliances()
            && p.protocol == proto::UDP
            && p.dst_port == geneve::UDP_PORT
            && p.fragment.is_none();
        return if geneve {
            Dispatch::Return
        } else {
            Dispatch::Host
        };
    }
    if is_neighbor_discovery(p) || is_link_scope(p) {
        return Dispatch::Host;
    }
    match snap.group_for_port(in_port) {
        Some(g) if port.role.faces_users() => Dispatch::User(User { zone: 0, group: g }),
        None if port.role.faces_users() => dispatch_endpoint(snap, p, in_port),
        _ => Dispatch::NoRoute,
    }
}

/// [`dispatch`] of user traffic on a port no group takes: an endpoint's, or nobody's. Out of
/// line: a group's own user traffic pays nothing for endpoints.
#[inline(never)]
fn dispatch_endpoint(snap: &Snapshot, p: &ParsedPacket, in_port: u16) -> Dispatch {
    if !snap.has_endpoints(in_port) {
        return Dispatch::NoRoute;
    }
    match snap.zone_of(p, in_port) {
        Some(zone) => Dispatch::User(User { zone, group: 0 }),
        None => Dispatch::NoEndpoint,
    }
}

/// The appliance slot of a Geneve return received on `in_port`, the validated return, and
/// its inner flow's key and hash; or why it is dropped. The inner packet is parsed into
/// `inner`. Depends only on the snapshot, the frame and the port.
///
/// Trust (docs/architecture.md, "Who may send returns"): a return is taken only from where
/// the appliance is: its source address names a registered appliance, its source MAC is
/// that appliance's MAC and it arrived on the port that reaches it; in a group with
/// `require_flow_cookie` it must also echo the flow cookie. The flow check itself
/// (`Pipeline::decapsulate_flow`) comes after. A trusted return that carries one of the
/// group's data-path probes ([`crate::data_path_probe`]) is [`Returned::Probe`]: for the
/// host, whose health checker sent it (the check costs a compare of the inner protocol and
/// port on every other return).
#[inline]
fn return_flow(
    snap: &Snapshot,
    frame: &[u8],
    outer: &ParsedPacket,
    in_port: u16,
    inner: &mut ParsedPacket,
) -> Result<Returned, DropReason> {
    let slot = snap
        .appliance_by_addr(&outer.src)
        .ok_or(DropReason::UnknownAppliance)?;
    let a = &snap.appliances[usize::from(slot)];
    // The frame parsed, so it holds an Ethernet header.
    let src_mac = frame
        .first_chunk::<{ ethernet::HEADER_LEN }>()
        .map_or(0, |h| {
            crate::snapshot::mac_key(ethernet::Frame::new_unchecked(h).src_addr().0)
        });
    if a.port != in_port || a.mac_key == 0 || src_mac != a.mac_key {
        return Err(DropReason::ReturnSourceMismatch);
    }
    let ret = decap::parse_return_into(frame, outer, inner)?;
    if a.require_cookie && ret.flow_cookie.is_none() {
        return Err(DropReason::ReturnWithoutCookie);
    }
    // An ICMP error is keyed on the flow it quotes; it belongs to that flow only on its way
    // back to the quoted packet's source (RFC 792, RFC 4443 2.4), or an appliance could
    // send errors, quote and all, to any host.
    if inner.embedded.is_some_and(|e| e.src != inner.dst) {
        return Err(DropReason::NoFlowForReturn);
    }
    if inner.dst_port == crate::data_path_probe::PROBE_UDP_PORT
        && snap
            .groups
            .get(usize::from(a.group))
            .and_then(|g| g.probes)
            .is_some_and(|m| m.matches(inner))
    {
        return Ok(Returned::Probe);
    }
    // Only the appliances of a group that inspects for endpoints look up the zone.
    let zone = if a.zoned {
        return_zone(snap, a.group, &ret)?
    } else {
        0
    };
    let (key, hash) = flow_of(
        snap,
        User {
            zone,
            group: a.group,
        },
        inner,
    );
    Ok(Returned::Flow(Return {
        slot,
        generation: a.generation,
        group: a.group,
        zone,
        // An mbuf's data is shorter than 64 KiB.
        inner_offset: u16::try_from(ret.inner_offset).map_err(|_| DropReason::GeneveMalformed)?,
        flow_cookie: ret.flow_cookie,
        key,
        hash,
    }))
}

/// The zone a return of group `group` names ([`crate::policy::ReturnZones::zone_of`]).
#[inline(never)]
fn return_zone(snap: &Snapshot, group: u16, ret: &decap::GeneveReturn) -> Result<u16, DropReason> {
    snap.groups
        .get(usize::from(group))
        .and_then(|g| g.return_zones.zone_of(ret.vni, ret.endpoint_id))
        .ok_or(DropReason::ReturnEndpointUnknown)
}

/// What a trusted Geneve return carries ([`return_flow`]).
enum Returned {
    /// A packet of a user flow.
    Flow(Return),
    /// A data-path probe of the appliance's group, for the host's health checker.
    Probe,
}

/// A validated Geneve return ([`return_flow`]): the appliance that sent it (what the flow
/// check needs of it, so that it is not looked up again) and the inner packet's flow.
#[derive(Clone, Copy)]
struct Return {
    /// The appliance slot.
    slot: u16,
    /// Its generation (a flow entry of another generation is not this appliance's).
    generation: u8,
    /// Its target group.
    group: u16,
    /// The flow's zone (its endpoint; 0 for the group's own user traffic).
    zone: u16,
    /// Where the inner packet starts in the frame (a frame is shorter than 64 KiB).
    inner_offset: u16,
    /// The echoed flow cookie, if any.
    flow_cookie: Option<u32>,
    /// The inner packet's flow key and hash.
    key: FlowKey,
    hash: u64,
}

/// A packet for the host: worker 0 owns the exception path, so another worker of a shared
/// node hands it there.
#[inline(always)]
fn for_host(share: Option<Share>) -> Verdict {
    match share {
        Some(s) if s.me != 0 => Verdict::Handoff(0),
        _ => Verdict::ToHost,
    }
}

/// Most packets [`Pipeline::process_burst`] handles in one pass (larger slices are chunked).
pub const BURST_MAX: usize = 32;

/// What the first pass of a burst decided for one packet.
#[derive(Clone, Copy)]
enum Plan {
    /// Decided without the flow table.
    Done(Verdict),
    /// User traffic, its flow key and hash.
    Encap { user: User, key: FlowKey, hash: u64 },
    /// A validated return (its inner packet parsed in [`BurstScratch::inner`]).
    Return(Return),
}

/// Scratch of [`Pipeline::process_burst`], allocated once with the pipeline.
struct BurstScratch {
    /// Each packet as received.
    parsed: [ParsedPacket; BURST_MAX],
    /// The inner packet of each Geneve return (unused for other packets).
    inner: [ParsedPacket; BURST_MAX],
    plan: [Plan; BURST_MAX],
}

impl BurstScratch {
    fn new() -> Self {
        Self {
            parsed: [ParsedPacket::default(); BURST_MAX],
            inner: [ParsedPacket::default(); BURST_MAX],
            plan: [Plan::Done(Verdict::ToHost); BURST_MAX],
        }
    }
}

impl std::fmt::Debug for BurstScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BurstScratch")
    }
}

/// Starts loading the cache lines of a packet the pipeline touches: the first line of data
/// (headers), the second for longer frames (the inner headers of a Geneve return cross it),
/// and the line in front of the data (headroom), which encapsulation writes its outer headers
/// into. A prefetch never faults, so the out-of-buffer addresses of short or headroom-less
/// buffers are harmless (`wrapping_*` arithmetic creates no reference).
#[inline(always)]
pub(crate) fn prefetch_data(d: &[u8]) {
    let p = d.as_ptr();
    prefetch_line(p);
    prefetch_line(p.wrapping_sub(64));
    if d.len() > 64 {
        prefetch_line(p.wrapping_add(64));
    }
}

/// The flow key of a user packet (under its group's or its endpoint's stickiness, in its
/// zone), and its hash.
#[inline(always)]
fn flow_of(snap: &Snapshot, user: User, p: &ParsedPacket) -> (FlowKey, u64) {
    let key = if user.zone == 0 {
        FlowKey::from_packet(p, snap.groups[usize::from(user.group)].stickiness)
    } else {
        let stickiness = snap
            .endpoint(user.zone)
            .map_or_else(Default::default, |e| e.stickiness);
        FlowKey::from_packet(p, stickiness).in_zone(user.zone)
    };
    let h = key.hash(snap.seed);
    (key, h)
}

/// The flow-table hash of the flow a frame belongs to (for a Geneve return: the inner
/// packet's flow), or `None` for frames that are not flow traffic or cannot be parsed.
/// [`Share::owner`] of it is the flow's worker. Workers do not call it (the first pass of
/// [`Pipeline::process_burst_shared`] finds the owner from its own parse); the benchmark
/// harness uses it to place packets on their owners, and the fuzz target to check that
/// both agree.
pub fn owner_hash(snap: &Snapshot, frame: &[u8], in_port: u16) -> Option<u32> {
    let p = parse::parse_frame(frame).ok()?;
    match dispatch(snap, &p, in_port) {
        Dispatch::User(u) => Some(flow_of(snap, u, &p).1 as u32),
        Dispatch::Return => {
            let slot = snap.appliance_by_addr(&p.src)?;
            let (ret, inner) = decap::parse_return(frame, &p).ok()?;
            let group = snap.appliances[usize::from(slot)].group;
            let zone = snap
                .groups
                .get(usize::from(group))?
                .return_zones
                .zone_of(ret.vni, ret.endpoint_id)?;
            Some(flow_of(snap, User { zone, group }, &inner).1 as u32)
        }
        Dispatch::Host | Dispatch::NoRoute | Dispatch::NoEndpoint => None,
    }
}

/// Whether `p` may start a flow under `tcp_unknown_non_syn = "drop"`/`"reset"`: anything
/// but TCP, a TCP SYN without ACK, or a later fragment (whose flags are not known).
#[inline]
fn opens_connection(p: &ParsedPacket) -> bool {
    let f = p.tcp_flags.0;
    p.protocol != proto::TCP
        || p.fragment.is_some_and(|f| !f.first)
        || (f & TcpFlags::SYN != 0 && f & TcpFlags::ACK == 0)
}

/// What a chained flow's entry says, copied out of the table.
#[derive(Clone, Copy)]
struct ChainBase {
    appliance: u16,
    /// The chain's first group.
    group: u16,
    generation: u8,
    /// The chain rule's id.
    rule: u16,
    cookie: u32,
    class: ProtoClass,
    opened: Direction,
}

/// A chained flow being sent to one of its stages.
struct ChainAt {
    /// The flow's key (stage 0) and its hash.
    key: FlowKey,
    hash: u64,
    zone: u16,
    /// The chain rule's id (stage entries keep it too, for `gwlb flows`).
    rule: u16,
    cookie: u32,
    class: ProtoClass,
}

/// The chain of rule `rule` (a global index), if its action is still a chain that starts
/// with `first`, the first group of the chain that decided the flow. A live change can edit
/// the flow's rule or remove it (its flows then fall to the endpoint's default): a flow whose
/// rule is now another action, or a chain from another group, is not sent on (its packets
/// are dropped), so it is never carried past a group.
#[inline]
fn chain_of(snap: &Snapshot, rule: u16, first: u16) -> Option<crate::config::Chain> {
    match snap.rules.get(usize::from(rule))?.action {
        Action::Chain(c) if c.groups().first() == Some(&first) => Some(c),
        _ => None,
    }
}

/// The direction of packet `p` in its flow's key, under group `group`'s stickiness (every
/// group of a chain has the endpoint's).
#[inline]
fn direction_of(snap: &Snapshot, group: u16, p: &ParsedPacket) -> Direction {
    let stickiness = snap
        .groups
        .get(usize::from(group))
        .map_or(crate::flow::Stickiness::FiveTuple, |g| g.stickiness);
    FlowKey::from_packet_directed(p, stickiness).1
}

/// Timeout class of a protocol.
#[inline]
fn class_of(protocol: u8) -> ProtoClass {
    if protocol == proto::TCP {
        ProtoClass::Tcp
    } else {
        ProtoClass::Other
    }
}

/// Multicast, broadcast and IPv6 link-local traffic: it belongs to the link (MLD, DHCP,
/// mDNS, router solicitations), not to a flow an appliance should inspect, so the kernel gets
/// it (and drops what it does not want).
#[inline]
fn is_link_scope(p: &ParsedPacket) -> bool {
    match p.l3 {
        // 224.0.0.0/4 multicast and up (240/4 reserved), limited broadcast.
        L3::Ipv4 => {
            let d = p.dst.low_octets();
            d[0] >= 224 || d == [255; 4]
        }
        // ff00::/8 multicast, fe80::/10 link-local.
        L3::Ipv6 => {
            let d = &p.dst.0;
            d[0] == 0xff || (d[0] == 0xfe && d[1] & 0xc0 == 0x80)
        }
        L3::Arp => false,
    }
}

/// IPv6 neighbour discovery (router/neighbour solicitation and advertisement, redirect):
/// link-local control traffic for the host, never for appliances.
#[inline]
fn is_neighbor_discovery(p: &ParsedPacket) -> bool {
    p.l3 == L3::Ipv6 && p.protocol == proto::ICMPV6 && icmp::is_neighbor_discovery(p.icmp_type)
}
