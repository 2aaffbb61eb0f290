//! The `gwlb` command: the gateway daemon (`gwlb run`) and its helpers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use gwlb::build_info::BuildInfo;
use gwlb::cli::commands::ClientCommand;
use gwlb::config::{Config, LogFormat};
use gwlb::dataplane::run::{install_signal_handlers, run, RunOptions};

/// gwlb: a gateway load balancer. Traffic routed to this node is encapsulated in Geneve
/// (AWS GWLB format) toward one appliance of a pool, chosen by a symmetric Maglev flow hash;
/// what the appliance returns is decapsulated and forwarded unchanged.
#[derive(Debug, Parser)]
#[command(name = "gwlb", version = version_line(), about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway on DPDK ports until SIGINT/SIGTERM, then print final counters.
    Run {
        /// Configuration file (TOML). See docs/configuration.md.
        #[arg(short, long)]
        config: PathBuf,
        /// Stop once no packet has arrived for this many milliseconds after the first
        /// (offline runs on net_pcap ports).
        #[arg(long, value_name = "MS")]
        exit_when_idle_ms: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
        /// Log format: auto (human on a terminal, JSON otherwise), human or json. Overrides
        /// `[control] log_format`.
        #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
        log_format: Option<LogFormat>,
        /// Extra DPDK EAL arguments, after `--` (appended after the config's eal_args).
        #[arg(last = true, value_name = "EAL_ARGS")]
        eal_args: Vec<String>,
    },
    /// Validate a configuration file and print its warnings; exit 1 if it is invalid.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(short, long)]
        config: PathBuf,
        /// Another node's configuration: say whether both pick the same appliance for every
        /// flow (exit 1 if not, naming the first difference).
        #[arg(long)]
        compare: Option<PathBuf>,
    },
    #[command(flatten)]
    Client(ClientCommand),
    /// Write the man pages and shell completions (bash, zsh, fish) generated from this CLI
    /// into a directory (used by scripts/package.sh).
    #[command(hide = true)]
    GenerateAssets {
        /// Directory to write `man/` and `completions/` into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `gwlb --version`: version, commit and DPDK release, e.g. `0.1.0 (commit 0123456789ab, DPDK
/// 22.11.4)`.
fn version_line() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| BuildInfo::current().line())
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "auto" => Ok(LogFormat::Auto),
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?}: expected auto, human or json")),
    }
}

/// Sets up logging; on failure says why on stderr.
fn init_logging(format: LogFormat) -> Result<(), ExitCode> {
    gwlb::logging::init(format).map_err(|e| {
        eprintln!("gwlb: {e}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::GenerateAssets { out } => {
            match gwlb::cli::assets::write_assets(Cli::command(), &out) {
                Ok(files) => {
                    for f in files {
                        println!("{}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gwlb: writing assets into {}: {e}", out.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Client(command) => {
            if let Err(code) = init_logging(LogFormat::Human) {
                return code;
            }
            command.run()
        }
        Command::CheckConfig { config, compare } => match Config::load(&config) {
            Ok(cfg) => {
                for w in cfg.warnings() {
                    eprintln!("warning: {}: {}", w.field, w.message);
                }
                println!(
                    "{}: ok (choice digest {:#018x})",
                    config.display(),
                    cfg.choice_digest()
                );
                let Some(other) = compare else {
                    return ExitCode::SUCCESS;
                };
                match Config::load(&other) {
                    Ok(o) => match gwlb::config::choice_difference(&cfg, &o) {
                        None => {
                            println!(
                                "{}: ok, picks the same appliances (choice digest {:#018x})",
                                other.display(),
                                o.choice_digest()
                            );
                            ExitCode::SUCCESS
                        }
                        Some((field, a, b)) => {
                            eprintln!(
                                "gwlb: {} and {} pick different appliances: {field}: {a} vs {b}",
                                config.display(),
                                other.display()
                            );
                            ExitCode::FAILURE
                        }
                    },
                    Err(e) => {
                        eprintln!("gwlb: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("gwlb: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            exit_when_idle_ms,
            duration,
            log_format,
            eal_args,
        } => {
            // Signals before anything else: a SIGHUP (systemd's reload) or SIGTERM during
            // startup must not end the process with the default disposition.
            install_signal_handlers();
            // The configuration first: it says how to log.
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("gwlb: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Err(code) = init_logging(log_format.unwrap_or(cfg.control.log_format)) {
                return code;
            }
            for w in cfg.warnings() {
                tracing::warn!("{}: {}", w.field, w.message);
            }
            let opts = RunOptions {
                extra_eal_args: eal_args,
                exit_when_idle: exit_when_idle_ms.map(Duration::from_millis),
                duration: duration.map(Duration::from_secs_f64),
                config_path: Some(config.clone()),
            };
            match run(&cfg, &opts) {
                Ok(report) => {
                    print!("{}", report.render());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gwlb: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
