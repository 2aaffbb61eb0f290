//! `gwlb run`: EAL, ports, pinned workers, signals, final report.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk_bindings::port::QueueId;
use dpdk_bindings::{lcore, Eal, Mempool, Ring, ThreadRegistration, SOCKET_ID_ANY};

use crate::config::MempoolDriver;

use super::copy_socket::{self, CopySocket};
use super::ports::{
    configure_kernel_interface, dpdk_socket, eal_args, mbuf_data_room, open_ports, open_tap_ports,
    use_hugepages, StartError, WorkerMemory,
};
use super::worker::{self, Clock, HostPath, WorkerSetup};
use crate::config::Config;
use crate::control::control_loop::{ControlLoop, ControlSetup};
use crate::control::ControlHandle;
use crate::numa::{self, SocketPlan};
use crate::parse::DropReason;
use crate::pipeline::{Pipeline, MAX_APPLIANCES};
use crate::stats::WorkerStats;

/// How `gwlb run` was asked to behave beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// EAL arguments from the command line (after the config's).
    pub extra_eal_args: Vec<String>,
    /// Stop once every worker has seen no packet for this long after receiving some
    /// (offline pcap runs).
    pub exit_when_idle: Option<Duration>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// The configuration file, reloaded on SIGHUP and `POST /v1/reload`.
    pub config_path: Option<std::path::PathBuf>,
}

/// What a run did, for the final report and for tests.
#[derive(Debug)]
pub struct RunReport {
    /// Per-worker counters.
    pub workers: Vec<Arc<WorkerStats>>,
    /// Appliance addresses by slot.
    pub appliances: Vec<String>,
}

impl RunReport {
    /// Human-readable final counters.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (i, w) in self.workers.iter().enumerate() {
            let _ = write!(s, "worker {i}:");
            for (name, v) in WorkerStats::NAMES.iter().zip(w.values()) {
                let _ = write!(s, " {name} {v}");
            }
            let _ = writeln!(s, " dropped {}", w.dropped());
            for r in DropReason::ALL {
                let v = w.drops[r.index()].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(s, "  drop {}: {v}", r.as_str());
                }
            }
        }
        for (slot, addr) in self.appliances.iter().enumerate() {
            let sum = |k: usize| -> u64 {
                self.workers
                    .iter()
                    .map(|w| w.appliance[slot][k].load(Relaxed))
                    .sum()
            };
            let _ = writeln!(
                s,
                "appliance {addr}: packets {} bytes {} flows {}",
                sum(0),
                sum(1),
                sum(2)
            );
        }
        s
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

/// Runs the gateway until SIGINT/SIGTERM (or the options' limits).
pub fn run(cfg: &Config, opts: &RunOptions) -> Result<RunReport, StartError> {
    // Before the EAL touches a device: one gwlb per device.
    let _instance = crate::instance_lock::acquire(cfg, Path::new(crate::instance_lock::LOCK_DIR))?;
    let huge = use_hugepages(cfg);
    let args = eal_args(cfg, huge, &opts.extra_eal_args);
    tracing::info!(hugepages = huge, args = ?args, "initialising DPDK EAL");
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let _eal = Eal::init(&arg_refs).map_err(|source| StartError::Eal {
        source,
        hint: if huge {
            "; hugepages were requested: reserve them (echo 1024 > /proc/sys/vm/nr_hugepages) or set dataplane.hugepages = \"off\""
        } else {
            "; running without hugepages (--no-huge): check dataplane.memory_mb and the EAL arguments"
        },
    })?;

    let workers = cfg.dataplane.workers();
    // Memory on the socket of the workers that use it: one mbuf pool per socket with
    // workers (its workers' RX queues fill from it), each queue's descriptors and each
    // worker's handoff ring (its consumer) on the worker's socket.
    let plan = SocketPlan::new(
        &cfg.dataplane
            .worker_cpus
            .iter()
            .map(|&c| numa::cpu_socket(c as usize))
            .collect::<Vec<_>>(),
    );
    let data_room = mbuf_data_room(cfg);
    let pools = (0..plan.sockets.len())
        .map(|i| socket_pool(&plan, i, &cfg.dataplane, data_room))
        .collect::<Result<Vec<_>, _>>()?;
    let mem = WorkerMemory {
        plan: &plan,
        pools: &pools,
    };
    let DataPath {
        mut ports,
        macs,
        host_path,
        kernel_ifs,
        port_index_by_id,
    } = open_data_path(cfg, &mem)?;

    let rings: Vec<Arc<Ring>> = if workers > 1 {
        (0..workers)
            .map(|w| {
                let name = format!("gwlb_handoff{w}");
                let socket = plan.socket_of_worker(w);
                placed("handoff ring", socket, |s| Ring::new(&name, 4096, s)).map(Arc::new)
            })
            .collect::<Result<_, _>>()
            .map_err(StartError::Ring)?
    } else {
        Vec::new()
    };

    let clock = Clock::start();
    let all_stats: Vec<Arc<WorkerStats>> = (0..workers)
        .map(|_| Arc::new(WorkerStats::new(MAX_APPLIANCES)))
        .collect();
    let (dump_tx, dump_rx): (Vec<_>, Vec<_>) =
        (0..workers).map(|_| crossbeam_channel::bounded(1)).unzip();
    let mut ctl = ControlLoop::start(ControlSetup {
        cfg: cfg.clone(),
        config_path: opts.config_path.clone(),
        macs: macs.clone(),
        kernel_ifs: kernel_ifs.clone(),
        stats: all_stats.clone(),
        dumps: dump_tx,
        clock: Box::new(clock),
    })
    .map_err(StartError::Control)?;
    let snapshot = ctl.snapshot();
    let (handle, commands) = ControlHandle::channel();
    // Before the workers start: a listener that cannot bind stops the start cleanly.
    let api = cfg
        .control
        .api_listen
        .as_ref()
        .map(|l| crate::api::serve(l, cfg.control.api_token.clone(), handle.clone()))
        .transpose()?;
    let metrics = cfg
        .control
        .metrics_listen
        .as_ref()
        .map(|l| crate::api::serve_metrics(l, handle.clone()))
        .transpose()?;
    for l in [&api, &metrics].into_iter().flatten() {
        tracing::info!(listen = %l.local_addr(), "listening");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let handles = match spawn_workers(
        cfg,
        opts,
        &mut ports,
        &host_path,
        &port_index_by_id,
        &rings,
        &snapshot,
        &all_stats,
        dump_rx,
        clock,
        &stop,
    ) {
        Ok(h) => h,
        Err(e) => {
            ctl.stop();
            return Err(e);
        }
    };
    // The BGP speaker last: the node announces only once its workers run.
    if let Err(e) = ctl.start_bgp() {
        stop.store(true, Relaxed);
        for h in handles {
            let _ = h.join();
        }
        ctl.stop();
        return Err(StartError::Bgp(e));
    }

    serve_until_stopped(&mut ctl, &commands, opts, &all_stats, &handles);
    drop(api);
    drop(metrics);
    let appliances = ctl.slot_addresses();
    ctl.stop();
    stop.store(true, Relaxed);
    for h in handles {
        match h.join() {
            Ok(Ok(_pipeline)) => {}
            Ok(Err(e)) => tracing::error!("worker failed: {e}"),
            Err(_) => tracing::error!("worker panicked"),
        }
    }
    for p in ports.iter_mut() {
        let _ = p.stop();
    }
    // Dropping the ports closes the devices (net_pcap flushes its output file).
    drop(ports);
    Ok(RunReport {
        workers: all_stats,
        appliances,
    })
}

/// The socket a worker sends port `pc`'s mirrored copies through, for a port backed by a
/// kernel ring (`net_af_packet`, `net_af_xdp`; see [`copy_socket`]); `None` for other
/// ports, or (logged) when it cannot be opened: copies then share the port's TX queue.
fn copy_socket_for(pc: &crate::config::Port) -> Option<CopySocket> {
    if !(pc.device.is_af_packet() || pc.device.is_af_xdp()) {
        return None;
    }
    let iface = pc.device.vdev_arg("iface")?;
    match CopySocket::open(iface, copy_socket::SEND_BUFFER) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                port = %pc.name,
                "no socket of their own for port {}'s mirrored copies ({iface}: {e}): they \
                 share its transmit ring, and a slow sensor link can stall the worker",
                pc.name
            );
            None
        }
    }
}

/// Starts one pinned worker per `worker_cpus` entry, each with its RX queues (queue `w` of
/// every port that has one), a TX queue on every port, the handoff rings and its flow-dump
/// channel. Each worker allocates its own flow table after pinning itself, so that the
/// table's pages are first touched on the worker's CPU (its NUMA node, see `huge_array`);
/// this returns once every worker said that worked, or stops them all and returns the first
/// failure.
#[allow(clippy::too_many_arguments)]
fn spawn_workers(
    cfg: &Config,
    opts: &RunOptions,
    ports: &mut [dpdk_bindings::Port],
    host_path: &HostPath,
    port_index_by_id: &[u16],
    rings: &[Arc<Ring>],
    snapshot: &Arc<arc_swap::ArcSwap<crate::snapshot::Snapshot>>,
    all_stats: &[Arc<WorkerStats>],
    dumps: Vec<crossbeam_channel::Receiver<crate::flow_dump::FlowDumpRequest>>,
    clock: Clock,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<Result<Pipeline, String>>>, StartError> {
    let workers = cfg.dataplane.workers();
    let timeouts = snapshot.load().timeouts;
    let hz = lcore::tsc_hz();
    let mut handles = Vec::new();
    let mut dump_rx = dumps.into_iter();
    // Each worker allocates its own flow table after pinning itself, so that the table's pages
    // are first touched on the worker's CPU (its NUMA node, see `huge_array`); it reports
    // whether that worked before the gateway goes on.
    let capacity = cfg.dataplane.flow_table_capacity as usize;
    let (ready_tx, ready_rx) =
        crossbeam_channel::bounded::<Result<(), crate::flow_table::FlowTableError>>(workers);
    for (w, &cpu) in cfg.dataplane.worker_cpus.iter().enumerate() {
        let mut rx = Vec::new();
        let mut tx = Vec::new();
        let mut copy_sockets = Vec::new();
        for (pi, p) in ports.iter_mut().enumerate() {
            let c = host_path.phys_of[pi].map_or(pi, usize::from);
            let err = |what: &'static str| {
                let name = cfg.ports[c].name.clone();
                move |source| StartError::Port {
                    index: c,
                    name,
                    what,
                    source,
                }
            };
            if (w as u16) < p.rx_queues() {
                rx.push((
                    pi as u16,
                    p.rx_queue(QueueId(w as u16)).map_err(err("rx queue"))?,
                ));
            }
            tx.push(p.tx_queue(QueueId(w as u16)).map_err(err("tx queue"))?);
            copy_sockets.push(
                host_path.phys_of[pi]
                    .is_none()
                    .then(|| copy_socket_for(&cfg.ports[pi]))
                    .flatten(),
            );
        }
        let stats = all_stats[w].clone();
        let (host_path, port_index_by_id) = (host_path.clone(), port_index_by_id.to_vec());
        let (handoff_in, handoff_out) = (rings.get(w).cloned(), rings.to_vec());
        let (snapshot, stop_flag) = (snapshot.clone(), stop.clone());
        let tx_flush_cycles =
            (hz as u128 * cfg.dataplane.tx_flush.as_nanos() / 1_000_000_000) as u64;
        let idle_exit_cycles = opts
            .exit_when_idle
            .map(|d| (hz as u128 * d.as_nanos() / 1_000_000_000) as u64);
        let dumps = dump_rx.next().expect("one dump channel per worker");
        let idle_sleep = cfg.dataplane.idle_sleep;
        let idle_after_cycles =
            (hz as u128 * cfg.dataplane.idle_after.as_nanos() / 1_000_000_000) as u64;
        let setup = move |pipeline| WorkerSetup {
            index: w,
            workers,
            rx,
            tx,
            copy_sockets,
            host_path,
            port_index_by_id,
            handoff_in,
            handoff_out,
            pipeline,
            snapshot,
            stats,
            stop: stop_flag,
            tx_flush_cycles,
            idle_exit_cycles,
            idle_sleep,
            idle_after_cycles,
            clock,
            dumps,
        };
        let ready = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("gwlb-worker{w}"))
            .spawn(move || -> Result<Pipeline, String> {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu as usize }) {
                    tracing::warn!(cpu, "could not pin worker to its CPU");
                }
                let _reg = ThreadRegistration::register().map_err(|e| e.to_string())?;
                let pipeline = match Pipeline::new(capacity, Default::default()) {
                    Ok(mut p) => {
                        p.flows_mut().set_group_timeouts(&timeouts);
                        p
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let _ = ready.send(Err(e));
                        return Err(msg);
                    }
                };
                let _ = ready.send(Ok(()));
                drop(ready);
                tracing::info!(worker = w, cpu, "worker started");
                Ok(worker::run(setup(pipeline)))
            })
            .map_err(StartError::Thread)?;
        handles.push(h);
    }
    drop(ready_tx);
    for _ in 0..workers {
        let failed = match ready_rx.recv() {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => StartError::FlowTable(e),
            Err(_) => StartError::WorkerStart,
        };
        stop.store(true, Relaxed);
        for h in handles {
            let _ = h.join();
        }
        return Err(failed);
    }
    Ok(handles)
}

/// `make(socket)`, or, where that socket has no memory for it (no hugepages reserved on
/// that node, or `--no-huge`, whose memory is all on socket 0), `make(SOCKET_ID_ANY)` with a
/// warning: the gateway starts, with remote memory, rather than not at all.
fn placed<T>(
    what: &str,
    socket: numa::SocketId,
    make: impl Fn(i32) -> Result<T, dpdk_bindings::Error>,
) -> Result<T, dpdk_bindings::Error> {
    make(dpdk_socket(socket)).or_else(|e| {
        tracing::warn!(
            socket,
            "{what} on socket {socket} failed ({e}); placing it on any socket (remote memory)"
        );
        make(SOCKET_ID_ANY)
    })
}

/// The mbuf pool of socket plan entry `i`, `data_room` bytes per mbuf
/// ([`mbuf_data_room`]), `dp.mbufs_per_worker` per worker, with driver `dp.mempool`.
fn socket_pool(
    plan: &SocketPlan,
    i: usize,
    dp: &crate::config::Dataplane,
    data_room: u16,
) -> Result<Mempool, StartError> {
    let (per_worker, driver) = (dp.mbufs_per_worker, dp.mempool);
    let socket = plan.sockets[i];
    let n = plan.mbufs(i, per_worker);
    // Each mbuf also carries its header (128 bytes) and the pool's per-object overhead.
    let mib = (u64::from(n) * (u64::from(data_room) + 192)) >> 20;
    tracing::info!(
        socket,
        mbufs = n,
        data_room,
        approx_mib = mib,
        workers = plan.workers_on(i),
        driver = driver.ops(),
        "mbuf pool"
    );
    placed("mbuf pool", socket, |s| {
        let name = format!("gwlb_mbufs{socket}");
        Mempool::new_pktmbuf_by_ops(&name, n, 256, data_room, s, driver.ops()).or_else(|e| {
            if driver == MempoolDriver::Ring {
                return Err(e);
            }
            // A DPDK build without the stack driver: DPDK's default still works.
            tracing::warn!(socket, driver = driver.ops(), error = %e, "mempool driver unavailable; using ring_mp_mc");
            Mempool::new_pktmbuf_by_ops(&name, n, 256, data_room, s, MempoolDriver::Ring.ops())
        })
    })
    .map_err(|source| StartError::Mempool { socket, source })
}

/// The opened and started ports, the TAPs of the exception path after the config ports.
struct DataPath {
    ports: Vec<dpdk_bindings::Port>,
    /// Port MACs, config order.
    macs: Vec<[u8; 6]>,
    host_path: HostPath,
    /// `(config port index, kernel interface name)` of the exception paths.
    kernel_ifs: Vec<(usize, String)>,
    /// DPDK port id -> port index.
    port_index_by_id: Vec<u16>,
}

/// Opens and starts the config ports and their exception-path TAPs, and configures the
/// kernel side of each TAP (its address and MAC: the gateway's).
fn open_data_path(cfg: &Config, mem: &WorkerMemory<'_>) -> Result<DataPath, StartError> {
    let mut ports = open_ports(cfg, mem)?;
    let macs: Vec<[u8; 6]> = ports
        .iter()
        .zip(&cfg.ports)
        .map(|(p, c)| {
            c.mac
                .map(|m| m.0)
                .unwrap_or_else(|| p.mac_addr().unwrap_or([0; 6]))
        })
        .collect();
    let n_phys = ports.len();
    let mut host_path = HostPath {
        tap_of: vec![None; n_phys],
        phys_of: vec![None; n_phys],
    };
    let mut kernel_ifs = Vec::new();
    for (phys, tap) in open_tap_ports(cfg, mem)? {
        host_path.tap_of[phys] = Some(ports.len() as u16);
        host_path.phys_of.push(Some(phys as u16));
        kernel_ifs.push((
            phys,
            cfg.ports[phys].kernel_interface.clone().unwrap_or_default(),
        ));
        ports.push(tap);
    }

    for (i, p) in ports.iter_mut().enumerate() {
        let c = host_path.phys_of[i].map_or(i, usize::from);
        p.start().map_err(|source| StartError::Port {
            index: c,
            name: cfg.ports[c].name.clone(),
            what: "start",
            source,
        })?;
    }
    for (phys, ifname) in &kernel_ifs {
        let port = &cfg.ports[*phys];
        match configure_kernel_interface(ifname, macs[*phys], port) {
            Ok(()) => {
                tracing::info!(port = %port.name, kernel_interface = %ifname, "exception path to the kernel is up")
            }
            Err(e) => {
                tracing::error!(port = %port.name, kernel_interface = %ifname, "could not configure the kernel interface: {e}")
            }
        }
    }
    let mut port_index_by_id = vec![
        u16::MAX;
        1 + ports
            .iter()
            .map(|p| usize::from(p.id().0))
            .max()
            .unwrap_or(0)
    ];
    for (i, p) in ports.iter().enumerate() {
        port_index_by_id[usize::from(p.id().0)] = i as u16;
    }

    Ok(DataPath {
        ports,
        macs,
        host_path,
        kernel_ifs,
        port_index_by_id,
    })
}

/// The control loop's thread once everything runs: commands, health, signals (SIGHUP
/// reloads, SIGINT/SIGTERM stop), the periodic counter print; returns when asked to stop,
/// when the run's `duration` is over, or when every worker has ended.
fn serve_until_stopped(
    ctl: &mut ControlLoop,
    commands: &crossbeam_channel::Receiver<crate::control::Command>,
    opts: &RunOptions,
    all_stats: &[Arc<WorkerStats>],
    handles: &[std::thread::JoinHandle<Result<Pipeline, String>>],
) {
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        ctl.turn(commands, Duration::from_millis(50));
        if STOP.load(Relaxed) {
            tracing::info!("signal received, stopping");
            break;
        }
        if RELOAD.swap(false, Relaxed) {
            tracing::info!("SIGHUP: reloading the configuration");
            // Read off this thread, then applied and logged (success or the rejection with
            // its field) by the control loop.
            ctl.request_reload(None);
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        if let Some(iv) = ctl.config().dataplane.stats_interval {
            if last_print.elapsed() >= iv {
                last_print = Instant::now();
                let r = RunReport {
                    workers: all_stats.to_vec(),
                    appliances: ctl.slot_addresses(),
                };
                eprint!("{}", r.render());
            }
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGHUP {
        RELOAD.store(true, Relaxed);
    } else {
        STOP.store(true, Relaxed);
    }
}

/// Catches SIGINT/SIGTERM (stop) and SIGHUP (reload). `gwlb run` calls it before anything
/// else, so a signal during startup never meets the default disposition (which ends the
/// process); one that arrives before the loop runs is acted on at its first turn.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_signal` is async-signal-safe (one atomic store each) and has the C ABI
        // signature `signal` expects; replacing the default disposition is intended.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}
