//! Configuration pieces shared by tests, benchmarks and the pipeline fuzz target: the address
//! plan of the one-port lab (a gateway on 10.0.0.0/24 and fd00::/64 with three appliances,
//! two routers and a host, all with static MACs) and TOML snippets written from it, so that
//! the MACs and addresses a test asserts are the ones its configuration says.
//!
//! Users: the pcap data-path tests and the hostile corpus (`gwlb/tests/common`), the pipeline
//! fuzz target (`gwlb/fuzz`); [`mac_str`] and [`target_toml`] also the netns rig and `perf`.

use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The gateway's MAC on its one port.
pub const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Source MAC of user frames (a router in front of the gateway).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
/// A MAC nobody in the lab has (a forger on the segment).
pub const STRANGER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];
/// The gateway's IPv4 address (Geneve outer source toward IPv4 appliances).
pub const GW_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The gateway's IPv6 address.
pub const GW_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The port's addresses, as the configuration writes them.
pub const PORT_ADDRESSES: &str = r#"["10.0.0.1/24", "fd00::1/64"]"#;

/// Default IPv4 next hop 10.0.0.254.
pub const ROUTER_V4: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
/// A second IPv4 router, 10.0.0.253 (a route more specific than the default goes there).
pub const ROUTER_10_2: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfd];
/// Directly connected host 10.0.0.50.
pub const HOST_50: [u8; 6] = [0x02, 0, 0, 0, 0, 0x32];
/// Default IPv6 next hop fd00::fe.
pub const ROUTER_V6: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf6];

/// Flow hash seed of the lab's configurations.
pub const SEED: u64 = 0x5eed_0000_cafe_f00d;

/// An appliance of the lab's target group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its address (outer destination).
    pub addr: IpAddr,
    /// Its static MAC.
    pub mac: [u8; 6],
}

/// The three appliances, in slot order: two IPv4, one IPv6 (an IPv6 outer header).
pub const TARGETS: [Target; 3] = [
    Target {
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11)),
        mac: [0x02, 0, 0, 0, 0, 0x0b],
    },
    Target {
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 12)),
        mac: [0x02, 0, 0, 0, 0, 0x0c],
    },
    Target {
        addr: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x13)),
        mac: [0x02, 0, 0, 0, 0, 0x0d],
    },
];

/// The gateway's outer source address toward an appliance (its address of the same family).
pub fn gw_addr_for(t: &Target) -> IpAddr {
    match t.addr {
        IpAddr::V4(_) => IpAddr::V4(GW_V4),
        IpAddr::V6(_) => IpAddr::V6(GW_V6),
    }
}

/// `02:00:00:00:00:0b`.
pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One `[[target_groups.targets]]` table (after a blank line), with its static MAC and weight
/// where given.
pub fn target_toml(address: impl Display, mac: Option<[u8; 6]>, weight: Option<u16>) -> String {
    let mut s = format!("\n[[target_groups.targets]]\naddress = \"{address}\"\n");
    if let Some(w) = weight {
        s.push_str(&format!("weight = {w}\n"));
    }
    if let Some(m) = mac {
        s.push_str(&format!("mac = \"{}\"\n", mac_str(m)));
    }
    s
}

/// A sensor pool for mirror sessions: group `name` with `user_ports = []`, its health check
/// off, and one target per `(address, mac)`.
pub fn sensor_pool_toml(name: &str, sensors: &[(&str, [u8; 6])]) -> String {
    let mut s = format!(
        "\n[[target_groups]]\nname = \"{name}\"\nuser_ports = []\n[target_groups.health_check]\nenabled = false\n"
    );
    for &(address, mac) in sensors {
        s.push_str(&target_toml(address, Some(mac), None));
    }
    s
}

/// One `[[neighbors]]` table (a static neighbour on `port`), after a blank line.
pub fn neighbor_toml(address: impl Display, mac: [u8; 6], port: &str) -> String {
    format!(
        "\n[[neighbors]]\naddress = \"{address}\"\nmac = \"{}\"\nport = \"{port}\"\n",
        mac_str(mac)
    )
}

/// The lab's default routes (0.0.0.0/0 via 10.0.0.254, ::/0 via fd00::fe) on `port` and the
/// static neighbours every lab configuration has: both routers and the host 10.0.0.50.
pub fn lab_routes_and_neighbors_toml(port: &str) -> String {
    let mut s = format!(
        "\n[[routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.0.0.254\"\nport = \"{port}\"\n\
         \n[[routes]]\nprefix = \"::/0\"\nvia = \"fd00::fe\"\nport = \"{port}\"\n"
    );
    s.push_str(&neighbor_toml("10.0.0.254", ROUTER_V4, port));
    s.push_str(&neighbor_toml("10.0.0.50", HOST_50, port));
    s.push_str(&neighbor_toml("fd00::fe", ROUTER_V6, port));
    s
}

/// A `[control]` table with the API and metrics off and human logs: for runs that only move
/// packets.
pub const CONTROL_OFF: &str =
    "\n[control]\napi_listen = \"off\"\nmetrics_listen = \"off\"\nlog_format = \"human\"\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_the_tables_they_name() {
        assert_eq!(mac_str(TARGETS[0].mac), "02:00:00:00:00:0b");
        assert_eq!(
            target_toml(TARGETS[2].addr, Some(TARGETS[2].mac), Some(0)),
            "\n[[target_groups.targets]]\naddress = \"fd00::13\"\nweight = 0\nmac = \"02:00:00:00:00:0d\"\n"
        );
        let t = lab_routes_and_neighbors_toml("p");
        assert_eq!(t.matches("[[routes]]").count(), 2);
        assert!(t.contains("address = \"10.0.0.50\"\nmac = \"02:00:00:00:00:32\"\nport = \"p\""));
    }
}
