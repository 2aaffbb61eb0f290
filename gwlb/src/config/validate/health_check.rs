//! `[target_groups.health_check]`: the probe (TCP, HTTP, a data-path probe or both), its
//! timing and thresholds.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::{invalid, parse_field, ranged};
use crate::config::raw::RawHealthCheck;
use crate::config::{CheckProtocol, ConfigError, DataPathProbe, HealthCheck, Probe, TlsCheck};

/// Largest `tls_ca_file` read (a CA bundle of every public root is about 220 KB).
const MAX_CA_FILE: u64 = 4 << 20;

/// The TLS of an HTTPS check: `tls_*` only with `protocol = "https"`; a CA file that is
/// readable and holds at least one PEM certificate; a server name that is a DNS name or an
/// IP address.
fn validate_tls(raw: &RawHealthCheck, h: &str) -> Result<Option<TlsCheck>, ConfigError> {
    if raw.protocol != CheckProtocol::Https {
        for (name, set) in [
            ("tls_verify", raw.tls_verify),
            ("tls_ca_file", raw.tls_ca_file.is_some()),
            ("tls_server_name", raw.tls_server_name.is_some()),
        ] {
            if set {
                return Err(invalid(
                    format!("{h}.{name}"),
                    "only valid with protocol = \"https\"",
                ));
            }
        }
        return Ok(None);
    }
    if let Some(path) = &raw.tls_ca_file {
        let field = format!("{h}.tls_ca_file");
        if !raw.tls_verify {
            return Err(invalid(field, "only valid with tls_verify = true"));
        }
        ca_file_certificates(path).map_err(|why| invalid(field, format!("{path}: {why}")))?;
    }
    if let Some(name) = &raw.tls_server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(invalid(
                format!("{h}.tls_server_name"),
                format!("{name:?}: expected a DNS name or an IP address"),
            ));
        }
    }
    Ok(Some(TlsCheck {
        verify: raw.tls_verify,
        ca_file: raw.tls_ca_file.as_ref().map(std::path::PathBuf::from),
        server_name: raw.tls_server_name.clone(),
    }))
}

/// How many PEM certificates the CA file `path` holds (at least one), or why it is unusable.
pub(crate) fn ca_file_certificates(path: &str) -> Result<usize, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_CA_FILE {
        return Err(format!("larger than {MAX_CA_FILE} bytes"));
    }
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&text) {
        cert.map_err(|e| format!("not PEM certificates: {e:?}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("no PEM certificate in it".into());
    }
    Ok(n)
}

/// The data-path probe of a check: set by `protocol = "geneve"` or `data_path = true`.
fn validate_data_path(raw: &RawHealthCheck, h: &str) -> Result<Option<DataPathProbe>, ConfigError> {
    let on = raw.data_path || raw.protocol == CheckProtocol::Geneve;
    if !on {
        for (name, v) in [
            ("data_path_source", &raw.data_path_source),
            ("data_path_destination", &raw.data_path_destination),
        ] {
            if v.is_some() {
                return Err(invalid(
                    format!("{h}.{name}"),
                    "only valid with data_path = true or protocol = \"geneve\"",
                ));
            }
        }
        return Ok(None);
    }
    let addr = |name: &str,
                v: &Option<String>,
                default: Ipv4Addr|
     -> Result<Ipv4Addr, ConfigError> {
        let field = format!("{h}.{name}");
        let a: Ipv4Addr = match v {
            Some(text) => parse_field(&field, text)?,
            None => default,
        };
        if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
            return Err(invalid(
                field,
                format!("{a}: expected a unicast IPv4 address the appliance routes (not unspecified, loopback, multicast or broadcast)"),
            ));
        }
        Ok(a)
    };
    let source = addr(
        "data_path_source",
        &raw.data_path_source,
        DataPathProbe::DEFAULT_SOURCE,
    )?;
    let destination = addr(
        "data_path_destination",
        &raw.data_path_destination,
        DataPathProbe::DEFAULT_DESTINATION,
    )?;
    if source == destination {
        return Err(invalid(
            format!("{h}.data_path_destination"),
            format!("{destination} equals data_path_source: the probe must cross the appliance"),
        ));
    }
    Ok(Some(DataPathProbe {
        source,
        destination,
    }))
}

pub(super) fn validate_health_check(
    raw: &RawHealthCheck,
    h: &str,
) -> Result<HealthCheck, ConfigError> {
    let probe = match raw.protocol {
        CheckProtocol::Tcp | CheckProtocol::Geneve => {
            let only = if raw.protocol == CheckProtocol::Tcp {
                "only valid with protocol = \"http\" or \"https\""
            } else {
                "only valid with protocol = \"http\" or \"https\" (protocol = \"geneve\" sends no request)"
            };
            if raw.path.is_some() {
                return Err(invalid(format!("{h}.path"), only));
            }
            if raw.success_codes.is_some() {
                return Err(invalid(format!("{h}.success_codes"), only));
            }
            if raw.protocol == CheckProtocol::Tcp {
                Probe::Tcp
            } else {
                Probe::Geneve
            }
        }
        CheckProtocol::Http | CheckProtocol::Https => {
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
                tls: validate_tls(raw, h)?,
            }
        }
    };
    if !matches!(probe, Probe::Http { tls: Some(_), .. }) {
        validate_tls(raw, h)?;
    }
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
        data_path: validate_data_path(raw, h)?,
        flap_half_life: match raw.flap_damping_half_life_s {
            0 => None,
            s => Some(Duration::from_secs(ranged(
                &format!("{h}.flap_damping_half_life_s"),
                s,
                10..=3600,
            )?)),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::*;
    use crate::config::{DataPathProbe, InitialState, Probe, StatusCodes};

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
            &hc("protocol = \"ftp\""),
            "target_groups[0].health_check.protocol",
            "unknown variant",
        );
        expect_err(
            &hc("tls_verify = true"),
            "target_groups[0].health_check.tls_verify",
            "only valid with protocol = \"https\"",
        );
        expect_err(
            &hc("protocol = \"http\"\ntls_server_name = \"fw.example\""),
            "target_groups[0].health_check.tls_server_name",
            "only valid with protocol = \"https\"",
        );
        expect_err(
            &hc("protocol = \"https\"\ntls_ca_file = \"/etc/hostname\""),
            "target_groups[0].health_check.tls_ca_file",
            "only valid with tls_verify = true",
        );
        expect_err(
            &hc("protocol = \"https\"\ntls_verify = true\ntls_ca_file = \"/nonexistent/ca.pem\""),
            "target_groups[0].health_check.tls_ca_file",
            "/nonexistent/ca.pem: No such file",
        );
        expect_err(
            &hc("protocol = \"https\"\ntls_verify = true\ntls_ca_file = \"/etc/hostname\""),
            "target_groups[0].health_check.tls_ca_file",
            "no PEM certificate",
        );
        expect_err(
            &hc("protocol = \"https\"\ntls_server_name = \"not a name\""),
            "target_groups[0].health_check.tls_server_name",
            "expected a DNS name or an IP address",
        );
        let https = parse(&hc(
            "protocol = \"https\"\ntls_server_name = \"fw1.example\"",
        ));
        assert_eq!(
            https.target_groups[0].health_check.probe,
            Probe::Http {
                path: "/".into(),
                success_codes: StatusCodes(vec![200..=399]),
                tls: Some(crate::config::TlsCheck {
                    verify: false,
                    ca_file: None,
                    server_name: Some("fw1.example".into())
                })
            }
        );
        let again = crate::config::Config::from_toml_str(&https.to_toml_string()).unwrap();
        assert_eq!(again.target_groups, https.target_groups, "round trip");
        expect_err(
            &hc("data_path_source = \"10.9.0.1\""),
            "target_groups[0].health_check.data_path_source",
            "only valid with data_path = true",
        );
        expect_err(
            &hc("data_path = true\ndata_path_destination = \"224.0.0.1\""),
            "target_groups[0].health_check.data_path_destination",
            "unicast",
        );
        expect_err(
            &hc("protocol = \"geneve\"\ndata_path_source = \"fd00::1\""),
            "target_groups[0].health_check.data_path_source",
            "invalid IPv4 address syntax",
        );
        expect_err(
            &hc("data_path = true\ndata_path_source = \"198.18.0.2\""),
            "target_groups[0].health_check.data_path_destination",
            "equals data_path_source",
        );
        expect_err(
            &hc("protocol = \"geneve\"\npath = \"/\""),
            "target_groups[0].health_check.path",
            "sends no request",
        );
        expect_err(
            &hc("flap_damping_half_life_s = 5"),
            "target_groups[0].health_check.flap_damping_half_life_s",
            "out of range 10..=3600",
        );
        let dp = |body: &str| parse(&hc(body)).target_groups[0].health_check.clone();
        assert_eq!(dp("").flap_half_life, None);
        assert_eq!(
            dp("flap_damping_half_life_s = 120").flap_half_life,
            Some(Duration::from_secs(120))
        );
        assert_eq!(dp("").data_path, None);
        let alone = dp("protocol = \"geneve\"");
        assert_eq!(alone.probe, Probe::Geneve);
        assert_eq!(
            alone.data_path,
            Some(DataPathProbe {
                source: DataPathProbe::DEFAULT_SOURCE,
                destination: DataPathProbe::DEFAULT_DESTINATION
            })
        );
        let both =
            dp("protocol = \"http\"\ndata_path = true\ndata_path_destination = \"10.200.0.9\"");
        assert!(matches!(both.probe, Probe::Http { .. }));
        assert_eq!(
            both.data_path.map(|d| (d.source, d.destination)),
            Some((DataPathProbe::DEFAULT_SOURCE, "10.200.0.9".parse().unwrap()))
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
                success_codes: StatusCodes(vec![200..=399]),
                tls: None
            }
        );
        assert_eq!(
            (h.interval, h.timeout),
            (Duration::from_millis(100), Duration::from_millis(50))
        );
    }
}
