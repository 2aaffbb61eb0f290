//! Typed live changes to a running configuration: [`ConfigEdit`] changes the file format's
//! mirror (`RawConfig`, as a file would have it) and validates the result exactly like a file,
//! so every error names its field by its file path (`target_groups[0].targets[2].weight`).
//! The control loop makes every API change through it; nothing goes through TOML text.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::invalid;
use super::raw::{default_weight, RawConfig, RawEndpoint, RawMirrorSession, RawRule, RawTarget};
use super::{CheckProtocol, Config, ConfigError, InitialState};

/// A change to a target group's health check: the fields to set (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckPatch {
    /// Probes on/off.
    pub enabled: Option<bool>,
    /// `tcp`, `http`, `https` or `geneve`.
    pub protocol: Option<String>,
    /// Send a data-path probe through the appliance with each check.
    pub data_path: Option<bool>,
    /// Inner source address of the data-path probe.
    pub data_path_source: Option<String>,
    /// Inner destination address of the data-path probe.
    pub data_path_destination: Option<String>,
    /// Flap damping's half-life in seconds (0: off).
    pub flap_damping_half_life_s: Option<u64>,
    /// HTTPS: verify the appliance's certificate.
    pub tls_verify: Option<bool>,
    /// HTTPS: the CA bundle (PEM) certificates must chain to.
    pub tls_ca_file: Option<String>,
    /// HTTPS: the name the certificate must carry (and the SNI).
    pub tls_server_name: Option<String>,
    /// Destination port.
    pub port: Option<u16>,
    /// HTTP path.
    pub path: Option<String>,
    /// Accepted HTTP status codes (`200`, `200-299`, `200,301`).
    pub success_codes: Option<String>,
    /// Milliseconds between probes.
    pub interval_ms: Option<u64>,
    /// Milliseconds a probe may take.
    pub timeout_ms: Option<u64>,
    /// Successes that make a target healthy.
    pub healthy_threshold: Option<u8>,
    /// Failures that make a target unhealthy.
    pub unhealthy_threshold: Option<u8>,
    /// `initial` or `healthy`: the state of targets registered from now on.
    pub initial_state: Option<String>,
}

/// A target as an operator writes it (the file's `[[target_groups.targets]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetText {
    /// Its address.
    pub address: String,
    /// Its weight (`None`: the file's default).
    pub weight: Option<u16>,
    /// Its port's name (`None`: the appliance-facing port whose subnet holds the address).
    pub port: Option<String>,
    /// Its static MAC (`None`: learned).
    pub mac: Option<String>,
}

/// A change being made to a configuration; [`ConfigEdit::finish`] validates it.
#[derive(Debug, Clone)]
pub struct ConfigEdit {
    raw: RawConfig,
}

impl Config {
    /// Starts a change to this configuration.
    pub fn edit(&self) -> ConfigEdit {
        ConfigEdit {
            raw: RawConfig::from(self),
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl ConfigEdit {
    /// Appends a target to group `group` (an index of `target_groups`; out of range: no
    /// change, and [`ConfigEdit::finish`] validates what is there).
    pub fn add_target(&mut self, group: usize, t: TargetText) -> &mut Self {
        if let Some(g) = self.raw.target_groups.get_mut(group) {
            g.targets.push(RawTarget {
                address: t.address,
                weight: t.weight.map_or_else(default_weight, i64::from),
                mac: t.mac,
                port: t.port,
            });
        }
        self
    }

    /// Removes target `index` of group `group` (out of range: no change).
    pub fn remove_target(&mut self, group: usize, index: usize) -> &mut Self {
        if let Some(g) = self.raw.target_groups.get_mut(group) {
            if index < g.targets.len() {
                g.targets.remove(index);
            }
        }
        self
    }

    /// Sets the weight of target `index` of group `group` (out of range: no change).
    pub fn set_weight(&mut self, group: usize, index: usize, weight: u16) -> &mut Self {
        if let Some(t) = self
            .raw
            .target_groups
            .get_mut(group)
            .and_then(|g| g.targets.get_mut(index))
        {
            t.weight = i64::from(weight);
        }
        self
    }

    /// Applies `p` to group `group`'s health check. A protocol that is not `tcp`, `http`,
    /// `https` or `geneve`, or an initial state that is neither `initial` nor `healthy`, is refused here,
    /// naming `target_groups[g].health_check.protocol` (`.initial_state`).
    pub fn patch_health_check(
        &mut self,
        group: usize,
        p: &HealthCheckPatch,
    ) -> Result<&mut Self, ConfigError> {
        let Some(g) = self.raw.target_groups.get_mut(group) else {
            return Ok(self);
        };
        let hc = &mut g.health_check;
        if let Some(proto) = &p.protocol {
            use serde::de::value::{Error, StrDeserializer};
            hc.protocol = CheckProtocol::deserialize(StrDeserializer::<Error>::new(proto))
                .map_err(|e| {
                    invalid(
                        format!("target_groups[{group}].health_check.protocol"),
                        e.to_string(),
                    )
                })?;
        }
        if let Some(state) = &p.initial_state {
            use serde::de::value::{Error, StrDeserializer};
            hc.initial_state = InitialState::deserialize(StrDeserializer::<Error>::new(state))
                .map_err(|e| {
                    invalid(
                        format!("target_groups[{group}].health_check.initial_state"),
                        e.to_string(),
                    )
                })?;
        }
        if let Some(v) = p.enabled {
            hc.enabled = v;
        }
        if let Some(v) = p.data_path {
            hc.data_path = v;
        }
        if let Some(v) = &p.data_path_source {
            hc.data_path_source = Some(v.clone());
        }
        if let Some(v) = &p.data_path_destination {
            hc.data_path_destination = Some(v.clone());
        }
        if let Some(v) = p.flap_damping_half_life_s {
            hc.flap_damping_half_life_s = clamp(v);
        }
        if let Some(v) = p.tls_verify {
            hc.tls_verify = v;
        }
        if let Some(v) = &p.tls_ca_file {
            hc.tls_ca_file = Some(v.clone());
        }
        if let Some(v) = &p.tls_server_name {
            hc.tls_server_name = Some(v.clone());
        }
        if let Some(v) = p.port {
            hc.port = v.into();
        }
        if let Some(v) = &p.path {
            hc.path = Some(v.clone());
        }
        if let Some(v) = &p.success_codes {
            hc.success_codes = Some(v.clone());
        }
        if let Some(v) = p.interval_ms {
            hc.interval_ms = clamp(v);
        }
        if let Some(v) = p.timeout_ms {
            hc.timeout_ms = clamp(v);
        }
        if let Some(v) = p.healthy_threshold {
            hc.healthy_threshold = v.into();
        }
        if let Some(v) = p.unhealthy_threshold {
            hc.unhealthy_threshold = v.into();
        }
        Ok(self)
    }

    /// Appends mirror session `s` (validated by [`ConfigEdit::finish`], as
    /// `mirror_sessions[N]`).
    pub fn add_mirror_session(&mut self, s: RawMirrorSession) -> &mut Self {
        self.raw.mirror_sessions.push(s);
        self
    }

    /// Replaces mirror session `index` with `s`, in its place (out of range: no change).
    pub fn set_mirror_session(&mut self, index: usize, s: RawMirrorSession) -> &mut Self {
        set_at(&mut self.raw.mirror_sessions, index, s);
        self
    }

    /// Sets the fields of mirror session `index` that `patch` (a JSON object in the file's
    /// shape) names; the others keep their value. A field of the wrong type, or unknown, is
    /// refused here, naming `mirror_sessions[index].FIELD`.
    pub fn patch_mirror_session(
        &mut self,
        index: usize,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<&mut Self, ConfigError> {
        if let Some(m) = self.raw.mirror_sessions.get_mut(index) {
            *m = merged(m, patch, &format!("mirror_sessions[{index}]"))?;
        }
        Ok(self)
    }

    /// Removes mirror session `index` (out of range: no change).
    pub fn remove_mirror_session(&mut self, index: usize) -> &mut Self {
        remove_at(&mut self.raw.mirror_sessions, index);
        self
    }

    /// Appends endpoint `e` (validated by [`ConfigEdit::finish`], as `endpoints[N]`).
    pub fn add_endpoint(&mut self, e: RawEndpoint) -> &mut Self {
        self.raw.endpoints.push(e);
        self
    }

    /// Replaces endpoint `index` with `e`, in its place (out of range: no change).
    pub fn set_endpoint(&mut self, index: usize, e: RawEndpoint) -> &mut Self {
        set_at(&mut self.raw.endpoints, index, e);
        self
    }

    /// Sets the fields of endpoint `index` that `patch` names (as
    /// [`ConfigEdit::patch_mirror_session`]; `rules` and `routes` given replace the lists).
    pub fn patch_endpoint(
        &mut self,
        index: usize,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<&mut Self, ConfigError> {
        if let Some(e) = self.raw.endpoints.get_mut(index) {
            *e = merged(e, patch, &format!("endpoints[{index}]"))?;
        }
        Ok(self)
    }

    /// Removes endpoint `index` (out of range: no change).
    pub fn remove_endpoint(&mut self, index: usize) -> &mut Self {
        remove_at(&mut self.raw.endpoints, index);
        self
    }

    /// Replaces the rules of endpoint `index` (out of range: no change).
    pub fn set_rules(&mut self, index: usize, rules: Vec<RawRule>) -> &mut Self {
        if let Some(e) = self.raw.endpoints.get_mut(index) {
            e.rules = rules;
        }
        self
    }

    /// Appends `rule` to the rules of endpoint `index` (out of range: no change).
    pub fn add_rule(&mut self, index: usize, rule: RawRule) -> &mut Self {
        if let Some(e) = self.raw.endpoints.get_mut(index) {
            e.rules.push(rule);
        }
        self
    }

    /// Removes rule `rule` of endpoint `index` (out of range: no change).
    pub fn remove_rule(&mut self, index: usize, rule: usize) -> &mut Self {
        if let Some(e) = self.raw.endpoints.get_mut(index) {
            remove_at(&mut e.rules, rule);
        }
        self
    }

    /// Validates the changed configuration exactly like a file.
    pub fn finish(&self) -> Result<Config, ConfigError> {
        self.raw.clone().validate()
    }
}

/// Replaces `v[i]` with `x` (out of range: no change).
fn set_at<T>(v: &mut [T], i: usize, x: T) {
    if let Some(slot) = v.get_mut(i) {
        *slot = x;
    }
}

/// Removes `v[i]` (out of range: no change).
fn remove_at<T>(v: &mut Vec<T>, i: usize) {
    if i < v.len() {
        v.remove(i);
    }
}

/// `current` with the top-level fields of `patch` replaced (a JSON merge of one level: a list
/// given replaces the whole list), read back through the file's serde mirror so that types
/// and unknown fields are checked as a file's are; errors name `{at}.FIELD`.
fn merged<T: Serialize + DeserializeOwned>(
    current: &T,
    patch: &serde_json::Map<String, serde_json::Value>,
    at: &str,
) -> Result<T, ConfigError> {
    let mut value = serde_json::to_value(current)
        .map_err(|e| invalid(at.to_owned(), format!("cannot be written as JSON: {e}")))?;
    if let serde_json::Value::Object(fields) = &mut value {
        for (k, v) in patch {
            fields.insert(k.clone(), v.clone());
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let field = if path == "." {
            // An unknown or missing field is reported at its parent: name it from the message.
            message
                .split('`')
                .nth(1)
                .map_or_else(|| at.to_owned(), |f| format!("{at}.{f}"))
        } else {
            format!("{at}.{path}")
        };
        invalid(field, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
[[target_groups]]
name = "fw"
[target_groups.health_check]
protocol = "http"
path = "/healthz"
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
"#;

    fn target(addr: &str, weight: Option<u16>, mac: Option<&str>) -> TargetText {
        TargetText {
            address: addr.into(),
            weight,
            port: None,
            mac: mac.map(Into::into),
        }
    }

    fn field(r: Result<Config, ConfigError>) -> String {
        r.unwrap_err().field().unwrap_or_default().to_owned()
    }

    #[test]
    fn edits_are_validated_like_a_file_and_name_the_field() {
        let cfg = Config::from_toml_str(CONFIG).unwrap();
        assert_eq!(
            cfg.edit().finish().unwrap(),
            cfg,
            "no change: the same config"
        );

        let mut e = cfg.edit();
        e.add_target(0, target("10.0.0.12", Some(5), Some("02:00:00:00:00:0c")));
        let c = e.finish().unwrap();
        assert_eq!(c.target_groups[0].targets[1].weight, 5);
        let mut e = cfg.edit();
        e.add_target(0, target("10.0.0.12", None, Some("02:00:00:00:00:0c")));
        assert_eq!(e.finish().unwrap().target_groups[0].targets[1].weight, 1);

        let mut e = cfg.edit();
        e.add_target(
            0,
            target("10.0.0.12", Some(1001), Some("02:00:00:00:00:0c")),
        );
        assert_eq!(field(e.finish()), "target_groups[0].targets[1].weight");
        let mut e = cfg.edit();
        e.add_target(0, target("10.0.0.11", None, Some("02:00:00:00:00:0c")));
        assert_eq!(field(e.finish()), "target_groups[0].targets[1].address");
        let mut e = cfg.edit();
        e.add_target(0, target("10.0.0.12", None, None));
        assert_eq!(field(e.finish()), "target_groups[0].targets[1].mac");
        let mut e = cfg.edit();
        e.add_target(0, target("10.0.0.12", None, Some("ff:ff:ff:ff:ff:ff")));
        assert_eq!(field(e.finish()), "target_groups[0].targets[1].mac");

        let mut e = cfg.edit();
        e.set_weight(0, 0, 0);
        assert_eq!(e.finish().unwrap().target_groups[0].targets[0].weight, 0);
        let mut e = cfg.edit();
        e.remove_target(0, 0);
        assert!(e.finish().unwrap().target_groups[0].targets.is_empty());
    }

    #[test]
    fn health_check_patches() {
        let cfg = Config::from_toml_str(CONFIG).unwrap();
        let mut e = cfg.edit();
        e.patch_health_check(
            0,
            &HealthCheckPatch {
                interval_ms: Some(8000),
                healthy_threshold: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        let hc = &e.finish().unwrap().target_groups[0].health_check;
        assert_eq!(
            (hc.interval, hc.healthy_threshold),
            (std::time::Duration::from_secs(8), 5)
        );
        let mut e = cfg.edit();
        let err = e
            .patch_health_check(
                0,
                &HealthCheckPatch {
                    protocol: Some("icmp".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(
            err.field(),
            Some("target_groups[0].health_check.protocol"),
            "{err}"
        );
        let mut e = cfg.edit();
        let err = e
            .patch_health_check(
                0,
                &HealthCheckPatch {
                    initial_state: Some("unhealthy".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(
            err.field(),
            Some("target_groups[0].health_check.initial_state"),
            "{err}"
        );
        let mut e = cfg.edit();
        e.patch_health_check(
            0,
            &HealthCheckPatch {
                initial_state: Some("healthy".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            e.finish().unwrap().target_groups[0]
                .health_check
                .initial_state,
            InitialState::Healthy
        );
        // tcp with the http path still set: the file's rule.
        let mut e = cfg.edit();
        e.patch_health_check(
            0,
            &HealthCheckPatch {
                protocol: Some("tcp".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(field(e.finish()), "target_groups[0].health_check.path");
        let mut e = cfg.edit();
        e.patch_health_check(
            0,
            &HealthCheckPatch {
                interval_ms: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            field(e.finish()),
            "target_groups[0].health_check.interval_ms"
        );
    }

    const MIRRORS: &str = r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
[[target_groups]]
name = "fw"
user_ports = ["p"]
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
[[target_groups]]
name = "sensors"
user_ports = []
[[target_groups.targets]]
address = "10.0.0.50"
mac = "02:00:00:00:00:32"
[[mirror_sessions]]
name = "a"
target_group = "sensors"
l4_ports = ["80"]
[[mirror_sessions]]
name = "b"
target_group = "sensors"
sample_one_in = 4
"#;

    fn object(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn mirror_session_edits_take_the_file_shape() {
        let cfg = Config::from_toml_str(MIRRORS).unwrap();
        let spec = cfg.mirror_session_spec(1).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["sample_one_in"], 4);
        assert_eq!(json["format"], "vxlan", "defaults filled in: {json}");
        assert_eq!(cfg.mirror_session_spec(2), None);

        // A patch changes only what it names.
        let mut e = cfg.edit();
        e.patch_mirror_session(
            1,
            &object(serde_json::json!({"sample_one_in": 2, "vni": 7})),
        )
        .unwrap();
        let c = e.finish().unwrap();
        assert_eq!(
            (c.mirror_sessions[1].sample_one_in, c.mirror_sessions[1].vni),
            (2, 7)
        );
        assert_eq!(c.mirror_sessions[1].name, "b");
        assert_eq!(c.mirror_sessions[0], cfg.mirror_sessions[0]);

        // Errors name the session's own field, wherever they are found.
        let patched = |patch: serde_json::Value| {
            let mut e = cfg.edit();
            match e.patch_mirror_session(1, &object(patch)) {
                Err(err) => err.field().unwrap_or_default().to_owned(),
                Ok(_) => e
                    .finish()
                    .unwrap_err()
                    .field()
                    .unwrap_or_default()
                    .to_owned(),
            }
        };
        assert_eq!(
            patched(serde_json::json!({"sample_one_in": 0})),
            "mirror_sessions[1].sample_one_in"
        );
        assert_eq!(
            patched(serde_json::json!({"sample_one_in": "x"})),
            "mirror_sessions[1].sample_one_in"
        );
        assert_eq!(
            patched(serde_json::json!({"sampel": 1})),
            "mirror_sessions[1].sampel"
        );
        assert_eq!(
            patched(serde_json::json!({"format": "gre"})),
            "mirror_sessions[1].format"
        );
        assert_eq!(
            patched(serde_json::json!({"target_group": "fw"})),
            "mirror_sessions[1].target_group"
        );
        assert_eq!(
            patched(serde_json::json!({"name": "a"})),
            "mirror_sessions[1].name"
        );

        let mut e = cfg.edit();
        e.add_mirror_session(spec.clone());
        assert_eq!(
            field(e.finish()),
            "mirror_sessions[2].name",
            "a second \"b\""
        );
        let mut e = cfg.edit();
        e.remove_mirror_session(0)
            .add_mirror_session(cfg.mirror_session_spec(0).unwrap());
        let c = e.finish().unwrap();
        let names: Vec<&str> = c.mirror_sessions.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        let mut e = cfg.edit();
        e.set_mirror_session(0, spec);
        assert_eq!(field(e.finish()), "mirror_sessions[1].name");
    }

    #[test]
    fn endpoint_and_rule_edits_take_the_file_shape() {
        let text = MIRRORS.replace("user_ports = [\"p\"]", "user_ports = []")
            + r#"
[[endpoints]]
name = "t"
ports = ["p"]
target_group = "fw"
[[endpoints.rules]]
name = "web"
protocols = [6]
destination_ports = ["80"]
action = "bypass"
"#;
        let cfg = Config::from_toml_str(&text).unwrap();
        let spec = cfg.endpoint_spec(0).unwrap();
        assert_eq!(cfg.endpoint_spec(1), None);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["rules"][0]["name"], "web");
        let rule: RawRule = serde_json::from_value(json["rules"][0].clone()).unwrap();

        let mut e = cfg.edit();
        e.add_rule(0, rule.clone());
        let err = e.finish().unwrap_err();
        assert_eq!(err.field(), Some("endpoints[0].rules[1].name"), "{err}");
        let mut e = cfg.edit();
        e.set_rules(0, vec![]);
        assert!(e.finish().unwrap().endpoints[0].rules.is_empty());
        let mut e = cfg.edit();
        e.remove_rule(0, 0).add_rule(0, rule);
        assert_eq!(e.finish().unwrap(), cfg, "removed and added back: the same");

        let mut e = cfg.edit();
        e.patch_endpoint(0, &object(serde_json::json!({"vlan": [5]})))
            .unwrap();
        let err = e.finish().unwrap_err();
        assert_eq!(
            err.field(),
            Some("endpoints[0].routes"),
            "tagged needs routes: {err}"
        );
        let mut e = cfg.edit();
        let err = e
            .patch_endpoint(0, &object(serde_json::json!({"vlan": "5"})))
            .unwrap_err();
        assert_eq!(err.field(), Some("endpoints[0].vlan"), "{err}");
        let mut e = cfg.edit();
        e.patch_endpoint(
            0,
            &object(serde_json::json!({"default_action": "bypass", "target_group": null})),
        )
        .unwrap();
        assert_eq!(
            e.finish().unwrap().endpoints[0].default_action,
            crate::config::RuleAction::Bypass
        );
        let mut e = cfg.edit();
        e.remove_endpoint(0).add_endpoint(spec.clone());
        assert_eq!(e.finish().unwrap(), cfg);
        let mut e = cfg.edit();
        e.add_endpoint(spec);
        assert_eq!(field(e.finish()), "endpoints[1].name");
    }
}
