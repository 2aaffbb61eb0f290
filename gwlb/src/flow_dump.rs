//! Pages of a worker's flow table for the control plane (`gwlb flows`, `GET /v1/flows`).
//!
//! A worker's flow table is its own: the control loop sends a [`FlowDumpRequest`] over a
//! bounded channel with an output vector it allocated; the worker [`serve`]s it between
//! bursts, scanning at most [`DUMP_SLOTS_PER_REQUEST`] slots, and sends the page back. A dump
//! never allocates on the worker and never pauses it for more than a few microseconds.

use crossbeam_channel::Sender;

use crate::flow::FlowKey;
use crate::flow_table::{DumpCursor, FlowEntry};
use crate::parse::IpAddrBytes;
use crate::pipeline::Pipeline;

/// Most flow-table slots one dump request scans (bounds the pause of a busy worker to a
/// few microseconds).
pub const DUMP_SLOTS_PER_REQUEST: usize = 1024;

/// Which flows a dump returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Target group index.
    pub group: Option<u16>,
    /// Appliance slot.
    pub appliance: Option<u16>,
    /// Address at either end.
    pub address: Option<IpAddrBytes>,
    /// Port at either end.
    pub port: Option<u16>,
}

impl FlowFilter {
    fn matches(&self, k: &FlowKey, e: &FlowEntry) -> bool {
        self.group.is_none_or(|g| g == e.group)
            && self.appliance.is_none_or(|a| a == e.appliance)
            && self
                .address
                .is_none_or(|a| a == k.lo_addr() || a == k.hi_addr())
            && self
                .port
                .is_none_or(|p| p == k.lo_port() || p == k.hi_port())
    }
}

/// One flow of a dump.
#[derive(Debug, Clone, Copy)]
pub struct FlowRecord {
    /// Its key.
    pub key: FlowKey,
    /// Its entry.
    pub entry: FlowEntry,
    /// Seconds since its last packet.
    pub idle: u32,
}

/// A request to a worker for a page of its flow table. The requester provides the output
/// vector with its capacity set to the most records wanted, so the worker allocates nothing.
#[derive(Debug)]
pub struct FlowDumpRequest {
    /// Slot to start at.
    pub cursor: DumpCursor,
    /// Which flows.
    pub filter: FlowFilter,
    /// Filled up to its capacity.
    pub out: Vec<FlowRecord>,
    /// Where the worker sends the page back.
    pub reply: Sender<FlowDumpReply>,
}

/// A worker's answer to a [`FlowDumpRequest`].
#[derive(Debug)]
pub struct FlowDumpReply {
    /// The records found.
    pub out: Vec<FlowRecord>,
    /// Where to continue; `None` at the end of the table.
    pub next: Option<DumpCursor>,
}

/// Serves one dump request: scans at most [`DUMP_SLOTS_PER_REQUEST`] slots, stopping early
/// (at the exact slot) when the output is full.
pub fn serve(pipeline: &Pipeline, mut req: FlowDumpRequest, now: u32) {
    let table = pipeline.flows();
    let mut cursor = Some(req.cursor);
    let mut scanned = 0;
    while let Some(c) = cursor {
        if scanned == DUMP_SLOTS_PER_REQUEST || req.out.len() == req.out.capacity() {
            break;
        }
        cursor = table.dump_page(c, 1, now, |k, e| {
            if req.filter.matches(k, e) {
                req.out.push(FlowRecord {
                    key: *k,
                    entry: *e,
                    idle: now.saturating_sub(e.last_seen()),
                });
            }
        });
        scanned += 1;
    }
    // The requester may have given up (timeout); nothing to do then.
    let _ = req.reply.send(FlowDumpReply {
        out: req.out,
        next: cursor,
    });
}
