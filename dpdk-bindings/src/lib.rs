//! Bindings to the system libdpdk (22.11+) and a small safe layer for a
//! run-to-completion packet worker.
//!
//! - [`sys`]: raw bindgen output plus `dpdk_shim_*` wrappers for the
//!   `static inline` per-burst functions (rx/tx burst, bulk alloc, ring
//!   enqueue/dequeue, lcore id, errno).
//! - Safe layer: [`Eal`], [`Mempool`], [`Mbuf`]/[`MbufBurst`], [`Port`],
//!   [`vdev`], [`Ring`], [`lcore`] (thread registration, TSC, launch).
//!
//! Per-packet accessors on [`Mbuf`] read `rte_mbuf` fields directly; the
//! only FFI calls on the data path are one per burst.

pub mod eal;
pub mod error;
pub mod lcore;
pub mod mbuf;
pub mod mempool;
pub mod port;
pub mod ring;
pub mod sys;
pub mod vdev;

pub use eal::Eal;
pub use error::{Error, Result};
pub use lcore::{LcoreId, ThreadRegistration};
pub use mbuf::{Mbuf, MbufBurst};
pub use mempool::{Mempool, DEFAULT_DATA_ROOM, HEADROOM, SOCKET_ID_ANY};
pub use port::{
    DevInfo, LinkStatus, Port, PortConfig, PortId, PortStats, QueueId, QueueMemory, RxQueue,
    TxQueue,
};
pub use ring::{Ring, RingConsumer, RingProducer};
