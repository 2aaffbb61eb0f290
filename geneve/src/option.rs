//! Geneve tunnel options ([RFC 8926 section 3.5]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Option Class         |      Type     |R|R|R| Length  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                  Variable-Length Option Data                  ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `Length` counts 4-byte words of data, not including the 4-byte option header, so an option is
//! 4 to 128 bytes long. The high bit of `Type` is the critical bit: a receiver that does not
//! understand a critical option must drop the packet ([RFC 8926 section 3.5.1]). The three `R`
//! bits must be zero on transmission and ignored on receipt.
//!
//! Options of unknown class or type parse as [`OptionRepr::Unknown`] rather than failing, so a
//! receiver can skip them (or drop the packet if they are critical, see
//! [`has_unknown_critical`]).
//!
//! [RFC 8926 section 3.5]: https://www.rfc-editor.org/rfc/rfc8926#section-3.5
//! [RFC 8926 section 3.5.1]: https://www.rfc-editor.org/rfc/rfc8926#section-3.5.1

use core::iter::FusedIterator;

use crate::aws::{
    AWS_OPTION_CLASS, AWS_TYPE_ATTACHMENT_ID, AWS_TYPE_ENDPOINT_ID, AWS_TYPE_FLOW_COOKIE,
};
use crate::header::MAX_OPTIONS_LEN;
use crate::Error;

mod field {
    use crate::Field;

    pub const CLASS: Field = 0..2;
    pub const TYPE: usize = 2;
    /// Three reserved bits, then the 5-bit length in 4-byte words.
    pub const LENGTH: usize = 3;
    pub const LENGTH_MASK: u8 = 0x1f;
    pub const CRITICAL_BIT: u8 = 0x80;

    pub const fn data(data_len: usize) -> Field {
        super::OPTION_HEADER_LEN..super::OPTION_HEADER_LEN + data_len
    }
}

/// Length of an option header (class, type, flags and length) in bytes.
pub const OPTION_HEADER_LEN: usize = 4;

/// Largest option data length in bytes: the 5-bit Length field counts up to 31 words.
pub const MAX_OPTION_DATA_LEN: usize = 31 * 4;

/// A read/write view of one Geneve option at the start of a buffer.
///
/// The buffer may extend past the option (for example, the rest of the option area); only the
/// first [`total_len`](Self::total_len) bytes belong to the option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveOption<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GeneveOption<T> {
    /// Wraps a buffer without checking it.
    ///
    /// # Panics
    ///
    /// Getters panic if the buffer is shorter than the option. Use
    /// [`new_checked`](Self::new_checked) on untrusted input.
    pub const fn new_unchecked(buffer: T) -> GeneveOption<T> {
        GeneveOption { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len). After this succeeds no getter
    /// panics.
    pub fn new_checked(buffer: T) -> Result<GeneveOption<T>, Error> {
        let opt = Self::new_unchecked(buffer);
        opt.check_len()?;
        Ok(opt)
    }

    /// Checks that the buffer holds the option header and all of the data its Length field
    /// announces.
    ///
    /// # Errors
    ///
    /// [`Error::OptionLengthOverrun`] if either is cut short.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < OPTION_HEADER_LEN || len < self.total_len() {
            Err(Error::OptionLengthOverrun)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Option Class: the namespace of the type field (IANA registry, e.g. 0x0108 for AWS).
    #[inline]
    pub fn class(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::CLASS.start], b[field::CLASS.start + 1]])
    }

    /// The whole 8-bit Type field, critical bit included.
    #[inline]
    pub fn type_(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The critical bit, the high bit of Type ([RFC 8926 section 3.5]).
    ///
    /// [RFC 8926 section 3.5]: https://www.rfc-editor.org/rfc/rfc8926#section-3.5
    #[inline]
    pub fn is_critical(&self) -> bool {
        self.type_() & field::CRITICAL_BIT != 0
    }

    /// The 5-bit Length field: data length in 4-byte words.
    #[inline]
    pub fn length_words(&self) -> u8 {
        self.buffer.as_ref()[field::LENGTH] & field::LENGTH_MASK
    }

    /// Data length in bytes (0 to 124).
    #[inline]
    pub fn data_len(&self) -> usize {
        usize::from(self.length_words()) * 4
    }

    /// Length of the whole option, header included, in bytes (4 to 128).
    #[inline]
    pub fn total_len(&self) -> usize {
        OPTION_HEADER_LEN + self.data_len()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> GeneveOption<&'a T> {
    /// The option data, borrowed from the underlying buffer.
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::data(self.data_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GeneveOption<T> {
    /// Sets the Option Class.
    #[inline]
    pub fn set_class(&mut self, value: u16) {
        self.buffer.as_mut()[field::CLASS].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the whole Type field (include [`0x80`](OptionRepr::is_critical) for critical).
    #[inline]
    pub fn set_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the Length field in 4-byte words (only the low 5 bits are used) and clears the
    /// three reserved bits, which must be zero on transmission.
    #[inline]
    pub fn set_length_words(&mut self, value: u8) {
        self.buffer.as_mut()[field::LENGTH] = value & field::LENGTH_MASK;
    }

    /// The option data, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let range = field::data(self.data_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// One parsed Geneve option.
///
/// The three AWS Gateway Load Balancer options (class [`AWS_OPTION_CLASS`]) are decoded when both
/// their type and their data length are exact (types 1 and 2: 8 bytes, type 3: 4 bytes). An AWS
/// class option with a known type but a different length, or with the critical bit set, parses
/// as [`OptionRepr::Unknown`]: it is not the option AWS defines, and this way it is still
/// echoed byte for byte and its critical bit still counts in [`has_unknown_critical`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionRepr<'a> {
    /// AWS type 1: the GWLB endpoint id (the consumer's endpoint, i.e. the tenant attachment).
    AwsEndpointId(u64),
    /// AWS type 2: the attachment id.
    AwsAttachmentId(u64),
    /// AWS type 3: the flow cookie.
    AwsFlowCookie(u32),
    /// Any other option, kept as raw data.
    Unknown {
        /// Option Class.
        class: u16,
        /// The whole Type byte, critical bit included.
        type_: u8,
        /// Option data. To be emitted it must be a multiple of 4 bytes, at most 124.
        data: &'a [u8],
    },
}

impl<'a> OptionRepr<'a> {
    /// Parses a checked option view.
    ///
    /// # Errors
    ///
    /// [`Error::OptionLengthOverrun`] if the buffer does not hold the whole option.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(opt: &GeneveOption<&'a T>) -> Result<Self, Error> {
        opt.check_len()?;
        Ok(Self::from_parts(opt.class(), opt.type_(), opt.data()))
    }

    /// Classifies an option from its wire parts; never fails.
    #[inline]
    fn from_parts(class: u16, type_: u8, data: &'a [u8]) -> Self {
        if class == AWS_OPTION_CLASS {
            match (type_, data.len()) {
                (AWS_TYPE_ENDPOINT_ID, 8) => return OptionRepr::AwsEndpointId(be_u64(data)),
                (AWS_TYPE_ATTACHMENT_ID, 8) => return OptionRepr::AwsAttachmentId(be_u64(data)),
                (AWS_TYPE_FLOW_COOKIE, 4) => return OptionRepr::AwsFlowCookie(be_u32(data)),
                _ => {}
            }
        }
        OptionRepr::Unknown { class, type_, data }
    }

    /// Option Class of this option.
    pub fn class(&self) -> u16 {
        match self {
            OptionRepr::Unknown { class, .. } => *class,
            _ => AWS_OPTION_CLASS,
        }
    }

    /// Type byte of this option, critical bit included.
    pub fn type_(&self) -> u8 {
        match self {
            OptionRepr::AwsEndpointId(_) => AWS_TYPE_ENDPOINT_ID,
            OptionRepr::AwsAttachmentId(_) => AWS_TYPE_ATTACHMENT_ID,
            OptionRepr::AwsFlowCookie(_) => AWS_TYPE_FLOW_COOKIE,
            OptionRepr::Unknown { type_, .. } => *type_,
        }
    }

    /// Whether the critical bit (high bit of Type, [RFC 8926 section 3.5]) is set. The AWS
    /// options are never critical.
    ///
    /// [RFC 8926 section 3.5]: https://www.rfc-editor.org/rfc/rfc8926#section-3.5
    pub fn is_critical(&self) -> bool {
        self.type_() & field::CRITICAL_BIT != 0
    }

    /// Whether this option is one this crate does not decode.
    pub fn is_unknown(&self) -> bool {
        matches!(self, OptionRepr::Unknown { .. })
    }

    /// Data length in bytes.
    pub fn data_len(&self) -> usize {
        match self {
            OptionRepr::AwsEndpointId(_) | OptionRepr::AwsAttachmentId(_) => 8,
            OptionRepr::AwsFlowCookie(_) => 4,
            OptionRepr::Unknown { data, .. } => data.len(),
        }
    }

    /// Bytes [`emit`](Self::emit) writes: header plus data.
    pub fn buffer_len(&self) -> usize {
        OPTION_HEADER_LEN + self.data_len()
    }

    /// Writes the option at the start of `buf` and returns the bytes written. The reserved bits
    /// are written as zero. Nothing is written on error.
    ///
    /// # Errors
    ///
    /// [`Error::BadOptionDataLength`] if unknown data is not a multiple of 4 or over 124
    /// bytes; [`Error::BufferTooSmall`] if `buf` is shorter than
    /// [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let data_len = self.data_len();
        if data_len & 3 != 0 || data_len > MAX_OPTION_DATA_LEN {
            return Err(Error::BadOptionDataLength);
        }
        let total = OPTION_HEADER_LEN + data_len;
        let buf = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        let mut opt = GeneveOption::new_unchecked(buf);
        opt.set_class(self.class());
        opt.set_type(self.type_());
        // data_len <= 124, so the word count fits the 5-bit field.
        opt.set_length_words((data_len / 4) as u8);
        let data = opt.data_mut();
        match self {
            OptionRepr::AwsEndpointId(v) | OptionRepr::AwsAttachmentId(v) => {
                data.copy_from_slice(&v.to_be_bytes());
            }
            OptionRepr::AwsFlowCookie(v) => data.copy_from_slice(&v.to_be_bytes()),
            OptionRepr::Unknown { data: d, .. } => data.copy_from_slice(d),
        }
        Ok(total)
    }
}

#[inline]
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[inline]
pub(crate) fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// Iterator over the options of an option area, yielding `Result<OptionRepr, Error>`.
///
/// It is fused: after the first error it yields nothing more, because once one length is wrong
/// the position of every later option is unknown.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    /// Iterates over a raw option area, such as [`Packet::options`](crate::Packet::options).
    pub const fn new(options: &'a [u8]) -> Self {
        OptionsIter { rest: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<OptionRepr<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let opt = match GeneveOption::new_checked(self.rest) {
            Ok(opt) => opt,
            Err(e) => {
                self.rest = &[];
                return Some(Err(e));
            }
        };
        let total = opt.total_len();
        let repr = OptionRepr::from_parts(opt.class(), opt.type_(), opt.data());
        self.rest = self.rest.get(total..).unwrap_or(&[]);
        Some(Ok(repr))
    }
}

impl FusedIterator for OptionsIter<'_> {}

/// Walks a raw option area and reports whether it holds a critical option this crate does not
/// decode ([RFC 8926 section 3.5.1]: the receiver must then drop the packet).
///
/// # Errors
///
/// [`Error::OptionLengthOverrun`] if the option area is malformed.
///
/// [RFC 8926 section 3.5.1]: https://www.rfc-editor.org/rfc/rfc8926#section-3.5.1
pub fn has_unknown_critical(options: &[u8]) -> Result<bool, Error> {
    let mut found = false;
    for opt in OptionsIter::new(options) {
        let opt = opt?;
        found |= opt.is_unknown() && opt.is_critical();
    }
    Ok(found)
}

/// Checks that a raw option area is a well-formed sequence of options that ends exactly at its
/// end.
pub(crate) fn validate(options: &[u8]) -> Result<(), Error> {
    OptionsIter::new(options).try_for_each(|o| o.map(|_| ()))
}

/// Total bytes [`emit_options`] writes for `options`.
pub fn options_buffer_len(options: &[OptionRepr<'_>]) -> usize {
    options.iter().map(OptionRepr::buffer_len).sum()
}

/// Writes `options` one after another at the start of `buf`, and returns the bytes written.
/// Nothing is written on error.
///
/// # Errors
///
/// [`Error::BadOptionDataLength`] for an unencodable option, [`Error::BadOptionsLength`] if
/// the options total over 252 bytes (the most the header's Opt Len can describe),
/// [`Error::BufferTooSmall`] if `buf` is too short.
pub fn emit_options(options: &[OptionRepr<'_>], buf: &mut [u8]) -> Result<usize, Error> {
    let mut total = 0usize;
    for opt in options {
        let len = opt.data_len();
        if len & 3 != 0 || len > MAX_OPTION_DATA_LEN {
            return Err(Error::BadOptionDataLength);
        }
        total += OPTION_HEADER_LEN + len;
        if total > MAX_OPTIONS_LEN {
            return Err(Error::BadOptionsLength);
        }
    }
    let buf = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    let mut at = 0;
    for opt in options {
        at += opt.emit(&mut buf[at..])?;
    }
    Ok(at)
}

#[cfg(test)]
mod test {
    use super::*;

    /// AWS endpoint id option: class 0x0108, type 1, length 2 words, data 8 bytes.
    static OPTION_BYTES: [u8; 12] = [
        0x01, 0x08, 0x01, 0x02, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
    ];

    const ENDPOINT_ID: u64 = 0x0123_4567_89ab_cdef;

    /// Three options in a non-AWS order: cookie, an unknown critical experimental option with no
    /// data, then an unknown option with 4 bytes of data.
    static MIXED_OPTIONS: [u8; 20] = [
        0x01, 0x08, 0x03, 0x01, 0xde, 0xad, 0xbe, 0xef, // AWS flow cookie
        0xff, 0x00, 0x85, 0x00, // class 0xff00, type 0x85 (critical), no data
        0x01, 0x32, 0x01, 0x01, 0x00, 0x00, 0x00, 0x2a, // GCP class 0x0132, type 1
    ];

    #[test]
    fn test_deconstruct() {
        let opt = GeneveOption::new_checked(&OPTION_BYTES[..]).unwrap();
        assert_eq!(opt.class(), 0x0108);
        assert_eq!(opt.type_(), 1);
        assert!(!opt.is_critical());
        assert_eq!(opt.length_words(), 2);
        assert_eq!(opt.data_len(), 8);
        assert_eq!(opt.total_len(), 12);
        assert_eq!(opt.data(), &OPTION_BYTES[4..]);
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0xa5u8; 12];
        let mut opt = GeneveOption::new_unchecked(&mut bytes[..]);
        opt.set_class(0x0108);
        opt.set_type(1);
        opt.set_length_words(2);
        opt.data_mut().copy_from_slice(&ENDPOINT_ID.to_be_bytes());
        assert_eq!(opt.into_inner(), &OPTION_BYTES[..]);
    }

    #[test]
    fn test_parse() {
        let opt = GeneveOption::new_checked(&OPTION_BYTES[..]).unwrap();
        assert_eq!(
            OptionRepr::parse(&opt).unwrap(),
            OptionRepr::AwsEndpointId(ENDPOINT_ID)
        );
    }

    #[test]
    fn test_emit() {
        let repr = OptionRepr::AwsEndpointId(ENDPOINT_ID);
        assert_eq!(repr.buffer_len(), 12);
        let mut bytes = vec![0xa5; 16];
        assert_eq!(repr.emit(&mut bytes), Ok(12));
        assert_eq!(&bytes[..12], &OPTION_BYTES[..]);
        assert_eq!(&bytes[12..], &[0xa5; 4], "emit wrote past its length");
    }

    #[test]
    fn test_emit_clears_reserved_bits() {
        let mut bytes = vec![0xa5; 8];
        OptionRepr::AwsFlowCookie(7).emit(&mut bytes).unwrap();
        assert_eq!(bytes, [0x01, 0x08, 0x03, 0x01, 0, 0, 0, 7]);
    }

    #[test]
    fn test_reserved_bits_ignored_on_receipt() {
        let mut bytes = OPTION_BYTES;
        bytes[3] |= 0xe0;
        let opt = GeneveOption::new_checked(&bytes[..]).unwrap();
        assert_eq!(opt.length_words(), 2);
        assert_eq!(
            OptionRepr::parse(&opt).unwrap(),
            OptionRepr::AwsEndpointId(ENDPOINT_ID)
        );
    }

    #[test]
    fn test_all_aws_types() {
        let cases: [(&[u8], OptionRepr<'_>); 3] = [
            (&OPTION_BYTES, OptionRepr::AwsEndpointId(ENDPOINT_ID)),
            (
                &[1, 8, 2, 2, 0, 0, 0, 0, 0, 0, 0x10, 0x01],
                OptionRepr::AwsAttachmentId(0x1001),
            ),
            (
                &[1, 8, 3, 1, 0xca, 0xfe, 0xf0, 0x0d],
                OptionRepr::AwsFlowCookie(0xcafe_f00d),
            ),
        ];
        for (bytes, want) in cases {
            let opt = GeneveOption::new_checked(bytes).unwrap();
            let got = OptionRepr::parse(&opt).unwrap();
            assert_eq!(got, want);
            assert!(!got.is_critical());
            assert!(!got.is_unknown());
            let mut out = vec![0xa5; got.buffer_len()];
            assert_eq!(got.emit(&mut out), Ok(bytes.len()));
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn test_aws_wrong_length_is_unknown() {
        // Type 3 (flow cookie) with 8 bytes of data instead of 4.
        let bytes = [1, 8, 3, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let opt = GeneveOption::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            OptionRepr::parse(&opt).unwrap(),
            OptionRepr::Unknown {
                class: 0x0108,
                type_: 3,
                data: &bytes[4..]
            }
        );
        // Type 1 (endpoint id) with only 4 bytes.
        let bytes = [1, 8, 1, 1, 0, 0, 0, 1];
        let opt = GeneveOption::new_checked(&bytes[..]).unwrap();
        assert!(OptionRepr::parse(&opt).unwrap().is_unknown());
    }

    #[test]
    fn test_aws_critical_type_is_unknown_critical() {
        let mut bytes = OPTION_BYTES;
        bytes[2] |= 0x80;
        let opt = GeneveOption::new_checked(&bytes[..]).unwrap();
        assert!(opt.is_critical());
        let repr = OptionRepr::parse(&opt).unwrap();
        assert_eq!(
            repr,
            OptionRepr::Unknown {
                class: 0x0108,
                type_: 0x81,
                data: &bytes[4..]
            }
        );
        assert!(repr.is_critical());
        assert_eq!(has_unknown_critical(&bytes), Ok(true));
    }

    #[test]
    fn test_unknown_class() {
        let bytes = [0x01, 0x32, 0x02, 0x01, 1, 2, 3, 4];
        let opt = GeneveOption::new_checked(&bytes[..]).unwrap();
        let repr = OptionRepr::parse(&opt).unwrap();
        assert_eq!(
            repr,
            OptionRepr::Unknown {
                class: 0x0132,
                type_: 2,
                data: &[1, 2, 3, 4]
            }
        );
        assert!(!repr.is_critical());
        assert_eq!(repr.class(), 0x0132);
        assert_eq!(repr.type_(), 2);
        let mut out = vec![0xa5; 8];
        assert_eq!(repr.emit(&mut out), Ok(8));
        assert_eq!(out, bytes);
    }

    #[test]
    fn test_iter_mixed_order() {
        let got: Vec<_> = OptionsIter::new(&MIXED_OPTIONS).collect();
        assert_eq!(
            got,
            vec![
                Ok(OptionRepr::AwsFlowCookie(0xdead_beef)),
                Ok(OptionRepr::Unknown {
                    class: 0xff00,
                    type_: 0x85,
                    data: &[]
                }),
                Ok(OptionRepr::Unknown {
                    class: 0x0132,
                    type_: 1,
                    data: &[0, 0, 0, 0x2a]
                }),
            ]
        );
        assert_eq!(has_unknown_critical(&MIXED_OPTIONS), Ok(true));
        assert_eq!(has_unknown_critical(&MIXED_OPTIONS[..8]), Ok(false));
        assert_eq!(has_unknown_critical(&[]), Ok(false));
    }

    #[test]
    fn test_iter_fused_after_error() {
        // The first option claims 8 words of data but only 4 bytes follow; the bytes after it
        // would parse as a valid option if the iterator went on.
        let bytes = [
            0x01, 0x08, 0x03, 0x08, 0, 0, 0, 1, 0x01, 0x08, 0x03, 0x01, 0, 0, 0, 2,
        ];
        let mut it = OptionsIter::new(&bytes[..8]);
        assert_eq!(it.next(), Some(Err(Error::OptionLengthOverrun)));
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);

        let mut bytes = bytes;
        bytes[3] = 0x02; // now spans 12 bytes: the valid first option ends at 12, 4 left over
        let mut it = OptionsIter::new(&bytes[..14]);
        assert!(matches!(it.next(), Some(Ok(OptionRepr::Unknown { .. }))));
        assert_eq!(it.next(), Some(Err(Error::OptionLengthOverrun)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn test_option_length_overflow() {
        // Length field at its maximum (31 words = 124 bytes) with only 8 bytes present.
        let bytes = [0x01, 0x08, 0x01, 0x1f, 0, 0, 0, 0];
        assert_eq!(
            GeneveOption::new_checked(&bytes[..]).unwrap_err(),
            Error::OptionLengthOverrun
        );
        assert_eq!(
            has_unknown_critical(&bytes),
            Err(Error::OptionLengthOverrun)
        );
        assert_eq!(validate(&bytes), Err(Error::OptionLengthOverrun));
    }

    #[test]
    fn test_max_length_option() {
        let mut bytes = vec![0u8; OPTION_HEADER_LEN + MAX_OPTION_DATA_LEN];
        bytes[..4].copy_from_slice(&[0xff, 0xff, 0x7f, 0x1f]);
        let opt = GeneveOption::new_checked(&bytes[..]).unwrap();
        assert_eq!(opt.total_len(), 128);
        let repr = OptionRepr::parse(&opt).unwrap();
        let mut out = vec![0xa5; 128];
        assert_eq!(repr.emit(&mut out), Ok(128));
        assert_eq!(out, bytes);
    }

    #[test]
    fn test_every_truncation() {
        for len in 0..OPTION_BYTES.len() {
            let prefix = &OPTION_BYTES[..len];
            assert_eq!(
                GeneveOption::new_checked(prefix).unwrap_err(),
                Error::OptionLengthOverrun,
                "prefix length {len}"
            );
            assert_eq!(
                OptionsIter::new(prefix).find_map(Result::err).is_some(),
                len > 0
            );
        }
        for len in 0..MIXED_OPTIONS.len() {
            let prefix = &MIXED_OPTIONS[..len];
            let ok = matches!(len, 0 | 8 | 12);
            assert_eq!(validate(prefix).is_ok(), ok, "prefix length {len}");
        }
    }

    #[test]
    fn test_emit_errors() {
        let odd = OptionRepr::Unknown {
            class: 1,
            type_: 1,
            data: &[1, 2, 3],
        };
        assert_eq!(odd.emit(&mut [0; 16]), Err(Error::BadOptionDataLength));
        let big = [0u8; 128];
        let too_long = OptionRepr::Unknown {
            class: 1,
            type_: 1,
            data: &big,
        };
        assert_eq!(
            too_long.emit(&mut [0; 256]),
            Err(Error::BadOptionDataLength)
        );
        let mut short = [0xa5; 11];
        assert_eq!(
            OptionRepr::AwsEndpointId(1).emit(&mut short),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(short, [0xa5; 11], "nothing written on error");
    }

    #[test]
    fn test_emit_options() {
        let opts = [
            OptionRepr::AwsFlowCookie(0xdead_beef),
            OptionRepr::Unknown {
                class: 0xff00,
                type_: 0x85,
                data: &[],
            },
            OptionRepr::Unknown {
                class: 0x0132,
                type_: 1,
                data: &[0, 0, 0, 0x2a],
            },
        ];
        assert_eq!(options_buffer_len(&opts), 20);
        let mut out = vec![0xa5; 24];
        assert_eq!(emit_options(&opts, &mut out), Ok(20));
        assert_eq!(&out[..20], &MIXED_OPTIONS[..]);
        assert_eq!(&out[20..], &[0xa5; 4]);

        let mut short = vec![0xa5; 19];
        assert_eq!(emit_options(&opts, &mut short), Err(Error::BufferTooSmall));
        assert_eq!(short, vec![0xa5; 19]);

        // Two maximal options (256 bytes) exceed what Opt Len can describe.
        let data = [0u8; 124];
        let big = OptionRepr::Unknown {
            class: 1,
            type_: 1,
            data: &data,
        };
        assert_eq!(
            emit_options(&[big, big], &mut [0; 512]),
            Err(Error::BadOptionsLength)
        );
    }
}
