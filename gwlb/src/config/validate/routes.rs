//! `[[routes]]`: where decapsulated traffic goes, out of a user-facing port.

use super::{check_host_ip, family, invalid, parse_field};
use crate::config::raw::RawRoute;
use crate::config::{ConfigError, IpNet, Port, Route};

pub(super) fn validate_routes(
    raw: &[RawRoute],
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<Route>, ConfigError> {
    let mut routes: Vec<Route> = Vec::with_capacity(raw.len());
    for (i, rr) in raw.iter().enumerate() {
        let r = format!("routes[{i}]");
        let prefix: IpNet = parse_field(&format!("{r}.prefix"), &rr.prefix)?;
        if prefix.addr() != prefix.network() {
            return Err(invalid(
                format!("{r}.prefix"),
                format!(
                    "{prefix} has host bits set; did you mean {}/{}?",
                    prefix.network(),
                    prefix.prefix_len()
                ),
            ));
        }
        if let Some(j) = routes.iter().position(|o| o.prefix == prefix) {
            return Err(invalid(
                format!("{r}.prefix"),
                format!("{prefix} is already routed by routes[{j}]"),
            ));
        }
        let port = port_ref(&format!("{r}.port"), &rr.port)?;
        let pt = &ports[port];
        if !pt.role.faces_users() {
            return Err(invalid(
                format!("{r}.port"),
                format!(
                    "port {:?} has role \"appliance\"; routes carry decapsulated traffic out of a user-facing port",
                    pt.name
                ),
            ));
        }
        let has_family = if prefix.is_ipv4() {
            pt.ipv4.is_some()
        } else {
            pt.ipv6.is_some()
        };
        if !has_family {
            return Err(invalid(
                format!("{r}.port"),
                format!(
                    "port {:?} has no {} address for {} route {prefix}",
                    pt.name,
                    family(prefix.addr()),
                    family(prefix.addr())
                ),
            ));
        }
        let via = match &rr.via {
            Some(text) => {
                let field = format!("{r}.via");
                let ip = check_host_ip(&field, text)?;
                if ip.is_ipv4() != prefix.is_ipv4() {
                    return Err(invalid(
                        field,
                        format!(
                            "{} next hop for {} prefix {prefix}",
                            family(ip),
                            family(prefix.addr())
                        ),
                    ));
                }
                if pt.is_own_address(ip) {
                    return Err(invalid(
                        field,
                        format!("{ip} is port {:?}'s own address", pt.name),
                    ));
                }
                if !pt.is_connected(ip) {
                    return Err(invalid(
                        field,
                        format!(
                            "next hop {ip} is not in a connected subnet of port {:?} ({})",
                            pt.name,
                            pt.addresses_display()
                        ),
                    ));
                }
                Some(ip)
            }
            None => None,
        };
        routes.push(Route { prefix, via, port });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn test_route_rules() {
        let route = |prefix: &str, via: &str, port: &str| {
            let via = if via.is_empty() {
                String::new()
            } else {
                format!("via = \"{via}\"\n")
            };
            with(&format!(
                "[[routes]]\nprefix = \"{prefix}\"\n{via}port = \"{port}\""
            ))
        };
        parse(&route("10.2.0.0/16", "10.0.0.254", "eth0"));
        parse(&route("10.0.0.0/24", "", "eth0"));
        expect_err(
            &route("10.2.0.0/16", "10.1.0.254", "eth0"),
            "routes[0].via",
            "not in a connected subnet of port \"eth0\"",
        );
        expect_err(
            &route("10.2.0.0/16", "10.0.0.254", "eth1"),
            "routes[0].port",
            "no port named \"eth1\"",
        );
        expect_err(
            &route("10.2.0.1/16", "10.0.0.254", "eth0"),
            "routes[0].prefix",
            "host bits set; did you mean 10.2.0.0/16",
        );
        expect_err(
            &route("10.2.0.0/16", "fd00::1", "eth0"),
            "routes[0].via",
            "IPv6 next hop for IPv4 prefix",
        );
        expect_err(
            &route("fd00::/16", "", "eth0"),
            "routes[0].port",
            "no IPv6 address",
        );
        expect_err(
            &route("10.2.0.0/16", "10.0.0.1", "eth0"),
            "routes[0].via",
            "own address",
        );
        expect_err(
            &route("10.2.0.0/99", "", "eth0"),
            "routes[0].prefix",
            "invalid prefix",
        );
        let twice = format!(
            "{}\n[[routes]]\nprefix = \"10.2.0.0/16\"\nport = \"eth0\"",
            route("10.2.0.0/16", "10.0.0.254", "eth0")
        );
        expect_err(&twice, "routes[1].prefix", "already routed by routes[0]");
        let app_route = format!(
            "{TWO_ARM}\n[[routes]]\nprefix = \"10.9.0.0/16\"\nvia = \"10.0.2.254\"\nport = \"app\""
        );
        expect_err(&app_route, "routes[1].port", "role \"appliance\"");
    }
}
