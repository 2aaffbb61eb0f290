//! Integration tests against real DPDK virtual devices (net_null, net_ring,
//! rings). One EAL per test binary, shared through `eal::init_once`; every
//! test registers its (libtest) thread and uses its own names.

use std::sync::atomic::{AtomicU32, Ordering};

use dpdk_bindings::{
    eal, lcore, vdev, Eal, Error, Mbuf, MbufBurst, Mempool, Port, PortConfig, QueueId, QueueMemory,
    Ring, ThreadRegistration, DEFAULT_DATA_ROOM, SOCKET_ID_ANY,
};

const EAL_ARGS: &[&str] = &[
    "--no-huge",
    "-m",
    "256",
    "--no-shconf",
    "--no-pci",
    "-l",
    "0",
    "--no-telemetry",
    "--log-level=lib.eal:error",
];

fn setup() -> ThreadRegistration {
    eal::init_once(EAL_ARGS).expect("EAL init");
    ThreadRegistration::register().expect("thread registration")
}

/// Process-unique suffix for pool/ring/vdev names.
fn uniq(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

fn pool(n: u32) -> Mempool {
    Mempool::new_pktmbuf(&uniq("mp"), n, 0, DEFAULT_DATA_ROOM, SOCKET_ID_ANY).expect("mempool")
}

fn packet(i: u8, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j as u8).wrapping_mul(7) ^ i).collect()
}

#[test]
fn eal_second_init_is_refused() {
    let _t = setup();
    assert!(eal::is_initialized());
    assert_eq!(
        Eal::init(EAL_ARGS).unwrap_err(),
        Error::EalAlreadyInitialized
    );
    // init_once keeps returning the shared handle.
    assert!(eal::init_once(&[]).is_ok());
    assert!(lcore::tsc_hz() > 0);
    let a = lcore::rdtsc();
    assert!(lcore::rdtsc() >= a);
}

#[test]
fn net_null_port_rx_tx_stats() {
    let _t = setup();
    let name = uniq("net_null_t");
    vdev::create(&name, "size=64").expect("create net_null");
    let mp = pool(511);
    {
        let mut port = Port::by_name(&name).expect("port");
        let info = port.dev_info().unwrap();
        assert_eq!(info.driver_name, "net_null");
        assert!(info.max_rx_queues >= 1);
        port.mac_addr().unwrap();
        let cfg = PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            ..Default::default()
        };
        port.configure(&cfg, &mp).unwrap();
        port.start().unwrap();
        assert!(port.link_status().unwrap().up);
        assert_eq!(port.name().unwrap(), name);
        assert!(dpdk_bindings::port::ids().contains(&port.id()));
        assert!(dpdk_bindings::port::count() >= 1);
        assert_eq!(format!("{:?}", port.id()), format!("port{}", port.id().0));

        let mut burst = MbufBurst::<32>::new();
        let n = port.rx_burst(QueueId(0), &mut burst);
        assert_eq!(n, 32);
        assert!(burst.iter().all(|m| m.pkt_len() == 64 && m.is_contiguous()));
        let sent = port.tx_burst(QueueId(0), &mut burst);
        assert_eq!(sent, 32);
        assert!(burst.is_empty());

        let s = port.stats().unwrap();
        assert_eq!((s.ipackets, s.opackets), (32, 32));
        // net_null (22.11) counts packets but not bytes.
        port.reset_stats().unwrap();
        assert_eq!(port.stats().unwrap().ipackets, 0);

        assert!(matches!(vdev::remove(&name), Err(Error::Busy { .. })));
        // A second owner is refused.
        assert!(matches!(Port::by_name(&name), Err(Error::Busy { .. })));
        port.stop().unwrap();
    }
    assert_eq!(mp.in_use_count(), 0, "net_null tx frees what it sends");
    vdev::remove(&name).expect("remove");
}

#[test]
fn ring_ports_round_trip_bytes() {
    let _t = setup();
    let mp = pool(255);
    let a2b = Ring::new(&uniq("a2b"), 64, SOCKET_ID_ANY).unwrap();
    let b2a = Ring::new(&uniq("b2a"), 64, SOCKET_ID_ANY).unwrap();
    {
        let mut a = Port::from_rings(&uniq("ra"), &[&b2a], &[&a2b]).unwrap();
        let mut b = Port::from_rings(&uniq("rb"), &[&a2b], &[&b2a]).unwrap();
        let cfg = PortConfig::default();
        for p in [&mut a, &mut b] {
            p.configure(&cfg, &mp).unwrap();
            p.start().unwrap();
        }
        let mut out = MbufBurst::<32>::new();
        for i in 0..10u8 {
            let bytes = packet(i, 60 + usize::from(i));
            out.push(mp.alloc_from_bytes(&bytes).unwrap()).unwrap();
        }
        assert_eq!(a.tx_burst(QueueId(0), &mut out), 10);
        let mut got = MbufBurst::<32>::new();
        assert_eq!(b.rx_burst(QueueId(0), &mut got), 10);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(m.data(), &packet(i as u8, 60 + i)[..]);
            assert_eq!(m.pkt_len(), 60 + i);
        }
        // And back.
        assert_eq!(b.tx_burst(QueueId(0), &mut got), 10);
        assert_eq!(a.rx_burst(QueueId(0), &mut out), 10);
        assert_eq!(out[3].data(), &packet(3, 63)[..]);
        assert_eq!(a.stats().unwrap().ipackets, 10);
        assert_eq!(a.stats().unwrap().opackets, 10);
        // The ring PMD (22.11) counts packets but not bytes.
        assert_eq!(b.stats().unwrap().ipackets, 10);
    }
    assert_eq!(mp.in_use_count(), 0);
}

#[test]
fn tx_overflow_frees_unsent_exactly_once() {
    let _t = setup();
    let mp = pool(127);
    let total = mp.avail_count();
    let ring = Ring::new(&uniq("small"), 8, SOCKET_ID_ANY).unwrap();
    let mut port = Port::from_rings(&uniq("rsmall"), &[&ring], &[&ring]).unwrap();
    port.configure(&PortConfig::default(), &mp).unwrap();
    port.start().unwrap();

    let mut burst = MbufBurst::<32>::new();
    mp.alloc_bulk(&mut burst, 32).unwrap();
    for (i, m) in burst.iter_mut().enumerate() {
        m.append(64).unwrap().fill(i as u8);
    }
    assert_eq!(mp.avail_count(), total - 32);
    assert_eq!(port.tx_burst(QueueId(0), &mut burst), 8);
    assert_eq!(burst.len(), 24, "unsent packets stay in the burst");
    // The remaining packets were moved to the front: first unsent is #8.
    assert_eq!(burst[0].data()[0], 8);
    assert_eq!(port.tx_burst(QueueId(0), &mut burst), 0, "ring full");
    drop(burst);
    assert_eq!(
        mp.avail_count(),
        total - 8,
        "24 unsent freed, 8 queued in the ring"
    );
    assert_eq!(ring.count(), 8);

    let mut rx = MbufBurst::<32>::new();
    assert_eq!(port.rx_burst(QueueId(0), &mut rx), 8);
    assert_eq!(rx[7].data()[0], 7);
    rx.clear();
    assert_eq!(mp.avail_count(), total);
    // The ring PMD does not count refused packets as oerrors: the caller
    // keeps them, so only the caller can count drops.
    assert_eq!(port.stats().unwrap().opackets, 8);
    drop(port);
    drop(ring);
    assert_eq!(mp.avail_count(), total);
}

#[test]
fn net_ring_vdev_loopback() {
    let _t = setup();
    // Without arguments a net_ring vdev uses the same ring for rx and tx.
    let name = uniq("net_ring_t");
    vdev::create(&name, "").expect("create net_ring");
    let mp = pool(127);
    {
        let mut port = Port::by_name(&name).unwrap();
        assert_eq!(port.dev_info().unwrap().driver_name, "net_ring");
        port.configure(&PortConfig::default(), &mp).unwrap();
        port.start().unwrap();
        let mut b = MbufBurst::<4>::new();
        b.push(mp.alloc_from_bytes(b"hello ring").unwrap()).unwrap();
        assert_eq!(port.tx_burst(QueueId(0), &mut b), 1);
        assert_eq!(port.rx_burst(QueueId(0), &mut b), 1);
        assert_eq!(b[0].data(), b"hello ring");
    }
    assert_eq!(mp.in_use_count(), 0);
    vdev::remove(&name).unwrap();
}

#[test]
fn errors_carry_dpdk_messages() {
    let _t = setup();
    let e = vdev::create("net_nosuchdriver0", "").unwrap_err();
    match &e {
        Error::Dpdk { op, errno, msg } => {
            assert_eq!(*op, "rte_vdev_init");
            assert!(*errno > 0);
            assert!(!msg.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().starts_with("rte_vdev_init failed: "), "{e}");

    let e = Port::by_name("no_such_port").unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
    assert!(e.to_string().contains("No such device"), "{e}");

    let e = vdev::remove("net_null_never_created").unwrap_err();
    assert!(e.errno().is_some(), "{e}");

    let e = Mempool::new_pktmbuf("x", 0, 0, DEFAULT_DATA_ROOM, SOCKET_ID_ANY).unwrap_err();
    assert!(e.errno().is_some(), "{e}");
    let name = uniq("dup");
    let _p = Mempool::new_pktmbuf(&name, 63, 0, DEFAULT_DATA_ROOM, SOCKET_ID_ANY).unwrap();
    let e = Mempool::new_pktmbuf(&name, 63, 0, DEFAULT_DATA_ROOM, SOCKET_ID_ANY).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    assert!(e.to_string().contains("exists"), "{e}");
}

#[test]
fn mbuf_arithmetic() {
    let _t = setup();
    let mp = pool(63);
    let mut m = mp.alloc_from_bytes(&[1, 2, 3, 4]).unwrap();
    assert_eq!(m.headroom(), 128);
    assert_eq!((m.data_len(), m.pkt_len()), (4, 4));
    let tail = m.tailroom();
    m.prepend(2).unwrap().copy_from_slice(&[8, 9]);
    assert_eq!(m.data(), &[8, 9, 1, 2, 3, 4]);
    assert!(m.adj(3));
    assert_eq!(m.data(), &[2, 3, 4]);
    m.append(2).unwrap().copy_from_slice(&[5, 6]);
    assert!(m.trim(1));
    assert_eq!(m.data(), &[2, 3, 4, 5]);
    assert_eq!(m.pkt_len(), 4);
    assert_eq!(m.tailroom(), tail - 1);
    assert!(m.prepend(m.headroom() + 1).is_none());
    assert!(!m.adj(5));
    assert!(!m.trim(5));
    assert!(m.append(m.tailroom() + 1).is_none());
    assert_eq!(
        m.data(),
        &[2, 3, 4, 5],
        "failed ops leave the mbuf unchanged"
    );
    m.data_mut()[0] = 42;
    assert_eq!(m.data()[0], 42);
    m.set_rss_hash(0xdead_beef);
    assert_eq!(m.rss_hash(), 0xdead_beef);

    // Raw hand-off round trip.
    let raw = m.into_raw();
    // SAFETY: `raw` came from into_raw just above and is owned by nobody.
    let m = unsafe { Mbuf::from_raw(raw) }.unwrap();
    drop(m);
    assert_eq!(mp.in_use_count(), 0);
}

#[test]
fn burst_ownership_ops() {
    let _t = setup();
    let mp = pool(63);
    let mut b = MbufBurst::<8>::new();
    mp.alloc_bulk(&mut b, 6).unwrap();
    assert!(
        mp.alloc_bulk(&mut b, 3).is_err(),
        "more than the free slots"
    );
    for (i, m) in b.iter_mut().enumerate() {
        m.append(1).unwrap()[0] = i as u8;
    }
    b.retain(|m| m.data()[0] % 2 == 0);
    assert_eq!(b.iter().map(|m| m.data()[0]).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(mp.in_use_count(), 3);
    let m = b.swap_remove(0);
    assert_eq!(m.data()[0], 0);
    assert_eq!(b.iter().map(|m| m.data()[0]).collect::<Vec<_>>(), [4, 2]);
    b.push(m).unwrap();
    assert_eq!(b.pop().unwrap().data()[0], 0);
    mp.alloc_bulk(&mut b, 6).unwrap();
    assert!(b.is_full());
    let extra = mp.alloc().unwrap();
    let extra = b.push(extra).unwrap_err();
    drop(extra);
    drop(b);
    assert_eq!(mp.in_use_count(), 0);
    // Exhaustion is an error, not a panic.
    let small = pool(4);
    let mut b = MbufBurst::<8>::new();
    assert!(small.alloc_bulk(&mut b, 8).is_err());
    assert!(b.is_empty());
}

#[test]
fn spsc_ring_across_threads() {
    let _t = setup();
    let mp = pool(255);
    let (mut tx, mut rx) = Ring::new_spsc(&uniq("spsc"), 64, SOCKET_ID_ANY).unwrap();
    let producer = std::thread::spawn(move || {
        let _t = ThreadRegistration::register().unwrap();
        let mut sent = 0u32;
        while sent < 1000 {
            let mut b = MbufBurst::<16>::new();
            while !b.is_full() {
                let m = mp.alloc_from_bytes(&sent.to_be_bytes()).unwrap();
                sent += 1;
                b.push(m).unwrap();
            }
            while !b.is_empty() {
                tx.enqueue_burst(&mut b);
            }
        }
        mp
    });
    let mut next = 0u32;
    let mut b = MbufBurst::<32>::new();
    while next < 1008 {
        rx.dequeue_burst(&mut b);
        for m in b.iter() {
            assert_eq!(m.data(), next.to_be_bytes());
            next += 1;
        }
        b.clear();
    }
    let mp = producer.join().unwrap();
    assert_eq!(rx.count(), 0);
    assert_eq!(mp.in_use_count(), 0);
}

#[test]
fn queue_handles_and_ownership() {
    let _t = setup();
    let mp = pool(255);
    let r = Ring::new(&uniq("qh"), 64, SOCKET_ID_ANY).unwrap();
    let mut port = Port::from_rings(&uniq("rqh"), &[&r, &r], &[&r, &r]).unwrap();
    let cfg = PortConfig {
        rx_queues: 2,
        tx_queues: 2,
        ..Default::default()
    };
    port.configure(&cfg, &mp).unwrap();
    port.start().unwrap();
    let mut rxq = port.rx_queue(QueueId(1)).unwrap();
    let mut txq = port.tx_queue(QueueId(1)).unwrap();
    assert_eq!(
        format!("{rxq:?} {txq:?}"),
        format!("{:?}/rxq1 {:?}/txq1", port.id(), port.id())
    );
    assert!(port.rx_queue(QueueId(1)).is_err(), "taken once");
    assert!(port.rx_queue(QueueId(2)).is_err(), "not configured");
    assert!(matches!(port.stop(), Err(Error::Busy { .. })));
    let mp2 = mp.clone();
    let n = std::thread::spawn(move || {
        let _t = ThreadRegistration::register().unwrap();
        let mut b = MbufBurst::<32>::new();
        b.push(mp2.alloc_from_bytes(b"x").unwrap()).unwrap();
        assert_eq!(txq.tx_burst(&mut b), 1);
        let n = rxq.rx_burst(&mut b);
        assert_eq!(b[0].data(), b"x");
        n
    })
    .join()
    .unwrap();
    assert_eq!(n, 1);
    port.stop().unwrap();
    // Queue 0 is still usable directly.
    port.start().unwrap();
    let mut b = MbufBurst::<32>::new();
    assert_eq!(port.rx_burst(QueueId(0), &mut b), 0);
    drop(port);
    assert_eq!(mp.in_use_count(), 0);
}

#[test]
fn threads_register_and_unregister() {
    let _t = setup();
    assert!(lcore::lcore_id().is_some());
    // More than RTE_MAX_LCORE (128) registrations in sequence: only works if
    // dropping the guard gives the lcore id back.
    for _ in 0..3 {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                std::thread::spawn(|| {
                    assert_eq!(lcore::lcore_id(), None);
                    let reg = ThreadRegistration::register().unwrap();
                    assert_eq!(lcore::lcore_id(), Some(reg.lcore()));
                    // Nested registration is a no-op guard.
                    let inner = ThreadRegistration::register().unwrap();
                    assert_eq!(inner.lcore(), reg.lcore());
                    drop(inner);
                    assert_eq!(lcore::lcore_id(), Some(reg.lcore()));
                    let id = reg.lcore();
                    drop(reg);
                    assert_eq!(lcore::lcore_id(), None);
                    id
                })
            })
            .collect();
        let mut ids: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert!(!ids.is_empty());
    }
    assert!(format!("{:?}", lcore::LcoreId(2)) == "lcore2");
}

#[test]
fn pool_dropped_with_mbufs_out_is_leaked_not_freed() {
    let _t = setup();
    let mp = pool(15);
    let m = mp.alloc_from_bytes(b"still alive").unwrap();
    drop(mp);
    // The pool must still be valid for this read and for the free.
    assert_eq!(m.data(), b"still alive");
    drop(m);
}

#[test]
fn configure_placed_gives_each_rx_queue_its_pool() {
    let _t = setup();
    let name = uniq("net_null_p");
    vdev::create(&name, "size=64").expect("create net_null");
    let (a, b) = (pool(511), pool(511));
    {
        let mut port = Port::by_name(&name).expect("port");
        let cfg = PortConfig {
            rx_queues: 2,
            tx_queues: 2,
            ..Default::default()
        };
        // --no-huge: all of the EAL's memory is on socket 0.
        let rx = [
            QueueMemory {
                socket: 0,
                pool: &a,
            },
            QueueMemory {
                socket: 0,
                pool: &b,
            },
        ];
        // One entry per configured queue, or nothing is configured.
        assert!(matches!(
            port.configure_placed(&cfg, &rx[..1], &[0, 0]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            port.configure_placed(&cfg, &rx, &[0]),
            Err(Error::InvalidArgument(_))
        ));
        port.configure_placed(&cfg, &rx, &[0, SOCKET_ID_ANY])
            .unwrap();
        port.start().unwrap();
        // net_null fills each queue's bursts from that queue's pool.
        let mut got = MbufBurst::<32>::new();
        assert_eq!(port.rx_burst(QueueId(0), &mut got), 32);
        assert_eq!((a.in_use_count(), b.in_use_count()), (32, 0));
        got.clear();
        assert_eq!(port.rx_burst(QueueId(1), &mut got), 32);
        assert_eq!((a.in_use_count(), b.in_use_count()), (0, 32));
        got.clear();
        port.stop().unwrap();
    }
    assert_eq!(a.in_use_count() + b.in_use_count(), 0);
    vdev::remove(&name).expect("remove");
}
