//! Validated -> raw: `RawConfig::from(&Config)` writes a [`Config`] back in the file format,
//! for [`Config::to_toml_string`] and [`Config::revalidated`].

use std::time::Duration;

use super::raw::{
    OneOrMany, RawBgp, RawBgpNeighbor, RawConfig, RawControl, RawDataplane, RawEndpoint,
    RawEndpointRoute, RawHealthCheck, RawMirrorSession, RawNeighbor, RawPort, RawRoute, RawRule,
    RawTarget, RawTargetGroup, U64Value,
};
use super::{CheckProtocol, Config, Endpoint, MirrorSession, OnBelowMinimum, Probe, RuleAction};

impl Config {
    /// The configuration as TOML with every field explicit (defaults filled in).
    /// `Config::from_toml_str(&c.to_toml_string()) == Ok(c)`.
    pub fn to_toml_string(&self) -> String {
        // Serializing plain structs of strings, integers, booleans, arrays and tables
        // cannot fail.
        toml::to_string(&RawConfig::from(self)).unwrap_or_default()
    }
}

fn to_i64<T: Into<i64>>(v: T) -> i64 {
    v.into()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl From<&Config> for RawConfig {
    fn from(c: &Config) -> Self {
        let port_name = |i: usize| c.ports[i].name.clone();
        let d = &c.dataplane;
        RawConfig {
            dataplane: RawDataplane {
                worker_cpus: d.worker_cpus.iter().map(|&c| to_i64(c)).collect(),
                main_cpu: to_i64(d.main_cpu),
                hugepages: d.hugepages,
                memory_mb: to_i64(d.memory_mb),
                eal_args: d.eal_args.clone(),
                burst_size: to_i64(d.burst_size),
                tx_flush_us: i64::try_from(d.tx_flush.as_micros()).unwrap_or(i64::MAX),
                idle_sleep_us: d
                    .idle_sleep
                    .map_or(0, |s| i64::try_from(s.as_micros()).unwrap_or(i64::MAX)),
                idle_after_us: i64::try_from(d.idle_after.as_micros()).unwrap_or(i64::MAX),
                icmp_errors_per_s: d.icmp_errors_per_s.into(),
                mbufs_per_worker: to_i64(d.mbufs_per_worker),
                mempool: d.mempool,
                flow_table_capacity: to_i64(d.flow_table_capacity),
                flow_hash_seed: U64Value(d.flow_hash_seed),
                stats_interval_s: d.stats_interval.map_or(0, secs),
            },
            ports: c
                .ports
                .iter()
                .map(|p| RawPort {
                    name: p.name.clone(),
                    device: p.device.to_string(),
                    role: p.role,
                    address: OneOrMany(
                        p.ipv4
                            .map(|n| n.to_string())
                            .into_iter()
                            .chain(p.ipv6.map(|n| n.to_string()))
                            .collect(),
                    ),
                    mac: p.mac.map(|m| m.to_string()),
                    mtu: to_i64(p.mtu),
                    rx_queues: Some(to_i64(p.rx_queues)),
                    tx_queues: to_i64(p.tx_queues),
                    promiscuous: p.promiscuous,
                    kernel_interface: p.kernel_interface.clone(),
                    appliance_gateways: p
                        .appliance_gateways
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                })
                .collect(),
            routes: c
                .routes
                .iter()
                .map(|r| RawRoute {
                    prefix: r.prefix.to_string(),
                    via: r.via.map(|ip| ip.to_string()),
                    port: port_name(r.port),
                })
                .collect(),
            neighbors: c
                .neighbors
                .iter()
                .map(|n| RawNeighbor {
                    address: n.address.to_string(),
                    mac: n.mac.to_string(),
                    port: port_name(n.port),
                })
                .collect(),
            target_groups: c
                .target_groups
                .iter()
                .map(|g| {
                    let h = &g.health_check;
                    let (protocol, path, success_codes, tls) = match &h.probe {
                        Probe::Tcp => (CheckProtocol::Tcp, None, None, None),
                        Probe::Http {
                            path,
                            success_codes,
                            tls,
                        } => (
                            if tls.is_some() {
                                CheckProtocol::Https
                            } else {
                                CheckProtocol::Http
                            },
                            Some(path.clone()),
                            Some(success_codes.to_string()),
                            tls.as_ref(),
                        ),
                        Probe::Geneve => (CheckProtocol::Geneve, None, None, None),
                    };
                    RawTargetGroup {
                        name: g.name.clone(),
                        user_ports: Some(g.user_ports.iter().map(|&p| port_name(p)).collect()),
                        stickiness: g.stickiness,
                        on_unhealthy: g.on_unhealthy,
                        on_all_unhealthy: g.on_all_unhealthy,
                        failover_group: g.failover_group.map(|b| c.target_groups[b].name.clone()),
                        // Written only where it is not what failover_group implies.
                        on_below_minimum: Some(g.on_below_minimum)
                            .filter(|&m| m == OnBelowMinimum::FailOpen),
                        min_healthy_targets: i64::from(g.min_healthy_targets),
                        min_healthy_percent: i64::from(g.min_healthy_percent),
                        deregistration_delay_s: secs(g.deregistration_delay),
                        tcp_idle_timeout_s: secs(g.tcp_idle_timeout),
                        other_idle_timeout_s: secs(g.other_idle_timeout),
                        tcp_rst_on_drop: g.tcp_rst_on_drop,
                        tcp_unknown_non_syn: g.tcp_unknown_non_syn,
                        tcp_reuse_after_idle_s: g.tcp_reuse_after_idle.map_or(0, secs),
                        require_flow_cookie: g.require_flow_cookie,
                        maglev_table_size: to_i64(g.maglev_table_size),
                        geneve_vni: to_i64(g.geneve_vni),
                        endpoint_id: Some(U64Value(g.endpoint_id)),
                        attachment_id: U64Value(g.attachment_id),
                        outer_ttl: to_i64(g.outer_ttl),
                        health_check: RawHealthCheck {
                            enabled: h.enabled,
                            protocol,
                            port: to_i64(h.port),
                            path,
                            interval_ms: millis(h.interval),
                            timeout_ms: millis(h.timeout),
                            healthy_threshold: to_i64(h.healthy_threshold),
                            unhealthy_threshold: to_i64(h.unhealthy_threshold),
                            initial_state: h.initial_state,
                            success_codes,
                            jitter_percent: to_i64(h.jitter_percent),
                            data_path: h.data_path.is_some() && h.probe != Probe::Geneve,
                            data_path_source: h.data_path.map(|d| d.source.to_string()),
                            data_path_destination: h.data_path.map(|d| d.destination.to_string()),
                            flap_damping_half_life_s: h.flap_half_life.map_or(0, secs),
                            tls_verify: tls.is_some_and(|t| t.verify),
                            tls_ca_file: tls
                                .and_then(|t| t.ca_file.as_ref())
                                .map(|p| p.display().to_string()),
                            tls_server_name: tls.and_then(|t| t.server_name.clone()),
                        },
                        targets: g
                            .targets
                            .iter()
                            .map(|t| RawTarget {
                                address: t.address.to_string(),
                                weight: to_i64(t.weight),
                                mac: t.mac.map(|m| m.to_string()),
                                port: Some(port_name(t.port)),
                            })
                            .collect(),
                    }
                })
                .collect(),
            control: RawControl {
                api_listen: c
                    .control
                    .api_listen
                    .as_ref()
                    .map_or_else(|| "off".to_owned(), |l| l.to_string()),
                api_token: c.control.api_token.clone().unwrap_or_default(),
                metrics_listen: c
                    .control
                    .metrics_listen
                    .as_ref()
                    .map_or_else(|| "off".to_owned(), |l| l.to_string()),
                log_format: c.control.log_format,
            },
            bgp: c.bgp.as_ref().map(|b| RawBgp {
                bird: b.bird.display().to_string(),
                state_dir: b.state_dir.display().to_string(),
                local_as: b.local_as.into(),
                router_id: b.router_id.to_string(),
                prefixes: b.prefixes.iter().map(ToString::to_string).collect(),
                neighbors: b
                    .neighbors
                    .iter()
                    .map(|n| RawBgpNeighbor {
                        address: n.address.to_string(),
                        remote_as: n.remote_as.into(),
                    })
                    .collect(),
                bfd: b.bfd,
                bfd_interval_ms: millis(b.bfd_interval),
                bfd_multiplier: b.bfd_multiplier.into(),
                hold_time_s: secs(b.hold_time),
                stall_timeout_ms: millis(b.stall_timeout),
                accept_unseen_returns: b.accept_unseen_returns,
                cluster_addresses: b
                    .cluster_addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            }),
            mirror_sessions: c
                .mirror_sessions
                .iter()
                .map(|m| raw_mirror_session(c, m))
                .collect(),
            endpoints: c.endpoints.iter().map(|e| raw_endpoint(c, e)).collect(),
        }
    }
}

fn raw_mirror_session(c: &Config, m: &MirrorSession) -> RawMirrorSession {
    let port_name = |i: usize| c.ports[i].name.clone();
    RawMirrorSession {
        name: m.name.clone(),
        target_group: c.target_groups[m.target_group].name.clone(),
        format: m.format,
        vni: i64::from(m.vni),
        sample_one_in: i64::from(m.sample_one_in),
        snap_length: m.snap_length.map_or(0, i64::from),
        copy_point: m.copy_point,
        user_ports: m.user_ports.iter().map(|&p| port_name(p)).collect(),
        prefixes: nets(&m.prefixes),
        protocols: m.protocols.iter().map(|&p| i64::from(p)).collect(),
        l4_ports: ranges(&m.l4_ports),
        direction: m.direction,
        endpoints: m
            .endpoints
            .iter()
            .map(|&e| c.endpoints[e].name.clone())
            .collect(),
        rules: m.rules.clone(),
    }
}

impl Config {
    /// Mirror session `index` as the file (and the API's bodies) write it, every default
    /// filled in (`None`: no such session).
    pub fn mirror_session_spec(&self, index: usize) -> Option<RawMirrorSession> {
        Some(raw_mirror_session(self, self.mirror_sessions.get(index)?))
    }

    /// Endpoint `index` (with its routes and rules) as the file and the API's bodies write
    /// it, every default filled in (`None`: no such endpoint).
    pub fn endpoint_spec(&self, index: usize) -> Option<RawEndpoint> {
        Some(raw_endpoint(self, self.endpoints.get(index)?))
    }
}

fn ranges(r: &[std::ops::RangeInclusive<u16>]) -> Vec<String> {
    r.iter()
        .map(|r| format!("{}-{}", r.start(), r.end()))
        .collect()
}

fn nets(n: &[super::IpNet]) -> Vec<String> {
    n.iter().map(ToString::to_string).collect()
}

/// An action as the file writes it: (`action`, `target_group`, `tcp_reset`).
fn raw_action(c: &Config, a: RuleAction) -> (String, Option<String>, Option<bool>) {
    let group = a.group().map(|g| c.target_groups[g].name.clone());
    let reset = match a {
        RuleAction::Drop { reset } => Some(reset),
        _ => None,
    };
    (a.as_str().to_owned(), group, reset)
}

fn raw_endpoint(c: &Config, e: &Endpoint) -> RawEndpoint {
    let port_name = |i: usize| c.ports[i].name.clone();
    let (default_action, target_group, tcp_reset) = raw_action(c, e.default_action);
    RawEndpoint {
        name: e.name.clone(),
        ports: e.ports.iter().map(|&p| port_name(p)).collect(),
        vlan: e.vlan.iter().map(|&v| i64::from(v)).collect(),
        prefixes: nets(&e.prefixes),
        default_action,
        target_group,
        tcp_reset,
        endpoint_id: Some(U64Value(e.endpoint_id)),
        attachment_id: U64Value(e.attachment_id),
        geneve_vni: e.geneve_vni.map(i64::from),
        routes: e
            .routes
            .iter()
            .map(|r| RawEndpointRoute {
                prefix: r.prefix.to_string(),
                via: r.via.to_string(),
                mac: r.mac.to_string(),
                port: Some(port_name(r.port)),
            })
            .collect(),
        rules: e
            .rules
            .iter()
            .map(|r| {
                let (action, target_group, tcp_reset) = raw_action(c, r.action);
                let chain = match r.action {
                    RuleAction::Chain(ch) => ch
                        .groups()
                        .iter()
                        .map(|&g| c.target_groups[usize::from(g)].name.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                RawRule {
                    name: r.name.clone(),
                    sources: nets(&r.sources),
                    destinations: nets(&r.destinations),
                    protocols: r.protocols.iter().map(|&p| i64::from(p)).collect(),
                    source_ports: ranges(&r.source_ports),
                    destination_ports: ranges(&r.destination_ports),
                    direction: r.direction,
                    action,
                    target_group,
                    chain,
                    tcp_reset,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::{Config, Listen, Probe, StatusCodes};

    #[test]
    fn test_round_trip() {
        for text in [MINIMAL, TWO_ARM] {
            let c = parse(text);
            let again = c.to_toml_string();
            let c2 = Config::from_toml_str(&again).unwrap_or_else(|e| panic!("{e}\n{again}"));
            assert_eq!(c, c2, "{again}");
        }
    }

    #[test]
    fn test_round_trip_full() {
        let text = r#"
[dataplane]
worker_cpus = [2, 3]
main_cpu = 1
hugepages = "off"
memory_mb = 1024
eal_args = ["--log-level=lib.eal:debug"]
burst_size = 16
tx_flush_us = 50
stats_interval_s = 5
flow_hash_seed = "0xffffffffffffffff"

[[ports]]
name = "p0"
device = "0000:3b:00.0,txq_inline_max=128"
role = "both"
address = ["10.0.0.1/24", "fd00::1/64"]
mac = "02:00:00:00:00:01"
rx_queues = 4
tx_queues = 4
kernel_interface = "gw0"

[[routes]]
prefix = "fd00:1::/48"
via = "fd00::fe"
port = "p0"

[[routes]]
prefix = "10.0.0.0/24"
port = "p0"

[[neighbors]]
address = "10.0.0.10"
mac = "02:00:00:00:00:0a"
port = "p0"

[[target_groups]]
name = "fw"
stickiness = "2-tuple"
on_unhealthy = "rebalance"
on_all_unhealthy = "fail_open"
endpoint_id = "0x8000000000000001"
attachment_id = 7
[target_groups.health_check]
protocol = "http"
path = "/healthz"
success_codes = "200,204-206"
[[target_groups.targets]]
address = "10.0.0.10"
weight = 0
[[target_groups.targets]]
address = "fd00::10"
mac = "02:00:00:00:00:0b"

[control]
api_listen = "unix:/run/gwlb/api.sock"
metrics_listen = "off"
log_format = "json"
"#;
        let c = parse(text);
        assert_eq!(c.dataplane.flow_hash_seed, u64::MAX);
        assert_eq!(c.target_groups[0].endpoint_id, 0x8000_0000_0000_0001);
        assert_eq!(c.ports[0].ipv6, Some("fd00::1/64".parse().unwrap()));
        assert_eq!(
            c.target_groups[0].health_check.probe,
            Probe::Http {
                path: "/healthz".into(),
                success_codes: StatusCodes(vec![200..=200, 204..=206]),
                tls: None,
            }
        );
        assert_eq!(
            c.control.api_listen,
            Some(Listen::Unix("/run/gwlb/api.sock".into()))
        );
        let again = c.to_toml_string();
        assert_eq!(
            Config::from_toml_str(&again).unwrap_or_else(|e| panic!("{e}\n{again}")),
            c
        );
    }
}
