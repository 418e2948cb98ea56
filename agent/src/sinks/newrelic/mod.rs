//! `type = "newrelic"`: spans, metrics and logs to New Relic over OTLP/HTTP (protobuf, gzip).
//!
//! Events are converted as they arrive ([`crate::otlp::encode`]) into one request per signal,
//! grouped by resource and scope; a request is cut when the next item would take it over
//! `batch.max_bytes` (New Relic refuses payloads over 1 MB), when it holds `batch.max_events`
//! items, or after `batch.timeout_ms`. Attribute values are cut to 4,095 characters and arrays
//! to 64 entries (counted). Cumulative counters and histograms become deltas per series
//! ([`delta`]). Up to `request.concurrency` requests are in flight; beyond that the sink stops reading
//! its queue, which slows its sources (the OTLP source then answers "retry later"). A batch is
//! acknowledged once every request carrying its events was answered for good by New Relic.

mod config;
pub(crate) mod delta;
mod entity;
mod secret;
mod service;
#[cfg(test)]
mod tests;

pub use config::{
    EU_ENDPOINT, LicenseKeySource, MAX_ARRAY_ENTRIES, MAX_PAYLOAD_BYTES, MAX_VALUE_CHARS,
    NewRelicConfig, Region, US_ENDPOINT,
};
pub use delta::{Converted, DeltaConverter};
pub use entity::EntityResources;
pub use secret::LicenseKey;

use std::sync::Arc;

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;

use crate::event::{Ack, Attributes, Event, EventBatch, now_ms};
use crate::otlp::encode::log_scope;
use crate::otlp::value::ValueLimits;
use crate::otlp::{EncodeLimits, Encoder, Truncations};
use crate::sinks::driver::settings::Settings;
use crate::sinks::driver::{self, Batches, Dispatch, Intake, Ready, Schedule, TooLarge};
use crate::sinks::otlp_http::batch::{OpenOtlp, OtlpItem, Scoped, count_truncations};
use crate::telemetry::{Outcome, Stats};
use service::Service;

pub struct NewRelicSink {
    config: NewRelicConfig,
    encoder: Arc<Encoder>,
    dispatch: Dispatch<Service>,
    stats: Stats,
}

/// The sink's half of the driver's loop: events to OTLP items, one open request per signal.
struct Exports {
    encoder: Arc<Encoder>,
    stats: Stats,
    spans: Batches<(), OpenOtlp<Span>>,
    metrics: Batches<(), OpenOtlp<Metric>>,
    logs: Batches<(), OpenOtlp<LogRecord>>,
    delta: DeltaConverter,
    entities: EntityResources,
}

/// Builds the encoder New Relic needs: its payload and attribute limits and the configured
/// resource attributes. Public so the benchmark measures exactly what the sink does.
pub fn encoder(config: &NewRelicConfig) -> Encoder {
    let extra: Attributes = config
        .resource_attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    Encoder::new(
        EncodeLimits {
            max_request_bytes: config.batch_settings().max_bytes,
            values: ValueLimits {
                max_chars: MAX_VALUE_CHARS,
                max_array: MAX_ARRAY_ENTRIES,
            },
        },
        extra,
    )
}

impl NewRelicSink {
    pub async fn new(name: &str, config: NewRelicConfig, stats: Stats) -> anyhow::Result<Self> {
        let key = LicenseKey::load(&config.license_key).await?;
        let service = Service::new(config.endpoint(), key, config.request_settings().timeout)?;
        tracing::info!(sink = name, endpoint = %config.endpoint(), "New Relic sink ready");
        Ok(Self {
            dispatch: Dispatch::shared(name, service, stats.clone(), config.request_settings()),
            encoder: Arc::new(encoder(&config)),
            config,
            stats,
        })
    }

    pub async fn run(self, rx: mpsc::Receiver<EventBatch>) {
        let batch = self.config.batch_settings();
        let intake = Exports {
            spans: OpenOtlp::batches(&self.encoder, batch),
            metrics: OpenOtlp::batches(&self.encoder, batch),
            logs: OpenOtlp::batches(&self.encoder, batch),
            encoder: self.encoder,
            stats: self.stats,
            delta: DeltaConverter::new(now_ms()),
            entities: EntityResources::default(),
        };
        driver::run(intake, rx, self.dispatch).await;
    }
}

impl Intake for Exports {
    type Backend = Service;

    fn take(&mut self, events: Vec<Event>, ack: &Ack, ready: &mut Ready<Service>) {
        for event in events {
            let mut cuts = Truncations::default();
            let added = match event {
                Event::Span(s) => {
                    let resource = Some(Arc::clone(&s.resource));
                    let scope = (s.scope_name.clone(), s.scope_version.clone());
                    let item = self.encoder.span(s, &mut cuts);
                    add(&mut self.spans, resource, scope, item, ack, ready)
                }
                Event::Metric(m) => match self.delta.convert(m) {
                    Converted::Send(m, start) => {
                        let resource = m.resource.clone();
                        let item = self.encoder.metric(m, start, &mut cuts);
                        add(
                            &mut self.metrics,
                            resource,
                            Default::default(),
                            item,
                            ack,
                            ready,
                        )
                    }
                    // The first point of a cumulative series only sets its baseline.
                    Converted::Baseline => Ok(()),
                },
                Event::Log(l) => {
                    // File lines carry enrich attributes instead of a resource.
                    let resource = l
                        .resource
                        .clone()
                        .or_else(|| self.entities.for_attributes(&l.attributes));
                    let scope = log_scope(&l);
                    let item = self.encoder.log(l, &mut cuts);
                    add(&mut self.logs, resource, scope, item, ack, ready)
                }
            };
            count_truncations(&self.stats, cuts);
            if added.is_err() {
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("item_too_large");
                tracing::warn!(
                    limit = self.encoder.limits.max_request_bytes,
                    "an item is larger than a whole New Relic request may be; dropped"
                );
            }
        }
    }

    fn open(&mut self) -> impl Schedule<Service> + '_ {
        (&mut self.spans, &mut self.metrics, &mut self.logs)
    }
}

fn add<I: OtlpItem>(
    batches: &mut Batches<(), OpenOtlp<I>>,
    resource: Option<Arc<crate::event::Resource>>,
    scope: (String, String),
    item: I,
    ack: &Ack,
    ready: &mut Ready<Service>,
) -> Result<(), TooLarge> {
    let scoped = Scoped {
        resource,
        scope,
        item,
    };
    batches.add(&(), scoped, ack, ready)
}
