//! `[[ports]]`: names, devices, addresses and subnets, queues, the exception-path interface,
//! and the one-arm/two-arm role layout.

use super::{
    check_host_ip, check_name, check_unicast_mac, family, invalid, parse_field, ranged, Validator,
};
use crate::config::mbufs::{self, af_xdp};
use crate::config::net::subnet_special;
use crate::config::raw::RawPort;
use crate::config::{ConfigError, Dataplane, Device, IpNet, Ipv4Net, Ipv6Net, Port, PortRole};
use std::net::IpAddr;

/// RTE_MAX_QUEUES_PER_PORT.
const MAX_QUEUES: i64 = 1024;
/// Linux IFNAMSIZ minus the terminating NUL.
const IFNAME_MAX: usize = 15;

pub(super) fn validate_ports(
    raw: &[RawPort],
    dataplane: &Dataplane,
    v: &mut Validator,
) -> Result<Vec<Port>, ConfigError> {
    if raw.is_empty() || raw.len() > 2 {
        return Err(invalid(
            "ports",
            format!(
                "{} ports; expected one (role \"both\", one-arm) or two (roles \"user\" and \"appliance\", two-arm)",
                raw.len()
            ),
        ));
    }
    let workers = dataplane.workers();
    let mut ports: Vec<Port> = Vec::with_capacity(raw.len());
    for (i, rp) in raw.iter().enumerate() {
        let p = format!("ports[{i}]");
        check_name(&format!("{p}.name"), &rp.name, 32)?;
        if let Some(j) = ports.iter().position(|q| q.name == rp.name) {
            return Err(invalid(
                format!("{p}.name"),
                format!("{:?} is already the name of ports[{j}]", rp.name),
            ));
        }
        let device: Device = parse_field(&format!("{p}.device"), &rp.device)?;
        if let Some(j) = ports.iter().position(|q| q.device.name() == device.name()) {
            return Err(invalid(
                format!("{p}.device"),
                format!("device {} is already used by ports[{j}]", device.name()),
            ));
        }

        let (mut ipv4, mut ipv6) = (None, None);
        if rp.address.0.is_empty() {
            return Err(invalid(
                format!("{p}.address"),
                "at least one address is required",
            ));
        }
        for (k, text) in rp.address.0.iter().enumerate() {
            let field = if rp.address.0.len() == 1 {
                format!("{p}.address")
            } else {
                format!("{p}.address[{k}]")
            };
            let net: IpNet = parse_field(&field, text)?;
            check_host_ip(&field, &net.addr().to_string())?;
            if let Some(kind) = subnet_special(&net, net.addr()) {
                return Err(invalid(
                    field,
                    format!("{net}: the address is the subnet's {kind} address"),
                ));
            }
            let dup = match net {
                IpNet::V4(n) => ipv4.replace(n).is_some(),
                IpNet::V6(n) => ipv6.replace(n).is_some(),
            };
            if dup {
                return Err(invalid(
                    field,
                    format!(
                        "a second {} address; at most one per family",
                        family(net.addr())
                    ),
                ));
            }
        }
        for (j, q) in ports.iter().enumerate() {
            let overlap = match (ipv4, q.ipv4, ipv6, q.ipv6) {
                (Some(a), Some(b), _, _) if a.overlaps(&b) => Some(IpNet::V4(b)),
                (_, _, Some(a), Some(b)) if a.overlaps(&b) => Some(IpNet::V6(b)),
                _ => None,
            };
            if let Some(other) = overlap {
                return Err(invalid(
                    format!("{p}.address"),
                    format!("subnet overlaps ports[{j}].address {other}; connected subnets must be distinct"),
                ));
            }
        }

        let mac = match &rp.mac {
            Some(m) => Some(check_unicast_mac(&format!("{p}.mac"), m)?),
            None => None,
        };
        let mtu = ranged(&format!("{p}.mtu"), rp.mtu, 576..=9600)?;
        let rx_queues: u16 = match rp.rx_queues {
            Some(n) => ranged(&format!("{p}.rx_queues"), n, 1..=MAX_QUEUES)?,
            None => ranged(
                &format!("{p}.rx_queues"),
                i64::try_from(workers).unwrap_or(i64::MAX),
                1..=MAX_QUEUES,
            )?,
        };
        if usize::from(rx_queues) < workers {
            v.warn(
                format!("{p}.rx_queues"),
                format!(
                    "{rx_queues} RX queues for {workers} workers: {} workers poll nothing on this port",
                    workers - usize::from(rx_queues)
                ),
            );
        } else if !usize::from(rx_queues).is_multiple_of(workers) {
            v.warn(
                format!("{p}.rx_queues"),
                format!("{rx_queues} RX queues do not divide evenly among {workers} workers"),
            );
        }
        let tx_queues: u16 = match rp.tx_queues {
            0 => ranged(
                &format!("{p}.tx_queues"),
                i64::try_from(workers).unwrap_or(i64::MAX),
                1..=MAX_QUEUES,
            )?,
            n => {
                let n: u16 = ranged(&format!("{p}.tx_queues"), n, 0..=MAX_QUEUES)?;
                if usize::from(n) < workers {
                    return Err(invalid(
                        format!("{p}.tx_queues"),
                        format!("{n} TX queues for {workers} workers: each worker needs its own (0 = one per worker)"),
                    ));
                }
                n
            }
        };
        let kernel_interface = match &rp.kernel_interface {
            Some(name) => {
                let field = format!("{p}.kernel_interface");
                let ok = !name.is_empty()
                    && name.len() <= IFNAME_MAX
                    && name != "."
                    && name != ".."
                    && !name
                        .chars()
                        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
                if !ok {
                    return Err(invalid(
                        field,
                        format!("{name:?} is not a valid Linux interface name (1..={IFNAME_MAX} bytes, no '/', ':' or spaces)"),
                    ));
                }
                if let Some(j) = ports
                    .iter()
                    .position(|q| q.kernel_interface.as_deref() == Some(name))
                {
                    return Err(invalid(
                        field,
                        format!("{name:?} is already used by ports[{j}]"),
                    ));
                }
                Some(name.clone())
            }
            None => None,
        };
        let mut appliance_gateways: Vec<IpAddr> = Vec::new();
        for (j, text) in rp.appliance_gateways.iter().enumerate() {
            let field = format!("{p}.appliance_gateways[{j}]");
            let ip = check_host_ip(&field, text)?;
            if rp.role == PortRole::User {
                return Err(invalid(
                    field,
                    "port has role \"user\": appliance gateways belong to an appliance-facing port",
                ));
            }
            let connected = match ip {
                IpAddr::V4(a) => ipv4.is_some_and(|n: Ipv4Net| n.contains(a)),
                IpAddr::V6(a) => ipv6.is_some_and(|n: Ipv6Net| n.contains(a)),
            };
            let own = match ip {
                IpAddr::V4(a) => ipv4.is_some_and(|n| n.addr == a),
                IpAddr::V6(a) => ipv6.is_some_and(|n| n.addr == a),
            };
            if own || !connected {
                return Err(invalid(
                    field,
                    format!("{ip} must be another host in the port's connected subnet (the router that reaches the appliances)"),
                ));
            }
            if appliance_gateways
                .iter()
                .any(|g| g.is_ipv4() == ip.is_ipv4())
            {
                return Err(invalid(
                    field,
                    "a second gateway of its family (at most one per family)",
                ));
            }
            appliance_gateways.push(ip);
        }
        ports.push(Port {
            appliance_gateways,
            name: rp.name.clone(),
            device,
            role: rp.role,
            ipv4,
            ipv6,
            mac,
            mtu,
            rx_queues,
            tx_queues,
            promiscuous: rp.promiscuous,
            kernel_interface,
        });
    }

    af_xdp_limits(&ports)?;

    let roles: Vec<PortRole> = ports.iter().map(|p| p.role).collect();
    match roles.as_slice() {
        [PortRole::Both]
        | [PortRole::User, PortRole::Appliance]
        | [PortRole::Appliance, PortRole::User] => {}
        _ => {
            let i = ports.len() - 1;
            return Err(invalid(
                format!("ports[{i}].role"),
                format!(
                    "roles {roles:?}: expected one port with role \"both\" (one-arm) or one \"user\" and one \"appliance\" port (two-arm)"
                ),
            ));
        }
    }

    // Two-arm: the appliance side carries the user side's packets plus the outer headers.
    if let (Some(u), Some(a)) = (
        ports.iter().position(|p| p.role == PortRole::User),
        ports.iter().position(|p| p.role == PortRole::Appliance),
    ) {
        let overhead = if ports[a].ipv4.is_some() {
            crate::encap::OVERHEAD_V4
        } else {
            crate::encap::OVERHEAD_V6
        };
        let need = usize::from(ports[u].mtu) + overhead;
        if usize::from(ports[a].mtu) < need {
            v.warn(
                format!("ports[{a}].mtu"),
                format!(
                    "{} is below ports[{u}].mtu {} + {overhead} bytes of Geneve overhead = {need}: larger user packets will be dropped",
                    ports[a].mtu, ports[u].mtu
                ),
            );
        }
    }
    Ok(ports)
}

/// `net_af_xdp` ports (`config::mbufs::af_xdp`): a frame must fit one UMEM chunk of a page
/// after the mempool header, the mbuf and both headrooms, so such a port's `mtu` is at most
/// [`af_xdp::MAX_MTU`]; and its chunks are the mbufs of the pool every port shares, so no
/// other port may need a larger data room either (an MTU above 3,754 bytes, or
/// `net_af_packet` ring frames of 4 KiB, which gwlb chooses above an MTU of 1,994).
fn af_xdp_limits(ports: &[Port]) -> Result<(), ConfigError> {
    let Some(x) = ports.iter().position(|p| p.device.is_af_xdp()) else {
        return Ok(());
    };
    for (i, p) in ports.iter().enumerate() {
        if p.device.is_af_xdp() && p.mtu > af_xdp::MAX_MTU {
            return Err(invalid(
                format!("ports[{i}].mtu"),
                format!(
                    "{} is above what a net_af_xdp port carries with gwlb's mbufs: at most {} (a frame, mtu + 22 bytes of Ethernet and VLAN tags, must fit one {}-byte UMEM chunk after the mempool header, the mbuf, and DPDK's {} and XDP's {} bytes of headroom); use net_af_packet or a PCI device for larger frames",
                    p.mtu,
                    af_xdp::MAX_MTU,
                    af_xdp::CHUNK_MAX,
                    mbufs::MBUF_HEADROOM,
                    af_xdp::XDP_HEADROOM
                ),
            ));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let need = mbufs::port_data_room(p).next_multiple_of(64);
        if need <= af_xdp::MAX_DATA_ROOM {
            continue;
        }
        // Its MTU alone fits: its net_af_packet ring frames are what is too large.
        let by_ring = mbufs::MBUF_HEADROOM + mbufs::max_frame(p.mtu) <= af_xdp::MAX_DATA_ROOM;
        let field = if by_ring { "device" } else { "mtu" };
        return Err(invalid(
            format!("ports[{i}].{field}"),
            format!(
                "needs mbufs with {need} bytes of data room (mtu {}{}), but ports[{x}] is net_af_xdp, whose UMEM chunks are the same mbufs and hold at most {} (one {}-byte page): with an af_xdp port, keep every port's mtu at most {} (net_af_packet: at most 1994, or framesz at most {})",
                p.mtu,
                if by_ring { ", net_af_packet ring frames" } else { "" },
                af_xdp::MAX_DATA_ROOM,
                af_xdp::CHUNK_MAX,
                af_xdp::MAX_DATA_ROOM - mbufs::MBUF_HEADROOM - mbufs::L2_MAX,
                af_xdp::MAX_DATA_ROOM - mbufs::MBUF_HEADROOM + mbufs::TPACKET_OVERHEAD,
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use crate::config::test_support::*;
    use crate::config::Config;

    #[test]
    fn test_port_rules() {
        expect_err(
            &port_with("mtu = 100"),
            "ports[0].mtu",
            "100 is out of range 576..=9600",
        );
        expect_err(
            &port_with("mac = \"01:00:5e:00:00:01\""),
            "ports[0].mac",
            "not a unicast",
        );
        expect_err(
            &port_with("mac = \"zz:00:00:00:00:01\""),
            "ports[0].mac",
            "invalid MAC",
        );
        expect_err(
            &port_with("kernel_interface = \"much-too-long-name\""),
            "ports[0].kernel_interface",
            "interface name",
        );
        expect_err(
            &port_with("kernel_interface = \"a/b\""),
            "ports[0].kernel_interface",
            "interface name",
        );
        expect_err(
            &port_with("rx_queues = 0"),
            "ports[0].rx_queues",
            "out of range 1..=1024",
        );
        expect_err(
            &MINIMAL.replace("net_af_packet0,iface=veth0", "0000:03:00"),
            "ports[0].device",
            "invalid PCI address",
        );
        expect_err(
            &MINIMAL.replace("net_af_packet0,iface=veth0", "0000:03:20.0"),
            "ports[0].device",
            "PCI",
        );
        expect_err(
            &MINIMAL.replace("net_af_packet0,iface=veth0", "net_"),
            "ports[0].device",
            "vdev",
        );
        expect_err(
            &MINIMAL.replace("name = \"eth0\"", "name = \"a b\""),
            "ports[0].name",
            "not a valid name",
        );
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "10.0.0.1"),
            "ports[0].address",
            "ADDRESS/LENGTH",
        );
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "10.0.0.1/33"),
            "ports[0].address",
            "invalid prefix",
        );
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "10.0.0.0/24"),
            "ports[0].address",
            "network address",
        );
        expect_err(
            &MINIMAL.replace("10.0.0.1/24", "0.0.0.0/0"),
            "ports[0].address",
            "not a unicast host",
        );
        expect_err(
            &MINIMAL.replace("\"10.0.0.1/24\"", "[\"10.0.0.1/24\", \"10.1.0.1/24\"]"),
            "ports[0].address[1]",
            "second IPv4",
        );
        expect_err(
            &MINIMAL.replace("\"10.0.0.1/24\"", "[]"),
            "ports[0].address",
            "at least one",
        );
        // Address with a /31 or /32 may equal its network address.
        parse(
            &MINIMAL
                .replace("10.0.0.1/24", "10.0.0.10/31")
                .replace("10.0.0.10\"", "10.0.0.11\""),
        );
    }

    #[test]
    fn test_port_count_and_roles() {
        let no_ports = MINIMAL.replace("[[ports]]", "[oops]").replace("[oops]", "");
        // Removing the header leaves its keys at the top level: an unknown-field error.
        assert!(Config::from_toml_str(&no_ports).is_err());
        expect_err("[[target_groups]]\nname = \"fw\"", "ports", "0 ports");
        expect_err(
            &TWO_ARM.replace("role = \"appliance\"", "role = \"user\""),
            "ports[1].role",
            "two-arm",
        );
        expect_err(
            &TWO_ARM.replace("role = \"user\"", "role = \"both\""),
            "ports[1].role",
            "one-arm",
        );
        expect_err(
            &MINIMAL.replace("role = \"both\"", "role = \"user\""),
            "ports[0].role",
            "expected one port",
        );
        let three = format!(
            "{TWO_ARM}\n[[ports]]\nname = \"x\"\ndevice = \"0000:04:00.0\"\nrole = \"user\"\naddress = \"10.0.9.1/24\""
        );
        expect_err(&three, "ports", "3 ports");
        expect_err(
            &TWO_ARM.replace("name = \"app\"", "name = \"user\""),
            "ports[1].name",
            "already the name",
        );
        expect_err(
            &TWO_ARM.replace("0000:03:00.1", "0000:03:00.0"),
            "ports[1].device",
            "already used",
        );
        expect_err(
            &TWO_ARM.replace("10.0.2.1/24", "10.0.1.2/16"),
            "ports[1].address",
            "overlaps",
        );
        let c = parse(TWO_ARM);
        assert_eq!(c.ports[0].rx_queues, 2);
        assert_eq!(c.ports[1].tx_queues, 2);
        assert_eq!(c.target_groups[0].user_ports, vec![0]);
        assert_eq!(c.target_groups[0].targets[1].port, 1);
        assert_eq!(c.routes[0].via, Some(IpAddr::from([10, 0, 1, 254])));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn test_queue_sanity() {
        let four = |s: &str| format!("[dataplane]\nworker_cpus = [1, 2, 3, 4]\n{s}");
        let c = parse(&four(&port_with("rx_queues = 2")));
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.field == "ports[0].rx_queues" && w.message.contains("poll nothing")));
        let c = parse(&four(&port_with("rx_queues = 6")));
        assert!(c.warnings().iter().any(|w| w.message.contains("evenly")));
        expect_err(
            &four(&port_with("tx_queues = 3")),
            "ports[0].tx_queues",
            "each worker needs its own",
        );
        let c = parse(&four(&port_with("tx_queues = 0")));
        assert_eq!((c.ports[0].rx_queues, c.ports[0].tx_queues), (4, 4));
    }

    /// `net_af_xdp`: its own MTU at most 3,498 (a frame in one page-sized UMEM chunk); and,
    /// the chunks being the shared mbufs, no other port needing more room.
    #[test]
    fn test_af_xdp_mtu_limits() {
        let xdp = |user: &str, app: &str| {
            TWO_ARM
                .replacen(
                    "device = \"0000:03:00.0\"\nrole = \"user\"\naddress = \"10.0.1.1/24\"\nmtu = 1500",
                    user,
                    1,
                )
                .replacen(
                    "device = \"0000:03:00.1\"\nrole = \"appliance\"\naddress = \"10.0.2.1/24\"\nmtu = 9000",
                    app,
                    1,
                )
        };
        let port = |dev: &str, role: &str, net: u8, mtu: u16| {
            format!(
                "device = \"{dev}\"\nrole = \"{role}\"\naddress = \"10.0.{net}.1/24\"\nmtu = {mtu}"
            )
        };
        let user = |dev: &str, mtu| port(dev, "user", 1, mtu);
        let app = |dev: &str, mtu| port(dev, "appliance", 2, mtu);
        let (x0, x1) = ("net_af_xdp0,iface=u", "net_af_xdp1,iface=a");
        let text = xdp(&user(x0, 1500), &app(x1, 3498));
        assert_ne!(text, TWO_ARM);
        let c = parse(&text);
        assert!(c.ports.iter().all(|p| p.device.is_af_xdp()));
        expect_err(
            &xdp(&user(x0, 1500), &app(x1, 3499)),
            "ports[1].mtu",
            "3499 is above what a net_af_xdp port carries with gwlb's mbufs: at most 3498",
        );
        // Another port's frames must fit the same mbufs: a PCI appliance side at 9000...
        expect_err(
            &xdp(&user(x0, 1500), &app("0000:03:00.1", 9000)),
            "ports[1].mtu",
            "but ports[0] is net_af_xdp",
        );
        parse(&xdp(&user(x0, 1500), &app("0000:03:00.1", 3754)));
        expect_err(
            &xdp(&user(x0, 1500), &app("0000:03:00.1", 3755)),
            "ports[1].mtu",
            "keep every port's mtu at most 3754",
        );
        // ...and net_af_packet ring frames, 4 KiB above an MTU of 1994.
        let afp = "net_af_packet0,iface=a";
        parse(&xdp(&user(x0, 1500), &app(afp, 1994)));
        expect_err(
            &xdp(&user(x0, 1500), &app(afp, 1995)),
            "ports[1].device",
            "net_af_packet ring frames",
        );
        // Without an af_xdp port, nothing of this applies.
        parse(&xdp(&user(afp, 1500), &app("0000:03:00.1", 9000)));
    }

    #[test]
    fn test_mtu_warning() {
        let c = parse(&TWO_ARM.replace("mtu = 9000", "mtu = 1500"));
        let w = &c.warnings()[0];
        assert_eq!(w.field, "ports[1].mtu");
        assert!(w.to_string().contains("1568"), "{w}");
    }
}
