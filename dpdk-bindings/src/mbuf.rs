//! Owned mbufs and fixed-capacity bursts.
//!
//! Ownership rule: every `*mut rte_mbuf` is owned by exactly one [`Mbuf`]
//! value or one slot of an [`MbufBurst`]. Handing an mbuf to DPDK (tx,
//! ring enqueue) removes it from the burst; whatever DPDK did not take stays
//! in the burst and is freed once, when the burst is cleared or dropped.
//!
//! Per-packet accessors read `rte_mbuf` fields directly (no FFI call).

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::slice;

use crate::port::PortId;
use crate::sys;

/// `RTE_MBUF_F_RX_RSS_HASH`: `hash.rss` holds the NIC's RSS hash.
pub const RX_RSS_HASH: u64 = 1 << 1;

/// One owned packet mbuf (possibly the head of a segment chain). Dropping it
/// frees the whole chain (`rte_pktmbuf_free`).
///
/// Writes through [`Mbuf::data_mut`] assume the data is not shared: the
/// mbufs this crate hands out (allocation, rx) are never clones or indirect.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the unique owner of its mbuf; mbufs may be used and
// freed from any thread (their pool uses MP/MC ops).
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only reads fields; no interior mutability.
unsafe impl Sync for Mbuf {}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("pkt_len", &self.pkt_len())
            .field("data_len", &self.data_len())
            .field("nb_segs", &self.nb_segs())
            .field("port", &self.port())
            .finish()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf chain and free it exactly once.
        unsafe { sys::dpdk_shim_pktmbuf_free(self.0.as_ptr()) };
    }
}

impl Mbuf {
    /// Takes ownership of a raw mbuf; `None` if null.
    ///
    /// # Safety
    /// `m` must be null or a valid mbuf from a live pktmbuf pool that nothing
    /// else owns or will free; the returned value frees it on drop.
    #[inline]
    pub unsafe fn from_raw(m: *mut sys::rte_mbuf) -> Option<Self> {
        NonNull::new(m).map(Mbuf)
    }

    /// Gives up ownership without freeing; the caller must free or send it.
    #[inline]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw pointer (ownership stays here).
    #[inline]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for the lifetime of self.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut sys::rte_mbuf {
        // SAFETY: we own a valid mbuf and hold &mut self: no other reference.
        unsafe { self.0.as_mut() }
    }

    /// A new mbuf of `len` data bytes (contents unspecified) from the pool this one came
    /// from; `None` when the pool is empty or `len` exceeds the new mbuf's room.
    pub fn alloc_from_same_pool(&self, len: usize) -> Option<Mbuf> {
        // SAFETY: `self` is a valid mbuf, so its `pool` field names the live mempool it was
        // allocated from (DPDK sets it at pool creation); reading a field does not alias any
        // mutable access. The shim wraps rte_pktmbuf_alloc, which takes from that pool.
        let m = unsafe { sys::dpdk_shim_pktmbuf_alloc((*self.0.as_ptr()).pool) };
        // SAFETY: a freshly allocated mbuf (or null) that nobody else owns.
        let mut m = unsafe { Mbuf::from_raw(m) }?;
        m.append(len)?;
        Some(m)
    }

    /// Bytes of data in the first segment.
    #[inline]
    pub fn data_len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// Bytes of data in the whole chain.
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Number of segments in the chain.
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Whether the whole packet is in the first segment, i.e. [`Mbuf::data`]
    /// is the entire packet.
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.raw().nb_segs == 1
    }

    /// Free bytes in front of the data in the first segment.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Free bytes after the data in the first segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    /// The first segment's data (`rte_pktmbuf_mtod` .. `+ data_len`); the
    /// whole packet when [`Mbuf::is_contiguous`].
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: DPDK (and every mutator here) keeps
        // data_off + data_len <= buf_len, so the range lies inside the
        // mbuf's buffer, which lives as long as we own the mbuf.
        unsafe {
            slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// Mutable view of the first segment's data.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw_mut();
        // SAFETY: as in `data`; &mut self makes this the only view, and the
        // buffer is not shared (see the type-level note).
        unsafe {
            slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// Grows the packet by `n` bytes at the front (`rte_pktmbuf_prepend`) and
    /// returns them; `None` (unchanged) if the headroom is too small.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let m = self.raw_mut();
        let n16 = u16::try_from(n).ok()?;
        if n16 > m.data_off {
            return None;
        }
        m.data_off -= n16;
        m.data_len += n16; // data_off + data_len is unchanged, <= buf_len
        m.pkt_len += u32::from(n16);
        Some(&mut self.data_mut()[..n])
    }

    /// Removes `n` bytes from the front (`rte_pktmbuf_adj`); `false`
    /// (unchanged) if the first segment holds fewer than `n` bytes.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let m = self.raw_mut();
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        if n16 > m.data_len {
            return false;
        }
        m.data_off += n16;
        m.data_len -= n16;
        m.pkt_len -= u32::from(n16);
        true
    }

    /// Last segment of the chain (self for single-segment packets).
    ///
    /// A single-segment packet (`nb_segs == 1`, in the mbuf's first cache
    /// line) is answered without reading `next`, which sits in the second
    /// line: nothing else on gwlb's per-packet path reads that line, so
    /// walking the chain cost a cache miss per packet (perf harness, 2
    /// workers, 1 M flows, preloaded: 73% of `encapsulate_keyed`'s samples
    /// on that load, for the trim of an Ethernet frame's padding).
    #[inline]
    fn last_seg(&mut self) -> NonNull<sys::rte_mbuf> {
        // `nb_segs` of a chain's head counts its segments: 1 means `next` is
        // null.
        if self.raw().nb_segs == 1 {
            return self.0;
        }
        let mut seg = self.0;
        // SAFETY: `next` pointers of an owned chain are null or valid mbufs
        // owned through this head.
        while let Some(next) = NonNull::new(unsafe { seg.as_ref() }.next) {
            seg = next;
        }
        seg
    }

    /// Grows the packet by `n` bytes at the end (`rte_pktmbuf_append`) and
    /// returns them; `None` (unchanged) if the last segment lacks tailroom.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let mut last = self.last_seg();
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: `last` is a segment of our chain; &mut self excludes other
        // access. It may alias self.0 (single segment), so no reference to
        // the head is held at the same time.
        let tail = unsafe {
            let l = last.as_mut();
            let used = usize::from(l.data_off) + usize::from(l.data_len);
            if usize::from(l.buf_len) - used < n {
                return None;
            }
            let tail = l.buf_addr.cast::<u8>().add(used);
            l.data_len += n16;
            tail
        };
        self.raw_mut().pkt_len += u32::from(n16);
        // SAFETY: [used, used + n) was checked to lie within the segment's
        // buffer; we own it exclusively through &mut self.
        Some(unsafe { slice::from_raw_parts_mut(tail, n) })
    }

    /// Removes `n` bytes from the end (`rte_pktmbuf_trim`); `false`
    /// (unchanged) if the last segment holds fewer than `n` bytes.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let mut last = self.last_seg();
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: `last` is a segment of our exclusively owned chain; the
        // reference ends before the head is touched again.
        unsafe {
            let l = last.as_mut();
            if n16 > l.data_len {
                return false;
            }
            l.data_len -= n16;
        }
        self.raw_mut().pkt_len -= u32::from(n16);
        true
    }

    /// Offload flags (`RTE_MBUF_F_*`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }

    /// Sets the offload flags.
    #[inline]
    pub fn set_ol_flags(&mut self, flags: u64) {
        self.raw_mut().ol_flags = flags;
    }

    /// Input port (set by rx).
    #[inline]
    pub fn port(&self) -> PortId {
        PortId(self.raw().port)
    }

    /// Sets the port field.
    #[inline]
    pub fn set_port(&mut self, port: PortId) {
        self.raw_mut().port = port.0;
    }

    /// The RSS hash (`hash.rss`); meaningful only if [`Mbuf::has_rss_hash`].
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: every member of the hash union is plain integers, so
        // reading `rss` is valid for any bit pattern.
        unsafe { self.raw().__bindgen_anon_2.hash.rss }
    }

    /// Sets `hash.rss` (e.g. software RSS in a generator).
    #[inline]
    pub fn set_rss_hash(&mut self, hash: u32) {
        self.raw_mut().__bindgen_anon_2.hash.rss = hash;
    }

    /// Whether the driver filled in [`Mbuf::rss_hash`].
    #[inline]
    pub fn has_rss_hash(&self) -> bool {
        self.ol_flags() & RX_RSS_HASH != 0
    }

    /// Packet type (`RTE_PTYPE_*`) as classified by the driver.
    #[inline]
    pub fn packet_type(&self) -> u32 {
        // SAFETY: union of a u32 and bitfields over the same u32.
        unsafe { self.raw().__bindgen_anon_1.packet_type }
    }
}

/// A fixed-capacity burst of owned mbufs on the stack (default 32).
///
/// Derefs to `[Mbuf]` for per-packet work. [`crate::Port::rx_burst`] and
/// [`crate::Ring::dequeue_burst`] append; [`crate::Port::tx_burst`] and
/// [`crate::Ring::enqueue_burst`] remove the prefix DPDK took and keep the
/// rest, so unsent mbufs are freed exactly once (on drop or [`clear`]).
///
/// [`clear`]: MbufBurst::clear
pub struct MbufBurst<const N: usize = 32> {
    pkts: [MaybeUninit<Mbuf>; N],
    len: usize,
}

impl<const N: usize> fmt::Debug for MbufBurst<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MbufBurst<{N}>(len {})", self.len)
    }
}

impl<const N: usize> Default for MbufBurst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MbufBurst<N> {
    const CHECK: () = assert!(
        N > 0 && N <= u16::MAX as usize,
        "burst size must be 1..=65535"
    );

    /// An empty burst.
    #[inline]
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        Self {
            pkts: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Number of mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the burst holds no mbufs.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the burst is full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// The fixed capacity `N`.
    #[inline]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Free slots.
    #[inline]
    pub fn spare_capacity(&self) -> usize {
        N - self.len
    }

    /// Appends `m`; gives it back if the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.pkts[self.len].write(m);
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the last mbuf.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot `len` was initialized and is now outside the live
        // prefix, so ownership moves out exactly once.
        Some(unsafe { self.pkts[self.len].assume_init_read() })
    }

    /// Removes mbuf `i`, replacing it with the last one (O(1)).
    pub fn swap_remove(&mut self, i: usize) -> Mbuf {
        assert!(
            i < self.len,
            "swap_remove index {i} out of bounds (len {})",
            self.len
        );
        let last = self.len - 1;
        self.as_mut_slice().swap(i, last);
        self.pop().expect("non-empty")
    }

    /// Keeps the mbufs for which `keep` returns true (in order) and frees
    /// the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Mbuf) -> bool) {
        let len = self.len;
        // If `keep` panics, slots not yet visited are leaked (never double
        // freed): they lie beyond `self.len`.
        self.len = 0;
        for r in 0..len {
            // SAFETY: slot r < old len is initialized and not yet moved out;
            // writes below only touch slots < r.
            let mut m = unsafe { self.pkts[r].assume_init_read() };
            if keep(&mut m) {
                self.pkts[self.len].write(m);
                self.len += 1;
            }
        }
    }

    /// Frees every mbuf (one `rte_pktmbuf_free_bulk`).
    pub fn clear(&mut self) {
        if self.len == 0 {
            return;
        }
        let n = self.len;
        self.len = 0;
        // SAFETY: the first n slots hold owned, valid mbuf pointers
        // (Mbuf is repr(transparent) over a non-null *mut rte_mbuf); len is
        // zeroed first so they are freed exactly once.
        unsafe { sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr().cast(), n as u32) };
    }

    /// The live mbufs.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: the first len slots are initialized.
        unsafe { slice::from_raw_parts(self.pkts.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The live mbufs, mutably (reordering/swapping keeps ownership intact).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: the first len slots are initialized; &mut self is unique.
        unsafe { slice::from_raw_parts_mut(self.pkts.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Pointer to the live mbufs as `rte_mbuf **`, e.g. for tx.
    #[inline]
    pub(crate) fn raw_ptr(&mut self) -> *mut *mut sys::rte_mbuf {
        self.pkts.as_mut_ptr().cast()
    }

    /// Pointer to the first free slot and the number of free slots.
    #[inline]
    pub(crate) fn spare_raw(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        // SAFETY: len <= N, so the offset stays within (or one past) the array.
        let p = unsafe { self.pkts.as_mut_ptr().add(self.len) };
        (p.cast(), N - self.len)
    }

    /// Sets the number of live mbufs.
    ///
    /// # Safety
    /// `len <= N`, and slots `0..len` must hold valid owned mbuf pointers
    /// (e.g. written by DPDK into [`MbufBurst::spare_raw`]).
    #[inline]
    pub(crate) unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= N);
        self.len = len;
    }

    /// Forgets the first `n` mbufs (ownership went to DPDK) and moves the
    /// rest to the front.
    #[inline]
    pub(crate) fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let rest = self.len - n;
        if n > 0 && rest > 0 {
            let p = self.pkts.as_mut_ptr();
            // SAFETY: both ranges lie within the array; ptr::copy handles
            // overlap; slots 0..n were given away so overwriting them is fine.
            unsafe { std::ptr::copy(p.add(n), p, rest) };
        }
        self.len = rest;
    }
}

impl<const N: usize> Drop for MbufBurst<N> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<const N: usize> Deref for MbufBurst<N> {
    type Target = [Mbuf];
    #[inline]
    fn deref(&self) -> &[Mbuf] {
        self.as_slice()
    }
}

impl<const N: usize> DerefMut for MbufBurst<N> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Mbuf] {
        self.as_mut_slice()
    }
}
