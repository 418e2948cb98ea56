//! OTLP in, New Relic out, end to end: the real `vigil-agent` with the `otlp` source and the
//! `newrelic` sink, sending to the New Relic stand-in (`OtlpReceiver`, a real OTLP/HTTP server
//! on `opentelemetry-proto` that checks the api-key header, gzip, the 1 MB limit and decodes
//! every payload). Clients are the gRPC clients generated in `opentelemetry-proto` and reqwest
//! for OTLP/HTTP (protobuf and JSON).

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use vigil_test_support::{ChildGuard, Failure, OtlpReceiver, agent_command, free_port, wait_until};

const KEY: &str = "nrlicense-SECRET-0123456789abcdef";

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        key_strindex: 0,
    }
}

fn int(i: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    })
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("host.id", s("i-0abc123")),
            kv("host.name", s("shop-1")),
            kv("cloud.provider", s("aws")),
            kv("cloud.region", s("eu-west-1")),
        ],
        ..Default::default()
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Realistic spans of one service: ids derived from `seed`, ~10 attributes of every kind.
fn spans(service: &str, seed: u8, n: usize) -> ExportTraceServiceRequest {
    let now = now_nanos();
    let spans = (0..n)
        .map(|i| Span {
            trace_id: [seed; 16].to_vec(),
            span_id: {
                let mut id = [seed; 8];
                id[7] = i as u8;
                id[6] = (i >> 8) as u8;
                id.to_vec()
            },
            parent_span_id: if i == 0 {
                vec![]
            } else {
                vec![seed, seed, seed, seed, seed, seed, 0, 0]
            },
            name: format!("GET /cart/{{id}} #{i}"),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: now - 5_000_000,
            end_time_unix_nano: now,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s("/cart/{id}")),
                kv("http.response.status_code", int(200)),
                kv("url.path", s("/cart/42")),
                kv("server.address", s("shop.example")),
                kv("user_agent.original", s("Mozilla/5.0")),
                kv("cart.items", int(3)),
                kv(
                    "cart.total",
                    Some(AnyValue {
                        value: Some(any_value::Value::DoubleValue(19.5)),
                    }),
                ),
                kv(
                    "feature.enabled",
                    Some(AnyValue {
                        value: Some(any_value::Value::BoolValue(true)),
                    }),
                ),
                kv(
                    "tags",
                    Some(AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![s("a").unwrap(), int(2).unwrap()],
                        })),
                    }),
                ),
            ],
            status: Some(Status {
                code: status::StatusCode::Ok as i32,
                message: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "shop".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

struct Agent {
    guard: ChildGuard,
    http: u16,
    grpc: u16,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

/// Starts the agent with an otlp source (and a file source) feeding a newrelic sink.
fn agent_for_receiver(receiver: &OtlpReceiver, source_extra: &str, sink_extra: &str) -> Agent {
    agent_for_receiver_with(
        receiver,
        source_extra,
        sink_extra,
        r#"{ env = "NR_TEST_LICENSE" }"#,
        &[],
    )
}

/// As [`agent_for_receiver`], with the license key from `license` and extra environment.
fn agent_for_receiver_with(
    receiver: &OtlpReceiver,
    source_extra: &str,
    sink_extra: &str,
    license: &str,
    env: &[(String, String)],
) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{d}/data"
[sources.otlp]
type = "otlp"
grpc_address = "127.0.0.1:{grpc}"
http_address = "127.0.0.1:{http}"
{source_extra}
[sources.files]
type = "file"
include = ["{d}/logs/*.log"]
poll_interval_ms = 50
[processors.enrich]
type = "enrich"
inputs = ["files"]
attributes = {{ module = "cart" }}
ec2_metadata = false
[sinks.newrelic]
type = "newrelic"
inputs = ["otlp", "enrich"]
endpoint = "{endpoint}"
allow_insecure_http = true
license_key = {license}
batch.timeout_ms = 100
request.max_backoff_ms = 5000
resource_attributes = {{ "service.name" = "shop-logs", "deployment.environment" = "test" }}
{sink_extra}
"#,
            d = dir.path().display(),
            endpoint = receiver.endpoint(),
        ),
    )
    .unwrap();
    let mut cmd = agent_command(&config);
    cmd.env("NR_TEST_LICENSE", KEY)
        .env("VIGIL_LOG", "debug")
        .envs(env.iter().map(|(k, v)| (k, v)));
    let mut guard = ChildGuard::spawn("vigil-agent", cmd).unwrap();
    let up = wait_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", http)).is_ok()
            && TcpStream::connect(("127.0.0.1", grpc)).is_ok()
    });
    assert!(
        up && guard.is_running(),
        "agent did not start:\n{}",
        guard.log()
    );
    let path = dir.path().to_path_buf();
    Agent {
        guard,
        http,
        grpc,
        _dir: dir,
        dir: path,
    }
}

fn stop(agent: &mut Agent) -> String {
    agent.guard.signal(libc::SIGTERM);
    assert!(
        agent
            .guard
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "{}",
        agent.guard.log()
    );
    agent.guard.log()
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|k| k.key == key)
        .and_then(|k| k.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_logs_over_grpc_and_http_reach_new_relic_intact() {
    let nr = OtlpReceiver::start(KEY);
    let mut agent = agent_for_receiver(&nr, "", "");
    let http = reqwest::Client::new();

    // Traces: gRPC (gzip), HTTP protobuf (gzip), HTTP JSON.
    let grpc_req = spans("checkout", 1, 5);
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", agent.grpc))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let resp = client.export(grpc_req.clone()).await.unwrap().into_inner();
    assert_eq!(resp.partial_success, None);

    let http_req = spans("cart", 2, 3);
    let r = http
        .post(format!("http://127.0.0.1:{}/v1/traces", agent.http))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&http_req.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(body.partial_success, None);

    // OTLP/JSON as the spec writes it: hex ids, lowerCamelCase, enums as integers, 64-bit
    // integers as strings.
    let now = now_nanos();
    let json = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "payment"}}]},
        "scopeSpans": [{"scope": {"name": "pay"}, "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173",
            "name": "charge card",
            "kind": 3,
            "startTimeUnixNano": (now - 1_000_000).to_string(),
            "endTimeUnixNano": now.to_string(),
            "attributes": [
                {"key": "payment.amount", "value": {"doubleValue": 12.5}},
                {"key": "payment.attempt", "value": {"intValue": "2"}}
            ],
            "status": {"code": 2, "message": "card declined"}
        }]}]
    }]});
    let r = http
        .post(format!("http://127.0.0.1:{}/v1/traces", agent.http))
        .header("content-type", "application/json")
        .body(json.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");

    // Metrics over gRPC: a gauge, a cumulative counter (two points → one delta), a histogram.
    let start = now - 1_000_000; // after the agent started: the first point counts in full
    let number = |v: f64, t: u64, start: u64| NumberDataPoint {
        attributes: vec![kv("route", s("/checkout"))],
        start_time_unix_nano: start,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource("checkout")),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "queue.depth".into(),
                        unit: "1".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![number(7.0, now, 0)],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "orders".into(),
                        unit: "1".into(),
                        data: Some(Data::Sum(Sum {
                            data_points: vec![
                                number(10.0, now, start),
                                number(25.0, now + 1_000_000_000, start),
                            ],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "latency".into(),
                        unit: "ms".into(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: vec![kv("route", s("/checkout"))],
                                time_unix_nano: now,
                                start_time_unix_nano: start,
                                count: 4,
                                sum: Some(700.0),
                                bucket_counts: vec![1, 2, 1],
                                explicit_bounds: vec![100.0, 300.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut mclient = MetricsServiceClient::connect(format!("http://127.0.0.1:{}", agent.grpc))
        .await
        .unwrap();
    assert_eq!(
        mclient
            .export(metrics)
            .await
            .unwrap()
            .into_inner()
            .partial_success,
        None
    );

    // Logs over HTTP protobuf, and lines from a file.
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("inventory")),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: now,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: s("stock service timed out"),
                    attributes: vec![kv("sku", s("A-1"))],
                    trace_id: [1; 16].to_vec(),
                    span_id: [1; 8].to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = http
        .post(format!("http://127.0.0.1:{}/v1/logs", agent.http))
        .header("content-type", "application/x-protobuf")
        .body(logs.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    std::fs::write(
        agent.dir.join("logs/shop.log"),
        "file line one\nfile line two\n",
    )
    .unwrap();

    let arrived = wait_until(Duration::from_secs(20), || {
        nr.span_count() >= 9
            && !nr.metrics().is_empty()
            && {
                let records: usize = nr
                    .logs()
                    .iter()
                    .flat_map(|r| &r.resource_logs)
                    .flat_map(|r| &r.scope_logs)
                    .map(|s| s.log_records.len())
                    .sum();
                records >= 3
            }
            && nr
                .metrics()
                .iter()
                .flat_map(|r| &r.resource_metrics)
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum::<usize>()
                >= 3
    });
    assert!(
        arrived,
        "not everything arrived: {} spans\n{}",
        nr.span_count(),
        agent.guard.log()
    );
    assert_eq!(nr.violations(), Vec::<String>::new());

    // Spans: every id, attribute and resource as sent.
    let mut got: Vec<(Resource, Span)> = Vec::new();
    for r in nr.traces() {
        for rs in r.resource_spans {
            for ss in rs.scope_spans {
                for sp in ss.spans {
                    got.push((rs.resource.clone().unwrap(), sp));
                }
            }
        }
    }
    assert_eq!(got.len(), 9);
    for sent in [&grpc_req, &http_req] {
        let rs = &sent.resource_spans[0];
        for want in &rs.scope_spans[0].spans {
            let (res, span) = got
                .iter()
                .find(|(_, s)| s.span_id == want.span_id && s.trace_id == want.trace_id)
                .expect("span arrived");
            assert_eq!(span.parent_span_id, want.parent_span_id);
            assert_eq!(span.name, want.name);
            assert_eq!(span.kind, want.kind);
            assert_eq!(span.start_time_unix_nano, want.start_time_unix_nano);
            assert_eq!(span.end_time_unix_nano, want.end_time_unix_nano);
            let mut a = span.attributes.clone();
            let mut b = want.attributes.clone();
            a.sort_by(|x, y| x.key.cmp(&y.key));
            b.sort_by(|x, y| x.key.cmp(&y.key));
            assert_eq!(a, b);
            for kv in &rs.resource.as_ref().unwrap().attributes {
                assert_eq!(
                    attr(&res.attributes, &kv.key),
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    "{}",
                    kv.key
                );
            }
            // The configured attribute is added, the span's own service.name wins.
            assert_eq!(
                str_attr(&res.attributes, "deployment.environment"),
                Some("test")
            );
        }
    }
    let (res, json_span) = got.iter().find(|(_, s)| s.name == "charge card").unwrap();
    assert_eq!(
        json_span.trace_id,
        vec![
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(
        json_span.span_id,
        vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
    );
    assert_eq!(json_span.kind, span::SpanKind::Client as i32);
    assert_eq!(
        json_span.status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );
    assert_eq!(
        attr(&json_span.attributes, "payment.attempt"),
        Some(&any_value::Value::IntValue(2))
    );
    assert_eq!(str_attr(&res.attributes, "service.name"), Some("payment"));

    // Metrics: the gauge, the counter as deltas (10 from its start, then 15), the histogram.
    let mut points: Vec<(String, Metric)> = Vec::new();
    for r in nr.metrics() {
        for rm in r.resource_metrics {
            assert_eq!(
                str_attr(&rm.resource.as_ref().unwrap().attributes, "service.name"),
                Some("checkout")
            );
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    points.push((m.name.clone(), m));
                }
            }
        }
    }
    let orders: Vec<f64> = points
        .iter()
        .filter(|(n, _)| n == "orders")
        .map(|(_, m)| match &m.data {
            Some(Data::Sum(sum)) => {
                assert_eq!(
                    sum.aggregation_temporality,
                    AggregationTemporality::Delta as i32
                );
                match sum.data_points[0].value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    _ => panic!(),
                }
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(orders, vec![10.0, 15.0]);
    let latency = points.iter().find(|(n, _)| n == "latency").unwrap();
    match &latency.1.data {
        Some(Data::Histogram(h)) => {
            assert_eq!(h.data_points[0].bucket_counts, vec![1, 2, 1]);
            assert_eq!(h.data_points[0].explicit_bounds, vec![100.0, 300.0]);
            assert_eq!(
                str_attr(&h.data_points[0].attributes, "route"),
                Some("/checkout")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(points.iter().any(|(n, _)| n == "queue.depth"));

    // Logs: the OTLP record with its severity and trace context; file lines with the
    // configured resource.
    let mut records = Vec::new();
    for r in nr.logs() {
        for rl in r.resource_logs {
            for sl in rl.scope_logs {
                for lr in sl.log_records {
                    records.push((rl.resource.clone().unwrap(), lr));
                }
            }
        }
    }
    let (res, otlp_log) = records
        .iter()
        .find(|(_, r)| r.severity_text == "ERROR")
        .unwrap();
    assert_eq!(otlp_log.body, s("stock service timed out"));
    assert_eq!(otlp_log.severity_number, 17);
    assert_eq!(otlp_log.trace_id, vec![1; 16]);
    assert_eq!(str_attr(&otlp_log.attributes, "sku"), Some("A-1"));
    assert_eq!(str_attr(&res.attributes, "service.name"), Some("inventory"));
    let file_lines: Vec<_> = records
        .iter()
        .filter(|(_, r)| r.severity_text.is_empty())
        .collect();
    assert_eq!(file_lines.len(), 2);
    for (res, r) in file_lines {
        assert!(
            matches!(&r.body, Some(AnyValue { value: Some(any_value::Value::StringValue(b)) }) if b.starts_with("file line"))
        );
        // From the enrich processor's attributes, then the configured ones.
        assert_eq!(str_attr(&res.attributes, "service.name"), Some("cart"));
        assert!(str_attr(&res.attributes, "host.name").is_some_and(|h| !h.is_empty()));
        assert_eq!(
            str_attr(&res.attributes, "deployment.environment"),
            Some("test")
        );
        assert!(r.time_unix_nano > 0);
    }

    let log = stop(&mut agent);
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "debug logging was on:\n{log}"
    );
    assert!(
        !log.contains(KEY) && !log.contains("SECRET-0123"),
        "the license key leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_and_server_errors_are_retried_until_accepted() {
    let nr = OtlpReceiver::start(KEY);
    let mut agent = agent_for_receiver(&nr, "", "");
    nr.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after_secs: 2,
        },
    );
    nr.fail_next(2, Failure::ServerError);
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", agent.grpc))
        .await
        .unwrap();
    client.export(spans("checkout", 9, 4)).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || nr.span_count() == 4),
        "{}",
        agent.guard.log()
    );
    let reqs = nr.requests();
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 500, 500, 200]);
    let waited = reqs[1].at - reqs[0].at;
    assert!(
        waited >= Duration::from_millis(1_900),
        "Retry-After: 2 was not honoured: retried after {waited:?}"
    );
    assert_eq!(nr.violations(), Vec::<String>::new());
    let log = stop(&mut agent);
    assert!(log.contains("will retry"), "{log}");
    assert!(!log.contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_and_a_flood_get_otlp_errors_while_other_clients_are_served() {
    let nr = OtlpReceiver::start(KEY);
    // A slow New Relic that takes one small request at a time: ~100 spans/s.
    nr.set_delay(Duration::from_millis(500));
    let mut agent = agent_for_receiver(
        &nr,
        "max_request_bytes = 65536\nbackpressure_wait_ms = 200\nmax_concurrent_requests = 16",
        // A small disk buffer that blocks when full: the flood must reach the clients as
        // "retry later" once it is full, not fill the host's disk.
        "request.concurrency = 1\nbatch.max_events = 50\nbuffer = { type = \"disk\", max_bytes = 1048576, when_full = \"block\" }",
    );
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", agent.http);
    let post = |ct: &'static str, enc: Option<&'static str>, body: Vec<u8>| {
        let mut r = http
            .post(url("/v1/traces"))
            .header("content-type", ct)
            .body(body);
        if let Some(e) = enc {
            r = r.header("content-encoding", e);
        }
        r.send()
    };

    // Malformed protobuf, malformed JSON, wrong content type, wrong encoding.
    let r = post(
        "application/x-protobuf",
        None,
        b"\xff\xff\xff\x0fnot protobuf".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let st = tonic_types::Status::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(st.code, tonic::Code::InvalidArgument as i32);
    assert!(st.message.contains("decode"), "{}", st.message);
    assert_eq!(
        post("application/json", None, b"{\"resourceSpans\": 7}".to_vec())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("text/plain", None, b"hello".to_vec())
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        post("application/x-protobuf", Some("br"), vec![1])
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        post("application/x-protobuf", Some("gzip"), b"not gzip".to_vec())
            .await
            .unwrap()
            .status(),
        400
    );
    // Oversized body, and a gzip bomb: 40 MB of zeros in ~40 KB.
    assert_eq!(
        post("application/x-protobuf", None, vec![0u8; 100_000])
            .await
            .unwrap()
            .status(),
        413
    );
    let bomb = gzip(&vec![0u8; 40 * 1024 * 1024]);
    assert!(bomb.len() < 65536);
    assert_eq!(
        post("application/x-protobuf", Some("gzip"), bomb)
            .await
            .unwrap()
            .status(),
        413
    );
    // Partial success: one span with a 3-byte trace id among good ones.
    let mut req = spans("checkout", 3, 3);
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![1, 2, 3];
    let r = post("application/x-protobuf", None, req.encode_to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let partial = ExportTraceServiceResponse::decode(r.bytes().await.unwrap())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace id"),
        "{}",
        partial.error_message
    );
    // gRPC: malformed bytes (a valid gRPC frame holding garbage) are INVALID_ARGUMENT.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut frame = vec![0u8, 0, 0, 0, 12];
    frame.extend_from_slice(b"\xff\xff\xff\x0fgarbage!");
    let r = h2
        .post(format!(
            "http://127.0.0.1:{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            agent.grpc
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("3".to_owned()),
        "{:?}",
        r.headers()
    );
    // Oversized messages are refused with RESOURCE_EXHAUSTED (not retryable without RetryInfo).
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", agent.grpc))
        .await
        .unwrap();
    let err = client.export(spans("checkout", 4, 700)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

    // A flood: 10× what New Relic takes, from 8 concurrent senders for 4 s, while another
    // client keeps sending one small request every 200 ms.
    let flood_end = Instant::now() + Duration::from_secs(4);
    let mut flooders = Vec::new();
    for f in 0..8u8 {
        let http = http.clone();
        let u = url("/v1/traces");
        flooders.push(tokio::spawn(async move {
            let (mut ok, mut busy) = (0u32, 0u32);
            let body = spans("flood", 100 + f, 50).encode_to_vec();
            while Instant::now() < flood_end {
                let r = http
                    .post(&u)
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    200 => ok += 1,
                    503 => {
                        assert_eq!(r.headers()["retry-after"], "1");
                        busy += 1;
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
            (ok, busy)
        }));
    }
    let mut other_latencies = Vec::new();
    let mut grpc_unavailable = 0;
    while Instant::now() < flood_end {
        let t = Instant::now();
        match client.export(spans("other", 50, 1)).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                let details = tonic_types::StatusExt::get_error_details(&e);
                assert!(
                    details.retry_info().is_some(),
                    "UNAVAILABLE carries RetryInfo"
                );
                grpc_unavailable += 1;
            }
        }
        other_latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut ok, mut busy) = (0, 0);
    for f in flooders {
        let (o, b) = f.await.unwrap();
        ok += o;
        busy += b;
    }
    assert!(
        busy > 0,
        "the flood was never told to retry ({ok} accepted)"
    );
    assert!(agent.guard.is_running());
    // The other client always got an answer quickly (accepted or "retry later").
    let slowest = other_latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(2),
        "another client waited {slowest:?}"
    );
    eprintln!(
        "flood: {ok} requests accepted, {busy} told to retry; other client: {} sent, {grpc_unavailable} unavailable",
        other_latencies.len()
    );

    // Once the flood is over, the other client gets through and its span reaches New Relic.
    nr.set_delay(Duration::ZERO);
    let marker = spans("after-flood", 77, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.export(marker.clone()).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let arrived = wait_until(Duration::from_secs(40), || {
        nr.traces()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .any(|rs| {
                rs.resource
                    .as_ref()
                    .is_some_and(|r| str_attr(&r.attributes, "service.name") == Some("after-flood"))
            })
    });
    assert!(arrived, "{}", agent.guard.log());
    assert_eq!(nr.violations(), Vec::<String>::new());

    let log = stop(&mut agent);
    for counter in [
        "error=malformed_request",
        "error=unsupported_content_type",
        "error=request_too_large",
        "error=pipeline_full",
        "error=items_rejected",
    ] {
        assert!(
            log.contains(counter),
            "counter {counter} missing from the summary:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_license_key_comes_from_ssm_parameter_store_and_is_never_logged() {
    let moto = vigil_test_support::Moto::start();
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    ssm.put_parameter()
        .name("/vigil/newrelic/license")
        .value(KEY)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let nr = OtlpReceiver::start(KEY);
    let mut agent = agent_for_receiver_with(
        &nr,
        "",
        "",
        r#"{ ssm_parameter = "/vigil/newrelic/license" }"#,
        &moto.env(),
    );
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", agent.grpc))
        .await
        .unwrap();
    client.export(spans("checkout", 5, 2)).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || nr.span_count() == 2),
        "{}",
        agent.guard.log()
    );
    assert_eq!(
        nr.violations(),
        Vec::<String>::new(),
        "the api-key header carried the SSM value"
    );
    let log = stop(&mut agent);
    assert!(
        !log.contains(KEY) && !log.contains("SECRET-0123"),
        "the license key leaked into the log"
    );

    // A missing parameter stops the start with a clear message that names it.
    let nr2 = OtlpReceiver::start(KEY);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{d}"
[sources.otlp]
type = "otlp"
grpc = false
http_address = "127.0.0.1:{port}"
[sinks.nr]
type = "newrelic"
inputs = ["otlp"]
endpoint = "{e}"
allow_insecure_http = true
license_key = {{ ssm_parameter = "/vigil/missing" }}
"#,
            d = dir.path().display(),
            port = free_port(),
            e = nr2.endpoint()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("/vigil/missing"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_batches_are_split_under_1_mb_and_long_values_are_cut() {
    let nr = OtlpReceiver::start(KEY);
    let mut agent = agent_for_receiver(&nr, "", "batch.max_events = 100000");
    let http = reqwest::Client::new();
    // 6 requests × 500 spans × ~1.6 KB: ~5 MB for New Relic, which takes 1 MB per request.
    let mut sent = 0;
    for r in 0..6u8 {
        let mut req = spans("checkout", 10 + r, 500);
        for sp in &mut req.resource_spans[0].scope_spans[0].spans {
            sp.attributes.push(kv("payload", s(&"p".repeat(1500))));
        }
        // One over-long value and one over-long array per request.
        let first = &mut req.resource_spans[0].scope_spans[0].spans[0];
        first.attributes.push(kv("stack", s(&"é".repeat(5000))));
        let values = (0..100).map(|i| int(i).unwrap()).collect();
        first.attributes.push(kv(
            "ids",
            Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
            }),
        ));
        sent += 500;
        let r = http
            .post(format!("http://127.0.0.1:{}/v1/traces", agent.http))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(gzip(&req.encode_to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(
        wait_until(Duration::from_secs(30), || nr.span_count() == sent),
        "{} of {sent}\n{}",
        nr.span_count(),
        agent.guard.log()
    );
    assert_eq!(
        nr.violations(),
        Vec::<String>::new(),
        "every request within New Relic's rules"
    );
    let reqs = nr.requests();
    assert!(reqs.len() >= 5, "split into {} requests", reqs.len());
    assert!(
        reqs.iter().all(|r| r.decoded_bytes <= 1_000_000),
        "{:?}",
        reqs.iter().map(|r| r.decoded_bytes).collect::<Vec<_>>()
    );
    let mut cut_values = 0;
    for r in nr.traces() {
        for sp in r
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            if let Some(v) = str_attr(&sp.attributes, "stack") {
                assert_eq!(v.chars().count(), 4095);
                cut_values += 1;
            }
            if let Some(any_value::Value::ArrayValue(a)) = attr(&sp.attributes, "ids") {
                assert_eq!(a.values.len(), 64);
            }
        }
    }
    assert_eq!(cut_values, 6);
    let log = stop(&mut agent);
    assert!(log.contains("error=attribute_value_truncated"), "{log}");
    assert!(log.contains("error=attribute_array_truncated"), "{log}");
}
