//! `vigil-demo`: the README's first command (`scripts/demo.sh` runs it after building). The
//! simulated shop on one machine, watched end to end: the shop's modules export traces and
//! write logs, vigil-agent ships them to CloudWatch, X-Ray and New Relic (moto and a local
//! OTLP stand-in), the watchdog runs as a Lambda on a schedule, a payment outage is injected,
//! the page reaches Slack (a local stand-in) and email (aiosmtpd) once, and when the shop
//! recovers the same Slack message turns "resolved". It ends with a summary and stops
//! everything it started (also on Ctrl-C or an error).

mod lambda;
mod shop_aws;
mod show;
mod stack;
mod stop;
mod story;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The simulated shop watched by Vigil: an injected payment outage paged to Slack and email, then resolved."
)]
pub struct Args {
    /// The short variant the test suite runs: lighter traffic, runs every 5 s, and the outage
    /// lasts only to the end of its minute (about two minutes in all).
    #[arg(long)]
    pub fast: bool,
    /// After the story, keep everything running (for `vigil-agent top`) until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Shop requests per second (default 200; 40 with --fast).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds between the scheduled watchdog runs (default 10; 5 with --fast).
    #[arg(long)]
    pub schedule_secs: Option<u64>,
    /// Port of the agent's API (`/metrics`, read by `vigil-agent top`); 0 = any free port.
    #[arg(long, default_value_t = 9598)]
    pub agent_api_port: u16,
    /// Port of the agent's OTLP/gRPC receiver; 0 = any free port.
    #[arg(long, default_value_t = 4317)]
    pub otlp_port: u16,
    /// Also write the outcome as JSON to this file (the test suite reads it).
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// The Vigil checkout holding examples/shop-demo and watchdog/ (default: the one this
    /// binary was built from).
    #[arg(long)]
    pub root: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    stop::install();
    match story::run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // A signal also reaches helpers in the demo's process group (`cargo lambda invoke`),
        // whose failure is then only a consequence of the interruption.
        Err(e) if e.is::<stop::Interrupted>() || stop::requested() => {
            eprintln!("vigil-demo: interrupted; every process the demo started has been stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("vigil-demo: {e:#}");
            eprintln!("vigil-demo: every process the demo started has been stopped");
            ExitCode::from(1)
        }
    }
}
