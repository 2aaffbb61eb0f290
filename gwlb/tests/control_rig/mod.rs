//! The gateway's real control loop without DPDK, for the API and CLI tests: a
//! [`ControlLoop`] on its own thread (as `gwlb run` runs it), fed by worker threads that each
//! push generated traffic through a real [`Pipeline`] on the loop's published snapshot,
//! publish their counters and serve flow-dump pages, with an injected clock and injected
//! health results (the configuration disables probing, so nothing leaves this machine).
//!
//! The configuration (see [`CONFIG`]), two-arm: group `firewalls` (the user port, 5-tuple,
//! rebalance, fail-closed, 120 s drain, HTTP check) with 10.0.2.11 and 10.0.2.12; group
//! `inspection` (no user port, 2-tuple, no rebalance, fail-open, 30 s drain, TCP check) with
//! fd00:2::21. [`Gateway::start`] marks 10.0.2.12 unhealthy ("connection refused") and opens
//! [`FLOW_COUNT`] TCP flows (IPv4 and IPv6, to ports 80 and 443) through `firewalls`, all on
//! 10.0.2.11, spread over the workers; worker 0 also drops one truncated frame
//! (`truncated_ip`).

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use etherparse::PacketBuilder;
use gwlb::config::Config;
use gwlb::control::control_loop::{ControlLoop, ControlSetup};
use gwlb::control::{ControlHandle, ManualClock, Now};
use gwlb::flow_dump::{self, FlowDumpRequest};
use gwlb::health::HealthEvent;
use gwlb::packet_buf::VecBuf;
use gwlb::pipeline::{Pipeline, MAX_APPLIANCES};
use gwlb::stats::{LoopIo, WorkerStats};

/// Flows opened at start.
pub const FLOW_COUNT: usize = 250;
/// Workers (each with its own flow table).
pub const WORKERS: usize = 2;

/// The gateway's configuration (see the module docs).
pub const CONFIG: &str = r#"
[dataplane]
worker_cpus = [1, 2]
main_cpu = 0
flow_table_capacity = 4096

[[ports]]
name = "user"
device = "net_null0"
role = "user"
address = ["10.1.0.1/16", "fd00:1::1/64"]

[[ports]]
name = "appliance"
device = "net_null1"
role = "appliance"
address = ["10.0.2.1/24", "fd00:2::1/64"]

[[target_groups]]
name = "firewalls"
user_ports = ["user"]
stickiness = "5-tuple"
on_unhealthy = "rebalance"
on_all_unhealthy = "fail_closed"
deregistration_delay_s = 120
[target_groups.health_check]
enabled = false
protocol = "http"
port = 8080
path = "/healthz"
success_codes = "200-399"
interval_ms = 1000
timeout_ms = 500
healthy_threshold = 3
unhealthy_threshold = 2
[[target_groups.targets]]
address = "10.0.2.11"
mac = "02:00:00:00:02:0b"
[[target_groups.targets]]
address = "10.0.2.12"
mac = "02:00:00:00:02:0c"

[[target_groups]]
name = "inspection"
user_ports = []
stickiness = "2-tuple"
on_unhealthy = "no_rebalance"
on_all_unhealthy = "fail_open"
deregistration_delay_s = 30
[target_groups.health_check]
enabled = false
protocol = "tcp"
port = 8080
[[target_groups.targets]]
address = "fd00:2::21"
mac = "02:00:00:00:02:21"
"#;

const PORT_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 0xa1], [2, 0, 0, 0, 0, 0x01]];

/// Frames for a worker to process now (mirror copies before inspection taken, as the data
/// path takes them), answered once its counters are published.
struct Traffic {
    frames: Vec<Vec<u8>>,
    done: Sender<()>,
}

/// What the rig's control-loop thread can be asked besides [`gwlb::control::Command`]s.
enum RigOp {
    /// A health result, as the checker (or a data-path probe) reports one.
    Health(HealthEvent),
}

/// A running gateway control plane (see the module docs). Dropping it stops its threads.
pub struct Gateway {
    /// The control loop's command handle, for the API server under test.
    pub handle: ControlHandle,
    /// The configuration file (reloads read it).
    pub config_path: PathBuf,
    /// The loop's clock.
    pub clock: ManualClock,
    ops: Sender<RigOp>,
    traffic: Vec<Sender<Traffic>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    dir: PathBuf,
}

/// The SYN that opens flow `i`: TCP to port 80 or 443, from 10.1.x.y or (every fifth)
/// from fd00:1::i to fd00:9::1.
pub fn flow_packet(i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let dport = if i.is_multiple_of(2) { 80 } else { 443 };
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 1, 1], PORT_MACS[0]);
    let b = if i % 5 == 4 {
        let mut src = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        src[15] = i as u8;
        b.ipv6(src, [0xfd, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 64)
    } else {
        b.ipv4(
            [10, 1, (i / 200) as u8, (i % 200) as u8 + 2],
            [10, 9, 0, 1],
            64,
        )
    };
    b.tcp(20_000 + i as u16, dport, 1, 1000)
        .syn()
        .write(&mut out, b"")
        .unwrap();
    out
}

impl Gateway {
    /// Writes the configuration file, starts the control loop and the workers, marks
    /// 10.0.2.12 unhealthy and opens the flows (see the module docs).
    pub fn start() -> Gateway {
        Self::start_with(CONFIG)
    }

    /// [`Gateway::start`] with another configuration (the traffic arrives on port 0 and
    /// needs a group for it).
    pub fn start_with(config: &str) -> Gateway {
        Self::start_with_frames(config, Vec::new())
    }

    /// [`Gateway::start_with`], worker 0 also processing `frames` (arriving on port 0)
    /// before the flows, so that their counters go the real way: the pipeline, the worker's
    /// published stats, the control loop's report.
    pub fn start_with_frames(config: &str, frames: Vec<Vec<u8>>) -> Gateway {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gwlb-control-rig-{}-{}",
            std::process::id(),
            N.fetch_add(1, Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("gwlb.toml");
        std::fs::write(&config_path, config).unwrap();
        let cfg = Config::load(&config_path).expect("rig config");
        let clock = ManualClock::at(1000);
        let stats: Vec<Arc<WorkerStats>> = (0..WORKERS)
            .map(|_| Arc::new(WorkerStats::new(MAX_APPLIANCES)))
            .collect();
        let (dump_tx, dump_rx): (Vec<Sender<FlowDumpRequest>>, Vec<Receiver<FlowDumpRequest>>) =
            (0..WORKERS).map(|_| crossbeam_channel::bounded(1)).unzip();
        let mut ctl = ControlLoop::start(ControlSetup {
            cfg: cfg.clone(),
            config_path: Some(config_path.clone()),
            macs: PORT_MACS.to_vec(),
            kernel_ifs: Vec::new(),
            stats: stats.clone(),
            dumps: dump_tx,
            clock: Box::new(clock.clone()),
        })
        .expect("control loop");
        // 10.0.2.12 fails its check, as the checker would report it.
        ctl.health_event(HealthEvent {
            slot: 1,
            group: "firewalls".into(),
            addr: "10.0.2.12".parse().unwrap(),
            healthy: false,
            reason: "2 consecutive failures: connection refused".into(),
            latency: None,
        });
        let snapshot = ctl.snapshot();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // Workers: flow i goes to worker i % WORKERS.
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(WORKERS);
        let (traffic, traffic_rx): (Vec<Sender<Traffic>>, Vec<Receiver<Traffic>>) =
            (0..WORKERS).map(|_| crossbeam_channel::unbounded()).unzip();
        for (w, ((dumps, stats), traffic_rx)) in
            dump_rx.into_iter().zip(stats).zip(traffic_rx).enumerate()
        {
            let snapshot = Arc::clone(&snapshot);
            let stop = Arc::clone(&stop);
            let clock = clock.clone();
            let ready = ready_tx.clone();
            let frames = if w == 0 { frames.clone() } else { Vec::new() };
            threads.push(std::thread::spawn(move || {
                let mut pipe = Pipeline::new(4096, Default::default()).expect("pipeline");
                let mut io = LoopIo::default();
                {
                    let snap = snapshot.load();
                    if w == 0 {
                        // One broken frame: an IPv4 header cut short (`truncated_ip`).
                        io.rx += 1;
                        let cut = &flow_packet(0)[..14 + 12];
                        let v = pipe.process(&snap, &mut VecBuf::new(cut), 0, clock.now());
                        assert!(matches!(v, gwlb::pipeline::Verdict::Drop(_)), "{v:?}");
                    }
                    for f in &frames {
                        io.rx += 1;
                        let v = pipe.process(&snap, &mut VecBuf::new(f), 0, clock.now());
                        if let gwlb::pipeline::Verdict::Tx(_) = v {
                            io.tx += 1;
                        }
                    }
                    for i in (w..FLOW_COUNT).step_by(WORKERS) {
                        io.rx += 1;
                        let mut b = VecBuf::new(&flow_packet(i));
                        if let gwlb::pipeline::Verdict::Tx(_) =
                            pipe.process(&snap, &mut b, 0, clock.now())
                        {
                            io.tx += 1;
                        }
                    }
                }
                let publish = |pipe: &Pipeline, io: &LoopIo| {
                    stats.publish(pipe, io);
                    stats.publish_appliances(
                        &pipe.counters,
                        MAX_APPLIANCES,
                        pipe.counters.rules.len(),
                    );
                };
                publish(&pipe, &io);
                let _ = ready.send(());
                while !stop.load(Relaxed) {
                    crossbeam_channel::select! {
                        recv(dumps) -> req => if let Ok(req) = req {
                            flow_dump::serve(&pipe, req, clock.now());
                        },
                        recv(traffic_rx) -> t => if let Ok(t) = t {
                            let snap = snapshot.load();
                            let mut bufs: Vec<VecBuf> =
                                t.frames.iter().map(|f| VecBuf::new(f)).collect();
                            if snap.mirror_before {
                                pipe.mirror_before(&snap, &bufs, 0, clock.now(), &mut |_, _, _| true);
                            }
                            for b in &mut bufs {
                                io.rx += 1;
                                if let gwlb::pipeline::Verdict::Tx(_) =
                                    pipe.process(&snap, b, 0, clock.now())
                                {
                                    io.tx += 1;
                                }
                            }
                            publish(&pipe, &io);
                            let _ = t.done.send(());
                        },
                        default(Duration::from_millis(20)) => {}
                    }
                }
            }));
        }
        for _ in 0..WORKERS {
            ready_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("rig worker ready");
        }
        let (handle, commands) = ControlHandle::channel();
        let (ops, ops_rx) = crossbeam_channel::unbounded::<RigOp>();
        {
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    ctl.turn(&commands, Duration::from_millis(10));
                    while let Ok(op) = ops_rx.try_recv() {
                        match op {
                            RigOp::Health(ev) => ctl.health_event(ev),
                        }
                    }
                }
                ctl.stop();
            }));
        }
        Gateway {
            handle,
            config_path,
            clock,
            ops,
            traffic,
            stop,
            threads,
            dir,
        }
    }

    /// Has worker `worker` process `frames` now, on the published snapshot (copying for the
    /// mirror sessions first, as the data path does), and waits until it has published its
    /// counters.
    pub fn send(&self, worker: usize, frames: Vec<Vec<u8>>) {
        let (done, rx) = crossbeam_channel::bounded(1);
        self.traffic[worker]
            .send(Traffic { frames, done })
            .expect("rig worker gone");
        rx.recv_timeout(Duration::from_secs(30))
            .expect("rig worker did not process the frames");
    }

    /// Reports a health result for `addr` (slot `slot`) of `group` to the control loop.
    pub fn report_health(&self, group: &str, slot: u16, addr: IpAddr, healthy: bool) {
        let _ = self.ops.send(RigOp::Health(HealthEvent {
            slot,
            group: group.into(),
            addr,
            healthy,
            reason: if healthy {
                "3 consecutive successes: HTTP 200".into()
            } else {
                "2 consecutive failures: connection refused".into()
            },
            latency: None,
        }));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the running control loop reports, asked directly through its handle (the API under
/// test must say the same).
impl Gateway {
    /// Every target group.
    pub fn groups(&self) -> Vec<gwlb::control::TargetGroupInfo> {
        self.handle.list_groups().expect("list groups")
    }

    /// The counters, with `uptime_s` zeroed (it moves between two reads).
    pub fn stats(&self) -> gwlb::control::StatsReport {
        without_uptime(self.handle.stats().expect("stats"))
    }

    /// Every flow, in dump order.
    pub fn flows(&self) -> Vec<gwlb::control::FlowInfo> {
        let page = self
            .handle
            .flows(gwlb::control::FlowQuery {
                limit: Some(gwlb::control::MAX_FLOW_PAGE),
                ..Default::default()
            })
            .expect("flows");
        assert_eq!(page.next_cursor, None, "more flows than one page");
        page.flows
    }
}

/// `s` with `uptime_s` zeroed, to compare with [`Gateway::stats`].
pub fn without_uptime(mut s: gwlb::control::StatsReport) -> gwlb::control::StatsReport {
    s.uptime_s = 0.0;
    s
}
