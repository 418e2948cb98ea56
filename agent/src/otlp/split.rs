//! Halving an export request (to isolate the item an endpoint refused), keeping each item with
//! its resource and scope.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

use super::Encoded;

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
}
