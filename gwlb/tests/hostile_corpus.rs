//! A hostile-traffic corpus through the real `gwlb` binary on a net_pcap port: every case is
//! one frame with the outcome it must have (encapsulated or decapsulated to exactly the
//! expected bytes, handed to the host, or dropped under a named reason), sometimes after
//! setup frames that open the flow a return belongs to.
//!
//! Cases: truncation of valid frames at every offset (user frames, IPv4 and IPv6, tagged,
//! padded; appliance returns, raw cut and with consistent lengths), IPv4 options, IPv6
//! extension-header chains under and over the limit, tiny and overlapping fragments, bad
//! Geneve option lengths, critical options, returns from unregistered sources, from another
//! appliance, from an appliance's address but another MAC, non-SYN TCP for unknown flows, ICMP
//! errors quoting real, random and broken packets, and a few more.
//!
//! gwlb reports drops only as totals per reason, so the cases run in groups of one expected
//! outcome each: one gwlb run per drop reason (its drop counters must then be exactly
//! `{reason: cases}`, and the only output frames those of the setup frames), one for all
//! forwarded cases (output frames compared one by one, in order) and one for the host's. A
//! group that fails is re-run case by case to name the cases that deviate. Cases marked
//! `regression` caught a gwlb defect, now fixed, and name it when they fail again: a return
//! whose UDP length ends before the inner packet was decapsulated (the Geneve payload was read
//! to the end of the outer IP packet), and an ICMP error returned by the appliance of the flow
//! it quotes was forwarded whatever its own destination.
//!
//! Documented as expected (gwlb's behaviour today, not bugs): TCP without SYN opens a flow
//! (no TCP state is tracked; the appliance judges); fragments are not reassembled (each goes,
//! keyed without ports, to the datagram's appliance; tiny first fragments that cut the TCP or
//! UDP header are dropped); a fragmented Geneve return is not a return and goes to the host;
//! IPv4 options, TTL 0 and bad inner checksums are carried untouched.
//!
//! Needs root (DPDK) and the `dpdk` feature: ignored by a plain `cargo test` (see `needs_root`).

#![cfg(feature = "dpdk")]

mod common;
mod needs_root;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;

/// What must happen to a case's frame.
#[derive(Clone, Debug)]
enum Want {
    /// Encapsulated toward an appliance: exactly these bytes.
    Encap(Vec<u8>),
    /// Decapsulated and forwarded: exactly these bytes.
    Decap(Vec<u8>),
    /// For the host (counted as `to_host`; this configuration has no exception path, so gwlb
    /// frees it).
    Host,
    /// Dropped and counted under this reason (`DropReason::as_str`).
    Drop(&'static str),
}

impl Want {
    fn group(&self) -> String {
        match self {
            Want::Encap(_) | Want::Decap(_) => "forwarded".into(),
            Want::Host => "to_host".into(),
            Want::Drop(r) => (*r).into(),
        }
    }
}

#[derive(Debug)]
struct Case {
    what: String,
    /// Frames sent first in the same run, each with the frame gwlb must send for it (the
    /// forward packets of the flow a return belongs to).
    setup: Vec<(Vec<u8>, Vec<u8>)>,
    frame: Vec<u8>,
    want: Want,
    /// The fixed gwlb defect this case caught (named when it fails again).
    regression: Option<&'static str>,
}

struct Corpus {
    m: Model,
    cases: Vec<Case>,
}

impl Corpus {
    fn push(&mut self, what: impl Into<String>, setup: &[&Vec<u8>], frame: Vec<u8>, want: Want) {
        let setup = setup
            .iter()
            .map(|f| ((*f).clone(), self.encap_of(f)))
            .collect();
        self.cases.push(Case {
            what: what.into(),
            setup,
            frame,
            want,
            regression: None,
        });
    }

    /// What gwlb must send for the user frame `f` (the appliance and cookie from the model).
    fn encap_of(&self, f: &[u8]) -> Vec<u8> {
        expected_encap(f, &self.m.target(f), self.m.cookie(f))
    }

    fn enc(&mut self, what: impl Into<String>, frame: Vec<u8>) {
        let want = Want::Encap(self.encap_of(&frame));
        self.push(what, &[], frame, want);
    }

    /// A return of the flows opened by `setup`, carrying `inner`: forwarded as `inner`.
    fn dec(&mut self, what: impl Into<String>, setup: &[&Vec<u8>], frame: Vec<u8>, inner: &[u8]) {
        let want = Want::Decap(eth_ip(next_hop_mac(inner), PORT_MAC, inner));
        self.push(what, setup, frame, want);
    }

    fn drop(
        &mut self,
        what: impl Into<String>,
        setup: &[&Vec<u8>],
        frame: Vec<u8>,
        reason: &'static str,
    ) {
        self.push(what, setup, frame, Want::Drop(reason));
    }

    fn host(&mut self, what: impl Into<String>, frame: Vec<u8>) {
        self.push(what, &[], frame, Want::Host);
    }

    /// Marks the last case as the guard against a fixed defect.
    fn regression(&mut self, defect: &'static str) {
        if let Some(c) = self.cases.last_mut() {
            c.regression = Some(defect);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Packet builders
// ---------------------------------------------------------------------------------------------

const V4_HDR: usize = 20;

/// A user frame (from the router in front of the gateway) carrying `ip`.
fn user_ip(ip: &[u8]) -> Vec<u8> {
    eth_ip(PORT_MAC, CLIENT_MAC, ip)
}

fn v6(net: u16, host: u16) -> [u8; 16] {
    Ipv6Addr::new(net, 0, 0, 0, 0, 0, 0, host).octets()
}

/// The MAC gwlb forwards a decapsulated packet to, by the test config's routes.
fn next_hop_mac(inner: &[u8]) -> [u8; 6] {
    if inner[0] >> 4 == 6 {
        return ROUTER_V6;
    }
    match inner[16..20] {
        [10, 2, _, _] => ROUTER_10_2,
        [10, 0, 0, 50] => HOST_50,
        _ => ROUTER_V4,
    }
}

fn ip_of(f: &[u8]) -> Vec<u8> {
    ip_packet(f).to_vec()
}

/// `frame` (an IPv4-outer return) with `opts` inserted as outer IPv4 options.
fn with_outer_options(frame: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut f = frame[..14 + V4_HDR].to_vec();
    f.extend_from_slice(opts);
    f.extend_from_slice(&frame[14 + V4_HDR..]);
    f[14] = 0x40 | ((V4_HDR + opts.len()) / 4) as u8;
    let total = u16::from_be_bytes([f[16], f[17]]) + opts.len() as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    set_ipv4_checksum(&mut f[14..]);
    f
}

/// `frame` (IPv4 outer) with the outer flags/fragment-offset word replaced.
fn with_outer_frag(frame: &[u8], word: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[20..22].copy_from_slice(&word.to_be_bytes());
    set_ipv4_checksum(&mut f[14..]);
    f
}

/// A target with another MAC (or address): a forger, or an appliance misplaced.
fn target(addr: IpAddr, mac: [u8; 6]) -> Target {
    Target { addr, mac }
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

/// Flows the returns belong to, each pinned to an appliance.
struct Flows {
    /// IPv4 UDP through appliance a.
    fa: Vec<u8>,
    /// IPv4 TCP SYN through appliance b.
    fb: Vec<u8>,
    /// IPv6 UDP through appliance c6 (IPv6 outer).
    f6: Vec<u8>,
}

fn flows(m: &Model) -> Flows {
    let [a, b, c6] = TARGETS;
    let fa = |i: u16| {
        user_ip(&ipv4(
            v4(10, 1, 0, 1),
            v4(10, 2, 0, 1),
            17,
            &[],
            0,
            &udp(30000 + i, 53, b"query"),
        ))
    };
    let fb = |i: u16| {
        user_ip(&ipv4(
            v4(10, 1, 0, 2),
            v4(10, 2, 0, 2),
            6,
            &[],
            0x4000,
            &tcp(40000 + i, 443, 0x02, b""),
        ))
    };
    let f6 = |i: u16| {
        user_ip(&ipv6(
            v6(0xfd01, 1),
            v6(0xfd02, 1),
            17,
            &udp(30000 + i, 53, b"v6 query"),
        ))
    };
    Flows {
        fa: fa(m.find_flow(a.addr, fa)),
        fb: fb(m.find_flow(b.addr, fb)),
        f6: f6(m.find_flow(c6.addr, f6)),
    }
}

/// Truncation of valid frames at every offset.
fn truncation(c: &mut Corpus, fl: &Flows) {
    let [a, _, c6] = TARGETS;

    // A short IPv4 UDP frame padded to 60 bytes: every cut, padding included.
    let u = pad_to(
        user_ip(&ipv4(
            v4(10, 1, 1, 1),
            v4(10, 2, 1, 1),
            17,
            &[],
            0,
            &udp(5353, 53, b"hi"),
        )),
        60,
    );
    let end = 14 + 20 + 8 + 2;
    for l in 0..=u.len() {
        let f = u[..l].to_vec();
        let what = format!("ipv4 udp (padded to 60) cut to {l} bytes");
        match l {
            0..=13 => c.drop(what, &[], f, "truncated_ethernet"),
            14..=33 => c.drop(what, &[], f, "truncated_ipv4"),
            _ if l < end => c.drop(what, &[], f, "ipv4_total_length_beyond_buffer"),
            _ => c.enc(what, f),
        }
    }

    // IPv6 TCP with a payload.
    let u = user_ip(&ipv6(
        v6(0xfd01, 0x11),
        v6(0xfd02, 0x11),
        6,
        &tcp(1111, 22, 0x02, b"SSH-"),
    ));
    for l in 0..=u.len() {
        let f = u[..l].to_vec();
        let what = format!("ipv6 tcp cut to {l} of {} bytes", u.len());
        match l {
            0..=13 => c.drop(what, &[], f, "truncated_ethernet"),
            14..=53 => c.drop(what, &[], f, "truncated_ipv6"),
            _ if l < u.len() => c.drop(what, &[], f, "ipv6_payload_beyond_buffer"),
            _ => c.enc(what, f),
        }
    }

    // An 802.1Q-tagged IPv4 TCP frame.
    let u = vlan_tagged(
        &user_ip(&ipv4(
            v4(10, 1, 1, 2),
            v4(10, 2, 1, 2),
            6,
            &[],
            0x4000,
            &tcp(2222, 80, 0x02, b"GET /"),
        )),
        0,
        100,
    );
    for l in 0..=u.len() {
        let f = u[..l].to_vec();
        let what = format!("802.1Q ipv4 tcp cut to {l} of {} bytes", u.len());
        match l {
            0..=13 => c.drop(what, &[], f, "truncated_ethernet"),
            14..=17 => c.drop(what, &[], f, "truncated_vlan"),
            18..=37 => c.drop(what, &[], f, "truncated_ipv4"),
            _ if l < u.len() => c.drop(what, &[], f, "ipv4_total_length_beyond_buffer"),
            _ => c.enc(what, f),
        }
    }

    // Consistent lengths, L4 cut: IPv4 TCP, IPv6 UDP, IPv4 ICMP echo.
    let seg = tcp(3333, 443, 0x02, b"abcdef");
    for n in 0..=seg.len() {
        let f = user_ip(&ipv4(
            v4(10, 1, 1, 3),
            v4(10, 2, 1, 3),
            6,
            &[],
            0x4000,
            &seg[..n],
        ));
        let what = format!("ipv4 tcp segment cut to {n} bytes (IP length consistent)");
        if n < 20 {
            c.drop(what, &[], f, "truncated_tcp");
        } else {
            c.enc(what, f);
        }
    }
    let dgram = udp(4444, 53, b"12345");
    for n in 0..=dgram.len() {
        let f = user_ip(&ipv6(v6(0xfd01, 0x12), v6(0xfd02, 0x12), 17, &dgram[..n]));
        let what = format!("ipv6 udp datagram cut to {n} bytes (UDP length not adjusted)");
        match n {
            0..=7 => c.drop(what, &[], f, "truncated_udp"),
            _ if n < dgram.len() => c.drop(what, &[], f, "bad_udp_length"),
            _ => c.enc(what, f),
        }
    }
    let mut echo = icmp(8, 0, b"ping-data");
    echo[4..6].copy_from_slice(&77u16.to_be_bytes());
    for n in 0..=echo.len() {
        let f = user_ip(&ipv4(
            v4(10, 1, 1, 4),
            v4(10, 2, 1, 4),
            1,
            &[],
            0,
            &echo[..n],
        ));
        let what = format!("ipv4 icmp echo cut to {n} bytes");
        if n < 8 {
            c.drop(what, &[], f, "truncated_icmp");
        } else {
            c.enc(what, f);
        }
    }

    // A valid AWS-style return of fa, raw cut at every offset (the outer IPv4 length then
    // says more than there is).
    let inner = ip_of(&fl.fa);
    let r = aws_return(&a, &inner, c.m.cookie(&fl.fa));
    for l in 0..=r.len() {
        let f = r[..l].to_vec();
        let what = format!("aws return cut to {l} of {} bytes", r.len());
        match l {
            0..=13 => c.drop(what, &[&fl.fa], f, "truncated_ethernet"),
            14..=33 => c.drop(what, &[&fl.fa], f, "truncated_ipv4"),
            _ if l < r.len() => c.drop(what, &[&fl.fa], f, "ipv4_total_length_beyond_buffer"),
            _ => c.dec(what, &[&fl.fa], f, &inner),
        }
    }
    // The same return with its Geneve payload cut and the outer lengths consistent: each
    // layer inside fails on its own.
    let mut payload = aws_geneve_header(&inner, c.m.cookie(&fl.fa));
    payload.extend_from_slice(&inner);
    for n in 0..=payload.len() {
        let f = raw_return(&a, &payload[..n]);
        let what = format!(
            "aws return, geneve payload cut to {n} of {} bytes",
            payload.len()
        );
        match n {
            0..=39 => c.drop(what, &[&fl.fa], f, "geneve_malformed"),
            40 => c.drop(what, &[&fl.fa], f, "truncated_ip"),
            41..=59 => c.drop(what, &[&fl.fa], f, "truncated_ipv4"),
            _ if n < payload.len() => c.drop(what, &[&fl.fa], f, "ipv4_total_length_beyond_buffer"),
            _ => c.dec(what, &[&fl.fa], f, &inner),
        }
    }
    // A Linux-style return of f6 over an IPv6 outer header: raw cuts, then consistent ones.
    let inner = routed(&ip_of(&fl.f6));
    let r = linux_return(&c6, &inner, 4242, 999);
    for l in 0..=r.len() {
        let f = r[..l].to_vec();
        let what = format!("linux return over ipv6 cut to {l} of {} bytes", r.len());
        match l {
            0..=13 => c.drop(what, &[&fl.f6], f, "truncated_ethernet"),
            14..=53 => c.drop(what, &[&fl.f6], f, "truncated_ipv6"),
            _ if l < r.len() => c.drop(what, &[&fl.f6], f, "ipv6_payload_beyond_buffer"),
            _ => c.dec(what, &[&fl.f6], f, &inner),
        }
    }
    let mut payload = geneve_base(0, 0, 0x86dd, 4242);
    payload.extend_from_slice(&inner);
    for n in 0..=payload.len() {
        let f = raw_return(&c6, &payload[..n]);
        let what = format!(
            "linux return over ipv6, geneve payload cut to {n} of {} bytes",
            payload.len()
        );
        match n {
            0..=7 => c.drop(what, &[&fl.f6], f, "geneve_malformed"),
            8 => c.drop(what, &[&fl.f6], f, "truncated_ip"),
            9..=47 => c.drop(what, &[&fl.f6], f, "truncated_ipv6"),
            _ if n < payload.len() => c.drop(what, &[&fl.f6], f, "ipv6_payload_beyond_buffer"),
            _ => c.dec(what, &[&fl.f6], f, &inner),
        }
    }
}

/// IPv4 options: carried untouched, on user packets, inner packets and outer headers.
fn ipv4_options(c: &mut Corpus, fl: &Flows) {
    let [a, ..] = TARGETS;
    let mut rr = vec![7, 39, 4];
    rr.resize(40, 0);
    let opts: [(&str, Vec<u8>); 8] = [
        ("4 NOPs", vec![1, 1, 1, 1]),
        ("router alert", vec![148, 4, 0, 0]),
        ("record route, 40 bytes (IHL 15)", rr),
        ("timestamp", vec![68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("security", vec![130, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("EOL then garbage", vec![0, 0xde, 0xad, 0xbe]),
        ("an option of length 0", vec![7, 0, 1, 1]),
        ("an option longer than the header", vec![7, 255, 4, 0]),
    ];
    for (i, (name, o)) in opts.iter().enumerate() {
        let f = user_ip(&ipv4(
            v4(10, 1, 2, i as u8),
            v4(10, 2, 2, 1),
            17,
            o,
            0,
            &udp(1000 + i as u16, 53, b"opt"),
        ));
        c.enc(format!("ipv4 options: {name}"), f);
    }
    // TCP options (MSS, SACK permitted, timestamps, window scale).
    let topts = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    c.enc(
        "tcp SYN with options",
        user_ip(&ipv4(
            v4(10, 1, 2, 20),
            v4(10, 2, 2, 1),
            6,
            &[],
            0x4000,
            &tcp_opts(5000, 443, 0x02, &topts, b""),
        )),
    );

    let base = ipv4(
        v4(10, 1, 2, 30),
        v4(10, 2, 2, 1),
        17,
        &[1, 1, 1, 1, 1, 1, 1, 1],
        0,
        &udp(7, 7, b"x"),
    );
    let mut cut = base[..24].to_vec();
    cut[0] = 0x4f; // IHL 15: 60 bytes of header, 24 there
    cut[2..4].copy_from_slice(&24u16.to_be_bytes());
    set_ipv4_checksum(&mut cut);
    c.drop(
        "ipv4 IHL 15 with the options cut off",
        &[],
        user_ip(&cut),
        "truncated_ipv4",
    );
    for ihl in [0u8, 4] {
        let mut b = base.clone();
        b[0] = 0x40 | ihl;
        c.drop(format!("ipv4 IHL {ihl}"), &[], user_ip(&b), "bad_ipv4_ihl");
    }
    let mut b = base.clone();
    b[2..4].copy_from_slice(&24u16.to_be_bytes()); // IHL 7 = 28 bytes
    set_ipv4_checksum(&mut b);
    c.drop(
        "ipv4 total length below the header length",
        &[],
        user_ip(&b),
        "ipv4_total_length_too_short",
    );

    // A flow whose packets carry options, out and back.
    let fo = user_ip(&ipv4(
        v4(10, 1, 2, 40),
        v4(10, 2, 2, 40),
        17,
        &[148, 4, 0, 0],
        0,
        &udp(4000, 4001, b"ra"),
    ));
    let t = c.m.target(&fo);
    let inner = ip_of(&fo);
    let r = aws_return(&t, &inner, c.m.cookie(&fo));
    c.dec(
        "return whose inner packet has IPv4 options",
        &[&fo],
        r,
        &inner,
    );
    // Options on the outer header of a return.
    let inner = ip_of(&fl.fa);
    let r = aws_return(&a, &inner, c.m.cookie(&fl.fa));
    c.dec(
        "return with outer IPv4 options (router alert)",
        &[&fl.fa],
        with_outer_options(&r, &[148, 4, 0, 0]),
        &inner,
    );
    c.dec(
        "return with 40 bytes of outer IPv4 options",
        &[&fl.fa],
        with_outer_options(&r, &[1; 40]),
        &inner,
    );
}

/// IPv6 extension-header chains under and over the limit (8).
fn ipv6_chains(c: &mut Corpus) {
    let chain = |n: usize, last: u8| {
        let mut body = Vec::new();
        for i in 0..n {
            body.extend_from_slice(&ipv6_ext(if i + 1 == n { last } else { 60 }, 1));
        }
        body
    };
    for n in [1usize, 2, 3, 7, 8, 9, 10, 16, 40] {
        let mut body = chain(n, 17);
        body.extend_from_slice(&udp(6000 + n as u16, 53, b"ext"));
        let f = user_ip(&ipv6(v6(0xfd01, 0x20), v6(0xfd02, 0x20), 60, &body));
        let what = format!("ipv6 with {n} destination-options headers");
        if n <= 8 {
            c.enc(what, f);
        } else {
            c.drop(what, &[], f, "too_many_ext_headers");
        }
    }
    // Every kind once: hop-by-hop, routing, atomic fragment, AH, destination options.
    let mut body = ipv6_ext(43, 1);
    let mut routing = ipv6_ext(44, 1);
    routing[2..4].copy_from_slice(&[0, 0]); // type 0, 0 segments left
    body.extend_from_slice(&routing);
    body.extend_from_slice(&ipv6_fragment(51, 0, false, 9));
    let mut ah = vec![60, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]; // (1 + 2) * 4 = 12 bytes
    ah[0] = 60;
    body.extend_from_slice(&ah);
    body.extend_from_slice(&ipv6_ext(6, 2));
    body.extend_from_slice(&tcp(7000, 443, 0x02, b""));
    c.enc(
        "ipv6 hop-by-hop, routing, atomic fragment, AH, destination options, tcp",
        user_ip(&ipv6(v6(0xfd01, 0x21), v6(0xfd02, 0x21), 0, &body)),
    );
    let mut body = ipv6_ext(0, 1);
    body.extend_from_slice(&ipv6_ext(17, 1));
    body.extend_from_slice(&udp(1, 2, b""));
    c.drop(
        "ipv6 hop-by-hop as the second header",
        &[],
        user_ip(&ipv6(v6(0xfd01, 0x22), v6(0xfd02, 0x22), 60, &body)),
        "ipv6_hop_by_hop_not_first",
    );
    let mut long = ipv6_ext(17, 1);
    long[1] = 255; // says 2048 bytes
    long.extend_from_slice(&udp(1, 2, b""));
    c.drop(
        "ipv6 extension header longer than the packet",
        &[],
        user_ip(&ipv6(v6(0xfd01, 0x23), v6(0xfd02, 0x23), 60, &long)),
        "truncated_ext_header",
    );
    c.drop(
        "ipv6 payload ending inside an extension header",
        &[],
        user_ip(&ipv6(v6(0xfd01, 0x24), v6(0xfd02, 0x24), 60, &[17])),
        "truncated_ext_header",
    );
    c.enc(
        "ipv6 no next header",
        user_ip(&ipv6(v6(0xfd01, 0x25), v6(0xfd02, 0x25), 59, &[])),
    );
    c.enc(
        "ipv6 ESP",
        user_ip(&ipv6(
            v6(0xfd01, 0x26),
            v6(0xfd02, 0x26),
            50,
            &[0, 0, 1, 0, 0, 0, 0, 1, 9, 9],
        )),
    );

    // Returns whose inner packet has a chain: 8 (a stored flow) and 9 headers.
    let mut body = chain(8, 17);
    body.extend_from_slice(&udp(6100, 53, b"ext8"));
    let f8 = user_ip(&ipv6(v6(0xfd01, 0x27), v6(0xfd02, 0x27), 60, &body));
    let t = c.m.target(&f8);
    let inner = ip_of(&f8);
    c.dec(
        "return whose inner packet has 8 extension headers",
        &[&f8],
        aws_return(&t, &inner, c.m.cookie(&f8)),
        &inner,
    );
    let mut body = chain(9, 17);
    body.extend_from_slice(&udp(6100, 53, b"ext9"));
    let inner9 = ipv6(v6(0xfd01, 0x27), v6(0xfd02, 0x27), 60, &body);
    c.drop(
        "return whose inner packet has 9 extension headers",
        &[&f8],
        aws_return(&t, &inner9, c.m.cookie(&f8)),
        "too_many_ext_headers",
    );
}

/// Tiny, overlapping and out-of-range fragments. gwlb does not reassemble: every fragment of a
/// datagram goes, keyed without ports, to one appliance, which sees them as sent.
fn fragments(c: &mut Corpus, fl: &Flows) {
    let [a, ..] = TARGETS;
    let (s, d) = (v4(10, 1, 3, 1), v4(10, 2, 3, 1));
    const MF: u16 = 0x2000;
    // Overlapping fragments of one datagram: the second rewrites bytes 8.. of the first.
    let f1 = user_ip(&ipv4(s, d, 17, &[], MF, &udp(9000, 53, &[1; 16])));
    let f2 = user_ip(&ipv4(s, d, 17, &[], 1, &[2; 16]));
    assert_eq!(
        c.m.target(&f1),
        c.m.target(&f2),
        "model: fragments share an appliance"
    );
    c.enc("overlapping fragments: first", f1);
    c.enc(
        "overlapping fragments: second at offset 8, overlapping",
        f2.clone(),
    );
    // A TCP header rewritten by an overlapping fragment (flags at byte 13).
    let t1 = user_ip(&ipv4(s, d, 6, &[], MF, &tcp(9001, 22, 0x02, b"")));
    let t2 = user_ip(&ipv4(s, d, 6, &[], 1, &[0, 0, 0, 0, 0, 0x12, 0, 0]));
    assert_eq!(c.m.target(&t1), c.m.target(&t2));
    c.enc("teardrop: tcp first fragment", t1);
    c.enc("teardrop: fragment at offset 8 rewriting the tcp flags", t2);
    c.drop(
        "tiny first fragment: 8 bytes of tcp header (RFC 1858)",
        &[],
        user_ip(&ipv4(s, d, 6, &[], MF, &tcp(9002, 22, 0x02, b"")[..8])),
        "truncated_tcp",
    );
    c.drop(
        "tiny first fragment: 16 bytes of tcp header",
        &[],
        user_ip(&ipv4(s, d, 6, &[], MF, &tcp(9002, 22, 0x02, b"")[..16])),
        "truncated_tcp",
    );
    c.drop(
        "tiny first fragment: 4 bytes of udp header",
        &[],
        user_ip(&ipv4(s, d, 17, &[], MF, &udp(9003, 53, b"")[..4])),
        "truncated_udp",
    );
    let mut big = udp(9004, 53, b"");
    big[4..6].copy_from_slice(&1000u16.to_be_bytes());
    c.enc(
        "first fragment: udp header only, udp length 1000",
        user_ip(&ipv4(s, d, 17, &[], MF, &big)),
    );
    c.enc(
        "later fragment of 1 byte",
        user_ip(&ipv4(s, d, 17, &[], MF | 3, &[7])),
    );
    c.enc(
        "later fragment of 0 bytes",
        user_ip(&ipv4(s, d, 17, &[], 5, &[])),
    );
    c.enc(
        "fragment at offset 65528 with 100 bytes (past 64 KiB reassembled)",
        user_ip(&ipv4(s, d, 17, &[], 0x1fff, &[9; 100])),
    );
    // IPv6.
    let (s6, d6) = (v6(0xfd01, 0x30), v6(0xfd02, 0x30));
    let mut body = ipv6_fragment(6, 0, true, 77);
    body.extend_from_slice(&tcp(9005, 22, 0x02, b"")[..8]);
    c.drop(
        "ipv6 tiny first fragment: 8 bytes of tcp",
        &[],
        user_ip(&ipv6(s6, d6, 44, &body)),
        "truncated_tcp",
    );
    let mut body = ipv6_fragment(6, 1, true, 77);
    body.push(1);
    c.enc(
        "ipv6 later fragment of 1 byte",
        user_ip(&ipv6(s6, d6, 44, &body)),
    );
    let mut body = ipv6_fragment(17, 0, false, 78);
    body.extend_from_slice(&udp(9006, 53, b"atomic"));
    c.enc("ipv6 atomic fragment", user_ip(&ipv6(s6, d6, 44, &body)));
    let mut body = ipv6_fragment(60, 0, true, 79);
    body.extend_from_slice(&ipv6_ext(17, 1));
    body.extend_from_slice(&udp(9007, 53, b"f"));
    c.enc(
        "ipv6 first fragment, then destination options, then udp",
        user_ip(&ipv6(s6, d6, 44, &body)),
    );

    // Returns: a fragmented Geneve return is not taken as a return (gwlb does not reassemble)
    // and goes to the host; the inner packet may well be a fragment.
    let inner = ip_of(&fl.fa);
    let r = aws_return(&a, &inner, c.m.cookie(&fl.fa));
    c.host(
        "geneve return with the outer MF bit set",
        with_outer_frag(&r, MF),
    );
    c.host(
        "geneve return, a later outer fragment",
        with_outer_frag(&r, 4),
    );
    let inner = ip_of(&f2);
    c.dec(
        "return of the overlapping second fragment",
        &[&f2],
        aws_return(&c.m.target(&f2), &inner, c.m.cookie(&f2)),
        &inner,
    );
}

/// Geneve option lengths and the critical bit.
fn geneve_options(c: &mut Corpus, fl: &Flows) {
    let [a, ..] = TARGETS;
    let inner = ip_of(&fl.fa);
    let cookie = c.m.cookie(&fl.fa);
    let setup = [&fl.fa];
    let ret = |c: &mut Corpus, what: &str, opt_words: u8, flags: u8, opts: &[u8], want: Want| {
        let mut g = geneve_base(opt_words, flags, 0x0800, 77);
        g.extend_from_slice(opts);
        g.extend_from_slice(&inner);
        let f = raw_return(&a, &g);
        match want {
            Want::Decap(_) => c.dec(what, &setup, f, &inner),
            Want::Drop(r) => c.drop(what, &setup, f, r),
            _ => unreachable!(),
        }
    };
    let dec = Want::Decap(Vec::new());
    let opt = |class: u16, ty: u8, words: u8, fill: u8| {
        let mut o = class.to_be_bytes().to_vec();
        o.push(ty);
        o.push(words);
        o.resize(o.len() + usize::from(words & 0x1f) * 4, fill);
        o
    };
    let mut overrun = opt(0x0123, 1, 0, 0);
    overrun[3] = 31;
    ret(
        c,
        "option length 31 words in an 8-word option area",
        8,
        0,
        &[overrun, vec![0; 28]].concat(),
        Want::Drop("geneve_malformed"),
    );
    ret(
        c,
        "2-word option area, its option says 3 words",
        2,
        0,
        &opt(0x0123, 1, 3, 0)[..8],
        Want::Drop("geneve_malformed"),
    );
    ret(
        c,
        "3-word option area: a 2-word option and a bare option header",
        3,
        0,
        &[opt(0x0123, 1, 1, 5), opt(0, 0, 0, 0)].concat(),
        dec.clone(),
    );
    let many: Vec<u8> = (0..63)
        .flat_map(|i| opt(0x0123, i as u8 & 0x7f, 0, 0))
        .collect();
    ret(
        c,
        "63-word option area (the most) of empty options",
        63,
        0,
        &many,
        dec.clone(),
    );
    let mut too_long = geneve_base(63, 0, 0x0800, 77);
    too_long.extend_from_slice(&inner);
    c.drop(
        "option area (252 bytes) longer than the packet",
        &setup,
        raw_return(&a, &too_long),
        "geneve_malformed",
    );
    let aws = aws_geneve_header(&inner, cookie)[8..].to_vec();
    ret(
        c,
        "AWS options but Opt Len 0: the options read as the inner packet",
        0,
        0,
        &aws,
        Want::Drop("bad_ip_version"),
    );
    let (ep, at, ck) = (&aws[0..12], &aws[12..24], &aws[24..32]);
    ret(
        c,
        "AWS options in another order (cookie first)",
        8,
        0,
        &[ck, ep, at].concat(),
        dec.clone(),
    );
    let mut long_cookie = opt(0x0108, 3, 2, 0);
    long_cookie[4..8].copy_from_slice(&cookie.to_be_bytes());
    ret(
        c,
        "cookie option of 2 words: not a cookie, an unknown option",
        3,
        0,
        &long_cookie,
        dec.clone(),
    );
    let mut wrong = ck.to_vec();
    wrong[4] ^= 0xff;
    ret(
        c,
        "two cookies, the first wrong",
        4,
        0,
        &[wrong.clone(), ck.to_vec()].concat(),
        Want::Drop("no_flow_for_return"),
    );
    ret(
        c,
        "two cookies, the second wrong",
        4,
        0,
        &[ck.to_vec(), wrong].concat(),
        dec.clone(),
    );
    let mut reserved = ck.to_vec();
    reserved[3] |= 0xe0;
    ret(
        c,
        "cookie option with its reserved bits set",
        2,
        0,
        &reserved,
        dec.clone(),
    );

    // The critical bit.
    ret(
        c,
        "C flag set, only known options",
        8,
        0x40,
        &aws,
        dec.clone(),
    );
    ret(
        c,
        "unknown critical option, C flag set",
        2,
        0x40,
        &opt(0x0123, 0x80, 1, 0),
        Want::Drop("geneve_critical_option"),
    );
    ret(
        c,
        "unknown critical option, C flag clear",
        2,
        0,
        &opt(0x0123, 0x80, 1, 0),
        Want::Drop("geneve_critical_option"),
    );
    ret(
        c,
        "unknown critical option after the AWS options",
        10,
        0x40,
        &[aws.clone(), opt(0xffff, 0xff, 1, 0)].concat(),
        Want::Drop("geneve_critical_option"),
    );
    let mut crit_cookie = ck.to_vec();
    crit_cookie[2] |= 0x80;
    ret(
        c,
        "the AWS cookie type with the critical bit (type 0x83)",
        2,
        0x40,
        &crit_cookie,
        Want::Drop("geneve_critical_option"),
    );
    ret(
        c,
        "unknown non-critical option, C flag set",
        2,
        0x40,
        &opt(0x0123, 0x7f, 1, 0),
        dec.clone(),
    );
    ret(c, "OAM flag", 0, 0x80, &[], Want::Drop("geneve_malformed"));
    for version in 1..=3u8 {
        let mut g = geneve_base(0, 0, 0x0800, 77);
        g[0] |= version << 6;
        g.extend_from_slice(&inner);
        c.drop(
            format!("geneve version {version}"),
            &setup,
            raw_return(&a, &g),
            "geneve_malformed",
        );
    }
    for proto in [0x6558u16, 0x0000, 0x86dd, 0x88cc] {
        let mut g = geneve_base(0, 0, proto, 77);
        g.extend_from_slice(&inner);
        c.drop(
            format!("geneve protocol {proto:#06x} around IPv4"),
            &setup,
            raw_return(&a, &g),
            "geneve_bad_protocol",
        );
    }
}

/// Who sends a return: unregistered sources, another appliance, an appliance's address from
/// another MAC.
fn sources(c: &mut Corpus, fl: &Flows) {
    let [a, b, c6] = TARGETS;
    let inner = ip_of(&fl.fa);
    let cookie = c.m.cookie(&fl.fa);
    let setup = [&fl.fa];
    let unknown = [
        (
            "10.0.0.99",
            target(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99)), STRANGER_MAC),
        ),
        (
            "fd00::99",
            target(
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x99)),
                STRANGER_MAC,
            ),
        ),
        (
            "the gateway's own address",
            target(IpAddr::V4(GW_V4), a.mac),
        ),
        (
            "the default router",
            target(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254)), ROUTER_V4),
        ),
        (
            "a client, from the user side",
            target(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), CLIENT_MAC),
        ),
    ];
    for (name, t) in unknown {
        c.drop(
            format!("aws echo of fa from {name}"),
            &setup,
            aws_return(&t, &inner, cookie),
            "unknown_appliance",
        );
        c.drop(
            format!("linux return of fa from {name}"),
            &setup,
            linux_return(&t, &routed(&inner), 5, 6081),
            "unknown_appliance",
        );
    }
    // Another registered appliance returning a's flow, from its own address and MAC.
    c.drop(
        "linux return of fa from appliance b",
        &setup,
        linux_return(&b, &routed(&inner), 5, 700),
        "return_from_other_appliance",
    );
    c.drop(
        "aws echo of fa, right cookie, from appliance b",
        &setup,
        aws_return(&b, &inner, cookie),
        "return_from_other_appliance",
    );
    c.drop(
        "aws echo of fa from appliance c6 over ipv6",
        &setup,
        aws_return(&c6, &inner, cookie),
        "return_from_other_appliance",
    );
    let inner_b = ip_of(&fl.fb);
    c.drop(
        "linux return of fb (b's) from appliance a",
        &[&fl.fb],
        linux_return(&a, &routed(&inner_b), 5, 700),
        "return_from_other_appliance",
    );
    // An appliance's address, not from its MAC.
    for (name, mac) in [
        ("a stranger's", STRANGER_MAC),
        ("appliance b's", b.mac),
        ("the client router's", CLIENT_MAC),
    ] {
        c.drop(
            format!("linux return of fa with a's address from {name} MAC"),
            &setup,
            linux_return(&target(a.addr, mac), &routed(&inner), 5, 700),
            "return_source_mismatch",
        );
        c.drop(
            format!("aws echo of fa (right cookie) with a's address from {name} MAC"),
            &setup,
            aws_return(&target(a.addr, mac), &inner, cookie),
            "return_source_mismatch",
        );
    }
    c.drop(
        "return of fa with b's address from a's MAC",
        &setup,
        linux_return(&target(b.addr, a.mac), &routed(&inner), 5, 700),
        "return_source_mismatch",
    );
    c.drop(
        "return of f6 with c6's address from a's MAC",
        &[&fl.f6],
        linux_return(&target(c6.addr, a.mac), &routed(&ip_of(&fl.f6)), 5, 700),
        "return_source_mismatch",
    );
    // The right appliance, but no such flow / the wrong cookie.
    let never = ipv4(
        v4(10, 1, 9, 9),
        v4(10, 2, 9, 9),
        17,
        &[],
        0,
        &udp(999, 53, b"?"),
    );
    c.drop(
        "return of a flow never sent",
        &setup,
        linux_return(&a, &never, 5, 700),
        "no_flow_for_return",
    );
    c.drop(
        "aws echo of fa with a wrong cookie",
        &setup,
        aws_return(&a, &inner, cookie ^ 1),
        "no_flow_for_return",
    );
    // A return inside a return: only the outer one is decapsulated; the inner Geneve packet
    // (a's address to the gateway) is no flow the gateway steered.
    let nested = ip_of(&aws_return(&a, &inner, cookie));
    c.drop(
        "return whose inner packet is another return",
        &setup,
        linux_return(&a, &nested, 5, 700),
        "no_flow_for_return",
    );
    // Geneve from an appliance to someone else than the gateway is user traffic.
    let mut o = from_appliance(&a, 64, 700);
    o.dst = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 9));
    o.dst_mac = PORT_MAC;
    let mut g = geneve_base(0, 0, 0x0800, 5);
    g.extend_from_slice(&inner);
    c.enc(
        "geneve from appliance a to 10.2.0.9: user traffic, encapsulated",
        udp_6081_frame(&o, &g),
    );
    // What the outer lengths leave out or add.
    let mut junk_after = inner.clone();
    junk_after.extend_from_slice(&[0xab; 12]);
    c.dec(
        "return with 12 bytes after the inner packet inside the UDP datagram: trimmed",
        &setup,
        linux_return(&a, &junk_after, 5, 700),
        &inner,
    );
    let mut short_udp = linux_return(&a, &inner, 5, 700);
    short_udp[38..40].copy_from_slice(&16u16.to_be_bytes()); // UDP: 8 + the Geneve base header
    c.drop(
        "return whose UDP length ends at the Geneve header (the inner packet is past the datagram)",
        &setup,
        short_udp,
        "truncated_ip",
    );
    c.regression("the Geneve payload was taken up to the end of the outer IP packet, not of the UDP datagram");
    let mut long_udp = linux_return(&a, &inner, 5, 700);
    long_udp[38..40].copy_from_slice(&(8 + 8 + inner.len() as u16 + 1).to_be_bytes());
    c.drop(
        "return whose UDP length is 1 byte beyond the packet",
        &setup,
        long_udp,
        "bad_udp_length",
    );
    let mut zero_len = inner.clone();
    zero_len[2..4].copy_from_slice(&[0, 0]);
    c.drop(
        "return whose inner IPv4 total length is 0",
        &setup,
        linux_return(&a, &zero_len, 5, 700),
        "ipv4_total_length_too_short",
    );
    let mut bad_sum = inner.clone();
    bad_sum[10] ^= 0xff;
    c.dec(
        "return whose inner IPv4 checksum is wrong: forwarded as is (not gwlb's to judge)",
        &setup,
        linux_return(&a, &bad_sum, 5, 700),
        &bad_sum,
    );
    c.dec(
        "802.1Q-tagged return from the right MAC",
        &setup,
        vlan_tagged(&aws_return(&a, &inner, cookie), 0, 7),
        &inner,
    );
    // IPv6 outer headers with extension headers in front of UDP.
    let inner6 = routed(&ip_of(&fl.f6));
    let mut g = geneve_base(0, 0, 0x86dd, 4242);
    g.extend_from_slice(&inner6);
    let v6_outer = |exts: &[u8], first: u8| {
        let IpAddr::V6(src) = c6.addr else {
            unreachable!()
        };
        let mut body = exts.to_vec();
        body.extend_from_slice(&udp(700, 6081, &g));
        eth_ip(
            PORT_MAC,
            c6.mac,
            &ipv6(src.octets(), GW_V6.octets(), first, &body),
        )
    };
    c.dec(
        "return over ipv6 with a destination-options header",
        &[&fl.f6],
        v6_outer(&ipv6_ext(17, 1), 60),
        &inner6,
    );
    c.dec(
        "return over ipv6 with an atomic fragment header",
        &[&fl.f6],
        v6_outer(&ipv6_fragment(17, 0, false, 5), 44),
        &inner6,
    );
    c.host(
        "return over ipv6, a first fragment",
        v6_outer(&ipv6_fragment(17, 0, true, 5), 44),
    );
    // An ICMP error is keyed on the flow it quotes, whatever its own addresses: from the
    // flow's appliance, it must at least go to the quoted packet's source (RFC 792), or the
    // appliance could send ICMP to anyone.
    let stray = ipv4(
        v4(10, 9, 9, 9),
        v4(10, 2, 9, 99),
        1,
        &[],
        0,
        &icmp(3, 1, &inner),
    );
    c.drop(
        "return of an icmp error quoting fa, addressed to a host that is not fa's",
        &setup,
        linux_return(&a, &stray, 5, 700),
        "no_flow_for_return",
    );
    c.regression("an ICMP error from an appliance was matched on the quoted flow only, so an appliance could send ICMP errors (with up to ~1400 bytes of quote) to any host");
    // Transit Geneve from the user side is user traffic.
    let mut o = from_appliance(
        &target(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7)), CLIENT_MAC),
        64,
        7,
    );
    o.dst = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 7));
    o.dst_mac = PORT_MAC;
    c.enc(
        "transit geneve (client to 10.2.0.7): user traffic",
        udp_6081_frame(&o, &g),
    );
    // A return of a flow to a connected host without a neighbour entry.
    let unres = user_ip(&ipv4(
        v4(10, 1, 9, 10),
        v4(10, 0, 0, 77),
        17,
        &[],
        0,
        &udp(1234, 53, b"?"),
    ));
    let t = c.m.target(&unres);
    let inner_u = ip_of(&unres);
    c.drop(
        "return of a flow to 10.0.0.77 (connected, no neighbour)",
        &[&unres],
        aws_return(&t, &inner_u, c.m.cookie(&unres)),
        "neighbor_unresolved",
    );
}

/// TCP that no SYN opened: admitted today (gwlb does not track TCP state; the appliance
/// judges), encapsulated like any first packet of a flow.
fn tcp_unknown(c: &mut Corpus) {
    let flags: [(&str, u8); 9] = [
        ("ACK", 0x10),
        ("FIN|ACK", 0x11),
        ("RST", 0x04),
        ("RST|ACK", 0x14),
        ("PSH|ACK with data", 0x18),
        ("no flags (null scan)", 0x00),
        ("FIN|PSH|URG (xmas)", 0x29),
        ("SYN|FIN", 0x03),
        ("SYN|ACK", 0x12),
    ];
    for (i, (name, fl)) in flags.into_iter().enumerate() {
        let f = user_ip(&ipv4(
            v4(10, 1, 4, i as u8),
            v4(10, 2, 4, 1),
            6,
            &[],
            0x4000,
            &tcp(12000 + i as u16, 80, fl, b"data"),
        ));
        c.enc(format!("tcp {name} of an unknown flow (admitted today)"), f);
    }
    let f = user_ip(&ipv6(
        v6(0xfd01, 0x40),
        v6(0xfd02, 0x40),
        6,
        &tcp(12100, 80, 0x10, b""),
    ));
    c.enc("ipv6 tcp ACK of an unknown flow (admitted today)", f);
}

/// ICMP errors quoting real, random and broken packets; ICMP malformations.
fn icmp_errors(c: &mut Corpus, fl: &Flows) {
    let [a, b, _] = TARGETS;
    let (router, client) = (v4(10, 2, 0, 254), v4(10, 1, 0, 1));
    let quote_fa = ip_of(&fl.fa);
    // The server side answers fa with "port unreachable" (from fa's destination to its source).
    let err = user_ip(&ipv4(
        v4(10, 2, 0, 1),
        client,
        1,
        &[],
        0,
        &icmp(3, 3, &quote_fa),
    ));
    assert_eq!(
        c.m.target(&err),
        a,
        "model: an error follows the quoted flow"
    );
    c.enc(
        "icmp port unreachable quoting fa: to fa's appliance",
        err.clone(),
    );
    let inner = ip_of(&err);
    c.dec(
        "return of that icmp error from fa's appliance",
        &[&fl.fa, &err],
        aws_return(&a, &inner, c.m.cookie(&err)),
        &inner,
    );
    c.drop(
        "return of that icmp error from appliance b",
        &[&fl.fa, &err],
        linux_return(&b, &inner, 5, 700),
        "return_from_other_appliance",
    );
    let junk: Vec<u8> = (0..30u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let quotes: [(&str, Vec<u8>); 6] = [
        ("random bytes", junk.clone()),
        ("10 bytes of an IPv4 header", quote_fa[..10].to_vec()),
        (
            "an IPv6 header in an ICMPv4 error",
            ip_of(&fl.f6)[..48].to_vec(),
        ),
        ("an IPv4 header with IHL 3", {
            let mut q = quote_fa.clone();
            q[0] = 0x43;
            q
        }),
        ("nothing", Vec::new()),
        ("a header only, no L4 bytes", quote_fa[..20].to_vec()),
    ];
    for (i, (name, q)) in quotes.iter().enumerate() {
        for (ty, code) in [(3u8, 1u8), (11, 0), (12, 0)] {
            let f = user_ip(&ipv4(
                router,
                v4(10, 1, 5, i as u8),
                1,
                &[],
                0,
                &icmp(ty, code, q),
            ));
            c.enc(format!("icmp {ty}/{code} quoting {name}"), f);
        }
    }
    let (r6, d6) = (v6(0xfd02, 0xfe), v6(0xfd01, 1));
    let mut nine = Vec::new();
    for _ in 0..9 {
        nine.extend_from_slice(&ipv6_ext(60, 1));
    }
    let quotes6: [(&str, Vec<u8>); 3] = [
        ("random bytes", junk.clone()),
        (
            "a quoted packet with 9 extension headers",
            ipv6(d6, r6, 60, &nine),
        ),
        ("an IPv4 header", quote_fa.clone()),
    ];
    for (name, q) in &quotes6 {
        for (ty, code) in [(1u8, 4u8), (2, 0), (3, 0), (4, 1)] {
            let f = user_ip(&ipv6(r6, d6, 58, &icmp(ty, code, q)));
            c.enc(format!("icmpv6 {ty}/{code} quoting {name}"), f);
        }
    }
    c.drop(
        "icmp header of 4 bytes",
        &[],
        user_ip(&ipv4(router, client, 1, &[], 0, &[3, 3, 0, 0])),
        "truncated_icmp",
    );
    c.drop(
        "icmpv6 header of 4 bytes",
        &[],
        user_ip(&ipv6(r6, d6, 58, &[1, 0, 0, 0])),
        "truncated_icmpv6",
    );
    c.drop(
        "icmpv6 in ipv4",
        &[],
        user_ip(&ipv4(router, client, 58, &[], 0, &icmp(1, 0, &junk))),
        "icmp_wrong_ip_version",
    );
    c.drop(
        "icmpv4 in ipv6",
        &[],
        user_ip(&ipv6(r6, d6, 1, &icmp(3, 0, &junk))),
        "icmp_wrong_ip_version",
    );
}

/// L2, version and L4 malformations, sizes, and what belongs to the host.
fn misc(c: &mut Corpus) {
    let [a, b, c6] = TARGETS;
    let f = user_ip(&ipv4(
        v4(10, 1, 6, 1),
        v4(10, 2, 6, 1),
        17,
        &[],
        0,
        &udp(1, 2, b"vlan"),
    ));
    c.enc(
        "two 802.1Q tags",
        vlan_tagged(&vlan_tagged(&f, 0, 10), 0, 20),
    );
    c.drop(
        "three 802.1Q tags",
        &[],
        vlan_tagged(&vlan_tagged(&vlan_tagged(&f, 0, 10), 0, 20), 0, 30),
        "too_many_vlan_tags",
    );
    let mut lldp = eth([0x01, 0x80, 0xc2, 0, 0, 0x0e], CLIENT_MAC, 0x88cc);
    lldp.extend_from_slice(&[0x02, 0x07, 0x04, 0, 0, 0, 0, 0, 1]);
    c.drop("LLDP", &[], lldp, "not_ip");
    let mut dot3 = eth(PORT_MAC, CLIENT_MAC, 0x0040);
    dot3.extend_from_slice(&[0xaa; 64]);
    c.drop("802.3 length frame", &[], dot3, "not_ip");
    let v6p = ipv6(v6(0xfd01, 0x50), v6(0xfd02, 0x50), 17, &udp(1, 2, b""));
    let mut x = eth(PORT_MAC, CLIENT_MAC, 0x0800);
    x.extend_from_slice(&v6p);
    c.drop("ethertype IPv4, an IPv6 packet", &[], x, "bad_ipv4_version");
    let v4p = ipv4(
        v4(10, 1, 6, 2),
        v4(10, 2, 6, 2),
        17,
        &[],
        0,
        &udp(1, 2, b""),
    );
    let mut x = eth(PORT_MAC, CLIENT_MAC, 0x86dd);
    x.extend_from_slice(&v4p);
    x.extend_from_slice(&[0; 20]);
    c.drop("ethertype IPv6, an IPv4 packet", &[], x, "bad_ipv6_version");
    let mut t = tcp(1, 2, 0x02, b"");
    t[12] = 4 << 4;
    c.drop(
        "tcp data offset 4",
        &[],
        user_ip(&ipv4(v4(10, 1, 6, 3), v4(10, 2, 6, 3), 6, &[], 0, &t)),
        "bad_tcp_data_offset",
    );
    t[12] = 15 << 4;
    c.drop(
        "tcp data offset 15 in a 20-byte segment",
        &[],
        user_ip(&ipv4(v4(10, 1, 6, 3), v4(10, 2, 6, 3), 6, &[], 0, &t)),
        "truncated_tcp",
    );
    let mut u = udp(1, 2, b"abc");
    u[4..6].copy_from_slice(&7u16.to_be_bytes());
    c.drop(
        "udp length 7",
        &[],
        user_ip(&ipv4(v4(10, 1, 6, 4), v4(10, 2, 6, 4), 17, &[], 0, &u)),
        "bad_udp_length",
    );
    u[4..6].copy_from_slice(&200u16.to_be_bytes());
    c.drop(
        "udp length beyond the packet",
        &[],
        user_ip(&ipv4(v4(10, 1, 6, 4), v4(10, 2, 6, 4), 17, &[], 0, &u)),
        "bad_udp_length",
    );

    let mut ttl0 = ipv4(
        v4(10, 1, 6, 7),
        v4(10, 2, 6, 7),
        17,
        &[],
        0,
        &udp(3, 4, b"ttl"),
    );
    ttl0[8] = 0;
    set_ipv4_checksum(&mut ttl0);
    c.enc(
        "ipv4 TTL 0: encapsulated as is (gwlb is no router)",
        user_ip(&ttl0),
    );
    // Sizes: the largest inner packet the appliance's port carries, and one byte more. These
    // carry no DF, and gwlb fragments such packets (roundtrip and pcap_datapath test that);
    // the one byte more has IP options, which gwlb does not fragment: dropped, oversize.
    let m = &c.m;
    let sized_with = |i: u16, len: usize, opts: &[u8]| {
        user_ip(&ipv4(
            v4(10, 1, 7, 1),
            v4(10, 2, 7, 1),
            17,
            opts,
            0,
            &udp(20000 + i, 53, &vec![0x33; len - 28 - opts.len()]),
        ))
    };
    let sized = |i: u16, len: usize| sized_with(i, len, &[]);
    // NOP, NOP, NOP, end of options.
    let with_options = |i: u16, len: usize| sized_with(i, len, &[1, 1, 1, 0]);
    let mut by_target = Vec::new();
    for t in [a, b, c6] {
        let i = m.find_flow(t.addr, |i| sized(i, 100));
        let max = if t.addr.is_ipv6() {
            1500 - 88
        } else {
            1500 - 68
        };
        by_target.push((t, sized(i, max), with_options(i, max + 1)));
    }
    for (t, fits, over) in by_target {
        c.enc(
            format!(
                "{} bytes inner to {} (the most that fits)",
                fits.len() - 14,
                t.addr
            ),
            fits,
        );
        c.drop(
            format!(
                "{} bytes inner with IP options to {}: oversize, not fragmented",
                over.len() - 14,
                t.addr
            ),
            &[],
            over,
            "oversize",
        );
    }

    // For the host: ARP, traffic to the gateway's addresses, link-scope traffic.
    let mut arp = eth([0xff; 6], CLIENT_MAC, 0x0806);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[10, 0, 0, 254]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&GW_V4.octets());
    c.host("ARP request for the gateway", arp);
    let mut echo = icmp(8, 0, b"ping");
    echo[4] = 1;
    c.host(
        "ping to the gateway",
        user_ip(&ipv4(v4(10, 1, 6, 5), GW_V4.octets(), 1, &[], 0, &echo)),
    );
    c.host(
        "udp to the gateway's IPv6 address",
        user_ip(&ipv6(
            v6(0xfd01, 0x51),
            GW_V6.octets(),
            17,
            &udp(1, 53, b""),
        )),
    );
    c.host(
        "OSPF hello to 224.0.0.5",
        user_ip(&ipv4(
            v4(10, 1, 6, 6),
            v4(224, 0, 0, 5),
            89,
            &[],
            0,
            &[0; 20],
        )),
    );
    let mut ns = icmp(135, 0, &[0; 16]);
    ns[8..24].copy_from_slice(&v6(0xfd02, 0x52));
    c.host(
        "IPv6 neighbour solicitation",
        user_ip(&ipv6(v6(0xfd01, 0x52), v6(0xfd02, 0x52), 58, &ns)),
    );
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

/// What one case did when run alone (after its setup).
fn outcome_alone(case: &Case, tag: &str) -> String {
    let mut input: Vec<Vec<u8>> = case.setup.iter().map(|s| s.0.clone()).collect();
    input.push(case.frame.clone());
    let run = run_gwlb(tag, &input);
    let outs = &run.frames[case.setup.len().min(run.frames.len())..];
    let mut s = String::new();
    if run.frames.len() < case.setup.len() {
        s.push_str(&format!(
            "setup lost ({} of {} outputs); ",
            run.frames.len(),
            case.setup.len()
        ));
    }
    for o in outs {
        s.push_str(&format!(
            "sent {} bytes to {:02x?}; ",
            o.len(),
            &o[..6.min(o.len())]
        ));
        let want = match &case.want {
            Want::Encap(w) | Want::Decap(w) => Some(w),
            _ => None,
        };
        if want.is_some_and(|w| w == o) {
            s.push_str("(as expected) ");
        }
    }
    if run.report.get("to_host") > 0 {
        s.push_str("to the host; ");
    }
    for (r, n) in &run.report.drops {
        s.push_str(&format!("dropped {r} x{n}; "));
    }
    s
}

/// Runs one group; returns its problems.
fn run_group(key: &str, cases: &[&Case]) -> Vec<String> {
    let mut input = Vec::new();
    let mut want_out: Vec<(String, &[u8])> = Vec::new();
    let mut seen = HashSet::new();
    for c in cases {
        for (f, o) in &c.setup {
            if seen.insert(f.clone()) {
                input.push(f.clone());
                want_out.push((format!("setup of {}", c.what), o));
            }
        }
    }
    let (mut drops, mut host) = (0u64, 0u64);
    for c in cases {
        input.push(c.frame.clone());
        match &c.want {
            Want::Encap(o) | Want::Decap(o) => want_out.push((c.what.clone(), o)),
            Want::Host => host += 1,
            Want::Drop(_) => drops += 1,
        }
    }
    let run = run_gwlb(&format!("hostile-{key}"), &input);
    let mut problems = Vec::new();
    let want_drops: BTreeMap<String, u64> = if drops > 0 {
        [(key.to_owned(), drops)].into()
    } else {
        BTreeMap::new()
    };
    if run.report.drops != want_drops {
        problems.push(format!(
            "drop counters {:?}, want {want_drops:?}",
            run.report.drops
        ));
    }
    for (i, (got, (what, w))) in run.frames.iter().zip(&want_out).enumerate() {
        if got != w {
            problems.push(format!(
                "output {i} ({what}): got {} bytes, want {}\ngot:\n{}\nwant:\n{}",
                got.len(),
                w.len(),
                hex(got),
                hex(w)
            ));
            break;
        }
    }
    if run.frames.len() != want_out.len() {
        problems.push(format!(
            "{} output frames, want {}",
            run.frames.len(),
            want_out.len()
        ));
    }
    for (k, v) in [
        ("rx", input.len() as u64),
        ("to_host", host),
        ("handed_off", 0),
    ] {
        if run.report.get(k) != v {
            problems.push(format!("{k} {}, want {v}", run.report.get(k)));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("stdout:\n{}", run.stdout));
    }
    problems
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn hostile_corpus() {
    needs_root::require();
    let m = Model::new();
    let fl = flows(&m);
    let mut c = Corpus {
        m,
        cases: Vec::new(),
    };
    truncation(&mut c, &fl);
    ipv4_options(&mut c, &fl);
    ipv6_chains(&mut c);
    fragments(&mut c, &fl);
    geneve_options(&mut c, &fl);
    sources(&mut c, &fl);
    tcp_unknown(&mut c);
    icmp_errors(&mut c, &fl);
    misc(&mut c);

    let mut groups: BTreeMap<String, Vec<&Case>> = BTreeMap::new();
    for case in &c.cases {
        groups.entry(case.want.group()).or_default().push(case);
    }
    let mut failures = Vec::new();
    for (key, cases) in &groups {
        let problems = run_group(key, cases);
        if problems.is_empty() {
            continue;
        }
        // Name the cases that deviate: each alone (the first 60).
        let mut named = Vec::new();
        for (i, case) in cases.iter().enumerate().take(60) {
            let got = outcome_alone(case, &format!("hostile-alone-{i}"));
            let want = match &case.want {
                Want::Encap(_) => "encapsulated (as expected)".to_owned(),
                Want::Decap(_) => "decapsulated (as expected)".to_owned(),
                Want::Host => "to the host".to_owned(),
                Want::Drop(r) => format!("dropped {r} x1"),
            };
            let as_expected = match &case.want {
                Want::Encap(_) | Want::Decap(_) => {
                    got.contains("(as expected)") && !got.contains("dropped")
                }
                Want::Host => got == "to the host; ",
                Want::Drop(r) => got == format!("dropped {r} x1; "),
            };
            if !as_expected {
                named.push(format!(
                    "  {}{}: want {want}, got {got}",
                    case.what,
                    case.regression
                        .map(|b| format!(" [REGRESSION: {b}]"))
                        .unwrap_or_default()
                ));
            }
        }
        failures.push(format!(
            "group {key} ({} cases):\n{}\ndeviating cases:\n{}",
            cases.len(),
            problems.join("\n"),
            named.join("\n")
        ));
    }

    let count = |f: fn(&Want) -> bool| c.cases.iter().filter(|k| f(&k.want)).count();
    let per_reason: Vec<String> = groups
        .iter()
        .filter(|(k, _)| *k != "forwarded" && *k != "to_host")
        .map(|(k, v)| format!("{k} {}", v.len()))
        .collect();
    println!(
        "hostile corpus: {} cases in {} gwlb runs: {} encapsulated, {} decapsulated, {} to the host, {} dropped ({})",
        c.cases.len(),
        groups.len(),
        count(|w| matches!(w, Want::Encap(_))),
        count(|w| matches!(w, Want::Decap(_))),
        count(|w| matches!(w, Want::Host)),
        count(|w| matches!(w, Want::Drop(_))),
        per_reason.join(", ")
    );
    assert!(
        failures.is_empty(),
        "hostile corpus failures:\n{}",
        failures.join("\n\n")
    );
}
