//! Throughput of the trace path through the `aws_otlp` sink: OTLP export requests (protobuf
//! bytes as a default OpenTelemetry SDK sends them, random W3C trace ids) → decode → span
//! events → redaction → the sink's work per span (encode with the shared OTLP encoder, the
//! 200 KB / 16 KB / time-window checks, requests cut at 5 MB and 10,000 spans) → protobuf →
//! gzip → SigV4 signature; against the cost of only decoding the same payloads with prost,
//! measured in the same run on one thread.
//!
//! `cargo bench -p vigil-agent --bench aws_otlp` (or `cargo bench --workspace --bench
//! aws_otlp`). Prints spans/s per core (CPU time of the process, so other load on the machine
//! does not count) and the ratio to the decode-only baseline. Sending is not measured (it
//! waits on the network, not the CPU).

use std::sync::Arc;
use std::time::Instant;

use aws_credential_types::Credentials;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use vigil_agent::event::{Event, now_ms};
use vigil_agent::otlp::encode::Pending;
use vigil_agent::otlp::{Truncations, decode};
use vigil_agent::redaction::{RedactionConfig, Redactor};
use vigil_agent::sinks::aws_otlp::request::{SpanCheck, in_time_window};
use vigil_agent::sinks::aws_otlp::{self, AwsOtlpConfig, MAX_TRACE_REQUEST_SPANS};
use vigil_agent::sinks::otlp_http::gzip;
use vigil_agent::telemetry::Stats;

const MODULES: &[&str] = &["proxy", "cart", "checkout", "inventory", "payment"];
const SPANS_PER_REQUEST: usize = 200;
const REQUESTS: usize = 250;
const ROUNDS: usize = 4;

fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}

fn s(v: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// One export of a shop module: a resource as the SDK fills it and server/client spans with
/// ten attributes each.
fn request(i: usize, now_nanos: u64) -> Vec<u8> {
    let module = MODULES[i % MODULES.len()];
    let mut rng = fastrand::Rng::with_seed(i as u64);
    let resource = Resource {
        attributes: vec![
            kv("service.name", s(module)),
            kv("service.version", s("1.4.2")),
            kv("deployment.environment", s("prod")),
            kv("host.name", s("ip-10-0-1-23.eu-west-1.compute.internal")),
            kv("host.id", s("i-0a1b2c3d4e5f60718")),
            kv("telemetry.sdk.language", s("python")),
            kv("telemetry.sdk.name", s("opentelemetry")),
            kv("telemetry.sdk.version", s("1.45.2")),
        ],
        ..Default::default()
    };
    let spans = (0..SPANS_PER_REQUEST)
        .map(|j| {
            let server = j % 3 == 0;
            let mut trace_id = [0u8; 16];
            rng.fill(&mut trace_id);
            let mut span_id = [0u8; 8];
            rng.fill(&mut span_id);
            let start = now_nanos - rng.u64(1_000_000_000..60_000_000_000);
            Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                name: format!("POST /{module}/{{id}}"),
                kind: if server {
                    span::SpanKind::Server
                } else {
                    span::SpanKind::Client
                } as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + rng.u64(200_000..400_000_000),
                attributes: vec![
                    kv("http.request.method", s("POST")),
                    kv("http.route", s(format!("/{module}/{{id}}"))),
                    kv("http.response.status_code", any_value::Value::IntValue(200)),
                    kv("url.path", s(format!("/{module}/{}", rng.u32(..)))),
                    kv("url.scheme", s("https")),
                    kv("server.address", s("shop.example.com")),
                    kv("network.protocol.version", s("1.1")),
                    kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64)")),
                    kv("client.address", s("203.0.113.7")),
                    kv(
                        "shop.cart.items",
                        any_value::Value::IntValue(rng.i64(1..20)),
                    ),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: format!("shop-{module}"),
                    version: "1.4.2".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn main() {
    let now = now_ms();
    let payloads: Vec<Vec<u8>> = (0..REQUESTS)
        .map(|i| request(i, now as u64 * 1_000_000))
        .collect();
    let total_spans = (REQUESTS * SPANS_PER_REQUEST * ROUNDS) as f64;
    println!(
        "aws_otlp: {REQUESTS} export requests × {SPANS_PER_REQUEST} spans, {ROUNDS} rounds, one thread"
    );

    // Baseline: prost decoding only.
    let (w, c) = (Instant::now(), cpu_seconds());
    let mut check = 0usize;
    for _ in 0..ROUNDS {
        for p in &payloads {
            let req = ExportTraceServiceRequest::decode(p.as_slice()).expect("valid payload");
            check += req.resource_spans.len();
        }
    }
    let (base_wall, base_cpu) = (w.elapsed().as_secs_f64(), cpu_seconds() - c);
    assert_eq!(check, REQUESTS * ROUNDS);

    // The agent's path: the otlp source's decoding and redaction, then what the sink does.
    let config: AwsOtlpConfig = toml::from_str("").expect("defaults");
    let (encoder, _) = aws_otlp::encoders(&config, "eu-west-1");
    let redactor = Redactor::new(&RedactionConfig::default()).expect("default rules");
    let stats = Stats::new("bench");
    let identity =
        Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "bench").into();
    let url = "https://xray.eu-west-1.amazonaws.com/v1/traces";
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "gzip"),
    ];
    let (w, c) = (Instant::now(), cpu_seconds());
    let (mut requests, mut gz_bytes, mut spans_out, mut dropped) = (0usize, 0usize, 0usize, 0usize);
    let mut pending: Pending<Span> = Pending::default();
    let mut span_check = SpanCheck::default();
    let mut ship = |p: Pending<Span>| {
        let body = gzip(&p.into_request().encode_to_vec());
        let signed = aws_otlp::sign_headers("eu-west-1", "xray", url, &headers, &body, &identity)
            .expect("signs");
        assert_eq!(signed.len(), 3);
        gz_bytes += body.len();
        requests += 1;
    };
    for _ in 0..ROUNDS {
        for p in &payloads {
            let req = ExportTraceServiceRequest::decode(p.as_slice()).expect("valid payload");
            let mut events = Vec::with_capacity(SPANS_PER_REQUEST);
            let rejected = decode::traces(req, &mut events);
            assert_eq!(rejected.count, 0);
            redactor.apply(&mut events, &stats);
            let mut cuts = Truncations::default();
            let now = now_ms();
            for e in events {
                let Event::Span(s) = e else { continue };
                let (start, end) = (
                    (s.start_unix_nano / 1_000_000) as i64,
                    (s.end_unix_nano / 1_000_000) as i64,
                );
                if !in_time_window(start, end, now) {
                    dropped += 1;
                    continue;
                }
                let res = Arc::clone(&s.resource);
                let scope = (s.scope_name.clone(), s.scope_version.clone());
                let item = encoder.span(s, &mut cuts);
                if span_check
                    .check(&encoder, Some(&res), (&scope.0, &scope.1), &item)
                    .is_err()
                {
                    dropped += 1;
                    continue;
                }
                spans_out += 1;
                if let Some(full) = pending
                    .add(&encoder, Some(&res), (&scope.0, &scope.1), item)
                    .expect("fits")
                {
                    ship(full);
                } else if pending.len() >= MAX_TRACE_REQUEST_SPANS {
                    ship(std::mem::take(&mut pending));
                }
            }
        }
    }
    if !pending.is_empty() {
        ship(pending);
    }
    let (wall, cpu) = (w.elapsed().as_secs_f64(), cpu_seconds() - c);
    assert_eq!((spans_out as f64, dropped), (total_spans, 0));

    println!(
        "decode only (prost):          {:>10.0} spans/s per core  ({base_cpu:.2} s CPU, {base_wall:.2} s wall)",
        total_spans / base_cpu
    );
    println!(
        "ingest → aws_otlp gzip+SigV4: {:>10.0} spans/s per core  ({cpu:.2} s CPU, {wall:.2} s wall)",
        total_spans / cpu
    );
    println!(
        "cost ratio (full path / decode only): {:.1}×",
        cpu / base_cpu
    );
    println!(
        "requests: {requests}, {:.0} spans each, {:.0} KB gzip on average (limits: 10,000 spans, 5 MB uncompressed)",
        total_spans / requests as f64,
        gz_bytes as f64 / requests as f64 / 1e3
    );
}
