//! The CloudWatch metrics sink against moto's server: the real sink module, fed through its
//! input queue exactly as the pipeline feeds it, talking PutMetricData (gzip-compressed above
//! 4 KiB) and, in EMF mode, PutLogEvents. Everything is read back with GetMetricData,
//! ListMetrics and GetLogEvents.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use tokio::sync::mpsc;
use vigil_agent::event::{
    Ack, AckStatus, Event, EventBatch, MetricEvent, MetricValue, Resource, Sample, Temporality,
    ack_channel, now_ms,
};
use vigil_agent::sinks::SinkConfig;
use vigil_agent::telemetry::{Outcome, Stats};
use vigil_test_support::Moto;

/// Builds a sink from agent config text, as `vigil-agent run` would (fed by an OTLP source,
/// which may emit metrics).
async fn sink(name: &str, table: &str) -> vigil_agent::sinks::Sink {
    let text = format!("[sources.in]\ntype = \"otlp\"\n[sinks.{name}]\ninputs = [\"in\"]\n{table}");
    let mut config = vigil_agent::config::parse(Path::new("test.toml"), &text)
        .unwrap_or_else(|e| panic!("config: {e}"));
    let c: SinkConfig = config.sinks.remove(name).unwrap().config;
    c.build(name, Stats::new(name)).await.expect("build sink")
}

/// Runs `sink` over `batches` until it has delivered everything; returns the ack statuses.
async fn run(sink: vigil_agent::sinks::Sink, batches: Vec<Vec<Event>>) -> Vec<AckStatus> {
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(sink.run(rx));
    let (ack_tx, mut ack_rx) = ack_channel();
    let n = batches.len();
    for (i, events) in batches.into_iter().enumerate() {
        tx.send(EventBatch {
            events,
            ack: Ack::new(i as u64, ack_tx.clone()),
        })
        .await
        .unwrap();
    }
    drop(tx);
    drop(ack_tx);
    task.await.unwrap();
    let mut statuses = Vec::new();
    while let Some((_, s)) = ack_rx.recv().await {
        statuses.push(s);
    }
    assert_eq!(statuses.len(), n);
    statuses
}

fn metric(name: &str, ts: i64, value: MetricValue, tags: &[(&str, &str)]) -> Event {
    let mut m = MetricEvent::new(name, ts, value);
    for (k, v) in tags {
        m = m.with_tag(*k, *v);
    }
    Event::Metric(m)
}

fn dims(pairs: &[(&str, &str)]) -> Vec<Dimension> {
    pairs
        .iter()
        .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
        .collect()
}

/// One statistic of one series per 60 s period, oldest first: (period start ms, value).
async fn stat(
    cw: &aws_sdk_cloudwatch::Client,
    ns: &str,
    name: &str,
    d: &[(&str, &str)],
    stat: &str,
    from_ms: i64,
) -> Vec<(i64, f64)> {
    let q = MetricDataQuery::builder()
        .id("q")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(ns)
                        .metric_name(name)
                        .set_dimensions(Some(dims(d)))
                        .build(),
                )
                .period(60)
                .stat(stat)
                .build(),
        )
        .build();
    let out = cw
        .get_metric_data()
        .metric_data_queries(q)
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
            from_ms,
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
            now_ms() + 60_000,
        ))
        .send()
        .await
        .expect("GetMetricData");
    let r = &out.metric_data_results()[0];
    let mut v: Vec<(i64, f64)> = r
        .timestamps()
        .iter()
        .map(|t| t.to_millis().unwrap())
        .zip(r.values().iter().copied())
        .collect();
    v.sort_by_key(|p| p.0);
    v
}

/// A TCP relay in front of moto that notes whether a request body was gzip-compressed: the
/// sink's requests go through it, the test's own reads go to moto directly.
fn gzip_spy(upstream: &str) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let seen = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let flag = Arc::clone(&flag);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = c2.read(&mut buf) {
                    if n == 0 || s2.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let chunk = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    if chunk.contains("content-encoding: gzip") {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_cloudwatch_as_documented() {
    let moto = Moto::start();
    let (relay, gzipped) = gzip_spy(&moto.endpoint);
    for (k, v) in moto.env() {
        let v = if k == "AWS_ENDPOINT_URL" {
            relay.clone()
        } else {
            v
        };
        // SAFETY: set before any other thread of this test reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    // Whole periods in the past, so every period is complete when it is sent.
    let base = (now_ms() / 60_000 - 10) * 60_000;

    // --- Span metrics: the watchdog's contract (every tag becomes a dimension). ---
    let spans = sink(
        "spans",
        "type = \"cloudwatch_metrics\"\nnamespace = \"Vigil/SpanMetrics\"\n",
    )
    .await;
    let route = [("route", "/pay"), ("service", "checkout")];
    // A latency distribution of 300 distinct values (→ two data of ≤150 values) over two batches.
    let samples = |range: std::ops::Range<u32>| MetricValue::Distribution {
        samples: range
            .map(|i| Sample {
                value: f64::from(i) * 1.5,
                count: u64::from(i % 3 + 1),
            })
            .collect(),
    };
    let lat = |r: std::ops::Range<u32>, ts| {
        let mut m = MetricEvent::new("latency", ts, samples(r)).with_unit("ms");
        for (k, v) in route {
            m = m.with_tag(k, v);
        }
        Event::Metric(m)
    };
    let delta = |v: f64| MetricValue::Counter {
        value: v,
        temporality: Temporality::Delta,
    };
    let under = [
        ("route", "/pay"),
        ("service", "checkout"),
        ("threshold_ms", "300"),
    ];
    let statuses = run(
        spans,
        vec![
            vec![
                lat(1..150, base + 1_000),
                metric("requests", base + 1_000, delta(40.0), &route),
                metric("errors", base + 1_000, delta(2.0), &route),
            ],
            vec![
                lat(150..301, base + 30_000),
                metric("requests", base + 30_000, delta(60.0), &route),
                metric(
                    "requests_under_threshold",
                    base + 30_000,
                    delta(97.0),
                    &under,
                ),
                // NaN and infinity are refused before sending and counted; the batch still goes.
                metric("errors", base + 30_000, delta(f64::NAN), &route),
                metric(
                    "queue_depth",
                    base + 30_000,
                    MetricValue::Gauge {
                        value: f64::INFINITY,
                    },
                    &route,
                ),
            ],
        ],
    )
    .await;
    assert_eq!(statuses, vec![AckStatus::Delivered; 2]);
    let s = Stats::new("spans");
    assert_eq!(s.get(Outcome::Rejected), 2, "NaN and Inf counted");
    assert_eq!(s.get(Outcome::Sent), 6);

    let expected: Vec<(f64, f64)> = (1..301u32)
        .map(|i| (f64::from(i) * 1.5, f64::from(i % 3 + 1)))
        .collect();
    let count: f64 = expected.iter().map(|p| p.1).sum();
    let sum: f64 = expected.iter().map(|p| p.0 * p.1).sum();
    let ns = "Vigil/SpanMetrics";
    assert_eq!(
        stat(&cw, ns, "latency", &route, "SampleCount", base).await,
        vec![(base, count)]
    );
    let got_sum = stat(&cw, ns, "latency", &route, "Sum", base).await;
    assert!((got_sum[0].1 - sum).abs() < 1e-6, "{got_sum:?} vs {sum}");
    assert_eq!(
        stat(&cw, ns, "latency", &route, "Minimum", base).await,
        vec![(base, 1.5)]
    );
    assert_eq!(
        stat(&cw, ns, "latency", &route, "Maximum", base).await,
        vec![(base, 450.0)]
    );
    assert_eq!(
        stat(&cw, ns, "requests", &route, "Sum", base).await,
        vec![(base, 100.0)]
    );
    assert_eq!(
        stat(&cw, ns, "errors", &route, "Sum", base).await,
        vec![(base, 2.0)]
    );
    assert_eq!(
        stat(&cw, ns, "requests_under_threshold", &under, "Sum", base).await,
        vec![(base, 97.0)]
    );
    // Names and dimensions exactly as the watchdog reads them.
    let mut seen: Vec<(String, Vec<String>)> = Vec::new();
    let mut pages = cw.list_metrics().namespace(ns).into_paginator().send();
    while let Some(page) = pages.next().await {
        for m in page.unwrap().metrics() {
            let mut d: Vec<String> = m
                .dimensions()
                .iter()
                .map(|d| d.name().unwrap().to_owned())
                .collect();
            d.sort();
            seen.push((m.metric_name().unwrap().to_owned(), d));
        }
    }
    seen.sort();
    seen.dedup();
    let rs = vec!["route".to_owned(), "service".to_owned()];
    let rst = vec![
        "route".to_owned(),
        "service".to_owned(),
        "threshold_ms".to_owned(),
    ];
    assert_eq!(
        seen,
        vec![
            ("errors".to_owned(), rs.clone()),
            ("latency".to_owned(), rs.clone()),
            ("requests".to_owned(), rs.clone()),
            ("requests_under_threshold".to_owned(), rst),
        ]
    );

    // --- Host metrics: templated namespace and dimensions, cumulative counters, bulk. ---
    let hosts = sink(
        "hosts",
        r#"type = "cloudwatch_metrics"
namespace = "Shop/{module}"
rename = { node_network_receive_bytes_total = "NetworkIn" }
[sinks.hosts.dimensions]
InstanceId = "{host.id|instance_id}"
AutoScalingGroupName = "{asg}"
Module = "{module}"
Environment = "{env}"
"#,
    )
    .await;
    let resource = Arc::new(Resource {
        attributes: serde_json::json!({"host.id": "i-0abc", "asg": "shop-web"})
            .as_object()
            .unwrap()
            .clone(),
    });
    let host_metric = |name: &str, ts: i64, value: MetricValue, extra: &[(&str, &str)]| {
        let mut m = MetricEvent::new(name, ts, value).with_unit("By");
        m = m.with_tag("module", "checkout").with_tag("env", "prod");
        for (k, v) in extra {
            m = m.with_tag(*k, *v);
        }
        m.resource = Some(Arc::clone(&resource));
        Event::Metric(m)
    };
    let cumulative = |v: f64, start: i64| MetricValue::Counter {
        value: v,
        temporality: Temporality::Cumulative { start_ms: start },
    };
    // Cumulative: 100 (baseline), 130, 180, then a restart at 20.
    let mut batch: Vec<Event> = [(100.0, 0), (130.0, 1), (180.0, 2)]
        .into_iter()
        .map(|(v, p)| {
            host_metric(
                "node_network_receive_bytes_total",
                base + p * 60_000 + 5_000,
                cumulative(v, 1),
                &[],
            )
        })
        .collect();
    batch.push(host_metric(
        "node_network_receive_bytes_total",
        base + 3 * 60_000 + 5_000,
        cumulative(20.0, base + 3 * 60_000),
        &[],
    ));
    // 2,500 series in one period: more than 1,000 data, so several requests.
    let bulk: Vec<Event> = (0..2500)
        .map(|i| {
            host_metric(
                "disk_used",
                base + 5_000,
                MetricValue::Gauge {
                    value: f64::from(i),
                },
                &[("mount", &format!("/m{i}"))],
            )
        })
        .collect();
    // An explicit-bucket histogram: (≤10] ×1, (10,20] ×2, >20 ×3 with min 2 and max 50 → sent
    // as Values/Counts with one value per bucket: 6 (2..10), 15 (middle), 50 (the max).
    batch.push(host_metric(
        "request_size",
        base + 5_000,
        MetricValue::Histogram {
            temporality: Temporality::Delta,
            count: 6,
            sum: 170.0,
            min: Some(2.0),
            max: Some(50.0),
            bounds: vec![10.0, 20.0],
            bucket_counts: vec![1, 2, 3],
        },
        &[],
    ));
    let statuses = run(hosts, vec![batch, bulk]).await;
    assert_eq!(statuses, vec![AckStatus::Delivered; 2]);
    let hd = [
        ("AutoScalingGroupName", "shop-web"),
        ("Environment", "prod"),
        ("InstanceId", "i-0abc"),
        ("Module", "checkout"),
    ];
    assert_eq!(
        stat(&cw, "Shop/checkout", "NetworkIn", &hd, "Sum", base).await,
        vec![
            (base + 60_000, 30.0),
            (base + 120_000, 50.0),
            (base + 180_000, 20.0)
        ]
    );
    for (statistic, want) in [
        ("SampleCount", 6.0),
        ("Sum", 6.0 + 30.0 + 150.0),
        ("Minimum", 6.0),
        ("Maximum", 50.0),
    ] {
        assert_eq!(
            stat(&cw, "Shop/checkout", "request_size", &hd, statistic, base).await,
            vec![(base, want)],
            "{statistic}"
        );
    }
    // The configured dimension set replaces the tags: `mount` is not a dimension, so the
    // 2,500 gauges are one series with 2,500 readings in one statistic set.
    assert_eq!(
        stat(&cw, "Shop/checkout", "disk_used", &hd, "SampleCount", base).await,
        vec![(base, 2500.0)]
    );
    assert_eq!(
        stat(&cw, "Shop/checkout", "disk_used", &hd, "Maximum", base).await,
        vec![(base, 2499.0)]
    );

    // --- Bulk with every tag as a dimension: 2,500 series → 3 PutMetricData calls. ---
    let bulk_sink = sink(
        "bulk",
        "type = \"cloudwatch_metrics\"\nnamespace = \"Shop/bulk\"\n",
    )
    .await;
    let bulk: Vec<Event> = (0..2500)
        .map(|i| {
            metric(
                "disk_used",
                base + 5_000,
                MetricValue::Gauge {
                    value: f64::from(i),
                },
                &[("mount", &format!("/m{i}"))],
            )
        })
        .collect();
    run(bulk_sink, vec![bulk]).await;
    let mut names = 0;
    let mut pages = cw
        .list_metrics()
        .namespace("Shop/bulk")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        names += page.unwrap().metrics().len();
    }
    assert_eq!(names, 2500);
    // Requests of more than 4 KiB went out gzip-compressed, and moto took them.
    assert!(
        gzipped.load(Ordering::Relaxed),
        "no gzip-compressed request seen"
    );
    let text = vigil_agent::telemetry::render();
    let requests = text
        .lines()
        .find(|l| l.starts_with("vigil_sink_request_events_count{component=\"bulk\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(requests, Some(3.0), "{text}");
    assert_eq!(
        stat(
            &cw,
            "Shop/bulk",
            "disk_used",
            &[("mount", "/m1234")],
            "Maximum",
            base
        )
        .await,
        vec![(base, 1234.0)]
    );

    // --- EMF mode: documents through CloudWatch Logs. ---
    let emf = sink(
        "emf",
        r#"type = "cloudwatch_metrics"
mode = "emf"
namespace = "Shop/{service}"
log_group = "/vigil/emf"
log_stream = "{service}"
"#,
    )
    .await;
    let statuses = run(
        emf,
        vec![vec![
            lat(1..120, base + 1_000),
            metric("requests", base + 1_000, delta(7.0), &route),
        ]],
    )
    .await;
    assert_eq!(statuses, vec![AckStatus::Delivered]);
    let out = logs
        .get_log_events()
        .log_group_name("/vigil/emf")
        .log_stream_name("checkout")
        .start_from_head(true)
        .send()
        .await
        .expect("EMF log events");
    let docs: Vec<serde_json::Value> = out
        .events()
        .iter()
        .map(|e| serde_json::from_str(e.message().unwrap()).expect("EMF is JSON"))
        .collect();
    // 119 distinct latency values → two documents (EMF: ≤100 values), plus the counter.
    assert_eq!(docs.len(), 3, "{docs:#?}");
    let mut by_metric: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for d in &docs {
        let aws = &d["_aws"];
        assert_eq!(aws["Timestamp"], base);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Shop/checkout");
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["route", "service"]])
        );
        assert_eq!(d["route"], "/pay");
        assert_eq!(d["service"], "checkout");
        let m = &directive["Metrics"][0];
        let name = m["Name"].as_str().unwrap().to_owned();
        assert!(d.get(&name).is_some(), "target member {name} present");
        by_metric.entry(name).or_default().push(d);
    }
    assert_eq!(by_metric["requests"][0]["requests"], 7.0);
    assert_eq!(
        by_metric["requests"][0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
        "None"
    );
    let mut n = 0.0;
    let mut total = 0.0;
    for d in &by_metric["latency"] {
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        let v = &d["latency"];
        let values = v["Values"].as_array().unwrap();
        let counts = v["Counts"].as_array().unwrap();
        assert_eq!(values.len(), counts.len());
        assert!(values.len() <= 100);
        n += v["Count"].as_f64().unwrap();
        total += v["Sum"].as_f64().unwrap();
    }
    let exp: Vec<(f64, f64)> = (1..120u32)
        .map(|i| (f64::from(i) * 1.5, f64::from(i % 3 + 1)))
        .collect();
    assert_eq!(n, exp.iter().map(|p| p.1).sum::<f64>());
    assert!((total - exp.iter().map(|p| p.0 * p.1).sum::<f64>()).abs() < 1e-6);
}
