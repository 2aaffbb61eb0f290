//! A stand-in for the gateway's control loop: a thread answering [`Command`]s from a small
//! in-memory model that really registers, deregisters, re-weights and validates (nothing
//! half-applied), so the API and CLI can be tested end to end over real sockets without DPDK.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use gwlb::control::{
    Command, ControlError, ControlHandle, ControlResult, FlowInfo, FlowPage, FlowQuery,
    HealthCheckInfo, HealthCheckPatch, ReloadReport, StatsReport, TargetGroupInfo, TargetInfo,
    TargetSpec, TargetState, WorkerReport, DEFAULT_FLOW_PAGE,
};

/// Flows the model holds.
pub const FLOW_COUNT: usize = 250;

/// The model's state.
#[derive(Debug, Clone)]
pub struct Model {
    pub groups: Vec<TargetGroupInfo>,
    pub flows: Vec<FlowInfo>,
    pub stats: StatsReport,
    pub reloads: u32,
}

/// A running fake control loop.
#[derive(Debug)]
pub struct FakeGateway {
    pub handle: ControlHandle,
    pub model: Arc<Mutex<Model>>,
}

impl FakeGateway {
    /// Starts the loop's thread; it ends when every handle is dropped.
    pub fn start() -> FakeGateway {
        let (handle, rx) = ControlHandle::channel();
        let model = Arc::new(Mutex::new(Model::new()));
        let m = Arc::clone(&model);
        std::thread::spawn(move || {
            for cmd in rx {
                m.lock().unwrap().apply(cmd);
            }
        });
        FakeGateway { handle, model }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Model {
        self.model.lock().unwrap().clone()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn target(group: &str, addr: &str, slot: u16, state: TargetState, n: u64) -> TargetInfo {
    TargetInfo {
        group: group.into(),
        address: ip(addr),
        port: "appliance".into(),
        weight: 100,
        state,
        reason: match state {
            TargetState::Healthy => Some("http 200 in 1.5 ms".into()),
            TargetState::Unhealthy => Some("connection refused (2 consecutive failures)".into()),
            TargetState::Draining => Some("deregistered".into()),
        },
        drain_remaining_s: None,
        check_latency_ms: (state == TargetState::Healthy).then_some(1.5 + n as f64),
        slot,
        resolved: state == TargetState::Healthy,
        packets: 1000 * (n + 1),
        bytes: 150_000 * (n + 1),
        flows: 40 * (n + 1),
    }
}

fn health_check(path: Option<&str>) -> HealthCheckInfo {
    HealthCheckInfo {
        enabled: true,
        protocol: if path.is_some() { "http" } else { "tcp" }.into(),
        port: 8080,
        path: path.map(Into::into),
        success_codes: path.map(|_| "200-399".into()),
        interval_ms: 1000,
        timeout_ms: 500,
        healthy_threshold: 3,
        unhealthy_threshold: 2,
    }
}

impl Model {
    fn new() -> Model {
        let mut groups = vec![
            TargetGroupInfo {
                name: "firewalls".into(),
                stickiness: "5-tuple".into(),
                on_unhealthy: "rebalance".into(),
                on_all_unhealthy: "fail_closed".into(),
                deregistration_delay_s: 120,
                health_check: health_check(Some("/healthz")),
                healthy_count: 0,
                unhealthy_count: 0,
                targets: vec![
                    target("firewalls", "10.0.2.11", 0, TargetState::Healthy, 0),
                    target("firewalls", "10.0.2.12", 1, TargetState::Unhealthy, 1),
                ],
            },
            TargetGroupInfo {
                name: "inspection".into(),
                stickiness: "2-tuple".into(),
                on_unhealthy: "no_rebalance".into(),
                on_all_unhealthy: "fail_open".into(),
                deregistration_delay_s: 30,
                health_check: health_check(None),
                healthy_count: 0,
                unhealthy_count: 0,
                targets: vec![target(
                    "inspection",
                    "fd00:2::21",
                    2,
                    TargetState::Healthy,
                    2,
                )],
            },
        ];
        for g in &mut groups {
            recount(g);
        }
        let flows = (0..FLOW_COUNT)
            .map(|i| {
                let v6 = i % 3 == 2;
                FlowInfo {
                    worker: i % 2,
                    group: if v6 { "inspection" } else { "firewalls" }.into(),
                    appliance: if v6 {
                        ip("fd00:2::21")
                    } else {
                        ip("10.0.2.11")
                    },
                    protocol: if i % 4 == 0 { 17 } else { 6 },
                    addr_a: if v6 {
                        format!("fd00:1::{:x}", i).parse().unwrap()
                    } else {
                        format!("10.1.{}.{}", i / 200, i % 200).parse().unwrap()
                    },
                    port_a: 10_000 + i as u16,
                    addr_b: if v6 { ip("fd00:9::1") } else { ip("10.9.0.1") },
                    port_b: if i % 5 == 0 { 80 } else { 443 },
                    idle_s: (i % 60) as u32,
                }
            })
            .collect();
        let workers: Vec<WorkerReport> = (0..2)
            .map(|w| {
                let k = w as u64 + 1;
                let mut drops = BTreeMap::new();
                drops.insert("no_route".to_owned(), 3 * k);
                drops.insert("ttl_exceeded".to_owned(), k);
                WorkerReport {
                    worker: w,
                    rx: 10_000 * k,
                    tx: 9_900 * k,
                    processed: 9_990 * k,
                    encapsulated: 5_000 * k,
                    decapsulated: 4_900 * k,
                    fail_open: 7 * k,
                    to_host: 11 * k,
                    new_flows: 125 * k,
                    rebalanced_flows: 2 * k,
                    tcp_resets: k,
                    table_full: 3 * k,
                    stateless_returns: 5 * k,
                    handed_off: 13 * k,
                    active_flows: 100 + 25 * k,
                    flow_table_capacity: 1 << 20,
                    dropped: 4 * k,
                    drops,
                }
            })
            .collect();
        let mut total = WorkerReport::default();
        for w in &workers {
            total.rx += w.rx;
            total.tx += w.tx;
            total.processed += w.processed;
            total.encapsulated += w.encapsulated;
            total.decapsulated += w.decapsulated;
            total.fail_open += w.fail_open;
            total.to_host += w.to_host;
            total.new_flows += w.new_flows;
            total.rebalanced_flows += w.rebalanced_flows;
            total.handed_off += w.handed_off;
            total.active_flows += w.active_flows;
            total.flow_table_capacity += w.flow_table_capacity;
            total.dropped += w.dropped;
            for (r, n) in &w.drops {
                *total.drops.entry(r.clone()).or_default() += n;
            }
        }
        Model {
            groups,
            flows,
            stats: StatsReport {
                uptime_s: 3600.5,
                generation: 42,
                workers,
                total,
            },
            reloads: 0,
        }
    }

    fn apply(&mut self, cmd: Command) {
        // A dropped reply receiver (client gone) is not the loop's problem.
        match cmd {
            Command::ListGroups(reply) => {
                let _ = reply.send(Ok(self.groups.clone()));
            }
            Command::Register {
                group,
                target,
                reply,
            } => {
                let _ = reply.send(self.register(&group, target));
            }
            Command::Deregister {
                group,
                address,
                reply,
            } => {
                let _ = reply.send(self.deregister(&group, address));
            }
            Command::SetWeight {
                group,
                address,
                weight,
                reply,
            } => {
                let _ = reply.send(self.set_weight(&group, address, weight));
            }
            Command::SetHealthCheck {
                group,
                patch,
                reply,
            } => {
                let _ = reply.send(self.set_health_check(&group, patch));
            }
            Command::Stats(reply) => {
                let _ = reply.send(Ok(self.stats.clone()));
            }
            Command::Flows(query, reply) => {
                let _ = reply.send(self.flows(&query));
            }
            Command::Reload(reply) => {
                self.reloads += 1;
                let _ = reply.send(Ok(ReloadReport {
                    file: "/etc/gwlb/gwlb.toml".into(),
                    changed: vec!["target_groups[0].deregistration_delay_s".into()],
                    ..Default::default()
                }));
            }
        }
    }

    fn group_mut(&mut self, name: &str) -> ControlResult<&mut TargetGroupInfo> {
        self.groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("target group {name:?}"),
            })
    }

    fn register(&mut self, group: &str, spec: TargetSpec) -> ControlResult<TargetInfo> {
        let slot = self.groups.iter().map(|g| g.targets.len()).sum::<usize>() as u16;
        let g = self.group_mut(group)?;
        let weight = spec.weight.unwrap_or(100);
        if weight > 1000 {
            return Err(ControlError::invalid(
                "weight",
                format!("{weight} is out of range 0..=1000"),
            ));
        }
        if let Some(port) = spec.port.as_deref().filter(|p| *p != "appliance") {
            return Err(ControlError::invalid(
                "port",
                format!("no appliance-facing port named {port:?}"),
            ));
        }
        if let Some(mac) = &spec.mac {
            if mac.split(':').count() != 6 {
                return Err(ControlError::invalid(
                    "mac",
                    format!("{mac:?} is not a MAC address"),
                ));
            }
        }
        if g.targets
            .iter()
            .any(|t| t.address == spec.address && t.state != TargetState::Draining)
        {
            return Err(ControlError::Conflict {
                message: format!("{} is already registered in {group:?}", spec.address),
            });
        }
        let t = TargetInfo {
            group: group.into(),
            address: spec.address,
            port: spec.port.unwrap_or_else(|| "appliance".into()),
            weight,
            state: TargetState::Healthy,
            reason: Some("registered; checks start now".into()),
            drain_remaining_s: None,
            check_latency_ms: None,
            slot,
            resolved: spec.mac.is_some(),
            packets: 0,
            bytes: 0,
            flows: 0,
        };
        g.targets.retain(|x| x.address != spec.address);
        g.targets.push(t.clone());
        recount(g);
        Ok(t)
    }

    fn target_mut(&mut self, group: &str, address: IpAddr) -> ControlResult<&mut TargetInfo> {
        self.group_mut(group)?
            .targets
            .iter_mut()
            .find(|t| t.address == address)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("target {address} of target group {group:?}"),
            })
    }

    fn deregister(&mut self, group: &str, address: IpAddr) -> ControlResult<TargetInfo> {
        let delay = self.group_mut(group)?.deregistration_delay_s;
        let t = self.target_mut(group, address)?;
        if t.state == TargetState::Draining {
            return Err(ControlError::Conflict {
                message: format!("{address} is already draining"),
            });
        }
        t.state = TargetState::Draining;
        t.drain_remaining_s = Some(delay);
        t.reason = Some("deregistered".into());
        let t = t.clone();
        recount(self.group_mut(group)?);
        Ok(t)
    }

    fn set_weight(
        &mut self,
        group: &str,
        address: IpAddr,
        weight: u16,
    ) -> ControlResult<TargetInfo> {
        if weight > 1000 {
            return Err(ControlError::invalid(
                "weight",
                format!("{weight} is out of range 0..=1000"),
            ));
        }
        let t = self.target_mut(group, address)?;
        t.weight = weight;
        let t = t.clone();
        recount(self.group_mut(group)?);
        Ok(t)
    }

    fn set_health_check(
        &mut self,
        group: &str,
        patch: HealthCheckPatch,
    ) -> ControlResult<TargetGroupInfo> {
        let g = self.group_mut(group)?;
        // Build the new settings whole, validate, then swap: nothing half-applied.
        let mut h = g.health_check.clone();
        if let Some(v) = patch.enabled {
            h.enabled = v;
        }
        if let Some(v) = patch.protocol {
            if v != "tcp" && v != "http" {
                return Err(ControlError::invalid(
                    "health_check.protocol",
                    format!("unknown protocol {v:?}, expected tcp or http"),
                ));
            }
            h.protocol = v;
        }
        if let Some(v) = patch.port {
            h.port = v;
        }
        if let Some(v) = patch.path {
            h.path = Some(v);
        }
        if let Some(v) = patch.success_codes {
            h.success_codes = Some(v);
        }
        if let Some(v) = patch.interval_ms {
            if !(100..=300_000).contains(&v) {
                return Err(ControlError::invalid(
                    "health_check.interval_ms",
                    format!("{v} is out of range 100..=300000"),
                ));
            }
            h.interval_ms = v;
        }
        if let Some(v) = patch.timeout_ms {
            h.timeout_ms = v;
        }
        if let Some(v) = patch.healthy_threshold {
            h.healthy_threshold = v;
        }
        if let Some(v) = patch.unhealthy_threshold {
            h.unhealthy_threshold = v;
        }
        if h.timeout_ms >= h.interval_ms {
            return Err(ControlError::invalid(
                "health_check.timeout_ms",
                format!(
                    "{} must be less than interval_ms ({})",
                    h.timeout_ms, h.interval_ms
                ),
            ));
        }
        g.health_check = h;
        Ok(g.clone())
    }

    fn flows(&self, q: &FlowQuery) -> ControlResult<FlowPage> {
        let start: usize = match &q.cursor {
            None => 0,
            Some(c) => c
                .strip_prefix('o')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| ControlError::invalid("cursor", format!("{c:?} is not a cursor")))?,
        };
        let limit = q.limit.unwrap_or(DEFAULT_FLOW_PAGE);
        let matching: Vec<(usize, &FlowInfo)> = self
            .flows
            .iter()
            .enumerate()
            .skip(start)
            .filter(|(_, f)| q.group.as_ref().is_none_or(|g| *g == f.group))
            .filter(|(_, f)| q.appliance.is_none_or(|a| a == f.appliance))
            .filter(|(_, f)| q.address.is_none_or(|a| a == f.addr_a || a == f.addr_b))
            .filter(|(_, f)| q.port.is_none_or(|p| p == f.port_a || p == f.port_b))
            .take(limit + 1)
            .collect();
        let next_cursor = (matching.len() > limit).then(|| format!("o{}", matching[limit].0));
        Ok(FlowPage {
            flows: matching
                .into_iter()
                .take(limit)
                .map(|(_, f)| f.clone())
                .collect(),
            next_cursor,
        })
    }
}

fn recount(g: &mut TargetGroupInfo) {
    g.healthy_count = g
        .targets
        .iter()
        .filter(|t| t.state == TargetState::Healthy && t.weight > 0)
        .count();
    g.unhealthy_count = g
        .targets
        .iter()
        .filter(|t| t.state == TargetState::Unhealthy)
        .count();
}
