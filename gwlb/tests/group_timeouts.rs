//! Idle timeouts per target group through the pipeline (no DPDK): two groups with different
//! `tcp_idle_timeout_s` / `other_idle_timeout_s`, chosen for one endpoint's flows by its
//! rules, expire their flows each at its own group's time, and a bypassed flow at its
//! endpoint's first group's. The snapshot's per-group table is applied to the flow table as
//! the worker does on every new snapshot (`dataplane::worker`, `set_group_timeouts`).
//!
//! A flow's expiry is read from the pipeline's own counter: a packet of a flow whose entry has
//! idled out opens a new flow (`new_flows`); one of a live entry does not.

use gwlb::config::Config;
use gwlb::packet_buf::VecBuf;
use gwlb::pipeline::{Pipeline, Verdict};
use gwlb::snapshot::{LiveState, Snapshot};
use gwlb_tests::frames::{frame, vlan_tagged, Ips, L4};

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];

/// One port; group "fw" (TCP 100 s, others 30 s) and group "ids" (TCP 400 s, others 90 s);
/// endpoint "a" (VLAN 100), whose UDP to port 53 and TCP to port 80 go to "ids", traffic to
/// 10.9.0.0/16 bypasses the appliances, and the rest goes to "fw"; endpoint "b" (VLAN 200),
/// whose traffic goes to "ids" but to 10.9.0.0/16, which bypasses them.
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
tcp_idle_timeout_s = 100
other_idle_timeout_s = 30
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
[[target_groups]]
name = "ids"
tcp_idle_timeout_s = 400
other_idle_timeout_s = 90
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
[[endpoints.routes]]
prefix = "0.0.0.0/0"
via = "10.1.255.1"
mac = "02:00:00:00:0a:01"
[[endpoints.rules]]
name = "dns-to-ids"
protocols = [17]
destination_ports = ["53"]
action = "inspect"
target_group = "ids"
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

[[endpoints]]
name = "b"
ports = ["p"]
vlan = [200]
target_group = "ids"
[[endpoints.routes]]
prefix = "0.0.0.0/0"
via = "10.1.255.1"
mac = "02:00:00:00:0b:01"
[[endpoints.rules]]
name = "backup"
destinations = ["10.9.0.0/16"]
action = "bypass"
"#;

/// A UDP or TCP (ACK: established data, admitted as a flow by the default
/// `tcp_unknown_non_syn = "admit"`) frame of endpoint "a", 10.1.0.2 -> `dst`:`dport`.
fn packet(tcp: bool, dst: [u8; 4], dport: u16) -> Vec<u8> {
    tagged(tcp, dst, dport, 100)
}

/// [`packet`] on VLAN `vlan`.
fn tagged(tcp: bool, dst: [u8; 4], dport: u16, vlan: u16) -> Vec<u8> {
    let l4 = if tcp {
        L4::Tcp {
            src_port: 40000,
            dst_port: dport,
            flags: 0x10,
        }
    } else {
        L4::Udp {
            src_port: 40000,
            dst_port: dport,
        }
    };
    let f = frame(CLIENT_MAC, GW_MAC, Ips::V4([10, 1, 0, 2], dst), l4, b"idle");
    vlan_tagged(&f, 0, vlan)
}

struct Rig {
    snap: Snapshot,
    pipe: Pipeline,
}

impl Rig {
    fn new() -> Rig {
        let cfg = Config::from_toml_str(CONFIG).unwrap_or_else(|e| panic!("{e}"));
        let snap = Snapshot::build(&cfg, &[GW_MAC], &LiveState::default(), 1).expect("snapshot");
        let mut pipe = Pipeline::new(4096, Default::default()).unwrap();
        pipe.flows_mut().set_group_timeouts(&snap.timeouts);
        Rig { snap, pipe }
    }

    /// Sends `f` at second `now`; whether it opened a new flow.
    fn opens_flow(&mut self, f: &[u8], now: u32) -> bool {
        let before = self.pipe.counters.new_flows;
        let v = self
            .pipe
            .process(&self.snap, &mut VecBuf::with_headroom(f, 256), 0, now);
        assert_eq!(v, Verdict::Tx(0), "forwarded");
        self.pipe.counters.new_flows > before
    }
}

#[test]
fn each_group_expires_its_flows_after_its_own_timeouts() {
    let mut r = Rig::new();
    let dst = [10, 2, 0, 2];
    // (what, frame, the timeout of the group the rules pick for it)
    let flows = [
        ("UDP to fw", packet(false, dst, 5000), 30),
        ("UDP to ids", packet(false, dst, 53), 90),
        ("TCP to fw", packet(true, dst, 443), 100),
        ("TCP to ids", packet(true, dst, 80), 400),
    ];
    let start = 1000;
    for (what, f, _) in &flows {
        assert!(r.opens_flow(f, start), "{what}: a new flow");
    }
    // Each flow idle exactly its group's timeout: still there (the packet refreshes it);
    // then idle one second longer: gone, so its next packet opens a new flow. Each flow sees
    // only its own packets; the clock only moves forward.
    let mut events: Vec<(u32, bool, &str, &[u8])> = flows
        .iter()
        .flat_map(|(what, f, t)| {
            [
                (start + t, false, *what, &f[..]),
                (start + 2 * t + 1, true, *what, &f[..]),
            ]
        })
        .collect();
    events.sort_by_key(|e| e.0);
    for (now, opens, what, f) in events {
        assert_eq!(r.opens_flow(f, now), opens, "{what} at {now}");
    }
}

#[test]
fn a_group_with_a_longer_timeout_keeps_flows_the_shorter_one_expires() {
    let mut r = Rig::new();
    let dst = [10, 2, 0, 2];
    let (fw, ids) = (packet(false, dst, 5000), packet(false, dst, 53));
    assert!(r.opens_flow(&fw, 1000));
    assert!(r.opens_flow(&ids, 1000));
    // 31 s idle: past fw's 30 s, within ids' 90 s. (Before issue 18, the first group's
    // timeouts applied to every group, and both would have expired.)
    assert!(r.opens_flow(&fw, 1031), "fw's flow expired");
    assert!(!r.opens_flow(&ids, 1031), "ids' flow is still live");
    // The same in the table's own sweep (`expire_step`), not only on lookup: both entries
    // were last seen at 1031; at 1121 fw's (90 s idle, over 30) goes and ids' (90 s, not
    // over 90) stays; at 1122 ids' goes.
    assert_eq!(r.pipe.flows().len(), 2);
    assert_eq!(
        r.pipe.flows_mut().expire_step(1121, usize::MAX),
        1,
        "fw only"
    );
    assert_eq!(
        r.pipe.flows_mut().expire_step(1122, usize::MAX),
        1,
        "then ids"
    );
    assert_eq!(r.pipe.flows().len(), 0);
}

#[test]
fn a_bypassed_flow_takes_its_endpoints_first_group_timeouts() {
    let mut r = Rig::new();
    // Endpoint "a"'s first group is "fw" (30 s for UDP), "b"'s is "ids" (90 s).
    let a = tagged(false, [10, 9, 0, 5], 9000, 100);
    let b = tagged(false, [10, 9, 0, 5], 9000, 200);
    assert!(r.opens_flow(&a, 1000));
    assert!(r.opens_flow(&b, 1000));
    assert_eq!(r.pipe.counters.bypassed, 2);
    assert!(!r.opens_flow(&a, 1030), "a: live after 30 s");
    assert!(r.opens_flow(&a, 1061), "a: expired after 31 s");
    assert!(!r.opens_flow(&b, 1090), "b: live after 90 s");
    assert!(r.opens_flow(&b, 1181), "b: expired after 91 s");
}
