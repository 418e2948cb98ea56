//! `vigil-agent top --once` against a real running agent: it reads the agent's own metrics
//! endpoint twice and shows every component with the rates it measured.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vigil_test_support::{ChildGuard, agent_command, free_port, wait_until};

#[test]
fn top_shows_each_component_with_its_rates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{port}"
[sources.shop]
type = "file"
include = ["{d}/logs/*.log"]
poll_interval_ms = 20
[sinks.local]
type = "console"
inputs = ["shop"]
path = "{d}/out.txt"
"#,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let cmd = agent_command(&config);
    let agent = ChildGuard::spawn("vigil-agent", cmd).unwrap();

    // Steady traffic: about 2,000 lines a second.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let log = dir.path().join("logs/cart.log");
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(log).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    writeln!(f, "cart line {n}").unwrap();
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let url = format!("http://127.0.0.1:{port}/metrics");
    assert!(
        wait_until(Duration::from_secs(20), || vigil_test_support::http_get(
            &url
        )
        .is_ok_and(|body| body.contains("component=\"local\""))),
        "endpoint not serving:\n{}",
        agent.log()
    );

    let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["top", "--once", "--interval-ms", "1500", "--url", &url])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert!(text.contains("COMPONENT"), "{text}");
    // Columns: component, in/s, out/s, ... — rates parse back as numbers near 2k/s.
    let rate = |cell: &str| -> f64 {
        let (num, mult) = match cell.strip_suffix('k') {
            Some(n) => (n, 1e3),
            None => (cell, 1.0),
        };
        num.parse::<f64>().unwrap() * mult
    };
    let sink = row("local");
    assert!(rate(&sink[1]) > 500.0, "sink in/s too low:\n{text}");
    assert!(rate(&sink[2]) > 500.0, "sink out/s too low:\n{text}");
    let source = row("shop");
    assert!(rate(&source[2]) > 500.0, "source out/s too low:\n{text}");
    assert!(text.contains("RSS"), "{text}");

    // A wrong address is a clear error, not a panic.
    let bad = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["top", "--once", "--url", "http://127.0.0.1:1/metrics"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cannot read http://127.0.0.1:1/metrics")
    );
}
