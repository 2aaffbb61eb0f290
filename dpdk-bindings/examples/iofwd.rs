//! io-forward between two net_null ports on a worker lcore, to check that
//! the bindings add no per-packet overhead.
//!
//! Usage: `cargo run --release -p dpdk-bindings --example iofwd -- [SECS] [touch] [huge]`
//! - `touch`: read the first 8 bytes of every packet through `Mbuf::data`;
//! - `huge`: use hugepages (`--in-memory`) instead of `--no-huge`.
//!
//! Runs the loop on lcore 1 (EAL `-l 0,1`); the main lcore waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dpdk_bindings::{
    eal, lcore, vdev, MbufBurst, Mempool, Port, PortConfig, QueueId, DEFAULT_DATA_ROOM,
    SOCKET_ID_ANY,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let touch = args.iter().any(|a| a == "touch");
    let huge = args.iter().any(|a| a == "huge");
    let mem: &[&str] = if huge {
        &["--in-memory"]
    } else {
        &["--no-huge", "-m", "512"]
    };
    let mut eal_args = mem.to_vec();
    eal_args.extend([
        "--no-shconf",
        "--no-pci",
        "-l",
        "0,1",
        "--no-telemetry",
        "--log-level=lib.eal:error",
    ]);
    let eal = eal::init_once(&eal_args)?;
    let worker = *lcore::worker_lcores()
        .first()
        .ok_or("need a worker lcore (-l 0,1)")?;

    let pool = Mempool::new_pktmbuf("iofwd", 8191, 256, DEFAULT_DATA_ROOM, SOCKET_ID_ANY)?;
    let mut ports = Vec::new();
    for name in ["net_null0", "net_null1"] {
        vdev::create(name, "size=64")?;
        let mut p = Port::by_name(name)?;
        p.configure(&PortConfig::default(), &pool)?;
        p.start()?;
        ports.push(p);
    }
    let mut rx0 = ports[0].rx_queue(QueueId(0))?;
    let mut tx0 = ports[0].tx_queue(QueueId(0))?;
    let mut rx1 = ports[1].rx_queue(QueueId(0))?;
    let mut tx1 = ports[1].tx_queue(QueueId(0))?;

    let fwd = Arc::new(AtomicU64::new(0));
    let cycles = Arc::new(AtomicU64::new(0));
    let (fwd2, cycles2) = (fwd.clone(), cycles.clone());
    let hz = lcore::tsc_hz();
    lcore::launch(worker, move || {
        let deadline = (secs * hz as f64) as u64;
        let start = lcore::rdtsc();
        let mut sent = 0u64;
        let mut sink = 0u64;
        let mut b = MbufBurst::<32>::new();
        loop {
            for (rx, tx) in [(&mut rx0, &mut tx1), (&mut rx1, &mut tx0)] {
                rx.rx_burst(&mut b);
                if touch {
                    for m in b.iter() {
                        let d = m.data();
                        sink = sink.wrapping_add(u64::from_le_bytes(d[..8].try_into().unwrap()));
                    }
                }
                sent += tx.tx_burst(&mut b) as u64;
                b.clear(); // unsent packets are dropped (freed once)
            }
            let now = lcore::rdtsc();
            if now - start >= deadline {
                cycles2.store(now - start, Ordering::Relaxed);
                break;
            }
        }
        std::hint::black_box(sink);
        fwd2.store(sent, Ordering::Relaxed);
        0
    })?;
    let rc = lcore::wait(worker)?;
    let secs = cycles.load(Ordering::Relaxed) as f64 / hz as f64;
    let pkts = fwd.load(Ordering::Relaxed);
    println!(
        "iofwd rc={rc} huge={huge} touch={touch} main={:?} worker={worker:?}: {pkts} pkts in {secs:.2} s = {:.1} Mpps (both directions)",
        eal.main_lcore(),
        pkts as f64 / secs / 1e6
    );
    for p in &ports {
        println!("{:?} {:?}", p.id(), p.stats()?);
    }
    Ok(())
}
