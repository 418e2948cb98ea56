//! `type = "newrelic"`: spans, metrics and logs to New Relic over OTLP/HTTP (protobuf, gzip).
//!
//! Events are converted as they arrive ([`crate::otlp::encode`]) into one request per signal,
//! grouped by resource and scope; a request is cut when the next item would take it over
//! `batch_max_bytes` (New Relic refuses payloads over 1 MB), when it holds `batch_max_events`
//! items, or after `batch_timeout_ms`. Attribute values are cut to 4,095 characters and arrays
//! to 64 entries (counted). Cumulative counters and histograms become deltas per series
//! ([`delta`]). Up to `concurrency` requests are in flight; beyond that the sink stops reading
//! its queue, which slows its sources (the OTLP source then answers "retry later"). A batch is
//! acknowledged once every request carrying its events was answered for good by New Relic.

mod config;
pub(crate) mod delta;
mod entity;
mod secret;
mod service;

pub use config::{
    EU_ENDPOINT, LicenseKeySource, MAX_ARRAY_ENTRIES, MAX_PAYLOAD_BYTES, MAX_VALUE_CHARS,
    NewRelicConfig, Region, US_ENDPOINT,
};
pub use delta::{Converted, DeltaConverter};
pub use entity::EntityResources;
pub use secret::LicenseKey;

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::{Semaphore, mpsc};

use crate::event::{Ack, Attributes, Event, EventBatch, now_ms};
use crate::otlp::encode::{Pending, TooLarge, log_scope};
use crate::otlp::value::ValueLimits;
use crate::otlp::{EncodeLimits, Encoded, Encoder, Truncations};
use crate::sinks::otlp_http::gzip;
use crate::telemetry::{Outcome, Stats};
use service::{Request, Service};

pub struct NewRelicSink {
    config: NewRelicConfig,
    encoder: Encoder,
    service: Arc<Service>,
    stats: Stats,
}

/// One signal's request being filled, with the batches that have items in it.
struct Building<I> {
    pending: Pending<I>,
    acks: Vec<Ack>,
    /// The batch being processed put items into `pending`.
    has_current: bool,
    started: Option<Instant>,
}

impl<I> Default for Building<I> {
    fn default() -> Self {
        Self {
            pending: Pending::default(),
            acks: Vec::new(),
            has_current: false,
            started: None,
        }
    }
}

/// What `run` builds between batches: the open request of each signal, and closed requests
/// waiting for a free slot.
struct Open {
    spans: Building<Span>,
    metrics: Building<Metric>,
    logs: Building<LogRecord>,
    delta: DeltaConverter,
    entities: EntityResources,
    ready: Vec<(Encoded, usize, Vec<Ack>)>,
}

impl Open {
    /// Closes the open requests that waited `timeout`.
    fn close_due(&mut self, timeout: Duration) {
        if due(&self.spans, timeout) {
            self.ready
                .push(close(&mut self.spans, Pending::<Span>::into_request));
        }
        if due(&self.metrics, timeout) {
            self.ready
                .push(close(&mut self.metrics, Pending::<Metric>::into_request));
        }
        if due(&self.logs, timeout) {
            self.ready
                .push(close(&mut self.logs, Pending::<LogRecord>::into_request));
        }
    }

    /// Closes every request that holds anything (the input has ended).
    fn close_all(&mut self) -> Vec<(Encoded, usize, Vec<Ack>)> {
        let mut closed = Vec::new();
        if !self.spans.pending.is_empty() {
            closed.push(close(&mut self.spans, Pending::<Span>::into_request));
        }
        if !self.metrics.pending.is_empty() {
            closed.push(close(&mut self.metrics, Pending::<Metric>::into_request));
        }
        if !self.logs.pending.is_empty() {
            closed.push(close(&mut self.logs, Pending::<LogRecord>::into_request));
        }
        closed
    }
}

/// A closed request as the service sends it: gzipped protobuf to its signal's path.
fn request(encoded: Encoded, items: usize, acks: Vec<Ack>) -> Request {
    Request {
        path: encoded.path(),
        body: gzip(&encoded.encode_to_vec()),
        items,
        acks,
    }
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
            max_request_bytes: config.batch_max_bytes,
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
        let service = Service::new(
            name,
            config.endpoint(),
            key,
            Duration::from_millis(config.request_timeout_ms),
            Duration::from_millis(config.max_backoff_ms),
            stats.clone(),
        )?;
        tracing::info!(sink = name, endpoint = %config.endpoint(), "New Relic sink ready");
        Ok(Self {
            encoder: encoder(&config),
            config,
            service: Arc::new(service),
            stats,
        })
    }

    pub async fn run(self, mut rx: mpsc::Receiver<EventBatch>) {
        let timeout = Duration::from_millis(self.config.batch_timeout_ms);
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let mut open = Open {
            spans: Building::default(),
            metrics: Building::default(),
            logs: Building::default(),
            delta: DeltaConverter::new(now_ms()),
            entities: EntityResources::default(),
            ready: Vec::new(),
        };
        let mut tick = tokio::time::interval(Duration::from_millis(50).min(timeout));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    self.take(&mut open, batch);
                }
                _ = tick.tick() => open.close_due(timeout),
            }
            // Backpressure: waiting for a free slot here leaves the queue unread.
            for (encoded, items, acks) in open.ready.drain(..) {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let req = request(encoded, items, acks);
                let service = Arc::clone(&self.service);
                tasks.spawn(async move {
                    service.deliver(req).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
        }

        // Input closed: send what is left, then wait for every request to be answered.
        for (encoded, items, acks) in open.close_all() {
            let req = request(encoded, items, acks);
            let service = Arc::clone(&self.service);
            tasks.spawn(async move { service.deliver(req).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Adds the events of one batch to the open requests (closing those that fill up) and
    /// settles the batch: every request holding its items has its own acknowledgement.
    fn take(&self, open: &mut Open, batch: EventBatch) {
        self.stats
            .count(Outcome::Received, batch.events.len() as u64);
        let EventBatch { events, ack } = batch;
        let max_events = self.config.batch_max_events;
        for event in events {
            let mut cuts = Truncations::default();
            match event {
                Event::Span(s) => {
                    let res = Arc::clone(&s.resource);
                    let scope = (s.scope_name.clone(), s.scope_version.clone());
                    let item = self.encoder.span(s, &mut cuts);
                    self.add(
                        &mut open.spans,
                        Some(&res),
                        (&scope.0, &scope.1),
                        item,
                        &ack,
                        max_events,
                        &mut open.ready,
                        Pending::<Span>::into_request,
                    );
                }
                Event::Metric(m) => match open.delta.convert(m) {
                    Converted::Send(m, start) => {
                        let res = m.resource.clone();
                        let item = self.encoder.metric(m, start, &mut cuts);
                        self.add(
                            &mut open.metrics,
                            res.as_ref(),
                            ("", ""),
                            item,
                            &ack,
                            max_events,
                            &mut open.ready,
                            Pending::<Metric>::into_request,
                        );
                    }
                    Converted::Baseline => {}
                },
                Event::Log(l) => {
                    // File lines carry enrich attributes instead of a resource.
                    let res = l
                        .resource
                        .clone()
                        .or_else(|| open.entities.for_attributes(&l.attributes));
                    let scope = log_scope(&l);
                    let item = self.encoder.log(l, &mut cuts);
                    self.add(
                        &mut open.logs,
                        res.as_ref(),
                        (&scope.0, &scope.1),
                        item,
                        &ack,
                        max_events,
                        &mut open.ready,
                        Pending::<LogRecord>::into_request,
                    );
                }
            }
            self.count_cuts(cuts);
        }
        settle(&mut open.spans, &ack);
        settle(&mut open.metrics, &ack);
        settle(&mut open.logs, &ack);
        // Every request holding this batch's items has its own copy now.
        ack.delivered();
    }

    #[allow(clippy::too_many_arguments)]
    fn add<I: Message>(
        &self,
        b: &mut Building<I>,
        resource: Option<&Arc<crate::event::Resource>>,
        scope: (&str, &str),
        item: I,
        ack: &Ack,
        max_events: usize,
        ready: &mut Vec<(Encoded, usize, Vec<Ack>)>,
        into_request: fn(Pending<I>) -> Encoded,
    ) {
        match b.pending.add(&self.encoder, resource, scope, item) {
            Ok(None) => {}
            Ok(Some(full)) => {
                // The new request starts with the item that did not fit.
                let mut acks = std::mem::take(&mut b.acks);
                if b.has_current {
                    acks.push(ack.clone());
                }
                let n = full.len();
                ready.push((into_request(full), n, acks));
                b.started = Some(Instant::now());
            }
            Err(TooLarge) => {
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("item_too_large");
                tracing::warn!(
                    limit = self.encoder.limits.max_request_bytes,
                    "an item is larger than a whole New Relic request may be; dropped"
                );
                return;
            }
        }
        b.has_current = true;
        b.started.get_or_insert_with(Instant::now);
        if b.pending.len() >= max_events {
            // Full: this batch's ack goes with it.
            settle(b, ack);
            ready.push(close(b, into_request));
        }
    }

    fn count_cuts(&self, cuts: Truncations) {
        if cuts == Truncations::default() {
            return;
        }
        self.stats.count(Outcome::Truncated, 1);
        for _ in 0..cuts.strings {
            self.stats.error("attribute_value_truncated");
        }
        for _ in 0..cuts.arrays {
            self.stats.error("attribute_array_truncated");
        }
    }
}

/// After a batch: every request still filling that got items from it keeps a copy of its ack.
fn settle<I>(b: &mut Building<I>, ack: &Ack) {
    if b.has_current {
        b.acks.push(ack.clone());
        b.has_current = false;
    }
}

fn due<I: Message>(b: &Building<I>, timeout: Duration) -> bool {
    !b.pending.is_empty() && b.started.is_some_and(|t| t.elapsed() >= timeout)
}

fn close<I: Message>(
    b: &mut Building<I>,
    into_request: fn(Pending<I>) -> Encoded,
) -> (Encoded, usize, Vec<Ack>) {
    let n = b.pending.len();
    let acks = std::mem::take(&mut b.acks);
    b.started = None;
    (into_request(std::mem::take(&mut b.pending)), n, acks)
}
