//! The demo cannot rot: its short variant (`vigil-demo --fast`) runs here end to end — moto,
//! the stand-ins, the shop simulator, the agent and the watchdog behind `cargo lambda watch` —
//! and must page exactly once for the injected outage, within two evaluations after the burn
//! becomes visible, turn the Slack message "resolved" in place, and exit 0. Bad input (a taken
//! port, a missing tool) and Ctrl-C must be named clearly and leave nothing running.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_test_support::{ChildGuard, wait_until};

const DEMO: &str = env!("CARGO_BIN_EXE_vigil-demo");

fn demo(args: &[&str]) -> Command {
    let mut cmd = Command::new(DEMO);
    cmd.args(args).env("NO_COLOR", "1");
    cmd
}

#[test]
fn the_fast_demo_pages_once_for_the_outage_and_resolves_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let mut cmd = demo(&["--fast", "--agent-api-port", "0", "--otlp-port", "0"]);
    cmd.arg("--summary-json").arg(&summary);
    let mut run = ChildGuard::spawn("vigil-demo", cmd).unwrap();
    let status = run.wait_exit(Duration::from_secs(420));
    let output = run.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo failed ({status:?}):\n{output}"
    );
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["ok"], true, "{s:#}");
    assert_eq!(s["slack_messages"], 1, "{s:#}");
    assert_eq!(s["slack_resolved_in_place"], true, "{s:#}");
    assert_eq!(s["page_emails"], 1, "{s:#}");
    assert_eq!(s["resolve_emails"], 1, "{s:#}");
    assert_eq!(s["sns_messages"], 2, "page and resolve on SNS: {s:#}");
    let n = s["evaluations_after_burn"].as_u64().unwrap();
    assert!((1..=2).contains(&n), "{s:#}");
    // The page came from a run after the burn became visible, and exactly one run paged.
    let pages: Vec<&Value> = s["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d[0] == "page" && d[1] == "slo:checkout:checkout-success-rate")
        })
        .collect();
    assert_eq!(pages.len(), 1, "{s:#}");
    assert!(pages[0]["at"].as_f64().unwrap() >= s["burn_visible"].as_f64().unwrap());
    // Every backend got data through the agent.
    for sink in ["cloudwatch_logs", "span_metrics", "xray", "newrelic"] {
        assert!(
            s["shipped"][sink].as_f64().unwrap_or(0.0) > 0.0,
            "{sink} shipped nothing: {s:#}"
        );
    }
    assert!(s["newrelic"]["spans"].as_u64().unwrap() > 0, "{s:#}");
    assert!(
        output.contains("PAGE:") && output.contains("RESOLVED:"),
        "{output}"
    );
    assert!(output.contains("[RESOLVED]"), "{output}");
    // The summary points at the HTML SLO report of this run, written while moto was up.
    let report = std::env::temp_dir().join("vigil-demo-slo-report.html");
    assert!(
        output.contains(&format!("HTML SLO report: {}", report.display())),
        "{output}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg"), "the report draws its charts inline");
}

#[test]
fn a_taken_port_and_a_missing_tool_are_named_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = demo(&["--fast", "--agent-api-port", &port, "--otlp-port", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("port {port} on 127.0.0.1 (the agent's API"))
            && err.contains("already taken")
            && err.contains("--agent-api-port"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("moto"));

    let empty = tempfile::tempdir().unwrap();
    let out = demo(&["--fast", "--agent-api-port", "0", "--otlp-port", "0"])
        .env("VIGIL_VENV", empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cargo-lambda not found") && err.contains("run scripts/setup.sh"),
        "{err}"
    );
}

/// Processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

#[test]
fn ctrl_c_stops_every_process_the_demo_started() {
    let mut run = ChildGuard::spawn(
        "vigil-demo",
        demo(&["--fast", "--agent-api-port", "0", "--otlp-port", "0"]),
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(120), || run.log().contains("Watching:")
            || !run.is_running()),
        "the demo did not get going:\n{}",
        run.log()
    );
    assert!(run.is_running(), "{}", run.log());
    let started = children_of(run.pid());
    // moto, aiosmtpd, the agent, the shop, cargo lambda watch and the watchdog function.
    assert!(started.len() >= 6, "{started:?}\n{}", run.log());
    run.signal(libc::SIGINT);
    let status = run.wait_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{}", run.log());
    assert!(run.log().contains("interrupted"), "{}", run.log());
    assert!(
        wait_until(Duration::from_secs(10), || started
            .iter()
            .all(|p| !alive(*p))),
        "still running after Ctrl-C: {:?}",
        started.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
}
