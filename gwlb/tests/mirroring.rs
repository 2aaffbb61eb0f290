//! Traffic mirroring through the pipeline (no DPDK): what a session selects, the copies'
//! encapsulation (VXLAN, Geneve with gwlb's mirror option), byte-equal inner frames, one
//! sensor per flow for both directions, 1-in-N sampling, snap length, the after-inspection
//! copy point, and that a missing sensor costs the originals nothing.

use gwlb::config::Config;
use gwlb::control::registry::Registry;
use gwlb::mirror::{MirrorCounter, GENEVE_MIRROR_CLASS, VXLAN_PORT};
use gwlb::packet_buf::{PacketBuf, VecBuf};
use gwlb::pipeline::{Pipeline, Share, Verdict};
use gwlb::snapshot::{LiveState, Snapshot};
use gwlb_tests::frames::{frame, Ips, L4};
use gwlb_tests::geneve_returns::aws_echo;

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const SENSORS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 0x31], [2, 0, 0, 0, 0, 0x32]];

const CONFIG: &str = r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.0.254"
port = "p"
[[neighbors]]
address = "10.0.0.254"
mac = "02:00:00:00:00:fe"
port = "p"
[[target_groups]]
name = "fw"
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
[[target_groups]]
name = "sensors"
user_ports = []
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.31"
mac = "02:00:00:00:00:31"
[[target_groups.targets]]
address = "10.0.0.32"
mac = "02:00:00:00:00:32"
"#;

fn setup(sessions: &str) -> (Config, Snapshot, Pipeline) {
    let cfg = Config::from_toml_str(&format!("{CONFIG}{sessions}")).expect("config");
    let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
    (cfg, snap, Pipeline::new(4096, Default::default()).unwrap())
}

fn udp(sport: u16, reverse: bool) -> Vec<u8> {
    let (a, b) = ([10, 1, 0, 2], [10, 2, 0, 2]);
    let (ips, s, d) = if reverse {
        (Ips::V4(b, a), 53, sport)
    } else {
        (Ips::V4(a, b), sport, 53)
    };
    frame(
        CLIENT_MAC,
        GW_MAC,
        ips,
        L4::Udp {
            src_port: s,
            dst_port: d,
        },
        &[b'm'; 100],
    )
}

/// Mirrors (before inspection) and processes one frame; returns the copies and the verdict.
fn send(snap: &Snapshot, pipe: &mut Pipeline, f: &[u8]) -> (Vec<(VecBuf, u16)>, Verdict, Vec<u8>) {
    let mut copies = Vec::new();
    let mut bufs = [VecBuf::new(f)];
    pipe.mirror_before(snap, &bufs, 0, 1, &mut |c, port, _| {
        copies.push((c, port));
        true
    });
    let mut v = [Verdict::ToHost];
    pipe.process_burst(snap, &mut bufs, 0, 1, &mut v);
    (copies, v[0], bufs[0].data().to_vec())
}

#[test]
fn vxlan_copies_are_byte_equal_and_both_directions_reach_one_sensor() {
    let (_, snap, mut pipe) =
        setup("[[mirror_sessions]]\nname = \"ids\"\ntarget_group = \"sensors\"\nvni = 42\n");
    let mut per_sensor = [0usize; 2];
    for sport in 30000..30100 {
        let mut sensor_of_flow = None;
        for reverse in [false, true] {
            let f = udp(sport, reverse);
            let (copies, v, _) = send(&snap, &mut pipe, &f);
            assert_eq!(v, Verdict::Tx(0), "the original is forwarded");
            assert_eq!(copies.len(), 1);
            let (c, port) = &copies[0];
            assert_eq!(*port, 0);
            let d = c.data();
            let sensor = SENSORS
                .iter()
                .position(|m| d[0..6] == m[..])
                .expect("to a sensor");
            assert_eq!(d[6..12], GW_MAC);
            let ip = etherparse::Ipv4HeaderSlice::from_slice(&d[14..34]).unwrap();
            assert_eq!(ip.destination(), [10, 0, 0, 31 + sensor as u8]);
            assert_eq!(usize::from(ip.total_len()), d.len() - 14);
            assert_eq!(u16::from_be_bytes([d[36], d[37]]), VXLAN_PORT);
            assert_eq!(&d[42..50], &[0x08, 0, 0, 0, 0, 0, 42, 0], "VXLAN, VNI 42");
            assert_eq!(&d[50..], &f[..], "the frame, byte for byte");
            match sensor_of_flow {
                None => sensor_of_flow = Some(sensor),
                Some(s) => assert_eq!(s, sensor, "flow {sport}: both directions to one sensor"),
            }
            per_sensor[sensor] += 1;
        }
    }
    assert!(
        per_sensor.iter().all(|&n| n > 40),
        "spread over the sensors: {per_sensor:?}"
    );
    let m = &pipe.counters.mirror[0];
    assert_eq!(m[MirrorCounter::Packets as usize], 200);
    assert_eq!(m[MirrorCounter::NoSensor as usize], 0);
}

/// The single-worker path (`process_burst_mirrored`, copies made in the pipeline's own pass)
/// gives what `mirror_before` then `process_burst` give: the same copies (bytes, ports,
/// sessions), the same verdicts and outputs, the same counters, burst after burst.
/// The copies made in the pipeline's own pass (`process_burst_mirrored`, or with `share`
/// `process_burst_shared_mirrored`) equal those of a separate pass (`mirror_before`) before
/// `process_burst` (`process_burst_shared`): copies, verdicts, outputs and counters over 4
/// bursts with a sampled Geneve session. Returns how many packets were handed off.
fn single_pass_equals_separate_pass(share: Option<Share>) -> usize {
    let sessions = "[[mirror_sessions]]\nname = \"all\"\ntarget_group = \"sensors\"\nvni = 42\n\
                    [[mirror_sessions]]\nname = \"sampled\"\ntarget_group = \"sensors\"\nformat = \"geneve\"\nsample_one_in = 3\nsnap_length = 74\nl4_ports = [\"30000-30049\"]\n";
    let (_, snap, mut separate) = setup(sessions);
    let mut joined = Pipeline::new(4096, Default::default()).unwrap();
    let mut handed_off = 0;
    for round in 0..4u16 {
        let frames: Vec<Vec<u8>> = (0..40)
            .map(|k| udp(30000 + (k * 3 + round) % 100, k % 2 == 1))
            .chain([b"short".to_vec()])
            .collect();
        let mut a: Vec<VecBuf> = frames.iter().map(|f| VecBuf::new(f)).collect();
        let mut b: Vec<VecBuf> = frames.iter().map(|f| VecBuf::new(f)).collect();
        let (mut ca, mut cb) = (Vec::new(), Vec::new());
        let mut va = vec![Verdict::ToHost; a.len()];
        let mut vb = va.clone();
        separate.mirror_before(&snap, &a, 0, 1, &mut |c: VecBuf, p, s| {
            ca.push((c.data().to_vec(), p, s));
            true
        });
        let mut emit = |c: VecBuf, p, s| {
            cb.push((c.data().to_vec(), p, s));
            true
        };
        match share {
            Some(sh) => {
                separate.process_burst_shared(&snap, &mut a, 0, 1, sh, &mut va);
                joined.process_burst_shared_mirrored(&snap, &mut b, 0, 1, sh, &mut vb, &mut emit);
            }
            None => {
                separate.process_burst(&snap, &mut a, 0, 1, &mut va);
                joined.process_burst_mirrored(&snap, &mut b, 0, 1, &mut vb, &mut emit);
            }
        }
        assert!(!ca.is_empty(), "round {round}: copies made");
        assert_eq!(ca, cb, "round {round}: the copies");
        assert_eq!(va, vb, "round {round}: the verdicts");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.data(), y.data(), "round {round}: the outputs");
        }
        handed_off += vb
            .iter()
            .filter(|v| matches!(v, Verdict::Handoff(_)))
            .count();
    }
    assert_eq!(separate.counters.mirror, joined.counters.mirror);
    assert_eq!(separate.counters.encapsulated, joined.counters.encapsulated);
    // Session "all" copies every user packet the worker received, its own and handed off.
    assert_eq!(
        joined.counters.mirror[0][MirrorCounter::Packets as usize],
        4 * 40
    );
    handed_off
}

#[test]
fn copies_in_the_pipelines_pass_equal_a_separate_pass() {
    assert_eq!(single_pass_equals_separate_pass(None), 0);
}

#[test]
fn copies_in_the_shared_pass_equal_a_separate_pass_handed_off_included() {
    let handed_off = single_pass_equals_separate_pass(Some(Share { me: 0, workers: 2 }));
    assert!(
        handed_off > 20,
        "about half of 160 packets are worker 1's ({handed_off})"
    );
}

#[test]
fn sampling_snap_length_and_selection() {
    let (_, snap, mut pipe) = setup(
        "[[mirror_sessions]]\nname = \"sampled\"\ntarget_group = \"sensors\"\nsample_one_in = 4\nsnap_length = 74\n\
         [[mirror_sessions]]\nname = \"tcp-only\"\ntarget_group = \"sensors\"\nprotocols = [6]\n\
         [[mirror_sessions]]\nname = \"to-2\"\ntarget_group = \"sensors\"\nprefixes = [\"10.2.0.0/16\"]\ndirection = \"to_prefixes\"\nformat = \"geneve\"\n",
    );
    let mut n = [0usize; 3];
    for sport in 31000..31200 {
        let (copies, v, _) = send(&snap, &mut pipe, &udp(sport, sport % 2 == 1));
        assert_eq!(v, Verdict::Tx(0));
        for (c, _) in &copies {
            let d = c.data();
            if u16::from_be_bytes([d[36], d[37]]) == VXLAN_PORT {
                assert_eq!(d.len(), 50 + 74, "snap length 74");
                n[0] += 1;
            } else {
                assert_eq!(u16::from_be_bytes([d[36], d[37]]), 6081);
                assert_eq!(&d[42 + 8..42 + 10], &GENEVE_MIRROR_CLASS.to_be_bytes());
                assert_eq!(d[42 + 12], 0, "copy point: before inspection");
                assert_eq!(d[42 + 13], 1, "direction: toward the session's prefixes");
                assert_eq!(&d[42 + 14..42 + 16], &[0, 2], "session id: slot 2");
                n[2] += 1;
            }
        }
    }
    assert_eq!(n[0], 50, "1 in 4 of 200");
    assert_eq!(n[1], 0, "UDP is not selected by the TCP session");
    assert_eq!(n[2], 100, "only the 100 packets toward 10.2.0.0/16");
    assert_eq!(
        pipe.counters.mirror[0][MirrorCounter::Bytes as usize],
        50 * 74
    );
}

#[test]
fn after_inspection_copies_what_comes_back_and_no_sensor_costs_nothing() {
    let (cfg, snap, mut pipe) = setup(
        "[[mirror_sessions]]\nname = \"after\"\ntarget_group = \"sensors\"\ncopy_point = \"after_inspection\"\nformat = \"geneve\"\nvni = 7\n",
    );
    let f = udp(32000, false);
    let (copies, v, enc) = send(&snap, &mut pipe, &f);
    assert!(copies.is_empty(), "nothing before inspection");
    assert_eq!(v, Verdict::Tx(0));
    let mut bufs = [VecBuf::new(&aws_echo(&enc))];
    let mut vs = [Verdict::ToHost];
    pipe.process_burst(&snap, &mut bufs, 0, 2, &mut vs);
    assert_eq!(vs[0], Verdict::Tx(0));
    assert_eq!(pipe.decapsulated_mask(), 1);
    let mut copies = Vec::new();
    pipe.mirror_after(
        &snap,
        &bufs,
        &vs,
        pipe.decapsulated_mask(),
        2,
        &mut |c, p, _| {
            copies.push((c, p));
            true
        },
    );
    assert_eq!(copies.len(), 1);
    let d = copies[0].0.data();
    let g = geneve::Packet::new_checked(&d[42..]).unwrap();
    assert_eq!((g.vni(), g.protocol_type()), (7, geneve::PROTO_ETHERNET));
    assert_eq!(d[42 + 12], 1, "copy point: after inspection");
    assert_eq!(g.payload(), bufs[0].data(), "the frame as forwarded");

    // Every sensor down: copies counted as not sent; the originals go on as before.
    let mut reg = Registry::new(&cfg, 64).unwrap();
    reg.assume_healthy();
    reg.set_health(1, false, "down".into());
    reg.set_health(2, false, "down".into());
    let down = Snapshot::build_with(&cfg, &[GW_MAC], &reg, &LiveState::default(), 2).unwrap();
    let mut copies = Vec::new();
    let mut bufs = [VecBuf::new(&aws_echo(&enc))];
    pipe.process_burst(&down, &mut bufs, 0, 3, &mut vs);
    assert_eq!(vs[0], Verdict::Tx(0));
    pipe.mirror_after(
        &down,
        &bufs,
        &vs,
        pipe.decapsulated_mask(),
        2,
        &mut |c, p, _| {
            copies.push((c, p));
            true
        },
    );
    assert!(copies.is_empty());
    assert_eq!(pipe.counters.mirror[0][MirrorCounter::NoSensor as usize], 1);
    assert_eq!(pipe.counters.mirror[0][MirrorCounter::Packets as usize], 1);
}

/// The Geneve mirror option carries the session's stable slot, not its position in the
/// list: removing an earlier session (as `DELETE /v1/mirror-sessions/{name}` does, the
/// control loop keeping `LiveState::mirror_slots`) leaves a sensor's view of the remaining
/// session unchanged, and a session created afterwards takes the freed id.
#[test]
fn geneve_session_id_is_the_stable_slot_across_removals() {
    let session = |name: &str| {
        format!("[[mirror_sessions]]\nname = \"{name}\"\ntarget_group = \"sensors\"\nformat = \"geneve\"\n")
    };
    // The session id in each copy, by VNI-less Geneve option bytes.
    let ids = |snap: &Snapshot| -> Vec<u16> {
        let mut pipe = Pipeline::new(4096, Default::default()).unwrap();
        let (copies, _, _) = send(snap, &mut pipe, &udp(32000, false));
        copies
            .iter()
            .map(|(c, _)| {
                let d = c.data();
                assert_eq!(&d[42 + 8..42 + 10], &GENEVE_MIRROR_CLASS.to_be_bytes());
                u16::from_be_bytes([d[42 + 14], d[42 + 15]])
            })
            .collect()
    };
    let build = |sessions: &[&str], live: &mut LiveState| {
        let toml: String = sessions.iter().map(|s| session(s)).collect();
        let cfg = Config::from_toml_str(&format!("{CONFIG}{toml}")).expect("config");
        live.mirror_slots.assign(&cfg.mirror_sessions);
        Snapshot::build(&cfg, &[GW_MAC], live, 1).expect("snapshot")
    };
    let mut live = LiveState::default();
    assert_eq!(ids(&build(&["a", "b"], &mut live)), [0, 1]);
    // "a" removed: "b" is first in the list but keeps id 1.
    assert_eq!(ids(&build(&["b"], &mut live)), [1]);
    // "c" created: the freed id 0, listed after "b".
    assert_eq!(ids(&build(&["b", "c"], &mut live)), [1, 0]);
}
