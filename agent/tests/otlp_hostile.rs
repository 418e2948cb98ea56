//! Hostile OTLP/HTTP input against the real agent: requests that are small on the wire but
//! decode into far more memory, and thousands of slow connections each holding a nearly full
//! body. The agent refuses what would not fit (413) or asks to retry (503), keeps serving
//! well-behaved clients, and its peak RSS stays under `memory_limit_bytes`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use prost::Message;
use vigil_test_support::{ChildGuard, agent_command, free_port, wait_until};

const MEMORY_LIMIT: u64 = 128 << 20;

fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// POSTs `body` as protobuf and returns the status code (0 when the connection failed).
fn post(port: u16, path: &str, body: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        // Answered (and closed) before the body was taken: read the answer anyway.
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn good_logs() -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..50)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn hostile_otlp_requests_leave_memory_bounded_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{d}/data"
memory_limit_bytes = {MEMORY_LIMIT}
[sources.otlp]
type = "otlp"
grpc = false
http_address = "127.0.0.1:{port}"
[sinks.out]
type = "console"
inputs = ["otlp"]
path = "{d}/out.jsonl"
"#,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = agent_command(&config);
    cmd.env("VIGIL_LOG", "info");
    let mut agent = ChildGuard::spawn("vigil-agent", cmd).expect("start vigil-agent");
    assert!(
        wait_until(Duration::from_secs(20), || post(
            port,
            "/v1/logs",
            &good_logs()
        ) == 200),
        "agent not serving:\n{}",
        agent.log()
    );
    let idle = vm_hwm(agent.pid());

    // A: 4 MiB of empty log records under a 16 KiB scope name (two bytes each on the wire).
    let scope = InstrumentationScope {
        name: "s".repeat(16 << 10),
        ..Default::default()
    };
    let records = ((4 << 20) - (20 << 10)) / 2;
    let bomb = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                scope: Some(scope),
                log_records: vec![LogRecord::default(); records],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    assert_eq!(post(port, "/v1/logs", &bomb), 413);

    // B: a 1 MiB metric name over as many gauge points as fit in 4 MiB.
    let point = NumberDataPoint {
        value: Some(number_data_point::Value::AsInt(1)),
        ..Default::default()
    };
    let points = ((3 << 20) - (16 << 10)) / point.encoded_len().max(1) / 2;
    let metric_bomb = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "m".repeat(1 << 20),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![point; points],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    assert!(metric_bomb.len() < 4 << 20, "{}", metric_bomb.len());
    assert_eq!(post(port, "/v1/metrics", &metric_bomb), 413);
    assert_eq!(post(port, "/v1/logs", &good_logs()), 200);

    // C: 2,000 connections, each announcing a 4,000,000-byte body and sending 3,900,000 of it,
    // then holding on.
    let started = Instant::now();
    let holders: Vec<std::thread::JoinHandle<Vec<TcpStream>>> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let chunk = vec![0u8; 3_900_000];
                let mut held = Vec::new();
                for _ in 0..250 {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
                    let head = "POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 4000000\r\n\r\n";
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(&chunk);
                    held.push(s);
                }
                held
            })
        })
        .collect();
    // While they hold on, a well-behaved client is served (it may be asked to retry first).
    let served = wait_until(Duration::from_secs(40), || {
        let code = post(port, "/v1/logs", &good_logs());
        if code != 200 {
            std::thread::sleep(Duration::from_millis(500));
        }
        code == 200
    });
    let held: Vec<TcpStream> = holders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let took = started.elapsed();
    assert!(served, "a good client was not served:\n{}", agent.log());
    assert!(agent.is_running(), "{}", agent.log());
    let peak = vm_hwm(agent.pid());
    drop(held);
    eprintln!(
        "peak RSS: {:.1} MiB (idle {:.1} MiB, limit {} MiB); {} slow connections; a good client served after {:.1} s",
        peak as f64 / 1048576.0,
        idle as f64 / 1048576.0,
        MEMORY_LIMIT >> 20,
        2000,
        took.as_secs_f64()
    );
    assert!(peak < MEMORY_LIMIT, "peak RSS {peak} over the memory limit");
}
