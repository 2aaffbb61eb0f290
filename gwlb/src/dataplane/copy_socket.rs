//! Mirrored copies out of a kernel-backed port (`net_af_packet`, `net_af_xdp`) through a
//! packet socket of their own, which refuses when it is full instead of waiting.
//!
//! Why: both PMDs hand the kernel frames of a ring that the kernel gives back only when it
//! frees the packet. A copy held in a slow sensor link's queue (a shaped bridge port, a busy
//! VM tap) holds its ring frame that long, and DPDK 22.11's af_packet transmit then waits in
//! `poll(fd, POLLOUT, -1)` for the next frame (af_xdp in copy mode spins on `EAGAIN` alike):
//! the worker, and every original it carries, stalls behind the copies (measured: iperf3
//! through gwlb 580 -> 105 Mbit/s with a 20 Mbit/s sensor link).
//!
//! A [`CopySocket`] is an `AF_PACKET` socket bound to the port's interface, protocol 0 (it
//! receives nothing), sending with `MSG_DONTWAIT`: the kernel copies each frame into a packet
//! of its own, charged to this socket's send buffer, and refuses (`EAGAIN`) once the buffer's
//! packets are all still in flight. The originals keep the PMD's ring to themselves; refused
//! copies are counted `tx_full` in their session.
//!
//! An af_packet PMD socket on the same interface would receive these frames as outgoing
//! traffic (a packet socket sees what other sockets send); [`ignore_outgoing`] turns that off
//! on the PMD's sockets (`PACKET_IGNORE_OUTGOING`, Linux 4.20), which also keeps frames the
//! kernel itself sends on the interface out of gwlb. XDP sees only what arrives.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use dpdk_bindings::Mbuf;

use super::worker::BURST;

/// `SOL_PACKET` option: the socket receives no frame sent from this host.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// The send buffer asked for each copy socket (the kernel counts a packet's whole buffer,
/// about 2 x its length for small frames): enough for a few milliseconds of copies at line
/// rate on a fast link, small enough that a stalled sensor costs little memory.
pub const SEND_BUFFER: usize = 4 << 20;

/// A non-blocking packet socket sending whole frames out of one interface.
#[derive(Debug)]
pub struct CopySocket {
    fd: OwnedFd,
}

/// The index of interface `name`.
fn index_of(name: &str) -> io::Result<libc::c_int> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i as libc::c_int)
}

/// Sets integer socket option `opt` of `level` on `fd`.
fn set_int(
    fd: libc::c_int,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl CopySocket {
    /// A socket sending out of interface `ifname`, with a send buffer of `send_buffer`
    /// bytes (forced past `net.core.wmem_max` where the process may, else as large as
    /// that allows).
    pub fn open(ifname: &str, send_buffer: usize) -> io::Result<Self> {
        let ifindex = index_of(ifname)?;
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a socket we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = send_buffer.min(i32::MAX as usize) as libc::c_int;
        if set_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size).is_err() {
            set_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, size)?;
        }
        // SAFETY: an all-zero sockaddr_ll is a valid value of the C struct.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_ifindex = ifindex;
        // Protocol 0: bound for sending only, nothing is delivered to this socket.
        // SAFETY: `addr` is a live sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Sends the frames of `frames` in order, without waiting: how many the kernel took (a
    /// prefix). Each must be one segment (copies are), a whole Ethernet frame.
    pub fn send(&self, frames: &[Mbuf]) -> usize {
        let n = frames.len().min(BURST);
        if n == 0 {
            return 0;
        }
        // SAFETY: iovec and mmsghdr are C structs for which all-zero is a valid value (null
        // pointers, zero lengths).
        let mut iov: [libc::iovec; BURST] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BURST] = unsafe { std::mem::zeroed() };
        for (k, m) in frames[..n].iter().enumerate() {
            let d = m.data();
            iov[k].iov_base = d.as_ptr() as *mut libc::c_void;
            iov[k].iov_len = d.len();
            msgs[k].msg_hdr.msg_iov = &mut iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..n]` point at `iov[..n]`, which point at the frames' data; all of
        // it lives across the call, and the kernel only reads it (it copies each frame).
        let r = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        // -1: the first frame was refused (EAGAIN: the send buffer is full; anything else
        // the kernel refused, e.g. the interface is down): nothing taken.
        usize::try_from(r).unwrap_or(0)
    }
}

/// Sets `PACKET_IGNORE_OUTGOING` on every packet socket of this process bound to interface
/// `ifname` (an af_packet PMD's queues): they then receive what arrives on the interface
/// only, not what [`CopySocket`]s (or the kernel) send on it. How many sockets it set.
pub fn ignore_outgoing(ifname: &str) -> io::Result<usize> {
    let ifindex = index_of(ifname)?;
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        if bound_packet_ifindex(fd) == Some(ifindex) {
            set_int(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
            set += 1;
        }
    }
    Ok(set)
}

/// The interface index `fd` is bound to, when it is an `AF_PACKET` socket.
fn bound_packet_ifindex(fd: libc::c_int) -> Option<libc::c_int> {
    // SAFETY: an all-zero sockaddr_ll is a valid value of the C struct.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `addr`; on a descriptor that is not
    // a socket (or gone since the listing) it fails and nothing is used.
    let r =
        unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_ll).cast(), &mut len) };
    (r == 0 && addr.sll_family == libc::AF_PACKET as libc::c_ushort && addr.sll_ifindex > 0)
        .then_some(addr.sll_ifindex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_interface_is_an_error() {
        assert!(CopySocket::open("gwlb-no-such-if", SEND_BUFFER).is_err());
        assert!(ignore_outgoing("gwlb-no-such-if").is_err());
    }
}
