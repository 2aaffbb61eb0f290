//! The read-only state workers consult per packet, built by the control plane.
//!
//! A [`Snapshot`] is immutable: the control plane builds a new one whenever something
//! changes (health, registrations, weights, learned neighbours, a reloaded config) and
//! publishes it atomically; workers pick the new pointer up at their next burst. Appliances
//! keep their slot (their index in [`Snapshot::appliances`]) across snapshots, so flow-table
//! entries that name a slot stay valid.

use std::net::IpAddr;

use crate::config::{self, Config, OnAllUnhealthy, OnUnhealthy, PortRole};
use crate::control::registry::{Registry, SlotState};
use crate::encap::{EncapParams, EncapTemplate};
use crate::flow::Stickiness;
use crate::flow_table::{GroupTimeouts, Timeouts};
use crate::health::HealthState;
use crate::maglev::{MaglevBackend, MaglevError, MaglevTable};
use crate::parse::{IpAddrBytes, ParsedPacket};
use crate::steering;

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
    /// More appliance slots than a snapshot can index.
    #[error("more than {max} appliance slots")]
    Slots {
        /// The limit.
        max: usize,
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
    /// Registered, its health checks not passed yet (`initial`): no new flows (it is not in
    /// its group's Maglev table); the flows it has (it came back from draining) stay.
    Initial,
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
    /// Deregistered and drained: its flows move (`rebalance`) or end (`no_rebalance`).
    Gone,
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
    /// On a port facing appliances, the cluster address of each family (`[bgp]
    /// cluster_addresses`): the outer source of encapsulations out of it, and a destination
    /// of Geneve returns like the port's own address.
    pub cluster_ipv4: Option<IpAddrBytes>,
    /// The IPv6 cluster address.
    pub cluster_ipv6: Option<IpAddrBytes>,
    /// Whether the port has a cluster address (one byte to test on every packet, instead of
    /// two address compares, where it has none).
    pub has_cluster: bool,
}

impl PortView {
    /// Whether `addr` is one of our own addresses on this port (the cluster addresses
    /// included).
    #[inline]
    pub fn is_own(&self, addr: &IpAddrBytes) -> bool {
        self.ipv4.as_ref() == Some(addr)
            || self.ipv6.as_ref() == Some(addr)
            || (self.has_cluster
                && (self.cluster_ipv4.as_ref() == Some(addr)
                    || self.cluster_ipv6.as_ref() == Some(addr)))
    }

    /// The outer source address toward an appliance of `v4`'s family: the cluster address
    /// where there is one, else the port's own.
    #[inline]
    pub fn outer_source(&self, v4: bool) -> Option<IpAddrBytes> {
        if v4 {
            self.cluster_ipv4.or(self.ipv4)
        } else {
            self.cluster_ipv6.or(self.ipv6)
        }
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
    /// Its slot's generation ([`crate::control::registry::Slot::generation`]): a flow entry of
    /// another generation belongs to a previous target of the slot.
    pub generation: u8,
    /// Its MAC address (configured or learned); `None` while unresolved. Its returns must
    /// come from this MAC on [`ApplianceView::port`].
    pub mac: Option<[u8; 6]>,
    /// [`mac_key`] of `mac`, 0 while unresolved: what the data path compares a return's source
    /// MAC with (one 64-bit compare).
    pub mac_key: u64,
    /// Its group's `require_flow_cookie` (kept here so a return needs no group lookup).
    pub require_cookie: bool,
    /// Its group inspects for endpoints: a return names its zone (VNI, endpoint id).
    pub zoned: bool,
}

/// A MAC address as a non-zero 64-bit key (the six bytes, then a marker byte), so that
/// comparing two MACs is one compare and 0 can mean "none".
#[inline]
pub fn mac_key(mac: [u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&mac);
    b[7] = 1;
    u64::from_le_bytes(b)
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
    /// `tcp_rst_on_drop`: answer TCP packets of flows the gateway ends with a RST.
    pub tcp_rst: bool,
    /// `tcp_unknown_non_syn`: TCP packets of unknown flows that do not open a connection.
    pub non_syn: config::UnknownNonSyn,
    /// `non_syn` is not `Admit` (the one byte the new-flow path tests).
    pub refuse_non_syn: bool,
    /// `tcp_reuse_after_idle_s` in ticks (`u32::MAX`: off).
    pub tcp_reuse_idle: u32,
    /// The group's data-path probes, whose returns go to the host's health checker
    /// (`None`: the group sends none).
    pub probes: Option<crate::data_path_probe::Matcher>,
    /// Which endpoint a return of this group's appliances belongs to.
    pub return_zones: crate::policy::ReturnZones,
    /// Below its health minimum, the group's new flows go to this group's appliances (its
    /// `maglev` and `backends` are that group's); `None`: its own.
    pub failover: Option<u16>,
    /// Below its health minimum with `on_below_minimum = "fail_open"`: its `maglev` and
    /// `backends` hold all its registered targets, healthy or not.
    pub failed_open: bool,
}

impl GroupView {
    /// The appliance slot Maglev picks for a flow's load-balancing hash (the high half of its
    /// flow hash), or `None` when no appliance takes new flows.
    #[inline]
    pub fn pick(&self, lb_hash: u32) -> Option<u16> {
        self.maglev
            .lookup(lb_hash)
            .map(|b| self.backends[usize::from(b)])
    }
}

/// A mirror session as the data path carries it out (see [`crate::mirror`]).
#[derive(Clone, Debug)]
pub struct MirrorView {
    /// Configured name.
    pub name: String,
    /// What it copies.
    pub selector: crate::mirror::Selector,
    /// One copy per this many selected packets (per worker).
    pub sample_one_in: u32,
    /// `snap_length`.
    pub snap: Option<u16>,
    /// Where it copies.
    pub copy_point: config::CopyPoint,
    /// The sensor pool (a target group index): its Maglev table picks the sensor.
    pub group: u16,
    /// Its counters' and sampling's slot in every worker ([`crate::mirror::SessionSlots`]:
    /// kept by name across changes).
    pub counter: u8,
    /// The copies' outer headers, by appliance slot (`None`: not one of this session's
    /// sensors, or not reachable yet).
    pub templates: Vec<Option<crate::mirror::MirrorTemplate>>,
}

impl MirrorView {
    fn new(snap: &Snapshot, cfg: &Config, m: &config::MirrorSession, counter: u8) -> Self {
        let g = &cfg.target_groups[m.target_group];
        let templates = snap
            .appliances
            .iter()
            .map(|a| {
                if usize::from(a.group) != m.target_group || a.state == ApplianceState::Gone {
                    return None;
                }
                let IpAddr::V4(dst_ip) = a.addr else {
                    return None;
                };
                let port = snap.ports.get(usize::from(a.port))?;
                let src = port.outer_source(true)?.to_ip_addr();
                let IpAddr::V4(src_ip) = src else {
                    return None;
                };
                crate::mirror::MirrorTemplate::new(&crate::mirror::MirrorParams {
                    src_mac: port.mac,
                    dst_mac: a.mac?,
                    src_ip,
                    dst_ip,
                    ttl: g.outer_ttl,
                    format: m.format,
                    vni: m.vni,
                    // The stable slot, not the position in the list (which shifts when an
                    // earlier session is removed): a sensor keys copies on it.
                    session: u16::from(counter),
                    copy_point: m.copy_point,
                    mtu: port.mtu,
                })
            })
            .collect();
        MirrorView {
            name: m.name.clone(),
            selector: crate::mirror::Selector::new(m, &snap.endpoints, &snap.rules),
            sample_one_in: m.sample_one_in,
            snap: m.snap_length,
            copy_point: m.copy_point,
            group: m.target_group as u16,
            counter,
            templates,
        }
    }
}

/// A route for forwarding decapsulated (or fail-open) traffic.
#[derive(Clone, Copy, Debug)]
struct RouteView {
    net: u128,
    mask: u128,
    via: Option<IpAddrBytes>,
    /// The neighbour table's MAC for `via`, looked up once when the snapshot is built (the
    /// table does not change within a snapshot): a gateway route costs no lookup per packet.
    via_mac: Option<[u8; 6]>,
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
    /// Flow idle timeouts of each target group (workers apply them on a new snapshot).
    pub timeouts: GroupTimeouts,
    /// Scale-out (`[bgp] accept_unseen_returns`): a return of a flow this node holds no
    /// entry for is accepted from the appliance that is the flow's Maglev choice (the flow may
    /// have been encapsulated by another node), not only when the table is full.
    pub accept_unseen_returns: bool,
    /// ICMP "too big" errors each worker may send per second (`[dataplane]
    /// icmp_errors_per_s`).
    pub icmp_errors_per_s: u32,
    /// The mirror sessions, in configuration order (each counts in its own slot,
    /// [`MirrorView::counter`]).
    pub mirrors: Vec<MirrorView>,
    /// Some session copies before inspection (the workers test this once per burst).
    pub mirror_before: bool,
    /// Some session copies after inspection.
    pub mirror_after: bool,
    /// The endpoints (tenants), in configuration order.
    pub endpoints: Vec<crate::policy::EndpointView>,
    /// The steering rules of every endpoint (see [`crate::policy`] for the indices).
    pub rules: Vec<crate::policy::RuleView>,
    /// Per port, the zones of the endpoints that arrive there, in configuration order.
    port_zones: Vec<Vec<u16>>,
    /// By zone, the endpoint's index + 1 (0: no endpoint has the zone).
    zone_index: Vec<u16>,
    /// By rule id ([`crate::policy::RuleIds`]), the rule's index in `rules` (`u16::MAX`:
    /// none).
    pub rule_at: Vec<u16>,
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
    /// Neighbours learned by ARP/ND, added to the static ones.
    pub learned_neighbors: Vec<(IpAddr, [u8; 6])>,
    /// The zone of each endpoint name (kept across reloads by the control loop; endpoints
    /// it lacks get the next free zones in the snapshot).
    pub zones: crate::policy::ZoneMap,
    /// The counter slot of each mirror session name (kept across changes likewise).
    pub mirror_slots: crate::mirror::SessionSlots,
    /// The id of each steering rule (kept across changes likewise; rules it lacks get ids
    /// in the snapshot).
    pub rule_ids: crate::policy::RuleIds,
}

impl Snapshot {
    /// Builds a snapshot of a freshly started gateway whose targets have all passed their
    /// health checks: appliance slots are the targets in config order, group by group, all
    /// healthy (for the data path's tests and benchmarks; `gwlb run` starts targets in their
    /// groups' `initial_state` through the control loop's registry).
    pub fn build(
        cfg: &Config,
        port_macs: &[[u8; 6]],
        live: &LiveState,
        generation: u64,
    ) -> Result<Snapshot, SnapshotError> {
        let mut registry =
            Registry::new(cfg, usize::from(u16::MAX)).map_err(|_| SnapshotError::Slots {
                max: usize::from(u16::MAX),
            })?;
        registry.assume_healthy();
        Self::build_with(cfg, port_macs, &registry, live, generation)
    }

    /// Builds a snapshot from a validated config, the ports' MAC addresses, the appliance
    /// slots (registration and health) and the learned neighbours. Groups are the config's,
    /// in order; a slot whose group is not in `cfg` is [`ApplianceState::Gone`].
    pub fn build_with(
        cfg: &Config,
        port_macs: &[[u8; 6]],
        registry: &Registry,
        live: &LiveState,
        generation: u64,
    ) -> Result<Snapshot, SnapshotError> {
        if port_macs.len() != cfg.ports.len() {
            return Err(SnapshotError::PortMacs {
                expected: cfg.ports.len(),
                got: port_macs.len(),
            });
        }
        // The cluster addresses belong to the ports that face appliances.
        let cluster = |p: &config::Port, v4: bool| -> Option<IpAddrBytes> {
            let a = cfg.bgp.as_ref()?.cluster_address(v4)?;
            p.role.faces_appliances().then(|| IpAddrBytes::from(a))
        };
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
                cluster_ipv4: cluster(p, true),
                cluster_ipv6: cluster(p, false),
                has_cluster: cluster(p, true).is_some() || cluster(p, false).is_some(),
            })
            .collect();

        let mut neighbors: Vec<(IpAddrBytes, [u8; 6])> = cfg
            .neighbors
            .iter()
            .map(|n| (IpAddrBytes::from(n.address), n.mac.0))
            .collect();
        for s in registry.slots() {
            if let (Some(mac), false) = (s.target.mac, s.state == SlotState::Gone) {
                neighbors.push((IpAddrBytes::from(s.target.next_hop()), mac.0));
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
                        via_mac: None,
                        port: i as u16,
                    },
                ));
            }
        }
        for r in &cfg.routes {
            let (net, mask) = prefix_mask(r.prefix.addr(), r.prefix.prefix_len());
            let via = r.via.map(IpAddrBytes::from);
            let via_mac = via.and_then(|v| {
                let i = neighbors.binary_search_by(|e| e.0.cmp(&v)).ok()?;
                Some(neighbors[i].1)
            });
            routes.push((
                r.prefix.prefix_len(),
                RouteView {
                    net,
                    mask,
                    via,
                    via_mac,
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
            timeouts: GroupTimeouts::default(),
            accept_unseen_returns: cfg.bgp.as_ref().is_some_and(|b| b.accept_unseen_returns),
            icmp_errors_per_s: cfg.dataplane.icmp_errors_per_s,
            mirrors: Vec::new(),
            mirror_before: false,
            mirror_after: false,
            endpoints: Vec::new(),
            rules: Vec::new(),
            port_zones: Vec::new(),
            zone_index: Vec::new(),
            rule_at: Vec::new(),
        };
        let zones = live.zones.assigned(cfg);
        let return_zones: Vec<crate::policy::ReturnZones> = (0..cfg.target_groups.len())
            .map(|gi| crate::policy::ReturnZones::new(cfg, gi, &zones))
            .collect();
        let policy = crate::policy::build(cfg, &zones, &live.rule_ids.assigned(cfg));
        snap.endpoints = policy.endpoints;
        snap.rules = policy.rules;
        snap.port_zones = policy.port_zones;
        snap.zone_index = policy.zone_index;
        snap.rule_at = policy.rule_at;

        for (gi, g) in cfg.target_groups.iter().enumerate() {
            for &p in &g.user_ports {
                snap.port_group[p] = Some(gi as u16);
            }
        }
        let mut group_backends: Vec<(Vec<MaglevBackend>, Vec<u16>)> =
            vec![(Vec::new(), Vec::new()); cfg.target_groups.len()];
        // Registered targets with weight > 0 per group, whatever their health (the base of
        // `min_healthy_percent`).
        let mut registered = vec![0usize; cfg.target_groups.len()];
        // Per group, every registered target with weight > 0 whatever its health: the table
        // of a group that fails open (`on_below_minimum = "fail_open"`).
        let mut group_all: Vec<(Vec<MaglevBackend>, Vec<u16>)> =
            vec![(Vec::new(), Vec::new()); cfg.target_groups.len()];
        for (slot, s) in registry.slots().iter().enumerate() {
            let t = &s.target;
            let gi = cfg.target_groups.iter().position(|g| g.name == s.group);
            let state = match (gi, s.state) {
                (None, _) | (_, SlotState::Gone) => ApplianceState::Gone,
                (_, SlotState::Draining { until }) => ApplianceState::Draining { until },
                (_, SlotState::Registered) => match s.health {
                    HealthState::Initial => ApplianceState::Initial,
                    HealthState::Healthy => ApplianceState::Healthy,
                    HealthState::Unhealthy => ApplianceState::Unhealthy,
                },
            };
            let port = snap.ports.get(t.port);
            // A routed appliance's frames go to (and its returns come from) its router.
            let mac = snap.lookup_neighbor(&IpAddrBytes::from(t.next_hop()));
            let template = match (gi, port) {
                (Some(gi), Some(port)) if state != ApplianceState::Gone => {
                    let g = &cfg.target_groups[gi];
                    mac.and_then(|mac| {
                        let src_ip = port.outer_source(t.address.is_ipv4())?;
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
                    })
                }
                _ => None,
            };
            if let Some(gi) = gi {
                if s.state == SlotState::Registered && t.weight > 0 {
                    registered[gi] += 1;
                    group_all[gi]
                        .0
                        .push(MaglevBackend::from_addr(t.address, u32::from(t.weight)));
                    group_all[gi].1.push(slot as u16);
                }
                if state == ApplianceState::Healthy && t.weight > 0 {
                    group_backends[gi]
                        .0
                        .push(MaglevBackend::from_addr(t.address, u32::from(t.weight)));
                    group_backends[gi].1.push(slot as u16);
                }
            }
            if state != ApplianceState::Gone {
                snap.appliance_by_addr
                    .push((IpAddrBytes::from(t.address), slot as u16));
            }
            snap.appliances.push(ApplianceView {
                addr: t.address,
                group: gi.map_or(u16::MAX, |g| g as u16),
                port: t.port as u16,
                weight: t.weight,
                state,
                template,
                mac,
                mac_key: mac.map_or(0, mac_key),
                require_cookie: gi.is_some_and(|g| cfg.target_groups[g].require_flow_cookie),
                zoned: gi.is_some_and(|g| return_zones[g].is_zoned()),
                generation: s.generation,
            });
        }
        let health: Vec<steering::GroupHealth> = cfg
            .target_groups
            .iter()
            .zip(&group_backends)
            .zip(&registered)
            .map(|((g, (_, slots)), &registered)| steering::GroupHealth {
                healthy: slots.len(),
                registered,
                min_targets: g.min_healthy_targets,
                min_percent: g.min_healthy_percent,
                failover: g.failover_group,
                fail_open: g.on_below_minimum == config::OnBelowMinimum::FailOpen,
            })
            .collect();
        let serving = steering::who_serves(&health);
        let mut tables = Vec::with_capacity(cfg.target_groups.len());
        for (gi, (g, (healthy, all))) in cfg
            .target_groups
            .iter()
            .zip(group_backends.into_iter().zip(group_all))
            .enumerate()
        {
            // A group that fails open picks among all its registered targets.
            let (backends, slots) = if serving[gi] == steering::Serving::FailOpen {
                all
            } else {
                healthy
            };
            let maglev =
                MaglevTable::new(g.maglev_table_size, cfg.dataplane.flow_hash_seed, &backends)
                    .map_err(|source| SnapshotError::Maglev { group: gi, source })?;
            tables.push((maglev, slots));
        }
        // A group that fails over takes its failover group's table as it is (same M, same
        // backends), so that a flow's Maglev choice is the same whichever of the two groups
        // is asked (stateless returns check it against the returning appliance's group).
        let failover_tables: Vec<_> = serving
            .iter()
            .map(|s| match *s {
                steering::Serving::Own | steering::Serving::FailOpen => None,
                steering::Serving::Failover(b) => Some(tables[b].clone()),
            })
            .collect();
        for (gi, ((g, own), failed_over)) in cfg
            .target_groups
            .iter()
            .zip(tables)
            .zip(failover_tables)
            .enumerate()
        {
            let (maglev, slots) = failed_over.unwrap_or(own);
            snap.groups.push(GroupView {
                name: g.name.clone(),
                maglev,
                backends: slots,
                failover: match serving[gi] {
                    steering::Serving::Own | steering::Serving::FailOpen => None,
                    steering::Serving::Failover(b) => Some(b as u16),
                },
                failed_open: serving[gi] == steering::Serving::FailOpen,
                stickiness: g.stickiness,
                // Failed open, every registered target serves: an unhealthy one's flows have
                // nowhere better to go, they stay (as under no_rebalance).
                rebalance: g.on_unhealthy == OnUnhealthy::Rebalance
                    && serving[gi] != steering::Serving::FailOpen,
                fail_open: g.on_all_unhealthy == OnAllUnhealthy::FailOpen,
                tcp_rst: g.tcp_rst_on_drop,
                non_syn: g.tcp_unknown_non_syn,
                refuse_non_syn: g.tcp_unknown_non_syn != config::UnknownNonSyn::Admit,
                tcp_reuse_idle: g
                    .tcp_reuse_after_idle
                    .map_or(u32::MAX, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
                probes: g
                    .health_check
                    .data_path
                    .filter(|_| g.health_check.enabled)
                    .map(|d| crate::data_path_probe::Matcher::new(&d)),
                return_zones: return_zones[gi].clone(),
            });
        }
        // One slot per address: a registered one wins over one still draining elsewhere.
        snap.appliance_by_addr.sort_by_key(|&(a, slot)| {
            let draining = matches!(
                snap.appliances[usize::from(slot)].state,
                ApplianceState::Draining { .. }
            );
            (a, draining)
        });
        snap.appliance_by_addr.dedup_by(|a, b| a.0 == b.0);
        for (i, g) in cfg.target_groups.iter().enumerate() {
            let t = Timeouts::new(
                u32::try_from(g.tcp_idle_timeout.as_secs()).unwrap_or(u32::MAX),
                u32::try_from(g.other_idle_timeout.as_secs()).unwrap_or(u32::MAX),
            )
            .unwrap_or_default();
            snap.timeouts.set(i, t);
        }
        let slots = live.mirror_slots.assigned(&cfg.mirror_sessions);
        snap.mirrors = cfg
            .mirror_sessions
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let counter = slots.slot(&m.name).unwrap_or(i as u8);
                MirrorView::new(&snap, cfg, m, counter)
            })
            .collect();
        let at = |point| snap.mirrors.iter().any(|m| m.copy_point == point);
        snap.mirror_before = at(config::CopyPoint::BeforeInspection);
        snap.mirror_after = at(config::CopyPoint::AfterInspection);
        Ok(snap)
    }

    /// Whether endpoints arrive on port `port` (then it feeds no group directly).
    #[inline]
    pub fn has_endpoints(&self, port: u16) -> bool {
        self.port_zones
            .get(usize::from(port))
            .is_some_and(|z| !z.is_empty())
    }

    /// The zone of the endpoint that claims a frame parsed as `p` on `port`, if any.
    #[inline]
    pub fn zone_of(&self, p: &ParsedPacket, port: u16) -> Option<u16> {
        let zones = self.port_zones.get(usize::from(port))?;
        zones
            .iter()
            .copied()
            .find(|&z| self.endpoints[usize::from(z - 1)].claims(p, port))
    }

    /// The endpoint of zone `zone` (`None` for zone 0).
    #[inline]
    pub fn endpoint(&self, zone: u16) -> Option<&crate::policy::EndpointView> {
        let i = *self.zone_index.get(usize::from(zone))?;
        self.endpoints.get(usize::from(i).wrapping_sub(1))
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
        let mac = match r.via {
            Some(_) => r.via_mac,
            None => self.lookup_neighbor(dst),
        };
        let mac = mac.ok_or(NoNextHop::Unresolved)?;
        Ok(NextHop { port: r.port, mac })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' one port, on 10.0.0.0/24.
    const PORT_P0: &str = r#"
[[ports]]
name = "p0"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
mac = "02:00:00:00:00:01"
"#;

    /// A port on 10.0.0.0/24 with a default route via 10.0.0.254 (a static neighbour), a
    /// route to 192.0.2.0/24 via an unresolved 10.0.0.253, and a learned 10.0.0.7.
    fn snapshot(learned_gateway: bool) -> Snapshot {
        let cfg = Config::from_toml_str(&format!(
            r#"{PORT_P0}
[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.0.254"
port = "p0"

[[routes]]
prefix = "192.0.2.0/24"
via = "10.0.0.253"
port = "p0"

[[neighbors]]
address = "10.0.0.254"
mac = "02:00:00:00:00:fe"
port = "p0"

[[target_groups]]
name = "tg"

[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:11"
"#
        ))
        .expect("valid config");
        let mut live = LiveState::default();
        live.learned_neighbors
            .push((IpAddr::from([10, 0, 0, 7]), [2, 0, 0, 0, 0, 7]));
        if learned_gateway {
            live.learned_neighbors
                .push((IpAddr::from([10, 0, 0, 253]), [2, 0, 0, 0, 0, 0xfd]));
        }
        Snapshot::build(&cfg, &[[2, 0, 0, 0, 0, 1]], &live, 1).expect("snapshot")
    }

    fn v4(a: [u8; 4]) -> IpAddrBytes {
        IpAddrBytes::from_v4(a)
    }

    /// The next hop as the neighbour table says it on every call: what the route's cached
    /// gateway MAC must agree with.
    fn next_hop_uncached(s: &Snapshot, dst: &IpAddrBytes) -> Result<NextHop, NoNextHop> {
        let bits = u128::from_be_bytes(dst.0);
        let r = s
            .routes
            .iter()
            .find(|r| bits & r.mask == r.net)
            .ok_or(NoNextHop::NoRoute)?;
        let hop = r.via.as_ref().unwrap_or(dst);
        let mac = s.lookup_neighbor(hop).ok_or(NoNextHop::Unresolved)?;
        Ok(NextHop { port: r.port, mac })
    }

    #[test]
    fn each_group_gets_its_own_idle_timeouts() {
        let cfg = Config::from_toml_str(&format!(
            r#"{PORT_P0}
[[target_groups]]
name = "web"
user_ports = ["p0"]
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:11"

[[target_groups]]
name = "long"
user_ports = []
tcp_idle_timeout_s = 3600
other_idle_timeout_s = 30
[[target_groups.targets]]
address = "10.0.0.12"
mac = "02:00:00:00:00:12"
"#
        ))
        .expect("valid config");
        let s = Snapshot::build(&cfg, &[[2, 0, 0, 0, 0, 1]], &LiveState::default(), 1)
            .expect("snapshot");
        assert_eq!(*s.timeouts.for_group(0), Timeouts::default());
        assert_eq!(*s.timeouts.for_group(1), Timeouts::new(3600, 30).unwrap());
    }

    /// `on_below_minimum = "fail_open"`: below its minimum a group's new flows go to all its
    /// registered targets, healthy or not (initial and unhealthy ones included, never a
    /// draining one), and its flows stay with their appliances (no rebalance while every
    /// target serves); at its minimum, to its healthy ones again.
    #[test]
    fn a_fail_open_group_below_its_minimum_sends_to_all_its_targets() {
        let text = |mode: &str| {
            format!(
                r#"{PORT_P0}
[[target_groups]]
name = "fw"
user_ports = ["p0"]
on_unhealthy = "rebalance"
min_healthy_targets = 2
{mode}
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:11"
[[target_groups.targets]]
address = "10.0.0.12"
mac = "02:00:00:00:00:12"
[[target_groups.targets]]
address = "10.0.0.13"
mac = "02:00:00:00:00:13"
[[target_groups.targets]]
address = "10.0.0.14"
mac = "02:00:00:00:00:14"
"#
            )
        };
        let cfg = Config::from_toml_str(&text("on_below_minimum = \"fail_open\"")).unwrap();
        let picks = |s: &Snapshot| -> std::collections::BTreeSet<u16> {
            (0..2000u32)
                .filter_map(|h| s.groups[0].pick(h.wrapping_mul(0x9e37_79b9)))
                .collect()
        };
        let mut reg = Registry::new(&cfg, 64).unwrap();
        reg.assume_healthy();
        let build = |cfg: &Config, reg: &Registry| {
            Snapshot::build_with(cfg, &[[2, 0, 0, 0, 0, 1]], reg, &LiveState::default(), 1)
                .expect("snapshot")
        };
        let all = build(&cfg, &reg);
        assert!(!all.groups[0].failed_open && all.groups[0].rebalance);
        // 2 healthy: at its minimum, its healthy ones.
        reg.set_health(0, false, "down".into());
        reg.set_health(1, false, "down".into());
        let two = build(&cfg, &reg);
        assert!(!two.groups[0].failed_open);
        assert_eq!(picks(&two), [2, 3].into());
        // 1 healthy: below it, all four; no rebalance meanwhile.
        reg.set_health(2, false, "down".into());
        let open = build(&cfg, &reg);
        assert!(open.groups[0].failed_open, "failed open");
        assert_eq!(open.groups[0].failover, None);
        assert!(!open.groups[0].rebalance);
        assert_eq!(picks(&open), [0, 1, 2, 3].into());
        // None healthy: still all four (on_all_unhealthy is not asked while any is registered).
        reg.set_health(3, false, "down".into());
        assert_eq!(picks(&build(&cfg, &reg)), [0, 1, 2, 3].into());
        // A draining target is not registered: it takes no new flows, failed open or not.
        reg.slot_mut(3).unwrap().state = SlotState::Draining { until: 2000 };
        assert_eq!(picks(&build(&cfg, &reg)), [0, 1, 2].into());
        // Back at its minimum (2 of the 3 registered healthy): its healthy ones.
        reg.set_health(2, true, "up".into());
        assert_eq!(
            picks(&build(&cfg, &reg)),
            [0, 1, 2].into(),
            "1 healthy: still open"
        );
        reg.set_health(0, true, "up".into());
        let back = build(&cfg, &reg);
        assert!(!back.groups[0].failed_open);
        assert!(back.groups[0].rebalance);
        assert_eq!(picks(&back), [0, 2].into());
    }

    /// A group below its health minimum takes its failover group's Maglev table (and so its
    /// appliances) while that group meets its own minimum; back at its minimum, its own.
    #[test]
    fn a_group_below_its_minimum_fails_over_to_its_failover_group() {
        let cfg = Config::from_toml_str(&format!(
            r#"{PORT_P0}
[[target_groups]]
name = "primary"
user_ports = ["p0"]
failover_group = "backup"
min_healthy_percent = 50
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:11"
[[target_groups.targets]]
address = "10.0.0.12"
mac = "02:00:00:00:00:12"
[[target_groups.targets]]
address = "10.0.0.13"
mac = "02:00:00:00:00:13"

[[target_groups]]
name = "backup"
user_ports = []
maglev_table_size = 251
[[target_groups.targets]]
address = "10.0.0.21"
mac = "02:00:00:00:00:21"
"#
        ))
        .expect("valid config");
        let mut reg = Registry::new(&cfg, 64).unwrap();
        reg.assume_healthy();
        let build = |reg: &Registry| {
            Snapshot::build_with(&cfg, &[[2, 0, 0, 0, 0, 1]], reg, &LiveState::default(), 1)
                .expect("snapshot")
        };
        let picks = |s: &Snapshot, g: usize| -> std::collections::BTreeSet<u16> {
            (0..2000u32)
                .filter_map(|h| s.groups[g].pick(h.wrapping_mul(0x9e37_79b9)))
                .collect()
        };
        let all = build(&reg);
        assert_eq!(all.groups[0].failover, None);
        assert_eq!(picks(&all, 0), [0, 1, 2].into());
        // 2 of 3 healthy (67 % >= 50 %): still its own.
        reg.set_health(0, false, "down".into());
        let two = build(&reg);
        assert_eq!(
            (two.groups[0].failover, picks(&two, 0)),
            (None, [1, 2].into())
        );
        // 1 of 3 (33 %): the backup's appliance, by the backup's own table.
        reg.set_health(1, false, "down".into());
        let one = build(&reg);
        assert_eq!(one.groups[0].failover, Some(1));
        assert_eq!(picks(&one, 0), [3].into());
        assert_eq!(one.groups[0].maglev, one.groups[1].maglev, "the same table");
        // The backup down too: the primary's last healthy target serves.
        reg.set_health(3, false, "down".into());
        let none = build(&reg);
        assert_eq!(
            (none.groups[0].failover, picks(&none, 0)),
            (None, [2].into())
        );
        // Back up: failover again, then its own once at its minimum.
        reg.set_health(3, true, "up".into());
        assert_eq!(build(&reg).groups[0].failover, Some(1));
        reg.set_health(0, true, "up".into());
        let back = build(&reg);
        assert_eq!(
            (back.groups[0].failover, picks(&back, 0)),
            (None, [0, 2].into())
        );
    }

    #[test]
    fn next_hop_uses_the_gateway_mac_of_its_snapshot() {
        for learned in [false, true] {
            let s = snapshot(learned);
            for dst in [
                v4([8, 8, 8, 8]),
                v4([192, 0, 2, 9]),
                v4([10, 0, 0, 7]),
                v4([10, 0, 0, 11]),
                v4([10, 0, 0, 99]),
                IpAddrBytes::from("fd00::1".parse::<IpAddr>().unwrap()),
            ] {
                assert_eq!(s.next_hop(&dst), next_hop_uncached(&s, &dst), "{dst}");
            }
        }
        let s = snapshot(false);
        assert_eq!(
            s.next_hop(&v4([8, 8, 8, 8])).unwrap().mac,
            [2, 0, 0, 0, 0, 0xfe]
        );
        assert_eq!(s.next_hop(&v4([192, 0, 2, 9])), Err(NoNextHop::Unresolved));
        assert_eq!(
            snapshot(true).next_hop(&v4([192, 0, 2, 9])).unwrap().mac,
            [2, 0, 0, 0, 0, 0xfd]
        );
        assert_eq!(
            s.next_hop(&v4([10, 0, 0, 7])).unwrap().mac,
            [2, 0, 0, 0, 0, 7]
        );
        assert_eq!(s.next_hop(&v4([10, 0, 0, 99])), Err(NoNextHop::Unresolved));
    }
}
