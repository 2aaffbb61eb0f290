//! Zero-copy Geneve ([RFC 8926]) codec with typed AWS Gateway Load Balancer options.
//!
//! The crate follows the shape of smoltcp's `wire` module. Each header lives in its own file
//! and has four layers:
//!
//! * a private `mod field` of byte ranges, so no code uses magic offsets;
//! * a zero-copy view over any `T: AsRef<[u8]>` ([`Packet`], [`GeneveOption`]) with getters, and
//!   setters in a second `impl` bounded on `AsMut<[u8]>`;
//! * a `Repr` ([`Repr`], [`OptionRepr`]) that holds only valid values, with `parse`, `emit`
//!   and `buffer_len`;
//! * in-file tests.
//!
//! For the data path there is also an allocation-free, iterator-free fast path for the fixed
//! AWS layout ([`aws`]): [`emit_aws_header`] writes the 40-byte Geneve header with its three
//! options, and [`AwsOptions::from_options`] reads them back.
//!
//! # No-panic contract
//!
//! Parsing never panics. Once [`Packet::new_checked`] (or [`Packet::check_len`]) has
//! succeeded, no getter of that packet panics, whatever the bytes are. The same holds for
//! [`GeneveOption::new_checked`]. Every function that parses takes untrusted bytes and reports
//! problems through [`Error`]. The only functions that can panic are the ones that document a
//! `# Panics` section: the `new_unchecked` views used on a buffer that is too short, and the AWS
//! emitters when handed a buffer shorter than the bytes they write.
//!
//! # Example
//!
//! ```
//! use geneve::{emit_aws_header, AwsOptions, Packet, AWS_HEADER_LEN, PROTO_IPV4};
//!
//! let opts = AwsOptions { endpoint_id: 0x0123_4567_89ab_cdef, attachment_id: 7, flow_cookie: 42 };
//! let mut buf = [0u8; AWS_HEADER_LEN];
//! let n = emit_aws_header(&mut buf, PROTO_IPV4, 0x00_1234, &opts);
//! assert_eq!(n, AWS_HEADER_LEN);
//!
//! let packet = Packet::new_checked(&buf[..]).unwrap();
//! assert_eq!(packet.vni(), 0x00_1234);
//! let found = AwsOptions::from_options(packet.options()).unwrap();
//! assert_eq!(found.complete(), Some(opts));
//! ```
//!
//! [RFC 8926]: https://www.rfc-editor.org/rfc/rfc8926
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod aws;
mod error;
pub mod header;
pub mod option;

pub use aws::{
    aws_header_bytes, emit_aws_header, parse_aws_header, set_aws_flow_cookie, set_aws_identity,
    AwsHeader, AwsOptions, AwsOptionsFound, AWS_HEADER_LEN, AWS_OPTIONS_LEN, AWS_OPTION_CLASS,
    AWS_TYPE_ATTACHMENT_ID, AWS_TYPE_ENDPOINT_ID, AWS_TYPE_FLOW_COOKIE,
};
pub use error::Error;
pub use header::{Packet, Repr, HEADER_LEN, MAX_OPTIONS_LEN};
pub use option::{
    emit_options, has_unknown_critical, options_buffer_len, GeneveOption, OptionRepr, OptionsIter,
    MAX_OPTION_DATA_LEN, OPTION_HEADER_LEN,
};

/// The IANA-assigned UDP destination port for Geneve ([RFC 8926 section 3.3]).
///
/// [RFC 8926 section 3.3]: https://www.rfc-editor.org/rfc/rfc8926#section-3.3
pub const UDP_PORT: u16 = 6081;

/// Protocol Type of an IPv4 payload (EtherType convention, [RFC 8926 section 3.4]).
///
/// [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4
pub const PROTO_IPV4: u16 = 0x0800;

/// Protocol Type of an IPv6 payload (EtherType convention, [RFC 8926 section 3.4]).
///
/// [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4
pub const PROTO_IPV6: u16 = 0x86DD;

/// Protocol Type of an Ethernet frame payload ("Transparent Ethernet Bridging",
/// [RFC 8926 section 3.4]).
///
/// [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4
pub const PROTO_ETHERNET: u16 = 0x6558;

/// The only Geneve version defined ([RFC 8926 section 3.4]). Packets with another version must
/// be dropped.
///
/// [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4
pub const VERSION: u8 = 0;

/// Largest value of the 24-bit Virtual Network Identifier.
pub const MAX_VNI: u32 = 0x00FF_FFFF;

/// A byte range inside a header, used by the private `field` modules.
type Field = core::ops::Range<usize>;

/// Compiles and runs the README examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
#[derive(Debug)]
pub struct ReadmeDoctests;
