//! EAL arguments and DPDK ports from the configuration.

use std::path::Path;

use dpdk_bindings::port::{Port, PortConfig, QueueMemory};
use dpdk_bindings::{Mempool, SOCKET_ID_ANY};

use crate::config::mbufs::{self, af_packet_framesz};
use crate::config::{Config, Device, Hugepages};
use crate::numa::{SocketId, SocketPlan};

/// Why the data path could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// EAL initialisation failed.
    #[error("DPDK EAL initialisation failed: {source}{hint}")]
    Eal {
        /// DPDK's error.
        source: dpdk_bindings::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// A port could not be opened or configured.
    #[error("ports[{index}] ({name}): {what}: {source}")]
    Port {
        /// Port index in the config.
        index: usize,
        /// Port name.
        name: String,
        /// The step that failed.
        what: &'static str,
        /// DPDK's error.
        source: dpdk_bindings::Error,
    },
    /// A port cannot give every worker its own TX queue.
    #[error("ports[{index}] ({name}): device allows {max} TX queues but {workers} workers need one each; use fewer dataplane.worker_cpus")]
    TooFewTxQueues {
        /// Port index.
        index: usize,
        /// Port name.
        name: String,
        /// Device maximum.
        max: u16,
        /// Workers configured.
        workers: usize,
    },
    /// Mempool creation failed.
    #[error("mbuf pool on socket {socket}: {source}")]
    Mempool {
        /// The NUMA socket of the pool's workers.
        socket: u32,
        /// DPDK's error.
        source: dpdk_bindings::Error,
    },
    /// A flow table could not be allocated.
    #[error("flow table: {0}")]
    FlowTable(#[from] crate::flow_table::FlowTableError),
    /// The BGP speaker could not start.
    #[error(transparent)]
    Bgp(#[from] crate::routing::speaker::SpeakerError),
    /// A worker thread ended before it was ready (see the log).
    #[error("a worker thread failed to start (see the log)")]
    WorkerStart,
    /// A ring could not be created.
    #[error("handoff ring: {0}")]
    Ring(dpdk_bindings::Error),
    /// The control API or metrics listener could not start.
    #[error("control API: {0}")]
    Api(#[from] crate::api::ApiError),
    /// The control loop could not start.
    #[error("control plane: {0}")]
    Control(#[from] crate::control::control_loop::ControlStartError),
    /// A worker thread could not be started.
    #[error("worker thread: {0}")]
    Thread(std::io::Error),
    /// Another gwlb uses one of the ports.
    #[error("{0}")]
    InUse(#[from] crate::instance_lock::LockError),
}

/// Where each worker's memory lives: the socket plan and its pools (`pools[i]` on
/// `plan.sockets[i]`).
#[derive(Debug, Clone, Copy)]
pub struct WorkerMemory<'a> {
    /// Each worker's socket and pool.
    pub plan: &'a SocketPlan,
    /// One mbuf pool per socket of the plan.
    pub pools: &'a [Mempool],
}

impl WorkerMemory<'_> {
    /// Worker `w`'s socket, as the `socket` argument of DPDK's allocations.
    pub fn socket(&self, w: usize) -> i32 {
        dpdk_socket(self.plan.socket_of_worker(w))
    }

    /// The mbuf pool of worker `w`'s socket.
    pub fn pool(&self, w: usize) -> &Mempool {
        &self.pools[self.plan.pool_of_worker[w]]
    }
}

/// A socket id as DPDK's allocations take it.
pub fn dpdk_socket(s: SocketId) -> i32 {
    i32::try_from(s).unwrap_or(SOCKET_ID_ANY)
}

/// Free 2 MiB hugepages reported by the kernel.
pub fn free_hugepages() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether EAL will run on hugepages with this config on this machine.
pub fn use_hugepages(cfg: &Config) -> bool {
    match cfg.dataplane.hugepages {
        Hugepages::On => true,
        Hugepages::Off => false,
        // 64 pages (128 MiB) is the least a useful pool set needs.
        Hugepages::Auto => use_hugepages_auto(),
    }
}

/// The `auto` rule: hugepages when at least 64 free 2 MiB pages (128 MiB) and hugetlbfs at
/// /dev/hugepages are there.
pub fn use_hugepages_auto() -> bool {
    free_hugepages() >= 64 && Path::new("/dev/hugepages").exists()
}

/// Data room of gwlb's mbufs ([`crate::config::mbufs::data_room`]: the most any port needs,
/// the XDP headroom of `net_af_xdp` ports and `net_af_packet` ring frames included).
pub fn mbuf_data_room(cfg: &Config) -> u16 {
    mbufs::data_room(&cfg.ports)
}

/// A vdev spec with what gwlb adds: `net_af_packet` ring sizes for a large MTU
/// ([`af_packet_framesz`]).
fn vdev_spec(spec: &str, mtu: u16) -> String {
    match af_packet_framesz(spec, mtu) {
        Some((f, true)) => format!("{spec},blocksz={f},framesz={f}"),
        _ => spec.to_owned(),
    }
}

/// The EAL command line for a config: main lcore, memory mode, devices, then the config's
/// `eal_args`, then `extra` from the command line.
pub fn eal_args(cfg: &Config, hugepages: bool, extra: &[String]) -> Vec<String> {
    let d = &cfg.dataplane;
    let mut a = vec![
        "-l".to_owned(),
        d.main_cpu.to_string(),
        "--no-telemetry".to_owned(),
    ];
    if hugepages {
        // No runtime files, hugepage files unlinked at once: nothing is left behind.
        a.push("--in-memory".to_owned());
    } else {
        a.push("--no-shconf".to_owned());
        a.push("--no-huge".to_owned());
        a.push("-m".to_owned());
        a.push(d.memory_mb.to_string());
    }
    let mut any_pci = false;
    for p in &cfg.ports {
        match &p.device {
            Device::Vdev(spec) => a.push(format!("--vdev={}", vdev_spec(spec, p.mtu))),
            dev @ Device::Pci { .. } => {
                any_pci = true;
                a.push("-a".to_owned());
                a.push(dev.to_string());
            }
        }
    }
    for (i, p) in cfg.ports.iter().enumerate() {
        if let Some(ifname) = &p.kernel_interface {
            a.push(format!("--vdev={}", tap_spec(i, ifname)));
        }
    }
    if !any_pci && !d.eal_args.iter().chain(extra).any(|x| x == "--no-pci") {
        a.push("--no-pci".to_owned());
    }
    a.extend(d.eal_args.iter().cloned());
    a.extend(extra.iter().cloned());
    a
}

/// The TAP vdev spec of the exception path of port `index`.
pub fn tap_spec(index: usize, ifname: &str) -> String {
    format!("net_tap{index},iface={ifname}")
}

/// Opens and configures the exception-path TAP port of every port that names a
/// `kernel_interface`: one RX queue (worker 0 polls it: its socket and pool), one TX queue
/// per worker (on that worker's socket).
/// Returns `(config port index, tap port)` pairs.
pub fn open_tap_ports(
    cfg: &Config,
    mem: &WorkerMemory<'_>,
) -> Result<Vec<(usize, Port)>, StartError> {
    let workers = cfg.dataplane.workers();
    let mut taps = Vec::new();
    for (index, pc) in cfg.ports.iter().enumerate() {
        let Some(ifname) = &pc.kernel_interface else {
            continue;
        };
        let err = |what: &'static str| {
            let name = format!("{} (kernel interface {ifname})", pc.name);
            move |source| StartError::Port {
                index,
                name,
                what,
                source,
            }
        };
        let mut port = Port::by_name(&format!("net_tap{index}")).map_err(err("open TAP"))?;
        let conf = PortConfig {
            rx_queues: 1,
            tx_queues: workers as u16,
            ..PortConfig::default()
        };
        let rx = [QueueMemory {
            socket: mem.socket(0),
            pool: mem.pool(0),
        }];
        let tx: Vec<i32> = (0..workers).map(|w| mem.socket(w)).collect();
        port.configure_placed(&conf, &rx, &tx)
            .map_err(err("configure TAP"))?;
        taps.push((index, port));
    }
    Ok(taps)
}

/// Gives the kernel side of a TAP exception path the port's MAC, addresses and MTU, and
/// brings it up, so that the kernel answers ARP/ND and ping for the gateway's addresses and
/// sockets (health checks) use them. Uses iproute2.
pub fn configure_kernel_interface(
    ifname: &str,
    mac: [u8; 6],
    port: &crate::config::Port,
) -> Result<(), String> {
    let mac = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut cmds: Vec<Vec<String>> = vec![
        vec![
            "link".into(),
            "set".into(),
            "dev".into(),
            ifname.into(),
            "address".into(),
            mac,
        ],
        vec![
            "link".into(),
            "set".into(),
            "dev".into(),
            ifname.into(),
            "mtu".into(),
            port.mtu.to_string(),
        ],
    ];
    for net in [
        port.ipv4.map(|n| n.to_string()),
        port.ipv6.map(|n| n.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        cmds.push(vec![
            "addr".into(),
            "replace".into(),
            net,
            "dev".into(),
            ifname.into(),
        ]);
    }
    cmds.push(vec![
        "link".into(),
        "set".into(),
        "dev".into(),
        ifname.into(),
        "up".into(),
    ]);
    for c in cmds {
        let out = std::process::Command::new("ip")
            .args(&c)
            .output()
            .map_err(|e| format!("ip {}: {e}", c.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                c.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Keeps an af_packet port's PMD sockets from receiving the frames sent on its interface
/// by others: the workers' copy sockets ([`super::copy_socket`]) and the kernel. Logged
/// when that fails: the port then also receives its own mirrored copies.
fn ignore_outgoing_frames(port: &str, device: &Device) {
    let Some(iface) = device.vdev_arg("iface") else {
        return;
    };
    match super::copy_socket::ignore_outgoing(iface) {
        Ok(n) if n > 0 => tracing::debug!(port, iface, sockets = n, "outgoing frames ignored"),
        Ok(_) => tracing::warn!(
            port,
            iface,
            "found no packet socket of port {port} on {iface}: it may receive the frames sent \
             on the interface, its own mirrored copies included"
        ),
        Err(e) => tracing::warn!(
            port,
            iface,
            "could not keep port {port} from receiving the frames sent on {iface} ({e}): it \
             may receive its own mirrored copies"
        ),
    }
}

/// Opens and configures every port: one RX queue per worker where the device allows it
/// (workers beyond that poll nothing on the port), one TX queue per worker. Queue `w` (polled
/// by worker `w`) has its descriptors on worker `w`'s socket and, for RX, its mbufs from that
/// socket's pool; a worker on another socket than the device is logged (every packet then
/// crosses the socket interconnect).
pub fn open_ports(cfg: &Config, mem: &WorkerMemory<'_>) -> Result<Vec<Port>, StartError> {
    let workers = cfg.dataplane.workers();
    let mut ports = Vec::new();
    for (index, pc) in cfg.ports.iter().enumerate() {
        let err = |what: &'static str| {
            let name = pc.name.clone();
            move |source| StartError::Port {
                index,
                name,
                what,
                source,
            }
        };
        let mut port = Port::by_name(&pc.device.name()).map_err(err("open"))?;
        if pc.device.is_af_packet() {
            ignore_outgoing_frames(&pc.name, &pc.device);
        }
        let info = port.dev_info().map_err(err("device info"))?;
        if usize::from(info.max_tx_queues) < workers {
            return Err(StartError::TooFewTxQueues {
                index,
                name: pc.name.clone(),
                max: info.max_tx_queues,
                workers,
            });
        }
        let wanted_rx = if pc.rx_queues == 0 {
            workers as u16
        } else {
            pc.rx_queues
        };
        let rx_queues = wanted_rx.min(info.max_rx_queues).max(1);
        let conf = PortConfig {
            rx_queues,
            tx_queues: workers as u16,
            rss: rx_queues > 1,
            // Virtual devices mostly cannot change their MTU; only set it on PCI devices.
            mtu: matches!(pc.device, Device::Pci { .. }).then_some(pc.mtu),
            promiscuous: pc.promiscuous,
            ..PortConfig::default()
        };
        let dev_socket = port.socket_id();
        for w in 0..workers {
            if dev_socket >= 0 && dev_socket != mem.socket(w) {
                tracing::warn!(
                    port = %pc.name,
                    worker = w,
                    "port {} is on socket {dev_socket}, worker {w} on socket {}: its queue's \
                     packets cross the socket interconnect",
                    pc.name,
                    mem.socket(w)
                );
            }
        }
        // Queue q belongs to worker q; a queue beyond the workers (more configured than
        // workers) to worker q % workers.
        let rx: Vec<QueueMemory<'_>> = (0..usize::from(rx_queues))
            .map(|q| QueueMemory {
                socket: mem.socket(q % workers),
                pool: mem.pool(q % workers),
            })
            .collect();
        let tx: Vec<i32> = (0..workers).map(|w| mem.socket(w)).collect();
        port.configure_placed(&conf, &rx, &tx)
            .map_err(err("configure"))?;
        ports.push(port);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpdk_bindings::{DEFAULT_DATA_ROOM, HEADROOM};

    /// `config::mbufs` sizes mbufs without DPDK, with DPDK's constants written out.
    #[test]
    fn mbuf_sizing_uses_dpdks_constants() {
        assert_eq!(mbufs::MBUF_HEADROOM, u32::from(HEADROOM));
        assert_eq!(mbufs::DEFAULT_DATA_ROOM, u32::from(DEFAULT_DATA_ROOM));
        let mbuf = std::mem::size_of::<dpdk_bindings::sys::rte_mbuf>();
        assert_eq!(mbufs::af_xdp::MBUF_STRUCT as usize, mbuf);
        // The object header, padded to a cache line as the pools are created.
        let header = std::mem::size_of::<dpdk_bindings::sys::rte_mempool_objhdr>();
        assert_eq!(
            mbufs::af_xdp::OBJECT_HEADER as usize,
            header.next_multiple_of(64)
        );
    }

    #[test]
    fn af_packet_rings_grow_with_the_mtu_unless_set() {
        let spec = "net_af_packet0,iface=veth0";
        assert_eq!(vdev_spec(spec, 1500), spec);
        assert_eq!(
            vdev_spec(spec, 9000),
            "net_af_packet0,iface=veth0,blocksz=12288,framesz=12288"
        );
        let own = "net_af_packet0,iface=veth0,framesz=10240,blocksz=10240";
        assert_eq!(vdev_spec(own, 9000), own);
        assert_eq!(af_packet_framesz(own, 9000), Some((10240, false)));
        assert_eq!(vdev_spec("net_tap0,iface=t0", 9000), "net_tap0,iface=t0");
    }

    #[test]
    fn mbufs_hold_the_largest_frame_of_any_port() {
        let cfg = |mtus: &[(&str, u16)]| {
            let mut text = String::from("[dataplane]\nworker_cpus = [1]\n");
            for (i, (dev, mtu)) in mtus.iter().enumerate() {
                text.push_str(&format!(
                    "[[ports]]\nname = \"p{i}\"\ndevice = \"{dev}{i}\"\nrole = \"{}\"\n\
                     address = \"10.{i}.0.1/24\"\nmtu = {mtu}\n",
                    if i == 0 { "user" } else { "appliance" }
                ));
            }
            text.push_str(
                "[[target_groups]]\nname = \"g\"\n[target_groups.health_check]\nenabled = false\n",
            );
            Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
        };
        let null = "net_null";
        assert_eq!(
            mbuf_data_room(&cfg(&[(null, 1500), (null, 1500)])),
            DEFAULT_DATA_ROOM
        );
        let jumbo = mbuf_data_room(&cfg(&[(null, 1500), (null, 9000)]));
        assert!(
            u32::from(jumbo) >= u32::from(HEADROOM) + 9000 + 22,
            "{jumbo}"
        );
        assert_eq!(jumbo % 64, 0);
        assert_eq!(
            mbuf_data_room(&cfg(&[(null, 9600), (null, 1500)])),
            (128 + 9600 + 22u16).next_multiple_of(64)
        );
        // A 12 KiB af_packet ring frame must fit one mbuf.
        let afp = "net_af_packet";
        assert_eq!(
            mbuf_data_room(&cfg(&[(afp, 9000), (null, 1500)])),
            (128 + 12288 - 32u16).next_multiple_of(64)
        );
    }
}
