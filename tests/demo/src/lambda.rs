//! The watchdog as a Lambda function behind the real Runtime API (`cargo lambda watch`, the
//! emulator only: the function is the `vigil-watchdog` binary already built), and the local
//! stand-in for the EventBridge schedule rule that invokes it (`cargo lambda invoke` with the
//! payload EventBridge sends for a scheduled rule).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Value, json};
use vigil_test_support::{ChildGuard, Moto, free_port, wait_until};

pub struct LambdaRuntime {
    port: u16,
    cargo_lambda: PathBuf,
    payload: PathBuf,
    pub function: ChildGuard,
    pub emulator: ChildGuard,
}

impl LambdaRuntime {
    pub fn start(
        cargo_lambda: &Path,
        watchdog: &Path,
        crate_dir: &Path,
        moto: &Moto,
        spec: &Path,
        scratch: &Path,
    ) -> anyhow::Result<LambdaRuntime> {
        let port = free_port();
        let mut emulator = Command::new(cargo_lambda);
        emulator
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .current_dir(crate_dir);
        let mut emulator =
            ChildGuard::spawn("cargo-lambda-watch", emulator).context("starting cargo lambda")?;
        let listening = wait_until(Duration::from_secs(30), || {
            crate::stop::requested()
                || !emulator.is_running()
                || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        crate::stop::check()?;
        anyhow::ensure!(
            listening && emulator.is_running(),
            "`cargo lambda watch` did not listen on 127.0.0.1:{port}:\n{}",
            emulator.log()
        );
        let mut function = Command::new(watchdog);
        function
            .envs(moto.env())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            // `cargo lambda invoke` without a name invokes the default function, `_`.
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("VIGIL_SPEC", spec)
            .env("VIGIL_LOG", "info");
        let function = ChildGuard::spawn("vigil-watchdog", function)
            .context("starting the watchdog function")?;
        Ok(LambdaRuntime {
            port,
            cargo_lambda: cargo_lambda.to_owned(),
            payload: scratch.join("scheduled-event.json"),
            function,
            emulator,
        })
    }

    /// One tick of the schedule: the function's report, as JSON.
    pub fn invoke_scheduled(&self) -> anyhow::Result<Value> {
        std::fs::write(&self.payload, scheduled_event().to_string())
            .with_context(|| format!("writing {}", self.payload.display()))?;
        let out = Command::new(&self.cargo_lambda)
            .args(["lambda", "invoke", "-A", "127.0.0.1", "-P"])
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(&self.payload)
            .output()
            .context("running cargo lambda invoke")?;
        anyhow::ensure!(
            out.status.success(),
            "cargo lambda invoke failed:\n{}{}\nwatchdog log (end):\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.function.log(), 30)
        );
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "the watchdog's answer is not JSON: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// The payload EventBridge delivers for a scheduled rule.
fn scheduled_event() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    json!({
        "version": "0",
        "id": format!("vigil-demo-{now}"),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": crate::show::rfc3339(now),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/vigil-watchdog-schedule"],
        "detail": {}
    })
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What one scheduled run of the watchdog decided, as the demo shows it.
#[derive(Debug, Clone)]
pub struct Run {
    pub number: usize,
    /// Unix seconds.
    pub started_unix: f64,
    pub took: Duration,
    pub report: Value,
}

impl Run {
    /// (action, fingerprint) of every decision.
    pub fn decisions(&self) -> Vec<(String, String)> {
        self.report["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["action"].as_str().unwrap_or("?").to_owned(),
                    d["fingerprint"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    }

    pub fn decided(&self, action: &str, fingerprint: &str) -> bool {
        self.decisions()
            .iter()
            .any(|(a, f)| a == action && f == fingerprint)
    }

    /// Messages `receiver` accepted in this run (the watchdog's `deliveries`).
    pub fn accepted_by(&self, receiver: &str) -> usize {
        self.report["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["receiver"] == receiver && d["ok"] == true)
            .count()
    }

    pub fn finding(&self, fingerprint: &str) -> Option<&Value> {
        self.report["findings"]
            .as_array()?
            .iter()
            .find(|f| f["fingerprint"] == fingerprint)
    }
}
