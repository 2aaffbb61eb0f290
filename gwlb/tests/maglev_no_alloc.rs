//! The flow table allocates nothing after construction, and a Maglev rebuild into an existing
//! table allocates nothing once the builder's scratch has grown (counting global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gwlb::flow_table::{FlowEntry, FlowTable, ProtoClass, Timeouts};
use gwlb::maglev::{MaglevBackend, MaglevBuilder, DEFAULT_TABLE_SIZE};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards to the system allocator unchanged; only counts calls on this thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Key40([u32; 10]);

#[test]
fn no_allocation_on_hot_paths() {
    let mut t: FlowTable<Key40> = FlowTable::with_capacity(4096, Timeouts::default()).unwrap();
    let backends: Vec<_> = (0..100)
        .map(|i| MaglevBackend::new(i, 1 + i as u32 % 3))
        .collect();
    let mut builder = MaglevBuilder::new(DEFAULT_TABLE_SIZE, 9).unwrap();
    let mut table = builder.build(&backends).unwrap();

    let before = allocs();
    for round in 0..4u32 {
        let now = round * 200;
        for i in 0..20_000u32 {
            let mut k = Key40::default();
            k.0[0] = i;
            let h = i.wrapping_mul(0x9e37_79b9);
            if t.lookup(&k, h, now).is_none() {
                let _ = t.insert(k, h, FlowEntry::new(ProtoClass::Other, 1, 0, 0), now);
            }
            if i % 7 == 0 {
                t.remove(&k, h);
            }
        }
        t.expire_step(now, 64);
        t.dump_page(gwlb::flow_table::DumpCursor::START, 256, now, |_, _| {});
        builder
            .build_into(&backends[..50 + round as usize], &mut table)
            .unwrap();
        assert!(table.lookup(round).is_some());
    }
    assert_eq!(allocs() - before, 0);
}
