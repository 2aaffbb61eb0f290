//! The read-only state workers consult per packet, built by the control plane.
//!
//! A [`Snapshot`] is immutable: the control plane builds a new one whenever something
//! changes (health, registrations, weights, learned neighbours, a reloaded config) and
//! publishes it atomically; workers pick the new pointer up at their next burst. Appliances
//! keep their slot (their index in [`Snapshot::appliances`]) across snapshots, so flow-table
//! entries that name a slot stay valid.

use std::net::IpAddr;

use crate::config::{self, Config, OnAllUnhealthy, OnUnhealthy, PortRole};
use crate::encap::{EncapParams, EncapTemplate};
use crate::flow::Stickiness;
use crate::maglev::{MaglevBackend, MaglevError, MaglevTable};
use crate::parse::IpAddrBytes;

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A Maglev table could not be built.
    #[error("target_groups[{group}]: {source}")]
    Maglev {
        /// Index of the target group.
        group: usize,
        /// What Maglev said.
        source: MaglevError,
    },
    /// The number of port MACs does not match the configured ports.
    #[error("expected {expected} port MAC addresses, got {got}")]
    PortMacs {
        /// Configured ports.
        expected: usize,
        /// MACs given.
        got: usize,
    },
}

/// Health / registration state of an appliance as the data path sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplianceState {
    /// Takes new flows (if its weight is not 0) and keeps its flows.
    Healthy,
    /// Failed its health checks: no new flows; existing flows per the group's policy.
    Unhealthy,
    /// Deregistered, draining until `until` (coarse seconds, the workers' clock): no new
    /// flows; existing flows stay until then.
    Draining {
        /// End of the deregistration delay.
        until: u32,
    },
}

/// A data-path port.
#[derive(Clone, Debug)]
pub struct PortView {
    /// Configured name.
    pub name: String,
    /// Our MAC on it.
    pub mac: [u8; 6],
    /// User side, appliance side or both.
    pub role: PortRole,
    /// Our IPv4 address on it.
    pub ipv4: Option<IpAddrBytes>,
    /// Our IPv6 address on it.
    pub ipv6: Option<IpAddrBytes>,
    /// Link MTU.
    pub mtu: u16,
}

impl PortView {
    /// Whether `addr` is one of our own addresses on this port.
    #[inline]
    pub fn is_own(&self, addr: &IpAddrBytes) -> bool {
        self.ipv4.as_ref() == Some(addr) || self.ipv6.as_ref() == Some(addr)
    }
}

/// One appliance (a registered target).
#[derive(Clone, Debug)]
pub struct ApplianceView {
    /// Its address.
    pub addr: IpAddr,
    /// Its target group (index into [`Snapshot::groups`]).
    pub group: u16,
    /// The port that reaches it.
    pub port: u16,
    /// Relative weight for new flows.
    pub weight: u16,
    /// Health / registration.
    pub state: ApplianceState,
    /// Prebuilt outer headers; `None` while its MAC is unresolved.
    pub template: Option<EncapTemplate>,
}

/// One target group as the data path sees it.
#[derive(Debug)]
pub struct GroupView {
    /// Configured name.
    pub name: String,
    /// Maglev table over the appliances that take new flows.
    pub maglev: MaglevTable,
    /// Maglev backend index -> appliance slot.
    pub backends: Vec<u16>,
    /// Flow-key fields.
    pub stickiness: Stickiness,
    /// `rebalance`: flows of an unhealthy appliance move to a healthy one.
    pub rebalance: bool,
    /// `fail_open`: with no healthy appliance, forward uninspected instead of dropping.
    pub fail_open: bool,
}

/// A route for forwarding decapsulated (or fail-open) traffic.
#[derive(Clone, Copy, Debug)]
struct RouteView {
    net: u128,
    mask: u128,
    via: Option<IpAddrBytes>,
    port: u16,
}

/// Where to send a packet for a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Egress port index.
    pub port: u16,
    /// Destination MAC.
    pub mac: [u8; 6],
}

/// Why no next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoNextHop {
    /// No route covers the destination.
    NoRoute,
    /// The route's next hop has no known MAC.
    Unresolved,
}

/// Everything a worker reads per packet.
#[derive(Debug)]
pub struct Snapshot {
    /// Incremented by the control plane for every new snapshot.
    pub generation: u64,
    /// Flow hash seed (same on every gateway behind ECMP).
    pub seed: u64,
    /// Ports, in configuration order.
    pub ports: Vec<PortView>,
    /// Appliances by slot.
    pub appliances: Vec<ApplianceView>,
    /// Target groups, in configuration order.
    pub groups: Vec<GroupView>,
    appliance_by_addr: Vec<(IpAddrBytes, u16)>,
    port_group: Vec<Option<u16>>,
    routes: Vec<RouteView>,
    neighbors: Vec<(IpAddrBytes, [u8; 6])>,
}

fn prefix_mask(addr: IpAddr, prefix_len: u8) -> (u128, u128) {
    let (bits, len) = match addr {
        IpAddr::V4(a) => (
            u128::from_be_bytes(a.to_ipv6_mapped().octets()),
            96 + u32::from(prefix_len),
        ),
        IpAddr::V6(a) => (u128::from_be_bytes(a.octets()), u32::from(prefix_len)),
    };
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    (bits & mask, mask)
}

/// Dynamic inputs to a snapshot that are not in the config file.
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    /// State per appliance slot (missing = healthy).
    pub appliance_state: Vec<ApplianceState>,
    /// Neighbours learned by ARP/ND, added to the static ones.
    pub learned_neighbors: Vec<(IpAddr, [u8; 6])>,
}

impl Snapshot {
    /// Builds a snapshot from a validated config, the ports' MAC addresses and the live state.
    /// Appliance slots are the targets in config order, group by group.
    pub fn build(
        cfg: &Config,
        port_macs: &[[u8; 6]],
        live: &LiveState,
        generation: u64,
    ) -> Result<Snapshot, SnapshotError> {
        if port_macs.len() != cfg.ports.len() {
            return Err(SnapshotError::PortMacs {
                expected: cfg.ports.len(),
                got: port_macs.len(),
            });
        }
        let ports: Vec<PortView> = cfg
            .ports
            .iter()
            .zip(port_macs)
            .map(|(p, mac)| PortView {
                name: p.name.clone(),
                mac: p.mac.map(|m| m.0).unwrap_or(*mac),
                role: p.role,
                ipv4: p.ipv4.map(|n| n.addr.into()),
                ipv6: p.ipv6.map(|n| n.addr.into()),
                mtu: p.mtu,
            })
            .collect();

        let mut neighbors: Vec<(IpAddrBytes, [u8; 6])> = cfg
            .neighbors
            .iter()
            .map(|n| (IpAddrBytes::from(n.address), n.mac.0))
            .collect();
        for g in &cfg.target_groups {
            for t in &g.targets {
                if let Some(mac) = t.mac {
                    neighbors.push((IpAddrBytes::from(t.address), mac.0));
                }
            }
        }
        // Learned entries last: static ones win (the stable sort + dedup keeps the first).
        for (ip, mac) in &live.learned_neighbors {
            neighbors.push((IpAddrBytes::from(*ip), *mac));
        }
        neighbors.sort_by_key(|a| a.0);
        // Static entries were pushed first: keep the first of equal keys.
        neighbors.dedup_by(|a, b| a.0 == b.0);

        let mut routes = Vec::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            for net in [p.ipv4.map(config::IpNet::V4), p.ipv6.map(config::IpNet::V6)]
                .into_iter()
                .flatten()
            {
                let (net_bits, mask) = prefix_mask(net.addr(), net.prefix_len());
                routes.push((
                    net.prefix_len(),
                    RouteView {
                        net: net_bits,
                        mask,
                        via: None,
                        port: i as u16,
                    },
                ));
            }
        }
        for r in &cfg.routes {
            let (net, mask) = prefix_mask(r.prefix.addr(), r.prefix.prefix_len());
            let via = r.via.map(IpAddrBytes::from);
            routes.push((
                r.prefix.prefix_len(),
                RouteView {
                    net,
                    mask,
                    via,
                    port: r.port as u16,
                },
            ));
        }
        // Longest prefix first (IPv4 lengths are offset by 96 inside the mask already, so
        // compare the masks' population counts).
        routes.sort_by_key(|(_, r)| std::cmp::Reverse(r.mask.count_ones()));
        let routes: Vec<RouteView> = routes.into_iter().map(|(_, r)| r).collect();

        let mut snap = Snapshot {
            generation,
            seed: cfg.dataplane.flow_hash_seed,
            ports,
            appliances: Vec::new(),
            groups: Vec::new(),
            appliance_by_addr: Vec::new(),
            port_group: vec![None; cfg.ports.len()],
            routes,
            neighbors,
        };

        for (gi, g) in cfg.target_groups.iter().enumerate() {
            for &p in &g.user_ports {
                snap.port_group[p] = Some(gi as u16);
            }
            let mut backends = Vec::new();
            let mut slots = Vec::new();
            for t in &g.targets {
                let slot = snap.appliances.len();
                let state = live
                    .appliance_state
                    .get(slot)
                    .copied()
                    .unwrap_or(ApplianceState::Healthy);
                let port = &snap.ports[t.port];
                let template = snap
                    .lookup_neighbor(&IpAddrBytes::from(t.address))
                    .and_then(|mac| {
                        let src_ip = match t.address {
                            IpAddr::V4(_) => port.ipv4,
                            IpAddr::V6(_) => port.ipv6,
                        }?;
                        EncapTemplate::new(&EncapParams {
                            src_mac: port.mac,
                            dst_mac: mac,
                            src_ip: src_ip.to_ip_addr(),
                            dst_ip: t.address,
                            vni: g.geneve_vni,
                            ttl: g.outer_ttl,
                            endpoint_id: g.endpoint_id,
                            attachment_id: g.attachment_id,
                            mtu: port.mtu,
                        })
                    });
                if state == ApplianceState::Healthy && t.weight > 0 {
                    backends.push(MaglevBackend::from_addr(t.address, u32::from(t.weight)));
                    slots.push(slot as u16);
                }
                snap.appliance_by_addr
                    .push((IpAddrBytes::from(t.address), slot as u16));
                snap.appliances.push(ApplianceView {
                    addr: t.address,
                    group: gi as u16,
                    port: t.port as u16,
                    weight: t.weight,
                    state,
                    template,
                });
            }
            let maglev =
                MaglevTable::new(g.maglev_table_size, cfg.dataplane.flow_hash_seed, &backends)
                    .map_err(|source| SnapshotError::Maglev { group: gi, source })?;
            snap.groups.push(GroupView {
                name: g.name.clone(),
                maglev,
                backends: slots,
                stickiness: g.stickiness,
                rebalance: g.on_unhealthy == OnUnhealthy::Rebalance,
                fail_open: g.on_all_unhealthy == OnAllUnhealthy::FailOpen,
            });
        }
        snap.appliance_by_addr.sort_by_key(|a| a.0);
        Ok(snap)
    }

    /// The target group fed by user port `port`.
    #[inline]
    pub fn group_for_port(&self, port: u16) -> Option<u16> {
        self.port_group.get(usize::from(port)).copied().flatten()
    }

    /// The appliance slot with this address.
    #[inline]
    pub fn appliance_by_addr(&self, addr: &IpAddrBytes) -> Option<u16> {
        let i = self
            .appliance_by_addr
            .binary_search_by(|e| e.0.cmp(addr))
            .ok()?;
        Some(self.appliance_by_addr[i].1)
    }

    /// The MAC for a neighbour address.
    #[inline]
    pub fn lookup_neighbor(&self, addr: &IpAddrBytes) -> Option<[u8; 6]> {
        let i = self.neighbors.binary_search_by(|e| e.0.cmp(addr)).ok()?;
        Some(self.neighbors[i].1)
    }

    /// Longest-prefix route to `dst`, resolved to an egress port and MAC.
    #[inline]
    pub fn next_hop(&self, dst: &IpAddrBytes) -> Result<NextHop, NoNextHop> {
        let bits = u128::from_be_bytes(dst.0);
        let r = self
            .routes
            .iter()
            .find(|r| bits & r.mask == r.net)
            .ok_or(NoNextHop::NoRoute)?;
        let hop = r.via.as_ref().unwrap_or(dst);
        let mac = self.lookup_neighbor(hop).ok_or(NoNextHop::Unresolved)?;
        Ok(NextHop { port: r.port, mac })
    }
}
