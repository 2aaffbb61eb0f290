//! The Internet checksum ([RFC 1071]): the ones'-complement sum of 16-bit big-endian words,
//! folded to 16 bits and complemented; the pseudo-headers TCP and UDP sum over
//! ([RFC 9293 section 3.1], [RFC 768], [RFC 8200 section 8.1]); and the incremental update of
//! a checksum when one field changes ([RFC 1624] equation 3).
//!
//! Sums are carried unfolded in a `u32` accumulator: [`sum`] folds early whenever the top bit
//! is set, so any number of words can be added, and [`fold`] folds once at the end. The
//! folded value depends only on the words summed (ones'-complement addition is associative
//! and commutative), so a sum may be split anywhere on an even byte boundary, and a sum over
//! a template's constant fields can be finished per packet with the fields that change.
//!
//! This is the only checksum code of the crate: encapsulation, TCP resets and
//! [`crate::parse::ipv4_checksum_ok`] all use it.
//!
//! [RFC 1071]: https://www.rfc-editor.org/rfc/rfc1071
//! [RFC 1624]: https://www.rfc-editor.org/rfc/rfc1624
//! [RFC 768]: https://www.rfc-editor.org/rfc/rfc768
//! [RFC 9293 section 3.1]: https://www.rfc-editor.org/rfc/rfc9293#section-3.1
//! [RFC 8200 section 8.1]: https://www.rfc-editor.org/rfc/rfc8200#section-8.1

/// Adds `bytes` as big-endian 16-bit words to a ones'-complement accumulator (an odd last
/// byte is padded with a zero byte, RFC 1071 section 4.1).
#[inline]
pub fn sum(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early so long payloads cannot overflow the accumulator.
        if acc & 0x8000_0000 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a ones'-complement accumulator to 16 bits (end-around carry).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field for a sum that covers every word but the checksum field itself:
/// the complement of the folded sum.
#[inline]
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// Whether a header (or segment, with its pseudo-header in `acc`) that includes its checksum
/// field verifies: the folded sum is all ones.
#[inline]
pub fn verifies(acc: u32, bytes: &[u8]) -> bool {
    fold(sum(acc, bytes)) == 0xffff
}

/// The IPv4 pseudo-header of a TCP or UDP checksum ([RFC 9293 section 3.1], [RFC 768]):
/// source and destination address, protocol and the upper-layer length.
///
/// [RFC 9293 section 3.1]: https://www.rfc-editor.org/rfc/rfc9293#section-3.1
/// [RFC 768]: https://www.rfc-editor.org/rfc/rfc768
#[inline]
pub fn pseudo_header_v4(src: &[u8; 4], dst: &[u8; 4], protocol: u8, len: u16) -> u32 {
    sum(sum(0, src), dst) + u32::from(protocol) + u32::from(len)
}

/// The IPv6 pseudo-header of an upper-layer checksum ([RFC 8200 section 8.1]): source and
/// destination address, upper-layer length and next header.
///
/// [RFC 8200 section 8.1]: https://www.rfc-editor.org/rfc/rfc8200#section-8.1
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, len: u16) -> u32 {
    pseudo_addresses_v6(src, dst, next_header) + u32::from(len)
}

/// The part of an IPv6 pseudo-header that is the same for every packet of a tunnel or
/// connection (addresses and next header): [`pseudo_header_v6`] is this plus the length.
#[inline]
pub fn pseudo_addresses_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8) -> u32 {
    sum(sum(0, src), dst) + u32::from(next_header)
}

/// The checksum `hc` of a header after one 16-bit field changes from `old` to `new`, without
/// summing the header again: `HC' = ~(~HC + ~m + m')` ([RFC 1624] equation 3, which, unlike
/// equation 2 of RFC 1141, never yields the `0x0000` a full recomputation cannot).
///
/// [RFC 1624]: https://www.rfc-editor.org/rfc/rfc1624#section-3
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    finish(u32::from(!hc) + u32::from(!old) + u32::from(new))
}

/// [`update16`] for a 32-bit field (two words), e.g. an IPv4 address in a TCP pseudo-header.
#[inline]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let acc = u32::from(!hc)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!old as u16)
        + (new >> 16)
        + (new & 0xffff);
    finish(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2.
    static RFC1071_BYTES: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    /// An IPv4 header (10.0.0.1 -> 10.0.0.2, TTL 64, UDP, DF) with its checksum.
    static IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x30, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0xbb, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02,
    ];

    #[test]
    fn test_rfc1071_example() {
        assert_eq!(fold(sum(0, &RFC1071_BYTES)), 0xddf2);
        assert_eq!(finish(sum(0, &RFC1071_BYTES)), !0xddf2);
    }

    #[test]
    fn test_ipv4_header_verifies() {
        assert!(verifies(0, &IPV4_HEADER));
        let mut h = IPV4_HEADER;
        h[10..12].fill(0);
        assert_eq!(finish(sum(0, &h)), 0x26bb);
        h[8] = 63;
        assert!(!verifies(0, &h));
    }

    #[test]
    fn test_odd_length_pads_with_zero() {
        assert_eq!(sum(0, &[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(0, &[]), 0);
    }

    #[test]
    fn test_split_sums_agree() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(9000).collect();
        let whole = fold(sum(7, &bytes));
        for cut in [0, 2, 40, 1000, 8998, 9000] {
            assert_eq!(fold(sum(sum(7, &bytes[..cut]), &bytes[cut..])), whole);
        }
    }

    #[test]
    fn test_long_input_does_not_overflow() {
        let bytes = vec![0xff; 65536];
        assert_eq!(fold(sum(0, &bytes)), 0xffff);
    }

    #[test]
    fn test_pseudo_headers() {
        let (s, d) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        assert_eq!(
            pseudo_header_v4(&s, &d, 17, 8),
            0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 8
        );
        let mut s6 = [0u8; 16];
        s6[15] = 1;
        let d6 = [0xff; 16];
        assert_eq!(pseudo_header_v6(&s6, &d6, 6, 20), 1 + 8 * 0xffff + 6 + 20);
        assert_eq!(
            pseudo_header_v6(&s6, &d6, 6, 20),
            pseudo_addresses_v6(&s6, &d6, 6) + 20
        );
    }

    #[test]
    fn test_incremental_update_matches_recomputation() {
        // Decrement the TTL: the TTL/protocol word goes 0x4011 -> 0x3f11.
        let mut h = IPV4_HEADER;
        let hc = u16::from_be_bytes([h[10], h[11]]);
        let updated = update16(hc, 0x4011, 0x3f11);
        h[8] = 0x3f;
        h[10..12].fill(0);
        assert_eq!(updated, finish(sum(0, &h)));
        // Rewrite the source address.
        let mut h = IPV4_HEADER;
        let updated = update32(hc, 0x0a00_0001, 0xc0a8_0107);
        h[12..16].copy_from_slice(&[192, 168, 1, 7]);
        h[10..12].fill(0);
        assert_eq!(updated, finish(sum(0, &h)));
    }

    proptest::proptest! {
        /// RFC 1624 equation 3 gives what summing the header again gives, for any header
        /// whose words are not all zero (the one case where the recomputed 0xffff and the
        /// updated 0x0000 are the same ones'-complement number).
        #[test]
        fn update_matches_recomputation(
            words in proptest::array::uniform10(proptest::prelude::any::<u16>()),
            i in 0usize..10,
            new in proptest::prelude::any::<u16>(),
        ) {
            let i = if i == 5 { 0 } else { i };
            let mut w = words;
            w[5] = 0;
            let bytes = |w: &[u16; 10]| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
            let hc = finish(sum(0, &bytes(&w)));
            let old = w[i];
            w[i] = new;
            proptest::prop_assume!(w.iter().any(|&x| x != 0));
            proptest::prop_assert_eq!(update16(hc, old, new), finish(sum(0, &bytes(&w))));
        }
    }
}
