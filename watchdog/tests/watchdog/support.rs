//! Helpers every scenario uses: the runtime, the clock, the `vigil-watchdog` command with
//! moto's environment, and reading its JSON report.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use vigil_test_support::Moto;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_vigil-watchdog");

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The start of the minute `k` minutes before the current one (k = 1: the last whole minute).
pub(crate) fn minute_ago(k: u64) -> u64 {
    now() / 60 * 60 - k * 60
}

pub(crate) fn write_spec(dir: &Path, text: &str) {
    std::fs::write(dir.join("spec.yaml"), text).expect("write spec");
}

/// `vigil-watchdog` with moto's environment (the SDK's standard variables only).
pub(crate) fn watchdog(moto: &Moto, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).envs(moto.env()).env("VIGIL_LOG", "warn");
    // What an unreadable state table makes the watchdog remember lives per run here, never in
    // a file shared by tests (or by later runs of the suite).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    cmd.env(
        "VIGIL_FALLBACK_LEDGER",
        std::env::temp_dir().join(format!("vigil-ledger-{}-{nanos}.json", std::process::id())),
    );
    cmd
}

pub(crate) fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run vigil-watchdog");
    assert!(
        out.status.success(),
        "vigil-watchdog failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `check --once --output json` → the report.
pub(crate) fn check_json(moto: &Moto, spec: &Path, extra: &[&str]) -> Value {
    let spec = spec.to_str().unwrap();
    let mut args = vec!["check", "--spec", spec, "--once", "--output", "json"];
    args.extend_from_slice(extra);
    let out = run_ok(watchdog(moto, &args));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub(crate) fn finding<'a>(report: &'a Value, fingerprint: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fingerprint"] == fingerprint)
        .unwrap_or_else(|| panic!("no finding {fingerprint} in {report:#}"))
}

pub(crate) fn decisions<'a>(report: &'a Value, action: &str) -> Vec<&'a Value> {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == action)
        .collect()
}

/// Waits for a fresh minute when the current one is nearly over, so that data put relative to
/// this minute is read back within the same minute and exact event counts hold.
pub(crate) async fn start_of_a_minute() {
    let second = now() % 60;
    if second > 40 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
}
