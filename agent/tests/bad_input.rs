//! Bad input from outside never stops the agent: garbage bytes, a 10 MB line, a missing
//! directory, a file deleted while read, and a checkpoint directory that cannot be written. Each
//! gets a clear log line and a counter; everything else keeps flowing. The real `vigil-agent`
//! runs with a console sink writing to a file.

use std::io::Write;
use std::time::Duration;

use vigil_test_support::{ChildGuard, agent_command, wait_until};

#[test]
fn garbage_huge_lines_deleted_files_and_an_unwritable_checkpoint_dir_are_survived() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("payment")).unwrap();
    // The checkpoint directory sits under a regular file: it can never be created (root, which
    // runs these tests, ignores permission bits, so chmod would not do).
    std::fs::write(dir.path().join("not-a-dir"), b"").unwrap();
    let out = dir.path().join("shipped.jsonl");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{d}/not-a-dir/data"
[sources.shop]
type = "file"
include = ["{d}/logs/*/*.log", "{d}/missing-dir/*.log"]
poll_interval_ms = 50
rotate_wait_ms = 200
max_line_bytes = 65536
[sinks.out]
type = "console"
inputs = ["shop"]
path = "{out}"
encoding = "json"
"#,
            d = dir.path().display(),
            out = out.display()
        ),
    )
    .unwrap();

    let payment = logs.join("payment/payment.log");
    let mut f = std::fs::File::create(&payment).unwrap();
    f.write_all(b"first line\n").unwrap();
    f.write_all(b"garbage \xff\xfe\x00 bytes\n").unwrap();
    f.write_all(&vec![b'x'; 10 * 1024 * 1024]).unwrap();
    f.write_all(b"\nafter the huge line\n").unwrap();
    drop(f);
    let doomed = logs.join("payment/doomed.log");
    std::fs::write(&doomed, b"doomed first\n").unwrap();

    let cmd = agent_command(&config);
    let mut agent = ChildGuard::spawn("vigil-agent", cmd).unwrap();

    let shipped = || std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || shipped()
            .contains("after the huge line")
            && shipped().contains("doomed first")),
        "lines did not arrive:\n{}",
        agent.log()
    );
    // Deleted while the agent has it open: what was written is kept, nothing breaks.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&doomed)
        .unwrap()
        .write_all(b"doomed last words\n")
        .unwrap();
    std::fs::remove_file(&doomed).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&payment)
        .unwrap()
        .write_all(b"still running\n")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || shipped()
            .contains("still running")
            && shipped().contains("doomed last words")),
        "agent stopped reading:\n{}",
        agent.log()
    );
    assert!(agent.is_running());

    agent.signal(libc::SIGTERM);
    assert!(
        agent
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
    let log = agent.log();

    let text = shipped();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .map(|v| v["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"first line"));
    assert!(
        messages.contains(&"garbage \u{fffd}\u{fffd}\u{0} bytes"),
        "{messages:?}"
    );
    let huge = messages
        .iter()
        .find(|m| m.starts_with("xxxx"))
        .expect("huge line head");
    assert_eq!(huge.len(), 65536, "cut at max_line_bytes");
    assert_eq!(
        messages.iter().filter(|m| m.starts_with('x')).count(),
        1,
        "the rest is dropped"
    );

    // Clear log lines and counters for each problem.
    assert!(
        log.contains("cannot read file") || log.contains("checkpoint"),
        "{log}"
    );
    assert!(log.contains("outcome=invalid_utf8"), "{log}");
    assert!(log.contains("outcome=truncated"), "{log}");
    assert!(log.contains("error=checkpoint_write_failed"), "{log}");
}
