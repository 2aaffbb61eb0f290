//! `[[endpoints]]`: tenants. How frames are classified into an endpoint (ports, VLAN tags,
//! prefixes), its identity toward appliances (endpoint id, attachment id, VNI), its routes
//! back out, and its steering rules.

use std::collections::HashSet;

use super::groups::fnv1a64;
use super::mirrors::port_range;
use super::{check_host_ip, check_name, check_unicast_mac, family, invalid, parse_field, ranged};
use crate::config::raw::{RawEndpoint, RawRule};
use crate::config::{
    groups_carried_by, ConfigError, Endpoint, EndpointRoute, IpNet, MirrorSession, Port, Rule,
    RuleAction, TargetGroup,
};
use crate::flow::Stickiness;
use crate::parse::proto;

/// Most endpoints (a flow's zone is its endpoint's index + 1, and per-endpoint state is sized
/// by it).
pub const MAX_ENDPOINTS: usize = 255;
/// Most steering rules, all endpoints together (every worker keeps counters per rule).
pub const MAX_RULES: usize = 16_384;
/// Most rules of one endpoint.
const MAX_RULES_PER_ENDPOINT: usize = 10_000;

pub(super) fn validate_endpoints(
    raw: &[RawEndpoint],
    ports: &[Port],
    groups: &[TargetGroup],
    mirrors: &[MirrorSession],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<Endpoint>, ConfigError> {
    if raw.len() > MAX_ENDPOINTS {
        return Err(invalid(
            "endpoints",
            format!("{} endpoints: at most {MAX_ENDPOINTS}", raw.len()),
        ));
    }
    let total: usize = raw.iter().map(|e| e.rules.len()).sum();
    if total > MAX_RULES {
        return Err(invalid(
            "endpoints",
            format!("{total} rules in all: at most {MAX_RULES}"),
        ));
    }
    let group_ref = |field: &str, name: &str| -> Result<usize, ConfigError> {
        let Some(g) = groups.iter().position(|g| g.name == name) else {
            return Err(invalid(
                field,
                format!("{name:?}: no target group has this name"),
            ));
        };
        if let Some(m) = mirrors.iter().find(|m| m.target_group == g) {
            return Err(invalid(
                field,
                format!(
                    "{name:?} is the sensor pool of mirror session {:?}: it inspects nothing",
                    m.name
                ),
            ));
        }
        Ok(g)
    };
    let mut names = HashSet::new();
    let mut out: Vec<Endpoint> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let e = format!("endpoints[{i}]");
        check_name(&format!("{e}.name"), &r.name, 64)?;
        if !names.insert(r.name.as_str()) {
            return Err(invalid(
                format!("{e}.name"),
                format!("{:?} is used by another endpoint", r.name),
            ));
        }
        let endpoint_ports = endpoint_ports(&e, r, ports, groups, port_ref)?;
        let vlan = vlan_ids(&e, &r.vlan)?;
        let prefixes = prefixes(&format!("{e}.prefixes"), &r.prefixes)?;
        let default_action = action(
            &format!("{e}.default_action"),
            &e,
            &r.default_action,
            r.target_group.as_deref(),
            r.tcp_reset,
            &group_ref,
        )?;
        if r.rules.len() > MAX_RULES_PER_ENDPOINT {
            return Err(invalid(
                format!("{e}.rules"),
                format!(
                    "{} rules: at most {MAX_RULES_PER_ENDPOINT} per endpoint",
                    r.rules.len()
                ),
            ));
        }
        let mut rule_names = HashSet::new();
        let mut rules = Vec::with_capacity(r.rules.len());
        for (k, rr) in r.rules.iter().enumerate() {
            let f = format!("{e}.rules[{k}]");
            check_name(&format!("{f}.name"), &rr.name, 64)?;
            if !rule_names.insert(rr.name.as_str()) || rr.name == "default" {
                return Err(invalid(
                    format!("{f}.name"),
                    format!(
                        "{:?} is used by another rule of the endpoint (\"default\" names its default action)",
                        rr.name
                    ),
                ));
            }
            rules.push(rule(&f, rr, &group_ref)?);
        }
        let endpoint = Endpoint {
            name: r.name.clone(),
            ports: endpoint_ports,
            vlan,
            prefixes,
            default_action,
            endpoint_id: r
                .endpoint_id
                .map_or_else(|| fnv1a64(r.name.as_bytes()), |v| v.0),
            attachment_id: r.attachment_id.0,
            geneve_vni: r
                .geneve_vni
                .map(|v| ranged(&format!("{e}.geneve_vni"), v, 0..=(1 << 24) - 1))
                .transpose()?,
            routes: Vec::new(),
            rules,
        };
        check_stickiness(&e, &endpoint, groups)?;
        let routes = routes(&e, r, &endpoint.ports, ports, port_ref)?;
        if !endpoint.vlan.is_empty() && routes.is_empty() {
            return Err(invalid(
                format!("{e}.routes"),
                "a tagged endpoint needs routes: without them its packets would leave untagged, through the node's routes",
            ));
        }
        check_overlap(&e, &endpoint, &out)?;
        out.push(Endpoint { routes, ..endpoint });
    }
    check_identities(&out, groups)?;
    Ok(out)
}

fn endpoint_ports(
    e: &str,
    r: &RawEndpoint,
    ports: &[Port],
    groups: &[TargetGroup],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<usize>, ConfigError> {
    if r.ports.is_empty() {
        return Err(invalid(
            format!("{e}.ports"),
            "at least one arrival port is required",
        ));
    }
    let mut out = Vec::with_capacity(r.ports.len());
    for (k, name) in r.ports.iter().enumerate() {
        let f = format!("{e}.ports[{k}]");
        let p = port_ref(&f, name)?;
        if !ports[p].role.faces_users() {
            return Err(invalid(f, format!("port {name:?} does not face users")));
        }
        if let Some(g) = groups.iter().find(|g| g.user_ports.contains(&p)) {
            return Err(invalid(
                f,
                format!(
                    "port {name:?} is a user port of target group {:?}: a port takes either a group's user traffic or endpoints'",
                    g.name
                ),
            ));
        }
        if out.contains(&p) {
            return Err(invalid(f, format!("port {name:?} is named twice")));
        }
        out.push(p);
    }
    Ok(out)
}

fn vlan_ids(e: &str, raw: &[i64]) -> Result<Vec<u16>, ConfigError> {
    if raw.len() > 2 {
        return Err(invalid(
            format!("{e}.vlan"),
            format!(
                "{} tags: at most 2 (802.1Q, or QinQ outer then inner)",
                raw.len()
            ),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(k, &v)| ranged(&format!("{e}.vlan[{k}]"), v, 1..=4094))
        .collect()
}

fn prefixes(field: &str, raw: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(k, t)| {
            let f = format!("{field}[{k}]");
            let net: IpNet = parse_field(&f, t)?;
            if net.addr() != net.network() {
                return Err(invalid(
                    f,
                    format!(
                        "{net} has host bits set; did you mean {}/{}?",
                        net.network(),
                        net.prefix_len()
                    ),
                ));
            }
            Ok(net)
        })
        .collect()
}

/// An action and its arguments (`target_group` for inspect, `tcp_reset` for drop).
fn action(
    field: &str,
    owner: &str,
    name: &str,
    target_group: Option<&str>,
    tcp_reset: Option<bool>,
    group_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<RuleAction, ConfigError> {
    let a = match name {
        "inspect" => {
            let Some(g) = target_group else {
                return Err(invalid(
                    format!("{owner}.target_group"),
                    "required: the action \"inspect\" names the group that inspects",
                ));
            };
            RuleAction::Inspect(group_ref(&format!("{owner}.target_group"), g)?)
        }
        "bypass" => RuleAction::Bypass,
        "drop" => RuleAction::Drop {
            reset: tcp_reset.unwrap_or(false),
        },
        other => {
            return Err(invalid(
                field,
                format!("unknown action {other:?} (expected inspect, bypass or drop)"),
            ))
        }
    };
    if target_group.is_some() && a.group().is_none() {
        return Err(invalid(
            format!("{owner}.target_group"),
            format!("only the action \"inspect\" names a target group, not {name:?}"),
        ));
    }
    if tcp_reset.is_some() && !matches!(a, RuleAction::Drop { .. }) {
        return Err(invalid(
            format!("{owner}.tcp_reset"),
            format!("only the action \"drop\" answers with a reset, not {name:?}"),
        ));
    }
    Ok(a)
}

fn rule(
    f: &str,
    rr: &RawRule,
    group_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Rule, ConfigError> {
    let sources = prefixes(&format!("{f}.sources"), &rr.sources)?;
    let destinations = prefixes(&format!("{f}.destinations"), &rr.destinations)?;
    let protocols = rr
        .protocols
        .iter()
        .enumerate()
        .map(|(k, &p)| ranged(&format!("{f}.protocols[{k}]"), p, 0..=255))
        .collect::<Result<Vec<u8>, _>>()?;
    let ranges = |name: &str, raw: &[String]| {
        raw.iter()
            .enumerate()
            .map(|(k, t)| port_range(&format!("{f}.{name}[{k}]"), t))
            .collect::<Result<Vec<_>, _>>()
    };
    let source_ports = ranges("source_ports", &rr.source_ports)?;
    let destination_ports = ranges("destination_ports", &rr.destination_ports)?;
    // Matches that can never happen are mistakes: say so instead of loading a dead rule.
    let has_ports = !source_ports.is_empty() || !destination_ports.is_empty();
    if has_ports
        && !protocols.is_empty()
        && !protocols
            .iter()
            .any(|&p| p == proto::TCP || p == proto::UDP)
    {
        return Err(invalid(
            format!("{f}.protocols"),
            "port ranges match TCP (6) and UDP (17) only: this rule can never match",
        ));
    }
    let families = |nets: &[IpNet]| {
        (
            nets.iter().any(IpNet::is_ipv4),
            nets.iter().any(|n| !n.is_ipv4()),
        )
    };
    if !sources.is_empty() && !destinations.is_empty() {
        let (s4, s6) = families(&sources);
        let (d4, d6) = families(&destinations);
        if !(s4 && d4 || s6 && d6) {
            return Err(invalid(
                format!("{f}.destinations"),
                format!(
                    "{} destinations for {} sources: this rule can never match",
                    family_name(d4),
                    family_name(s4)
                ),
            ));
        }
    }
    let action = action(
        &format!("{f}.action"),
        f,
        &rr.action,
        rr.target_group.as_deref(),
        rr.tcp_reset,
        group_ref,
    )?;
    Ok(Rule {
        name: rr.name.clone(),
        sources,
        destinations,
        protocols,
        source_ports,
        destination_ports,
        direction: rr.direction,
        action,
    })
}

fn family_name(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// A flow's key is built before its rule is known (the table is looked up first), under the
/// endpoint's stickiness: every group that can inspect its flows must agree on it.
fn check_stickiness(e: &str, ep: &Endpoint, groups: &[TargetGroup]) -> Result<(), ConfigError> {
    let Some(first) = ep.groups().next() else {
        return Ok(());
    };
    let want = groups[first].stickiness;
    // A rule decides for every packet its flow key covers: it cannot match fields the key
    // leaves out.
    for (k, r) in ep.rules.iter().enumerate() {
        let ports = !r.source_ports.is_empty() || !r.destination_ports.is_empty();
        let (field, what) = match want {
            Stickiness::FiveTuple => continue,
            Stickiness::ThreeTuple if ports => ("source_ports", "ports"),
            Stickiness::TwoTuple if ports => ("source_ports", "ports"),
            Stickiness::TwoTuple if !r.protocols.is_empty() => ("protocols", "protocols"),
            _ => continue,
        };
        return Err(invalid(
            format!("{e}.rules[{k}].{field}"),
            format!(
                "the endpoint's flows are keyed {want} (its groups' stickiness): a rule cannot match {what}, which the key leaves out"
            ),
        ));
    }
    for (k, r) in ep.rules.iter().enumerate() {
        if let Some(g) = r.action.group().filter(|&g| groups[g].stickiness != want) {
            return Err(invalid(
                format!("{e}.rules[{k}].target_group"),
                format!(
                    "{:?} has stickiness {}, the endpoint's other groups {want}: an endpoint's groups must share it",
                    groups[g].name, groups[g].stickiness
                ),
            ));
        }
    }
    Ok(())
}

fn routes(
    e: &str,
    r: &RawEndpoint,
    endpoint_ports: &[usize],
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<EndpointRoute>, ConfigError> {
    let mut out: Vec<EndpointRoute> = Vec::with_capacity(r.routes.len());
    for (k, rr) in r.routes.iter().enumerate() {
        let f = format!("{e}.routes[{k}]");
        let prefix = prefixes(&format!("{f}.prefix"), std::slice::from_ref(&rr.prefix))
            .map_err(|err| rename_field(err, &format!("{f}.prefix")))?[0];
        if let Some(j) = out.iter().position(|o| o.prefix == prefix) {
            return Err(invalid(
                format!("{f}.prefix"),
                format!("{prefix} is already routed by {e}.routes[{j}]"),
            ));
        }
        let via = check_host_ip(&format!("{f}.via"), &rr.via)?;
        if via.is_ipv4() != prefix.is_ipv4() {
            return Err(invalid(
                format!("{f}.via"),
                format!(
                    "{} next hop for {} prefix {prefix}",
                    family(via),
                    family(prefix.addr())
                ),
            ));
        }
        let mac = check_unicast_mac(&format!("{f}.mac"), &rr.mac)?;
        let port = match &rr.port {
            None => endpoint_ports[0],
            Some(name) => {
                let p = port_ref(&format!("{f}.port"), name)?;
                if !endpoint_ports.contains(&p) {
                    return Err(invalid(
                        format!("{f}.port"),
                        format!("port {name:?} is not one of the endpoint's ports"),
                    ));
                }
                p
            }
        };
        let _ = &ports[port];
        out.push(EndpointRoute {
            prefix,
            via,
            mac,
            port,
        });
    }
    Ok(out)
}

fn rename_field(err: ConfigError, field: &str) -> ConfigError {
    match err {
        ConfigError::Invalid { message, .. } => invalid(field, message),
        other => other,
    }
}

/// Two endpoints that could both claim a frame: same port, same tags, and prefixes that
/// overlap (or either without prefixes).
fn check_overlap(e: &str, ep: &Endpoint, earlier: &[Endpoint]) -> Result<(), ConfigError> {
    for (j, o) in earlier.iter().enumerate() {
        if o.vlan != ep.vlan || !o.ports.iter().any(|p| ep.ports.contains(p)) {
            continue;
        }
        let overlap = ep.prefixes.is_empty()
            || o.prefixes.is_empty()
            || ep.prefixes.iter().any(|a| {
                o.prefixes
                    .iter()
                    .any(|b| a.contains(b.network()) || b.contains(a.network()))
            });
        if overlap {
            return Err(invalid(
                format!("{e}.prefixes"),
                format!(
                    "overlaps endpoints[{j}] ({:?}): same port and VLAN tags, and prefixes that can both hold a frame's address; give them different ports, tags or disjoint prefixes",
                    o.name
                ),
            ));
        }
    }
    Ok(())
}

/// A return names its endpoint by the VNI and the echoed endpoint id: within each group,
/// no two endpoints (nor the group's own user traffic) may look alike.
fn check_identities(endpoints: &[Endpoint], groups: &[TargetGroup]) -> Result<(), ConfigError> {
    for (gi, g) in groups.iter().enumerate() {
        let mut seen: Vec<(u32, u64, String)> = Vec::new();
        if !g.user_ports.is_empty() {
            seen.push((
                g.geneve_vni,
                g.endpoint_id,
                format!("target group {:?}'s own user traffic", g.name),
            ));
        }
        // Its appliances also carry the flows of every group that fails over to it.
        let served: Vec<usize> = groups_carried_by(groups, gi).collect();
        for &x in &served {
            let o = &groups[x];
            if x != gi && !o.user_ports.is_empty() {
                seen.push((
                    o.geneve_vni,
                    o.endpoint_id,
                    format!("target group {:?}'s own user traffic", o.name),
                ));
            }
        }
        for (i, ep) in endpoints.iter().enumerate() {
            if !ep.groups().any(|g| served.contains(&g)) {
                continue;
            }
            let id = (ep.geneve_vni.unwrap_or(g.geneve_vni), ep.endpoint_id);
            if let Some((_, _, who)) = seen.iter().find(|(v, eid, _)| (*v, *eid) == id) {
                return Err(invalid(
                    format!("endpoints[{i}].endpoint_id"),
                    format!(
                        "same geneve_vni and endpoint_id as {who} in target group {:?}: their returns could not be told apart",
                        g.name
                    ),
                ));
            }
            seen.push((id.0, id.1, format!("endpoint {:?}", ep.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::{RuleAction, RuleDirection};

    /// The minimal configuration with its port taken by endpoint "tenant-a", whose flows
    /// group "fw" inspects (then by default not fed by any user port).
    fn endpoint(lines: &str) -> String {
        format!(
            "{MINIMAL}\n[[endpoints]]\nname = \"tenant-a\"\nports = [\"eth0\"]\ntarget_group = \"fw\"\n{lines}\n"
        )
    }

    #[test]
    fn test_endpoint_rules() {
        let c = parse(&endpoint(
            "vlan = [100, 7]\nprefixes = [\"10.1.0.0/16\"]\nattachment_id = 9\ngeneve_vni = 77\n[[endpoints.routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.1.0.1\"\nmac = \"02:00:00:00:01:01\"\n[[endpoints.rules]]\nname = \"web\"\ndestinations = [\"10.2.0.0/16\"]\nprotocols = [6]\ndestination_ports = [\"80\", \"8000-8080\"]\ndirection = \"forward\"\naction = \"bypass\"\n[[endpoints.rules]]\nname = \"telnet\"\nprotocols = [6]\ndestination_ports = [\"23\"]\naction = \"drop\"\ntcp_reset = true",
        ));
        let e = &c.endpoints[0];
        assert_eq!(e.vlan, [100, 7]);
        assert_eq!(e.default_action, RuleAction::Inspect(0));
        assert_eq!((e.attachment_id, e.geneve_vni), (9, Some(77)));
        assert_eq!(e.routes.len(), 1);
        assert_eq!(e.rules[0].action, RuleAction::Bypass);
        assert_eq!(e.rules[0].direction, RuleDirection::Forward);
        assert_eq!(e.rules[0].destination_ports, [80..=80, 8000..=8080]);
        assert_eq!(e.rules[1].action, RuleAction::Drop { reset: true });
        // Written back and read again, unchanged.
        assert_eq!(parse(&c.to_toml_string()), c);
    }

    #[test]
    fn test_endpoint_errors_name_the_field() {
        let f = |k: &str| format!("endpoints[0].{k}");
        expect_err(
            &endpoint("vlan = [4095]"),
            &f("vlan[0]"),
            "out of range 1..=4094",
        );
        expect_err(&endpoint("vlan = [1, 2, 3]"), &f("vlan"), "at most 2");
        expect_err(
            &endpoint("").replace("target_group = \"fw\"", "target_group = \"nope\""),
            &f("target_group"),
            "no target group has this name",
        );
        expect_err(
            &endpoint("default_action = \"bypass\""),
            &f("target_group"),
            "only the action \"inspect\"",
        );
        expect_err(
            &endpoint("prefixes = [\"10.1.0.1/16\"]"),
            &f("prefixes[0]"),
            "host bits set",
        );
        expect_err(
            &endpoint("[[endpoints.rules]]\nname = \"r\"\nprotocols = [1]\nsource_ports = [\"53\"]\naction = \"bypass\""),
            &f("rules[0].protocols"),
            "can never match",
        );
        expect_err(
            &endpoint("[[endpoints.rules]]\nname = \"r\"\nsources = [\"10.0.0.0/8\"]\ndestinations = [\"fd00::/8\"]\naction = \"bypass\""),
            &f("rules[0].destinations"),
            "can never match",
        );
        expect_err(
            &endpoint("[[endpoints.rules]]\nname = \"r\"\naction = \"drain\""),
            &f("rules[0].action"),
            "unknown action",
        );
        expect_err(
            &endpoint("[[endpoints.rules]]\nname = \"r\"\naction = \"inspect\""),
            &f("rules[0].target_group"),
            "required",
        );
        expect_err(
            &endpoint("[[endpoints.rules]]\nname = \"r\"\naction = \"bypass\"\ntcp_reset = true"),
            &f("rules[0].tcp_reset"),
            "only the action \"drop\"",
        );
        expect_err(
            &endpoint("[[endpoints.rules]]\nname = \"r\"\naction = \"bypass\"\n[[endpoints.rules]]\nname = \"r\"\naction = \"bypass\""),
            &f("rules[1].name"),
            "used by another rule",
        );
        expect_err(
            &endpoint("[[endpoints.routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"fd00::1\"\nmac = \"02:00:00:00:01:01\""),
            &f("routes[0].via"),
            "IPv6 next hop",
        );
        expect_err(
            &endpoint("[[endpoints.routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.0.0.9\"\nmac = \"01:00:00:00:01:01\""),
            &f("routes[0].mac"),
            "not a unicast MAC",
        );
        // Two endpoints that could claim the same frame.
        let two = format!(
            "{}[[endpoints]]\nname = \"tenant-b\"\nports = [\"eth0\"]\ntarget_group = \"fw\"\n",
            endpoint("")
        );
        expect_err(&two, "endpoints[1].prefixes", "overlaps endpoints[0]");
        // Told apart by their tags (a tagged endpoint needs routes): accepted, and their
        // default endpoint ids differ.
        let untagged = "target_group = \"fw\"\n";
        let tagged = "target_group = \"fw\"\nvlan = [10]\n[[endpoints.routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.9.0.1\"\nmac = \"02:00:00:00:09:01\"\n";
        expect_err(
            &two.replacen(untagged, "target_group = \"fw\"\nvlan = [10]\n", 1),
            "endpoints[0].routes",
            "a tagged endpoint needs routes",
        );
        let c = parse(&two.replacen(untagged, tagged, 1));
        assert_ne!(c.endpoints[0].endpoint_id, c.endpoints[1].endpoint_id);
        // ... but not with the same endpoint id and VNI toward one group.
        expect_err(
            &two.replacen(
                untagged,
                &tagged.replace("vlan = [10]\n", "vlan = [10]\nendpoint_id = 5\n"),
                1,
            )
            .replace(
                "name = \"tenant-b\"",
                "name = \"tenant-b\"\nendpoint_id = 5",
            ),
            "endpoints[1].endpoint_id",
            "could not be told apart",
        );
        // Ports cannot be matched on flows keyed without them.
        expect_err(
            &endpoint("[[endpoints.rules]]\nname = \"r\"\nprotocols = [6]\ndestination_ports = [\"80\"]\naction = \"bypass\"")
                .replacen("name = \"fw\"", "name = \"fw\"\nstickiness = \"3-tuple\"", 1),
            &f("rules[0].source_ports"),
            "keyed 3-tuple",
        );
        // A port that is also a group's user port.
        expect_err(
            &endpoint("").replacen("name = \"fw\"", "name = \"fw\"\nuser_ports = [\"eth0\"]", 1),
            &f("ports[0]"),
            "a user port of target group",
        );
    }
}
