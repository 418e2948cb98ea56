//! `vigil-shop-sim`: plays the shop's modules calling each other, instrumented with the
//! OpenTelemetry SDK, so Vigil's tests and demo have realistic traffic.
//!
//! A user request enters the proxy, which calls authentication, cart or checkout; checkout calls
//! inventory, payment and notification. Every module is its own OpenTelemetry service (its own
//! tracer provider and `service.name`), exports OTLP (gRPC or HTTP) and writes JSON log lines
//! with trace ids into `--log-dir`. Latency is simulated: spans carry explicit start and end
//! times, so a thousand requests take well under a second of wall time unless `--rate` paces
//! them. At the end the simulator prints a JSON summary of exactly what it produced (per service
//! and route: requests, errors, requests at or under 300 ms), which tests compare with the SLIs
//! computed downstream.

mod ids;
mod model;
mod otel;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use model::{Shop, Summary};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The shop's modules calling each other, traced with OpenTelemetry."
)]
pub struct Args {
    /// OTLP endpoint, e.g. http://127.0.0.1:4317 (gRPC) or http://127.0.0.1:4318 (HTTP). Without
    /// it nothing is exported (logs and summary only).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport; `auto` picks HTTP for port 4318 and gRPC otherwise.
    #[arg(long, value_enum, default_value = "auto")]
    pub protocol: Protocol,
    /// User requests to simulate, as fast as possible (latency is simulated, not slept).
    #[arg(long, conflicts_with_all = ["rate", "duration"])]
    pub requests: Option<u64>,
    /// Requests per second, paced in real time for `--duration` seconds, or without
    /// `--duration` until SIGTERM or SIGINT (the summary is printed either way).
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, requires = "rate")]
    pub duration: Option<f64>,
    /// The outage switch for demos: while this file exists, the payment gateway refuses every
    /// payment, so every checkout fails (the file is looked at a few times a second).
    #[arg(long)]
    pub outage_file: Option<PathBuf>,
    /// Seed of every random choice (routes, latency, failures).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share (0–1) of checkouts that fail (a downstream fault, HTTP 500).
    #[arg(long, default_value_t = 0.02)]
    pub checkout_failure_rate: f64,
    /// Share (0–1) of requests to the other modules that fail.
    #[arg(long, default_value_t = 0.005)]
    pub failure_rate: f64,
    /// Share (0–1) of checkouts slower than 300 ms (a slow payment gateway).
    #[arg(long, default_value_t = 0.05)]
    pub slow_checkout_rate: f64,
    /// Directory where each module writes `<module>.log` (JSON lines with trace ids).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Also write the summary to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Auto,
    Grpc,
    Http,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for (name, v) in [
        ("--checkout-failure-rate", args.checkout_failure_rate),
        ("--failure-rate", args.failure_rate),
        ("--slow-checkout-rate", args.slow_checkout_rate),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&v), "{name} must be between 0 and 1");
    }
    let total = match (args.requests, args.rate, args.duration) {
        (Some(n), _, _) => n,
        (None, Some(r), Some(d)) => {
            anyhow::ensure!(r > 0.0 && d > 0.0, "--rate and --duration must be positive");
            (r * d).round() as u64
        }
        (None, Some(r), None) => {
            anyhow::ensure!(r > 0.0, "--rate must be positive");
            u64::MAX
        }
        _ => 100,
    };
    // The gRPC exporter needs a Tokio runtime to live in; the HTTP one uses its own thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // SIGTERM / SIGINT end the run between two requests, so spans are flushed and the summary
    // printed (an endless paced run is stopped this way).
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stopping.store(true, Ordering::SeqCst);
    });
    let exporters = otel::Exporters::new(&args, &runtime)?;
    let mut shop = Shop::new(&args, exporters)?;

    let started = Instant::now();
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut flushed = Instant::now();
    for i in 0..total {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if let Some(p) = pace {
            let due = started + p.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // In real time, log lines reach the files while they are fresh.
            if flushed.elapsed() > Duration::from_millis(200) {
                shop.flush_logs();
                flushed = Instant::now();
            }
        }
        shop.user_request()?;
    }
    let summary: Summary = shop.finish()?;
    let text = serde_json::to_string_pretty(&summary)?;
    if let Some(path) = &args.summary {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    drop(runtime);
    Ok(())
}
