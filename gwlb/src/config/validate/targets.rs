//! `[[target_groups.targets]]`: each appliance's address, port, weight and MAC, and that every
//! target's MAC can be known.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{check_host_ip, check_unicast_mac, invalid, ranged};
use crate::config::net::subnet_special;
use crate::config::raw::RawTarget;
use crate::config::{ConfigError, IpNet, Neighbor, Port, Target, TargetGroup};

pub(super) fn validate_targets(
    raw: &[RawTarget],
    g: &str,
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<Target>, ConfigError> {
    let mut targets: Vec<Target> = Vec::with_capacity(raw.len());
    let mut seen: HashSet<IpAddr> = HashSet::new();
    for (ti, rt) in raw.iter().enumerate() {
        let t = format!("{g}.targets[{ti}]");
        let address = check_host_ip(&format!("{t}.address"), &rt.address)?;
        if !seen.insert(address) {
            let j = targets
                .iter()
                .position(|o| o.address == address)
                .unwrap_or(0);
            return Err(invalid(
                format!("{t}.address"),
                format!("{address} is already {g}.targets[{j}]"),
            ));
        }
        let port = match &rt.port {
            Some(name) => {
                let p = port_ref(&format!("{t}.port"), name)?;
                if !ports[p].role.faces_appliances() {
                    return Err(invalid(
                        format!("{t}.port"),
                        format!("port {name:?} has role \"user\"; expected an appliance-facing port"),
                    ));
                }
                if !ports[p].is_connected(address) && ports[p].gateway_for(address).is_none() {
                    return Err(invalid(
                        format!("{t}.address"),
                        format!(
                            "{address} is not in a connected subnet of port {name:?} ({}), and the port has no appliance gateway of its family",
                            ports[p].addresses_display()
                        ),
                    ));
                }
                p
            }
            // On a link first; else through an appliance gateway.
            None => ports
                .iter()
                .position(|p| p.role.faces_appliances() && p.is_connected(address))
                .or_else(|| {
                    ports.iter().position(|p| {
                        p.role.faces_appliances() && p.gateway_for(address).is_some()
                    })
                })
                .ok_or_else(|| {
                    let subnets: Vec<String> = ports
                        .iter()
                        .filter(|p| p.role.faces_appliances())
                        .map(|p| format!("{:?}: {}", p.name, p.addresses_display()))
                        .collect();
                    invalid(
                        format!("{t}.address"),
                        format!(
                            "{address} is not in a connected subnet of an appliance-facing port ({}), and no such port has an appliance gateway of its family",
                            subnets.join("; ")
                        ),
                    )
                })?,
        };
        if ports[port].is_own_address(address) {
            return Err(invalid(
                format!("{t}.address"),
                format!("{address} is port {:?}'s own address", ports[port].name),
            ));
        }
        if let (IpAddr::V4(_), Some(net)) = (address, ports[port].ipv4) {
            if subnet_special(&IpNet::V4(net), address).is_some() {
                return Err(invalid(
                    format!("{t}.address"),
                    format!(
                        "{address} is the network or broadcast address of port {:?}'s subnet {}/{}",
                        ports[port].name,
                        net.network(),
                        net.prefix_len
                    ),
                ));
            }
        }
        let mac = match &rt.mac {
            Some(m) => Some(check_unicast_mac(&format!("{t}.mac"), m)?),
            None => None,
        };

        let via = if ports[port].is_connected(address) {
            None
        } else {
            ports[port].gateway_for(address)
        };
        if let (Some(gw), Some(_)) = (via, mac) {
            return Err(invalid(
                format!("{t}.mac"),
                format!("{address} is reached through the appliance gateway {gw}, whose MAC frames go to: set it as a [[neighbors]] entry for {gw}, or learn it through the port's kernel_interface"),
            ));
        }
        targets.push(Target {
            address,
            weight: ranged(&format!("{t}.weight"), rt.weight, 0..=1000)?,
            mac,
            port,
            via,
        });
    }
    Ok(targets)
}

/// Every target's MAC must be knowable: configured on the target, in a static `[[neighbors]]`
/// entry, or learnable by ARP/ND through its port's `kernel_interface`. Otherwise it would
/// count as healthy (health checks need the same exception path... or none) and blackhole
/// its flows as `neighbor_unresolved`.
pub(super) fn check_targets_resolvable(
    groups: &[TargetGroup],
    ports: &[Port],
    neighbors: &[Neighbor],
) -> Result<(), ConfigError> {
    for (gi, g) in groups.iter().enumerate() {
        for (ti, t) in g.targets.iter().enumerate() {
            let port = &ports[t.port];
            let known = t.mac.is_some()
                || port.kernel_interface.is_some()
                || neighbors.iter().any(|n| n.address == t.next_hop());
            if !known {
                return Err(invalid(
                    format!("target_groups[{gi}].targets[{ti}].mac"),
                    format!(
                        "required: port {:?} has no kernel_interface, so gwlb cannot learn {}'s MAC by ARP/ND (set the target's mac, a [[neighbors]] entry, or the port's kernel_interface)",
                        port.name, t.address
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::Config;

    #[test]
    fn test_target_rules() {
        let t = |addr: &str, extra: &str| {
            let base = if extra.contains("mac =") {
                MINIMAL.replace("mac = \"02:00:00:00:00:10\"\n", "")
            } else {
                MINIMAL.to_owned()
            };
            base.replace(
                "address = \"10.0.0.10\"",
                &format!("address = \"{addr}\"\n{extra}"),
            )
        };
        // A MAC nobody can learn: no static MAC, no [[neighbors]] entry, no kernel_interface.
        let unresolvable = MINIMAL.replace("mac = \"02:00:00:00:00:10\"\n", "");
        expect_err(
            &unresolvable,
            "target_groups[0].targets[0].mac",
            "has no kernel_interface",
        );
        parse(&unresolvable.replacen(
            "role = \"both\"",
            "role = \"both\"\nkernel_interface = \"gw0\"",
            1,
        ));
        parse(&format!(
            "{unresolvable}\n[[neighbors]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:10\"\nport = \"eth0\"\n"
        ));
        // Network and broadcast addresses are no hosts.
        expect_err(
            &t("10.0.0.255", ""),
            "target_groups[0].targets[0].address",
            "broadcast address",
        );
        expect_err(
            &t("10.0.0.0", ""),
            "target_groups[0].targets[0].address",
            "network or broadcast",
        );
        // Nor is a port's own address the subnet's broadcast address (a /31 has none).
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "10.0.0.255/24"),
            "ports[0].address",
            "the subnet's broadcast address",
        );
        parse(&MINIMAL.replace("10.0.0.1/24", "10.0.0.11/31"));
        // More targets than the gateway has slots for.
        let many: String = (0..4097)
            .map(|i| {
                format!(
                    "[[target_groups.targets]]\naddress = \"10.{}.{}.{}\"\nmac = \"02:00:00:00:00:10\"\n",
                    1 + i / 62500,
                    (i / 250) % 250,
                    2 + i % 250
                )
            })
            .collect();
        expect_err(
            &format!("{}\n{many}", MINIMAL.replace("10.0.0.1/24", "10.0.0.1/8")),
            "target_groups",
            "at most 4096",
        );
        // A huge value is not echoed whole.
        let huge = "x".repeat(100_000);
        let e = Config::from_toml_str(&t("10.0.0.10", &format!("port = \"{huge}\""))).unwrap_err();
        assert!(e.to_string().len() < 2_000, "{} bytes", e.to_string().len());
        expect_err(
            &t("10.1.0.10", ""),
            "target_groups[0].targets[0].address",
            "not in a connected subnet of an appliance-facing port",
        );
        expect_err(
            &t("10.0.0.1", ""),
            "target_groups[0].targets[0].address",
            "own address",
        );
        expect_err(
            &t("224.0.0.1", ""),
            "target_groups[0].targets[0].address",
            "not a unicast",
        );
        expect_err(
            &t("fd00::10", ""),
            "target_groups[0].targets[0].address",
            "not in a connected subnet",
        );
        expect_err(
            &t("10.0.0.10", "weight = 1001"),
            "target_groups[0].targets[0].weight",
            "1001 is out of range 0..=1000",
        );
        expect_err(
            &t("10.0.0.10", "mac = \"02:00\""),
            "target_groups[0].targets[0].mac",
            "invalid MAC",
        );
        expect_err(
            &t("10.0.0.10", "port = \"x\""),
            "target_groups[0].targets[0].port",
            "no port named",
        );
        let dup = format!("{MINIMAL}[[target_groups.targets]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:10\"\n");
        expect_err(
            &dup,
            "target_groups[0].targets[1].address",
            "already target_groups[0].targets[0]",
        );
        // Two-arm: a target on the user port's subnet is refused, naming the port.
        let user_side = TWO_ARM.replace("10.0.2.12", "10.0.1.12");
        expect_err(
            &user_side,
            "target_groups[0].targets[1].address",
            "\"app\": 10.0.2.1/24",
        );
        let explicit = TWO_ARM.replace(
            "address = \"10.0.2.12\"",
            "address = \"10.0.2.12\"\nport = \"user\"",
        );
        expect_err(
            &explicit,
            "target_groups[0].targets[1].port",
            "role \"user\"",
        );
        let c = parse(&t("10.0.0.10", "weight = 0"));
        assert!(c.warnings().iter().any(|w| w.message.contains("weight 0")));
        let c = parse(&MINIMAL.replace(
            "[[target_groups.targets]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:10\"\n",
            "",
        ));
        assert!(c.target_groups[0].targets.is_empty());
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.field == "target_groups[0].targets"));
        // The same appliance in two groups: its returns could not be matched to a group.
        let two = format!(
            "{TWO_ARM}\n[[target_groups]]\nname = \"ids\"\nuser_ports = []\n[[target_groups.targets]]\naddress = \"10.0.2.12\"\n"
        );
        expect_err(
            &two,
            "target_groups[1].targets[0].address",
            "is already target_groups[0].targets[1]",
        );
    }

    /// Appliances outside the appliance port's subnets, reached through its appliance gateway.
    #[test]
    fn routed_targets() {
        let cfg = |gateway: &str, target_extra: &str, tail: &str| {
            TWO_ARM.replacen(
                "address = \"10.0.2.1/24\"",
                &format!("address = \"10.0.2.1/24\"\n{gateway}"),
                1,
            ) + &format!(
                "[[target_groups.targets]]\naddress = \"10.9.0.5\"\n{target_extra}\n{tail}"
            )
        };
        let gw = "appliance_gateways = [\"10.0.2.254\"]";
        let neighbor = "[[neighbors]]\naddress = \"10.0.2.254\"\nmac = \"02:00:00:00:02:fe\"\nport = \"app\"\n";
        let c = parse(&cfg(gw, "", neighbor));
        let t = &c.target_groups[0].targets[2];
        assert_eq!((t.port, t.via), (1, Some("10.0.2.254".parse().unwrap())));
        assert_eq!(t.next_hop().to_string(), "10.0.2.254");
        assert_eq!(
            c.target_groups[0].targets[0].via, None,
            "on-link stays on-link"
        );
        assert_eq!(&c.revalidated().unwrap(), &c, "round trip");
        for (text, field, msg) in [
            (
                cfg(gw, "", ""),
                "target_groups[0].targets[2].mac",
                "has no kernel_interface",
            ),
            (
                cfg(gw, "mac = \"02:00:00:00:09:05\"", neighbor),
                "target_groups[0].targets[2].mac",
                "reached through the appliance gateway 10.0.2.254",
            ),
            (
                cfg("", "", neighbor),
                "target_groups[0].targets[2].address",
                "no such port has an appliance gateway",
            ),
            (
                cfg("appliance_gateways = [\"10.0.3.254\"]", "", neighbor),
                "ports[1].appliance_gateways[0]",
                "connected subnet",
            ),
            (
                cfg(
                    "appliance_gateways = [\"10.0.2.254\", \"10.0.2.253\"]",
                    "",
                    neighbor,
                ),
                "ports[1].appliance_gateways[1]",
                "at most one per family",
            ),
            (
                TWO_ARM.replacen(
                    "address = \"10.0.1.1/24\"",
                    "address = \"10.0.1.1/24\"\nappliance_gateways = [\"10.0.1.254\"]",
                    1,
                ),
                "ports[0].appliance_gateways[0]",
                "role \"user\"",
            ),
        ] {
            expect_err(&text, field, msg);
        }
    }
}
