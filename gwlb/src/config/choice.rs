//! What decides which appliance a flow goes to, so that nodes behind one ECMP router can be
//! checked to agree: [`Config::choice_inputs`] lists it (the flow hash seed and, per target
//! group, its name, stickiness, policies, failover, Maglev table size and targets with their
//! weights, in order; each endpoint's tags, prefixes, ids and rules),
//! [`Config::choice_digest`] hashes it, [`choice_difference`] names the first
//! difference between two nodes' configurations. The cluster addresses take part too
//! (`[bgp] cluster_addresses`, when set): nodes that encapsulate from different ones send an
//! appliance's returns to different places. Node-specific settings (ports, addresses, routes,
//! `[control]`, the rest of `[bgp]`) do not.

use super::Config;

impl Config {
    /// The settings that decide a flow's appliance, one `field = value` line each.
    pub fn choice_inputs(&self) -> Vec<(String, String)> {
        let mut out = vec![(
            "dataplane.flow_hash_seed".to_owned(),
            format!("{:#x}", self.dataplane.flow_hash_seed),
        )];
        for (i, g) in self.target_groups.iter().enumerate() {
            let f = |k: &str| format!("target_groups[{i}].{k}");
            out.push((f("name"), g.name.clone()));
            out.push((f("stickiness"), g.stickiness.to_string()));
            out.push((f("on_unhealthy"), format!("{:?}", g.on_unhealthy)));
            out.push((f("on_all_unhealthy"), format!("{:?}", g.on_all_unhealthy)));
            // Only where it changes the choice of before it existed (fail-open tables hold
            // every target): the digests of other configurations stay what they were.
            if g.on_below_minimum == super::OnBelowMinimum::FailOpen {
                out.push((f("on_below_minimum"), "fail_open".to_owned()));
            }
            // Likewise only when set: where a group's new flows go below its minimum.
            if let Some(fg) = g.failover_group {
                let name = self.target_groups.get(fg).map_or("", |g| g.name.as_str());
                out.push((f("failover_group"), name.to_owned()));
            }
            if g.min_healthy_targets != 1 {
                out.push((f("min_healthy_targets"), g.min_healthy_targets.to_string()));
            }
            if g.min_healthy_percent != 0 {
                out.push((f("min_healthy_percent"), g.min_healthy_percent.to_string()));
            }
            out.push((f("maglev_table_size"), g.maglev_table_size.to_string()));
            out.push((f("targets"), g.targets.len().to_string()));
            for (j, t) in g.targets.iter().enumerate() {
                out.push((
                    f(&format!("targets[{j}]")),
                    format!("{} weight {}", t.address, t.weight),
                ));
            }
        }
        // Endpoints: what claims a frame (tags, prefixes) and what their rules decide (ports
        // and routes are the node's own).
        for i in 0..self.endpoints.len() {
            let Some(mut spec) = self.endpoint_spec(i) else {
                continue;
            };
            spec.ports.clear();
            spec.routes.clear();
            out.push((
                format!("endpoints[{i}]"),
                serde_json::to_string(&spec).unwrap_or_default(),
            ));
        }
        if let Some(b) = self
            .bgp
            .as_ref()
            .filter(|b| !b.cluster_addresses.is_empty())
        {
            let list: Vec<String> = b
                .cluster_addresses
                .iter()
                .map(ToString::to_string)
                .collect();
            out.push(("bgp.cluster_addresses".to_owned(), list.join(", ")));
        }
        out
    }

    /// A 64-bit FNV-1a digest of [`Config::choice_inputs`]: equal on nodes that pick the same
    /// appliance for every flow.
    pub fn choice_digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in self.choice_inputs() {
            for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([b'\n']) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

/// The first setting in which `a` and `b` would choose differently: `(field, a's value,
/// b's value)`, or `None` when they agree.
pub fn choice_difference(a: &Config, b: &Config) -> Option<(String, String, String)> {
    let (x, y) = (a.choice_inputs(), b.choice_inputs());
    let value = |list: &[(String, String)], k: &str| {
        list.iter()
            .find(|(l, _)| l == k)
            .map_or_else(|| "(none)".to_owned(), |(_, v)| v.clone())
    };
    // By field, in `a`'s order and then `b`'s: a setting only one side has (an optional
    // one) is that setting's difference, not a shift of every line after it.
    for (k, v) in &x {
        let w = value(&y, k);
        if *v != w {
            return Some((k.clone(), v.clone(), w));
        }
    }
    y.iter()
        .find(|(l, _)| !x.iter().any(|(k, _)| k == l))
        .map(|(l, w)| (l.clone(), "(none)".into(), w.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn nodes_agree_unless_a_choice_input_differs() {
        let a = parse(TWO_ARM);
        // Another node: other addresses and devices, same choice.
        let b = parse(
            &TWO_ARM
                .replace("10.0.1.1/24", "10.0.1.2/24")
                .replace("0000:03:00.0", "0000:04:00.0"),
        );
        assert_eq!(a.choice_digest(), b.choice_digest());
        assert_eq!(choice_difference(&a, &b), None);
        let c = parse(&TWO_ARM.replace(
            "address = \"10.0.2.12\"",
            "address = \"10.0.2.12\"\nweight = 2",
        ));
        assert_ne!(a.choice_digest(), c.choice_digest());
        assert_eq!(
            choice_difference(&a, &c),
            Some((
                "target_groups[0].targets[1]".into(),
                "10.0.2.12 weight 1".into(),
                "10.0.2.12 weight 2".into()
            ))
        );
        let d = parse(&TWO_ARM.replace("[dataplane]", "[dataplane]\nflow_hash_seed = \"0x1234\""));
        assert_eq!(
            choice_difference(&a, &d).map(|d| d.0),
            Some("dataplane.flow_hash_seed".into())
        );
    }

    /// Failover and minimums, and endpoints' rules, decide where flows go: named; an
    /// endpoint's ports and routes are the node's own.
    #[test]
    fn failover_and_endpoint_rules_are_choice_inputs() {
        let backup = "\n[[target_groups]]\nname = \"backup\"\nuser_ports = []\n[[target_groups.targets]]\naddress = \"10.0.2.21\"\nmac = \"02:00:00:00:02:21\"\n";
        let with = |fw_extra: &str| {
            parse(&format!(
                "{}{backup}",
                TWO_ARM.replace("name = \"fw\"", &format!("name = \"fw\"\n{fw_extra}"))
            ))
        };
        let a = with("");
        let b = with("failover_group = \"backup\"");
        assert_eq!(
            choice_difference(&a, &b),
            Some((
                "target_groups[0].failover_group".into(),
                "(none)".into(),
                "backup".into()
            ))
        );
        let c = with("failover_group = \"backup\"\nmin_healthy_targets = 2");
        assert_eq!(
            choice_difference(&b, &c).map(|d| (d.0, d.2)),
            Some(("target_groups[0].min_healthy_targets".into(), "2".into()))
        );
        let tenant = |dport: &str, via: &str| {
            parse(&format!(
                "{}{backup}\n[[endpoints]]\nname = \"t\"\nports = [\"user\"]\nvlan = [7]\ntarget_group = \"backup\"\n[[endpoints.routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"{via}\"\nmac = \"02:00:00:00:01:fe\"\n[[endpoints.rules]]\nname = \"web\"\nprotocols = [6]\ndestination_ports = [\"{dport}\"]\naction = \"bypass\"\n",
                TWO_ARM
            ))
        };
        let t = tenant("80", "10.0.1.254");
        assert_eq!(choice_difference(&t, &tenant("80", "10.0.1.253")), None);
        assert_eq!(
            choice_difference(&t, &tenant("443", "10.0.1.254")).map(|d| d.0),
            Some("endpoints[0]".into())
        );
    }

    #[test]
    fn nodes_with_different_cluster_addresses_disagree() {
        let node = |router_id: &str, cluster: &str| {
            let base = TWO_ARM.replacen(
                "role = \"user\"",
                "role = \"user\"\nkernel_interface = \"gw-user\"",
                1,
            );
            parse(&format!(
                "{base}\n[bgp]\nlocal_as = 65001\nrouter_id = \"{router_id}\"\nprefixes = [\"10.250.100.0/24\"]\ncluster_addresses = [{cluster}]\n[[bgp.neighbors]]\naddress = \"10.0.1.254\"\nremote_as = 65000\n"
            ))
        };
        let a = node("10.0.1.1", "\"10.250.200.1\"");
        // Another router id is node-specific: still one choice.
        assert_eq!(
            choice_difference(&a, &node("10.0.1.2", "\"10.250.200.1\"")),
            None
        );
        assert_eq!(
            choice_difference(&a, &node("10.0.1.1", "\"10.250.200.2\"")),
            Some((
                "bgp.cluster_addresses".into(),
                "10.250.200.1".into(),
                "10.250.200.2".into()
            ))
        );
        assert_eq!(
            choice_difference(&a, &node("10.0.1.1", "")).map(|d| d.0),
            Some("bgp.cluster_addresses".into())
        );
        // Without cluster addresses the digest is what it was before they existed.
        assert_eq!(
            node("10.0.1.1", "").choice_digest(),
            parse(TWO_ARM).choice_digest()
        );
    }
}
