//! Processors: changes to batches between sources and sinks. Most are synchronous and 1:1
//! (`process(&mut [Event])`); those that aggregate or hold events on a timer (span metrics,
//! tail sampling) run as their own task with the input queue, a timer and the output.

pub mod enrich;
pub mod json_parse;
pub mod span_metrics;
pub mod tail_sampling;

use tokio::sync::mpsc;

use crate::event::{Event, EventBatch};
use crate::output::Fanout;
use crate::telemetry::{Outcome, Stats};

use crate::component::{ComponentConfig, Kind, Kinds, parse};

/// A processor as declared under `[processors.NAME]`.
#[derive(Debug, Clone)]
pub enum ProcessorConfig {
    JsonParse(json_parse::JsonParseConfig),
    Enrich(enrich::EnrichConfig),
    SpanMetrics(span_metrics::SpanMetricsConfig),
    TailSampling(tail_sampling::TailSamplingConfig),
}

impl Kinds for ProcessorConfig {
    const KINDS: &'static [Kind<Self>] = &[
        ("json_parse", |t, p, e| parse(t, p, e).map(Self::JsonParse)),
        ("enrich", |t, p, e| parse(t, p, e).map(Self::Enrich)),
        ("span_metrics", |t, p, e| {
            parse(t, p, e).map(Self::SpanMetrics)
        }),
        ("tail_sampling", |t, p, e| {
            parse(t, p, e).map(Self::TailSampling)
        }),
    ];
}

impl ProcessorConfig {
    /// The component's own config, for what every component answers (see [`ComponentConfig`]).
    pub fn component(&self) -> &dyn ComponentConfig {
        match self {
            Self::JsonParse(c) => c,
            Self::Enrich(c) => c,
            Self::SpanMetrics(c) => c,
            Self::TailSampling(c) => c,
        }
    }
}

/// A built processor.
#[derive(Debug)]
pub enum Processor {
    JsonParse(json_parse::JsonParse),
    Enrich(enrich::Enrich),
    SpanMetrics(span_metrics::SpanMetrics),
    TailSampling(tail_sampling::TailSampling),
}

impl Processor {
    /// Builds a processor; may do I/O once (e.g. asking EC2 instance metadata).
    pub async fn build(config: &ProcessorConfig) -> anyhow::Result<Self> {
        Ok(match config {
            ProcessorConfig::JsonParse(c) => Self::JsonParse(json_parse::JsonParse::new(c)),
            ProcessorConfig::Enrich(c) => Self::Enrich(enrich::Enrich::new(c).await),
            ProcessorConfig::SpanMetrics(c) => Self::SpanMetrics(span_metrics::SpanMetrics::new(c)),
            ProcessorConfig::TailSampling(c) => {
                Self::TailSampling(tail_sampling::TailSampling::new(c))
            }
        })
    }

    /// Runs until the input queue closes (or every reader of the output is gone), then hands
    /// on whatever the processor still holds.
    pub async fn run(self, rx: mpsc::Receiver<EventBatch>, out: Fanout, stats: Stats) {
        match self {
            Self::SpanMetrics(p) => p.run(rx, out, stats).await,
            Self::TailSampling(p) => p.run(rx, out, stats).await,
            sync => sync.run_sync(rx, out, stats).await,
        }
    }

    /// The 1:1 processors: each batch is changed in place and handed on with its own ack.
    async fn run_sync(mut self, mut rx: mpsc::Receiver<EventBatch>, out: Fanout, stats: Stats) {
        while let Some(mut batch) = rx.recv().await {
            stats.count(Outcome::Received, batch.events.len() as u64);
            self.process(&mut batch.events, &stats);
            stats.count(Outcome::Sent, batch.events.len() as u64);
            if out.send(batch).await.is_err() {
                break;
            }
        }
    }

    pub fn process(&mut self, events: &mut [Event], stats: &Stats) {
        match self {
            Self::JsonParse(p) => p.process(events, stats),
            Self::Enrich(p) => p.process(events),
            // Not 1:1: they run as their own task (`run`), never through here.
            Self::SpanMetrics(_) | Self::TailSampling(_) => {}
        }
    }
}
