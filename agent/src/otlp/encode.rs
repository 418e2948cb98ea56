//! Events → export requests, grouped by resource and scope and cut under a byte limit.
//!
//! [`Pending`] collects the items of one request as they come: each event is converted to its
//! protobuf message right away (moving its strings), its encoded size is added up, and when the
//! next item would push the request over `max_request_bytes` the request is handed back and a
//! new one begun. So a backend's payload limit holds for every request without encoding twice.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    self as pm, AggregationTemporality, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span, status};
use prost::Message;

pub use super::value::Cuts as Truncations;
use super::value::{
    ValueLimits, cut_in_place, json_into_any, json_into_attributes, json_to_attributes,
    string_value,
};
use crate::event::{
    Attributes, LogEvent, MetricEvent, MetricValue, Resource, Sample, SpanEvent, SpanKind,
    StatusCode, Temporality,
};

#[derive(Debug, Clone, Copy)]
pub struct EncodeLimits {
    /// Most bytes of one encoded (uncompressed) request.
    pub max_request_bytes: usize,
    pub values: ValueLimits,
}

/// Converts events to OTLP messages for one backend: its limits and the resource attributes it
/// adds to every resource (without overriding the event's own).
#[derive(Debug, Clone)]
pub struct Encoder {
    pub limits: EncodeLimits,
    extra_resource: Attributes,
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoded {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Encoded {
    pub fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Encoded::Traces(r) => r.encode_to_vec(),
            Encoded::Metrics(r) => r.encode_to_vec(),
            Encoded::Logs(r) => r.encode_to_vec(),
        }
    }

    /// The OTLP/HTTP path of the signal.
    pub fn path(&self) -> &'static str {
        match self {
            Encoded::Traces(_) => "/v1/traces",
            Encoded::Metrics(_) => "/v1/metrics",
            Encoded::Logs(_) => "/v1/logs",
        }
    }
}

/// One item was larger than a whole request may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Bytes a length-delimited field adds around its content (tag + length varint), at most.
const FIELD_OVERHEAD: usize = 6;

struct Group<I> {
    resource: usize,
    scope_name: String,
    scope_version: String,
    items: Vec<I>,
}

/// The items of one request, grouped by resource and scope.
pub struct Pending<I> {
    /// The events' resources (kept alive so their addresses stay unique) with their messages.
    resources: Vec<(Option<Arc<Resource>>, v1::Resource)>,
    groups: Vec<Group<I>>,
    bytes: usize,
    items: usize,
}

impl<I> Default for Pending<I> {
    fn default() -> Self {
        Self {
            resources: Vec::new(),
            groups: Vec::new(),
            bytes: 0,
            items: 0,
        }
    }
}

impl<I: Message> Pending<I> {
    pub fn len(&self) -> usize {
        self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `item`; when it does not fit, the request so far is returned and `item` starts the
    /// next one.
    pub fn add(
        &mut self,
        encoder: &Encoder,
        resource: Option<&Arc<Resource>>,
        scope: (&str, &str),
        item: I,
    ) -> Result<Option<Pending<I>>, TooLarge> {
        let max = encoder.limits.max_request_bytes;
        let item_bytes = item.encoded_len() + FIELD_OVERHEAD;
        let res_index = self
            .resources
            .iter()
            .position(|(r, _)| same_resource(r.as_ref(), resource));
        let (res_bytes, res_message) = match res_index {
            Some(_) => (0, None),
            None => {
                let m = encoder.resource(resource);
                (m.encoded_len() + 2 * FIELD_OVERHEAD, Some(m))
            }
        };
        let group = res_index.and_then(|ri| {
            self.groups.iter().rposition(|g| {
                g.resource == ri && g.scope_name == scope.0 && g.scope_version == scope.1
            })
        });
        let group_bytes = match group {
            Some(_) => 0,
            None => scope.0.len() + scope.1.len() + 3 * FIELD_OVERHEAD,
        };
        let needed = item_bytes + res_bytes + group_bytes;
        if self.bytes + needed > max {
            if self.is_empty() {
                return Err(TooLarge);
            }
            // Would it fit in a request of its own? Otherwise nothing is cut for it.
            let res_alone = match res_index {
                Some(ri) => self.resources[ri].1.encoded_len() + 2 * FIELD_OVERHEAD,
                None => res_bytes,
            };
            let group_alone = scope.0.len() + scope.1.len() + 3 * FIELD_OVERHEAD;
            if item_bytes + res_alone + group_alone > max {
                return Err(TooLarge);
            }
            let full = std::mem::take(self);
            let again = self.add(encoder, resource, scope, item)?;
            debug_assert!(again.is_none());
            return Ok(Some(full));
        }
        let ri = match res_index {
            Some(ri) => ri,
            None => {
                let m = res_message.expect("made above when new");
                self.resources.push((resource.cloned(), m));
                self.resources.len() - 1
            }
        };
        match group {
            Some(gi) => self.groups[gi].items.push(item),
            None => self.groups.push(Group {
                resource: ri,
                scope_name: scope.0.to_owned(),
                scope_version: scope.1.to_owned(),
                items: vec![item],
            }),
        }
        self.bytes += needed;
        self.items += 1;
        Ok(None)
    }

    /// The request's resources, each with its scopes and their items.
    fn assemble<S, R>(
        self,
        mut scoped: impl FnMut(InstrumentationScope, Vec<I>) -> S,
        mut resourced: impl FnMut(v1::Resource, Vec<S>) -> R,
    ) -> Vec<R> {
        let mut per_resource: Vec<Vec<S>> = self.resources.iter().map(|_| Vec::new()).collect();
        for g in self.groups {
            let scope = InstrumentationScope {
                name: g.scope_name,
                version: g.scope_version,
                ..Default::default()
            };
            per_resource[g.resource].push(scoped(scope, g.items));
        }
        self.resources
            .into_iter()
            .zip(per_resource)
            .map(|((_, r), scopes)| resourced(r, scopes))
            .collect()
    }
}

fn same_resource(a: Option<&Arc<Resource>>, b: Option<&Arc<Resource>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

impl Pending<Span> {
    pub fn into_request(self) -> Encoded {
        Encoded::Traces(ExportTraceServiceRequest {
            resource_spans: self.assemble(
                |scope, spans| ScopeSpans {
                    scope: Some(scope),
                    spans,
                    schema_url: String::new(),
                },
                |resource, scope_spans| ResourceSpans {
                    resource: Some(resource),
                    scope_spans,
                    schema_url: String::new(),
                },
            ),
        })
    }
}

impl Pending<pm::Metric> {
    pub fn into_request(self) -> Encoded {
        Encoded::Metrics(ExportMetricsServiceRequest {
            resource_metrics: self.assemble(
                |scope, metrics| ScopeMetrics {
                    scope: Some(scope),
                    metrics,
                    schema_url: String::new(),
                },
                |resource, scope_metrics| ResourceMetrics {
                    resource: Some(resource),
                    scope_metrics,
                    schema_url: String::new(),
                },
            ),
        })
    }
}

impl Pending<LogRecord> {
    pub fn into_request(self) -> Encoded {
        Encoded::Logs(ExportLogsServiceRequest {
            resource_logs: self.assemble(
                |scope, log_records| ScopeLogs {
                    scope: Some(scope),
                    log_records,
                    schema_url: String::new(),
                },
                |resource, scope_logs| ResourceLogs {
                    resource: Some(resource),
                    scope_logs,
                    schema_url: String::new(),
                },
            ),
        })
    }
}

fn ms_to_nanos(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}

impl Encoder {
    pub fn new(limits: EncodeLimits, extra_resource: Attributes) -> Self {
        Self {
            limits,
            extra_resource,
        }
    }

    /// The resource message: the event's attributes plus the configured ones it lacks.
    pub fn resource(&self, resource: Option<&Arc<Resource>>) -> v1::Resource {
        let mut cuts = Truncations::default();
        let mut attributes = match resource {
            Some(r) => json_to_attributes(&r.attributes, self.limits.values, &mut cuts),
            None => Vec::new(),
        };
        for (k, v) in &self.extra_resource {
            if !resource.is_some_and(|r| r.attributes.contains_key(k)) {
                attributes.push(KeyValue {
                    key: k.clone(),
                    value: Some(super::value::json_to_any(v, self.limits.values, &mut cuts)),
                    key_strindex: 0,
                });
            }
        }
        v1::Resource {
            attributes,
            ..Default::default()
        }
    }

    pub fn span(&self, e: SpanEvent, cuts: &mut Truncations) -> Span {
        let limits = self.limits.values;
        let mut name = e.name;
        cut_in_place(&mut name, limits, cuts);
        let kind = match e.kind {
            SpanKind::Unspecified => span::SpanKind::Unspecified,
            SpanKind::Internal => span::SpanKind::Internal,
            SpanKind::Server => span::SpanKind::Server,
            SpanKind::Client => span::SpanKind::Client,
            SpanKind::Producer => span::SpanKind::Producer,
            SpanKind::Consumer => span::SpanKind::Consumer,
        };
        let code = match e.status.code {
            StatusCode::Unset => status::StatusCode::Unset,
            StatusCode::Ok => status::StatusCode::Ok,
            StatusCode::Error => status::StatusCode::Error,
        };
        let mut status_message = e.status.message;
        cut_in_place(&mut status_message, limits, cuts);
        Span {
            trace_id: e.trace_id.to_vec(),
            span_id: e.span_id.to_vec(),
            trace_state: e.trace_state,
            parent_span_id: e.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0,
            name,
            kind: kind as i32,
            start_time_unix_nano: e.start_unix_nano,
            end_time_unix_nano: e.end_unix_nano,
            attributes: json_into_attributes(e.attributes, limits, cuts),
            dropped_attributes_count: 0,
            events: e
                .events
                .into_iter()
                .map(|ev| span::Event {
                    time_unix_nano: ev.time_unix_nano,
                    name: ev.name,
                    attributes: json_into_attributes(ev.attributes, limits, cuts),
                    dropped_attributes_count: 0,
                })
                .collect(),
            dropped_events_count: 0,
            links: e
                .links
                .into_iter()
                .map(|l| span::Link {
                    trace_id: l.trace_id.to_vec(),
                    span_id: l.span_id.to_vec(),
                    attributes: json_into_attributes(l.attributes, limits, cuts),
                    ..Default::default()
                })
                .collect(),
            dropped_links_count: 0,
            status: Some(opentelemetry_proto::tonic::trace::v1::Status {
                message: status_message,
                code: code as i32,
            }),
        }
    }

    /// One metric message per event. `start_ms` is the start of the point's window when known
    /// (the previous point of a delta series, the start of a cumulative one).
    pub fn metric(
        &self,
        e: MetricEvent,
        start_ms: Option<i64>,
        cuts: &mut Truncations,
    ) -> pm::Metric {
        let limits = self.limits.values;
        let time = ms_to_nanos(e.timestamp_ms);
        let attributes: Vec<KeyValue> = e
            .tags
            .into_iter()
            .map(|(key, mut v)| {
                cut_in_place(&mut v, limits, cuts);
                KeyValue {
                    key,
                    value: Some(string_value(v)),
                    key_strindex: 0,
                }
            })
            .collect();
        let start_for = |t: Temporality| match t {
            Temporality::Cumulative { start_ms } => ms_to_nanos(start_ms),
            Temporality::Delta => start_ms.map(ms_to_nanos).unwrap_or(time),
        };
        let temporality_of = |t: Temporality| match t {
            Temporality::Delta => AggregationTemporality::Delta as i32,
            Temporality::Cumulative { .. } => AggregationTemporality::Cumulative as i32,
        };
        let number = |v: f64, start: u64| NumberDataPoint {
            attributes: attributes.clone(),
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        let data = match e.value {
            MetricValue::Counter { value, temporality } => Data::Sum(pm::Sum {
                data_points: vec![number(value, start_for(temporality))],
                aggregation_temporality: temporality_of(temporality),
                is_monotonic: true,
            }),
            MetricValue::Gauge { value } => Data::Gauge(pm::Gauge {
                data_points: vec![number(value, start_ms.map(ms_to_nanos).unwrap_or(0))],
            }),
            MetricValue::Histogram {
                temporality,
                count,
                sum,
                min,
                max,
                bounds,
                bucket_counts,
            } => Data::Histogram(pm::Histogram {
                data_points: vec![pm::HistogramDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: start_for(temporality),
                    time_unix_nano: time,
                    count,
                    sum: Some(sum),
                    bucket_counts,
                    explicit_bounds: bounds,
                    min,
                    max,
                    ..Default::default()
                }],
                aggregation_temporality: temporality_of(temporality),
            }),
            MetricValue::Summary {
                count,
                sum,
                quantiles,
            } => Data::Summary(pm::Summary {
                data_points: vec![pm::SummaryDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: start_ms.map(ms_to_nanos).unwrap_or(0),
                    time_unix_nano: time,
                    count,
                    sum,
                    quantile_values: quantile_values(quantiles),
                    flags: 0,
                }],
            }),
            MetricValue::Distribution { samples } => Data::Histogram(distribution(
                samples,
                attributes,
                start_ms.map(ms_to_nanos).unwrap_or(time),
                time,
            )),
        };
        pm::Metric {
            name: e.name,
            unit: e.unit,
            data: Some(data),
            ..Default::default()
        }
    }

    pub fn log(&self, e: LogEvent, cuts: &mut Truncations) -> LogRecord {
        let limits = self.limits.values;
        let o = e.otlp.map(|o| *o).unwrap_or_default();
        let body = match o.body {
            Some(body) => json_into_any(body, limits, cuts),
            None => {
                let mut m = e.message;
                cut_in_place(&mut m, limits, cuts);
                string_value(m)
            }
        };
        let time = if o.time_unix_nano > 0 || o.observed_time_unix_nano > 0 {
            o.time_unix_nano
        } else {
            ms_to_nanos(e.timestamp_ms)
        };
        LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: o.observed_time_unix_nano,
            severity_number: o.severity_number,
            severity_text: o.severity_text,
            body: Some(body),
            attributes: json_into_attributes(e.attributes, limits, cuts),
            dropped_attributes_count: 0,
            flags: o.flags,
            trace_id: o.trace_id.map(|t| t.to_vec()).unwrap_or_default(),
            span_id: o.span_id.map(|s| s.to_vec()).unwrap_or_default(),
            event_name: o.event_name,
        }
    }
}

/// The scope of a log event (OTLP records keep theirs; file lines have none).
pub fn log_scope(e: &LogEvent) -> (String, String) {
    e.otlp
        .as_ref()
        .map(|o| (o.scope_name.clone(), o.scope_version.clone()))
        .unwrap_or_default()
}
fn quantile_values(quantiles: Vec<(f64, f64)>) -> Vec<pm::summary_data_point::ValueAtQuantile> {
    quantiles
        .into_iter()
        .map(|(quantile, value)| pm::summary_data_point::ValueAtQuantile { quantile, value })
        .collect()
}

/// A distribution as an exact delta histogram: one bucket bound per distinct value, so no
/// sample changes bucket.
fn distribution(
    mut samples: Vec<Sample>,
    attributes: Vec<KeyValue>,
    start: u64,
    time: u64,
) -> pm::Histogram {
    samples.sort_by(|a, b| a.value.total_cmp(&b.value));
    let mut bounds: Vec<f64> = Vec::with_capacity(samples.len());
    let mut bucket_counts: Vec<u64> = Vec::with_capacity(samples.len() + 1);
    let (mut count, mut sum) = (0u64, 0.0f64);
    for s in &samples {
        count += s.count;
        sum += s.value * s.count as f64;
        if bounds.last() == Some(&s.value) {
            *bucket_counts.last_mut().expect("pushed with the bound") += s.count;
        } else {
            bounds.push(s.value);
            bucket_counts.push(s.count);
        }
    }
    bucket_counts.push(0);
    pm::Histogram {
        data_points: vec![pm::HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            count,
            sum: Some(sum),
            min: samples.first().map(|s| s.value),
            max: samples.last().map(|s| s.value),
            bucket_counts,
            explicit_bounds: bounds,
            ..Default::default()
        }],
        aggregation_temporality: AggregationTemporality::Delta as i32,
    }
}
