//! The trace components' configuration: a full traces pipeline loads, and bad values are
//! reported with their place in the file.

use std::path::Path;

use vigil_agent::config::parse;

const TRACES: &str = r#"
data_dir = "/tmp/vigil"

[sources.shop]
type = "file"
include = ["/var/log/shop/*.log"]

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
            "batch_max_documents = 80",
        );
    let errs: Vec<String> = match parse(Path::new("agent.toml"), &bad) {
        Ok(_) => panic!("must fail"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    };
    let all = errs.join("\n");
    assert!(all.contains("processors.sample.sample_percent"), "{all}");
    assert!(all.contains("processors.slis.thresholds_ms"), "{all}");
    assert!(all.contains("sinks.traces.batch_max_documents"), "{all}");
    assert!(all.contains("agent.toml:"), "positions are given: {all}");
    assert_eq!(errs.len(), 3, "{all}");
}
