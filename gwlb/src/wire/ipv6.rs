//! The fixed IPv6 header ([RFC 8200 section 3]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                     Source Address (16)                       +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                  Destination Address (16)                     +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! gwlb emits headers with traffic class and flow label 0 and no extension headers (the outer
//! header of an encapsulated packet, the header of a TCP reset). The extension header chain
//! of received packets is walked by `crate::parse`.
//!
//! [RFC 8200 section 3]: https://www.rfc-editor.org/rfc/rfc8200#section-3

use super::{get_array, get_u16, get_u32, set_u16, set_u32, Error};

mod field {
    use crate::wire::Field;

    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// The version nibble.
pub const VERSION: u8 = 6;

/// A read/write view of an IPv6 header (and what follows) at the start of a buffer.
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

    /// [`Error::Truncated`] if the buffer is shorter than the fixed header plus the payload
    /// length.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < HEADER_LEN + usize::from(self.payload_len()) {
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

    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next header ([`crate::wire::proto`]).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        get_array(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        get_array(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The payload (payload length bytes after the fixed header).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version, traffic class and flow label (the low 20 bits of `flow_label`).
    #[inline]
    pub fn set_version_tc_flow(&mut self, version: u8, traffic_class: u8, flow_label: u32) {
        let word = (u32::from(version) << 28)
            | (u32::from(traffic_class) << 20)
            | (flow_label & 0x000f_ffff);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, word);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: [u8; 16]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: [u8; 16]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value);
    }
}

/// A fixed IPv6 header as gwlb emits it: traffic class and flow label 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: [u8; 16],
    /// Destination address.
    pub dst_addr: [u8; 16],
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Repr {
    /// Reads a checked header ([`Error::Malformed`] for another version).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Error> {
        packet.check_len()?;
        if packet.version() != VERSION {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_tc_flow(VERSION, 0, 0);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

mod ext_field {
    /// Next header: the first byte of every extension header, Fragment header included.
    pub const NXT_HDR: usize = 0;
    /// Header extension length (generic format: 8-byte units beyond the first 8; AH: 4-byte
    /// units minus 2).
    pub const HDR_EXT_LEN: usize = 1;
}

mod frag_field {
    use crate::wire::Field;

    pub const NXT_HDR: usize = super::ext_field::NXT_HDR;
    /// Fragment offset (13 high bits, in 8-byte units), 2 reserved bits, M flag (low bit).
    pub const FRAG_OFF_M: Field = 2..4;
    pub const IDENT: Field = 4..8;
    pub const OFFSET_SHIFT: u32 = 3;
    pub const FLAG_M: u16 = 0x0001;
}

/// Bytes an [`ExtHeader`] view reads: next header and header extension length, the two that
/// every extension header starts with.
pub const EXT_PREFIX_LEN: usize = ext_field::HDR_EXT_LEN + 1;

/// Length of the Fragment header ([RFC 8200 section 4.5]).
///
/// [RFC 8200 section 4.5]: https://www.rfc-editor.org/rfc/rfc8200#section-4.5
pub const FRAG_HEADER_LEN: usize = frag_field::IDENT.end;

/// A read view of the first two bytes of an IPv6 extension header ([RFC 8200 section 4]):
/// next header and header extension length.
///
/// [RFC 8200 section 4]: https://www.rfc-editor.org/rfc/rfc8200#section-4
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wraps a buffer without checking it (accessors panic below [`EXT_PREFIX_LEN`] bytes).
    /// Over a `[u8; EXT_PREFIX_LEN]` array no access is checked.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ExtHeader<T> {
        ExtHeader { buffer }
    }

    /// Wraps a received buffer after checking it holds [`EXT_PREFIX_LEN`] bytes (not the
    /// whole header: its length depends on the header type).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<ExtHeader<T>, Error> {
        if buffer.as_ref().len() < EXT_PREFIX_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Next header ([`crate::wire::proto`]).
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ext_field::NXT_HDR]
    }

    /// Header extension length, raw.
    #[inline(always)]
    pub fn hdr_ext_len(&self) -> u8 {
        self.buffer.as_ref()[ext_field::HDR_EXT_LEN]
    }

    /// Length in bytes of a header in the generic format (Hop-by-Hop, Routing, Destination
    /// Options, Mobility, HIP, Shim6): `(hdr_ext_len + 1) * 8`.
    #[inline(always)]
    pub fn generic_len(&self) -> usize {
        (usize::from(self.hdr_ext_len()) + 1) * 8
    }

    /// Length in bytes of an Authentication Header (RFC 4302 section 2.2):
    /// `(hdr_ext_len + 2) * 4`.
    #[inline(always)]
    pub fn ah_len(&self) -> usize {
        (usize::from(self.hdr_ext_len()) + 2) * 4
    }
}

/// A read view of an IPv6 Fragment header ([RFC 8200 section 4.5]).
///
/// [RFC 8200 section 4.5]: https://www.rfc-editor.org/rfc/rfc8200#section-4.5
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragHeader<T> {
    /// Wraps a buffer without checking it (accessors panic below [`FRAG_HEADER_LEN`] bytes).
    /// Over a `[u8; FRAG_HEADER_LEN]` array no access is checked.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> FragHeader<T> {
        FragHeader { buffer }
    }

    /// Wraps a received buffer after checking it holds [`FRAG_HEADER_LEN`] bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<FragHeader<T>, Error> {
        if buffer.as_ref().len() < FRAG_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Next header of the fragmentable part.
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[frag_field::NXT_HDR]
    }

    /// Fragment offset in 8-byte units.
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), frag_field::FRAG_OFF_M) >> frag_field::OFFSET_SHIFT
    }

    /// More Fragments (M flag).
    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), frag_field::FRAG_OFF_M) & frag_field::FLAG_M != 0
    }

    /// Identification.
    #[inline(always)]
    pub fn ident(&self) -> u32 {
        get_u32(self.buffer.as_ref(), frag_field::IDENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;

    /// fd00::1 -> fd00::11, TCP, hop limit 64, 20 bytes of payload (not included).
    static PACKET_BYTES: [u8; 40] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x14, 0x06, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11,
    ];

    fn addr(last: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = last;
        a
    }

    fn repr() -> Repr {
        Repr {
            src_addr: addr(1),
            dst_addr: addr(0x11),
            next_header: proto::TCP,
            payload_len: 20,
            hop_limit: 64,
        }
    }

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_unchecked(&PACKET_BYTES[..]);
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0);
        assert_eq!(p.payload_len(), 20);
        assert_eq!(p.next_header(), proto::TCP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), addr(1));
        assert_eq!(p.dst_addr(), addr(0x11));
    }

    #[test]
    fn test_construct() {
        let mut b = [0xa5u8; 40];
        let mut p = Packet::new_unchecked(&mut b);
        p.set_version_tc_flow(6, 0, 0);
        p.set_payload_len(20);
        p.set_next_header(proto::TCP);
        p.set_hop_limit(64);
        p.set_src_addr(addr(1));
        p.set_dst_addr(addr(0x11));
        assert_eq!(b, PACKET_BYTES);
    }

    #[test]
    fn test_traffic_class_and_flow_label() {
        let mut b = PACKET_BYTES;
        Packet::new_unchecked(&mut b).set_version_tc_flow(6, 0xb8, 0x12345);
        assert_eq!(&b[..4], &[0x6b, 0x81, 0x23, 0x45]);
        let p = Packet::new_unchecked(&b);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0x12345)
        );
    }

    #[test]
    fn test_parse() {
        let mut b = PACKET_BYTES.to_vec();
        b.resize(60, 0);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(repr()));
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    // A slice of run-time length, as buffers are on the data path (no fixed-size view).
    #[allow(clippy::useless_vec)]
    fn test_emit() {
        let mut b = vec![0xa5u8; 44];
        repr().emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(&b[..40], &PACKET_BYTES[..]);
        assert_eq!(&b[40..], &[0xa5; 4], "payload untouched");
        assert_eq!(repr().buffer_len(), 40);
    }

    #[test]
    fn test_truncated() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..39]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..]).err(),
            Some(Error::Truncated),
            "payload length 20 beyond the buffer"
        );
        let mut b = PACKET_BYTES.to_vec();
        b.resize(60, 0);
        b[0] = 0x40;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn test_ext_headers() {
        // Routing header, next header TCP, hdr ext len 2 (24 bytes).
        let x = ExtHeader::new_checked(&[proto::TCP, 2][..]).unwrap();
        assert_eq!((x.next_header(), x.hdr_ext_len()), (proto::TCP, 2));
        assert_eq!((x.generic_len(), x.ah_len()), (24, 16));
        assert_eq!(
            ExtHeader::new_checked(&[proto::TCP][..]).err(),
            Some(Error::Truncated)
        );
        // Fragment header: next header UDP, offset 185 (1480 bytes), M set, id 0xdeadbeef.
        let b = [proto::UDP, 0, 0x05, 0xc9, 0xde, 0xad, 0xbe, 0xef];
        let f = FragHeader::new_checked(&b[..]).unwrap();
        assert_eq!(f.next_header(), proto::UDP);
        assert_eq!((f.frag_offset(), f.more_frags()), (185, true));
        assert_eq!(f.ident(), 0xdead_beef);
        let f = FragHeader::new_unchecked(&[proto::UDP, 0, 0x05, 0xc8, 0, 0, 0, 1]);
        assert_eq!(
            (f.frag_offset(), f.more_frags(), f.ident()),
            (185, false, 1)
        );
        assert_eq!(
            FragHeader::new_checked(&b[..7]).err(),
            Some(Error::Truncated)
        );
        assert_eq!((EXT_PREFIX_LEN, FRAG_HEADER_LEN), (2, 8));
    }
}
