//! Log output: structured events from `tracing`, written to stderr as human-readable lines
//! on a terminal or one JSON object per line otherwise (`[control] log_format`, or
//! `gwlb run --log-format`). The level filter comes from `GWLB_LOG` (`info` by default;
//! e.g. `GWLB_LOG=gwlb::health=debug,info`).

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Environment variable holding the filter directives.
pub const FILTER_ENV: &str = "GWLB_LOG";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `GWLB_LOG` is not a valid filter.
    #[error("{FILTER_ENV}: {0}")]
    Filter(String),
    /// A global subscriber was already installed.
    #[error("logging is already set up: {0}")]
    AlreadySet(String),
}

/// `format` with `auto` resolved: `human` when stderr is a terminal, `json` otherwise.
pub fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Human,
        LogFormat::Auto => LogFormat::Json,
        f => f,
    }
}

/// Installs the global subscriber writing to stderr in `format`.
pub fn init(format: LogFormat) -> Result<(), LoggingError> {
    let filter = match std::env::var(FILTER_ENV) {
        Ok(directives) => tracing_subscriber::EnvFilter::try_new(&directives)
            .map_err(|e| LoggingError::Filter(format!("{directives:?}: {e}")))?,
        Err(_) => tracing_subscriber::EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match resolve(format) {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        _ => builder.try_init(),
    };
    installed.map_err(|e| LoggingError::AlreadySet(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_explicit_formats_stay() {
        assert_eq!(resolve(LogFormat::Json), LogFormat::Json);
        assert_eq!(resolve(LogFormat::Human), LogFormat::Human);
        assert_ne!(resolve(LogFormat::Auto), LogFormat::Auto);
    }
}
