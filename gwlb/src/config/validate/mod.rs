//! Validation: [`RawConfig::validate`] checks every rule of the file and builds the validated
//! [`Config`]; one file per table (`dataplane`, `ports`, `routes`, `neighbors`, `groups`,
//! `health_check`, `targets`, `control`), with the tests of its rules next to it. The helpers
//! here turn a raw value into a typed one or an error that names its field.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;

use super::error::invalid;
use super::raw::RawConfig;
use super::{Config, ConfigError, ConfigWarning, MacAddr};

mod bgp;
mod control;
mod dataplane;
pub(crate) mod endpoints;
mod groups;
mod health_check;
pub(crate) mod mirrors;
mod neighbors;
mod ports;
mod routes;
mod targets;

use bgp::validate_bgp;
use control::validate_control;
use dataplane::validate_dataplane;
use endpoints::validate_endpoints;
use groups::validate_groups;
use mirrors::{resolve_mirror_selection, validate_mirror_sessions};
use neighbors::validate_neighbors;
use ports::validate_ports;
use routes::validate_routes;
use targets::check_targets_resolvable;

fn ranged<T: TryFrom<i64>>(
    field: &str,
    value: i64,
    range: RangeInclusive<i64>,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        if let Ok(v) = T::try_from(value) {
            return Ok(v);
        }
    }
    Err(invalid(
        field,
        format!(
            "{value} is out of range {}..={}",
            range.start(),
            range.end()
        ),
    ))
}

fn parse_field<T: FromStr>(field: &str, text: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| invalid(field, e.to_string()))
}

fn check_name(field: &str, name: &str, max: usize) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} is not a valid name: 1..={max} characters of A-Z a-z 0-9 _ - ."),
        ))
    }
}

fn check_unicast_mac(field: &str, text: &str) -> Result<MacAddr, ConfigError> {
    let mac: MacAddr = parse_field(field, text)?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(invalid(
            field,
            format!("{mac} is not a unicast MAC address"),
        ));
    }
    Ok(mac)
}

fn check_host_ip(field: &str, text: &str) -> Result<IpAddr, ConfigError> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| invalid(field, format!("invalid IP address {text:?}")))?;
    let bad = ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip == IpAddr::V4(Ipv4Addr::BROADCAST);
    if bad {
        return Err(invalid(
            field,
            format!("{ip} is not a unicast host address"),
        ));
    }
    Ok(ip)
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

struct Validator {
    warnings: Vec<ConfigWarning>,
}

impl Validator {
    fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        let mut v = Validator {
            warnings: Vec::new(),
        };
        let dataplane = validate_dataplane(&self.dataplane, &mut v)?;
        let ports = validate_ports(&self.ports, &dataplane, &mut v)?;
        let port_ref = |field: &str, name: &str| -> Result<usize, ConfigError> {
            ports.iter().position(|p| p.name == name).ok_or_else(|| {
                let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                invalid(
                    field,
                    format!("no port named {name:?} (ports: {})", names.join(", ")),
                )
            })
        };
        let routes = validate_routes(&self.routes, &ports, &port_ref)?;
        let neighbors = validate_neighbors(&self.neighbors, &ports, &port_ref)?;
        // Groups fed by something other than their user ports, and the ports endpoints take
        // (not a group's by default); names that do not resolve are reported below.
        let mut fed_elsewhere: Vec<&str> = self
            .mirror_sessions
            .iter()
            .map(|m| m.target_group.as_str())
            .collect();
        for e in &self.endpoints {
            fed_elsewhere.extend(e.target_group.as_deref());
            fed_elsewhere.extend(e.rules.iter().filter_map(|r| r.target_group.as_deref()));
        }
        let endpoint_ports: Vec<usize> = self
            .endpoints
            .iter()
            .flat_map(|e| &e.ports)
            .filter_map(|name| ports.iter().position(|p| &p.name == name))
            .collect();
        let target_groups = validate_groups(
            &self.target_groups,
            &ports,
            &port_ref,
            &mut v,
            &fed_elsewhere,
            &endpoint_ports,
        )?;
        check_targets_resolvable(&target_groups, &ports, &neighbors)?;
        let control = validate_control(&self.control, &mut v)?;
        let bgp = match &self.bgp {
            Some(b) => Some(validate_bgp(b, &ports)?),
            None => None,
        };
        let mut mirror_sessions =
            validate_mirror_sessions(&self.mirror_sessions, &ports, &target_groups, &port_ref)?;
        let endpoints = validate_endpoints(
            &self.endpoints,
            &ports,
            &target_groups,
            &mirror_sessions,
            &port_ref,
        )?;
        resolve_mirror_selection(&self.mirror_sessions, &mut mirror_sessions, &endpoints)?;
        Ok(Config {
            dataplane,
            ports,
            routes,
            neighbors,
            target_groups,
            control,
            bgp,
            mirror_sessions,
            endpoints,
            warnings: v.warnings,
        })
    }
}

/// For [`Config::revalidated`]: every port reference of a `Config` built or edited in Rust is
/// an index into `ports` (the file names ports, so validation never sees an index; writing
/// one out of range back as a name would panic).
pub(super) fn check_port_indices(c: &Config) -> Result<(), ConfigError> {
    let n = c.ports.len();
    let check = |field: String, p: usize| -> Result<(), ConfigError> {
        if p < n {
            Ok(())
        } else {
            Err(invalid(
                field,
                format!("port index {p} is out of range: the configuration has {n} ports"),
            ))
        }
    };
    for (i, r) in c.routes.iter().enumerate() {
        check(format!("routes[{i}].port"), r.port)?;
    }
    for (i, nb) in c.neighbors.iter().enumerate() {
        check(format!("neighbors[{i}].port"), nb.port)?;
    }
    for (gi, g) in c.target_groups.iter().enumerate() {
        for (k, &p) in g.user_ports.iter().enumerate() {
            check(format!("target_groups[{gi}].user_ports[{k}]"), p)?;
        }
        for (ti, t) in g.targets.iter().enumerate() {
            check(format!("target_groups[{gi}].targets[{ti}].port"), t.port)?;
        }
        if let Some(b) = g.failover_group.filter(|&b| b >= c.target_groups.len()) {
            return Err(invalid(
                format!("target_groups[{gi}].failover_group"),
                format!("group index {b} is out of range"),
            ));
        }
    }
    for (mi, m) in c.mirror_sessions.iter().enumerate() {
        for (k, &p) in m.user_ports.iter().enumerate() {
            check(format!("mirror_sessions[{mi}].user_ports[{k}]"), p)?;
        }
        if m.target_group >= c.target_groups.len() {
            return Err(invalid(
                format!("mirror_sessions[{mi}].target_group"),
                format!("group index {} is out of range", m.target_group),
            ));
        }
    }
    let groups = c.target_groups.len();
    let check_group =
        |field: String, a: crate::config::RuleAction| match a.groups().find(|&g| g >= groups) {
            Some(g) => Err(invalid(field, format!("group index {g} is out of range"))),
            None => Ok(()),
        };
    for (ei, e) in c.endpoints.iter().enumerate() {
        for (k, &p) in e.ports.iter().enumerate() {
            check(format!("endpoints[{ei}].ports[{k}]"), p)?;
        }
        for (k, r) in e.routes.iter().enumerate() {
            check(format!("endpoints[{ei}].routes[{k}].port"), r.port)?;
        }
        check_group(format!("endpoints[{ei}].target_group"), e.default_action)?;
        for (k, r) in e.rules.iter().enumerate() {
            check_group(format!("endpoints[{ei}].rules[{k}].target_group"), r.action)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::groups::fnv1a64;
    use crate::config::test_support::*;
    use crate::config::{
        Device, Hugepages, InitialState, Listen, LogFormat, OnAllUnhealthy, OnUnhealthy, PortRole,
        Probe, Stickiness,
    };

    #[test]
    fn test_minimal_defaults() {
        let c = parse(MINIMAL);
        assert_eq!(MINIMAL.trim().lines().filter(|l| !l.is_empty()).count(), 10);
        let d = &c.dataplane;
        assert_eq!(d.worker_cpus, vec![1]);
        assert_eq!(d.main_cpu, 0);
        assert_eq!(d.hugepages, Hugepages::Auto);
        assert_eq!(d.memory_mb, 512);
        assert_eq!(d.burst_size, 32);
        assert_eq!(d.tx_flush, Duration::from_micros(100));
        assert_eq!(d.mbufs_per_worker, 8192);
        assert_eq!(d.flow_table_capacity, 1 << 20);
        assert_eq!(d.flow_hash_seed, 0);
        assert_eq!(d.stats_interval, None);

        let p = &c.ports[0];
        assert_eq!(p.device, Device::Vdev("net_af_packet0,iface=veth0".into()));
        assert_eq!(p.device.name(), "net_af_packet0");
        assert_eq!(p.role, PortRole::Both);
        assert_eq!(p.ipv4, Some("10.0.0.1/24".parse().unwrap()));
        assert_eq!(p.ipv6, None);
        assert_eq!(
            (p.mtu, p.rx_queues, p.tx_queues, p.promiscuous),
            (1500, 1, 1, true)
        );
        assert_eq!(p.mac, None);

        let g = &c.target_groups[0];
        assert_eq!(g.user_ports, vec![0]);
        assert_eq!(g.stickiness, Stickiness::FiveTuple);
        assert_eq!(g.on_unhealthy, OnUnhealthy::NoRebalance);
        assert_eq!(g.on_all_unhealthy, OnAllUnhealthy::FailClosed);
        assert_eq!(g.deregistration_delay, Duration::from_secs(300));
        assert_eq!(g.tcp_idle_timeout, Duration::from_secs(350));
        assert_eq!(g.other_idle_timeout, Duration::from_secs(120));
        assert!(!g.tcp_rst_on_drop);
        assert!(!g.require_flow_cookie);
        assert_eq!(g.maglev_table_size, 65537);
        assert_eq!(g.geneve_vni, 0);
        assert_eq!(g.endpoint_id, fnv1a64(b"fw"));
        assert_eq!(g.attachment_id, 0);
        assert_eq!(g.outer_ttl, 64);
        let h = &g.health_check;
        assert!(h.enabled);
        assert_eq!(h.probe, Probe::Tcp);
        assert_eq!(h.port, 80);
        assert_eq!(h.interval, Duration::from_secs(10));
        assert_eq!(h.timeout, Duration::from_secs(5));
        assert_eq!(
            (h.healthy_threshold, h.unhealthy_threshold, h.jitter_percent),
            (5, 2, 10)
        );
        assert_eq!(h.initial_state, InitialState::Initial);
        let t = &g.targets[0];
        assert_eq!(t.address, IpAddr::from([10, 0, 0, 10]));
        assert_eq!((t.weight, t.port), (1, 0));
        assert_eq!(t.mac.map(|m| m.0), Some([2, 0, 0, 0, 0, 0x10]));

        let ctl = &c.control;
        assert_eq!(
            ctl.api_listen,
            Some(Listen::Tcp("127.0.0.1:9090".parse().unwrap()))
        );
        assert_eq!(
            ctl.metrics_listen,
            Some(Listen::Tcp("127.0.0.1:9091".parse().unwrap()))
        );
        assert_eq!(ctl.api_token, None);
        assert_eq!(ctl.log_format, LogFormat::Auto);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }
}
