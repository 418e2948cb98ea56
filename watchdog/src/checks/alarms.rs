//! Existing CloudWatch alarms: none of the named (or prefixed) ones may be in `ALARM`. Lets the
//! watchdog fold alarms that teams already have into one decision instead of paging on each.

use super::{Check, Outcome, Want, plural};
use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::MetricData;
use crate::spec::AlarmsCheck;

pub struct Alarms<'a>(pub &'a AlarmsCheck);

/// Whether a check covers the alarm (routes alarm state-change events to it).
pub fn covers(spec: &AlarmsCheck, alarm: &str) -> bool {
    spec.names.iter().any(|n| n == alarm)
        || spec.prefix.as_deref().is_some_and(|p| alarm.starts_with(p))
}

impl Check for Alarms<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, CallError> {
        let spec = self.0;
        // (name, state, reason) of every alarm in scope.
        let mut alarms: Vec<(String, String, String)> = Vec::new();
        let mut requests = Vec::new();
        // DescribeAlarms takes at most 100 names per call.
        for names in spec.names.chunks(100) {
            requests.push(
                aws.cloudwatch
                    .describe_alarms()
                    .set_alarm_names(Some(names.to_vec())),
            );
        }
        if let Some(prefix) = &spec.prefix {
            requests.push(aws.cloudwatch.describe_alarms().alarm_name_prefix(prefix));
        }
        for request in requests {
            let mut pages = request.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(CallError::from_sdk)?;
                for a in page.metric_alarms() {
                    let name = a.alarm_name().unwrap_or("?").to_string();
                    if alarms.iter().any(|(n, _, _)| *n == name) {
                        continue;
                    }
                    let state = a
                        .state_value()
                        .map(|s| s.as_str())
                        .unwrap_or("?")
                        .to_string();
                    alarms.push((name, state, a.state_reason().unwrap_or("").to_string()));
                }
            }
        }
        let missing: Vec<&String> = spec
            .names
            .iter()
            .filter(|n| !alarms.iter().any(|(a, _, _)| a == *n))
            .collect();
        let in_alarm: Vec<&str> = alarms
            .iter()
            .filter(|(_, s, _)| s == "ALARM")
            .map(|(n, _, _)| n.as_str())
            .collect();
        let summary = if !in_alarm.is_empty() {
            format!(
                "{} in ALARM: {}",
                plural(in_alarm.len(), "alarm"),
                in_alarm.join(", ")
            )
        } else if !missing.is_empty() {
            format!(
                "declared alarms do not exist: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("{} checked, none in ALARM", plural(alarms.len(), "alarm"))
        };
        let mut outcome = Outcome::new(in_alarm.is_empty() && missing.is_empty(), summary).value(
            "in_alarm",
            in_alarm.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        for (name, state, reason) in &alarms {
            outcome
                .details
                .push(format!("{name}: {state} {reason}").trim_end().to_string());
        }
        Ok(outcome)
    }
}
