//! Typed errors and the single adapter from C return conventions to `Result`.

use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr::NonNull;

use crate::sys;

/// Errors from this crate. DPDK failures carry the `rte_strerror` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A DPDK call failed; `errno` is positive, `msg` is `rte_strerror(errno)`.
    #[error("{op} failed: {msg} (errno {errno})")]
    Dpdk {
        /// The DPDK function that failed.
        op: &'static str,
        /// Positive errno (or `E_RTE_*`) value.
        errno: i32,
        /// `rte_strerror(errno)`.
        msg: String,
    },
    /// `Eal::init` was called a second time in this process.
    #[error("EAL is already initialized in this process (use eal::init_once to share it)")]
    EalAlreadyInitialized,
    /// A DPDK object was requested before the EAL was initialized.
    #[error("EAL is not initialized (call Eal::init or eal::init_once first)")]
    EalNotInitialized,
    /// An argument was rejected before reaching DPDK.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The object is in use (claimed port, outstanding queue handles, ...).
    #[error("{what} is busy: {why}")]
    Busy {
        /// The busy object, e.g. `port0`.
        what: String,
        /// Why the operation was refused.
        why: &'static str,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds [`Error::Dpdk`] from a positive errno, looking up `rte_strerror`.
    pub fn from_errno(op: &'static str, errno: i32) -> Self {
        // SAFETY: rte_strerror accepts any value and returns a pointer to a
        // static or thread-local NUL-terminated string, copied out at once.
        let msg = unsafe { CStr::from_ptr(sys::rte_strerror(errno)) }
            .to_string_lossy()
            .into_owned();
        Error::Dpdk { op, errno, msg }
    }

    /// The positive errno of a DPDK failure, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Dpdk { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Current thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int; valid with or without EAL.
    unsafe { sys::dpdk_shim_errno() }
}

/// C return conventions understood by [`check`].
pub(crate) trait RteReturn {
    type Ok;
    fn into_result(self, op: &'static str) -> Result<Self::Ok>;
}

/// `int` returns: `>= 0` is success; `-1` means "see `rte_errno`"; any other
/// negative value is `-errno` (the ethdev convention).
impl RteReturn for c_int {
    type Ok = c_int;
    fn into_result(self, op: &'static str) -> Result<c_int> {
        if self >= 0 {
            return Ok(self);
        }
        let errno = if self == -1 {
            match rte_errno() {
                e if e > 0 => e,
                _ => libc::EPERM,
            }
        } else {
            -self
        };
        Err(Error::from_errno(op, errno))
    }
}

/// Pointer returns: null means failure with the reason in `rte_errno`.
impl<T> RteReturn for *mut T {
    type Ok = NonNull<T>;
    fn into_result(self, op: &'static str) -> Result<NonNull<T>> {
        NonNull::new(self).ok_or_else(|| {
            let errno = match rte_errno() {
                e if e > 0 => e,
                _ => libc::ENOMEM,
            };
            Error::from_errno(op, errno)
        })
    }
}

/// The one adapter from a DPDK return value to `Result`.
#[inline]
pub(crate) fn check<R: RteReturn>(op: &'static str, ret: R) -> Result<R::Ok> {
    ret.into_result(op)
}

/// Converts a Rust string to a C string, rejecting interior NULs.
pub(crate) fn cstring(what: &str, s: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(s)
        .map_err(|_| Error::InvalidArgument(format!("{what} contains a NUL byte: {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_errno_maps_to_strerror() {
        let e = check("op", -libc::EINVAL).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL));
        assert!(e.to_string().contains("Invalid argument"), "{e}");
        assert_eq!(check("op", 3).unwrap(), 3);
    }
}
