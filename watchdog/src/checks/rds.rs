//! RDS instances and Aurora clusters: `available`, and Multi-AZ where declared.

use super::{Check, Outcome, Want};
use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::MetricData;
use crate::spec::RdsCheck;

pub struct Instance<'a>(pub &'a RdsCheck);
pub struct Cluster<'a>(pub &'a RdsCheck);

/// The shared verdict: status must be `available`; Multi-AZ only matters when declared.
fn judge(what: &str, spec: &RdsCheck, status: &str, multi_az: bool) -> Outcome {
    let mut problems = Vec::new();
    if status != "available" {
        problems.push(format!("status is {status}"));
    }
    if spec.multi_az && !multi_az {
        problems.push("not Multi-AZ".to_string());
    }
    let summary = if problems.is_empty() {
        format!(
            "{what} {}: available{}",
            spec.id,
            if multi_az { ", Multi-AZ" } else { "" }
        )
    } else {
        format!("{what} {}: {}", spec.id, problems.join(", "))
    };
    Outcome::new(problems.is_empty(), summary)
        .detail(format!(
            "status {status}, Multi-AZ {multi_az} (required: {})",
            spec.multi_az
        ))
        .value("status", status)
        .value("multi_az", multi_az)
}

/// The verdict on what the describe call found: (status, Multi-AZ), `None` when it does not
/// exist (a failed check, not an unknown one).
fn verdict(what: &str, spec: &RdsCheck, found: Option<(String, bool)>) -> Outcome {
    match found {
        Some((status, multi_az)) => judge(what, spec, &status, multi_az),
        None => Outcome::new(false, format!("{what} {} does not exist", spec.id)),
    }
}

impl Check for Instance<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, CallError> {
        let describe = aws
            .rds
            .describe_db_instances()
            .db_instance_identifier(&self.0.id);
        let out = CallError::missing_is_none(describe.send().await, |e| {
            e.is_db_instance_not_found_fault()
        })?;
        let found = out
            .as_ref()
            .and_then(|o| o.db_instances().first())
            .map(|db| {
                let status = db.db_instance_status().unwrap_or("unknown");
                (status.to_string(), db.multi_az().unwrap_or(false))
            });
        Ok(verdict("RDS instance", self.0, found))
    }
}

impl Check for Cluster<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, CallError> {
        let describe = aws
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(&self.0.id);
        let out = CallError::missing_is_none(describe.send().await, |e| {
            e.is_db_cluster_not_found_fault()
        })?;
        let found = out.as_ref().and_then(|o| o.db_clusters().first()).map(|c| {
            let status = c.status().unwrap_or("unknown");
            (status.to_string(), c.multi_az().unwrap_or(false))
        });
        Ok(verdict("Aurora cluster", self.0, found))
    }
}
