//! `vigil-watchdog`: checks desired state and SLOs and decides what to page. One binary, two
//! ways to run: as an AWS Lambda when the Lambda Runtime API is present
//! (`AWS_LAMBDA_RUNTIME_API`), as a CLI otherwise.
//!
//! Data flow: `spec` (alerts/*.yaml) -> `evaluate` (checks say which metrics they need;
//! `metrics` reads them all in one batch; `slo` and `checks` judge) -> `finding`s -> `state`
//! (DynamoDB, conditional writes) -> decisions -> `report` (CLI) or the Lambda's response.

mod aws;
mod checks;
mod cli;
mod cycle;
mod error;
mod evaluate;
mod finding;
mod iam;
mod lambda;
mod metrics;
mod notify;
mod render;
mod report;
mod slo;
mod spec;
mod state;

use std::process::ExitCode;

use clap::Parser;
use vigil_common::logging::{self, LogFormat};

fn main() -> ExitCode {
    // Lambda allows 128 MB; two worker threads are plenty for I/O-bound work and keep memory low.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        logging::init(LogFormat::Json);
        return match runtime.block_on(lambda::run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "lambda runtime stopped");
                ExitCode::FAILURE
            }
        };
    }
    let cli = cli::Cli::parse();
    logging::init(cli.log_format);
    match runtime.block_on(cli::run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
