//! Control-plane behaviour with real DPDK ports (net_af_packet on veths), real health-check
//! sockets and real ARP, in network namespaces (see `netns/mod.rs`): failure detection,
//! `no_rebalance` / `rebalance`, recovery, draining and re-weighting by reload, a broken
//! reload, fail-open / fail-closed, and ping of the gateway while it forwards. In every
//! scenario, flows of healthy appliances must never move.
//!
//! Flows are single UDP packets with distinct source ports; "where a flow went" is read on
//! the appliances themselves (the inner source port each one saw).

// The `gwlb` binary these tests run needs the DPDK data path.
#![cfg(feature = "dpdk")]

mod needs_root;
mod netns;

use std::process::Command;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use netns::{ports, spread, Rig, QUIET};

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn unhealthy_no_rebalance_keeps_flows_then_recovers() {
    needs_root::require();
    let rig = Rig::start(
        "gwtnr",
        r#"on_unhealthy = "no_rebalance""#,
        &[100, 100, 100],
    );
    let old = ports(1000..1090);
    let (first, fwd) = rig.send_flows(&old);
    assert_eq!(first.len(), old.len(), "every flow reached an appliance");
    assert_eq!(fwd.len(), old.len(), "every flow came back forwarded");
    let s = spread(&first, 3);
    assert!(
        s.iter().all(|&n| n > 0),
        "flows spread over all three: {s:?}"
    );

    rig.kill_hc(0);
    // Existing flows stay where they were, including those of the unhealthy appliance.
    let (again, fwd) = rig.send_flows(&old);
    assert_eq!(again, first, "no_rebalance: no flow moved");
    assert_eq!(fwd.len(), old.len());
    // New flows avoid it.
    let new = ports(2000..2090);
    let (placed, _) = rig.send_flows(&new);
    assert_eq!(placed.len(), new.len());
    assert_eq!(
        spread(&placed, 3)[0],
        0,
        "no new flow to the unhealthy appliance"
    );

    // Recovery: after the healthy threshold it takes new flows again; nothing else moves.
    rig.revive_hc(0);
    let newer = ports(3000..3090);
    let (placed2, _) = rig.send_flows(&newer);
    assert!(
        spread(&placed2, 3)[0] > 0,
        "recovered appliance takes new flows"
    );
    let (again, _) = rig.send_flows(&old);
    assert_eq!(again, first, "flows never moved");
    let (again, _) = rig.send_flows(&new);
    assert_eq!(
        again, placed,
        "flows placed while it was down stay put after it recovers"
    );
    let report = rig.stop();
    assert_eq!(report.get("rebalanced_flows").copied().unwrap_or(0), 0);
}

/// Issue 18: an appliance whose health check fails from the start (its data path would
/// still answer) never gets a flow. New flows arrive from gwlb's first moment on; the target
/// starts initial, goes straight to unhealthy, and every flow goes to the other appliance
/// once that one has passed its checks. (Before, targets started healthy: in 5 of 9 runs a
/// startup flow reached the dead appliance, lost until it was marked unhealthy.)
#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn a_target_down_at_start_never_gets_a_flow() {
    needs_root::require();
    let _serial = netns::SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let topo = netns::Topology::create("gwtin", 2);
    let apps: Vec<netns::Appliance> = (0..2)
        .map(|i| netns::Appliance::start(&topo.app(), i))
        .collect();
    apps[1].close_hc();
    let user = netns::UserPort::open(&topo.usr(), &topo.u1());
    let (up, down) = (apps[0].ip.to_string(), apps[1].ip.to_string());
    let t0 = Instant::now();
    let gwlb = netns::Gwlb::start(&topo.gw(), &topo.config("", &[100, 100]));

    // Four new flows every ~20 ms from the start, until the live appliance has carried
    // flows for a second after the dead one was marked unhealthy.
    let deadline = t0 + Duration::from_secs(20);
    let mut port = 1000u16;
    let mut unhealthy: Option<(Instant, String)> = None;
    let mut first_on_up: Option<Instant> = None;
    loop {
        for _ in 0..4 {
            user.send(&netns::client_frame(port));
            port += 1;
        }
        user.drain(Duration::from_millis(20));
        assert_eq!(
            apps[1].count(),
            0,
            "a flow reached the appliance that was down from the start\n{}",
            gwlb.log_text()
        );
        if first_on_up.is_none() && apps[0].count() > 0 {
            first_on_up = Some(Instant::now());
        }
        if unhealthy.is_none() {
            unhealthy = gwlb.wait_log(t0, &["appliance unhealthy", &down], Duration::ZERO);
        }
        if let (Some((t, _)), Some(f)) = (&unhealthy, first_on_up) {
            if t.elapsed() > Duration::from_secs(1) && f.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "after 20 s: unhealthy logged {:?}, flows on the live appliance {}\n{}",
            unhealthy,
            apps[0].count(),
            gwlb.log_text()
        );
    }
    let (_, line) = unhealthy.expect("unhealthy logged");
    assert!(line.contains("initial"), "from initial: {line}");
    assert!(
        gwlb.wait_log(t0, &["appliance healthy", &down], Duration::ZERO)
            .is_none(),
        "the dead appliance was never healthy\n{}",
        gwlb.log_text()
    );
    assert!(
        gwlb.wait_log(t0, &["appliance healthy", &up], Duration::ZERO)
            .is_some(),
        "the live appliance passed its checks"
    );
    // Now every new flow goes to the live appliance and comes back.
    let flows = ports(30_000..30_060);
    for &p in &flows {
        user.send(&netns::client_frame(p));
    }
    let fwd = netns::forwarded_ports(&user.drain(QUIET));
    assert_eq!(fwd, flows, "every new flow served by the live appliance");
    assert_eq!(apps[1].count(), 0);
    let report = gwlb.stop();
    println!(
        "sent {} flows from start; dropped while no appliance was healthy: {:?}",
        port - 1000,
        report.get("drop no_healthy_appliance")
    );
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn unhealthy_rebalance_moves_only_its_flows() {
    needs_root::require();
    let rig = Rig::start("gwtrb", r#"on_unhealthy = "rebalance""#, &[100, 100, 100]);
    let old = ports(1000..1090);
    let (first, _) = rig.send_flows(&old);
    assert_eq!(first.len(), old.len());
    rig.kill_hc(1);
    let (after, fwd) = rig.send_flows(&old);
    assert_eq!(after.len(), old.len(), "every flow still served");
    assert_eq!(fwd.len(), old.len(), "every flow still forwarded");
    let mut moved = 0;
    for (p, &was) in &first {
        let now = after[p];
        if was == 1 {
            assert_ne!(now, 1, "flow {p} left the unhealthy appliance");
            moved += 1;
        } else {
            assert_eq!(now, was, "flow {p} of a healthy appliance never moves");
        }
    }
    assert!(moved > 0);
    let report = rig.stop();
    assert_eq!(report["rebalanced_flows"], moved as u64);
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn reload_drains_reweights_and_a_broken_file_changes_nothing() {
    needs_root::require();
    let policy = "on_unhealthy = \"no_rebalance\"\nderegistration_delay_s = 2";
    let rig = Rig::start("gwtdr", policy, &[100, 100, 100]);
    let old = ports(1000..1090);
    let (first, _) = rig.send_flows(&old);
    assert_eq!(first.len(), old.len());

    // A broken file: rejected with the field named, the running config kept.
    let broken = rig
        .topo
        .config(policy, &[100, 100, 100])
        .replace("interval_ms = 100", "interval_ms = 5");
    let t0 = rig.reload(&broken);
    let (_, line) = rig
        .gwlb()
        .wait_log(t0, &["reload rejected"], Duration::from_secs(5))
        .expect("reload rejection logged");
    assert!(
        line.contains("health_check.interval_ms"),
        "names the field: {line}"
    );
    let (again, _) = rig.send_flows(&old);
    assert_eq!(again, first, "nothing changed after a rejected reload");

    // Deregister appliance 2 and set appliance 1's weight to 0 by reload.
    let cfg = rig.topo.config(policy, &[100, 0]);
    let t0 = rig.reload(&cfg);
    rig.gwlb()
        .wait_log(t0, &["configuration reloaded"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("reload not applied\n{}", rig.gwlb().log_text()));
    std::thread::sleep(Duration::from_millis(100));
    // Draining: old flows keep their appliance, new ones go only to appliance 0.
    let (during, _) = rig.send_flows(&old);
    assert_eq!(
        during, first,
        "draining and re-weighting move no existing flow"
    );
    let new = ports(2000..2060);
    let (placed, _) = rig.send_flows(&new);
    assert_eq!(
        spread(&placed, 3),
        vec![new.len(), 0, 0],
        "new flows only to the weighted, registered appliance"
    );

    // After the delay (no_rebalance) the drained appliance's flows end: dropped, counted.
    rig.gwlb()
        .wait_log(t0, &["deregistration delay over"], Duration::from_secs(6))
        .expect("drain end logged");
    std::thread::sleep(Duration::from_millis(100));
    let (after, fwd) = rig.send_flows(&old);
    let on2 = first.values().filter(|&&i| i == 2).count();
    assert!(on2 > 0);
    assert!(
        after.values().all(|&i| i != 2),
        "no packet reaches the removed appliance"
    );
    assert_eq!(after.len(), old.len() - on2, "its flows ended");
    assert_eq!(fwd.len(), old.len() - on2);
    for (p, i) in &after {
        assert_eq!(first[p], *i, "other flows never moved");
    }
    let report = rig.stop();
    assert_eq!(report["drop appliance_gone"], on2 as u64);
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn fail_closed_drops_and_fail_open_forwards_uninspected() {
    needs_root::require();
    for (name, policy) in [("gwtfc", "fail_closed"), ("gwtfo", "fail_open")] {
        let group = format!("on_all_unhealthy = \"{policy}\"\ntcp_rst_on_drop = true");
        let rig = Rig::start(name, &group, &[100, 100]);
        rig.kill_hc(0);
        rig.kill_hc(1);
        let t0 = Instant::now();
        let shout = if policy == "fail_open" {
            "FAIL-OPEN"
        } else {
            "FAIL-CLOSED"
        };
        assert!(
            rig.gwlb()
                .wait_log(
                    t0 - Duration::from_secs(3),
                    &[shout],
                    Duration::from_secs(1)
                )
                .is_some(),
            "{policy} logged"
        );
        let new = ports(5000..5040);
        let (placed, fwd) = rig.send_flows(&new);
        assert!(placed.is_empty(), "{policy}: no appliance sees new flows");
        // A TCP connection attempt: fail-closed refuses it at once with a RST (seq 0, ack
        // = SYN's seq + 1); fail-open forwards the SYN.
        rig.user.send(&netns::client_syn(6000));
        let frames = rig.user.drain(QUIET);
        let resets = netns::resets_to_client(&frames);
        let report = rig.stop();
        if policy == "fail_open" {
            assert_eq!(
                fwd, new,
                "fail-open forwards every packet uninspected, in order"
            );
            assert!(resets.is_empty(), "no RST in fail-open");
            assert_eq!(report["fail_open"], new.len() as u64 + 1);
        } else {
            assert!(fwd.is_empty(), "fail-closed forwards nothing");
            assert_eq!(resets, vec![(6000, 0, 5001)], "RST answers the SYN");
            assert_eq!(report["drop no_healthy_appliance"], new.len() as u64 + 1);
            assert_eq!(report["tcp_resets"], 1);
        }
    }
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn gateway_answers_ping_and_arp_while_forwarding() {
    needs_root::require();
    let rig = Rig::start("gwtpg", "", &[100, 100]);
    // Traffic in the background while an appliance-side host pings the gateway.
    let ns = rig.topo.app();
    let pinger = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "ping",
                "-c",
                "5",
                "-i",
                "0.2",
                "-W",
                "1",
                "10.77.0.1",
            ])
            .output()
            .expect("ping")
    });
    let flows = ports(1000..1400);
    let (placed, fwd) = rig.send_flows(&flows);
    let out = pinger.join().unwrap();
    assert!(
        out.status.success(),
        "ping of the gateway: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(placed.len(), flows.len());
    if fwd.len() != flows.len() {
        std::thread::sleep(Duration::from_millis(300));
        let late = netns::forwarded_ports(&rig.user.drain(QUIET));
        panic!(
            "{} of {} forwarded ({} late); gwlb: {:?}",
            fwd.len(),
            flows.len(),
            late.len(),
            rig.stop()
        );
    }
    // The appliances' MACs were learned from the kernel (ARP through the exception path):
    // the config has none.
    let neigh = std::process::Command::new("ip")
        .args([
            "-n",
            &rig.topo.gw(),
            "neigh",
            "show",
            "dev",
            &rig.topo.tap(),
        ])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    for a in &rig.apps {
        assert!(
            neigh.contains(&a.ip.to_string()),
            "{} learned: {neigh}",
            a.ip
        );
    }
    rig.stop();
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn nd_learning_and_ipv6_health_checks_against_a_kernel_peer() {
    needs_root::require();
    let _serial = netns::SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let topo = netns::Topology::create("gwtnd", 0);
    // IPv6 on in the gateway (for its TAP) and appliance namespaces, off on the DPDK veth so
    // that only the TAP's kernel answers for the gateway.
    for ns in [topo.gw(), topo.app()] {
        netns::sysctl(
            &ns,
            &[
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
            ],
        );
    }
    netns::sysctl(
        &topo.gw(),
        &[&format!("net.ipv6.conf.{}.disable_ipv6=1", topo.a0())],
    );
    netns::sysctl(
        &topo.app(),
        &[&format!("net.ipv6.conf.{}.disable_ipv6=0", topo.a1())],
    );
    netns::sh(&[
        "ip",
        "-n",
        &topo.app(),
        "addr",
        "add",
        "fd77::11/64",
        "dev",
        &topo.a1(),
        "nodad",
    ]);
    let appliance = netns::Appliance::start_at(&topo.app(), "fd77::11".parse().unwrap());
    let user = netns::UserPort::open(&topo.usr(), &topo.u1());
    let config = topo.config("", &[]).replace(
        "address = \"10.77.0.1/24\"",
        "address = [\"10.77.0.1/24\", \"fd77::1/64\"]",
    ) + "\n[[target_groups.targets]]\naddress = \"fd77::11\"\n";
    let gwlb = netns::Gwlb::start(&topo.gw(), &config);

    // The appliance's MAC is learned by ND through the exception path (the config has
    // none); then flows reach it in IPv6-outer Geneve and come back forwarded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut port = 1000;
    loop {
        user.send(&netns::client_frame(port));
        port += 1;
        user.drain(Duration::from_millis(100));
        if appliance.count() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no flow reached the IPv6 appliance\n{}",
            gwlb.log_text()
        );
    }
    let neigh = Command::new("ip")
        .args(["-n", &topo.gw(), "-6", "neigh", "show", "dev", &topo.tap()])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(neigh.contains("fd77::11"), "learned by ND: {neigh}");
    let flows = ports(5000..5020);
    for &p in &flows {
        user.send(&netns::client_frame(p));
    }
    let fwd = netns::forwarded_ports(&user.drain(QUIET));
    assert_eq!(fwd, flows, "IPv6-outer round trip forwards every packet");

    // The IPv6 health check goes through the TAP too: closing the listener is detected.
    let t0 = Instant::now();
    appliance.close_hc();
    assert!(
        gwlb.wait_log(
            t0,
            &["appliance unhealthy", "fd77::11"],
            netns::DETECTION_BOUND
        )
        .is_some(),
        "IPv6 health check failure detected\n{}",
        gwlb.log_text()
    );
    gwlb.stop();
}
