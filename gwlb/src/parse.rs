//! Zero-copy parsing of what the gateway receives: Ethernet II with up to two VLAN tags,
//! IPv4 / IPv6 (extension header chain included) and the first bytes of TCP, UDP, ICMP and
//! ICMPv6. Also used on the inner packet after Geneve decapsulation ([`parse_ip`]).
//!
//! # Contract
//! - Never panics, never allocates, no `unsafe`: every read goes through a length-checked
//!   fixed-size array view, so the indexing below is bounds-checked at compile time.
//! - Every malformed input maps to its own [`DropReason`], so a worker can count drops per
//!   cause in a `[u64; DropReason::COUNT]` array.
//! - Offsets in [`ParsedPacket`] are relative to the start of the buffer that was parsed
//!   (the Ethernet header for [`parse_frame`], the IP header for [`parse_ip`]). Buffers longer
//!   than 65535 bytes are rejected ([`DropReason::Oversize`]), which is what lets every offset
//!   and length fit a `u16`.
//! - Checksums (IPv4 header, L4) are not verified: see [`ipv4_checksum_ok`].
//!
//! # Non-IP frames
//! ARP (ethertype 0x0806) is returned as `Ok` with [`ParsedPacket::l3`] = [`L3::Arp`] and
//! every IP field zeroed, so the worker can hand it to the control plane without parsing the
//! VLAN tags again. Any other non-IP ethertype (LLDP, 802.3 length frames, a third VLAN tag's
//! payload, ...) is `Err(DropReason::NotIp)` (or [`DropReason::TooManyVlanTags`]). Callers on
//! the fast path must therefore branch on [`ParsedPacket::is_ip`] before using IP fields.
//!
//! # ICMP
//! - Echo request / reply (ICMP 8/0, ICMPv6 128/129): the echo identifier is reported as both
//!   `src_port` and `dst_port`, so pings with different identifiers are separate flows and a
//!   request and its reply key identically.
//! - Errors (ICMP 3, 4, 5, 11, 12; ICMPv6 1-4) set [`ParsedPacket::icmp_error`] and, when the
//!   quoted packet's IP header and first 8 L4 bytes are present and sane,
//!   [`ParsedPacket::embedded`] carries that packet's flow (addresses, protocol, ports) so the
//!   error can be keyed on the flow it is about (see `flow::FlowKey::from_packet`). A quoted
//!   packet that cannot be parsed never drops the error; `embedded` is then `None`.
//!
//! # Cost
//! Measured with `tests::measure_parse_and_hash` (`--release -- --ignored --nocapture`, on-CPU
//! time per packet, one AMD EPYC core of a shared 2-core VM, same packet in a hot loop):
//! Ethernet + IPv4 + TCP ~6 ns; Ethernet + IPv6 + 2 extension headers + UDP ~7 ns; either
//! followed by `FlowKey::from_packet` + `FlowKey::hash` ~11 ns in all. Returning the 108-byte
//! [`ParsedPacket`] by value through several calls used to cost ~15 ns of store-forwarding
//! stalls; the internals therefore fill one `&mut ParsedPacket` ([`parse_frame_into`]).

use std::fmt;

use crate::wire::{self, ethernet, icmp, ipv4, ipv6, tcp, udp};

/// Largest buffer accepted; keeps every offset and length representable as `u16`.
pub const MAX_BUFFER_LEN: usize = u16::MAX as usize;

/// Most IPv6 extension headers walked before giving up ([`DropReason::TooManyExtHeaders`]).
/// Real traffic carries at most 2-3; the bound keeps the per-packet cost fixed.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Ethertypes and IP protocol numbers, declared in the wire layer.
pub use crate::wire::{ethertype, proto};

macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident => $name:literal, )*) => {
        /// Why a packet was dropped. One counter per variant: workers keep
        /// `[u64; DropReason::COUNT]` indexed by `reason as usize` and export
        /// [`DropReason::as_str`] as the metric label.
        ///
        /// Parse-time reasons come first; the rest are reserved for the other stages of the
        /// data path (decapsulation, load balancing, flow table, routing, transmit) so that all
        /// drops share one counter array.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl DropReason {
            /// Number of variants (length of a per-reason counter array).
            pub const COUNT: usize = [$($name,)*].len();

            /// Every variant, in discriminant order: `ALL[r as usize] == r`.
            pub const ALL: [DropReason; Self::COUNT] = [$(DropReason::$variant,)*];

            /// Stable snake_case name, used as the metric label.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Frame shorter than the 14-byte Ethernet II header.
    TruncatedEthernet => "truncated_ethernet",
    /// A VLAN ethertype (0x8100 / 0x88a8) with fewer than 4 bytes of tag after it.
    TruncatedVlan => "truncated_vlan",
    /// More than two stacked VLAN tags.
    TooManyVlanTags => "too_many_vlan_tags",
    /// Ethertype other than IPv4, IPv6 or ARP; or an ARP frame where only IP is accepted.
    NotIp => "not_ip",
    /// Bare IP packet ([`parse_ip`]) that is empty.
    TruncatedIp => "truncated_ip",
    /// Bare IP packet whose version nibble is neither 4 nor 6.
    BadIpVersion => "bad_ip_version",
    /// Fewer than 20 bytes for the IPv4 header, or fewer than IHL * 4 (options cut off).
    TruncatedIpv4 => "truncated_ipv4",
    /// Ethertype IPv4 but the version nibble is not 4.
    BadIpv4Version => "bad_ipv4_version",
    /// IPv4 IHL below 5 (header shorter than 20 bytes).
    BadIpv4Ihl => "bad_ipv4_ihl",
    /// IPv4 total length smaller than the header length.
    Ipv4TotalLengthTooShort => "ipv4_total_length_too_short",
    /// IPv4 total length larger than the bytes received.
    Ipv4TotalLengthBeyondBuffer => "ipv4_total_length_beyond_buffer",
    /// Fewer than 40 bytes for the IPv6 header.
    TruncatedIpv6 => "truncated_ipv6",
    /// Ethertype IPv6 but the version nibble is not 6.
    BadIpv6Version => "bad_ipv6_version",
    /// 40 + IPv6 payload length larger than the bytes received.
    Ipv6PayloadBeyondBuffer => "ipv6_payload_beyond_buffer",
    /// An IPv6 extension header runs past the end of the IPv6 payload.
    TruncatedExtHeader => "truncated_ext_header",
    /// More than [`MAX_IPV6_EXT_HEADERS`] IPv6 extension headers.
    TooManyExtHeaders => "too_many_ext_headers",
    /// Hop-by-Hop Options header anywhere but directly after the IPv6 header (RFC 8200 4.1).
    Ipv6HopByHopNotFirst => "ipv6_hop_by_hop_not_first",
    /// Fewer than 20 bytes of TCP header, or fewer than its data offset says.
    TruncatedTcp => "truncated_tcp",
    /// TCP data offset below 5.
    BadTcpDataOffset => "bad_tcp_data_offset",
    /// Fewer than 8 bytes of UDP header.
    TruncatedUdp => "truncated_udp",
    /// UDP length below 8 or beyond the IP payload (not checked on first fragments).
    BadUdpLength => "bad_udp_length",
    /// Fewer than 8 bytes of ICMP header.
    TruncatedIcmp => "truncated_icmp",
    /// Fewer than 8 bytes of ICMPv6 header.
    TruncatedIcmpv6 => "truncated_icmpv6",
    /// ICMPv6 carried in IPv4, or ICMPv4 carried in IPv6.
    IcmpWrongIpVersion => "icmp_wrong_ip_version",
    /// Larger than the gateway handles: a buffer over [`MAX_BUFFER_LEN`] at parse time, a
    /// received frame cut to the port's MTU or more whose IP length claims more
    /// ([`received_error`]), or an inner packet over the configured maximum (AWS: 8500
    /// bytes) at encapsulation.
    Oversize => "oversize",
    /// Geneve header or options malformed (length, version, option TLV overrun).
    GeneveMalformed => "geneve_malformed",
    /// Geneve protocol type other than IPv4 (0x0800) / IPv6 (0x86DD).
    GeneveBadProtocol => "geneve_bad_protocol",
    /// Geneve option with the critical bit set that the gateway does not understand.
    GeneveCriticalOption => "geneve_critical_option",
    /// Geneve packet from a source that is not a registered appliance.
    UnknownAppliance => "unknown_appliance",
    /// No healthy appliance for a new flow and the policy is fail-closed.
    NoHealthyAppliance => "no_healthy_appliance",
    /// Packet returned by an appliance that matches no flow the gateway holds (appliances
    /// cannot source flows), and is not a flow a full table could not store whose packets
    /// went to this appliance by hash; also an ICMP error returned for a flow but not
    /// addressed to the quoted packet's source.
    NoFlowForReturn => "no_flow_for_return",
    /// Geneve packet from a registered appliance's address but not from where that appliance
    /// is: another source MAC, another port, or its MAC not resolved yet (a forged return).
    ReturnSourceMismatch => "return_source_mismatch",
    /// Return without the echoed flow cookie in a group with `require_flow_cookie`.
    ReturnWithoutCookie => "return_without_cookie",
    /// Packet returned by an appliance for a flow the gateway steered to another appliance.
    ReturnFromOtherAppliance => "return_from_other_appliance",
    /// Return whose VNI and endpoint id name none of the endpoints its appliance's group
    /// inspects for (or, without an echoed id, a VNI two of them share).
    ReturnEndpointUnknown => "return_endpoint_unknown",
    /// TCP packet that does not open a connection (no SYN, or SYN with ACK) of a flow the
    /// gateway holds no entry for, in a group with `tcp_unknown_non_syn = "drop"` or
    /// `"reset"`.
    TcpNonSynNoFlow => "tcp_non_syn_no_flow",
    /// Packet of a flow whose appliance was deregistered and has finished draining, in a
    /// `no_rebalance` group: the flow ends (its entry is removed).
    ApplianceGone => "appliance_gone",
    /// Dropped by a steering rule (or an endpoint's default action) with action `drop`.
    PolicyDrop => "policy_drop",
    /// An ICMP error of an endpoint quoting a flow the gateway does not hold (it opens no
    /// flow: its sender chooses the flow it quotes).
    IcmpErrorWithoutFlow => "icmp_error_without_flow",
    /// Frame on a port endpoints arrive on that no endpoint claims (its VLAN tags, or its
    /// addresses, are no endpoint's).
    NoEndpoint => "no_endpoint",
    /// No route to the destination (outer next hop for encapsulation, or egress).
    NoRoute => "no_route",
    /// Next hop has no resolved MAC address (ARP / ND pending).
    NeighborUnresolved => "neighbor_unresolved",
    /// Transmit queue full: a user or appliance port's `tx_burst` did not take the packet.
    TxFull => "tx_full",
    /// Packet for the host (ARP, ND, health-check sessions) that the exception path's TAP
    /// queue did not take.
    ControlPlaneQueueFull => "control_plane_queue_full",
    /// Packet for another worker (the flow's owner) that its handoff ring did not take.
    HandoffRingFull => "handoff_ring_full",
}

impl DropReason {
    /// Index into a `[u64; DropReason::COUNT]` counter array.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for DropReason {}

pub use crate::wire::addr::IpAddrBytes;

/// What follows the L2 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum L3 {
    /// IPv4; all IP fields valid.
    #[default]
    Ipv4,
    /// IPv6; all IP fields valid.
    Ipv6,
    /// ARP (only from [`parse_frame`]); IP fields are zero, `l3_offset` is the ARP header and
    /// `l3_len` the rest of the frame. For the control plane.
    Arp,
}

pub use crate::wire::tcp::TcpFlags;

/// The packet is a fragment (IPv4 MF / offset, or an IPv6 Fragment header that is not an
/// atomic fragment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Offset 0: carries the L4 header.
    pub first: bool,
    /// More-fragments flag.
    pub more: bool,
    /// Fragment offset in 8-byte units.
    pub offset: u16,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
}

/// The flow of the packet quoted inside an ICMP / ICMPv6 error, in its own direction
/// (`src` is the host that sent the offending packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EmbeddedFlow {
    /// Source of the quoted packet.
    pub src: IpAddrBytes,
    /// Destination of the quoted packet.
    pub dst: IpAddrBytes,
    /// Final protocol of the quoted packet.
    pub protocol: u8,
    /// The quoted packet was a fragment (ports are then 0 unless it was the first one).
    pub fragmented: bool,
    /// Source port (echo id for ICMP echo; 0 when none).
    pub src_port: u16,
    /// Destination port (echo id for ICMP echo; 0 when none).
    pub dst_port: u16,
}

/// Result of a successful parse. Copy, no borrow of the buffer: offsets index the buffer
/// given to [`parse_frame`] / [`parse_ip`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ParsedPacket {
    /// IPv4, IPv6 or ARP.
    pub l3: L3,
    /// L2 header length including VLAN tags (0 for [`parse_ip`]). Equals `l3_offset`.
    pub l2_len: u16,
    /// Number of VLAN tags (0-2).
    pub vlan_count: u8,
    /// VLAN ids (12 bits), outer first; only the first `vlan_count` are meaningful.
    pub vlan_ids: [u16; 2],
    /// Ethertype after the VLAN tags (0 for [`parse_ip`]).
    pub ethertype: u16,
    /// Offset of the IP (or ARP) header.
    pub l3_offset: u16,
    /// IP length from the header (IPv4 total length; 40 + IPv6 payload length). Bytes past
    /// `l3_offset + l3_len` are L2 padding and must be stripped before encapsulation.
    pub l3_len: u16,
    /// Final protocol / next header after the IPv6 extension chain (e.g. 6, 17, 1, 58, 47,
    /// 50 for ESP, 59 for no next header).
    pub protocol: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Source address.
    pub src: IpAddrBytes,
    /// Destination address.
    pub dst: IpAddrBytes,
    /// Offset of the L4 header (the upper-layer header after all IPv6 extension headers);
    /// `None` for non-first fragments and ARP.
    pub l4_offset: Option<u16>,
    /// TCP / UDP source port; ICMP(v6) echo identifier; else 0.
    pub src_port: u16,
    /// TCP / UDP destination port; ICMP(v6) echo identifier; else 0.
    pub dst_port: u16,
    /// UDP length field (header and payload: at least 8, and within the IP payload unless
    /// the packet is a first fragment); 0 for other protocols.
    pub udp_len: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: TcpFlags,
    /// ICMP / ICMPv6 type (0 for other protocols; check `protocol`).
    pub icmp_type: u8,
    /// ICMP / ICMPv6 code.
    pub icmp_code: u8,
    /// ICMP / ICMPv6 error message (destination unreachable, packet too big, time exceeded,
    /// parameter problem, redirect, source quench).
    pub icmp_error: bool,
    /// Flow of the packet quoted in an ICMP error, when it could be parsed.
    pub embedded: Option<EmbeddedFlow>,
    /// Fragment information; `None` for unfragmented packets (and IPv6 atomic fragments,
    /// RFC 6946, which are complete datagrams).
    pub fragment: Option<Fragment>,
}

impl ParsedPacket {
    /// IPv4 or IPv6 (not ARP).
    #[inline]
    pub fn is_ip(&self) -> bool {
        matches!(self.l3, L3::Ipv4 | L3::Ipv6)
    }

    /// ICMP / ICMPv6 error message (see [`ParsedPacket::icmp_error`]).
    #[inline]
    pub fn is_icmp_error(&self) -> bool {
        self.icmp_error
    }

    /// End of the IP packet in the buffer (`l3_offset + l3_len`): where L2 padding starts.
    #[inline]
    pub fn l3_end(&self) -> usize {
        usize::from(self.l3_offset) + usize::from(self.l3_len)
    }
}

/// A length-checked fixed-size view: `&b[off..off + N]` as an array, or `None`.
#[inline(always)]
fn arr<const N: usize>(b: &[u8], off: usize) -> Option<&[u8; N]> {
    b.get(off..)?.get(..N)?.try_into().ok()
}

/// Parse an Ethernet II frame (optionally 802.1Q / 802.1ad tagged, at most two tags) carrying
/// IPv4, IPv6 or ARP. See the module docs for ARP and other ethertypes.
#[inline]
pub fn parse_frame(frame: &[u8]) -> Result<ParsedPacket, DropReason> {
    let mut p = ParsedPacket::default();
    parse_frame_into(frame, &mut p)?;
    Ok(p)
}

/// [`parse_frame`] writing into `out` (e.g. a per-burst `[ParsedPacket; 32]`): avoids moving
/// the 108-byte result, which costs store-forwarding stalls when it is returned by value.
/// `out` is fully overwritten on success and unspecified on error.
#[inline]
pub fn parse_frame_into(frame: &[u8], out: &mut ParsedPacket) -> Result<(), DropReason> {
    if frame.len() > MAX_BUFFER_LEN {
        return Err(DropReason::Oversize);
    }
    let eth: &[u8; ethernet::HEADER_LEN] = arr(frame, 0).ok_or(DropReason::TruncatedEthernet)?;
    let mut et = ethernet::Frame::new_unchecked(eth).ethertype();
    let mut off = ethernet::HEADER_LEN;
    let mut vlan_ids = [0u16; 2];
    let mut vlan_count = 0usize;
    while et == ethertype::VLAN || et == ethertype::QINQ {
        let tag: &[u8; ethernet::TAG_LEN] = arr(frame, off).ok_or(DropReason::TruncatedVlan)?;
        let tag = ethernet::VlanTag::new_unchecked(tag);
        let Some(slot) = vlan_ids.get_mut(vlan_count) else {
            return Err(DropReason::TooManyVlanTags);
        };
        *slot = tag.vid();
        vlan_count += 1;
        et = tag.ethertype();
        off += ethernet::TAG_LEN;
    }
    *out = ParsedPacket::default();
    match et {
        ethertype::IPV4 => parse_ipv4(out, frame, off)?,
        ethertype::IPV6 => parse_ipv6(out, frame, off)?,
        ethertype::ARP => {
            out.l3 = L3::Arp;
            out.l3_offset = off as u16;
            // off <= 22 <= frame.len() here (the tags were read), and frame.len() <= u16::MAX.
            out.l3_len = (frame.len() - off) as u16;
        }
        _ => return Err(DropReason::NotIp),
    }
    out.l2_len = off as u16;
    out.vlan_count = vlan_count as u8;
    out.vlan_ids = vlan_ids;
    out.ethertype = et;
    Ok(())
}

/// Parse a bare IPv4 or IPv6 packet (the inner packet of a Geneve tunnel). L2 fields are 0.
#[inline]
pub fn parse_ip(packet: &[u8]) -> Result<ParsedPacket, DropReason> {
    let mut p = ParsedPacket::default();
    parse_ip_into(packet, &mut p)?;
    Ok(p)
}

/// [`parse_ip`] writing into `out`; see [`parse_frame_into`].
#[inline(always)]
pub fn parse_ip_into(packet: &[u8], out: &mut ParsedPacket) -> Result<(), DropReason> {
    if packet.len() > MAX_BUFFER_LEN {
        return Err(DropReason::Oversize);
    }
    *out = ParsedPacket::default();
    match wire::ip_version(packet) {
        None => Err(DropReason::TruncatedIp),
        Some(ipv4::VERSION) => parse_ipv4(out, packet, 0),
        Some(ipv6::VERSION) => parse_ipv6(out, packet, 0),
        Some(_) => Err(DropReason::BadIpVersion),
    }
}

/// What a received frame that failed to parse with `reason` counts as, on a port of L3 MTU
/// `mtu`: [`DropReason::Oversize`] where the receiver cut it, else `reason`.
///
/// A receiver keeps only what fits its buffer (a `net_af_packet` ring frame, an AF_XDP
/// chunk, an mbuf) of a frame larger than the port carries (a GRO/GSO super-packet handed
/// to a kernel socket, a sender that ignores the MTU), so the IP length then claims more
/// than arrived. The rule: the frame is *cut* when its bytes after the Ethernet header and
/// tags reach at least `mtu` (a frame that large filled what the port carries) and its IP
/// header claims more ([`DropReason::Ipv4TotalLengthBeyondBuffer`],
/// [`DropReason::Ipv6PayloadBeyondBuffer`]): too big for gwlb, `oversize`. An IP length
/// that runs past a frame shorter than the MTU is not explained by a cut (nothing cuts a
/// frame below the MTU): malformed, and it keeps its parse reason, as every other reason
/// does.
///
/// Only for frames received on a port (an inner packet after decapsulation is a whole
/// Geneve payload: its length is the appliance's word). Cold: called on the error path.
#[cold]
pub fn received_error(frame: &[u8], reason: DropReason, mtu: u16) -> DropReason {
    if !matches!(
        reason,
        DropReason::Ipv4TotalLengthBeyondBuffer | DropReason::Ipv6PayloadBeyondBuffer
    ) {
        return reason;
    }
    // The parse got past the Ethernet header and its tags (at most two) to the IP header:
    // walk them again to find where it starts.
    let eth: Option<&[u8; ethernet::HEADER_LEN]> = arr(frame, 0);
    let mut et = eth.map(|h| ethernet::Frame::new_unchecked(h).ethertype());
    let mut off = ethernet::HEADER_LEN;
    for _ in 0..2 {
        if !matches!(et, Some(ethertype::VLAN | ethertype::QINQ)) {
            break;
        }
        let tag: Option<&[u8; ethernet::TAG_LEN]> = arr(frame, off);
        et = tag.map(|t| ethernet::VlanTag::new_unchecked(t).ethertype());
        off += ethernet::TAG_LEN;
    }
    if frame.len().saturating_sub(off) >= usize::from(mtu) {
        DropReason::Oversize
    } else {
        reason
    }
}

/// Verify an IPv4 header checksum (`header` starts at the IPv4 header; false if truncated).
///
/// Not done by [`parse_frame`] / [`parse_ip`]: the gateway forwards the inner packet
/// unmodified, so a bad checksum is the end host's problem and the appliance's to judge; NICs
/// usually validate it in hardware already (`RTE_MBUF_F_RX_IP_CKSUM_BAD`); and summing up to 60
/// bytes per packet costs more than the whole parse. Use it on control-plane paths.
pub fn ipv4_checksum_ok(header: &[u8]) -> bool {
    // The view reads the IHL byte (the first) unchecked: not over an empty buffer.
    !header.is_empty() && ipv4::Packet::new_unchecked(header).verify_checksum()
}

/// IPv4 at `buf[off..]`, into `p` (which is all default on entry).
#[inline]
fn parse_ipv4(p: &mut ParsedPacket, buf: &[u8], off: usize) -> Result<(), DropReason> {
    let h: &[u8; ipv4::HEADER_LEN] = arr(buf, off).ok_or(DropReason::TruncatedIpv4)?;
    let h = ipv4::Packet::new_unchecked(h);
    if h.version() != ipv4::VERSION {
        return Err(DropReason::BadIpv4Version);
    }
    let ihl = h.header_len();
    if ihl < ipv4::HEADER_LEN {
        return Err(DropReason::BadIpv4Ihl);
    }
    // arr succeeded, so off + ipv4::HEADER_LEN <= buf.len().
    let avail = buf.len() - off;
    if ihl > avail {
        return Err(DropReason::TruncatedIpv4);
    }
    let total = usize::from(h.total_len());
    if total < ihl {
        return Err(DropReason::Ipv4TotalLengthTooShort);
    }
    if total > avail {
        return Err(DropReason::Ipv4TotalLengthBeyondBuffer);
    }
    let frag = h.flags_frag_offset();
    let more = frag & ipv4::FLAG_MF != 0;
    let frag_off = frag & ipv4::FRAG_OFFSET_MASK;
    if more || frag_off != 0 {
        p.fragment = Some(Fragment {
            first: frag_off == 0,
            more,
            offset: frag_off,
            id: u32::from(h.ident()),
        });
    }
    p.l3 = L3::Ipv4;
    p.l3_offset = off as u16;
    p.l3_len = total as u16;
    p.protocol = h.protocol();
    p.ttl = h.ttl();
    p.src = IpAddrBytes::from_v4(h.src_addr());
    p.dst = IpAddrBytes::from_v4(h.dst_addr());
    if frag_off == 0 {
        let l4_off = off + ihl;
        // l4_off <= off + total <= buf.len() was checked above.
        parse_l4(p, buf.get(l4_off..off + total).unwrap_or(&[]), false)?;
        p.l4_offset = Some(l4_off as u16);
    }
    Ok(())
}

/// IPv6 at `buf[off..]`, into `p` (which is all default on entry).
#[inline]
fn parse_ipv6(p: &mut ParsedPacket, buf: &[u8], off: usize) -> Result<(), DropReason> {
    let h: &[u8; ipv6::HEADER_LEN] = arr(buf, off).ok_or(DropReason::TruncatedIpv6)?;
    let h = ipv6::Packet::new_unchecked(h);
    if h.version() != ipv6::VERSION {
        return Err(DropReason::BadIpv6Version);
    }
    let total = ipv6::HEADER_LEN + usize::from(h.payload_len());
    if total > buf.len() - off {
        return Err(DropReason::Ipv6PayloadBeyondBuffer);
    }
    let ip = buf.get(off..off + total).unwrap_or(&[]);
    let chain = walk_ipv6_chain(ip, h.next_header())?;
    p.l3 = L3::Ipv6;
    p.l3_offset = off as u16;
    p.l3_len = total as u16;
    p.protocol = chain.protocol;
    p.ttl = h.hop_limit();
    p.src = IpAddrBytes(h.src_addr());
    p.dst = IpAddrBytes(h.dst_addr());
    p.fragment = chain.fragment;
    if let Some(l4) = chain.l4_offset {
        parse_l4(p, ip.get(l4..).unwrap_or(&[]), true)?;
        p.l4_offset = Some((off + l4) as u16);
    }
    Ok(())
}

/// End of an IPv6 extension header chain.
struct Ipv6Chain {
    /// Final next header.
    protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header; `None` for
    /// non-first fragments.
    l4_offset: Option<usize>,
    fragment: Option<Fragment>,
}

/// The first two bytes of the extension header at `ip[off..]`.
#[inline(always)]
fn ext_header(
    ip: &[u8],
    off: usize,
) -> Result<ipv6::ExtHeader<&[u8; ipv6::EXT_PREFIX_LEN]>, DropReason> {
    let x: &[u8; ipv6::EXT_PREFIX_LEN] = arr(ip, off).ok_or(DropReason::TruncatedExtHeader)?;
    Ok(ipv6::ExtHeader::new_unchecked(x))
}

/// Walk the extension headers of the IPv6 packet `ip` (`ip[..40]` is the fixed header, the
/// slice ends where the payload length says). Bounded by [`MAX_IPV6_EXT_HEADERS`].
fn walk_ipv6_chain(ip: &[u8], first_next_header: u8) -> Result<Ipv6Chain, DropReason> {
    let mut nh = first_next_header;
    let mut off = ipv6::HEADER_LEN;
    let mut fragment = None;
    for i in 0..=MAX_IPV6_EXT_HEADERS {
        let len = match nh {
            proto::HOPOPT if i != 0 => return Err(DropReason::Ipv6HopByHopNotFirst),
            proto::HOPOPT
            | proto::IPV6_ROUTE
            | proto::IPV6_OPTS
            | proto::MOBILITY
            | proto::HIP
            | proto::SHIM6 => ext_header(ip, off)?.generic_len(),
            proto::AH => ext_header(ip, off)?.ah_len(),
            proto::IPV6_FRAG => ipv6::FRAG_HEADER_LEN,
            _ => {
                // Upper layer, ESP (50) or No Next Header (59): the chain ends.
                return Ok(Ipv6Chain {
                    protocol: nh,
                    l4_offset: Some(off),
                    fragment,
                });
            }
        };
        if i == MAX_IPV6_EXT_HEADERS {
            return Err(DropReason::TooManyExtHeaders);
        }
        if ip.len() < off + len {
            return Err(DropReason::TruncatedExtHeader);
        }
        if nh == proto::IPV6_FRAG {
            let f: &[u8; ipv6::FRAG_HEADER_LEN] =
                arr(ip, off).ok_or(DropReason::TruncatedExtHeader)?;
            let f = ipv6::FragHeader::new_unchecked(f);
            let offset = f.frag_offset();
            let more = f.more_frags();
            let id = f.ident();
            if offset != 0 {
                // Later fragment: the rest of the chain and the L4 header are elsewhere.
                return Ok(Ipv6Chain {
                    protocol: f.next_header(),
                    l4_offset: None,
                    fragment: Some(Fragment {
                        first: false,
                        more,
                        offset,
                        id,
                    }),
                });
            }
            if more {
                fragment = Some(Fragment {
                    first: true,
                    more,
                    offset,
                    id,
                });
            }
        }
        // The header is within `ip` (checked above), so this read cannot fail.
        nh = ext_header(ip, off).map_or(proto::IPV6_NONXT, |x| x.next_header());
        off += len;
    }
    Err(DropReason::TooManyExtHeaders)
}

/// Fill the L4 fields of `p` from `l4` (bounded by the IP end). `v6` selects ICMPv6 rules.
#[inline]
fn parse_l4(p: &mut ParsedPacket, l4: &[u8], v6: bool) -> Result<(), DropReason> {
    let first_fragment = p.fragment.is_some();
    match p.protocol {
        proto::TCP => {
            let t: &[u8; tcp::HEADER_LEN] = arr(l4, 0).ok_or(DropReason::TruncatedTcp)?;
            let t = tcp::Packet::new_unchecked(t);
            let doff = t.header_len();
            if doff < tcp::HEADER_LEN {
                return Err(DropReason::BadTcpDataOffset);
            }
            if doff > l4.len() {
                return Err(DropReason::TruncatedTcp);
            }
            p.src_port = t.src_port();
            p.dst_port = t.dst_port();
            p.tcp_flags = t.flags();
        }
        proto::UDP => {
            let u: &[u8; udp::HEADER_LEN] = arr(l4, 0).ok_or(DropReason::TruncatedUdp)?;
            let u = udp::Packet::new_unchecked(u);
            let len = usize::from(u.length());
            // A first fragment holds only part of the datagram the length describes.
            if len < udp::HEADER_LEN || (!first_fragment && len > l4.len()) {
                return Err(DropReason::BadUdpLength);
            }
            p.src_port = u.src_port();
            p.dst_port = u.dst_port();
            p.udp_len = len as u16;
        }
        proto::ICMP | proto::ICMPV6 => {
            let is_v6_icmp = p.protocol == proto::ICMPV6;
            if is_v6_icmp != v6 {
                return Err(DropReason::IcmpWrongIpVersion);
            }
            let c: &[u8; icmp::HEADER_LEN] = arr(l4, 0).ok_or(if v6 {
                DropReason::TruncatedIcmpv6
            } else {
                DropReason::TruncatedIcmp
            })?;
            let c = icmp::Packet::new_unchecked(c);
            let ty = c.msg_type();
            p.icmp_type = ty;
            p.icmp_code = c.msg_code();
            if is_echo(ty, v6) {
                let id = c.echo_ident();
                p.src_port = id;
                p.dst_port = id;
            } else if is_icmp_error_type(ty, v6) {
                p.icmp_error = true;
                // A fragmented error is keyed like any fragment (outer 3-tuple), so that all
                // its fragments agree; only unfragmented errors follow the quoted flow.
                if !first_fragment {
                    p.embedded = parse_embedded(l4.get(icmp::HEADER_LEN..).unwrap_or(&[]), v6);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[inline]
fn is_echo(ty: u8, v6: bool) -> bool {
    icmp::is_echo(ty, v6)
}

#[inline]
fn is_icmp_error_type(ty: u8, v6: bool) -> bool {
    icmp::is_error(ty, v6)
}

/// The flow of the packet quoted in an ICMP error. Lenient on lengths (the quote is
/// truncated by design: its total length describes the original), strict on what is read.
fn parse_embedded(q: &[u8], v6: bool) -> Option<EmbeddedFlow> {
    let (src, dst, protocol, l4_off, fragment) = if v6 {
        let h: &[u8; ipv6::HEADER_LEN] = arr(q, 0)?;
        let h = ipv6::Packet::new_unchecked(h);
        if h.version() != ipv6::VERSION {
            return None;
        }
        let chain = walk_ipv6_chain(q, h.next_header()).ok()?;
        (
            IpAddrBytes(h.src_addr()),
            IpAddrBytes(h.dst_addr()),
            chain.protocol,
            chain.l4_offset,
            chain.fragment.is_some() || chain.l4_offset.is_none(),
        )
    } else {
        let h: &[u8; ipv4::HEADER_LEN] = arr(q, 0)?;
        let h = ipv4::Packet::new_unchecked(h);
        let ihl = h.header_len();
        if h.version() != ipv4::VERSION || ihl < ipv4::HEADER_LEN {
            return None;
        }
        let frag = h.flags_frag_offset();
        let frag_off = frag & ipv4::FRAG_OFFSET_MASK;
        (
            IpAddrBytes::from_v4(h.src_addr()),
            IpAddrBytes::from_v4(h.dst_addr()),
            h.protocol(),
            (frag_off == 0).then_some(ihl),
            frag & ipv4::FLAG_MF != 0 || frag_off != 0,
        )
    };
    let mut e = EmbeddedFlow {
        src,
        dst,
        protocol,
        fragmented: fragment,
        src_port: 0,
        dst_port: 0,
    };
    if let Some(l4_off) = l4_off {
        // Only the ports are read: a quote need not hold a whole TCP header (RFC 792 quotes
        // 8 bytes), and 4 are enough.
        match protocol {
            proto::TCP => {
                let x: &[u8; tcp::PORTS_LEN] = arr(q, l4_off)?;
                let t = tcp::Packet::new_unchecked(x);
                e.src_port = t.src_port();
                e.dst_port = t.dst_port();
            }
            proto::UDP => {
                let x: &[u8; udp::PORTS_LEN] = arr(q, l4_off)?;
                let u = udp::Packet::new_unchecked(x);
                e.src_port = u.src_port();
                e.dst_port = u.dst_port();
            }
            proto::ICMP | proto::ICMPV6 => {
                let x: &[u8; icmp::HEADER_LEN] = arr(q, l4_off)?;
                let c = icmp::Packet::new_unchecked(x);
                if is_echo(c.msg_type(), v6) {
                    let id = c.echo_ident();
                    e.src_port = id;
                    e.dst_port = id;
                }
            }
            _ => {}
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        IpAuthHeader, IpHeaders, IpNumber, Ipv4Header, Ipv4Options, Ipv6Extensions,
        Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
    };
    use proptest::prelude::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const V4_A: [u8; 4] = [10, 0, 0, 1];
    const V4_B: [u8; 4] = [192, 0, 2, 7];
    const V6_A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const V6_B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn eth_v4_tcp_syn() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(V4_A, V4_B, 61)
            .tcp(40000, 443, 1, 65535)
            .syn()
            .write(&mut v, b"payload")
            .unwrap();
        v
    }

    fn eth_v6_udp() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(V6_A, V6_B, 33)
            .udp(5353, 53)
            .write(&mut v, b"query")
            .unwrap();
        v
    }

    /// Bare IPv6 packet with raw generic extension headers `exts` (type, total length),
    /// then `last` as final next header and `l4` as its bytes.
    fn v6_raw(exts: &[(u8, usize)], last: u8, l4: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, &(_, len)) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(last, |e| e.0);
            let mut h = vec![0u8; len];
            h[0] = next;
            h[1] = if exts[i].0 == proto::AH {
                (len / 4 - 2) as u8
            } else {
                (len / 8).saturating_sub(1) as u8
            };
            body.extend_from_slice(&h);
        }
        body.extend_from_slice(l4);
        let h = Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: body.len() as u16,
            next_header: IpNumber(exts.first().map_or(last, |e| e.0)),
            hop_limit: 64,
            source: V6_A,
            destination: V6_B,
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(&body);
        v
    }

    /// Bare IPv4 packet with protocol `p` and raw payload.
    fn v4_raw(p: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = Ipv4Header::new(payload.len() as u16, 64, IpNumber(p), V4_A, V4_B).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&MAC_B);
        v.extend_from_slice(&MAC_A);
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn err(frame: &[u8]) -> DropReason {
        parse_frame(frame).expect_err("must not parse")
    }

    fn ip_err(pkt: &[u8]) -> DropReason {
        parse_ip(pkt).expect_err("must not parse")
    }

    #[test]
    fn drop_reason_table() {
        assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
        let mut names = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(*r as u8 as usize, i);
            let n = r.as_str();
            assert!(names.insert(n), "duplicate {n}");
            assert!(n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
            assert_eq!(r.to_string(), n);
        }
        let counters = [0u64; DropReason::COUNT];
        assert_eq!(counters[DropReason::TxFull.index()], 0);
    }

    #[test]
    fn eth_ipv4_tcp() {
        let f = eth_v4_tcp_syn();
        let p = parse_frame(&f).unwrap();
        assert_eq!(p.l3, L3::Ipv4);
        assert!(p.is_ip());
        assert_eq!((p.l2_len, p.l3_offset, p.vlan_count), (14, 14, 0));
        assert_eq!(p.ethertype, ethertype::IPV4);
        assert_eq!(p.l3_len as usize, f.len() - 14);
        assert_eq!(p.l3_end(), f.len());
        assert_eq!((p.protocol, p.ttl), (proto::TCP, 61));
        assert_eq!(p.src, IpAddrBytes::from_v4(V4_A));
        assert_eq!(p.dst.as_v4(), Some(V4_B));
        assert_eq!(p.l4_offset, Some(34));
        assert_eq!((p.src_port, p.dst_port), (40000, 443));
        assert_eq!(p.udp_len, 0, "not UDP");
        assert!(p.tcp_flags.syn() && !p.tcp_flags.ack() && p.tcp_flags.is_initial_syn());
        assert!(!p.tcp_flags.rst() && !p.tcp_flags.fin());
        assert_eq!(p.fragment, None);
        assert!(!p.is_icmp_error());
        assert!(ipv4_checksum_ok(&f[14..]));
    }

    #[test]
    fn tcp_flags_recorded() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(V4_A, V4_B, 64)
            .tcp(1, 2, 3, 4)
            .fin()
            .rst()
            .ack(9)
            .write(&mut v, &[])
            .unwrap();
        let p = parse_ip(&v).unwrap();
        assert!(p.tcp_flags.fin() && p.tcp_flags.rst() && p.tcp_flags.ack());
        assert!(!p.tcp_flags.syn());
        assert_eq!(format!("{:?}", p.tcp_flags), "AFR");
    }

    #[test]
    fn vlan_single_double_and_qinq() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(100.try_into().unwrap())
            .ipv4(V4_A, V4_B, 64)
            .udp(1000, 2000)
            .write(&mut v, b"x")
            .unwrap();
        let p = parse_frame(&v).unwrap();
        assert_eq!((p.l2_len, p.vlan_count, p.vlan_ids[0]), (18, 1, 100));
        assert_eq!((p.src_port, p.dst_port), (1000, 2000));

        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(10.try_into().unwrap(), 4094.try_into().unwrap())
            .ipv6(V6_A, V6_B, 64)
            .udp(1000, 2000)
            .write(&mut v, b"x")
            .unwrap();
        // 802.1ad outer tag.
        v[12..14].copy_from_slice(&ethertype::QINQ.to_be_bytes());
        let p = parse_frame(&v).unwrap();
        assert_eq!((p.l2_len, p.vlan_count, p.vlan_ids), (22, 2, [10, 4094]));
        assert_eq!(
            (p.l3, p.ethertype, p.l4_offset),
            (L3::Ipv6, 0x86dd, Some(62))
        );
        assert_eq!(p.src.0, V6_A);
        assert_eq!(p.src.as_v4(), None);

        // Three tags.
        let mut t = eth(
            0x8100,
            &[0, 1, 0x88, 0xa8, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00],
        );
        t.extend_from_slice(&v4_raw(17, &[0; 8]));
        assert_eq!(err(&t), DropReason::TooManyVlanTags);
    }

    #[test]
    fn ipv4_options_skipped() {
        let mut h = Ipv4Header::new(0, 64, IpNumber::UDP, V4_A, V4_B).unwrap();
        h.options = Ipv4Options::from([1u8, 1, 1, 1, 1, 1, 1, 0]);
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv4(h, Default::default()))
            .udp(7, 9)
            .write(&mut v, b"data")
            .unwrap();
        let p = parse_frame(&v).unwrap();
        assert_eq!(p.l4_offset, Some(14 + 28));
        assert_eq!((p.src_port, p.dst_port, p.l3_len), (7, 9, 28 + 8 + 4));
        assert_eq!(p.udp_len, 8 + 4);
        assert!(ipv4_checksum_ok(&v[14..]));
        let mut bad = v.clone();
        bad[14 + 8] ^= 1;
        assert!(!ipv4_checksum_ok(&bad[14..]));
        assert!(!ipv4_checksum_ok(&v[14..30]));
        assert!(!ipv4_checksum_ok(&[]));
        // Fast path does not check it.
        assert!(parse_frame(&bad).is_ok());
    }

    #[test]
    fn ethernet_padding_recorded() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(V4_A, V4_B, 64)
            .udp(1, 2)
            .write(&mut v, &[])
            .unwrap();
        assert_eq!(v.len(), 42);
        v.resize(60, 0);
        let p = parse_frame(&v).unwrap();
        assert_eq!((p.l3_len, p.l3_end()), (28, 42));
        // Padding after a v6 packet too.
        let mut v6 = eth_v6_udp();
        let n = v6.len();
        v6.extend_from_slice(&[0xee; 7]);
        assert_eq!(parse_frame(&v6).unwrap().l3_end(), n);
    }

    #[test]
    fn ipv4_fragments() {
        let mut first = Ipv4Header::new(0, 64, IpNumber::UDP, V4_A, V4_B).unwrap();
        first.more_fragments = true;
        first.identification = 0xbeef;
        let mut v = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv4(first, Default::default()))
            .udp(5000, 53)
            .write(&mut v, &[0; 64])
            .unwrap();
        // UDP length says 72, the first fragment may carry less: keep only 16 payload bytes.
        v.truncate(20 + 8 + 16);
        v[2..4].copy_from_slice(&44u16.to_be_bytes());
        let p = parse_ip(&v).unwrap();
        let f = p.fragment.unwrap();
        assert!(f.first && f.more && f.offset == 0 && f.id == 0xbeef);
        assert_eq!((p.src_port, p.dst_port, p.l4_offset), (5000, 53, Some(20)));

        let mut later = Ipv4Header::new(24, 64, IpNumber::UDP, V4_A, V4_B).unwrap();
        later.fragment_offset = 3.try_into().unwrap();
        later.identification = 0xbeef;
        let mut v = later.to_bytes().to_vec();
        v.extend_from_slice(&[0xff; 24]); // would be garbage ports and a bad UDP length
        let p = parse_ip(&v).unwrap();
        let f = p.fragment.unwrap();
        assert!(!f.first && !f.more && f.offset == 3 && f.id == 0xbeef);
        assert_eq!((p.src_port, p.dst_port, p.l4_offset), (0, 0, None));
        assert_eq!(p.protocol, proto::UDP);
    }

    #[test]
    fn ipv6_extension_headers() {
        let hbh = Ipv6RawExtHeader::new_raw(IpNumber::UDP, &[1, 4, 0, 0, 0, 0]).unwrap();
        let dst = Ipv6RawExtHeader::new_raw(IpNumber::UDP, &[0; 14]).unwrap();
        let rt = Ipv6RawExtHeader::new_raw(IpNumber::UDP, &[0; 22]).unwrap();
        let ah = IpAuthHeader::new(IpNumber::UDP, 1, 2, &[0; 12]).unwrap();
        // Offset 0 and M = 0 only: etherparse 0.16 puts those bits in the wrong places
        // (JulianSchmid/etherparse#150), so non-zero values are hand-made below.
        let frag = Ipv6FragmentHeader::new(IpNumber::UDP, 0.try_into().unwrap(), false, 9);
        let ext = Ipv6Extensions {
            hop_by_hop_options: Some(hbh),
            destination_options: Some(dst),
            routing: Some(Ipv6RoutingExtensions {
                routing: rt,
                final_destination_options: None,
            }),
            fragment: Some(frag),
            auth: Some(ah),
        };
        let ext_len = 8 + 16 + 24 + 8 + 24;
        let h = Ipv6Header {
            source: V6_A,
            destination: V6_B,
            hop_limit: 7,
            ..Default::default()
        };
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv6(h, ext))
            .udp(1111, 2222)
            .write(&mut v, b"abc")
            .unwrap();
        let p = parse_frame(&v).unwrap();
        assert_eq!(p.protocol, proto::UDP);
        assert_eq!(p.l4_offset, Some((14 + 40 + ext_len) as u16));
        assert_eq!((p.src_port, p.dst_port, p.ttl), (1111, 2222, 7));
        assert_eq!(p.udp_len, 8 + 3);
        // Atomic fragment: a complete datagram.
        assert_eq!(p.fragment, None);
        assert_eq!(p.l3_len as usize, 40 + ext_len + 8 + 3);
    }

    #[test]
    fn ipv6_fragment_header() {
        // First fragment with more fragments.
        let mut l4 = vec![0u8; 16];
        l4[..2].copy_from_slice(&9u16.to_be_bytes());
        l4[2..4].copy_from_slice(&10u16.to_be_bytes());
        l4[4..6].copy_from_slice(&200u16.to_be_bytes());
        let mut v = v6_raw(&[(proto::IPV6_FRAG, 8)], proto::UDP, &l4);
        v[40 + 2..40 + 4].copy_from_slice(&1u16.to_be_bytes()); // offset 0, M = 1
        v[40 + 4..40 + 8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        let p = parse_ip(&v).unwrap();
        assert_eq!(
            p.fragment,
            Some(Fragment {
                first: true,
                more: true,
                offset: 0,
                id: 0x0102_0304
            })
        );
        assert_eq!((p.src_port, p.dst_port, p.l4_offset), (9, 10, Some(48)));
        // Later fragment: chain ends, no L4.
        v[40 + 2..40 + 4].copy_from_slice(&(5u16 << 3).to_be_bytes());
        let p = parse_ip(&v).unwrap();
        let f = p.fragment.unwrap();
        assert!(!f.first && !f.more && f.offset == 5);
        assert_eq!((p.protocol, p.l4_offset, p.src_port), (proto::UDP, None, 0));
    }

    #[test]
    fn ipv6_esp_and_no_next_header_end_chain() {
        let v = v6_raw(&[(proto::IPV6_OPTS, 8)], proto::ESP, &[0xab; 24]);
        let p = parse_ip(&v).unwrap();
        assert_eq!(
            (p.protocol, p.l4_offset, p.src_port),
            (proto::ESP, Some(48), 0)
        );
        let v = v6_raw(&[(proto::IPV6_OPTS, 16)], proto::IPV6_NONXT, &[]);
        let p = parse_ip(&v).unwrap();
        assert_eq!((p.protocol, p.l4_offset), (proto::IPV6_NONXT, Some(56)));
        // AH uses 4-byte units.
        let v = v6_raw(&[(proto::AH, 12), (proto::MOBILITY, 8)], proto::TCP, &{
            let mut t = [0u8; 20];
            t[12] = 5 << 4;
            t[0] = 1;
            t
        });
        let p = parse_ip(&v).unwrap();
        assert_eq!(
            (p.protocol, p.l4_offset, p.src_port),
            (proto::TCP, Some(60), 256)
        );
    }

    #[test]
    fn icmp_and_icmpv6() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(V4_A, V4_B, 64)
            .icmpv4_echo_request(0x4242, 1)
            .write(&mut v, b"ping")
            .unwrap();
        let p = parse_frame(&v).unwrap();
        assert_eq!((p.protocol, p.icmp_type, p.icmp_code), (proto::ICMP, 8, 0));
        assert_eq!((p.src_port, p.dst_port), (0x4242, 0x4242));
        assert!(!p.is_icmp_error());

        let mut v = Vec::new();
        PacketBuilder::ipv6(V6_A, V6_B, 255)
            .icmpv6_raw(135, 0, [0; 4]) // neighbour solicitation
            .write(&mut v, &[0; 16])
            .unwrap();
        let p = parse_ip(&v).unwrap();
        assert_eq!(
            (p.protocol, p.icmp_type, p.src_port),
            (proto::ICMPV6, 135, 0)
        );
        assert!(!p.is_icmp_error());

        // Destination unreachable quoting a UDP packet.
        let quoted = {
            let mut q = Vec::new();
            PacketBuilder::ipv4(V4_B, V4_A, 64)
                .udp(53, 5000)
                .write(&mut q, &[0; 10])
                .unwrap();
            q
        };
        let mut v = Vec::new();
        PacketBuilder::ipv4(V4_A, V4_B, 64)
            .icmpv4_raw(3, 3, [0; 4])
            .write(&mut v, &quoted[..28])
            .unwrap();
        let p = parse_ip(&v).unwrap();
        assert!(p.is_icmp_error());
        assert_eq!((p.icmp_type, p.icmp_code), (3, 3));
        let e = p.embedded.unwrap();
        assert_eq!((e.src.as_v4(), e.dst.as_v4()), (Some(V4_B), Some(V4_A)));
        assert_eq!((e.protocol, e.src_port, e.dst_port), (proto::UDP, 53, 5000));
        // Quote too short for ports: still an error, just not keyed on it.
        let mut v = Vec::new();
        PacketBuilder::ipv4(V4_A, V4_B, 64)
            .icmpv4_raw(11, 0, [0; 4])
            .write(&mut v, &quoted[..22])
            .unwrap();
        let p = parse_ip(&v).unwrap();
        assert!(p.is_icmp_error() && p.embedded.is_none());
    }

    #[test]
    fn other_protocol_gre() {
        let mut gre = vec![0u8, 0, 0x08, 0x00];
        gre.extend_from_slice(&v4_raw(17, &[0; 8]));
        let f = eth(ethertype::IPV4, &v4_raw(proto::GRE, &gre));
        let p = parse_frame(&f).unwrap();
        assert_eq!((p.protocol, p.src_port, p.dst_port), (proto::GRE, 0, 0));
        assert_eq!(p.l4_offset, Some(34));
    }

    #[test]
    fn arp_and_non_ip() {
        let f = eth(ethertype::ARP, &[0u8; 28]);
        let p = parse_frame(&f).unwrap();
        assert_eq!((p.l3, p.l3_offset, p.l3_len), (L3::Arp, 14, 28));
        assert!(!p.is_ip());
        assert_eq!(p.ethertype, ethertype::ARP);
        let mut f = eth(0x8100, &[0x00, 0x05, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        let p = parse_frame(&f).unwrap();
        assert_eq!((p.l3, p.l3_offset, p.vlan_ids[0]), (L3::Arp, 18, 5));
        assert_eq!(err(&eth(0x88cc, &[0; 40])), DropReason::NotIp); // LLDP
        assert_eq!(err(&eth(0x0040, &[0; 64])), DropReason::NotIp); // 802.3 length
    }

    #[test]
    fn malformed_l2() {
        assert_eq!(err(&[]), DropReason::TruncatedEthernet);
        assert_eq!(err(&eth_v4_tcp_syn()[..13]), DropReason::TruncatedEthernet);
        assert_eq!(err(&eth(0x8100, &[0, 1])), DropReason::TruncatedVlan);
        assert_eq!(
            err(&eth(0x8100, &[0, 1, 0x88, 0xa8, 0])),
            DropReason::TruncatedVlan
        );
        assert_eq!(err(&vec![0u8; MAX_BUFFER_LEN + 1]), DropReason::Oversize);
        assert_eq!(
            ip_err(&vec![0x45u8; MAX_BUFFER_LEN + 1]),
            DropReason::Oversize
        );
    }

    /// A frame cut on receipt (its IP bytes reach the MTU, its IP length claims more) is
    /// `oversize`; the same claim over a shorter frame is malformed; other reasons are
    /// kept. VLAN tags do not count against the MTU.
    #[test]
    fn received_error_tells_a_cut_frame_from_a_malformed_one() {
        let mtu = 1500;
        let cut_v4 = |l2: &[u8], received: usize| {
            // A 4000-byte IPv4 UDP packet of which `received` IP bytes arrived.
            let mut ip = v4_raw(proto::UDP, &[0u8; 3980]);
            ip.truncate(received);
            let mut f = l2.to_vec();
            f.extend_from_slice(&ip);
            let r = err(&f);
            assert_eq!(r, DropReason::Ipv4TotalLengthBeyondBuffer);
            received_error(&f, r, mtu)
        };
        let plain = &eth(ethertype::IPV4, &[])[..];
        assert_eq!(cut_v4(plain, 1500), DropReason::Oversize);
        // Cut beyond the MTU (an af_packet ring frame of 2048 bytes holds more).
        assert_eq!(cut_v4(plain, 2016), DropReason::Oversize);
        // One byte short of the MTU: nothing cuts there, the length lies.
        assert_eq!(cut_v4(plain, 1499), DropReason::Ipv4TotalLengthBeyondBuffer);
        assert_eq!(cut_v4(plain, 60), DropReason::Ipv4TotalLengthBeyondBuffer);
        // Two tags: the MTU counts from the IP header.
        let mut qinq = eth(ethertype::QINQ, &[0, 10]).to_vec();
        qinq.extend_from_slice(&ethertype::VLAN.to_be_bytes());
        qinq.extend_from_slice(&[0, 20]);
        qinq.extend_from_slice(&ethertype::IPV4.to_be_bytes());
        assert_eq!(cut_v4(&qinq, 1500), DropReason::Oversize);
        assert_eq!(cut_v4(&qinq, 1499), DropReason::Ipv4TotalLengthBeyondBuffer);
        // IPv6: a 4000-byte payload of which the first 1500 - 40 arrived.
        let mut ip6 = v6_raw(&[], proto::UDP, &[0u8; 4000]);
        ip6.truncate(1500);
        let f = eth(ethertype::IPV6, &ip6);
        let r = err(&f);
        assert_eq!(r, DropReason::Ipv6PayloadBeyondBuffer);
        assert_eq!(received_error(&f, r, mtu), DropReason::Oversize);
        assert_eq!(received_error(&f, r, 1501), r, "a larger MTU: not cut");
        // Any other reason stays what it is, however long the frame.
        let big = eth(0x88cc, &[0; 1600]);
        assert_eq!(received_error(&big, err(&big), mtu), DropReason::NotIp);
    }

    #[test]
    fn malformed_ipv4() {
        let good = v4_raw(proto::UDP, &[0, 1, 0, 2, 0, 8, 0, 0]);
        assert!(parse_ip(&good).is_ok());
        assert_eq!(ip_err(&[]), DropReason::TruncatedIp);
        assert_eq!(ip_err(&[0x55; 40]), DropReason::BadIpVersion);
        assert_eq!(ip_err(&good[..19]), DropReason::TruncatedIpv4);
        assert_eq!(
            err(&eth(ethertype::IPV4, &good[..19])),
            DropReason::TruncatedIpv4
        );
        let mut v = good.clone();
        v[0] = 0x65;
        assert_eq!(err(&eth(ethertype::IPV4, &v)), DropReason::BadIpv4Version);
        v[0] = 0x44;
        assert_eq!(ip_err(&v), DropReason::BadIpv4Ihl);
        v[0] = 0x4f; // 60-byte header, 28 bytes present
        assert_eq!(ip_err(&v), DropReason::TruncatedIpv4);
        let mut v = good.clone();
        v[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(ip_err(&v), DropReason::Ipv4TotalLengthTooShort);
        v[2..4].copy_from_slice(&29u16.to_be_bytes());
        assert_eq!(ip_err(&v), DropReason::Ipv4TotalLengthBeyondBuffer);
    }

    #[test]
    fn malformed_ipv6() {
        let good = v6_raw(&[], proto::UDP, &[0, 1, 0, 2, 0, 8, 0, 0]);
        assert!(parse_ip(&good).is_ok());
        assert_eq!(ip_err(&good[..39]), DropReason::TruncatedIpv6);
        let mut v = good.clone();
        v[0] = 0x45;
        assert_eq!(err(&eth(ethertype::IPV6, &v)), DropReason::BadIpv6Version);
        assert_eq!(
            err(&eth(ethertype::IPV6, &v4_raw(6, &[0; 40]))),
            DropReason::BadIpv6Version
        );
        let mut v = good.clone();
        v[5] += 1;
        assert_eq!(ip_err(&v), DropReason::Ipv6PayloadBeyondBuffer);

        // Extension header longer than the payload.
        let mut v = v6_raw(&[(proto::HOPOPT, 8)], proto::UDP, &[0, 1, 0, 2, 0, 8, 0, 0]);
        v[41] = 2; // claims 24 bytes
        assert_eq!(ip_err(&v), DropReason::TruncatedExtHeader);
        // Only one byte of extension header.
        let mut v = v6_raw(&[], proto::IPV6_ROUTE, &[17]);
        assert_eq!(ip_err(&v), DropReason::TruncatedExtHeader);
        v[6] = proto::IPV6_FRAG;
        assert_eq!(ip_err(&v), DropReason::TruncatedExtHeader);
        v[6] = proto::AH;
        assert_eq!(ip_err(&v), DropReason::TruncatedExtHeader);

        let eight = [(proto::IPV6_OPTS, 8); MAX_IPV6_EXT_HEADERS];
        assert!(parse_ip(&v6_raw(&eight, proto::IPV6_NONXT, &[])).is_ok());
        let nine = [(proto::IPV6_OPTS, 8); MAX_IPV6_EXT_HEADERS + 1];
        assert_eq!(
            ip_err(&v6_raw(&nine, proto::IPV6_NONXT, &[])),
            DropReason::TooManyExtHeaders
        );
        let v = v6_raw(&[(proto::IPV6_OPTS, 8), (proto::HOPOPT, 8)], 59, &[]);
        assert_eq!(ip_err(&v), DropReason::Ipv6HopByHopNotFirst);
    }

    #[test]
    fn malformed_l4() {
        let mut tcp = [0u8; 20];
        tcp[12] = 5 << 4;
        assert!(parse_ip(&v4_raw(proto::TCP, &tcp)).is_ok());
        assert_eq!(
            ip_err(&v4_raw(proto::TCP, &tcp[..19])),
            DropReason::TruncatedTcp
        );
        tcp[12] = 4 << 4;
        assert_eq!(
            ip_err(&v4_raw(proto::TCP, &tcp)),
            DropReason::BadTcpDataOffset
        );
        tcp[12] = 6 << 4; // 24-byte header, 20 present
        assert_eq!(ip_err(&v4_raw(proto::TCP, &tcp)), DropReason::TruncatedTcp);
        assert_eq!(
            ip_err(&v6_raw(&[], proto::TCP, &tcp)),
            DropReason::TruncatedTcp
        );

        let udp = [0, 1, 0, 2, 0, 8, 0, 0];
        assert!(parse_ip(&v4_raw(proto::UDP, &udp)).is_ok());
        assert_eq!(
            ip_err(&v4_raw(proto::UDP, &udp[..7])),
            DropReason::TruncatedUdp
        );
        let mut u = udp;
        u[5] = 7;
        assert_eq!(ip_err(&v4_raw(proto::UDP, &u)), DropReason::BadUdpLength);
        u[5] = 9;
        assert_eq!(
            ip_err(&v6_raw(&[], proto::UDP, &u)),
            DropReason::BadUdpLength
        );
        // UDP length checked against the IP length, not against L2 padding.
        let mut f = eth(ethertype::IPV4, &v4_raw(proto::UDP, &u));
        f.extend_from_slice(&[0; 10]);
        assert_eq!(err(&f), DropReason::BadUdpLength);

        assert_eq!(
            ip_err(&v4_raw(proto::ICMP, &[8, 0, 0, 0, 0, 1, 0])),
            DropReason::TruncatedIcmp
        );
        assert_eq!(
            ip_err(&v6_raw(&[], proto::ICMPV6, &[128, 0, 0, 0, 0, 1, 0])),
            DropReason::TruncatedIcmpv6
        );
        assert_eq!(
            ip_err(&v4_raw(proto::ICMPV6, &[0; 8])),
            DropReason::IcmpWrongIpVersion
        );
        assert_eq!(
            ip_err(&v6_raw(&[], proto::ICMP, &[0; 8])),
            DropReason::IcmpWrongIpVersion
        );
    }

    fn sample_frames() -> Vec<Vec<u8>> {
        let mut out = vec![eth_v4_tcp_syn(), eth_v6_udp()];
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(1.try_into().unwrap(), 2.try_into().unwrap())
            .ipv4(V4_A, V4_B, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut v, b"ping")
            .unwrap();
        out.push(v);
        let mut h = Ipv4Header::new(0, 64, IpNumber::TCP, V4_A, V4_B).unwrap();
        h.options = Ipv4Options::from([1u8; 12]);
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv4(h, Default::default()))
            .tcp(1, 2, 3, 4)
            .options_raw(&[1; 8])
            .unwrap()
            .write(&mut v, &[])
            .unwrap();
        out.push(v);
        out.push(eth(
            ethertype::IPV6,
            &v6_raw(
                &[(proto::HOPOPT, 8), (proto::AH, 16), (proto::IPV6_OPTS, 24)],
                proto::UDP,
                &[0, 1, 0, 2, 0, 8, 0, 0],
            ),
        ));
        let quoted = v6_raw(&[(proto::IPV6_ROUTE, 24)], proto::TCP, &[0; 8]);
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(V6_B, V6_A, 64)
            .icmpv6_raw(1, 4, [0; 4])
            .write(&mut v, &quoted)
            .unwrap();
        out.push(v);
        out
    }

    #[test]
    fn every_truncation_is_an_error() {
        for f in sample_frames() {
            let full = parse_frame(&f).unwrap();
            assert_eq!(full.l3_end(), f.len());
            for len in 0..f.len() {
                // The IP length field covers the whole frame, so any cut is detected.
                assert!(parse_frame(&f[..len]).is_err(), "len {len} of {f:02x?}");
                let l3 = &f[full.l3_offset as usize..len.max(full.l3_offset as usize)];
                assert!(parse_ip(l3).is_err());
            }
        }
    }

    #[test]
    fn sample_frames_embedded() {
        let f = sample_frames().pop().unwrap();
        let p = parse_frame(&f).unwrap();
        assert!(p.is_icmp_error());
        let e = p.embedded.unwrap();
        assert_eq!((e.protocol, e.src.0, e.dst.0), (proto::TCP, V6_A, V6_B));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The 128-bit compare orders addresses exactly like their bytes (sorted tables built
        /// with one order are searched with the other).
        #[test]
        fn address_order_is_byte_order(a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), n in 0usize..16) {
            // Share a prefix of random length, so that later bytes decide too.
            let mut b = b;
            b[..n].copy_from_slice(&a[..n]);
            prop_assert_eq!(IpAddrBytes(a).cmp(&IpAddrBytes(b)), a.cmp(&b));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_frame(&bytes);
            let _ = parse_ip(&bytes);
            let _ = ipv4_checksum_ok(&bytes);
        }

        #[test]
        fn mutated_packets_never_panic(
            which in 0usize..6,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut f = sample_frames().swap_remove(which);
            for (i, b) in flips {
                let n = f.len();
                f[i % n] = b;
            }
            let cut = cut % (f.len() + 1);
            if let Ok(p) = parse_frame(&f[..cut]) {
                prop_assert!(p.l3_end() <= cut);
                if let Some(l4) = p.l4_offset {
                    prop_assert!(usize::from(l4) <= p.l3_end());
                }
            }
            let _ = parse_ip(&f[14..]);
        }

        #[test]
        fn ports_match_etherparse(sp: u16, dp: u16, v6: bool, udp: bool, pad in 0usize..20) {
            let mut v = Vec::new();
            let b = PacketBuilder::ethernet2(MAC_A, MAC_B);
            match (v6, udp) {
                (false, false) => b.ipv4(V4_A, V4_B, 1).tcp(sp, dp, 0, 0).write(&mut v, b"x"),
                (false, true) => b.ipv4(V4_A, V4_B, 1).udp(sp, dp).write(&mut v, b"x"),
                (true, false) => b.ipv6(V6_A, V6_B, 1).tcp(sp, dp, 0, 0).write(&mut v, b"x"),
                (true, true) => b.ipv6(V6_A, V6_B, 1).udp(sp, dp).write(&mut v, b"x"),
            }
            .unwrap();
            let n = v.len();
            v.resize(n + pad, 0);
            let p = parse_frame(&v).unwrap();
            prop_assert_eq!((p.src_port, p.dst_port), (sp, dp));
            prop_assert_eq!(p.l3_end(), n);
        }
    }

    /// `cargo test -p gwlb --no-default-features --release --lib bench_parse -- --ignored
    /// --nocapture`
    #[test]
    #[ignore = "prints figures; run with --ignored --nocapture"]
    fn measure_parse_and_hash() {
        use crate::flow::{FlowKey, Stickiness};
        use std::hint::black_box;
        use std::time::Instant;
        let v4 = eth_v4_tcp_syn();
        let v6 = eth(
            ethertype::IPV6,
            &v6_raw(
                &[(proto::HOPOPT, 8), (proto::IPV6_OPTS, 8)],
                proto::UDP,
                &[0, 1, 0, 2, 0, 8, 0, 0],
            ),
        );
        const N: u32 = 20_000_000;
        // On-CPU time of this thread (Linux), so that other load on a shared machine does not
        // inflate the figure; wall time elsewhere.
        fn cpu_ns() -> Option<u64> {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
            s.split_whitespace().next()?.parse().ok()
        }
        fn run(name: &str, what: &str, mut f: impl FnMut(u32) -> u64) {
            let mut acc = 0u64;
            let (t, c) = (Instant::now(), cpu_ns());
            for i in 0..N {
                acc = acc.wrapping_add(f(i));
            }
            let wall = t.elapsed().as_nanos() as f64 / f64::from(N);
            let cpu = cpu_ns()
                .zip(c)
                .map_or(wall, |(b, a)| (b - a) as f64 / f64::from(N));
            println!("{name:20} {what:16} cpu {cpu:6.2} wall {wall:6.2} ns/pkt ({acc})");
        }
        println!(
            "size_of ParsedPacket {}",
            std::mem::size_of::<ParsedPacket>()
        );
        for (name, f) in [("eth+ipv4+tcp", &v4), ("eth+ipv6+2ext+udp", &v6)] {
            let p0 = parse_frame(f).unwrap();
            run(name, "parse", |_| {
                parse_frame(black_box(f.as_slice())).map_or(0, |p| u64::from(p.src_port))
            });
            run(name, "parse+key+hash", |i| {
                parse_frame(black_box(f.as_slice())).map_or(0, |p| {
                    FlowKey::from_packet(&p, Stickiness::FiveTuple).hash(u64::from(i))
                })
            });
            let mut slot = ParsedPacket::default();
            run(name, "parse_into+key+hash", |i| {
                match parse_frame_into(black_box(f.as_slice()), &mut slot) {
                    Ok(()) => FlowKey::from_packet(&slot, Stickiness::FiveTuple).hash(u64::from(i)),
                    Err(_) => 0,
                }
            });
            run(name, "key+hash", |i| {
                FlowKey::from_packet(black_box(&p0), Stickiness::FiveTuple).hash(u64::from(i))
            });
            let k0 = FlowKey::from_packet(&p0, Stickiness::FiveTuple);
            run(name, "hash", |i| black_box(&k0).hash(u64::from(i)));
        }
    }
}
