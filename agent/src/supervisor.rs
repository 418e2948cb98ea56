//! Runs the pipeline for the life of the process: starts it, stops it on SIGTERM/SIGINT, and on
//! SIGHUP re-reads the config and, only if the new one is valid, swaps pipelines.
//!
//! A reload is a graceful stop of the running pipeline (sources stop, queues drain, sinks flush,
//! final checkpoints are written) followed by a start with the new config, which resumes from
//! those checkpoints: nothing accepted is lost and nothing is read twice. A config that does not
//! validate is reported and the running pipeline is left alone; one that validates but cannot
//! start (a sink whose client cannot be built) is reported and the previous config is started
//! again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{self, AgentConfig};
use crate::pipeline;

/// What the process was asked to do.
enum Request {
    Stop,
    Reload(Box<AgentConfig>),
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }

    /// Waits for the next stop, or for a SIGHUP that brings a valid config; invalid configs
    /// are reported here and waiting goes on.
    async fn next(&mut self, path: &Path) -> Request {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM received"); return Request::Stop }
                _ = self.int.recv() => { tracing::info!("SIGINT received"); return Request::Stop }
                _ = self.hup.recv() => {
                    tracing::info!(config = %path.display(), "SIGHUP received: reloading the config");
                    match config::load(path) {
                        Ok(new) => return Request::Reload(Box::new(new)),
                        Err(errors) => {
                            for e in &errors.0 {
                                tracing::error!(problem = %e, "reload rejected");
                            }
                            tracing::error!(
                                problems = errors.0.len(),
                                "the new config is invalid; the running one is kept"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Runs until SIGTERM or SIGINT. Fails when the first config cannot be started, or when a
/// component dies (exit non-zero, for the service manager to restart the agent).
pub async fn run(
    path: PathBuf,
    config: AgentConfig,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    let mut current = config;
    let mut previous: Option<AgentConfig> = None;
    loop {
        let generation = CancellationToken::new();
        let pipeline = pipeline::run(current.clone(), generation.clone(), drain_timeout);
        tokio::pin!(pipeline);
        let request = tokio::select! {
            ended = &mut pipeline => {
                // The pipeline only ends by itself when it could not start.
                let error = match ended {
                    Err(e) => e,
                    Ok(()) => anyhow::anyhow!("the pipeline stopped unexpectedly"),
                };
                if error.is::<pipeline::ComponentDied>() {
                    return Err(error);
                }
                match previous.take() {
                    Some(last_good) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "the reloaded config cannot start; starting the previous one again"
                        );
                        current = last_good;
                        continue;
                    }
                    None => return Err(error),
                }
            }
            request = signals.next(&path) => request,
        };
        generation.cancel();
        pipeline.await?;
        match request {
            Request::Stop => return Ok(()),
            Request::Reload(new) => {
                tracing::info!(
                    sources = new.sources.len(),
                    processors = new.processors.len(),
                    sinks = new.sinks.len(),
                    "config reloaded; starting the new pipeline"
                );
                previous = Some(std::mem::replace(&mut current, *new));
            }
        }
    }
}
