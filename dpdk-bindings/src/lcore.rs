//! Lcores, thread registration, TSC and remote launch.

use std::fmt;
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::eal;
use crate::error::{check, Error, Result};
use crate::sys;

/// An EAL logical core id. Debug/Display: `lcore2`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LcoreId(pub u32);

impl fmt::Debug for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lcore{}", self.0)
    }
}

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The calling thread's lcore id, or `None` for a thread that is neither an
/// EAL thread nor registered with [`ThreadRegistration`].
#[inline]
pub fn lcore_id() -> Option<LcoreId> {
    // SAFETY: reads the per-thread lcore id variable; valid on any thread.
    let id = unsafe { sys::dpdk_shim_lcore_id() };
    (id != sys::LCORE_ID_ANY).then_some(LcoreId(id))
}

/// Time-stamp counter frequency in Hz (as calibrated by the EAL; 0 before
/// EAL init).
pub fn tsc_hz() -> u64 {
    // SAFETY: plain getter of a global set during EAL init.
    unsafe { sys::rte_get_tsc_hz() }
}

/// Reads the time-stamp counter (`rte_rdtsc`). Inline `rdtsc` on x86_64,
/// the C shim elsewhere.
#[inline]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc is available on every x86_64 CPU and has no
        // memory effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: reads a cycle counter; no memory effects.
        unsafe { sys::dpdk_shim_rdtsc() }
    }
}

/// Registers a non-EAL thread with DPDK (`rte_thread_register`) so it gets an
/// lcore id and per-lcore mempool caches; unregisters on drop.
///
/// Plain threads that call DPDK (libtest threads, std::thread workers) should
/// hold one: unregistered threads are slower and have no lcore id. If the
/// thread already has an lcore id (EAL thread, or already registered) the
/// guard does nothing. Not `Send`: it must drop on the thread that made it.
#[derive(Debug)]
pub struct ThreadRegistration {
    owned: bool,
    lcore: LcoreId,
    _not_send: PhantomData<*const ()>,
}

impl ThreadRegistration {
    /// Registers the calling thread (no-op if it already has an lcore id).
    pub fn register() -> Result<Self> {
        eal::ensure()?;
        if let Some(lcore) = lcore_id() {
            return Ok(Self {
                owned: false,
                lcore,
                _not_send: PhantomData,
            });
        }
        // SAFETY: EAL is initialized and this thread has no lcore id yet, so
        // registering cannot clobber an existing one.
        check("rte_thread_register", unsafe { sys::rte_thread_register() })?;
        let lcore = lcore_id().ok_or(Error::Dpdk {
            op: "rte_thread_register",
            errno: libc::ENOSPC,
            msg: "no lcore id after registration".into(),
        })?;
        Ok(Self {
            owned: true,
            lcore,
            _not_send: PhantomData,
        })
    }

    /// The lcore id this thread runs as.
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }
}

impl Drop for ThreadRegistration {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: this thread registered itself in `register` (the guard
            // is !Send, so we are on that thread) and unregisters once.
            unsafe { sys::rte_thread_unregister() };
        }
    }
}

/// Worker lcores of the EAL `-l` list (excluding the main lcore).
pub fn worker_lcores() -> Vec<LcoreId> {
    let mut out = Vec::new();
    if !eal::is_initialized() {
        return out;
    }
    let mut i = u32::MAX; // -1: start from the first lcore
    loop {
        // SAFETY: EAL is initialized; iterates the static lcore config.
        i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
        if i >= sys::RTE_MAX_LCORE {
            return out;
        }
        out.push(LcoreId(i));
    }
}

type LaunchFn = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// Entry point handed to `rte_eal_remote_launch`.
unsafe extern "C" fn launch_trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<LaunchFn> leaked by `launch`, and EAL calls
    // this function exactly once per successful launch.
    let f: Box<LaunchFn> = unsafe { Box::from_raw(arg.cast::<LaunchFn>()) };
    // Unwinding into C is undefined behaviour: a panic becomes return -1.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(-1)
}

fn require_main_lcore(op: &'static str) -> Result<()> {
    eal::ensure()?;
    // SAFETY: EAL is initialized; plain getter.
    let main = unsafe { sys::rte_get_main_lcore() };
    if lcore_id() == Some(LcoreId(main)) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{op} must run on the main lcore"
        )))
    }
}

/// Runs `f` on worker lcore `lcore` (`rte_eal_remote_launch`). Must be called
/// on the main lcore; the lcore must be idle. A panic in `f` is caught and
/// reported as return value -1 by [`wait`].
pub fn launch<F>(lcore: LcoreId, f: F) -> Result<()>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    require_main_lcore("rte_eal_remote_launch")?;
    let arg = Box::into_raw(Box::new(Box::new(f) as LaunchFn));
    // SAFETY: the trampoline matches lcore_function_t; `arg` is a valid
    // leaked Box that the trampoline reclaims exactly once.
    let rc = unsafe { sys::rte_eal_remote_launch(Some(launch_trampoline), arg.cast(), lcore.0) };
    if let Err(e) = check("rte_eal_remote_launch", rc) {
        // SAFETY: the launch failed, so the trampoline never received `arg`.
        drop(unsafe { Box::from_raw(arg) });
        return Err(e);
    }
    Ok(())
}

/// Waits for the function launched on `lcore` and returns its value
/// (`rte_eal_wait_lcore`); 0 if nothing was launched. Main lcore only.
pub fn wait(lcore: LcoreId) -> Result<i32> {
    require_main_lcore("rte_eal_wait_lcore")?;
    // SAFETY: called on the main lcore after EAL init.
    Ok(unsafe { sys::rte_eal_wait_lcore(lcore.0) })
}
