//! The one error type of the crate.

use core::fmt;

/// Everything that can go wrong when parsing or emitting Geneve.
///
/// Variants carry no data so that matching on them is free and a data path can keep one counter
/// per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The buffer is shorter than the 8-byte fixed Geneve header.
    Truncated,
    /// The version field is not 0 ([RFC 8926 section 3.4]: such packets must be dropped).
    ///
    /// [RFC 8926 section 3.4]: https://www.rfc-editor.org/rfc/rfc8926#section-3.4
    BadVersion,
    /// The header's Opt Len field says the options extend past the end of the buffer.
    OptionsOverrun,
    /// One option's header or data runs past the end of the option area.
    OptionLengthOverrun,
    /// Emitting: the output buffer is shorter than the bytes to write.
    BufferTooSmall,
    /// Emitting: the raw option area is not a multiple of 4 bytes or longer than 252 bytes, so
    /// it cannot be described by the 6-bit Opt Len field.
    BadOptionsLength,
    /// Emitting: an option's data is not a multiple of 4 bytes or longer than 124 bytes, so it
    /// cannot be described by the 5-bit option Length field.
    BadOptionDataLength,
    /// Emitting: the VNI does not fit in 24 bits.
    VniOutOfRange,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            Error::Truncated => "geneve: buffer shorter than the 8-byte header",
            Error::BadVersion => "geneve: unsupported version",
            Error::OptionsOverrun => "geneve: options length exceeds the buffer",
            Error::OptionLengthOverrun => "geneve: option length overruns the option area",
            Error::BufferTooSmall => "geneve: output buffer too small",
            Error::BadOptionsLength => "geneve: option area not a multiple of 4 or over 252 bytes",
            Error::BadOptionDataLength => {
                "geneve: option data not a multiple of 4 or over 124 bytes"
            }
            Error::VniOutOfRange => "geneve: VNI does not fit in 24 bits",
        };
        f.write_str(msg)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_display_is_distinct() {
        let all = [
            Error::Truncated,
            Error::BadVersion,
            Error::OptionsOverrun,
            Error::OptionLengthOverrun,
            Error::BufferTooSmall,
            Error::BadOptionsLength,
            Error::BadOptionDataLength,
            Error::VniOutOfRange,
        ];
        let texts: Vec<String> = all.iter().map(|e| e.to_string()).collect();
        for (i, a) in texts.iter().enumerate() {
            assert!(a.starts_with("geneve: "));
            for b in &texts[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn test_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(Error::BadVersion);
        assert_eq!(e.to_string(), "geneve: unsupported version");
    }
}
