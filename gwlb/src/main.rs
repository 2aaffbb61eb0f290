//! The `gwlb` command: the gateway daemon (`gwlb run`) and its helpers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gwlb::config::Config;
use gwlb::dataplane::run::{run, RunOptions};

/// gwlb: a gateway load balancer. Traffic routed to this node is encapsulated in Geneve
/// (AWS GWLB format) toward one appliance of a pool, chosen by a symmetric Maglev flow hash;
/// what the appliance returns is decapsulated and forwarded unchanged.
#[derive(Debug, Parser)]
#[command(name = "gwlb", version, about, long_about = None)]
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
        /// Extra DPDK EAL arguments, after `--` (appended after the config's eal_args).
        #[arg(last = true, value_name = "EAL_ARGS")]
        eal_args: Vec<String>,
    },
    /// Validate a configuration file and print its warnings; exit 1 if it is invalid.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(short, long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GWLB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(cfg) => {
                for w in cfg.warnings() {
                    eprintln!("warning: {}: {}", w.field, w.message);
                }
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            exit_when_idle_ms,
            duration,
            eal_args,
        } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    // The error names the file itself.
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
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
