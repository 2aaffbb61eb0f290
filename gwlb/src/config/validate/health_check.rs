//! `[target_groups.health_check]`: the probe (TCP or HTTP), its timing and thresholds.

use std::time::Duration;

use super::{invalid, parse_field, ranged};
use crate::config::raw::RawHealthCheck;
use crate::config::{CheckProtocol, ConfigError, HealthCheck, Probe};

pub(super) fn validate_health_check(
    raw: &RawHealthCheck,
    h: &str,
) -> Result<HealthCheck, ConfigError> {
    let probe = match raw.protocol {
        CheckProtocol::Tcp => {
            if raw.path.is_some() {
                return Err(invalid(
                    format!("{h}.path"),
                    "only valid with protocol = \"http\"",
                ));
            }
            if raw.success_codes.is_some() {
                return Err(invalid(
                    format!("{h}.success_codes"),
                    "only valid with protocol = \"http\"",
                ));
            }
            Probe::Tcp
        }
        CheckProtocol::Http => {
            let path = raw.path.clone().unwrap_or_else(|| "/".to_owned());
            let ok = path.starts_with('/')
                && path.len() <= 1024
                && path.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(invalid(
                    format!("{h}.path"),
                    format!("{path:?}: expected an absolute path starting with '/', printable ASCII without spaces, at most 1024 bytes"),
                ));
            }
            let codes = raw.success_codes.as_deref().unwrap_or("200-399");
            let success_codes = parse_field(&format!("{h}.success_codes"), codes)?;
            Probe::Http {
                path,
                success_codes,
            }
        }
    };
    let interval_ms: u64 = ranged(&format!("{h}.interval_ms"), raw.interval_ms, 100..=300_000)?;
    let timeout_ms: u64 = ranged(&format!("{h}.timeout_ms"), raw.timeout_ms, 50..=120_000)?;
    if timeout_ms >= interval_ms {
        return Err(invalid(
            format!("{h}.timeout_ms"),
            format!("{timeout_ms} must be less than interval_ms ({interval_ms})"),
        ));
    }
    Ok(HealthCheck {
        enabled: raw.enabled,
        probe,
        port: ranged(&format!("{h}.port"), raw.port, 1..=65535)?,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        healthy_threshold: ranged(
            &format!("{h}.healthy_threshold"),
            raw.healthy_threshold,
            2..=10,
        )?,
        unhealthy_threshold: ranged(
            &format!("{h}.unhealthy_threshold"),
            raw.unhealthy_threshold,
            2..=10,
        )?,
        initial_state: raw.initial_state,
        jitter_percent: ranged(&format!("{h}.jitter_percent"), raw.jitter_percent, 0..=50)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::*;
    use crate::config::{InitialState, Probe, StatusCodes};

    #[test]
    fn test_health_check_rules() {
        let hc = |body: &str| with(&format!("[target_groups.health_check]\n{body}"));
        expect_err(
            &hc("interval_ms = 50"),
            "target_groups[0].health_check.interval_ms",
            "50 is out of range 100..=300000",
        );
        expect_err(
            &hc("timeout_ms = 10"),
            "target_groups[0].health_check.timeout_ms",
            "out of range 50..=120000",
        );
        expect_err(
            &hc("interval_ms = 1000\ntimeout_ms = 1000"),
            "target_groups[0].health_check.timeout_ms",
            "less than interval_ms (1000)",
        );
        expect_err(
            &hc("healthy_threshold = 1"),
            "target_groups[0].health_check.healthy_threshold",
            "out of range 2..=10",
        );
        expect_err(
            &hc("unhealthy_threshold = 11"),
            "target_groups[0].health_check.unhealthy_threshold",
            "out of range 2..=10",
        );
        expect_err(
            &hc("jitter_percent = 51"),
            "target_groups[0].health_check.jitter_percent",
            "out of range 0..=50",
        );
        expect_err(
            &hc("port = 0"),
            "target_groups[0].health_check.port",
            "out of range 1..=65535",
        );
        expect_err(
            &hc("path = \"/x\""),
            "target_groups[0].health_check.path",
            "only valid with protocol = \"http\"",
        );
        expect_err(
            &hc("success_codes = \"200\""),
            "target_groups[0].health_check.success_codes",
            "only valid",
        );
        expect_err(
            &hc("protocol = \"http\"\npath = \"x\""),
            "target_groups[0].health_check.path",
            "starting with '/'",
        );
        expect_err(
            &hc("protocol = \"http\"\npath = \"/a b\""),
            "target_groups[0].health_check.path",
            "without spaces",
        );
        expect_err(
            &hc("protocol = \"http\"\nsuccess_codes = \"99\""),
            "target_groups[0].health_check.success_codes",
            "100..=599",
        );
        expect_err(
            &hc("protocol = \"http\"\nsuccess_codes = \"300-200\""),
            "target_groups[0].health_check.success_codes",
            "empty",
        );
        expect_err(
            &hc("initial_state = \"unhealthy\""),
            "target_groups[0].health_check.initial_state",
            "unknown variant `unhealthy`, expected `initial` or `healthy`",
        );
        expect_err(
            &hc("initial_state = 1"),
            "target_groups[0].health_check.initial_state",
            "",
        );
        assert_eq!(
            parse(&hc("initial_state = \"healthy\"")).target_groups[0]
                .health_check
                .initial_state,
            InitialState::Healthy
        );
        expect_err(
            &hc("protocol = \"https\""),
            "target_groups[0].health_check.protocol",
            "unknown variant",
        );
        let c = parse(&hc(
            "protocol = \"http\"\ninterval_ms = 100\ntimeout_ms = 50\nenabled = false",
        ));
        let h = &c.target_groups[0].health_check;
        assert!(!h.enabled);
        assert_eq!(
            h.probe,
            Probe::Http {
                path: "/".into(),
                success_codes: StatusCodes(vec![200..=399])
            }
        );
        assert_eq!(
            (h.interval, h.timeout),
            (Duration::from_millis(100), Duration::from_millis(50))
        );
    }
}
