//! IPv4 fragmentation (RFC 791) of packets without DF that are too large for the next link:
//! what a router does, so that senders that leave DF clear get through a gateway whose
//! appliance side (or egress port) has a smaller MTU than their path.
//!
//! gwlb fragments the *inner* packet, before encapsulation (and, for a returned packet over
//! its egress port's MTU, after decapsulation): each fragment is an IPv4 packet of its own,
//! processed like a fragment the sender had made. Appliances therefore see ordinary
//! fragments, which every IP stack and firewall handles, and the outer packets keep DF set
//! (no reassembly in the underlay or at the appliance's tunnel endpoint).
//!
//! A fragment carries the original header's fields (identification, TTL, DSCP/ECN,
//! protocol, addresses) with its own length, offset and More-Fragments flag; a packet that
//! is itself a fragment is split further (offsets continue from its own, the last piece
//! keeps its More-Fragments flag). Packets with IP options are not fragmented (their
//! copied options would have to be sorted out per fragment; such packets are rare, and are
//! dropped as `oversize`), nor is anything with DF set (those get an ICMP error instead,
//! [`crate::too_big`]). Every fragment but the last carries a multiple of 8 payload bytes.
//!
//! Splitting is outside the per-packet path: it allocates one buffer per fragment from the
//! packet's own pool ([`PacketBuf::alloc_like`]).

use crate::packet_buf::PacketBuf;
use crate::parse::{ParsedPacket, L3};
use crate::wire::ipv4;

/// Most fragments one packet is split into; a packet that would need more is not split
/// (64 x 8-byte-aligned pieces of a 576-byte link carry 35 KiB, more than any frame gwlb
/// receives).
pub const MAX_FRAGMENTS: usize = 64;

/// Why a packet was not split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentError {
    /// Not IPv4, DF set, IP options present, or the frame does not hold the whole packet.
    NotFragmentable,
    /// `max_ip_len` leaves no room for 8 payload bytes after the header, or the packet would
    /// need more than [`MAX_FRAGMENTS`] pieces.
    TooSmallMtu,
    /// No buffer to be had for a fragment (the pool is empty), or the sink refused one.
    NoBuffer,
}

/// Whether `p` (parsed from `frame`) is an IPv4 packet that may be fragmented: DF clear, no
/// IP options, the whole packet in the frame.
pub fn fragmentable(frame: &[u8], p: &ParsedPacket) -> bool {
    if p.l3 != L3::Ipv4 {
        return false;
    }
    let l3 = usize::from(p.l3_offset);
    let Some(h) = frame.get(l3..l3 + usize::from(p.l3_len)) else {
        return false;
    };
    if h.len() < ipv4::HEADER_LEN {
        return false;
    }
    let ip = ipv4::Packet::new_unchecked(h);
    !ip.dont_frag() && ip.header_len() == ipv4::HEADER_LEN
}

/// Splits the IPv4 packet `p` in `buf` into fragments of at most `max_ip_len` bytes each
/// (IP header included), every one with `buf`'s L2 header in front, handing them to `sink`
/// in offset order. `buf` is only read. Returns how many fragments were made; on an error
/// no fragment has reached `sink` except those it had taken before a buffer ran out (the
/// caller drops what it collected).
pub fn split<B: PacketBuf>(
    buf: &B,
    p: &ParsedPacket,
    max_ip_len: usize,
    sink: &mut impl FnMut(B) -> bool,
) -> Result<usize, FragmentError> {
    let frame = buf.data();
    if !fragmentable(frame, p) {
        return Err(FragmentError::NotFragmentable);
    }
    let l3 = usize::from(p.l3_offset);
    let packet = &frame[l3..l3 + usize::from(p.l3_len)];
    let (header, payload) = packet.split_at(ipv4::HEADER_LEN);
    let piece = max_ip_len.saturating_sub(ipv4::HEADER_LEN) & !7;
    if piece == 0 || payload.len().div_ceil(piece) > MAX_FRAGMENTS {
        return Err(FragmentError::TooSmallMtu);
    }
    let original = ipv4::Packet::new_unchecked(header);
    let (base, last_more) = (original.frag_offset(), original.more_frags());
    let mut made = 0;
    for (i, chunk) in payload.chunks(piece).enumerate() {
        let len = l3 + ipv4::HEADER_LEN + chunk.len();
        let mut f = buf.alloc_like(len).ok_or(FragmentError::NoBuffer)?;
        let out = f.data_mut();
        out[..l3].copy_from_slice(&frame[..l3]);
        out[l3..l3 + ipv4::HEADER_LEN].copy_from_slice(header);
        out[l3 + ipv4::HEADER_LEN..len].copy_from_slice(chunk);
        let last = (i + 1) * piece >= payload.len();
        // Offsets are in 8-byte units and `piece` is a multiple of 8.
        let offset = base + ((i * piece) / 8) as u16;
        let more = if last { last_more } else { true };
        let mut ip = ipv4::Packet::new_unchecked(&mut out[l3..len]);
        ip.set_total_len((ipv4::HEADER_LEN + chunk.len()) as u16);
        ip.set_flags_frag_offset(
            (offset & ipv4::FRAG_OFFSET_MASK) | if more { ipv4::FLAG_MF } else { 0 },
        );
        ip.fill_checksum();
        if !sink(f) {
            return Err(FragmentError::NoBuffer);
        }
        made += 1;
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet_buf::VecBuf;
    use crate::parse::parse_frame;

    /// An Ethernet + IPv4 + UDP frame of `ip_len` bytes with flags/offset word `flags`.
    fn frame(ip_len: usize, flags: u16, ihl_words: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + ip_len];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let hl = usize::from(ihl_words) * 4;
        {
            let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
            ip.set_version_and_header_len(4, hl);
            ip.set_total_len(ip_len as u16);
            ip.set_ident(0x4242);
            ip.set_flags_frag_offset(flags);
            ip.set_ttl(61);
            ip.set_protocol(17);
            ip.set_src_addr([10, 1, 0, 2]);
            ip.set_dst_addr([10, 2, 0, 2]);
            ip.fill_checksum();
        }
        // UDP header then a counting payload.
        let l4 = 14 + hl;
        f[l4..l4 + 2].copy_from_slice(&5000u16.to_be_bytes());
        f[l4 + 2..l4 + 4].copy_from_slice(&53u16.to_be_bytes());
        f[l4 + 4..l4 + 6].copy_from_slice(&((ip_len - hl) as u16).to_be_bytes());
        for (i, b) in f[l4 + 8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f
    }

    fn split_all(f: &[u8], max: usize) -> Result<Vec<Vec<u8>>, FragmentError> {
        let b = VecBuf::new(f);
        let p = parse_frame(f).expect("parses");
        let mut out = Vec::new();
        split(&b, &p, max, &mut |x: VecBuf| {
            out.push(x.data().to_vec());
            true
        })?;
        Ok(out)
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let f = frame(3000, 0, 5);
        let frags = split_all(&f, 1400).unwrap();
        assert_eq!(frags.len(), 3);
        let mut payload = Vec::new();
        for (i, g) in frags.iter().enumerate() {
            assert_eq!(&g[..14], &f[..14], "the L2 header is copied");
            let ip = ipv4::Packet::new_checked(&g[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert!(usize::from(ip.total_len()) <= 1400);
            assert_eq!(usize::from(ip.total_len()), g.len() - 14);
            assert_eq!((ip.ident(), ip.ttl(), ip.protocol()), (0x4242, 61, 17));
            assert_eq!(ip.more_frags(), i < 2);
            assert!(!ip.dont_frag());
            assert_eq!(usize::from(ip.frag_offset()) * 8, payload.len());
            if i < 2 {
                assert_eq!(ip.payload().len() % 8, 0);
            }
            payload.extend_from_slice(ip.payload());
        }
        assert_eq!(
            payload,
            f[14 + 20..],
            "the pieces are the payload, in order"
        );
    }

    #[test]
    fn a_fragment_is_split_further_keeping_its_offset_and_more_flag() {
        // A middle fragment (offset 185 x 8 bytes, MF set) of 2000 bytes.
        let f = frame(2000, ipv4::FLAG_MF | 185, 5);
        let frags = split_all(&f, 1000).unwrap();
        assert_eq!(frags.len(), 3);
        let ips: Vec<_> = frags
            .iter()
            .map(|g| ipv4::Packet::new_checked(&g[14..]).unwrap())
            .collect();
        assert_eq!(ips[0].frag_offset(), 185);
        assert_eq!(ips[1].frag_offset(), 185 + 976 / 8);
        assert!(ips.iter().all(|ip| ip.more_frags()), "the last keeps MF");
        // The last fragment of a packet ends with MF clear.
        let f = frame(2000, 300, 5);
        let frags = split_all(&f, 1000).unwrap();
        let last = ipv4::Packet::new_checked(&frags[2][14..]).unwrap();
        assert!(!last.more_frags());
        assert_eq!(last.frag_offset(), 300 + 2 * 976 / 8);
    }

    #[test]
    fn df_options_and_tiny_links_are_refused() {
        assert_eq!(
            split_all(&frame(3000, ipv4::FLAG_DF, 5), 1400),
            Err(FragmentError::NotFragmentable)
        );
        assert_eq!(
            split_all(&frame(3000, 0, 6), 1400),
            Err(FragmentError::NotFragmentable),
            "IP options"
        );
        assert_eq!(
            split_all(&frame(3000, 0, 5), 27),
            Err(FragmentError::TooSmallMtu)
        );
        assert_eq!(
            split_all(&frame(9000, 0, 5), 28 + 100),
            Err(FragmentError::TooSmallMtu),
            "more than MAX_FRAGMENTS pieces"
        );
        assert_eq!(
            split_all(&frame(9000, 0, 5), 20 + 8 * 141).unwrap().len(),
            8
        );
    }

    #[test]
    fn a_sink_that_refuses_stops_the_split() {
        let f = frame(3000, 0, 5);
        let b = VecBuf::new(&f);
        let p = parse_frame(&f).unwrap();
        let mut taken = 0;
        let r = split(&b, &p, 1400, &mut |_| {
            taken += 1;
            taken < 2
        });
        assert_eq!(r, Err(FragmentError::NoBuffer));
        assert_eq!(taken, 2);
    }
}
