//! Auto Scaling group capacity: instances that are both `InService` (lifecycle) and `Healthy`
//! (EC2 or ELB health, as the group sees it), and how many AZs they cover. An instance that is
//! `InService` but `Unhealthy` is about to be replaced and does not count.

use std::collections::BTreeSet;

use super::{Check, Outcome, Want, plural};
use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::MetricData;
use crate::spec::AsgCheck;

pub struct Asg<'a>(pub &'a AsgCheck);

impl Check for Asg<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, CallError> {
        let spec = self.0;
        let out = aws
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&spec.group)
            .send()
            .await
            .map_err(CallError::from_sdk)?;
        let Some(group) = out.auto_scaling_groups().first() else {
            return Ok(Outcome::new(
                false,
                format!("Auto Scaling group {} does not exist", spec.group),
            ));
        };
        let mut serving = 0;
        let mut azs = BTreeSet::new();
        let mut details = Vec::new();
        for instance in group.instances() {
            let id = instance.instance_id().unwrap_or("?");
            let lifecycle = instance
                .lifecycle_state()
                .map(|s| s.as_str())
                .unwrap_or("?");
            let health = instance.health_status().unwrap_or("?");
            let az = instance.availability_zone().unwrap_or("?");
            let counts = lifecycle == "InService" && health == "Healthy";
            if counts {
                serving += 1;
                azs.insert(az.to_string());
            }
            details.push(format!(
                "{id} in {az}: {lifecycle}/{health}{}",
                if counts { "" } else { " (not counted)" }
            ));
        }
        let enough = serving >= spec.min_healthy as usize;
        let spread = azs.len() >= spec.min_azs as usize;
        let summary = format!(
            "{}: {}{} InService and Healthy in {} (want >= {} in >= {})",
            spec.group,
            if enough && spread { "" } else { "only " },
            serving,
            plural(azs.len(), "AZ"),
            spec.min_healthy,
            plural(spec.min_azs as usize, "AZ")
        );
        let mut outcome = Outcome::new(enough && spread, summary)
            .value("in_service_healthy", serving as u64)
            .value("azs", azs.iter().cloned().collect::<Vec<_>>())
            .value("desired_capacity", group.desired_capacity().unwrap_or(0));
        outcome.details = details;
        if outcome.details.is_empty() {
            outcome.details.push("the group has no instances".into());
        }
        Ok(outcome)
    }
}
