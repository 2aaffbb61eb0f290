//! Network value types: Ethernet MAC addresses ([`MacAddr`]), IPv4/IPv6 prefixes
//! ([`Ipv4Net`], [`Ipv6Net`], [`IpNet`]) as the configuration writes them, and the fixed-size
//! 16-byte address the data path keys flows, appliances and neighbours on ([`IpAddrBytes`],
//! IPv4 stored IPv4-mapped as in [RFC 4291 section 2.5.5.2]).
//!
//! Declared once here; `crate::config` and `crate::parse` re-export them under their old
//! paths.
//!
//! [RFC 4291 section 2.5.5.2]: https://www.rfc-editor.org/rfc/rfc4291#section-2.5.5.2

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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
    pub fn mask(&self) -> u32 {
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
    /// The netmask as an integer.
    pub fn mask(&self) -> u128 {
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
    /// The host route of `addr` (/32 or /128).
    pub fn host(addr: IpAddr) -> IpNet {
        match addr {
            IpAddr::V4(addr) => IpNet::V4(Ipv4Net {
                addr,
                prefix_len: 32,
            }),
            IpAddr::V6(addr) => IpNet::V6(Ipv6Net {
                addr,
                prefix_len: 128,
            }),
        }
    }

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

/// An IPv4 or IPv6 address as 16 network-order bytes; IPv4 is stored IPv4-mapped
/// (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2) so both families share one fixed-size, `Copy`
/// representation without allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IpAddrBytes(pub [u8; 16]);

/// The order of the bytes read as one big-endian 128-bit number: the same order as comparing
/// the bytes lexicographically (what a derive gives), in two 64-bit compares instead of a
/// byte loop. The data path binary-searches sorted address tables (appliances by address,
/// neighbours) with it on every return.
impl Ord for IpAddrBytes {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        u128::from_be_bytes(self.0).cmp(&u128::from_be_bytes(other.0))
    }
}

impl PartialOrd for IpAddrBytes {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl IpAddrBytes {
    /// The all-zero address (unset).
    pub const ZERO: IpAddrBytes = IpAddrBytes([0; 16]);

    /// IPv4-mapped form of an IPv4 address given in network order.
    #[inline]
    pub const fn from_v4(a: [u8; 4]) -> Self {
        IpAddrBytes([
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
        ])
    }

    /// An IPv6 address given in network order.
    #[inline]
    pub const fn from_v6(a: [u8; 16]) -> Self {
        IpAddrBytes(a)
    }

    /// The last four bytes: the IPv4 address of an IPv4-mapped address, whatever the rest
    /// holds (for code that already knows the family).
    #[inline]
    pub fn low_octets(&self) -> [u8; 4] {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.0[12..]);
        a
    }

    /// The IPv4 address if this is IPv4-mapped.
    #[inline]
    pub fn as_v4(&self) -> Option<[u8; 4]> {
        let b = &self.0;
        if b[..10] == [0; 10] && b[10] == 0xff && b[11] == 0xff {
            Some([b[12], b[13], b[14], b[15]])
        } else {
            None
        }
    }

    /// As a std address (IPv4 when IPv4-mapped).
    pub fn to_ip_addr(&self) -> std::net::IpAddr {
        match self.as_v4() {
            Some(v4) => std::net::IpAddr::from(v4),
            None => std::net::IpAddr::from(self.0),
        }
    }
}

impl From<std::net::IpAddr> for IpAddrBytes {
    fn from(a: std::net::IpAddr) -> Self {
        match a {
            std::net::IpAddr::V4(v4) => Self::from_v4(v4.octets()),
            std::net::IpAddr::V6(v6) => Self::from_v6(v6.octets()),
        }
    }
}

impl From<std::net::Ipv4Addr> for IpAddrBytes {
    fn from(a: std::net::Ipv4Addr) -> Self {
        Self::from_v4(a.octets())
    }
}

impl From<std::net::Ipv6Addr> for IpAddrBytes {
    fn from(a: std::net::Ipv6Addr) -> Self {
        Self::from_v6(a.octets())
    }
}

impl fmt::Debug for IpAddrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ip_addr())
    }
}

impl fmt::Display for IpAddrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ip_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn test_ip_addr_bytes() {
        let a = IpAddrBytes::from(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(a.as_v4(), Some([10, 0, 0, 1]));
        assert_eq!(a.to_string(), "10.0.0.1");
        let b = IpAddrBytes::from("fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(b.as_v4(), None);
        assert_eq!(b.to_ip_addr(), "fd00::1".parse::<IpAddr>().unwrap());
        assert!(a < b, "IPv4-mapped sorts below fd00::/8");
        assert_eq!(IpAddrBytes::ZERO, IpAddrBytes::default());
    }
}
