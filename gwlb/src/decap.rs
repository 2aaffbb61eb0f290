//! Decapsulation of what appliances send back.
//!
//! An appliance returns a flow's packets inside Geneve. What comes back differs by appliance
//! (see `shared/reference/appliances.md`): AWS-style appliances echo our header and options and
//! keep our UDP ports; the Linux kernel drops all options, uses its own VNI, a hashed UDP
//! source port, TTL 64 (or 2, or 0) and UDP checksum 0, and routes the inner packet (TTL
//! decremented). gwlb therefore relies on none of our outer fields coming back: a return is
//! matched on the appliance's outer source address plus the inner packet's flow, and the
//! flow cookie is checked only when it is present.
//!
//! [`parse_return_into`] validates the Geneve header and parses the inner packet in place;
//! [`restore_frame`] turns the buffer into the inner packet under a fresh Ethernet header,
//! leaving the inner IP packet byte for byte as the appliance sent it.

use crate::packet_buf::PacketBuf;
use crate::parse::{self, DropReason, ParsedPacket};
use crate::wire::{ethernet, ethertype, udp, MacAddr};

/// The Geneve facts of a validated return (the inner packet is parsed separately, in place:
/// see [`parse_return_into`]). The VNI is not kept: appliances may change it, and nothing
/// depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneveReturn {
    /// Offset of the inner IP packet in the frame.
    pub inner_offset: usize,
    /// The flow cookie, when the appliance echoed the AWS options.
    pub flow_cookie: Option<u32>,
    /// The VNI.
    pub vni: u32,
    /// The endpoint id (AWS option type 1), when the appliance echoed it.
    pub endpoint_id: Option<u64>,
}

/// Validates the Geneve payload of a UDP datagram whose outer headers `outer` were parsed from
/// `frame`, and parses the inner packet into `inner` (offsets relative to
/// [`GeneveReturn::inner_offset`]). `inner` is written in place so that the data path moves
/// no parsed packet around; on error its content is unspecified.
///
/// The Geneve payload is the UDP datagram's (its length field, [`ParsedPacket::udp_len`] of
/// the outer parse, bounds it, not the outer IP length). Drops: [`DropReason::GeneveMalformed`]
/// (truncated, bad version, option overrun, OAM packets, an outer packet that is not UDP),
/// [`DropReason::GeneveCriticalOption`] (an option we do not understand has its critical bit
/// set, RFC 8926 section 3.5.1), [`DropReason::GeneveBadProtocol`] (not IPv4 or IPv6 inside,
/// or a protocol type that disagrees with the inner version), and the inner packet's own
/// parse errors.
#[inline]
pub fn parse_return_into(
    frame: &[u8],
    outer: &ParsedPacket,
    inner: &mut ParsedPacket,
) -> Result<GeneveReturn, DropReason> {
    let l4 = usize::from(outer.l4_offset.ok_or(DropReason::GeneveMalformed)?);
    let geneve_off = l4 + udp::HEADER_LEN;
    // The Geneve payload ends with the UDP datagram (the outer parse checked that the UDP
    // length fits the IP packet): bytes past it are not the appliance's to have us forward.
    let end = (l4 + usize::from(outer.udp_len))
        .min(outer.l3_end())
        .min(frame.len());
    let geneve_bytes = frame
        .get(geneve_off..end)
        .ok_or(DropReason::GeneveMalformed)?;
    let hdr = geneve::parse_aws_header(geneve_bytes).map_err(|_| DropReason::GeneveMalformed)?;
    if hdr.oam {
        return Err(DropReason::GeneveMalformed);
    }
    if hdr.options.unknown_critical {
        return Err(DropReason::GeneveCriticalOption);
    }
    let want = match hdr.protocol_type {
        geneve::PROTO_IPV4 => parse::L3::Ipv4,
        geneve::PROTO_IPV6 => parse::L3::Ipv6,
        _ => return Err(DropReason::GeneveBadProtocol),
    };
    // `header_len` fits `geneve_bytes` (checked by the Geneve parse).
    let packet = geneve_bytes
        .get(hdr.header_len..)
        .ok_or(DropReason::GeneveMalformed)?;
    parse::parse_ip_into(packet, inner)?;
    if inner.l3 != want {
        return Err(DropReason::GeneveBadProtocol);
    }
    Ok(GeneveReturn {
        inner_offset: geneve_off + hdr.header_len,
        flow_cookie: hdr.options.flow_cookie,
        vni: hdr.vni,
        endpoint_id: hdr.options.endpoint_id,
    })
}

/// [`parse_return_into`] returning the parsed inner packet by value (for callers off the
/// per-packet path and for tests).
pub fn parse_return(
    frame: &[u8],
    outer: &ParsedPacket,
) -> Result<(GeneveReturn, ParsedPacket), DropReason> {
    let mut inner = ParsedPacket::default();
    let ret = parse_return_into(frame, outer, &mut inner)?;
    Ok((ret, inner))
}

/// Replaces everything in front of the inner packet (`inner`, parsed at `inner_offset`) with an
/// Ethernet header (`dst`, `src`, the inner IP version's ethertype) and removes whatever
/// follows the inner packet (outer padding). The inner packet is not touched.
///
/// Returns `false` (buffer unchanged) if the buffer does not hold the whole inner packet.
#[inline]
pub fn restore_frame<B: PacketBuf>(
    buf: &mut B,
    inner_offset: usize,
    inner: &ParsedPacket,
    dst: [u8; 6],
    src: [u8; 6],
) -> bool {
    replace_l2(buf, inner_offset, inner, dst, src)
}

/// 802.1Q tags a forwarded frame gets, outer first (an endpoint's: `config::Endpoint::vlan`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VlanTags {
    /// How many (0, 1 or 2).
    pub count: u8,
    /// The VLAN ids (12 bits), outer first; only the first `count` are meaningful.
    pub ids: [u16; 2],
}

/// [`replace_l2`] with `tags` after the MAC addresses: one tag is an 802.1Q C-tag (0x8100),
/// two are an 802.1ad S-tag (0x88a8) then a C-tag. Priority and DEI bits are 0. Returns
/// `false`, changing nothing, if the buffer does not hold the whole packet or has no room in
/// front of it for the header.
#[inline(always)]
pub(crate) fn replace_l2_tagged<B: PacketBuf>(
    buf: &mut B,
    ip_offset: usize,
    ip: &ParsedPacket,
    dst: [u8; 6],
    src: [u8; 6],
    tags: &VlanTags,
) -> bool {
    if tags.count == 0 {
        return replace_l2(buf, ip_offset, ip, dst, src);
    }
    push_tags(buf, ip_offset, ip, dst, src, tags)
}

/// The tagged case of [`replace_l2_tagged`], out of line.
#[inline(never)]
fn push_tags<B: PacketBuf>(
    buf: &mut B,
    ip_offset: usize,
    ip: &ParsedPacket,
    dst: [u8; 6],
    src: [u8; 6],
    tags: &VlanTags,
) -> bool {
    let count = usize::from(tags.count.min(2));
    let l2 = ethernet::HEADER_LEN + count * ethernet::TAG_LEN;
    let ip_len = usize::from(ip.l3_len);
    let len = buf.data().len();
    if ip_offset + ip_len > len || (ip_offset < l2 && buf.headroom() < l2 - ip_offset) {
        return false;
    }
    let _ = buf.trim(len - ip_offset - ip_len);
    if ip_offset >= l2 {
        let _ = buf.adj(ip_offset - l2);
    } else {
        let _ = buf.prepend(l2 - ip_offset);
    }
    let Some(hdr) = buf.data_mut().get_mut(..l2) else {
        return false;
    };
    let (eth, rest) = hdr.split_at_mut(ethernet::HEADER_LEN);
    let tpids: &[u16] = if count == 2 {
        &[ethertype::QINQ, ethertype::VLAN]
    } else {
        &[ethertype::VLAN]
    };
    ethernet::Repr {
        src_addr: MacAddr(src),
        dst_addr: MacAddr(dst),
        ethertype: tpids[0],
    }
    .emit(&mut ethernet::Frame::new_unchecked(eth));
    for (k, tag) in rest.chunks_exact_mut(ethernet::TAG_LEN).enumerate() {
        let mut t = ethernet::VlanTag::new_unchecked(tag);
        t.set_tci(tags.ids[k] & 0x0fff);
        t.set_ethertype(
            tpids
                .get(k + 1)
                .copied()
                .unwrap_or(ethertype::of_ip(ip.l3 == parse::L3::Ipv6)),
        );
    }
    true
}

/// Puts the IP packet `ip` (parsed at `ip_offset` of `buf`) under a fresh untagged Ethernet
/// header from `src` to `dst`: whatever is in front of it (outer headers, VLAN tags) and
/// after it (padding) is removed. What [`restore_frame`] does to a return and the fail-open
/// forward to a received frame. Returns `false`, changing nothing, if `ip_offset` leaves no
/// room for the header or the buffer does not hold the whole packet.
#[inline]
pub(crate) fn replace_l2<B: PacketBuf>(
    buf: &mut B,
    ip_offset: usize,
    ip: &ParsedPacket,
    dst: [u8; 6],
    src: [u8; 6],
) -> bool {
    let ip_len = usize::from(ip.l3_len);
    let len = buf.data().len();
    if ip_offset < ethernet::HEADER_LEN || ip_offset + ip_len > len {
        return false;
    }
    let _ = buf.trim(len - ip_offset - ip_len);
    let _ = buf.adj(ip_offset - ethernet::HEADER_LEN);
    // The buffer now starts with the header's 14 bytes: this cannot fail.
    let Some(eth) = buf.data_mut().first_chunk_mut::<{ ethernet::HEADER_LEN }>() else {
        return false;
    };
    ethernet::Repr {
        src_addr: MacAddr(src),
        dst_addr: MacAddr(dst),
        ethertype: ethertype::of_ip(ip.l3 == parse::L3::Ipv6),
    }
    .emit(&mut ethernet::Frame::new_unchecked(eth));
    true
}
