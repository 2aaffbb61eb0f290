//! The file format: serde structs that mirror the TOML file one to one (`deny_unknown_fields`
//! everywhere, integers as `i64` so that range errors are ours), and the defaults of the
//! fields a file may leave out. Private to the configuration module.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    CheckProtocol, CopyPoint, Hugepages, InitialState, LogFormat, MempoolDriver, MirrorDirection,
    MirrorFormat, OnAllUnhealthy, OnBelowMinimum, OnUnhealthy, PortRole, RuleDirection,
    UnknownNonSyn, DEFAULT_API_LISTEN, DEFAULT_METRICS_LISTEN,
};
use crate::flow::Stickiness;

/// A u64 written as a TOML integer (TOML integers are signed 64-bit) or as a string,
/// decimal or `0x` hexadecimal, for values above `i64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct U64Value(pub(super) u64);

impl<'de> Deserialize<'de> for U64Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = U64Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned 64-bit integer, or a string like \"0x1234abcd\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<U64Value, E> {
                u64::try_from(v)
                    .map(U64Value)
                    .map_err(|_| E::custom(format!("{v} is negative; expected 0..=2^64-1")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<U64Value, E> {
                Ok(U64Value(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<U64Value, E> {
                let t = v.replace('_', "");
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => t.parse(),
                };
                parsed.map(U64Value).map_err(|_| {
                    E::custom(format!(
                        "{v:?} is not a 64-bit unsigned integer (decimal or 0x hexadecimal)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for U64Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(self.0) {
            Ok(v) => s.serialize_i64(v),
            Err(_) => s.serialize_str(&format!("{:#x}", self.0)),
        }
    }
}

/// One string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct OneOrMany(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(OneOrMany(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for OneOrMany {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) dataplane: RawDataplane,
    #[serde(default)]
    pub(super) ports: Vec<RawPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) neighbors: Vec<RawNeighbor>,
    #[serde(default)]
    pub(super) target_groups: Vec<RawTargetGroup>,
    #[serde(default)]
    pub(super) control: RawControl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) bgp: Option<RawBgp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) mirror_sessions: Vec<RawMirrorSession>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) endpoints: Vec<RawEndpoint>,
}

/// An endpoint as the file writes it (`[[endpoints]]`), and as the API takes it
/// (`POST /v1/endpoints`, `PUT /v1/endpoints/{name}`): one schema for both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub(super) name: String,
    pub(super) ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) vlan: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) prefixes: Vec<String>,
    #[serde(default = "default_inspect")]
    pub(super) default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) target_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tcp_reset: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) endpoint_id: Option<U64Value>,
    #[serde(default)]
    pub(super) attachment_id: U64Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) geneve_vni: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) routes: Vec<RawEndpointRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) rules: Vec<RawRule>,
}

impl RawEndpoint {
    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl RawRule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn default_inspect() -> String {
    "inspect".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpointRoute {
    pub(super) prefix: String,
    pub(super) via: String,
    pub(super) mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) port: Option<String>,
}

/// A steering rule as the file writes it (`[[endpoints.rules]]`), and as the API takes it
/// (`PUT` and `POST /v1/endpoints/{name}/rules`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub(super) name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) destinations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) protocols: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) source_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) destination_ports: Vec<String>,
    #[serde(default)]
    pub(super) direction: RuleDirection,
    pub(super) action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) target_group: Option<String>,
    /// The groups of a `chain`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) chain: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tcp_reset: Option<bool>,
}

/// A mirror session as the file writes it (`[[mirror_sessions]]`), and as the API takes it
/// (`POST /v1/mirror-sessions`, `PUT /v1/mirror-sessions/{name}`): one schema for both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirrorSession {
    pub(super) name: String,
    pub(super) target_group: String,
    #[serde(default)]
    pub(super) format: MirrorFormat,
    #[serde(default = "default_one")]
    pub(super) vni: i64,
    #[serde(default = "default_one")]
    pub(super) sample_one_in: i64,
    #[serde(default)]
    pub(super) snap_length: i64,
    #[serde(default)]
    pub(super) copy_point: CopyPoint,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) user_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) protocols: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) l4_ports: Vec<String>,
    #[serde(default)]
    pub(super) direction: MirrorDirection,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) rules: Vec<String>,
}

impl RawMirrorSession {
    /// The session's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn default_one() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    #[serde(default = "default_bird")]
    pub(super) bird: String,
    #[serde(default = "default_bgp_state_dir")]
    pub(super) state_dir: String,
    pub(super) local_as: i64,
    pub(super) router_id: String,
    pub(super) prefixes: Vec<String>,
    #[serde(default)]
    pub(super) neighbors: Vec<RawBgpNeighbor>,
    #[serde(default = "default_true")]
    pub(super) bfd: bool,
    #[serde(default = "default_bfd_interval_ms")]
    pub(super) bfd_interval_ms: i64,
    #[serde(default = "default_bfd_multiplier")]
    pub(super) bfd_multiplier: i64,
    #[serde(default = "default_hold_time_s")]
    pub(super) hold_time_s: i64,
    #[serde(default = "default_stall_timeout_ms")]
    pub(super) stall_timeout_ms: i64,
    #[serde(default = "default_true")]
    pub(super) accept_unseen_returns: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) cluster_addresses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgpNeighbor {
    pub(super) address: String,
    pub(super) remote_as: i64,
}

fn default_bird() -> String {
    "/usr/sbin/bird".into()
}
fn default_bgp_state_dir() -> String {
    "/run/gwlb/bgp".into()
}
fn default_bfd_interval_ms() -> i64 {
    100
}
fn default_bfd_multiplier() -> i64 {
    3
}
fn default_hold_time_s() -> i64 {
    9
}
fn default_stall_timeout_ms() -> i64 {
    1000
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDataplane {
    pub(super) worker_cpus: Vec<i64>,
    pub(super) main_cpu: i64,
    pub(super) hugepages: Hugepages,
    pub(super) memory_mb: i64,
    pub(super) eal_args: Vec<String>,
    pub(super) burst_size: i64,
    pub(super) tx_flush_us: i64,
    pub(super) idle_sleep_us: i64,
    pub(super) idle_after_us: i64,
    pub(super) icmp_errors_per_s: i64,
    pub(super) mbufs_per_worker: i64,
    pub(super) mempool: MempoolDriver,
    pub(super) flow_table_capacity: i64,
    pub(super) flow_hash_seed: U64Value,
    pub(super) stats_interval_s: i64,
}

impl Default for RawDataplane {
    fn default() -> Self {
        RawDataplane {
            worker_cpus: vec![1],
            main_cpu: 0,
            hugepages: Hugepages::Auto,
            memory_mb: 512,
            eal_args: Vec::new(),
            burst_size: 32,
            tx_flush_us: 100,
            idle_sleep_us: 50,
            idle_after_us: 200,
            icmp_errors_per_s: 100,
            mbufs_per_worker: 8192,
            mempool: MempoolDriver::default(),
            flow_table_capacity: 1 << 20,
            flow_hash_seed: U64Value(0),
            stats_interval_s: 0,
        }
    }
}

fn default_mtu() -> i64 {
    1500
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
    pub(super) name: String,
    pub(super) device: String,
    pub(super) role: PortRole,
    pub(super) address: OneOrMany,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) mac: Option<String>,
    #[serde(default = "default_mtu")]
    pub(super) mtu: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rx_queues: Option<i64>,
    #[serde(default)]
    pub(super) tx_queues: i64,
    #[serde(default = "default_true")]
    pub(super) promiscuous: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kernel_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) appliance_gateways: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) via: Option<String>,
    pub(super) port: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbor {
    pub(super) address: String,
    pub(super) mac: String,
    pub(super) port: String,
}

fn default_dereg() -> i64 {
    300
}
fn default_tcp_idle() -> i64 {
    350
}
fn default_other_idle() -> i64 {
    120
}
fn default_maglev() -> i64 {
    65537
}
fn default_ttl() -> i64 {
    64
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTargetGroup {
    pub(super) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) user_ports: Option<Vec<String>>,
    #[serde(default)]
    pub(super) stickiness: Stickiness,
    #[serde(default)]
    pub(super) on_unhealthy: OnUnhealthy,
    #[serde(default)]
    pub(super) on_all_unhealthy: OnAllUnhealthy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) failover_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) on_below_minimum: Option<OnBelowMinimum>,
    #[serde(default = "default_min_healthy")]
    pub(super) min_healthy_targets: i64,
    #[serde(default)]
    pub(super) min_healthy_percent: i64,
    #[serde(default = "default_dereg")]
    pub(super) deregistration_delay_s: i64,
    #[serde(default = "default_tcp_idle")]
    pub(super) tcp_idle_timeout_s: i64,
    #[serde(default = "default_other_idle")]
    pub(super) other_idle_timeout_s: i64,
    #[serde(default)]
    pub(super) tcp_rst_on_drop: bool,
    #[serde(default)]
    pub(super) tcp_unknown_non_syn: UnknownNonSyn,
    #[serde(default)]
    pub(super) tcp_reuse_after_idle_s: i64,
    #[serde(default)]
    pub(super) require_flow_cookie: bool,
    #[serde(default = "default_maglev")]
    pub(super) maglev_table_size: i64,
    #[serde(default)]
    pub(super) geneve_vni: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) endpoint_id: Option<U64Value>,
    #[serde(default)]
    pub(super) attachment_id: U64Value,
    #[serde(default = "default_ttl")]
    pub(super) outer_ttl: i64,
    #[serde(default)]
    pub(super) health_check: RawHealthCheck,
    #[serde(default)]
    pub(super) targets: Vec<RawTarget>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHealthCheck {
    pub(super) enabled: bool,
    pub(super) protocol: CheckProtocol,
    pub(super) port: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) path: Option<String>,
    pub(super) interval_ms: i64,
    pub(super) timeout_ms: i64,
    pub(super) healthy_threshold: i64,
    pub(super) unhealthy_threshold: i64,
    pub(super) initial_state: InitialState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) success_codes: Option<String>,
    pub(super) jitter_percent: i64,
    pub(super) data_path: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data_path_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data_path_destination: Option<String>,
    pub(super) flap_damping_half_life_s: i64,
    pub(super) tls_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tls_ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tls_server_name: Option<String>,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck {
            enabled: true,
            protocol: CheckProtocol::Tcp,
            port: 80,
            path: None,
            interval_ms: 10_000,
            timeout_ms: 5_000,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            initial_state: InitialState::Initial,
            success_codes: None,
            jitter_percent: 10,
            data_path: false,
            data_path_source: None,
            data_path_destination: None,
            flap_damping_half_life_s: 0,
            tls_verify: false,
            tls_ca_file: None,
            tls_server_name: None,
        }
    }
}

fn default_min_healthy() -> i64 {
    1
}

pub(super) fn default_weight() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) address: String,
    #[serde(default = "default_weight")]
    pub(super) weight: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) port: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawControl {
    pub(super) api_listen: String,
    pub(super) api_token: String,
    pub(super) metrics_listen: String,
    pub(super) log_format: LogFormat,
}

impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            api_listen: DEFAULT_API_LISTEN.to_owned(),
            api_token: String::new(),
            metrics_listen: DEFAULT_METRICS_LISTEN.to_owned(),
            log_format: LogFormat::Auto,
        }
    }
}
