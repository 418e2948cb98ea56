//! Export requests → events.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
    SummaryDataPoint, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};

use super::value::{any_to_json, any_to_tag, attributes_to_json};
use crate::event::{
    Event, LogEvent, MetricEvent, MetricValue, OtlpLogFields, Resource, SpanEvent, SpanEventRecord,
    SpanKind, SpanLink, SpanStatus, StatusCode, Tags, Temporality, now_ms,
};

/// Items of a request that did not become events: the count and the first reason, as the
/// OTLP partial-success answer reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejected {
    pub count: u64,
    pub message: String,
}

impl Rejected {
    fn add(&mut self, why: impl FnOnce() -> String) {
        if self.count == 0 {
            self.message = why();
        }
        self.count += 1;
    }
}

/// Where decoded events go. A plain `Vec` takes everything; a [`Budgeted`] one stops taking
/// events past a byte budget, so that a small request cannot decode into unbounded memory
/// (names and attributes copied into every item multiply it).
pub trait Collect {
    fn push(&mut self, event: Event);
    fn reserve(&mut self, additional: usize);
    /// Over budget: the caller stops decoding and refuses the request.
    fn is_full(&self) -> bool;
}

impl Collect for Vec<Event> {
    fn push(&mut self, event: Event) {
        Vec::push(self, event);
    }
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
    fn is_full(&self) -> bool {
        false
    }
}

/// Events decoded under a byte budget (their `size_hint`s).
pub struct Budgeted {
    pub events: Vec<Event>,
    left: usize,
    full: bool,
}

impl Budgeted {
    pub fn new(bytes: usize) -> Self {
        Self {
            events: Vec::new(),
            left: bytes,
            full: false,
        }
    }
}

impl Collect for Budgeted {
    fn push(&mut self, event: Event) {
        let n = event.size_hint();
        if self.full || n > self.left {
            self.full = true;
            return;
        }
        self.left -= n;
        self.events.push(event);
    }
    fn reserve(&mut self, additional: usize) {
        // Reserve no more than the budget could hold (an item is at least a few hundred bytes).
        self.events.reserve(additional.min(self.left / 256));
    }
    fn is_full(&self) -> bool {
        self.full
    }
}

/// Longest scope name or version, metric name or unit kept (in characters): each is copied
/// into every item, so one huge name must not multiply.
pub const MAX_NAME_CHARS: usize = 1024;

fn capped(mut s: String) -> String {
    crate::text::truncate_chars(&mut s, MAX_NAME_CHARS);
    s
}

fn resource(r: Option<v1::Resource>) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: attributes_to_json(r.map(|r| r.attributes).unwrap_or_default()),
    })
}

fn scope(s: Option<InstrumentationScope>) -> (String, String) {
    s.map(|s| (capped(s.name), capped(s.version)))
        .unwrap_or_default()
}

fn id16(b: &[u8]) -> Option<[u8; 16]> {
    b.try_into().ok()
}

fn id8(b: &[u8]) -> Option<[u8; 8]> {
    b.try_into().ok()
}

/// Spans → `Event::Span`, appended to `out`.
pub fn traces<C: Collect>(req: ExportTraceServiceRequest, out: &mut C) -> Rejected {
    let mut rejected = Rejected::default();
    for rs in req.resource_spans {
        let res = resource(rs.resource);
        for ss in rs.scope_spans {
            if out.is_full() {
                return rejected;
            }
            let (scope_name, scope_version) = scope(ss.scope);
            out.reserve(ss.spans.len());
            for s in ss.spans {
                match span(s, &res, &scope_name, &scope_version) {
                    Ok(e) => out.push(Event::Span(e)),
                    Err(why) => rejected.add(|| why.to_owned()),
                }
            }
        }
    }
    rejected
}

fn span(
    s: Span,
    res: &Arc<Resource>,
    scope_name: &str,
    scope_version: &str,
) -> Result<SpanEvent, &'static str> {
    let trace_id = id16(&s.trace_id)
        .filter(|id| *id != [0; 16])
        .ok_or("span with a trace id that is not 16 bytes (or all zero)")?;
    let span_id = id8(&s.span_id)
        .filter(|id| *id != [0; 8])
        .ok_or("span with a span id that is not 8 bytes (or all zero)")?;
    let parent_span_id = match s.parent_span_id.len() {
        0 => None,
        _ => Some(id8(&s.parent_span_id).ok_or("span with a parent span id that is not 8 bytes")?),
    };
    let kind = match span::SpanKind::try_from(s.kind).unwrap_or(span::SpanKind::Unspecified) {
        span::SpanKind::Unspecified => SpanKind::Unspecified,
        span::SpanKind::Internal => SpanKind::Internal,
        span::SpanKind::Server => SpanKind::Server,
        span::SpanKind::Client => SpanKind::Client,
        span::SpanKind::Producer => SpanKind::Producer,
        span::SpanKind::Consumer => SpanKind::Consumer,
    };
    let status = match s.status {
        Some(st) => SpanStatus {
            code: match status::StatusCode::try_from(st.code).unwrap_or(status::StatusCode::Unset) {
                status::StatusCode::Unset => StatusCode::Unset,
                status::StatusCode::Ok => StatusCode::Ok,
                status::StatusCode::Error => StatusCode::Error,
            },
            message: st.message,
        },
        None => SpanStatus {
            code: StatusCode::Unset,
            message: String::new(),
        },
    };
    let mut links = Vec::with_capacity(s.links.len());
    for l in s.links {
        let (Some(trace_id), Some(span_id)) = (id16(&l.trace_id), id8(&l.span_id)) else {
            return Err("span link with a malformed trace or span id");
        };
        links.push(SpanLink {
            trace_id,
            span_id,
            attributes: attributes_to_json(l.attributes),
        });
    }
    Ok(SpanEvent {
        resource: Arc::clone(res),
        scope_name: scope_name.to_owned(),
        scope_version: scope_version.to_owned(),
        trace_id,
        span_id,
        parent_span_id,
        trace_state: s.trace_state,
        name: s.name,
        kind,
        start_unix_nano: s.start_time_unix_nano,
        end_unix_nano: s.end_time_unix_nano,
        attributes: attributes_to_json(s.attributes),
        events: s
            .events
            .into_iter()
            .map(|e| SpanEventRecord {
                time_unix_nano: e.time_unix_nano,
                name: e.name,
                attributes: attributes_to_json(e.attributes),
            })
            .collect(),
        links,
        status,
    })
}

fn ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

fn tags(kvs: Vec<KeyValue>) -> Tags {
    kvs.into_iter()
        .map(|kv| (kv.key, any_to_tag(kv.value)))
        .collect()
}

/// Bit 0 of data point flags: the point carries no value (a staleness marker).
const NO_RECORDED_VALUE: u32 = 1;

/// Metric data points → `Event::Metric`, one per point.
pub fn metrics<C: Collect>(req: ExportMetricsServiceRequest, out: &mut C) -> Rejected {
    let mut rejected = Rejected::default();
    for rm in req.resource_metrics {
        let res = resource(rm.resource);
        for sm in rm.scope_metrics {
            for mut m in sm.metrics {
                if out.is_full() {
                    return rejected;
                }
                m.name = capped(m.name);
                m.unit = capped(m.unit);
                let Some(data) = m.data else {
                    rejected.add(|| format!("metric `{}` has no data", m.name));
                    continue;
                };
                let emit = |time: u64, attrs: Vec<KeyValue>, value: MetricValue| {
                    out.push(Event::Metric(MetricEvent {
                        name: m.name.clone(),
                        timestamp_ms: ms(time),
                        unit: m.unit.clone(),
                        tags: tags(attrs),
                        value,
                        resource: Some(Arc::clone(&res)),
                    }))
                };
                points(data, &m.name, &mut rejected, emit);
            }
        }
    }
    rejected
}

/// The data points of one metric, each handed to `emit` as (time, attributes, value); points
/// that cannot be read are counted in `rejected`.
fn points(
    data: Data,
    name: &str,
    rejected: &mut Rejected,
    mut emit: impl FnMut(u64, Vec<KeyValue>, MetricValue),
) {
    match data {
        Data::Gauge(g) => {
            for p in g.data_points {
                match number(&p) {
                    Some(v) => emit(
                        p.time_unix_nano,
                        p.attributes,
                        MetricValue::Gauge { value: v },
                    ),
                    None => skip_or_reject(&p.flags, rejected, name),
                }
            }
        }
        Data::Sum(s) => {
            let temporality = temporality(s.aggregation_temporality);
            for p in s.data_points {
                let Some(v) = number(&p) else {
                    skip_or_reject(&p.flags, rejected, name);
                    continue;
                };
                let value = match (s.is_monotonic, temporality) {
                    // A sum that may go down is a reading, not a counter.
                    (false, Some(_)) => MetricValue::Gauge { value: v },
                    (true, Some(t)) => MetricValue::Counter {
                        value: v,
                        temporality: t(p.start_time_unix_nano),
                    },
                    (_, None) => {
                        rejected.add(|| unspecified(name));
                        continue;
                    }
                };
                emit(p.time_unix_nano, p.attributes, value);
            }
        }
        Data::Histogram(h) => histogram_points(
            h.aggregation_temporality,
            h.data_points,
            name,
            rejected,
            emit,
        ),
        Data::ExponentialHistogram(h) => histogram_points(
            h.aggregation_temporality,
            h.data_points,
            name,
            rejected,
            emit,
        ),
        Data::Summary(s) => {
            for p in s.data_points {
                if p.flags & NO_RECORDED_VALUE == 0 {
                    let (time, attributes, value) = summary(p);
                    emit(time, attributes, value);
                }
            }
        }
    }
}

/// A summary point as (time, attributes, value).
fn summary(p: SummaryDataPoint) -> (u64, Vec<KeyValue>, MetricValue) {
    let SummaryDataPoint {
        count,
        sum,
        quantile_values,
        time_unix_nano,
        attributes,
        ..
    } = p;
    let quantiles = quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    let value = MetricValue::Summary {
        count,
        sum,
        quantiles,
    };
    (time_unix_nano, attributes, value)
}

/// A data point of either histogram kind, read into (flags, time, attributes, value).
trait HistogramPoint {
    fn read(self, temporality: MakeTemporality) -> (u32, u64, Vec<KeyValue>, HistogramValue);
}

type HistogramValue = Result<MetricValue, &'static str>;

impl HistogramPoint for HistogramDataPoint {
    fn read(self, t: MakeTemporality) -> (u32, u64, Vec<KeyValue>, HistogramValue) {
        let value = histogram(&self, t(self.start_time_unix_nano));
        (self.flags, self.time_unix_nano, self.attributes, value)
    }
}

impl HistogramPoint for ExponentialHistogramDataPoint {
    fn read(self, t: MakeTemporality) -> (u32, u64, Vec<KeyValue>, HistogramValue) {
        let value = exponential(&self, t(self.start_time_unix_nano));
        (self.flags, self.time_unix_nano, self.attributes, value)
    }
}

/// The points of a histogram of either kind; without a temporality every point is refused.
fn histogram_points(
    aggregation_temporality: i32,
    points: Vec<impl HistogramPoint>,
    name: &str,
    rejected: &mut Rejected,
    mut emit: impl FnMut(u64, Vec<KeyValue>, MetricValue),
) {
    let Some(t) = temporality(aggregation_temporality) else {
        for _ in &points {
            rejected.add(|| unspecified(name));
        }
        return;
    };
    for p in points {
        let (flags, time, attributes, value) = p.read(t);
        if flags & NO_RECORDED_VALUE != 0 {
            continue;
        }
        match value {
            Ok(v) => emit(time, attributes, v),
            Err(why) => rejected.add(|| format!("metric `{name}`: {why}")),
        }
    }
}

fn unspecified(name: &str) -> String {
    format!("metric `{name}` has no aggregation temporality")
}

fn skip_or_reject(flags: &u32, rejected: &mut Rejected, name: &str) {
    if flags & NO_RECORDED_VALUE == 0 {
        rejected.add(|| format!("metric `{name}` has a data point without a value"));
    }
}

fn number(p: &NumberDataPoint) -> Option<f64> {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return None;
    }
    match p.value? {
        number_data_point::Value::AsDouble(d) => Some(d),
        number_data_point::Value::AsInt(i) => Some(i as f64),
    }
}

type MakeTemporality = fn(u64) -> Temporality;

fn temporality(t: i32) -> Option<MakeTemporality> {
    match AggregationTemporality::try_from(t).ok()? {
        AggregationTemporality::Delta => Some(delta as MakeTemporality),
        AggregationTemporality::Cumulative => Some(cumulative as MakeTemporality),
        AggregationTemporality::Unspecified => None,
    }
}

fn delta(_start: u64) -> Temporality {
    Temporality::Delta
}

fn cumulative(start: u64) -> Temporality {
    Temporality::Cumulative {
        start_ms: ms(start),
    }
}

fn histogram(p: &HistogramDataPoint, temporality: Temporality) -> HistogramValue {
    let bucket_counts = if p.bucket_counts.is_empty() {
        // Only count and sum: one bucket holding everything.
        if !p.explicit_bounds.is_empty() {
            return Err("histogram with bounds but no bucket counts");
        }
        vec![p.count]
    } else {
        if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
            return Err("histogram whose bucket counts do not match its bounds");
        }
        p.bucket_counts.clone()
    };
    Ok(MetricValue::Histogram {
        temporality,
        count: p.count,
        sum: p.sum.unwrap_or(0.0),
        min: p.min,
        max: p.max,
        bounds: p.explicit_bounds.clone(),
        bucket_counts,
    })
}

/// Most buckets an exponential histogram may have to be converted (OpenTelemetry SDKs use 160).
const MAX_EXPONENTIAL_BUCKETS: usize = 320;

/// An exponential histogram as explicit buckets: bucket `i` of scale `s` holds
/// `(base^i, base^(i+1)]` with `base = 2^(2^-s)`, so its bounds are exact powers. Negative
/// values have no explicit-bucket equivalent here and are refused.
fn exponential(p: &ExponentialHistogramDataPoint, temporality: Temporality) -> HistogramValue {
    if p.negative
        .as_ref()
        .is_some_and(|n| n.bucket_counts.iter().any(|c| *c > 0))
    {
        return Err("exponential histograms with negative values are not supported");
    }
    let positive = p.positive.as_ref();
    let counts = positive.map(|b| b.bucket_counts.as_slice()).unwrap_or(&[]);
    if counts.len() > MAX_EXPONENTIAL_BUCKETS || !(-10..=20).contains(&p.scale) {
        return Err("exponential histogram too large or with an unsupported scale");
    }
    let offset = positive.map(|b| b.offset).unwrap_or(0);
    let base = 2f64.powf(2f64.powi(-p.scale));
    // First bucket: zero (and the zero threshold); then one bucket per exponential bucket; the
    // overflow bucket stays empty.
    let mut bounds = Vec::with_capacity(counts.len() + 1);
    let mut bucket_counts = Vec::with_capacity(counts.len() + 2);
    bounds.push(p.zero_threshold.max(0.0));
    bucket_counts.push(p.zero_count);
    for (i, c) in counts.iter().enumerate() {
        bounds.push(base.powi(offset + i as i32 + 1));
        bucket_counts.push(*c);
    }
    bucket_counts.push(0);
    if bounds.windows(2).any(|w| w[0] >= w[1]) || bounds.iter().any(|b| !b.is_finite()) {
        return Err("exponential histogram whose buckets cannot be made explicit");
    }
    Ok(MetricValue::Histogram {
        temporality,
        count: p.count,
        sum: p.sum.unwrap_or(0.0),
        min: p.min,
        max: p.max,
        bounds,
        bucket_counts,
    })
}

/// Log records → `Event::Log` with their OTLP fields kept.
pub fn logs<C: Collect>(req: ExportLogsServiceRequest, out: &mut C) -> Rejected {
    let rejected = Rejected::default();
    for rl in req.resource_logs {
        let res = resource(rl.resource);
        for sl in rl.scope_logs {
            if out.is_full() {
                return rejected;
            }
            let (scope_name, scope_version) = scope(sl.scope);
            out.reserve(sl.log_records.len());
            for r in sl.log_records {
                out.push(Event::Log(log(r, &res, &scope_name, &scope_version)));
            }
        }
    }
    rejected
}

fn log(r: LogRecord, res: &Arc<Resource>, scope_name: &str, scope_version: &str) -> LogEvent {
    let time = if r.time_unix_nano > 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    let timestamp_ms = if time > 0 { ms(time) } else { now_ms() };
    let (message, body) = match any_to_json(r.body) {
        serde_json::Value::String(s) => (s, None),
        serde_json::Value::Null => (String::new(), None),
        other => (other.to_string(), Some(other)),
    };
    LogEvent {
        timestamp_ms,
        message,
        attributes: attributes_to_json(r.attributes),
        structured: false,
        resource: Some(Arc::clone(res)),
        otlp: Some(Box::new(OtlpLogFields {
            time_unix_nano: r.time_unix_nano,
            observed_time_unix_nano: r.observed_time_unix_nano,
            severity_number: r.severity_number,
            severity_text: r.severity_text,
            // Ids of the wrong length are dropped: the record itself is still worth keeping.
            trace_id: id16(&r.trace_id),
            span_id: id8(&r.span_id),
            flags: r.flags,
            event_name: r.event_name,
            scope_name: scope_name.to_owned(),
            scope_version: scope_version.to_owned(),
            body,
        })),
    }
}
