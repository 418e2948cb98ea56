//! The running pipeline: sources → processors → sinks, connected by bounded queues.
//!
//! Every processor and sink owns one queue (`QUEUE_BATCHES` batches deep) that all its inputs
//! write into. A component whose output feeds several others sends each a copy; a full queue
//! makes the sender wait, so a slow sink slows its sources instead of growing memory, and it
//! holds back the other sinks only once its own queue is full.

mod output;

pub use output::{Fanout, SourceOutput};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::event::EventBatch;
use crate::processors::Processor;
use crate::redaction::Redactor;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::telemetry::{Outcome, Stats};

/// Depth of each component's input queue, in batches.
pub const QUEUE_BATCHES: usize = 8;

/// Starts every component and runs until `shutdown` is cancelled; then sources stop reading,
/// queues drain, sinks flush, and this returns once all are done or `drain_timeout` passes
/// (whatever was not delivered by then was never acknowledged, so it is read again next start).
pub async fn run(
    config: AgentConfig,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    let redactor = Arc::new(Redactor::new(&config.redaction).context("redaction rules")?);

    // One queue per processor and sink; remember who writes into it.
    let mut senders: BTreeMap<String, Vec<mpsc::Sender<EventBatch>>> = BTreeMap::new();
    let mut receivers = BTreeMap::new();
    let downstream = config
        .processors
        .iter()
        .map(|(n, c)| (n, &c.inputs))
        .chain(config.sinks.iter().map(|(n, c)| (n, &c.inputs)));
    for (name, inputs) in downstream {
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        receivers.insert(name.clone(), rx);
        for input in inputs {
            senders.entry(input.clone()).or_default().push(tx.clone());
        }
    }
    let mut fanout_of = |name: &str| Fanout::new(senders.remove(name).unwrap_or_default());

    let mut tasks = tokio::task::JoinSet::new();
    for (name, sink) in config.sinks {
        let rx = receivers.remove(&name).expect("queue made above");
        let stats = Stats::new(&name);
        let config: SinkConfig = sink.config;
        let sink = config
            .build(&name, stats)
            .await
            .with_context(|| format!("sink `{name}`"))?;
        tasks.spawn(async move {
            sink.run(rx).await;
            name
        });
    }
    for (name, processor) in config.processors {
        let mut rx = receivers.remove(&name).expect("queue made above");
        let out = fanout_of(&name);
        let stats = Stats::new(&name);
        let mut processor = Processor::build(&processor.config)
            .await
            .with_context(|| format!("processor `{name}`"))?;
        tasks.spawn(async move {
            while let Some(mut batch) = rx.recv().await {
                stats.count(Outcome::Received, batch.events.len() as u64);
                processor.process(&mut batch.events, &stats);
                stats.count(Outcome::Sent, batch.events.len() as u64);
                if out.send(batch).await.is_err() {
                    break;
                }
            }
            name
        });
    }
    // Sources last: everything they feed is already listening. They are joined apart from the
    // rest: after a drain timeout the sinks are abandoned, but a source is always waited for
    // (it stops in bounded time), so its final checkpoint is written before this returns and a
    // reloaded pipeline never reads the same files alongside an old source.
    let mut sources = tokio::task::JoinSet::new();
    for (name, source) in config.sources {
        let out = SourceOutput::new(&name, fanout_of(&name), Arc::clone(&redactor));
        let source: SourceConfig = source;
        source.spawn(name, &config.data_dir, out, shutdown.clone(), &mut sources)?;
    }
    // Queues with no writer left must close when their writers finish.
    drop(senders);

    shutdown.cancelled().await;
    tracing::info!("shutting down: sources stop, queues drain, sinks flush");
    let drained = tokio::time::timeout(drain_timeout, async {
        join_all(&mut sources).await;
        join_all(&mut tasks).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout_ms = drain_timeout.as_millis() as u64,
            "drain timeout: stopping with data undelivered; it was not acknowledged and will be read again"
        );
        // Abandoned batches report themselves undelivered, which lets the sources finish.
        tasks.abort_all();
        join_all(&mut sources).await;
    }
    Ok(())
}

async fn join_all(set: &mut tokio::task::JoinSet<String>) {
    while let Some(done) = set.join_next().await {
        match done {
            Ok(name) => tracing::debug!(component = %name, "stopped"),
            Err(e) if e.is_cancelled() => {}
            Err(e) => tracing::error!(error = %e, "a component task failed"),
        }
    }
}
