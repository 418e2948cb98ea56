//! `type = "console"`: writes what would be shipped to stdout or a file (demo, debugging).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::encoding::Encoding;
use crate::event::{Event, EventBatch};
use crate::telemetry::{Outcome, Stats};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    #[serde(default)]
    pub encoding: Encoding,
    /// Append to this file instead of writing to stdout.
    pub path: Option<PathBuf>,
}

pub struct ConsoleSink {
    encoding: Encoding,
    out: Box<dyn Write + Send>,
    stats: Stats,
}

impl ConsoleSink {
    pub fn new(config: ConsoleConfig, stats: Stats) -> anyhow::Result<Self> {
        let out: Box<dyn Write + Send> = match &config.path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("create {}", dir.display()))?;
                }
                Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .with_context(|| format!("open {}", p.display()))?,
                )
            }
            None => Box::new(std::io::stdout()),
        };
        Ok(Self {
            encoding: config.encoding,
            out,
            stats,
        })
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<EventBatch>) {
        let mut text = String::new();
        while let Some(batch) = rx.recv().await {
            self.stats
                .count(Outcome::Received, batch.events.len() as u64);
            text.clear();
            for event in &batch.events {
                match event {
                    Event::Log(log) => self.encoding.encode(log, &mut text),
                    // Metrics and spans are shown as their JSON form: this sink is for looking.
                    other => match serde_json::to_string(other) {
                        Ok(json) => text.push_str(&json),
                        Err(_) => continue,
                    },
                }
                text.push('\n');
            }
            // A local write: done inline, it is as fast as handing it to a thread.
            let started = std::time::Instant::now();
            let written = self
                .out
                .write_all(text.as_bytes())
                .and_then(|_| self.out.flush());
            self.stats.request(started.elapsed(), written.is_ok());
            match written {
                Ok(()) => {
                    self.stats.batch_size(batch.events.len());
                    self.stats.count(Outcome::Sent, batch.events.len() as u64);
                    batch.ack.delivered();
                }
                Err(e) => {
                    // Not acknowledged: the source reads these lines again after a restart.
                    self.stats.error("write_failed");
                    tracing::error!(error = %e, "console sink cannot write; batch not acknowledged");
                }
            }
        }
    }
}
