//! ICMP ([RFC 792]) and ICMPv6 ([RFC 4443]) headers, as far as gwlb uses them.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Identifier (echo)         |     Sequence Number (echo)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     for errors: as much of the offending packet as fits       |
//! ```
//!
//! Both versions share the first 8 bytes' layout. gwlb forwards ICMP messages and writes
//! one kind itself: the "fragmentation needed" / "packet too big" errors of path MTU
//! discovery (`crate::too_big`, the next-hop MTU fields). It reads the type and code, the echo
//! identifier (a ping's flow port) and, for error messages, the quoted packet after the
//! 8-byte header (RFC 792; RFC 4443 section 2.4), which `crate::parse` keys the error on.
//! Neighbour discovery types ([RFC 4861]) go to the host.
//!
//! [RFC 792]: https://www.rfc-editor.org/rfc/rfc792
//! [RFC 4443]: https://www.rfc-editor.org/rfc/rfc4443
//! [RFC 4861]: https://www.rfc-editor.org/rfc/rfc4861

use super::{get_u16, set_u16, Error};

mod field {
    use crate::wire::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const UNUSED_V4: Field = 4..6;
    pub const NEXT_HOP_MTU_V4: Field = 6..8;
    pub const MTU_V6: Field = 4..8;
    pub const QUOTE: core::ops::RangeFrom<usize> = super::HEADER_LEN..;
}

/// Length of the header (type, code, checksum and the 4-byte rest-of-header).
pub const HEADER_LEN: usize = 8;

/// ICMP (IPv4) message types.
pub mod v4 {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (error).
    pub const DST_UNREACHABLE: u8 = 3;
    /// Destination unreachable code: fragmentation needed and DF set (RFC 792, RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
    /// Source quench (error, deprecated by RFC 6633).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (error).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (error).
    pub const PARAM_PROBLEM: u8 = 12;
}

/// ICMPv6 message types.
pub mod v6 {
    /// Destination unreachable (error).
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big (error).
    pub const PKT_TOO_BIG: u8 = 2;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem (error).
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation (neighbour discovery, the first ND type).
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect (neighbour discovery, the last ND type).
    pub const REDIRECT: u8 = 137;
}

/// An echo request or reply (its identifier plays the role of a port).
#[inline]
pub const fn is_echo(ty: u8, ipv6: bool) -> bool {
    if ipv6 {
        ty == v6::ECHO_REQUEST || ty == v6::ECHO_REPLY
    } else {
        ty == v4::ECHO_REQUEST || ty == v4::ECHO_REPLY
    }
}

/// An error message that quotes the packet it is about: destination unreachable, packet too
/// big, time exceeded, parameter problem, and for IPv4 also redirect and source quench.
#[inline]
pub const fn is_error(ty: u8, ipv6: bool) -> bool {
    if ipv6 {
        ty >= v6::DST_UNREACHABLE && ty <= v6::PARAM_PROBLEM
    } else {
        matches!(
            ty,
            v4::DST_UNREACHABLE
                | v4::SOURCE_QUENCH
                | v4::REDIRECT
                | v4::TIME_EXCEEDED
                | v4::PARAM_PROBLEM
        )
    }
}

/// An ICMPv6 neighbour discovery message (RFC 4861 types 133-137).
#[inline]
pub const fn is_neighbor_discovery(ty: u8) -> bool {
    ty >= v6::ROUTER_SOLICIT && ty <= v6::REDIRECT
}

/// A read/write view of an ICMP or ICMPv6 header (and what follows) at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it (accessors panic below [`HEADER_LEN`] bytes).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`Error::Truncated`] below [`HEADER_LEN`] bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (meaningful for echo messages).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo messages).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// What follows the header: for an error message, the quoted packet.
    #[inline]
    pub fn quote(&self) -> &[u8] {
        &self.buffer.as_ref()[field::QUOTE]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value);
    }

    /// Sets the next-hop MTU of an IPv4 "fragmentation needed" (RFC 1191 section 4), and
    /// zeroes the unused half-word before it.
    #[inline]
    pub fn set_next_hop_mtu_v4(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::UNUSED_V4, 0);
        set_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU_V4, value);
    }

    /// Sets the MTU of an ICMPv6 "packet too big" (RFC 4443 section 3.2).
    #[inline]
    pub fn set_mtu_v6(&mut self, value: u32) {
        self.buffer.as_mut()[field::MTU_V6].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ICMP echo request, id 0x1234, seq 1, checksum over the header alone.
    static ECHO_BYTES: [u8; 8] = [0x08, 0x00, 0xe5, 0xca, 0x12, 0x34, 0x00, 0x01];

    /// ICMPv6 packet too big (MTU 1280), then the first quoted byte.
    static PTB_BYTES: [u8; 9] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x60];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (v4::ECHO_REQUEST, 0));
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert!(crate::wire::checksum::verifies(0, &ECHO_BYTES));
        assert_eq!(p.checksum(), 0xe5ca);
        assert!(p.quote().is_empty());
        let e = Packet::new_checked(&PTB_BYTES[..]).unwrap();
        assert_eq!(e.msg_type(), v6::PKT_TOO_BIG);
        assert_eq!(e.quote(), &[0x60]);
    }

    #[test]
    fn test_construct() {
        let mut b = [0xa5u8; 8];
        let mut p = Packet::new_unchecked(&mut b);
        p.set_msg_type(v4::ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_checksum(0xe5ca);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(1);
        assert_eq!(b, ECHO_BYTES);
    }

    #[test]
    fn test_classes() {
        assert!(is_echo(0, false) && is_echo(8, false) && !is_echo(128, false));
        assert!(is_echo(128, true) && is_echo(129, true) && !is_echo(8, true));
        for t in [3, 4, 5, 11, 12] {
            assert!(is_error(t, false));
        }
        assert!(!is_error(0, false) && !is_error(13, false));
        for t in 1..=4 {
            assert!(is_error(t, true));
        }
        assert!(!is_error(0, true) && !is_error(5, true) && !is_error(128, true));
        assert!((133..=137).all(is_neighbor_discovery));
        assert!(!is_neighbor_discovery(132) && !is_neighbor_discovery(138));
    }

    #[test]
    fn test_truncated() {
        assert_eq!(
            Packet::new_checked(&ECHO_BYTES[..7]).err(),
            Some(Error::Truncated)
        );
    }
}
