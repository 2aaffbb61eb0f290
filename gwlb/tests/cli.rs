//! The `gwlb` binary as an API client, against a real API server (TCP and Unix socket) in
//! front of the gateway's real control loop (`control_rig`).

// The binary needs the `dpdk` feature.
#![cfg(feature = "dpdk")]

mod control_rig;

use std::process::{Command, Output};

use control_rig::{without_uptime, Gateway, FLOW_COUNT};
use gwlb::api::{serve, ApiServer};
use gwlb::config::Listen;
use gwlb::control::{FlowPage, StatsReport, TargetGroupInfo, TargetInfo, TargetState};

fn start(token: Option<&str>) -> (Gateway, ApiServer) {
    let gw = Gateway::start();
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = serve(&listen, token.map(Into::into), gw.handle.clone()).unwrap();
    (gw, server)
}

fn gwlb(api: &Listen, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gwlb"))
        .args(args)
        .arg("--api")
        .arg(api.to_string())
        .env_remove("GWLB_API")
        .env_remove("GWLB_API_TOKEN")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn failure(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn test_targets_table_and_json() {
    let (gw, s) = start(None);
    let out = stdout(&gwlb(s.local_addr(), &["targets"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "{out}");
    assert!(lines[0].starts_with("GROUP"), "{out}");
    // Aligned: the STATE column starts at the same offset on every line.
    let state_col = lines[0].find("STATE").unwrap();
    for (line, state) in lines[1..].iter().zip(["healthy", "unhealthy", "healthy"]) {
        assert_eq!(line.find(state), Some(state_col), "{out}");
    }
    assert!(lines[2].contains("connection refused"), "{out}");

    let out = stdout(&gwlb(s.local_addr(), &["targets", "firewalls", "--json"]));
    let groups: Vec<TargetGroupInfo> = serde_json::from_str(&out).unwrap();
    assert_eq!(groups, vec![gw.groups()[0].clone()]);

    let out = stdout(&gwlb(s.local_addr(), &["groups"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("firewalls") && l.ends_with(" off")),
        "{out}"
    );
}

#[test]
fn test_register_weight_deregister() {
    let (gw, s) = start(None);
    let a = s.local_addr();
    let out = stdout(&gwlb(
        a,
        &[
            "register",
            "firewalls",
            "10.0.2.50",
            "--weight",
            "20",
            "--mac",
            "02:00:00:00:02:32",
        ],
    ));
    assert!(
        out.contains("10.0.2.50") && out.contains("healthy"),
        "{out}"
    );
    let t = gw.groups()[0].targets.last().cloned().unwrap();
    assert_eq!(
        (t.address.to_string().as_str(), t.weight),
        ("10.0.2.50", 20)
    );

    let err = failure(&gwlb(
        a,
        &[
            "register",
            "firewalls",
            "10.0.2.50",
            "--mac",
            "02:00:00:00:02:32",
        ],
    ));
    assert!(
        err.contains("already registered") && err.contains("409"),
        "{err}"
    );

    let out = stdout(&gwlb(
        a,
        &["weight", "firewalls", "10.0.2.50", "5", "--json"],
    ));
    let t: TargetInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(t.weight, 5);

    let err = failure(&gwlb(a, &["weight", "firewalls", "10.0.2.50", "1001"]));
    assert!(err.starts_with("gwlb: weight: "), "{err}");

    let out = stdout(&gwlb(a, &["deregister", "firewalls", "10.0.2.50"]));
    assert!(out.contains("draining (120s left)"), "{out}");
    let t = gw.groups()[0].targets.last().cloned().unwrap();
    assert_eq!(t.state, TargetState::Draining);

    let err = failure(&gwlb(a, &["deregister", "nope", "10.0.2.50"]));
    assert!(err.contains("target group \"nope\" not found"), "{err}");

    // Bad arguments are refused before any request (clap: exit 2).
    let o = gwlb(a, &["register", "firewalls", "not-an-ip"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn test_health_check_show_and_change() {
    let (gw, s) = start(None);
    let a = s.local_addr();
    let out = stdout(&gwlb(a, &["health-check", "firewalls"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("interval_ms") && l.ends_with("1000")),
        "{out}"
    );
    let out = stdout(&gwlb(
        a,
        &["health-check", "firewalls", "--interval-ms", "2500"],
    ));
    assert!(
        out.lines()
            .any(|l| l.starts_with("interval_ms") && l.ends_with("2500")),
        "{out}"
    );
    assert_eq!(gw.groups()[0].health_check.interval_ms, 2500);
    let err = failure(&gwlb(
        a,
        &["health-check", "firewalls", "--interval-ms", "5"],
    ));
    assert!(err.starts_with("gwlb: interval_ms: "), "{err}");
}

#[test]
fn test_stats_flows_reload() {
    let (gw, s) = start(None);
    let a = s.local_addr();
    let out = stdout(&gwlb(a, &["stats"]));
    let total = out.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(total.contains(&FLOW_COUNT.to_string()), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("truncated_ip") && l.contains(" 1")),
        "{out}"
    );
    let stats: StatsReport = serde_json::from_str(&stdout(&gwlb(a, &["stats", "--json"]))).unwrap();
    assert_eq!(without_uptime(stats), gw.stats());

    // One page: a hint on stderr about the rest.
    let o = gwlb(a, &["flows", "--limit", "10"]);
    assert_eq!(stdout(&o).lines().count(), 11);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--cursor "),
        "{o:?}"
    );
    // Every page.
    let page: FlowPage = serde_json::from_str(&stdout(&gwlb(
        a,
        &["flows", "--all", "--limit", "40", "--json"],
    )))
    .unwrap();
    assert_eq!(page.flows, gw.flows());
    assert_eq!(page.flows.len(), FLOW_COUNT);
    let out = stdout(&gwlb(
        a,
        &["flows", "--appliance", "10.0.2.11", "--port", "80", "--all"],
    ));
    assert!(
        out.lines()
            .skip(1)
            .all(|l| l.contains("10.0.2.11") && l.contains(":80 ")),
        "{out}"
    );
    assert!(out.lines().count() > 1);

    let out = stdout(&gwlb(a, &["reload"]));
    assert!(
        out.contains(&format!("reloaded {}", gw.config_path.display())),
        "{out}"
    );
}

#[test]
fn test_daemon_not_running() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = Listen::Tcp(([127, 0, 0, 1], port).into());
    let err = failure(&gwlb(&api, &["targets"]));
    assert!(
        err.contains(&format!("cannot reach the gwlb API at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("is `gwlb run` running?"), "{err}");
    let sock = Listen::Unix("/nonexistent/gwlb/api.sock".into());
    let err = failure(&gwlb(&sock, &["stats"]));
    assert!(err.contains("unix:/nonexistent/gwlb/api.sock"), "{err}");
}

#[test]
fn test_env_unix_socket_and_token() {
    let gw = Gateway::start();
    let dir = std::env::temp_dir().join(format!("gwlb-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listen = Listen::Unix(dir.join("api.sock"));
    let s = serve(&listen, Some("0123456789abcdef".into()), gw.handle.clone()).unwrap();
    let run = |token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gwlb"));
        c.args(["targets", "--json"])
            .env("GWLB_API", s.local_addr().to_string())
            .env_remove("GWLB_API_TOKEN");
        if let Some(t) = token {
            c.env("GWLB_API_TOKEN", t);
        }
        c.output().unwrap()
    };
    let err = failure(&run(None));
    assert!(err.contains("401"), "{err}");
    let out = stdout(&run(Some("0123456789abcdef")));
    let groups: Vec<TargetGroupInfo> = serde_json::from_str(&out).unwrap();
    assert_eq!(groups, gw.groups());
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `check-config --compare`: two nodes' files agree when only node-specific settings differ,
/// and the first setting that changes the choice is named otherwise.
#[test]
fn test_check_config_compare() {
    let dir = std::env::temp_dir().join(format!("gwlb-cli-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.toml");
    let b = dir.join("b.toml");
    let c = dir.join("c.toml");
    std::fs::write(&a, control_rig::CONFIG).unwrap();
    std::fs::write(
        &b,
        control_rig::CONFIG.replace("10.1.0.1/16", "10.1.0.2/16"),
    )
    .unwrap();
    std::fs::write(
        &c,
        control_rig::CONFIG.replace(
            "address = \"10.0.2.12\"",
            "address = \"10.0.2.12\"\nweight = 3",
        ),
    )
    .unwrap();
    let run = |x: &std::path::Path, y: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_gwlb"))
            .args(["check-config", "--config"])
            .arg(x)
            .arg("--compare")
            .arg(y)
            .output()
            .unwrap()
    };
    let out = stdout(&run(&a, &b));
    assert!(out.contains("picks the same appliances"), "{out}");
    let err = failure(&run(&a, &c));
    assert!(
        err.contains("pick different appliances: target_groups[0].targets[1]: 10.0.2.12 weight 1 vs 10.0.2.12 weight 3"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_mirror_add_list_set_delete() {
    let (gw, s) = start(None);
    let a = s.local_addr();
    let out = stdout(&gwlb(
        a,
        &[
            "mirror",
            "add",
            r#"{"name": "ids", "target_group": "inspection", "vni": 100}"#,
        ],
    ));
    assert!(out.starts_with("MIRROR") && out.contains("ids "), "{out}");
    let file = gw.config_path.with_file_name("tls.json");
    std::fs::write(&file, r#"{"name": "tls", "target_group": "inspection"}"#).unwrap();
    stdout(&gwlb(
        a,
        &["mirror", "add", &format!("@{}", file.display())],
    ));
    let names: Vec<String> = gw
        .stats()
        .mirror_sessions
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(names, ["ids", "tls"]);

    let err = failure(&gwlb(
        a,
        &[
            "mirror",
            "add",
            r#"{"name": "ids", "target_group": "inspection"}"#,
        ],
    ));
    assert!(err.contains("exists") && err.contains("409"), "{err}");
    let err = failure(&gwlb(
        a,
        &["mirror", "set", "ids", r#"{"sample_one_in": 0}"#],
    ));
    assert!(
        err.starts_with("gwlb: sample_one_in: ") && err.contains("400"),
        "{err}"
    );
    let err = failure(&gwlb(a, &["mirror", "set", "ids", "sample_one_in=4"]));
    assert!(err.starts_with("gwlb: body: not JSON"), "{err}");
    assert_eq!(gw.stats().mirror_sessions[0].sample_one_in, 1);

    let out = stdout(&gwlb(
        a,
        &["mirror", "set", "ids", r#"{"sample_one_in": 4}"#, "--json"],
    ));
    let m: gwlb::control::MirrorSessionReport = serde_json::from_str(&out).unwrap();
    assert_eq!((m.sample_one_in, m.vni), (4, 100));
    let out = stdout(&gwlb(
        a,
        &[
            "mirror",
            "set",
            "ids",
            "--replace",
            r#"{"name": "ids", "target_group": "inspection"}"#,
        ],
    ));
    assert!(out.contains("1/1"), "replaced: defaults again: {out}");
    let out = stdout(&gwlb(a, &["mirror", "list"]));
    assert_eq!(out.lines().count(), 1 + 2, "{out}");
    stdout(&gwlb(a, &["mirror", "delete", "ids"]));
    let err = failure(&gwlb(a, &["mirror", "show", "ids"]));
    assert!(err.contains("not found") && err.contains("404"), "{err}");
    let out = stdout(&gwlb(a, &["mirror", "show", "tls", "--json"]));
    assert!(out.contains("\"settings\""), "{out}");
}

#[test]
fn test_endpoints_add_set_rules_delete() {
    let gw = Gateway::start_with(
        &(control_rig::CONFIG.replacen("user_ports = [\"user\"]", "user_ports = []", 1)
            + "\n[[endpoints]]\nname = \"a\"\nports = [\"user\"]\ntarget_group = \"firewalls\"\n"),
    );
    let s = serve(
        &Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        None,
        gw.handle.clone(),
    )
    .unwrap();
    let a = s.local_addr();
    let out = stdout(&gwlb(a, &["endpoints", "list"]));
    assert!(out.starts_with("ENDPOINT") && out.contains("a "), "{out}");
    stdout(&gwlb(
        a,
        &[
            "endpoints",
            "add",
            r#"{"name": "b", "ports": ["user"], "vlan": [7], "target_group": "firewalls",
                "routes": [{"prefix": "0.0.0.0/0", "via": "10.1.0.254", "mac": "02:00:00:00:01:fe"}]}"#,
        ],
    ));
    let out = stdout(&gwlb(
        a,
        &[
            "endpoints",
            "rules",
            "b",
            r#"[{"name": "web", "destination_ports": ["80"], "protocols": [6], "action": "bypass"}]"#,
        ],
    ));
    assert!(
        out.lines()
            .any(|l| l.starts_with("b ") && l.contains(" web ") && l.contains("bypass")),
        "{out}"
    );
    stdout(&gwlb(
        a,
        &[
            "endpoints",
            "rules",
            "b",
            "--append",
            r#"{"name": "dns", "protocols": [17], "action": "drop"}"#,
        ],
    ));
    let err = failure(&gwlb(
        a,
        &[
            "endpoints",
            "rules",
            "b",
            "--append",
            r#"{"name": "x", "action": "inspect"}"#,
        ],
    ));
    assert!(
        err.starts_with("gwlb: target_group: ") && err.contains("400"),
        "{err}"
    );
    let err = failure(&gwlb(a, &["endpoints", "rules", "b", r#"{"name": "x"}"#]));
    assert!(
        err.starts_with("gwlb: body: expected a JSON array"),
        "{err}"
    );
    let out = stdout(&gwlb(
        a,
        &[
            "endpoints",
            "set",
            "b",
            r#"{"default_action": "bypass", "target_group": null}"#,
            "--json",
        ],
    ));
    let e: gwlb::control::EndpointReport = serde_json::from_str(&out).unwrap();
    let rules: Vec<(&str, &str)> = e
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.action.as_str()))
        .collect();
    assert_eq!(
        rules,
        [("web", "bypass"), ("dns", "drop"), ("default", "bypass")]
    );
    stdout(&gwlb(a, &["endpoints", "delete-rule", "b", "web"]));
    let err = failure(&gwlb(a, &["endpoints", "delete-rule", "b", "web"]));
    assert!(err.contains("not found") && err.contains("404"), "{err}");
    stdout(&gwlb(a, &["endpoints", "delete", "b"]));
    let names: Vec<String> = gw
        .stats()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, ["a"]);
    let out = stdout(&gwlb(a, &["endpoints", "show", "a", "--json"]));
    assert!(out.contains("\"settings\""), "{out}");
}
