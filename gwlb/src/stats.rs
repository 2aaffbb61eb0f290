//! Per-worker counters: the one table that defines them, and the atomics the control plane
//! reads them from.
//!
//! Each worker keeps plain integers (its [`crate::pipeline::Counters`], its flow table's
//! [`crate::flow_table::FlowTableStats`], its loop's [`LoopIo`]) and copies them into its [`WorkerStats`] once
//! per burst with relaxed stores: one writer per block, so no read-modify-write and no cache
//! line shared between workers' writes.
//!
//! **Adding a counter:** add a line to [`worker_counter_table`] (the field it comes from
//! must exist in `Counters`, `FlowTableStats` or `LoopIo`). The worker's atomic and its
//! publishing, the API's `WorkerReport` field and its totals, the `gwlb_worker_*` metric
//! family, the `gwlb stats` column (if it has one) and the `gwlb run` report line are all
//! generated from that line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::parse::DropReason;
use crate::pipeline::{Counters, Pipeline};

/// Every per-worker counter, once. Each line:
///
/// `name: source.field, metric, help, column;`
///
/// - `name`: the field of [`WorkerStats`] and of `control::WorkerReport` (the JSON key of
///   `GET /v1/stats` and the key in `gwlb run`'s report line);
/// - `source.field`: where the worker counts it: `pipeline` ([`Counters`]), `table`
///   ([`crate::flow_table::FlowTableStats`]) or `io` ([`LoopIo`]);
/// - `metric`: the Prometheus counter family (label `worker`);
/// - `help`: its documentation (also the field's doc);
/// - `column`: its `gwlb stats` column, `""` for none.
///
/// Invoked with the name of a macro that receives the lines.
macro_rules! worker_counter_table {
    ($then:ident) => {
        $then! {
            rx: io.rx, "gwlb_worker_rx_packets_total",
                "Packets received from ports and handoff rings.", "RX";
            tx: io.tx, "gwlb_worker_tx_packets_total", "Packets transmitted.", "TX";
            handed_off: io.handed_off, "gwlb_worker_handed_off_packets_total",
                "Packets passed to the flow's owning worker.", "";
            processed: pipeline.processed, "gwlb_worker_processed_packets_total",
                "Packets processed by the pipeline.", "PROCESSED";
            encapsulated: pipeline.encapsulated, "gwlb_worker_encapsulated_packets_total",
                "Packets encapsulated toward appliances.", "ENCAP";
            decapsulated: pipeline.decapsulated, "gwlb_worker_decapsulated_packets_total",
                "Appliance returns decapsulated and forwarded.", "DECAP";
            fail_open: pipeline.fail_open, "gwlb_worker_fail_open_packets_total",
                "Packets forwarded uninspected (fail-open).", "FAIL_OPEN";
            bypassed: pipeline.bypassed, "gwlb_worker_bypassed_packets_total",
                "Packets forwarded uninspected by a steering rule (bypass).", "";
            to_host: pipeline.to_host, "gwlb_worker_to_host_packets_total",
                "Packets handed to the host kernel.", "TO_HOST";
            new_flows: pipeline.new_flows, "gwlb_worker_new_flows_total",
                "New flows admitted.", "NEW_FLOWS";
            rebalanced_flows: pipeline.rebalanced_flows, "gwlb_worker_rebalanced_flows_total",
                "Flows moved to another appliance (rebalance, drain expiry).", "";
            restarted_flows: pipeline.restarted_flows, "gwlb_worker_restarted_flows_total",
                "TCP connections started on the 5-tuple of a closed or long idle flow: new flows with a new cookie (also in new flows).", "";
            admitted_non_syn: pipeline.admitted_non_syn, "gwlb_worker_admitted_non_syn_flows_total",
                "TCP flows started by a packet that opens no connection (no SYN, or SYN+ACK), admitted under tcp_unknown_non_syn = admit: picked up mid-stream after a restart or an ECMP move (also in new flows).", "";
            tcp_resets: pipeline.tcp_resets, "gwlb_worker_tcp_resets_total",
                "TCP resets sent in place of dropped packets of ended flows.", "";
            icmp_too_big: pipeline.icmp_too_big, "gwlb_worker_icmp_too_big_total",
                "ICMP fragmentation-needed / packet-too-big errors sent for packets too large to encapsulate (path MTU discovery).", "";
            fragmented: pipeline.fragmented, "gwlb_worker_fragmented_packets_total",
                "IPv4 packets without DF split into fragments: too large to encapsulate, or for their egress port after decapsulation.", "";
            table_full: pipeline.table_full, "gwlb_worker_flow_table_full_packets_total",
                "Packets of new flows the full flow table could not store (sent to the flow's Maglev choice without an entry; not in new flows).", "";
            stateless_returns: pipeline.stateless_returns, "gwlb_worker_stateless_returns_total",
                "Appliance returns accepted without a flow entry (from the flow's Maglev choice).", "";
            flow_table_inserts: table.inserts, "gwlb_flow_table_inserts_total",
                "Flow-table entries stored.", "";
            flow_table_full_misses: table.full_misses, "gwlb_flow_table_full_misses_total",
                "Flow-table inserts refused: both candidate buckets held only live flows.", "";
            flow_table_expired: table.expired, "gwlb_flow_table_expired_total",
                "Idle flow-table entries reclaimed.", "";
            flow_table_displaced: table.displaced, "gwlb_flow_table_displaced_total",
                "Flow-table entries moved to their other bucket to make room.", "";
        }
    };
}
pub(crate) use worker_counter_table;

/// The value of a table line's `source.field` (see [`worker_counter_table`]).
macro_rules! counter_source {
    (pipeline, $p:expr, $io:expr, $f:ident) => {
        $p.counters.$f
    };
    (table, $p:expr, $io:expr, $f:ident) => {
        $p.flows().stats().$f
    };
    (io, $p:expr, $io:expr, $f:ident) => {
        $io.$f
    };
}

macro_rules! define_worker_stats {
    ($($name:ident: $src:ident.$field:ident, $metric:literal, $help:literal, $column:literal;)*) => {
        /// A worker's published counters.
        #[derive(Debug)]
        pub struct WorkerStats {
            $(#[doc = $help] pub $name: AtomicU64,)*
            /// Live flows in the worker's table (as of its last publish).
            pub active_flows: AtomicU64,
            /// Changes at least every 100 ms while the worker's loop turns (0: not started).
            pub heartbeat: AtomicU64,
            /// Drops by reason.
            pub drops: [AtomicU64; DropReason::COUNT],
            /// Per appliance slot: packets, bytes, new flows.
            pub appliance: Box<[[AtomicU64; 3]]>,
            /// Per mirror session: its [`crate::mirror::MirrorCounter`]s.
            pub mirror: [[AtomicU64; crate::mirror::MirrorCounter::COUNT];
                crate::pipeline::MAX_MIRROR_SESSIONS],
            /// Per steering rule index: packets, bytes, new flows.
            pub rules: Box<[[AtomicU64; 3]]>,
        }

        impl WorkerStats {
            /// The names of the table's counters, in table order.
            pub const NAMES: [&'static str; [$(stringify!($name)),*].len()] =
                [$(stringify!($name)),*];

            /// Zeroed counters for `max_appliances` slots.
            pub fn new(max_appliances: usize) -> Self {
                Self {
                    $($name: AtomicU64::new(0),)*
                    active_flows: AtomicU64::new(0),
                    heartbeat: AtomicU64::new(0),
                    drops: std::array::from_fn(|_| AtomicU64::new(0)),
                    appliance: (0..max_appliances)
                        .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                        .collect(),
                    mirror: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
                    rules: (0..crate::pipeline::MAX_RULE_SLOTS)
                        .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                        .collect(),
                }
            }

            /// Copies the pipeline's, its flow table's and the loop's counters (single
            /// writer: the owning worker).
            pub fn publish(&self, p: &Pipeline, io: &LoopIo) {
                $(self.$name.store(counter_source!($src, p, io, $field), Relaxed);)*
                self.active_flows.store(p.flows().len() as u64, Relaxed);
                self.publish_drops(&p.counters, io);
            }

            /// The table's counters, in table order (see [`WorkerStats::NAMES`]).
            pub fn values(&self) -> [u64; Self::NAMES.len()] {
                [$(self.$name.load(Relaxed)),*]
            }
        }
    };
}
worker_counter_table!(define_worker_stats);

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
    fn publish_drops(&self, c: &Counters, io: &LoopIo) {
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

    /// Copies the per-appliance counters of the first `n` slots, the first `rules` rules'
    /// and the mirror sessions'.
    pub fn publish_appliances(&self, c: &Counters, n: usize, rules: usize) {
        for i in 0..n.min(self.appliance.len()) {
            self.appliance[i][0].store(c.appliance_packets[i], Relaxed);
            self.appliance[i][1].store(c.appliance_bytes[i], Relaxed);
            self.appliance[i][2].store(c.appliance_flows[i], Relaxed);
        }
        for (a, v) in self.rules.iter().zip(c.rules.iter()).take(rules) {
            for (a, v) in a.iter().zip(v) {
                a.store(*v, Relaxed);
            }
        }
        for (a, v) in self.mirror.iter().zip(c.mirror.iter()) {
            for (a, v) in a.iter().zip(v) {
                a.store(*v, Relaxed);
            }
        }
    }

    /// Total drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|d| d.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the table reaches its atomic: publish counters that are all distinct and
    /// read them back by name.
    #[test]
    fn publish_copies_every_counter_of_the_table() {
        let mut p = Pipeline::new(1024, Default::default()).unwrap();
        let c = &mut p.counters;
        (
            c.processed,
            c.encapsulated,
            c.decapsulated,
            c.fail_open,
            c.to_host,
        ) = (21, 22, 23, 24, 25);
        (c.new_flows, c.rebalanced_flows, c.tcp_resets, c.table_full) = (26, 27, 28, 29);
        (
            c.stateless_returns,
            c.icmp_too_big,
            c.restarted_flows,
            c.bypassed,
            c.fragmented,
        ) = (30, 31, 32, 33, 34);
        c.admitted_non_syn = 35;
        c.drops[DropReason::TxFull.index()] = 100;
        let io = LoopIo {
            rx: 11,
            tx: 12,
            handed_off: 13,
            tx_full: 1,
            host_queue_full: 2,
            handoff_full: 3,
        };
        let s = WorkerStats::new(4);
        s.publish(&p, &io);
        let got: Vec<(&str, u64)> = WorkerStats::NAMES.iter().copied().zip(s.values()).collect();
        let want: Vec<(&str, u64)> = vec![
            ("rx", 11),
            ("tx", 12),
            ("handed_off", 13),
            ("processed", 21),
            ("encapsulated", 22),
            ("decapsulated", 23),
            ("fail_open", 24),
            ("bypassed", 33),
            ("to_host", 25),
            ("new_flows", 26),
            ("rebalanced_flows", 27),
            ("restarted_flows", 32),
            ("admitted_non_syn", 35),
            ("tcp_resets", 28),
            ("icmp_too_big", 31),
            ("fragmented", 34),
            ("table_full", 29),
            ("stateless_returns", 30),
            ("flow_table_inserts", 0),
            ("flow_table_full_misses", 0),
            ("flow_table_expired", 0),
            ("flow_table_displaced", 0),
        ];
        assert_eq!(got, want);
        // The loop's drops land under their own reasons, on top of the pipeline's.
        assert_eq!(s.drops[DropReason::TxFull.index()].load(Relaxed), 101);
        assert_eq!(s.dropped(), 100 + 1 + 2 + 3);
    }
}
