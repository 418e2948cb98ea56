//! The disk buffer on a full disk: a real filesystem (a 2 MiB tmpfs) runs out of space while
//! the backend is down, so appends and fsyncs fail with ENOSPC part-way through records. The
//! batches of a failed write are not acknowledged; once the backend is back and delivered
//! segments are deleted, writing resumes — and every line acknowledged by the buffer, and
//! every line of the file, arrives exactly once.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_test_support::{ChildGuard, FaultProxy, Moto, agent_command, wait_until};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_and_repeats_nothing() {
    let moto = Moto::start();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.down();
    let disk = SmallDisk::mount("2m");
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("logs")).unwrap();
    const LINES: u64 = 40_000;
    {
        let mut f = std::fs::File::create(work.path().join("logs/app.log")).unwrap();
        let mut text = String::new();
        for seq in 0..LINES {
            text.push_str(&format!(
                "{seq:08} GET /api/checkout/items?page={} 200 padding-to-make-the-line-longer-than-it-is\n",
                seq % 50
            ));
        }
        f.write_all(text.as_bytes()).unwrap();
    }
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
[sources.app]
type = "file"
include = ["{work}/logs/*.log"]
poll_interval_ms = 50
[sinks.cw]
type = "cloudwatch_logs"
inputs = ["app"]
log_group = "/shop/disk"
log_stream = "app"
encoding = "text"
batch.timeout_ms = 200
request.max_backoff_ms = 500
"#,
            data = disk.path().display(),
            work = work.path().display()
        ),
    )
    .unwrap();
    let mut cmd = agent_command(&config);
    cmd.env("VIGIL_LOG", "info").envs(proxy.env());
    let mut agent = ChildGuard::spawn("vigil-agent", cmd).expect("start vigil-agent");

    // The disk fills while the backend is down.
    let full = wait_until(Duration::from_secs(60), || {
        agent.log().matches("disk buffer write failed").count() >= 3
    });
    assert!(full, "the disk never filled:\n{}", agent.log());
    proxy.up();

    let deadline = Instant::now() + Duration::from_secs(150);
    let got = loop {
        let got = vigil_test_support::log_group_messages(&logs, "/shop/disk").await;
        if got.len() as u64 >= LINES || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(agent.is_running(), "agent died:\n{}", agent.log());
    let mut seen = vec![0u32; LINES as usize];
    for m in &got {
        let seq: usize = m[..8].parse().unwrap();
        seen[seq] += 1;
    }
    let missing = seen.iter().filter(|n| **n == 0).count();
    let repeated = seen.iter().filter(|n| **n > 1).count();
    let log = agent.log();
    let failures = log.matches("disk buffer write failed").count();
    eprintln!(
        "{LINES} lines, {} arrived, {missing} missing, {repeated} repeated, {failures} failed writes",
        got.len()
    );
    assert_eq!(missing, 0, "lines lost:\n{log}");
    assert_eq!(repeated, 0, "lines repeated:\n{log}");
}
