//! Where mirrored copies leave and what is counted when they cannot, with the real worker
//! loop (`worker::run`) on a ring port whose transmit ring is never drained:
//! - copies that the sensor port's transmit queue refuses are counted in their session
//!   (`tx_full`), not only port-wide;
//! - copies with a socket of their own (`dataplane::copy_socket`, what kernel-backed ports
//!   get) leave through it, never taking the originals' room in the transmit queue, and
//!   what the socket refuses is counted in the session; the socket refuses without waiting.
//!
//! Needs root (DPDK, a network namespace) and the `dpdk` feature.

#![cfg(feature = "dpdk")]

mod needs_root;
mod netns;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dpdk_bindings::{
    eal, Mempool, Port, PortConfig, QueueId, Ring, ThreadRegistration, DEFAULT_DATA_ROOM,
    SOCKET_ID_ANY,
};
use gwlb::config::Config;
use gwlb::dataplane::copy_socket::{self, CopySocket};
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

/// The sensor's MAC in [`CONFIG`].
const SENSOR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x31];

/// What one worker run over one burst left.
struct Run {
    pipe: Pipeline,
    stats: Arc<WorkerStats>,
    /// Packets the port's transmit ring took.
    in_ring: usize,
    /// Session "ids"'s counter slot.
    slot: usize,
}

fn eal_up() -> dpdk_bindings::Eal {
    eal::init_once(&[
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
    .expect("EAL init")
}

/// 32 UDP frames `(source MAC, destination MAC)` with addresses `ips`, from source ports
/// `ports.0..` to `ports.1`, each carrying `payload`, in mbufs of `pool`.
fn udp_frames(
    pool: &Mempool,
    (src, dst): ([u8; 6], [u8; 6]),
    ips: Ips,
    ports: (u16, u16),
    payload: &[u8],
) -> dpdk_bindings::MbufBurst<32> {
    let mut burst = dpdk_bindings::MbufBurst::<32>::new();
    pool.alloc_bulk(&mut burst, 32).expect("mbufs");
    for (i, m) in burst.as_mut_slice().iter_mut().enumerate() {
        let l4 = L4::Udp {
            src_port: ports.0 + i as u16,
            dst_port: ports.1,
        };
        let f = frame(src, dst, ips, l4, payload);
        m.append(f.len()).expect("room").copy_from_slice(&f);
    }
    burst
}

/// Runs the worker over one burst of 32 user frames received on a ring port whose transmit
/// ring has room for `tx_room` packets; session "ids" copies every one ("first" only TCP,
/// so none). `copies`: the port's copy socket, if it has one.
fn run_one_burst(tag: &str, tx_room: u32, copies: Option<CopySocket>) -> Run {
    let _reg = ThreadRegistration::register().expect("thread registration");
    let cfg = Config::from_toml_str(CONFIG).expect("config");
    let mut live = LiveState::default();
    live.mirror_slots.assign(&cfg.mirror_sessions);
    let slot = usize::from(live.mirror_slots.slot("ids").expect("slot"));
    assert_eq!(slot, 1, "the second session counts in slot 1");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &live, 1).expect("snapshot");
    let pool = Mempool::new_pktmbuf(
        &format!("{tag}pool"),
        1023,
        0,
        DEFAULT_DATA_ROOM,
        SOCKET_ID_ANY,
    )
    .expect("mempool");
    let rx = Ring::new(&format!("{tag}_in"), 64, SOCKET_ID_ANY).expect("ring");
    // An exact-size ring of `tx_room`, and nobody drains it.
    let tx = Ring::new(&format!("{tag}_out"), tx_room, SOCKET_ID_ANY).expect("ring");
    let mut port = Port::from_rings(tag, &[&rx], &[&tx]).expect("ring port");
    port.configure(&PortConfig::default(), &pool)
        .expect("configure");
    port.start().expect("start");

    let mut burst = udp_frames(
        &pool,
        ([2, 0, 0, 0, 0, 0xaa], GW_MAC),
        Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
        (30000, 53),
        &[b'm'; 100],
    );
    assert_eq!(rx.enqueue_burst(&mut burst), 32);

    let stats = Arc::new(WorkerStats::new(MAX_APPLIANCES));
    let hz = dpdk_bindings::lcore::tsc_hz().max(1);
    let setup = WorkerSetup {
        index: 0,
        workers: 1,
        rx: vec![(0, port.rx_queue(QueueId(0)).expect("rxq"))],
        tx: vec![port.tx_queue(QueueId(0)).expect("txq")],
        copy_sockets: vec![copies],
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
    let in_ring = tx.count();
    drop(port);
    Run {
        pipe,
        stats,
        in_ring,
        slot,
    }
}

impl Run {
    /// Asserts 32 user packets, each encapsulated and copied once by session "ids", and
    /// nothing in the other session.
    fn assert_copied_all(&self) {
        let c = &self.pipe.counters;
        assert_eq!(c.processed, 32);
        assert_eq!(c.encapsulated, 32);
        assert_eq!(
            c.mirror[self.slot][MirrorCounter::Packets as usize],
            32,
            "32 copies made"
        );
        assert_eq!(
            c.mirror[1 - self.slot],
            [0; MirrorCounter::COUNT],
            "nothing in the other session"
        );
    }

    /// Session "ids"'s `tx_full`: counted, and published.
    fn session_tx_full(&self) -> u64 {
        let counted = self.pipe.counters.mirror[self.slot][MirrorCounter::TxFull as usize];
        let published = self.stats.mirror[self.slot][MirrorCounter::TxFull as usize].load(Relaxed);
        assert_eq!(counted, published, "the session's tx_full is published");
        counted
    }

    /// The port-wide `tx_full`.
    fn port_tx_full(&self) -> u64 {
        self.stats.drops[DropReason::TxFull.index()].load(Relaxed)
    }
}

#[test]
#[ignore = "needs root (DPDK): scripts/test.sh runs it as root"]
fn copies_refused_by_tx_are_counted_in_their_session() {
    needs_root::require();
    let _eal = eal_up();
    let r = run_one_burst("txfull", 8, None);
    r.assert_copied_all();
    // The originals went first: 8 of them fill the ring, 24 are refused, then all 32
    // copies are refused.
    assert_eq!(r.in_ring, 8, "the transmit ring took 8 packets");
    assert_eq!(
        r.port_tx_full(),
        56,
        "port-wide: 24 originals and 32 copies"
    );
    assert_eq!(
        r.session_tx_full(),
        32,
        "every refused copy counted in its session"
    );
}

/// A veth pair `{name}a` (where copies are sent) - `{name}b` (where they are captured) in a
/// namespace of its own; removed on drop.
struct VethPair {
    ns: String,
    name: String,
}

impl VethPair {
    fn create(name: &str) -> Self {
        let ns = format!("{name}-ns");
        netns::sh_quiet(&["ip", "netns", "del", &ns]);
        netns::sh(&["ip", "netns", "add", &ns]);
        let (a, b) = (format!("{name}a"), format!("{name}b"));
        netns::sh(&[
            "ip", "-n", &ns, "link", "add", &a, "type", "veth", "peer", "name", &b,
        ]);
        for i in [&a, &b] {
            netns::sh(&["ip", "-n", &ns, "link", "set", i, "up"]);
        }
        VethPair {
            ns,
            name: name.to_owned(),
        }
    }

    fn a(&self) -> String {
        format!("{}a", self.name)
    }

    /// A copy socket on end `a`, opened inside the namespace.
    fn copy_socket(&self, send_buffer: usize) -> CopySocket {
        let a = self.a();
        netns::in_netns(&self.ns, move || {
            CopySocket::open(&a, send_buffer).expect("copy socket")
        })
    }

    /// `ip -n NS ...`.
    fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", &self.ns];
        v.extend_from_slice(args);
        netns::sh(&v);
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        netns::sh_quiet(&["ip", "netns", "del", &self.ns]);
    }
}

#[test]
#[ignore = "needs root (DPDK, a network namespace): scripts/test.sh runs it as root"]
fn copies_with_a_socket_of_their_own_leave_the_ring_to_the_originals() {
    needs_root::require();
    let _eal = eal_up();
    let veth = VethPair::create("gwcs");
    let capture = netns::UserPort::open(&veth.ns, &format!("{}b", veth.name));

    // Room for the 32 originals only: the copies leave through the socket.
    let r = run_one_burst("csup", 32, Some(veth.copy_socket(copy_socket::SEND_BUFFER)));
    r.assert_copied_all();
    assert_eq!(r.in_ring, 32, "the transmit ring took the 32 originals");
    assert_eq!(r.port_tx_full(), 0, "nothing refused");
    assert_eq!(r.session_tx_full(), 0);
    let frames = capture.drain(std::time::Duration::from_millis(300));
    let copies: Vec<_> = frames.iter().filter(|f| f[..6] == SENSOR_MAC).collect();
    assert_eq!(
        copies.len(),
        32,
        "the 32 copies reached the wire ({} frames)",
        frames.len()
    );
    for c in &copies {
        // VXLAN (UDP 4789) to the sensor, holding a user frame of 100 'm's.
        assert_eq!(&c[12..14], &[0x08, 0x00], "IPv4");
        assert_eq!(u16::from_be_bytes([c[36], c[37]]), 4789, "VXLAN");
        assert!(
            c.windows(100).any(|w| w == [b'm'; 100]),
            "the original inside"
        );
    }

    // The socket's interface is down: it refuses every copy at once (ENETDOWN); the
    // originals still have the ring to themselves.
    veth.ip(&["link", "set", &veth.a(), "down"]);
    let r = run_one_burst(
        "csdown",
        32,
        Some(veth.copy_socket(copy_socket::SEND_BUFFER)),
    );
    r.assert_copied_all();
    assert_eq!(r.in_ring, 32, "the transmit ring took the 32 originals");
    assert_eq!(
        r.session_tx_full(),
        32,
        "every refused copy counted in its session"
    );
    assert_eq!(r.port_tx_full(), 32, "and port-wide");
}

#[test]
#[ignore = "needs root (DPDK, a network namespace): scripts/test.sh runs it as root"]
fn a_copy_socket_refuses_without_waiting_and_others_can_ignore_it() {
    needs_root::require();
    let _eal = eal_up();
    let _reg = ThreadRegistration::register().expect("thread registration");
    let veth = VethPair::create("gwcr");
    let pool =
        Mempool::new_pktmbuf("crpool", 1023, 0, DEFAULT_DATA_ROOM, SOCKET_ID_ANY).expect("mempool");
    let burst_of_frames = || {
        udp_frames(
            &pool,
            ([2, 0, 0, 0, 0, 0xc1], SENSOR_MAC),
            Ips::V4([10, 1, 0, 1], [10, 1, 0, 31]),
            (40000, 4789),
            &[b'c'; 200],
        )
    };

    // An af_packet PMD's socket on the same interface (bound to every protocol, as the PMD
    // binds): it would receive the copies sent there, until ignore_outgoing marks it.
    let a = veth.a();
    let pmd_like = netns::UserPort::open(&veth.ns, &a);
    let a2 = a.clone();
    let marked = netns::in_netns(&veth.ns, move || copy_socket::ignore_outgoing(&a2))
        .expect("ignore_outgoing");
    assert!(marked >= 1, "the PMD-like socket was found ({marked})");
    let unmarked = netns::UserPort::open(&veth.ns, &a);
    let sock = veth.copy_socket(copy_socket::SEND_BUFFER);
    let b = burst_of_frames();
    assert_eq!(sock.send(b.as_slice()), 32, "an idle link takes a burst");
    drop(b);
    // Only the copies count (the peer's kernel may send a frame of its own meanwhile).
    let quiet = std::time::Duration::from_millis(200);
    let copies_in = |frames: Vec<Vec<u8>>| frames.iter().filter(|f| f[..6] == SENSOR_MAC).count();
    let seen_marked = copies_in(pmd_like.drain(quiet));
    let seen_unmarked = copies_in(unmarked.drain(quiet));
    assert_eq!(
        seen_marked, 0,
        "the marked socket receives none of the copies"
    );
    assert_eq!(
        seen_unmarked, 32,
        "a socket opened after it receives them all"
    );

    // A link slower than the copies (tbf at 8 kbit/s holding a large queue): the socket's
    // 64 KiB send buffer fills with copies in flight and it refuses the rest at once.
    netns::sh(&[
        "ip", "netns", "exec", &veth.ns, "tc", "qdisc", "add", "dev", &a, "root", "tbf", "rate",
        "8kbit", "burst", "1600", "limit", "10000000",
    ]);
    let slow = veth.copy_socket(64 << 10);
    let (mut sent, mut refused) = (0, 0);
    for _ in 0..100 {
        let b = burst_of_frames();
        let n = slow.send(b.as_slice());
        sent += n;
        refused += b.len() - n;
    }
    assert!(sent > 0, "some copies went");
    assert!(
        refused > 2000,
        "most were refused, not waited for ({sent} sent, {refused} refused)"
    );
}
