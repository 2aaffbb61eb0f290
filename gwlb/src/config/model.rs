//! The validated configuration: [`Config`] and its parts, which hold only valid values in their
//! natural types, and the enumerations shared by the file format and the validated model.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigWarning, Device, IpNet, Ipv4Net, Ipv6Net, Listen, MacAddr, StatusCodes};
use crate::flow::Stickiness;

// ---------------------------------------------------------------------------------------------
// Enumerations (shared by the file format and the validated configuration)
// ---------------------------------------------------------------------------------------------

/// Hugepage use by the EAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hugepages {
    /// Use hugepages if the host has any mounted and free, else run with `--no-huge`.
    #[default]
    Auto,
    /// Require hugepages.
    On,
    /// `--no-huge -m memory_mb` (tests, pcap replay, containers).
    Off,
}

/// The DPDK mempool driver of the mbuf pools (`dataplane.mempool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MempoolDriver {
    /// DPDK's `stack` driver, a LIFO: once an lcore's cache runs dry it takes the mbufs
    /// freed last, still warm in cache (perf/README.md, "mempool driver").
    #[default]
    Stack,
    /// DPDK's default `ring_mp_mc`, a FIFO: it hands out the mbufs freed longest ago.
    Ring,
}

impl MempoolDriver {
    /// The DPDK name of the driver.
    pub const fn ops(self) -> &'static str {
        match self {
            MempoolDriver::Stack => "stack",
            MempoolDriver::Ring => "ring_mp_mc",
        }
    }
}

/// What a port faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortRole {
    /// Clients and servers: traffic to inspect arrives here; decapsulated traffic leaves here.
    User,
    /// Appliances: Geneve-encapsulated traffic leaves and returns here.
    Appliance,
    /// Both (one-arm mode, a single port).
    Both,
}

impl PortRole {
    /// Carries user traffic (`user` or `both`).
    pub fn faces_users(self) -> bool {
        matches!(self, PortRole::User | PortRole::Both)
    }

    /// Reaches appliances (`appliance` or `both`).
    pub fn faces_appliances(self) -> bool {
        matches!(self, PortRole::Appliance | PortRole::Both)
    }
}

/// What happens to existing flows of a target that turns unhealthy (or whose
/// deregistration delay has run out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnhealthy {
    /// They keep going to it (AWS default).
    #[default]
    NoRebalance,
    /// They are rehashed onto healthy targets.
    Rebalance,
}

/// What happens to a TCP packet that does not open a connection (no SYN, or SYN with ACK) of
/// a flow the gateway holds no entry for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownNonSyn {
    /// It starts a flow like a SYN would (the flow survives a gateway restart, a flow-table
    /// expiry and a move to another node behind ECMP).
    #[default]
    Admit,
    /// It is dropped (`tcp_non_syn_no_flow`), as AWS does.
    Drop,
    /// It is dropped and answered with a TCP RST, so the ends learn at once.
    Reset,
}

/// What happens to traffic when no target of a group is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAllUnhealthy {
    /// Drop it (AWS behaviour).
    #[default]
    FailClosed,
    /// Forward it uninspected (bypass).
    FailOpen,
}

/// What a group's new flows do while it is below its health minimum (`min_healthy_targets`,
/// `min_healthy_percent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBelowMinimum {
    /// To the `failover_group`'s healthy targets while that group meets its own minimum,
    /// else to this group's remaining healthy ones (the default with a `failover_group`).
    Failover,
    /// To all of this group's registered targets, healthy or not (AWS's and GCP's fail-open:
    /// a group too degraded to trust its checks keeps every target in use).
    FailOpen,
    /// To its remaining healthy targets: the minimum changes nothing (the default without a
    /// `failover_group`).
    ServeRemaining,
}

impl OnBelowMinimum {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            OnBelowMinimum::Failover => "failover",
            OnBelowMinimum::FailOpen => "fail_open",
            OnBelowMinimum::ServeRemaining => "serve_remaining",
        }
    }
}

/// Health-check probe kind as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckProtocol {
    /// TCP connect.
    #[default]
    Tcp,
    /// HTTP GET, judged by status code.
    Http,
    /// HTTP GET over TLS.
    Https,
    /// A data-path probe alone: a Geneve packet sent through the appliance and expected back
    /// (`crate::data_path_probe`).
    Geneve,
}

/// The state a newly registered target starts in when its group's health check is enabled
/// (`[target_groups.health_check] initial_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    /// `initial`: no new flows until `healthy_threshold` consecutive checks pass (AWS).
    #[default]
    Initial,
    /// `healthy`: new flows at once, until `unhealthy_threshold` checks fail (gwlb before
    /// issue 18).
    Healthy,
}

impl InitialState {
    /// The name as written in the file (`initial`, `healthy`).
    pub fn as_str(self) -> &'static str {
        match self {
            InitialState::Initial => "initial",
            InitialState::Healthy => "healthy",
        }
    }
}

/// The encapsulation of mirrored copies (`[[mirror_sessions]] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorFormat {
    /// VXLAN (RFC 7348) on UDP 4789 with the session's VNI, as AWS Traffic Mirroring sends.
    #[default]
    Vxlan,
    /// Geneve on UDP 6081 with an option marking the copy as mirrored and its copy point.
    Geneve,
}

impl MirrorFormat {
    /// The name as written in the file (`vxlan`, `geneve`).
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorFormat::Vxlan => "vxlan",
            MirrorFormat::Geneve => "geneve",
        }
    }
}

/// Where a mirror session copies packets (`[[mirror_sessions]] copy_point`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyPoint {
    /// What arrives from users, before the inspecting appliance sees it.
    #[default]
    BeforeInspection,
    /// What comes back from the inspecting appliance, as forwarded on.
    AfterInspection,
}

impl CopyPoint {
    /// The name as written in the file (`before_inspection`, `after_inspection`).
    pub fn as_str(self) -> &'static str {
        match self {
            CopyPoint::BeforeInspection => "before_inspection",
            CopyPoint::AfterInspection => "after_inspection",
        }
    }
}

/// Which way a mirrored packet travels relative to the session's `prefixes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorDirection {
    /// Either way: the source or the destination in `prefixes` (any address without them).
    #[default]
    Both,
    /// The destination in `prefixes`.
    ToPrefixes,
    /// The source in `prefixes`.
    FromPrefixes,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `human` on a terminal, `json` otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------------------------

/// A validated configuration. Build it with [`Config::from_toml_str`] or [`Config::load`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Cores, memory, burst and table sizes.
    pub dataplane: Dataplane,
    /// One (one-arm) or two (two-arm) ports.
    pub ports: Vec<Port>,
    /// Forwarding of decapsulated traffic; `Route::port` indexes `ports`.
    pub routes: Vec<Route>,
    /// Static ARP/ND entries; `Neighbor::port` indexes `ports`.
    pub neighbors: Vec<Neighbor>,
    /// Appliance pools, at least one.
    pub target_groups: Vec<TargetGroup>,
    /// Control API, metrics, logging.
    pub control: Control,
    /// BGP announcement of the service prefixes (`None`: no `[bgp]`, nothing announced).
    pub bgp: Option<Bgp>,
    /// Copies of selected traffic to sensor pools.
    pub mirror_sessions: Vec<MirrorSession>,
    /// Service-insertion endpoints (tenants): classification, identity, steering rules.
    pub endpoints: Vec<Endpoint>,
    pub(super) warnings: Vec<ConfigWarning>,
}

/// `[[endpoints]]`: a consumer of the service (AWS: a GWLB endpoint), one tenant. Frames are
/// classified into it by arrival port, VLAN tags and address prefix; its flows are kept apart
/// from every other endpoint's (overlapping addresses), carry its own endpoint and
/// attachment ids, follow its steering rules, and go back out through its own routes with
/// its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Unique name.
    pub name: String,
    /// Arrival ports (indices into [`Config::ports`], user-facing).
    pub ports: Vec<usize>,
    /// The 802.1Q VLAN ids its frames carry, outer first: none (untagged), one, or two
    /// (QinQ).
    pub vlan: Vec<u16>,
    /// A frame belongs to the endpoint only if its source or destination is in one of these
    /// (empty: any address).
    pub prefixes: Vec<IpNet>,
    /// What a flow no rule matches gets.
    pub default_action: RuleAction,
    /// AWS Geneve option type 1 of its encapsulations.
    pub endpoint_id: u64,
    /// AWS Geneve option type 2.
    pub attachment_id: u64,
    /// Geneve VNI of its encapsulations (`None`: the inspecting group's `geneve_vni`).
    pub geneve_vni: Option<u32>,
    /// Where its inspected and bypassed packets go (longest prefix wins); empty: the
    /// node's `[[routes]]`, untagged.
    pub routes: Vec<EndpointRoute>,
    /// Steering rules, first match wins.
    pub rules: Vec<Rule>,
}

/// `[[endpoints.routes]]`: a next hop of an endpoint, reached out of `port` with the
/// endpoint's VLAN tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointRoute {
    /// Destination prefix (host bits zero).
    pub prefix: IpNet,
    /// The next hop.
    pub via: IpAddr,
    /// Its MAC (static: tagged and overlapping next hops are not in the kernel's tables).
    pub mac: MacAddr,
    /// Index into [`Config::ports`]: one of the endpoint's ports.
    pub port: usize,
}

/// `[[endpoints.rules]]`: a steering rule, evaluated on a flow's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique within its endpoint.
    pub name: String,
    /// Source prefixes (empty: any).
    pub sources: Vec<IpNet>,
    /// Destination prefixes (empty: any).
    pub destinations: Vec<IpNet>,
    /// IP protocols (empty: any).
    pub protocols: Vec<u8>,
    /// TCP/UDP source port ranges (empty: any packet).
    pub source_ports: Vec<std::ops::RangeInclusive<u16>>,
    /// TCP/UDP destination port ranges (empty: any packet).
    pub destination_ports: Vec<std::ops::RangeInclusive<u16>>,
    /// Whether a flow opened the other way (sources and destinations swapped) also matches.
    pub direction: RuleDirection,
    /// What a matching flow gets.
    pub action: RuleAction,
}

/// Which way a rule matches a flow's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleDirection {
    /// As written, or with sources/destinations (and their ports) swapped.
    #[default]
    Both,
    /// Only a flow whose first packet goes from `sources` to `destinations`.
    Forward,
}

impl RuleDirection {
    /// The file's name of it.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleDirection::Both => "both",
            RuleDirection::Forward => "forward",
        }
    }
}

/// Most target groups one chain names.
pub const MAX_CHAIN: usize = 4;

/// The target groups a `chain` rule sends a flow through, in order (2 to [`MAX_CHAIN`],
/// none twice): the flow's first packet and everything in its direction visit them first to
/// last, the reply last to first (see docs/architecture.md, "Chains").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chain {
    groups: [u16; MAX_CHAIN],
    len: u8,
}

impl Chain {
    /// The chain of `groups` (indices into [`Config::target_groups`]), if there are 2 to
    /// [`MAX_CHAIN`] of them, each below `u16::MAX`.
    pub fn new(groups: &[usize]) -> Option<Chain> {
        if !(2..=MAX_CHAIN).contains(&groups.len()) {
            return None;
        }
        let mut c = Chain {
            groups: [0; MAX_CHAIN],
            len: groups.len() as u8,
        };
        for (slot, &g) in c.groups.iter_mut().zip(groups) {
            *slot = u16::try_from(g).ok().filter(|&g| g < u16::MAX)?;
        }
        Some(c)
    }

    /// The groups, first stage first.
    pub fn groups(&self) -> &[u16] {
        &self.groups[..usize::from(self.len)]
    }

    /// The stage (position) of group `g` in the chain.
    pub fn stage_of(&self, g: u16) -> Option<usize> {
        self.groups().iter().position(|&x| x == g)
    }
}

/// What a steering rule does with a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Inspect by this target group (index into [`Config::target_groups`]).
    Inspect(usize),
    /// Inspect by each of these groups in turn (a service chain).
    Chain(Chain),
    /// Forward uninspected (counted).
    Bypass,
    /// Drop; with `reset`, TCP is answered with a RST.
    Drop {
        /// Answer TCP with a RST.
        reset: bool,
    },
}

impl RuleAction {
    /// The file's name of the action.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleAction::Inspect(_) => "inspect",
            RuleAction::Chain(_) => "chain",
            RuleAction::Bypass => "bypass",
            RuleAction::Drop { .. } => "drop",
        }
    }

    /// The inspecting group of `inspect`, if that is the action.
    pub const fn group(self) -> Option<usize> {
        match self {
            RuleAction::Inspect(g) => Some(g),
            _ => None,
        }
    }

    /// Every group the action sends flows to: `inspect`'s, or a chain's in order.
    pub fn groups(self) -> impl Iterator<Item = usize> {
        let (groups, len) = match self {
            RuleAction::Inspect(g) => ([g as u16; MAX_CHAIN], 1),
            RuleAction::Chain(c) => (c.groups, usize::from(c.len)),
            _ => ([0; MAX_CHAIN], 0),
        };
        groups.into_iter().take(len).map(usize::from)
    }
}

/// The groups whose flows the appliances of group `gi` carry: `gi` itself, and every group
/// that fails over to it (its flows are then encapsulated to `gi`'s appliances).
pub fn groups_carried_by(groups: &[TargetGroup], gi: usize) -> impl Iterator<Item = usize> + '_ {
    groups
        .iter()
        .enumerate()
        .filter(move |(i, g)| *i == gi || g.failover_group == Some(gi))
        .map(|(i, _)| i)
}

impl Endpoint {
    /// Every group the endpoint's flows can be inspected by: the default's, then the rules'
    /// in order (repeats kept).
    pub fn groups(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.default_action)
            .chain(self.rules.iter().map(|r| r.action))
            .flat_map(RuleAction::groups)
    }
}

/// `[bgp]`: this node announces `prefixes` to `neighbors` through a BIRD 2 process it runs
/// and supervises, while it can serve (see docs/architecture.md, "Scale-out").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bgp {
    /// The BIRD 2 binary.
    pub bird: std::path::PathBuf,
    /// Where BIRD's configuration, control socket and log go (created; one per instance).
    pub state_dir: std::path::PathBuf,
    /// This node's AS.
    pub local_as: u32,
    /// The BGP identifier.
    pub router_id: std::net::Ipv4Addr,
    /// The service prefixes (the networks whose traffic this node is the next hop for).
    pub prefixes: Vec<IpNet>,
    /// The routers (each on a connected subnet of a port with a kernel interface).
    pub neighbors: Vec<BgpNeighbor>,
    /// BFD on every session.
    pub bfd: bool,
    /// BFD transmit and receive interval.
    pub bfd_interval: Duration,
    /// BFD detection multiplier.
    pub bfd_multiplier: u8,
    /// BGP hold time (keepalives every third of it).
    pub hold_time: Duration,
    /// A worker that has not turned its loop for this long withdraws the announcement.
    pub stall_timeout: Duration,
    /// Accept a return of a flow this node has no entry for when it comes from the flow's
    /// Maglev choice (another node behind the router may have encapsulated the flow).
    pub accept_unseen_returns: bool,
    /// The cluster addresses (at most one per family): the outer source of every
    /// encapsulation toward an appliance of that family, accepted as the destination of
    /// Geneve returns, and announced as a host route by every node, so that an appliance's
    /// returns reach any live node (docs/architecture.md, "Scale-out").
    pub cluster_addresses: Vec<std::net::IpAddr>,
}

impl Bgp {
    /// What BIRD announces while the node serves: the service prefixes, then each cluster
    /// address as a host route.
    pub fn announced(&self) -> Vec<IpNet> {
        let mut nets = self.prefixes.clone();
        nets.extend(self.cluster_addresses.iter().map(|&a| IpNet::host(a)));
        nets
    }

    /// The cluster address of `v4`'s family (IPv4 when true).
    pub fn cluster_address(&self, v4: bool) -> Option<std::net::IpAddr> {
        self.cluster_addresses
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == v4)
    }
}

/// One router of [`Bgp::neighbors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpNeighbor {
    /// Its address.
    pub address: std::net::IpAddr,
    /// Its AS.
    pub remote_as: u32,
}

/// `[dataplane]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataplane {
    /// One worker per CPU id, in this order (worker `i` runs on `worker_cpus[i]`). Unique.
    pub worker_cpus: Vec<u32>,
    /// CPU of the EAL main lcore (control plane); not one of `worker_cpus`.
    pub main_cpu: u32,
    /// Hugepage use.
    pub hugepages: Hugepages,
    /// EAL memory (`-m`) in MiB when running without hugepages.
    pub memory_mb: u32,
    /// Extra EAL arguments, verbatim.
    pub eal_args: Vec<String>,
    /// Packets per RX/TX burst, 1..=64.
    pub burst_size: u16,
    /// Longest time a staged TX packet waits before being flushed.
    pub tx_flush: Duration,
    /// A worker that received nothing for `idle_after` sleeps this long per empty loop turn
    /// (`None`: it polls without pause, for a dedicated core).
    pub idle_sleep: Option<Duration>,
    /// ICMP "too big" errors each worker may send per second (path MTU discovery); 0 = none.
    pub icmp_errors_per_s: u32,
    /// How long a worker keeps polling without pause after its last packet.
    pub idle_after: Duration,
    /// mbufs in each worker's pool.
    pub mbufs_per_worker: u32,
    /// The pools' mempool driver.
    pub mempool: MempoolDriver,
    /// Flow-table entries per worker.
    pub flow_table_capacity: u32,
    /// Seed of the symmetric flow hash; equal on every gateway behind one ECMP group.
    pub flow_hash_seed: u64,
    /// Period of the counter print; `None` = off.
    pub stats_interval: Option<Duration>,
}

impl Dataplane {
    /// Number of worker cores.
    pub fn workers(&self) -> usize {
        self.worker_cpus.len()
    }
}

/// `[[ports]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Unique name, referenced by routes, neighbors, target groups and targets.
    pub name: String,
    /// The DPDK device.
    pub device: Device,
    /// What the port faces.
    pub role: PortRole,
    /// The gateway's IPv4 address and connected subnet on this port. On an appliance-facing
    /// port it is the Geneve outer source toward IPv4 targets.
    pub ipv4: Option<Ipv4Net>,
    /// The gateway's IPv6 address and connected subnet on this port.
    pub ipv6: Option<Ipv6Net>,
    /// MAC override; `None` = the device's own.
    pub mac: Option<MacAddr>,
    /// L3 MTU (IP packet size), 576..=9600.
    pub mtu: u16,
    /// RX queues (RSS); each is polled by exactly one worker.
    pub rx_queues: u16,
    /// TX queues, at least one per worker.
    pub tx_queues: u16,
    /// Promiscuous mode.
    pub promiscuous: bool,
    /// Name of a TAP exception-path interface, if any.
    pub kernel_interface: Option<String>,
    /// On an appliance-facing port, the routers through which appliances outside its
    /// connected subnets are reached (at most one per family; routed appliances, e.g. behind
    /// the ECMP router of a cluster).
    pub appliance_gateways: Vec<IpAddr>,
}

impl Port {
    /// Whether `ip` is in one of the port's connected subnets.
    pub fn is_connected(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.ipv4.is_some_and(|n| n.contains(a)),
            IpAddr::V6(a) => self.ipv6.is_some_and(|n| n.contains(a)),
        }
    }

    /// Whether `ip` is one of the port's own addresses.
    pub fn is_own_address(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.ipv4.is_some_and(|n| n.addr == a),
            IpAddr::V6(a) => self.ipv6.is_some_and(|n| n.addr == a),
        }
    }

    /// The appliance gateway of `ip`'s family, if the port has one.
    pub fn gateway_for(&self, ip: IpAddr) -> Option<IpAddr> {
        self.appliance_gateways
            .iter()
            .copied()
            .find(|g| g.is_ipv4() == ip.is_ipv4())
    }

    /// The port's own address of `ip`'s family (e.g. the outer source toward a target).
    pub fn source_for(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.ipv4.map(|n| IpAddr::V4(n.addr)),
            IpAddr::V6(_) => self.ipv6.map(|n| IpAddr::V6(n.addr)),
        }
    }

    pub(super) fn addresses_display(&self) -> String {
        let v: Vec<String> = self
            .ipv4
            .map(|n| n.to_string())
            .into_iter()
            .chain(self.ipv6.map(|n| n.to_string()))
            .collect();
        v.join(", ")
    }
}

/// `[[routes]]`: where decapsulated traffic to `prefix` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination prefix (host bits zero).
    pub prefix: IpNet,
    /// Next hop, in a connected subnet of `port`; `None` = destinations directly connected.
    pub via: Option<IpAddr>,
    /// Index into [`Config::ports`] (a user-facing port).
    pub port: usize,
}

/// `[[neighbors]]`: a static ARP (IPv4) or ND (IPv6) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Neighbor {
    /// Address, in a connected subnet of `port`.
    pub address: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
    /// Index into [`Config::ports`].
    pub port: usize,
}

/// `[[target_groups]]`: an appliance pool and its flow policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// Unique name.
    pub name: String,
    /// Indices into [`Config::ports`] of the user-facing ports whose traffic this group takes.
    /// A user port belongs to at most one group.
    pub user_ports: Vec<usize>,
    /// Flow stickiness.
    pub stickiness: Stickiness,
    /// Existing flows of an unhealthy or deregistered target.
    pub on_unhealthy: OnUnhealthy,
    /// Traffic when no target is healthy (and no failover group takes it).
    pub on_all_unhealthy: OnAllUnhealthy,
    /// Index into [`Config::target_groups`] of the group whose appliances take this group's
    /// new flows while it is below its minimum (`min_healthy_targets`,
    /// `min_healthy_percent`) and that group is not below its own.
    pub failover_group: Option<usize>,
    /// What its new flows do while it is below its minimum: [`OnBelowMinimum::Failover`]
    /// exactly when `failover_group` is set.
    pub on_below_minimum: OnBelowMinimum,
    /// The group is below its minimum with fewer healthy targets than this (at least 1).
    pub min_healthy_targets: u16,
    /// The group is below its minimum with a smaller share of its registered targets
    /// healthy, in percent (0: no such minimum).
    pub min_healthy_percent: u8,
    /// Connection draining of a deregistered target.
    pub deregistration_delay: Duration,
    /// Idle timeout of TCP flows.
    pub tcp_idle_timeout: Duration,
    /// Idle timeout of UDP, ICMP and other flows.
    pub other_idle_timeout: Duration,
    /// Answer a TCP packet of a flow the gateway ends (`appliance_gone`,
    /// `no_healthy_appliance`) with a RST instead of dropping it silently.
    pub tcp_rst_on_drop: bool,
    /// TCP packets of unknown flows that do not open a connection.
    pub tcp_unknown_non_syn: UnknownNonSyn,
    /// A TCP SYN on a flow idle for at least this long starts a new connection (new flow,
    /// new cookie), as one on a flow that has seen FIN or RST always does; `None`: idle time
    /// alone never does.
    pub tcp_reuse_after_idle: Option<Duration>,
    /// Accept an appliance's return only if it echoes the flow cookie (AWS option type 3):
    /// for appliances that echo gwlb's options, so that a forged return must also carry the
    /// flow's cookie. Returns without options (Linux-kernel Geneve) are then dropped.
    pub require_flow_cookie: bool,
    /// Maglev lookup-table size M (prime).
    pub maglev_table_size: u32,
    /// Geneve VNI sent to the appliances (24 bits).
    pub geneve_vni: u32,
    /// AWS option type 1 (GWLB endpoint id).
    pub endpoint_id: u64,
    /// AWS option type 2 (attachment id).
    pub attachment_id: u64,
    /// TTL (hop limit) of the outer IP header.
    pub outer_ttl: u8,
    /// Health checking of the targets.
    pub health_check: HealthCheck,
    /// The appliances, in file order (the order feeds nothing: Maglev keys on the address).
    pub targets: Vec<Target>,
}

/// `[target_groups.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Off: every target with weight > 0 is considered healthy.
    pub enabled: bool,
    /// TCP connect or HTTP GET.
    pub probe: Probe,
    /// Destination port on the target's own address.
    pub port: u16,
    /// Time between probes of one target.
    pub interval: Duration,
    /// Time a probe may take; shorter than `interval`.
    pub timeout: Duration,
    /// Consecutive successes that make an initial or unhealthy target healthy.
    pub healthy_threshold: u8,
    /// Consecutive failures that make an initial or healthy target unhealthy.
    pub unhealthy_threshold: u8,
    /// The state a target starts in (registration, start, re-registration) while the check
    /// is enabled.
    pub initial_state: InitialState,
    /// Random spread of probe times, in percent of `interval` (0..=50).
    pub jitter_percent: u8,
    /// The data-path probe every check sends through the appliance (with `probe` TCP or
    /// HTTP, after it passes; with [`Probe::Geneve`], alone); `None` = none.
    pub data_path: Option<DataPathProbe>,
    /// Flap damping: the half-life of a target's flap penalty (`None`: off). A target that
    /// falls from healthy three times within about half a half-life is held down (module docs of
    /// `health`, "Flap damping").
    pub flap_half_life: Option<Duration>,
}

/// The inner addresses of a group's data-path probes (`data_path_source`,
/// `data_path_destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataPathProbe {
    /// Inner source address.
    pub source: std::net::Ipv4Addr,
    /// Inner destination address: one the appliance forwards (routes back into its tunnel),
    /// not one of its own.
    pub destination: std::net::Ipv4Addr,
}

impl DataPathProbe {
    /// `data_path_source` when not written: 198.18.0.1 (RFC 2544's benchmarking range, which
    /// no real network uses).
    pub const DEFAULT_SOURCE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 1);
    /// `data_path_destination` when not written: 198.18.0.2.
    pub const DEFAULT_DESTINATION: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 2);
}

/// The probe of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection that completes its handshake.
    Tcp,
    /// An HTTP/1.1 GET answered with one of `success_codes`.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Healthy status codes.
        success_codes: StatusCodes,
        /// Over TLS (`protocol = "https"`); `None`: plain HTTP.
        tls: Option<TlsCheck>,
    },
    /// Only the data-path probe ([`HealthCheck::data_path`] is then always set).
    Geneve,
}

/// The TLS of an HTTPS health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCheck {
    /// Verify the appliance's certificate chain and name (`tls_verify`); off by default, as
    /// AWS does not verify.
    pub verify: bool,
    /// The CAs a verified certificate must chain to (`tls_ca_file`, PEM); `None`: the
    /// system's (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<std::path::PathBuf>,
    /// The name the certificate must carry and the TLS SNI (`tls_server_name`); `None`: the
    /// target's IP address (no SNI).
    pub server_name: Option<String>,
}

impl TlsCheck {
    /// The CA bundle used when `tls_verify = true` and no `tls_ca_file` is given.
    pub const SYSTEM_CA_FILE: &'static str = "/etc/ssl/certs/ca-certificates.crt";
}

/// `[[target_groups.targets]]`: one appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The appliance's address (health checks and Geneve outer destination).
    pub address: IpAddr,
    /// Relative share of new flows, 0..=1000; 0 = no new flows.
    pub weight: u16,
    /// Static MAC; `None` = resolved by ARP/ND or a `[[neighbors]]` entry.
    pub mac: Option<MacAddr>,
    /// Index into [`Config::ports`] (an appliance-facing port whose subnet holds `address`,
    /// or whose appliance gateway reaches it).
    pub port: usize,
    /// The router it is reached through (its port's appliance gateway), or `None` when it is
    /// on the port's link. Frames to it go to the router's MAC, and its returns come from it.
    pub via: Option<IpAddr>,
}

impl Target {
    /// The address whose MAC frames to this target are sent to: the router it is reached
    /// through, or its own.
    pub fn next_hop(&self) -> IpAddr {
        self.via.unwrap_or(self.address)
    }
}

/// `[[mirror_sessions]]`: a selection of traffic copied to a mirror target group's sensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSession {
    /// Unique name.
    pub name: String,
    /// Index into [`Config::target_groups`] of the sensor pool (a group without user ports).
    pub target_group: usize,
    /// The copies' encapsulation.
    pub format: MirrorFormat,
    /// VXLAN VNI, or Geneve VNI (24 bits).
    pub vni: u32,
    /// Copy one packet in this many of those selected (1: every one).
    pub sample_one_in: u32,
    /// Copy at most this many bytes of each frame (`None`: whole frames).
    pub snap_length: Option<u16>,
    /// Where packets are copied.
    pub copy_point: CopyPoint,
    /// User ports whose traffic is selected (indices into [`Config::ports`]; empty: every
    /// user-facing port).
    pub user_ports: Vec<usize>,
    /// Source or destination prefixes (empty: any address).
    pub prefixes: Vec<IpNet>,
    /// IP protocols (empty: any).
    pub protocols: Vec<u8>,
    /// Source or destination port ranges of TCP and UDP (empty: any packet).
    pub l4_ports: Vec<std::ops::RangeInclusive<u16>>,
    /// Which way, relative to `prefixes`.
    pub direction: MirrorDirection,
    /// Endpoints whose traffic is selected (indices into [`Config::endpoints`]; empty: any
    /// traffic, an endpoint's or a group's own).
    pub endpoints: Vec<usize>,
    /// Steering rules of those endpoints whose traffic is selected, by name (`"default"`:
    /// an endpoint's default action; empty: whatever rule matches).
    pub rules: Vec<String>,
}

impl MirrorSession {
    /// The smallest `snap_length`: the Ethernet, IPv6 and TCP headers of a plain packet.
    pub const MIN_SNAP_LENGTH: u16 = 74;
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// Control API listener; `None` = off.
    pub api_listen: Option<Listen>,
    /// Bearer token for the API; required unless the API is local.
    pub api_token: Option<String>,
    /// Prometheus metrics listener; `None` = off.
    pub metrics_listen: Option<Listen>,
    /// Log output format.
    pub log_format: LogFormat,
}

impl Config {
    /// Advice about this configuration (valid, but probably not what was meant).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// Index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }
}
