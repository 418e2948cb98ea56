//! Telemetry heartbeat: every host's agent puts `heartbeat{host}` = 1 once a minute. A host
//! with no datapoint in the last `within` is a finding: silence from an agent is exactly the
//! failure that other alerts cannot see.
//!
//! Which hosts must report: the declared `hosts`, the InService members of `asgs`, and (with
//! `discover`) every host that sent a heartbeat in the last three hours (ListMetrics'
//! RecentlyActive window). When `asgs` are declared, discovered hosts that are no longer in
//! any of them were scaled in on purpose and are not expected.

use std::collections::{BTreeMap, BTreeSet};

use super::{Check, Outcome, Want, plural};
use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::{MetricData, Stat};
use crate::spec::{HeartbeatCheck, MetricRef};

pub struct Heartbeat<'a>(pub &'a HeartbeatCheck);

impl Heartbeat<'_> {
    fn metric_for(&self, host: &str) -> MetricRef {
        MetricRef {
            namespace: self.0.namespace.clone(),
            metric: self.0.metric.clone(),
            dimensions: BTreeMap::from([("host".to_string(), host.to_string())]),
        }
    }
}

impl Check for Heartbeat<'_> {
    async fn wants(&self, aws: &Aws) -> Result<Vec<Want>, CallError> {
        let spec = self.0;
        let mut hosts: BTreeSet<String> = spec.hosts.iter().cloned().collect();
        let mut members = BTreeSet::new();
        if !spec.asgs.is_empty() {
            let mut pages = aws
                .autoscaling
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(spec.asgs.clone()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(CallError::from_sdk)?;
                for group in page.auto_scaling_groups() {
                    for i in group.instances() {
                        let in_service = i
                            .lifecycle_state()
                            .is_some_and(|s| s.as_str() == "InService");
                        if let (true, Some(id)) = (in_service, i.instance_id()) {
                            members.insert(id.to_string());
                        }
                    }
                }
            }
            hosts.extend(members.iter().cloned());
        }
        if spec.discover {
            let mut pages = aws
                .cloudwatch
                .list_metrics()
                .namespace(&spec.namespace)
                .metric_name(&spec.metric)
                .recently_active(aws_sdk_cloudwatch::types::RecentlyActive::Pt3H)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(CallError::from_sdk)?;
                for metric in page.metrics() {
                    let host = metric
                        .dimensions()
                        .iter()
                        .find(|d| d.name() == Some("host"))
                        .and_then(|d| d.value());
                    if let Some(host) = host
                        && (spec.asgs.is_empty()
                            || members.contains(host)
                            || spec.hosts.iter().any(|h| h == host))
                    {
                        hosts.insert(host.to_string());
                    }
                }
            }
        }
        Ok(hosts
            .iter()
            .map(|host| Want {
                metric: self.metric_for(host),
                stat: Stat::Sum,
                window: spec.within,
            })
            .collect())
    }

    async fn run(&self, _: &Aws, wants: &[Want], data: &MetricData) -> Result<Outcome, CallError> {
        let mut silent = Vec::new();
        let mut details = Vec::new();
        for want in wants {
            let host = want
                .metric
                .dimensions
                .get("host")
                .cloned()
                .unwrap_or_default();
            let seen = data.window(&want.metric, want.stat, want.window)?;
            match seen.newest {
                Some(ts) => details.push(format!(
                    "{host}: last heartbeat in the minute starting at {ts} (unix)"
                )),
                None => {
                    details.push(format!("{host}: no heartbeat in the last {}", want.window));
                    silent.push(host);
                }
            }
        }
        let summary = if wants.is_empty() {
            "no hosts found to expect heartbeats from".to_string()
        } else if silent.is_empty() {
            format!(
                "{} reported within {}",
                plural(wants.len(), "host"),
                self.0.within
            )
        } else {
            format!(
                "{} stopped reporting (no heartbeat in {}): {}",
                plural(silent.len(), "host"),
                self.0.within,
                silent.join(", ")
            )
        };
        let mut outcome = Outcome::new(silent.is_empty() && !wants.is_empty(), summary)
            .value("hosts_expected", wants.len() as u64)
            .value("hosts_silent", silent);
        outcome.details = details;
        Ok(outcome)
    }
}
