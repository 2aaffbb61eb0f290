//! A reference appliance for AWS Gateway Load Balancer-style Geneve, the way AWS's own helper
//! (`gwlbtun`) behaves. Copy it: it is written to be read, not to be fast.
//!
//! ```text
//! aws_appliance --listen 10.98.0.2 [--block-tcp-port 23]... [--ttl 2]
//!               [--flow-log /tmp/flows.log] [--hc-port 8080] [--stats]
//! ```
//!
//! Linux only; needs `CAP_NET_RAW` (root) for the raw socket it sends with.
//!
//! # What a load balancer sends
//!
//! IPv4 / UDP (any source port, destination 6081) / Geneve version 0 with Protocol Type 0x0800
//! or 0x86DD and three options of class 0x0108, non-critical, with exact data lengths:
//! type 1 endpoint id (8 bytes), type 2 attachment id (8 bytes), type 3 flow cookie (4 bytes);
//! then the user's original IP packet, unmodified. This appliance drops (and counts) anything
//! else, like `gwlbtun` does: a packet missing one option, with a wrong length, or with the
//! critical bit set in an option type (the whole type byte is compared), is not AWS traffic.
//!
//! # The return contract
//!
//! An appliance that lets a packet through sends it back to the load balancer it came from,
//! and the load balancer finds the flow again from what comes back. To be safe with every
//! AWS-style load balancer, return exactly what `gwlbtun` returns:
//!
//! * the **whole Geneve header byte-for-byte**: flags, VNI, every option, in the order received
//!   (the flow cookie, endpoint and attachment ids are how the load balancer re-identifies the
//!   flow; never rewrite or reorder them);
//! * the inner packet as inspected (this appliance does not modify it);
//! * outer IPv4 addresses **swapped**: source = the appliance, destination = the load balancer;
//! * UDP **source port = the port the packet came from** (the load balancer's source port, which
//!   often encodes a flow hash for its receive-side scaling), destination port 6081;
//! * outer TTL 2, DF clear, UDP checksum 0 (allowed for UDP over IPv4).
//!
//! An ordinary UDP socket cannot send from the load balancer's port while it listens on 6081,
//! so the reply is sent on a raw socket (`IPPROTO_RAW`, which implies `IP_HDRINCL`) with an
//! outer IPv4 + UDP header built here. Receiving uses an ordinary UDP socket bound to 6081: it
//! gives the payload and the sender's address and port, all that is needed, and its presence
//! stops the kernel from answering with ICMP "port unreachable".
//!
//! An appliance must only answer flows the load balancer sent it ("appliances cannot source new
//! flows"). Replies here are always the echo of a received packet, so that holds by design. An
//! appliance that originates packets inside a flow (a TCP RST for a blocked connection, say)
//! must use the last Geneve header received for that flow: this example keeps it in its flow
//! table ([`Flow::last_header`]) to show where it lives.
//!
//! The appliance cannot send back packets larger than its link MTU: the raw socket refuses them
//! (`EMSGSIZE`, counted as `tx_too_big`) and nothing is fragmented. AWS sends inner packets of
//! up to 8500 bytes, so an appliance link needs an MTU of at least 8568.
//!
//! # Inspection
//!
//! `--block-tcp-port N` (repeatable) is a firewall rule: inner TCP packets whose destination
//! port is N (client to server) or whose source port is N (the server's answers) are dropped
//! and counted. Everything else goes back.
//!
//! # Flow log
//!
//! With `--flow-log PATH` the flow table is written to PATH every second, at once on SIGUSR1,
//! and on exit (to `PATH.tmp`, then renamed, so a reader never sees half a file). One line per
//! inner flow of an endpoint, sorted, fields separated by one space:
//!
//! ```text
//! proto src:port dst:port packets_in packets_returned blocked endpoint_id
//! tcp 192.168.1.10:40001 172.16.0.20:80 2 2 0 0x0badc0ffee000001
//! udp [2001:db8::1]:5353 [2001:db8::2]:53 1 1 0 0x0badc0ffee000001
//! ```
//!
//! * `proto`: `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, or the decimal IP protocol number;
//! * `src:port dst:port`: the flow as first seen (flows are symmetric: both directions count on
//!   one line); IPv6 addresses in brackets; port 0 for protocols without ports and for
//!   non-first fragments;
//! * `packets_in`: valid Geneve packets received for the flow; `packets_returned`: sent back;
//!   `blocked`: dropped by a `--block-tcp-port` rule. `packets_in - packets_returned - blocked`
//!   is the number of replies the raw socket refused;
//! * `endpoint_id`: the AWS endpoint id (option type 1) of the flow's packets, in hexadecimal.
//!   Flows are kept per endpoint, as `gwlbtun` keeps one tunnel interface per endpoint: two
//!   consumers of the service may use the same addresses, and the same 5-tuple of two
//!   endpoints is two flows.
//!
//! The table never expires entries: this is a test tool. A real appliance ages flows out (AWS
//! uses 350 s for TCP and 120 s for other protocols).
//!
//! # Health check
//!
//! `--hc-port P` answers every TCP connection to the listen address on port P with
//! `HTTP/1.1 200 OK` at once, without reading the request, as `gwlbtun` does.
//!
//! # Exit
//!
//! SIGINT or SIGTERM stops the loop (checked at least every 200 ms); `--stats` then prints the
//! counters to stdout, one `name value` per line.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{
    Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use geneve::{parse_aws_header, Error as GeneveError, PROTO_IPV4, PROTO_IPV6, UDP_PORT};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "aws_appliance",
    about = "AWS GWLB-style reference appliance: inspects Geneve traffic and echoes it back"
)]
struct Cli {
    /// IPv4 address to listen on (Geneve on UDP 6081, health check). It is also the outer
    /// source address of returned packets, so it must be a concrete address, not 0.0.0.0.
    #[arg(long, value_name = "ADDR")]
    listen: Ipv4Addr,

    /// Drop inner TCP packets to or from this port (repeatable).
    #[arg(long = "block-tcp-port", value_name = "N")]
    block_tcp_port: Vec<u16>,

    /// Outer IPv4 TTL of returned packets (gwlbtun sends 2).
    #[arg(long, value_name = "TTL", default_value_t = 2)]
    ttl: u8,

    /// Write the flow log to PATH every second, on SIGUSR1 and on exit.
    #[arg(long, value_name = "PATH")]
    flow_log: Option<PathBuf>,

    /// Answer TCP connections on this port with "HTTP/1.1 200 OK" (health check).
    #[arg(long, value_name = "P")]
    hc_port: Option<u16>,

    /// Print the counters to stdout on exit.
    #[arg(long)]
    stats: bool,
}

/// Set by SIGINT/SIGTERM: leave the receive loop.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGUSR1: write the flow log now.
static DUMP: AtomicBool = AtomicBool::new(false);

/// How long a receive waits before the loop looks at the signal flags and the flow-log timer.
const POLL: Duration = Duration::from_millis(200);
/// Flow-log period.
const FLOW_LOG_EVERY: Duration = Duration::from_secs(1);
/// The largest UDP payload over IPv4 (65535 - 20 - 8): the receive buffer size.
const MAX_UDP_PAYLOAD: usize = 65_507;

const HC_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK";

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;

/// Outer IPv4 header (RFC 791), without options: byte offsets.
mod ipv4 {
    pub const LEN: usize = 20;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: core::ops::Range<usize> = 2..4;
    pub const IDENT: core::ops::Range<usize> = 4..6;
    /// Flags (DF, MF) and fragment offset.
    pub const FLAGS_FRAG: core::ops::Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: core::ops::Range<usize> = 10..12;
    pub const SRC: core::ops::Range<usize> = 12..16;
    pub const DST: core::ops::Range<usize> = 16..20;
    /// Version 4, header length 5 words.
    pub const VER_IHL_NO_OPTIONS: u8 = 0x45;
    /// The fragment-offset bits of FLAGS_FRAG.
    pub const FRAG_OFFSET_MASK: u16 = 0x1fff;
}

/// Inner IPv6 header (RFC 8200): byte offsets.
mod ipv6 {
    pub const LEN: usize = 40;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: core::ops::Range<usize> = 8..24;
    pub const DST: core::ops::Range<usize> = 24..40;
    /// Extension headers skipped to find the transport header.
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DEST_OPTIONS: u8 = 60;
    /// Fragment header: offset field (13 bits, in 8-byte units, then 3 flag bits).
    pub const FRAG_OFFSET: core::ops::Range<usize> = 2..4;
    pub const FRAG_OFFSET_SHIFT: u32 = 3;
    pub const FRAG_HEADER_LEN: usize = 8;
}

/// UDP header (RFC 768): byte offsets. TCP and SCTP start with the same two ports.
mod udp {
    pub const LEN: usize = 8;
    pub const SRC_PORT: core::ops::Range<usize> = 0..2;
    pub const DST_PORT: core::ops::Range<usize> = 2..4;
    pub const LENGTH: core::ops::Range<usize> = 4..6;
    pub const CHECKSUM: core::ops::Range<usize> = 6..8;
}

/// Why a received datagram was not returned. Each has its own counter.
#[derive(Debug, Clone, Copy)]
enum DropReason {
    /// Shorter than the Geneve header, or its options overrun the packet.
    Malformed,
    /// Geneve version other than 0.
    BadVersion,
    /// Protocol Type other than 0x0800 / 0x86DD (e.g. an Ethernet payload).
    BadProtocol,
    /// One of the three class-0x0108 options missing, with another length or a critical type.
    MissingOptions,
    /// An option we do not know has its critical bit set (RFC 8926 section 3.5: must drop).
    UnknownCritical,
    /// The inner packet is not a well-formed IP header of the announced version.
    InnerMalformed,
}

/// Counters, printed by `--stats`.
#[derive(Debug, Default)]
struct Counters {
    rx_packets: u64,
    rx_bytes: u64,
    drop_malformed: u64,
    drop_bad_version: u64,
    drop_bad_protocol: u64,
    drop_missing_options: u64,
    drop_unknown_critical: u64,
    drop_inner_malformed: u64,
    blocked: u64,
    tx_packets: u64,
    tx_bytes: u64,
    tx_too_big: u64,
    tx_errors: u64,
}

impl Counters {
    fn count_drop(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Malformed => &mut self.drop_malformed,
            DropReason::BadVersion => &mut self.drop_bad_version,
            DropReason::BadProtocol => &mut self.drop_bad_protocol,
            DropReason::MissingOptions => &mut self.drop_missing_options,
            DropReason::UnknownCritical => &mut self.drop_unknown_critical,
            DropReason::InnerMalformed => &mut self.drop_inner_malformed,
        };
        *counter += 1;
    }

    fn print(&self) {
        let rows = [
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("drop_malformed", self.drop_malformed),
            ("drop_bad_version", self.drop_bad_version),
            ("drop_bad_protocol", self.drop_bad_protocol),
            ("drop_missing_options", self.drop_missing_options),
            ("drop_unknown_critical", self.drop_unknown_critical),
            ("drop_inner_malformed", self.drop_inner_malformed),
            ("blocked", self.blocked),
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("tx_too_big", self.tx_too_big),
            ("tx_errors", self.tx_errors),
        ];
        for (name, value) in rows {
            println!("{name} {value}");
        }
    }
}

/// An inner flow as seen in one packet.
#[derive(Debug, Clone, Copy)]
struct Tuple {
    proto: u8,
    src: SocketAddr,
    dst: SocketAddr,
}

impl Tuple {
    /// The same key for both directions: the two endpoints in sorted order.
    fn symmetric_key(&self) -> (u8, SocketAddr, SocketAddr) {
        if self.src <= self.dst {
            (self.proto, self.src, self.dst)
        } else {
            (self.proto, self.dst, self.src)
        }
    }
}

/// One entry of the flow table.
#[derive(Debug)]
struct Flow {
    /// The AWS endpoint id (option type 1) of the flow's packets.
    endpoint_id: u64,
    /// The direction the flow was first seen in (what the flow log prints).
    first: Tuple,
    packets_in: u64,
    packets_returned: u64,
    blocked: u64,
    /// The last Geneve header (with options) received for this flow, byte for byte. Packets
    /// that the appliance itself originates in this flow must be sent with it.
    last_header: Vec<u8>,
}

/// The appliance state: owned by the receive loop, single-threaded.
#[derive(Debug)]
struct Appliance {
    addr: Ipv4Addr,
    ttl: u8,
    blocked_ports: Vec<u16>,
    tx: Socket,
    /// Keyed by endpoint id and the symmetric 5-tuple.
    flows: HashMap<(u64, (u8, SocketAddr, SocketAddr)), Flow>,
    counters: Counters,
    /// IPv4 identification of returned packets (DF is clear, so make it vary).
    next_ident: u16,
    /// The returned packet is assembled here: outer IPv4 + UDP + the received payload.
    out: Vec<u8>,
}

impl Appliance {
    /// Handles one datagram received from the load balancer `lb`.
    fn handle(&mut self, datagram: &[u8], lb: SocketAddrV4) {
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += datagram.len() as u64;
        let (header_len, endpoint_id, tuple) = match classify(datagram) {
            Ok(found) => found,
            Err(reason) => return self.counters.count_drop(reason),
        };
        let blocked = tuple.proto == IPPROTO_TCP
            && self
                .blocked_ports
                .iter()
                .any(|&p| p == tuple.dst.port() || p == tuple.src.port());

        let flow = self
            .flows
            .entry((endpoint_id, tuple.symmetric_key()))
            .or_insert_with(|| Flow {
                endpoint_id,
                first: tuple,
                packets_in: 0,
                packets_returned: 0,
                blocked: 0,
                last_header: Vec::new(),
            });
        flow.packets_in += 1;
        flow.last_header.clear();
        flow.last_header.extend_from_slice(&datagram[..header_len]);
        if blocked {
            flow.blocked += 1;
            self.counters.blocked += 1;
            return;
        }

        // The echo: the received Geneve header and inner packet, unchanged.
        self.next_ident = self.next_ident.wrapping_add(1);
        let Some(len) = build_return_packet(
            &mut self.out,
            self.addr,
            lb,
            self.ttl,
            self.next_ident,
            datagram,
        ) else {
            self.counters.tx_too_big += 1;
            return;
        };
        // The port of a raw socket's destination address is ignored; the UDP header says it.
        let to = SockAddr::from(SocketAddrV4::new(*lb.ip(), 0));
        match self.tx.send_to(&self.out[..len], &to) {
            Ok(_) => {
                flow.packets_returned += 1;
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += len as u64;
            }
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => self.counters.tx_too_big += 1,
            Err(_) => self.counters.tx_errors += 1,
        }
    }

    /// The flow log text (format in the module documentation).
    fn flow_log(&self) -> String {
        let mut flows: Vec<&Flow> = self.flows.values().collect();
        flows.sort_by_key(|f| (f.first.proto, f.first.src, f.first.dst, f.endpoint_id));
        let mut text = String::new();
        for f in flows {
            let t = &f.first;
            // Writing to a String cannot fail.
            let _ = writeln!(
                text,
                "{} {} {} {} {} {} {:#018x}",
                proto_name(t.proto),
                t.src,
                t.dst,
                f.packets_in,
                f.packets_returned,
                f.blocked,
                f.endpoint_id
            );
        }
        text
    }
}

/// Validates a received datagram as AWS Geneve and finds its inner flow.
///
/// Returns the Geneve header length (with options), the endpoint id and the inner 5-tuple.
fn classify(datagram: &[u8]) -> Result<(usize, u64, Tuple), DropReason> {
    let header = parse_aws_header(datagram).map_err(|e| match e {
        GeneveError::BadVersion => DropReason::BadVersion,
        _ => DropReason::Malformed,
    })?;
    if header.protocol_type != PROTO_IPV4 && header.protocol_type != PROTO_IPV6 {
        return Err(DropReason::BadProtocol);
    }
    // `complete` requires class 0x0108 with types 1, 2, 3 (whole type byte, so a critical-bit
    // type does not count) and data lengths 8, 8, 4, in any order.
    let Some(aws) = header.options.complete() else {
        return Err(DropReason::MissingOptions);
    };
    if header.options.unknown_critical {
        return Err(DropReason::UnknownCritical);
    }
    let inner = datagram
        .get(header.header_len..)
        .ok_or(DropReason::Malformed)?;
    let tuple = if header.protocol_type == PROTO_IPV4 {
        inner_ipv4(inner)
    } else {
        inner_ipv6(inner)
    };
    Ok((
        header.header_len,
        aws.endpoint_id,
        tuple.ok_or(DropReason::InnerMalformed)?,
    ))
}

fn be16(b: &[u8], r: core::ops::Range<usize>) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(r)?.try_into().ok()?))
}

/// The source and destination ports of TCP, UDP and SCTP (all start with them); 0 otherwise
/// or when the transport header is not there (a non-first fragment, a truncated packet).
fn ports(proto: u8, l4: Option<&[u8]>) -> (u16, u16) {
    match (proto, l4) {
        (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP, Some(l4)) => (
            be16(l4, udp::SRC_PORT).unwrap_or(0),
            be16(l4, udp::DST_PORT).unwrap_or(0),
        ),
        _ => (0, 0),
    }
}

fn inner_ipv4(p: &[u8]) -> Option<Tuple> {
    let ver_ihl = *p.get(ipv4::VER_IHL)?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < ipv4::LEN || p.len() < ihl {
        return None;
    }
    let proto = p[ipv4::PROTOCOL];
    let src: [u8; 4] = p[ipv4::SRC].try_into().ok()?;
    let dst: [u8; 4] = p[ipv4::DST].try_into().ok()?;
    let first_fragment = be16(p, ipv4::FLAGS_FRAG)? & ipv4::FRAG_OFFSET_MASK == 0;
    let (sport, dport) = ports(proto, first_fragment.then(|| &p[ihl..]));
    Some(Tuple {
        proto,
        src: SocketAddr::new(Ipv4Addr::from(src).into(), sport),
        dst: SocketAddr::new(Ipv4Addr::from(dst).into(), dport),
    })
}

fn inner_ipv6(p: &[u8]) -> Option<Tuple> {
    if p.len() < ipv6::LEN || p[0] >> 4 != 6 {
        return None;
    }
    let src: [u8; 16] = p[ipv6::SRC].try_into().ok()?;
    let dst: [u8; 16] = p[ipv6::DST].try_into().ok()?;
    // Walk the usual extension headers to the transport header; give up on ports (not on the
    // packet) if they are cut short.
    let mut next = p[ipv6::NEXT_HEADER];
    let mut at = ipv6::LEN;
    // Stays None if more than 8 extension headers come before the transport header.
    let mut l4 = None;
    for _ in 0..8 {
        let Some(ext) = p.get(at..) else {
            l4 = None;
            break;
        };
        let len = match next {
            ipv6::HOP_BY_HOP | ipv6::ROUTING | ipv6::DEST_OPTIONS => {
                ext.get(1).map(|&l| (usize::from(l) + 1) * 8)
            }
            ipv6::FRAGMENT => {
                if be16(ext, ipv6::FRAG_OFFSET).map(|o| o >> ipv6::FRAG_OFFSET_SHIFT) != Some(0) {
                    // A non-first fragment carries no transport header.
                    next = ext.first().copied().unwrap_or(next);
                    l4 = None;
                    break;
                }
                Some(ipv6::FRAG_HEADER_LEN)
            }
            _ => {
                l4 = Some(ext);
                break;
            }
        };
        match (len, ext.first()) {
            (Some(len), Some(&n)) if ext.len() >= len => {
                next = n;
                at += len;
            }
            _ => {
                l4 = None;
                break;
            }
        }
    }
    let (sport, dport) = ports(next, l4);
    Some(Tuple {
        proto: next,
        src: SocketAddr::new(Ipv6Addr::from(src).into(), sport),
        dst: SocketAddr::new(Ipv6Addr::from(dst).into(), dport),
    })
}

fn proto_name(proto: u8) -> String {
    match proto {
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_ICMPV6 => "icmpv6".into(),
        IPPROTO_SCTP => "sctp".into(),
        other => other.to_string(),
    }
}

/// RFC 1071 Internet checksum of `data` (even length here: the 20-byte IPv4 header).
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    !(sum as u16)
}

/// Writes into `out` the packet that returns `geneve` (the received UDP payload: Geneve header
/// and inner packet) to the load balancer `lb`, and returns its length; `None` if it would not
/// fit in one IPv4 packet.
///
/// Outer IPv4: source `ours`, destination the load balancer, TTL `ttl`, DF clear, protocol
/// UDP. UDP: source port = the load balancer's source port, destination 6081, checksum 0.
fn build_return_packet(
    out: &mut Vec<u8>,
    ours: Ipv4Addr,
    lb: SocketAddrV4,
    ttl: u8,
    ident: u16,
    geneve: &[u8],
) -> Option<usize> {
    let udp_len = u16::try_from(udp::LEN + geneve.len()).ok()?;
    let total_len = u16::try_from(ipv4::LEN + usize::from(udp_len)).ok()?;
    out.clear();
    out.resize(usize::from(total_len), 0);
    let (ip, rest) = out.split_at_mut(ipv4::LEN);
    let (udp_hdr, payload) = rest.split_at_mut(udp::LEN);

    ip[ipv4::VER_IHL] = ipv4::VER_IHL_NO_OPTIONS;
    ip[ipv4::TOS] = 0;
    ip[ipv4::TOTAL_LEN].copy_from_slice(&total_len.to_be_bytes());
    ip[ipv4::IDENT].copy_from_slice(&ident.to_be_bytes());
    ip[ipv4::FLAGS_FRAG].copy_from_slice(&0u16.to_be_bytes()); // DF clear, not a fragment
    ip[ipv4::TTL] = ttl;
    ip[ipv4::PROTOCOL] = IPPROTO_UDP;
    ip[ipv4::SRC].copy_from_slice(&ours.octets());
    ip[ipv4::DST].copy_from_slice(&lb.ip().octets());
    // The checksum field is zero while the sum is computed. (Linux recomputes it for
    // IP_HDRINCL sockets anyway; other systems do not.)
    ip[ipv4::CHECKSUM].copy_from_slice(&[0, 0]);
    let checksum = internet_checksum(ip);
    ip[ipv4::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());

    udp_hdr[udp::SRC_PORT].copy_from_slice(&lb.port().to_be_bytes());
    udp_hdr[udp::DST_PORT].copy_from_slice(&UDP_PORT.to_be_bytes());
    udp_hdr[udp::LENGTH].copy_from_slice(&udp_len.to_be_bytes());
    udp_hdr[udp::CHECKSUM].copy_from_slice(&[0, 0]); // 0: no checksum (RFC 768, IPv4 only)

    payload.copy_from_slice(geneve);
    Some(usize::from(total_len))
}

/// The receive socket: UDP `addr`:6081.
fn open_rx(addr: Ipv4Addr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Room for bursts: this loop is slow compared with a load balancer.
    socket.set_recv_buffer_size(4 << 20)?;
    socket.set_read_timeout(Some(POLL))?;
    socket.bind(&SocketAddr::from((addr, UDP_PORT)).into())?;
    Ok(socket.into())
}

/// The send socket: raw IPv4 with our own IP header (`IPPROTO_RAW` implies `IP_HDRINCL`; it is
/// set explicitly as well for clarity).
fn open_tx() -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )?;
    socket.set_header_included_v4(true)?;
    Ok(socket)
}

/// Answers TCP connections on `addr`:`port` with HTTP 200, each on its own short-lived thread.
fn spawn_health_check(addr: Ipv4Addr, port: u16) -> io::Result<()> {
    let listener = TcpListener::bind((addr, port))?;
    thread::Builder::new()
        .name("health-check".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        let spawned = thread::Builder::new()
                            .name("hc-conn".into())
                            .spawn(move || answer_health_check(stream));
                        if let Err(e) = spawned {
                            eprintln!("aws_appliance: health check: {e}");
                        }
                    }
                    Err(e) => eprintln!("aws_appliance: health check accept: {e}"),
                }
            }
        })?;
    Ok(())
}

fn answer_health_check(mut stream: TcpStream) {
    // Answer at once, without reading the request (as gwlbtun does). Errors only mean the
    // checker went away.
    let _ = stream.write_all(HC_RESPONSE);
    let _ = stream.shutdown(Shutdown::Write);
    // Read what the checker sent before closing: closing a socket with unread data sends a RST,
    // which can destroy the response before the checker reads it.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut sink = [0u8; 512];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

extern "C" fn on_signal(signal: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    if signal == libc::SIGUSR1 {
        DUMP.store(true, Ordering::Relaxed);
    } else {
        STOP.store(true, Ordering::Relaxed);
    }
}

fn install_signal_handlers() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `on_signal` has the `void (*)(int)` signature `signal` expects, lives for
        // the whole program, and only performs atomic stores, which are async-signal-safe.
        let previous = unsafe { libc::signal(signal, handler) };
        if previous == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes the flow log to `path` through a temporary file and a rename.
fn write_flow_log(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn run(cli: &Cli) -> io::Result<()> {
    if cli.listen.is_unspecified() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--listen needs a concrete address: it is the outer source of returned packets",
        ));
    }
    install_signal_handlers()?;
    let rx = open_rx(cli.listen)?;
    let tx = open_tx().map_err(|e| io::Error::new(e.kind(), format!("raw socket: {e}")))?;
    if let Some(port) = cli.hc_port {
        spawn_health_check(cli.listen, port)?;
    }
    let mut app = Appliance {
        addr: cli.listen,
        ttl: cli.ttl,
        blocked_ports: cli.block_tcp_port.clone(),
        tx,
        flows: HashMap::new(),
        counters: Counters::default(),
        next_ident: 0,
        out: Vec::with_capacity(ipv4::LEN + udp::LEN + MAX_UDP_PAYLOAD),
    };
    eprintln!(
        "aws_appliance: listening on {}:{UDP_PORT}, blocking TCP ports {:?}",
        cli.listen, cli.block_tcp_port
    );

    let mut buf = vec![0u8; MAX_UDP_PAYLOAD];
    let mut last_log = Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        match rx.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(lb))) => app.handle(&buf[..n], lb),
            Ok((_, SocketAddr::V6(_))) => {} // cannot happen on an IPv4 socket
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
        if let Some(path) = &cli.flow_log {
            if DUMP.swap(false, Ordering::Relaxed) || last_log.elapsed() >= FLOW_LOG_EVERY {
                if let Err(e) = write_flow_log(path, &app.flow_log()) {
                    eprintln!("aws_appliance: flow log {}: {e}", path.display());
                }
                last_log = Instant::now();
            }
        }
    }

    if let Some(path) = &cli.flow_log {
        write_flow_log(path, &app.flow_log())?;
    }
    if cli.stats {
        app.counters.print();
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aws_appliance: {e}");
            ExitCode::FAILURE
        }
    }
}
