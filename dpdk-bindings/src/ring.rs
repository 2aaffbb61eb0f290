//! `rte_ring`s of mbuf pointers.

use std::fmt;
use std::os::raw::c_uint;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::eal;
use crate::error::{check, cstring, Result};
use crate::mbuf::MbufBurst;
use crate::sys;

struct RingInner {
    ptr: NonNull<sys::rte_ring>,
    name: String,
}

// SAFETY: the ring pointer is immutable; which threads may enqueue/dequeue
// concurrently is enforced by the public types (Ring: MP/MC, Sync;
// RingProducer/RingConsumer: SP/SC, &mut access only).
unsafe impl Send for RingInner {}
// SAFETY: see above.
unsafe impl Sync for RingInner {}

impl RingInner {
    fn create(name: &str, count: u32, socket: i32, flags: u32) -> Result<Self> {
        eal::ensure()?;
        let cname = cstring("ring name", name)?;
        // SAFETY: EAL is initialized; DPDK copies the name.
        let ptr = unsafe {
            sys::rte_ring_create(cname.as_ptr(), count, socket, flags | sys::RING_F_EXACT_SZ)
        };
        let ptr = check("rte_ring_create", ptr)?;
        Ok(Self {
            ptr,
            name: name.to_owned(),
        })
    }

    #[inline]
    fn enqueue<const N: usize>(&self, burst: &mut MbufBurst<N>) -> usize {
        let len = burst.len();
        // SAFETY: the ring holds mbuf pointers; the burst's first len slots
        // are owned mbufs. The ring takes ownership of the first n, which
        // consume_front then forgets. Concurrency is enforced by the callers'
        // types.
        let n = unsafe {
            sys::dpdk_shim_ring_enqueue_burst(
                self.ptr.as_ptr(),
                burst.raw_ptr().cast(),
                len as c_uint,
                std::ptr::null_mut(),
            )
        } as usize;
        burst.consume_front(n);
        n
    }

    #[inline]
    fn dequeue<const N: usize>(&self, burst: &mut MbufBurst<N>) -> usize {
        let (ptr, room) = burst.spare_raw();
        // SAFETY: `ptr` has `room` writable slots; objects in this ring are
        // owned mbuf pointers whose ownership moves into the burst.
        let n = unsafe {
            sys::dpdk_shim_ring_dequeue_burst(
                self.ptr.as_ptr(),
                ptr.cast(),
                room as c_uint,
                std::ptr::null_mut(),
            )
        } as usize;
        // SAFETY: n <= room slots after len were filled with owned mbufs.
        unsafe { burst.set_len(burst.len() + n) };
        n
    }

    fn count(&self) -> usize {
        // SAFETY: the ring is alive.
        unsafe { sys::dpdk_shim_ring_count(self.ptr.as_ptr()) as usize }
    }
}

impl Drop for RingInner {
    fn drop(&mut self) {
        // Free the mbufs still queued, then the ring. Last handle: no
        // concurrent users (ports made from rings hold a handle too).
        let mut burst = MbufBurst::<64>::new();
        while self.dequeue(&mut burst) > 0 {
            burst.clear();
        }
        // SAFETY: the ring was created by rte_ring_create and is unused now.
        unsafe { sys::rte_ring_free(self.ptr.as_ptr()) };
    }
}

/// A multi-producer/multi-consumer ring of mbufs. Clones share it; the last
/// one frees the queued mbufs and the ring.
#[derive(Clone)]
pub struct Ring {
    inner: Arc<RingInner>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ring({}, {} queued)", self.inner.name, self.count())
    }
}

impl Ring {
    /// Creates an MP/MC ring holding exactly `count` mbufs (`RING_F_EXACT_SZ`).
    pub fn new(name: &str, count: u32, socket: i32) -> Result<Ring> {
        Ok(Ring {
            inner: Arc::new(RingInner::create(name, count, socket, 0)?),
        })
    }

    /// Creates a single-producer/single-consumer ring, returned as its two
    /// ends (each `Send`, used through `&mut`, so SP/SC is guaranteed).
    pub fn new_spsc(name: &str, count: u32, socket: i32) -> Result<(RingProducer, RingConsumer)> {
        let flags = sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ;
        let inner = Arc::new(RingInner::create(name, count, socket, flags)?);
        Ok((
            RingProducer {
                inner: inner.clone(),
            },
            RingConsumer { inner },
        ))
    }

    /// Moves as many mbufs as fit from the front of `burst` into the ring;
    /// the rest stay in `burst`. Returns how many were enqueued.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&self, burst: &mut MbufBurst<N>) -> usize {
        self.inner.enqueue(burst)
    }

    /// Appends up to `burst.spare_capacity()` mbufs from the ring.
    #[inline]
    pub fn dequeue_burst<const N: usize>(&self, burst: &mut MbufBurst<N>) -> usize {
        self.inner.dequeue(burst)
    }

    /// Mbufs currently queued.
    pub fn count(&self) -> usize {
        self.inner.count()
    }

    /// Raw ring pointer, valid while a handle lives.
    pub fn as_ptr(&self) -> *mut sys::rte_ring {
        self.inner.ptr.as_ptr()
    }

    /// Ring name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn keepalive(&self) -> Arc<dyn Send + Sync> {
        self.inner.clone()
    }
}

/// Producer end of an SP/SC ring.
pub struct RingProducer {
    inner: Arc<RingInner>,
}

/// Consumer end of an SP/SC ring.
pub struct RingConsumer {
    inner: Arc<RingInner>,
}

impl fmt::Debug for RingProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingProducer({})", self.inner.name)
    }
}

impl fmt::Debug for RingConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingConsumer({})", self.inner.name)
    }
}

impl RingProducer {
    /// See [`Ring::enqueue_burst`].
    #[inline]
    pub fn enqueue_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        self.inner.enqueue(burst)
    }

    /// Mbufs currently queued.
    pub fn count(&self) -> usize {
        self.inner.count()
    }
}

impl RingConsumer {
    /// See [`Ring::dequeue_burst`].
    #[inline]
    pub fn dequeue_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        self.inner.dequeue(burst)
    }

    /// Mbufs currently queued.
    pub fn count(&self) -> usize {
        self.inner.count()
    }
}
