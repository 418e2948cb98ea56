//! Sinks: where events leave the agent. Each sink owns its input queue and acknowledges every
//! batch once it is delivered, so sources can advance their checkpoints.

pub mod aws_otlp;
pub mod cloudwatch_logs;
pub mod cloudwatch_metrics;
#[cfg(test)]
mod conformance;
pub mod console;
pub mod driver;
pub mod encoding;
pub mod newrelic;
pub mod otlp_http;
pub mod xray;

use tokio::sync::mpsc;

use crate::event::EventBatch;
use crate::telemetry::Stats;

use crate::component::{ComponentConfig, Kind, Kinds, parse};

/// A sink as declared under `[sinks.NAME]`.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    Console(console::ConsoleConfig),
    CloudWatchLogs(cloudwatch_logs::CloudWatchLogsConfig),
    CloudWatchMetrics(cloudwatch_metrics::CloudWatchMetricsConfig),
    XRay(xray::XRayConfig),
    NewRelic(newrelic::NewRelicConfig),
    AwsOtlp(aws_otlp::AwsOtlpConfig),
}

impl Kinds for SinkConfig {
    const KINDS: &'static [Kind<Self>] = &[
        ("console", |t, p, e| parse(t, p, e).map(Self::Console)),
        ("cloudwatch_logs", |t, p, e| {
            parse(t, p, e).map(Self::CloudWatchLogs)
        }),
        ("cloudwatch_metrics", |t, p, e| {
            parse(t, p, e).map(Self::CloudWatchMetrics)
        }),
        ("xray", |t, p, e| parse(t, p, e).map(Self::XRay)),
        ("newrelic", |t, p, e| parse(t, p, e).map(Self::NewRelic)),
        ("aws_otlp", |t, p, e| parse(t, p, e).map(Self::AwsOtlp)),
    ];
}

impl SinkConfig {
    /// The `type` this was declared with.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Console(_) => "console",
            Self::CloudWatchLogs(_) => "cloudwatch_logs",
            Self::CloudWatchMetrics(_) => "cloudwatch_metrics",
            Self::XRay(_) => "xray",
            Self::NewRelic(_) => "newrelic",
            Self::AwsOtlp(_) => "aws_otlp",
        }
    }

    /// The component's own config, for what every component answers (see [`ComponentConfig`]).
    pub fn component(&self) -> &dyn ComponentConfig {
        match self {
            Self::Console(c) => c,
            Self::CloudWatchLogs(c) => c,
            Self::CloudWatchMetrics(c) => c,
            Self::XRay(c) => c,
            Self::NewRelic(c) => c,
            Self::AwsOtlp(c) => c,
        }
    }

    /// The buffer a sink gets when its config has no `buffer.type`. Sinks that ship over the
    /// network should default to disk (a backend outage must not hold back the other sinks
    /// nor lose data on a crash): add their variant here.
    pub fn default_buffer(&self) -> crate::buffer::BufferKind {
        match self {
            // Network sinks: what they have not delivered survives a crash or a long outage.
            Self::CloudWatchLogs(_)
            | Self::CloudWatchMetrics(_)
            | Self::XRay(_)
            | Self::NewRelic(_)
            | Self::AwsOtlp(_) => crate::buffer::BufferKind::Disk,
            Self::Console(_) => crate::buffer::BufferKind::Memory,
        }
    }

    /// Builds the sink (clients, files) before any data flows.
    pub async fn build(self, name: &str, stats: Stats) -> anyhow::Result<Sink> {
        // Known to `/ready` from the start (healthy until requests fail).
        crate::telemetry::register_sink(name);
        Ok(match self {
            Self::Console(c) => Sink::Console(console::ConsoleSink::new(c, stats)?),
            Self::CloudWatchLogs(c) => {
                Sink::CloudWatchLogs(cloudwatch_logs::CloudWatchLogsSink::new(name, c, stats).await)
            }
            Self::CloudWatchMetrics(c) => Sink::CloudWatchMetrics(
                cloudwatch_metrics::CloudWatchMetricsSink::new(name, c, stats).await?,
            ),
            Self::XRay(c) => Sink::XRay(xray::XRaySink::new(name, c, stats).await),
            Self::NewRelic(c) => Sink::NewRelic(newrelic::NewRelicSink::new(name, c, stats).await?),
            Self::AwsOtlp(c) => Sink::AwsOtlp(aws_otlp::AwsOtlpSink::new(name, c, stats).await?),
        })
    }
}

/// A built sink.
pub enum Sink {
    Console(console::ConsoleSink),
    CloudWatchLogs(cloudwatch_logs::CloudWatchLogsSink),
    CloudWatchMetrics(cloudwatch_metrics::CloudWatchMetricsSink),
    XRay(xray::XRaySink),
    NewRelic(newrelic::NewRelicSink),
    AwsOtlp(aws_otlp::AwsOtlpSink),
}

impl Sink {
    /// Runs until the input queue closes and everything taken from it is delivered (or the
    /// process stops first; undelivered batches are then never acknowledged).
    pub async fn run(self, rx: mpsc::Receiver<EventBatch>) {
        match self {
            Self::Console(s) => s.run(rx).await,
            Self::CloudWatchLogs(s) => s.run(rx).await,
            Self::CloudWatchMetrics(s) => s.run(rx).await,
            Self::XRay(s) => s.run(rx).await,
            Self::NewRelic(s) => s.run(rx).await,
            Self::AwsOtlp(s) => s.run(rx).await,
        }
    }
}

/// Prints every signal; nothing to validate beyond serde.
impl ComponentConfig for console::ConsoleConfig {}
