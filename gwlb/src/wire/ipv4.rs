//! The IPv4 header ([RFC 791 section 3.1]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |   DSCP/ECN    |          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! gwlb emits option-less headers only, always as atomic datagrams ([RFC 6864]): DF set,
//! identification 0, fragment offset 0 (the outer header of an encapsulated packet and the
//! header of a TCP reset). Received headers may carry options: [`Packet::header_len`] is IHL.
//!
//! [RFC 791 section 3.1]: https://www.rfc-editor.org/rfc/rfc791#section-3.1
//! [RFC 6864]: https://www.rfc-editor.org/rfc/rfc6864

use super::{checksum, get_array, get_u16, set_u16, Error};

mod field {
    use crate::wire::Field;

    /// Version (high nibble) and IHL in 4-byte words (low nibble).
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    /// Flags (3 high bits) and fragment offset (13 bits, in 8-byte units).
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The version nibble.
pub const VERSION: u8 = 4;

/// Don't Fragment, in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More Fragments, in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;
/// The fragment offset bits of the flags/fragment-offset word.
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 header (and what follows) at the start of a buffer.
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

    /// Checks that the buffer holds the fixed header, the options IHL announces and the
    /// total length: [`Error::Truncated`] if not, [`Error::Malformed`] for IHL below 5 or a
    /// total length shorter than the header.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || usize::from(self.total_len()) < hl {
            return Err(Error::Malformed);
        }
        if len < hl || len < usize::from(self.total_len()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// DSCP and ECN byte (formerly type of service).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length (header and payload).
    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The flags/fragment-offset word ([`FLAG_DF`], [`FLAG_MF`], [`FRAG_OFFSET_MASK`]).
    #[inline]
    pub fn flags_frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// Don't Fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag_offset() & FLAG_DF != 0
    }

    /// More Fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag_offset() & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.flags_frag_offset() & FRAG_OFFSET_MASK
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload ([`crate::wire::proto`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Whether the header checksum (over IHL * 4 bytes) verifies; false if the buffer is
    /// shorter than IHL says or IHL is below 5.
    pub fn verify_checksum(&self) -> bool {
        let hl = self.header_len();
        match self.buffer.as_ref().get(..hl) {
            Some(h) if hl >= HEADER_LEN => checksum::verifies(0, h),
            _ => false,
        }
    }

    /// The payload: from the end of the header to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version and header length (bytes, a multiple of 4 up to 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets the flags/fragment-offset word.
    #[inline]
    pub fn set_flags_frag_offset(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::FLG_OFF, value);
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Sets the header checksum field (see [`fill_checksum`](Self::fill_checksum)).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value);
    }

    /// Computes the header checksum over IHL * 4 bytes and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::finish(checksum::sum(0, &self.buffer.as_ref()[..hl]));
        self.set_checksum(c);
    }
}

/// An option-less IPv4 header as gwlb emits it: an atomic datagram (DF, identification 0,
/// DSCP/ECN 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: [u8; 4],
    /// Destination address.
    pub dst_addr: [u8; 4],
    /// Protocol of the payload.
    pub protocol: u8,
    /// Payload length (the total length is this plus [`HEADER_LEN`]).
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
}

impl Repr {
    /// Reads a checked header. [`Error::Malformed`] for another version; options are
    /// skipped (not kept).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Error> {
        packet.check_len()?;
        if packet.version() != VERSION {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - packet.header_len() as u16,
            ttl: packet.ttl(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, checksum included, into the first [`HEADER_LEN`] bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_and_header_len(VERSION, HEADER_LEN);
        packet.set_dscp_ecn(0);
        packet.set_total_len(self.payload_len + HEADER_LEN as u16);
        packet.set_ident(0);
        packet.set_flags_frag_offset(FLAG_DF);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;

    /// 10.0.0.1 -> 10.0.0.2, UDP, TTL 64, DF, 28 bytes of payload, then the payload's first
    /// 4 bytes.
    static PACKET_BYTES: [u8; 24] = [
        0x45, 0x00, 0x00, 0x30, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0xbb, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, 0xc0, 0x00, 0x17, 0xc1,
    ];

    fn repr() -> Repr {
        Repr {
            src_addr: [10, 0, 0, 1],
            dst_addr: [10, 0, 0, 2],
            protocol: proto::UDP,
            payload_len: 28,
            ttl: 64,
        }
    }

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_unchecked(&PACKET_BYTES[..]);
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 48);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), proto::UDP);
        assert_eq!(p.checksum(), 0x26bb);
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 2]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn test_construct() {
        let mut b = [0xa5u8; 20];
        let mut p = Packet::new_unchecked(&mut b);
        p.set_version_and_header_len(4, 20);
        p.set_dscp_ecn(0);
        p.set_total_len(48);
        p.set_ident(0);
        p.set_flags_frag_offset(FLAG_DF);
        p.set_ttl(64);
        p.set_protocol(proto::UDP);
        p.set_src_addr([10, 0, 0, 1]);
        p.set_dst_addr([10, 0, 0, 2]);
        p.fill_checksum();
        assert_eq!(b[..], PACKET_BYTES[..20]);
    }

    #[test]
    fn test_parse() {
        let mut b = PACKET_BYTES.to_vec();
        b.resize(48, 0);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(repr()));
        assert_eq!(p.payload().len(), 28);
    }

    #[test]
    // A slice of run-time length, as buffers are on the data path (no fixed-size view).
    #[allow(clippy::useless_vec)]
    fn test_emit() {
        let mut b = vec![0xa5u8; 24];
        repr().emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(&b[..20], &PACKET_BYTES[..20]);
        assert_eq!(&b[20..], &[0xa5; 4], "payload untouched");
        assert_eq!(repr().buffer_len(), 20);
    }

    #[test]
    fn test_fragment_fields() {
        let mut b = PACKET_BYTES;
        Packet::new_unchecked(&mut b).set_flags_frag_offset(FLAG_MF | 185);
        let p = Packet::new_unchecked(&b);
        assert!(p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 185);
        assert!(!p.verify_checksum());
    }

    #[test]
    fn test_truncated_and_malformed() {
        let mut b = PACKET_BYTES.to_vec();
        b.resize(48, 0);
        assert_eq!(Packet::new_checked(&b[..19]).err(), Some(Error::Truncated));
        // Total length 48 beyond 24 bytes.
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..]).err(),
            Some(Error::Truncated)
        );
        let mut short_ihl = b.clone();
        short_ihl[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&short_ihl[..]).err(),
            Some(Error::Malformed)
        );
        let mut long_ihl = b.clone();
        long_ihl[0] = 0x4f;
        assert_eq!(
            Packet::new_checked(&long_ihl[..]).err(),
            Some(Error::Malformed),
            "total length 48 < IHL 60"
        );
        let mut v6 = b.clone();
        v6[0] = 0x65;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&v6[..])),
            Err(Error::Malformed)
        );
        assert!(!Packet::new_unchecked(&b[..10]).verify_checksum());
    }
}
