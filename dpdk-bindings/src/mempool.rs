//! Packet mbuf pools.

use std::fmt;
use std::os::raw::c_uint;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::eal;
use crate::error::{check, cstring, Error, Result};
use crate::mbuf::{Mbuf, MbufBurst};
use crate::sys;

/// `SOCKET_ID_ANY`: let DPDK pick the NUMA socket.
pub const SOCKET_ID_ANY: i32 = sys::SOCKET_ID_ANY;

/// Default mbuf data room: 2048 B of data plus `RTE_PKTMBUF_HEADROOM` (128).
pub const DEFAULT_DATA_ROOM: u16 = sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

/// Bytes kept free in front of a received packet (`RTE_PKTMBUF_HEADROOM`).
pub const HEADROOM: u16 = sys::RTE_PKTMBUF_HEADROOM as u16;

struct PoolInner {
    ptr: NonNull<sys::rte_mempool>,
    name: String,
}

// SAFETY: a pktmbuf pool uses the default multi-producer/multi-consumer ring
// ops, so get/put from any thread is safe; the pointer itself is immutable.
unsafe impl Send for PoolInner {}
// SAFETY: as above; shared references only call thread-safe mempool ops.
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Outstanding mbufs (held by Mbuf values, rings or a driver) still
        // point into the pool: freeing it then would be a use-after-free, so
        // the pool is leaked instead. Nobody can allocate concurrently: this
        // is the last handle, and ports keep their own handle.
        // SAFETY: ptr is a live pool created by rte_pktmbuf_pool_create.
        let in_use = unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) };
        if in_use == 0 {
            // SAFETY: no mbuf of this pool is alive and no handle remains.
            unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) };
        }
    }
}

/// A pktmbuf mempool (`rte_pktmbuf_pool_create`). Cloning shares the pool;
/// the pool is freed when the last clone drops and all mbufs are back (if
/// some are still out, it is leaked rather than freed under them).
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.inner.name)
            .field("avail", &self.avail_count())
            .finish()
    }
}

impl Mempool {
    /// Creates a pool of `n_mbufs` packet mbufs with `data_room` bytes each
    /// (headroom included; [`DEFAULT_DATA_ROOM`] is the usual choice) and a
    /// per-lcore cache of `cache_size` (0..=512, at most `n_mbufs / 1.5`).
    /// `socket` is a NUMA socket id or [`SOCKET_ID_ANY`]. Names are global
    /// to the process and must be unique.
    pub fn new_pktmbuf(
        name: &str,
        n_mbufs: u32,
        cache_size: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Self> {
        eal::ensure()?;
        let cname = cstring("mempool name", name)?;
        // SAFETY: EAL is initialized; cname is a valid C string that DPDK
        // copies; all other arguments are plain values.
        let ptr = unsafe {
            sys::rte_pktmbuf_pool_create(cname.as_ptr(), n_mbufs, cache_size, 0, data_room, socket)
        };
        let ptr = check("rte_pktmbuf_pool_create", ptr)?;
        Ok(Self {
            inner: Arc::new(PoolInner {
                ptr,
                name: name.to_owned(),
            }),
        })
    }

    /// [`Mempool::new_pktmbuf`] with the mempool driver named `ops` (`"ring_mp_mc"`, the
    /// default: a FIFO ring; `"stack"`: a LIFO, so the mbufs freed last, still in cache,
    /// are the next taken once an lcore's cache runs dry).
    pub fn new_pktmbuf_by_ops(
        name: &str,
        n_mbufs: u32,
        cache_size: u32,
        data_room: u16,
        socket: i32,
        ops: &str,
    ) -> Result<Self> {
        eal::ensure()?;
        let cname = cstring("mempool name", name)?;
        let cops = cstring("mempool ops", ops)?;
        // SAFETY: EAL is initialized; both strings are valid C strings that DPDK reads
        // during the call (the ops name is looked up, not kept); the rest are plain values.
        let ptr = unsafe {
            sys::rte_pktmbuf_pool_create_by_ops(
                cname.as_ptr(),
                n_mbufs,
                cache_size,
                0,
                data_room,
                socket,
                cops.as_ptr(),
            )
        };
        let ptr = check("rte_pktmbuf_pool_create_by_ops", ptr)?;
        Ok(Self {
            inner: Arc::new(PoolInner {
                ptr,
                name: name.to_owned(),
            }),
        })
    }

    /// Raw pool pointer, valid while any clone of this handle lives.
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.inner.ptr.as_ptr()
    }

    /// The pool name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Free mbufs, per-lcore caches included (`rte_mempool_avail_count`).
    pub fn avail_count(&self) -> u32 {
        // SAFETY: the pool is alive while self exists.
        unsafe { sys::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Mbufs currently allocated (`rte_mempool_in_use_count`).
    pub fn in_use_count(&self) -> u32 {
        // SAFETY: the pool is alive while self exists.
        unsafe { sys::rte_mempool_in_use_count(self.as_ptr()) }
    }

    /// Allocates one mbuf (reset, empty, default headroom).
    pub fn alloc(&self) -> Result<Mbuf> {
        // SAFETY: the pool is alive; the shim wraps rte_pktmbuf_alloc.
        let m = unsafe { sys::dpdk_shim_pktmbuf_alloc(self.as_ptr()) };
        match NonNull::new(m) {
            // SAFETY: a freshly allocated mbuf that nobody else owns.
            Some(p) => Ok(unsafe { Mbuf::from_raw(p.as_ptr()) }.expect("non-null")),
            None => Err(Error::from_errno("rte_pktmbuf_alloc", libc::ENOBUFS)),
        }
    }

    /// Allocates `n` mbufs and appends them to `burst` (all or nothing).
    pub fn alloc_bulk<const N: usize>(&self, burst: &mut MbufBurst<N>, n: usize) -> Result<()> {
        if n > burst.spare_capacity() {
            return Err(Error::InvalidArgument(format!(
                "alloc_bulk of {n} into a burst with {} free slots",
                burst.spare_capacity()
            )));
        }
        let (ptr, _) = burst.spare_raw();
        // n <= N <= u16::MAX, so the cast is lossless.
        // SAFETY: `ptr` points at >= n writable slots of the burst; on
        // success DPDK wrote n valid mbuf pointers there, which the burst
        // then owns.
        let rc = unsafe { sys::dpdk_shim_pktmbuf_alloc_bulk(self.as_ptr(), ptr, n as c_uint) };
        check("rte_pktmbuf_alloc_bulk", rc)?;
        // SAFETY: the n slots after len were just initialized.
        unsafe { burst.set_len(burst.len() + n) };
        Ok(())
    }

    /// Allocates an mbuf and copies `bytes` into it (single segment).
    pub fn alloc_from_bytes(&self, bytes: &[u8]) -> Result<Mbuf> {
        let mut m = self.alloc()?;
        let room = m.tailroom();
        let dst = m.append(bytes.len()).ok_or_else(|| {
            Error::InvalidArgument(format!("{} bytes do not fit an mbuf ({room})", bytes.len()))
        })?;
        dst.copy_from_slice(bytes);
        Ok(m)
    }
}
