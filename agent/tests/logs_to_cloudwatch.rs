//! End to end: the real `vigil-agent` process ships files to CloudWatch Logs (moto's server),
//! while Debian's logrotate rotates them in `create` and `copytruncate` modes and the agent is
//! restarted — once gracefully, once with SIGKILL.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_test_support::{ChildGuard, FaultProxy, Faults, Moto, start_agent};

const MODULES: [&str; 7] = [
    "proxy",
    "authentication",
    "inventory",
    "checkout",
    "cart",
    "notification",
    "payment",
];
/// Modules rotated by rename (`create`); the others by `copytruncate`.
const CREATE_MODE: [&str; 4] = ["proxy", "authentication", "inventory", "checkout"];
const CARD: &str = "4111-1111-1111-1111";

struct Shop {
    dir: tempfile::TempDir,
    next: HashMap<&'static str, u64>,
}

impl Shop {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for m in MODULES {
            std::fs::create_dir_all(dir.path().join("logs").join(m)).unwrap();
        }
        Shop {
            dir,
            next: MODULES.iter().map(|m| (*m, 0)).collect(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self, module: &str) -> PathBuf {
        self.path()
            .join("logs")
            .join(module)
            .join(format!("{module}.log"))
    }

    /// Appends `per_module` numbered lines to every module's file, opening the file by path each
    /// time like an application that reopens its log after rotation.
    fn write(&mut self, per_module: u64) {
        for m in MODULES {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log(m))
                .unwrap();
            let mut buf = String::new();
            let start = self.next[m];
            for seq in start..start + per_module {
                if seq % 1000 == 7 {
                    buf.push_str(&format!("{m} {seq:08} payment with card {CARD} accepted\n"));
                } else {
                    buf.push_str(&format!(
                        "{m} {seq:08} GET /api/{m}/items?page={} 200\n",
                        seq % 50
                    ));
                }
            }
            f.write_all(buf.as_bytes()).unwrap();
            self.next.insert(m, start + per_module);
        }
    }

    fn total(&self) -> u64 {
        self.next.values().sum()
    }

    fn rotate(&self) {
        let create: Vec<String> = CREATE_MODE
            .iter()
            .map(|m| self.log(m).display().to_string())
            .collect();
        let copy: Vec<String> = MODULES
            .iter()
            .filter(|m| !CREATE_MODE.contains(m))
            .map(|m| self.log(m).display().to_string())
            .collect();
        let conf = format!(
            "{} {{\n  create\n  rotate 20\n  missingok\n  nocompress\n}}\n{} {{\n  copytruncate\n  rotate 20\n  missingok\n  nocompress\n}}\n",
            create.join(" "),
            copy.join(" ")
        );
        let conf_path = self.path().join("logrotate.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let out = Command::new("/usr/sbin/logrotate")
            .arg("-f")
            .arg("-s")
            .arg(self.path().join("logrotate.state"))
            .arg(&conf_path)
            .output()
            .expect("run logrotate (installed by scripts/setup.sh)");
        assert!(
            out.status.success(),
            "logrotate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn config(&self) -> PathBuf {
        let text = format!(
            r#"
data_dir = "{dir}/data"

[sources.shop]
type = "file"
include = ["{dir}/logs/*/*.log"]
path_fields = '/logs/(?P<module>[^/]+)/'
poll_interval_ms = 50
rotate_wait_ms = 1000

[processors.tag]
type = "enrich"
inputs = ["shop"]
attributes = {{ env = "test" }}
ec2_metadata = false

[sinks.cloudwatch]
type = "cloudwatch_logs"
inputs = ["tag"]
log_group = "/shop/{{env}}/{{module}}"
log_stream = "{{host}}"
encoding = "text"
batch.timeout_ms = 200
batch.max_events = 5000
request.max_backoff_ms = 1000
"#,
            dir = self.path().display()
        );
        let p = self.path().join("agent.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// Every message of every module's group, in the order CloudWatch returns them.
async fn read_back(logs: &aws_sdk_cloudwatchlogs::Client) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for m in MODULES {
        let messages =
            vigil_test_support::log_group_messages(logs, &format!("/shop/test/{m}")).await;
        if !messages.is_empty() {
            out.insert(m.to_owned(), messages);
        }
    }
    out
}

/// How the agent's second restart happens.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Restart {
    Graceful,
    Kill,
}

/// 200,000 numbered lines over 7 module files; three logrotate runs (create and copytruncate)
/// — one while the agent runs, one right as it starts, one while it is down; two restarts, the
/// second as `second`. Checks that every line arrives, in order per log path, and that no card
/// number reaches CloudWatch. Returns the lines that arrived more than once, per module, and the
/// range of line numbers the agent could have been shipping when the second restart came.
async fn scenario(second: Restart) -> (HashMap<&'static str, Vec<u64>>, (u64, u64)) {
    let moto = Moto::start();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let mut shop = Shop::new();
    let config = shop.config();
    const TOTAL: u64 = 200_000;
    let per_round = TOTAL / MODULES.len() as u64 / 8;

    let started = Instant::now();
    let mut agent = start_agent(&config, &moto.env());
    let mut history = String::new();
    shop.write(per_round);
    // A file rotated away before the agent ever saw it under its name cannot be known to it:
    // let the agent find every file first.
    let found = vigil_test_support::wait_until(Duration::from_secs(20), || {
        agent.log().matches("reading file").count() >= MODULES.len()
    });
    assert!(found, "agent did not find the files:\n{}", agent.log());
    shop.write(per_round);
    shop.rotate(); // 1st rotation, agent running
    shop.write(per_round);

    // Restart 1: graceful, with lines written while it is down.
    std::thread::sleep(Duration::from_millis(300));
    stop(&mut agent);
    history.push_str(&agent.log());
    let restart_1_at = shop.next["proxy"];
    shop.write(per_round);
    agent = start_agent(&config, &moto.env());
    shop.write(per_round);
    shop.rotate(); // 2nd rotation, as the agent starts
    shop.write(per_round);

    // Restart 2, then a rotation while it is down.
    std::thread::sleep(Duration::from_millis(400));
    let restart_2_at = shop.next["proxy"];
    match second {
        Restart::Graceful => stop(&mut agent),
        Restart::Kill => agent.kill(),
    }
    history.push_str(&agent.log());
    shop.write(per_round);
    shop.rotate(); // 3rd rotation, agent down
    agent = start_agent(&config, &moto.env());
    let rest = (TOTAL - shop.total()) / MODULES.len() as u64;
    shop.write(rest);
    let remainder = TOTAL - shop.total();
    if remainder > 0 {
        shop.write(remainder.div_ceil(MODULES.len() as u64));
    }
    let written = shop.total();
    assert!(written >= TOTAL);

    let deadline = Instant::now() + Duration::from_secs(180);
    let got = loop {
        let got = read_back(&logs).await;
        let unique: usize = got
            .values()
            .map(|v| v.iter().collect::<std::collections::HashSet<_>>().len())
            .sum();
        if unique as u64 >= written || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(agent.is_running(), "agent died:\n{}", agent.log());

    let mut duplicates = HashMap::new();
    for m in MODULES {
        let mut seen = vec![0u32; shop.next[m] as usize];
        let mut last: Option<u64> = None;
        for msg in &got[m] {
            assert!(
                !msg.contains(CARD),
                "a card number reached CloudWatch: {msg}"
            );
            let mut parts = msg.splitn(3, ' ');
            assert_eq!(parts.next(), Some(m), "line in the wrong group: {msg}");
            let seq: u64 = parts.next().unwrap().parse().unwrap();
            if seq % 1000 == 7 {
                assert!(msg.contains("[REDACTED:card]"), "card not redacted: {msg}");
            }
            seen[seq as usize] += 1;
            // In order per log path: a line sent again after a crash may repeat, but a line
            // never arrives for the first time after a later one.
            if seen[seq as usize] == 1 {
                if let Some(l) = last {
                    assert!(seq > l, "{m}: line {seq} arrived after line {l}\n{history}");
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
            "{m}: {} lines missing, first {:?}\nlogs of the earlier agent runs:\n{history}",
            missing.len(),
            &missing[..missing.len().min(10)],
        );
        let dups: Vec<u64> = seen
            .iter()
            .enumerate()
            .flat_map(|(i, c)| std::iter::repeat_n(i as u64, c.saturating_sub(1) as usize))
            .collect();
        if let (Some(first), Some(last)) = (dups.first(), dups.last()) {
            eprintln!("{m}: {} duplicates, lines {first}..={last}", dups.len());
        }
        duplicates.insert(m, dups);
    }
    eprintln!(
        "{written} lines written, all delivered in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    stop(&mut agent);
    (duplicates, (restart_1_at, restart_2_at))
}

fn stop(agent: &mut ChildGuard) {
    agent.signal(libc::SIGTERM);
    assert!(
        agent
            .wait_exit(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "agent did not stop on SIGTERM:\n{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_arrives_exactly_once_in_order_through_rotations_and_restarts() {
    let (duplicates, _) = scenario(Restart::Graceful).await;
    for (m, d) in duplicates {
        assert!(d.is_empty(), "{m}: {} lines delivered twice", d.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_and_only_in_flight_lines_repeat_after_sigkill() {
    let (duplicates, (_, killed_at)) = scenario(Restart::Kill).await;
    // CloudWatch Logs has no idempotency key: a request it accepted while the killed agent
    // waited for the answer, or whose checkpoint was not yet on disk, is sent again. So only
    // lines written before the kill may repeat, and per log at most what one stream has in
    // flight: the request being sent, the one just acknowledged, and one source batch that
    // straddles them (batch.max_events = 5,000; source batches of 1,000).
    let total: usize = duplicates.values().map(Vec::len).sum();
    for (m, d) in duplicates {
        assert!(
            d.iter().all(|l| *l < killed_at),
            "{m}: a line written after the kill was repeated: {:?}",
            d.iter().find(|l| **l >= killed_at)
        );
        assert!(
            d.len() <= 2 * 5_000 + 1_000,
            "{m}: {} lines repeated",
            d.len()
        );
    }
    eprintln!(
        "{total} duplicates of 200,000 lines after one SIGKILL ({:.2}%)",
        total as f64 / 2_000.0
    );
}

/// Most agent policies (AWS's `CloudWatchAgentServerPolicy` among them) do not grant
/// `logs:GetLogEvents`, which the sink uses only to check a stream's tail after a crash: denied,
/// it warns once and ships anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipping_goes_ahead_without_the_optional_get_log_events_permission() {
    let moto = Moto::start();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.set(Faults {
        deny_operations: vec!["GetLogEvents".into()],
        ..Faults::default()
    });
    let mut shop = Shop::new();
    shop.write(100);
    let mut agent = start_agent(&shop.config(), &proxy.env());
    let deadline = Instant::now() + Duration::from_secs(60);
    let arrived = loop {
        let arrived: usize = read_back(&logs).await.values().map(Vec::len).sum();
        if arrived as u64 >= shop.total() || Instant::now() > deadline {
            break arrived;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(arrived as u64, shop.total(), "{}", agent.log());
    assert!(proxy.counts().denied >= 1, "{:?}", proxy.counts());
    stop(&mut agent);
    let log = agent.log();
    assert_eq!(
        log.matches("cannot call logs:GetLogEvents").count(),
        1,
        "one warning naming the permission:\n{log}"
    );
}

/// A host without CA certificates (a minimal image, no `ca-certificates` package): the SDK's
/// client once panicked at start, even for a plain-http endpoint. Now the agent says what is
/// missing and ships to http endpoints as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_certificates_the_agent_says_so_and_ships_over_http() {
    let moto = Moto::start();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let mut shop = Shop::new();
    shop.write(20);
    let empty = shop.path().join("no-certificates");
    std::fs::create_dir_all(&empty).unwrap();
    let mut env = moto.env();
    // The system store is read from these when they are set: an empty directory and a file
    // that does not exist stand for a host without certificates.
    env.push(("SSL_CERT_DIR".into(), empty.display().to_string()));
    env.push((
        "SSL_CERT_FILE".into(),
        empty.join("none.pem").display().to_string(),
    ));
    let mut agent = start_agent(&shop.config(), &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let arrived = loop {
        let arrived: usize = read_back(&logs).await.values().map(Vec::len).sum();
        if arrived as u64 >= shop.total() || Instant::now() > deadline || !agent.is_running() {
            break arrived;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(arrived as u64, shop.total(), "{}", agent.log());
    stop(&mut agent);
    let log = agent.log();
    assert!(
        log.contains("no CA certificates found"),
        "the missing certificates are named:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// Names come from the data: a stream name of 600 two-byte characters is cut to CloudWatch's
/// 512 characters on a character boundary (it once panicked the sink's task, silently), and
/// the line is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_non_ascii_stream_name_is_cut_and_the_line_delivered() {
    let moto = Moto::start();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let dir = tempfile::tempdir().unwrap();
    let long = "é".repeat(600);
    std::fs::write(
        dir.path().join("app.log"),
        format!("{{\"stream\":\"{long}\",\"msg\":\"hello\"}}\n"),
    )
    .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{dir}/data"
[sources.app]
type = "file"
include = ["{dir}/*.log"]
poll_interval_ms = 50
[processors.parse]
type = "json_parse"
inputs = ["app"]
[sinks.cloudwatch]
type = "cloudwatch_logs"
inputs = ["parse"]
log_group = "/shop/names"
log_stream = "{{stream}}"
batch.timeout_ms = 100
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config, &moto.env());
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = vigil_test_support::log_group_messages(&logs, "/shop/names").await;
        if !got.is_empty() || Instant::now() > deadline || !agent.is_running() {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(got.len(), 1, "{}", agent.log());
    assert!(got[0].contains("hello"));
    let streams = logs
        .describe_log_streams()
        .log_group_name("/shop/names")
        .send()
        .await
        .unwrap();
    let name = streams.log_streams()[0].log_stream_name().unwrap();
    assert_eq!(name.chars().count(), 512);
    assert!(name.chars().all(|c| c == 'é'));
    stop(&mut agent);
}

/// Stream names come from the data: with `max_streams = 5`, 40 request ids in one group open
/// 5 streams and the other 35 lines go to that group's `vigil-overflow` stream; 5 lines for a
/// group that has no stream open do not create it and go to the first group's overflow stream.
/// Every line arrives; the overflow is counted and logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_max_streams_go_to_the_overflow_stream() {
    let moto = Moto::start();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for i in 0..45 {
        let group = if i < 40 { "a" } else { "b" };
        lines.push_str(&format!(
            "{{\"grp\":\"{group}\",\"req\":\"r{i}\",\"msg\":\"line {i}\"}}\n"
        ));
    }
    std::fs::write(dir.path().join("app.log"), lines).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{dir}/data"
[sources.app]
type = "file"
include = ["{dir}/*.log"]
poll_interval_ms = 50
[processors.parse]
type = "json_parse"
inputs = ["app"]
[sinks.cloudwatch]
type = "cloudwatch_logs"
inputs = ["parse"]
log_group = "/shop/overflow-{{grp}}"
log_stream = "{{req}}"
max_streams = 5
batch.timeout_ms = 100
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config, &moto.env());
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = vigil_test_support::log_group_messages(&logs, "/shop/overflow-a").await;
        if got.len() >= 45 || Instant::now() > deadline || !agent.is_running() {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(got.len(), 45, "{}", agent.log());
    let streams = logs
        .describe_log_streams()
        .log_group_name("/shop/overflow-a")
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = streams
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    names.sort();
    assert_eq!(names, ["r0", "r1", "r2", "r3", "r4", "vigil-overflow"]);
    let overflow = logs
        .get_log_events()
        .log_group_name("/shop/overflow-a")
        .log_stream_name("vigil-overflow")
        .start_from_head(true)
        .send()
        .await
        .unwrap();
    let texts: Vec<&str> = overflow
        .events()
        .iter()
        .filter_map(|e| e.message())
        .collect();
    assert_eq!(texts.len(), 40);
    assert!(
        texts[0].contains("line 5") && texts[39].contains("line 44"),
        "{texts:?}"
    );
    // The second group was never created.
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix("/shop/overflow-b")
        .send()
        .await
        .unwrap();
    assert!(groups.log_groups().is_empty(), "{groups:?}");
    stop(&mut agent);
    let log = agent.log();
    assert_eq!(log.matches("max_streams streams open").count(), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("error=stream_overflow") && l.contains("value=40")),
        "overflow not counted:\n{log}"
    );
}

#[test]
fn an_invalid_config_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[sources.shop]\ntype = \"file\"\ninclude = [\"/var/log/*.log\"]\n\n[sinks.cw]\ntype = \"cloudwatch_logs\"\ninputs = [\"shop\"]\nlog_stream = \"s\"\n",
    )
    .unwrap();
    for sub in ["validate", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
            .args([sub, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("{}:5:8: sinks.cw.log_group: missing", path.display());
        assert!(stderr.contains(&expected), "{sub}: {stderr}");
    }
    // The demo's config, with its directory filled in as scripts/demo.sh does.
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/demo/agent.toml"
    ))
    .unwrap()
    .replace("${DEMO_DIR}", &dir.path().display().to_string());
    let good = dir.path().join("demo.toml");
    std::fs::write(&good, demo).unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["validate", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
