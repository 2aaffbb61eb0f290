//! Mirrored copies that the sensor port's transmit queue refuses are counted in their
//! session (`tx_full`), not only port-wide: the real worker loop (`worker::run`) on a ring
//! port whose transmit ring has room for 8 packets and is never drained.
//!
//! Needs root (DPDK) and the `dpdk` feature.

#![cfg(feature = "dpdk")]

mod needs_root;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dpdk_bindings::{
    eal, Mempool, Port, PortConfig, QueueId, Ring, ThreadRegistration, DEFAULT_DATA_ROOM,
    SOCKET_ID_ANY,
};
use gwlb::config::Config;
use gwlb::dataplane::worker::{self, HostPath, WorkerSetup};
use gwlb::mirror::MirrorCounter;
use gwlb::parse::DropReason;
use gwlb::pipeline::{Pipeline, MAX_APPLIANCES};
use gwlb::snapshot::{LiveState, Snapshot};
use gwlb::stats::WorkerStats;
use gwlb_tests::frames::{frame, Ips, L4};

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

const CONFIG: &str = r#"
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.0.254"
port = "p"
[[neighbors]]
address = "10.0.0.254"
mac = "02:00:00:00:00:fe"
port = "p"
[[target_groups]]
name = "fw"
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
[[target_groups]]
name = "sensors"
user_ports = []
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.31"
mac = "02:00:00:00:00:31"
[[mirror_sessions]]
name = "first"
target_group = "sensors"
protocols = [6]
[[mirror_sessions]]
name = "ids"
target_group = "sensors"
"#;

#[test]
#[ignore = "needs root (DPDK): scripts/test.sh runs it as root"]
fn copies_refused_by_tx_are_counted_in_their_session() {
    needs_root::require();
    let _eal = eal::init_once(&[
        "--no-huge",
        "-m",
        "256",
        "--no-shconf",
        "--no-pci",
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=lib.eal:error",
        "--log-level=pmd.net.ring:error",
    ])
    .expect("EAL init");
    let _reg = ThreadRegistration::register().expect("thread registration");
    let cfg = Config::from_toml_str(CONFIG).expect("config");
    let mut live = LiveState::default();
    live.mirror_slots.assign(&cfg.mirror_sessions);
    let slot = usize::from(live.mirror_slots.slot("ids").expect("slot"));
    assert_eq!(slot, 1, "the second session counts in slot 1");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &live, 1).expect("snapshot");
    let pool = Mempool::new_pktmbuf("txfullpool", 1023, 0, DEFAULT_DATA_ROOM, SOCKET_ID_ANY)
        .expect("mempool");
    let rx = Ring::new("txfull_in", 64, SOCKET_ID_ANY).expect("ring");
    // Room for 8 packets (an exact-size ring), and nobody drains it.
    let tx = Ring::new("txfull_out", 8, SOCKET_ID_ANY).expect("ring");
    let mut port = Port::from_rings("txfull", &[&rx], &[&tx]).expect("ring port");
    port.configure(&PortConfig::default(), &pool)
        .expect("configure");
    port.start().expect("start");

    // One burst of 32 user frames: 32 originals, then 32 copies (session "ids" selects
    // every user packet; "first" only TCP, so none).
    let mut burst = dpdk_bindings::MbufBurst::<32>::new();
    pool.alloc_bulk(&mut burst, 32).expect("mbufs");
    for (i, m) in burst.as_mut_slice().iter_mut().enumerate() {
        let f = frame(
            [2, 0, 0, 0, 0, 0xaa],
            GW_MAC,
            Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
            L4::Udp {
                src_port: 30000 + i as u16,
                dst_port: 53,
            },
            &[b'm'; 100],
        );
        m.append(f.len()).expect("room").copy_from_slice(&f);
    }
    assert_eq!(rx.enqueue_burst(&mut burst), 32);

    let stats = Arc::new(WorkerStats::new(MAX_APPLIANCES));
    let hz = dpdk_bindings::lcore::tsc_hz().max(1);
    let setup = WorkerSetup {
        index: 0,
        workers: 1,
        rx: vec![(0, port.rx_queue(QueueId(0)).expect("rxq"))],
        tx: vec![port.tx_queue(QueueId(0)).expect("txq")],
        host_path: HostPath {
            tap_of: vec![None],
            phys_of: vec![None],
        },
        port_index_by_id: vec![0; usize::from(port.id().0) + 1],
        handoff_in: None,
        handoff_out: Vec::new(),
        pipeline: Pipeline::new(4096, Default::default()).expect("pipeline"),
        snapshot: Arc::new(ArcSwap::from_pointee(snap)),
        stats: stats.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        tx_flush_cycles: hz / 10_000,
        // Stops 50 ms after the burst (received at once): no timing is asserted.
        idle_exit_cycles: Some(hz / 20),
        idle_sleep: None,
        idle_after_cycles: u64::MAX,
        clock: worker::Clock::start(),
        dumps: crossbeam_channel::never(),
    };
    let pipe = worker::run(setup);

    let c = &pipe.counters;
    assert_eq!(c.processed, 32);
    assert_eq!(c.encapsulated, 32);
    let m = &c.mirror[slot];
    assert_eq!(m[MirrorCounter::Packets as usize], 32, "32 copies made");
    // The originals went first: 8 of them fill the ring, 24 are refused, then all 32
    // copies are refused.
    assert_eq!(tx.count(), 8, "the transmit ring took 8 packets");
    assert_eq!(
        stats.drops[DropReason::TxFull.index()].load(Relaxed),
        56,
        "port-wide tx_full: 24 originals and 32 copies"
    );
    assert_eq!(
        m[MirrorCounter::TxFull as usize],
        32,
        "every refused copy counted in its session"
    );
    assert_eq!(
        stats.mirror[slot][MirrorCounter::TxFull as usize].load(Relaxed),
        32,
        "and published"
    );
    let other = 1 - slot;
    assert_eq!(
        c.mirror[other],
        [0; MirrorCounter::COUNT],
        "nothing in the other session"
    );
    drop(pipe);
    drop(port);
}
