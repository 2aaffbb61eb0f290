//! The control API, metrics and CLI against a running gwlb on real DPDK ports (net_af_packet
//! on veths in network namespaces, see `netns/mod.rs`), with real traffic: registration,
//! re-weighting and deregistration change where new flows go and never move existing ones;
//! bad requests are refused with nothing changed; the flow dump lists the flows sent; the
//! metrics count the packets the appliances really received.
//!
//! The API and metrics listen on Unix sockets (reachable from outside the gateway's
//! namespace).

// The `gwlb` binary these tests run needs the DPDK data path.
#![cfg(feature = "dpdk")]

mod needs_root;
mod netns;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gwlb::cli::client::{ApiClient, ClientError};
use gwlb::config::Listen;
use gwlb::control::{FlowQuery, TargetSpec, TargetState};
use netns::{appliance_ip, ports, spread, Rig};

fn sockets(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir();
    (
        dir.join(format!("{name}-api.sock")),
        dir.join(format!("{name}-metrics.sock")),
    )
}

fn ip(i: usize) -> IpAddr {
    IpAddr::V4(appliance_ip(i))
}

/// Every flow of the dump with server port 7000, as (client port -> appliance), reading all
/// pages of `page` flows.
fn dumped(api: &ApiClient, page: usize) -> BTreeMap<u16, IpAddr> {
    let mut out = BTreeMap::new();
    let mut cursor = None;
    loop {
        let p = api
            .flows(&FlowQuery {
                port: Some(netns::SERVER_PORT),
                cursor: cursor.clone(),
                limit: Some(page),
                ..FlowQuery::default()
            })
            .expect("flow dump");
        assert!(p.flows.len() <= page);
        for f in &p.flows {
            assert_eq!(f.protocol, 17);
            assert_eq!(f.group, "tg");
            let client_port = if f.port_a == netns::SERVER_PORT {
                f.port_b
            } else {
                f.port_a
            };
            assert!(
                out.insert(client_port, f.appliance).is_none(),
                "flow listed twice"
            );
        }
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Value of the metric sample `name{labels...}` whose labels include every `(k, v)`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn api_changes_steer_new_flows_and_metrics_match_traffic() {
    needs_root::require();
    let (api_sock, metrics_sock) = sockets("gwtapi");
    let control = format!(
        "\n[control]\napi_listen = \"unix:{}\"\nmetrics_listen = \"unix:{}\"\n",
        api_sock.display(),
        metrics_sock.display()
    );
    // Three appliances on the wire, two registered; health checks on.
    let rig = Rig::start_with("gwtapi", "", &[100, 100], 3, &control);
    let api = ApiClient::new(Listen::Unix(api_sock.clone()), None);

    let groups = api.list_groups().expect("list groups");
    assert_eq!(groups.len(), 1);
    let tg = &groups[0];
    assert_eq!(tg.name, "tg");
    assert_eq!(tg.healthy_count, 2);
    let addrs: Vec<IpAddr> = tg.targets.iter().map(|t| t.address).collect();
    assert_eq!(addrs, vec![ip(0), ip(1)]);
    assert!(tg
        .targets
        .iter()
        .all(|t| t.state == TargetState::Healthy && t.resolved));

    // Flows, then the dump: every flow sent is listed, on the appliance that saw it, and
    // paging (7 per page) lists the same set.
    let a = ports(1000..1060);
    let (at_a, _) = rig.send_flows(&a);
    assert_eq!(at_a.len(), a.len());
    let dump = dumped(&api, 10_000);
    for (p, i) in &at_a {
        assert_eq!(
            dump.get(p),
            Some(&ip(*i)),
            "flow {p} in the dump on its appliance"
        );
    }
    assert_eq!(dumped(&api, 7), dump, "paged dump lists the same flows");
    let by_appliance = api
        .flows(&FlowQuery {
            appliance: Some(ip(0)),
            port: Some(netns::SERVER_PORT),
            limit: Some(10_000),
            ..FlowQuery::default()
        })
        .unwrap();
    assert!(by_appliance.flows.iter().all(|f| f.appliance == ip(0)));
    let on0: BTreeSet<u16> = by_appliance
        .flows
        .iter()
        .map(|f| f.port_a.min(f.port_b))
        .filter(|p| a.contains(p))
        .collect();
    let expect0: BTreeSet<u16> = at_a
        .iter()
        .filter(|(_, i)| **i == 0)
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(on0, expect0, "filter by appliance");

    // Register the third appliance: it takes new flows, old ones stay.
    let t = api
        .register(
            "tg",
            &TargetSpec {
                address: ip(2),
                weight: Some(100),
                port: None,
                mac: None,
            },
        )
        .expect("register");
    // A registered target starts initial (no new flows) until its checks pass (issue 18).
    assert_eq!(t.state, TargetState::Initial);
    // Healthy after two probes (100 ms apart); its MAC is learned within a second or two
    // (ARP through the exception path).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let g = api.list_groups().unwrap();
        let t = g[0].targets.iter().find(|t| t.address == ip(2)).unwrap();
        if t.state == TargetState::Healthy && t.resolved {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "registered target not healthy and resolved: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let b = ports(2000..2090);
    let (at_b, _) = rig.send_flows(&b);
    assert!(
        spread(&at_b, 3)[2] > 0,
        "registered appliance takes new flows"
    );
    assert_eq!(rig.send_flows(&a).0, at_a, "registration moves no flow");

    // Weight 0 on appliance 0: no new flows to it, its flows stay.
    let t = api.set_weight("tg", ip(0), 0).expect("weight");
    assert_eq!(t.weight, 0);
    let c = ports(3000..3090);
    let (at_c, _) = rig.send_flows(&c);
    assert_eq!(spread(&at_c, 3)[0], 0, "weight 0 gets no new flow");
    assert_eq!(rig.send_flows(&a).0, at_a, "re-weighting moves no flow");

    // Deregister appliance 1: draining (default delay 300 s) keeps its flows, new ones
    // avoid it.
    let t = api.deregister("tg", ip(1)).expect("deregister");
    assert_eq!(t.state, TargetState::Draining);
    assert!(t.drain_remaining_s.is_some_and(|s| s > 290 && s <= 300));
    let d = ports(4000..4090);
    let (at_d, _) = rig.send_flows(&d);
    assert_eq!(
        spread(&at_d, 3),
        vec![0, 0, d.len()],
        "only appliance 2 takes new flows"
    );
    assert_eq!(rig.send_flows(&a).0, at_a, "draining moves no flow");
    assert_eq!(rig.send_flows(&b).0, at_b);

    // Bad requests: clear errors, nothing changed.
    let before = api.list_groups().unwrap();
    let refused = |r: Result<_, ClientError>, status: u16, needle: &str| {
        let e = r.expect_err("must be refused");
        let text = e.to_string();
        assert!(
            matches!(&e, ClientError::Api { status: s, .. } if *s == status),
            "HTTP {status} expected: {text}"
        );
        assert!(text.contains(needle), "{needle:?} in {text}");
    };
    refused(api.set_weight("tg", ip(0), 5000).map(|_| ()), 400, "weight");
    refused(api.set_weight("nope", ip(0), 5).map(|_| ()), 404, "nope");
    refused(
        api.register(
            "tg",
            &TargetSpec {
                address: ip(2),
                weight: None,
                port: None,
                mac: None,
            },
        )
        .map(|_| ()),
        409,
        "already registered",
    );
    refused(
        api.register(
            "tg",
            &TargetSpec {
                address: "192.0.2.1".parse().unwrap(),
                weight: None,
                port: None,
                mac: None,
            },
        )
        .map(|_| ()),
        400,
        "address",
    );
    let after = api.list_groups().unwrap();
    let strip = |g: &Vec<gwlb::control::TargetGroupInfo>| -> Vec<(IpAddr, u16, TargetState)> {
        g[0].targets
            .iter()
            .map(|t| (t.address, t.weight, t.state))
            .collect()
    };
    assert_eq!(
        strip(&after),
        strip(&before),
        "refused requests changed nothing"
    );

    // Metrics: per-appliance packet counters equal what the appliances received.
    std::thread::sleep(Duration::from_millis(300));
    let metrics = ApiClient::new(Listen::Unix(metrics_sock.clone()), None)
        .request("GET", "/metrics", None)
        .expect("metrics");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    for (i, app) in rig.apps.iter().enumerate() {
        let addr = ip(i).to_string();
        let got = metric(&text, "gwlb_target_packets_total", &[("address", &addr)])
            .unwrap_or_else(|| panic!("no packet metric for {addr}:\n{text}"));
        assert_eq!(got as usize, app.count(), "packets to {addr}");
    }
    assert_eq!(
        metric(&text, "gwlb_HealthyHostCount", &[("target_group", "tg")]),
        Some(1.0)
    );
    // The build, the same in the API, the metrics and `gwlb --version`.
    let version = api.request("GET", "/v1/version", None).expect("version");
    assert_eq!(version.status, 200);
    let version: serde_json::Value = serde_json::from_slice(&version.body).unwrap();
    let build = gwlb::build_info::BuildInfo::current();
    assert_eq!(version["version"], build.version);
    assert_eq!(version["commit"], build.commit);
    let dpdk = build.dpdk.as_deref().expect("a DPDK build");
    assert_eq!(version["dpdk"], dpdk);
    assert_eq!(
        metric(
            &text,
            "gwlb_build_info",
            &[("commit", build.commit), ("dpdk", dpdk)]
        ),
        Some(1.0)
    );
    let line = Command::new(env!("CARGO_BIN_EXE_gwlb"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(line.stdout).unwrap().trim(),
        format!("gwlb {}", build.line())
    );

    let stats = api.stats().unwrap();
    let sent: usize = rig.apps.iter().map(|a| a.count()).sum();
    assert_eq!(stats.total.encapsulated as usize, sent);

    // The CLI shows the same state.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gwlb"))
            .args(args)
            .args(["--api", &format!("unix:{}", api_sock.display())])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gwlb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli(&["targets"]);
    for (i, state) in [(0, "healthy"), (1, "draining"), (2, "healthy")] {
        let line = table
            .lines()
            .find(|l| l.contains(&ip(i).to_string()))
            .unwrap_or_else(|| panic!("{} in:\n{table}", ip(i)));
        assert!(line.contains(state), "{state}: {line}");
    }
    let json: serde_json::Value = serde_json::from_str(&cli(&["stats", "--json"])).unwrap();
    assert_eq!(json["total"]["encapsulated"].as_u64(), Some(sent as u64));
    let flows = cli(&["flows", "--port", "7000", "--all"]);
    let listed: BTreeSet<&str> = flows.lines().collect();
    assert!(
        listed.len() > a.len(),
        "flows table lists the flows:\n{flows}"
    );

    rig.stop();
    assert!(!api_sock.exists(), "API socket removed at exit");
}
