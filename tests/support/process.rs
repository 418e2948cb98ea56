//! Child processes that never outlive their test.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Lines of a server's log printed when a test fails (`VIGIL_TEST_LOG_LINES` to change).
const LOG_TAIL_LINES: usize = 60;

/// A port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on loopback")
}

/// Polls `ready` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// A running child process, in its own process group, with stdout and stderr in a log file.
/// Dropping the guard kills the group; if the test is failing, the log is printed first.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
    _log_dir: Option<tempfile::TempDir>,
}

impl ChildGuard {
    /// Starts `cmd` with its output in a fresh log file.
    pub fn spawn(name: &str, mut cmd: Command) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("vigil-{name}-"))
            .tempdir()?;
        let log_path = dir.path().join(format!("{name}.log"));
        let log = File::create(&log_path)?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL this child
        // if the test process dies, so no server outlives a crashed test.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log_path,
            _log_dir: Some(dir),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends `signal` to the process (not its group).
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, signal);
            }
        }
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the whole process group at once (SIGKILL) and reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: the child leads its own process group (process_group(0)).
            unsafe {
                libc::killpg(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The end of the log is what explains a failure; all of it can be megabytes.
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let keep = std::env::var("VIGIL_TEST_LOG_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(LOG_TAIL_LINES);
            let tail = lines[lines.len().saturating_sub(keep)..].join("\n");
            eprintln!(
                "----- last {keep} lines of {} log ({}) -----\n{tail}\n----- end of {} log -----",
                self.name,
                self.log_path.display(),
                self.name
            );
        }
        self.kill();
    }
}
