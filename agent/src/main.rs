//! The `vigil-agent` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
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

/// `--config FILE`, for every command that reads the agent's config.
#[derive(clap::Args)]
struct ConfigFile {
    #[arg(
        long,
        short,
        env = "VIGIL_AGENT_CONFIG",
        default_value = "/etc/vigil/agent.toml"
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline described by a config file until SIGTERM or Ctrl-C; SIGHUP re-reads
    /// the config and applies it if it is valid.
    Run {
        #[command(flatten)]
        config: ConfigFile,
        /// On shutdown, how long to keep delivering what is queued before exiting (what is
        /// left is in a disk buffer, or was never acknowledged and is read again on the next
        /// start). Overrides the config's `drain_timeout_ms` (default 10,000).
        #[arg(long)]
        drain_timeout_ms: Option<u64>,
    },
    /// A live view of a running agent, from its metrics endpoint: events per second in and out
    /// of every component, errors, retries, drops, disk buffer size and file lag.
    Top {
        /// The agent's metrics endpoint (`[api] address` in its config).
        #[arg(long, default_value = "http://127.0.0.1:9598/metrics")]
        url: String,
        /// Time between readings.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Print one table (two readings one interval apart) and exit, for scripts.
        #[arg(long)]
        once: bool,
    },
    /// Print the least-privilege IAM policy (JSON) the config needs: log groups from their
    /// name templates, metric namespaces, X-Ray, the SSM parameters named.
    IamPolicy {
        #[command(flatten)]
        config: ConfigFile,
        /// Region in the ARNs (`*`: any).
        #[arg(long, default_value = "*")]
        region: String,
        /// Account id in the ARNs (`*`: any).
        #[arg(long, default_value = "*")]
        account_id: String,
        /// ARN partition (`aws-cn`, `aws-us-gov`).
        #[arg(long, default_value = "aws")]
        partition: String,
    },
    /// Check a config file and report every problem with its file, line and key.
    Validate {
        #[command(flatten)]
        config: ConfigFile,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Validate { config } => validate(&config.config),
        Command::IamPolicy {
            config,
            region,
            account_id,
            partition,
        } => iam_policy(
            &config.config,
            vigil_agent::iam_policy::Scope {
                partition,
                region,
                account: account_id,
            },
        ),
        Command::Top {
            url,
            interval_ms,
            once,
        } => top(&url, interval_ms, once),
        Command::Run {
            config,
            drain_timeout_ms,
        } => run(config.config, drain_timeout_ms),
    }
}

/// `vigil-agent validate`: every problem with its place, exit status 2 if any.
fn validate(config: &Path) -> ExitCode {
    match vigil_agent::config::load(config) {
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
    }
}

fn iam_policy(config: &Path, scope: vigil_agent::iam_policy::Scope) -> ExitCode {
    let loaded = match vigil_agent::config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    match vigil_agent::iam_policy::policy(&loaded, &scope) {
        Ok(policy) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&policy).expect("a JSON value serialises")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            ExitCode::FAILURE
        }
    }
}

fn top(url: &str, interval_ms: u64, once: bool) -> ExitCode {
    let interval = Duration::from_millis(interval_ms.max(100));
    let result = if once {
        vigil_agent::top::once(url, interval).map(|table| print!("{table}"))
    } else {
        vigil_agent::top::live(url, interval)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-agent top: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `vigil-agent run`: the pipeline under the supervisor, with the agent's endpoint beside it.
fn run(config: PathBuf, drain_timeout_ms: Option<u64>) -> ExitCode {
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
    let drain_timeout_ms = drain_timeout_ms.unwrap_or(loaded.drain_timeout_ms);
    let result = runtime.block_on(async {
        tracing::info!(config = %config.display(), version = env!("CARGO_PKG_VERSION"), "vigil-agent starting");
        // The endpoint outlives the pipelines (reloads, drains) so `/ready` can be watched
        // throughout; its address is read once, at start.
        let api_stop = CancellationToken::new();
        let api = vigil_agent::api::serve(&loaded.api, api_stop.clone()).await;
        let drain = Duration::from_millis(drain_timeout_ms);
        let result = vigil_agent::supervisor::run(config, loaded, drain).await;
        api_stop.cancel();
        if let Some(api) = api {
            let _ = api.await;
        }
        vigil_agent::telemetry::log_summary();
        result
    });
    // Tasks still running after the drain timeout (a sink retrying a down backend)
    // are abandoned: what they held is on disk or was never acknowledged.
    runtime.shutdown_timeout(Duration::from_millis(500));
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

/// jemalloc, with the options below: against glibc's allocator (even with its trim and mmap
/// thresholds fixed) it took about 10 % less CPU in the end-to-end burst and 4–5 MiB less peak
/// RSS, in alternating runs (ARCHITECTURE.md, "Performance"). Out of the box it kept more.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads these when it starts, before `main`:
/// - one arena: the agent has two worker threads and a few blocking ones, and one arena's free
///   pages serve them all instead of each thread's arena keeping its own (the threads' small
///   caches remain, so they rarely meet on its lock);
/// - freed pages go back to the system after 100 ms (not 10 s), in one step (`muzzy_decay_ms:0`
///   skips the stage where they stay mapped), so a burst's batches do not stay resident.
///
/// `_RJEM_MALLOC_CONF` in the environment still overrides them.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: JemallocOptions =
    JemallocOptions(c"narenas:1,dirty_decay_ms:100,muzzy_decay_ms:0".as_ptr());

/// The `const char *` jemalloc looks for.
#[repr(transparent)]
struct JemallocOptions(*const std::ffi::c_char);

// SAFETY: it points at a constant string that nothing writes.
unsafe impl Sync for JemallocOptions {}
