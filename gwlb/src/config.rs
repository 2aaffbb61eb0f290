//! The daemon's TOML configuration.
//!
//! Loading is two steps, in the smoltcp `Repr` spirit:
//! 1. `toml` deserializes the text into private `Raw*` structs that mirror the file one to
//!    one (`deny_unknown_fields` everywhere, integers as `i64` so that range errors are ours);
//! 2. [`RawConfig::validate`] checks every rule and builds the public [`Config`], which holds
//!    only valid values in their natural types (`std::net` addresses, [`MacAddr`],
//!    [`Ipv4Net`]/[`Ipv6Net`], [`Duration`], port references resolved to indices).
//!
//! Every error names the field it is about as a path (`target_groups[0].health_check.timeout_ms`),
//! including TOML syntax and type errors: the byte span `toml` reports is mapped back to a
//! path through `toml_edit`'s spanned document. Advice that does not make the file invalid
//! (a small Maglev table, an MTU that cannot carry the encapsulation overhead, ...) is
//! collected in [`Config::warnings`].
//!
//! The reference for every field is `docs/configuration.md`; the examples in
//! `gwlb/examples/*.toml` are loaded by the tests below.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::maglev::is_prime;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------------------------

/// Why a configuration was refused. The `Display` form always starts with the field path
/// (or the file, for I/O errors), e.g.
/// `target_groups[0].health_check.interval_ms: 50 is out of range 100..=300000`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An error in a file loaded with [`Config::load`]: the file, then the error.
    #[error("{}: {inner}", file.display())]
    InFile {
        /// The file.
        file: PathBuf,
        /// The error in it.
        inner: Box<ConfigError>,
    },
    /// TOML syntax error, wrong type, unknown field or variant, missing field.
    #[error("{}: {message} (line {line}, column {column})", display_field(field))]
    Toml {
        /// Field path, e.g. `ports[1].role`; empty for the top level.
        field: String,
        /// What `toml`/`serde` said.
        message: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
    },
    /// A value that parses but breaks a rule.
    #[error("{}: {message}", display_field(field))]
    Invalid {
        /// Field path, e.g. `routes[0].via`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The path of the field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::InFile { inner, .. } => inner.field(),
            ConfigError::Toml { field, .. } | ConfigError::Invalid { field, .. } => Some(field),
        }
    }
}

fn display_field(field: &str) -> &str {
    if field.is_empty() {
        "(top level)"
    } else {
        field
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: truncate_text(field.into(), 200),
        message: truncate_text(message.into(), MAX_MESSAGE_LEN),
    }
}

/// Longest error message kept whole; longer ones (a huge value quoted back) are cut, so that a
/// 10 MB value is not echoed whole into logs and API replies.
pub const MAX_MESSAGE_LEN: usize = 512;

/// `s` cut to at most `max` bytes (at a character boundary), saying how long it was.
pub fn truncate_text(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("... ({total} bytes, cut)"));
    s
}

/// What `ip` is in the subnet `net` if it cannot be a host's address: `"network"` (the
/// network address, for prefixes shorter than /31 or /127; /31 and /32 have none, RFC 3021)
/// or `"broadcast"` (IPv4 up to /30).
fn subnet_special(net: &IpNet, ip: IpAddr) -> Option<&'static str> {
    if !net.contains(ip) {
        return None;
    }
    if ip == net.network() && net.prefix_len() < net_bits(net) - 1 {
        return Some("network");
    }
    match (net, ip) {
        (IpNet::V4(n), IpAddr::V4(a))
            if n.prefix_len <= 30 && u32::from(a) | n.mask() == u32::MAX =>
        {
            Some("broadcast")
        }
        _ => None,
    }
}

/// Largest configuration file read (bytes). A real one is a few KiB; 4096 targets with
/// comments stay far below this.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads a configuration file: only a regular file (not a FIFO, device or directory, which
/// could block the reader or never end) of at most [`MAX_CONFIG_BYTES`]. Opened non-blocking
/// so that even opening a FIFO returns at once.
fn read_config_file(file: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} bytes; a configuration file is at most {MAX_CONFIG_BYTES} bytes",
                meta.len()
            ),
        ));
    }
    let mut text = String::new();
    // A file that grows while read is cut at the limit (and then fails to parse, or is short).
    f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "grew beyond the size limit while read",
        ));
    }
    Ok(text)
}

/// Advice about a valid configuration (displayed like an error: `field: message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Field path the warning is about.
    pub field: String,
    /// The advice.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display_field(&self.field), self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------------------------

/// An Ethernet MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Group (multicast or broadcast) bit set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// All zeros.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

/// Why a MAC address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid MAC address {0:?}: expected six hex bytes separated by ':', like 02:00:00:00:00:01"
)]
pub struct MacParseError(String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| MacParseError(s.to_owned()))?;
            if part.len() != 2 {
                return Err(MacParseError(s.to_owned()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.to_owned()));
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a prefix (`addr/len`) did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid prefix {0:?}: expected ADDRESS/LENGTH, like 10.0.1.1/24 or fd00::1/64")]
pub struct NetParseError(String);

/// An IPv4 address with a prefix length. As an interface address (`10.0.1.1/24`) `addr` is
/// the host's address; as a route prefix (`10.2.0.0/16`) the host bits are zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Ipv4Net {
    /// The netmask as an integer.
    fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The address with the host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

impl FromStr for Ipv4Net {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let e = || NetParseError(s.to_owned());
        let (a, l) = s.split_once('/').ok_or_else(e)?;
        let addr = a.parse().map_err(|_| e())?;
        let prefix_len: u8 = l.parse().map_err(|_| e())?;
        if prefix_len > 32 {
            return Err(e());
        }
        Ok(Ipv4Net { addr, prefix_len })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Debug for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An IPv6 address with a prefix length (see [`Ipv4Net`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Net {
    /// The address.
    pub addr: Ipv6Addr,
    /// Prefix length, 0..=128.
    pub prefix_len: u8,
}

impl Ipv6Net {
    fn mask(&self) -> u128 {
        if self.prefix_len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix_len))
        }
    }

    /// The address with the host bits cleared.
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.network())
    }

    /// Whether two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv6Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

impl FromStr for Ipv6Net {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let e = || NetParseError(s.to_owned());
        let (a, l) = s.split_once('/').ok_or_else(e)?;
        let addr = a.parse().map_err(|_| e())?;
        let prefix_len: u8 = l.parse().map_err(|_| e())?;
        if prefix_len > 128 {
            return Err(e());
        }
        Ok(Ipv6Net { addr, prefix_len })
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Debug for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An IPv4 or IPv6 prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpNet {
    /// IPv4.
    V4(Ipv4Net),
    /// IPv6.
    V6(Ipv6Net),
}

impl IpNet {
    /// The address part.
    pub fn addr(&self) -> IpAddr {
        match self {
            IpNet::V4(n) => IpAddr::V4(n.addr),
            IpNet::V6(n) => IpAddr::V6(n.addr),
        }
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        match self {
            IpNet::V4(n) => n.prefix_len,
            IpNet::V6(n) => n.prefix_len,
        }
    }

    /// The address with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self {
            IpNet::V4(n) => IpAddr::V4(n.network()),
            IpNet::V6(n) => IpAddr::V6(n.network()),
        }
    }

    /// Whether `ip` is inside the prefix (always false across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (IpNet::V4(n), IpAddr::V4(a)) => n.contains(a),
            (IpNet::V6(n), IpAddr::V6(a)) => n.contains(a),
            _ => false,
        }
    }

    /// Whether this is an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        matches!(self, IpNet::V4(_))
    }
}

impl FromStr for IpNet {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse().map(IpNet::V6)
        } else {
            s.parse().map(IpNet::V4)
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpNet::V4(n) => n.fmt(f),
            IpNet::V6(n) => n.fmt(f),
        }
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

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

impl Device {
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

// ---------------------------------------------------------------------------------------------
// Enumerations (shared by the file format and the validated configuration)
// ---------------------------------------------------------------------------------------------

/// Hugepage use by the EAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hugepages {
    /// Use hugepages if the host has any mounted and free, else run with `--no-huge`.
    #[default]
    Auto,
    /// Require hugepages.
    On,
    /// `--no-huge -m memory_mb` (tests, pcap replay, containers).
    Off,
}

/// What a port faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortRole {
    /// Clients and servers: traffic to inspect arrives here; decapsulated traffic leaves here.
    User,
    /// Appliances: Geneve-encapsulated traffic leaves and returns here.
    Appliance,
    /// Both (one-arm mode, a single port).
    Both,
}

impl PortRole {
    /// Carries user traffic (`user` or `both`).
    pub fn faces_users(self) -> bool {
        matches!(self, PortRole::User | PortRole::Both)
    }

    /// Reaches appliances (`appliance` or `both`).
    pub fn faces_appliances(self) -> bool {
        matches!(self, PortRole::Appliance | PortRole::Both)
    }
}

/// Which header fields pin a flow to an appliance (`"5-tuple"`, `"3-tuple"`, `"2-tuple"`).
pub use crate::flow::Stickiness;

/// What happens to existing flows of a target that turns unhealthy (or whose
/// deregistration delay has run out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnhealthy {
    /// They keep going to it (AWS default).
    #[default]
    NoRebalance,
    /// They are rehashed onto healthy targets.
    Rebalance,
}

/// What happens to traffic when no target of a group is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAllUnhealthy {
    /// Drop it (AWS behaviour).
    #[default]
    FailClosed,
    /// Forward it uninspected (bypass).
    FailOpen,
}

/// Health-check probe kind as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckProtocol {
    /// TCP connect.
    #[default]
    Tcp,
    /// HTTP GET, judged by status code.
    Http,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `human` on a terminal, `json` otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------------------------

/// A validated configuration. Build it with [`Config::from_toml_str`] or [`Config::load`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Cores, memory, burst and table sizes.
    pub dataplane: Dataplane,
    /// One (one-arm) or two (two-arm) ports.
    pub ports: Vec<Port>,
    /// Forwarding of decapsulated traffic; `Route::port` indexes `ports`.
    pub routes: Vec<Route>,
    /// Static ARP/ND entries; `Neighbor::port` indexes `ports`.
    pub neighbors: Vec<Neighbor>,
    /// Appliance pools, at least one.
    pub target_groups: Vec<TargetGroup>,
    /// Control API, metrics, logging.
    pub control: Control,
    warnings: Vec<ConfigWarning>,
}

/// `[dataplane]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataplane {
    /// One worker per CPU id, in this order (worker `i` runs on `worker_cpus[i]`). Unique.
    pub worker_cpus: Vec<u32>,
    /// CPU of the EAL main lcore (control plane); not one of `worker_cpus`.
    pub main_cpu: u32,
    /// Hugepage use.
    pub hugepages: Hugepages,
    /// EAL memory (`-m`) in MiB when running without hugepages.
    pub memory_mb: u32,
    /// Extra EAL arguments, verbatim.
    pub eal_args: Vec<String>,
    /// Packets per RX/TX burst, 1..=64.
    pub burst_size: u16,
    /// Longest time a staged TX packet waits before being flushed.
    pub tx_flush: Duration,
    /// mbufs in each worker's pool.
    pub mbufs_per_worker: u32,
    /// Flow-table entries per worker.
    pub flow_table_capacity: u32,
    /// Seed of the symmetric flow hash; equal on every gateway behind one ECMP group.
    pub flow_hash_seed: u64,
    /// Period of the counter print; `None` = off.
    pub stats_interval: Option<Duration>,
}

impl Dataplane {
    /// Number of worker cores.
    pub fn workers(&self) -> usize {
        self.worker_cpus.len()
    }
}

/// `[[ports]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Unique name, referenced by routes, neighbors, target groups and targets.
    pub name: String,
    /// The DPDK device.
    pub device: Device,
    /// What the port faces.
    pub role: PortRole,
    /// The gateway's IPv4 address and connected subnet on this port. On an appliance-facing
    /// port it is the Geneve outer source toward IPv4 targets.
    pub ipv4: Option<Ipv4Net>,
    /// The gateway's IPv6 address and connected subnet on this port.
    pub ipv6: Option<Ipv6Net>,
    /// MAC override; `None` = the device's own.
    pub mac: Option<MacAddr>,
    /// L3 MTU (IP packet size), 576..=9600.
    pub mtu: u16,
    /// RX queues (RSS); each is polled by exactly one worker.
    pub rx_queues: u16,
    /// TX queues, at least one per worker.
    pub tx_queues: u16,
    /// Promiscuous mode.
    pub promiscuous: bool,
    /// Name of a TAP exception-path interface, if any.
    pub kernel_interface: Option<String>,
}

impl Port {
    /// Whether `ip` is in one of the port's connected subnets.
    pub fn is_connected(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.ipv4.is_some_and(|n| n.contains(a)),
            IpAddr::V6(a) => self.ipv6.is_some_and(|n| n.contains(a)),
        }
    }

    /// Whether `ip` is one of the port's own addresses.
    pub fn is_own_address(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.ipv4.is_some_and(|n| n.addr == a),
            IpAddr::V6(a) => self.ipv6.is_some_and(|n| n.addr == a),
        }
    }

    /// The port's own address of `ip`'s family (e.g. the outer source toward a target).
    pub fn source_for(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.ipv4.map(|n| IpAddr::V4(n.addr)),
            IpAddr::V6(_) => self.ipv6.map(|n| IpAddr::V6(n.addr)),
        }
    }

    fn addresses_display(&self) -> String {
        let v: Vec<String> = self
            .ipv4
            .map(|n| n.to_string())
            .into_iter()
            .chain(self.ipv6.map(|n| n.to_string()))
            .collect();
        v.join(", ")
    }
}

/// `[[routes]]`: where decapsulated traffic to `prefix` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination prefix (host bits zero).
    pub prefix: IpNet,
    /// Next hop, in a connected subnet of `port`; `None` = destinations directly connected.
    pub via: Option<IpAddr>,
    /// Index into [`Config::ports`] (a user-facing port).
    pub port: usize,
}

/// `[[neighbors]]`: a static ARP (IPv4) or ND (IPv6) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Neighbor {
    /// Address, in a connected subnet of `port`.
    pub address: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
    /// Index into [`Config::ports`].
    pub port: usize,
}

/// `[[target_groups]]`: an appliance pool and its flow policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// Unique name.
    pub name: String,
    /// Indices into [`Config::ports`] of the user-facing ports whose traffic this group takes.
    /// A user port belongs to at most one group.
    pub user_ports: Vec<usize>,
    /// Flow stickiness.
    pub stickiness: Stickiness,
    /// Existing flows of an unhealthy or deregistered target.
    pub on_unhealthy: OnUnhealthy,
    /// Traffic when no target is healthy.
    pub on_all_unhealthy: OnAllUnhealthy,
    /// Connection draining of a deregistered target.
    pub deregistration_delay: Duration,
    /// Idle timeout of TCP flows.
    pub tcp_idle_timeout: Duration,
    /// Idle timeout of UDP, ICMP and other flows.
    pub other_idle_timeout: Duration,
    /// Answer a non-SYN TCP packet of an unknown flow with a RST instead of dropping it silently.
    pub tcp_rst_on_drop: bool,
    /// Accept an appliance's return only if it echoes the flow cookie (AWS option type 3):
    /// for appliances that echo gwlb's options, so that a forged return must also carry the
    /// flow's cookie. Returns without options (Linux-kernel Geneve) are then dropped.
    pub require_flow_cookie: bool,
    /// Maglev lookup-table size M (prime).
    pub maglev_table_size: u32,
    /// Geneve VNI sent to the appliances (24 bits).
    pub geneve_vni: u32,
    /// AWS option type 1 (GWLB endpoint id).
    pub endpoint_id: u64,
    /// AWS option type 2 (attachment id).
    pub attachment_id: u64,
    /// TTL (hop limit) of the outer IP header.
    pub outer_ttl: u8,
    /// Health checking of the targets.
    pub health_check: HealthCheck,
    /// The appliances, in file order (the order feeds nothing: Maglev keys on the address).
    pub targets: Vec<Target>,
}

/// `[target_groups.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Off: every target with weight > 0 is considered healthy.
    pub enabled: bool,
    /// TCP connect or HTTP GET.
    pub probe: Probe,
    /// Destination port on the target's own address.
    pub port: u16,
    /// Time between probes of one target.
    pub interval: Duration,
    /// Time a probe may take; shorter than `interval`.
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy target healthy.
    pub healthy_threshold: u8,
    /// Consecutive failures that make a healthy target unhealthy.
    pub unhealthy_threshold: u8,
    /// Random spread of probe times, in percent of `interval` (0..=50).
    pub jitter_percent: u8,
}

/// The probe of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection that completes its handshake.
    Tcp,
    /// An HTTP/1.1 GET answered with one of `success_codes`.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Healthy status codes.
        success_codes: StatusCodes,
    },
}

/// `[[target_groups.targets]]`: one appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The appliance's address (health checks and Geneve outer destination).
    pub address: IpAddr,
    /// Relative share of new flows, 0..=1000; 0 = no new flows.
    pub weight: u16,
    /// Static MAC; `None` = resolved by ARP/ND or a `[[neighbors]]` entry.
    pub mac: Option<MacAddr>,
    /// Index into [`Config::ports`] (an appliance-facing port whose subnet holds `address`).
    pub port: usize,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// Control API listener; `None` = off.
    pub api_listen: Option<Listen>,
    /// Bearer token for the API; required unless the API is local.
    pub api_token: Option<String>,
    /// Prometheus metrics listener; `None` = off.
    pub metrics_listen: Option<Listen>,
    /// Log output format.
    pub log_format: LogFormat,
}

impl Config {
    /// Parses and validates a configuration.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        raw.validate()
    }

    /// Reads, parses and validates a configuration file. Errors name the file, then the field.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let file = path.as_ref();
        let text = read_config_file(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text).map_err(|e| ConfigError::InFile {
            file: file.to_owned(),
            inner: Box::new(e),
        })
    }

    /// Advice about this configuration (valid, but probably not what was meant).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// Index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    /// The configuration as TOML with every field explicit (defaults filled in).
    /// `Config::from_toml_str(&c.to_toml_string()) == Ok(c)`.
    pub fn to_toml_string(&self) -> String {
        // Serializing plain structs of strings, integers, booleans, arrays and tables
        // cannot fail.
        toml::to_string(&RawConfig::from(self)).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// File format (raw serde structs)
// ---------------------------------------------------------------------------------------------

/// A u64 written as a TOML integer (TOML integers are signed 64-bit) or as a string,
/// decimal or `0x` hexadecimal, for values above `i64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct U64Value(u64);

impl<'de> Deserialize<'de> for U64Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = U64Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned 64-bit integer, or a string like \"0x1234abcd\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<U64Value, E> {
                u64::try_from(v)
                    .map(U64Value)
                    .map_err(|_| E::custom(format!("{v} is negative; expected 0..=2^64-1")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<U64Value, E> {
                Ok(U64Value(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<U64Value, E> {
                let t = v.replace('_', "");
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => t.parse(),
                };
                parsed.map(U64Value).map_err(|_| {
                    E::custom(format!(
                        "{v:?} is not a 64-bit unsigned integer (decimal or 0x hexadecimal)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for U64Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(self.0) {
            Ok(v) => s.serialize_i64(v),
            Err(_) => s.serialize_str(&format!("{:#x}", self.0)),
        }
    }
}

/// One string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(OneOrMany(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for OneOrMany {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RawRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    neighbors: Vec<RawNeighbor>,
    #[serde(default)]
    target_groups: Vec<RawTargetGroup>,
    #[serde(default)]
    control: RawControl,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawDataplane {
    worker_cpus: Vec<i64>,
    main_cpu: i64,
    hugepages: Hugepages,
    memory_mb: i64,
    eal_args: Vec<String>,
    burst_size: i64,
    tx_flush_us: i64,
    mbufs_per_worker: i64,
    flow_table_capacity: i64,
    flow_hash_seed: U64Value,
    stats_interval_s: i64,
}

impl Default for RawDataplane {
    fn default() -> Self {
        RawDataplane {
            worker_cpus: vec![1],
            main_cpu: 0,
            hugepages: Hugepages::Auto,
            memory_mb: 512,
            eal_args: Vec::new(),
            burst_size: 32,
            tx_flush_us: 100,
            mbufs_per_worker: 8192,
            flow_table_capacity: 1 << 20,
            flow_hash_seed: U64Value(0),
            stats_interval_s: 0,
        }
    }
}

fn default_mtu() -> i64 {
    1500
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: String,
    device: String,
    role: PortRole,
    address: OneOrMany,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(default = "default_mtu")]
    mtu: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rx_queues: Option<i64>,
    #[serde(default)]
    tx_queues: i64,
    #[serde(default = "default_true")]
    promiscuous: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kernel_interface: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    via: Option<String>,
    port: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: String,
    mac: String,
    port: String,
}

fn default_dereg() -> i64 {
    300
}
fn default_tcp_idle() -> i64 {
    350
}
fn default_other_idle() -> i64 {
    120
}
fn default_maglev() -> i64 {
    65537
}
fn default_ttl() -> i64 {
    64
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTargetGroup {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_ports: Option<Vec<String>>,
    #[serde(default)]
    stickiness: Stickiness,
    #[serde(default)]
    on_unhealthy: OnUnhealthy,
    #[serde(default)]
    on_all_unhealthy: OnAllUnhealthy,
    #[serde(default = "default_dereg")]
    deregistration_delay_s: i64,
    #[serde(default = "default_tcp_idle")]
    tcp_idle_timeout_s: i64,
    #[serde(default = "default_other_idle")]
    other_idle_timeout_s: i64,
    #[serde(default)]
    tcp_rst_on_drop: bool,
    #[serde(default)]
    require_flow_cookie: bool,
    #[serde(default = "default_maglev")]
    maglev_table_size: i64,
    #[serde(default)]
    geneve_vni: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<U64Value>,
    #[serde(default)]
    attachment_id: U64Value,
    #[serde(default = "default_ttl")]
    outer_ttl: i64,
    #[serde(default)]
    health_check: RawHealthCheck,
    #[serde(default)]
    targets: Vec<RawTarget>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawHealthCheck {
    enabled: bool,
    protocol: CheckProtocol,
    port: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    interval_ms: i64,
    timeout_ms: i64,
    healthy_threshold: i64,
    unhealthy_threshold: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    success_codes: Option<String>,
    jitter_percent: i64,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck {
            enabled: true,
            protocol: CheckProtocol::Tcp,
            port: 80,
            path: None,
            interval_ms: 10_000,
            timeout_ms: 5_000,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            success_codes: None,
            jitter_percent: 10,
        }
    }
}

fn default_weight() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    address: String,
    #[serde(default = "default_weight")]
    weight: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawControl {
    api_listen: String,
    api_token: String,
    metrics_listen: String,
    log_format: LogFormat,
}

impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            api_listen: DEFAULT_API_LISTEN.to_owned(),
            api_token: String::new(),
            metrics_listen: DEFAULT_METRICS_LISTEN.to_owned(),
            log_format: LogFormat::Auto,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Largest Maglev table (2^24): its build time and memory grow linearly with M.
const MAGLEV_MAX: i64 = 1 << 24;
/// Most workers: DPDK's default RTE_MAX_LCORE is 128, one of which is the main lcore.
const MAX_WORKERS: usize = 127;
/// Largest CPU id accepted (RTE_MAX_LCORE can be raised up to 1024 at DPDK build time).
const MAX_CPU: i64 = 1023;
/// RTE_MAX_QUEUES_PER_PORT.
const MAX_QUEUES: i64 = 1024;
/// Linux IFNAMSIZ minus the terminating NUL.
const IFNAME_MAX: usize = 15;

fn ranged<T: TryFrom<i64>>(
    field: &str,
    value: i64,
    range: RangeInclusive<i64>,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        if let Ok(v) = T::try_from(value) {
            return Ok(v);
        }
    }
    Err(invalid(
        field,
        format!(
            "{value} is out of range {}..={}",
            range.start(),
            range.end()
        ),
    ))
}

fn parse_field<T: FromStr>(field: &str, text: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| invalid(field, e.to_string()))
}

fn check_name(field: &str, name: &str, max: usize) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} is not a valid name: 1..={max} characters of A-Z a-z 0-9 _ - ."),
        ))
    }
}

fn check_unicast_mac(field: &str, text: &str) -> Result<MacAddr, ConfigError> {
    let mac: MacAddr = parse_field(field, text)?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(invalid(
            field,
            format!("{mac} is not a unicast MAC address"),
        ));
    }
    Ok(mac)
}

fn check_host_ip(field: &str, text: &str) -> Result<IpAddr, ConfigError> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| invalid(field, format!("invalid IP address {text:?}")))?;
    let bad = ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip == IpAddr::V4(Ipv4Addr::BROADCAST);
    if bad {
        return Err(invalid(
            field,
            format!("{ip} is not a unicast host address"),
        ));
    }
    Ok(ip)
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// FNV-1a, 64-bit: the default endpoint id, stable across versions and hosts.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// EAL options that gwlb derives from other fields; passing them again would conflict.
const DERIVED_EAL_OPTIONS: &[&str] = &[
    "-l",
    "-c",
    "-m",
    "--lcores",
    "--main-lcore",
    "--master-lcore",
    "--no-huge",
];

fn derived_eal_option(arg: &str) -> Option<&'static str> {
    DERIVED_EAL_OPTIONS.iter().copied().find(|&opt| {
        if opt.starts_with("--") {
            arg == opt || arg.strip_prefix(opt).is_some_and(|r| r.starts_with('='))
        } else {
            // Short options may carry their value attached: `-l1-3`, `-m512`.
            arg.strip_prefix(opt)
                .is_some_and(|r| r.is_empty() || !r.starts_with(|c: char| c.is_ascii_alphabetic()))
        }
    })
}

struct Validator {
    warnings: Vec<ConfigWarning>,
}

impl Validator {
    fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let mut v = Validator {
            warnings: Vec::new(),
        };
        let dataplane = validate_dataplane(&self.dataplane, &mut v)?;
        let ports = validate_ports(&self.ports, &dataplane, &mut v)?;
        let port_ref = |field: &str, name: &str| -> Result<usize, ConfigError> {
            ports.iter().position(|p| p.name == name).ok_or_else(|| {
                let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                invalid(
                    field,
                    format!("no port named {name:?} (ports: {})", names.join(", ")),
                )
            })
        };
        let routes = validate_routes(&self.routes, &ports, &port_ref)?;
        let neighbors = validate_neighbors(&self.neighbors, &ports, &port_ref)?;
        let target_groups = validate_groups(&self.target_groups, &ports, &port_ref, &mut v)?;
        check_targets_resolvable(&target_groups, &ports, &neighbors)?;
        let control = validate_control(&self.control, &mut v)?;
        Ok(Config {
            dataplane,
            ports,
            routes,
            neighbors,
            target_groups,
            control,
            warnings: v.warnings,
        })
    }
}

fn validate_dataplane(raw: &RawDataplane, v: &mut Validator) -> Result<Dataplane, ConfigError> {
    if raw.worker_cpus.is_empty() {
        return Err(invalid(
            "dataplane.worker_cpus",
            "at least one worker CPU is required",
        ));
    }
    if raw.worker_cpus.len() > MAX_WORKERS {
        return Err(invalid(
            "dataplane.worker_cpus",
            format!("{} workers; at most {MAX_WORKERS}", raw.worker_cpus.len()),
        ));
    }
    let mut worker_cpus = Vec::with_capacity(raw.worker_cpus.len());
    for (i, &cpu) in raw.worker_cpus.iter().enumerate() {
        let field = format!("dataplane.worker_cpus[{i}]");
        let cpu: u32 = ranged(&field, cpu, 0..=MAX_CPU)?;
        if worker_cpus.contains(&cpu) {
            return Err(invalid(field, format!("CPU {cpu} is listed twice")));
        }
        worker_cpus.push(cpu);
    }
    let main_cpu: u32 = ranged("dataplane.main_cpu", raw.main_cpu, 0..=MAX_CPU)?;
    if worker_cpus.contains(&main_cpu) {
        // Allowed (a 2-core machine can only run 2 workers this way), but the worker then
        // shares its CPU with the control plane's thread.
        v.warn(
            "dataplane.main_cpu",
            format!(
                "CPU {main_cpu} is also a worker CPU: the control plane shares it with a worker"
            ),
        );
    }
    for (i, arg) in raw.eal_args.iter().enumerate() {
        let field = format!("dataplane.eal_args[{i}]");
        if arg.is_empty() {
            return Err(invalid(field, "empty argument"));
        }
        if let Some(opt) = derived_eal_option(arg) {
            return Err(invalid(
                field,
                format!(
                    "{opt} is set by gwlb from dataplane.worker_cpus, main_cpu, hugepages and memory_mb"
                ),
            ));
        }
    }
    Ok(Dataplane {
        worker_cpus,
        main_cpu,
        hugepages: raw.hugepages,
        memory_mb: ranged("dataplane.memory_mb", raw.memory_mb, 64..=1 << 20)?,
        eal_args: raw.eal_args.clone(),
        burst_size: ranged("dataplane.burst_size", raw.burst_size, 1..=64)?,
        tx_flush: Duration::from_micros(ranged(
            "dataplane.tx_flush_us",
            raw.tx_flush_us,
            1..=10_000,
        )?),
        mbufs_per_worker: ranged(
            "dataplane.mbufs_per_worker",
            raw.mbufs_per_worker,
            1024..=1 << 22,
        )?,
        flow_table_capacity: ranged(
            "dataplane.flow_table_capacity",
            raw.flow_table_capacity,
            1024..=1 << 27,
        )?,
        flow_hash_seed: raw.flow_hash_seed.0,
        stats_interval: match ranged::<u64>(
            "dataplane.stats_interval_s",
            raw.stats_interval_s,
            0..=86_400,
        )? {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
    })
}

fn validate_ports(
    raw: &[RawPort],
    dataplane: &Dataplane,
    v: &mut Validator,
) -> Result<Vec<Port>, ConfigError> {
    if raw.is_empty() || raw.len() > 2 {
        return Err(invalid(
            "ports",
            format!(
                "{} ports; expected one (role \"both\", one-arm) or two (roles \"user\" and \"appliance\", two-arm)",
                raw.len()
            ),
        ));
    }
    let workers = dataplane.workers();
    let mut ports: Vec<Port> = Vec::with_capacity(raw.len());
    for (i, rp) in raw.iter().enumerate() {
        let p = format!("ports[{i}]");
        check_name(&format!("{p}.name"), &rp.name, 32)?;
        if let Some(j) = ports.iter().position(|q| q.name == rp.name) {
            return Err(invalid(
                format!("{p}.name"),
                format!("{:?} is already the name of ports[{j}]", rp.name),
            ));
        }
        let device: Device = parse_field(&format!("{p}.device"), &rp.device)?;
        if let Some(j) = ports.iter().position(|q| q.device.name() == device.name()) {
            return Err(invalid(
                format!("{p}.device"),
                format!("device {} is already used by ports[{j}]", device.name()),
            ));
        }

        let (mut ipv4, mut ipv6) = (None, None);
        if rp.address.0.is_empty() {
            return Err(invalid(
                format!("{p}.address"),
                "at least one address is required",
            ));
        }
        for (k, text) in rp.address.0.iter().enumerate() {
            let field = if rp.address.0.len() == 1 {
                format!("{p}.address")
            } else {
                format!("{p}.address[{k}]")
            };
            let net: IpNet = parse_field(&field, text)?;
            check_host_ip(&field, &net.addr().to_string())?;
            if let Some(kind) = subnet_special(&net, net.addr()) {
                return Err(invalid(
                    field,
                    format!("{net}: the address is the subnet's {kind} address"),
                ));
            }
            let dup = match net {
                IpNet::V4(n) => ipv4.replace(n).is_some(),
                IpNet::V6(n) => ipv6.replace(n).is_some(),
            };
            if dup {
                return Err(invalid(
                    field,
                    format!(
                        "a second {} address; at most one per family",
                        family(net.addr())
                    ),
                ));
            }
        }
        for (j, q) in ports.iter().enumerate() {
            let overlap = match (ipv4, q.ipv4, ipv6, q.ipv6) {
                (Some(a), Some(b), _, _) if a.overlaps(&b) => Some(IpNet::V4(b)),
                (_, _, Some(a), Some(b)) if a.overlaps(&b) => Some(IpNet::V6(b)),
                _ => None,
            };
            if let Some(other) = overlap {
                return Err(invalid(
                    format!("{p}.address"),
                    format!("subnet overlaps ports[{j}].address {other}; connected subnets must be distinct"),
                ));
            }
        }

        let mac = match &rp.mac {
            Some(m) => Some(check_unicast_mac(&format!("{p}.mac"), m)?),
            None => None,
        };
        let mtu = ranged(&format!("{p}.mtu"), rp.mtu, 576..=9600)?;
        let rx_queues: u16 = match rp.rx_queues {
            Some(n) => ranged(&format!("{p}.rx_queues"), n, 1..=MAX_QUEUES)?,
            None => ranged(
                &format!("{p}.rx_queues"),
                i64::try_from(workers).unwrap_or(i64::MAX),
                1..=MAX_QUEUES,
            )?,
        };
        if usize::from(rx_queues) < workers {
            v.warn(
                format!("{p}.rx_queues"),
                format!(
                    "{rx_queues} RX queues for {workers} workers: {} workers poll nothing on this port",
                    workers - usize::from(rx_queues)
                ),
            );
        } else if !usize::from(rx_queues).is_multiple_of(workers) {
            v.warn(
                format!("{p}.rx_queues"),
                format!("{rx_queues} RX queues do not divide evenly among {workers} workers"),
            );
        }
        let tx_queues: u16 = match rp.tx_queues {
            0 => ranged(
                &format!("{p}.tx_queues"),
                i64::try_from(workers).unwrap_or(i64::MAX),
                1..=MAX_QUEUES,
            )?,
            n => {
                let n: u16 = ranged(&format!("{p}.tx_queues"), n, 0..=MAX_QUEUES)?;
                if usize::from(n) < workers {
                    return Err(invalid(
                        format!("{p}.tx_queues"),
                        format!("{n} TX queues for {workers} workers: each worker needs its own (0 = one per worker)"),
                    ));
                }
                n
            }
        };
        let kernel_interface = match &rp.kernel_interface {
            Some(name) => {
                let field = format!("{p}.kernel_interface");
                let ok = !name.is_empty()
                    && name.len() <= IFNAME_MAX
                    && name != "."
                    && name != ".."
                    && !name
                        .chars()
                        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
                if !ok {
                    return Err(invalid(
                        field,
                        format!("{name:?} is not a valid Linux interface name (1..={IFNAME_MAX} bytes, no '/', ':' or spaces)"),
                    ));
                }
                if let Some(j) = ports
                    .iter()
                    .position(|q| q.kernel_interface.as_deref() == Some(name))
                {
                    return Err(invalid(
                        field,
                        format!("{name:?} is already used by ports[{j}]"),
                    ));
                }
                Some(name.clone())
            }
            None => None,
        };
        ports.push(Port {
            name: rp.name.clone(),
            device,
            role: rp.role,
            ipv4,
            ipv6,
            mac,
            mtu,
            rx_queues,
            tx_queues,
            promiscuous: rp.promiscuous,
            kernel_interface,
        });
    }

    let roles: Vec<PortRole> = ports.iter().map(|p| p.role).collect();
    match roles.as_slice() {
        [PortRole::Both]
        | [PortRole::User, PortRole::Appliance]
        | [PortRole::Appliance, PortRole::User] => {}
        _ => {
            let i = ports.len() - 1;
            return Err(invalid(
                format!("ports[{i}].role"),
                format!(
                    "roles {roles:?}: expected one port with role \"both\" (one-arm) or one \"user\" and one \"appliance\" port (two-arm)"
                ),
            ));
        }
    }

    // Two-arm: the appliance side carries the user side's packets plus the outer headers.
    if let (Some(u), Some(a)) = (
        ports.iter().position(|p| p.role == PortRole::User),
        ports.iter().position(|p| p.role == PortRole::Appliance),
    ) {
        let overhead = if ports[a].ipv4.is_some() {
            crate::encap::OVERHEAD_V4
        } else {
            crate::encap::OVERHEAD_V6
        };
        let need = usize::from(ports[u].mtu) + overhead;
        if usize::from(ports[a].mtu) < need {
            v.warn(
                format!("ports[{a}].mtu"),
                format!(
                    "{} is below ports[{u}].mtu {} + {overhead} bytes of Geneve overhead = {need}: larger user packets will be dropped",
                    ports[a].mtu, ports[u].mtu
                ),
            );
        }
    }
    Ok(ports)
}

fn net_bits(net: &IpNet) -> u8 {
    if net.is_ipv4() {
        32
    } else {
        128
    }
}

fn validate_routes(
    raw: &[RawRoute],
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<Route>, ConfigError> {
    let mut routes: Vec<Route> = Vec::with_capacity(raw.len());
    for (i, rr) in raw.iter().enumerate() {
        let r = format!("routes[{i}]");
        let prefix: IpNet = parse_field(&format!("{r}.prefix"), &rr.prefix)?;
        if prefix.addr() != prefix.network() {
            return Err(invalid(
                format!("{r}.prefix"),
                format!(
                    "{prefix} has host bits set; did you mean {}/{}?",
                    prefix.network(),
                    prefix.prefix_len()
                ),
            ));
        }
        if let Some(j) = routes.iter().position(|o| o.prefix == prefix) {
            return Err(invalid(
                format!("{r}.prefix"),
                format!("{prefix} is already routed by routes[{j}]"),
            ));
        }
        let port = port_ref(&format!("{r}.port"), &rr.port)?;
        let pt = &ports[port];
        if !pt.role.faces_users() {
            return Err(invalid(
                format!("{r}.port"),
                format!(
                    "port {:?} has role \"appliance\"; routes carry decapsulated traffic out of a user-facing port",
                    pt.name
                ),
            ));
        }
        let has_family = if prefix.is_ipv4() {
            pt.ipv4.is_some()
        } else {
            pt.ipv6.is_some()
        };
        if !has_family {
            return Err(invalid(
                format!("{r}.port"),
                format!(
                    "port {:?} has no {} address for {} route {prefix}",
                    pt.name,
                    family(prefix.addr()),
                    family(prefix.addr())
                ),
            ));
        }
        let via = match &rr.via {
            Some(text) => {
                let field = format!("{r}.via");
                let ip = check_host_ip(&field, text)?;
                if ip.is_ipv4() != prefix.is_ipv4() {
                    return Err(invalid(
                        field,
                        format!(
                            "{} next hop for {} prefix {prefix}",
                            family(ip),
                            family(prefix.addr())
                        ),
                    ));
                }
                if pt.is_own_address(ip) {
                    return Err(invalid(
                        field,
                        format!("{ip} is port {:?}'s own address", pt.name),
                    ));
                }
                if !pt.is_connected(ip) {
                    return Err(invalid(
                        field,
                        format!(
                            "next hop {ip} is not in a connected subnet of port {:?} ({})",
                            pt.name,
                            pt.addresses_display()
                        ),
                    ));
                }
                Some(ip)
            }
            None => None,
        };
        routes.push(Route { prefix, via, port });
    }
    Ok(routes)
}

fn validate_neighbors(
    raw: &[RawNeighbor],
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<Neighbor>, ConfigError> {
    let mut out: Vec<Neighbor> = Vec::with_capacity(raw.len());
    for (i, rn) in raw.iter().enumerate() {
        let n = format!("neighbors[{i}]");
        let port = port_ref(&format!("{n}.port"), &rn.port)?;
        let address = check_host_ip(&format!("{n}.address"), &rn.address)?;
        let pt = &ports[port];
        if pt.is_own_address(address) {
            return Err(invalid(
                format!("{n}.address"),
                format!("{address} is port {:?}'s own address", pt.name),
            ));
        }
        if !pt.is_connected(address) {
            return Err(invalid(
                format!("{n}.address"),
                format!(
                    "{address} is not in a connected subnet of port {:?} ({})",
                    pt.name,
                    pt.addresses_display()
                ),
            ));
        }
        if let Some(j) = out
            .iter()
            .position(|o| o.port == port && o.address == address)
        {
            return Err(invalid(
                format!("{n}.address"),
                format!(
                    "{address} on port {:?} is already set by neighbors[{j}]",
                    pt.name
                ),
            ));
        }
        let mac = check_unicast_mac(&format!("{n}.mac"), &rn.mac)?;
        out.push(Neighbor { address, mac, port });
    }
    Ok(out)
}

fn validate_groups(
    raw: &[RawTargetGroup],
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
    v: &mut Validator,
) -> Result<Vec<TargetGroup>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid(
            "target_groups",
            "at least one target group is required",
        ));
    }
    let total: usize = raw.iter().map(|g| g.targets.len()).sum();
    if total > crate::pipeline::MAX_APPLIANCES {
        return Err(invalid(
            "target_groups",
            format!(
                "{total} targets; a gateway serves at most {} (registered and draining together)",
                crate::pipeline::MAX_APPLIANCES
            ),
        ));
    }
    let mut groups: Vec<TargetGroup> = Vec::with_capacity(raw.len());
    // user port index -> group index that takes its traffic
    let mut served: HashMap<usize, usize> = HashMap::new();
    for (gi, rg) in raw.iter().enumerate() {
        let g = format!("target_groups[{gi}]");
        check_name(&format!("{g}.name"), &rg.name, 64)?;
        if let Some(j) = groups.iter().position(|o| o.name == rg.name) {
            return Err(invalid(
                format!("{g}.name"),
                format!("{:?} is already the name of target_groups[{j}]", rg.name),
            ));
        }

        let field = format!("{g}.user_ports");
        let user_ports: Vec<usize> = match &rg.user_ports {
            Some(names) => {
                let mut idx = Vec::with_capacity(names.len());
                for (k, name) in names.iter().enumerate() {
                    let f = format!("{field}[{k}]");
                    let p = port_ref(&f, name)?;
                    if !ports[p].role.faces_users() {
                        return Err(invalid(
                            f,
                            format!(
                                "port {name:?} has role \"appliance\"; expected a user-facing port"
                            ),
                        ));
                    }
                    if idx.contains(&p) {
                        return Err(invalid(f, format!("port {name:?} is listed twice")));
                    }
                    idx.push(p);
                }
                idx
            }
            None => (0..ports.len())
                .filter(|&p| ports[p].role.faces_users())
                .collect(),
        };
        for &p in &user_ports {
            if let Some(&other) = served.get(&p) {
                let hint = if rg.user_ports.is_none() {
                    " (by default a group takes every user port: list user_ports explicitly)"
                } else {
                    ""
                };
                return Err(invalid(
                    field,
                    format!(
                        "user port {:?} already belongs to target_groups[{other}] ({:?}){hint}",
                        ports[p].name, raw[other].name
                    ),
                ));
            }
            served.insert(p, gi);
        }
        if user_ports.is_empty() {
            v.warn(field, "no user ports: this group receives no traffic");
        }

        let maglev_table_size: u32 = ranged(
            &format!("{g}.maglev_table_size"),
            rg.maglev_table_size,
            2..=MAGLEV_MAX,
        )?;
        if !is_prime(maglev_table_size) {
            return Err(invalid(
                format!("{g}.maglev_table_size"),
                format!("{maglev_table_size} is not prime (e.g. 65537, 655373)"),
            ));
        }

        let health_check = validate_health_check(&rg.health_check, &format!("{g}.health_check"))?;
        let targets = validate_targets(&rg.targets, &g, ports, port_ref)?;
        for (ti, t) in targets.iter().enumerate() {
            let other = groups.iter().enumerate().find_map(|(j, o)| {
                o.targets
                    .iter()
                    .position(|u| u.address == t.address)
                    .map(|k| (j, k))
            });
            if let Some((j, k)) = other {
                return Err(invalid(
                    format!("{g}.targets[{ti}].address"),
                    format!(
                        "{} is already target_groups[{j}].targets[{k}]: an appliance belongs to one target group (its Geneve returns are matched by their source address)",
                        t.address
                    ),
                ));
            }
        }

        let n = targets.len();
        if u32::try_from(n).map_or(true, |n| n > maglev_table_size) {
            return Err(invalid(
                format!("{g}.maglev_table_size"),
                format!("{maglev_table_size} is smaller than the number of targets ({n})"),
            ));
        }
        if u64::from(maglev_table_size) < 100 * n.max(1) as u64 {
            v.warn(
                format!("{g}.maglev_table_size"),
                format!(
                    "{maglev_table_size} is below 100 x {} targets: load imbalance may exceed 1%",
                    n.max(1)
                ),
            );
        }
        if targets.is_empty() {
            v.warn(
                format!("{g}.targets"),
                "no targets: all traffic of this group fails over (on_all_unhealthy)",
            );
        } else if targets.iter().all(|t| t.weight == 0) {
            v.warn(
                format!("{g}.targets"),
                "every target has weight 0: no new flows can be placed",
            );
        }

        let endpoint_id = rg
            .endpoint_id
            .map_or_else(|| fnv1a64(rg.name.as_bytes()), |e| e.0);
        if let Some(j) = groups.iter().position(|o| {
            o.endpoint_id == endpoint_id
                && o.geneve_vni == u32::try_from(rg.geneve_vni).unwrap_or(u32::MAX)
        }) {
            v.warn(
                format!("{g}.endpoint_id"),
                format!("same geneve_vni and endpoint_id as target_groups[{j}]: appliances cannot tell the groups apart"),
            );
        }

        groups.push(TargetGroup {
            name: rg.name.clone(),
            user_ports,
            stickiness: rg.stickiness,
            on_unhealthy: rg.on_unhealthy,
            on_all_unhealthy: rg.on_all_unhealthy,
            deregistration_delay: Duration::from_secs(ranged(
                &format!("{g}.deregistration_delay_s"),
                rg.deregistration_delay_s,
                0..=3600,
            )?),
            tcp_idle_timeout: Duration::from_secs(ranged(
                &format!("{g}.tcp_idle_timeout_s"),
                rg.tcp_idle_timeout_s,
                60..=6000,
            )?),
            other_idle_timeout: Duration::from_secs(ranged(
                &format!("{g}.other_idle_timeout_s"),
                rg.other_idle_timeout_s,
                1..=6000,
            )?),
            tcp_rst_on_drop: rg.tcp_rst_on_drop,
            require_flow_cookie: rg.require_flow_cookie,
            maglev_table_size,
            geneve_vni: ranged(&format!("{g}.geneve_vni"), rg.geneve_vni, 0..=(1 << 24) - 1)?,
            endpoint_id,
            attachment_id: rg.attachment_id.0,
            outer_ttl: ranged(&format!("{g}.outer_ttl"), rg.outer_ttl, 1..=255)?,
            health_check,
            targets,
        });
    }
    for (p, port) in ports.iter().enumerate() {
        if port.role.faces_users() && !served.contains_key(&p) {
            v.warn(
                format!("ports[{p}]"),
                format!("user port {:?} belongs to no target group: traffic arriving on it is not inspected", port.name),
            );
        }
    }
    Ok(groups)
}

fn validate_health_check(raw: &RawHealthCheck, h: &str) -> Result<HealthCheck, ConfigError> {
    let probe = match raw.protocol {
        CheckProtocol::Tcp => {
            if raw.path.is_some() {
                return Err(invalid(
                    format!("{h}.path"),
                    "only valid with protocol = \"http\"",
                ));
            }
            if raw.success_codes.is_some() {
                return Err(invalid(
                    format!("{h}.success_codes"),
                    "only valid with protocol = \"http\"",
                ));
            }
            Probe::Tcp
        }
        CheckProtocol::Http => {
            let path = raw.path.clone().unwrap_or_else(|| "/".to_owned());
            let ok = path.starts_with('/')
                && path.len() <= 1024
                && path.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(invalid(
                    format!("{h}.path"),
                    format!("{path:?}: expected an absolute path starting with '/', printable ASCII without spaces, at most 1024 bytes"),
                ));
            }
            let codes = raw.success_codes.as_deref().unwrap_or("200-399");
            let success_codes = parse_field(&format!("{h}.success_codes"), codes)?;
            Probe::Http {
                path,
                success_codes,
            }
        }
    };
    let interval_ms: u64 = ranged(&format!("{h}.interval_ms"), raw.interval_ms, 100..=300_000)?;
    let timeout_ms: u64 = ranged(&format!("{h}.timeout_ms"), raw.timeout_ms, 50..=120_000)?;
    if timeout_ms >= interval_ms {
        return Err(invalid(
            format!("{h}.timeout_ms"),
            format!("{timeout_ms} must be less than interval_ms ({interval_ms})"),
        ));
    }
    Ok(HealthCheck {
        enabled: raw.enabled,
        probe,
        port: ranged(&format!("{h}.port"), raw.port, 1..=65535)?,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        healthy_threshold: ranged(
            &format!("{h}.healthy_threshold"),
            raw.healthy_threshold,
            2..=10,
        )?,
        unhealthy_threshold: ranged(
            &format!("{h}.unhealthy_threshold"),
            raw.unhealthy_threshold,
            2..=10,
        )?,
        jitter_percent: ranged(&format!("{h}.jitter_percent"), raw.jitter_percent, 0..=50)?,
    })
}

fn validate_targets(
    raw: &[RawTarget],
    g: &str,
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<Target>, ConfigError> {
    let mut targets: Vec<Target> = Vec::with_capacity(raw.len());
    let mut seen: HashSet<IpAddr> = HashSet::new();
    for (ti, rt) in raw.iter().enumerate() {
        let t = format!("{g}.targets[{ti}]");
        let address = check_host_ip(&format!("{t}.address"), &rt.address)?;
        if !seen.insert(address) {
            let j = targets
                .iter()
                .position(|o| o.address == address)
                .unwrap_or(0);
            return Err(invalid(
                format!("{t}.address"),
                format!("{address} is already {g}.targets[{j}]"),
            ));
        }
        let port = match &rt.port {
            Some(name) => {
                let p = port_ref(&format!("{t}.port"), name)?;
                if !ports[p].role.faces_appliances() {
                    return Err(invalid(
                        format!("{t}.port"),
                        format!("port {name:?} has role \"user\"; expected an appliance-facing port"),
                    ));
                }
                if !ports[p].is_connected(address) {
                    return Err(invalid(
                        format!("{t}.address"),
                        format!(
                            "{address} is not in a connected subnet of port {name:?} ({})",
                            ports[p].addresses_display()
                        ),
                    ));
                }
                p
            }
            None => ports
                .iter()
                .position(|p| p.role.faces_appliances() && p.is_connected(address))
                .ok_or_else(|| {
                    let subnets: Vec<String> = ports
                        .iter()
                        .filter(|p| p.role.faces_appliances())
                        .map(|p| format!("{:?}: {}", p.name, p.addresses_display()))
                        .collect();
                    invalid(
                        format!("{t}.address"),
                        format!(
                            "{address} is not in a connected subnet of an appliance-facing port ({})",
                            subnets.join("; ")
                        ),
                    )
                })?,
        };
        if ports[port].is_own_address(address) {
            return Err(invalid(
                format!("{t}.address"),
                format!("{address} is port {:?}'s own address", ports[port].name),
            ));
        }
        if let (IpAddr::V4(_), Some(net)) = (address, ports[port].ipv4) {
            if subnet_special(&IpNet::V4(net), address).is_some() {
                return Err(invalid(
                    format!("{t}.address"),
                    format!(
                        "{address} is the network or broadcast address of port {:?}'s subnet {}/{}",
                        ports[port].name,
                        net.network(),
                        net.prefix_len
                    ),
                ));
            }
        }
        let mac = match &rt.mac {
            Some(m) => Some(check_unicast_mac(&format!("{t}.mac"), m)?),
            None => None,
        };

        targets.push(Target {
            address,
            weight: ranged(&format!("{t}.weight"), rt.weight, 0..=1000)?,
            mac,
            port,
        });
    }
    Ok(targets)
}

/// Every target's MAC must be knowable: configured on the target, in a static `[[neighbors]]`
/// entry, or learnable by ARP/ND through its port's `kernel_interface`. Otherwise it would
/// count as healthy (health checks need the same exception path... or none) and blackhole
/// its flows as `neighbor_unresolved`.
fn check_targets_resolvable(
    groups: &[TargetGroup],
    ports: &[Port],
    neighbors: &[Neighbor],
) -> Result<(), ConfigError> {
    for (gi, g) in groups.iter().enumerate() {
        for (ti, t) in g.targets.iter().enumerate() {
            let port = &ports[t.port];
            let known = t.mac.is_some()
                || port.kernel_interface.is_some()
                || neighbors.iter().any(|n| n.address == t.address);
            if !known {
                return Err(invalid(
                    format!("target_groups[{gi}].targets[{ti}].mac"),
                    format!(
                        "required: port {:?} has no kernel_interface, so gwlb cannot learn {}'s MAC by ARP/ND (set the target's mac, a [[neighbors]] entry, or the port's kernel_interface)",
                        port.name, t.address
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn validate_control(raw: &RawControl, v: &mut Validator) -> Result<Control, ConfigError> {
    let listen = |field: &str, text: &str| -> Result<Option<Listen>, ConfigError> {
        if text.is_empty() || text == "off" {
            Ok(None)
        } else {
            parse_field(field, text).map(Some)
        }
    };
    let api_listen = listen("control.api_listen", &raw.api_listen)?;
    let metrics_listen = listen("control.metrics_listen", &raw.metrics_listen)?;
    if api_listen.is_some() && api_listen == metrics_listen {
        return Err(invalid(
            "control.metrics_listen",
            "same address as control.api_listen",
        ));
    }
    if let Some(m) = &metrics_listen {
        if !m.is_local() {
            v.warn(
                "control.metrics_listen",
                format!("{m} is not a loopback address or a unix socket: metrics need no token, so anyone who can reach it can read them (bind it to a trusted address)"),
            );
        }
    }
    let api_token = (!raw.api_token.is_empty()).then(|| raw.api_token.clone());
    if let Some(api) = &api_listen {
        if !api.is_local() && api_token.is_none() {
            return Err(invalid(
                "control.api_token",
                format!("required when control.api_listen ({api}) is not a loopback address or a unix socket"),
            ));
        }
    }
    if let Some(token) = &api_token {
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("control.api_token", "must not contain whitespace"));
        }
        if token.len() < 16 {
            v.warn(
                "control.api_token",
                "shorter than 16 characters: easy to guess",
            );
        }
    }
    Ok(Control {
        api_listen,
        api_token,
        metrics_listen,
        log_format: raw.log_format,
    })
}

// ---------------------------------------------------------------------------------------------
// Validated -> raw (for `Config::to_toml_string`)
// ---------------------------------------------------------------------------------------------

fn to_i64<T: Into<i64>>(v: T) -> i64 {
    v.into()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl From<&Config> for RawConfig {
    fn from(c: &Config) -> Self {
        let port_name = |i: usize| c.ports[i].name.clone();
        let d = &c.dataplane;
        RawConfig {
            dataplane: RawDataplane {
                worker_cpus: d.worker_cpus.iter().map(|&c| to_i64(c)).collect(),
                main_cpu: to_i64(d.main_cpu),
                hugepages: d.hugepages,
                memory_mb: to_i64(d.memory_mb),
                eal_args: d.eal_args.clone(),
                burst_size: to_i64(d.burst_size),
                tx_flush_us: i64::try_from(d.tx_flush.as_micros()).unwrap_or(i64::MAX),
                mbufs_per_worker: to_i64(d.mbufs_per_worker),
                flow_table_capacity: to_i64(d.flow_table_capacity),
                flow_hash_seed: U64Value(d.flow_hash_seed),
                stats_interval_s: d.stats_interval.map_or(0, secs),
            },
            ports: c
                .ports
                .iter()
                .map(|p| RawPort {
                    name: p.name.clone(),
                    device: p.device.to_string(),
                    role: p.role,
                    address: OneOrMany(
                        p.ipv4
                            .map(|n| n.to_string())
                            .into_iter()
                            .chain(p.ipv6.map(|n| n.to_string()))
                            .collect(),
                    ),
                    mac: p.mac.map(|m| m.to_string()),
                    mtu: to_i64(p.mtu),
                    rx_queues: Some(to_i64(p.rx_queues)),
                    tx_queues: to_i64(p.tx_queues),
                    promiscuous: p.promiscuous,
                    kernel_interface: p.kernel_interface.clone(),
                })
                .collect(),
            routes: c
                .routes
                .iter()
                .map(|r| RawRoute {
                    prefix: r.prefix.to_string(),
                    via: r.via.map(|ip| ip.to_string()),
                    port: port_name(r.port),
                })
                .collect(),
            neighbors: c
                .neighbors
                .iter()
                .map(|n| RawNeighbor {
                    address: n.address.to_string(),
                    mac: n.mac.to_string(),
                    port: port_name(n.port),
                })
                .collect(),
            target_groups: c
                .target_groups
                .iter()
                .map(|g| {
                    let h = &g.health_check;
                    let (protocol, path, success_codes) = match &h.probe {
                        Probe::Tcp => (CheckProtocol::Tcp, None, None),
                        Probe::Http {
                            path,
                            success_codes,
                        } => (
                            CheckProtocol::Http,
                            Some(path.clone()),
                            Some(success_codes.to_string()),
                        ),
                    };
                    RawTargetGroup {
                        name: g.name.clone(),
                        user_ports: Some(g.user_ports.iter().map(|&p| port_name(p)).collect()),
                        stickiness: g.stickiness,
                        on_unhealthy: g.on_unhealthy,
                        on_all_unhealthy: g.on_all_unhealthy,
                        deregistration_delay_s: secs(g.deregistration_delay),
                        tcp_idle_timeout_s: secs(g.tcp_idle_timeout),
                        other_idle_timeout_s: secs(g.other_idle_timeout),
                        tcp_rst_on_drop: g.tcp_rst_on_drop,
                        require_flow_cookie: g.require_flow_cookie,
                        maglev_table_size: to_i64(g.maglev_table_size),
                        geneve_vni: to_i64(g.geneve_vni),
                        endpoint_id: Some(U64Value(g.endpoint_id)),
                        attachment_id: U64Value(g.attachment_id),
                        outer_ttl: to_i64(g.outer_ttl),
                        health_check: RawHealthCheck {
                            enabled: h.enabled,
                            protocol,
                            port: to_i64(h.port),
                            path,
                            interval_ms: millis(h.interval),
                            timeout_ms: millis(h.timeout),
                            healthy_threshold: to_i64(h.healthy_threshold),
                            unhealthy_threshold: to_i64(h.unhealthy_threshold),
                            success_codes,
                            jitter_percent: to_i64(h.jitter_percent),
                        },
                        targets: g
                            .targets
                            .iter()
                            .map(|t| RawTarget {
                                address: t.address.to_string(),
                                weight: to_i64(t.weight),
                                mac: t.mac.map(|m| m.to_string()),
                                port: Some(port_name(t.port)),
                            })
                            .collect(),
                    }
                })
                .collect(),
            control: RawControl {
                api_listen: c
                    .control
                    .api_listen
                    .as_ref()
                    .map_or_else(|| "off".to_owned(), |l| l.to_string()),
                api_token: c.control.api_token.clone().unwrap_or_default(),
                metrics_listen: c
                    .control
                    .metrics_listen
                    .as_ref()
                    .map_or_else(|| "off".to_owned(), |l| l.to_string()),
                log_format: c.control.log_format,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TOML error -> field path
// ---------------------------------------------------------------------------------------------

fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    // One line, and no internal types: the raw structs hold integers as i64 only so that
    // range errors are ours.
    let message = e
        .message()
        .trim()
        .replace('\n', "; ")
        .replace("expected i64", "expected an integer");
    let span = e.span();
    let (line, column) = span.as_ref().map_or((0, 0), |s| line_column(text, s.start));
    let mut field = match &span {
        Some(s) => match toml_edit::ImDocument::parse(text) {
            Ok(doc) => path_at(&doc, s),
            Err(_) => guess_path(text, s.start),
        },
        None => String::new(),
    };
    // `missing field `x`` points at the table; name the field itself.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(name);
    }
    ConfigError::Toml {
        field,
        message,
        line,
        column,
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Every key, value and table header of the document with its byte span and path.
fn collect_spans(table: &toml_edit::Table, path: &str, out: &mut Vec<(Range<usize>, String)>) {
    if let Some(s) = table.span() {
        out.push((s, path.to_owned()));
    }
    for (k, item) in table.iter() {
        let p = join_key(path, k);
        if let Some(s) = table.get_key_value(k).and_then(|(key, _)| key.span()) {
            out.push((s, p.clone()));
        }
        match item {
            toml_edit::Item::None => {}
            toml_edit::Item::Value(v) => collect_value_spans(v, &p, out),
            toml_edit::Item::Table(t) => collect_spans(t, &p, out),
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    collect_spans(t, &format!("{p}[{i}]"), out);
                }
            }
        }
    }
}

fn collect_value_spans(v: &toml_edit::Value, path: &str, out: &mut Vec<(Range<usize>, String)>) {
    if let Some(s) = v.span() {
        out.push((s, path.to_owned()));
    }
    match v {
        toml_edit::Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                collect_value_spans(e, &format!("{path}[{i}]"), out);
            }
        }
        toml_edit::Value::InlineTable(t) => {
            for (k, e) in t.iter() {
                let p = join_key(path, k);
                if let Some(s) = t.get_key_value(k).and_then(|(key, _)| key.span()) {
                    out.push((s, p.clone()));
                }
                collect_value_spans(e, &p, out);
            }
        }
        _ => {}
    }
}

/// The path of the smallest key, value or header whose span holds `span`.
fn path_at(doc: &toml_edit::ImDocument<&str>, span: &Range<usize>) -> String {
    let mut spans = Vec::new();
    collect_spans(doc, "", &mut spans);
    spans
        .into_iter()
        .filter(|(s, _)| {
            s.start <= span.start && span.end <= s.end && (s.start < s.end || s.start == span.start)
        })
        .min_by(|(a, pa), (b, pb)| {
            (a.end - a.start)
                .cmp(&(b.end - b.start))
                .then(pb.len().cmp(&pa.len()))
        })
        .map(|(_, p)| p)
        .unwrap_or_default()
}

/// For syntax errors (no document to walk): the last table header before `offset` with
/// array-of-tables indices, plus the key on the error's line if there is one.
fn guess_path(text: &str, offset: usize) -> String {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut header = String::new();
    let render = |name: &str, counts: &HashMap<String, usize>| -> String {
        let mut out = String::new();
        let mut prefix = String::new();
        for part in name.split('.').map(str::trim) {
            prefix = join_key(&prefix, part);
            out = join_key(&out, part);
            if let Some(n) = counts.get(&prefix) {
                out.push_str(&format!("[{}]", n.saturating_sub(1)));
            }
        }
        out
    };
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let t = line.trim();
        let on_error_line = offset < pos || pos >= text.len();
        if on_error_line {
            if !t.starts_with('[') {
                if let Some((key, _)) = t.split_once('=') {
                    let key = key.trim();
                    if !key.is_empty()
                        && key.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
                        })
                    {
                        return join_key(&header, key);
                    }
                }
            }
            let _ = start;
            return header;
        }
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            *counts.entry(name.clone()).or_insert(0) += 1;
            let nested = format!("{name}.");
            counts.retain(|k, _| !k.starts_with(&nested));
            header = render(&name, &counts);
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            header = render(name.trim(), &counts);
        }
    }
    header
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[ports]]
name = "eth0"
device = "net_af_packet0,iface=veth0"
role = "both"
address = "10.0.0.1/24"

[[target_groups]]
name = "fw"
[[target_groups.targets]]
address = "10.0.0.10"
mac = "02:00:00:00:00:10"
"#;

    fn parse(text: &str) -> Config {
        match Config::from_toml_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Parses `text`, expects an error whose field is `field` and whose message holds `needle`.
    fn expect_err(text: &str, field: &str, needle: &str) {
        match Config::from_toml_str(text) {
            Ok(_) => panic!("expected an error at {field}"),
            Err(e) => {
                let shown = e.to_string();
                assert_eq!(e.field(), Some(field), "{shown}");
                assert!(shown.starts_with(&format!("{field}: ")), "{shown}");
                assert!(shown.contains(needle), "{shown:?} lacks {needle:?}");
            }
        }
    }

    /// MINIMAL with `extra` appended (TOML tables may follow in any order).
    fn with(extra: &str) -> String {
        format!("{MINIMAL}\n{extra}")
    }

    /// MINIMAL with one `key = value` line added to the first [[ports]] table.
    fn port_with(line: &str) -> String {
        MINIMAL.replacen("role = \"both\"", &format!("role = \"both\"\n{line}"), 1)
    }

    /// MINIMAL with one line added to the target group.
    fn group_with(line: &str) -> String {
        MINIMAL.replacen("name = \"fw\"", &format!("name = \"fw\"\n{line}"), 1)
    }

    const TWO_ARM: &str = r#"
[dataplane]
worker_cpus = [2, 3]

[[ports]]
name = "user"
device = "0000:03:00.0"
role = "user"
address = "10.0.1.1/24"
mtu = 1500

[[ports]]
name = "app"
device = "0000:03:00.1"
role = "appliance"
address = "10.0.2.1/24"
mtu = 9000

[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.1.254"
port = "user"

[[target_groups]]
name = "fw"
[[target_groups.targets]]
address = "10.0.2.11"
mac = "02:00:00:00:02:11"
[[target_groups.targets]]
address = "10.0.2.12"
mac = "02:00:00:00:02:12"
"#;

    #[test]
    fn test_load_refuses_fifos_and_huge_files() {
        let dir = std::env::temp_dir().join(format!("gwlb-cfg-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A FIFO nobody writes to: refused at once, not waited on.
        let fifo = dir.join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t0 = std::time::Instant::now();
        let e = Config::load(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        // Larger than the limit: refused before reading it.
        let big = dir.join("big.toml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let e = Config::load(&big).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
        // A directory is no file either.
        let e = Config::load(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_minimal_defaults() {
        let c = parse(MINIMAL);
        assert_eq!(MINIMAL.trim().lines().filter(|l| !l.is_empty()).count(), 10);
        let d = &c.dataplane;
        assert_eq!(d.worker_cpus, vec![1]);
        assert_eq!(d.main_cpu, 0);
        assert_eq!(d.hugepages, Hugepages::Auto);
        assert_eq!(d.memory_mb, 512);
        assert_eq!(d.burst_size, 32);
        assert_eq!(d.tx_flush, Duration::from_micros(100));
        assert_eq!(d.mbufs_per_worker, 8192);
        assert_eq!(d.flow_table_capacity, 1 << 20);
        assert_eq!(d.flow_hash_seed, 0);
        assert_eq!(d.stats_interval, None);

        let p = &c.ports[0];
        assert_eq!(p.device, Device::Vdev("net_af_packet0,iface=veth0".into()));
        assert_eq!(p.device.name(), "net_af_packet0");
        assert_eq!(p.role, PortRole::Both);
        assert_eq!(p.ipv4, Some("10.0.0.1/24".parse().unwrap()));
        assert_eq!(p.ipv6, None);
        assert_eq!(
            (p.mtu, p.rx_queues, p.tx_queues, p.promiscuous),
            (1500, 1, 1, true)
        );
        assert_eq!(p.mac, None);

        let g = &c.target_groups[0];
        assert_eq!(g.user_ports, vec![0]);
        assert_eq!(g.stickiness, Stickiness::FiveTuple);
        assert_eq!(g.on_unhealthy, OnUnhealthy::NoRebalance);
        assert_eq!(g.on_all_unhealthy, OnAllUnhealthy::FailClosed);
        assert_eq!(g.deregistration_delay, Duration::from_secs(300));
        assert_eq!(g.tcp_idle_timeout, Duration::from_secs(350));
        assert_eq!(g.other_idle_timeout, Duration::from_secs(120));
        assert!(!g.tcp_rst_on_drop);
        assert!(!g.require_flow_cookie);
        assert_eq!(g.maglev_table_size, 65537);
        assert_eq!(g.geneve_vni, 0);
        assert_eq!(g.endpoint_id, fnv1a64(b"fw"));
        assert_eq!(g.attachment_id, 0);
        assert_eq!(g.outer_ttl, 64);
        let h = &g.health_check;
        assert!(h.enabled);
        assert_eq!(h.probe, Probe::Tcp);
        assert_eq!(h.port, 80);
        assert_eq!(h.interval, Duration::from_secs(10));
        assert_eq!(h.timeout, Duration::from_secs(5));
        assert_eq!(
            (h.healthy_threshold, h.unhealthy_threshold, h.jitter_percent),
            (5, 2, 10)
        );
        let t = &g.targets[0];
        assert_eq!(t.address, IpAddr::from([10, 0, 0, 10]));
        assert_eq!((t.weight, t.port), (1, 0));
        assert_eq!(t.mac.map(|m| m.0), Some([2, 0, 0, 0, 0, 0x10]));

        let ctl = &c.control;
        assert_eq!(
            ctl.api_listen,
            Some(Listen::Tcp("127.0.0.1:9090".parse().unwrap()))
        );
        assert_eq!(
            ctl.metrics_listen,
            Some(Listen::Tcp("127.0.0.1:9091".parse().unwrap()))
        );
        assert_eq!(ctl.api_token, None);
        assert_eq!(ctl.log_format, LogFormat::Auto);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn test_round_trip() {
        for text in [MINIMAL, TWO_ARM] {
            let c = parse(text);
            let again = c.to_toml_string();
            let c2 = Config::from_toml_str(&again).unwrap_or_else(|e| panic!("{e}\n{again}"));
            assert_eq!(c, c2, "{again}");
        }
    }

    #[test]
    fn test_round_trip_full() {
        let text = r#"
[dataplane]
worker_cpus = [2, 3]
main_cpu = 1
hugepages = "off"
memory_mb = 1024
eal_args = ["--log-level=lib.eal:debug"]
burst_size = 16
tx_flush_us = 50
stats_interval_s = 5
flow_hash_seed = "0xffffffffffffffff"

[[ports]]
name = "p0"
device = "0000:3b:00.0,txq_inline_max=128"
role = "both"
address = ["10.0.0.1/24", "fd00::1/64"]
mac = "02:00:00:00:00:01"
rx_queues = 4
tx_queues = 4
kernel_interface = "gw0"

[[routes]]
prefix = "fd00:1::/48"
via = "fd00::fe"
port = "p0"

[[routes]]
prefix = "10.0.0.0/24"
port = "p0"

[[neighbors]]
address = "10.0.0.10"
mac = "02:00:00:00:00:0a"
port = "p0"

[[target_groups]]
name = "fw"
stickiness = "2-tuple"
on_unhealthy = "rebalance"
on_all_unhealthy = "fail_open"
endpoint_id = "0x8000000000000001"
attachment_id = 7
[target_groups.health_check]
protocol = "http"
path = "/healthz"
success_codes = "200,204-206"
[[target_groups.targets]]
address = "10.0.0.10"
weight = 0
[[target_groups.targets]]
address = "fd00::10"
mac = "02:00:00:00:00:0b"

[control]
api_listen = "unix:/run/gwlb/api.sock"
metrics_listen = "off"
log_format = "json"
"#;
        let c = parse(text);
        assert_eq!(c.dataplane.flow_hash_seed, u64::MAX);
        assert_eq!(c.target_groups[0].endpoint_id, 0x8000_0000_0000_0001);
        assert_eq!(c.ports[0].ipv6, Some("fd00::1/64".parse().unwrap()));
        assert_eq!(
            c.target_groups[0].health_check.probe,
            Probe::Http {
                path: "/healthz".into(),
                success_codes: StatusCodes(vec![200..=200, 204..=206]),
            }
        );
        assert_eq!(
            c.control.api_listen,
            Some(Listen::Unix("/run/gwlb/api.sock".into()))
        );
        let again = c.to_toml_string();
        assert_eq!(
            Config::from_toml_str(&again).unwrap_or_else(|e| panic!("{e}\n{again}")),
            c
        );
    }

    #[test]
    fn test_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    c.warnings().is_empty(),
                    "{}: {:?}",
                    path.display(),
                    c.warnings()
                );
                n += 1;
            }
        }
        assert!(n >= 3, "expected the three example configs, found {n}");
    }

    #[test]
    fn test_load_errors_name_file() {
        let e = Config::load("/nonexistent/gwlb.toml").unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/gwlb.toml: "), "{e}");
    }

    // --- TOML-level errors -------------------------------------------------------------------

    #[test]
    fn test_unknown_field() {
        expect_err(
            &port_with("nmae = \"x\""),
            "ports[0].nmae",
            "unknown field `nmae`",
        );
        expect_err(
            &with("[dataplane]\nburst = 3"),
            "dataplane.burst",
            "unknown field",
        );
        expect_err(&with("[bogus]\nx = 1"), "bogus", "unknown field");
        expect_err(
            &MINIMAL.replace(
                "address = \"10.0.0.10\"",
                "address = \"10.0.0.10\"\nwieght = 2",
            ),
            "target_groups[0].targets[0].wieght",
            "unknown field",
        );
        expect_err(
            &with("[target_groups.health_check]\nintervall_ms = 1"),
            "target_groups[0].health_check.intervall_ms",
            "unknown field",
        );
    }

    #[test]
    fn test_unknown_variant() {
        expect_err(
            &MINIMAL.replace("role = \"both\"", "role = \"foo\""),
            "ports[0].role",
            "unknown variant `foo`, expected one of `user`, `appliance`, `both`",
        );
        expect_err(
            &group_with("stickiness = \"4-tuple\""),
            "target_groups[0].stickiness",
            "unknown variant",
        );
    }

    #[test]
    fn test_type_errors() {
        expect_err(
            &port_with("mtu = \"big\""),
            "ports[0].mtu",
            "invalid type: string \"big\", expected an integer",
        );
        expect_err(
            &with("[dataplane]\nworker_cpus = [1, \"x\"]"),
            "dataplane.worker_cpus[1]",
            "invalid type",
        );
        expect_err(
            &group_with("health_check = { interval_ms = true }"),
            "target_groups[0].health_check.interval_ms",
            "invalid type",
        );
        expect_err(
            &group_with("endpoint_id = -1"),
            "target_groups[0].endpoint_id",
            "negative",
        );
        expect_err(
            &group_with("endpoint_id = \"0xzz\""),
            "target_groups[0].endpoint_id",
            "not a 64-bit",
        );
    }

    #[test]
    fn test_missing_field() {
        expect_err(
            &MINIMAL.replace("role = \"both\"\n", ""),
            "ports[0].role",
            "missing field",
        );
        expect_err(
            &MINIMAL.replace("address = \"10.0.0.10\"", "weight = 1"),
            "target_groups[0].targets[0].address",
            "missing field",
        );
    }

    #[test]
    fn test_syntax_error() {
        let e = Config::from_toml_str(&port_with("mtu = = 3")).unwrap_err();
        assert_eq!(e.field(), Some("ports[0].mtu"), "{e}");
        assert!(e.to_string().contains("line "), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        let e =
            Config::from_toml_str(&with("[[target_groups.targets]]\naddress = \"x")).unwrap_err();
        assert_eq!(
            e.field(),
            Some("target_groups[0].targets[1].address"),
            "{e}"
        );
    }

    // --- dataplane -----------------------------------------------------------------------------

    #[test]
    fn test_dataplane_rules() {
        expect_err(
            &with("[dataplane]\nworker_cpus = []"),
            "dataplane.worker_cpus",
            "at least one",
        );
        expect_err(
            &with("[dataplane]\nworker_cpus = [1, 2, 1]"),
            "dataplane.worker_cpus[2]",
            "twice",
        );
        expect_err(
            &with("[dataplane]\nworker_cpus = [-1]"),
            "dataplane.worker_cpus[0]",
            "out of range 0..=1023",
        );
        let shared = Config::from_toml_str(&with("[dataplane]\nmain_cpu = 1")).unwrap();
        assert!(shared
            .warnings()
            .iter()
            .any(|w| w.field == "dataplane.main_cpu"));
        expect_err(
            &with("[dataplane]\nburst_size = 65"),
            "dataplane.burst_size",
            "65 is out of range 1..=64",
        );
        expect_err(
            &with("[dataplane]\ntx_flush_us = 0"),
            "dataplane.tx_flush_us",
            "out of range 1..=10000",
        );
        expect_err(
            &with("[dataplane]\nflow_table_capacity = 1000"),
            "dataplane.flow_table_capacity",
            "out of range",
        );
        expect_err(
            &with("[dataplane]\nmbufs_per_worker = 10"),
            "dataplane.mbufs_per_worker",
            "out of range",
        );
        expect_err(
            &with("[dataplane]\nmemory_mb = 1"),
            "dataplane.memory_mb",
            "out of range",
        );
        expect_err(
            &with("[dataplane]\nstats_interval_s = -1"),
            "dataplane.stats_interval_s",
            "out of range",
        );
        expect_err(
            &with("[dataplane]\neal_args = [\"-l\", \"1-3\"]"),
            "dataplane.eal_args[0]",
            "-l is set by gwlb",
        );
        expect_err(
            &with("[dataplane]\neal_args = [\"--lcores=1@2\"]"),
            "dataplane.eal_args[0]",
            "--lcores",
        );
        expect_err(
            &with("[dataplane]\neal_args = [\"-m512\"]"),
            "dataplane.eal_args[0]",
            "-m is set",
        );
        expect_err(
            &with("[dataplane]\neal_args = [\"\"]"),
            "dataplane.eal_args[0]",
            "empty",
        );
        parse(&with("[dataplane]\neal_args = [\"--log-level=debug\", \"--socket-mem=512\", \"--iova-mode=va\"]"));
        let c = parse(&with(
            "[dataplane]\nflow_hash_seed = 12345\nstats_interval_s = 10",
        ));
        assert_eq!(c.dataplane.flow_hash_seed, 12345);
        assert_eq!(c.dataplane.stats_interval, Some(Duration::from_secs(10)));
    }

    // --- ports ---------------------------------------------------------------------------------

    #[test]
    fn test_port_rules() {
        expect_err(
            &port_with("mtu = 100"),
            "ports[0].mtu",
            "100 is out of range 576..=9600",
        );
        expect_err(
            &port_with("mac = \"01:00:5e:00:00:01\""),
            "ports[0].mac",
            "not a unicast",
        );
        expect_err(
            &port_with("mac = \"zz:00:00:00:00:01\""),
            "ports[0].mac",
            "invalid MAC",
        );
        expect_err(
            &port_with("kernel_interface = \"much-too-long-name\""),
            "ports[0].kernel_interface",
            "interface name",
        );
        expect_err(
            &port_with("kernel_interface = \"a/b\""),
            "ports[0].kernel_interface",
            "interface name",
        );
        expect_err(
            &port_with("rx_queues = 0"),
            "ports[0].rx_queues",
            "out of range 1..=1024",
        );
        expect_err(
            &MINIMAL.replace("net_af_packet0,iface=veth0", "0000:03:00"),
            "ports[0].device",
            "invalid PCI address",
        );
        expect_err(
            &MINIMAL.replace("net_af_packet0,iface=veth0", "0000:03:20.0"),
            "ports[0].device",
            "PCI",
        );
        expect_err(
            &MINIMAL.replace("net_af_packet0,iface=veth0", "net_"),
            "ports[0].device",
            "vdev",
        );
        expect_err(
            &MINIMAL.replace("name = \"eth0\"", "name = \"a b\""),
            "ports[0].name",
            "not a valid name",
        );
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "10.0.0.1"),
            "ports[0].address",
            "ADDRESS/LENGTH",
        );
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "10.0.0.1/33"),
            "ports[0].address",
            "invalid prefix",
        );
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "10.0.0.0/24"),
            "ports[0].address",
            "network address",
        );
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "0.0.0.0/0"),
            "ports[0].address",
            "not a unicast host",
        );
        expect_err(
            &MINIMAL.replace("\"10.0.0.1/24\"", "[\"10.0.0.1/24\", \"10.1.0.1/24\"]"),
            "ports[0].address[1]",
            "second IPv4",
        );
        expect_err(
            &MINIMAL.replace("\"10.0.0.1/24\"", "[]"),
            "ports[0].address",
            "at least one",
        );
        // Address with a /31 or /32 may equal its network address.
        parse(
            &MINIMAL
                .replace("10.0.0.1/24", "10.0.0.10/31")
                .replace("10.0.0.10\"", "10.0.0.11\""),
        );
    }

    #[test]
    fn test_port_count_and_roles() {
        let no_ports = MINIMAL.replace("[[ports]]", "[oops]").replace("[oops]", "");
        // Removing the header leaves its keys at the top level: an unknown-field error.
        assert!(Config::from_toml_str(&no_ports).is_err());
        expect_err("[[target_groups]]\nname = \"fw\"", "ports", "0 ports");
        expect_err(
            &TWO_ARM.replace("role = \"appliance\"", "role = \"user\""),
            "ports[1].role",
            "two-arm",
        );
        expect_err(
            &TWO_ARM.replace("role = \"user\"", "role = \"both\""),
            "ports[1].role",
            "one-arm",
        );
        expect_err(
            &MINIMAL.replace("role = \"both\"", "role = \"user\""),
            "ports[0].role",
            "expected one port",
        );
        let three = format!(
            "{TWO_ARM}\n[[ports]]\nname = \"x\"\ndevice = \"0000:04:00.0\"\nrole = \"user\"\naddress = \"10.0.9.1/24\""
        );
        expect_err(&three, "ports", "3 ports");
        expect_err(
            &TWO_ARM.replace("name = \"app\"", "name = \"user\""),
            "ports[1].name",
            "already the name",
        );
        expect_err(
            &TWO_ARM.replace("0000:03:00.1", "0000:03:00.0"),
            "ports[1].device",
            "already used",
        );
        expect_err(
            &TWO_ARM.replace("10.0.2.1/24", "10.0.1.2/16"),
            "ports[1].address",
            "overlaps",
        );
        let c = parse(TWO_ARM);
        assert_eq!(c.ports[0].rx_queues, 2);
        assert_eq!(c.ports[1].tx_queues, 2);
        assert_eq!(c.target_groups[0].user_ports, vec![0]);
        assert_eq!(c.target_groups[0].targets[1].port, 1);
        assert_eq!(c.routes[0].via, Some(IpAddr::from([10, 0, 1, 254])));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn test_queue_sanity() {
        let four = |s: &str| format!("[dataplane]\nworker_cpus = [1, 2, 3, 4]\n{s}");
        let c = parse(&four(&port_with("rx_queues = 2")));
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.field == "ports[0].rx_queues" && w.message.contains("poll nothing")));
        let c = parse(&four(&port_with("rx_queues = 6")));
        assert!(c.warnings().iter().any(|w| w.message.contains("evenly")));
        expect_err(
            &four(&port_with("tx_queues = 3")),
            "ports[0].tx_queues",
            "each worker needs its own",
        );
        let c = parse(&four(&port_with("tx_queues = 0")));
        assert_eq!((c.ports[0].rx_queues, c.ports[0].tx_queues), (4, 4));
    }

    #[test]
    fn test_mtu_warning() {
        let c = parse(&TWO_ARM.replace("mtu = 9000", "mtu = 1500"));
        let w = &c.warnings()[0];
        assert_eq!(w.field, "ports[1].mtu");
        assert!(w.to_string().contains("1568"), "{w}");
    }

    // --- routes and neighbors ------------------------------------------------------------------

    #[test]
    fn test_route_rules() {
        let route = |prefix: &str, via: &str, port: &str| {
            let via = if via.is_empty() {
                String::new()
            } else {
                format!("via = \"{via}\"\n")
            };
            with(&format!(
                "[[routes]]\nprefix = \"{prefix}\"\n{via}port = \"{port}\""
            ))
        };
        parse(&route("10.2.0.0/16", "10.0.0.254", "eth0"));
        parse(&route("10.0.0.0/24", "", "eth0"));
        expect_err(
            &route("10.2.0.0/16", "10.1.0.254", "eth0"),
            "routes[0].via",
            "not in a connected subnet of port \"eth0\"",
        );
        expect_err(
            &route("10.2.0.0/16", "10.0.0.254", "eth1"),
            "routes[0].port",
            "no port named \"eth1\"",
        );
        expect_err(
            &route("10.2.0.1/16", "10.0.0.254", "eth0"),
            "routes[0].prefix",
            "host bits set; did you mean 10.2.0.0/16",
        );
        expect_err(
            &route("10.2.0.0/16", "fd00::1", "eth0"),
            "routes[0].via",
            "IPv6 next hop for IPv4 prefix",
        );
        expect_err(
            &route("fd00::/16", "", "eth0"),
            "routes[0].port",
            "no IPv6 address",
        );
        expect_err(
            &route("10.2.0.0/16", "10.0.0.1", "eth0"),
            "routes[0].via",
            "own address",
        );
        expect_err(
            &route("10.2.0.0/99", "", "eth0"),
            "routes[0].prefix",
            "invalid prefix",
        );
        let twice = format!(
            "{}\n[[routes]]\nprefix = \"10.2.0.0/16\"\nport = \"eth0\"",
            route("10.2.0.0/16", "10.0.0.254", "eth0")
        );
        expect_err(&twice, "routes[1].prefix", "already routed by routes[0]");
        let app_route = format!(
            "{TWO_ARM}\n[[routes]]\nprefix = \"10.9.0.0/16\"\nvia = \"10.0.2.254\"\nport = \"app\""
        );
        expect_err(&app_route, "routes[1].port", "role \"appliance\"");
    }

    #[test]
    fn test_neighbor_rules() {
        let nb = |addr: &str, mac: &str| {
            with(&format!(
                "[[neighbors]]\naddress = \"{addr}\"\nmac = \"{mac}\"\nport = \"eth0\""
            ))
        };
        let c = parse(&nb("10.0.0.10", "aa:bb:cc:dd:ee:f0"));
        assert_eq!(
            c.neighbors[0].mac,
            MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0])
        );
        expect_err(
            &nb("10.9.0.10", "02:00:00:00:00:01"),
            "neighbors[0].address",
            "not in a connected subnet",
        );
        expect_err(
            &nb("10.0.0.10", "ff:ff:ff:ff:ff:ff"),
            "neighbors[0].mac",
            "not a unicast",
        );
        expect_err(
            &nb("10.0.0.10", "02:00:00:00:00"),
            "neighbors[0].mac",
            "invalid MAC",
        );
        expect_err(
            &nb("nope", "02:00:00:00:00:01"),
            "neighbors[0].address",
            "invalid IP address",
        );
        let twice = format!("{}\n[[neighbors]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:02\"\nport = \"eth0\"", nb("10.0.0.10", "02:00:00:00:00:01"));
        expect_err(
            &twice,
            "neighbors[1].address",
            "already set by neighbors[0]",
        );
        expect_err(
            &with(
                "[[neighbors]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:01\"\nport = \"x\"",
            ),
            "neighbors[0].port",
            "no port named",
        );
    }

    // --- target groups -------------------------------------------------------------------------

    #[test]
    fn test_group_ranges() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "deregistration_delay_s = 3601",
                "deregistration_delay_s",
                "out of range 0..=3600",
            ),
            (
                "tcp_idle_timeout_s = 59",
                "tcp_idle_timeout_s",
                "out of range 60..=6000",
            ),
            (
                "other_idle_timeout_s = 0",
                "other_idle_timeout_s",
                "out of range 1..=6000",
            ),
            (
                "geneve_vni = 16777216",
                "geneve_vni",
                "out of range 0..=16777215",
            ),
            ("outer_ttl = 0", "outer_ttl", "out of range 1..=255"),
            (
                "maglev_table_size = 65536",
                "maglev_table_size",
                "not prime",
            ),
            (
                "maglev_table_size = 16777259",
                "maglev_table_size",
                "out of range 2..=16777216",
            ),
            ("name = \"\"", "name", "not a valid name"),
        ];
        for (line, field, needle) in cases {
            let text = if line.starts_with("name") {
                MINIMAL.replace("name = \"fw\"", line)
            } else {
                group_with(line)
            };
            expect_err(&text, &format!("target_groups[0].{field}"), needle);
        }
        let c = parse(&group_with("geneve_vni = 16777215\nendpoint_id = 5\nattachment_id = \"0x10\"\nstickiness = \"3-tuple\""));
        let g = &c.target_groups[0];
        assert_eq!(
            (g.geneve_vni, g.endpoint_id, g.attachment_id),
            (16_777_215, 5, 16)
        );
        assert_eq!(g.stickiness, Stickiness::ThreeTuple);
    }

    #[test]
    fn test_maglev_size_vs_targets() {
        let c = parse(&group_with("maglev_table_size = 251"));
        assert!(c.warnings().is_empty());
        let c = parse(&group_with("maglev_table_size = 97"));
        assert_eq!(c.warnings()[0].field, "target_groups[0].maglev_table_size");
        let two = MINIMAL.replace("name = \"fw\"", "name = \"fw\"\nmaglev_table_size = 2")
            + "[[target_groups.targets]]\naddress = \"10.0.0.11\"\n[[target_groups.targets]]\naddress = \"10.0.0.12\"\n";
        expect_err(
            &two,
            "target_groups[0].maglev_table_size",
            "smaller than the number of targets (3)",
        );
    }

    #[test]
    fn test_group_names_and_user_ports() {
        let second = "[[target_groups]]\nname = \"fw\"\nuser_ports = []";
        expect_err(
            &with(second),
            "target_groups[1].name",
            "already the name of target_groups[0]",
        );
        expect_err(
            &with("[[target_groups]]\nname = \"ids\""),
            "target_groups[1].user_ports",
            "already belongs to target_groups[0] (\"fw\") (by default",
        );
        let c = parse(&with("[[target_groups]]\nname = \"ids\"\nuser_ports = []"));
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.field == "target_groups[1].user_ports"));
        expect_err(
            &group_with("user_ports = [\"nope\"]"),
            "target_groups[0].user_ports[0]",
            "no port named",
        );
        expect_err(
            &group_with("user_ports = [\"eth0\", \"eth0\"]"),
            "target_groups[0].user_ports[1]",
            "twice",
        );
        let two_arm = TWO_ARM.replace("name = \"fw\"", "name = \"fw\"\nuser_ports = [\"app\"]");
        expect_err(
            &two_arm,
            "target_groups[0].user_ports[0]",
            "role \"appliance\"",
        );
        let none = TWO_ARM.replace("name = \"fw\"", "name = \"fw\"\nuser_ports = []");
        let c = parse(&none);
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.field == "ports[0]" && w.message.contains("no target group")));
        expect_err(&MINIMAL.replace("[[target_groups]]\nname = \"fw\"\n[[target_groups.targets]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:10\"\n", ""), "target_groups", "at least one");
    }

    #[test]
    fn test_target_rules() {
        let t = |addr: &str, extra: &str| {
            let base = if extra.contains("mac =") {
                MINIMAL.replace("mac = \"02:00:00:00:00:10\"\n", "")
            } else {
                MINIMAL.to_owned()
            };
            base.replace(
                "address = \"10.0.0.10\"",
                &format!("address = \"{addr}\"\n{extra}"),
            )
        };
        // A MAC nobody can learn: no static MAC, no [[neighbors]] entry, no kernel_interface.
        let unresolvable = MINIMAL.replace("mac = \"02:00:00:00:00:10\"\n", "");
        expect_err(
            &unresolvable,
            "target_groups[0].targets[0].mac",
            "has no kernel_interface",
        );
        parse(&unresolvable.replacen(
            "role = \"both\"",
            "role = \"both\"\nkernel_interface = \"gw0\"",
            1,
        ));
        parse(&format!(
            "{unresolvable}\n[[neighbors]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:10\"\nport = \"eth0\"\n"
        ));
        // Network and broadcast addresses are no hosts.
        expect_err(
            &t("10.0.0.255", ""),
            "target_groups[0].targets[0].address",
            "broadcast address",
        );
        expect_err(
            &t("10.0.0.0", ""),
            "target_groups[0].targets[0].address",
            "network or broadcast",
        );
        // Nor is a port's own address the subnet's broadcast address (a /31 has none).
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "10.0.0.255/24"),
            "ports[0].address",
            "the subnet's broadcast address",
        );
        parse(&MINIMAL.replace("10.0.0.1/24", "10.0.0.11/31"));
        // More targets than the gateway has slots for.
        let many: String = (0..4097)
            .map(|i| {
                format!(
                    "[[target_groups.targets]]\naddress = \"10.{}.{}.{}\"\nmac = \"02:00:00:00:00:10\"\n",
                    1 + i / 62500,
                    (i / 250) % 250,
                    2 + i % 250
                )
            })
            .collect();
        expect_err(
            &format!("{}\n{many}", MINIMAL.replace("10.0.0.1/24", "10.0.0.1/8")),
            "target_groups",
            "at most 4096",
        );
        // A huge value is not echoed whole.
        let huge = "x".repeat(100_000);
        let e = Config::from_toml_str(&t("10.0.0.10", &format!("port = \"{huge}\""))).unwrap_err();
        assert!(e.to_string().len() < 2_000, "{} bytes", e.to_string().len());
        expect_err(
            &t("10.1.0.10", ""),
            "target_groups[0].targets[0].address",
            "not in a connected subnet of an appliance-facing port",
        );
        expect_err(
            &t("10.0.0.1", ""),
            "target_groups[0].targets[0].address",
            "own address",
        );
        expect_err(
            &t("224.0.0.1", ""),
            "target_groups[0].targets[0].address",
            "not a unicast",
        );
        expect_err(
            &t("fd00::10", ""),
            "target_groups[0].targets[0].address",
            "not in a connected subnet",
        );
        expect_err(
            &t("10.0.0.10", "weight = 1001"),
            "target_groups[0].targets[0].weight",
            "1001 is out of range 0..=1000",
        );
        expect_err(
            &t("10.0.0.10", "mac = \"02:00\""),
            "target_groups[0].targets[0].mac",
            "invalid MAC",
        );
        expect_err(
            &t("10.0.0.10", "port = \"x\""),
            "target_groups[0].targets[0].port",
            "no port named",
        );
        let dup = format!("{MINIMAL}[[target_groups.targets]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:10\"\n");
        expect_err(
            &dup,
            "target_groups[0].targets[1].address",
            "already target_groups[0].targets[0]",
        );
        // Two-arm: a target on the user port's subnet is refused, naming the port.
        let user_side = TWO_ARM.replace("10.0.2.12", "10.0.1.12");
        expect_err(
            &user_side,
            "target_groups[0].targets[1].address",
            "\"app\": 10.0.2.1/24",
        );
        let explicit = TWO_ARM.replace(
            "address = \"10.0.2.12\"",
            "address = \"10.0.2.12\"\nport = \"user\"",
        );
        expect_err(
            &explicit,
            "target_groups[0].targets[1].port",
            "role \"user\"",
        );
        let c = parse(&t("10.0.0.10", "weight = 0"));
        assert!(c.warnings().iter().any(|w| w.message.contains("weight 0")));
        let c = parse(&MINIMAL.replace(
            "[[target_groups.targets]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:10\"\n",
            "",
        ));
        assert!(c.target_groups[0].targets.is_empty());
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.field == "target_groups[0].targets"));
        // The same appliance in two groups: its returns could not be matched to a group.
        let two = format!(
            "{TWO_ARM}\n[[target_groups]]\nname = \"ids\"\nuser_ports = []\n[[target_groups.targets]]\naddress = \"10.0.2.12\"\n"
        );
        expect_err(
            &two,
            "target_groups[1].targets[0].address",
            "is already target_groups[0].targets[1]",
        );
    }

    #[test]
    fn test_health_check_rules() {
        let hc = |body: &str| with(&format!("[target_groups.health_check]\n{body}"));
        expect_err(
            &hc("interval_ms = 50"),
            "target_groups[0].health_check.interval_ms",
            "50 is out of range 100..=300000",
        );
        expect_err(
            &hc("timeout_ms = 10"),
            "target_groups[0].health_check.timeout_ms",
            "out of range 50..=120000",
        );
        expect_err(
            &hc("interval_ms = 1000\ntimeout_ms = 1000"),
            "target_groups[0].health_check.timeout_ms",
            "less than interval_ms (1000)",
        );
        expect_err(
            &hc("healthy_threshold = 1"),
            "target_groups[0].health_check.healthy_threshold",
            "out of range 2..=10",
        );
        expect_err(
            &hc("unhealthy_threshold = 11"),
            "target_groups[0].health_check.unhealthy_threshold",
            "out of range 2..=10",
        );
        expect_err(
            &hc("jitter_percent = 51"),
            "target_groups[0].health_check.jitter_percent",
            "out of range 0..=50",
        );
        expect_err(
            &hc("port = 0"),
            "target_groups[0].health_check.port",
            "out of range 1..=65535",
        );
        expect_err(
            &hc("path = \"/x\""),
            "target_groups[0].health_check.path",
            "only valid with protocol = \"http\"",
        );
        expect_err(
            &hc("success_codes = \"200\""),
            "target_groups[0].health_check.success_codes",
            "only valid",
        );
        expect_err(
            &hc("protocol = \"http\"\npath = \"x\""),
            "target_groups[0].health_check.path",
            "starting with '/'",
        );
        expect_err(
            &hc("protocol = \"http\"\npath = \"/a b\""),
            "target_groups[0].health_check.path",
            "without spaces",
        );
        expect_err(
            &hc("protocol = \"http\"\nsuccess_codes = \"99\""),
            "target_groups[0].health_check.success_codes",
            "100..=599",
        );
        expect_err(
            &hc("protocol = \"http\"\nsuccess_codes = \"300-200\""),
            "target_groups[0].health_check.success_codes",
            "empty",
        );
        expect_err(
            &hc("protocol = \"https\""),
            "target_groups[0].health_check.protocol",
            "unknown variant",
        );
        let c = parse(&hc(
            "protocol = \"http\"\ninterval_ms = 100\ntimeout_ms = 50\nenabled = false",
        ));
        let h = &c.target_groups[0].health_check;
        assert!(!h.enabled);
        assert_eq!(
            h.probe,
            Probe::Http {
                path: "/".into(),
                success_codes: StatusCodes(vec![200..=399])
            }
        );
        assert_eq!(
            (h.interval, h.timeout),
            (Duration::from_millis(100), Duration::from_millis(50))
        );
    }

    // --- control -------------------------------------------------------------------------------

    #[test]
    fn test_control_rules() {
        let ctl = |body: &str| with(&format!("[control]\n{body}"));
        expect_err(
            &ctl("api_listen = \"0.0.0.0:9090\""),
            "control.api_token",
            "required when control.api_listen (0.0.0.0:9090)",
        );
        let c = parse(&ctl(
            "api_listen = \"0.0.0.0:9090\"\napi_token = \"0123456789abcdef\"",
        ));
        assert!(c.warnings().is_empty());
        let c = parse(&ctl("api_listen = \"[::]:9090\"\napi_token = \"short\""));
        assert_eq!(c.warnings()[0].field, "control.api_token");
        expect_err(
            &ctl("api_listen = \"unix:relative.sock\""),
            "control.api_listen",
            "absolute",
        );
        expect_err(
            &ctl("api_listen = \"localhost:80\""),
            "control.api_listen",
            "invalid listen address",
        );
        expect_err(
            &ctl("metrics_listen = \"127.0.0.1:0\""),
            "control.metrics_listen",
            "port 0",
        );
        expect_err(
            &ctl("metrics_listen = \"127.0.0.1:9090\""),
            "control.metrics_listen",
            "same address",
        );
        expect_err(
            &ctl("log_format = \"xml\""),
            "control.log_format",
            "unknown variant",
        );
        let c = parse(&ctl("api_listen = \"off\"\nmetrics_listen = \"\""));
        assert_eq!(
            (
                c.control.api_listen.clone(),
                c.control.metrics_listen.clone()
            ),
            (None, None)
        );
    }

    // --- value types ---------------------------------------------------------------------------

    #[test]
    fn test_value_types() {
        let m: MacAddr = "AA:bb:cc:dd:ee:ff".parse().unwrap();
        assert_eq!(m.to_string(), "aa:bb:cc:dd:ee:ff");
        assert!("aa:bb:cc:dd:ee:ff:00".parse::<MacAddr>().is_err());
        assert!("aabb:cc:dd:ee:ff".parse::<MacAddr>().is_err());

        let n: Ipv4Net = "10.0.1.1/24".parse().unwrap();
        assert!(n.contains(Ipv4Addr::new(10, 0, 1, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 0, 2, 1)));
        assert_eq!(n.network(), Ipv4Addr::new(10, 0, 1, 0));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(IpAddr::from([8, 8, 8, 8])));
        assert!(!all.contains("::1".parse().unwrap()));
        let n6: IpNet = "fd00:1::1/48".parse().unwrap();
        assert!(n6.contains("fd00:1:0:ffff::9".parse().unwrap()));
        assert_eq!(n6.network().to_string(), "fd00:1::");
        let host: Ipv6Net = "::1/128".parse().unwrap();
        assert!(host.contains(Ipv6Addr::LOCALHOST));

        let p: PciAddr = "0000:3b:00.1".parse().unwrap();
        assert_eq!((p.domain, p.bus, p.device, p.function), (0, 0x3b, 0, 1));
        assert_eq!(p.to_string(), "0000:3b:00.1");
        assert!("0000:3b:00.8".parse::<PciAddr>().is_err());
        assert!("3b:00.0".parse::<PciAddr>().is_err());
        let d: Device = "0000:3b:00.1,txq_inline_max=128".parse().unwrap();
        assert_eq!(d.to_string(), "0000:3b:00.1,txq_inline_max=128");

        assert!(is_prime(65537) && is_prime(2) && is_prime(16_777_213));
        assert!(!is_prime(1) && !is_prime(65536) && !is_prime(65535));

        let codes: StatusCodes = "200, 204-206,301".parse().unwrap();
        assert!(codes.contains(205) && codes.contains(301) && !codes.contains(300));
        assert_eq!(codes.to_string(), "200,204-206,301");
    }
}
