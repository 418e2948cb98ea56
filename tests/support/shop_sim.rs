//! Running the shop simulator (`vigil-shop-sim`) from a test and reading its summary: what it
//! generated, per service and route, so a test can compare SLIs downstream exactly.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::{ChildGuard, workspace_bin};

/// How to run the simulator; `Default` is 200 requests, seed 1, no export, no logs.
#[derive(Debug, Clone)]
pub struct ShopSim {
    /// OTLP endpoint (`http://127.0.0.1:PORT`); gRPC unless `http` is set.
    pub otlp_endpoint: Option<String>,
    pub http: bool,
    pub requests: u64,
    pub seed: u64,
    pub checkout_failure_rate: f64,
    pub failure_rate: f64,
    pub slow_checkout_rate: f64,
    /// Where each module writes `<module>.log`.
    pub log_dir: Option<PathBuf>,
    /// Longest the run may take.
    pub timeout: Duration,
}

impl Default for ShopSim {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            http: false,
            requests: 200,
            seed: 1,
            checkout_failure_rate: 0.02,
            failure_rate: 0.005,
            slow_checkout_rate: 0.05,
            log_dir: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// The simulator's account of one run (its JSON summary).
#[derive(Debug, Clone, Deserialize)]
pub struct SimSummary {
    pub seed: u64,
    pub requests: u64,
    pub spans: u64,
    pub series: Vec<SimSeries>,
    /// 32 hex digits each.
    pub error_trace_ids: Vec<String>,
    pub slow_trace_ids: Vec<String>,
    pub trace_ids: Vec<String>,
}

/// Server spans of one (service, route) — exactly what span metrics count.
#[derive(Debug, Clone, Deserialize)]
pub struct SimSeries {
    pub service: String,
    /// `METHOD /route`, as span metrics name it.
    pub route: String,
    pub requests: u64,
    pub errors: u64,
    pub under_300ms: u64,
}

impl SimSummary {
    pub fn series(&self, service: &str, route: &str) -> Option<&SimSeries> {
        self.series
            .iter()
            .find(|s| s.service == service && s.route == route)
    }
}

/// A trace id as X-Ray writes it: `1-{8 hex}-{24 hex}`.
pub fn xray_trace_id(hex32: &str) -> String {
    format!("1-{}-{}", &hex32[..8], &hex32[8..])
}

impl ShopSim {
    /// The command line, for tests that run the simulator themselves.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(workspace_bin("vigil-shop-sim"));
        cmd.arg("--requests")
            .arg(self.requests.to_string())
            .arg("--seed")
            .arg(self.seed.to_string())
            .arg("--checkout-failure-rate")
            .arg(self.checkout_failure_rate.to_string())
            .arg("--failure-rate")
            .arg(self.failure_rate.to_string())
            .arg("--slow-checkout-rate")
            .arg(self.slow_checkout_rate.to_string());
        if let Some(e) = &self.otlp_endpoint {
            cmd.arg("--otlp-endpoint").arg(e);
            cmd.arg("--protocol")
                .arg(if self.http { "http" } else { "grpc" });
        }
        if let Some(d) = &self.log_dir {
            cmd.arg("--log-dir").arg(d);
        }
        cmd
    }

    /// Runs the simulator to its end (every span exported) and returns its summary. Panics with
    /// the simulator's output if it fails or takes longer than `timeout`.
    pub fn run(&self) -> SimSummary {
        let dir = tempfile::tempdir().expect("temp dir");
        let summary_path = dir.path().join("summary.json");
        let mut cmd = self.command();
        cmd.arg("--summary").arg(&summary_path);
        let mut child = ChildGuard::spawn("vigil-shop-sim", cmd).expect("start vigil-shop-sim");
        let status = child.wait_exit(self.timeout);
        assert!(
            status.is_some_and(|s| s.success()),
            "vigil-shop-sim failed ({status:?}):\n{}",
            child.log()
        );
        let text = std::fs::read_to_string(&summary_path).expect("summary written");
        serde_json::from_str(&text).expect("summary is valid JSON")
    }
}
