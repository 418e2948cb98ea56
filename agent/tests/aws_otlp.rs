//! Traces and logs to AWS's OTLP endpoints, end to end: the official OpenTelemetry Python SDK
//! (default settings: random W3C trace ids, which the `xray` sink cannot send) → the agent's
//! OTLP receiver → the `aws_otlp` sink → the stand-in of X-Ray's and CloudWatch Logs' OTLP
//! endpoints, which verifies each request's SigV4 signature with botocore, its headers, its
//! OTLP body and the published limits (`tests/support/aws_otlp_standin.py`).

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;
use vigil_test_support::{
    Answer, AwsOtlpStandIn, ChildGuard, TEST_ACCESS_KEY, TEST_SECRET_KEY, agent_command, free_port,
    venv_bin, wait_until,
};

const REGION: &str = "eu-west-1";

struct Agent {
    guard: ChildGuard,
    otlp_http: u16,
    api: u16,
    _dir: tempfile::TempDir,
}

/// Environment with the static test keys (the SDK's environment provider).
fn static_credentials() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), TEST_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), TEST_SECRET_KEY.into()),
    ]
}

fn config(dir: &Path, standin: &AwsOtlpStandIn, http: u16, api: u16, sink_extra: &str) -> String {
    format!(
        r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.otlp]
type = "otlp"
grpc_address = "127.0.0.1:{grpc}"
http_address = "127.0.0.1:{http}"
[sinks.aws]
type = "aws_otlp"
inputs = ["otlp"]
endpoint = "{endpoint}"
allow_insecure_http = true
log_group = "/shop/checkout"
log_stream = "otel"
batch.timeout_ms = 100
request.max_backoff_ms = 2000
{sink_extra}
"#,
        d = dir.display(),
        grpc = free_port(),
        endpoint = standin.endpoint,
    )
}

fn agent_for_standin(
    standin: &AwsOtlpStandIn,
    sink_extra: &str,
    env: &[(String, String)],
) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let (http, api) = (free_port(), free_port());
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config(dir.path(), standin, http, api, sink_extra)).unwrap();
    let mut cmd = agent_command(&path);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-aws-credentials"),
        )
        .env("VIGIL_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)));
    let mut guard = ChildGuard::spawn("vigil-agent", cmd).unwrap();
    let up = wait_until(Duration::from_secs(20), || {
        !guard.is_running() || TcpStream::connect(("127.0.0.1", http)).is_ok()
    });
    assert!(
        up && guard.is_running(),
        "agent did not start:\n{}",
        guard.log()
    );
    Agent {
        guard,
        otlp_http: http,
        api,
        _dir: dir,
    }
}

/// A counter of the agent's own metrics (0 when absent).
fn agent_counter(agent: &Agent, family: &str, labels: &str) -> f64 {
    let text = vigil_test_support::http_get(&format!("http://127.0.0.1:{}/metrics", agent.api))
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(family) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn errors(agent: &Agent, error: &str) -> f64 {
    agent_counter(
        agent,
        "vigil_component_errors_total",
        &format!(r#"component="aws",error="{error}""#),
    )
}

fn assert_no_violations(received: &Value, standin: &AwsOtlpStandIn) {
    let v = received["violations"].as_array().unwrap();
    assert!(
        v.is_empty(),
        "the stand-in refused requests: {v:#?}\n{}",
        standin.log()
    );
}

#[test]
fn default_sdk_traces_and_logs_reach_the_aws_otlp_endpoints_signed() {
    let standin = AwsOtlpStandIn::start(REGION, Duration::from_secs(3600));
    // Throttling, then a server error: retried. Then one partial success: read and counted.
    standin.answer_next(&[
        Answer {
            status: 429,
            retry_after: Some(1),
        },
        Answer {
            status: 503,
            retry_after: None,
        },
    ]);
    standin.partial_next(&[2]);
    let mut agent = agent_for_standin(
        &standin,
        r#"resource_attributes = { "host.name" = "shop-1" }"#,
        &static_credentials(),
    );

    // The client: the official OpenTelemetry Python SDK with its default id generator.
    let out = tempfile::NamedTempFile::new().unwrap();
    let traces = 200;
    let started = Instant::now();
    let status = Command::new(venv_bin("python"))
        .arg(vigil_test_support::repo_root().join("tests/support/otel_checkout.py"))
        .arg(format!("http://127.0.0.1:{}", agent.otlp_http))
        .arg(traces.to_string())
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "the OpenTelemetry client failed");
    let sent: Vec<Value> = serde_json::from_slice(&std::fs::read(out.path()).unwrap()).unwrap();
    assert_eq!(sent.len(), traces);
    let errors_sent: Vec<&str> = sent
        .iter()
        .filter(|t| t["error"] == true)
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();

    // Every trace arrives with its three spans (error and slow ones included).
    let spans_by_trace = |r: &Value| -> HashMap<String, Vec<Value>> {
        let mut m: HashMap<String, Vec<Value>> = HashMap::new();
        for s in r["spans"].as_array().unwrap() {
            m.entry(s["trace_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(s.clone());
        }
        m
    };
    let complete = wait_until(Duration::from_secs(60), || {
        let r = standin.received();
        let by = spans_by_trace(&r);
        sent.iter()
            .all(|t| by.get(t["trace_id"].as_str().unwrap()).map(Vec::len) == Some(3))
            && r["logs"].as_array().unwrap().len() >= errors_sent.len()
    });
    let received = standin.received();
    assert!(
        complete,
        "not every trace or log arrived: {} spans, {} logs\n{}",
        received["spans"].as_array().unwrap().len(),
        received["logs"].as_array().unwrap().len(),
        agent.guard.log()
    );
    println!("{traces} traces delivered in {:?}", started.elapsed());
    assert_no_violations(&received, &standin);
    let by = spans_by_trace(&received);
    for t in &sent {
        let id = t["trace_id"].as_str().unwrap();
        let spans = &by[id];
        let root = spans
            .iter()
            .find(|s| s["parent_span_id"] == "")
            .expect("root span");
        assert_eq!(root["error"], t["error"], "trace {id}");
        if t["slow"] == true {
            assert!(
                root["duration_ms"].as_f64().unwrap() >= 2500.0,
                "trace {id}"
            );
        }
        // Resource as Application Signals and Transaction Search group by it.
        let res = &root["resource"];
        assert_eq!(res["service.name"], "checkout");
        assert_eq!(res["deployment.environment"], "test");
        assert_eq!(res["cloud.provider"], "aws");
        assert_eq!(res["cloud.region"], REGION);
        assert_eq!(res["host.name"], "shop-1");
    }
    // Random W3C ids: the legacy sink would have dropped most of these.
    assert_eq!(by.len(), traces, "{} distinct traces", by.len());

    // Logs: one per error trace, into the configured group and stream, with the trace id.
    let logs = received["logs"].as_array().unwrap();
    let log_traces: HashSet<&str> = logs
        .iter()
        .map(|l| l["trace_id"].as_str().unwrap())
        .collect();
    for id in &errors_sent {
        assert!(log_traces.contains(id), "no log of error trace {id}");
    }
    for l in logs {
        assert_eq!(l["group"], "/shop/checkout");
        assert_eq!(l["stream"], "otel");
        assert!(
            l["body"].as_str().unwrap().contains("payment declined"),
            "{l}"
        );
    }

    // Every request was signed with the static keys; the 429 and the 503 were retried.
    let requests = received["requests"].as_array().unwrap();
    let statuses: Vec<u64> = requests
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert!(
        statuses.contains(&429) && statuses.contains(&503),
        "{statuses:?}"
    );
    assert!(requests.iter().all(|r| r["access_key"] == TEST_ACCESS_KEY));
    let counted = wait_until(Duration::from_secs(10), || {
        errors(&agent, "items_rejected") >= 1.0 && errors(&agent, "request_failed") >= 2.0
    });
    assert!(counted, "partial success or retries not counted");
    assert_eq!(
        agent_counter(
            &agent,
            "vigil_component_events_total",
            r#"component="aws",outcome="rejected""#
        ),
        2.0
    );
    agent.guard.signal(libc::SIGTERM);
    assert!(
        agent
            .guard
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        key_strindex: 0,
    }
}

fn span(trace: u8, i: u16, start: u64, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: [trace, 0, 0, 0, 0, 0, (i >> 8) as u8, i as u8].to_vec(),
        name: format!("span {i}"),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        attributes,
        ..Default::default()
    }
}

fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

async fn post_traces(agent: &Agent, req: ExportTraceServiceRequest) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", agent.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_out_of_range_items_are_counted_drops_not_refused_requests() {
    let standin = AwsOtlpStandIn::start(REGION, Duration::from_secs(3600));
    // Beside it, the legacy sink, which cannot take these (non-X-Ray) trace ids.
    let legacy = "[sinks.legacy]\ntype = \"xray\"\ninputs = [\"otlp\"]\n";
    let agent = agent_for_standin(&standin, legacy, &static_credentials());
    let now = now_nanos();
    // A span of ~300 KB (five 60 KB attributes: each is under the value limit, together over
    // the span limit), a resource of ~20 KB, a span 15 days old: each among good spans.
    let big: Vec<KeyValue> = (0..5)
        .map(|i| kv(&format!("blob.{i}"), &"x".repeat(60_000)))
        .collect();
    let huge_resource: Vec<KeyValue> = (0..20)
        .map(|i| kv(&format!("label.{i}"), &"r".repeat(1_000)))
        .collect();
    let good = |trace: u8| {
        (0..10)
            .map(move |i| span(trace, i, now - 5_000_000, vec![]))
            .collect::<Vec<_>>()
    };
    let mut first = good(1);
    first.push(span(1, 100, now - 5_000_000, big));
    first.push(span(1, 101, now - 15 * 24 * 3600 * 1_000_000_000, vec![]));
    post_traces(
        &agent,
        ExportTraceServiceRequest {
            resource_spans: vec![
                request(vec![kv("service.name", "cart")], first),
                request(huge_resource, good(2)),
                request(vec![kv("service.name", "payment")], good(3)),
            ],
        },
    )
    .await;
    let arrived = wait_until(Duration::from_secs(30), || {
        standin.received()["spans"].as_array().unwrap().len() >= 20
            && errors(&agent, "span_too_large") >= 1.0
    });
    let received = standin.received();
    assert!(arrived, "{}\n{}", received, agent.guard.log());
    assert_no_violations(&received, &standin);
    let ids: HashSet<String> = received["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["trace_id"].as_str().unwrap()[..2].to_owned())
        .collect();
    assert_eq!(ids, HashSet::from(["01".to_owned(), "03".to_owned()]));
    assert_eq!(received["spans"].as_array().unwrap().len(), 20);
    assert_eq!(errors(&agent, "span_too_large"), 1.0);
    assert_eq!(errors(&agent, "resource_too_large"), 10.0);
    assert_eq!(errors(&agent, "time_out_of_range"), 1.0);

    // The legacy sink dropped all 32 spans, and its warning names the sink that takes them.
    let counted = wait_until(Duration::from_secs(10), || {
        agent_counter(
            &agent,
            "vigil_component_errors_total",
            r#"component="legacy",error="trace_id_not_xray""#,
        ) == 32.0
    });
    assert!(counted, "{}", agent.guard.log());
    assert!(
        agent
            .guard
            .log()
            .contains("send traces through the `aws_otlp` sink"),
        "{}",
        agent.guard.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_halved_until_the_refused_span_is_isolated() {
    let standin = AwsOtlpStandIn::start(REGION, Duration::from_secs(3600));
    standin.refuse_span_named("span 13");
    let agent = agent_for_standin(&standin, "", &static_credentials());
    let now = now_nanos();
    let spans = (0..20)
        .map(|i| span(4, i, now - 1_000_000, vec![]))
        .collect();
    post_traces(
        &agent,
        ExportTraceServiceRequest {
            resource_spans: vec![request(vec![kv("service.name", "cart")], spans)],
        },
    )
    .await;
    let settled = wait_until(Duration::from_secs(30), || {
        standin.received()["spans"].as_array().unwrap().len() >= 19
            && errors(&agent, "request_refused") >= 1.0
    });
    let received = standin.received();
    assert!(settled, "{}\n{}", received, agent.guard.log());
    assert_no_violations(&received, &standin);
    let names: HashSet<&str> = received["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 19);
    assert!(!names.contains("span 13"));
    assert_eq!(
        agent_counter(
            &agent,
            "vigil_component_events_total",
            r#"component="aws",outcome="rejected""#
        ),
        1.0
    );
    assert_eq!(
        agent_counter(
            &agent,
            "vigil_component_events_total",
            r#"component="aws",outcome="sent""#
        ),
        19.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_ecs_credentials_are_used_without_restart() {
    // Keys from the ECS container credentials endpoint live 6 s; the stand-in refuses a key
    // once it expired, so the agent must fetch new ones as it runs (it does at half-life, so a
    // request has 3 s between signing and arriving).
    let standin = AwsOtlpStandIn::start(REGION, Duration::from_secs(6));
    let env = vec![(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_owned(),
        standin.credentials_url(),
    )];
    let agent = agent_for_standin(&standin, "", &env);
    let started = Instant::now();
    let mut sent = 0usize;
    // One request of 5 spans every 250 ms for 15 s: spans through several key lifetimes.
    for round in 0..60u16 {
        let now = now_nanos();
        let spans = (0..5)
            .map(|i| span(7, round * 5 + i, now - 1_000_000, vec![]))
            .collect();
        post_traces(
            &agent,
            ExportTraceServiceRequest {
                resource_spans: vec![request(vec![kv("service.name", "cart")], spans)],
            },
        )
        .await;
        sent += 5;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let arrived = wait_until(Duration::from_secs(30), || {
        standin.received()["spans"].as_array().unwrap().len() >= sent
    });
    let received = standin.received();
    assert!(arrived, "{}\n{}", received, agent.guard.log());
    assert_no_violations(&received, &standin);
    let keys: HashSet<&str> = received["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["access_key"].as_str().unwrap())
        .collect();
    println!("{} keys used over {:?}", keys.len(), started.elapsed());
    assert!(
        keys.len() >= 3,
        "only {keys:?} used: credentials were not refreshed"
    );
    assert!(keys.iter().all(|k| k.starts_with("ASIA")), "{keys:?}");
}

#[test]
fn bad_configs_are_refused_naming_the_sink_and_key() {
    let standin = AwsOtlpStandIn::start(REGION, Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    // An http:// endpoint without allow_insecure_http.
    let path = dir.path().join("agent.toml");
    let text = config(dir.path(), &standin, free_port(), free_port(), "")
        .replace("allow_insecure_http = true\n", "");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("sinks.aws.endpoint") && stderr.contains("allow_insecure_http"),
        "{stderr}"
    );

    // A log group without its stream.
    let text = config(dir.path(), &standin, free_port(), free_port(), "")
        .replace("log_stream = \"otel\"\n", "");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("sinks.aws.log_stream"), "{stderr}");

    // No region anywhere: the agent does not start, and says which sink needs one.
    let path = dir.path().join("agent-ok.toml");
    std::fs::write(
        &path,
        config(dir.path(), &standin, free_port(), free_port(), ""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["run", "--config"])
        .arg(&path)
        .env_clear()
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(static_credentials())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sink aws (aws_otlp): no AWS region"),
        "{stderr}"
    );
}
