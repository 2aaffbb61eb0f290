//! Ethernet ports: configuration, start/stop, rx/tx bursts, stats.
//!
//! Ownership: a [`Port`] claims its port id (one `Port` per id per process).
//! Once configured, the device references the mempool given to
//! [`Port::configure`]; the port keeps that pool alive and, when the last of
//! the `Port` and its [`RxQueue`]/[`TxQueue`] handles drops, stops and closes
//! the device (`rte_eth_dev_close` releases the port id).
//!
//! Queues are not thread-safe in DPDK: [`Port::rx_burst`]/[`Port::tx_burst`]
//! take `&mut self`, and multi-threaded workers take per-queue handles with
//! [`Port::rx_queue`]/[`Port::tx_queue`] (each queue can be taken once).

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_uint};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::eal;
use crate::error::{check, cstring, Error, Result};
use crate::mbuf::MbufBurst;
use crate::mempool::Mempool;
use crate::ring::Ring;
use crate::sys;

/// An ethdev port id. Debug/Display: `port0`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

/// A queue index (rx or tx). Debug/Display: `q1`; queue handles print as
/// `port0/rxq1`, `port0/txq1`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u16);

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}
impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}
impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

const MAX_PORTS: usize = sys::RTE_MAX_ETHPORTS as usize;
/// Queues per direction this layer tracks (bit mask of taken queues).
pub const MAX_QUEUES: u16 = 64;

static CLAIMED: [AtomicBool; MAX_PORTS] = [const { AtomicBool::new(false) }; MAX_PORTS];

fn claim(id: PortId) -> Result<()> {
    let slot = CLAIMED
        .get(usize::from(id.0))
        .ok_or_else(|| Error::InvalidArgument(format!("{id} out of range")))?;
    if slot.swap(true, Ordering::AcqRel) {
        return Err(Error::Busy {
            what: id.to_string(),
            why: "already owned by another Port",
        });
    }
    Ok(())
}

pub(crate) fn is_claimed(id: PortId) -> bool {
    CLAIMED
        .get(usize::from(id.0))
        .is_some_and(|s| s.load(Ordering::Acquire))
}

/// Number of usable ports (`rte_eth_dev_count_avail`).
pub fn count() -> u16 {
    if !eal::is_initialized() {
        return 0;
    }
    // SAFETY: EAL is initialized; plain getter.
    unsafe { sys::rte_eth_dev_count_avail() }
}

/// Ids of all usable, unowned ports (`RTE_ETH_FOREACH_DEV`).
pub fn ids() -> Vec<PortId> {
    let mut out = Vec::new();
    if !eal::is_initialized() {
        return out;
    }
    let mut p: u64 = 0;
    loop {
        // p < RTE_MAX_ETHPORTS here, so it fits u16.
        // SAFETY: EAL is initialized; iterates the ethdev table.
        p = unsafe { sys::rte_eth_find_next_owned_by(p as u16, 0) };
        if p >= MAX_PORTS as u64 {
            return out;
        }
        out.push(PortId(p as u16));
        p += 1;
    }
}

/// Looks a port id up by device name (`rte_eth_dev_get_port_by_name`).
pub fn id_by_name(name: &str) -> Result<PortId> {
    eal::ensure()?;
    let cname = cstring("port name", name)?;
    let mut id = 0u16;
    // SAFETY: valid C string and out pointer.
    check("rte_eth_dev_get_port_by_name", unsafe {
        sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id)
    })?;
    Ok(PortId(id))
}

/// Port setup for [`Port::configure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Number of rx queues (1..=64).
    pub rx_queues: u16,
    /// Number of tx queues (1..=64).
    pub tx_queues: u16,
    /// Rx descriptors per queue (adjusted to the driver's limits).
    pub rx_desc: u16,
    /// Tx descriptors per queue (adjusted to the driver's limits).
    pub tx_desc: u16,
    /// Enable RSS over IP/TCP/UDP (restricted to what the device supports;
    /// silently off if it supports none).
    pub rss: bool,
    /// MTU to set, if any.
    pub mtu: Option<u16>,
    /// Enable promiscuous mode (`false` leaves the device default).
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        Self {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: false,
            mtu: None,
            promiscuous: false,
        }
    }
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Rx packets dropped by the hardware (rx queue full).
    pub imissed: u64,
    /// Erroneous rx packets.
    pub ierrors: u64,
    /// Failed tx packets.
    pub oerrors: u64,
    /// Rx mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// Link state (`rte_eth_link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 if unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Selected fields of `rte_eth_dev_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevInfo {
    /// Driver name, e.g. `net_null`.
    pub driver_name: String,
    /// Maximum rx queues.
    pub max_rx_queues: u16,
    /// Maximum tx queues.
    pub max_tx_queues: u16,
    /// Minimum MTU.
    pub min_mtu: u16,
    /// Maximum MTU.
    pub max_mtu: u16,
    /// Supported RSS hash functions (`RTE_ETH_RSS_*` bits).
    pub flow_type_rss_offloads: u64,
    /// RSS hash key length in bytes (0: the driver does not say; 40 is Toeplitz's usual).
    pub hash_key_size: u8,
}

/// A Toeplitz RSS key that hashes both directions of a flow alike: the 16-bit pattern
/// 0x6d5a repeated (Woo and Park, "Scalable TCP Session Monitoring with Symmetric
/// Receive-side Scaling", 2012). With it, swapping source and destination addresses and
/// ports gives the same hash, so a NIC puts both directions of a user flow on one queue.
pub fn symmetric_rss_key(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
        .collect()
}

// RTE_ETH_RSS_{IP,TCP,UDP} (function-like macros bindgen cannot evaluate):
// bits 2..=17 of the rss_hf ABI, stable since 1.x.
const RSS_IP: u64 = (1 << 2) | (1 << 3) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 13) | (1 << 15);
const RSS_TCP: u64 = (1 << 4) | (1 << 10) | (1 << 16);
const RSS_UDP: u64 = (1 << 5) | (1 << 11) | (1 << 17);

/// Where an rx queue's memory lives (see [`Port::configure_placed`]).
#[derive(Debug, Clone, Copy)]
pub struct QueueMemory<'a> {
    /// NUMA socket of the queue's descriptors, or [`crate::SOCKET_ID_ANY`].
    pub socket: i32,
    /// The pool the queue's received mbufs come from.
    pub pool: &'a Mempool,
}

struct PortShared {
    id: PortId,
    /// Set once the device has been configured, with the pools of its rx
    /// queues (never empty then): the device references them, so they must
    /// outlive its queues.
    pools: Vec<Mempool>,
    /// Objects the device uses and that must outlive it (rings).
    keep: Vec<Arc<dyn Send + Sync>>,
    /// vdev to uninit when the device is released (ports from rings).
    vdev: Option<CString>,
    /// Mirrors `Port::started` so the final drop does not stop twice.
    started: AtomicBool,
}

impl Drop for PortShared {
    fn drop(&mut self) {
        if !self.pools.is_empty() {
            // SAFETY: we own the configured port and no queue handle is left
            // (this is the last reference), so nobody polls it. Errors are
            // ignored: nothing useful can be done in drop.
            unsafe {
                if self.started.load(Ordering::Acquire) {
                    sys::rte_eth_dev_stop(self.id.0);
                }
                sys::rte_eth_dev_close(self.id.0);
            }
        }
        if let Some(name) = &self.vdev {
            // SAFETY: valid C string; the port of this vdev is closed above
            // and no longer claimed by anyone but us.
            unsafe { sys::rte_vdev_uninit(name.as_ptr()) };
        }
        if let Some(slot) = CLAIMED.get(usize::from(self.id.0)) {
            slot.store(false, Ordering::Release);
        }
        // `pools` and `keep` drop after this: after the device is gone.
    }
}

/// An owned ethdev port. See the module docs for ownership rules.
pub struct Port {
    shared: Arc<PortShared>,
    id: u16,
    n_rx: u16,
    n_tx: u16,
    taken_rx: u64,
    taken_tx: u64,
    started: bool,
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port")
            .field("id", &PortId(self.id))
            .field("rx_queues", &self.n_rx)
            .field("tx_queues", &self.n_tx)
            .field("started", &self.started)
            .finish()
    }
}

impl Port {
    /// Takes ownership of port `id`; fails if it is invalid or already owned.
    pub fn new(id: PortId) -> Result<Port> {
        eal::ensure()?;
        // SAFETY: EAL is initialized; plain validity check.
        if unsafe { sys::rte_eth_dev_is_valid_port(id.0) } == 0 {
            return Err(Error::from_errno("rte_eth_dev_is_valid_port", libc::ENODEV));
        }
        claim(id)?;
        Ok(Port {
            shared: Arc::new(PortShared {
                id,
                pools: Vec::new(),
                keep: Vec::new(),
                vdev: None,
                started: AtomicBool::new(false),
            }),
            id: id.0,
            n_rx: 0,
            n_tx: 0,
            taken_rx: 0,
            taken_tx: 0,
            started: false,
        })
    }

    /// Takes ownership of the port with device name `name` (e.g. the vdev
    /// name `net_null0`).
    pub fn by_name(name: &str) -> Result<Port> {
        Port::new(id_by_name(name)?)
    }

    /// Creates a port backed by rings (`rte_eth_from_rings`): tx queue `i`
    /// enqueues into `tx[i]`, rx queue `i` dequeues from `rx[i]`. The port
    /// keeps the rings alive and removes its vdev (`net_ring_<name>`) when
    /// released. Using the same ring for rx and tx makes a loopback.
    pub fn from_rings(name: &str, rx: &[&Ring], tx: &[&Ring]) -> Result<Port> {
        eal::ensure()?;
        let cname = cstring("port name", name)?;
        let rxp: Vec<*mut sys::rte_ring> = rx.iter().map(|r| r.as_ptr()).collect();
        let txp: Vec<*mut sys::rte_ring> = tx.iter().map(|r| r.as_ptr()).collect();
        // SAFETY: valid C string and arrays of live rings of mbufs, with
        // their lengths; the rings are kept alive by the port (below).
        let rc = unsafe {
            sys::rte_eth_from_rings(
                cname.as_ptr(),
                rxp.as_ptr(),
                rxp.len() as c_uint,
                txp.as_ptr(),
                txp.len() as c_uint,
                sys::rte_socket_id(),
            )
        };
        let id = check("rte_eth_from_rings", rc)?;
        let vdev = CString::new(format!("net_ring_{name}")).expect("no NUL");
        let id = PortId(u16::try_from(id).expect("port id < RTE_MAX_ETHPORTS"));
        let mut port = match Port::new(id) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: we just created this vdev and nobody owns its port.
                unsafe { sys::rte_vdev_uninit(vdev.as_ptr()) };
                return Err(e);
            }
        };
        let shared = Arc::get_mut(&mut port.shared).expect("fresh port");
        shared.keep = rx.iter().chain(tx).map(|r| r.keepalive()).collect();
        shared.vdev = Some(vdev);
        Ok(port)
    }

    /// The port id.
    #[inline]
    pub fn id(&self) -> PortId {
        PortId(self.id)
    }

    /// Device name (`rte_eth_dev_get_name_by_port`).
    pub fn name(&self) -> Result<String> {
        let mut buf = [0 as c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes as the API requires.
        check("rte_eth_dev_get_name_by_port", unsafe {
            sys::rte_eth_dev_get_name_by_port(self.id, buf.as_mut_ptr())
        })?;
        // SAFETY: DPDK wrote a NUL-terminated name into buf.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    /// NUMA socket of the device, or [`crate::SOCKET_ID_ANY`] if unknown.
    pub fn socket_id(&self) -> i32 {
        // SAFETY: plain getter on a valid port.
        unsafe { sys::rte_eth_dev_socket_id(self.id) }
    }

    fn raw_dev_info(&self) -> Result<sys::rte_eth_dev_info> {
        // SAFETY: rte_eth_dev_info is a plain C struct; all-zero is valid.
        let mut info: sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: valid port and out pointer.
        check("rte_eth_dev_info_get", unsafe {
            sys::rte_eth_dev_info_get(self.id, &mut info)
        })?;
        Ok(info)
    }

    /// Driver name and limits (`rte_eth_dev_info_get`).
    pub fn dev_info(&self) -> Result<DevInfo> {
        let info = self.raw_dev_info()?;
        let driver_name = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: non-null driver_name points at the driver's static name.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(DevInfo {
            driver_name,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            flow_type_rss_offloads: info.flow_type_rss_offloads,
            hash_key_size: info.hash_key_size,
        })
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> Result<[u8; 6]> {
        let mut mac = sys::rte_ether_addr { addr_bytes: [0; 6] };
        // SAFETY: valid port and out pointer.
        check("rte_eth_macaddr_get", unsafe {
            sys::rte_eth_macaddr_get(self.id, &mut mac)
        })?;
        Ok(mac.addr_bytes)
    }

    /// Link state without waiting (`rte_eth_link_get_nowait`).
    pub fn link_status(&self) -> Result<LinkStatus> {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid port and out pointer.
        check("rte_eth_link_get_nowait", unsafe {
            sys::rte_eth_link_get_nowait(self.id, &mut link)
        })?;
        Ok(LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() != 0,
        })
    }

    /// Basic counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<PortStats> {
        // SAFETY: rte_eth_stats is plain integers; all-zero is valid.
        let mut s: sys::rte_eth_stats = unsafe { std::mem::zeroed() };
        // SAFETY: valid port and out pointer.
        check("rte_eth_stats_get", unsafe {
            sys::rte_eth_stats_get(self.id, &mut s)
        })?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Resets the basic counters.
    pub fn reset_stats(&self) -> Result<()> {
        // SAFETY: valid port.
        check("rte_eth_stats_reset", unsafe {
            sys::rte_eth_stats_reset(self.id)
        })?;
        Ok(())
    }

    fn exclusive(&mut self, why: &'static str) -> Result<&mut PortShared> {
        let what = PortId(self.id).to_string();
        Arc::get_mut(&mut self.shared).ok_or(Error::Busy { what, why })
    }

    /// Configures the device and sets up its queues with `pool` (stopping
    /// it first if started), every queue's descriptors on the device's
    /// socket. The port then keeps `pool` alive. Fails with
    /// [`Error::Busy`] while queue handles are outstanding.
    pub fn configure(&mut self, cfg: &PortConfig, pool: &Mempool) -> Result<()> {
        let socket = self.socket_id();
        let rx: Vec<QueueMemory<'_>> = (0..cfg.rx_queues)
            .map(|_| QueueMemory { pool, socket })
            .collect();
        let tx = vec![socket; usize::from(cfg.tx_queues)];
        self.configure_placed(cfg, &rx, &tx)
    }

    /// [`Port::configure`] with each queue's memory placed: rx queue `q`'s
    /// descriptors on `rx[q].socket` and its mbufs from `rx[q].pool`, tx
    /// queue `q`'s descriptors on `tx_sockets[q]` (DPDK l3fwd's layout: the
    /// socket of the lcore that polls the queue). `rx` must have
    /// `cfg.rx_queues` entries and `tx_sockets` `cfg.tx_queues`. The port
    /// keeps every pool alive.
    pub fn configure_placed(
        &mut self,
        cfg: &PortConfig,
        rx: &[QueueMemory<'_>],
        tx_sockets: &[i32],
    ) -> Result<()> {
        let id = self.id;
        if rx.len() != usize::from(cfg.rx_queues) || tx_sockets.len() != usize::from(cfg.tx_queues)
        {
            return Err(Error::InvalidArgument(format!(
                "{}: placement for {} rx / {} tx queues, {} / {} configured",
                PortId(id),
                rx.len(),
                tx_sockets.len(),
                cfg.rx_queues,
                cfg.tx_queues
            )));
        }
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 {
            return Err(Error::InvalidArgument(
                "a port needs >= 1 rx and tx queue".into(),
            ));
        }
        if cfg.rx_queues > MAX_QUEUES || cfg.tx_queues > MAX_QUEUES {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_QUEUES} queues"
            )));
        }
        let info = self.raw_dev_info()?;
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::InvalidArgument(format!(
                "{}: {} rx / {} tx queues requested, device supports {} / {}",
                PortId(id),
                cfg.rx_queues,
                cfg.tx_queues,
                info.max_rx_queues,
                info.max_tx_queues
            )));
        }
        self.exclusive("queue handles are outstanding")?;
        if self.started {
            self.stop()?;
        }
        // SAFETY: rte_eth_conf is a plain C struct; all-zero is its default.
        let mut conf: sys::rte_eth_conf = unsafe { std::mem::zeroed() };
        let rss_hf = (RSS_IP | RSS_TCP | RSS_UDP) & info.flow_type_rss_offloads;
        // Lives until rte_eth_dev_configure has copied it.
        let mut key = symmetric_rss_key(match info.hash_key_size {
            0 => 40,
            n => usize::from(n),
        });
        if cfg.rss && rss_hf != 0 {
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            // Both directions of a flow on one queue (see `symmetric_rss_key`).
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
        }
        // SAFETY: valid port, conf outlives the call (DPDK copies it); no
        // queue handle exists (checked above) and the port is stopped.
        check("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(id, cfg.rx_queues, cfg.tx_queues, &conf)
        })?;
        // From here on the device may reference the pools.
        let shared = self.exclusive("queue handles are outstanding")?;
        shared.pools.clear();
        for m in rx {
            if !shared.pools.iter().any(|p| p.as_ptr() == m.pool.as_ptr()) {
                shared.pools.push(m.pool.clone());
            }
        }
        self.n_rx = 0;
        self.n_tx = 0;
        self.taken_rx = 0;
        self.taken_tx = 0;

        let (mut rxd, mut txd) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port and out pointers.
        check("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rxd, &mut txd)
        })?;
        // SOCKET_ID_ANY (-1) is passed through as the unsigned the API takes.
        for (q, m) in (0..cfg.rx_queues).zip(rx) {
            // SAFETY: configured port, q < nb_rx_queues, default rxconf
            // (null), live pool kept alive by `shared.pools`.
            check("rte_eth_rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    rxd,
                    m.socket as c_uint,
                    std::ptr::null(),
                    m.pool.as_ptr(),
                )
            })?;
        }
        for (q, &socket) in (0..cfg.tx_queues).zip(tx_sockets) {
            // SAFETY: configured port, q < nb_tx_queues, default txconf.
            check("rte_eth_tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(id, q, txd, socket as c_uint, std::ptr::null())
            })?;
        }
        if let Some(mtu) = cfg.mtu {
            // SAFETY: valid configured port.
            check("rte_eth_dev_set_mtu", unsafe {
                sys::rte_eth_dev_set_mtu(id, mtu)
            })?;
        }
        if cfg.promiscuous {
            self.set_promiscuous(true)?;
        }
        self.n_rx = cfg.rx_queues;
        self.n_tx = cfg.tx_queues;
        Ok(())
    }

    /// Enables or disables promiscuous mode.
    pub fn set_promiscuous(&self, on: bool) -> Result<()> {
        // SAFETY: valid port.
        let rc = unsafe {
            if on {
                sys::rte_eth_promiscuous_enable(self.id)
            } else {
                sys::rte_eth_promiscuous_disable(self.id)
            }
        };
        check("rte_eth_promiscuous_enable/disable", rc)?;
        Ok(())
    }

    /// Starts the device (`rte_eth_dev_start`). Requires [`Port::configure`].
    pub fn start(&mut self) -> Result<()> {
        if self.shared.pools.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} is not configured",
                self.id()
            )));
        }
        self.exclusive("queue handles are outstanding")?;
        // SAFETY: configured port; no other user of its queues.
        check("rte_eth_dev_start", unsafe {
            sys::rte_eth_dev_start(self.id)
        })?;
        self.started = true;
        self.shared.started.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops the device (`rte_eth_dev_stop`). Fails with [`Error::Busy`]
    /// while queue handles are outstanding (they may be polling).
    pub fn stop(&mut self) -> Result<()> {
        self.exclusive("queue handles are outstanding")?;
        // SAFETY: valid port; no concurrent poller (no handles).
        check("rte_eth_dev_stop", unsafe {
            sys::rte_eth_dev_stop(self.id)
        })?;
        self.started = false;
        self.shared.started.store(false, Ordering::Release);
        Ok(())
    }

    /// Whether [`Port::start`] succeeded and no stop followed.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Configured rx queues.
    pub fn rx_queues(&self) -> u16 {
        self.n_rx
    }

    /// Configured tx queues.
    pub fn tx_queues(&self) -> u16 {
        self.n_tx
    }

    #[inline]
    fn assert_queue(n: u16, taken: u64, q: QueueId, dir: &str) {
        assert!(
            q.0 < n && taken & (1 << q.0) == 0,
            "{dir} queue {q:?} is not configured or was taken as a handle"
        );
    }

    /// Receives up to `burst.spare_capacity()` packets from rx queue `q`
    /// and appends them to `burst`; returns how many.
    ///
    /// Panics if `q` is not configured or was taken with [`Port::rx_queue`].
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, q: QueueId, burst: &mut MbufBurst<N>) -> usize {
        Self::assert_queue(self.n_rx, self.taken_rx, q, "rx");
        rx(self.id, q.0, burst)
    }

    /// Transmits `burst` on tx queue `q`. The packets the driver took are
    /// removed from the front of `burst`; the others stay (retry them, or
    /// drop/clear the burst to free them). Returns how many were sent.
    ///
    /// Panics if `q` is not configured or was taken with [`Port::tx_queue`].
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, q: QueueId, burst: &mut MbufBurst<N>) -> usize {
        Self::assert_queue(self.n_tx, self.taken_tx, q, "tx");
        tx(self.id, q.0, burst)
    }

    /// Takes rx queue `q` as a `Send` handle for a worker thread (once).
    pub fn rx_queue(&mut self, q: QueueId) -> Result<RxQueue> {
        if q.0 >= self.n_rx || self.taken_rx & (1 << q.0) != 0 {
            return Err(Error::InvalidArgument(format!(
                "{}/rx{q:?} not configured or already taken",
                self.id()
            )));
        }
        self.taken_rx |= 1 << q.0;
        Ok(RxQueue {
            shared: self.shared.clone(),
            port: self.id,
            queue: q.0,
        })
    }

    /// Takes tx queue `q` as a `Send` handle for a worker thread (once).
    pub fn tx_queue(&mut self, q: QueueId) -> Result<TxQueue> {
        if q.0 >= self.n_tx || self.taken_tx & (1 << q.0) != 0 {
            return Err(Error::InvalidArgument(format!(
                "{}/tx{q:?} not configured or already taken",
                self.id()
            )));
        }
        self.taken_tx |= 1 << q.0;
        Ok(TxQueue {
            shared: self.shared.clone(),
            port: self.id,
            queue: q.0,
        })
    }
}

#[inline]
fn rx<const N: usize>(port: u16, queue: u16, burst: &mut MbufBurst<N>) -> usize {
    let (ptr, room) = burst.spare_raw();
    // room <= N <= u16::MAX (checked when the burst type is instantiated).
    // SAFETY: `port`/`queue` are a configured queue owned exclusively by the
    // caller (&mut Port or &mut RxQueue); a stopped port uses DPDK's dummy
    // burst functions. `ptr` has `room` writable slots.
    let n = unsafe { sys::dpdk_shim_rx_burst(port, queue, ptr, room as u16) } as usize;
    // SAFETY: the driver wrote n <= room owned mbuf pointers after len.
    unsafe { burst.set_len(burst.len() + n) };
    n
}

#[inline]
fn tx<const N: usize>(port: u16, queue: u16, burst: &mut MbufBurst<N>) -> usize {
    let len = burst.len();
    // SAFETY: exclusive configured queue as in `rx`; the first len slots are
    // owned mbufs. The driver takes ownership of the first n returned.
    let n = unsafe { sys::dpdk_shim_tx_burst(port, queue, burst.raw_ptr(), len as u16) } as usize;
    burst.consume_front(n);
    n
}

/// An rx queue handle taken from a [`Port`]; `Send`, keeps the device and its
/// mempool alive. Debug: `port0/rxq1`.
pub struct RxQueue {
    shared: Arc<PortShared>,
    port: u16,
    queue: u16,
}

/// A tx queue handle taken from a [`Port`]; `Send`, keeps the device alive.
/// Debug: `port0/txq1`.
pub struct TxQueue {
    shared: Arc<PortShared>,
    port: u16,
    queue: u16,
}

impl fmt::Debug for RxQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}/rxq{}", self.port, self.queue)
    }
}

impl fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}/txq{}", self.port, self.queue)
    }
}

impl RxQueue {
    /// See [`Port::rx_burst`].
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        rx(self.port, self.queue, burst)
    }

    /// The port.
    pub fn port(&self) -> PortId {
        self.shared.id
    }

    /// The queue index.
    pub fn queue(&self) -> QueueId {
        QueueId(self.queue)
    }
}

impl TxQueue {
    /// See [`Port::tx_burst`].
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        tx(self.port, self.queue, burst)
    }

    /// The port.
    pub fn port(&self) -> PortId {
        self.shared.id
    }

    /// The queue index.
    pub fn queue(&self) -> QueueId {
        QueueId(self.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_debug() {
        assert_eq!(format!("{:?}", PortId(0)), "port0");
        assert_eq!(format!("{}", QueueId(1)), "q1");
        assert_eq!(format!("{:?}", crate::LcoreId(2)), "lcore2");
    }

    /// Toeplitz over `input` with `key` (the function RSS NICs compute).
    fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
        let bit = |i: usize| (key[i / 8] >> (7 - i % 8)) & 1;
        let mut h = 0u32;
        for (byte_i, &b) in input.iter().enumerate() {
            for j in 0..8 {
                if b & (0x80 >> j) != 0 {
                    let start = byte_i * 8 + j;
                    let mut window = 0u32;
                    for k in 0..32 {
                        window = (window << 1) | u32::from(bit(start + k));
                    }
                    h ^= window;
                }
            }
        }
        h
    }

    #[test]
    fn symmetric_key_hashes_both_directions_alike() {
        let key = symmetric_rss_key(40);
        assert_eq!(&key[..4], &[0x6d, 0x5a, 0x6d, 0x5a]);
        // IPv4 + TCP input: src, dst, sport, dport.
        let fwd = [10, 1, 0, 2, 10, 2, 0, 7, 0x9c, 0x40, 0x00, 0x50];
        let rev = [10, 2, 0, 7, 10, 1, 0, 2, 0x00, 0x50, 0x9c, 0x40];
        assert_eq!(toeplitz(&key, &fwd), toeplitz(&key, &rev));
        // The usual Microsoft key is not symmetric: the test can tell.
        let ms: [u8; 40] = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        assert_ne!(toeplitz(&ms, &fwd), toeplitz(&ms, &rev));
    }

    #[test]
    fn rss_bits_match_dpdk() {
        // RTE_ETH_RSS_IP / TCP / UDP in rte_ethdev.h (22.11).
        assert_eq!(RSS_IP, 0xa38c);
        assert_eq!(RSS_TCP, 0x1_0410);
        assert_eq!(RSS_UDP, 0x2_0820);
    }

    #[test]
    fn no_eal_no_ports() {
        // Unit tests never init the EAL.
        assert_eq!(count(), 0);
        assert!(ids().is_empty());
        assert_eq!(Port::new(PortId(0)).unwrap_err(), Error::EalNotInitialized);
    }
}
