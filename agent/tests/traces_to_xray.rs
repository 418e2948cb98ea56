//! The X-Ray sink against moto's X-Ray: documents are accepted and read back with
//! BatchGetTraces under the right trace ids, subsegments point at their parents, HTTP/SQL/fault
//! fields are mapped, more than 50 spans go out in several calls, an oversize document is handled,
//! and every batch is acknowledged only once delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use vigil_agent::event::{
    Ack, AckStatus, Attributes, Event, EventBatch, Resource, SpanEvent, SpanEventRecord, SpanKind,
    SpanStatus, StatusCode, ack_channel,
};
use vigil_agent::sinks::xray::{XRayConfig, XRaySink, segment};
use vigil_agent::telemetry::{Outcome, Stats};
use vigil_test_support::Moto;

fn point_sdk_at(moto: &Moto) {
    for (k, v) in moto.env() {
        // SAFETY: set before any thread of this test reads the environment (nextest runs each
        // test in its own process).
        unsafe { std::env::set_var(k, v) };
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A trace id as X-Ray-compatible generators make it: time first.
fn xray_trace_id(n: u8) -> [u8; 16] {
    let mut id = [n; 16];
    let secs = (now_nanos() / 1_000_000_000) as u32;
    id[..4].copy_from_slice(&secs.to_be_bytes());
    id
}

fn resource(service: &str) -> Arc<Resource> {
    let mut r = Resource::default();
    r.attributes.insert("service.name".into(), service.into());
    r.attributes
        .insert("cloud.platform".into(), "aws_ec2".into());
    r.attributes
        .insert("host.id".into(), "i-0123456789abcdef0".into());
    Arc::new(r)
}

#[allow(clippy::too_many_arguments)]
fn span(
    service: &str,
    trace: [u8; 16],
    id: u64,
    parent: Option<u64>,
    kind: SpanKind,
    name: &str,
    attrs: Value,
    error: bool,
) -> SpanEvent {
    let start = now_nanos() - 50_000_000;
    SpanEvent {
        resource: resource(service),
        scope_name: "test".into(),
        scope_version: String::new(),
        trace_id: trace,
        span_id: id.to_be_bytes(),
        parent_span_id: parent.map(u64::to_be_bytes),
        trace_state: String::new(),
        name: name.into(),
        kind,
        start_unix_nano: start,
        end_unix_nano: start + 42_500_000,
        attributes: serde_json::from_value::<Attributes>(attrs).unwrap(),
        events: vec![],
        links: vec![],
        status: SpanStatus {
            code: if error {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            message: if error { "boom".into() } else { String::new() },
        },
    }
}

fn config(toml_text: &str) -> XRayConfig {
    toml::from_str(toml_text).expect("valid sink config")
}

/// Reads every document of the traces back, by segment id.
async fn read_back(moto: &Moto, ids: &[String]) -> HashMap<String, Value> {
    let client = aws_sdk_xray::Client::new(&moto.sdk_config().await);
    let mut docs = HashMap::new();
    for chunk in ids.chunks(5) {
        let out = client
            .batch_get_traces()
            .set_trace_ids(Some(chunk.to_vec()))
            .send()
            .await
            .expect("BatchGetTraces");
        for t in out.traces() {
            for s in t.segments() {
                let doc: Value = serde_json::from_str(s.document().unwrap()).unwrap();
                assert_eq!(
                    Some(doc["trace_id"].as_str().unwrap()),
                    t.id(),
                    "document stored under its trace"
                );
                docs.insert(s.id().unwrap().to_owned(), doc);
            }
        }
    }
    docs
}

async fn run_sink(name: &str, cfg: XRayConfig, batches: Vec<Vec<Event>>) -> Vec<AckStatus> {
    let sink = XRaySink::new(name, cfg, Stats::new(name)).await;
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(sink.run(rx));
    let (ack_tx, mut ack_rx) = ack_channel();
    let n = batches.len();
    for (i, events) in batches.into_iter().enumerate() {
        let ack = Ack::new(i as u64, ack_tx.clone());
        tx.send(EventBatch { events, ack }).await.unwrap();
    }
    let mut statuses = vec![AckStatus::Undelivered; n];
    for _ in 0..n {
        let (id, status) = tokio::time::timeout(Duration::from_secs(20), ack_rx.recv())
            .await
            .expect("acknowledged in time")
            .unwrap();
        statuses[id as usize] = status;
    }
    drop(tx);
    task.await.unwrap();
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_become_segments_and_subsegments_in_xray() {
    let moto = Moto::start();
    point_sdk_at(&moto);
    let trace = xray_trace_id(0x5a);
    let mut failed_server = span(
        "checkout",
        trace,
        3,
        Some(2),
        SpanKind::Server,
        "POST /checkout",
        json!({"http.request.method": "POST", "http.route": "/checkout", "url.path": "/checkout",
               "http.response.status_code": 500, "order.id": "o-17", "cart.items": 3}),
        true,
    );
    failed_server.events.push(SpanEventRecord {
        time_unix_nano: failed_server.end_unix_nano,
        name: "exception".into(),
        attributes: serde_json::from_value(json!({
            "exception.type": "PaymentDeclined",
            "exception.message": "gateway said no",
            "exception.stacktrace": "at pay\nat checkout"
        }))
        .unwrap(),
    });
    let spans = vec![
        span(
            "proxy",
            trace,
            1,
            None,
            SpanKind::Server,
            "POST /checkout",
            json!({"http.method": "POST", "http.target": "/checkout", "http.status_code": 500,
                   "http.user_agent": "curl/8", "http.client_ip": "10.0.0.9"}),
            false,
        ),
        span(
            "proxy",
            trace,
            2,
            Some(1),
            SpanKind::Client,
            "POST",
            json!({"http.request.method": "POST", "url.full": "http://checkout.internal/checkout",
                   "peer.service": "checkout", "http.response.status_code": 500}),
            true,
        ),
        failed_server,
        span(
            "checkout",
            trace,
            4,
            Some(3),
            SpanKind::Client,
            "UPDATE inventory",
            json!({"db.system": "postgresql", "db.statement": "UPDATE stock SET n = n - 1",
                   "db.name": "inventory", "server.address": "db.internal", "db.user": "shop"}),
            false,
        ),
        span(
            "checkout",
            trace,
            5,
            Some(3),
            SpanKind::Internal,
            "compute totals",
            json!({}),
            false,
        ),
    ];
    let cfg = config("annotations = [\"order.id\", \"cart.items\"]\nbatch.timeout_ms = 100");
    let acks = run_sink(
        "xray_segments",
        cfg,
        vec![spans.into_iter().map(Event::Span).collect()],
    )
    .await;
    assert_eq!(acks, vec![AckStatus::Delivered]);

    let tid = segment::trace_id(&trace);
    assert!(tid.starts_with("1-") && tid.len() == 35, "{tid}");
    let docs = read_back(&moto, std::slice::from_ref(&tid)).await;
    assert_eq!(docs.len(), 5, "{docs:#?}");
    let seg = |n: u64| &docs[&format!("{n:016x}")];

    let root = seg(1);
    assert_eq!(root["name"], "proxy");
    assert!(root.get("parent_id").is_none() && root.get("type").is_none());
    assert_eq!(root["http"]["request"]["method"], "POST");
    assert_eq!(root["http"]["request"]["user_agent"], "curl/8");
    assert_eq!(root["http"]["request"]["client_ip"], "10.0.0.9");
    assert_eq!(root["http"]["response"]["status"], 500);
    assert_eq!(root["fault"], true);
    assert_eq!(root["origin"], "AWS::EC2::Instance");
    assert_eq!(root["aws"]["ec2"]["instance_id"], "i-0123456789abcdef0");
    let (start, end) = (
        root["start_time"].as_f64().unwrap(),
        root["end_time"].as_f64().unwrap(),
    );
    assert!((end - start - 0.0425).abs() < 1e-4, "{start} {end}");

    let call = seg(2);
    assert_eq!(call["type"], "subsegment");
    assert_eq!(call["namespace"], "remote");
    assert_eq!(call["parent_id"], format!("{:016x}", 1));
    assert_eq!(call["name"], "checkout");
    assert_eq!(
        call["http"]["request"]["url"],
        "http://checkout.internal/checkout"
    );

    let server = seg(3);
    assert!(server.get("type").is_none(), "a server span is a segment");
    assert_eq!(server["parent_id"], format!("{:016x}", 2));
    assert_eq!(server["name"], "checkout");
    assert_eq!(server["fault"], true);
    assert_eq!(server["annotations"]["order_id"], "o-17");
    assert_eq!(server["annotations"]["cart_items"], 3);
    assert_eq!(
        server["cause"]["exceptions"][0]["message"],
        "gateway said no"
    );
    assert_eq!(server["metadata"]["default"]["span.name"], "POST /checkout");

    let sql = seg(4);
    assert_eq!(sql["type"], "subsegment");
    assert_eq!(sql["parent_id"], format!("{:016x}", 3));
    assert_eq!(sql["sql"]["database_type"], "postgresql");
    assert_eq!(sql["sql"]["sanitized_query"], "UPDATE stock SET n = n - 1");
    assert_eq!(sql["sql"]["url"], "db.internal/inventory");
    assert_eq!(sql["sql"]["user"], "shop");

    let internal = seg(5);
    assert_eq!(internal["type"], "subsegment");
    assert!(internal.get("namespace").is_none());
    assert_eq!(internal["name"], "compute totals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_spans_are_split_into_calls_of_fifty_and_oversize_documents_are_handled() {
    let moto = Moto::start();
    point_sdk_at(&moto);
    // 130 traces of one span each, across three input batches, plus an oversize span whose
    // metadata is shed and one whose annotation alone is too large (dropped, counted).
    let ids: Vec<[u8; 16]> = (0..130u32)
        .map(|i| {
            let mut id = xray_trace_id(0);
            id[12..].copy_from_slice(&i.to_be_bytes());
            id
        })
        .collect();
    let mut batches: Vec<Vec<Event>> = vec![vec![], vec![], vec![]];
    for (i, id) in ids.iter().enumerate() {
        let s = span(
            "cart",
            *id,
            1000 + i as u64,
            None,
            SpanKind::Server,
            "GET /cart",
            json!({"http.route": "/cart"}),
            false,
        );
        batches[i % 3].push(Event::Span(s));
    }
    let shed_trace = xray_trace_id(0x77);
    batches[0].push(Event::Span(span(
        "cart",
        shed_trace,
        77,
        None,
        SpanKind::Server,
        "GET /cart",
        json!({"blob": "x".repeat(100_000)}),
        false,
    )));
    batches[1].push(Event::Span(span(
        "cart",
        xray_trace_id(0x78),
        78,
        None,
        SpanKind::Server,
        "GET /cart",
        json!({"huge": "y".repeat(100_000)}),
        false,
    )));
    let name = "xray_split";
    let cfg = config("annotations = [\"huge\"]\nbatch.timeout_ms = 100");
    let acks = run_sink(name, cfg, batches).await;
    assert!(acks.iter().all(|a| *a == AckStatus::Delivered), "{acks:?}");
    let stats = Stats::new(name);
    assert_eq!(stats.get(Outcome::Sent), 131);
    assert_eq!(
        stats.get(Outcome::Rejected),
        1,
        "the document that cannot fit"
    );

    let mut all: Vec<String> = ids.iter().map(segment::trace_id).collect();
    all.push(segment::trace_id(&shed_trace));
    let docs = read_back(&moto, &all).await;
    assert_eq!(docs.len(), 131);
    let shed = &docs[&format!("{:016x}", 77)];
    assert!(shed.get("metadata").is_none(), "metadata shed to fit");

    // moto's request log shows the calls: at least three for 131 documents, none above 50.
    let calls = count_put_calls(&moto);
    assert!(
        calls >= 3,
        "131 documents need at least 3 calls, saw {calls}"
    );
}

/// PutTraceSegments calls moto served (from its request log).
fn count_put_calls(moto: &Moto) -> usize {
    moto.log().matches("POST /TraceSegments").count()
}
