//! One gwlb per device: an exclusive `flock(2)` per port that a second `gwlb run` on the same
//! devices fails to take, with an error naming the port and the holder.
//!
//! What identifies a device: a PCI address; for a virtual device, the kernel interface it
//! attaches to (`iface=`, in this network namespace) or, for others (`net_pcap`, `net_ring`,
//! `net_null`, ...), the whole vdev spec. Lock files live in [`LOCK_DIR`] and hold the
//! holder's pid (for the message); the lock itself is the `flock`, which the kernel drops when
//! the process ends, however it ends, so a stale file never blocks a start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::config::{Config, Device};

/// Where the lock files are.
pub const LOCK_DIR: &str = "/run/gwlb";

/// Why the locks could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds a port.
    #[error("ports[{index}] ({name}): device {device} is already in use by another gwlb (pid {holder}); one gwlb per device ({})", .file.display())]
    InUse {
        /// Port index.
        index: usize,
        /// Port name.
        name: String,
        /// What identifies the device.
        device: String,
        /// The holder's pid as it wrote it (`?` if unreadable).
        holder: String,
        /// The lock file.
        file: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("{}: cannot create the instance lock: {source}", .file.display())]
    Io {
        /// The lock file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The held locks; dropping it releases them (and removes the files).
#[derive(Debug)]
pub struct InstanceLock {
    held: Vec<(PathBuf, File)>,
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        for (path, _) in self.held.drain(..) {
            let _ = fs::remove_file(path);
        }
    }
}

/// The identity of a port's device, as a file-name-safe string.
pub fn device_identity(device: &Device, netns: &str) -> String {
    let raw = match device {
        Device::Pci { addr, .. } => format!("pci-{addr}"),
        Device::Vdev(spec) => match spec.split(',').find_map(|kv| kv.strip_prefix("iface=")) {
            Some(iface) => format!("iface-{netns}-{iface}"),
            None => format!("vdev-{spec}"),
        },
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect()
}

/// This process's network namespace (`net:[inode]` -> the inode), so that the same interface
/// name in two namespaces is two devices.
fn netns_id() -> String {
    fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            Some(s.strip_prefix("net:[")?.strip_suffix(']')?.to_owned())
        })
        .unwrap_or_else(|| "0".to_owned())
}

/// Takes the lock of every port of `cfg` in `dir` (normally [`LOCK_DIR`]).
pub fn acquire(cfg: &Config, dir: &Path) -> Result<InstanceLock, LockError> {
    fs::create_dir_all(dir).map_err(|source| LockError::Io {
        file: dir.to_owned(),
        source,
    })?;
    let netns = netns_id();
    let mut lock = InstanceLock { held: Vec::new() };
    for (index, port) in cfg.ports.iter().enumerate() {
        let device = device_identity(&port.device, &netns);
        let file = dir.join(format!("{device}.lock"));
        let io_err = |source| LockError::Io {
            file: file.clone(),
            source,
        };
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file)
            .map_err(io_err)?;
        // SAFETY: `f` is an open file; flock only reads its descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = f.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::InUse {
                    index,
                    name: port.name.clone(),
                    device,
                    holder: if holder.is_empty() { "?" } else { holder }.to_owned(),
                    file,
                });
            }
            return Err(io_err(e));
        }
        f.set_len(0).map_err(io_err)?;
        f.rewind().map_err(io_err)?;
        writeln!(f, "{}", std::process::id()).map_err(io_err)?;
        lock.held.push((file, f));
    }
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(device: &str) -> Config {
        Config::from_toml_str(&format!(
            r#"
[[ports]]
name = "p"
device = "{device}"
role = "both"
address = "10.0.0.1/24"
[[target_groups]]
name = "tg"
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
"#
        ))
        .expect("config")
    }

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("gwlb-lock-test-{}", std::process::id()));
        let c = cfg("net_af_packet0,iface=veth-x");
        let first = acquire(&c, &dir).expect("first");
        // flock locks belong to the open file description: a second open in this process
        // conflicts like another process would.
        let err = acquire(&c, &dir).expect_err("second");
        let msg = err.to_string();
        assert!(msg.contains("ports[0] (p)"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        // Another device is free.
        let other = acquire(&cfg("net_af_packet0,iface=veth-y"), &dir).expect("other device");
        drop(first);
        let again = acquire(&c, &dir).expect("free again");
        drop((again, other));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn identities_name_the_device_not_the_vdev_index() {
        let id = |s: &str| device_identity(&s.parse::<Device>().unwrap(), "7");
        assert_eq!(
            id("net_af_packet0,iface=eth1"),
            id("net_af_packet3,iface=eth1")
        );
        assert_ne!(
            id("net_af_packet0,iface=eth1"),
            id("net_af_packet0,iface=eth2")
        );
        assert_eq!(id("0000:03:00.0"), "pci-0000_03_00.0");
        assert_eq!(
            id("net_pcap0,rx_pcap=/tmp/a+b.pcap"),
            "vdev-net_pcap0_rx_pcap__tmp_a_b.pcap"
        );
    }
}
