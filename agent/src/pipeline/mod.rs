//! The running pipeline: sources → processors → sinks, connected by bounded queues.
//!
//! Every processor and sink owns one queue (`QUEUE_BATCHES` batches deep) that all its inputs
//! write into; a sink's queue is read by its buffer (`crate::buffer`). A component whose output
//! feeds several others sends each a copy; a full queue makes the sender wait, so a slow sink
//! slows its sources instead of growing memory. A disk buffer empties its queue to disk, so a
//! slow sink holds back the others only once its buffer is full; a memory buffer, once its
//! queue is.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::buffer::{BufferConfig, BufferKind, MemoryLimit};
use crate::config::AgentConfig;
use crate::event::EventBatch;
use crate::output::{Fanout, SourceOutput};
use crate::processors::Processor;
use crate::redaction::Redactor;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::telemetry::Stats;

/// Depth of each component's input queue, in batches: enough to keep the next stage busy while
/// this one works; each batch more is memory held (up to 1,000 events a batch), not speed.
pub const QUEUE_BATCHES: usize = 2;

/// Starts every component and runs until `shutdown` is cancelled; then sources stop reading,
/// queues drain, sinks flush, and this returns once all are done or `drain_timeout` passes
/// (whatever was not delivered by then was never acknowledged, so it is read again next start).
pub async fn run(
    config: AgentConfig,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    let redactor = Arc::new(Redactor::new(&config.redaction).context("redaction rules")?);

    let (mut senders, mut receivers) = queues(&config);
    let mut fanout_of = |name: &str| Fanout::new(senders.remove(name).unwrap_or_default());

    // The memory limit is for the whole process: a quarter of it for the events sources hand
    // on, a quarter shared by the disk buffers' readers (each its own part, so a stalled sink
    // cannot starve the others), and half for the program itself, requests being built and
    // allocator slack.
    let source_memory = MemoryLimit::new(config.memory_limit_bytes / 4);
    let disk_sinks = config
        .buffers
        .values()
        .filter(|b| b.kind == BufferKind::Disk)
        .count()
        .max(1) as u64;
    let mut tasks = JoinSet::new();
    // Cancelled when the drain timeout passes: disk buffer writers stop even while waiting
    // for room (blocking tasks cannot be aborted), so that their sources can stop too.
    let abandon = CancellationToken::new();
    // Task ids -> component names, to name a component whose task dies.
    let mut names = HashMap::new();
    for (name, sink) in config.sinks {
        let rx = receivers.remove(&name).expect("queue made above");
        let buffer = config
            .buffers
            .get(&name)
            .cloned()
            .unwrap_or_else(BufferConfig::memory);
        let reader_memory = MemoryLimit::new(config.memory_limit_bytes / 4 / disk_sinks);
        let attach = (&buffer, config.data_dir.as_path(), reader_memory, &abandon);
        let id = start_sink(&name, sink.config, rx, attach, &mut tasks)
            .await
            .with_context(|| format!("sink `{name}`"))?;
        names.insert(id, name);
    }
    for (name, processor) in config.processors {
        let rx = receivers.remove(&name).expect("queue made above");
        let out = fanout_of(&name);
        let stats = Stats::new(&name);
        let processor = Processor::build(&processor.config)
            .await
            .with_context(|| format!("processor `{name}`"))?;
        let label = name.clone();
        let id = tasks
            .spawn(async move {
                processor.run(rx, out, stats).await;
                name
            })
            .id();
        names.insert(id, label);
    }
    // Sources last: everything they feed is already listening. They are joined apart from the
    // rest: after a drain timeout the sinks are abandoned, but a source is always waited for
    // (it stops in bounded time), so its final checkpoint is written before this returns and a
    // reloaded pipeline never reads the same files alongside an old source.
    let mut sources = JoinSet::new();
    for (name, source) in config.sources {
        let out = SourceOutput::new(&name, fanout_of(&name), Arc::clone(&redactor))
            .with_memory_limit(source_memory.clone());
        let source: SourceConfig = source;
        source.spawn(name, &config.data_dir, out, shutdown.clone(), &mut sources)?;
    }
    // Queues with no writer left must close when their writers finish.
    drop(senders);

    let died = supervise(shutdown, tasks, sources, &names, abandon, drain_timeout).await;
    match died {
        Some(component) => Err(ComponentDied { component }.into()),
        None => Ok(()),
    }
}

type Senders = BTreeMap<String, Vec<mpsc::Sender<EventBatch>>>;
type Receivers = BTreeMap<String, mpsc::Receiver<EventBatch>>;

/// One queue per processor and sink, and who writes into each (by writer name).
fn queues(config: &AgentConfig) -> (Senders, Receivers) {
    let mut senders: Senders = BTreeMap::new();
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
    (senders, receivers)
}

/// Waits for shutdown (or a component's death), then drains: sources stop, queues empty,
/// sinks flush, bounded by `drain_timeout`. Returns the component that died, if one did.
async fn supervise(
    shutdown: CancellationToken,
    mut tasks: JoinSet<String>,
    mut sources: JoinSet<String>,
    names: &HashMap<tokio::task::Id, String>,
    abandon: CancellationToken,
    drain_timeout: Duration,
) -> Option<String> {
    // A component whose task dies (a panic: a bug, never expected) would leave its queue
    // unread and its sources stalled while the process looks alive. Stop instead, and fail:
    // the service manager restarts the agent, which resumes from checkpoints and buffers.
    let died = tokio::select! {
        _ = shutdown.cancelled() => None,
        name = first_death(&mut tasks, names) => Some(name),
        name = first_death(&mut sources, names) => Some(name),
    };
    if died.is_some() {
        shutdown.cancel();
    }
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
        abandon.cancel();
        tasks.abort_all();
        if tokio::time::timeout(Duration::from_secs(5), join_all(&mut sources))
            .await
            .is_err()
        {
            tracing::error!("a source did not stop within 5 s of the drain timeout; leaving it");
        }
        // Aborted tasks end at their next await; wait (bounded) so a reloaded pipeline never
        // opens a disk buffer an old writer still has open.
        let _ = tokio::time::timeout(Duration::from_secs(5), join_all(&mut tasks)).await;
    }
    died
}

/// Builds a sink behind its buffer (`buffer`, `data_dir`, the reader's memory share, the
/// abandon token) and spawns it on `tasks`.
async fn start_sink(
    name: &str,
    config: SinkConfig,
    rx: mpsc::Receiver<EventBatch>,
    (buffer, data_dir, reader_memory, abandon): (
        &BufferConfig,
        &Path,
        MemoryLimit,
        &CancellationToken,
    ),
    tasks: &mut JoinSet<String>,
) -> anyhow::Result<tokio::task::Id> {
    let stats = Stats::new(name);
    let rx = crate::buffer::attach(
        buffer,
        data_dir,
        rx,
        reader_memory,
        stats.clone(),
        abandon,
        tasks,
    )?;
    let sink = config.build(name, stats).await?;
    let name = name.to_owned();
    Ok(tasks
        .spawn(async move {
            sink.run(rx).await;
            name
        })
        .id())
}

/// A component's task ended with a panic while the pipeline ran.
#[derive(Debug, thiserror::Error)]
#[error("component `{component}` failed; stopping so that the agent is restarted")]
pub struct ComponentDied {
    pub component: String,
}

/// Waits until a task of `set` dies (panics); tasks that end normally are let go. Never
/// returns if none dies.
async fn first_death(
    set: &mut JoinSet<String>,
    names: &HashMap<tokio::task::Id, String>,
) -> String {
    loop {
        match set.join_next_with_id().await {
            None => return std::future::pending().await,
            Some(Ok((_, name))) => tracing::debug!(component = %name, "ended"),
            Some(Err(e)) if e.is_cancelled() => {}
            Some(Err(e)) => {
                let name = names
                    .get(&e.id())
                    .cloned()
                    .unwrap_or_else(|| "a source".to_owned());
                tracing::error!(component = %name, error = %e, "a component task died");
                return name;
            }
        }
    }
}

async fn join_all(set: &mut JoinSet<String>) {
    while let Some(done) = set.join_next().await {
        match done {
            Ok(name) => tracing::debug!(component = %name, "stopped"),
            Err(e) if e.is_cancelled() => {}
            Err(e) => tracing::error!(error = %e, "a component task failed"),
        }
    }
}
