//! Per-worker counters as the control plane sees them.
//!
//! Each worker keeps plain integers in its [`crate::pipeline::Counters`] and copies them here
//! once per burst with relaxed stores: one writer per block, so no read-modify-write and no
//! cache line shared between workers' writes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::parse::DropReason;
use crate::pipeline::Counters;

/// A worker's published counters.
#[derive(Debug)]
pub struct WorkerStats {
    /// Packets received from ports (not handoffs).
    pub rx: AtomicU64,
    /// Packets transmitted.
    pub tx: AtomicU64,
    /// Packets handed to another worker.
    pub handed_off: AtomicU64,
    /// Packets processed by the pipeline.
    pub processed: AtomicU64,
    /// Encapsulated toward appliances.
    pub encapsulated: AtomicU64,
    /// Decapsulated returns forwarded.
    pub decapsulated: AtomicU64,
    /// Forwarded uninspected (fail-open).
    pub fail_open: AtomicU64,
    /// For the host.
    pub to_host: AtomicU64,
    /// New flows.
    pub new_flows: AtomicU64,
    /// Flows moved between appliances.
    pub rebalanced_flows: AtomicU64,
    /// TCP resets sent for ended flows.
    pub tcp_resets: AtomicU64,
    /// Packets of new flows the full flow table could not store.
    pub table_full: AtomicU64,
    /// Returns accepted without a flow entry (the flow's Maglev choice).
    pub stateless_returns: AtomicU64,
    /// Live flows in the worker's table (as of its last publish).
    pub active_flows: AtomicU64,
    /// Drops by reason.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Per appliance slot: packets, bytes, new flows.
    pub appliance: Box<[[AtomicU64; 3]]>,
}

/// Counters of a worker's loop (not of the pipeline): what it received, sent, handed off,
/// and what it had to free because a queue was full.
#[derive(Debug, Default, Clone)]
pub struct LoopIo {
    /// Packets received from ports and handoff rings.
    pub rx: u64,
    /// Packets the ports took.
    pub tx: u64,
    /// Packets passed to the owning worker's handoff ring.
    pub handed_off: u64,
    /// Packets a port's transmit queue did not take.
    pub tx_full: u64,
    /// Packets for the host the exception path's (TAP) queue did not take.
    pub host_queue_full: u64,
    /// Packets the owning worker's handoff ring did not take.
    pub handoff_full: u64,
}

impl WorkerStats {
    /// Zeroed counters for `max_appliances` slots.
    pub fn new(max_appliances: usize) -> Self {
        Self {
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            handed_off: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            encapsulated: AtomicU64::new(0),
            decapsulated: AtomicU64::new(0),
            fail_open: AtomicU64::new(0),
            to_host: AtomicU64::new(0),
            new_flows: AtomicU64::new(0),
            rebalanced_flows: AtomicU64::new(0),
            tcp_resets: AtomicU64::new(0),
            table_full: AtomicU64::new(0),
            stateless_returns: AtomicU64::new(0),
            active_flows: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            appliance: (0..max_appliances)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Copies the pipeline's and the loop's counters (single writer: the owning worker).
    pub fn publish(&self, c: &Counters, io: &LoopIo) {
        self.rx.store(io.rx, Relaxed);
        self.tx.store(io.tx, Relaxed);
        self.handed_off.store(io.handed_off, Relaxed);
        self.processed.store(c.packets, Relaxed);
        self.encapsulated.store(c.encapsulated, Relaxed);
        self.decapsulated.store(c.decapsulated, Relaxed);
        self.fail_open.store(c.fail_open, Relaxed);
        self.to_host.store(c.to_host, Relaxed);
        self.new_flows.store(c.new_flows, Relaxed);
        self.rebalanced_flows.store(c.rebalanced_flows, Relaxed);
        self.tcp_resets.store(c.tcp_resets, Relaxed);
        self.table_full.store(c.table_full, Relaxed);
        self.stateless_returns.store(c.stateless_returns, Relaxed);
        for (a, v) in self.drops.iter().zip(c.drops.iter()) {
            a.store(*v, Relaxed);
        }
        // The loop's own drops, each under its reason (the pipeline never counts these).
        for (reason, n) in [
            (DropReason::TxFull, io.tx_full),
            (DropReason::ControlPlaneQueueFull, io.host_queue_full),
            (DropReason::HandoffRingFull, io.handoff_full),
        ] {
            self.drops[reason.index()].store(c.drops[reason.index()] + n, Relaxed);
        }
    }

    /// Copies the per-appliance counters of the first `n` slots.
    pub fn publish_appliances(&self, c: &Counters, n: usize) {
        for i in 0..n.min(self.appliance.len()) {
            self.appliance[i][0].store(c.appliance_packets[i], Relaxed);
            self.appliance[i][1].store(c.appliance_bytes[i], Relaxed);
            self.appliance[i][2].store(c.appliance_flows[i], Relaxed);
        }
    }

    /// Total drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|d| d.load(Relaxed)).sum()
    }
}
