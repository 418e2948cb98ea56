//! Decode → encode round trips and request cutting.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::encode::{Pending, TooLarge};
use super::value::ValueLimits;
use super::*;
use crate::event::Event;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        key_strindex: 0,
    }
}

fn request(services: &[&str], spans: usize, attr_len: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: services
            .iter()
            .enumerate()
            .map(|(r, svc)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", svc)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1".into(),
                        ..Default::default()
                    }),
                    spans: (0..spans)
                        .map(|i| Span {
                            trace_id: vec![r as u8 + 1; 16],
                            span_id: vec![(i % 250) as u8 + 1; 8],
                            name: format!("span {i}"),
                            attributes: vec![kv("long", &"x".repeat(attr_len))],
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn encoder(max: usize) -> Encoder {
    Encoder::new(
        EncodeLimits {
            max_request_bytes: max,
            values: ValueLimits {
                max_chars: 4095,
                max_array: 64,
            },
        },
        Default::default(),
    )
}

fn encode_all(
    enc: &Encoder,
    events: Vec<Event>,
) -> (Vec<ExportTraceServiceRequest>, Truncations, usize) {
    let mut cuts = Truncations::default();
    let mut pending: Pending<Span> = Pending::default();
    let mut out = Vec::new();
    let mut too_large = 0;
    for e in events {
        let Event::Span(s) = e else { panic!() };
        let res = Arc::clone(&s.resource);
        let scope = (s.scope_name.clone(), s.scope_version.clone());
        let item = enc.span(s, &mut cuts);
        match pending.add(enc, Some(&res), (&scope.0, &scope.1), item) {
            Ok(Some(full)) => out.push(full),
            Ok(None) => {}
            Err(TooLarge) => too_large += 1,
        }
    }
    if !pending.is_empty() {
        out.push(pending);
    }
    let reqs = out
        .into_iter()
        .map(|p| match p.into_request() {
            Encoded::Traces(r) => r,
            _ => unreachable!(),
        })
        .collect();
    (reqs, cuts, too_large)
}

#[test]
fn spans_round_trip_grouped_by_resource_and_scope() {
    let req = request(&["cart", "checkout"], 3, 10);
    let mut events = Vec::new();
    let rejected = decode::traces(req.clone(), &mut events);
    assert_eq!(rejected, Rejected::default());
    assert_eq!(events.len(), 6);
    // One shared resource per ResourceSpans.
    let (Event::Span(a), Event::Span(b)) = (&events[0], &events[1]) else {
        panic!()
    };
    assert!(Arc::ptr_eq(&a.resource, &b.resource));
    let (reqs, cuts, _) = encode_all(&encoder(1_000_000), events);
    assert_eq!(cuts, Truncations::default());
    assert_eq!(reqs.len(), 1);
    let mut back = reqs[0].clone();
    // Encoding writes an explicit Unset status; the input had none.
    for rs in &mut back.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.status = None;
            }
        }
    }
    assert_eq!(back, req);
}

#[test]
fn requests_are_cut_under_the_byte_limit_and_values_truncated() {
    let req = request(&["cart"], 400, 5000);
    let mut events = Vec::new();
    decode::traces(req, &mut events);
    let (reqs, cuts, too_large) = encode_all(&encoder(200_000), events);
    assert_eq!(too_large, 0);
    assert_eq!(cuts.strings, 400, "every 5000-char value cut to 4095");
    assert!(reqs.len() >= 8, "{} requests", reqs.len());
    let mut total = 0;
    for r in &reqs {
        assert!(r.encoded_len() <= 200_000, "{} bytes", r.encoded_len());
        total += r.resource_spans[0].scope_spans[0].spans.len();
        let v = &r.resource_spans[0].scope_spans[0].spans[0].attributes[0];
        let Some(any_value::Value::StringValue(s)) =
            v.value.as_ref().and_then(|v| v.value.as_ref())
        else {
            panic!()
        };
        assert_eq!(s.chars().count(), 4095);
    }
    assert_eq!(total, 400);
    // An item bigger than a whole request is refused, not sent.
    let mut events = Vec::new();
    decode::traces(request(&["cart"], 2, 3000), &mut events);
    let (reqs, _, too_large) = encode_all(&encoder(2_000), events);
    assert_eq!((reqs.len(), too_large), (0, 2));
}

#[test]
fn malformed_items_are_rejected_with_a_reason() {
    let mut req = request(&["cart"], 3, 1);
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![];
    let mut events = Vec::new();
    let r = decode::traces(req, &mut events);
    assert_eq!(events.len(), 1);
    assert_eq!(r.count, 2);
    assert!(r.message.contains("trace id"), "{}", r.message);
}

#[test]
fn otlp_json_examples_of_the_spec_decode() {
    let json = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{"scope": {"name": "my.library"}, "spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173", "name": "I'm a server span", "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
        "kind": 2, "attributes": [{"key": "my.span.attr", "value": {"intValue": "7"}}]}]}]}]});
    let req: ExportTraceServiceRequest = serde_json::from_value(json).unwrap();
    let mut events = Vec::new();
    decode::traces(req, &mut events);
    let Event::Span(s) = &events[0] else { panic!() };
    assert_eq!(s.trace_id[0], 0x5b);
    assert_eq!(s.start_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(s.kind, crate::event::SpanKind::Server);
    assert_eq!(s.attributes["my.span.attr"], serde_json::json!(7));
    assert_eq!(s.resource.attributes["service.name"], "my.service");
}

#[test]
fn metrics_decode_with_exponential_histograms_made_explicit_and_bad_points_rejected() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        exponential_histogram_data_point::Buckets, metric::Data,
    };
    let exp = ExponentialHistogramDataPoint {
        time_unix_nano: 2_000_000,
        count: 6,
        sum: Some(20.0),
        scale: 0, // base 2: bucket i holds (2^i, 2^(i+1)]
        zero_count: 1,
        positive: Some(Buckets {
            offset: 1,
            bucket_counts: vec![2, 3],
        }),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "cart")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "latency".into(),
                        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![exp],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "orders".into(),
                        data: Some(Data::Sum(Sum {
                            // No temporality: refused.
                            data_points: vec![NumberDataPoint::default()],
                            aggregation_temporality: 0,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut events = Vec::new();
    let rejected = decode::metrics(req, &mut events);
    assert_eq!(rejected.count, 1);
    assert!(rejected.message.contains("orders"), "{}", rejected.message);
    let Event::Metric(m) = &events[0] else {
        panic!()
    };
    assert_eq!(
        m.resource.as_ref().unwrap().attributes["service.name"],
        "cart"
    );
    match &m.value {
        crate::event::MetricValue::Histogram {
            bounds,
            bucket_counts,
            count,
            ..
        } => {
            assert_eq!(bounds, &vec![0.0, 4.0, 8.0]);
            assert_eq!(bucket_counts, &vec![1, 2, 3, 0]);
            assert_eq!(*count, 6);
        }
        other => panic!("{other:?}"),
    }
}
