//! Timings of the Maglev build and lookup and of the flow table. Meaningful in release only:
//! `cargo test -p gwlb --no-default-features --release --test maglev_perf -- --ignored --nocapture`

use std::hint::black_box;
use std::time::Instant;

use gwlb::flow_table::{FlowEntry, FlowTable, ProtoClass, Timeouts};
use gwlb::maglev::{fmix64, MaglevBackend, MaglevBuilder, DEFAULT_TABLE_SIZE};

fn pool(n: usize, weighted: bool) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| {
            MaglevBackend::new(
                fmix64(i as u64),
                if weighted { 1 + i as u32 % 10 } else { 1 },
            )
        })
        .collect()
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn measure_maglev_build_and_lookup() {
    let mut builder = MaglevBuilder::new(DEFAULT_TABLE_SIZE, 1).unwrap();
    for weighted in [false, true] {
        for n in [10, 100, 1000] {
            let backends = pool(n, weighted);
            let mut table = builder.build(&backends).unwrap();
            let runs = 50;
            let mut best = f64::MAX;
            let mut total = 0.0;
            for _ in 0..runs {
                let t0 = Instant::now();
                builder
                    .build_into(black_box(&backends), &mut table)
                    .unwrap();
                let dt = t0.elapsed().as_secs_f64() * 1e3;
                best = best.min(dt);
                total += dt;
            }
            println!(
                "build M={DEFAULT_TABLE_SIZE} N={n} weighted={weighted}: best {best:.3} ms, mean {:.3} ms",
                total / f64::from(runs)
            );
            if !cfg!(debug_assertions) && !weighted && n == 1000 {
                assert!(best < 5.0, "build too slow: {best} ms");
            }
        }
    }
    let table = builder.build(&pool(1000, false)).unwrap();
    let iters = 50_000_000u32;
    let t0 = Instant::now();
    let mut acc = 0u32;
    let mut h = 0x1234_5678u32;
    for _ in 0..iters {
        h = h.wrapping_mul(0x9e37_79b9).wrapping_add(1);
        acc = acc.wrapping_add(u32::from(table.lookup(black_box(h)).unwrap()));
    }
    black_box(acc);
    let ns = t0.elapsed().as_secs_f64() * 1e9 / f64::from(iters);
    println!("lookup (random hashes, incl. LCG step): {ns:.2} ns");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Key40([u32; 10]);

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn measure_flow_table() {
    for flows in [1usize << 16, 1 << 22] {
        let mut t: FlowTable<Key40> = FlowTable::with_capacity(flows, Timeouts::default()).unwrap();
        let n = (t.capacity() as f64 * 0.85) as u32;
        let key = |i: u32| {
            let mut k = Key40::default();
            k.0[0] = i;
            k
        };
        let hash = |i: u32| (fmix64(u64::from(i)) >> 32) as u32;
        let t0 = Instant::now();
        for i in 0..n {
            t.insert(key(i), hash(i), FlowEntry::new(ProtoClass::Tcp, 1, 0, i), 0)
                .unwrap();
        }
        let ins = t0.elapsed().as_secs_f64() * 1e9 / f64::from(n);
        let t0 = Instant::now();
        let mut acc = 0u32;
        let mut x = 0u32;
        for _ in 0..n {
            x = x.wrapping_mul(0x9e37_79b9).wrapping_add(0x7f4a_7c15) % n;
            acc = acc.wrapping_add(t.lookup(&key(x), hash(x), 1).map_or(0, |e| e.cookie));
        }
        black_box(acc);
        let hit = t0.elapsed().as_secs_f64() * 1e9 / f64::from(n);
        let t0 = Instant::now();
        for i in n..2 * n {
            acc = acc.wrapping_add(t.lookup(&key(i), hash(i), 1).map_or(0, |e| e.cookie));
        }
        black_box(acc);
        let miss = t0.elapsed().as_secs_f64() * 1e9 / f64::from(n);
        println!(
            "flow table {} slots ({} MiB), {n} flows: insert {ins:.1} ns, hit {hit:.1} ns, miss {miss:.1} ns (random keys, no prefetch)",
            t.capacity(),
            t.memory_bytes() >> 20
        );
    }
}
