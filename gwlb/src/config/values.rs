//! The other value types of the file: PCI addresses and DPDK devices, listen addresses of the
//! control API and metrics, and sets of HTTP status codes.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

/// A PCI address `DDDD:BB:DD.F` (domain, bus, device, function; hexadecimal).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddr {
    /// Domain (4 to 8 hex digits; usually 0).
    pub domain: u32,
    /// Bus.
    pub bus: u8,
    /// Device, 0..=0x1f.
    pub device: u8,
    /// Function, 0..=7.
    pub function: u8,
}

impl FromStr for PciAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let e = || format!("invalid PCI address {s:?}: expected DDDD:BB:DD.F, like 0000:03:00.0");
        let hex = |part: &str, min: usize, max: usize| -> Option<u32> {
            let ok =
                (min..=max).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u32::from_str_radix(part, 16).ok()).flatten()
        };
        let (domain, rest) = s.split_once(':').ok_or_else(e)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(e)?;
        let (device, function) = rest.split_once('.').ok_or_else(e)?;
        let domain = hex(domain, 4, 8).ok_or_else(e)?;
        let bus = hex(bus, 2, 2)
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(e)?;
        let device = hex(device, 2, 2)
            .and_then(|v| u8::try_from(v).ok())
            .filter(|&v| v <= 0x1f)
            .ok_or_else(e)?;
        let function = hex(function, 1, 1)
            .and_then(|v| u8::try_from(v).ok())
            .filter(|&v| v <= 7)
            .ok_or_else(e)?;
        Ok(PciAddr {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl fmt::Debug for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The DPDK device behind a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Device {
    /// A PCI device (EAL `-a ADDR[,devargs]`).
    Pci {
        /// Its address.
        addr: PciAddr,
        /// Driver arguments after the first `,`, passed verbatim (e.g. `txq_inline_max=128`).
        devargs: Option<String>,
    },
    /// A virtual device (EAL `--vdev SPEC`): the whole spec, e.g.
    /// `net_af_packet0,iface=veth1`. Its name (before the first `,`) starts with `net_`.
    Vdev(String),
}

/// The value of argument `key` in vdev spec `spec` (`name,key=value,...`; the first one),
/// if it has one.
pub fn vdev_arg<'a>(spec: &'a str, key: &str) -> Option<&'a str> {
    spec.split(',')
        .skip(1)
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

impl Device {
    /// The value of vdev argument `key` (`iface` of `net_af_packet0,iface=veth0`); `None`
    /// for a PCI device or a vdev without it.
    pub fn vdev_arg(&self, key: &str) -> Option<&str> {
        match self {
            Device::Vdev(spec) => vdev_arg(spec, key),
            Device::Pci { .. } => None,
        }
    }

    /// The name DPDK knows the device by: the PCI address or the vdev name.
    pub fn name(&self) -> String {
        match self {
            Device::Pci { addr, .. } => addr.to_string(),
            Device::Vdev(spec) => spec.split(',').next().unwrap_or_default().to_owned(),
        }
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "invalid device {s:?}: empty or contains whitespace"
            ));
        }
        let (name, args) = match s.split_once(',') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        if name.starts_with("net_") {
            let ok = name.len() > 4
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(format!(
                    "invalid vdev name {name:?}: expected net_DRIVERn, like net_af_packet0"
                ));
            }
            return Ok(Device::Vdev(s.to_owned()));
        }
        let addr = name
            .parse::<PciAddr>()
            .map_err(|e| format!("{e} (or a DPDK virtual device spec starting with \"net_\")"))?;
        Ok(Device::Pci {
            addr,
            devargs: args.map(str::to_owned),
        })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Pci {
                addr,
                devargs: Some(a),
            } => write!(f, "{addr},{a}"),
            Device::Pci {
                addr,
                devargs: None,
            } => write!(f, "{addr}"),
            Device::Vdev(spec) => f.write_str(spec),
        }
    }
}

/// Default of `[control] api_listen`, and the address the CLI talks to by default.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9090";

/// Default of `[control] metrics_listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9091";

/// A listening address for the control API or metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// TCP, e.g. `127.0.0.1:9090` or `[::1]:9090`.
    Tcp(SocketAddr),
    /// A Unix stream socket, written `unix:/run/gwlb/api.sock` (absolute path).
    Unix(PathBuf),
}

impl Listen {
    /// Reachable only from this host: a loopback TCP address or a Unix socket.
    pub fn is_local(&self) -> bool {
        match self {
            Listen::Tcp(a) => a.ip().is_loopback(),
            Listen::Unix(_) => true,
        }
    }
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("unix socket path {path:?} must be absolute"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = s.parse().map_err(|_| {
            format!("invalid listen address {s:?}: expected IP:PORT, [IPv6]:PORT, unix:/PATH or \"off\"")
        })?;
        if addr.port() == 0 {
            return Err(format!("{s:?}: port 0 is not allowed"));
        }
        Ok(Listen::Tcp(addr))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => a.fmt(f),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// HTTP status codes accepted by a health check: a union of inclusive ranges in 100..=599.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusCodes(pub Vec<RangeInclusive<u16>>);

impl StatusCodes {
    /// Whether `code` counts as healthy.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }
}

impl FromStr for StatusCodes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let code = |t: &str| -> Result<u16, String> {
            let t = t.trim();
            match t.parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => Ok(c),
                _ => Err(format!("{t:?} is not an HTTP status code in 100..=599")),
            }
        };
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let r = match item.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (code(lo)?, code(hi)?);
                    if lo > hi {
                        return Err(format!("range {lo}-{hi} is empty"));
                    }
                    lo..=hi
                }
                None => {
                    let c = code(item)?;
                    c..=c
                }
            };
            ranges.push(r);
        }
        Ok(StatusCodes(ranges))
    }
}

impl fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdev_arguments_by_key() {
        let d: Device = "net_af_xdp1,iface=gw-app,start_queue=0".parse().unwrap();
        assert_eq!(d.vdev_arg("iface"), Some("gw-app"));
        assert_eq!(d.vdev_arg("start_queue"), Some("0"));
        assert_eq!(d.vdev_arg("queue"), None, "a key is matched whole");
        let d: Device = "net_null0".parse().unwrap();
        assert_eq!(d.vdev_arg("iface"), None);
        let d: Device = "0000:3b:00.1,iface=x".parse().unwrap();
        assert_eq!(d.vdev_arg("iface"), None, "not a vdev");
    }

    #[test]
    fn test_value_types() {
        let p: PciAddr = "0000:3b:00.1".parse().unwrap();
        assert_eq!((p.domain, p.bus, p.device, p.function), (0, 0x3b, 0, 1));
        assert_eq!(p.to_string(), "0000:3b:00.1");
        assert!("0000:3b:00.8".parse::<PciAddr>().is_err());
        assert!("3b:00.0".parse::<PciAddr>().is_err());
        let d: Device = "0000:3b:00.1,txq_inline_max=128".parse().unwrap();
        assert_eq!(d.to_string(), "0000:3b:00.1,txq_inline_max=128");

        let codes: StatusCodes = "200, 204-206,301".parse().unwrap();
        assert!(codes.contains(205) && codes.contains(301) && !codes.contains(300));
        assert_eq!(codes.to_string(), "200,204-206,301");
    }
}
