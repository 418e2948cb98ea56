//! The `vigil-agent` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vigil_common::logging::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "vigil-agent",
    version,
    about = "Ships logs, metrics and traces to CloudWatch and New Relic without losing what it accepted."
)]
struct Cli {
    /// Log format on stderr (`VIGIL_LOG` sets the level, e.g. `debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "VIGIL_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline described by a config file until SIGTERM or Ctrl-C; SIGHUP re-reads
    /// the config and applies it if it is valid.
    Run {
        #[arg(
            long,
            short,
            env = "VIGIL_AGENT_CONFIG",
            default_value = "/etc/vigil/agent.toml"
        )]
        config: PathBuf,
        /// On shutdown, how long to keep delivering what is queued before exiting (what is
        /// left was never acknowledged, so it is read again on the next start).
        #[arg(long, default_value_t = 10_000)]
        drain_timeout_ms: u64,
    },
    /// Check a config file and report every problem with its file, line and key.
    Validate {
        #[arg(
            long,
            short,
            env = "VIGIL_AGENT_CONFIG",
            default_value = "/etc/vigil/agent.toml"
        )]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Validate { config } => match vigil_agent::config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} sources, {} processors, {} sinks)",
                    config.display(),
                    c.sources.len(),
                    c.processors.len(),
                    c.sinks.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{} problem(s) found", errors.0.len());
                ExitCode::from(2)
            }
        },
        Command::Run {
            config,
            drain_timeout_ms,
        } => {
            let loaded = match vigil_agent::config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the runtime");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(async {
                tracing::info!(config = %config.display(), version = env!("CARGO_PKG_VERSION"), "vigil-agent starting");
                let drain = Duration::from_millis(drain_timeout_ms);
                let result = vigil_agent::supervisor::run(config, loaded, drain).await;
                vigil_agent::telemetry::log_summary();
                result
            });
            match result {
                Ok(()) => {
                    tracing::info!("vigil-agent stopped");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "vigil-agent failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
