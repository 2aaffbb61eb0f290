//! `[[target_groups]]`: names, the user ports each group takes, the Maglev table, Geneve
//! identifiers and timeouts; the health check and the targets are validated in their own files.

use std::collections::HashMap;
use std::time::Duration;

use super::health_check::validate_health_check;
use super::targets::validate_targets;
use super::{check_name, invalid, ranged, Validator};
use crate::config::raw::RawTargetGroup;
use crate::config::{ConfigError, OnBelowMinimum, Port, TargetGroup};
use crate::maglev::is_prime;

/// Largest Maglev table (2^24): its build time and memory grow linearly with M.
const MAGLEV_MAX: i64 = 1 << 24;

/// FNV-1a, 64-bit: the default endpoint id, stable across versions and hosts.
pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `failover_group` of group `gi`: another group of the same stickiness (so that a flow's
/// key is the same whichever group's appliance returns it), and `on_below_minimum`: what the
/// group's new flows do below its minimum (`min_healthy_targets`, `min_healthy_percent`).
/// `"failover"` (the default with a failover group) needs one; `"fail_open"` and
/// `"serve_remaining"` (the default without) refuse one, which they would never use; with
/// `"serve_remaining"` the minimums would change nothing, so they are refused too.
fn failover_group(
    raw: &[RawTargetGroup],
    gi: usize,
    rg: &RawTargetGroup,
    g: &str,
) -> Result<(Option<usize>, OnBelowMinimum), ConfigError> {
    let mode = rg.on_below_minimum.unwrap_or(match rg.failover_group {
        Some(_) => OnBelowMinimum::Failover,
        None => OnBelowMinimum::ServeRemaining,
    });
    let field = format!("{g}.on_below_minimum");
    match (mode, rg.failover_group.is_some()) {
        (OnBelowMinimum::Failover, false) => {
            return Err(invalid(
                field,
                "\"failover\" needs failover_group (the group that takes new flows below the minimum)",
            ))
        }
        (OnBelowMinimum::FailOpen | OnBelowMinimum::ServeRemaining, true) => {
            return Err(invalid(
                field,
                format!(
                    "{:?} never uses failover_group: remove one of them (with failover_group, below the minimum new flows go to that group)",
                    mode.as_str()
                ),
            ))
        }
        _ => {}
    }
    let Some(name) = &rg.failover_group else {
        if mode == OnBelowMinimum::ServeRemaining {
            for (field, set) in [
                ("min_healthy_targets", rg.min_healthy_targets != 1),
                ("min_healthy_percent", rg.min_healthy_percent != 0),
            ] {
                if set {
                    return Err(invalid(
                        format!("{g}.{field}"),
                        "only valid with failover_group or on_below_minimum = \"fail_open\" (below the minimum, new flows go to that group, or to all targets)",
                    ));
                }
            }
        }
        return Ok((None, mode));
    };
    let field = format!("{g}.failover_group");
    let Some(b) = raw.iter().position(|o| &o.name == name) else {
        return Err(invalid(
            field,
            format!("{name:?}: no target group has this name"),
        ));
    };
    if b == gi {
        return Err(invalid(
            field,
            format!("{name:?}: a group cannot fail over to itself"),
        ));
    }
    if raw[b].stickiness != rg.stickiness {
        return Err(invalid(
            field,
            format!(
                "{name:?} has stickiness {:?}, this group {:?}: a failover group must key flows the same way",
                raw[b].stickiness.as_str(),
                rg.stickiness.as_str()
            ),
        ));
    }
    Ok((Some(b), mode))
}

pub(super) fn validate_groups(
    raw: &[RawTargetGroup],
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
    v: &mut Validator,
    fed_elsewhere: &[&str],
    endpoint_ports: &[usize],
) -> Result<Vec<TargetGroup>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid(
            "target_groups",
            "at least one target group is required",
        ));
    }
    if raw.len() > crate::flow_table::TIMEOUT_GROUPS {
        return Err(invalid(
            "target_groups",
            format!(
                "{} target groups; a gateway serves at most {} (each has its own idle timeouts)",
                raw.len(),
                crate::flow_table::TIMEOUT_GROUPS
            ),
        ));
    }
    let total: usize = raw.iter().map(|g| g.targets.len()).sum();
    if total > crate::pipeline::MAX_APPLIANCES {
        return Err(invalid(
            "target_groups",
            format!(
                "{total} targets; a gateway serves at most {} (registered and draining together)",
                crate::pipeline::MAX_APPLIANCES
            ),
        ));
    }
    let mut groups: Vec<TargetGroup> = Vec::with_capacity(raw.len());
    // user port index -> group index that takes its traffic
    let mut served: HashMap<usize, usize> = HashMap::new();
    for (gi, rg) in raw.iter().enumerate() {
        let g = format!("target_groups[{gi}]");
        check_name(&format!("{g}.name"), &rg.name, 64)?;
        if let Some(j) = groups.iter().position(|o| o.name == rg.name) {
            return Err(invalid(
                format!("{g}.name"),
                format!("{:?} is already the name of target_groups[{j}]", rg.name),
            ));
        }

        let field = format!("{g}.user_ports");
        let user_ports: Vec<usize> = match &rg.user_ports {
            Some(names) => {
                let mut idx = Vec::with_capacity(names.len());
                for (k, name) in names.iter().enumerate() {
                    let f = format!("{field}[{k}]");
                    let p = port_ref(&f, name)?;
                    if !ports[p].role.faces_users() {
                        return Err(invalid(
                            f,
                            format!(
                                "port {name:?} has role \"appliance\"; expected a user-facing port"
                            ),
                        ));
                    }
                    if idx.contains(&p) {
                        return Err(invalid(f, format!("port {name:?} is listed twice")));
                    }
                    idx.push(p);
                }
                idx
            }
            // By default every user port that no endpoint takes.
            None => (0..ports.len())
                .filter(|&p| ports[p].role.faces_users() && !endpoint_ports.contains(&p))
                .collect(),
        };
        for &p in &user_ports {
            if let Some(&other) = served.get(&p) {
                let hint = if rg.user_ports.is_none() {
                    " (by default a group takes every user port: list user_ports explicitly)"
                } else {
                    ""
                };
                return Err(invalid(
                    field,
                    format!(
                        "user port {:?} already belongs to target_groups[{other}] ({:?}){hint}",
                        ports[p].name, raw[other].name
                    ),
                ));
            }
            served.insert(p, gi);
        }
        // A group without user ports still serves as a sensor pool of a mirror session, an
        // endpoint's inspecting group or as another group's failover group.
        let serves_others = fed_elsewhere.contains(&rg.name.as_str())
            || raw
                .iter()
                .any(|o| o.failover_group.as_deref() == Some(rg.name.as_str()));
        if user_ports.is_empty() && !serves_others {
            v.warn(field, "no user ports: this group receives no traffic");
        }

        let maglev_table_size: u32 = ranged(
            &format!("{g}.maglev_table_size"),
            rg.maglev_table_size,
            2..=MAGLEV_MAX,
        )?;
        if !is_prime(maglev_table_size) {
            return Err(invalid(
                format!("{g}.maglev_table_size"),
                format!("{maglev_table_size} is not prime (e.g. 65537, 655373)"),
            ));
        }

        let health_check = validate_health_check(&rg.health_check, &format!("{g}.health_check"))?;
        let targets = validate_targets(&rg.targets, &g, ports, port_ref)?;
        for (ti, t) in targets.iter().enumerate() {
            let other = groups.iter().enumerate().find_map(|(j, o)| {
                o.targets
                    .iter()
                    .position(|u| u.address == t.address)
                    .map(|k| (j, k))
            });
            if let Some((j, k)) = other {
                return Err(invalid(
                    format!("{g}.targets[{ti}].address"),
                    format!(
                        "{} is already target_groups[{j}].targets[{k}]: an appliance belongs to one target group (its Geneve returns are matched by their source address)",
                        t.address
                    ),
                ));
            }
        }

        let n = targets.len();
        if u32::try_from(n).map_or(true, |n| n > maglev_table_size) {
            return Err(invalid(
                format!("{g}.maglev_table_size"),
                format!("{maglev_table_size} is smaller than the number of targets ({n})"),
            ));
        }
        if u64::from(maglev_table_size) < 100 * n.max(1) as u64 {
            v.warn(
                format!("{g}.maglev_table_size"),
                format!(
                    "{maglev_table_size} is below 100 x {} targets: load imbalance may exceed 1%",
                    n.max(1)
                ),
            );
        }
        if targets.is_empty() {
            v.warn(
                format!("{g}.targets"),
                "no targets: all traffic of this group fails over (on_all_unhealthy)",
            );
        } else if targets.iter().all(|t| t.weight == 0) {
            v.warn(
                format!("{g}.targets"),
                "every target has weight 0: no new flows can be placed",
            );
        }

        let endpoint_id = rg
            .endpoint_id
            .map_or_else(|| fnv1a64(rg.name.as_bytes()), |e| e.0);
        if let Some(j) = groups.iter().position(|o| {
            o.endpoint_id == endpoint_id
                && o.geneve_vni == u32::try_from(rg.geneve_vni).unwrap_or(u32::MAX)
        }) {
            v.warn(
                format!("{g}.endpoint_id"),
                format!("same geneve_vni and endpoint_id as target_groups[{j}]: appliances cannot tell the groups apart"),
            );
        }

        let (failover_group, on_below_minimum) = failover_group(raw, gi, rg, &g)?;
        groups.push(TargetGroup {
            name: rg.name.clone(),
            user_ports,
            stickiness: rg.stickiness,
            on_unhealthy: rg.on_unhealthy,
            on_all_unhealthy: rg.on_all_unhealthy,
            failover_group,
            on_below_minimum,
            min_healthy_targets: ranged(
                &format!("{g}.min_healthy_targets"),
                rg.min_healthy_targets,
                1..=4096,
            )?,
            min_healthy_percent: ranged(
                &format!("{g}.min_healthy_percent"),
                rg.min_healthy_percent,
                0..=100,
            )?,
            deregistration_delay: Duration::from_secs(ranged(
                &format!("{g}.deregistration_delay_s"),
                rg.deregistration_delay_s,
                0..=3600,
            )?),
            tcp_idle_timeout: Duration::from_secs(ranged(
                &format!("{g}.tcp_idle_timeout_s"),
                rg.tcp_idle_timeout_s,
                60..=6000,
            )?),
            other_idle_timeout: Duration::from_secs(ranged(
                &format!("{g}.other_idle_timeout_s"),
                rg.other_idle_timeout_s,
                1..=6000,
            )?),
            tcp_unknown_non_syn: rg.tcp_unknown_non_syn,
            tcp_reuse_after_idle: match rg.tcp_reuse_after_idle_s {
                0 => None,
                s => Some(Duration::from_secs(ranged(
                    &format!("{g}.tcp_reuse_after_idle_s"),
                    s,
                    1..=6000,
                )?)),
            },
            tcp_rst_on_drop: rg.tcp_rst_on_drop,
            require_flow_cookie: rg.require_flow_cookie,
            maglev_table_size,
            geneve_vni: ranged(&format!("{g}.geneve_vni"), rg.geneve_vni, 0..=(1 << 24) - 1)?,
            endpoint_id,
            attachment_id: rg.attachment_id.0,
            outer_ttl: ranged(&format!("{g}.outer_ttl"), rg.outer_ttl, 1..=255)?,
            health_check,
            targets,
        });
    }
    for (p, port) in ports.iter().enumerate() {
        if port.role.faces_users() && !served.contains_key(&p) && !endpoint_ports.contains(&p) {
            v.warn(
                format!("ports[{p}]"),
                format!("user port {:?} belongs to no target group or endpoint: traffic arriving on it is not inspected", port.name),
            );
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::{Config, Stickiness};

    #[test]
    fn test_group_ranges() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "deregistration_delay_s = 3601",
                "deregistration_delay_s",
                "out of range 0..=3600",
            ),
            (
                "tcp_idle_timeout_s = 59",
                "tcp_idle_timeout_s",
                "out of range 60..=6000",
            ),
            (
                "other_idle_timeout_s = 0",
                "other_idle_timeout_s",
                "out of range 1..=6000",
            ),
            (
                "geneve_vni = 16777216",
                "geneve_vni",
                "out of range 0..=16777215",
            ),
            ("outer_ttl = 0", "outer_ttl", "out of range 1..=255"),
            (
                "maglev_table_size = 65536",
                "maglev_table_size",
                "not prime",
            ),
            (
                "maglev_table_size = 16777259",
                "maglev_table_size",
                "out of range 2..=16777216",
            ),
            ("name = \"\"", "name", "not a valid name"),
            (
                "tcp_reuse_after_idle_s = 6001",
                "tcp_reuse_after_idle_s",
                "out of range 1..=6000",
            ),
        ];
        for (line, field, needle) in cases {
            let text = if line.starts_with("name") {
                MINIMAL.replace("name = \"fw\"", line)
            } else {
                group_with(line)
            };
            expect_err(&text, &format!("target_groups[0].{field}"), needle);
        }
        let c = parse(&group_with("geneve_vni = 16777215\nendpoint_id = 5\nattachment_id = \"0x10\"\nstickiness = \"3-tuple\""));
        let g = &c.target_groups[0];
        assert_eq!(
            (g.geneve_vni, g.endpoint_id, g.attachment_id),
            (16_777_215, 5, 16)
        );
        assert_eq!(g.stickiness, Stickiness::ThreeTuple);
    }

    /// `on_below_minimum`: "failover" needs a failover_group (and is its default), the two
    /// others refuse one; "serve_remaining" (the default without) refuses the minimums it
    /// would ignore; "fail_open" takes them.
    #[test]
    fn test_on_below_minimum_rules() {
        let two = |first: &str| {
            format!(
                "{}\n[[target_groups]]\nname = \"backup\"\nuser_ports = []\n",
                group_with(first)
            )
        };
        let field = "target_groups[0].on_below_minimum";
        expect_err(
            &two("on_below_minimum = \"failover\""),
            field,
            "\"failover\" needs failover_group",
        );
        expect_err(
            &two("on_below_minimum = \"fail_open\"\nfailover_group = \"backup\""),
            field,
            "\"fail_open\" never uses failover_group",
        );
        expect_err(
            &two("on_below_minimum = \"serve_remaining\"\nfailover_group = \"backup\""),
            field,
            "\"serve_remaining\" never uses failover_group",
        );
        expect_err(
            &two("on_below_minimum = \"open\""),
            field,
            "unknown variant",
        );
        expect_err(
            &two("on_below_minimum = \"serve_remaining\"\nmin_healthy_targets = 2"),
            "target_groups[0].min_healthy_targets",
            "only valid with failover_group or on_below_minimum = \"fail_open\"",
        );
        let mode = |extra: &str| parse(&two(extra)).target_groups[0].on_below_minimum;
        assert_eq!(mode(""), OnBelowMinimum::ServeRemaining);
        assert_eq!(
            mode("failover_group = \"backup\""),
            OnBelowMinimum::Failover
        );
        let c = parse(&two(
            "on_below_minimum = \"fail_open\"\nmin_healthy_targets = 3\nmin_healthy_percent = 40",
        ));
        let g = &c.target_groups[0];
        assert_eq!(
            (
                g.on_below_minimum,
                g.failover_group,
                g.min_healthy_targets,
                g.min_healthy_percent
            ),
            (OnBelowMinimum::FailOpen, None, 3, 40)
        );
        // Written back only where it is not implied, and read back the same.
        let text = c.to_toml_string();
        assert_eq!(text.matches("on_below_minimum").count(), 1, "{text}");
        assert_eq!(Config::from_toml_str(&text).unwrap(), c);
        // Part of the choice digest only where it changes the choice.
        assert!(c.choice_inputs().contains(&(
            "target_groups[0].on_below_minimum".into(),
            "fail_open".into()
        )));
        let plain = parse(&two(""));
        assert!(!plain
            .choice_inputs()
            .iter()
            .any(|(k, _)| k.contains("on_below_minimum")));
    }

    #[test]
    fn test_failover_group_rules() {
        let two = |first: &str, second: &str| {
            format!(
                "{}\n[[target_groups]]\nname = \"backup\"\nuser_ports = []\n{second}\n",
                group_with(first)
            )
        };
        expect_err(
            &two("failover_group = \"nope\"", ""),
            "target_groups[0].failover_group",
            "\"nope\": no target group has this name",
        );
        expect_err(
            &two("failover_group = \"fw\"", ""),
            "target_groups[0].failover_group",
            "cannot fail over to itself",
        );
        expect_err(
            &two("failover_group = \"backup\"", "stickiness = \"2-tuple\""),
            "target_groups[0].failover_group",
            "must key flows the same way",
        );
        expect_err(
            &two("min_healthy_targets = 2", ""),
            "target_groups[0].min_healthy_targets",
            "only valid with failover_group",
        );
        expect_err(
            &two("min_healthy_percent = 50", ""),
            "target_groups[0].min_healthy_percent",
            "only valid with failover_group",
        );
        expect_err(
            &two("failover_group = \"backup\"\nmin_healthy_percent = 101", ""),
            "target_groups[0].min_healthy_percent",
            "out of range 0..=100",
        );
        expect_err(
            &two("failover_group = \"backup\"\nmin_healthy_targets = 0", ""),
            "target_groups[0].min_healthy_targets",
            "out of range 1..=4096",
        );
        let c = parse(&two(
            "failover_group = \"backup\"\nmin_healthy_targets = 2\nmin_healthy_percent = 60",
            "",
        ));
        let g = &c.target_groups[0];
        assert_eq!(
            (
                g.failover_group,
                g.min_healthy_targets,
                g.min_healthy_percent
            ),
            (Some(1), 2, 60)
        );
        assert_eq!(c.target_groups[1].failover_group, None);
        assert!(
            !c.warnings()
                .iter()
                .any(|w| w.field == "target_groups[1].user_ports"),
            "a failover group takes traffic: {:?}",
            c.warnings()
        );
        let alone = parse(&two("", ""));
        assert!(
            alone
                .warnings()
                .iter()
                .any(|w| w.field == "target_groups[1].user_ports"),
            "a group without user ports that serves nobody is warned about"
        );
        let again = crate::config::Config::from_toml_str(&c.to_toml_string()).unwrap();
        assert_eq!(again.target_groups, c.target_groups, "round trip");
    }

    #[test]
    fn test_group_count_limit() {
        // Groups beyond the first take no user port's traffic: valid until the limit.
        let extra = |n: usize| {
            (1..n)
                .map(|i| format!("[[target_groups]]\nname = \"g{i}\"\nuser_ports = []\n"))
                .collect::<String>()
        };
        let fw = MINIMAL.replace("name = \"fw\"", "name = \"fw\"\nuser_ports = [\"eth0\"]");
        let c = parse(&format!("{fw}{}", extra(crate::flow_table::TIMEOUT_GROUPS)));
        assert_eq!(c.target_groups.len(), crate::flow_table::TIMEOUT_GROUPS);
        expect_err(
            &format!("{fw}{}", extra(crate::flow_table::TIMEOUT_GROUPS + 1)),
            "target_groups",
            "at most 256",
        );
    }

    #[test]
    fn test_maglev_size_vs_targets() {
        let c = parse(&group_with("maglev_table_size = 251"));
        assert!(c.warnings().is_empty());
        let c = parse(&group_with("maglev_table_size = 97"));
        assert_eq!(c.warnings()[0].field, "target_groups[0].maglev_table_size");
        let two = MINIMAL.replace("name = \"fw\"", "name = \"fw\"\nmaglev_table_size = 2")
            + "[[target_groups.targets]]\naddress = \"10.0.0.11\"\n[[target_groups.targets]]\naddress = \"10.0.0.12\"\n";
        expect_err(
            &two,
            "target_groups[0].maglev_table_size",
            "smaller than the number of targets (3)",
        );
    }

    #[test]
    fn test_group_names_and_user_ports() {
        let second = "[[target_groups]]\nname = \"fw\"\nuser_ports = []";
        expect_err(
            &with(second),
            "target_groups[1].name",
            "already the name of target_groups[0]",
        );
        expect_err(
            &with("[[target_groups]]\nname = \"ids\""),
            "target_groups[1].user_ports",
            "already belongs to target_groups[0] (\"fw\") (by default",
        );
        let c = parse(&with("[[target_groups]]\nname = \"ids\"\nuser_ports = []"));
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.field == "target_groups[1].user_ports"));
        expect_err(
            &group_with("user_ports = [\"nope\"]"),
            "target_groups[0].user_ports[0]",
            "no port named",
        );
        expect_err(
            &group_with("user_ports = [\"eth0\", \"eth0\"]"),
            "target_groups[0].user_ports[1]",
            "twice",
        );
        let two_arm = TWO_ARM.replace("name = \"fw\"", "name = \"fw\"\nuser_ports = [\"app\"]");
        expect_err(
            &two_arm,
            "target_groups[0].user_ports[0]",
            "role \"appliance\"",
        );
        let none = TWO_ARM.replace("name = \"fw\"", "name = \"fw\"\nuser_ports = []");
        let c = parse(&none);
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.field == "ports[0]" && w.message.contains("no target group")));
        expect_err(&MINIMAL.replace("[[target_groups]]\nname = \"fw\"\n[[target_groups.targets]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:10\"\n", ""), "target_groups", "at least one");
    }

    #[test]
    fn test_maglev_size_is_prime() {
        assert!(is_prime(65537) && is_prime(2) && is_prime(16_777_213));
        assert!(!is_prime(1) && !is_prime(65536) && !is_prime(65535));
    }
}
