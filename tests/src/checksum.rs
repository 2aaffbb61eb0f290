//! The Internet checksum (RFC 1071), written here independently of gwlb's `wire::checksum`.

/// One's-complement sum of big-endian 16-bit words (an odd last byte is padded with zero).
pub fn ones_sum(mut acc: u64, bytes: &[u8]) -> u64 {
    let mut it = bytes.chunks(2);
    for c in &mut it {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        acc += u64::from(w);
    }
    acc
}

/// Final Internet checksum of an accumulator.
pub fn checksum(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `bytes` (an IPv4 header with its checksum field zeroed, say).
pub fn ipv4_checksum(bytes: &[u8]) -> u16 {
    checksum(ones_sum(0, bytes))
}

/// Sets the header checksum of the IPv4 header at the start of `h`, over its IHL (whatever
/// its options), clamped to 20 bytes and to what `h` holds, so that a header with a broken
/// IHL still gets a checksum (`h` is at least 12 bytes).
pub fn set_ipv4_checksum(h: &mut [u8]) {
    let ihl = (usize::from(h[0] & 0x0f) * 4).clamp(20.min(h.len()), h.len());
    h[10..12].fill(0);
    let c = ipv4_checksum(&h[..ihl]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's example: the words 0001 f203 f4f5 f6f7 sum to 0xddf2, checksum 0x220d.
    #[test]
    fn checksum_matches_rfc_1071() {
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_sum(0, &b), 0x2_ddf0);
        assert_eq!(checksum(ones_sum(0, &b)), !0xddf2);
        let mut h = [
            0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xff, 0xff, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8,
            0, 0xc7,
        ];
        set_ipv4_checksum(&mut h);
        assert_eq!(&h[10..12], &[0xb8, 0x61]);
    }
}
