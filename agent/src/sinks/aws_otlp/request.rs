//! The endpoints' published limits, checked item by item while encoding (so one bad span is a
//! counted drop, never a refused request that takes the batch with it), and halving a request
//! the endpoint refused, to isolate what it refused.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::config::{MAX_RESOURCE_SCOPE_BYTES, MAX_SPAN_BYTES};
use crate::event::Resource;
use crate::otlp::{Encoded, Encoder};

/// Timestamps the endpoints take: from 14 days back to 2 hours ahead.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

/// Why an item is dropped before sending (the `vigil_component_errors_total` error name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The span alone is over 200 KB.
    SpanTooLarge,
    /// Its resource and scope together are over 16 KB.
    ResourceTooLarge,
    /// Its time is more than 14 days back or 2 hours ahead.
    TimeOutOfRange,
}

impl Drop {
    pub fn error_name(self) -> &'static str {
        match self {
            Drop::SpanTooLarge => "span_too_large",
            Drop::ResourceTooLarge => "resource_too_large",
            Drop::TimeOutOfRange => "time_out_of_range",
        }
    }
}

/// The size limits of one span, checked on its encoded message before it joins a request.
#[derive(Default)]
pub struct SpanCheck {
    /// The last resource seen and the size of its message (resources repeat batch after batch).
    last_resource: Option<(Arc<Resource>, usize)>,
}

impl SpanCheck {
    pub fn check(
        &mut self,
        encoder: &Encoder,
        resource: Option<&Arc<Resource>>,
        scope: (&str, &str),
        span: &Span,
    ) -> Result<(), Drop> {
        if span.encoded_len() > MAX_SPAN_BYTES {
            return Err(Drop::SpanTooLarge);
        }
        let resource_bytes = match (&self.last_resource, resource) {
            (Some((last, n)), Some(r)) if Arc::ptr_eq(last, r) => *n,
            _ => {
                let n = encoder.resource(resource).encoded_len();
                self.last_resource = resource.map(|r| (Arc::clone(r), n));
                n
            }
        };
        if resource_bytes + scope.0.len() + scope.1.len() > MAX_RESOURCE_SCOPE_BYTES {
            return Err(Drop::ResourceTooLarge);
        }
        Ok(())
    }
}

/// Is `[start_ms, end_ms]` inside the window the endpoints take at `now_ms`?
pub fn in_time_window(start_ms: i64, end_ms: i64, now_ms: i64) -> bool {
    start_ms >= now_ms - MAX_AGE_MS && end_ms <= now_ms + MAX_AHEAD_MS
}

/// Number of items (spans or log records) in a request.
pub fn items(message: &Encoded) -> usize {
    match message {
        Encoded::Traces(r) => r
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum(),
        Encoded::Logs(r) => r
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum(),
        Encoded::Metrics(_) => 0,
    }
}

/// Splits a request into its first `n` items and the rest, keeping each item's resource and
/// scope.
pub fn split(message: Encoded, n: usize) -> (Encoded, Encoded) {
    match message {
        Encoded::Traces(r) => {
            let (a, b) = split_groups(
                r.resource_spans,
                n,
                |rs| std::mem::take(&mut rs.scope_spans),
                |ss| std::mem::take(&mut ss.spans),
                |rs, scopes| ResourceSpans {
                    scope_spans: scopes,
                    ..rs.clone()
                },
                |ss, spans| ScopeSpans {
                    spans,
                    ..ss.clone()
                },
            );
            (
                Encoded::Traces(ExportTraceServiceRequest { resource_spans: a }),
                Encoded::Traces(ExportTraceServiceRequest { resource_spans: b }),
            )
        }
        Encoded::Logs(r) => {
            let (a, b) = split_groups(
                r.resource_logs,
                n,
                |rl| std::mem::take(&mut rl.scope_logs),
                |sl| std::mem::take(&mut sl.log_records),
                |rl, scopes| ResourceLogs {
                    scope_logs: scopes,
                    ..rl.clone()
                },
                |sl, records| ScopeLogs {
                    log_records: records,
                    ..sl.clone()
                },
            );
            (
                Encoded::Logs(ExportLogsServiceRequest { resource_logs: a }),
                Encoded::Logs(ExportLogsServiceRequest { resource_logs: b }),
            )
        }
        m @ Encoded::Metrics(_) => (m, Encoded::Metrics(Default::default())),
    }
}

/// The generic walk behind [`split`]: resources (R) hold scopes (S) hold items (I).
fn split_groups<R, S, I>(
    resources: Vec<R>,
    mut n: usize,
    take_scopes: impl Fn(&mut R) -> Vec<S>,
    take_items: impl Fn(&mut S) -> Vec<I>,
    make_resource: impl Fn(&R, Vec<S>) -> R,
    make_scope: impl Fn(&S, Vec<I>) -> S,
) -> (Vec<R>, Vec<R>) {
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for mut r in resources {
        let (mut scopes_a, mut scopes_b) = (Vec::new(), Vec::new());
        for mut s in take_scopes(&mut r) {
            let mut items = take_items(&mut s);
            if n >= items.len() {
                n -= items.len();
                scopes_a.push(make_scope(&s, items));
            } else {
                let tail = items.split_off(n);
                n = 0;
                if !items.is_empty() {
                    scopes_a.push(make_scope(&s, items));
                }
                scopes_b.push(make_scope(&s, tail));
            }
        }
        if !scopes_a.is_empty() {
            first.push(make_resource(&r, scopes_a));
        }
        if !scopes_b.is_empty() {
            rest.push(make_resource(&r, scopes_b));
        }
    }
    (first, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn spans(names: &[&str]) -> Vec<Span> {
        names
            .iter()
            .map(|n| Span {
                name: (*n).into(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn split_keeps_every_item_with_its_resource_and_scope() {
        let scope = |name: &str, s: &[&str]| ScopeSpans {
            scope: Some(
                opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                    name: name.into(),
                    ..Default::default()
                },
            ),
            spans: spans(s),
            schema_url: String::new(),
        };
        let req = Encoded::Traces(ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![scope("a", &["1", "2"]), scope("b", &["3"])],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![scope("c", &["4", "5"])],
                    ..Default::default()
                },
            ],
        });
        assert_eq!(items(&req), 5);
        let (a, b) = split(req, 2);
        assert_eq!((items(&a), items(&b)), (2, 3));
        let Encoded::Traces(b) = b else { panic!() };
        assert_eq!(b.resource_spans.len(), 2);
        assert_eq!(
            b.resource_spans[0].scope_spans[0]
                .scope
                .as_ref()
                .unwrap()
                .name,
            "b"
        );
        assert_eq!(b.resource_spans[1].scope_spans[0].spans[1].name, "5");
        let Encoded::Traces(a) = a else { panic!() };
        assert_eq!(a.resource_spans.len(), 1);
    }

    #[test]
    fn time_window() {
        let now = 1_000_000_000_000;
        assert!(in_time_window(now - 1000, now, now));
        assert!(!in_time_window(now - MAX_AGE_MS - 1, now, now));
        assert!(!in_time_window(now, now + MAX_AHEAD_MS + 1, now));
    }
}
