//! [`PacketBuf`] for DPDK mbufs: the pipeline edits mbufs in place.

use dpdk_bindings::Mbuf;

use crate::packet_buf::PacketBuf;

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        Mbuf::prepend(self, n).is_some()
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        Mbuf::adj(self, n)
    }
    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        Mbuf::trim(self, n)
    }
    #[inline]
    fn headroom(&self) -> usize {
        Mbuf::headroom(self)
    }
    #[inline]
    fn is_segmented(&self) -> bool {
        !self.is_contiguous()
    }
    #[inline]
    fn alloc_like(&self, len: usize) -> Option<Self> {
        self.alloc_from_same_pool(len)
    }
}
