//! The wire layer: every header gwlb writes or patches, one file per header, in the shape of
//! the repository's `geneve` crate and smoltcp's `wire` module.
//!
//! Each header file has:
//!
//! * a private `mod field` of byte ranges, so that no code outside this module uses a magic
//!   offset;
//! * a zero-copy view over any `T: AsRef<[u8]>` with getters, and setters in a second `impl`
//!   bounded on `AsMut<[u8]>`;
//! * a `Repr` with `emit` where gwlb builds that header (Ethernet, IPv4, IPv6, UDP, TCP);
//! * in-file tests against static byte arrays, emission into a poisoned buffer and truncated
//!   input.
//!
//! [`checksum`] is the one Internet checksum (RFC 1071) of the crate: the ones'-complement sum
//! and fold, the IPv4 / IPv6 pseudo-headers and the incremental update of RFC 1624.
//! [`addr`] holds the network value types (MAC address, IP prefixes, the 16-byte address the
//! data path keys on). The ethertypes ([`ethertype`]) and IP protocol numbers ([`proto`]) are
//! declared here once; `parse` re-exports them.
//!
//! # No-panic contract
//!
//! After `new_checked` (or `check_len`) has succeeded on a view, no getter or setter of that
//! view panics, whatever the bytes are. `new_unchecked` views panic on access past the end of
//! their buffer; the data path builds them over fixed-size arrays (`&mut [u8; N]`, e.g. from
//! `first_chunk_mut`), where the compiler proves every access in bounds and emits no check.
//! `new_checked` is for parsing; never use it to emit into a reused buffer, where stale length
//! fields decide whether it passes.
//!
//! # Hot path
//!
//! Everything a worker calls per packet is `#[inline]` and allocation-free. Views over
//! fixed-size arrays cost exactly the loads and stores of the fields they touch.
#![deny(unsafe_code)]

pub mod addr;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use addr::{IpAddrBytes, IpNet, Ipv4Net, Ipv6Net, MacAddr, MacParseError, NetParseError};
pub use ethernet::ethertype;

/// IP protocol numbers ([IANA protocol numbers]): the IPv4 Protocol and IPv6 Next Header
/// values gwlb reads or writes.
///
/// [IANA protocol numbers]: https://www.iana.org/assignments/protocol-numbers/
pub mod proto {
    /// IPv6 Hop-by-Hop Options (RFC 8200 section 4.3).
    pub const HOPOPT: u8 = 0;
    /// ICMP for IPv4 (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 Routing header (RFC 8200 section 4.4).
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment header (RFC 8200 section 4.5).
    pub const IPV6_FRAG: u8 = 44;
    /// GRE (RFC 2784).
    pub const GRE: u8 = 47;
    /// Encapsulating Security Payload (RFC 4303; ends the IPv6 header chain).
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302; length in 4-byte units).
    pub const AH: u8 = 51;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header (RFC 8200 section 4.7; ends the chain).
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination Options (RFC 8200 section 4.6).
    pub const IPV6_OPTS: u8 = 60;
    /// Mobility header (RFC 6275), generic extension header format.
    pub const MOBILITY: u8 = 135;
    /// Host Identity Protocol (RFC 7401), generic extension header format.
    pub const HIP: u8 = 139;
    /// Shim6 (RFC 5533), generic extension header format.
    pub const SHIM6: u8 = 140;
}

/// The version nibble of an IP header, IPv4 or IPv6 (both start with it); `None` for an empty
/// buffer.
#[inline(always)]
pub fn ip_version(packet: &[u8]) -> Option<u8> {
    let first: &[u8; 1] = packet.first_chunk()?;
    Some(ipv4::Packet::new_unchecked(first).version())
}

/// Why a view could not be built over a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field in it says).
    #[error("buffer shorter than the header")]
    Truncated,
    /// A field holds a value the header does not allow (version, header length).
    #[error("malformed header")]
    Malformed,
}

/// A byte range inside a header, used by the private `field` modules.
type Field = core::ops::Range<usize>;

/// The big-endian `u16` at `f` (a 2-byte field).
#[inline(always)]
fn get_u16(b: &[u8], f: Field) -> u16 {
    let x = &b[f];
    u16::from_be_bytes([x[0], x[1]])
}

/// Writes `v` big-endian into the 2-byte field `f`.
#[inline(always)]
fn set_u16(b: &mut [u8], f: Field, v: u16) {
    b[f].copy_from_slice(&v.to_be_bytes());
}

/// The big-endian `u32` at `f` (a 4-byte field).
#[inline(always)]
fn get_u32(b: &[u8], f: Field) -> u32 {
    let x = &b[f];
    u32::from_be_bytes([x[0], x[1], x[2], x[3]])
}

/// Writes `v` big-endian into the 4-byte field `f`.
#[inline(always)]
fn set_u32(b: &mut [u8], f: Field, v: u32) {
    b[f].copy_from_slice(&v.to_be_bytes());
}

/// The `N` bytes of field `f` as an array.
#[inline(always)]
fn get_array<const N: usize>(b: &[u8], f: Field) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[f]);
    a
}
