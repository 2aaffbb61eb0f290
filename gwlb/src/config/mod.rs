//! The daemon's TOML configuration.
//!
//! Loading is two steps, in the smoltcp `Repr` spirit:
//! 1. `toml` deserializes the text into private `Raw*` structs that mirror the file one to
//!    one (`deny_unknown_fields` everywhere, integers as `i64` so that range errors are ours);
//! 2. [`RawConfig::validate`] checks every rule and builds the public [`Config`], which holds
//!    only valid values in their natural types (`std::net` addresses, [`MacAddr`],
//!    [`Ipv4Net`]/[`Ipv6Net`], [`Duration`](std::time::Duration), port references resolved to
//!    indices).
//!
//! Every error names the field it is about as a path (`target_groups[0].health_check.timeout_ms`),
//! including TOML syntax and type errors: the byte span `toml` reports is mapped back to a
//! path through `toml_edit`'s spanned document. Advice that does not make the file invalid
//! (a small Maglev table, an MTU that cannot carry the encapsulation overhead, ...) is
//! collected in [`Config::warnings`].
//!
//! The reference for every field is `docs/configuration.md`; the examples in
//! `gwlb/examples/*.toml` are loaded by the tests (`tests.rs`).
//!
//! # Where things live
//!
//! - `net.rs`: [`MacAddr`], [`Ipv4Net`], [`Ipv6Net`], [`IpNet`]; `values.rs`: [`PciAddr`],
//!   [`Device`], [`Listen`], [`StatusCodes`]. Parsing (`FromStr`) and printing (`Display`).
//! - `model.rs`: the validated [`Config`] and its parts, and the enumerations shared with the
//!   file format.
//! - `raw.rs`: the `Raw*` serde mirror of the file, with the defaults of omitted fields.
//! - `validate/`: `RawConfig` -> [`Config`], one file per table, each with the tests of its
//!   rules.
//! - `serialize.rs`: [`Config`] -> `RawConfig` ([`Config::to_toml_string`],
//!   [`Config::revalidated`]).
//! - `edit.rs`: [`ConfigEdit`], typed live changes (the API's), validated like a file.
//! - `choice.rs`: what decides a flow's appliance, its digest, and where two nodes differ.
//! - `error.rs`: [`ConfigError`], [`ConfigWarning`], TOML error spans -> field paths;
//!   `file.rs`: reading the file ([`MAX_CONFIG_BYTES`]).
//!
//! # Adding a setting
//!
//! A new setting touches five places: its field in the model (`model.rs`, documented), its
//! mirror and default in `raw.rs`, its rules in `validate/` (errors name the field by its file
//! path), its way back in `serialize.rs` (so that `to_toml_string` and `revalidated`
//! round-trip), and a test next to its rule; then `docs/configuration.md`. A new rule on
//! existing settings only touches `validate/` and its tests there.

mod choice;
mod edit;
mod error;
mod file;
pub mod mbufs;
mod model;
mod net;
mod raw;
mod serialize;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use std::path::Path;

pub use choice::choice_difference;
pub use edit::{ConfigEdit, HealthCheckPatch, TargetText};
pub use error::{truncate_text, ConfigError, ConfigWarning, MAX_MESSAGE_LEN};
pub use file::MAX_CONFIG_BYTES;
pub use model::{
    groups_carried_by, Bgp, BgpNeighbor, Chain, CheckProtocol, Config, Control, CopyPoint,
    DataPathProbe, Dataplane, Endpoint, EndpointRoute, HealthCheck, Hugepages, InitialState,
    LogFormat, MempoolDriver, MirrorDirection, MirrorFormat, MirrorSession, Neighbor,
    OnAllUnhealthy, OnBelowMinimum, OnUnhealthy, Port, PortRole, Probe, Route, Rule, RuleAction,
    RuleDirection, Target, TargetGroup, TlsCheck, UnknownNonSyn, MAX_CHAIN,
};
pub use net::{IpNet, Ipv4Net, Ipv6Net, MacAddr, MacParseError, NetParseError};
/// An endpoint in the file's shape: the body of the API's endpoint changes.
pub use raw::RawEndpoint as EndpointSpec;
/// A mirror session in the file's shape: the body of the API's mirror-session changes.
pub use raw::RawMirrorSession as MirrorSessionSpec;
/// A steering rule in the file's shape: the body of the API's rule changes.
pub use raw::RawRule as RuleSpec;
pub use validate::endpoints::{MAX_ENDPOINTS, MAX_RULES};
pub use validate::mirrors::MAX_MIRROR_SESSIONS;
pub use values::{
    Device, Listen, PciAddr, StatusCodes, DEFAULT_API_LISTEN, DEFAULT_METRICS_LISTEN,
};

/// Which header fields pin a flow to an appliance (`"5-tuple"`, `"3-tuple"`, `"2-tuple"`).
pub use crate::flow::Stickiness;

use raw::RawConfig;

impl Config {
    /// Parses and validates a configuration.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| error::toml_error(text, &e))?;
        raw.validate()
    }

    /// Reads, parses and validates a configuration file. Errors name the file, then the field.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let file = path.as_ref();
        let text = file::read_config_file(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text).map_err(|e| ConfigError::InFile {
            file: file.to_owned(),
            inner: Box::new(e),
        })
    }

    /// Validates this configuration again as if it were a file: for a `Config` built or edited
    /// in Rust. It goes through the file format's mirror (`RawConfig::from(self)`, as
    /// [`Config::to_toml_string`] does) and the same validation as [`Config::from_toml_str`],
    /// without TOML text, so errors name fields by their file path
    /// (`target_groups[0].targets[2].weight`) and the warnings are computed afresh (those of
    /// `self` are ignored).
    ///
    /// Port references are indices here: one out of range is refused naming its field
    /// (`routes[0].port`). Values the file cannot express are cut as `to_toml_string` cuts
    /// them (sub-second parts of the `_s` durations, sub-millisecond parts of health-check
    /// times, sub-microsecond parts of `tx_flush`; an empty `api_token` becomes `None`), so
    /// the result can differ from `self`: compare the two to detect it. An unchanged valid
    /// configuration comes back equal.
    pub fn revalidated(&self) -> Result<Config, ConfigError> {
        validate::check_port_indices(self)?;
        RawConfig::from(self).validate()
    }
}
