//! Faults end to end: the real `vigil-agent` ships numbered lines to CloudWatch Logs (moto)
//! through a fault-injecting proxy while it is SIGKILLed and restarted at random moments, the
//! backend is down (the proxy refuses connections) and then throttles and fails requests, and
//! the log files are rotated. Afterwards every line written is in CloudWatch, in order per file,
//! with duplicates counted and bounded.
//!
//! A second test shows one sink down while the other keeps delivering in real time, with the
//! agent's resident memory under the configured cap while the down sink's disk buffer fills.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vigil_test_support::{FaultProxy, Faults, Moto, start_agent};

const MODULES: [&str; 5] = ["proxy", "checkout", "cart", "payment", "inventory"];

fn log_path(dir: &Path, module: &str) -> PathBuf {
    dir.join("logs").join(module).join(format!("{module}.log"))
}

/// Writes numbered lines to every module's file at a steady pace until stopped, renaming the
/// files away now and then (rotation by rename, as logrotate's `create` does). Returns the
/// number of lines written per module.
fn spawn_writer(
    dir: PathBuf,
    per_tick: u64,
    rotate_every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<HashMap<&'static str, u64>> {
    for m in MODULES {
        std::fs::create_dir_all(log_path(&dir, m).parent().unwrap()).unwrap();
    }
    std::thread::spawn(move || {
        let mut next: HashMap<&'static str, u64> = MODULES.iter().map(|m| (*m, 0)).collect();
        let mut last_rotation = Instant::now();
        let mut generation = 0;
        while !stop.load(Ordering::Relaxed) {
            if last_rotation.elapsed() >= rotate_every {
                generation += 1;
                for m in MODULES {
                    let p = log_path(&dir, m);
                    std::fs::rename(&p, p.with_extension(format!("log.{generation}"))).unwrap();
                }
                last_rotation = Instant::now();
            }
            for m in MODULES {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log_path(&dir, m))
                    .unwrap();
                let start = next[m];
                let mut buf = String::new();
                for seq in start..start + per_tick {
                    buf.push_str(&format!(
                        "{m} {seq:08} GET /api/{m}/items?page={} 200\n",
                        seq % 50
                    ));
                }
                f.write_all(buf.as_bytes()).unwrap();
                next.insert(m, start + per_tick);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        next
    })
}

/// Every message of every module's group, in the order CloudWatch returns them.
async fn read_back(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group_prefix: &str,
) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for m in MODULES {
        let messages =
            vigil_test_support::log_group_messages(logs, &format!("{group_prefix}/{m}")).await;
        if !messages.is_empty() {
            out.insert(m.to_owned(), messages);
        }
    }
    out
}

fn unique(got: &HashMap<String, Vec<String>>) -> u64 {
    got.values()
        .map(|v| v.iter().collect::<HashSet<_>>().len() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_under_sigkills_outage_throttling_and_rotation() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{dir}/data"
memory_limit_bytes = 67108864

[sources.shop]
type = "file"
include = ["{dir}/logs/*/*.log"]
path_fields = '/logs/(?P<module>[^/]+)/'
poll_interval_ms = 50
rotate_wait_ms = 1000

[processors.tag]
type = "enrich"
inputs = ["shop"]
attributes = {{ env = "chaos" }}
ec2_metadata = false

[sinks.cloudwatch]
type = "cloudwatch_logs"
inputs = ["tag"]
log_group = "/shop/{{env}}/{{module}}"
log_stream = "{{host}}"
encoding = "text"
batch.timeout_ms = 200
batch.max_events = 2000
request.max_backoff_ms = 1000
request.timeout_ms = 5000
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        dir.path().to_path_buf(),
        per_tick(),
        Duration::from_secs(12),
        Arc::clone(&stop),
    );
    let env = proxy.env();
    let mut agent = start_agent(&config, &env);
    let mut history = String::new();
    const KILLS: usize = 12;
    let mut outage = Duration::ZERO;
    for k in 0..KILLS {
        // Phases: kills 3–5 happen while the backend is down, 7–9 while it throttles and fails.
        match k {
            3 => proxy.down(),
            6 => proxy.up(),
            7 => proxy.set(Faults {
                throttle: 0.15,
                server_error: 0.05,
                delay: Duration::from_millis(20),
                ..Faults::default()
            }),
            10 => proxy.set(Faults::default()),
            _ => {}
        }
        let wait = Duration::from_millis(2_000 + fastrand::u64(0..3_000));
        if (3..6).contains(&k) {
            outage += wait;
        }
        tokio::time::sleep(wait).await;
        agent.kill();
        history.push_str(&agent.log());
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..400))).await;
        agent = start_agent(&config, &env);
    }
    // A little more writing with the last agent, then stop the writer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let total: u64 = written.values().sum();
    let writing = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = read_back(&logs, "/shop/chaos").await;
        if unique(&got) >= total || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(agent.is_running(), "agent died:\n{}", agent.log());
    history.push_str(&agent.log());

    let mut duplicates = 0u64;
    for m in MODULES {
        let mut seen = vec![0u32; written[m] as usize];
        let mut last: Option<u64> = None;
        for msg in &got[m] {
            let mut parts = msg.splitn(3, ' ');
            assert_eq!(parts.next(), Some(m), "line in the wrong group: {msg}");
            let seq: u64 = parts.next().unwrap().parse().unwrap();
            assert!(seq < written[m], "{m}: line {seq} was never written");
            seen[seq as usize] += 1;
            // In order per file: a line repeated after a crash may come again later, but a
            // line never arrives for the first time after a later one.
            if seen[seq as usize] == 1 {
                if let Some(l) = last {
                    assert!(seq > l, "{m}: line {seq} arrived after line {l}");
                }
                last = Some(seq);
            }
        }
        let missing: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == 0)
            .map(|(i, _)| i)
            .collect();
        assert!(
            missing.is_empty(),
            "{m}: {} of {} lines missing, first {:?}\n{}",
            missing.len(),
            written[m],
            &missing[..missing.len().min(10)],
            tail(&history, 80)
        );
        let dups: u64 = seen.iter().map(|c| c.saturating_sub(1) as u64).sum();
        eprintln!("{m}: {} lines, {dups} duplicates", written[m]);
        duplicates += dups;
    }
    let counts = proxy.counts();
    let ratio = duplicates as f64 / total as f64;
    let restarts_with_backlog = history
        .matches("disk buffer has undelivered data from an earlier run")
        .count();
    let reread_dropped = history.matches("not storing them twice").count();
    let resent_dropped = history.matches("already in the stream").count();
    let refused = history.matches("Connection refused").count();
    eprintln!(
        "restarts that found undelivered data in the buffer: {restarts_with_backlog}; \
         re-read batches dropped by the buffer: {reread_dropped}; re-sent requests trimmed \
         against the stream's tail: {resent_dropped}; requests refused during the outage: {refused}"
    );
    eprintln!(
        "{total} lines written in {:.0} s with {KILLS} SIGKILLs and {:.0} s of backend outage; \
         all delivered {:.0} s after writing stopped; {duplicates} duplicates ({:.3}%); \
         proxy: {counts:?}",
        writing.as_secs_f64(),
        outage.as_secs_f64(),
        started.elapsed().as_secs_f64() - writing.as_secs_f64(),
        ratio * 100.0
    );
    assert!(counts.throttled > 0, "no throttling was injected");
    assert!(refused > 0, "the agent never met the outage");
    assert!(
        ratio < 0.001,
        "{duplicates} duplicates of {total} lines ({:.3}%)",
        ratio * 100.0
    );
}

/// Lines per module per 10 ms tick (`VIGIL_CHAOS_PER_TICK` to change).
fn per_tick() -> u64 {
    std::env::var("VIGIL_CHAOS_PER_TICK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_sink_fills_its_buffer_while_the_other_delivers_within_the_memory_cap() {
    const MEMORY_CAP: u64 = 64 << 20;
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.down();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let console_out = dir.path().join("console.out");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{dir}/data"
memory_limit_bytes = {MEMORY_CAP}

[sources.shop]
type = "file"
include = ["{dir}/logs/*/*.log"]
path_fields = '/logs/(?P<module>[^/]+)/'
poll_interval_ms = 50

[sinks.cloudwatch]
type = "cloudwatch_logs"
inputs = ["shop"]
log_group = "/shop/{{module}}"
log_stream = "s"
encoding = "text"
batch.timeout_ms = 200
request.max_backoff_ms = 1000

[sinks.local]
type = "console"
inputs = ["shop"]
encoding = "text"
path = "{out}"
"#,
            dir = dir.path().display(),
            out = console_out.display()
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config, &proxy.env());

    // ~120 MB of lines over ~12 s: far more than the memory cap.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        dir.path().to_path_buf(),
        400,
        Duration::from_secs(3600),
        Arc::clone(&stop),
    );
    let buffer_dir = dir.path().join("data/buffers/cloudwatch");
    let mut max_rss = 0;
    let mut max_lag_lines = 0u64;
    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(rss) = vm_rss(agent.pid()) {
            max_rss = max_rss.max(rss);
        }
        samples += 1;
        if samples % 10 == 0 {
            // The local sink keeps up: what it wrote trails what was written by little.
            let written: u64 = MODULES
                .iter()
                .map(|m| std::fs::metadata(log_path(dir.path(), m)).map_or(0, |x| x.len()))
                .sum();
            let local = std::fs::metadata(&console_out).map_or(0, |x| x.len());
            max_lag_lines = max_lag_lines.max(written.saturating_sub(local) / 40);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let total: u64 = written.values().sum();
    // The writer is not throttled, so how far the agent trails it depends on how much CPU the
    // machine leaves it (seen: 1.3 M lines behind with the load average at 10 on 2 cores).
    // What is tested is that the local sink keeps delivering and catches up while the other
    // sink is down, within the memory cap — not its speed (that is `scripts/bench-e2e.sh`'s).
    let caught_up = vigil_test_support::wait_until(Duration::from_secs(120), || {
        if let Some(rss) = vm_rss(agent.pid()) {
            max_rss = max_rss.max(rss);
        }
        std::fs::read_to_string(&console_out).map_or(0, |s| s.lines().count() as u64) >= total
    });
    let written_bytes: u64 = MODULES
        .iter()
        .map(|m| std::fs::metadata(log_path(dir.path(), m)).map_or(0, |x| x.len()))
        .sum();
    let buffered = dir_bytes(&buffer_dir);
    eprintln!(
        "{total} lines ({:.0} MB) written; local sink caught up: {caught_up}; down sink's buffer: {:.0} MB; \
         max RSS {:.1} MB (cap {:.0} MB); largest local lag ~{max_lag_lines} lines; proxy {:?}",
        written_bytes as f64 / 1e6,
        buffered as f64 / 1e6,
        max_rss as f64 / 1e6,
        MEMORY_CAP as f64 / 1e6,
        proxy.counts()
    );
    assert!(caught_up, "the local sink fell behind:\n{}", agent.log());
    assert!(
        buffered as f64 > written_bytes as f64 * 0.5,
        "the down sink's buffer should hold the backlog ({buffered} bytes)"
    );
    assert!(
        max_rss < MEMORY_CAP,
        "agent RSS {max_rss} over the {MEMORY_CAP}-byte cap"
    );

    // Backend back: the down sink starts delivering its backlog.
    proxy.up();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let mut delivered = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let groups = logs
            .describe_log_groups()
            .send()
            .await
            .map(|g| g.log_groups().len())
            .unwrap_or(0);
        if groups == MODULES.len() {
            delivered = groups;
            break;
        }
    }
    assert_eq!(delivered, MODULES.len(), "{}", agent.log());
    agent.signal(libc::SIGTERM);
    assert!(
        agent
            .wait_exit(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "agent did not stop within its drain timeout:\n{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_backend_down_stops_within_the_deadline_and_delivers_on_the_next_start() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.down();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{dir}/data"
drain_timeout_ms = 2000

[sources.shop]
type = "file"
include = ["{dir}/logs/*/*.log"]
path_fields = '/logs/(?P<module>[^/]+)/'
poll_interval_ms = 50

[processors.tag]
type = "enrich"
inputs = ["shop"]
attributes = {{ env = "term" }}
ec2_metadata = false

[sinks.cloudwatch]
type = "cloudwatch_logs"
inputs = ["tag"]
log_group = "/shop/{{env}}/{{module}}"
log_stream = "s"
encoding = "text"
batch.timeout_ms = 200
request.max_backoff_ms = 500
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config, &proxy.env());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        dir.path().to_path_buf(),
        20,
        Duration::from_secs(3600),
        Arc::clone(&stop),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let total: u64 = written.values().sum();
    // Let the source read everything into the buffer, then stop it while the backend is down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(15));
    let took = asked.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "agent did not stop cleanly:\n{}",
        agent.log()
    );
    assert!(
        took < Duration::from_secs(6),
        "stopping took {took:?} with a 2 s drain timeout"
    );
    let buffered = dir_bytes(&dir.path().join("data/buffers/cloudwatch"));
    assert!(
        buffered > 100_000,
        "undelivered lines should be on disk ({buffered} bytes)"
    );

    // Next start, backend up: everything arrives, once.
    proxy.up();
    let agent = start_agent(&config, &proxy.env());
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = read_back(&logs, "/shop/term").await;
        if unique(&got) >= total || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for m in MODULES {
        let mut seqs: Vec<u64> = got
            .get(m)
            .into_iter()
            .flatten()
            .map(|msg| msg.split(' ').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            seqs.len() as u64,
            written[m],
            "{m}: every line once\n{}",
            agent.log()
        );
        seqs.dedup();
        assert_eq!(seqs, (0..written[m]).collect::<Vec<_>>(), "{m}: in order");
    }
    eprintln!(
        "{total} lines: SIGTERM with the backend down took {:.1} s ({:.1} MB left on disk); all delivered after the restart",
        took.as_secs_f64(),
        buffered as f64 / 1e6
    );
}

/// The worst moment to stop: the disk buffer is full (`when_full = "block"`), the backend is
/// down and the source is blocked on it. A reload must still swap pipelines and SIGTERM must
/// still exit within `drain_timeout_ms` plus a few seconds; nothing is lost for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_sigterm_with_a_full_blocking_buffer_and_the_backend_down_finish_in_time() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.down();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let write_config = |env: &str| {
        std::fs::write(
            &config,
            format!(
                r#"
data_dir = "{dir}/data"
drain_timeout_ms = 2000

[sources.shop]
type = "file"
include = ["{dir}/logs/*/*.log"]
path_fields = '/logs/(?P<module>[^/]+)/'
poll_interval_ms = 50

[processors.tag]
type = "enrich"
inputs = ["shop"]
attributes = {{ env = "{env}" }}
ec2_metadata = false

[sinks.cloudwatch]
type = "cloudwatch_logs"
inputs = ["tag"]
log_group = "/shop/full/{{module}}"
log_stream = "s"
encoding = "text"
batch.timeout_ms = 200
request.max_backoff_ms = 500
buffer = {{ type = "disk", max_bytes = 1048576, when_full = "block" }}
"#,
                dir = dir.path().display()
            ),
        )
        .unwrap()
    };
    write_config("one");
    let mut agent = start_agent(&config, &proxy.env());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        dir.path().to_path_buf(),
        10,
        Duration::from_secs(3600),
        Arc::clone(&stop),
    );
    let full = vigil_test_support::wait_until(Duration::from_secs(60), || {
        agent.log().contains("disk buffer is full")
    });
    assert!(full, "the buffer never filled:\n{}", agent.log());
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let total: u64 = written.values().sum();

    // SIGHUP: the old pipeline gives up after its drain timeout, the new one starts.
    write_config("two");
    let asked = Instant::now();
    agent.signal(libc::SIGHUP);
    let reloaded = vigil_test_support::wait_until(Duration::from_secs(20), || {
        agent.log().contains("starting the new pipeline")
    });
    let took_reload = asked.elapsed();
    assert!(reloaded, "no new pipeline:\n{}", agent.log());
    assert!(agent.is_running(), "{}", agent.log());
    assert!(
        took_reload < Duration::from_secs(9),
        "reload took {took_reload:?} with a 2 s drain timeout"
    );

    // SIGTERM while the new pipeline is blocked the same way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(30));
    let took = asked.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "agent did not stop cleanly:\n{}",
        agent.log()
    );
    assert!(
        took < Duration::from_secs(9),
        "stopping took {took:?} with a 2 s drain timeout"
    );

    // Next start, backend up: every line arrives.
    proxy.up();
    let agent = start_agent(&config, &proxy.env());
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = read_back(&logs, "/shop/full").await;
        if unique(&got) >= total || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(unique(&got), total, "every line arrives\n{}", agent.log());
    eprintln!(
        "{total} lines: reload took {:.1} s and SIGTERM {:.1} s with a full blocking buffer and the backend down",
        took_reload.as_secs_f64(),
        took.as_secs_f64()
    );
}
