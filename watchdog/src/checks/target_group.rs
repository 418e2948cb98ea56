//! ALB target group health: healthy targets overall and, when asked, per AZ. Instance targets
//! carry no AZ in DescribeTargetHealth, so their AZ comes from Auto Scaling's record of the
//! instance (which avoids the EC2 API).

use std::collections::BTreeMap;

use super::{Check, Outcome, Want};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription;

use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::MetricData;
use crate::spec::TargetGroupCheck;

pub struct TargetGroup<'a>(pub &'a TargetGroupCheck);

impl Check for TargetGroup<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, CallError> {
        let spec = self.0;
        let describe = aws.elbv2.describe_target_groups().names(&spec.name);
        let answer = describe.send().await;
        let groups =
            CallError::missing_is_none(answer, |e| e.is_target_group_not_found_exception())?;
        let Some(arn) = groups
            .as_ref()
            .and_then(|g| g.target_groups().first())
            .and_then(|g| g.target_group_arn())
        else {
            return Ok(Outcome::new(
                false,
                format!("target group {} does not exist", spec.name),
            ));
        };
        let health = aws
            .elbv2
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(CallError::from_sdk)?;

        let targets = health.target_health_descriptions();
        let instance_az = if spec.min_healthy_per_az.is_some() {
            instance_azs(aws, targets).await?
        } else {
            BTreeMap::new()
        };

        let mut healthy = 0;
        let mut per_az: BTreeMap<String, u32> = spec.azs.iter().map(|az| (az.clone(), 0)).collect();
        let mut details = Vec::new();
        for t in targets {
            let id = t.target().and_then(|t| t.id()).unwrap_or("?");
            let state = t
                .target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str())
                .unwrap_or("?");
            let reason = t
                .target_health()
                .and_then(|h| h.description())
                .unwrap_or("");
            // Known for IP targets, looked up for instances only when per-AZ counts are asked.
            let az = t
                .target()
                .and_then(|t| t.availability_zone())
                .map(str::to_string)
                .or_else(|| instance_az.get(id).cloned());
            if state == "healthy" {
                healthy += 1;
            }
            if spec.min_healthy_per_az.is_some() {
                let counts = per_az
                    .entry(az.clone().unwrap_or_else(|| "unknown AZ".into()))
                    .or_insert(0);
                if state == "healthy" {
                    *counts += 1;
                }
            }
            details.push(format!(
                "{id}{}: {state}{}",
                az.map(|az| format!(" in {az}")).unwrap_or_default(),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                }
            ));
        }

        Ok(verdict(spec, healthy, &per_az, details))
    }
}

/// The AZ of every instance target (IP targets carry their own), from Auto Scaling.
async fn instance_azs(
    aws: &Aws,
    targets: &[TargetHealthDescription],
) -> Result<BTreeMap<String, String>, CallError> {
    let ids: Vec<String> = targets
        .iter()
        .filter(|t| t.target().and_then(|t| t.availability_zone()).is_none())
        .filter_map(|t| t.target().and_then(|t| t.id()).map(str::to_string))
        .collect();
    let mut instance_az = BTreeMap::new();
    if ids.is_empty() {
        return Ok(instance_az);
    }
    let found = aws
        .autoscaling
        .describe_auto_scaling_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .map_err(CallError::from_sdk)?;
    for i in found.auto_scaling_instances() {
        if let (Some(id), Some(az)) = (i.instance_id(), i.availability_zone()) {
            instance_az.insert(id.into(), az.into());
        }
    }
    Ok(instance_az)
}

/// Healthy targets against the minimums, overall and per AZ.
fn verdict(
    spec: &TargetGroupCheck,
    healthy: u32,
    per_az: &BTreeMap<String, u32>,
    details: Vec<String>,
) -> Outcome {
    let mut problems = Vec::new();
    if healthy < spec.min_healthy {
        problems.push(format!(
            "{healthy} healthy targets, want >= {}",
            spec.min_healthy
        ));
    }
    if let Some(min) = spec.min_healthy_per_az {
        for (az, n) in per_az {
            if *n < min {
                problems.push(format!("{az} has {n} healthy, want >= {min}"));
            }
        }
    }
    let summary = if problems.is_empty() {
        format!("{}: {healthy} healthy targets", spec.name)
    } else {
        format!("{}: {}", spec.name, problems.join("; "))
    };
    let mut outcome = Outcome::new(problems.is_empty(), summary).value("healthy", healthy);
    if spec.min_healthy_per_az.is_some() {
        outcome = outcome.value(
            "healthy_per_az",
            serde_json::to_value(per_az).unwrap_or_default(),
        );
    }
    outcome.details = details;
    if outcome.details.is_empty() {
        outcome.details.push("no registered targets".into());
    }
    outcome
}
