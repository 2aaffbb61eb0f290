//! Prometheus metrics at `GET /metrics`, in the text exposition format (version 0.0.4).
//!
//! Every scrape asks the control loop for [`StatsReport`] and the target groups; the workers
//! publish their counters once per burst anyway, so scraping costs them nothing.
//!
//! Names: AWS's Gateway Load Balancer metric names keep their spelling after the `gwlb_`
//! prefix (`gwlb_ActiveFlowCount`, `gwlb_HealthyHostCount`); counters end in `_total` as
//! Prometheus expects (`gwlb_NewFlowCount_total`, `gwlb_ProcessedBytes_total`). What AWS does
//! not have is in snake case (`gwlb_target_packets_total`, `gwlb_worker_rx_packets_total`).
//! The full list is in `docs/api.md`.

use std::fmt::Write as _;
use std::sync::Arc;

use super::http_error::HttpError;
use super::server::{start, ApiError, ApiServer, Limits, Reply};
use crate::config::Listen;
use crate::control::{ControlHandle, StatsReport, TargetGroupInfo, TargetInfo, TargetState};

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` on `listen` (no authentication: bind it to a trusted address).
pub fn serve_metrics(listen: &Listen, handle: ControlHandle) -> Result<ApiServer, ApiError> {
    start(
        listen,
        "metrics",
        None,
        Arc::new(move |req| {
            if req.path != "/metrics" {
                return Reply::error(&HttpError::not_found(format!(
                    "no route {}; metrics are at /metrics",
                    req.path
                )));
            }
            if req.method != "GET" {
                let mut reply = Reply::error(&HttpError::method_not_allowed(&req.method, &["GET"]));
                reply.allow = Some("GET".to_owned());
                return reply;
            }
            match handle.stats().and_then(|s| Ok((s, handle.list_groups()?))) {
                Ok((stats, groups)) => Reply::text(200, CONTENT_TYPE, render(&stats, &groups)),
                Err(e) => Reply::text(
                    e.http_status(),
                    "text/plain; charset=utf-8",
                    format!("cannot collect metrics: {e}\n"),
                ),
            }
        }),
        Limits::default(),
    )
}

/// The exposition of `stats` and `groups`.
pub fn render(stats: &StatsReport, groups: &[TargetGroupInfo]) -> String {
    let mut e = Exposition::default();
    let t = &stats.total;

    // --- AWS names -----------------------------------------------------------------------
    e.family(
        "gwlb_ActiveFlowCount",
        Gauge,
        "Flows in the flow tables (all workers).",
    );
    e.sample("gwlb_ActiveFlowCount", NO_LABELS, t.active_flows);
    e.family("gwlb_NewFlowCount_total", Counter, "New flows since start.");
    e.sample("gwlb_NewFlowCount_total", NO_LABELS, t.new_flows);
    e.family(
        "gwlb_TCP_ELB_Reset_Count_total",
        Counter,
        "TCP resets the gateway sent (AWS TCP_ELB_Reset_Count; per worker: gwlb_worker_tcp_resets_total).",
    );
    e.sample("gwlb_TCP_ELB_Reset_Count_total", NO_LABELS, t.tcp_resets);
    e.family(
        "gwlb_HealthyHostCount",
        Gauge,
        "Targets taking new flows (healthy, weight above 0), per target group.",
    );
    for g in groups {
        e.sample(
            "gwlb_HealthyHostCount",
            &[("target_group", &g.name)],
            g.healthy_count,
        );
    }
    e.family(
        "gwlb_UnHealthyHostCount",
        Gauge,
        "Registered targets failing their health checks, per target group.",
    );
    for g in groups {
        e.sample(
            "gwlb_UnHealthyHostCount",
            &[("target_group", &g.name)],
            g.unhealthy_count,
        );
    }
    e.family(
        "gwlb_initial_host_count",
        Gauge,
        "Registered targets whose health checks have not passed yet (initial: no new flows, neither healthy nor unhealthy), per target group.",
    );
    for g in groups {
        e.sample(
            "gwlb_initial_host_count",
            &[("target_group", &g.name)],
            g.initial_count,
        );
    }
    e.family(
        "gwlb_mirror_packets_total",
        Counter,
        "Copies a mirror session sent to its sensors.",
    );
    for m in &stats.mirror_sessions {
        e.sample(
            "gwlb_mirror_packets_total",
            &[("session", &m.name)],
            m.packets,
        );
    }
    e.family(
        "gwlb_mirror_bytes_total",
        Counter,
        "Bytes of the frames a mirror session copied (as truncated).",
    );
    for m in &stats.mirror_sessions {
        e.sample("gwlb_mirror_bytes_total", &[("session", &m.name)], m.bytes);
    }
    e.family(
        "gwlb_mirror_dropped_total",
        Counter,
        "Copies a mirror session did not send, by reason (no_sensor: no healthy sensor; no_buffer: no mbuf; tx_full: made, but the sensor port's transmit queue or copy socket refused it). The originals are forwarded regardless.",
    );
    for m in &stats.mirror_sessions {
        for (reason, n) in [
            ("no_sensor", m.no_sensor),
            ("no_buffer", m.no_buffer),
            ("tx_full", m.tx_full),
        ] {
            e.sample(
                "gwlb_mirror_dropped_total",
                &[("session", m.name.as_str()), ("reason", reason)],
                n,
            );
        }
    }
    e.family(
        "gwlb_mirror_sample_one_in",
        Gauge,
        "A mirror session copies one of every this many packets it selects (per worker).",
    );
    for m in &stats.mirror_sessions {
        e.sample(
            "gwlb_mirror_sample_one_in",
            &[("session", &m.name)],
            u64::from(m.sample_one_in),
        );
    }
    for (metric, help, get) in [
        (
            "gwlb_endpoint_packets_total",
            "User packets of an endpoint (tenant), whatever its rules decided.",
            (|r: &crate::control::RuleReport| r.packets) as fn(&crate::control::RuleReport) -> u64,
        ),
        (
            "gwlb_endpoint_bytes_total",
            "Bytes (IP) of an endpoint's user packets.",
            |r| r.bytes,
        ),
        (
            "gwlb_endpoint_flows_total",
            "Flows of an endpoint its rules decided (dropped flows are not stored and not counted).",
            |r| r.flows,
        ),
    ] {
        e.family(metric, Counter, help);
        for ep in &stats.endpoints {
            let n: u64 = ep.rules.iter().map(get).sum();
            e.sample(metric, &[("endpoint", &ep.name)], n);
        }
    }
    for (metric, help, get) in [
        (
            "gwlb_rule_packets_total",
            "User packets of the flows a steering rule decided (rule \"default\": the endpoint's default action).",
            (|r: &crate::control::RuleReport| r.packets) as fn(&crate::control::RuleReport) -> u64,
        ),
        (
            "gwlb_rule_bytes_total",
            "Bytes (IP) of the user packets a steering rule decided.",
            |r| r.bytes,
        ),
        (
            "gwlb_rule_flows_total",
            "Flows a steering rule decided.",
            |r| r.flows,
        ),
    ] {
        e.family(metric, Counter, help);
        for ep in &stats.endpoints {
            for r in &ep.rules {
                e.sample(
                    metric,
                    &[("endpoint", ep.name.as_str()), ("rule", r.name.as_str())],
                    get(r),
                );
            }
        }
    }
    e.family(
        "gwlb_target_group_failed_over",
        Gauge,
        "1 while the target group is below its health minimum and its new flows go to its failover group's targets, else 0.",
    );
    for g in groups {
        e.sample(
            "gwlb_target_group_failed_over",
            &[("target_group", &g.name)],
            u64::from(g.failed_over),
        );
    }
    e.family(
        "gwlb_target_group_failed_open",
        Gauge,
        "1 while the target group is below its health minimum and, with on_below_minimum = fail_open, sends its new flows to all its registered targets, healthy or not, else 0.",
    );
    for g in groups {
        e.sample(
            "gwlb_target_group_failed_open",
            &[("target_group", &g.name)],
            u64::from(g.failed_open),
        );
    }
    e.family(
        "gwlb_ProcessedBytes_total",
        Counter,
        "Inner IP bytes sent to the target group's appliances (its targets' sum, draining ones included).",
    );
    for g in groups {
        let bytes: u64 = g.targets.iter().map(|t| t.bytes).sum();
        e.sample(
            "gwlb_ProcessedBytes_total",
            &[("target_group", &g.name)],
            bytes,
        );
    }
    e.family(
        "gwlb_ProcessedPackets_total",
        Counter,
        "Packets sent to the target group's appliances (its targets' sum, draining ones included).",
    );
    for g in groups {
        let packets: u64 = g.targets.iter().map(|t| t.packets).sum();
        e.sample(
            "gwlb_ProcessedPackets_total",
            &[("target_group", &g.name)],
            packets,
        );
    }

    // --- Per target -----------------------------------------------------------------------
    let targets: Vec<&TargetInfo> = groups.iter().flat_map(|g| &g.targets).collect();
    let target_counter = |e: &mut Exposition, name: &str, help: &str, f: fn(&TargetInfo) -> u64| {
        e.family(name, Counter, help);
        for t in &targets {
            e.sample(name, &target_labels(t), f(t));
        }
    };
    target_counter(
        &mut e,
        "gwlb_target_packets_total",
        "Packets encapsulated toward the target.",
        |t| t.packets,
    );
    target_counter(
        &mut e,
        "gwlb_target_bytes_total",
        "Inner IP bytes encapsulated toward the target.",
        |t| t.bytes,
    );
    target_counter(
        &mut e,
        "gwlb_target_flows_total",
        "Flows given to the target (new and moved).",
        |t| t.flows,
    );
    e.family(
        "gwlb_target_weight",
        Gauge,
        "Relative weight for new flows (0 = none).",
    );
    for t in &targets {
        e.sample("gwlb_target_weight", &target_labels(t), t.weight);
    }
    e.family(
        "gwlb_target_state",
        Gauge,
        "1 for the target's state (initial, healthy, unhealthy, draining), 0 for the others.",
    );
    for t in &targets {
        for state in TargetState::ALL {
            let mut labels = target_labels(t);
            labels.push(("state", state.as_str().to_owned()));
            e.sample("gwlb_target_state", &labels, u64::from(t.state == state));
        }
    }
    e.family(
        "gwlb_target_resolved",
        Gauge,
        "1 when the target's MAC address is known (encapsulation possible).",
    );
    for t in &targets {
        e.sample(
            "gwlb_target_resolved",
            &target_labels(t),
            u64::from(t.resolved),
        );
    }
    e.family(
        "gwlb_target_drain_remaining_seconds",
        Gauge,
        "Seconds left of a draining target's deregistration delay.",
    );
    for t in &targets {
        if let Some(s) = t.drain_remaining_s {
            e.sample("gwlb_target_drain_remaining_seconds", &target_labels(t), s);
        }
    }
    e.family(
        "gwlb_health_check_latency_seconds",
        Gauge,
        "Duration of the target's latest answered health-check probe.",
    );
    for t in &targets {
        if let Some(ms) = t.check_latency_ms {
            e.sample(
                "gwlb_health_check_latency_seconds",
                &target_labels(t),
                ms / 1000.0,
            );
        }
    }

    // --- Per worker -----------------------------------------------------------------------
    // Every counter of the one table (`stats::worker_counter_table`), then the totals.
    for c in crate::control::WorkerReport::COUNTERS {
        e.family(c.metric, Counter, c.help);
        for w in &stats.workers {
            e.sample(c.metric, &[("worker", &w.worker.to_string())], (c.get)(w));
        }
    }
    e.family(
        "gwlb_worker_dropped_packets_total",
        Counter,
        "Packets dropped, all reasons.",
    );
    for w in &stats.workers {
        e.sample(
            "gwlb_worker_dropped_packets_total",
            &[("worker", &w.worker.to_string())],
            w.dropped,
        );
    }
    e.family(
        "gwlb_worker_drops_total",
        Counter,
        "Packets dropped, by reason (reasons seen so far).",
    );
    for w in &stats.workers {
        let worker = w.worker.to_string();
        for (reason, n) in &w.drops {
            e.sample(
                "gwlb_worker_drops_total",
                &[("worker", &worker), ("reason", reason)],
                *n,
            );
        }
    }
    e.family(
        "gwlb_flow_table_active_flows",
        Gauge,
        "Flow-table entries in use, per worker.",
    );
    for w in &stats.workers {
        e.sample(
            "gwlb_flow_table_active_flows",
            &[("worker", &w.worker.to_string())],
            w.active_flows,
        );
    }
    e.family(
        "gwlb_flow_table_capacity",
        Gauge,
        "Flow-table capacity, per worker.",
    );
    for w in &stats.workers {
        e.sample(
            "gwlb_flow_table_capacity",
            &[("worker", &w.worker.to_string())],
            w.flow_table_capacity,
        );
    }
    e.family(
        "gwlb_flow_table_occupancy_ratio",
        Gauge,
        "Flow-table entries in use over capacity, all workers (0..1).",
    );
    let occupancy = if t.flow_table_capacity == 0 {
        0.0
    } else {
        t.active_flows as f64 / t.flow_table_capacity as f64
    };
    e.sample("gwlb_flow_table_occupancy_ratio", NO_LABELS, occupancy);

    // --- Process --------------------------------------------------------------------------
    e.family(
        "gwlb_uptime_seconds",
        Gauge,
        "Seconds since the gateway started.",
    );
    e.sample("gwlb_uptime_seconds", NO_LABELS, stats.uptime_s);
    e.family(
        "gwlb_snapshot_generation",
        Gauge,
        "Generation of the forwarding state (increments with every health, neighbour or config change).",
    );
    e.sample("gwlb_snapshot_generation", NO_LABELS, stats.generation);
    let build = crate::build_info::BuildInfo::current();
    e.family(
        "gwlb_build_info",
        Gauge,
        "Always 1; the labels name gwlb's version, the commit built and the DPDK release.",
    );
    e.sample(
        "gwlb_build_info",
        &[
            ("version", build.version),
            ("commit", build.commit),
            ("dpdk", build.dpdk.as_deref().unwrap_or("none")),
        ],
        1u64,
    );
    e.family(
        "gwlb_choice_digest_info",
        Gauge,
        "Always 1; the digest label names what decides a flow's appliance (equal on nodes that agree).",
    );
    e.sample(
        "gwlb_choice_digest_info",
        &[("digest", &stats.choice_digest)],
        1u64,
    );

    // --- Scale-out (only with [bgp]) --------------------------------------------------------
    if let Some(r) = &stats.routing {
        e.family(
            "gwlb_bgp_announced",
            Gauge,
            "1 while the service prefixes are announced.",
        );
        e.sample("gwlb_bgp_announced", NO_LABELS, u64::from(r.announced));
        e.family(
            "gwlb_bgp_session_established",
            Gauge,
            "1 while the BGP session with the router is established.",
        );
        for sess in &r.sessions {
            e.sample(
                "gwlb_bgp_session_established",
                &[("neighbor", &sess.neighbor)],
                u64::from(sess.established),
            );
        }
        e.family(
            "gwlb_bgp_daemon_restarts_total",
            Counter,
            "Times the BGP daemon exited and was restarted.",
        );
        e.sample(
            "gwlb_bgp_daemon_restarts_total",
            NO_LABELS,
            r.daemon_restarts,
        );
    }
    e.family("gwlb_draining", Gauge, "1 while gwlb drain is in effect.");
    e.sample(
        "gwlb_draining",
        NO_LABELS,
        u64::from(stats.drain.as_ref().is_some_and(|d| d.draining)),
    );
    e.out
}

fn target_labels(t: &TargetInfo) -> Vec<(&'static str, String)> {
    vec![
        ("target_group", t.group.clone()),
        ("address", t.address.to_string()),
        ("port", t.port.clone()),
    ]
}

const NO_LABELS: &[(&str, &str)] = &[];

/// Prometheus metric type.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}
use Kind::{Counter, Gauge};

/// A sample value: integers print exactly, floats in Prometheus' spelling.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(v as u64)
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// Text exposition under construction. Families are written whole, one after another, as
/// the format requires.
#[derive(Debug, Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Counter => "counter",
            Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample<S: AsRef<str>>(&mut self, name: &str, labels: &[(&str, S)], value: impl Into<Value>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(value.as_ref()));
            }
            self.out.push('}');
        }
        let _ = match value.into() {
            Value::Int(v) => writeln!(self.out, " {v}"),
            Value::Float(v) if v.is_nan() => writeln!(self.out, " NaN"),
            Value::Float(v) if v.is_infinite() => {
                writeln!(self.out, " {}", if v > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(v) => writeln!(self.out, " {v}"),
        };
    }
}

/// Label values escape `\`, `"` and newline.
fn escape_label(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_reset_count_is_the_total_of_the_workers_resets() {
        let mut stats = crate::control::StatsReport::default();
        stats.total.tcp_resets = 7;
        let text = render(&stats, &[]);
        assert!(
            text.lines()
                .any(|l| l == "gwlb_TCP_ELB_Reset_Count_total 7"),
            "{text}"
        );
    }

    #[test]
    fn test_escape_label() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn test_sample_lines() {
        let mut e = Exposition::default();
        e.family("x_total", Counter, "Help with \\ and\nnewline.");
        e.sample("x_total", &[("a", "1"), ("b", "q\"")], 7u64);
        e.sample("x_total", NO_LABELS, f64::INFINITY);
        e.sample("x_total", NO_LABELS, 0.25);
        assert_eq!(
            e.out,
            "# HELP x_total Help with \\\\ and\\nnewline.\n# TYPE x_total counter\n\
             x_total{a=\"1\",b=\"q\\\"\"} 7\nx_total +Inf\nx_total 0.25\n"
        );
    }
}

#[cfg(test)]
mod doc_tests {
    use std::collections::BTreeSet;

    /// The metric names (`gwlb_...` identifiers) in `text`, outside `#` comment lines.
    fn gwlb_names(text: &str) -> BTreeSet<String> {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut names = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for (at, _) in line.match_indices("gwlb_") {
                if line[..at].chars().next_back().is_some_and(ident) {
                    continue;
                }
                let name: String = line[at..].chars().take_while(|c| ident(*c)).collect();
                names.insert(name);
            }
        }
        names
    }

    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }

    /// The alerting rules and the Grafana dashboard shipped in gwlb/monitoring name only
    /// metric families gwlb exports (every family, BGP's included, is rendered here).
    #[test]
    fn shipped_monitoring_names_exported_metrics() {
        let stats = crate::control::StatsReport {
            routing: Some(Default::default()),
            ..Default::default()
        };
        let text = super::render(&stats, &[]);
        let exported: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect();
        assert!(
            exported.contains("gwlb_bgp_session_established"),
            "{exported:?}"
        );

        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../monitoring/grafana-dashboard.json"))
                .expect("the dashboard is JSON");
        let mut queries = Vec::new();
        exprs(&dashboard, &mut queries);
        assert!(queries.len() >= 10, "{} dashboard queries", queries.len());
        for q in &queries {
            let names = gwlb_names(q);
            assert!(
                !names.is_empty(),
                "dashboard query without a gwlb metric: {q}"
            );
            for n in names {
                assert!(
                    exported.contains(&n),
                    "the dashboard queries {n}, which gwlb does not export: {q}"
                );
            }
        }
        let alerts = gwlb_names(include_str!("../../monitoring/gwlb-alerts.yml"));
        assert!(alerts.len() >= 5, "{alerts:?}");
        for n in alerts {
            assert!(
                exported.contains(&n),
                "gwlb-alerts.yml uses {n}, which gwlb does not export"
            );
        }
    }

    /// Every worker counter's metric family is documented in docs/api.md (the table of
    /// counters is the one definition; the docs must keep up with it).
    #[test]
    fn every_worker_counter_is_documented() {
        let doc = include_str!("../../../docs/api.md");
        for c in crate::control::WorkerReport::COUNTERS {
            assert!(
                doc.contains(&format!("| `{}` | counter | `worker` |", c.metric)),
                "{} is not in docs/api.md's metrics table",
                c.metric
            );
        }
    }
}
