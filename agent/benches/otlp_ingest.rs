//! Throughput of the trace path: OTLP export requests (protobuf bytes as a client sends them)
//! → decode → span events → redaction → [span metrics] → New Relic requests (encode under the 1 MB limit,
//! attribute limits, gzip), against the cost of only decoding the same payloads with prost,
//! measured in the same run on one thread.
//!
//! `cargo bench -p vigil-agent --bench otlp_ingest`. Prints spans/s per core (CPU time of the
//! process, so other load on the machine does not count), the ratio to the decode-only
//! baseline, and the peak RSS.

use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use vigil_agent::event::Event;
use vigil_agent::otlp::encode::Pending;
use vigil_agent::otlp::{Truncations, decode};
use vigil_agent::redaction::{RedactionConfig, Redactor};
use vigil_agent::sinks::newrelic::{self, NewRelicConfig};
use vigil_agent::sinks::otlp_http;
use vigil_agent::telemetry::Stats;

const MODULES: &[&str] = &[
    "proxy",
    "authentication",
    "cart",
    "checkout",
    "inventory",
    "payment",
    "notification",
];
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

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn sv(v: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn iv(v: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    })
}

fn kv(k: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value,
        key_strindex: 0,
    }
}

/// One export of a shop module: its resource and `SPANS_PER_REQUEST` server/client spans with
/// ~10 attributes each, as the OpenTelemetry SDK would send them.
fn request(i: usize) -> Vec<u8> {
    let module = MODULES[i % MODULES.len()];
    let mut rng = fastrand::Rng::with_seed(i as u64);
    let resource = Resource {
        attributes: vec![
            kv("service.name", sv(module)),
            kv("service.namespace", sv("shop")),
            kv("service.version", sv("1.4.2")),
            kv("deployment.environment", sv("prod")),
            kv("host.id", sv("i-0a1b2c3d4e5f60718")),
            kv("host.name", sv("ip-10-0-1-23.eu-west-1.compute.internal")),
            kv("cloud.provider", sv("aws")),
            kv("cloud.region", sv("eu-west-1")),
            kv("cloud.availability_zone", sv("eu-west-1a")),
            kv("telemetry.sdk.language", sv("rust")),
            kv("telemetry.sdk.name", sv("opentelemetry")),
            kv("telemetry.sdk.version", sv("0.31.0")),
        ],
        ..Default::default()
    };
    let now = 1_763_800_000_000_000_000u64 + i as u64 * 1_000_000;
    let spans = (0..SPANS_PER_REQUEST)
        .map(|j| {
            let server = j % 3 == 0;
            let dur = rng.u64(200_000..400_000_000);
            let mut trace_id = [0u8; 16];
            rng.fill(&mut trace_id);
            let mut span_id = [0u8; 8];
            rng.fill(&mut span_id);
            let code = if rng.u8(0..100) < 3 { 500 } else { 200 };
            Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: if server {
                    vec![]
                } else {
                    span_id.iter().rev().copied().collect()
                },
                name: if server {
                    format!("POST /{module}/{{id}}")
                } else {
                    "SELECT shop.items".into()
                },
                kind: if server {
                    span::SpanKind::Server
                } else {
                    span::SpanKind::Client
                } as i32,
                start_time_unix_nano: now,
                end_time_unix_nano: now + dur,
                attributes: vec![
                    kv("http.request.method", sv("POST")),
                    kv("http.route", sv(format!("/{module}/{{id}}"))),
                    kv("http.response.status_code", iv(code)),
                    kv("url.path", sv(format!("/{module}/{}", rng.u32(..)))),
                    kv("url.scheme", sv("https")),
                    kv("server.address", sv("shop.example.com")),
                    kv("network.protocol.version", sv("1.1")),
                    kv(
                        "user_agent.original",
                        sv("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
                    ),
                    kv("client.address", sv("203.0.113.7")),
                    kv("shop.cart.items", iv(rng.i64(1..20))),
                ],
                status: Some(Status {
                    code: if code == 500 {
                        status::StatusCode::Error
                    } else {
                        status::StatusCode::Unset
                    } as i32,
                    message: String::new(),
                }),
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

/// Where the span-metrics processor (another part of the agent) joins the path: it reads the
/// span events of each batch before they go on to the sinks. Add its call here to measure it.
fn span_metrics_hook(_events: &mut Vec<Event>) {}

fn main() {
    let payloads: Vec<Vec<u8>> = (0..REQUESTS).map(request).collect();
    let total_spans = (REQUESTS * SPANS_PER_REQUEST * ROUNDS) as f64;
    let payload_mb = payloads.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    println!(
        "otlp_ingest: {REQUESTS} export requests × {SPANS_PER_REQUEST} spans ({payload_mb:.1} MB of protobuf), {ROUNDS} rounds, one thread"
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

    // The agent's path, exactly as the otlp source and the newrelic sink run it.
    let config: NewRelicConfig = toml::from_str("").expect("defaults");
    let encoder = newrelic::encoder(&config);
    // Every source output redacts (card numbers on by default), so the path includes it.
    let redactor = Redactor::new(&RedactionConfig::default()).expect("default rules");
    let stats = Stats::new("bench");
    let (w, c) = (Instant::now(), cpu_seconds());
    let (mut requests, mut gz_bytes, mut raw_bytes, mut spans_out) =
        (0usize, 0usize, 0usize, 0usize);
    let mut pending: Pending<Span> = Pending::default();
    let mut ship = |p: Pending<Span>| {
        let bytes = p.into_request().encode_to_vec();
        raw_bytes += bytes.len();
        gz_bytes += otlp_http::gzip(&bytes).len();
        requests += 1;
    };
    for _ in 0..ROUNDS {
        for p in &payloads {
            let req = ExportTraceServiceRequest::decode(p.as_slice()).expect("valid payload");
            let mut events = Vec::with_capacity(SPANS_PER_REQUEST);
            let rejected = decode::traces(req, &mut events);
            assert_eq!(rejected.count, 0);
            redactor.apply(&mut events, &stats);
            span_metrics_hook(&mut events);
            let mut cuts = Truncations::default();
            for e in events {
                let Event::Span(s) = e else { continue };
                let res = std::sync::Arc::clone(&s.resource);
                let scope = (s.scope_name.clone(), s.scope_version.clone());
                let item = encoder.span(s, &mut cuts);
                spans_out += 1;
                if let Some(full) = pending
                    .add(&encoder, Some(&res), (&scope.0, &scope.1), item)
                    .expect("fits")
                {
                    ship(full);
                }
            }
        }
    }
    if !pending.is_empty() {
        ship(pending);
    }
    let (wall, cpu) = (w.elapsed().as_secs_f64(), cpu_seconds() - c);
    assert_eq!(spans_out as f64, total_spans);

    println!(
        "decode only (prost):      {:>10.0} spans/s per core  ({base_cpu:.2} s CPU, {base_wall:.2} s wall)",
        total_spans / base_cpu
    );
    println!(
        "ingest → New Relic + gzip: {:>10.0} spans/s per core  ({cpu:.2} s CPU, {wall:.2} s wall)",
        total_spans / cpu
    );
    println!(
        "cost ratio (full path / decode only): {:.1}×",
        cpu / base_cpu
    );
    println!(
        "New Relic requests: {requests}, {:.0} spans each, {:.0} KB raw → {:.0} KB gzip on average (limit 1,000 KB)",
        total_spans / requests as f64,
        raw_bytes as f64 / requests as f64 / 1e3,
        gz_bytes as f64 / requests as f64 / 1e3
    );
    println!(
        "peak RSS: {:.0} MB (includes the {payload_mb:.1} MB of test payloads)",
        peak_rss_mb()
    );
}
