//! The Geneve tunnel header ([RFC 8926 section 3.4]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                    Variable-Length Options                    ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `Opt Len` counts 4-byte words of options after the 8-byte fixed header (0 to 252 bytes).
//! `O` marks a control (OAM) packet, `C` says at least one option is critical. Reserved bits
//! must be zero on transmission and are ignored on receipt.
//!
//! [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4

use crate::option::{self, OptionsIter};
use crate::{Error, MAX_VNI, VERSION};

mod field {
    use crate::Field;

    /// Version (2 high bits) and Opt Len (6 low bits, in 4-byte words).
    pub const VER_OPT_LEN: usize = 0;
    pub const VERSION_SHIFT: u32 = 6;
    pub const OPT_LEN_MASK: u8 = 0x3f;
    /// O flag, C flag, then 6 reserved bits.
    pub const FLAGS: usize = 1;
    pub const FLAG_OAM: u8 = 0x80;
    pub const FLAG_CRITICAL: u8 = 0x40;
    pub const PROTOCOL_TYPE: Field = 2..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED: usize = 7;

    pub const fn options(options_len: usize) -> Field {
        super::HEADER_LEN..super::HEADER_LEN + options_len
    }

    pub const fn payload(header_len: usize) -> core::ops::RangeFrom<usize> {
        header_len..
    }
}

/// Length of the fixed Geneve header in bytes.
pub const HEADER_LEN: usize = 8;

/// Largest option area in bytes: the 6-bit Opt Len field counts up to 63 words.
pub const MAX_OPTIONS_LEN: usize = 63 * 4;

/// A read/write view of a Geneve header (and what follows it) at the start of a buffer.
///
/// # No-panic contract
///
/// After [`new_checked`](Self::new_checked) or [`check_len`](Self::check_len) succeeds, no
/// getter panics: the buffer holds the fixed header and the whole option area. The version is
/// not checked here (a view of a future version is still a view); [`Repr::parse`] rejects it,
/// and a data path using the view directly must test `version() == 0` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Meant for emitting into a buffer known to be long
    /// enough.
    ///
    /// # Panics
    ///
    /// Getters and setters panic if the buffer is shorter than the header they touch. Use
    /// [`new_checked`](Self::new_checked) on untrusted input.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received buffer after [`check_len`](Self::check_len). After this succeeds no
    /// getter panics.
    ///
    /// This is for parsing. Do not use it to emit into a reused buffer: the stale Opt Len byte
    /// in it decides whether it passes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the fixed header and the whole option area.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if it is shorter than [`HEADER_LEN`], [`Error::OptionsOverrun`] if
    /// Opt Len reaches past its end.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(Error::Truncated)
        } else if len < self.header_len() {
            Err(Error::OptionsOverrun)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (2 bits); 0 is the only one defined.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPT_LEN] >> field::VERSION_SHIFT
    }

    /// Opt Len: the option area length in 4-byte words (0 to 63).
    #[inline]
    pub fn options_len_words(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPT_LEN] & field::OPT_LEN_MASK
    }

    /// The option area length in bytes (0 to 252).
    #[inline]
    pub fn options_len(&self) -> usize {
        usize::from(self.options_len_words()) * 4
    }

    /// The header length in bytes, options included: the offset of the payload.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// O flag: this is a control (OAM) packet, not to be forwarded as data
    /// ([RFC 8926 section 3.4]).
    ///
    /// [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4
    #[inline]
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & field::FLAG_OAM != 0
    }

    /// C flag: at least one option has its critical bit set ([RFC 8926 section 3.4]). When
    /// clear, a receiver may skip parsing the options.
    ///
    /// [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4
    #[inline]
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & field::FLAG_CRITICAL != 0
    }

    /// Protocol Type of the payload, as an EtherType ([`PROTO_IPV4`](crate::PROTO_IPV4),
    /// [`PROTO_IPV6`](crate::PROTO_IPV6), [`PROTO_ETHERNET`](crate::PROTO_ETHERNET)).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([
            b[field::PROTOCOL_TYPE.start],
            b[field::PROTOCOL_TYPE.start + 1],
        ])
    }

    /// The 24-bit Virtual Network Identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The raw option area (Opt Len × 4 bytes), borrowed from the underlying buffer.
    #[inline]
    pub fn options(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::options(self.options_len())]
    }

    /// Iterates over the options. See [`OptionsIter`].
    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'a> {
        OptionsIter::new(self.options())
    }

    /// Whether the packet carries a critical option this crate does not decode, in which case
    /// [RFC 8926 section 3.5.1] says the receiver must drop it. The options are walked even
    /// when the C flag is clear, so a sender that sets critical options without the C flag is
    /// still caught.
    ///
    /// # Errors
    ///
    /// [`Error::OptionLengthOverrun`] if the option area is malformed.
    ///
    /// [RFC 8926 section 3.5.1]: https://www.rfc-editor.org/rfc/rfc8926#section-3.5.1
    pub fn has_unknown_critical(&self) -> Result<bool, Error> {
        option::has_unknown_critical(self.options())
    }

    /// The payload after the options (the inner packet).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::payload(self.header_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version (low 2 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_OPT_LEN];
        *b = (*b & field::OPT_LEN_MASK) | (value << field::VERSION_SHIFT);
    }

    /// Sets Opt Len in 4-byte words (low 6 bits of `value`).
    #[inline]
    pub fn set_options_len_words(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_OPT_LEN];
        *b = (*b & !field::OPT_LEN_MASK) | (value & field::OPT_LEN_MASK);
    }

    /// Sets the O (OAM) flag.
    #[inline]
    pub fn set_oam(&mut self, value: bool) {
        self.set_flag(field::FLAG_OAM, value);
    }

    /// Sets the C (critical options present) flag.
    #[inline]
    pub fn set_critical(&mut self, value: bool) {
        self.set_flag(field::FLAG_CRITICAL, value);
    }

    #[inline]
    fn set_flag(&mut self, mask: u8, value: bool) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        if value {
            *b |= mask;
        } else {
            *b &= !mask;
        }
    }

    /// Sets the Protocol Type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::PROTOCOL_TYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the VNI. Only the low 24 bits of `value` are written.
    #[inline]
    pub fn set_vni(&mut self, value: u32) {
        let b = value.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..]);
    }

    /// Zeroes the reserved bits of the fixed header, as transmission requires.
    #[inline]
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[field::FLAGS] &= field::FLAG_OAM | field::FLAG_CRITICAL;
        b[field::RESERVED] = 0;
    }

    /// The option area, mutable (its length comes from Opt Len).
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = field::options(self.options_len());
        &mut self.buffer.as_mut()[range]
    }

    /// The payload after the options, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = field::payload(self.header_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// A valid Geneve header: version 0, a 24-bit VNI and a well-formed option area.
///
/// Options are kept as the raw, validated option bytes so that a header can be echoed byte for
/// byte (option order, unknown options and their reserved bits included) without allocation.
/// Build them from [`OptionRepr`](crate::OptionRepr)s with [`emit_options`](crate::emit_options)
/// and read them with [`options`](Self::options).
///
/// Flags are carried as they are: [`emit`](Self::emit) does not derive C from the options, so
/// a parsed header re-emits unchanged. Use [`any_critical_option`](Self::any_critical_option)
/// to set it when building a header ([RFC 8926 section 3.4] requires C when any option is
/// critical).
///
/// [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// O flag: control (OAM) packet.
    pub oam: bool,
    /// C flag: critical options present.
    pub critical: bool,
    /// Protocol Type of the payload (EtherType).
    pub protocol_type: u16,
    /// Virtual Network Identifier; must fit in 24 bits.
    pub vni: u32,
    /// The option area: whole options, a multiple of 4 bytes, at most 252.
    pub options: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a header view, validating version and every option.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] / [`Error::OptionsOverrun`] from
    /// [`check_len`](Packet::check_len), [`Error::BadVersion`] for a version other than 0,
    /// [`Error::OptionLengthOverrun`] if an option runs past the option area.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>, Error> {
        packet.check_len()?;
        if packet.version() != VERSION {
            return Err(Error::BadVersion);
        }
        let options = packet.options();
        option::validate(options)?;
        Ok(Repr {
            oam: packet.oam(),
            critical: packet.critical(),
            protocol_type: packet.protocol_type(),
            vni: packet.vni(),
            options,
        })
    }

    /// Bytes [`emit`](Self::emit) writes: the fixed header plus the options.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Iterates over the options.
    pub fn options(&self) -> OptionsIter<'a> {
        OptionsIter::new(self.options)
    }

    /// Whether any option has its critical bit set, i.e. whether the C flag should be set.
    ///
    /// # Errors
    ///
    /// [`Error::OptionLengthOverrun`] if `options` is malformed.
    pub fn any_critical_option(&self) -> Result<bool, Error> {
        let mut any = false;
        for opt in self.options() {
            any |= opt?.is_critical();
        }
        Ok(any)
    }

    /// Whether the options hold a critical option this crate does not decode
    /// ([RFC 8926 section 3.5.1]: drop the packet).
    ///
    /// # Errors
    ///
    /// [`Error::OptionLengthOverrun`] if `options` is malformed.
    ///
    /// [RFC 8926 section 3.5.1]: https://www.rfc-editor.org/rfc/rfc8926#section-3.5.1
    pub fn has_unknown_critical(&self) -> Result<bool, Error> {
        option::has_unknown_critical(self.options)
    }

    /// Writes the header and options at the start of `buf` and returns the bytes written
    /// ([`buffer_len`](Self::buffer_len)); the payload is not touched. Version and reserved
    /// bits are written as zero. Nothing is written on error.
    ///
    /// # Errors
    ///
    /// [`Error::VniOutOfRange`], [`Error::BadOptionsLength`] (options not a multiple of 4 or
    /// over 252 bytes), [`Error::OptionLengthOverrun`] (options malformed),
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.vni > MAX_VNI {
            return Err(Error::VniOutOfRange);
        }
        let opt_len = self.options.len();
        if opt_len & 3 != 0 || opt_len > MAX_OPTIONS_LEN {
            return Err(Error::BadOptionsLength);
        }
        option::validate(self.options)?;
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let mut packet = Packet::new_unchecked(buf);
        // Byte 0 holds version and Opt Len: write it whole so no stale bit survives.
        packet.buffer[field::VER_OPT_LEN] = 0;
        packet.set_version(VERSION);
        // opt_len <= 252, so the word count fits the 6-bit field.
        packet.set_options_len_words((opt_len / 4) as u8);
        packet.buffer[field::FLAGS] = 0;
        packet.set_oam(self.oam);
        packet.set_critical(self.critical);
        packet.set_protocol_type(self.protocol_type);
        packet.set_vni(self.vni);
        packet.clear_reserved();
        packet.options_mut().copy_from_slice(self.options);
        Ok(len)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::{emit_options, OptionRepr, PROTO_IPV4, PROTO_IPV6};
    use proptest::prelude::*;

    /// Version 0, Opt Len 8 words, O=0 C=0, IPv4 payload, VNI 0x123456, the three AWS options
    /// in AWS order, then a 4-byte payload.
    static PACKET_BYTES: [u8; 44] = [
        0x08, 0x00, 0x08, 0x00, 0x12, 0x34, 0x56, 0x00, // fixed header
        0x01, 0x08, 0x01, 0x02, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // endpoint id
        0x01, 0x08, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x01, // attachment id
        0x01, 0x08, 0x03, 0x01, 0xde, 0xad, 0xbe, 0xef, // flow cookie
        0x45, 0x00, 0x00, 0x14, // payload
    ];

    /// The option area of `PACKET_BYTES`.
    const OPTIONS: core::ops::Range<usize> = HEADER_LEN..HEADER_LEN + 32;

    fn packet_repr() -> Repr<'static> {
        Repr {
            oam: false,
            critical: false,
            protocol_type: PROTO_IPV4,
            vni: 0x12_3456,
            options: &PACKET_BYTES[OPTIONS],
        }
    }

    #[test]
    fn test_deconstruct() {
        let packet = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.version(), 0);
        assert_eq!(packet.options_len_words(), 8);
        assert_eq!(packet.options_len(), 32);
        assert_eq!(packet.header_len(), 40);
        assert!(!packet.oam());
        assert!(!packet.critical());
        assert_eq!(packet.protocol_type(), PROTO_IPV4);
        assert_eq!(packet.vni(), 0x12_3456);
        assert_eq!(packet.options(), &PACKET_BYTES[8..40]);
        assert_eq!(packet.payload(), &[0x45, 0x00, 0x00, 0x14]);
        assert_eq!(packet.has_unknown_critical(), Ok(false));
        let opts: Vec<_> = packet.options_iter().collect();
        assert_eq!(
            opts,
            vec![
                Ok(OptionRepr::AwsEndpointId(0x0123_4567_89ab_cdef)),
                Ok(OptionRepr::AwsAttachmentId(0x1001)),
                Ok(OptionRepr::AwsFlowCookie(0xdead_beef)),
            ]
        );
    }

    #[test]
    fn test_construct() {
        let mut bytes = vec![0xa5; PACKET_BYTES.len()];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(0);
        packet.set_options_len_words(8);
        packet.set_oam(false);
        packet.set_critical(false);
        packet.clear_reserved();
        packet.set_protocol_type(PROTO_IPV4);
        packet.set_vni(0x12_3456);
        packet.options_mut().copy_from_slice(&PACKET_BYTES[OPTIONS]);
        packet
            .payload_mut()
            .copy_from_slice(&[0x45, 0x00, 0x00, 0x14]);
        assert_eq!(&packet.into_inner()[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn test_parse() {
        let packet = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(packet_repr()));
    }

    #[test]
    fn test_emit() {
        let repr = packet_repr();
        assert_eq!(repr.buffer_len(), 40);
        let mut bytes = vec![0xa5; 44];
        assert_eq!(repr.emit(&mut bytes), Ok(40));
        assert_eq!(&bytes[..40], &PACKET_BYTES[..40]);
        assert_eq!(&bytes[40..], &[0xa5; 4], "emit wrote into the payload");
    }

    #[test]
    fn test_flags_and_no_options() {
        // O=1, C=1, reserved bits set (must be ignored), Ethernet payload, VNI max, no options.
        let bytes = [0x00, 0xff, 0x65, 0x58, 0xff, 0xff, 0xff, 0xff];
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.oam());
        assert!(packet.critical());
        assert_eq!(packet.protocol_type(), crate::PROTO_ETHERNET);
        assert_eq!(packet.vni(), MAX_VNI);
        assert!(packet.options().is_empty());
        assert!(packet.payload().is_empty());
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                oam: true,
                critical: true,
                protocol_type: 0x6558,
                vni: MAX_VNI,
                options: &[]
            }
        );
        let mut out = vec![0xa5; 8];
        assert_eq!(repr.emit(&mut out), Ok(8));
        assert_eq!(out, [0x00, 0xc0, 0x65, 0x58, 0xff, 0xff, 0xff, 0x00]);
    }

    #[test]
    fn test_setters_do_not_disturb_neighbours() {
        let mut bytes = [0xffu8; 8];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(0);
        assert_eq!(packet.version(), 0);
        assert_eq!(packet.options_len_words(), 0x3f);
        packet.set_options_len_words(1);
        assert_eq!(packet.options_len_words(), 1);
        packet.set_oam(false);
        assert!(!packet.oam());
        assert!(packet.critical());
        packet.set_critical(false);
        assert!(!packet.critical());
        packet.set_vni(0xab12_3456);
        assert_eq!(packet.vni(), 0x12_3456);
        assert_eq!(bytes, [0x01, 0x3f, 0xff, 0xff, 0x12, 0x34, 0x56, 0xff]);
    }

    #[test]
    fn test_bad_version() {
        for version in 1..4u8 {
            let mut bytes = PACKET_BYTES;
            bytes[0] |= version << 6;
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(packet.version(), version);
            assert_eq!(Repr::parse(&packet), Err(Error::BadVersion));
        }
    }

    #[test]
    fn test_every_truncation() {
        for len in 0..PACKET_BYTES.len() {
            let prefix = &PACKET_BYTES[..len];
            let want = if len < HEADER_LEN {
                Err(Error::Truncated)
            } else if len < 40 {
                Err(Error::OptionsOverrun)
            } else {
                Ok(())
            };
            assert_eq!(
                Packet::new_unchecked(prefix).check_len(),
                want,
                "prefix length {len}"
            );
            let parsed = Packet::new_checked(prefix).and_then(|p| Repr::parse(&p).map(|_| ()));
            assert_eq!(parsed, want, "prefix length {len}");
        }
    }

    #[test]
    fn test_options_overrun() {
        // Opt Len 63 words (252 bytes) in a 44-byte buffer.
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x3f;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::OptionsOverrun
        );
    }

    #[test]
    fn test_option_length_overflow() {
        // The flow cookie claims 2 words, so it runs 4 bytes past the option area.
        let mut bytes = PACKET_BYTES;
        bytes[8 + 24 + 3] = 0x02;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(Error::OptionLengthOverrun));
        assert_eq!(
            packet.has_unknown_critical(),
            Err(Error::OptionLengthOverrun)
        );
        let results: Vec<_> = packet.options_iter().collect();
        assert_eq!(results.len(), 3);
        assert_eq!(results[2], Err(Error::OptionLengthOverrun));
    }

    #[test]
    fn test_unknown_critical_option() {
        let opts = [
            OptionRepr::AwsFlowCookie(1),
            OptionRepr::Unknown {
                class: 0x0132,
                type_: 0x81,
                data: &[0, 0, 0, 9],
            },
        ];
        let mut area = [0u8; 16];
        assert_eq!(emit_options(&opts, &mut area), Ok(16));
        let mut repr = Repr {
            oam: false,
            critical: false,
            protocol_type: PROTO_IPV6,
            vni: 0,
            options: &area,
        };
        assert_eq!(repr.any_critical_option(), Ok(true));
        repr.critical = true;
        let mut bytes = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut bytes).unwrap();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.critical());
        assert_eq!(packet.has_unknown_critical(), Ok(true));
        let parsed = Repr::parse(&packet).unwrap();
        assert_eq!(parsed, repr);
        assert_eq!(parsed.has_unknown_critical(), Ok(true));
    }

    #[test]
    fn test_emit_errors() {
        let mut buf = vec![0xa5; 64];
        let good = packet_repr();
        let bad_vni = Repr {
            vni: MAX_VNI + 1,
            ..good
        };
        assert_eq!(bad_vni.emit(&mut buf), Err(Error::VniOutOfRange));
        let misaligned = Repr {
            options: &PACKET_BYTES[HEADER_LEN..HEADER_LEN + 30],
            ..good
        };
        assert_eq!(misaligned.emit(&mut buf), Err(Error::BadOptionsLength));
        let too_long = [0u8; 256];
        let too_long = Repr {
            options: &too_long,
            ..good
        };
        assert_eq!(too_long.emit(&mut buf), Err(Error::BadOptionsLength));
        let malformed = Repr {
            options: &[0x01, 0x08, 0x03, 0x05],
            ..good
        };
        assert_eq!(malformed.emit(&mut buf), Err(Error::OptionLengthOverrun));
        assert_eq!(good.emit(&mut buf[..39]), Err(Error::BufferTooSmall));
        assert_eq!(buf, vec![0xa5; 64], "nothing written on error");
    }

    #[test]
    fn test_max_options() {
        // 63 words of options: two maximal options would be 256 bytes, so use one of 128 and
        // 31 empty ones (4 bytes each): 128 + 124 = 252.
        let mut area = vec![0u8; MAX_OPTIONS_LEN];
        area[..4].copy_from_slice(&[0xff, 0xff, 0x01, 0x1f]);
        for i in 0..31 {
            area[128 + 4 * i..128 + 4 * i + 4].copy_from_slice(&[0, 1, 2, 0]);
        }
        let repr = Repr {
            options: &area,
            ..packet_repr()
        };
        let mut bytes = vec![0xa5; HEADER_LEN + MAX_OPTIONS_LEN];
        assert_eq!(repr.emit(&mut bytes), Ok(260));
        assert_eq!(bytes[0], 0x3f);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(repr));
        assert_eq!(packet.options_iter().count(), 32);
    }

    /// A generated option: class, type and data words.
    fn arb_option() -> impl Strategy<Value = (u16, u8, Vec<u8>)> {
        let class = prop_oneof![Just(crate::AWS_OPTION_CLASS), any::<u16>()];
        let type_ = prop_oneof![1u8..=3, any::<u8>()];
        let data =
            (0usize..=8).prop_flat_map(|words| prop::collection::vec(any::<u8>(), words * 4));
        (class, type_, data)
    }

    proptest! {
        #[test]
        fn prop_repr_round_trip(
            oam in any::<bool>(),
            critical in any::<bool>(),
            protocol_type in any::<u16>(),
            vni in 0u32..=MAX_VNI,
            opts in prop::collection::vec(arb_option(), 0..=6),
            payload in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let opts: Vec<OptionRepr<'_>> = opts
                .iter()
                .map(|(class, type_, data)| OptionRepr::Unknown {
                    class: *class,
                    type_: *type_,
                    data,
                })
                .collect();
            let mut area = vec![0u8; crate::options_buffer_len(&opts)];
            prop_assert_eq!(emit_options(&opts, &mut area), Ok(area.len()));
            let repr = Repr { oam, critical, protocol_type, vni, options: &area };

            let mut bytes = vec![0xa5; repr.buffer_len() + payload.len()];
            prop_assert_eq!(repr.emit(&mut bytes), Ok(repr.buffer_len()));
            bytes[repr.buffer_len()..].copy_from_slice(&payload);

            let packet = Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Repr::parse(&packet), Ok(repr));
            prop_assert_eq!(packet.payload(), &payload[..]);

            // Every option comes back, typed where it is an AWS option, and re-emits the same.
            let parsed: Vec<OptionRepr<'_>> =
                packet.options_iter().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parsed.len(), opts.len());
            let mut again = vec![0xa5; area.len()];
            prop_assert_eq!(emit_options(&parsed, &mut again), Ok(area.len()));
            prop_assert_eq!(again, area);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            check_arbitrary(&bytes);
        }

        #[test]
        fn prop_mutated_packet_never_panics(
            flips in prop::collection::vec((0usize..44, any::<u8>()), 1..4),
            cut in 0usize..=44,
        ) {
            let mut bytes = PACKET_BYTES;
            for (at, value) in flips {
                bytes[at] = value;
            }
            check_arbitrary(&bytes[..cut]);
        }
    }

    /// Exercises every reader on untrusted bytes; a successful parse must round trip.
    fn check_arbitrary(bytes: &[u8]) {
        let _ = crate::AwsOptions::from_options(bytes);
        let Ok(packet) = Packet::new_checked(bytes) else {
            return;
        };
        let _ = (packet.version(), packet.oam(), packet.critical());
        let _ = (packet.protocol_type(), packet.vni(), packet.payload());
        let _ = packet.has_unknown_critical();
        let _ = crate::AwsOptions::from_options(packet.options());
        let mut errors = 0;
        for opt in packet.options_iter() {
            if opt.is_err() {
                errors += 1;
            }
        }
        assert!(errors <= 1, "iterator not fused");
        if let Ok(repr) = Repr::parse(&packet) {
            let mut out = vec![0xa5; repr.buffer_len()];
            assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
            // Identical except the reserved bits, which emit zeroes.
            let mut masked = bytes[..repr.buffer_len()].to_vec();
            masked[1] &= 0xc0;
            masked[7] = 0;
            assert_eq!(out, masked);
            let reparsed = Repr::parse(&Packet::new_checked(&out[..]).unwrap());
            assert_eq!(reparsed, Ok(repr));
        }
    }
}
