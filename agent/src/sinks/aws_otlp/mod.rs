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
//! 1 MiB (logs) uncompressed and `batch.max_events` items. Delivery: [`service`].

mod config;
mod credentials;
pub mod request;
mod service;
#[cfg(test)]
mod tests;

pub use config::{
    AwsOtlpConfig, MAX_LOG_REQUEST_BYTES, MAX_LOG_REQUEST_RECORDS, MAX_RESOURCE_SCOPE_BYTES,
    MAX_SPAN_BYTES, MAX_TRACE_REQUEST_BYTES, MAX_TRACE_REQUEST_SPANS, Signal,
};

use std::sync::Arc;

use anyhow::Context;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;

use crate::event::{Ack, Attributes, Event, EventBatch, LogEvent, SpanEvent, now_ms};
use crate::otlp::encode::log_scope;
use crate::otlp::value::ValueLimits;
use crate::otlp::{EncodeLimits, Encoder, Truncations};
use crate::sinks::driver::settings::Settings;
use crate::sinks::driver::{self, Batches, Dispatch, Intake, Ready, Schedule};
use crate::sinks::newrelic::EntityResources;
use crate::sinks::otlp_http::batch::{OpenOtlp, Scoped, count_truncations};
use crate::telemetry::{Outcome, Stats};
use credentials::CredentialsCache;
use request::{Drop, SpanCheck};
pub use service::sign_headers;
use service::{Endpoints, Service};

/// Attribute values are kept whole up to this (the span limit of 200 KB bounds them anyway).
const VALUE_LIMITS: ValueLimits = ValueLimits {
    max_chars: 64 * 1024,
    max_array: 1_000,
};

pub struct AwsOtlpSink {
    name: String,
    config: AwsOtlpConfig,
    traces: Arc<Encoder>,
    logs: Arc<Encoder>,
    dispatch: Dispatch<Service>,
    stats: Stats,
}

/// The sink's half of the driver's loop: spans and log records to OTLP items, checked against
/// the endpoints' limits, one open request per signal.
struct Exports {
    name: String,
    stats: Stats,
    traces: Arc<Encoder>,
    logs: Arc<Encoder>,
    spans: Batches<Signal, OpenOtlp<Span>>,
    records: Batches<Signal, OpenOtlp<LogRecord>>,
    logs_wanted: bool,
    entities: EntityResources,
    span_check: SpanCheck,
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
            endpoints,
            CredentialsCache::new(provider),
            config.request_settings().timeout,
        )?;
        let (traces, logs) = encoders(&config, &region);
        Ok(Self {
            dispatch: Dispatch::shared(name, service, stats.clone(), config.request_settings()),
            name: name.to_owned(),
            config,
            traces: Arc::new(traces),
            logs: Arc::new(logs),
            stats,
        })
    }

    pub async fn run(self, rx: mpsc::Receiver<EventBatch>) {
        let batch = self.config.batch_settings();
        let intake = Exports {
            spans: OpenOtlp::batches(&self.traces, batch),
            records: OpenOtlp::batches(&self.logs, batch.at_most(MAX_LOG_REQUEST_RECORDS)),
            name: self.name,
            stats: self.stats,
            traces: self.traces,
            logs: self.logs,
            logs_wanted: self.config.log_group.is_some(),
            entities: EntityResources::default(),
            span_check: SpanCheck::default(),
        };
        driver::run(intake, rx, self.dispatch).await;
    }
}

impl Intake for Exports {
    type Backend = Service;

    fn take(&mut self, events: Vec<Event>, ack: &Ack, ready: &mut Ready<Service>) {
        let now = now_ms();
        for event in events {
            let item = match event {
                Event::Span(s) => self.span(s, now),
                Event::Log(l) if self.logs_wanted => self.record(l, now),
                Event::Log(_) | Event::Metric(_) => {
                    self.stats.count(Outcome::Rejected, 1);
                    self.stats.error("unsupported_signal");
                    continue;
                }
            };
            let added = match item {
                Ok(Item::Span(s)) => self.spans.add(&Signal::Traces, s, ack, ready),
                Ok(Item::Record(r)) => self.records.add(&Signal::Logs, r, ack, ready),
                Err(why) => {
                    self.drop_item(why);
                    continue;
                }
            };
            if added.is_err() {
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("item_too_large");
                tracing::warn!(sink = %self.name, "an item is larger than a whole request may be; dropped");
            }
        }
    }

    fn open(&mut self) -> impl Schedule<Service> + '_ {
        (&mut self.spans, &mut self.records)
    }
}

/// An item that passed the endpoint's limits.
enum Item {
    Span(Scoped<Span>),
    Record(Scoped<LogRecord>),
}

impl Exports {
    fn span(&mut self, s: SpanEvent, now: i64) -> Result<Item, Drop> {
        let start = (s.start_unix_nano / 1_000_000) as i64;
        let end = (s.end_unix_nano / 1_000_000) as i64;
        if !request::in_time_window(start, end, now) {
            return Err(Drop::TimeOutOfRange);
        }
        let resource = Arc::clone(&s.resource);
        let scope = (s.scope_name.clone(), s.scope_version.clone());
        let mut cuts = Truncations::default();
        let item = self.traces.span(s, &mut cuts);
        count_truncations(&self.stats, cuts);
        let scope_ref = (scope.0.as_str(), scope.1.as_str());
        self.span_check
            .check(&self.traces, Some(&resource), scope_ref, &item)?;
        Ok(Item::Span(Scoped {
            resource: Some(resource),
            scope,
            item,
        }))
    }

    fn record(&mut self, l: LogEvent, now: i64) -> Result<Item, Drop> {
        if !request::in_time_window(l.timestamp_ms, l.timestamp_ms, now) {
            return Err(Drop::TimeOutOfRange);
        }
        // File lines carry enrich attributes instead of a resource.
        let resource = l
            .resource
            .clone()
            .or_else(|| self.entities.for_attributes(&l.attributes));
        let scope = log_scope(&l);
        let mut cuts = Truncations::default();
        let item = self.logs.log(l, &mut cuts);
        count_truncations(&self.stats, cuts);
        Ok(Item::Record(Scoped {
            resource,
            scope,
            item,
        }))
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
}
