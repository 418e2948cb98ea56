//! AWS's OTLP endpoints (X-Ray `/v1/traces`, CloudWatch Logs `/v1/logs`) and the ECS container
//! credentials endpoint, stood in by `aws_otlp_standin.py` (run from the setup venv): it
//! verifies every request's SigV4 signature with botocore, its headers, its OTLP body (decoded
//! with the official protobuf definitions) and the published limits, and records what it got.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{ChildGuard, free_port, repo_root, venv_bin, wait_until};

/// The static key pair the stand-in accepts (besides the keys it hands out on `/creds`).
pub const TEST_ACCESS_KEY: &str = "AKIAVIGILTEST";
pub const TEST_SECRET_KEY: &str = "vigil-test-secret";

pub struct AwsOtlpStandIn {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    guard: ChildGuard,
}

/// One queued answer: an HTTP status, with `Retry-After` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
}

impl AwsOtlpStandIn {
    /// Starts the stand-in for `region`; credentials handed out on `/creds` expire after
    /// `creds_lifetime`.
    pub fn start(region: &str, creds_lifetime: Duration) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(venv_bin("python"));
            cmd.arg(repo_root().join("tests/support/aws_otlp_standin.py"))
                .args(["--port", &port.to_string(), "--region", region])
                .arg("--static-key")
                .arg(format!("{TEST_ACCESS_KEY}:{TEST_SECRET_KEY}"))
                .args([
                    "--creds-lifetime",
                    &creds_lifetime.as_secs_f64().to_string(),
                ]);
            let mut guard = ChildGuard::spawn("aws-otlp-standin", cmd).expect("spawn stand-in");
            let endpoint = format!("http://127.0.0.1:{port}");
            let ready = wait_until(Duration::from_secs(30), || {
                !guard.is_running() || crate::http_get(&format!("{endpoint}/received")).is_ok()
            });
            if ready && guard.is_running() {
                return Self { endpoint, guard };
            }
            eprintln!("stand-in did not start on {port}:\n{}", guard.log());
            guard.kill();
        }
        panic!("the AWS OTLP stand-in did not start after 5 attempts");
    }

    /// The ECS container credentials URL (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    pub fn credentials_url(&self) -> String {
        format!("{}/creds", self.endpoint)
    }

    /// Everything received: `requests`, `spans`, `logs`, `violations`, `creds_issued`.
    pub fn received(&self) -> Value {
        let text = crate::http_get(&format!("{}/received", self.endpoint))
            .unwrap_or_else(|e| panic!("stand-in unreadable: {e}\n{}", self.guard.log()));
        serde_json::from_str(&text).expect("stand-in answers JSON")
    }

    /// Answers the next valid requests with these statuses (after checking them).
    pub fn answer_next(&self, answers: &[Answer]) {
        let answers: Vec<Value> = answers
            .iter()
            .map(|a| json!({"status": a.status, "retry_after": a.retry_after}))
            .collect();
        self.control(json!({ "answers": answers }));
    }

    /// The next accepted requests report these numbers of items as rejected (partial success).
    pub fn partial_next(&self, rejected: &[u64]) {
        self.control(json!({ "partial": rejected }));
    }

    /// Requests holding a span of this name are answered 400 (not a violation: on purpose).
    pub fn refuse_span_named(&self, name: &str) {
        self.control(json!({ "refuse_span_name": name }));
    }

    fn control(&self, body: Value) {
        ureq::post(&format!("{}/control", self.endpoint))
            .send(body.to_string())
            .expect("control the stand-in");
    }

    pub fn log(&self) -> String {
        self.guard.log()
    }
}
