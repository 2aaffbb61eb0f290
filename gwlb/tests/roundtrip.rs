//! Encapsulation -> appliance return -> decapsulation through the pure-Rust pipeline, byte for
//! byte, for IPv4 and IPv6, TCP/UDP/ICMP/other protocols and fragments, in both return styles
//! appliances use (AWS echo and Linux kernel). No DPDK needed.

use etherparse::{IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, PacketBuilder};
use gwlb::config::Config;
use gwlb::packet_buf::{PacketBuf, VecBuf};
use gwlb::parse::DropReason;
use gwlb::pipeline::{owner_hash, Pipeline, Share, Verdict};
use gwlb::snapshot::{LiveState, Snapshot};
use gwlb_tests::checksum::set_ipv4_checksum;
use gwlb_tests::frames::{frame, Ips, L4};
use gwlb_tests::geneve_returns::{aws_echo, Outer};
use proptest::prelude::*;

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

const CONFIG: &str = r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = ["10.0.0.1/24", "fd00::1/64"]
[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.0.254"
port = "p"
[[routes]]
prefix = "::/0"
via = "fd00::fe"
port = "p"
[[neighbors]]
address = "10.0.0.254"
mac = "02:00:00:00:00:fe"
port = "p"
[[neighbors]]
address = "fd00::fe"
mac = "02:00:00:00:00:fe"
port = "p"
[[target_groups]]
name = "fw"
geneve_vni = 77
endpoint_id = 1234
attachment_id = 5678
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
[[target_groups.targets]]
address = "10.0.0.12"
mac = "02:00:00:00:00:0c"
[[target_groups.targets]]
address = "10.0.0.13"
mac = "02:00:00:00:00:0d"
"#;

fn setup() -> (Snapshot, Pipeline) {
    let cfg = Config::from_toml_str(CONFIG).expect("config");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let pipe = Pipeline::new(4096, Default::default()).expect("pipeline");
    (snap, pipe)
}

/// What a Linux kernel Geneve device sends back for the encapsulation `encapsulated`: no
/// options, its own VNI (9), a hashed source port (700), TTL 64, checksum 0, and the inner
/// packet as given (the caller may have routed it).
fn linux_return(encapsulated: &[u8], inner: &[u8]) -> Vec<u8> {
    let outer = Outer {
        sport: 700,
        ..Outer::reply_to(encapsulated)
    };
    gwlb_tests::geneve_returns::linux_return(&outer, inner, 9)
}

/// A user frame from the client: TCP (no flags), UDP, ICMP(v6) echo (`sport` the id,
/// `dport` the sequence number) or any other protocol with `payload` as its body.
fn user_frame(ips: Ips, proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let l4 = match proto {
        6 => L4::Tcp {
            src_port: sport,
            dst_port: dport,
            flags: 0,
        },
        17 => L4::Udp {
            src_port: sport,
            dst_port: dport,
        },
        1 | 58 => L4::Echo {
            id: sport,
            seq: dport,
        },
        p => L4::Other(p),
    };
    frame(CLIENT_MAC, GW_MAC, ips, l4, payload)
}

/// Runs one frame out and back; returns (appliance MAC, frame after decapsulation).
fn round_trip(
    snap: &Snapshot,
    pipe: &mut Pipeline,
    frame: &[u8],
    linux: bool,
) -> ([u8; 6], Vec<u8>) {
    let mut b = VecBuf::new(frame);
    assert_eq!(pipe.process(snap, &mut b, 0, 1), Verdict::Tx(0));
    let enc = b.data().to_vec();
    let inner = &frame[14..];
    assert_eq!(&enc[14 + 68..], inner, "inner packet carried byte-exact");
    let ret = if linux {
        linux_return(&enc, inner)
    } else {
        aws_echo(&enc)
    };
    let mut r = VecBuf::new(&ret);
    assert_eq!(pipe.process(snap, &mut r, 0, 2), Verdict::Tx(0));
    let mut appliance_mac = [0u8; 6];
    appliance_mac.copy_from_slice(&enc[0..6]);
    (appliance_mac, r.data().to_vec())
}

fn expected(frame: &[u8]) -> Vec<u8> {
    let mut e = ROUTER_MAC.to_vec();
    e.extend_from_slice(&GW_MAC);
    e.extend_from_slice(&frame[12..]);
    e
}

#[test]
fn ipv4_protocols_both_return_styles() {
    let (snap, mut pipe) = setup();
    for (i, proto) in [6u8, 17, 1, 47].into_iter().enumerate() {
        for linux in [false, true] {
            let f = user_frame(
                Ips::V4([10, 1, 0, i as u8 + 2], [10, 2, 0, 2]),
                proto,
                40000 + i as u16,
                80,
                b"payload bytes",
            );
            let (_, out) = round_trip(&snap, &mut pipe, &f, linux);
            assert_eq!(out, expected(&f), "proto {proto} linux={linux}");
        }
    }
}

#[test]
fn ipv6_protocols_both_return_styles() {
    let (snap, mut pipe) = setup();
    let mut src = [0u8; 16];
    src[0] = 0xfd;
    src[1] = 1;
    let mut dst = src;
    dst[1] = 2;
    for (i, proto) in [6u8, 17, 58, 47].into_iter().enumerate() {
        for linux in [false, true] {
            src[15] = i as u8;
            let f = user_frame(Ips::V6(src, dst), proto, 50000, 443, &[7u8; 100]);
            let (_, out) = round_trip(&snap, &mut pipe, &f, linux);
            assert_eq!(out, expected(&f), "proto {proto} linux={linux}");
        }
    }
}

#[test]
fn fragments_of_one_datagram_reach_one_appliance_and_round_trip() {
    let (snap, mut pipe) = setup();
    // IPv4: first fragment (with UDP header) and a later fragment, same id.
    let mut macs = Vec::new();
    for (offset, more) in [(0u16, true), (185, false)] {
        let mut ip = Ipv4Header::new(24, 64, IpNumber::UDP, [10, 1, 9, 9], [10, 2, 9, 9]).unwrap();
        ip.identification = 4242;
        ip.more_fragments = more;
        ip.fragment_offset = offset.try_into().unwrap();
        let mut f = CLIENT_MAC.to_vec();
        f.splice(0..0, GW_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        ip.header_checksum = ip.calc_header_checksum();
        f.extend_from_slice(&ip.to_bytes());
        f.extend_from_slice(&[1u8; 24]);
        let (mac, out) = round_trip(&snap, &mut pipe, &f, true);
        assert_eq!(out, expected(&f));
        macs.push(mac);
    }
    assert_eq!(macs[0], macs[1], "both IPv4 fragments to one appliance");

    // IPv6 with a fragment header, first and later fragment.
    let mut macs6 = Vec::new();
    for (offset, more) in [(0u16, true), (100, false)] {
        let mut s = [0u8; 16];
        s[0] = 0xfd;
        s[1] = 1;
        s[15] = 9;
        let mut d = s;
        d[1] = 2;
        let frag = Ipv6FragmentHeader::new(IpNumber::UDP, offset.try_into().unwrap(), more, 77);
        let payload = [3u8; 16];
        let ip = Ipv6Header {
            payload_length: (8 + payload.len()) as u16,
            next_header: IpNumber::IPV6_FRAGMENTATION_HEADER,
            hop_limit: 64,
            source: s,
            destination: d,
            ..Default::default()
        };
        let mut f = GW_MAC.to_vec();
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(&ip.to_bytes());
        // etherparse 0.16 misplaces the offset bits: write the fragment header by hand.
        let off_m = (offset << 3) | u16::from(more);
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&off_m.to_be_bytes());
        f.extend_from_slice(&77u32.to_be_bytes());
        let _ = frag;
        f.extend_from_slice(&payload);
        let (mac, out) = round_trip(&snap, &mut pipe, &f, false);
        assert_eq!(out, expected(&f));
        macs6.push(mac);
    }
    assert_eq!(macs6[0], macs6[1], "both IPv6 fragments to one appliance");
}

#[test]
fn return_from_wrong_or_unknown_appliance_is_dropped() {
    let (snap, mut pipe) = setup();
    let f = user_frame(Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]), 6, 40000, 80, b"x");
    let mut b = VecBuf::new(&f);
    assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
    let enc = b.data().to_vec();
    let owner = APPLIANCES
        .iter()
        .position(|(m, _)| m[..] == enc[0..6])
        .expect("sent to an appliance");
    let other = APPLIANCES[(owner + 1) % 3];
    let drops = |p: &Pipeline, r: DropReason| p.counters.drops[r.index()];
    // Another registered appliance returns a flow it was never given.
    assert_eq!(
        pipe.process(
            &snap,
            &mut VecBuf::new(&aws_return_from(&enc, other.0, other.1)),
            0,
            2
        ),
        Verdict::Drop(DropReason::ReturnFromOtherAppliance)
    );
    // Someone on the segment forges the other appliance's address from the owner's MAC, or
    // the owner's address from a MAC that is no appliance's: not from where it claims.
    let mut spoof = aws_return_from(&enc, APPLIANCES[owner].0, other.1);
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&spoof), 0, 2),
        Verdict::Drop(DropReason::ReturnSourceMismatch)
    );
    spoof = aws_return_from(&enc, [2, 0, 0, 0, 0, 0x66], APPLIANCES[owner].1);
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&spoof), 0, 2),
        Verdict::Drop(DropReason::ReturnSourceMismatch)
    );
    // Not an appliance at all.
    assert_eq!(
        pipe.process(
            &snap,
            &mut VecBuf::new(&aws_return_from(&enc, other.0, [10, 0, 0, 99])),
            0,
            2
        ),
        Verdict::Drop(DropReason::UnknownAppliance)
    );
    // A registered appliance sourcing a flow nobody sent it, whether or not the flow hashes
    // to it: dropped (the table has room, so the flow would have been stored; see
    // `full_flow_table_keeps_both_directions_and_counts_honestly` for a full table).
    let unsent = user_frame(Ips::V4([10, 1, 7, 7], [10, 2, 7, 7]), 17, 1, 2, b"y");
    let choice = {
        let (snap2, mut pipe2) = setup();
        let mut b = VecBuf::new(&unsent);
        assert_eq!(pipe2.process(&snap2, &mut b, 0, 1), Verdict::Tx(0));
        APPLIANCES
            .iter()
            .position(|(m, _)| m[..] == b.data()[0..6])
            .unwrap()
    };
    for sender in [APPLIANCES[choice], APPLIANCES[(choice + 1) % 3]] {
        let mut forged = linux_return(&enc, &unsent[14..]);
        forged[6..12].copy_from_slice(&sender.0);
        forged[26..30].copy_from_slice(&sender.1);
        set_ipv4_checksum(&mut forged[14..34]);
        assert_eq!(
            pipe.process(&snap, &mut VecBuf::new(&forged), 0, 2),
            Verdict::Drop(DropReason::NoFlowForReturn)
        );
    }
    assert_eq!(drops(&pipe, DropReason::NoFlowForReturn), 2);
    assert_eq!(drops(&pipe, DropReason::ReturnFromOtherAppliance), 1);
    assert_eq!(drops(&pipe, DropReason::ReturnSourceMismatch), 2);
    assert_eq!(drops(&pipe, DropReason::UnknownAppliance), 1);
    assert_eq!(pipe.counters.decapsulated, 0, "nothing forged got through");
}

/// A return is bounded by its UDP datagram: an inner packet past the UDP length is not
/// forwarded. An ICMP error (keyed on the flow it quotes) passes only on its way back to the
/// quoted packet's source: an appliance cannot aim errors at other hosts.
#[test]
fn returns_are_bounded_by_udp_length_and_icmp_errors_by_their_destination() {
    let (snap, mut pipe) = setup();
    let f = user_frame(Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]), 17, 4000, 53, b"x");
    let mut b = VecBuf::new(&f);
    assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
    let enc = b.data().to_vec();
    let mut short = linux_return(&enc, &f[14..]);
    short[38..40].copy_from_slice(&16u16.to_be_bytes()); // UDP header + Geneve base header
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&short), 0, 2),
        Verdict::Drop(DropReason::TruncatedIp)
    );
    // Destination unreachable from a router on the way, quoting the flow's forward packet.
    let icmp_to = |dst: [u8; 4]| {
        let mut body = vec![3, 1, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&f[14..]);
        let mut out = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
            .ipv4([10, 2, 0, 1], dst, 64)
            .write(&mut out, IpNumber(1), &body)
            .unwrap();
        out
    };
    let stray = icmp_to([10, 1, 9, 99]);
    assert_eq!(
        pipe.process(
            &snap,
            &mut VecBuf::new(&linux_return(&enc, &stray[14..])),
            0,
            2
        ),
        Verdict::Drop(DropReason::NoFlowForReturn)
    );
    let home = icmp_to([10, 1, 0, 2]);
    let mut r = VecBuf::new(&linux_return(&enc, &home[14..]));
    assert_eq!(pipe.process(&snap, &mut r, 0, 2), Verdict::Tx(0));
    assert_eq!(
        &r.data()[14..],
        &home[14..],
        "the error forwarded as returned"
    );
    assert_eq!(pipe.counters.decapsulated, 1);
}

/// `require_flow_cookie`: a Linux-style return (no options, so no cookie) is dropped even
/// from the right appliance; the AWS-style echo with the right cookie passes, a wrong cookie
/// does not.
#[test]
fn require_flow_cookie_drops_returns_without_it() {
    let cfg = Config::from_toml_str(&CONFIG.replace(
        "attachment_id = 5678\n",
        "attachment_id = 5678\nrequire_flow_cookie = true\n",
    ))
    .expect("config");
    assert!(cfg.target_groups[0].require_flow_cookie);
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let mut pipe = Pipeline::new(4096, Default::default()).expect("pipeline");
    let f = user_frame(Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]), 17, 4000, 53, b"x");
    let mut b = VecBuf::new(&f);
    assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
    let enc = b.data().to_vec();
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&linux_return(&enc, &f[14..])), 0, 2),
        Verdict::Drop(DropReason::ReturnWithoutCookie)
    );
    let mut wrong = aws_echo(&enc);
    // The cookie is the last 4 bytes of the options (type 3 last), just before the inner packet.
    let at = 14 + 68 - 4;
    wrong[at] ^= 0xff;
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&wrong), 0, 2),
        Verdict::Drop(DropReason::NoFlowForReturn)
    );
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&aws_echo(&enc)), 0, 2),
        Verdict::Tx(0)
    );
}

#[test]
fn both_directions_share_an_appliance() {
    let (snap, mut pipe) = setup();
    let mut used = std::collections::HashSet::new();
    for i in 0..64u16 {
        let fwd = user_frame(
            Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
            6,
            30000 + i,
            80,
            b"a",
        );
        let rev = user_frame(
            Ips::V4([10, 2, 0, 2], [10, 1, 0, 2]),
            6,
            80,
            30000 + i,
            b"b",
        );
        let mut a = VecBuf::new(&fwd);
        let mut b = VecBuf::new(&rev);
        pipe.process(&snap, &mut a, 0, 1);
        pipe.process(&snap, &mut b, 0, 1);
        assert_eq!(a.data()[0..6], b.data()[0..6]);
        assert_eq!(a.data()[30..34], b.data()[30..34]);
        used.insert(a.data()[33]);
    }
    assert_eq!(used.len(), 3, "64 flows spread over all three appliances");
}

proptest! {
    #[test]
    fn random_ipv4_and_ipv6_packets_round_trip(
        v6 in any::<bool>(),
        proto in prop::sample::select(vec![1u8, 6, 17, 47, 58, 132]),
        a in any::<[u8; 16]>(),
        b in any::<[u8; 16]>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        payload in prop::collection::vec(any::<u8>(), 0..1200),
        linux in any::<bool>(),
    ) {
        let (snap, mut pipe) = setup();
        let f = if v6 {
            let p = if proto == 1 { 58 } else { proto };
            let mut s = a;
            s[0] = 0xfd;
            let mut d = b;
            d[0] = 0xfd;
            user_frame(Ips::V6(s, d), p, sport, dport, &payload)
        } else {
            let p = if proto == 58 { 1 } else { proto };
            // Second octet odd: never inside the connected 10.0.0.0/24.
            user_frame(Ips::V4([10, a[1] | 1, a[2], a[3]], [10, b[1] | 1, b[2], b[3]]), p, sport, dport, &payload)
        };
        let (_, out) = round_trip(&snap, &mut pipe, &f, linux);
        prop_assert_eq!(out, expected(&f));
    }
}

#[test]
fn link_scope_traffic_goes_to_the_host_not_to_appliances() {
    let (snap, mut pipe) = setup();
    let mcast = user_frame(
        Ips::V4([10, 1, 0, 2], [224, 0, 0, 251]),
        17,
        5353,
        5353,
        b"mdns",
    );
    let bcast = user_frame(
        Ips::V4([10, 1, 0, 2], [255, 255, 255, 255]),
        17,
        68,
        67,
        b"dhcp",
    );
    let mut ll = [0u8; 16];
    ll[0] = 0xfe;
    ll[1] = 0x80;
    ll[15] = 1;
    let mut mld = [0u8; 16];
    mld[0] = 0xff;
    mld[1] = 0x02;
    mld[15] = 0x16;
    let v6_mcast = user_frame(Ips::V6(ll, mld), 58, 0, 0, &[0; 20]);
    let v6_ll = user_frame(Ips::V6(ll, ll), 17, 1, 2, b"x");
    for f in [mcast, bcast, v6_mcast, v6_ll] {
        assert_eq!(
            pipe.process(&snap, &mut VecBuf::new(&f), 0, 1),
            Verdict::ToHost
        );
    }
    assert_eq!(pipe.counters.encapsulated, 0);
}

/// `aws_echo(enc)` as if sent by another appliance (`mac`, `ip`): a cross-appliance return.
fn aws_return_from(enc: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut r = aws_echo(enc);
    r[6..12].copy_from_slice(&mac);
    r[26..30].copy_from_slice(&ip);
    set_ipv4_checksum(&mut r[14..34]);
    r
}

/// Appliances of `CONFIG` by MAC: (MAC, IPv4 address).
const APPLIANCES: [([u8; 6], [u8; 4]); 3] = [
    ([2, 0, 0, 0, 0, 0x0b], [10, 0, 0, 11]),
    ([2, 0, 0, 0, 0, 0x0c], [10, 0, 0, 12]),
    ([2, 0, 0, 0, 0, 0x0d], [10, 0, 0, 13]),
];

/// A flood of new flows past the table's capacity: flows already stored keep working in both
/// directions; a flow that cannot be stored is still inspected (sent to the appliance its hash
/// picks) and its returns from that appliance are accepted, from any other appliance dropped;
/// `new_flows` and per-appliance `flows` count stored flows only, `table_full` the packets of
/// unstored ones.
#[test]
fn full_flow_table_keeps_both_directions_and_counts_honestly() {
    let cfg = Config::from_toml_str(CONFIG).expect("config");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let mut pipe = Pipeline::new(64, Default::default()).expect("pipeline");
    let capacity = pipe.flows().capacity();
    let flows = 4 * capacity as u16;
    let frame = |i: u16| {
        user_frame(
            Ips::V4([10, 1, (i >> 8) as u8, i as u8], [10, 2, 0, 2]),
            17,
            10_000 + i,
            53,
            b"q",
        )
    };
    // (flow, encapsulated frame) for every flow's first packet.
    let mut sent = Vec::new();
    for i in 0..flows {
        let mut b = VecBuf::new(&frame(i));
        assert_eq!(
            pipe.process(&snap, &mut b, 0, 1),
            Verdict::Tx(0),
            "flow {i}"
        );
        sent.push(b.data().to_vec());
    }
    let stored = pipe.flows().len() as u64;
    assert!(
        stored > 0 && stored < u64::from(flows),
        "table filled: {stored}"
    );
    let c = &pipe.counters;
    assert_eq!(c.new_flows, stored, "new_flows counts stored flows only");
    assert_eq!(c.appliance_flows.iter().sum::<u64>(), stored);
    assert_eq!(c.table_full, u64::from(flows) - stored);
    assert_eq!(pipe.flows().stats().full_misses, u64::from(flows) - stored);

    // A second packet of every flow goes to the same appliance as the first; nothing more is
    // stored and no flow is counted twice.
    for i in 0..flows {
        let mut b = VecBuf::new(&frame(i));
        assert_eq!(pipe.process(&snap, &mut b, 0, 2), Verdict::Tx(0));
        assert_eq!(
            &b.data()[0..6],
            &sent[usize::from(i)][0..6],
            "flow {i} moved"
        );
    }
    assert_eq!(pipe.counters.new_flows, stored);
    assert_eq!(pipe.counters.table_full, 2 * (u64::from(flows) - stored));

    // Every flow's return from its own appliance is forwarded, byte-exact.
    let before = pipe.counters.decapsulated;
    for (i, enc) in sent.iter().enumerate() {
        let mut r = VecBuf::new(&aws_echo(enc));
        assert_eq!(
            pipe.process(&snap, &mut r, 0, 3),
            Verdict::Tx(0),
            "return of flow {i}"
        );
        assert_eq!(r.data(), &expected(&frame(i as u16))[..]);
    }
    assert_eq!(pipe.counters.decapsulated - before, u64::from(flows));
    assert_eq!(pipe.counters.stateless_returns, u64::from(flows) - stored);

    // Returns with a wrong cookie are dropped, stored flow or not, and not counted as
    // stateless returns (found by the pipeline fuzz target).
    let stateless = pipe.counters.stateless_returns;
    for enc in &sent {
        let mut r = aws_echo(enc);
        r[14 + 68 - 4] ^= 0xff;
        assert_eq!(
            pipe.process(&snap, &mut VecBuf::new(&r), 0, 3),
            Verdict::Drop(DropReason::NoFlowForReturn)
        );
    }
    assert_eq!(pipe.counters.stateless_returns, stateless);

    // The same returns from an appliance that is not the flow's: dropped, stored or not.
    let drops = |p: &Pipeline, r: DropReason| p.counters.drops[r.index()];
    for enc in &sent {
        let (mac, ip) = *APPLIANCES
            .iter()
            .find(|(m, _)| m[..] != enc[0..6])
            .expect("another appliance");
        let mut r = VecBuf::new(&aws_return_from(enc, mac, ip));
        assert!(matches!(
            pipe.process(&snap, &mut r, 0, 4),
            Verdict::Drop(DropReason::NoFlowForReturn | DropReason::ReturnFromOtherAppliance)
        ));
    }
    assert_eq!(drops(&pipe, DropReason::ReturnFromOtherAppliance), stored);
    assert_eq!(
        drops(&pipe, DropReason::NoFlowForReturn),
        u64::from(flows) + u64::from(flows) - stored
    );
}

/// One generated input of [`burst_and_single_packet_paths_agree`].
#[derive(Debug, Clone)]
enum Op {
    /// A valid user frame: protocol, client address byte, ports, payload.
    User(u8, u8, u16, u16, Vec<u8>),
    /// Arbitrary bytes.
    Garbage(Vec<u8>),
    /// The AWS echo of an earlier encapsulation (index modulo the outputs so far), with one
    /// byte XORed (offset, value; 0 = unchanged).
    AwsReturn(usize, usize, u8),
    /// The Linux-style return of an earlier encapsulation.
    LinuxReturn(usize),
    /// The AWS echo of an earlier encapsulation, sent from another appliance's address or MAC.
    Spoof(usize, u8),
    /// The clock jumps forward by this many seconds before the next frame.
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::sample::select(vec![6u8, 17, 1, 47]), any::<u8>(), any::<u16>(), any::<u16>(),
              prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(p, a, s, d, pl)| Op::User(p, a, s, d, pl)),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Op::Garbage),
        3 => (any::<usize>(), any::<usize>(), prop_oneof![3 => Just(0u8), 1 => any::<u8>()])
            .prop_map(|(i, o, x)| Op::AwsReturn(i, o, x)),
        2 => any::<usize>().prop_map(Op::LinuxReturn),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, k)| Op::Spoof(i, k)),
        1 => prop_oneof![Just(1u16), Just(200), Just(1000)].prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `process` packet by packet and `process_burst` on the same frames in the same bursts
    /// agree on every verdict, every output byte, every counter and the flow table, over
    /// mixes of new flows (a table that fills), returns of both styles (some
    /// mutated), spoofs, garbage and clock jumps. And whatever is encapsulated carries the
    /// input packet exactly; whatever is decapsulated is exactly the returned inner packet.
    #[test]
    fn burst_and_single_packet_paths_agree(
        bursts in prop::collection::vec((1usize..=32, prop::collection::vec(op(), 1..=32)), 1..12),
        no_rebalance in any::<bool>(),
        fail_open in any::<bool>(),
        share in (2u16..=3).prop_flat_map(|w| (0..w).prop_map(move |me| Share { me, workers: w })),
    ) {
        let mut text = CONFIG.to_owned();
        if no_rebalance || fail_open {
            let extra = format!(
                "on_unhealthy = \"{}\"\non_all_unhealthy = \"{}\"\n",
                if no_rebalance { "no_rebalance" } else { "rebalance" },
                if fail_open { "fail_open" } else { "fail_closed" },
            );
            text = text.replacen("attachment_id = 5678\n", &format!("attachment_id = 5678\n{extra}"), 1);
        }
        let cfg = Config::from_toml_str(&text).expect("config");
        let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
        // The smallest table (16 slots): it fills, so the full-table paths are exercised.
        let mut single = Pipeline::new(1, Default::default()).expect("pipeline");
        let mut burst = Pipeline::new(1, Default::default()).expect("pipeline");
        // One worker of several (`share`): `shared` decides the same bursts with
        // `process_burst_shared`; `kept` processes, packet by packet, what it kept.
        let mut shared = Pipeline::new(1, Default::default()).expect("pipeline");
        let mut kept = Pipeline::new(1, Default::default()).expect("pipeline");
        let mut encapsulated: Vec<(Vec<u8>, Vec<u8>)> = Vec::new(); // (encap, inner IP)
        let mut now = 1u32;
        for (size, ops) in bursts {
            for chunk in ops.chunks(size) {
                // Frames of this burst, and what each one is (for the byte oracles).
                let mut frames: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
                for op in chunk {
                    let earlier = |i: usize| encapsulated.get(i % encapsulated.len().max(1)).cloned();
                    match op {
                        Op::User(p, a, s, d, pl) => {
                            let f = user_frame(Ips::V4([10, 1, 0, *a], [10, 2, 0, 2]), *p, *s, *d, pl);
                            frames.push((f, None));
                        }
                        Op::Garbage(b) => frames.push((b.clone(), None)),
                        Op::AwsReturn(i, o, x) => {
                            if let Some((enc, inner)) = earlier(*i) {
                                let mut r = aws_echo(&enc);
                                let at = o % r.len();
                                r[at] ^= x;
                                frames.push((r, (*x == 0).then_some(inner)));
                            }
                        }
                        Op::LinuxReturn(i) => {
                            if let Some((enc, inner)) = earlier(*i) {
                                frames.push((linux_return(&enc, &inner), Some(inner)));
                            }
                        }
                        Op::Spoof(i, k) => {
                            if let Some((enc, _)) = earlier(*i) {
                                let (mac, ip) = APPLIANCES[usize::from(*k) % 3];
                                let (mac, ip) = if k & 4 == 0 { (mac, [10, 0, 0, enc[33]]) } else { (mac, ip) };
                                frames.push((aws_return_from(&enc, mac, ip), None));
                            }
                        }
                        Op::Tick(t) => now += u32::from(*t),
                    }
                }
                let mut bufs: Vec<VecBuf> = frames.iter().map(|(f, _)| VecBuf::new(f)).collect();
                let mut verdicts = vec![Verdict::ToHost; bufs.len()];
                burst.process_burst(&snap, &mut bufs, 0, now, &mut verdicts);
                let mut sbufs: Vec<VecBuf> = frames.iter().map(|(f, _)| VecBuf::new(f)).collect();
                let mut sverdicts = vec![Verdict::ToHost; bufs.len()];
                shared.process_burst_shared(&snap, &mut sbufs, 0, now, share, &mut sverdicts);
                for (k, (f, returned_inner)) in frames.iter().enumerate() {
                    let (enc_before, dec_before) =
                        (single.counters.encapsulated, single.counters.decapsulated);
                    let mut b = VecBuf::new(f);
                    let v = single.process(&snap, &mut b, 0, now);
                    prop_assert_eq!(v, verdicts[k], "verdict of frame {} of the burst", k);
                    // The shared path hands off exactly what another worker owns, untouched,
                    // and decides the rest as one worker would.
                    let owner = owner_hash(&snap, f, 0).map(|h| share.owner(h));
                    match sverdicts[k] {
                        Verdict::Handoff(o) => {
                            prop_assert_ne!(o, share.me, "handed to itself, frame {}", k);
                            let want = if v == Verdict::ToHost { Some(0) } else { owner };
                            prop_assert_eq!(Some(o), want, "owner of frame {}", k);
                            prop_assert_eq!(sbufs[k].data(), &f[..], "handed off unchanged");
                        }
                        sv => {
                            let mut kb = VecBuf::new(f);
                            prop_assert_eq!(kept.process(&snap, &mut kb, 0, now), sv, "kept frame {}", k);
                            prop_assert_eq!(kb.data(), sbufs[k].data(), "bytes of kept frame {}", k);
                            match sv {
                                Verdict::ToHost => prop_assert_eq!(share.me, 0, "host frame {}", k),
                                Verdict::Tx(_) => prop_assert_eq!(owner, Some(share.me), "owned frame {}", k),
                                _ => {}
                            }
                        }
                    }
                    prop_assert_eq!(b.data(), bufs[k].data(), "bytes of frame {}", k);
                    if single.counters.encapsulated > enc_before {
                        // Encapsulated: the input's IP packet, exactly, after 68 outer bytes.
                        prop_assert_eq!(&b.data()[14 + 68..], &f[14..]);
                        encapsulated.push((b.data().to_vec(), f[14..].to_vec()));
                    }
                    if single.counters.decapsulated > dec_before {
                        if let Some(inner) = returned_inner {
                            prop_assert_eq!(&b.data()[14..], &inner[..], "decapsulated inner");
                        }
                    }
                }
                prop_assert_eq!(&single.counters, &burst.counters);
                prop_assert_eq!(single.flows().len(), burst.flows().len());
                prop_assert_eq!(single.flows().stats(), burst.flows().stats());
                prop_assert_eq!(&kept.counters, &shared.counters);
                prop_assert_eq!(kept.flows().len(), shared.flows().len());
                prop_assert_eq!(kept.flows().stats(), shared.flows().stats());
            }
        }
    }
}

/// Behind ECMP (`[bgp]`, `accept_unseen_returns`, the default there): node B accepts the
/// return of a flow node A encapsulated, from the appliance that is the flow's Maglev choice
/// (the same on both nodes), and forwards it byte-exact; a return of an unseen flow from any
/// other appliance is still dropped. Without `[bgp]` (every other test here) an unseen flow's
/// return is dropped whatever its source.
#[test]
fn another_nodes_flow_returns_from_its_maglev_choice_only() {
    let cluster = CONFIG.replace(
        "role = \"both\"\n",
        "role = \"both\"\nkernel_interface = \"gw0\"\n",
    ) + "\n[bgp]\nlocal_as = 65001\nrouter_id = \"10.0.0.1\"\nprefixes = [\"10.250.0.0/16\"]\n[[bgp.neighbors]]\naddress = \"10.0.0.254\"\nremote_as = 65000\n";
    let cfg = Config::from_toml_str(&cluster).expect("config");
    assert!(cfg.bgp.as_ref().unwrap().accept_unseen_returns);
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let mut node_a = Pipeline::new(4096, Default::default()).expect("pipeline");
    let mut node_b = Pipeline::new(4096, Default::default()).expect("pipeline");
    let f = user_frame(
        Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
        6,
        40000,
        443,
        b"hello",
    );
    let mut b = VecBuf::new(&f);
    assert_eq!(node_a.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
    let enc = b.data().to_vec();
    let choice = APPLIANCES
        .iter()
        .position(|(m, _)| m[..] == enc[0..6])
        .expect("sent to an appliance");
    // The choice's return lands on node B, which never saw the flow.
    let mut r = VecBuf::new(&aws_echo(&enc));
    assert_eq!(node_b.process(&snap, &mut r, 0, 2), Verdict::Tx(0));
    assert_eq!(&r.data()[14..], &f[14..], "the inner packet, byte-exact");
    assert_eq!(node_b.counters.stateless_returns, 1);
    // Another appliance returning that flow to node B: not the flow's choice, dropped.
    let other = APPLIANCES[(choice + 1) % 3];
    assert_eq!(
        node_b.process(
            &snap,
            &mut VecBuf::new(&aws_return_from(&enc, other.0, other.1)),
            0,
            2
        ),
        Verdict::Drop(DropReason::NoFlowForReturn)
    );
    assert_eq!(node_b.counters.decapsulated, 1);
}

/// Two nodes with one cluster address (`[bgp] cluster_addresses`): each encapsulates from
/// the cluster address, not its own, so an appliance's return (AWS-style, which swaps the
/// outer addresses, and Linux-style with a fixed remote) reaches whichever node the router
/// picks; that node takes it for a flow it never saw, from the flow's Maglev choice only.
#[test]
fn returns_to_the_cluster_address_are_taken_by_any_node() {
    let node = |address: &str, router_id: &str| {
        let text = CONFIG
            .replace("10.0.0.1/24", address)
            .replace("role = \"both\"\n", "role = \"both\"\nkernel_interface = \"gw0\"\n")
            + &format!(
                "\n[bgp]\nlocal_as = 65001\nrouter_id = \"{router_id}\"\nprefixes = [\"10.250.0.0/16\"]\ncluster_addresses = [\"10.250.200.1\"]\n[[bgp.neighbors]]\naddress = \"10.0.0.254\"\nremote_as = 65000\n"
            );
        let cfg = Config::from_toml_str(&text).expect("config");
        let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
        (cfg, snap)
    };
    let (cfg_a, snap_a) = node("10.0.0.1/24", "10.0.0.1");
    let (cfg_b, snap_b) = node("10.0.0.2/24", "10.0.0.2");
    assert_eq!(gwlb::config::choice_difference(&cfg_a, &cfg_b), None);
    let mut node_a = Pipeline::new(4096, Default::default()).expect("pipeline");
    let mut node_b = Pipeline::new(4096, Default::default()).expect("pipeline");

    let f = user_frame(
        Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
        17,
        40000,
        53,
        b"query",
    );
    let mut b = VecBuf::new(&f);
    assert_eq!(node_a.process(&snap_a, &mut b, 0, 1), Verdict::Tx(0));
    let enc = b.data().to_vec();
    assert_eq!(
        &enc[26..30],
        &[10, 250, 200, 1],
        "outer source: the cluster address"
    );
    let choice = APPLIANCES
        .iter()
        .position(|(m, _)| m[..] == enc[0..6])
        .expect("sent to an appliance");

    // AWS-style: the return goes to the cluster address; node B takes it.
    let mut r = VecBuf::new(&aws_echo(&enc));
    assert_eq!(&r.data()[30..34], &[10, 250, 200, 1]);
    assert_eq!(node_b.process(&snap_b, &mut r, 0, 2), Verdict::Tx(0));
    assert_eq!(&r.data()[14..], &f[14..], "the inner packet, byte-exact");
    // Linux-style (fixed remote = the cluster address): node B takes it too.
    let mut r = VecBuf::new(&linux_return(&enc, &f[14..]));
    assert_eq!(node_b.process(&snap_b, &mut r, 0, 3), Verdict::Tx(0));
    assert_eq!(node_b.counters.decapsulated, 2);
    // A spoofed return of that flow from another appliance: dropped.
    let other = APPLIANCES[(choice + 1) % 3];
    assert_eq!(
        node_b.process(
            &snap_b,
            &mut VecBuf::new(&aws_return_from(&enc, other.0, other.1)),
            0,
            4
        ),
        Verdict::Drop(DropReason::NoFlowForReturn)
    );
    // Not Geneve, to the cluster address: the host's (never encapsulated as user traffic).
    let ping = user_frame(Ips::V4([10, 0, 0, 11], [10, 250, 200, 1]), 1, 0, 0, b"ping");
    assert_eq!(
        node_b.process(&snap_b, &mut VecBuf::new(&ping), 0, 5),
        Verdict::ToHost
    );
}

/// Appliances in another subnet, reached through the appliance port's gateway (a router):
/// gwlb sends their frames to the router's MAC and takes their returns from it; a return
/// with the appliance's address that did not come from the router is dropped.
#[test]
fn routed_appliances_are_reached_through_the_appliance_gateway() {
    let text = CONFIG
        .replace(
            "address = [\"10.0.0.1/24\", \"fd00::1/64\"]",
            "address = [\"10.0.0.1/24\", \"fd00::1/64\"]\nappliance_gateways = [\"10.0.0.254\"]",
        )
        .split("[[target_groups.targets]]")
        .next()
        .unwrap()
        .to_owned()
        + "[[target_groups.targets]]\naddress = \"10.30.0.11\"\n[[target_groups.targets]]\naddress = \"10.30.0.12\"\n";
    let cfg = Config::from_toml_str(&text).expect("config");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let mut pipe = Pipeline::new(4096, Default::default()).expect("pipeline");
    let router_mac = [2, 0, 0, 0, 0, 0xfe];
    let f = user_frame(Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]), 6, 40001, 443, b"hi");
    let mut b = VecBuf::new(&f);
    assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
    let enc = b.data().to_vec();
    assert_eq!(&enc[0..6], &router_mac, "to the router's MAC");
    let appliance: [u8; 4] = enc[30..34].try_into().unwrap();
    assert!(appliance == [10, 30, 0, 11] || appliance == [10, 30, 0, 12]);
    // From the router: taken.
    let mut r = VecBuf::new(&aws_echo(&enc));
    assert_eq!(pipe.process(&snap, &mut r, 0, 2), Verdict::Tx(0));
    assert_eq!(&r.data()[14..], &f[14..]);
    // The appliance's address from another MAC on the link: a spoof, dropped.
    let spoof = aws_return_from(&enc, [2, 0, 0, 0, 0, 0x66], appliance);
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&spoof), 0, 3),
        Verdict::Drop(DropReason::ReturnSourceMismatch)
    );
}

/// Path MTU discovery through the gateway: user packets too large to encapsulate toward an
/// appliance (port MTU 1500, so at most 1432 bytes of inner packet) are answered with ICMP
/// "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big", back out the arrival
/// port to the sender, within `icmp_errors_per_s`; IPv4 without DF is only dropped. The
/// single-packet and burst paths agree.
#[test]
fn packets_too_big_to_encapsulate_get_icmp_errors_within_the_rate() {
    let text = CONFIG.replace("[dataplane]\n", "[dataplane]\nicmp_errors_per_s = 3\n");
    let cfg = Config::from_toml_str(&text).expect("config");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let big_v4 = |df: bool, sport: u16| {
        let mut f = user_frame(
            Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
            6,
            sport,
            443,
            &[7; 1460],
        );
        if df {
            f[20] |= 0x40;
        } else {
            f[20] &= !0x40;
        }
        set_ipv4_checksum(&mut f[14..34]);
        f
    };
    let fits = user_frame(
        Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
        6,
        40009,
        443,
        &[7; 1392],
    );
    let v6 = user_frame(
        Ips::V6(
            [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0xfd, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        ),
        17,
        5000,
        53,
        &[1; 1400],
    );
    // Second 1: three errors allowed; second 2: the budget is back.
    let frames = [
        (big_v4(true, 40001), 1),
        (big_v4(false, 40002), 1),
        (fits.clone(), 1),
        (v6.clone(), 1),
        (big_v4(true, 40003), 1),
        (big_v4(true, 40004), 1),
        (big_v4(true, 40005), 2),
    ];
    // Without DF the packet is fragmented instead (no error; the worker splits it).
    let want = [
        Verdict::Tx(0),
        Verdict::Fragment(1432),
        Verdict::Tx(0),
        Verdict::Tx(0),
        Verdict::Tx(0),
        Verdict::Drop(DropReason::Oversize),
        Verdict::Tx(0),
    ];
    let mut single = Pipeline::new(4096, Default::default()).expect("pipeline");
    let mut burst = Pipeline::new(4096, Default::default()).expect("pipeline");
    let mut outs = Vec::new();
    for ((f, now), want) in frames.iter().zip(want) {
        let mut b = VecBuf::new(f);
        assert_eq!(single.process(&snap, &mut b, 0, *now), want);
        let mut bb = [VecBuf::new(f)];
        let mut v = [Verdict::Drop(DropReason::Oversize)];
        burst.process_burst(&snap, &mut bb, 0, *now, &mut v);
        assert_eq!(v[0], want, "burst path");
        assert_eq!(bb[0].data(), b.data(), "burst path bytes");
        outs.push(b.data().to_vec());
    }
    assert_eq!(single.counters.icmp_too_big, 4);
    assert_eq!(single.counters.drops[DropReason::Oversize.index()], 5);
    assert_eq!(burst.counters.icmp_too_big, 4);
    // The IPv4 error: to the sender's MAC, from the gateway's address, MTU 1432, the quote.
    let e = &outs[0];
    assert_eq!((&e[0..6], &e[6..12]), (&CLIENT_MAC[..], &GW_MAC[..]));
    assert_eq!(
        (&e[26..30], &e[30..34]),
        (&[10, 0, 0, 1][..], &[10, 1, 0, 2][..])
    );
    assert_eq!((e[34], e[35]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([e[40], e[41]]), 1432);
    assert_eq!(&e[42..62], &frames[0].0[14..34], "quotes the IP header");
    // The IPv6 one: packet too big, MTU 1432.
    let e = &outs[3];
    assert_eq!(e[54], 2, "packet too big");
    assert_eq!(u32::from_be_bytes([e[58], e[59], e[60], e[61]]), 1432);
    assert_eq!(
        &e[22..38],
        &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..],
        "from fd00::1"
    );
    // What fits is encapsulated as before.
    assert_eq!(single.counters.encapsulated, 1);
}

/// After decapsulation the egress port's MTU holds: an appliance's return whose inner packet
/// exceeds it (1600 bytes, DF, to a 1500-byte port) is not sent; its source gets ICMP
/// "fragmentation needed" with MTU 1500, through the route back to it (counted `oversize`).
/// Without DF it is decapsulated and left to the worker to fragment for that port.
#[test]
fn returned_packets_over_the_egress_mtu_are_answered_not_sent() {
    let (snap, mut pipe) = setup();
    let client = [10, 1, 0, 2];
    let small = user_frame(Ips::V4(client, [10, 2, 0, 2]), 17, 41000, 53, b"q");
    let mut b = VecBuf::new(&small);
    assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
    let enc = b.data().to_vec();
    let big_inner = |df: bool| {
        let mut f = user_frame(Ips::V4(client, [10, 2, 0, 2]), 17, 41000, 53, &[9; 1572]);
        if df {
            f[20] |= 0x40;
        } else {
            f[20] &= !0x40;
        }
        set_ipv4_checksum(&mut f[14..34]);
        f[14..].to_vec()
    };
    let inner = big_inner(true);
    assert_eq!(inner.len(), 1600);
    let mut r = VecBuf::new(&linux_return(&enc, &inner));
    assert_eq!(pipe.process(&snap, &mut r, 0, 2), Verdict::Tx(0));
    let e = r.data();
    assert_eq!(&e[0..6], &[2, 0, 0, 0, 0, 0xfe], "to the client's next hop");
    assert_eq!(&e[6..12], &GW_MAC);
    assert_eq!((&e[26..30], &e[30..34]), (&[10, 0, 0, 1][..], &client[..]));
    assert_eq!((e[34], e[35]), (3, 4));
    assert_eq!(u16::from_be_bytes([e[40], e[41]]), 1500);
    assert_eq!(&e[42..62], &inner[..20], "quotes the returned packet");
    assert_eq!(pipe.counters.decapsulated, 0, "nothing over the MTU left");
    let mut r = VecBuf::new(&linux_return(&enc, &big_inner(false)));
    assert_eq!(pipe.process(&snap, &mut r, 0, 3), Verdict::TxFragments(0));
    assert_eq!(
        &r.data()[14..],
        &big_inner(false)[..],
        "unwrapped, unchanged"
    );
    assert_eq!(pipe.counters.icmp_too_big, 1);
    assert_eq!(pipe.counters.drops[DropReason::Oversize.index()], 1);
    assert_eq!(pipe.counters.decapsulated, 1);
}

/// `tcp_unknown_non_syn`: under "drop" (AWS) and "reset" a TCP packet of an unknown flow that
/// does not open a connection starts no flow; a SYN does, and the flow's later packets pass.
/// Under the default "admit" it starts a flow (restarts, ECMP moves). Both paths agree.
#[test]
fn tcp_non_syn_packets_of_unknown_flows_follow_the_group_policy() {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    let tcp = |sport: u16, flags: u8| {
        frame(
            CLIENT_MAC,
            GW_MAC,
            Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
            L4::Tcp {
                src_port: sport,
                dst_port: 443,
                flags,
            },
            b"x",
        )
    };
    for (policy, refused) in [
        ("admit", None),
        ("drop", Some(Verdict::Drop(DropReason::TcpNonSynNoFlow))),
        ("reset", Some(Verdict::Tx(0))),
    ] {
        let text = CONFIG.replacen(
            "attachment_id = 5678\n",
            &format!("attachment_id = 5678\ntcp_unknown_non_syn = \"{policy}\"\n"),
            1,
        );
        let cfg = Config::from_toml_str(&text).expect("config");
        let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
        let mut single = Pipeline::new(4096, Default::default()).expect("pipeline");
        let mut burst = Pipeline::new(4096, Default::default()).expect("pipeline");
        let cases = [
            (tcp(42000, ACK), refused.unwrap_or(Verdict::Tx(0))),
            (tcp(42001, SYN | ACK), refused.unwrap_or(Verdict::Tx(0))),
            (tcp(42002, SYN), Verdict::Tx(0)),
            (tcp(42002, ACK), Verdict::Tx(0)),
            (
                user_frame(Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]), 17, 42003, 53, b"u"),
                Verdict::Tx(0),
            ),
        ];
        for (i, (f, want)) in cases.iter().enumerate() {
            let mut b = VecBuf::new(f);
            assert_eq!(single.process(&snap, &mut b, 0, 1), *want, "{policy}");
            let mut bb = [VecBuf::new(f)];
            let mut v = [Verdict::ToHost];
            burst.process_burst(&snap, &mut bb, 0, 1, &mut v);
            assert_eq!(v[0], *want, "{policy}, burst path");
            assert_eq!(bb[0].data(), b.data(), "{policy}, burst path bytes");
            // Cases 0 and 1 are refused; under "reset" they come back as RSTs.
            if policy == "reset" && i < 2 {
                assert_eq!(b.data()[47] & 0x04, 0x04, "a RST back to the sender");
                assert_eq!(&b.data()[0..6], &CLIENT_MAC);
            }
        }
        let c = &single.counters;
        let (new, refusals) = match policy {
            "admit" => (4, 0),
            _ => (2, 2),
        };
        assert_eq!(c.new_flows, new, "{policy}");
        assert_eq!(
            c.drops[DropReason::TcpNonSynNoFlow.index()],
            refusals,
            "{policy}"
        );
        assert_eq!(c.tcp_resets, if policy == "reset" { 2 } else { 0 });
        // The ACK and the SYN+ACK of cases 0 and 1 start flows only under "admit", and are
        // counted as such there; the SYN (case 2) and UDP (case 4) are ordinary new flows.
        let admitted = if policy == "admit" { 2 } else { 0 };
        assert_eq!(c.admitted_non_syn, admitted, "{policy}");
        assert_eq!(
            burst.counters.admitted_non_syn, admitted,
            "{policy}, burst path"
        );
    }
}

/// Data-path probes: the return of a probe (an echo, or the kernel-routed inner packet) from
/// a registered appliance goes to the host unchanged, whose health checker sent it; the same
/// inner packet from anywhere else, or a probe-looking packet of a group that sends none, is
/// treated like any other return.
#[test]
fn data_path_probe_returns_go_to_the_host_and_only_from_an_appliance() {
    use gwlb::data_path_probe::{self, Tunnel};
    use gwlb_tests::geneve_returns::udp_6081_frame;
    let probing = CONFIG.replace("enabled = false", "protocol = \"geneve\"");
    let cfg = Config::from_toml_str(&probing).expect("config");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let mut pipe = Pipeline::new(4096, Default::default()).expect("pipeline");
    let dp = cfg.target_groups[0]
        .health_check
        .data_path
        .expect("data path on");
    let tunnel = Tunnel {
        vni: 77,
        endpoint_id: 1234,
        attachment_id: 5678,
    };
    let probe = data_path_probe::build(&tunnel, &dp, 0x1234_5678_9abc_def0);
    let from = |mac: [u8; 6], ip: [u8; 4], payload: &[u8]| {
        udp_6081_frame(
            &Outer {
                dst_mac: GW_MAC,
                src_mac: mac,
                src: ip.into(),
                dst: [10, 0, 0, 1].into(),
                ttl: 64,
                df: false,
                sport: 51000,
                ip_id: 0,
                udp_checksum_v4: false,
            },
            payload,
        )
    };
    let (mac, ip) = APPLIANCES[1];
    // AWS-style echo, and a Linux kernel return (no options, inner routed: TTL 63).
    let echo = from(mac, ip, &probe);
    let mut routed = probe[geneve::AWS_HEADER_LEN..].to_vec();
    routed[8] = 63;
    set_ipv4_checksum(&mut routed);
    let mut linux_payload = gwlb_tests::geneve_returns::geneve_base(0, 0, 0x0800, 9);
    linux_payload.extend_from_slice(&routed);
    let linux = from(mac, ip, &linux_payload);
    for ret in [&echo, &linux] {
        let mut b = VecBuf::new(ret);
        assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::ToHost);
        assert_eq!(b.data(), &ret[..], "handed to the host unchanged");
        let mut burst = [VecBuf::new(ret)];
        let mut v = [Verdict::ToHost; 1];
        pipe.process_burst_shared(&snap, &mut burst, 0, 1, Share { me: 1, workers: 2 }, &mut v);
        assert_eq!(
            v[0],
            Verdict::Handoff(0),
            "the exception path is worker 0's"
        );
    }
    // The kernel's socket reads the nonce back out of the UDP payload.
    assert_eq!(
        data_path_probe::echoed_nonce(&linux[42..]),
        Some(0x1234_5678_9abc_def0)
    );
    // Not from an appliance: dropped as any forged return.
    let stranger = from([2, 0, 0, 0, 0, 0x66], [10, 0, 0, 99], &probe);
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&stranger), 0, 1),
        Verdict::Drop(DropReason::UnknownAppliance)
    );
    // Another inner destination: a return like any other (no flow: dropped).
    let mut other = probe;
    other[geneve::AWS_HEADER_LEN + 19] = 9;
    set_ipv4_checksum(&mut other[geneve::AWS_HEADER_LEN..]);
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&from(mac, ip, &other)), 0, 1),
        Verdict::Drop(DropReason::NoFlowForReturn)
    );
    // A group without data-path probes diverts nothing.
    let (plain, mut plain_pipe) = setup();
    assert_eq!(
        plain_pipe.process(&plain, &mut VecBuf::new(&echo), 0, 1),
        Verdict::Drop(DropReason::NoFlowForReturn)
    );
    assert_eq!(pipe.counters.to_host, 2);
}

/// Group failover through the pipeline: with the primary group below its minimum, a user
/// flow is encapsulated toward the failover group's appliance with that group's Geneve
/// fields, and that appliance's return is accepted and forwarded.
#[test]
fn a_failed_over_group_sends_new_flows_to_its_failover_groups_appliance() {
    use gwlb::control::registry::Registry;
    let text = CONFIG.replace(
        "attachment_id = 5678\n",
        "attachment_id = 5678\nfailover_group = \"dr\"\nmin_healthy_targets = 2\n",
    ) + r#"
[[target_groups]]
name = "dr"
user_ports = []
geneve_vni = 99
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.21"
mac = "02:00:00:00:00:21"
"#;
    let cfg = Config::from_toml_str(&text).expect("config");
    let mut reg = Registry::new(&cfg, 64).unwrap();
    reg.assume_healthy();
    // Two of the primary's three appliances down: 1 < min_healthy_targets = 2.
    reg.set_health(0, false, "down".into());
    reg.set_health(1, false, "down".into());
    let snap = Snapshot::build_with(&cfg, &[GW_MAC], &reg, &LiveState::default(), 1).unwrap();
    let mut pipe = Pipeline::new(4096, Default::default()).expect("pipeline");
    for sport in 40000..40020 {
        let f = user_frame(Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]), 17, sport, 53, b"q");
        let mut b = VecBuf::new(&f);
        assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Tx(0));
        let enc = b.data().to_vec();
        assert_eq!(
            enc[0..6],
            [2, 0, 0, 0, 0, 0x21],
            "the failover group's appliance"
        );
        assert_eq!(enc[30..34], [10, 0, 0, 21]);
        let h = geneve::parse_aws_header(&enc[42..]).unwrap();
        assert_eq!(h.vni, 99, "with its group's VNI");
        let mut r = VecBuf::new(&linux_return(&enc, &f[14..]));
        assert_eq!(pipe.process(&snap, &mut r, 0, 2), Verdict::Tx(0));
        assert_eq!(
            r.data(),
            &expected(&f)[..],
            "its return forwarded byte-exact"
        );
    }
    assert_eq!(pipe.counters.decapsulated, 20);
}

/// A user frame of `payload` UDP bytes from the client, DF clear.
fn udp_without_df(sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = user_frame(
        Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
        17,
        sport,
        53,
        payload,
    );
    f[20] &= !0x40;
    set_ipv4_checksum(&mut f[14..34]);
    f
}

/// The IP packets in `frames` (after 14 bytes of Ethernet), reassembled: (header fields of
/// the first, whole payload). Checks each is a well-formed fragment of at most `mtu` bytes.
fn reassemble(frames: &[Vec<u8>], mtu: usize) -> (Ipv4Header, Vec<u8>) {
    let mut payload = Vec::new();
    let mut first = None;
    for (i, f) in frames.iter().enumerate() {
        let (h, rest) = Ipv4Header::from_slice(&f[14..]).expect("an IPv4 fragment");
        assert!(
            usize::from(h.total_len) <= mtu,
            "fragment {i}: {} > {mtu}",
            h.total_len
        );
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(usize::from(h.fragment_offset.value()) * 8, payload.len());
        assert_eq!(h.more_fragments, i + 1 < frames.len());
        payload.extend_from_slice(&rest[..usize::from(h.total_len) - 20]);
        first.get_or_insert(h);
    }
    (first.expect("fragments"), payload)
}

/// An IPv4 packet without DF too large to encapsulate is split into fragments (the worker's
/// part, `Pipeline::fragment`), and each fragment is inspected like one the sender made: all
/// to one appliance, within the appliance side's MTU, and back out to the router. A return
/// larger than its egress port leaves as fragments too.
#[test]
fn ipv4_without_df_is_fragmented_and_each_fragment_inspected() {
    let (snap, mut pipe) = setup();
    let big = udp_without_df(5001, &[0x5a; 2500]);
    let mut b = VecBuf::new(&big);
    // 1500 (port MTU) - 68 (outer headers and options).
    assert_eq!(pipe.process(&snap, &mut b, 0, 1), Verdict::Fragment(1432));
    assert_eq!(b.data(), &big[..], "left unchanged for the worker");
    let mut frags = Vec::new();
    assert!(pipe.fragment(&b, 1432, &mut |f: VecBuf| {
        frags.push(f);
        true
    }));
    assert_eq!((frags.len(), pipe.counters.fragmented), (2, 1));
    let mut encapsulated = Vec::new();
    let mut returned = Vec::new();
    for mut f in frags {
        assert_eq!(pipe.process(&snap, &mut f, 0, 1), Verdict::Tx(0));
        let enc = f.data().to_vec();
        assert!(enc.len() - 14 <= 1500, "an outer packet within the MTU");
        let mut r = VecBuf::new(&aws_echo(&enc));
        assert_eq!(pipe.process(&snap, &mut r, 0, 2), Verdict::Tx(0));
        assert_eq!(&r.data()[..6], &ROUTER_MAC);
        returned.push(r.data().to_vec());
        encapsulated.push(enc);
    }
    assert_eq!(
        encapsulated[0][..6],
        encapsulated[1][..6],
        "the fragments reach one appliance"
    );
    let (h, payload) = reassemble(&returned, 1432);
    let (orig, rest) = Ipv4Header::from_slice(&big[14..]).unwrap();
    assert_eq!(
        (h.identification, h.source, h.destination),
        (orig.identification, orig.source, orig.destination)
    );
    assert_eq!(
        payload,
        rest[..usize::from(orig.total_len) - 20],
        "reassembles to the original"
    );

    // With DF the same packet gets an ICMP error, never fragments.
    let mut df = big.clone();
    df[20] |= 0x40;
    set_ipv4_checksum(&mut df[14..34]);
    assert_eq!(
        pipe.process(&snap, &mut VecBuf::new(&df), 0, 3),
        Verdict::Tx(0)
    );
    assert_eq!(pipe.counters.icmp_too_big, 1);

    // An appliance that reassembled the fragments returns 2,528 bytes: over the egress MTU,
    // without DF, so it leaves in fragments of at most 1500.
    let small = udp_without_df(5002, &[1; 100]);
    let mut s = VecBuf::new(&small);
    assert_eq!(pipe.process(&snap, &mut s, 0, 4), Verdict::Tx(0));
    let whole = udp_without_df(5002, &[0x33; 2500]);
    let mut r = VecBuf::new(&linux_return(s.data(), &whole[14..]));
    assert_eq!(pipe.process(&snap, &mut r, 0, 5), Verdict::TxFragments(0));
    let mut out = Vec::new();
    assert!(pipe.fragment(&r, 1500, &mut |f: VecBuf| {
        out.push(f.data().to_vec());
        true
    }));
    assert_eq!((out.len(), pipe.counters.fragmented), (2, 2));
    assert!(out
        .iter()
        .all(|f| f[..6] == ROUTER_MAC && f[6..12] == GW_MAC));
    let (_, payload) = reassemble(&out, 1500);
    assert_eq!(
        payload,
        whole[34..],
        "the returned packet, whole, in its fragments"
    );
    // Only the DF packet, answered with ICMP, counts as oversize.
    assert_eq!(pipe.counters.drops[DropReason::Oversize.index()], 1);
}

/// An appliance that refuses a connection answers the client's SYN with an RST of its own,
/// inside its return: the flow is closed by it, so the client's next SYN is a new flow with
/// the next cookie (as after an RST from either user).
#[test]
fn an_rst_an_appliance_sends_back_closes_the_flow() {
    let (snap, mut pipe) = setup();
    let (client, server) = ([10, 1, 0, 2], [10, 2, 0, 2]);
    let tcp = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8| {
        frame(
            CLIENT_MAC,
            GW_MAC,
            Ips::V4(src, dst),
            L4::Tcp {
                src_port: sport,
                dst_port: dport,
                flags,
            },
            b"",
        )
    };
    let (syn, rst_ack) = (0x02, 0x14);
    let send_syn = |pipe: &mut Pipeline, now: u32| {
        let mut b = VecBuf::new(&tcp(client, server, 40009, 443, syn));
        assert_eq!(pipe.process(&snap, &mut b, 0, now), Verdict::Tx(0));
        let enc = b.data().to_vec();
        let cookie = geneve::parse_aws_header(&enc[42..])
            .unwrap()
            .options
            .flow_cookie
            .unwrap();
        (cookie, enc)
    };
    let (c0, enc) = send_syn(&mut pipe, 1);
    // The appliance's own RST towards the client, returned Linux-style (no options).
    let refusal = tcp(server, client, 443, 40009, rst_ack);
    let mut r = VecBuf::new(&linux_return(&enc, &refusal[14..]));
    assert_eq!(pipe.process(&snap, &mut r, 0, 2), Verdict::Tx(0));
    assert_eq!(
        &r.data()[14..],
        &refusal[14..],
        "the RST reaches the client"
    );
    // A SYN retransmitted before the RST would have been the same connection; after it,
    // the next connection.
    let (c1, _) = send_syn(&mut pipe, 3);
    assert_ne!(c1, c0, "a new cookie after the appliance's RST");
    assert_eq!(pipe.counters.restarted_flows, 1);
    assert!(gwlb::flow_table::is_flow_cookie(c0, c1));
}

/// A TCP SYN on the 5-tuple of a connection that has seen FIN or RST (or, with
/// `tcp_reuse_after_idle_s`, that idled that long) starts a new flow with a new cookie, as
/// AWS does: an echo of the old connection's cookie is refused, the new one's accepted.
#[test]
fn a_syn_on_a_closed_or_idle_tuple_starts_a_new_flow_with_a_new_cookie() {
    let text = CONFIG.replace(
        "attachment_id = 5678\n",
        "attachment_id = 5678\ntcp_reuse_after_idle_s = 30\n",
    );
    let cfg = Config::from_toml_str(&text).expect("config");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let mut pipe = Pipeline::new(4096, Default::default()).expect("pipeline");
    let tcp = |flags: u8| {
        frame(
            CLIENT_MAC,
            GW_MAC,
            Ips::V4([10, 1, 0, 2], [10, 2, 0, 2]),
            L4::Tcp {
                src_port: 40001,
                dst_port: 80,
                flags,
            },
            b"",
        )
    };
    let (syn, ack, fin, rst) = (0x02, 0x10, 0x11, 0x04);
    // Encapsulates at `now` and returns (cookie, the frame sent).
    let send = |pipe: &mut Pipeline, flags: u8, now: u32| {
        let mut b = VecBuf::new(&tcp(flags));
        assert_eq!(pipe.process(&snap, &mut b, 0, now), Verdict::Tx(0));
        let enc = b.data().to_vec();
        let o = geneve::parse_aws_header(&enc[42..]).unwrap().options;
        (o.flow_cookie.unwrap(), enc)
    };
    let echo_ok = |pipe: &mut Pipeline, enc: &[u8], now: u32| {
        pipe.process(&snap, &mut VecBuf::new(&aws_echo(enc)), 0, now)
    };
    let (c0, first) = send(&mut pipe, syn, 1);
    assert_eq!(send(&mut pipe, ack, 2).0, c0);
    assert_eq!(
        send(&mut pipe, fin, 3).0,
        c0,
        "the FIN is still the first connection's"
    );
    // A SYN after the FIN: the next connection, with the next cookie.
    let (c1, second) = send(&mut pipe, syn, 4);
    assert_ne!(c1, c0);
    assert_eq!(pipe.counters.restarted_flows, 1);
    assert_eq!(pipe.counters.new_flows, 2);
    assert_eq!(
        echo_ok(&mut pipe, &first, 5),
        Verdict::Drop(DropReason::NoFlowForReturn),
        "an echo of the old connection's cookie"
    );
    assert_eq!(echo_ok(&mut pipe, &second, 5), Verdict::Tx(0));
    // SYN retransmissions within the idle time are the same connection.
    assert_eq!(send(&mut pipe, syn, 20).0, c1);
    // After an RST, the next SYN starts a third connection.
    assert_eq!(send(&mut pipe, rst, 21).0, c1);
    let (c2, _) = send(&mut pipe, syn, 22);
    assert!(c2 != c1 && c2 != c0);
    // Idle for 30 s (tcp_reuse_after_idle_s): a SYN starts a fourth; a non-SYN never does.
    assert_eq!(send(&mut pipe, ack, 52).0, c2);
    let (c3, _) = send(&mut pipe, syn, 82);
    assert!(![c0, c1, c2].contains(&c3));
    assert_eq!(pipe.counters.restarted_flows, 3);
    // Every connection's cookie is one a node without the entry accepts.
    for c in [c0, c1, c2, c3] {
        assert!(gwlb::flow_table::is_flow_cookie(c0, c), "{c:#x}");
    }
}
