//! Endpoints (tenants) and steering rules through the pipeline (no DPDK): two tenants with
//! the same addresses on different VLANs are kept apart end to end (flows, endpoint ids,
//! returns to their own VLAN and router), and the rules' inspect / bypass / drop actions,
//! decided once per flow, with their counters.

use gwlb::config::Config;
use gwlb::packet_buf::{PacketBuf, VecBuf};
use gwlb::parse::DropReason;
use gwlb::pipeline::{Pipeline, Verdict};
use gwlb::snapshot::{LiveState, Snapshot};
use gwlb_tests::frames::{frame, vlan_tagged, Ips, L4};
use gwlb_tests::geneve_returns::{aws_echo, linux_return, Outer};

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const ROUTER_A: [u8; 6] = [2, 0, 0, 0, 0xa, 1];
const ROUTER_B: [u8; 6] = [2, 0, 0, 0, 0xb, 1];

/// One port; group "fw" (AWS-style appliance .11) and "ids" (Linux-style appliance .12);
/// tenants "a" (VLAN 100) and "b" (QinQ 200/7) with the same addresses.
const CONFIG: &str = r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
[[target_groups]]
name = "fw"
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
[[target_groups]]
name = "ids"
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.12"
mac = "02:00:00:00:00:0c"

[[endpoints]]
name = "a"
ports = ["p"]
vlan = [100]
target_group = "fw"
endpoint_id = 0xa
attachment_id = 1
[[endpoints.routes]]
prefix = "0.0.0.0/0"
via = "10.1.255.1"
mac = "02:00:00:00:0a:01"
[[endpoints.rules]]
name = "web-to-ids"
protocols = [6]
destination_ports = ["80"]
action = "inspect"
target_group = "ids"
[[endpoints.rules]]
name = "backup"
destinations = ["10.9.0.0/16"]
action = "bypass"
[[endpoints.rules]]
name = "telnet"
protocols = [6]
destination_ports = ["23"]
action = "drop"
tcp_reset = true

[[endpoints]]
name = "b"
ports = ["p"]
vlan = [200, 7]
target_group = "fw"
endpoint_id = 0xb
geneve_vni = 22
[[endpoints.routes]]
prefix = "0.0.0.0/0"
via = "10.1.255.1"
mac = "02:00:00:00:0b:01"
[[endpoints.rules]]
name = "no-dns"
protocols = [17]
destination_ports = ["53"]
action = "drop"
"#;

fn setup() -> (Config, Snapshot, Pipeline) {
    let cfg = Config::from_toml_str(CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    (cfg, snap, Pipeline::new(4096, Default::default()).unwrap())
}

/// The same packet for every tenant: 10.1.0.2:sport -> 10.2.0.2:dport, tagged `vlan`
/// (outer first).
fn user(l4: L4, reverse: bool, vlan: &[u16]) -> Vec<u8> {
    let (a, b) = ([10, 1, 0, 2], [10, 2, 0, 2]);
    let (ips, l4) = if reverse {
        let l4 = match l4 {
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            } => L4::Tcp {
                src_port: dst_port,
                dst_port: src_port,
                flags,
            },
            L4::Udp { src_port, dst_port } => L4::Udp {
                src_port: dst_port,
                dst_port: src_port,
            },
            other => other,
        };
        (Ips::V4(b, a), l4)
    } else {
        (Ips::V4(a, b), l4)
    };
    let mut f = frame(CLIENT_MAC, GW_MAC, ips, l4, b"payload of the tenant");
    for &v in vlan.iter().rev() {
        f = vlan_tagged(&f, 0, v);
    }
    f
}

fn tcp(dport: u16, flags: u8) -> L4 {
    L4::Tcp {
        src_port: 40000,
        dst_port: dport,
        flags,
    }
}

fn process(snap: &Snapshot, pipe: &mut Pipeline, f: &[u8]) -> (Verdict, Vec<u8>) {
    let mut b = VecBuf::with_headroom(f, 256);
    let v = pipe.process(snap, &mut b, 0, 1);
    (v, b.data().to_vec())
}

/// The Geneve facts of an encapsulation: (appliance's last octet, VNI, endpoint id,
/// attachment id).
fn geneve_of(d: &[u8]) -> (u8, u32, u64, u64) {
    let g = geneve::Packet::new_checked(&d[42..]).unwrap();
    let o = geneve::AwsOptions::find(g.options());
    (
        d[33],
        g.vni(),
        o.endpoint_id.unwrap(),
        o.attachment_id.unwrap(),
    )
}

/// The IP packet of a user frame (after its tags).
fn ip_of(f: &[u8]) -> &[u8] {
    let mut off = 12;
    while matches!(u16::from_be_bytes([f[off], f[off + 1]]), 0x8100 | 0x88a8) {
        off += 4;
    }
    &f[off + 2..]
}

/// The VLAN ids of a frame, outer first, and its L2 length.
fn tags_of(f: &[u8]) -> (Vec<u16>, [u16; 2]) {
    let mut ids = Vec::new();
    let mut tpids = [0u16; 2];
    let mut off = 12;
    while matches!(u16::from_be_bytes([f[off], f[off + 1]]), 0x8100 | 0x88a8) {
        tpids[ids.len().min(1)] = u16::from_be_bytes([f[off], f[off + 1]]);
        ids.push(u16::from_be_bytes([f[off + 2], f[off + 3]]) & 0x0fff);
        off += 4;
    }
    (ids, tpids)
}

#[test]
fn two_tenants_with_the_same_addresses_stay_apart_end_to_end() {
    let (_, snap, mut pipe) = setup();
    let udp = L4::Udp {
        src_port: 5000,
        dst_port: 6000,
    };
    for (vlan, vni, eid, aid, router) in [
        (&[100u16][..], 0u32, 0xau64, 1u64, ROUTER_A),
        (&[200, 7][..], 22, 0xb, 0, ROUTER_B),
    ] {
        let f = user(udp, false, vlan);
        let (v, enc) = process(&snap, &mut pipe, &f);
        assert_eq!(v, Verdict::Tx(0), "{vlan:?}");
        // To the default group "fw", with the tenant's VNI and ids.
        assert_eq!(geneve_of(&enc), (11, vni, eid, aid), "{vlan:?}");
        assert_eq!(&enc[82..], ip_of(&f), "the inner packet, untagged");
        // The AWS-style appliance echoes it: back to the tenant's router, with its tags.
        let (v, out) = process(&snap, &mut pipe, &aws_echo(&enc));
        assert_eq!(v, Verdict::Tx(0), "{vlan:?}");
        assert_eq!(&out[0..6], &router[..]);
        assert_eq!(&out[6..12], &GW_MAC[..]);
        let (ids, tpids) = tags_of(&out);
        assert_eq!(ids, vlan, "its own tags restored");
        if vlan.len() == 2 {
            assert_eq!(tpids, [0x88a8, 0x8100], "QinQ: an S-tag then a C-tag");
        }
        assert_eq!(ip_of(&out), ip_of(&f), "the packet unchanged");
    }
    // Same 5-tuple, two tenants: two flows.
    assert_eq!(pipe.counters.new_flows, 2);
    assert_eq!(pipe.counters.decapsulated, 2);
    // Untagged, or with a tag no endpoint has: nobody's.
    for vlan in [&[][..], &[300][..]] {
        let (v, _) = process(&snap, &mut pipe, &user(udp, false, vlan));
        assert_eq!(v, Verdict::Drop(DropReason::NoEndpoint));
    }
}

#[test]
fn a_return_goes_to_the_tenant_its_endpoint_id_names() {
    let (_, snap, mut pipe) = setup();
    let udp = L4::Udp {
        src_port: 5000,
        dst_port: 6000,
    };
    let (_, enc_a) = process(&snap, &mut pipe, &user(udp, false, &[100]));
    let (_, enc_b) = process(&snap, &mut pipe, &user(udp, false, &[200, 7]));
    // Tenant b's VNI with tenant a's endpoint id: no endpoint of "fw" looks like that.
    let mut forged = aws_echo(&enc_a);
    forged[46] = 0;
    forged[47] = 0;
    forged[48] = 22;
    let (v, _) = process(&snap, &mut pipe, &forged);
    assert_eq!(v, Verdict::Drop(DropReason::ReturnEndpointUnknown));
    // A Linux-style return (no options): the VNI alone names the tenant.
    let linux = linux_return(&Outer::reply_to(&enc_b), &enc_b[82..], 22);
    let (v, out) = process(&snap, &mut pipe, &linux);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&out[0..6], &ROUTER_B[..]);
    assert_eq!(tags_of(&out).0, [200, 7]);
}

#[test]
fn rules_inspect_bypass_and_drop_once_per_flow() {
    let (cfg, snap, mut pipe) = setup();
    // Counters are kept by rule id.
    let rule = |name: &str| {
        let r = snap.rules.iter().find(|r| r.name == name && r.zone == 1);
        usize::from(r.unwrap().id)
    };
    // Port 80 goes to "ids" (appliance .12), both directions of the flow.
    for (reverse, flags) in [(false, 0x02), (true, 0x12), (false, 0x10)] {
        let (v, enc) = process(&snap, &mut pipe, &user(tcp(80, flags), reverse, &[100]));
        assert_eq!(v, Verdict::Tx(0));
        assert_eq!(geneve_of(&enc).0, 12, "inspected by ids");
        assert_eq!(geneve_of(&enc).2, cfg.endpoints[0].endpoint_id);
    }
    assert_eq!(pipe.counters.rules[rule("web-to-ids")], [3, 3 * 61, 1]);
    // The backup network bypasses inspection: forwarded, tags kept, never encapsulated.
    let f = {
        let mut f = frame(
            CLIENT_MAC,
            GW_MAC,
            Ips::V4([10, 1, 0, 2], [10, 9, 0, 9]),
            tcp(873, 0x02),
            b"rsync",
        );
        f = vlan_tagged(&f, 0, 100);
        f
    };
    let encapsulated = pipe.counters.encapsulated;
    for _ in 0..3 {
        let (v, out) = process(&snap, &mut pipe, &f);
        assert_eq!(v, Verdict::Tx(0));
        assert_eq!(&out[0..6], &ROUTER_A[..]);
        assert_eq!(&out[12..], &f[12..], "tags and packet unchanged");
    }
    assert_eq!(
        pipe.counters.encapsulated, encapsulated,
        "no appliance saw it"
    );
    assert_eq!(pipe.counters.bypassed, 3);
    assert_eq!(pipe.counters.rules[rule("backup")][0], 3);
    assert_eq!(
        pipe.counters.rules[rule("backup")][2],
        1,
        "one flow, decided once"
    );
    // Telnet is dropped and answered with a RST (back to the client, its tag kept).
    let (v, rst) = process(&snap, &mut pipe, &user(tcp(23, 0x02), false, &[100]));
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(tags_of(&rst).0, [100]);
    let t = &ip_of(&rst)[20..];
    assert_eq!(t[13] & 0x04, 0x04, "RST");
    assert_eq!(pipe.counters.drops[DropReason::PolicyDrop.index()], 1);
    assert_eq!(pipe.counters.tcp_resets, 1);
    // A drop is not stored: the next packet is decided (and dropped) again.
    let flows = pipe.flows().len();
    let (v, _) = process(&snap, &mut pipe, &user(tcp(23, 0x02), false, &[100]));
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(pipe.flows().len(), flows);
    // Tenant b's rule drops its DNS without a reset; tenant a's DNS is inspected by "fw".
    let dns = L4::Udp {
        src_port: 5353,
        dst_port: 53,
    };
    let (v, _) = process(&snap, &mut pipe, &user(dns, false, &[200, 7]));
    assert_eq!(v, Verdict::Drop(DropReason::PolicyDrop));
    let (v, enc) = process(&snap, &mut pipe, &user(dns, false, &[100]));
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(geneve_of(&enc).0, 11);
}

#[test]
fn burst_and_single_packet_paths_agree() {
    let (_, snap, mut single) = setup();
    let (_, _, mut burst) = setup();
    let frames: Vec<Vec<u8>> = [80u16, 23, 873, 5000]
        .iter()
        .flat_map(|&port| {
            [&[100u16][..], &[200, 7][..], &[][..]]
                .into_iter()
                .map(move |vlan| user(tcp(port, 0x02), false, vlan))
        })
        .collect();
    let mut bufs: Vec<VecBuf> = frames
        .iter()
        .map(|f| VecBuf::with_headroom(f, 256))
        .collect();
    let mut verdicts = vec![Verdict::ToHost; bufs.len()];
    burst.process_burst(&snap, &mut bufs, 0, 1, &mut verdicts);
    for (i, f) in frames.iter().enumerate() {
        let (v, out) = process(&snap, &mut single, f);
        assert_eq!(v, verdicts[i], "frame {i}");
        assert_eq!(out, bufs[i].data(), "frame {i}");
    }
    assert_eq!(single.counters, burst.counters);
}

/// An ICMP error quoting a flow the gateway does not hold opens no endpoint flow: it would
/// be decided on a flow its sender chooses (a way past a `forward` drop rule).
#[test]
fn an_icmp_error_opens_no_endpoint_flow() {
    use gwlb_tests::frames::eth_ip;
    use gwlb_tests::headers::{icmp, ipv4, tcp as tcp_seg};
    let (_, snap, mut pipe) = setup();
    // Quoted: 10.2.0.2:23 -> 10.1.0.2:40000, as if the other side had opened it.
    let quoted = ipv4(
        [10, 2, 0, 2],
        [10, 1, 0, 2],
        6,
        &[],
        0,
        &tcp_seg(23, 40000, 0x02, b""),
    );
    let err = ipv4(
        [10, 1, 0, 2],
        [10, 2, 0, 2],
        1,
        &[],
        0,
        &icmp(3, 1, &quoted[..28]),
    );
    let f = vlan_tagged(&eth_ip(GW_MAC, CLIENT_MAC, &err), 0, 100);
    let (v, _) = process(&snap, &mut pipe, &f);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpErrorWithoutFlow));
    assert_eq!(pipe.flows().len(), 0);
    // Telnet is still refused.
    let (_, rst) = process(&snap, &mut pipe, &user(tcp(23, 0x02), false, &[100]));
    assert_eq!(ip_of(&rst)[20 + 13] & 0x04, 0x04);
}

/// A tagged frame to the port's own address is a tenant's (it may use the same address),
/// not the host's, and never a Geneve return.
#[test]
fn a_tagged_frame_to_the_port_address_is_the_tenants() {
    use gwlb_tests::frames::eth_ip;
    use gwlb_tests::headers::{ipv4, udp as udp_dgram};
    let (_, snap, mut pipe) = setup();
    let ip = ipv4(
        [10, 0, 0, 9],
        [10, 0, 0, 1],
        17,
        &[],
        0,
        &udp_dgram(5000, 6081, b"x"),
    );
    let untagged = eth_ip(GW_MAC, CLIENT_MAC, &ip);
    let (v, enc) = process(&snap, &mut pipe, &vlan_tagged(&untagged, 0, 100));
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(geneve_of(&enc).2, 0xa, "encapsulated for tenant a");
    // Untagged, it is a Geneve return from nobody known (as on any port facing
    // appliances), and other traffic to the address is the host's.
    let (v, _) = process(&snap, &mut pipe, &untagged);
    assert_eq!(v, Verdict::Drop(DropReason::UnknownAppliance));
    let ip = ipv4(
        [10, 0, 0, 9],
        [10, 0, 0, 1],
        17,
        &[],
        0,
        &udp_dgram(5000, 7, b"x"),
    );
    let (v, _) = process(&snap, &mut pipe, &eth_ip(GW_MAC, CLIENT_MAC, &ip));
    assert_eq!(v, Verdict::ToHost);
}

/// Fragments are never matched on ports (the table keys them on the 3-tuple): a first
/// fragment to the backup port is inspected like the rest of its datagram.
#[test]
fn fragments_are_not_matched_on_ports() {
    use gwlb_tests::frames::eth_ip;
    use gwlb_tests::headers::{ipv4, tcp as tcp_seg};
    let (_, snap, mut pipe) = setup();
    // MF set, offset 0: a first fragment to 10.2.0.2:80 (rule "web-to-ids" by port).
    let ip = ipv4(
        [10, 1, 0, 2],
        [10, 2, 0, 2],
        6,
        &[],
        0x2000,
        &tcp_seg(40000, 80, 0x02, &[0; 32]),
    );
    let (v, enc) = process(
        &snap,
        &mut pipe,
        &vlan_tagged(&eth_ip(GW_MAC, CLIENT_MAC, &ip), 0, 100),
    );
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(geneve_of(&enc).0, 11, "the default group, not ids");
}

/// Tenant "c" (VLAN 400) whose web traffic a chain sends through "fw" then "ids".
const CHAIN: &str = r#"
[[endpoints]]
name = "c"
ports = ["p"]
vlan = [400]
target_group = "fw"
endpoint_id = 0xc
[[endpoints.routes]]
prefix = "0.0.0.0/0"
via = "10.1.255.1"
mac = "02:00:00:00:0c:01"
[[endpoints.rules]]
name = "fw-then-ids"
protocols = [6]
destination_ports = ["80"]
action = "chain"
chain = ["fw", "ids"]
"#;

/// A chain: the flow's first packet, and everything in its direction, visits "fw" then
/// "ids" (each appliance returns it to gwlb, which sends it to the next group), then goes
/// on to its destination unchanged; the reply visits "ids" then "fw". Each stage keeps its
/// appliance, the flow its cookie, and the tenant its ids.
#[test]
fn a_chain_sends_a_flow_through_each_group_in_turn_and_the_reply_back_through_them() {
    let text = format!("{CONFIG}{CHAIN}");
    let cfg = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let mut pipe = Pipeline::new(4096, Default::default()).unwrap();
    let cookie_of = |d: &[u8]| {
        let g = geneve::Packet::new_checked(&d[42..]).unwrap();
        geneve::AwsOptions::find(g.options()).flow_cookie.unwrap()
    };
    let router_c = [2, 0, 0, 0, 0xc, 1];
    let mut cookies = Vec::new();
    for (reverse, order) in [(false, [11u8, 12]), (true, [12, 11])] {
        let f = user(
            tcp(80, 0x02 | if reverse { 0x10 } else { 0 }),
            reverse,
            &[400],
        );
        let (v, mut d) = process(&snap, &mut pipe, &f);
        for (i, want) in order.into_iter().enumerate() {
            assert_eq!(v, Verdict::Tx(0), "reverse {reverse}, stage {i}");
            let (appliance, _, eid, _) = geneve_of(&d);
            assert_eq!(
                (appliance, eid),
                (want, 0xc),
                "reverse {reverse}, stage {i}"
            );
            assert_eq!(&d[82..], ip_of(&f), "the inner packet, untouched");
            cookies.push(cookie_of(&d));
            // The appliance returns it (AWS style, echoing the options).
            let (v2, next) = process(&snap, &mut pipe, &aws_echo(&d));
            assert_eq!(v2, Verdict::Tx(0), "return of stage {i}");
            d = next;
        }
        // After the last stage: to the tenant's router with its tag, unchanged.
        assert_eq!(&d[0..6], &router_c[..], "reverse {reverse}");
        assert_eq!(tags_of(&d).0, vec![400]);
        assert_eq!(ip_of(&d), ip_of(&f));
    }
    assert!(
        cookies.windows(2).all(|w| w[0] == w[1]),
        "one cookie: {cookies:x?}"
    );
    assert_eq!(
        pipe.counters.new_flows, 1,
        "one flow (its later stage has an entry of its own)"
    );
    assert_eq!(pipe.counters.encapsulated, 4);
    assert_eq!(pipe.counters.decapsulated, 2);
    let rule = snap
        .rules
        .iter()
        .find(|r| r.name == "fw-then-ids")
        .map(|r| usize::from(r.id))
        .expect("the chain rule");
    assert_eq!(
        pipe.counters.rules[rule][0], 2,
        "both user packets counted under it"
    );

    // A return from the second stage's appliance ("ids") of a flow that has not reached
    // that stage (no entry for it yet) is refused.
    let lone = user(
        L4::Tcp {
            src_port: 40001,
            dst_port: 80,
            flags: 0x02,
        },
        false,
        &[400],
    );
    let (_, to_fw) = process(&snap, &mut pipe, &lone);
    assert_eq!(geneve_of(&to_fw).0, 11);
    let mut from_ids = aws_echo(&to_fw);
    from_ids[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x0c]);
    from_ids[26..30].copy_from_slice(&[10, 0, 0, 12]);
    gwlb_tests::checksum::set_ipv4_checksum(&mut from_ids[14..34]);
    let (v, _) = process(&snap, &mut pipe, &from_ids);
    assert_eq!(v, Verdict::Drop(DropReason::NoFlowForReturn));
}

/// Issue 16: a live change that inserts rules before a flow's rule and removes others
/// disturbs no established flow: an inspected flow keeps its group and its counts stay its
/// rule's, and a chained flow still visits every stage of its chain.
#[test]
fn a_change_that_moves_rules_disturbs_no_other_flow() {
    let text = format!("{CONFIG}{CHAIN}");
    let cfg = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut live = LiveState::default();
    live.zones.assign(&cfg);
    live.rule_ids.assign(&cfg);
    let snap = Snapshot::build(&cfg, &[GW_MAC], &live, 1).expect("snapshot");
    let mut pipe = Pipeline::new(4096, Default::default()).unwrap();
    let id = |snap: &Snapshot, zone: u16, name: &str| {
        let r = snap.rules.iter().find(|r| r.zone == zone && r.name == name);
        usize::from(r.expect(name).id)
    };
    // Tenant a's web flow (inspected by "ids", .12) and tenant c's chained one (fw, ids).
    let web = |flags| user(tcp(80, flags), false, &[100]);
    let chained = |flags| user(tcp(80, flags), false, &[400]);
    let through_chain = |snap: &Snapshot, pipe: &mut Pipeline, f: &[u8]| {
        let mut seen = Vec::new();
        let (mut v, mut d) = process(snap, pipe, f);
        while v == Verdict::Tx(0) && d.len() > 42 && d[23] == 17 && d[36..38] == [0x17, 0xc1] {
            seen.push(geneve_of(&d).0);
            (v, d) = process(snap, pipe, &aws_echo(&d));
        }
        (v, seen, d)
    };
    assert_eq!(geneve_of(&process(&snap, &mut pipe, &web(0x02)).1).0, 12);
    let (v, seen, _) = through_chain(&snap, &mut pipe, &chained(0x02));
    assert_eq!((v, seen), (Verdict::Tx(0), vec![11, 12]));

    // A rule first in each endpoint, "backup" gone.
    let edited = text
        .replacen(
            "[[endpoints.rules]]\nname = \"web-to-ids\"",
            "[[endpoints.rules]]\nname = \"quic\"\nprotocols = [17]\naction = \"bypass\"\n[[endpoints.rules]]\nname = \"web-to-ids\"",
            1,
        )
        .replacen(
            "[[endpoints.rules]]\nname = \"fw-then-ids\"",
            "[[endpoints.rules]]\nname = \"ssh\"\nprotocols = [6]\ndestination_ports = [\"22\"]\naction = \"drop\"\n[[endpoints.rules]]\nname = \"fw-then-ids\"",
            1,
        )
        .replacen("name = \"backup\"\ndestinations = [\"10.9.0.0/16\"]\naction = \"bypass\"\n[[endpoints.rules]]\n", "", 1);
    let cfg2 = Config::from_toml_str(&edited).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg2.endpoints[0].rules.iter().all(|r| r.name != "backup"));
    live.zones.assign(&cfg2);
    live.rule_ids.assign(&cfg2);
    let snap2 = Snapshot::build(&cfg2, &[GW_MAC], &live, 2).expect("snapshot");
    let (za, zc) = (snap.endpoints[0].zone, snap.endpoints[2].zone);
    assert_ne!(
        snap.rules.iter().position(|r| r.name == "web-to-ids"),
        snap2.rules.iter().position(|r| r.name == "web-to-ids"),
        "the change moved the rules"
    );
    for (z, name) in [(za, "web-to-ids"), (za, "telnet"), (zc, "fw-then-ids")] {
        assert_eq!(
            id(&snap, z, name),
            id(&snap2, z, name),
            "{name} keeps its id"
        );
    }
    let before = [
        pipe.counters.rules[id(&snap2, za, "web-to-ids")],
        pipe.counters.rules[id(&snap2, zc, "fw-then-ids")],
    ];
    for _ in 0..3 {
        assert_eq!(geneve_of(&process(&snap2, &mut pipe, &web(0x10)).1).0, 12);
        let (v, seen, d) = through_chain(&snap2, &mut pipe, &chained(0x10));
        assert_eq!(
            (v, seen),
            (Verdict::Tx(0), vec![11, 12]),
            "the chain, whole"
        );
        assert_eq!(ip_of(&d), ip_of(&chained(0x10)));
    }
    let after = [
        pipe.counters.rules[id(&snap2, za, "web-to-ids")],
        pipe.counters.rules[id(&snap2, zc, "fw-then-ids")],
    ];
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            a[0] - b[0],
            3,
            "each flow's packets still count under its rule"
        );
        assert_eq!(a[2], b[2], "no new flow");
    }
    for (z, name) in [(za, "quic"), (zc, "ssh"), (za, "default"), (zc, "default")] {
        assert_eq!(pipe.counters.rules[id(&snap2, z, name)][0], 0, "{name}");
    }
}

/// Sessions that select by endpoint and steering rule (issue 17), after [`sensors`].
const SESSIONS: &str = r#"
[[mirror_sessions]]
name = "a-web"
target_group = "sensors"
endpoints = ["a"]
rules = ["web-to-ids"]
[[mirror_sessions]]
name = "b-all-after"
target_group = "sensors"
vni = 2
copy_point = "after_inspection"
endpoints = ["b"]
"#;

/// The sensor pool of [`SESSIONS`]: one sensor, 10.0.0.50.
fn sensors() -> String {
    gwlb_tests::configs::sensor_pool_toml("sensors", &[("10.0.0.50", [2, 0, 0, 0, 0, 0x32])])
}

/// A session naming an endpoint copies only that tenant's traffic, and naming a rule only
/// the flows that rule decides: tenant a's web flow (rule "web-to-ids") is copied, its
/// other flows and tenant b's same-addressed web flow are not; a session on tenant b after
/// inspection copies b's returns and not a's.
#[test]
fn mirror_sessions_select_by_endpoint_and_rule() {
    let text = format!("{CONFIG}{}{SESSIONS}", sensors());
    let cfg = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    let mut pipe = Pipeline::new(4096, Default::default()).unwrap();
    // Mirrors before inspection, then processes: (copies' VNIs, verdict, output).
    let send = |pipe: &mut Pipeline, f: &[u8]| {
        let mut vnis = Vec::new();
        let mut bufs = [VecBuf::with_headroom(f, 256)];
        pipe.mirror_before(&snap, &bufs, 0, 1, &mut |c: VecBuf, _, _| {
            vnis.push(u32::from_be_bytes([
                0,
                c.data()[46],
                c.data()[47],
                c.data()[48],
            ]));
            true
        });
        let mut v = [Verdict::ToHost];
        pipe.process_burst(&snap, &mut bufs, 0, 1, &mut v);
        (vnis, v[0], bufs[0].data().to_vec())
    };
    // Tenant a, TCP 80: "web-to-ids" -> copied (VNI 1), both directions.
    let (c, v, enc_a) = send(&mut pipe, &user(tcp(80, 0x02), false, &[100]));
    assert_eq!((c, v), (vec![1], Verdict::Tx(0)));
    let (c, _, _) = send(&mut pipe, &user(tcp(80, 0x12), true, &[100]));
    assert_eq!(c, vec![1], "the reply too");
    // Tenant a, TCP 443 (its default: fw): not the rule's.
    let (c, v, _) = send(&mut pipe, &user(tcp(443, 0x02), false, &[100]));
    assert_eq!((c, v), (vec![], Verdict::Tx(0)));
    // Tenant b, TCP 80, the same addresses: another endpoint.
    let (c, v, enc_b) = send(&mut pipe, &user(tcp(80, 0x02), false, &[200, 7]));
    assert_eq!((c, v), (vec![], Verdict::Tx(0)));
    // After inspection: b's return is copied by "b-all-after" (VNI 2), a's is not.
    let after = |pipe: &mut Pipeline, ret: Vec<u8>| {
        let mut bufs = [VecBuf::with_headroom(&ret, 256)];
        let mut vs = [Verdict::ToHost];
        pipe.process_burst(&snap, &mut bufs, 0, 2, &mut vs);
        assert_eq!(vs[0], Verdict::Tx(0));
        let mut vnis = Vec::new();
        pipe.mirror_after(
            &snap,
            &bufs,
            &vs,
            pipe.decapsulated_mask(),
            2,
            &mut |c, _, _| {
                vnis.push(u32::from_be_bytes([
                    0,
                    c.data()[46],
                    c.data()[47],
                    c.data()[48],
                ]));
                true
            },
        );
        vnis
    };
    assert_eq!(after(&mut pipe, aws_echo(&enc_b)), vec![2]);
    assert_eq!(after(&mut pipe, aws_echo(&enc_a)), Vec::<u32>::new());
}

/// Sessions name existing endpoints, and rules of those endpoints.
#[test]
fn mirror_selection_is_validated_naming_the_field() {
    let bad = |session: &str, field: &str, why: &str| {
        let text = format!(
            "{CONFIG}{}{}",
            sensors(),
            SESSIONS.replace("endpoints = [\"a\"]\nrules = [\"web-to-ids\"]", session)
        );
        let e = Config::from_toml_str(&text).expect_err(field).to_string();
        assert!(e.contains(field) && e.contains(why), "{e}");
    };
    bad(
        "endpoints = [\"z\"]",
        "mirror_sessions[0].endpoints[0]",
        "no endpoint has this name",
    );
    bad(
        "endpoints = [\"a\", \"a\"]",
        "mirror_sessions[0].endpoints[1]",
        "named twice",
    );
    bad(
        "rules = [\"web-to-ids\"]",
        "mirror_sessions[0].rules",
        "name the endpoints too",
    );
    bad(
        "endpoints = [\"b\"]\nrules = [\"web-to-ids\"]",
        "mirror_sessions[0].rules[0]",
        "none of the session's endpoints",
    );
    let ok = format!(
        "{CONFIG}{}{}",
        sensors(),
        SESSIONS.replace(
            "rules = [\"web-to-ids\"]",
            "rules = [\"default\", \"backup\"]"
        )
    );
    Config::from_toml_str(&ok).unwrap_or_else(|e| panic!("{e}"));
}

/// A chain names 2 to 4 known groups, none twice, only as a rule's action.
#[test]
fn chains_are_validated_naming_the_field() {
    let rule = |extra: &str| {
        format!(
            "{CONFIG}{}",
            CHAIN.replace("chain = [\"fw\", \"ids\"]\n", extra)
        )
    };
    let cases = [
        (
            "chain = [\"fw\", \"fw\"]\n",
            "endpoints[2].rules[0].chain[1]",
            "named twice",
        ),
        (
            "chain = [\"fw\"]\n",
            "endpoints[2].rules[0].chain",
            "2 to 4",
        ),
        (
            "chain = [\"fw\", \"nope\"]\n",
            "endpoints[2].rules[0].chain[1]",
            "nope",
        ),
        ("", "endpoints[2].rules[0].chain", "2 to 4"),
    ];
    for (extra, field, says) in cases {
        let err = Config::from_toml_str(&rule(extra)).unwrap_err();
        assert_eq!(err.field(), Some(field), "{extra}: {err}");
        assert!(err.to_string().contains(says), "{extra}: {err}");
    }
    let inspect_with_chain = format!(
        "{CONFIG}{}",
        CHAIN.replace(
            "action = \"chain\"",
            "action = \"inspect\"\ntarget_group = \"ids\""
        )
    );
    let err = Config::from_toml_str(&inspect_with_chain).unwrap_err();
    assert_eq!(err.field(), Some("endpoints[2].rules[0].chain"), "{err}");
    let default_chain = format!(
        "{CONFIG}{}",
        CHAIN.replace(
            "target_group = \"fw\"\nendpoint_id = 0xc",
            "default_action = \"chain\"\nendpoint_id = 0xc"
        )
    );
    let err = Config::from_toml_str(&default_chain).unwrap_err();
    assert_eq!(err.field(), Some("endpoints[2].default_action"), "{err}");
}
