//! Virtual devices on the vdev bus (`net_null`, `net_ring`, `net_tap`, ...).

use crate::eal;
use crate::error::{check, cstring, Error, Result};
use crate::port;
use crate::sys;

/// Creates virtual device `name` with driver arguments `args`
/// (`rte_vdev_init`), e.g. `create("net_null0", "size=64")`. The driver is
/// chosen by the name prefix. For an ethdev, take it with
/// [`crate::Port::by_name`].
pub fn create(name: &str, args: &str) -> Result<()> {
    eal::ensure()?;
    let cname = cstring("vdev name", name)?;
    let cargs = cstring("vdev args", args)?;
    // SAFETY: EAL is initialized; valid C strings, copied by DPDK.
    check("rte_vdev_init", unsafe {
        sys::rte_vdev_init(cname.as_ptr(), cargs.as_ptr())
    })?;
    Ok(())
}

/// Removes virtual device `name` (`rte_vdev_uninit`). Refused with
/// [`Error::Busy`] while a [`crate::Port`] (or queue handle) owns its port.
pub fn remove(name: &str) -> Result<()> {
    eal::ensure()?;
    if let Ok(id) = port::id_by_name(name) {
        if port::is_claimed(id) {
            return Err(Error::Busy {
                what: name.to_owned(),
                why: "its port is owned by a Port",
            });
        }
    }
    let cname = cstring("vdev name", name)?;
    // SAFETY: valid C string; no Port uses the device (checked above).
    check("rte_vdev_uninit", unsafe {
        sys::rte_vdev_uninit(cname.as_ptr())
    })?;
    Ok(())
}
