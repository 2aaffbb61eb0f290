//! `[control]`: the API and metrics listeners, the API token and the log format.

use super::{invalid, parse_field, Validator};
use crate::config::raw::RawControl;
use crate::config::{ConfigError, Control, Listen};

pub(super) fn validate_control(
    raw: &RawControl,
    v: &mut Validator,
) -> Result<Control, ConfigError> {
    let listen = |field: &str, text: &str| -> Result<Option<Listen>, ConfigError> {
        if text.is_empty() || text == "off" {
            Ok(None)
        } else {
            parse_field(field, text).map(Some)
        }
    };
    let api_listen = listen("control.api_listen", &raw.api_listen)?;
    let metrics_listen = listen("control.metrics_listen", &raw.metrics_listen)?;
    if api_listen.is_some() && api_listen == metrics_listen {
        return Err(invalid(
            "control.metrics_listen",
            "same address as control.api_listen",
        ));
    }
    if let Some(m) = &metrics_listen {
        if !m.is_local() {
            v.warn(
                "control.metrics_listen",
                format!("{m} is not a loopback address or a unix socket: metrics need no token, so anyone who can reach it can read them (bind it to a trusted address)"),
            );
        }
    }
    let api_token = (!raw.api_token.is_empty()).then(|| raw.api_token.clone());
    if let Some(api) = &api_listen {
        if !api.is_local() && api_token.is_none() {
            return Err(invalid(
                "control.api_token",
                format!("required when control.api_listen ({api}) is not a loopback address or a unix socket"),
            ));
        }
    }
    if let Some(token) = &api_token {
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("control.api_token", "must not contain whitespace"));
        }
        if token.len() < 16 {
            v.warn(
                "control.api_token",
                "shorter than 16 characters: easy to guess",
            );
        }
    }
    Ok(Control {
        api_listen,
        api_token,
        metrics_listen,
        log_format: raw.log_format,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn test_control_rules() {
        let ctl = |body: &str| with(&format!("[control]\n{body}"));
        expect_err(
            &ctl("api_listen = \"0.0.0.0:9090\""),
            "control.api_token",
            "required when control.api_listen (0.0.0.0:9090)",
        );
        let c = parse(&ctl(
            "api_listen = \"0.0.0.0:9090\"\napi_token = \"0123456789abcdef\"",
        ));
        assert!(c.warnings().is_empty());
        let c = parse(&ctl("api_listen = \"[::]:9090\"\napi_token = \"short\""));
        assert_eq!(c.warnings()[0].field, "control.api_token");
        expect_err(
            &ctl("api_listen = \"unix:relative.sock\""),
            "control.api_listen",
            "absolute",
        );
        expect_err(
            &ctl("api_listen = \"localhost:80\""),
            "control.api_listen",
            "invalid listen address",
        );
        expect_err(
            &ctl("metrics_listen = \"127.0.0.1:0\""),
            "control.metrics_listen",
            "port 0",
        );
        expect_err(
            &ctl("metrics_listen = \"127.0.0.1:9090\""),
            "control.metrics_listen",
            "same address",
        );
        expect_err(
            &ctl("log_format = \"xml\""),
            "control.log_format",
            "unknown variant",
        );
        let c = parse(&ctl("api_listen = \"off\"\nmetrics_listen = \"\""));
        assert_eq!(
            (
                c.control.api_listen.clone(),
                c.control.metrics_listen.clone()
            ),
            (None, None)
        );
    }
}
