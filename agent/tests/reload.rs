//! SIGHUP reload: a bad config is rejected (with its location) while the running pipeline keeps
//! shipping; a good one replaces the pipeline while lines are being written, and every line
//! arrives exactly once across the old and the new sink. The real `vigil-agent` runs with
//! console sinks writing to files.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use vigil_test_support::{ChildGuard, agent_command, wait_until};

fn config_text(dir: &Path, sink_file: &str) -> String {
    format!(
        r#"
data_dir = "{d}/data"
[sources.shop]
type = "file"
include = ["{d}/logs/*.log"]
poll_interval_ms = 20
[sinks.out]
type = "console"
inputs = ["shop"]
path = "{d}/{sink_file}"
encoding = "text"
"#,
        d = dir.display()
    )
}

fn numbers(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {l:?}"))
        })
        .collect()
}

#[test]
fn sighup_rejects_a_bad_config_and_swaps_in_a_good_one_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, config_text(dir.path(), "before.txt")).unwrap();
    let (before, after) = (dir.path().join("before.txt"), dir.path().join("after.txt"));

    // A writer appends numbered lines until told to stop.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop) = (Arc::clone(&written), Arc::clone(&stop));
        let log = dir.path().join("logs/checkout.log");
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(log).unwrap();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    let n = written.fetch_add(1, Ordering::Relaxed);
                    writeln!(f, "line {n}").unwrap();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let cmd = agent_command(&config);
    let mut agent = ChildGuard::spawn("vigil-agent", cmd).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || numbers(&before).len() > 1000),
        "nothing shipped:\n{}",
        agent.log()
    );

    // A broken config: rejected with its location, and shipping goes on.
    std::fs::write(
        &config,
        config_text(dir.path(), "after.txt").replace("type = \"console\"", "type = \"consol\""),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || agent
            .log()
            .contains("the running one is kept")),
        "no rejection logged:\n{}",
        agent.log()
    );
    let log = agent.log();
    assert!(
        log.contains("agent.toml:8:1") && log.contains("sinks.out.type"),
        "rejection must name file, line and key:\n{log}"
    );
    let shipped = numbers(&before).len();
    assert!(
        wait_until(Duration::from_secs(10), || numbers(&before).len()
            > shipped + 1000),
        "the running pipeline stopped after a rejected reload:\n{}",
        agent.log()
    );
    assert!(!after.exists());

    // A good config, swapped in while lines keep coming.
    std::fs::write(&config, config_text(dir.path(), "after.txt")).unwrap();
    agent.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || numbers(&after).len() > 1000),
        "the new pipeline ships nothing:\n{}",
        agent.log()
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = written.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(20), || {
            (numbers(&before).len() + numbers(&after).len()) as u64 >= total
        }),
        "lines missing after the reload:\n{}",
        agent.log()
    );
    agent.signal(libc::SIGTERM);
    assert!(
        agent
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );

    // Exactly once, in order: the old sink got a prefix, the new one the rest.
    let (old, new) = (numbers(&before), numbers(&after));
    let all: Vec<u64> = old.iter().chain(new.iter()).copied().collect();
    assert_eq!(
        all,
        (0..total).collect::<Vec<_>>(),
        "lines lost, repeated or reordered"
    );
    assert!(agent.log().contains("config reloaded"));
}
