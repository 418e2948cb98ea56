//! A real Debian 12 host with systemd as PID 1, booted with `systemd-nspawn` and reached over
//! SSH on 127.0.0.1 — the way Ansible reaches an EC2 instance.
//!
//! The root is built once per machine by `scripts/debian-host-root.sh` (debootstrap, cached in
//! `$VIGIL_CACHE`); every host boots a fresh copy of it, so each test starts from a clean
//! system. The container shares the host's network: its sshd listens on a free loopback port,
//! and programs inside reach servers the test started (moto) on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::{ChildGuard, free_port, wait_until};

/// A booted container; powered off (and its copy deleted) when dropped, even on failure.
pub struct SystemdHost {
    /// SSH port on 127.0.0.1.
    pub ssh_port: u16,
    /// Private key accepted for root.
    pub ssh_key: PathBuf,
    nspawn: ChildGuard,
    // Dropped last: the copy of the root is deleted after the container stopped.
    _dir: tempfile::TempDir,
}

/// The repository's root (tests run from their crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

impl SystemdHost {
    /// Copies the cached root, boots it and waits until SSH answers.
    pub fn boot() -> SystemdHost {
        let script = repo_root().join("scripts/debian-host-root.sh");
        let out = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed (run scripts/setup.sh): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let cached = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        // The SSH port can be taken between probing and sshd binding it: try again.
        for attempt in 0..3 {
            match Self::try_boot(&cached) {
                Ok(host) => return host,
                Err(why) => eprintln!("container boot attempt {attempt} failed: {why}"),
            }
        }
        panic!("the systemd container did not boot after 3 attempts");
    }

    fn try_boot(cached: &Path) -> Result<SystemdHost, String> {
        let dir = tempfile::Builder::new()
            .prefix("vigil-systemd-host-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("root");
        let copied = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(cached)
            .arg(&root)
            .status()
            .expect("cp");
        assert!(copied.success(), "copy {} failed", cached.display());

        let ssh_key = dir.path().join("id_ed25519");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&ssh_key)
            .status()
            .expect("ssh-keygen (package openssh-client)");
        assert!(keygen.success());
        let public = std::fs::read_to_string(ssh_key.with_extension("pub")).unwrap();
        std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
        write_mode(&root.join("root/.ssh/authorized_keys"), &public, 0o600);

        let ssh_port = free_port();
        write_mode(
            &root.join("etc/ssh/sshd_config.d/vigil-test.conf"),
            &format!(
                "Port {ssh_port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nUseDNS no\n"
            ),
            0o644,
        );
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("--directory").arg(&root).args([
            "--boot",
            // No system bus on the host to register with.
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            &format!("--machine=vigil-test-{ssh_port}"),
        ]);
        let nspawn = ChildGuard::spawn("systemd-nspawn", cmd).expect("spawn systemd-nspawn");
        let mut host = SystemdHost {
            ssh_port,
            ssh_key,
            nspawn,
            _dir: dir,
        };
        let up = wait_until(Duration::from_secs(120), || {
            !host.nspawn.is_running() || host.try_ssh("true").is_ok_and(|o| o.status.success())
        });
        if up && host.nspawn.is_running() {
            Ok(host)
        } else {
            Err(format!(
                "no SSH on port {ssh_port} within 120 s; console:\n{}",
                host.console()
            ))
        }
    }

    fn try_ssh(&self, command: &str) -> std::io::Result<Output> {
        Command::new("ssh")
            .args(self.ssh_options())
            .arg("root@127.0.0.1")
            .arg(command)
            .output()
    }

    /// Options for `ssh` (and Ansible's `ansible_ssh_common_args`).
    pub fn ssh_options(&self) -> Vec<String> {
        [
            "-p",
            &self.ssh_port.to_string(),
            "-i",
            &self.ssh_key.display().to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    /// Runs a shell command as root on the host; returns its exit status and output.
    pub fn ssh(&self, command: &str) -> Output {
        self.try_ssh(command).expect("run ssh")
    }

    /// Runs a shell command that must succeed; returns its stdout.
    pub fn sh(&self, command: &str) -> String {
        let out = self.ssh(command);
        assert!(
            out.status.success(),
            "`{command}` failed on the container ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An Ansible inventory (INI) with this host as `name` in group `group`.
    pub fn inventory(&self, group: &str, name: &str) -> String {
        format!(
            "[{group}]\n{name} ansible_host=127.0.0.1 ansible_port={} ansible_user=root \
             ansible_ssh_private_key_file={} \
             ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n",
            self.ssh_port,
            self.ssh_key.display()
        )
    }

    /// What the container printed (its boot messages).
    pub fn console(&self) -> String {
        self.nspawn.log()
    }

    /// Orderly shutdown: SIGTERM makes nspawn power the container off; killed after 30 s.
    fn power_off(&mut self) {
        if self.nspawn.is_running() {
            self.nspawn.signal(libc::SIGTERM);
            if self.nspawn.wait_exit(Duration::from_secs(30)).is_none() {
                self.nspawn.kill();
            }
        }
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        self.power_off();
    }
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
