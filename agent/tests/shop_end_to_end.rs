//! The whole agent against the simulated shop: `vigil-shop-sim` exports OTLP (through the
//! OpenTelemetry SDK) to the real `vigil-agent`, which also tails the shop's log files, collects
//! host metrics and scrapes Debian's `prometheus-node-exporter`. The agent sends
//! - span metrics to CloudWatch (moto), where the checkout success rate and the share of
//!   requests under 300 ms must equal what the simulator says it generated, exactly;
//! - sampled traces to X-Ray (moto), keeping every error trace;
//! - traces, logs and host metrics to the New Relic stand-in (an OTLP receiver that checks the
//!   license key, gzip and sizes and decodes every payload);
//! - host and node_exporter metrics to CloudWatch under documented names.
//!
//! The license key must never appear in the agent's log.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use vigil_test_support::{
    ChildGuard, Moto, OtlpReceiver, ShopSim, agent_command, free_port, http_get, wait_until,
};

const LICENSE_KEY: &str = "nr-license-e2e-0123456789abcdef";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sum of a span metric over the last hour, as the watchdog reads it.
async fn sum(cw: &aws_sdk_cloudwatch::Client, name: &str, dims: &[(&str, &str)]) -> f64 {
    let q = MetricDataQuery::builder()
        .id("q")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("Vigil/SpanMetrics")
                        .metric_name(name)
                        .set_dimensions(Some(
                            dims.iter()
                                .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                                .collect(),
                        ))
                        .build(),
                )
                .period(3600)
                .stat("Sum")
                .build(),
        )
        .build();
    let out = cw
        .get_metric_data()
        .metric_data_queries(q)
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
            now_ms() - 3_600_000,
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
            now_ms() + 60_000,
        ))
        .send()
        .await
        .expect("GetMetricData");
    out.metric_data_results()[0].values().iter().sum()
}

async fn metric_names(cw: &aws_sdk_cloudwatch::Client, namespace: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut token = None;
    loop {
        let out = cw
            .list_metrics()
            .namespace(namespace)
            .set_next_token(token)
            .send()
            .await
            .expect("ListMetrics");
        names.extend(
            out.metrics()
                .iter()
                .filter_map(|m| m.metric_name().map(str::to_owned)),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return names;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_shop_reaches_xray_new_relic_and_cloudwatch_with_exact_slis() {
    let moto = Moto::start();
    let newrelic = OtlpReceiver::start(LICENSE_KEY);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let node_port = free_port();
    let mut node = Command::new("/usr/bin/prometheus-node-exporter");
    node.arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
        .args([
            "--no-collector.hwmon",
            "--no-collector.thermal_zone",
            "--no-collector.rapl",
        ]);
    let _node = ChildGuard::spawn("node-exporter", node).unwrap();
    let node_url = format!("http://127.0.0.1:{node_port}/metrics");
    assert!(wait_until(Duration::from_secs(15), || http_get(&node_url).is_ok()));

    let (grpc, api) = (free_port(), free_port());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"

[sources.otlp]
type = "otlp"
grpc_address = "127.0.0.1:{grpc}"
http = false

[sources.files]
type = "file"
include = ["{logs}/*.log"]
poll_interval_ms = 50

[sources.host]
type = "host_metrics"
interval_ms = 1000

[sources.node]
type = "prometheus_scrape"
interval_ms = 1000
timeout_ms = 1000
[[sources.node.targets]]
url = "{node_url}"

[processors.parse]
type = "json_parse"
inputs = ["files"]

[processors.slis]
type = "span_metrics"
inputs = ["otlp"]
flush_interval_ms = 1000
thresholds_ms = [300]

[processors.sample]
type = "tail_sampling"
inputs = ["otlp"]
decision_wait_ms = 1000
latency_threshold_ms = 300
sample_percent = 10

[sinks.span_metrics]
type = "cloudwatch_metrics"
inputs = ["slis"]
namespace = "Vigil/SpanMetrics"
resolution_secs = 1
period_grace_ms = 200

[sinks.host_metrics]
type = "cloudwatch_metrics"
inputs = ["host", "node"]
namespace = "Vigil/Host"
dimensions = {{ host = "{{host}}" }}
resolution_secs = 1
period_grace_ms = 200

[sinks.xray]
type = "xray"
inputs = ["sample"]

[sinks.newrelic]
type = "newrelic"
inputs = ["sample", "parse", "host"]
endpoint = "{nr}"
allow_insecure_http = true
license_key = {{ env = "E2E_NR_KEY" }}
batch.timeout_ms = 200
"#,
            d = dir.path().display(),
            logs = logs.display(),
            nr = newrelic.endpoint(),
        ),
    )
    .unwrap();
    let mut cmd = agent_command(&config);
    cmd.envs(moto.env())
        .env("E2E_NR_KEY", LICENSE_KEY)
        .env("VIGIL_LOG", "debug");
    let mut agent = ChildGuard::spawn("vigil-agent", cmd).unwrap();
    let ready = format!("http://127.0.0.1:{api}/health");
    assert!(
        wait_until(Duration::from_secs(30), || http_get(&ready).is_ok()),
        "agent did not start:\n{}",
        agent.log()
    );

    let summary = ShopSim {
        otlp_endpoint: Some(format!("http://127.0.0.1:{grpc}")),
        requests: 1500,
        seed: 7,
        checkout_failure_rate: 0.04,
        slow_checkout_rate: 0.12,
        log_dir: Some(logs.clone()),
        ..ShopSim::default()
    }
    .run();
    let checkout = summary
        .series("checkout", "POST /checkout")
        .expect("the simulator ran checkouts")
        .clone();
    assert!(
        checkout.requests > 100 && checkout.errors > 0 && checkout.under_300ms < checkout.requests
    );

    // Span metrics in CloudWatch: the SLIs are exactly what the simulator generated.
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    let dims = [("service", "checkout"), ("route", "POST /checkout")];
    let mut last = (0.0, 0.0, 0.0);
    for _ in 0..60 {
        last = (
            sum(&cw, "requests", &dims).await,
            sum(&cw, "errors", &dims).await,
            sum(
                &cw,
                "requests_under_threshold",
                &[dims[0], dims[1], ("threshold_ms", "300")],
            )
            .await,
        );
        if last.0 >= checkout.requests as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (requests, errors, fast) = last;
    assert_eq!(
        (requests, errors, fast),
        (
            checkout.requests as f64,
            checkout.errors as f64,
            checkout.under_300ms as f64
        ),
        "span metrics in CloudWatch differ from what the shop generated\n{}",
        agent.log()
    );
    let success_rate = (requests - errors) / requests;
    let expected = (checkout.requests - checkout.errors) as f64 / checkout.requests as f64;
    assert!((success_rate - expected).abs() < 1e-12);

    // Every error trace is in X-Ray (tail sampling always keeps them).
    let xray = aws_sdk_xray::Client::new(&moto.sdk_config().await);
    let wanted: Vec<String> = summary
        .error_trace_ids
        .iter()
        .map(|t| vigil_test_support::xray_trace_id(t))
        .collect();
    assert!(!wanted.is_empty());
    let mut found = HashSet::new();
    for _ in 0..40 {
        for chunk in wanted.chunks(5) {
            let out = xray
                .batch_get_traces()
                .set_trace_ids(Some(chunk.to_vec()))
                .send()
                .await
                .expect("BatchGetTraces");
            for t in out.traces() {
                if !t.segments().is_empty() {
                    found.insert(t.id().unwrap().to_owned());
                }
            }
        }
        if found.len() == wanted.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        found.len(),
        wanted.len(),
        "error traces missing from X-Ray\n{}",
        agent.log()
    );

    // New Relic: the sampled traces (every error trace among them), the shop's log lines and
    // host metrics, all through a stand-in that checked key, gzip and size.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let nr_traces: HashSet<Vec<u8>> = newrelic
                .traces()
                .iter()
                .flat_map(|r| r.resource_spans.iter())
                .flat_map(|rs| rs.scope_spans.iter())
                .flat_map(|ss| ss.spans.iter())
                .map(|s| s.trace_id.clone())
                .collect();
            let errors_in = summary.error_trace_ids.iter().all(|hex| {
                let id: Vec<u8> = (0..16)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                nr_traces.contains(&id)
            });
            let log_lines = newrelic
                .logs()
                .iter()
                .flat_map(|r| r.resource_logs.iter())
                .flat_map(|rl| rl.scope_logs.iter())
                .map(|sl| sl.log_records.len())
                .sum::<usize>();
            let host_metrics = newrelic
                .metrics()
                .iter()
                .flat_map(|r| r.resource_metrics.iter())
                .flat_map(|rm| rm.scope_metrics.iter())
                .flat_map(|sm| sm.metrics.iter())
                .any(|m| m.name == "system.memory.usage");
            errors_in && log_lines > 0 && host_metrics
        }),
        "New Relic stand-in is missing traces, logs or host metrics\n{}",
        agent.log()
    );
    assert!(
        newrelic.violations().is_empty(),
        "the New Relic stand-in saw protocol violations: {:?}",
        newrelic.violations()
    );

    // Host and node_exporter metrics in CloudWatch under their documented names.
    let mut names = HashSet::new();
    for _ in 0..40 {
        names = metric_names(&cw, "Vigil/Host").await;
        if names.contains("system.memory.usage") && names.contains("node_memory_MemTotal_bytes") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        names.contains("system.memory.usage") && names.contains("node_memory_MemTotal_bytes"),
        "host metrics missing in CloudWatch: {names:?}"
    );

    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(Duration::from_secs(30)).is_some());
    let log = agent.log();
    assert!(
        !log.contains(LICENSE_KEY),
        "the New Relic license key appeared in the agent's log"
    );
}
