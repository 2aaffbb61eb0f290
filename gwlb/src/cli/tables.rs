//! Human-readable output of the CLI: aligned tables (`tabwriter`), one row per item, `-`
//! where a value is absent. `--json` bypasses this and prints the API's JSON.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use tabwriter::TabWriter;

use crate::control::{
    DrainReport, FlowInfo, HealthCheckInfo, ReloadReport, StatsReport, TargetGroupInfo, TargetInfo,
    TargetState, WorkerReport,
};
use crate::routing::RoutingReport;

/// Builds a table from tab-separated rows.
struct Table {
    rows: Vec<String>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.join("\t")],
        }
    }

    fn row(&mut self, cells: &[String]) {
        self.rows.push(cells.join("\t"));
    }

    fn render(self) -> String {
        let mut tw = TabWriter::new(Vec::new()).padding(2);
        for r in &self.rows {
            // Writing to a Vec cannot fail.
            let _ = writeln!(tw, "{r}");
        }
        let bytes = tw.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn state(t: &TargetInfo) -> String {
    match (t.state, t.drain_remaining_s) {
        (TargetState::Draining, Some(s)) => format!("draining ({s}s left)"),
        (s, _) => s.as_str().to_owned(),
    }
}

/// Targets of `groups`, one row each.
pub fn targets(groups: &[TargetGroupInfo]) -> String {
    let targets: Vec<&TargetInfo> = groups.iter().flat_map(|g| &g.targets).collect();
    target_rows(&targets)
}

/// One target (the reply of register, deregister, weight).
pub fn target(t: &TargetInfo) -> String {
    target_rows(&[t])
}

fn target_rows(targets: &[&TargetInfo]) -> String {
    let mut table = Table::new(&[
        "GROUP", "ADDRESS", "PORT", "WEIGHT", "STATE", "REASON", "CHECK", "RESOLVED", "PACKETS",
        "BYTES", "FLOWS",
    ]);
    for t in targets {
        table.row(&[
            t.group.clone(),
            t.address.to_string(),
            t.port.clone(),
            t.weight.to_string(),
            state(t),
            or_dash(t.reason.as_deref()),
            or_dash(t.check_latency_ms.map(|ms| format!("{ms:.1}ms"))),
            if t.resolved { "yes" } else { "no" }.to_owned(),
            t.packets.to_string(),
            t.bytes.to_string(),
            t.flows.to_string(),
        ]);
    }
    table.render()
}

/// Target groups, one row each, with their health-check summary.
pub fn groups(groups: &[TargetGroupInfo]) -> String {
    let mut table = Table::new(&[
        "NAME",
        "HEALTHY",
        "UNHEALTHY",
        "INITIAL",
        "TARGETS",
        "STICKINESS",
        "ON_UNHEALTHY",
        "ON_ALL_UNHEALTHY",
        "DRAIN",
        "HEALTH_CHECK",
    ]);
    for g in groups {
        table.row(&[
            g.name.clone(),
            g.healthy_count.to_string(),
            g.unhealthy_count.to_string(),
            g.initial_count.to_string(),
            g.targets.len().to_string(),
            g.stickiness.clone(),
            g.on_unhealthy.clone(),
            g.on_all_unhealthy.clone(),
            format!("{}s", g.deregistration_delay_s),
            check_summary(&g.health_check),
        ]);
    }
    table.render()
}

fn check_summary(h: &HealthCheckInfo) -> String {
    if !h.enabled {
        return "off".to_owned();
    }
    let target = match (&h.path, h.protocol.as_str()) {
        (_, "geneve") => "geneve".to_owned(),
        (Some(path), _) => format!("{} :{}{path}", h.protocol, h.port),
        (None, _) => format!("{} :{}", h.protocol, h.port),
    };
    let data_path = if h.data_path.is_some() && h.protocol != "geneve" {
        " +data path"
    } else {
        ""
    };
    format!("{target}{data_path} every {}ms", h.interval_ms)
}

/// A group's health check, one setting per line.
pub fn health_check(group: &str, h: &HealthCheckInfo) -> String {
    let mut table = Table::new(&["SETTING", "VALUE"]);
    let rows: [(&str, String); 13] = [
        ("target_group", group.to_owned()),
        ("enabled", h.enabled.to_string()),
        ("protocol", h.protocol.clone()),
        ("data_path", or_dash(h.data_path.as_deref())),
        ("port", h.port.to_string()),
        ("path", or_dash(h.path.as_deref())),
        ("success_codes", or_dash(h.success_codes.as_deref())),
        ("interval_ms", h.interval_ms.to_string()),
        ("timeout_ms", h.timeout_ms.to_string()),
        ("healthy_threshold", h.healthy_threshold.to_string()),
        ("unhealthy_threshold", h.unhealthy_threshold.to_string()),
        ("initial_state", h.initial_state.clone()),
        (
            "flap_damping_half_life_s",
            match h.flap_damping_half_life_s {
                0 => "off".to_owned(),
                s => s.to_string(),
            },
        ),
    ];
    for (k, v) in rows {
        table.row(&[k.to_owned(), v]);
    }
    table.render()
}

/// Counters per worker and in total, then drops by reason.
pub fn stats(s: &StatsReport) -> String {
    let mut out = format!(
        "uptime {:.1}s, generation {}, choice digest {}\n\n",
        s.uptime_s, s.generation, s.choice_digest
    );
    // The table's counters that have a column, between the worker and the flow table.
    let counters: Vec<_> = WorkerReport::COUNTERS
        .iter()
        .filter(|c| !c.column.is_empty())
        .collect();
    let mut head = vec!["WORKER"];
    head.extend(counters.iter().map(|c| c.column));
    head.extend(["ACTIVE_FLOWS", "CAPACITY", "DROPPED"]);
    let mut table = Table::new(&head);
    let rows = s
        .workers
        .iter()
        .map(|w| (w.worker.to_string(), w))
        .chain(std::iter::once(("total".to_owned(), &s.total)));
    for (name, w) in rows {
        let mut row = vec![name];
        row.extend(counters.iter().map(|c| (c.get)(w).to_string()));
        row.extend([
            w.active_flows.to_string(),
            w.flow_table_capacity.to_string(),
            w.dropped.to_string(),
        ]);
        table.row(&row);
    }
    out.push_str(&table.render());
    if !s.total.drops.is_empty() {
        let mut drops = Table::new(&["DROP_REASON", "PACKETS"]);
        for (reason, n) in &s.total.drops {
            drops.row(&[reason.clone(), n.to_string()]);
        }
        out.push('\n');
        out.push_str(&drops.render());
    }
    if let Some(r) = &s.routing {
        out.push_str(&routing(r));
    }
    if !s.mirror_sessions.is_empty() {
        out.push('\n');
        out.push_str(&mirror_sessions(&s.mirror_sessions));
    }
    if !s.endpoints.is_empty() {
        out.push('\n');
        out.push_str(&endpoints(&s.endpoints));
    }
    if let Some(d) = &s.drain {
        out.push('\n');
        out.push_str(&drain(d));
    }
    out
}

/// `gwlb drain`.
pub fn drain(d: &DrainReport) -> String {
    if !d.draining {
        return "not draining\n".into();
    }
    format!(
        "{}: {:.1}s of at most {}s, {} flows left\n",
        if d.drained { "drained" } else { "draining" },
        d.elapsed_s,
        d.timeout_s,
        d.active_flows
    )
}

/// The mirror sessions of `gwlb stats` and `gwlb mirror list`, one row each.
pub fn mirror_sessions(sessions: &[crate::control::MirrorSessionReport]) -> String {
    let mut t = Table::new(&[
        "MIRROR",
        "POOL",
        "FORMAT",
        "VNI",
        "COPY_POINT",
        "SAMPLE",
        "SNAP",
        "PACKETS",
        "BYTES",
        "NO_SENSOR",
        "NO_BUFFER",
        "TX_FULL",
    ]);
    for m in sessions {
        t.row(&[
            m.name.clone(),
            m.target_group.clone(),
            m.format.clone(),
            m.vni.to_string(),
            m.copy_point.clone(),
            format!("1/{}", m.sample_one_in),
            m.snap_length
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            m.packets.to_string(),
            m.bytes.to_string(),
            m.no_sensor.to_string(),
            m.no_buffer.to_string(),
            m.tx_full.to_string(),
        ]);
    }
    t.render()
}

/// The endpoints of `gwlb stats` and `gwlb endpoints list`: a row per endpoint (its
/// totals), then a row per rule.
pub fn endpoints(endpoints: &[crate::control::EndpointReport]) -> String {
    let mut t = Table::new(&[
        "ENDPOINT", "RULE", "ACTION", "GROUP", "PACKETS", "BYTES", "FLOWS",
    ]);
    for e in endpoints {
        let vlan: Vec<String> = e.vlan.iter().map(u16::to_string).collect();
        t.row(&[
            e.name.clone(),
            "*".to_owned(),
            if vlan.is_empty() {
                "untagged".to_owned()
            } else {
                format!("vlan {}", vlan.join("."))
            },
            e.endpoint_id.clone(),
            e.packets.to_string(),
            e.bytes.to_string(),
            e.flows.to_string(),
        ]);
        for r in &e.rules {
            t.row(&[
                e.name.clone(),
                r.name.clone(),
                r.action.clone(),
                match (&r.target_group, r.chain.is_empty()) {
                    (Some(g), _) => g.clone(),
                    (None, false) => r.chain.join(">"),
                    (None, true) => "-".to_owned(),
                },
                r.packets.to_string(),
                r.bytes.to_string(),
                r.flows.to_string(),
            ]);
        }
    }
    t.render()
}

/// The BGP part of `gwlb stats`.
fn routing(r: &RoutingReport) -> String {
    let mut out = format!(
        "\nbgp: {} {} (daemon {}, {} restarts)\n",
        if r.announced {
            "announcing"
        } else {
            "withdrawn:"
        },
        if r.announced {
            r.prefixes.join(", ")
        } else {
            r.withdrawn_because.clone().unwrap_or_default()
        },
        r.daemon,
        r.daemon_restarts
    );
    let mut t = Table::new(&["NEIGHBOR", "SESSION"]);
    for s in &r.sessions {
        t.row(&[s.neighbor.clone(), s.state.clone()]);
    }
    out.push_str(&t.render());
    out
}

fn protocol(p: u8) -> String {
    match p {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "icmpv6".to_owned(),
        132 => "sctp".to_owned(),
        n => n.to_string(),
    }
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    if port == 0 {
        addr.to_string()
    } else {
        SocketAddr::new(addr, port).to_string()
    }
}

/// Flows, one row each.
pub fn flows(flows: &[FlowInfo]) -> String {
    let mut table = Table::new(&[
        "WORKER",
        "GROUP",
        "APPLIANCE",
        "PROTO",
        "A",
        "B",
        "IDLE",
        "ENDPOINT",
        "RULE",
    ]);
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".to_owned());
    for f in flows {
        let (group, appliance) = if f.bypass {
            ("-".to_owned(), "bypass".to_owned())
        } else {
            (f.group.clone(), f.appliance.to_string())
        };
        table.row(&[
            f.worker.to_string(),
            group,
            appliance,
            protocol(f.protocol),
            endpoint(f.addr_a, f.port_a),
            endpoint(f.addr_b, f.port_b),
            format!("{}s", f.idle_s),
            dash(&f.endpoint),
            dash(&f.rule),
        ]);
    }
    table.render()
}

/// What a reload changed.
pub fn reload(r: &ReloadReport) -> String {
    let mut out = format!("reloaded {}\n", r.file);
    let lists: [(&str, &Vec<String>); 5] = [
        ("registered", &r.registered),
        ("deregistered (draining)", &r.deregistered),
        ("re-weighted", &r.reweighted),
        ("changed", &r.changed),
        ("warning", &r.warnings),
    ];
    let mut any = false;
    for (what, items) in lists {
        for item in items {
            out.push_str(&format!("  {what}: {item}\n"));
            any = true;
        }
    }
    if !any {
        out.push_str("  no changes\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::WorkerReport;

    fn target(addr: &str, state: TargetState) -> TargetInfo {
        TargetInfo {
            group: "firewalls".into(),
            address: addr.parse().unwrap(),
            port: "appliance".into(),
            weight: 100,
            state,
            reason: None,
            drain_remaining_s: (state == TargetState::Draining).then_some(30),
            check_latency_ms: Some(1.25),
            slot: 0,
            resolved: true,
            packets: 12,
            bytes: 3400,
            flows: 5,
        }
    }

    #[test]
    fn test_columns_align() {
        let out = target_rows(&[
            &target("10.0.2.11", TargetState::Healthy),
            &target("fd00:2::1234", TargetState::Draining),
            &target("10.0.2.12", TargetState::Initial),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        // Every column starts at the same offset on every line.
        let col = |line: &str, text: &str| line.find(text).unwrap();
        assert_eq!(col(lines[0], "STATE"), col(lines[1], "healthy"), "{out}");
        assert_eq!(
            col(lines[0], "STATE"),
            col(lines[2], "draining (30s left)"),
            "{out}"
        );
        assert_eq!(col(lines[0], "STATE"), col(lines[3], "initial"), "{out}");
        assert_eq!(col(lines[0], "CHECK"), col(lines[1], "1.2ms"), "{out}");
    }

    #[test]
    fn test_stats_total_row_and_drops() {
        let mut w = WorkerReport {
            rx: 10,
            ..Default::default()
        };
        w.drops.insert("no_route".into(), 3);
        let s = StatsReport {
            workers: vec![w.clone()],
            total: w,
            ..Default::default()
        };
        let out = stats(&s);
        assert!(
            out.lines()
                .any(|l| l.starts_with("total ") && l.contains("10")),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("no_route") && l.ends_with('3')),
            "{out}"
        );
    }

    #[test]
    fn test_stats_show_mirror_sessions() {
        let s = StatsReport {
            mirror_sessions: vec![crate::control::MirrorSessionReport {
                name: "ids".into(),
                target_group: "sensors".into(),
                format: "vxlan".into(),
                vni: 100,
                copy_point: "before_inspection".into(),
                sample_one_in: 4,
                snap_length: None,
                packets: 50,
                bytes: 3000,
                no_sensor: 2,
                no_buffer: 0,
                tx_full: 1,
                settings: None,
            }],
            ..Default::default()
        };
        let out = stats(&s);
        let row = out
            .lines()
            .find(|l| l.starts_with("ids "))
            .unwrap_or_else(|| panic!("{out}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "ids",
                "sensors",
                "vxlan",
                "100",
                "before_inspection",
                "1/4",
                "-",
                "50",
                "3000",
                "2",
                "0",
                "1"
            ]
        );
        assert!(!stats(&StatsReport::default()).contains("MIRROR"));
    }

    #[test]
    fn test_stats_show_endpoints_and_rules() {
        let rule =
            |name: &str, action: &str, group: Option<&str>, n: u64| crate::control::RuleReport {
                name: name.into(),
                action: action.into(),
                target_group: group.map(Into::into),
                chain: Vec::new(),
                packets: n,
                bytes: n * 100,
                flows: 1,
            };
        let s = StatsReport {
            endpoints: vec![crate::control::EndpointReport {
                name: "tenant-a".into(),
                vlan: vec![100, 7],
                endpoint_id: "0xa".into(),
                packets: 5,
                bytes: 500,
                flows: 2,
                rules: vec![
                    rule("backup", "bypass", None, 2),
                    rule("default", "inspect", Some("fw"), 3),
                ],
                settings: None,
            }],
            ..Default::default()
        };
        let out = stats(&s);
        let rows: Vec<Vec<&str>> = out
            .lines()
            .filter(|l| l.starts_with("tenant-a "))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["tenant-a", "*", "vlan", "100.7", "0xa", "5", "500", "2"],
                vec!["tenant-a", "backup", "bypass", "-", "2", "200", "1"],
                vec!["tenant-a", "default", "inspect", "fw", "3", "300", "1"],
            ],
            "{out}"
        );
        assert!(!stats(&StatsReport::default()).contains("ENDPOINT"));
    }

    #[test]
    fn test_flow_endpoints() {
        assert_eq!(endpoint("fd00::1".parse().unwrap(), 443), "[fd00::1]:443");
        assert_eq!(endpoint("10.0.0.1".parse().unwrap(), 0), "10.0.0.1");
        assert_eq!(protocol(6), "tcp");
        assert_eq!(protocol(47), "47");
    }
}
