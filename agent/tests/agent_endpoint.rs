//! The agent's own endpoint on the real `vigil-agent` process: `/metrics` passes Debian's
//! `promtool check metrics` and its counters match what the test wrote; `/health` answers;
//! `/ready` is 503 while CloudWatch refuses connections and 200 once it accepts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_test_support::{ChildGuard, Moto, free_port, start_agent, venv_bin, wait_until};

/// GET on the agent's endpoint: (status, body); `None` when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The value of one sample line (`name{labels} value`) in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn write_lines(path: &Path, from: u32, to: u32) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in from..to {
        writeln!(f, "checkout {i:06} GET /api/cart 200").unwrap();
    }
}

#[test]
fn metrics_endpoint_passes_promtool_and_matches_what_was_sent() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/checkout.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    write_lines(&log, 0, 1500);
    let port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{port}"
[sources.app]
type = "file"
include = ["{logs}/*.log"]
[sinks.cw]
type = "cloudwatch_logs"
inputs = ["app"]
log_group = "/shop/checkout"
log_stream = "web-1"
[sinks.out]
type = "console"
inputs = ["app"]
path = "{out}"
"#,
            data = dir.path().join("data").display(),
            logs = log.parent().unwrap().display(),
            out = dir.path().join("out.txt").display(),
        ),
    )
    .unwrap();
    let a = start_agent(&config, &moto.env());
    let metrics = || get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
    let delivered = |text: &str| {
        sample(
            text,
            r#"vigil_component_events_total{component="cw",outcome="sent"}"#,
        ) == Some(1500.0)
            && sample(
                text,
                r#"vigil_component_events_total{component="out",outcome="sent"}"#,
            ) == Some(1500.0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || delivered(&metrics())),
        "not delivered:\n{}\n{}",
        metrics(),
        a.log()
    );
    let text = metrics();
    // File lines in = sink events out, for each sink.
    assert_eq!(
        sample(
            &text,
            r#"vigil_component_events_total{component="app",outcome="received"}"#
        ),
        Some(1500.0)
    );
    for sink in ["cw", "out"] {
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"vigil_component_events_total{{component="{sink}",outcome="received"}}"#
                )
            ),
            Some(1500.0)
        );
        assert!(
            sample(
                &text,
                &format!(
                    r#"vigil_sink_request_duration_seconds_count{{component="{sink}",result="ok"}}"#
                )
            )
            .unwrap()
                >= 1.0
        );
        assert!(
            sample(
                &text,
                &format!(r#"vigil_sink_request_events_sum{{component="{sink}"}}"#)
            ) == Some(1500.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!(r#"vigil_sink_healthy{{component="{sink}"}}"#)
            ),
            Some(1.0)
        );
    }
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"vigil_file_lag_bytes{{component="app",file="{}"}}"#,
                log.display()
            )
        ),
        Some(0.0),
        "{text}"
    );
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&text, "process_cpu_seconds_total").is_some());

    // Debian's promtool validates the exposition.
    let mut check = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt install prometheus)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(port, "/health").unwrap().0, 200);
    assert_eq!(get(port, "/ready").unwrap().0, 200);
}

#[test]
fn ready_is_false_while_cloudwatch_refuses_and_true_once_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/checkout.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    write_lines(&log, 0, 200);
    let port = free_port();
    // Nothing listens here yet: every request is refused.
    let aws_port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{port}"
[sources.app]
type = "file"
include = ["{logs}/*.log"]
[sinks.cw]
type = "cloudwatch_logs"
inputs = ["app"]
log_group = "/shop/checkout"
log_stream = "web-1"
request.max_backoff_ms = 500
request.timeout_ms = 2000
"#,
            data = dir.path().join("data").display(),
            logs = log.parent().unwrap().display(),
        ),
    )
    .unwrap();
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{aws_port}")),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let a = start_agent(&config, &env);
    assert!(
        wait_until(Duration::from_secs(20), || get(port, "/health")
            .is_some_and(|r| r.0 == 200)),
        "no /health:\n{}",
        a.log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || get(port, "/ready")
            .is_some_and(|r| r.0 == 503)),
        "/ready stayed 200 while CloudWatch refused: {:?}\n{}",
        get(port, "/ready"),
        a.log()
    );
    let (_, why) = get(port, "/ready").unwrap();
    assert!(why.contains("cw: unhealthy"), "{why}");
    assert_eq!(
        get(port, "/health").unwrap().0,
        200,
        "liveness is not readiness"
    );

    // CloudWatch comes up on that port: the sink delivers and the agent is ready again.
    let mut cmd = Command::new(venv_bin("moto_server"));
    cmd.args(["-H", "127.0.0.1", "-p", &aws_port.to_string()]);
    let _moto = ChildGuard::spawn("moto", cmd).unwrap();
    assert!(
        wait_until(Duration::from_secs(40), || get(port, "/ready")
            .is_some_and(|r| r.0 == 200)),
        "/ready did not recover: {:?}\n{}",
        get(port, "/ready"),
        a.log()
    );
    let sent = || {
        get(port, "/metrics").and_then(|(_, t)| {
            sample(
                &t,
                r#"vigil_component_events_total{component="cw",outcome="sent"}"#,
            )
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || sent() == Some(200.0)),
        "{:?}",
        sent()
    );
    let text = get(port, "/metrics").unwrap().1;
    assert!(sample(&text, r#"vigil_sink_retries_total{component="cw"}"#).unwrap() >= 3.0);
    assert!(
        sample(
            &text,
            r#"vigil_sink_request_duration_seconds_count{component="cw",result="error"}"#
        )
        .unwrap()
            >= 3.0
    );
}

#[test]
fn the_agent_ships_its_own_metrics_to_cloudwatch() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/checkout.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    write_lines(&log, 0, 300);
    let port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
address = "127.0.0.1:{port}"
[sources.app]
type = "file"
include = ["{logs}/*.log"]
[sources.self]
type = "internal_metrics"
interval_secs = 1
[sinks.out]
type = "console"
inputs = ["app"]
path = "{out}"
[sinks.cwm]
type = "cloudwatch_metrics"
inputs = ["self"]
namespace = "Vigil/Agent"
resolution_secs = 1
period_grace_ms = 200
"#,
            data = dir.path().join("data").display(),
            logs = log.parent().unwrap().display(),
            out = dir.path().join("out.txt").display(),
        ),
    )
    .unwrap();
    let mut a = start_agent(&config, &moto.env());
    let sent = || {
        get(port, "/metrics").and_then(|(_, t)| {
            sample(
                &t,
                r#"vigil_component_events_total{component="out",outcome="sent"}"#,
            )
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || sent() == Some(300.0)),
        "{:?}\n{}",
        sent(),
        a.log()
    );
    // High resolution: each 1 s period is sent as soon as it ends, while the agent runs.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cw = rt.block_on(async { aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await) });
    let total = || {
        rt.block_on(async {
            use aws_sdk_cloudwatch::primitives::DateTime;
            use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let metric = Metric::builder()
                .namespace("Vigil/Agent")
                .metric_name("vigil_component_events_total")
                .dimensions(Dimension::builder().name("component").value("out").build())
                .dimensions(Dimension::builder().name("outcome").value("sent").build())
                .build();
            let out = cw
                .get_metric_data()
                .metric_data_queries(
                    MetricDataQuery::builder()
                        .id("q")
                        .metric_stat(
                            MetricStat::builder()
                                .metric(metric)
                                .period(60)
                                .stat("Sum")
                                .build(),
                        )
                        .build(),
                )
                .start_time(DateTime::from_secs((now / 60 - 10) * 60))
                .end_time(DateTime::from_secs(now + 120))
                .send()
                .await
                .unwrap();
            out.metric_data_results()[0].values().iter().sum::<f64>()
        })
    };
    // Cumulative counter → deltas per period: they add up to what the counter says.
    assert!(
        wait_until(Duration::from_secs(20), || total() == 300.0),
        "{}\n{}",
        total(),
        a.log()
    );
    a.signal(libc::SIGTERM);
    assert!(
        a.wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "{}",
        a.log()
    );
    assert_eq!(total(), 300.0, "nothing counted twice at shutdown");
}
