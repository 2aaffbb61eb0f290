//! The UDP header ([RFC 768]).
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |   Source Port   |  Destination    |
//! |                 |      Port       |
//! +--------+--------+--------+--------+
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! ```
//!
//! gwlb emits the UDP header of Geneve encapsulation (RFC 8926 section 3.3): checksum 0 over
//! IPv4 (allowed by RFC 768 and RFC 8926), computed over IPv6 (required by RFC 8200
//! section 8.1), where a computed 0 is sent as `0xffff` ([`checksum_field`]).
//!
//! [RFC 768]: https://www.rfc-editor.org/rfc/rfc768

use super::{checksum, get_u16, set_u16, Error};

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// Bytes that hold the two ports, at the start of the header: what a parser of the UDP
/// header quoted in an ICMP error reads (a view over `[u8; PORTS_LEN]` may call only
/// [`Packet::src_port`] and [`Packet::dst_port`]).
pub const PORTS_LEN: usize = field::DST_PORT.end;

/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// The checksum field for a sum over pseudo-header, header (checksum 0) and payload: a
/// computed 0 is sent as all ones, since 0 means "no checksum" ([RFC 768]).
///
/// [RFC 768]: https://www.rfc-editor.org/rfc/rfc768
#[inline]
pub fn checksum_field(acc: u32) -> u16 {
    match checksum::finish(acc) {
        0 => 0xffff,
        c => c,
    }
}

/// A read/write view of a UDP header (and its payload) at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it: accessors panic past its end. Over a
    /// `[u8; HEADER_LEN]` array no access is checked.
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

    /// [`Error::Truncated`] if the buffer is shorter than the header or the length field;
    /// [`Error::Malformed`] if the length field is below the header length.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.length());
        if field_len < HEADER_LEN {
            Err(Error::Malformed)
        } else if field_len > len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length of header and payload.
    #[inline]
    pub fn length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum (0: none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload: from the header to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.length())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the length.
    #[inline]
    pub fn set_length(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }
}

/// A UDP header as gwlb emits it (the checksum is written as 0; fill it afterwards where
/// one is required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length (the length field is this plus [`HEADER_LEN`]).
    pub payload_len: u16,
}

impl Repr {
    /// Reads a checked header.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Error> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.length() - HEADER_LEN as u16,
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, checksum 0, into the first [`HEADER_LEN`] bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_length(self.payload_len + HEADER_LEN as u16);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 49152 -> 6081, length 12, checksum 0, 4 payload bytes.
    static PACKET_BYTES: [u8; 12] = [
        0xc0, 0x00, 0x17, 0xc1, 0x00, 0x0c, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn repr() -> Repr {
        Repr {
            src_port: 49152,
            dst_port: 6081,
            payload_len: 4,
        }
    }

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 49152);
        assert_eq!(p.dst_port(), 6081);
        assert_eq!(p.length(), 12);
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn test_construct() {
        let mut b = [0xa5u8; 12];
        let mut p = Packet::new_unchecked(&mut b);
        p.set_src_port(49152);
        p.set_dst_port(6081);
        p.set_length(12);
        p.set_checksum(0);
        b[8..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(b, PACKET_BYTES);
    }

    #[test]
    fn test_parse() {
        let p = Packet::new_unchecked(&PACKET_BYTES[..]);
        assert_eq!(Repr::parse(&p), Ok(repr()));
    }

    #[test]
    // A slice of run-time length, as buffers are on the data path (no fixed-size view).
    #[allow(clippy::useless_vec)]
    fn test_emit() {
        let mut b = vec![0xa5u8; 12];
        repr().emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(&b[..8], &PACKET_BYTES[..8]);
        assert_eq!(&b[8..], &[0xa5; 4], "payload untouched");
        assert_eq!(repr().buffer_len(), 8);
    }

    #[test]
    fn test_checksum_field() {
        // A sum that folds to 0xffff complements to 0, which goes out as 0xffff.
        assert_eq!(checksum_field(0xffff), 0xffff);
        assert_eq!(checksum_field(0x1234), !0x1234);
    }

    #[test]
    fn test_truncated_and_malformed() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..7]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..11]).err(),
            Some(Error::Truncated),
            "length 12 beyond 11 bytes"
        );
        let mut b = PACKET_BYTES;
        b[5] = 7;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Malformed));
    }
}
