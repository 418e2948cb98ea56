//! Metrics in: the real `vigil-agent` scraping Debian's `prometheus-node-exporter`, collecting
//! host metrics every second (with a module process killed and restarted), and scraping broken
//! exporters served by a local HTTP server in this test. Everything lands in a console sink
//! writing JSON lines, which the tests read back.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_test_support::{ChildGuard, free_port, http_get, start_agent, wait_until};

/// The metric events written so far: `(name, event)` of every `{"Metric": ...}` line.
fn metrics(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("Metric").cloned())
        .collect()
}

fn named<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    all.iter().filter(|m| m["name"] == name).collect()
}

fn tag<'a>(m: &'a Value, k: &str) -> Option<&'a str> {
    m["tags"][k].as_str()
}

fn gauge(m: &Value) -> Option<f64> {
    m["value"]["Gauge"]["value"].as_f64()
}

fn counter(m: &Value) -> Option<f64> {
    m["value"]["Counter"]["value"].as_f64()
}

fn agent(dir: &Path, config: &str) -> ChildGuard {
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    start_agent(&path, &[])
}

fn mem_total_bytes() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024.0
}

#[test]
fn node_exporter_metrics_arrive_with_kinds_labels_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new("/usr/bin/prometheus-node-exporter");
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Collectors that are slow or noisy in a container; the rest is what hosts run.
        .args([
            "--no-collector.hwmon",
            "--no-collector.thermal_zone",
            "--no-collector.rapl",
        ]);
    let _exporter = ChildGuard::spawn("node-exporter", cmd).unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    assert!(
        wait_until(Duration::from_secs(15), || http_get(&url).is_ok()),
        "node exporter did not come up"
    );
    let out = dir.path().join("out.jsonl");
    let mut agent = agent(
        dir.path(),
        &format!(
            r#"
data_dir = "{d}/data"
[sources.node]
type = "prometheus_scrape"
interval_ms = 1000
timeout_ms = 1000
[[sources.node.targets]]
url = "{url}"
labels = {{ module = "node" }}
[sinks.out]
type = "console"
inputs = ["node"]
path = "{out}"
"#,
            d = dir.path().display(),
            out = out.display()
        ),
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            let all = metrics(&out);
            !named(&all, "node_cpu_seconds_total").is_empty()
                && !named(&all, "node_memory_MemTotal_bytes").is_empty()
        }),
        "no node exporter metrics arrived"
    );
    let all = metrics(&out);
    let instance = format!("127.0.0.1:{port}");

    let cpu = named(&all, "node_cpu_seconds_total");
    let idle = cpu
        .iter()
        .find(|m| tag(m, "mode") == Some("idle") && tag(m, "cpu") == Some("0"))
        .expect("cpu 0 idle");
    assert!(counter(idle).unwrap() > 0.0, "{idle}");
    assert!(
        idle["value"]["Counter"]["temporality"]["Cumulative"]["start_ms"].is_i64(),
        "{idle}"
    );
    assert_eq!(idle["unit"], "s");
    assert_eq!(tag(idle, "instance"), Some(instance.as_str()));
    assert_eq!(tag(idle, "job"), Some("node"));
    assert_eq!(tag(idle, "module"), Some("node"));

    let total = named(&all, "node_memory_MemTotal_bytes")[0];
    assert_eq!(total["unit"], "By");
    assert_eq!(gauge(total), Some(mem_total_bytes()), "{total}");
    assert!(
        named(&all, "node_memory_MemAvailable_bytes")
            .iter()
            .all(|m| gauge(m).is_some_and(|v| v > 0.0))
    );

    // The Go runtime's summary, with its quantiles.
    let gc = named(&all, "go_gc_duration_seconds");
    assert!(!gc.is_empty(), "go_gc_duration_seconds summary missing");
    let q = gc[0]["value"]["Summary"]["quantiles"].as_array().unwrap();
    assert!(q.iter().any(|p| p[0] == 0.5), "{}", gc[0]);
    // HELP/TYPE lines never become events; every event has the target's tags.
    assert!(
        all.iter()
            .all(|m| tag(m, "instance") == Some(instance.as_str()))
    );

    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        !agent.log().contains("vigil_scrape_failures_total"),
        "{}",
        agent.log()
    );
}

#[test]
fn host_metrics_every_second_count_a_module_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of `sleep` under a name no other process on this machine has.
    let module_name = format!("vmod{}", std::process::id());
    let module_bin: PathBuf = dir.path().join(&module_name);
    std::fs::copy("/bin/sleep", &module_bin).unwrap();
    let start_module = || {
        let mut c = Command::new(&module_bin);
        c.arg("300");
        ChildGuard::spawn("module", c).unwrap()
    };
    let mut module = start_module();

    let out = dir.path().join("out.jsonl");
    let log_dir = dir.path().join("logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    let mut agent = agent(
        dir.path(),
        &format!(
            r#"
data_dir = "{d}/data"
[sources.host]
type = "host_metrics"
interval_ms = 1000
[[sources.host.processes]]
module = "shop"
name = "{module_name}"
[[sources.host.processes]]
module = "ghost"
pidfile = "{d}/nobody.pid"
[sinks.out]
type = "console"
inputs = ["host"]
path = "{out}"
"#,
            d = dir.path().display(),
            out = out.display()
        ),
    );
    let running = |all: &[Value], want: f64| {
        named(all, "process.running")
            .iter()
            .any(|m| tag(m, "module") == Some("shop") && gauge(m) == Some(want))
    };
    assert!(
        wait_until(Duration::from_secs(15), || running(&metrics(&out), 1.0)),
        "module process not seen"
    );
    let all = metrics(&out);

    // CPU: totals by mode and per core, plus utilisation shares that add up to 1.
    let cpu = named(&all, "system.cpu.time");
    assert!(cpu.iter().any(|m| tag(m, "cpu.mode") == Some("iowait")));
    assert!(
        cpu.iter()
            .any(|m| tag(m, "cpu.logical_number") == Some("0"))
    );
    let idle_total = cpu
        .iter()
        .find(|m| tag(m, "cpu.mode") == Some("idle") && tag(m, "cpu.logical_number").is_none())
        .unwrap();
    assert!(counter(idle_total).unwrap() > 0.0);
    assert_eq!(idle_total["unit"], "s");
    assert!(tag(idle_total, "host").is_some_and(|h| !h.is_empty()));
    assert_eq!(
        idle_total["resource"]["attributes"]["host.name"].as_str(),
        tag(idle_total, "host")
    );

    // Memory total is /proc/meminfo's MemTotal.
    let limit = named(&all, "system.memory.limit");
    assert_eq!(gauge(limit[0]), Some(mem_total_bytes()));
    let used = named(&all, "system.memory.usage")
        .into_iter()
        .find(|m| tag(m, "system.memory.state") == Some("used"))
        .unwrap();
    assert!(gauge(used).unwrap() > 0.0 && gauge(used).unwrap() < mem_total_bytes());

    // Some real filesystem with a sane size; network counters for loopback.
    let fs = named(&all, "system.filesystem.limit");
    assert!(!fs.is_empty(), "no filesystem metrics");
    assert!(fs.iter().all(|m| gauge(m).unwrap() > 0.0
        && !matches!(
            tag(m, "system.filesystem.type"),
            Some("proc" | "sysfs" | "tmpfs" | "cgroup2")
        )));
    let lo_rx = named(&all, "system.network.io")
        .into_iter()
        .find(|m| {
            tag(m, "network.interface.name") == Some("lo")
                && tag(m, "network.io.direction") == Some("receive")
        })
        .expect("loopback receive bytes");
    assert_eq!(lo_rx["unit"], "By");
    assert!(!named(&all, "system.cpu.load_average.1m").is_empty());
    assert!(
        named(&all, "system.process.count")
            .iter()
            .all(|m| gauge(m).unwrap() >= 2.0)
    );
    let rss = named(&all, "process.memory.usage")
        .into_iter()
        .find(|m| tag(m, "module") == Some("shop"))
        .expect("module RSS");
    assert!(gauge(rss).unwrap() > 0.0);
    // A pidfile that does not exist: reported as not running, never an error.
    assert!(
        named(&all, "process.running")
            .iter()
            .any(|m| tag(m, "module") == Some("ghost") && gauge(m) == Some(0.0))
    );

    // Kill the module: seen gone; start it again: one restart.
    module.kill();
    assert!(
        wait_until(Duration::from_secs(10), || running(&metrics(&out), 0.0)),
        "module death not seen"
    );
    let _module2 = start_module();
    assert!(
        wait_until(Duration::from_secs(10), || {
            named(&metrics(&out), "process.restarts")
                .iter()
                .any(|m| tag(m, "module") == Some("shop") && counter(m) == Some(1.0))
        }),
        "restart not counted"
    );

    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(Duration::from_secs(10)).is_some());
}

/// Serves `respond(request_stream)` to every connection on a thread of its own.
fn serve(respond: impl Fn(std::net::TcpStream) + Send + Sync + Clone + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let respond = respond.clone();
            std::thread::spawn(move || respond(stream));
        }
    });
    port
}

fn read_request(stream: &mut std::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Answers 200 with `body`, streamed without a Content-Length (so only reading can tell its size).
fn answer(body: std::sync::Arc<Vec<u8>>) -> impl Fn(std::net::TcpStream) + Send + Sync + Clone {
    move |mut s| {
        read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nConnection: close\r\n\r\n");
        for chunk in body.chunks(64 * 1024) {
            if s.write_all(chunk).is_err() {
                return;
            }
        }
    }
}

#[test]
fn broken_exporters_are_marked_failed_while_a_good_one_keeps_flowing() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let good = serve(answer(Arc::new(
        b"# TYPE app_requests_total counter\napp_requests_total{route=\"/\"} 42\n# TYPE app_latency_seconds histogram\napp_latency_seconds_bucket{le=\"0.1\"} 5\napp_latency_seconds_bucket{le=\"+Inf\"} 6\napp_latency_seconds_sum 0.7\napp_latency_seconds_count 6\n".to_vec(),
    )));
    // 4 MiB of valid lines against a 1 MiB limit.
    let huge: Vec<u8> = (0..200_000)
        .flat_map(|i| format!("big_metric{{i=\"{i:08}\"}} 1\n").into_bytes())
        .collect();
    let huge = serve(answer(Arc::new(huge)));
    let invalid = serve(answer(Arc::new(
        b"ok_metric 1\nbroken{label=\"unterminated} 1\n".to_vec(),
    )));
    // A million series (about 20 MB), against max_series = 10,000 and room for the bytes.
    let million: Vec<u8> = (0..1_000_000)
        .flat_map(|i| format!("s{{i=\"{i}\"}} 1\n").into_bytes())
        .collect();
    let million = serve(answer(Arc::new(million)));
    // Accepts, reads the request, never answers.
    let hung = serve(|mut s| {
        read_request(&mut s);
        std::thread::sleep(Duration::from_secs(120));
    });
    let refused = free_port();
    // Refused too, and its URL carries credentials.
    let secret_port = free_port();

    let url = |p: u16| format!("http://127.0.0.1:{p}/metrics");
    let with_password = format!("http://scraper:S3cr3tPw@127.0.0.1:{secret_port}/metrics");
    let out = dir.path().join("out.jsonl");
    let mut agent = agent(
        dir.path(),
        &format!(
            r#"
data_dir = "{d}/data"
[sources.apps]
type = "prometheus_scrape"
interval_ms = 1000
timeout_ms = 800
max_series = 10000
max_body_bytes = 1048576
[[sources.apps.targets]]
url = "{good}"
[[sources.apps.targets]]
url = "{huge}"
[[sources.apps.targets]]
url = "{invalid}"
[[sources.apps.targets]]
url = "{million}"
max_body_bytes = 67108864
[[sources.apps.targets]]
url = "{hung}"
[[sources.apps.targets]]
url = "{refused}"
[[sources.apps.targets]]
url = "{with_password}"
[sinks.out]
type = "console"
inputs = ["apps"]
path = "{out}"
"#,
            d = dir.path().display(),
            out = out.display(),
            good = url(good),
            huge = url(huge),
            invalid = url(invalid),
            million = url(million),
            hung = url(hung),
            refused = url(refused),
            with_password = with_password,
        ),
    );
    let good_instance = format!("127.0.0.1:{good}");
    assert!(
        wait_until(Duration::from_secs(20), || {
            metrics(&out)
                .iter()
                .filter(|m| m["name"] == "app_requests_total")
                .count()
                >= 4
        }),
        "the good target stopped flowing"
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(Duration::from_secs(10)).is_some());
    let log = agent.log();

    let all = metrics(&out);
    // Only the good target's metrics (nothing partial from the invalid one's first line).
    assert!(
        all.iter()
            .all(|m| tag(m, "instance") == Some(good_instance.as_str())),
        "events from a failed target leaked"
    );
    let hist = named(&all, "app_latency_seconds")[0];
    assert_eq!(
        hist["value"]["Histogram"]["bucket_counts"],
        serde_json::json!([5, 1])
    );
    assert_eq!(
        hist["value"]["Histogram"]["bounds"],
        serde_json::json!([0.1])
    );

    // Each failed target has its counter in the shutdown summary, under its own reason.
    for (port, reason) in [
        (huge, "body_too_large"),
        (invalid, "invalid_syntax"),
        (million, "too_many_series"),
        (hung, "timeout"),
        (refused, "connection"),
        (secret_port, "connection"),
    ] {
        let target = format!("target={}", url(port));
        assert!(
            log.lines()
                .any(|l| l.contains("vigil_scrape_failures_total")
                    && l.contains(&format!("reason={reason}"))
                    && l.contains(&target)),
            "no {reason} counter for {target}:\n{log}"
        );
        // And a log line saying why, with the target.
        assert!(
            log.lines()
                .any(|l| l.contains("scrape failed") && l.contains(&url(port))),
            "no failure log line for {target}"
        );
    }
    assert!(log.contains("line 2"), "the syntax error names its line");
    // Credentials in a target URL appear in no label and no log line.
    assert!(!log.contains("S3cr3tPw"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("vigil_scrape_failures_total")
                && l.contains(&format!("target={}", url(good)))),
        "the good target failed"
    );
    // Rate-limited: the hung target failed on every scrape but was logged once.
    let hung_lines = log
        .lines()
        .filter(|l| l.contains("scrape failed") && l.contains(&url(hung)))
        .count();
    assert_eq!(hung_lines, 1, "{log}");
}

/// Each target runs its own loop: a target that answers slowly, and one that never answers and
/// times out, each on a longer interval of its own, do not hold back a fast target's 1 s ticks.
#[test]
fn a_slow_target_does_not_delay_the_others_ticks() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let fast = serve(answer(Arc::new(b"fast_metric 1\n".to_vec())));
    // Answers after 1.5 s (within its 2.5 s timeout).
    let slow = serve(|mut s| {
        read_request(&mut s);
        std::thread::sleep(Duration::from_millis(1500));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nslow_metric 1\n");
    });
    // Never answers: every scrape of it times out.
    let hung = serve(|mut s| {
        read_request(&mut s);
        std::thread::sleep(Duration::from_secs(60));
    });
    let url = |p: u16| format!("http://127.0.0.1:{p}/metrics");
    let out = dir.path().join("out.jsonl");
    let mut agent = agent(
        dir.path(),
        &format!(
            r#"
data_dir = "{d}/data"
[sources.apps]
type = "prometheus_scrape"
interval_ms = 1000
timeout_ms = 900
[[sources.apps.targets]]
url = "{fast}"
[[sources.apps.targets]]
url = "{slow}"
interval_ms = 3000
timeout_ms = 2500
[[sources.apps.targets]]
url = "{hung}"
interval_ms = 3000
timeout_ms = 2900
[sinks.out]
type = "console"
inputs = ["apps"]
path = "{out}"
"#,
            d = dir.path().display(),
            out = out.display(),
            fast = url(fast),
            slow = url(slow),
            hung = url(hung),
        ),
    );
    let count = |name: &str| named(&metrics(&out), name).len();
    assert!(
        wait_until(Duration::from_secs(30), || count("fast_metric") >= 9
            && count("slow_metric") >= 2),
        "fast: {}, slow: {}",
        count("fast_metric"),
        count("slow_metric")
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(Duration::from_secs(10)).is_some());
    let log = agent.log();

    // The fast target's scrape times (its samples carry none, so they get the scrape time) keep
    // its own 1 s schedule: no gap near the slow targets' 1.5 s answer or 2.9 s timeout.
    let all = metrics(&out);
    let times: Vec<i64> = named(&all, "fast_metric")
        .iter()
        .map(|m| m["timestamp_ms"].as_i64().unwrap())
        .collect();
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| (700..=1300).contains(g)),
        "the fast target's ticks were held up: gaps {gaps:?} ms"
    );
    // The hung target timed out (counted and logged) all the while.
    assert!(
        log.lines()
            .any(|l| l.contains("vigil_scrape_failures_total")
                && l.contains("reason=timeout")
                && l.contains(&format!("target={}", url(hung)))),
        "no timeout counted for the hung target:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("vigil_scrape_failures_total")
                && (l.contains(&url(fast)) || l.contains(&url(slow)))),
        "the fast or the slow target failed:\n{log}"
    );
}
