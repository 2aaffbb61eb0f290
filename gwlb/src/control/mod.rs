//! The control plane's interface: what operators (the HTTP API, the CLI through it, SIGHUP)
//! can ask a running gateway, and what it answers.
//!
//! One thread, the control loop ([`control_loop`]), owns the mutable state: the
//! running [`Config`](crate::config::Config), the [`registry::Registry`] of appliance slots,
//! health and learned neighbours. Everything else talks to it by sending a [`Command`] with a
//! reply channel through a [`ControlHandle`]; the loop applies commands one at a time, so a
//! change is either applied whole (validated like a config file, a new snapshot published)
//! or rejected with nothing changed.
//!
//! The types here are plain data (serde) so the API server, the CLI client and tests share
//! them without DPDK. Nothing in this module tree needs DPDK: the control loop reaches the
//! data path only through the published snapshot, the workers' counters
//! ([`crate::stats`]), their flow-dump channels ([`crate::flow_dump`]) and a [`Now`] clock,
//! so it runs and is tested without ports, hugepages or root.

pub mod config_reader;
pub mod control_loop;
pub mod registry;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

/// The data path's seconds clock as the control plane reads it: whole seconds since a common
/// epoch, plus one (0 never means "now"), the unit of flow-table timestamps and drain
/// deadlines. The data path's TSC clock (`dataplane::worker::Clock`) implements it; tests
/// use a [`ManualClock`].
pub trait Now: Send + std::fmt::Debug {
    /// Seconds now.
    fn now(&self) -> u32;
}

/// A clock that moves only when told to (tests). Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU32>);

impl ManualClock {
    /// A clock at second `secs`.
    pub fn at(secs: u32) -> ManualClock {
        ManualClock(Arc::new(AtomicU32::new(secs)))
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: u32) {
        self.0.fetch_add(secs, Relaxed);
    }
}

impl Now for ManualClock {
    fn now(&self) -> u32 {
        self.0.load(Relaxed)
    }
}

/// Longest a [`ControlHandle`] request waits for the control loop.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Flows per [`FlowPage`] when [`FlowQuery::limit`] is not given.
pub const DEFAULT_FLOW_PAGE: usize = 100;

/// Most flows per [`FlowPage`] ([`FlowQuery::limit`]).
pub const MAX_FLOW_PAGE: usize = 10_000;

/// Why a control request failed. Each kind maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlError {
    /// The request is invalid; `field` names the offending input.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (request field, or config field path for a rejected change).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The named target group or target does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `target group "tg1"`.
        what: String,
    },
    /// The request conflicts with the current state (e.g. registering a target twice).
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
    },
    /// The control loop did not answer (stopping, or overloaded).
    #[error("the gateway's control loop is not answering: {message}")]
    Unavailable {
        /// Details.
        message: String,
    },
}

impl ControlError {
    /// The HTTP status code for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ControlError::Invalid { .. } => 400,
            ControlError::NotFound { .. } => 404,
            ControlError::Conflict { .. } => 409,
            ControlError::Unavailable { .. } => 503,
        }
    }

    /// An [`ControlError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ControlError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Result of a control request.
pub type ControlResult<T> = Result<T, ControlError>;

/// Reply channel of one command.
pub type Reply<T> = Sender<ControlResult<T>>;

/// Health / registration state of a target, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Registered, its health checks not passed yet (`healthy_threshold` consecutive
    /// successes): no new flows. Neither healthy nor unhealthy.
    Initial,
    /// Registered and passing its health checks (or checks disabled): takes new flows if
    /// its weight is above 0.
    Healthy,
    /// Registered and failing its health checks: no new flows.
    Unhealthy,
    /// Deregistered, its existing flows draining until the deregistration delay ends.
    Draining,
}

impl TargetState {
    /// Every state, in the order a target usually goes through them.
    pub const ALL: [TargetState; 4] = [
        TargetState::Initial,
        TargetState::Healthy,
        TargetState::Unhealthy,
        TargetState::Draining,
    ];

    /// Lower-case name (`initial`, `healthy`, `unhealthy`, `draining`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::Draining => "draining",
        }
    }
}

/// One target (appliance) of a target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Target group name.
    pub group: String,
    /// The appliance's address.
    pub address: IpAddr,
    /// Name of the port that reaches it.
    pub port: String,
    /// Relative weight for new flows (0 = none).
    pub weight: u16,
    /// Health / registration.
    pub state: TargetState,
    /// Why it is in that state (last health-check outcome, or the deregistration).
    pub reason: Option<String>,
    /// Seconds left of the deregistration delay, while draining.
    pub drain_remaining_s: Option<u64>,
    /// Duration of the latest answered health-check probe, in milliseconds.
    pub check_latency_ms: Option<f64>,
    /// Its slot (index in per-appliance counters; stable while the gateway runs).
    pub slot: u16,
    /// Whether its MAC address is known (encapsulation possible).
    pub resolved: bool,
    /// Packets encapsulated toward it (all workers).
    pub packets: u64,
    /// Inner IP bytes encapsulated toward it.
    pub bytes: u64,
    /// Flows given to it (new and moved), since start.
    pub flows: u64,
}

/// A health-check configuration, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckInfo {
    /// Whether probes run.
    pub enabled: bool,
    /// `tcp`, `http`, `https` or `geneve` (a data-path probe alone).
    pub protocol: String,
    /// Destination port.
    pub port: u16,
    /// The inner `source -> destination` of the data-path probe each check sends through
    /// the appliance (`None`: no data-path probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_path: Option<String>,
    /// Flap damping's half-life in seconds (0: off).
    #[serde(default)]
    pub flap_damping_half_life_s: u64,
    /// HTTPS: whether the certificate is verified, against which CA file, for which name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// HTTP path (HTTP only).
    pub path: Option<String>,
    /// Accepted HTTP status codes, e.g. `200-399` (HTTP only).
    pub success_codes: Option<String>,
    /// Milliseconds between probes.
    pub interval_ms: u64,
    /// Milliseconds a probe may take.
    pub timeout_ms: u64,
    /// Successes that make a target healthy.
    pub healthy_threshold: u8,
    /// Failures that make a target unhealthy.
    pub unhealthy_threshold: u8,
    /// `initial` or `healthy`: the state a target starts in while the check is enabled.
    pub initial_state: String,
}

/// A change to a target group's health check (defined with the typed configuration edits).
pub use crate::config::HealthCheckPatch;

/// A mirror session in the file's shape (`[[mirror_sessions]]`): the body of the API's
/// mirror-session changes.
pub use crate::config::MirrorSessionSpec;

/// An endpoint in the file's shape (`[[endpoints]]`, with its routes and rules), and one of
/// its rules (`[[endpoints.rules]]`): the bodies of the API's endpoint changes.
pub use crate::config::{EndpointSpec, RuleSpec};

/// A change to an endpoint's rules.
#[derive(Debug, Clone, PartialEq)]
pub enum RulesChange {
    /// The new ordered list.
    Replace(Vec<RuleSpec>),
    /// One more rule, after the others.
    Append(RuleSpec),
    /// Removes the rule with this name.
    Remove(String),
}

/// A change to a named part of the configuration (a mirror session, an endpoint).
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// Its whole new value (`PUT`): fields left out take the file's defaults.
    Replace(T),
    /// The fields to set (`PATCH`), a JSON object in the file's shape; the others keep their
    /// value.
    Patch(serde_json::Map<String, serde_json::Value>),
}

impl<T> Change<T> {
    /// Whether the change gives the item (now named `name`) another name; `name_of` reads a
    /// whole value's.
    pub fn renames(&self, name: &str, name_of: impl Fn(&T) -> &str) -> bool {
        match self {
            Change::Replace(spec) => name_of(spec) != name,
            Change::Patch(p) => p.get("name").is_some_and(|n| n.as_str() != Some(name)),
        }
    }
}

/// One target group with its targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupInfo {
    /// Name.
    pub name: String,
    /// `5-tuple`, `3-tuple` or `2-tuple`.
    pub stickiness: String,
    /// `rebalance` or `no_rebalance`.
    pub on_unhealthy: String,
    /// `fail_open` or `fail_closed`.
    pub on_all_unhealthy: String,
    /// Connection-draining delay in seconds.
    pub deregistration_delay_s: u64,
    /// Its health check.
    pub health_check: HealthCheckInfo,
    /// Targets taking new flows (healthy, weight > 0).
    pub healthy_count: usize,
    /// Registered targets failing their checks.
    pub unhealthy_count: usize,
    /// Registered targets whose checks have not passed yet (initial): neither healthy nor
    /// unhealthy.
    pub initial_count: usize,
    /// The group that takes its new flows while it is below its health minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_group: Option<String>,
    /// `min_healthy_targets`.
    #[serde(default = "one")]
    pub min_healthy_targets: u16,
    /// `min_healthy_percent`.
    #[serde(default)]
    pub min_healthy_percent: u8,
    /// Below its minimum now: its new flows go to `failover_group`'s targets.
    #[serde(default)]
    pub failed_over: bool,
    /// `failover`, `fail_open` or `serve_remaining`: what its new flows do below its minimum.
    #[serde(default = "serve_remaining")]
    pub on_below_minimum: String,
    /// Below its minimum now with `on_below_minimum = "fail_open"`: its new flows go to all
    /// its registered targets, healthy or not.
    #[serde(default)]
    pub failed_open: bool,
    /// Its targets, registered ones first (in config order), then draining ones.
    pub targets: Vec<TargetInfo>,
}

/// The TLS of an HTTPS health check ([`HealthCheckInfo::tls`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// Certificates are verified.
    pub verify: bool,
    /// The CA bundle verified certificates chain to (`None`: the system's).
    pub ca_file: Option<String>,
    /// The name the certificate must carry (`None`: the target's address).
    pub server_name: Option<String>,
}

fn one() -> u16 {
    1
}

fn serve_remaining() -> String {
    "serve_remaining".into()
}

/// A target to register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The appliance's address.
    pub address: IpAddr,
    /// Weight, 0..=1000 (default 1, as in the configuration file).
    pub weight: Option<u16>,
    /// Port name (default: the appliance-facing port whose subnet holds the address).
    pub port: Option<String>,
    /// Static MAC (default: learned by ARP/ND).
    pub mac: Option<String>,
}

/// A counter of [`WorkerReport`] as the metrics and the CLI present it (generated from
/// [`crate::stats::worker_counter_table`]).
#[derive(Debug, Clone, Copy)]
pub struct CounterColumn {
    /// The [`WorkerReport`] field (JSON key).
    pub name: &'static str,
    /// Prometheus counter family (label `worker`).
    pub metric: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// `gwlb stats` column, `""` for none.
    pub column: &'static str,
    /// Reads it.
    pub get: fn(&WorkerReport) -> u64,
}

macro_rules! define_worker_report {
    ($($name:ident: $src:ident.$field:ident, $metric:literal, $help:literal, $column:literal;)*) => {
        /// Counters of one worker (the counters of [`crate::stats::worker_counter_table`], then
        /// the flow table's occupancy and the drops).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct WorkerReport {
            /// Worker index.
            pub worker: usize,
            $(#[doc = $help] #[serde(default)] pub $name: u64,)*
            /// Flow-table entries in use (as of the worker's last publish).
            pub active_flows: u64,
            /// Flow-table capacity.
            pub flow_table_capacity: u64,
            /// Total drops.
            pub dropped: u64,
            /// Drops by reason (only reasons with a count).
            pub drops: std::collections::BTreeMap<String, u64>,
        }

        impl WorkerReport {
            /// Every counter of the table, in table order.
            pub const COUNTERS: [CounterColumn; [$(stringify!($name)),*].len()] = [$(
                CounterColumn {
                    name: stringify!($name),
                    metric: $metric,
                    help: $help,
                    column: $column,
                    get: |w| w.$name,
                },
            )*];

            /// Worker `worker`'s report from its published counters; `capacity` is its
            /// flow table's.
            pub fn from_stats(
                worker: usize,
                w: &crate::stats::WorkerStats,
                capacity: u64,
            ) -> WorkerReport {
                use std::sync::atomic::Ordering::Relaxed;
                let drops: std::collections::BTreeMap<String, u64> = crate::parse::DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_owned(), w.drops[r.index()].load(Relaxed)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                WorkerReport {
                    worker,
                    $($name: w.$name.load(Relaxed),)*
                    active_flows: w.active_flows.load(Relaxed),
                    flow_table_capacity: capacity,
                    dropped: drops.values().sum(),
                    drops,
                }
            }

            /// Adds `o`'s counters to these (totals over workers; `worker` is kept).
            pub fn add(&mut self, o: &WorkerReport) {
                $(self.$name += o.$name;)*
                self.active_flows += o.active_flows;
                self.flow_table_capacity += o.flow_table_capacity;
                self.dropped += o.dropped;
                for (k, v) in &o.drops {
                    *self.drops.entry(k.clone()).or_default() += v;
                }
            }
        }
    };
}
crate::stats::worker_counter_table!(define_worker_report);

/// Statistics of the running gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Seconds since start.
    pub uptime_s: f64,
    /// Snapshot generation (increments with every health, neighbour or config change).
    pub generation: u64,
    /// Digest of what decides a flow's appliance (`Config::choice_digest`): equal on nodes
    /// that agree.
    #[serde(default)]
    pub choice_digest: String,
    /// Per worker.
    pub workers: Vec<WorkerReport>,
    /// Sum over workers (`worker` is 0).
    pub total: WorkerReport,
    /// The BGP announcement and sessions (`None`: no `[bgp]`).
    #[serde(default)]
    pub routing: Option<crate::routing::RoutingReport>,
    /// `gwlb drain` (`None`: not draining).
    #[serde(default)]
    pub drain: Option<DrainReport>,
    /// The mirror sessions, in configuration order, with their counters summed over workers.
    #[serde(default)]
    pub mirror_sessions: Vec<MirrorSessionReport>,
    /// The endpoints, in configuration order, with their rules' counters summed over workers.
    #[serde(default)]
    pub endpoints: Vec<EndpointReport>,
}

/// An endpoint (tenant) and what its traffic did ([`StatsReport::endpoints`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// Name.
    pub name: String,
    /// Its VLAN ids, outer first (empty: untagged).
    pub vlan: Vec<u16>,
    /// AWS option type 1 of its encapsulations, `0x` hexadecimal.
    pub endpoint_id: String,
    /// User packets, bytes (IP) and new flows: the sums of its rules'.
    pub packets: u64,
    /// See `packets`.
    pub bytes: u64,
    /// See `packets`.
    pub flows: u64,
    /// Its rules in order, then its default action (`"default"`).
    pub rules: Vec<RuleReport>,
    /// The endpoint as the file writes it, every default filled in: what `PUT
    /// /v1/endpoints/{name}` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<EndpointSpec>,
}

/// A steering rule and the user traffic it decided ([`EndpointReport::rules`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// Name (`"default"`: the endpoint's default action).
    pub name: String,
    /// `inspect`, `chain`, `bypass` or `drop`.
    pub action: String,
    /// The inspecting group (`inspect` only).
    pub target_group: Option<String>,
    /// The groups of a `chain`, in order (empty for other actions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// User packets of the flows it decided.
    pub packets: u64,
    /// Their bytes (IP).
    pub bytes: u64,
    /// Flows it decided (dropped flows are not stored: 0 for `drop`).
    pub flows: u64,
}

/// A mirror session and what it did ([`StatsReport::mirror_sessions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSessionReport {
    /// Name.
    pub name: String,
    /// The sensor pool (a target group).
    pub target_group: String,
    /// `vxlan` or `geneve`.
    pub format: String,
    /// VNI of the copies.
    pub vni: u32,
    /// `before_inspection` or `after_inspection`.
    pub copy_point: String,
    /// One copy per this many selected packets.
    pub sample_one_in: u32,
    /// Bytes copied of each frame at most (`None`: whole frames).
    pub snap_length: Option<u16>,
    /// Copies sent.
    pub packets: u64,
    /// Bytes of the copied frames.
    pub bytes: u64,
    /// Copies not sent: no healthy sensor.
    pub no_sensor: u64,
    /// Copies not sent: no buffer.
    pub no_buffer: u64,
    /// Copies made (in `packets`) that the sensor port's transmit queue refused.
    #[serde(default)]
    pub tx_full: u64,
    /// The session as the file writes it, every default filled in: what `PUT
    /// /v1/mirror-sessions/{name}` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<MirrorSessionSpec>,
}

/// What `gwlb drain` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainAction {
    /// Start draining: withdraw the announcement, keep forwarding the flows that still
    /// arrive.
    Start,
    /// Stop draining: announce again (when the node can serve).
    Stop,
    /// Only report.
    Status,
}

/// The state of a drain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainReport {
    /// The node is draining.
    pub draining: bool,
    /// Seconds since the drain started.
    pub elapsed_s: f64,
    /// The drain's limit: the longest `deregistration_delay_s` of the target groups.
    pub timeout_s: u64,
    /// Flows still in the flow tables.
    pub active_flows: u64,
    /// Draining and done: no flow left, or the timeout passed.
    pub drained: bool,
}

/// Which flows to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowQuery {
    /// Only flows of this target group.
    pub group: Option<String>,
    /// Only flows steered to this appliance.
    pub appliance: Option<IpAddr>,
    /// Only flows with this address at either end.
    pub address: Option<IpAddr>,
    /// Only flows with this port at either end.
    pub port: Option<u16>,
    /// Continue after a previous page (its `next_cursor`).
    pub cursor: Option<String>,
    /// Most flows per page (default 100, at most 10 000).
    pub limit: Option<usize>,
}

/// One flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowInfo {
    /// Owning worker.
    pub worker: usize,
    /// Target group.
    pub group: String,
    /// Appliance the flow is steered to.
    pub appliance: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// One end (the lower address of the canonical key).
    pub addr_a: IpAddr,
    /// Its port (0 for port-less protocols or 2/3-tuple stickiness).
    pub port_a: u16,
    /// The other end.
    pub addr_b: IpAddr,
    /// Its port.
    pub port_b: u16,
    /// Seconds since the flow's last packet.
    pub idle_s: u32,
    /// The endpoint (tenant) the flow belongs to (`None`: a group's own user traffic).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The steering rule that decided it (`None` without an endpoint).
    #[serde(default)]
    pub rule: Option<String>,
    /// Forwarded uninspected by its rule (`group` and `appliance` then mean nothing).
    #[serde(default)]
    pub bypass: bool,
}

/// A page of flows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowPage {
    /// Flows on this page.
    pub flows: Vec<FlowInfo>,
    /// Pass as `cursor` to get the next page; `None` when this was the last.
    pub next_cursor: Option<String>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The file that was loaded.
    pub file: String,
    /// `group/address` of targets registered by it.
    pub registered: Vec<String>,
    /// `group/address` of targets deregistered (draining) by it.
    pub deregistered: Vec<String>,
    /// `group/address` of targets whose weight changed.
    pub reweighted: Vec<String>,
    /// Other changed settings, by field path.
    pub changed: Vec<String>,
    /// Warnings of the new configuration.
    pub warnings: Vec<String>,
}

/// A request to the control loop.
#[derive(Debug)]
pub enum Command {
    /// Every target group with its targets.
    ListGroups(Reply<Vec<TargetGroupInfo>>),
    /// Registers a target (starts healthy; probed from now on).
    Register {
        /// Target group name.
        group: String,
        /// The target.
        target: TargetSpec,
        /// Reply: the target as registered.
        reply: Reply<TargetInfo>,
    },
    /// Deregisters a target: it drains for the group's deregistration delay.
    Deregister {
        /// Target group name.
        group: String,
        /// The target's address.
        address: IpAddr,
        /// Reply: the target, now draining.
        reply: Reply<TargetInfo>,
    },
    /// Changes a target's weight (new flows only; existing flows stay).
    SetWeight {
        /// Target group name.
        group: String,
        /// The target's address.
        address: IpAddr,
        /// New weight, 0..=1000.
        weight: u16,
        /// Reply: the target.
        reply: Reply<TargetInfo>,
    },
    /// Changes a target group's health check.
    SetHealthCheck {
        /// Target group name.
        group: String,
        /// The change.
        patch: HealthCheckPatch,
        /// Reply: the group.
        reply: Reply<TargetGroupInfo>,
    },
    /// Counters.
    Stats(Reply<StatsReport>),
    /// A page of the flow tables.
    Flows(FlowQuery, Reply<FlowPage>),
    /// Reloads the configuration file (as SIGHUP does).
    Reload(Reply<ReloadReport>),
    /// Starts, stops or reports a drain of this node.
    Drain(DrainAction, Reply<DrainReport>),
    /// Adds a mirror session (after the others).
    CreateMirror {
        /// The session.
        spec: MirrorSessionSpec,
        /// Reply: the session as created.
        reply: Reply<MirrorSessionReport>,
    },
    /// Changes a mirror session in place (its counters go on).
    ChangeMirror {
        /// Its name (a session keeps it).
        name: String,
        /// The change.
        change: Change<MirrorSessionSpec>,
        /// Reply: the session as changed.
        reply: Reply<MirrorSessionReport>,
    },
    /// Adds an endpoint (after the others).
    CreateEndpoint {
        /// The endpoint.
        spec: EndpointSpec,
        /// Reply: the endpoint as created.
        reply: Reply<EndpointReport>,
    },
    /// Changes an endpoint in place (its zone, flows and counters go on).
    ChangeEndpoint {
        /// Its name (an endpoint keeps it).
        name: String,
        /// The change.
        change: Change<EndpointSpec>,
        /// Reply: the endpoint as changed.
        reply: Reply<EndpointReport>,
    },
    /// Changes an endpoint's rules.
    ChangeRules {
        /// The endpoint's name.
        name: String,
        /// The change.
        change: RulesChange,
        /// Reply: the endpoint as changed.
        reply: Reply<EndpointReport>,
    },
    /// Removes an endpoint.
    DeleteEndpoint {
        /// Its name.
        name: String,
        /// Reply: the endpoint as it was, with its last counters.
        reply: Reply<EndpointReport>,
    },
    /// Removes a mirror session.
    DeleteMirror {
        /// Its name.
        name: String,
        /// Reply: the session as it was, with its last counters.
        reply: Reply<MirrorSessionReport>,
    },
}

/// The sending side of the control loop's command channel. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    commands: Sender<Command>,
}

impl ControlHandle {
    /// A handle and the receiver the control loop reads.
    pub fn channel() -> (ControlHandle, Receiver<Command>) {
        let (commands, rx) = crossbeam_channel::bounded(64);
        (ControlHandle { commands }, rx)
    }

    fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> ControlResult<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.commands
            .send_timeout(make(tx), REQUEST_TIMEOUT)
            .map_err(|_| ControlError::Unavailable {
                message: "command queue closed or full".into(),
            })?;
        rx.recv_timeout(REQUEST_TIMEOUT)
            .map_err(|_| ControlError::Unavailable {
                message: format!("no answer within {REQUEST_TIMEOUT:?}"),
            })?
    }

    /// See [`Command::ListGroups`].
    pub fn list_groups(&self) -> ControlResult<Vec<TargetGroupInfo>> {
        self.request(Command::ListGroups)
    }

    /// See [`Command::Register`].
    pub fn register(&self, group: &str, target: TargetSpec) -> ControlResult<TargetInfo> {
        self.request(|reply| Command::Register {
            group: group.to_owned(),
            target,
            reply,
        })
    }

    /// See [`Command::Deregister`].
    pub fn deregister(&self, group: &str, address: IpAddr) -> ControlResult<TargetInfo> {
        self.request(|reply| Command::Deregister {
            group: group.to_owned(),
            address,
            reply,
        })
    }

    /// See [`Command::SetWeight`].
    pub fn set_weight(
        &self,
        group: &str,
        address: IpAddr,
        weight: u16,
    ) -> ControlResult<TargetInfo> {
        self.request(|reply| Command::SetWeight {
            group: group.to_owned(),
            address,
            weight,
            reply,
        })
    }

    /// See [`Command::SetHealthCheck`].
    pub fn set_health_check(
        &self,
        group: &str,
        patch: HealthCheckPatch,
    ) -> ControlResult<TargetGroupInfo> {
        self.request(|reply| Command::SetHealthCheck {
            group: group.to_owned(),
            patch,
            reply,
        })
    }

    /// See [`Command::Stats`].
    pub fn stats(&self) -> ControlResult<StatsReport> {
        self.request(Command::Stats)
    }

    /// See [`Command::Flows`].
    pub fn flows(&self, query: FlowQuery) -> ControlResult<FlowPage> {
        self.request(|reply| Command::Flows(query, reply))
    }

    /// See [`Command::Reload`].
    pub fn reload(&self) -> ControlResult<ReloadReport> {
        self.request(Command::Reload)
    }

    /// See [`Command::CreateMirror`].
    pub fn create_mirror(&self, spec: MirrorSessionSpec) -> ControlResult<MirrorSessionReport> {
        self.request(|reply| Command::CreateMirror { spec, reply })
    }

    /// See [`Command::ChangeMirror`].
    pub fn change_mirror(
        &self,
        name: &str,
        change: Change<MirrorSessionSpec>,
    ) -> ControlResult<MirrorSessionReport> {
        self.request(|reply| Command::ChangeMirror {
            name: name.to_owned(),
            change,
            reply,
        })
    }

    /// See [`Command::DeleteMirror`].
    pub fn delete_mirror(&self, name: &str) -> ControlResult<MirrorSessionReport> {
        self.request(|reply| Command::DeleteMirror {
            name: name.to_owned(),
            reply,
        })
    }

    /// See [`Command::CreateEndpoint`].
    pub fn create_endpoint(&self, spec: EndpointSpec) -> ControlResult<EndpointReport> {
        self.request(|reply| Command::CreateEndpoint { spec, reply })
    }

    /// See [`Command::ChangeEndpoint`].
    pub fn change_endpoint(
        &self,
        name: &str,
        change: Change<EndpointSpec>,
    ) -> ControlResult<EndpointReport> {
        self.request(|reply| Command::ChangeEndpoint {
            name: name.to_owned(),
            change,
            reply,
        })
    }

    /// See [`Command::ChangeRules`].
    pub fn change_rules(&self, name: &str, change: RulesChange) -> ControlResult<EndpointReport> {
        self.request(|reply| Command::ChangeRules {
            name: name.to_owned(),
            change,
            reply,
        })
    }

    /// See [`Command::DeleteEndpoint`].
    pub fn delete_endpoint(&self, name: &str) -> ControlResult<EndpointReport> {
        self.request(|reply| Command::DeleteEndpoint {
            name: name.to_owned(),
            reply,
        })
    }

    /// See [`Command::Drain`].
    pub fn drain(&self, action: DrainAction) -> ControlResult<DrainReport> {
        self.request(|reply| Command::Drain(action, reply))
    }
}
