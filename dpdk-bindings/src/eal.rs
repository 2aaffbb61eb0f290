//! EAL initialization: once per process.

use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::error::{check, cstring, Error, Result};
use crate::sys;

static INIT_CALLED: AtomicBool = AtomicBool::new(false);
static READY: AtomicBool = AtomicBool::new(false);
static SHARED: OnceLock<Result<Eal>> = OnceLock::new();

/// Proof that the EAL is initialized. It is never torn down: DPDK cannot be
/// re-initialized in the same process (`rte_eal_init` after `rte_eal_cleanup`
/// fails with EALREADY), so there is no `Drop` calling `rte_eal_cleanup`.
#[derive(Debug, Clone, Copy)]
pub struct Eal {
    _priv: (),
}

impl Eal {
    /// Runs `rte_eal_init`. `args` are EAL arguments without a program name
    /// (one is prepended), e.g. `["--no-huge", "-m", "256", "-l", "0"]`.
    /// The calling thread becomes the main lcore and is pinned to its CPU.
    ///
    /// A second call in the same process returns
    /// [`Error::EalAlreadyInitialized`]; use [`init_once`] to share one EAL.
    pub fn init(args: &[&str]) -> Result<Eal> {
        if INIT_CALLED.swap(true, Ordering::AcqRel) {
            return Err(Error::EalAlreadyInitialized);
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(cstring("program name", "gwlb")?);
        for a in args {
            owned.push(cstring("EAL argument", a)?);
        }
        // EAL may keep pointers into argv (getopt permutes it, some options
        // are stored by reference), so the strings live for the process.
        let argv: &'static mut [*mut c_char] = Vec::leak(
            owned
                .into_iter()
                .map(|c| c.into_raw())
                .chain(std::iter::once(std::ptr::null_mut()))
                .collect(),
        );
        let argc = c_int::try_from(argv.len() - 1)
            .map_err(|_| Error::InvalidArgument("too many EAL arguments".into()))?;
        // SAFETY: argv holds argc valid NUL-terminated strings followed by a
        // NULL, all leaked so they outlive the EAL; INIT_CALLED guarantees a
        // single call per process.
        check("rte_eal_init", unsafe {
            sys::rte_eal_init(argc, argv.as_mut_ptr())
        })?;
        READY.store(true, Ordering::Release);
        Ok(Eal { _priv: () })
    }

    /// The main lcore (the thread that ran `rte_eal_init`).
    pub fn main_lcore(&self) -> crate::LcoreId {
        // SAFETY: EAL is initialized (self exists); plain getter.
        crate::LcoreId(unsafe { sys::rte_get_main_lcore() })
    }

    /// Number of EAL lcores (`-l` list), including the main one.
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialized; plain getter.
        unsafe { sys::rte_lcore_count() }
    }
}

/// Initializes the EAL on first call and returns the same handle (or the
/// same error) afterwards; `args` of later calls are ignored. Also succeeds
/// if [`Eal::init`] was already called successfully elsewhere.
pub fn init_once(args: &[&str]) -> Result<Eal> {
    SHARED
        .get_or_init(|| {
            if READY.load(Ordering::Acquire) {
                Ok(Eal { _priv: () })
            } else {
                Eal::init(args)
            }
        })
        .clone()
}

/// Whether `rte_eal_init` has completed successfully.
pub fn is_initialized() -> bool {
    READY.load(Ordering::Acquire)
}

/// Fails with [`Error::EalNotInitialized`] before EAL init.
pub(crate) fn ensure() -> Result<()> {
    if is_initialized() {
        Ok(())
    } else {
        Err(Error::EalNotInitialized)
    }
}

/// The DPDK release this process is linked with, as DPDK spells it ("DPDK 22.11.4"). It needs
/// no EAL: `rte_version` only formats constants.
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string (never NULL) that
    // lives as long as the library.
    let p = unsafe { sys::rte_version() };
    // SAFETY: see above; the string is only read.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}
