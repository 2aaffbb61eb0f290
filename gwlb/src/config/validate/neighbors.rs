//! `[[neighbors]]`: static ARP/ND entries in a port's connected subnet.

use super::{check_host_ip, check_unicast_mac, invalid};
use crate::config::raw::RawNeighbor;
use crate::config::{ConfigError, Neighbor, Port};

pub(super) fn validate_neighbors(
    raw: &[RawNeighbor],
    ports: &[Port],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<Neighbor>, ConfigError> {
    let mut out: Vec<Neighbor> = Vec::with_capacity(raw.len());
    for (i, rn) in raw.iter().enumerate() {
        let n = format!("neighbors[{i}]");
        let port = port_ref(&format!("{n}.port"), &rn.port)?;
        let address = check_host_ip(&format!("{n}.address"), &rn.address)?;
        let pt = &ports[port];
        if pt.is_own_address(address) {
            return Err(invalid(
                format!("{n}.address"),
                format!("{address} is port {:?}'s own address", pt.name),
            ));
        }
        if !pt.is_connected(address) {
            return Err(invalid(
                format!("{n}.address"),
                format!(
                    "{address} is not in a connected subnet of port {:?} ({})",
                    pt.name,
                    pt.addresses_display()
                ),
            ));
        }
        if let Some(j) = out
            .iter()
            .position(|o| o.port == port && o.address == address)
        {
            return Err(invalid(
                format!("{n}.address"),
                format!(
                    "{address} on port {:?} is already set by neighbors[{j}]",
                    pt.name
                ),
            ));
        }
        let mac = check_unicast_mac(&format!("{n}.mac"), &rn.mac)?;
        out.push(Neighbor { address, mac, port });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::MacAddr;

    #[test]
    fn test_neighbor_rules() {
        let nb = |addr: &str, mac: &str| {
            with(&format!(
                "[[neighbors]]\naddress = \"{addr}\"\nmac = \"{mac}\"\nport = \"eth0\""
            ))
        };
        let c = parse(&nb("10.0.0.10", "aa:bb:cc:dd:ee:f0"));
        assert_eq!(
            c.neighbors[0].mac,
            MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0])
        );
        expect_err(
            &nb("10.9.0.10", "02:00:00:00:00:01"),
            "neighbors[0].address",
            "not in a connected subnet",
        );
        expect_err(
            &nb("10.0.0.10", "ff:ff:ff:ff:ff:ff"),
            "neighbors[0].mac",
            "not a unicast",
        );
        expect_err(
            &nb("10.0.0.10", "02:00:00:00:00"),
            "neighbors[0].mac",
            "invalid MAC",
        );
        expect_err(
            &nb("nope", "02:00:00:00:00:01"),
            "neighbors[0].address",
            "invalid IP address",
        );
        let twice = format!("{}\n[[neighbors]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:02\"\nport = \"eth0\"", nb("10.0.0.10", "02:00:00:00:00:01"));
        expect_err(
            &twice,
            "neighbors[1].address",
            "already set by neighbors[0]",
        );
        expect_err(
            &with(
                "[[neighbors]]\naddress = \"10.0.0.10\"\nmac = \"02:00:00:00:00:01\"\nport = \"x\"",
            ),
            "neighbors[0].port",
            "no port named",
        );
    }
}
