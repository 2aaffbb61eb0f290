//! The `gwlb` subcommands that talk to a running gateway through its control API
//! (`gwlb targets`, `gwlb register`, ...): argument definitions and what each one prints.
//! Tables by default, the API's JSON with `--json`; errors on stderr and exit status 1.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::client::{ApiClient, ClientError};
use super::tables;
use crate::config::{Config, Listen, DEFAULT_API_LISTEN};
use crate::control::{DrainAction, FlowInfo, FlowPage, FlowQuery, HealthCheckPatch, TargetSpec};

/// Where the API is and how to print.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Address of the control API: IP:PORT or unix:/PATH. Default: `control.api_listen` of
    /// --config, else 127.0.0.1:9090.
    #[arg(long, env = "GWLB_API", value_name = "ADDR")]
    pub api: Option<Listen>,
    /// Bearer token of the API. Default: `control.api_token` of --config.
    #[arg(
        long,
        env = "GWLB_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Take the API address and token from this configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Health-check settings to change; those left out keep their value.
#[derive(Debug, Clone, Default, Args)]
pub struct HealthCheckArgs {
    /// Probes on or off.
    #[arg(long, value_name = "BOOL")]
    pub enabled: Option<bool>,
    /// `tcp`, `http`, `https` or `geneve` (a data-path probe alone).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Also send a data-path probe through the appliance with each TCP or HTTP check.
    #[arg(long, value_name = "BOOL")]
    pub data_path: Option<bool>,
    /// Inner source address of data-path probes.
    #[arg(long, value_name = "IPV4")]
    pub data_path_source: Option<String>,
    /// Inner destination address of data-path probes (one the appliance forwards).
    #[arg(long, value_name = "IPV4")]
    pub data_path_destination: Option<String>,
    /// Flap damping's half-life in seconds (0: off).
    #[arg(long, value_name = "S")]
    pub flap_damping_half_life_s: Option<u64>,
    /// HTTPS: verify the appliance's certificate.
    #[arg(long, value_name = "BOOL")]
    pub tls_verify: Option<bool>,
    /// HTTPS: the CA bundle (PEM) certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<String>,
    /// HTTPS: the name the certificate must carry (and the SNI).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Destination port of the probes.
    #[arg(long)]
    pub port: Option<u16>,
    /// HTTP path.
    #[arg(long)]
    pub path: Option<String>,
    /// Accepted HTTP status codes (`200`, `200-299`, `200,301`).
    #[arg(long, value_name = "CODES")]
    pub success_codes: Option<String>,
    /// Milliseconds between probes.
    #[arg(long, value_name = "MS")]
    pub interval_ms: Option<u64>,
    /// Milliseconds a probe may take.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Successes that make a target healthy.
    #[arg(long, value_name = "N")]
    pub healthy_threshold: Option<u8>,
    /// Failures that make a target unhealthy.
    #[arg(long, value_name = "N")]
    pub unhealthy_threshold: Option<u8>,
    /// `initial` (no new flows until the checks pass) or `healthy`: the state of targets
    /// registered from now on.
    #[arg(long, value_name = "STATE")]
    pub initial_state: Option<String>,
}

impl From<HealthCheckArgs> for HealthCheckPatch {
    fn from(a: HealthCheckArgs) -> Self {
        HealthCheckPatch {
            enabled: a.enabled,
            protocol: a.protocol,
            data_path: a.data_path,
            data_path_source: a.data_path_source,
            data_path_destination: a.data_path_destination,
            flap_damping_half_life_s: a.flap_damping_half_life_s,
            tls_verify: a.tls_verify,
            tls_ca_file: a.tls_ca_file,
            tls_server_name: a.tls_server_name,
            port: a.port,
            path: a.path,
            success_codes: a.success_codes,
            interval_ms: a.interval_ms,
            timeout_ms: a.timeout_ms,
            healthy_threshold: a.healthy_threshold,
            unhealthy_threshold: a.unhealthy_threshold,
            initial_state: a.initial_state,
        }
    }
}

/// Subcommands that talk to a running gateway.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// List targets with their health and the reason, counters and check latency.
    Targets {
        #[command(flatten)]
        opts: ClientOpts,
        /// Only this target group.
        group: Option<String>,
    },
    /// List target groups with healthy/unhealthy counts and health-check settings.
    Groups {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Register a target (appliance) in a target group.
    Register {
        #[command(flatten)]
        opts: ClientOpts,
        /// Target group.
        group: String,
        /// The appliance's address.
        address: IpAddr,
        /// Weight, 0..=1000 (default: the gateway's default).
        #[arg(long)]
        weight: Option<u16>,
        /// Port name the appliance is reached on (default: the one whose subnet holds it).
        #[arg(long)]
        port: Option<String>,
        /// Static MAC address (default: learned).
        #[arg(long)]
        mac: Option<String>,
    },
    /// Deregister a target: it takes no new flows and drains for the deregistration delay.
    Deregister {
        #[command(flatten)]
        opts: ClientOpts,
        /// Target group.
        group: String,
        /// The target's address.
        address: IpAddr,
    },
    /// Change a target's weight (new flows only).
    Weight {
        #[command(flatten)]
        opts: ClientOpts,
        /// Target group.
        group: String,
        /// The target's address.
        address: IpAddr,
        /// New weight, 0..=1000.
        weight: u16,
    },
    /// Show a target group's health check, or change the settings given.
    HealthCheck {
        #[command(flatten)]
        opts: ClientOpts,
        /// Target group.
        group: String,
        #[command(flatten)]
        settings: Box<HealthCheckArgs>,
    },
    /// Counters per worker and in total, drops by reason.
    Stats {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List flows (one page, or --all).
    Flows {
        #[command(flatten)]
        opts: ClientOpts,
        /// Only flows steered to this appliance.
        #[arg(long)]
        appliance: Option<IpAddr>,
        /// Only flows with this address at either end.
        #[arg(long)]
        address: Option<IpAddr>,
        /// Only flows with this port at either end.
        #[arg(long)]
        port: Option<u16>,
        /// Only flows of this target group.
        #[arg(long)]
        group: Option<String>,
        /// Flows per page (1..=10000; default 100).
        #[arg(long)]
        limit: Option<usize>,
        /// Continue after a previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Fetch every page.
        #[arg(long)]
        all: bool,
    },
    /// Reload the configuration file (as SIGHUP does) and print what changed.
    Reload {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Endpoints and their steering rules: list, show, add, set, delete, rules, delete-rule
    /// (live; a reload puts back the file's).
    Endpoints {
        #[command(subcommand)]
        action: EndpointAction,
    },
    /// Mirror sessions: list, show, add, set, delete (live; a reload puts back the file's).
    Mirror {
        #[command(subcommand)]
        action: MirrorAction,
    },
    /// Drain this node: withdraw its BGP announcement and keep forwarding the flows that
    /// still arrive; prints the drain's state (`drained` once no flow is left or the longest
    /// deregistration delay passed).
    Drain {
        /// Stop draining: announce again when the node can serve.
        #[arg(long, conflicts_with = "status")]
        resume: bool,
        /// Only print the drain's state.
        #[arg(long)]
        status: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `gwlb mirror ...`: the mirror sessions of the running gateway.
#[derive(Debug, Clone, Subcommand)]
pub enum MirrorAction {
    /// List the sessions with their counters (the MIRROR table of `gwlb stats`).
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show one session (with --json: also its settings in the file's shape).
    Show {
        #[command(flatten)]
        opts: ClientOpts,
        /// The session's name.
        name: String,
    },
    /// Create a session from BODY, a `[[mirror_sessions]]` entry as a JSON object
    /// (`{"name": "ids", "target_group": "sensors", "vni": 100}`), `@FILE` or `-` (stdin).
    Add {
        #[command(flatten)]
        opts: ClientOpts,
        /// The session, in the file's shape.
        body: String,
    },
    /// Change the settings BODY names (`{"sample_one_in": 4}`, `@FILE` or `-`); the others
    /// keep their value. With --replace, BODY is the whole session (defaults for what it
    /// leaves out).
    Set {
        #[command(flatten)]
        opts: ClientOpts,
        /// The session's name.
        name: String,
        /// The settings, in the file's shape.
        body: String,
        /// BODY is the whole session (`PUT`), not a change of some settings (`PATCH`).
        #[arg(long)]
        replace: bool,
    },
    /// Remove a session; prints its last counters.
    Delete {
        #[command(flatten)]
        opts: ClientOpts,
        /// The session's name.
        name: String,
    },
}

/// `gwlb endpoints ...`: the endpoints (tenants) and their steering rules.
#[derive(Debug, Clone, Subcommand)]
pub enum EndpointAction {
    /// List the endpoints with their rules and counters (the ENDPOINT table of `gwlb stats`).
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show one endpoint (with --json: also its settings in the file's shape).
    Show {
        #[command(flatten)]
        opts: ClientOpts,
        /// The endpoint's name.
        name: String,
    },
    /// Create an endpoint from BODY, an `[[endpoints]]` entry (with its `routes` and `rules`)
    /// as a JSON object, `@FILE` or `-` (stdin).
    Add {
        #[command(flatten)]
        opts: ClientOpts,
        /// The endpoint, in the file's shape.
        body: String,
    },
    /// Change the settings BODY names (`{"default_action": "bypass", "target_group": null}`);
    /// the others keep their value. With --replace, BODY is the whole endpoint.
    Set {
        #[command(flatten)]
        opts: ClientOpts,
        /// The endpoint's name.
        name: String,
        /// The settings, in the file's shape.
        body: String,
        /// BODY is the whole endpoint (`PUT`), not a change of some settings (`PATCH`).
        #[arg(long)]
        replace: bool,
    },
    /// Remove an endpoint; prints its last counters.
    Delete {
        #[command(flatten)]
        opts: ClientOpts,
        /// The endpoint's name.
        name: String,
    },
    /// Replace the endpoint's rules with BODY, a JSON array of `[[endpoints.rules]]` entries
    /// in order (`[]`: none); with --append, BODY is one rule, added after the others.
    Rules {
        #[command(flatten)]
        opts: ClientOpts,
        /// The endpoint's name.
        name: String,
        /// The rules (or, with --append, the rule), in the file's shape.
        body: String,
        /// Add BODY, one rule, after the others.
        #[arg(long)]
        append: bool,
    },
    /// Remove one rule of the endpoint.
    DeleteRule {
        #[command(flatten)]
        opts: ClientOpts,
        /// The endpoint's name.
        name: String,
        /// The rule's name.
        rule: String,
    },
}

impl EndpointAction {
    fn execute(self, out: &mut dyn Write) -> Result<(), CliError> {
        let (opts, e) = match self {
            EndpointAction::List { opts } => {
                let e = opts.client()?.endpoints()?;
                return print(out, opts.json, &e, || tables::endpoints(&e));
            }
            EndpointAction::Show { opts, name } => {
                let e = opts.client()?.get_endpoint(&name)?;
                (opts, e)
            }
            EndpointAction::Add { opts, body } => {
                let body = json_body(&body)?;
                let e = opts.client()?.create_endpoint(&body)?;
                (opts, e)
            }
            EndpointAction::Set {
                opts,
                name,
                body,
                replace,
            } => {
                let body = json_body(&body)?;
                let e = opts.client()?.change_endpoint(&name, &body, replace)?;
                (opts, e)
            }
            EndpointAction::Delete { opts, name } => {
                let e = opts.client()?.delete_endpoint(&name)?;
                (opts, e)
            }
            EndpointAction::Rules {
                opts,
                name,
                body,
                append,
            } => {
                let body = if append {
                    json_body(&body)?
                } else {
                    json_list(&body)?
                };
                let e = opts.client()?.change_rules(&name, &body, append)?;
                (opts, e)
            }
            EndpointAction::DeleteRule { opts, name, rule } => {
                let e = opts.client()?.delete_rule(&name, &rule)?;
                (opts, e)
            }
        };
        print(out, opts.json, &e, || {
            tables::endpoints(std::slice::from_ref(&e))
        })
    }
}

/// A JSON array given on the command line: the array itself, `@FILE` or `-` (stdin).
fn json_list(arg: &str) -> Result<serde_json::Value, CliError> {
    match json_value(arg)? {
        v @ serde_json::Value::Array(_) => Ok(v),
        _ => Err(CliError::Body("expected a JSON array".into())),
    }
}

/// A JSON body given on the command line: the object itself, `@FILE` or `-` (stdin).
fn json_body(arg: &str) -> Result<serde_json::Value, CliError> {
    match json_value(arg)? {
        v @ serde_json::Value::Object(_) => Ok(v),
        _ => Err(CliError::Body("expected a JSON object".into())),
    }
}

/// JSON given on the command line: itself, `@FILE` or `-` (stdin).
fn json_value(arg: &str) -> Result<serde_json::Value, CliError> {
    let text = match arg {
        "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::Body(format!("reading stdin: {e}")))?,
        _ => match arg.strip_prefix('@') {
            Some(file) => {
                std::fs::read_to_string(file).map_err(|e| CliError::Body(format!("{file}: {e}")))?
            }
            None => arg.to_owned(),
        },
    };
    serde_json::from_str(&text).map_err(|e| CliError::Body(format!("not JSON: {e}")))
}

impl MirrorAction {
    fn execute(self, out: &mut dyn Write) -> Result<(), CliError> {
        match self {
            MirrorAction::List { opts } => {
                let m = opts.client()?.mirror_sessions()?;
                print(out, opts.json, &m, || tables::mirror_sessions(&m))
            }
            MirrorAction::Show { opts, name } => {
                let m = opts.client()?.mirror_session(&name)?;
                print(out, opts.json, &m, || {
                    tables::mirror_sessions(std::slice::from_ref(&m))
                })
            }
            MirrorAction::Add { opts, body } => {
                let body = json_body(&body)?;
                let m = opts.client()?.create_mirror(&body)?;
                print(out, opts.json, &m, || {
                    tables::mirror_sessions(std::slice::from_ref(&m))
                })
            }
            MirrorAction::Set {
                opts,
                name,
                body,
                replace,
            } => {
                let body = json_body(&body)?;
                let m = opts.client()?.change_mirror(&name, &body, replace)?;
                print(out, opts.json, &m, || {
                    tables::mirror_sessions(std::slice::from_ref(&m))
                })
            }
            MirrorAction::Delete { opts, name } => {
                let m = opts.client()?.delete_mirror(&name)?;
                print(out, opts.json, &m, || {
                    tables::mirror_sessions(std::slice::from_ref(&m))
                })
            }
        }
    }
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration file given with --config is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The configuration turns the API off.
    #[error("{}: control.api_listen is \"off\"; give --api", .0.display())]
    ApiOff(PathBuf),
    /// The request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// A request body given on the command line is not a JSON object.
    #[error("body: {0}")]
    Body(String),
}

impl ClientOpts {
    /// The client these options describe: --api / GWLB_API, else the config's
    /// `api_listen`, else the default; --token / GWLB_API_TOKEN, else the config's token.
    pub fn client(&self) -> Result<ApiClient, CliError> {
        let config = self.config.as_ref().map(Config::load).transpose()?;
        let endpoint = match (&self.api, &config) {
            (Some(api), _) => api.clone(),
            (None, Some(c)) => c
                .control
                .api_listen
                .clone()
                .ok_or_else(|| CliError::ApiOff(self.config.clone().unwrap_or_default()))?,
            (None, None) => DEFAULT_API_LISTEN
                .parse()
                .unwrap_or_else(|_| Listen::Tcp(([127, 0, 0, 1], 9090).into())),
        };
        let token = self
            .token
            .clone()
            .or_else(|| config.and_then(|c| c.control.api_token));
        Ok(ApiClient::new(endpoint, token))
    }
}

impl ClientCommand {
    /// Runs the command, printing to stdout; errors go to stderr as `gwlb: ...`.
    pub fn run(self) -> ExitCode {
        let mut stdout = std::io::stdout().lock();
        match self.execute(&mut stdout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gwlb: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs the command, printing to `out`.
    pub fn execute(self, out: &mut dyn Write) -> Result<(), CliError> {
        match self {
            ClientCommand::Targets { opts, group } => {
                let client = opts.client()?;
                let groups = match &group {
                    Some(g) => vec![client.group(g)?],
                    None => client.list_groups()?,
                };
                print(out, opts.json, &groups, || tables::targets(&groups))
            }
            ClientCommand::Groups { opts } => {
                let groups = opts.client()?.list_groups()?;
                print(out, opts.json, &groups, || tables::groups(&groups))
            }
            ClientCommand::Register {
                opts,
                group,
                address,
                weight,
                port,
                mac,
            } => {
                let spec = TargetSpec {
                    address,
                    weight,
                    port,
                    mac,
                };
                let t = opts.client()?.register(&group, &spec)?;
                print(out, opts.json, &t, || tables::target(&t))
            }
            ClientCommand::Deregister {
                opts,
                group,
                address,
            } => {
                let t = opts.client()?.deregister(&group, address)?;
                print(out, opts.json, &t, || tables::target(&t))
            }
            ClientCommand::Weight {
                opts,
                group,
                address,
                weight,
            } => {
                let t = opts.client()?.set_weight(&group, address, weight)?;
                print(out, opts.json, &t, || tables::target(&t))
            }
            ClientCommand::HealthCheck {
                opts,
                group,
                settings,
            } => {
                let client = opts.client()?;
                let patch = HealthCheckPatch::from(*settings);
                let g = if patch == HealthCheckPatch::default() {
                    client.group(&group)?
                } else {
                    client.set_health_check(&group, &patch)?
                };
                print(out, opts.json, &g.health_check, || {
                    tables::health_check(&g.name, &g.health_check)
                })
            }
            ClientCommand::Stats { opts } => {
                let s = opts.client()?.stats()?;
                print(out, opts.json, &s, || tables::stats(&s))
            }
            ClientCommand::Flows {
                opts,
                appliance,
                address,
                port,
                group,
                limit,
                cursor,
                all,
            } => {
                let client = opts.client()?;
                let mut query = FlowQuery {
                    group,
                    appliance,
                    address,
                    port,
                    cursor,
                    limit,
                };
                let mut flows: Vec<FlowInfo> = Vec::new();
                let next_cursor = loop {
                    let page = client.flows(&query)?;
                    flows.extend(page.flows);
                    match page.next_cursor {
                        Some(next) if all => query.cursor = Some(next),
                        next => break next,
                    }
                };
                if let Some(next) = &next_cursor {
                    eprintln!("more flows: add --cursor {next} for the next page, or --all");
                }
                let page = FlowPage { flows, next_cursor };
                print(out, opts.json, &page, || tables::flows(&page.flows))
            }
            ClientCommand::Reload { opts } => {
                let r = opts.client()?.reload()?;
                print(out, opts.json, &r, || tables::reload(&r))
            }
            ClientCommand::Drain {
                resume,
                status,
                opts,
            } => {
                let action = match (resume, status) {
                    (true, _) => DrainAction::Stop,
                    (_, true) => DrainAction::Status,
                    _ => DrainAction::Start,
                };
                let r = opts.client()?.drain(action)?;
                print(out, opts.json, &r, || tables::drain(&r))
            }
            ClientCommand::Mirror { action } => action.execute(out),
            ClientCommand::Endpoints { action } => action.execute(out),
        }
    }
}

fn print<T: Serialize>(
    out: &mut dyn Write,
    json: bool,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
        writeln!(out, "{text}")?;
    } else {
        out.write_all(table().as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_default_endpoint_is_config_default() {
        let opts = ClientOpts {
            api: None,
            token: None,
            config: None,
            json: false,
        };
        let c = opts.client().unwrap();
        assert_eq!(c.endpoint().to_string(), DEFAULT_API_LISTEN);
    }

    #[test]
    fn test_config_file_gives_endpoint_and_token() {
        let dir = std::env::temp_dir().join(format!("gwlb-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gwlb.toml");
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/one-arm.toml"
        ))
        .unwrap();
        std::fs::write(
            &path,
            format!("{example}\n[control]\napi_listen = \"unix:/run/gwlb-test/api.sock\"\n"),
        )
        .unwrap();
        let mut opts = ClientOpts {
            api: None,
            token: None,
            config: Some(path.clone()),
            json: false,
        };
        assert_eq!(
            opts.client().unwrap().endpoint().to_string(),
            "unix:/run/gwlb-test/api.sock"
        );
        opts.api = Some("127.0.0.1:7".parse().unwrap());
        assert_eq!(opts.client().unwrap().endpoint().to_string(), "127.0.0.1:7");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
