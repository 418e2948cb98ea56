//! `type = "span_metrics"`: request, error and latency metrics per service and route, computed
//! from server (and optionally consumer) spans before any sampling, so SLIs are exact.
//!
//! Every `flush_interval_ms` (aligned to the wall clock, so one-minute windows are minutes)
//! it emits, per (`service`, `route`):
//! - `requests`: delta counter of spans;
//! - `errors`: delta counter of spans with status Error or an HTTP status ≥ 500;
//! - `latency`: distribution of durations in milliseconds (rounded to two significant digits, so
//!   a window is a few dozen values however many requests it held);
//! - `requests_under_threshold`: per configured threshold (tag `threshold_ms`), spans that took
//!   at most that long — counted exactly, not from the rounded distribution.
//!
//! Spans are consumed here (they reach span sinks through another path of the pipeline); other
//! events pass through. The acknowledgements of consumed spans are held and attached to the
//! metrics of their window, so a source hears "delivered" only once those metrics are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::IntCounterVec;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::event::{
    Ack, Event, EventBatch, MetricEvent, MetricValue, Sample, SpanEvent, SpanKind, StatusCode,
    Temporality, now_ms,
};
use crate::output::Fanout;
use crate::telemetry::{Outcome, Stats, counter_family};
use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signal, Signals};

/// Route of the spans beyond `max_routes_per_service` (and of services beyond `max_services`).
pub const OVERFLOW_ROUTE: &str = "other";

static OVERFLOW: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_family(
        "vigil_span_metrics_overflow_total",
        "Spans counted under route `other` (or service `other`) because the route or service limit was reached.",
        &["component", "service"],
    )
});

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanMetricsConfig {
    /// Window length; windows end on multiples of it since the epoch.
    #[serde(default = "config_default::u64::<60_000>")]
    pub flush_interval_ms: u64,
    /// Latency thresholds for `requests_under_threshold`.
    #[serde(default = "default_thresholds")]
    pub thresholds_ms: Vec<u32>,
    /// Also count consumer spans (queue handlers), not only server spans.
    #[serde(default)]
    pub include_consumer: bool,
    /// Distinct routes per service; further routes are counted as `other`.
    #[serde(default = "config_default::usize::<50>")]
    pub max_routes_per_service: usize,
    /// Distinct services; further services are counted as service `other`.
    #[serde(default = "config_default::usize::<200>")]
    pub max_services: usize,
}

fn default_thresholds() -> Vec<u32> {
    vec![300]
}

impl ComponentConfig for SpanMetricsConfig {
    /// Spans are consumed and become metrics; other signals pass through.
    fn emits(&self, inputs: Signals) -> Signals {
        let metrics = if inputs.contains(Signal::Traces) {
            Signals::METRICS
        } else {
            Signals::NONE
        };
        inputs.without(Signals::TRACES).union(metrics)
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        errs.within(
            path,
            &[("flush_interval_ms", self.flush_interval_ms, 100, 3_600_000)],
        );
        if self.thresholds_ms.contains(&0) {
            errs.push(&path.key("thresholds_ms"), "thresholds must be above 0");
        }
        if self.thresholds_ms.len() > 10 {
            errs.push(&path.key("thresholds_ms"), "at most 10 thresholds");
        }
        errs.within(
            path,
            &[
                (
                    "max_routes_per_service",
                    self.max_routes_per_service,
                    1,
                    10_000,
                ),
                ("max_services", self.max_services, 1, 10_000),
            ],
        );
    }
}

/// Counts of one (service, route) in the current window.
#[derive(Debug, Default)]
struct Series {
    requests: u64,
    errors: u64,
    /// Rounded latency (as bits of the f64, for exact keys) → count.
    latency: BTreeMap<u64, u64>,
    /// Same order as the configured thresholds.
    under: Vec<u64>,
}

#[derive(Debug)]
pub struct SpanMetrics {
    config: SpanMetricsConfig,
    /// service → route → counts of the current window.
    window: HashMap<String, HashMap<String, Series>>,
    /// Services and routes admitted so far: the first `max_*` seen keep their own series for
    /// the agent's lifetime, so a series never flips between its name and `other`.
    known: HashMap<String, HashSet<String>>,
    /// Acks of the spans counted in the current window.
    held: Vec<Ack>,
}

impl SpanMetrics {
    pub fn new(config: &SpanMetricsConfig) -> Self {
        let mut config = config.clone();
        config.thresholds_ms.sort_unstable();
        config.thresholds_ms.dedup();
        Self {
            config,
            window: HashMap::new(),
            known: HashMap::new(),
            held: Vec::new(),
        }
    }

    /// Whether this span is counted.
    fn counts(&self, span: &SpanEvent) -> bool {
        span.kind == SpanKind::Server
            || (self.config.include_consumer && span.kind == SpanKind::Consumer)
    }

    /// Adds one span to the window.
    pub fn record(&mut self, span: &SpanEvent, stats_name: &str) {
        let service = span
            .attribute_str("service.name")
            .unwrap_or("unknown_service");
        let mut service = service.to_owned();
        if !self.known.contains_key(&service) {
            if self.known.len() < self.config.max_services {
                self.known.insert(service.clone(), HashSet::new());
            } else {
                OVERFLOW
                    .with_label_values(&[stats_name, OVERFLOW_ROUTE])
                    .inc();
                service = OVERFLOW_ROUTE.to_owned();
            }
        }
        let mut route = route_of(span);
        let known = self.known.entry(service.clone()).or_default();
        if !known.contains(&route) {
            if known.len() < self.config.max_routes_per_service {
                known.insert(route.clone());
            } else {
                OVERFLOW.with_label_values(&[stats_name, &service]).inc();
                route = OVERFLOW_ROUTE.to_owned();
            }
        }
        let series = self
            .window
            .entry(service)
            .or_default()
            .entry(route)
            .or_default();
        series.requests += 1;
        if is_error(span) {
            series.errors += 1;
        }
        let ms = span.duration_nanos() as f64 / 1e6;
        *series.latency.entry(round_ms(ms).to_bits()).or_default() += 1;
        series.under.resize(self.config.thresholds_ms.len(), 0);
        for (i, t) in self.config.thresholds_ms.iter().enumerate() {
            if ms <= f64::from(*t) {
                series.under[i] += 1;
            }
        }
    }

    /// The window's metrics, timestamped `at_ms`; the window starts empty again.
    pub fn flush(&mut self, at_ms: i64) -> Vec<MetricEvent> {
        let mut out = Vec::new();
        let delta = |v: u64| MetricValue::Counter {
            value: v as f64,
            temporality: Temporality::Delta,
        };
        for (service, routes) in self.window.drain() {
            for (route, s) in routes {
                if s.requests == 0 {
                    continue;
                }
                let tagged = |m: MetricEvent| {
                    m.with_tag("service", service.clone())
                        .with_tag("route", route.clone())
                };
                out.push(tagged(
                    MetricEvent::new("requests", at_ms, delta(s.requests)).with_unit("1"),
                ));
                out.push(tagged(
                    MetricEvent::new("errors", at_ms, delta(s.errors)).with_unit("1"),
                ));
                let samples = s
                    .latency
                    .iter()
                    .map(|(v, c)| Sample {
                        value: f64::from_bits(*v),
                        count: *c,
                    })
                    .collect();
                out.push(tagged(
                    MetricEvent::new("latency", at_ms, MetricValue::Distribution { samples })
                        .with_unit("ms"),
                ));
                for (i, t) in self.config.thresholds_ms.iter().enumerate() {
                    let n = s.under.get(i).copied().unwrap_or(0);
                    out.push(
                        tagged(
                            MetricEvent::new("requests_under_threshold", at_ms, delta(n))
                                .with_unit("1"),
                        )
                        .with_tag("threshold_ms", t.to_string()),
                    );
                }
            }
        }
        out
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<EventBatch>, out: Fanout, stats: Stats) {
        let interval = self.config.flush_interval_ms as i64;
        let mut next = next_boundary(now_ms(), interval);
        let component = stats.component().to_owned();
        loop {
            let wait = Duration::from_millis((next - now_ms()).max(0) as u64);
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    stats.count(Outcome::Received, batch.events.len() as u64);
                    let mut passed = Vec::new();
                    let mut consumed = false;
                    for event in batch.events {
                        match event {
                            Event::Span(span) => {
                                if self.counts(&span) {
                                    self.record(&span, &component);
                                }
                                consumed = true;
                            }
                            other => passed.push(other),
                        }
                    }
                    if consumed {
                        self.held.push(batch.ack.clone());
                    }
                    let ack = batch.ack;
                    if passed.is_empty() {
                        ack.delivered();
                    } else {
                        stats.count(Outcome::Sent, passed.len() as u64);
                        if out.send(EventBatch { events: passed, ack }).await.is_err() {
                            break;
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    let at = next;
                    next = next_boundary(now_ms(), interval);
                    if self.emit(at, &out, &stats).await.is_err() {
                        return;
                    }
                }
            }
        }
        // Input closed (shutdown): the partial window goes out now rather than never.
        let _ = self.emit(now_ms(), &out, &stats).await;
    }

    async fn emit(
        &mut self,
        at_ms: i64,
        out: &Fanout,
        stats: &Stats,
    ) -> Result<(), crate::output::Closed> {
        let metrics = self.flush(at_ms);
        let held = std::mem::take(&mut self.held);
        if metrics.is_empty() {
            // Only spans that are not counted (clients, internals): nothing to wait for.
            held.into_iter().for_each(Ack::delivered);
            return Ok(());
        }
        stats.count(Outcome::Sent, metrics.len() as u64);
        let events = metrics.into_iter().map(Event::Metric).collect();
        out.send(EventBatch {
            events,
            ack: Ack::merged(held),
        })
        .await
    }
}

/// `METHOD /route/{template}` for HTTP server spans with a route (the span name OpenTelemetry
/// recommends), else the span name. Never the raw URL path: that would be unbounded.
pub fn route_of(span: &SpanEvent) -> String {
    let route = span.attributes.get("http.route").and_then(|v| v.as_str());
    let method = span
        .attributes
        .get("http.request.method")
        .or_else(|| span.attributes.get("http.method"))
        .and_then(|v| v.as_str());
    match (method, route) {
        (Some(m), Some(r)) => format!("{m} {r}"),
        (None, Some(r)) => r.to_owned(),
        _ => span.name.clone(),
    }
}

/// Status Error, or an HTTP status of 500 and more (old and new attribute names).
pub fn is_error(span: &SpanEvent) -> bool {
    if span.status.code == StatusCode::Error {
        return true;
    }
    http_status(span).is_some_and(|s| s >= 500)
}

pub fn http_status(span: &SpanEvent) -> Option<i64> {
    let v = span
        .attributes
        .get("http.response.status_code")
        .or_else(|| span.attributes.get("http.status_code"))?;
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Two significant digits (0.1 ms resolution below 10 ms).
pub fn round_ms(ms: f64) -> f64 {
    if !ms.is_finite() || ms <= 0.0 {
        return 0.0;
    }
    if ms < 10.0 {
        return (ms * 10.0).round() / 10.0;
    }
    let magnitude = 10f64.powi(ms.log10().floor() as i32 - 1);
    (ms / magnitude).round() * magnitude
}

/// The first multiple of `interval` after `now`.
fn next_boundary(now: i64, interval: i64) -> i64 {
    (now / interval + 1) * interval
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Resource, SpanStatus};
    use std::sync::Arc;

    fn span(service: &str, route: Option<&str>, ms: u64, status: Option<i64>) -> SpanEvent {
        let mut resource = Resource::default();
        resource
            .attributes
            .insert("service.name".into(), service.into());
        let mut attributes = crate::event::Attributes::new();
        if let Some(r) = route {
            attributes.insert("http.route".into(), r.into());
            attributes.insert("http.request.method".into(), "POST".into());
        }
        if let Some(s) = status {
            attributes.insert("http.response.status_code".into(), s.into());
        }
        SpanEvent {
            resource: Arc::new(resource),
            scope_name: String::new(),
            scope_version: String::new(),
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            trace_state: String::new(),
            name: "POST".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1_000_000_000,
            end_unix_nano: 1_000_000_000 + ms * 1_000_000,
            attributes,
            events: vec![],
            links: vec![],
            status: SpanStatus {
                code: StatusCode::Unset,
                message: String::new(),
            },
        }
    }

    fn value(ms: &[MetricEvent], name: &str, route: &str, threshold: Option<&str>) -> f64 {
        let m = ms
            .iter()
            .find(|m| {
                m.name == name
                    && m.tags["route"] == route
                    && m.tags.get("threshold_ms").map(String::as_str) == threshold
            })
            .unwrap_or_else(|| panic!("{name} {route} missing"));
        match m.value {
            MetricValue::Counter { value, .. } => value,
            _ => panic!("not a counter"),
        }
    }

    #[test]
    fn counts_requests_errors_and_thresholds_exactly() {
        let mut p = SpanMetrics::new(&SpanMetricsConfig {
            flush_interval_ms: 1000,
            thresholds_ms: vec![300, 100],
            include_consumer: false,
            max_routes_per_service: 10,
            max_services: 10,
        });
        for (ms, status) in [
            (50, Some(200)),
            (100, Some(200)),
            (300, Some(500)),
            (301, Some(200)),
            (900, None),
        ] {
            p.record(&span("checkout", Some("/checkout"), ms, status), "t");
        }
        let mut error = span("checkout", Some("/checkout"), 10, Some(200));
        error.status.code = StatusCode::Error;
        p.record(&error, "t");
        let m = p.flush(60_000);
        let r = "POST /checkout";
        assert_eq!(value(&m, "requests", r, None), 6.0);
        assert_eq!(value(&m, "errors", r, None), 2.0);
        assert_eq!(value(&m, "requests_under_threshold", r, Some("300")), 4.0);
        assert_eq!(value(&m, "requests_under_threshold", r, Some("100")), 3.0);
        let lat = m.iter().find(|m| m.name == "latency").unwrap();
        let MetricValue::Distribution { samples } = &lat.value else {
            panic!("latency is a distribution")
        };
        assert_eq!(samples.iter().map(|s| s.count).sum::<u64>(), 6);
        assert!(samples.iter().any(|s| s.value == 300.0 && s.count == 2));
        assert_eq!(lat.unit, "ms");
        assert!(m.iter().all(|m| m.timestamp_ms == 60_000));
        assert!(p.flush(120_000).is_empty(), "a flushed window starts empty");
    }

    #[test]
    fn routes_over_the_limit_go_to_other() {
        let mut p = SpanMetrics::new(&SpanMetricsConfig {
            flush_interval_ms: 1000,
            thresholds_ms: vec![300],
            include_consumer: false,
            max_routes_per_service: 2,
            max_services: 10,
        });
        for r in ["/a", "/b", "/c", "/d", "/a"] {
            p.record(&span("cart", Some(r), 5, None), "overflow_test");
        }
        let m = p.flush(1);
        assert_eq!(value(&m, "requests", "POST /a", None), 2.0);
        assert_eq!(value(&m, "requests", "POST /b", None), 1.0);
        assert_eq!(value(&m, "requests", OVERFLOW_ROUTE, None), 2.0);
        assert_eq!(
            OVERFLOW.with_label_values(&["overflow_test", "cart"]).get(),
            2
        );
    }

    #[test]
    fn route_falls_back_to_span_name_never_the_path() {
        let mut s = span("cart", None, 5, None);
        s.attributes.insert("url.path".into(), "/cart/12345".into());
        s.name = "GET /cart/{id}".into();
        assert_eq!(route_of(&s), "GET /cart/{id}");
    }

    #[test]
    fn rounding_keeps_two_significant_digits() {
        assert_eq!(round_ms(3.26), 3.3);
        assert_eq!(round_ms(123.0), 120.0);
        assert_eq!(round_ms(1260.0), 1300.0);
        assert_eq!(round_ms(-1.0), 0.0);
    }
}
