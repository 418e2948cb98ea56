//! Span metrics and tail sampling running as pipeline tasks (their own input queue, timer and
//! output fan-out), with acknowledgements that reach the source only once what came out of a
//! batch was delivered downstream.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vigil_agent::event::{
    Ack, AckStatus, Attributes, Event, EventBatch, LogEvent, MetricValue, Resource, SpanEvent,
    SpanKind, SpanStatus, StatusCode, ack_channel,
};
use vigil_agent::output::Fanout;
use vigil_agent::processors::span_metrics::SpanMetricsConfig;
use vigil_agent::processors::tail_sampling::TailSamplingConfig;
use vigil_agent::processors::{Processor, ProcessorConfig};
use vigil_agent::telemetry::Stats;

fn span(
    service: &str,
    route: &str,
    trace: u64,
    id: u64,
    kind: SpanKind,
    ms: u64,
    status: i64,
) -> SpanEvent {
    let mut r = Resource::default();
    r.attributes.insert("service.name".into(), service.into());
    let mut attributes = Attributes::new();
    attributes.insert("http.request.method".into(), "POST".into());
    attributes.insert("http.route".into(), route.into());
    attributes.insert("http.response.status_code".into(), status.into());
    let mut trace_id = [0u8; 16];
    trace_id[8..].copy_from_slice(&trace.to_be_bytes());
    SpanEvent {
        resource: Arc::new(r),
        scope_name: String::new(),
        scope_version: String::new(),
        trace_id,
        span_id: id.to_be_bytes(),
        parent_span_id: None,
        trace_state: String::new(),
        name: format!("POST {route}"),
        kind,
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

/// Starts `config` as a pipeline task; returns its input and output queues.
async fn start(
    name: &str,
    config: ProcessorConfig,
) -> (
    mpsc::Sender<EventBatch>,
    mpsc::Receiver<EventBatch>,
    tokio::task::JoinHandle<()>,
) {
    let (in_tx, in_rx) = mpsc::channel(8);
    let (out_tx, out_rx) = mpsc::channel(8);
    let p = Processor::build(&config).await.unwrap();
    let task = tokio::spawn(p.run(in_rx, Fanout::new(vec![out_tx]), Stats::new(name)));
    (in_tx, out_rx, task)
}

#[tokio::test]
async fn span_metrics_flush_on_time_with_exact_counts_and_held_acks() {
    let config = SpanMetricsConfig {
        flush_interval_ms: 500,
        thresholds_ms: vec![300],
        include_consumer: false,
        max_routes_per_service: 2,
        max_services: 10,
    };
    let (tx, mut rx, task) = start(
        "span_metrics_pipeline",
        ProcessorConfig::SpanMetrics(config),
    )
    .await;
    let (ack_tx, mut acks) = ack_channel();

    // 200 checkout requests: every 10th fails (HTTP 500), every 4th takes 450 ms; client spans
    // are not counted; a log line passes through at once; routes beyond 2 go to `other`.
    let mut events = Vec::new();
    for i in 0..200u64 {
        let ms = if i % 4 == 0 { 450 } else { 120 };
        let status = if i % 10 == 0 { 500 } else { 200 };
        events.push(Event::Span(span(
            "checkout",
            "/checkout",
            i,
            1,
            SpanKind::Server,
            ms,
            status,
        )));
        events.push(Event::Span(span(
            "checkout",
            "/checkout",
            i,
            2,
            SpanKind::Client,
            5,
            200,
        )));
    }
    for r in ["/a", "/b", "/c"] {
        events.push(Event::Span(span(
            "cart",
            r,
            999,
            3,
            SpanKind::Server,
            10,
            200,
        )));
    }
    events.push(Event::Log(LogEvent::new("passes through".into(), 1)));
    tx.send(EventBatch {
        events,
        ack: Ack::new(1, ack_tx.clone()),
    })
    .await
    .unwrap();

    // The log line comes out first, carrying a share of the input's ack.
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(&first.events[..], [Event::Log(_)]));
    first.ack.delivered();
    assert!(
        acks.try_recv().is_err(),
        "the spans' metrics are not delivered yet"
    );

    let started = Instant::now();
    let metrics = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "flushed within one interval"
    );
    let mut counters = BTreeMap::new();
    let mut latency_total = 0;
    for e in &metrics.events {
        let Event::Metric(m) = e else {
            panic!("only metrics come out of a flush")
        };
        assert!(m.timestamp_ms % 500 == 0, "window ends on the interval");
        match &m.value {
            MetricValue::Counter { value, .. } => {
                let key = format!(
                    "{} {} {}{}",
                    m.name,
                    m.tags["service"],
                    m.tags["route"],
                    m.tags
                        .get("threshold_ms")
                        .map(|t| format!(" <={t}"))
                        .unwrap_or_default()
                );
                counters.insert(key, *value);
            }
            MetricValue::Distribution { samples } if m.tags["service"] == "checkout" => {
                latency_total = samples.iter().map(|s| s.count).sum::<u64>();
                assert_eq!(samples.len(), 2, "two distinct latencies");
            }
            _ => {}
        }
    }
    assert_eq!(counters["requests checkout POST /checkout"], 200.0);
    assert_eq!(counters["errors checkout POST /checkout"], 20.0);
    assert_eq!(
        counters["requests_under_threshold checkout POST /checkout <=300"],
        150.0
    );
    assert_eq!(counters["requests cart POST /a"], 1.0);
    assert_eq!(counters["requests cart other"], 1.0);
    assert_eq!(latency_total, 200);

    // Delivering the metrics delivers the input batch.
    metrics.ack.delivered();
    let (id, status) = tokio::time::timeout(Duration::from_secs(1), acks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((id, status), (1, AckStatus::Delivered));

    // A flushed window starts empty: spans after it count only in the next one.
    tx.send(EventBatch {
        events: vec![Event::Span(span(
            "checkout",
            "/checkout",
            1,
            1,
            SpanKind::Server,
            1,
            200,
        ))],
        ack: Ack::new(2, ack_tx.clone()),
    })
    .await
    .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let requests = next.events.iter().find_map(|e| match e {
        Event::Metric(m) if m.name == "requests" => Some(m.value.clone()),
        _ => None,
    });
    assert!(matches!(requests, Some(MetricValue::Counter { value, .. }) if value == 1.0));
    // Dropped downstream unsent: the source hears undelivered.
    drop(next);
    let (id, status) = tokio::time::timeout(Duration::from_secs(1), acks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((id, status), (2, AckStatus::Undelivered));
    drop(tx);
    task.await.unwrap();
}

#[tokio::test]
async fn tail_sampling_keeps_error_and_slow_traces_and_acks_honestly() {
    let config = TailSamplingConfig {
        decision_wait_ms: 300,
        latency_threshold_ms: 300,
        sample_percent: 20.0,
        max_traces: 100_000,
        max_spans: 1_000_000,
        max_decisions: 100_000,
    };
    let (tx, mut rx, task) = start(
        "tail_sampling_pipeline",
        ProcessorConfig::TailSampling(config),
    )
    .await;
    let (ack_tx, mut acks) = ack_channel();
    // 2,000 traces of two spans, split across two input batches (one span of each trace in
    // each): every 25th trace has an error, every 30th a slow span.
    let mut errors = HashSet::new();
    let mut slow = HashSet::new();
    for batch in 0..2u64 {
        let mut events = Vec::new();
        for t in 0..2000u64 {
            let error = batch == 1 && t % 25 == 0;
            let is_slow = batch == 0 && t % 30 == 0;
            if error {
                errors.insert(t);
            }
            if is_slow {
                slow.insert(t);
            }
            let ms = if is_slow { 800 } else { 20 };
            events.push(Event::Span(span(
                "checkout",
                "/checkout",
                t,
                batch + 1,
                SpanKind::Server,
                ms,
                if error { 503 } else { 200 },
            )));
        }
        tx.send(EventBatch {
            events,
            ack: Ack::new(batch, ack_tx.clone()),
        })
        .await
        .unwrap();
    }
    let mut kept: BTreeMap<u64, usize> = BTreeMap::new();
    let mut outputs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(700), rx.recv()).await {
            Ok(Some(b)) => {
                for e in &b.events {
                    let Event::Span(s) = e else { panic!() };
                    *kept
                        .entry(u64::from_be_bytes(s.trace_id[8..].try_into().unwrap()))
                        .or_default() += 1;
                }
                outputs.push(b);
            }
            _ => break,
        }
    }
    for t in errors.iter().chain(&slow) {
        assert_eq!(kept.get(t), Some(&2), "trace {t} must be kept whole");
    }
    let rest: Vec<u64> = (0..2000)
        .filter(|t| !errors.contains(t) && !slow.contains(t))
        .collect();
    let sampled = rest.iter().filter(|t| kept.contains_key(t)).count() as f64 / rest.len() as f64;
    assert!((0.16..0.24).contains(&sampled), "sampled share {sampled}");
    assert!(kept.values().all(|n| *n == 2), "only whole traces");

    // Nothing is acknowledged before the kept spans are delivered.
    assert!(acks.try_recv().is_err());
    outputs.into_iter().for_each(|b| b.ack.delivered());
    let mut got = vec![acks.recv().await.unwrap(), acks.recv().await.unwrap()];
    got.sort_by_key(|a| a.0);
    assert_eq!(
        got,
        vec![(0, AckStatus::Delivered), (1, AckStatus::Delivered)]
    );
    drop(tx);
    task.await.unwrap();
}
