//! Synthetic HTTP checks: expected status, within the latency budget, optionally with a body
//! that contains a given text. A refused connection or timeout is a failed check, not an
//! unknown one: the endpoint is what is being checked.

use std::time::Instant;

use super::{Check, Outcome, Want};
use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::MetricData;
use crate::spec::HttpCheck;

pub struct Http<'a>(pub &'a HttpCheck);

impl Check for Http<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, CallError> {
        let spec = self.0;
        let started = Instant::now();
        // Give the request a little more than its budget so a slow answer is measured, not lost.
        let timeout = spec.latency_budget.as_duration() * 2 + std::time::Duration::from_secs(1);
        let response = aws.http.get(&spec.url).timeout(timeout).send().await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let why = crate::aws::error_chain(&e);
                return Ok(Outcome::new(
                    false,
                    format!("GET {} failed: {why}", spec.url),
                ));
            }
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;

        let mut problems = Vec::new();
        if status != spec.expect_status {
            problems.push(format!("status {status}, want {}", spec.expect_status));
        }
        if elapsed > spec.latency_budget.as_duration() {
            problems.push(format!(
                "took {elapsed_ms} ms, budget {}",
                spec.latency_budget
            ));
        }
        if let Some(needle) = &spec.body_contains
            && !body.contains(needle.as_str())
        {
            problems.push(format!("body does not contain {needle:?}"));
        }
        let summary = if problems.is_empty() {
            format!("GET {}: {status} in {elapsed_ms} ms", spec.url)
        } else {
            format!("GET {}: {}", spec.url, problems.join("; "))
        };
        Ok(Outcome::new(problems.is_empty(), summary)
            .detail(format!(
                "status {status}, {elapsed_ms} ms (budget {}), {} bytes",
                spec.latency_budget,
                body.len()
            ))
            .value("status", status)
            .value("latency_ms", elapsed_ms))
    }
}
