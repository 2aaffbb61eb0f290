//! The one abstraction the pipeline needs from a packet buffer: a contiguous byte window
//! that can grow or shrink at the front (headroom) and shrink at the back.
//!
//! DPDK mbufs implement it in the data path; [`VecBuf`] implements it for tests,
//! benchmarks and offline tools, so every byte the pipeline writes is testable without DPDK.

/// A contiguous packet with headroom in front of it.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front. Returns `false` (and changes nothing)
    /// when the headroom is smaller than `n`.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front. Returns `false` (and changes nothing) when the
    /// packet is shorter than `n`.
    fn adj(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the end. Returns `false` (and changes nothing) when the
    /// packet is shorter than `n`.
    fn trim(&mut self, n: usize) -> bool;
    /// Bytes available in front of the packet.
    fn headroom(&self) -> usize;
    /// Whether the packet continues past [`PacketBuf::data`] (a chain of DPDK segments). The
    /// pipeline drops such a packet as `oversize`: it is larger than the buffers gwlb sized
    /// for its ports' MTUs.
    #[inline]
    fn is_segmented(&self) -> bool {
        false
    }
    /// A new buffer of `len` bytes (contents unspecified) from the same pool as this one, for
    /// a copy of it (mirroring); `None` when there is none to be had (the pool is empty, or
    /// `len` is more than a buffer holds). Outside the per-packet path of unmirrored traffic.
    fn alloc_like(&self, len: usize) -> Option<Self>
    where
        Self: Sized;
}

/// A heap buffer with headroom: the test and offline counterpart of an mbuf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    /// Headroom of a default DPDK mbuf (`RTE_PKTMBUF_HEADROOM`).
    pub const DEFAULT_HEADROOM: usize = 128;

    /// Copies `bytes` into a new buffer with `headroom` free bytes in front.
    pub fn with_headroom(bytes: &[u8], headroom: usize) -> Self {
        let mut buf = vec![0u8; headroom + bytes.len()];
        buf[headroom..].copy_from_slice(bytes);
        Self {
            buf,
            start: headroom,
            end: headroom + bytes.len(),
        }
    }

    /// Copies `bytes` into a new buffer with the default mbuf headroom.
    pub fn new(bytes: &[u8]) -> Self {
        Self::with_headroom(bytes, Self::DEFAULT_HEADROOM)
    }
}

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
    fn headroom(&self) -> usize {
        self.start
    }
    fn alloc_like(&self, len: usize) -> Option<Self> {
        Some(VecBuf::with_headroom(
            &vec![0u8; len],
            Self::DEFAULT_HEADROOM,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_and_shrink() {
        let mut b = VecBuf::with_headroom(&[1, 2, 3, 4], 2);
        assert!(!b.prepend(3));
        assert!(b.prepend(2));
        assert_eq!(b.data(), &[0, 0, 1, 2, 3, 4]);
        assert!(b.adj(3));
        assert_eq!(b.data(), &[2, 3, 4]);
        assert!(b.trim(1));
        assert_eq!(b.data(), &[2, 3]);
        assert!(!b.trim(3));
        assert!(!b.adj(3));
        assert_eq!(b.headroom(), 3);
    }
}
