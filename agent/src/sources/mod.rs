//! Sources: where events enter the agent. Each source runs as one task and hands batches to a
//! [`SourceOutput`], which redacts them and fans them out to the components that read it.

pub mod file;
pub mod host_metrics;
pub mod internal_metrics;
pub mod otlp;
pub mod prometheus_scrape;

use std::path::Path;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::output::SourceOutput;

use crate::component::{ComponentConfig, Kind, Kinds, parse};

/// A source as declared under `[sources.NAME]`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    File(file::FileSourceConfig),
    InternalMetrics(internal_metrics::InternalMetricsConfig),
    HostMetrics(host_metrics::HostMetricsConfig),
    PrometheusScrape(prometheus_scrape::PrometheusScrapeConfig),
    Otlp(otlp::OtlpSourceConfig),
}

impl Kinds for SourceConfig {
    const KINDS: &'static [Kind<Self>] = &[
        ("file", |t, p, e| parse(t, p, e).map(Self::File)),
        ("internal_metrics", |t, p, e| {
            parse(t, p, e).map(Self::InternalMetrics)
        }),
        ("host_metrics", |t, p, e| {
            parse(t, p, e).map(Self::HostMetrics)
        }),
        ("prometheus_scrape", |t, p, e| {
            parse(t, p, e).map(Self::PrometheusScrape)
        }),
        ("otlp", |t, p, e| parse(t, p, e).map(Self::Otlp)),
    ];
}

impl SourceConfig {
    /// The component's own config, for what every component answers (see [`ComponentConfig`]).
    pub fn component(&self) -> &dyn ComponentConfig {
        match self {
            Self::File(c) => c,
            Self::InternalMetrics(c) => c,
            Self::HostMetrics(c) => c,
            Self::PrometheusScrape(c) => c,
            Self::Otlp(c) => c,
        }
    }
}

impl SourceConfig {
    /// Starts the source on `tasks`. It runs until `stop` is cancelled and then returns its
    /// name; blocking sources (file reading) get a thread of their own.
    pub fn spawn(
        self,
        name: String,
        data_dir: &Path,
        out: SourceOutput,
        stop: CancellationToken,
        tasks: &mut JoinSet<String>,
    ) -> anyhow::Result<()> {
        match self {
            SourceConfig::File(file) => {
                let source = file::FileSource::new(&name, file, data_dir)
                    .with_context(|| format!("source `{name}`"))?;
                tasks.spawn_blocking(move || {
                    source.run(out, stop);
                    name
                });
            }
            SourceConfig::InternalMetrics(c) => {
                tasks.spawn(async move {
                    internal_metrics::run(c, out, stop).await;
                    name
                });
            }
            SourceConfig::HostMetrics(config) => {
                let source = host_metrics::HostMetricsSource::new(&name, config)
                    .with_context(|| format!("source `{name}`"))?;
                let rt = tokio::runtime::Handle::current();
                tasks.spawn_blocking(move || {
                    source.run(out, stop, rt);
                    name
                });
            }
            SourceConfig::PrometheusScrape(config) => {
                let source = prometheus_scrape::PrometheusScrape::new(&name, config)
                    .with_context(|| format!("source `{name}`"))?;
                tasks.spawn(async move {
                    source.run(out, stop).await;
                    name
                });
            }
            SourceConfig::Otlp(c) => {
                let source = otlp::OtlpSource::new(&name, c, out)
                    .with_context(|| format!("source `{name}`"))?;
                tasks.spawn(async move {
                    source.run(stop).await;
                    name
                });
            }
        }
        Ok(())
    }
}
