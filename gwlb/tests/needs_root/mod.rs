//! Tests that need root (DPDK's EAL, network namespaces, raw sockets) are marked
//! `#[ignore = "needs root ..."]`, so a plain `cargo test` reports them as ignored instead of
//! passing them silently; `scripts/test.sh` (as root, as CI runs it) includes them with
//! `cargo test -- --include-ignored`. Each calls [`require`] first: run without root, it fails
//! with a message instead of testing nothing.

/// Panics unless running as root.
pub fn require() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test needs root (DPDK, network namespaces): run it as root, as scripts/test.sh does"
    );
}
