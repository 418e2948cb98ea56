//! RDS instances and Aurora clusters: `available`, and Multi-AZ where declared.

use super::{Check, Outcome, Want};
use crate::aws::{Aws, error_text};
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

impl Check for Instance<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, String> {
        let out = aws
            .rds
            .describe_db_instances()
            .db_instance_identifier(&self.0.id)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_instance_not_found_fault()) =>
            {
                return Ok(Outcome::new(
                    false,
                    format!("RDS instance {} does not exist", self.0.id),
                ));
            }
            Err(e) => return Err(error_text(&e)),
        };
        let Some(db) = out.db_instances().first() else {
            return Ok(Outcome::new(
                false,
                format!("RDS instance {} does not exist", self.0.id),
            ));
        };
        Ok(judge(
            "RDS instance",
            self.0,
            db.db_instance_status().unwrap_or("unknown"),
            db.multi_az().unwrap_or(false),
        ))
    }
}

impl Check for Cluster<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, String> {
        let out = aws
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(&self.0.id)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_cluster_not_found_fault()) =>
            {
                return Ok(Outcome::new(
                    false,
                    format!("Aurora cluster {} does not exist", self.0.id),
                ));
            }
            Err(e) => return Err(error_text(&e)),
        };
        let Some(cluster) = out.db_clusters().first() else {
            return Ok(Outcome::new(
                false,
                format!("Aurora cluster {} does not exist", self.0.id),
            ));
        };
        Ok(judge(
            "Aurora cluster",
            self.0,
            cluster.status().unwrap_or("unknown"),
            cluster.multi_az().unwrap_or(false),
        ))
    }
}
