//! The trace components' configuration: a full traces pipeline loads, bad values are reported
//! with their place in the file, and a sink wired to a signal it cannot take is refused by the
//! real `vigil-agent validate` (and `run`).

use std::path::Path;
use std::process::Command;

use vigil_agent::config::parse;

const TRACES: &str = r#"
data_dir = "/tmp/vigil"

[sources.shop]
type = "otlp"

[processors.slis]
type = "span_metrics"
inputs = ["shop"]
flush_interval_ms = 60000
thresholds_ms = [300, 1000]
max_routes_per_service = 20

[processors.sample]
type = "tail_sampling"
inputs = ["shop"]
decision_wait_ms = 5000
latency_threshold_ms = 300
sample_percent = 10

[sinks.traces]
type = "xray"
inputs = ["sample"]
annotations = ["http.route", "order.id"]

[sinks.out]
type = "console"
inputs = ["slis"]
"#;

#[test]
fn a_traces_pipeline_loads() {
    let c = parse(Path::new("agent.toml"), TRACES).expect("valid");
    assert_eq!(c.processors.len(), 2);
    assert_eq!(c.sinks["traces"].inputs, ["sample"]);
}

#[test]
fn bad_trace_settings_name_their_key_and_line() {
    let bad = TRACES
        .replace("sample_percent = 10", "sample_percent = 140")
        .replace("thresholds_ms = [300, 1000]", "thresholds_ms = [0]")
        .replace(
            "annotations = [\"http.route\", \"order.id\"]",
            "batch.max_events = 80",
        );
    let errs: Vec<String> = match parse(Path::new("agent.toml"), &bad) {
        Ok(_) => panic!("must fail"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    };
    let all = errs.join("\n");
    assert!(all.contains("processors.sample.sample_percent"), "{all}");
    assert!(all.contains("processors.slis.thresholds_ms"), "{all}");
    assert!(all.contains("sinks.traces.batch.max_events"), "{all}");
    assert!(all.contains("agent.toml:"), "positions are given: {all}");
    assert_eq!(errs.len(), 3, "{all}");
}

#[test]
fn validate_refuses_a_sink_wired_to_a_signal_it_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    // Log lines into X-Ray (directly, and through a processor that passes them on), and host
    // metrics into CloudWatch Logs: every event would be refused at run time.
    let config = r#"
[sources.app]
type = "file"
include = ["/var/log/app/*.log"]

[sources.host]
type = "host_metrics"

[processors.parse]
type = "json_parse"
inputs = ["app"]

[sinks.traces]
type = "xray"
inputs = ["parse", "app"]

[sinks.logs]
type = "cloudwatch_logs"
inputs = ["app", "host"]
log_group = "/app"
log_stream = "{host}"
"#;
    std::fs::write(&path, config).unwrap();
    for sub in ["validate", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
            .args([sub, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sub}: {stderr}");
        let file = path.display();
        for expected in [
            format!(
                "{file}:15:11: sinks.traces.inputs[0]: `parse` emits logs, but a `xray` sink \
                 takes traces; wire it to a sink for logs"
            ),
            format!(
                "{file}:15:20: sinks.traces.inputs[1]: `app` emits logs, but a `xray` sink \
                 takes traces; wire it to a sink for logs"
            ),
            format!(
                "{file}:19:18: sinks.logs.inputs[1]: `host` emits metrics, but a \
                 `cloudwatch_logs` sink takes logs; wire it to a sink for metrics"
            ),
        ] {
            assert!(
                stderr.contains(&expected),
                "{sub}: no `{expected}` in:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("sinks.logs.inputs[0]"),
            "logs into cloudwatch_logs are fine: {stderr}"
        );
    }

    // The same sinks fed what they take validate.
    let good = config
        .replace(r#"inputs = ["parse", "app"]"#, r#"inputs = ["otel"]"#)
        .replace(r#"inputs = ["app", "host"]"#, r#"inputs = ["parse"]"#)
        .replace(
            "[sources.host]\ntype = \"host_metrics\"\n",
            "[sources.otel]\ntype = \"otlp\"\n",
        );
    std::fs::write(&path, good).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
