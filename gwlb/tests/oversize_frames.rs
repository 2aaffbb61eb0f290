//! A received frame too big for gwlb counts as `oversize` (issue 18), through the pipeline
//! (no DPDK), on both of its paths (`process`, `process_burst`): a frame that a receiver cut
//! at the port's MTU or beyond (its IP length claims more than arrived) is `oversize`, while
//! an IP length that runs past a frame shorter than the MTU stays a parse error (malformed,
//! nothing cuts there). The rule itself: `parse::received_error`.

use gwlb::config::Config;
use gwlb::packet_buf::VecBuf;
use gwlb::parse::DropReason;
use gwlb::pipeline::{Pipeline, Verdict};
use gwlb::snapshot::{LiveState, Snapshot};
use gwlb_tests::frames::{frame, vlan_tagged, Ips, L4};

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];

/// One-arm, MTU 1500 (the default) or as given.
fn config(mtu: u16) -> String {
    format!(
        r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
mtu = {mtu}
[[target_groups]]
name = "fw"
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
"#
    )
}

fn setup(mtu: u16) -> (Snapshot, Pipeline) {
    let cfg = Config::from_toml_str(&config(mtu)).expect("config");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    (snap, Pipeline::new(4096, Default::default()).unwrap())
}

/// A user frame of a UDP datagram with an IP packet of `ip_len` bytes (IPv4 or IPv6),
/// VLAN-tagged when `vlan`, of which only the first `ip_received` IP bytes arrived.
fn cut(v6: bool, vlan: bool, ip_len: usize, ip_received: usize) -> Vec<u8> {
    let ips = if v6 {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        let mut b = a;
        a[15] = 2;
        b[15] = 3;
        Ips::V6(a, b)
    } else {
        Ips::V4([10, 1, 0, 2], [10, 2, 0, 2])
    };
    let header = if v6 { 40 + 8 } else { 20 + 8 };
    let l4 = L4::Udp {
        src_port: 4000,
        dst_port: 53,
    };
    let payload = vec![0x5a; ip_len - header];
    let mut f = frame(CLIENT_MAC, GW_MAC, ips, l4, &payload);
    if vlan {
        f = vlan_tagged(&f, 0, 100);
    }
    let l2 = if vlan { 18 } else { 14 };
    assert_eq!(f.len(), l2 + ip_len);
    f.truncate(l2 + ip_received);
    f
}

/// The verdict of `f` on a port of MTU `mtu`, by `process` and by `process_burst` (which
/// must agree, and count a drop once each).
fn verdict(mtu: u16, f: &[u8]) -> Verdict {
    let (snap, mut pipe) = setup(mtu);
    let single = pipe.process(&snap, &mut VecBuf::with_headroom(f, 256), 0, 1);
    let mut bufs = [VecBuf::with_headroom(f, 256)];
    let mut verdicts = [Verdict::Drop(DropReason::NotIp)];
    pipe.process_burst(&snap, &mut bufs, 0, 1, &mut verdicts);
    assert_eq!(single, verdicts[0], "process and process_burst agree");
    if let Verdict::Drop(r) = single {
        assert_eq!(pipe.counters.drops[r.index()], 2, "counted, once per path");
    }
    single
}

#[test]
fn a_frame_cut_at_the_mtu_is_oversize() {
    for (v6, vlan) in [(false, false), (false, true), (true, false), (true, true)] {
        let what = format!("v6 {v6}, tagged {vlan}");
        // A 4000-byte packet cut to the MTU (1500 IP bytes: a full-size frame).
        assert_eq!(
            verdict(1500, &cut(v6, vlan, 4000, 1500)),
            Verdict::Drop(DropReason::Oversize),
            "{what}"
        );
        // Cut beyond the MTU (what a 2 KiB af_packet ring frame keeps of a GRO packet).
        assert_eq!(
            verdict(1500, &cut(v6, vlan, 9000, 2000)),
            Verdict::Drop(DropReason::Oversize),
            "{what}"
        );
        // The same frame on a port with a larger MTU was not cut by its receiver: the
        // length lies.
        let malformed = if v6 {
            DropReason::Ipv6PayloadBeyondBuffer
        } else {
            DropReason::Ipv4TotalLengthBeyondBuffer
        };
        assert_eq!(
            verdict(9000, &cut(v6, vlan, 4000, 1500)),
            Verdict::Drop(malformed),
            "{what}"
        );
        // A length past a frame shorter than the MTU: malformed, whatever it claims.
        assert_eq!(
            verdict(1500, &cut(v6, vlan, 4000, 1499)),
            Verdict::Drop(malformed),
            "{what}"
        );
        assert_eq!(
            verdict(1500, &cut(v6, vlan, 1400, 200)),
            Verdict::Drop(malformed),
            "{what}"
        );
        // Whole: encapsulated.
        assert_eq!(
            verdict(1500, &cut(v6, vlan, 1400, 1400)),
            Verdict::Tx(0),
            "{what}"
        );
    }
}
