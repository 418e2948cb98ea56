//! Vigil's test harness: starts real local servers for a test and stops them after.
//!
//! Each server gets its own free port, is checked for readiness before the test uses it, and
//! is killed (with its whole process group) when its guard drops — also when the test panics,
//! and, through `PR_SET_PDEATHSIG`, when the test process itself dies. A server's output goes to
//! a log file that is printed if the test fails, so failures explain themselves.

mod agent;
mod aws_otlp;
mod fault_proxy;
mod moto;
mod otlp_receiver;
mod process;
mod scripted_backend;
mod shop_sim;
pub mod slack;
mod systemd_host;

pub use agent::{agent_command, start_agent};
pub use aws_otlp::{Answer, AwsOtlpStandIn, TEST_ACCESS_KEY, TEST_SECRET_KEY};
pub use fault_proxy::{FaultProxy, Faults, ProxyCounts};
pub use moto::{Moto, http_get, log_group_messages, put_minutes};
pub use otlp_receiver::{Failure, OtlpReceiver, Received};
pub use process::{ChildGuard, free_port, wait_until};
pub use scripted_backend::{Canned, Recorded, ScriptedBackend};
pub use shop_sim::{ShopSim, SimSeries, SimSummary, xray_trace_id};
pub use systemd_host::{SystemdHost, repo_root};

use std::path::PathBuf;

/// The Python virtualenv made by `scripts/setup.sh` (moto_server, cargo-lambda, aiosmtpd, ...).
pub fn venv_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("VIGIL_VENV") {
        return v.into();
    }
    let cache = std::env::var_os("VIGIL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("vigil")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/vigil")
        });
    cache.join("venv")
}

/// A program installed in the virtualenv, with a clear message when setup has not run.
pub fn venv_bin(name: &str) -> PathBuf {
    let p = venv_dir().join("bin").join(name);
    assert!(
        p.exists(),
        "{} not found: run scripts/setup.sh first (it installs the test tools)",
        p.display()
    );
    p
}

/// A binary of this workspace (`vigil-agent`, `vigil-watchdog`) built into the same target
/// directory as the running test. `scripts/test.sh` builds them before running tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: build it first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// SDK configuration for a local stand-in at `endpoint` (moto, the scripted backend), with static
/// test credentials named after `provider`.
async fn local_sdk_config(endpoint: &str, provider: &'static str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, provider,
        ))
        .load()
        .await
}
