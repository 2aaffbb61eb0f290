//! Configurations and helpers shared by the tests of the configuration module: they parse
//! TOML text through the whole load path and check the field an error names.

use super::Config;

pub(super) const MINIMAL: &str = r#"
[[ports]]
name = "eth0"
device = "net_af_packet0,iface=veth0"
role = "both"
address = "10.0.0.1/24"

[[target_groups]]
name = "fw"
[[target_groups.targets]]
address = "10.0.0.10"
mac = "02:00:00:00:00:10"
"#;

pub(super) fn parse(text: &str) -> Config {
    match Config::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Parses `text`, expects an error whose field is `field` and whose message holds `needle`.
pub(super) fn expect_err(text: &str, field: &str, needle: &str) {
    match Config::from_toml_str(text) {
        Ok(_) => panic!("expected an error at {field}"),
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(e.field(), Some(field), "{shown}");
            assert!(shown.starts_with(&format!("{field}: ")), "{shown}");
            assert!(shown.contains(needle), "{shown:?} lacks {needle:?}");
        }
    }
}

/// MINIMAL with `extra` appended (TOML tables may follow in any order).
pub(super) fn with(extra: &str) -> String {
    format!("{MINIMAL}\n{extra}")
}

/// MINIMAL with one `key = value` line added to the first [[ports]] table.
pub(super) fn port_with(line: &str) -> String {
    MINIMAL.replacen("role = \"both\"", &format!("role = \"both\"\n{line}"), 1)
}

/// MINIMAL with one line added to the target group.
pub(super) fn group_with(line: &str) -> String {
    MINIMAL.replacen("name = \"fw\"", &format!("name = \"fw\"\n{line}"), 1)
}

pub(super) const TWO_ARM: &str = r#"
[dataplane]
worker_cpus = [2, 3]

[[ports]]
name = "user"
device = "0000:03:00.0"
role = "user"
address = "10.0.1.1/24"
mtu = 1500

[[ports]]
name = "app"
device = "0000:03:00.1"
role = "appliance"
address = "10.0.2.1/24"
mtu = 9000

[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.1.254"
port = "user"

[[target_groups]]
name = "fw"
[[target_groups.targets]]
address = "10.0.2.11"
mac = "02:00:00:00:02:11"
[[target_groups.targets]]
address = "10.0.2.12"
mac = "02:00:00:00:02:12"
"#;
