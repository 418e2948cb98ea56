//! `type = "aws_otlp"`: spans to X-Ray's OTLP endpoint (`https://xray.<region>.amazonaws.com/v1/traces`)
//! and logs to CloudWatch Logs' (`https://logs.<region>.amazonaws.com/v1/logs`, into the group
//! and stream named by `x-aws-log-group` / `x-aws-log-stream`), as OTLP/HTTP protobuf + gzip,
//! signed with SigV4 (services `xray` and `logs`).
//!
//! Unlike the `xray` sink it takes any trace id (W3C random ids from default OpenTelemetry SDKs;
//! X-Ray needs Transaction Search enabled for them). Events are encoded as they arrive by the
//! shared OTLP encoder ([`crate::otlp::encode`], the one the New Relic sink uses), checked
//! against the endpoints' published limits item by item ([`request`]): a span over 200 KB, a
//! resource+scope over 16 KB or a time outside 14 days back / 2 hours ahead is dropped and
//! counted, never sent to have the whole request refused. Requests are cut at 5 MB (traces) or
//! 1 MiB (logs) uncompressed and `batch_max_events` items. Delivery: [`service`].

mod config;
mod credentials;
pub mod request;
mod service;

pub use config::{
    AwsOtlpConfig, MAX_LOG_REQUEST_BYTES, MAX_LOG_REQUEST_RECORDS, MAX_RESOURCE_SCOPE_BYTES,
    MAX_SPAN_BYTES, MAX_TRACE_REQUEST_BYTES, MAX_TRACE_REQUEST_SPANS, Signal,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::{Semaphore, mpsc};

use crate::event::{Ack, Attributes, Event, EventBatch, Resource, now_ms};
use crate::otlp::encode::{Pending, TooLarge, log_scope};
use crate::otlp::value::ValueLimits;
use crate::otlp::{EncodeLimits, Encoded, Encoder, Truncations};
use crate::sinks::newrelic::EntityResources;
use crate::telemetry::{Outcome, Stats};
use credentials::CredentialsCache;
use request::{Drop, SpanCheck};
pub use service::sign_headers;
use service::{Endpoints, Request, Service};

/// Attribute values are kept whole up to this (the span limit of 200 KB bounds them anyway).
const VALUE_LIMITS: ValueLimits = ValueLimits {
    max_chars: 64 * 1024,
    max_array: 1_000,
};

pub struct AwsOtlpSink {
    name: String,
    config: AwsOtlpConfig,
    traces: Encoder,
    logs: Encoder,
    service: Arc<Service>,
    stats: Stats,
}

/// One signal's request being filled, with the batches that have items in it.
struct Building<I> {
    signal: Signal,
    pending: Pending<I>,
    acks: Vec<Ack>,
    /// The batch being processed put items into `pending`.
    has_current: bool,
    started: Option<Instant>,
}

impl<I> Building<I> {
    fn new(signal: Signal) -> Self {
        Self {
            signal,
            pending: Pending::default(),
            acks: Vec::new(),
            has_current: false,
            started: None,
        }
    }
}

/// The resource attributes every payload gets when the event's resource lacks them: the
/// configured ones, then `cloud.provider` and `cloud.region` (what Application Signals and
/// Transaction Search group by, with `service.name` and `deployment.environment`).
pub fn resource_attributes(config: &AwsOtlpConfig, region: &str) -> Attributes {
    let mut extra: Attributes = config
        .resource_attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    for (k, v) in [("cloud.provider", "aws"), ("cloud.region", region)] {
        extra
            .entry(k.to_owned())
            .or_insert_with(|| serde_json::Value::String(v.to_owned()));
    }
    extra
}

/// The encoders for traces and logs. Public so the benchmark measures what the sink does.
pub fn encoders(config: &AwsOtlpConfig, region: &str) -> (Encoder, Encoder) {
    let extra = resource_attributes(config, region);
    let make = |max_request_bytes| {
        Encoder::new(
            EncodeLimits {
                max_request_bytes,
                values: VALUE_LIMITS,
            },
            extra.clone(),
        )
    };
    (make(MAX_TRACE_REQUEST_BYTES), make(MAX_LOG_REQUEST_BYTES))
}

impl AwsOtlpSink {
    pub async fn new(name: &str, config: AwsOtlpConfig, stats: Stats) -> anyhow::Result<Self> {
        let sdk = vigil_common::aws::load().await;
        let region = sdk.region().map(|r| r.to_string()).with_context(|| {
            format!("sink {name} (aws_otlp): no AWS region; set AWS_REGION (or a profile's region)")
        })?;
        let provider = sdk.credentials_provider().with_context(|| {
            format!("sink {name} (aws_otlp): the AWS SDK has no credentials provider")
        })?;
        let endpoints = Endpoints {
            traces_url: config.url(Signal::Traces, &region),
            logs_url: config.url(Signal::Logs, &region),
            log_destination: config.log_group.clone().zip(config.log_stream.clone()),
            region: region.clone(),
        };
        tracing::info!(sink = name, traces = %endpoints.traces_url, logs = %endpoints.logs_url,
            "AWS OTLP sink ready");
        let service = Service::new(
            name,
            endpoints,
            CredentialsCache::new(provider),
            Duration::from_millis(config.request_timeout_ms),
            Duration::from_millis(config.max_backoff_ms),
            stats.clone(),
        )?;
        let (traces, logs) = encoders(&config, &region);
        Ok(Self {
            name: name.to_owned(),
            config,
            traces,
            logs,
            service: Arc::new(service),
            stats,
        })
    }

    pub async fn run(self, mut rx: mpsc::Receiver<EventBatch>) {
        let timeout = Duration::from_millis(self.config.batch_timeout_ms);
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let mut spans: Building<Span> = Building::new(Signal::Traces);
        let mut logs: Building<LogRecord> = Building::new(Signal::Logs);
        let mut entities = EntityResources::default();
        let mut span_check = SpanCheck::default();
        let mut ready: Vec<Request> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50).min(timeout));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let logs_wanted = self.config.log_group.is_some();

        loop {
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    self.stats.count(Outcome::Received, batch.events.len() as u64);
                    let EventBatch { events, ack } = batch;
                    let now = now_ms();
                    for event in events {
                        let mut cuts = Truncations::default();
                        match event {
                            Event::Span(s) => {
                                let start = (s.start_unix_nano / 1_000_000) as i64;
                                let end = (s.end_unix_nano / 1_000_000) as i64;
                                if !request::in_time_window(start, end, now) {
                                    self.drop_item(Drop::TimeOutOfRange);
                                    continue;
                                }
                                let res = Arc::clone(&s.resource);
                                let scope = (s.scope_name.clone(), s.scope_version.clone());
                                let item = self.traces.span(s, &mut cuts);
                                self.count_cuts(cuts);
                                if let Err(why) = span_check.check(&self.traces, Some(&res), (&scope.0, &scope.1), &item) {
                                    self.drop_item(why);
                                    continue;
                                }
                                self.add(&self.traces, &mut spans, Some(&res), (&scope.0, &scope.1), item, &ack, &mut ready, Pending::<Span>::into_request);
                            }
                            Event::Log(l) if logs_wanted => {
                                if !request::in_time_window(l.timestamp_ms, l.timestamp_ms, now) {
                                    self.drop_item(Drop::TimeOutOfRange);
                                    continue;
                                }
                                // File lines carry enrich attributes instead of a resource.
                                let res = l.resource.clone().or_else(|| entities.for_attributes(&l.attributes));
                                let scope = log_scope(&l);
                                let item = self.logs.log(l, &mut cuts);
                                self.count_cuts(cuts);
                                self.add(&self.logs, &mut logs, res.as_ref(), (&scope.0, &scope.1), item, &ack, &mut ready, Pending::<LogRecord>::into_request);
                            }
                            Event::Log(_) | Event::Metric(_) => {
                                self.stats.count(Outcome::Rejected, 1);
                                self.stats.error("unsupported_signal");
                            }
                        }
                    }
                    settle(&mut spans, &ack);
                    settle(&mut logs, &ack);
                    // Every request holding this batch's items has its own copy now.
                    ack.delivered();
                }
                _ = tick.tick() => {
                    if due(&spans, timeout) {
                        ready.push(close(&mut spans, Pending::<Span>::into_request));
                    }
                    if due(&logs, timeout) {
                        ready.push(close(&mut logs, Pending::<LogRecord>::into_request));
                    }
                }
            }
            // Backpressure: waiting for a free slot here leaves the queue unread.
            for req in ready.drain(..) {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let service = Arc::clone(&self.service);
                tasks.spawn(async move {
                    service.deliver(req).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
        }

        // Input closed: send what is left, then wait for every request to be answered.
        if !spans.pending.is_empty() {
            ready.push(close(&mut spans, Pending::<Span>::into_request));
        }
        if !logs.pending.is_empty() {
            ready.push(close(&mut logs, Pending::<LogRecord>::into_request));
        }
        for req in ready {
            let service = Arc::clone(&self.service);
            tasks.spawn(async move { service.deliver(req).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    fn drop_item(&self, why: Drop) {
        self.stats.count(Outcome::Rejected, 1);
        self.stats.error(why.error_name());
        let limit = match why {
            Drop::SpanTooLarge => "200 KB per span",
            Drop::ResourceTooLarge => "16 KB per resource and scope",
            Drop::TimeOutOfRange => "14 days back to 2 hours ahead",
        };
        tracing::warn!(sink = %self.name, limit, "an item is outside the AWS OTLP endpoint's limits; dropped");
    }

    #[allow(clippy::too_many_arguments)]
    fn add<I: Message>(
        &self,
        encoder: &Encoder,
        b: &mut Building<I>,
        resource: Option<&Arc<Resource>>,
        scope: (&str, &str),
        item: I,
        ack: &Ack,
        ready: &mut Vec<Request>,
        into_request: fn(Pending<I>) -> Encoded,
    ) {
        match b.pending.add(encoder, resource, scope, item) {
            Ok(None) => {}
            Ok(Some(full)) => {
                // The new request starts with the item that did not fit.
                let mut acks = std::mem::take(&mut b.acks);
                if b.has_current {
                    acks.push(ack.clone());
                }
                ready.push(request(b.signal, into_request(full), acks));
                b.started = Some(Instant::now());
            }
            Err(TooLarge) => {
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("item_too_large");
                tracing::warn!(sink = %self.name, limit = encoder.limits.max_request_bytes,
                    "an item is larger than a whole request may be; dropped");
                return;
            }
        }
        b.has_current = true;
        b.started.get_or_insert_with(Instant::now);
        let max_items = match b.signal {
            Signal::Traces => self.config.batch_max_events,
            Signal::Logs => self.config.batch_max_events.min(MAX_LOG_REQUEST_RECORDS),
        };
        if b.pending.len() >= max_items {
            let mut acks = std::mem::take(&mut b.acks);
            acks.push(ack.clone());
            b.has_current = false;
            b.started = None;
            ready.push(request(
                b.signal,
                into_request(std::mem::take(&mut b.pending)),
                acks,
            ));
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

fn request(signal: Signal, message: Encoded, acks: Vec<Ack>) -> Request {
    Request {
        signal,
        items: request::items(&message),
        message,
        acks,
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

fn close<I: Message>(b: &mut Building<I>, into_request: fn(Pending<I>) -> Encoded) -> Request {
    let acks = std::mem::take(&mut b.acks);
    b.started = None;
    request(b.signal, into_request(std::mem::take(&mut b.pending)), acks)
}
