//! What an incoming event asks for. EventBridge delivers every event in the same envelope
//! (`source`, `detail-type`, `detail`); the scheduled tick runs everything, a state change
//! runs only the checks it concerns, at once, and anything else is reported back unhandled.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::Deserialize;
use serde_json::Value;

use crate::aws::Aws;
use crate::checks::alarms_cover;
use crate::error::CallError;
use crate::evaluate::Scope;
use crate::spec::{CheckSpec, Spec};

#[derive(Debug, PartialEq)]
pub enum Trigger {
    Scheduled,
    /// Auto Scaling launched or terminated (or failed to) an instance of this group.
    AsgActivity {
        group: String,
        what: String,
    },
    AlarmStateChange {
        alarm: String,
        state: String,
    },
    Ec2StateChange {
        instance: String,
        state: String,
    },
    /// An RDS instance or cluster event (failover, failure, maintenance, ...).
    RdsEvent {
        source: String,
        event: String,
    },
    /// Anything else: reported, never a crash.
    Unknown {
        description: String,
    },
}

impl Trigger {
    pub fn describe(&self) -> String {
        match self {
            Trigger::Scheduled => "schedule".into(),
            Trigger::AsgActivity { group, what } => format!("{what}: {group}"),
            Trigger::AlarmStateChange { alarm, state } => format!("alarm {alarm} -> {state}"),
            Trigger::Ec2StateChange { instance, state } => {
                format!("instance {instance} -> {state}")
            }
            Trigger::RdsEvent { source, event } => format!("rds {source}: {event}"),
            Trigger::Unknown { description } => format!("unhandled event: {description}"),
        }
    }
}

#[derive(Deserialize)]
struct RdsDetail {
    #[serde(rename = "SourceIdentifier")]
    source: String,
    #[serde(rename = "EventID", default)]
    event: Option<String>,
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct AsgDetail {
    #[serde(rename = "AutoScalingGroupName")]
    group: String,
}

#[derive(Deserialize)]
struct AlarmDetail {
    #[serde(rename = "alarmName")]
    alarm: String,
    state: AlarmState,
}

#[derive(Deserialize)]
struct AlarmState {
    value: String,
}

#[derive(Deserialize)]
struct Ec2Detail {
    #[serde(rename = "instance-id")]
    instance: String,
    state: String,
}

pub fn classify(payload: &Value) -> Trigger {
    let event: EventBridgeEvent<Value> = match serde_json::from_value(payload.clone()) {
        Ok(e) => e,
        Err(e) => {
            return Trigger::Unknown {
                description: format!("not an EventBridge event ({e})"),
            };
        }
    };
    let unknown = |why: String| Trigger::Unknown {
        description: format!(
            "source {:?}, detail-type {:?}: {why}",
            event.source, event.detail_type
        ),
    };
    let detail = event.detail.clone();
    match (event.source.as_str(), event.detail_type.as_str()) {
        ("aws.events", "Scheduled Event") => Trigger::Scheduled,
        (
            "aws.autoscaling",
            what @ ("EC2 Instance Launch Successful"
            | "EC2 Instance Launch Unsuccessful"
            | "EC2 Instance Terminate Successful"
            | "EC2 Instance Terminate Unsuccessful"),
        ) => match serde_json::from_value::<AsgDetail>(detail) {
            Ok(d) => Trigger::AsgActivity {
                group: d.group,
                what: what.to_string(),
            },
            Err(e) => unknown(format!("bad detail: {e}")),
        },
        ("aws.cloudwatch", "CloudWatch Alarm State Change") => {
            match serde_json::from_value::<AlarmDetail>(detail) {
                Ok(d) => Trigger::AlarmStateChange {
                    alarm: d.alarm,
                    state: d.state.value,
                },
                Err(e) => unknown(format!("bad detail: {e}")),
            }
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            match serde_json::from_value::<Ec2Detail>(detail) {
                Ok(d) => Trigger::Ec2StateChange {
                    instance: d.instance,
                    state: d.state,
                },
                Err(e) => unknown(format!("bad detail: {e}")),
            }
        }
        ("aws.rds", "RDS DB Instance Event" | "RDS DB Cluster Event") => {
            match serde_json::from_value::<RdsDetail>(detail) {
                Ok(d) => Trigger::RdsEvent {
                    source: d.source,
                    event: d.event.or(d.message).unwrap_or_else(|| "event".into()),
                },
                Err(e) => unknown(format!("bad detail: {e}")),
            }
        }
        _ => unknown("no handler for this event type".into()),
    }
}

/// Checks of services that own the Auto Scaling group: its capacity, their target groups, and
/// heartbeats of its hosts.
/// Every check `wanted` picks, as (service, index into its `checks`).
fn checks_where(spec: &Spec, wanted: impl Fn(&CheckSpec) -> bool) -> Vec<(String, usize)> {
    spec.services
        .iter()
        .flat_map(|(name, s)| {
            s.checks
                .iter()
                .enumerate()
                .filter(|(_, c)| wanted(c))
                .map(|(i, _)| (name.clone(), i))
        })
        .collect()
}

fn checks_for_group(spec: &Spec, group: &str) -> Vec<(String, usize)> {
    let owners: Vec<&String> = spec
        .services
        .iter()
        .filter(|(_, s)| {
            s.checks.iter().any(|c| match c {
                CheckSpec::Asg(a) => a.group == group,
                CheckSpec::Heartbeat(h) => h.asgs.iter().any(|g| g == group),
                _ => false,
            })
        })
        .map(|(name, _)| name)
        .collect();
    let mut selected = Vec::new();
    for name in owners {
        for (i, check) in spec.services[name].checks.iter().enumerate() {
            let relevant = match check {
                CheckSpec::Asg(a) => a.group == group,
                CheckSpec::Heartbeat(h) => h.asgs.iter().any(|g| g == group),
                CheckSpec::TargetGroup(_) => true,
                _ => false,
            };
            if relevant {
                selected.push((name.clone(), i));
            }
        }
    }
    selected
}

/// Why an event evaluates nothing; the Lambda's answer carries it as a note.
#[derive(Debug, thiserror::Error)]
pub enum NothingToEvaluate {
    #[error("{description}; nothing evaluated")]
    Unrecognised { description: String },
    #[error("{trigger}: no check in the spec covers it; nothing evaluated")]
    Uncovered { trigger: String },
    #[error("looking up the group of {instance}: {error}")]
    Lookup { instance: String, error: CallError },
}

/// The checks a trigger asks for, or why there are none.
pub async fn scope_for(
    trigger: &Trigger,
    spec: &Spec,
    aws: &Aws,
) -> Result<Scope, NothingToEvaluate> {
    let selected = match trigger {
        Trigger::Scheduled => return Ok(Scope::Everything),
        Trigger::Unknown { description } => {
            return Err(NothingToEvaluate::Unrecognised {
                description: description.clone(),
            });
        }
        Trigger::AsgActivity { group, .. } => checks_for_group(spec, group),
        Trigger::AlarmStateChange { alarm, .. } => checks_where(
            spec,
            |c| matches!(c, CheckSpec::Alarms(a) if alarms_cover(a, alarm)),
        ),
        Trigger::RdsEvent { source, .. } => checks_where(
            spec,
            |c| matches!(c, CheckSpec::RdsInstance(r) | CheckSpec::RdsCluster(r) if r.id == *source),
        ),
        Trigger::Ec2StateChange { .. }
            if !crate::iam::operations(spec)
                .contains(&crate::iam::Operation::DescribeAutoScalingInstances) =>
        {
            // No check follows instances: nothing to look up (nor granted to look it up).
            Vec::new()
        }
        Trigger::Ec2StateChange { instance, .. } => {
            // Auto Scaling knows which group an instance belongs to: no EC2 API needed.
            let out = aws
                .autoscaling
                .describe_auto_scaling_instances()
                .instance_ids(instance)
                .send()
                .await
                .map_err(|e| NothingToEvaluate::Lookup {
                    instance: instance.clone(),
                    error: CallError::from_sdk(e),
                })?;
            let mut selected: Vec<(String, usize)> = out
                .auto_scaling_instances()
                .iter()
                .filter_map(|i| i.auto_scaling_group_name())
                .flat_map(|g| checks_for_group(spec, g))
                .collect();
            // Hosts declared by name in heartbeat checks.
            for (name, s) in &spec.services {
                for (i, c) in s.checks.iter().enumerate() {
                    if matches!(c, CheckSpec::Heartbeat(h) if h.hosts.iter().any(|h| h == instance))
                    {
                        selected.push((name.clone(), i));
                    }
                }
            }
            selected
        }
    };
    if selected.is_empty() {
        Err(NothingToEvaluate::Uncovered {
            trigger: trigger.describe(),
        })
    } else {
        let mut selected = selected;
        selected.sort();
        selected.dedup();
        Ok(Scope::Checks(selected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(source: &str, detail_type: &str, detail: Value) -> Value {
        json!({"version": "0", "id": "1", "detail-type": detail_type, "source": source,
               "account": "123456789012", "time": "2026-11-22T05:00:00Z", "region": "us-east-1",
               "resources": [], "detail": detail})
    }

    #[test]
    fn classifies_the_events_it_handles() {
        assert_eq!(
            classify(&envelope("aws.events", "Scheduled Event", json!({}))),
            Trigger::Scheduled
        );
        assert_eq!(
            classify(&envelope(
                "aws.autoscaling",
                "EC2 Instance Terminate Successful",
                json!({"AutoScalingGroupName": "cart"})
            )),
            Trigger::AsgActivity {
                group: "cart".into(),
                what: "EC2 Instance Terminate Successful".into()
            }
        );
        assert_eq!(
            classify(&envelope(
                "aws.cloudwatch",
                "CloudWatch Alarm State Change",
                json!({"alarmName": "a", "state": {"value": "ALARM"}})
            )),
            Trigger::AlarmStateChange {
                alarm: "a".into(),
                state: "ALARM".into()
            }
        );
        assert_eq!(
            classify(&envelope(
                "aws.ec2",
                "EC2 Instance State-change Notification",
                json!({"instance-id": "i-1", "state": "stopped"})
            )),
            Trigger::Ec2StateChange {
                instance: "i-1".into(),
                state: "stopped".into()
            }
        );
    }

    #[test]
    fn rds_events_name_their_source() {
        assert_eq!(
            classify(&envelope(
                "aws.rds",
                "RDS DB Instance Event",
                json!({"SourceIdentifier": "orders", "EventID": "RDS-EVENT-0049", "Message": "failover"})
            )),
            Trigger::RdsEvent {
                source: "orders".into(),
                event: "RDS-EVENT-0049".into()
            }
        );
    }

    #[test]
    fn unknown_and_malformed_events_are_described_not_fatal() {
        for payload in [
            json!({"hello": "world"}),
            json!([1, 2]),
            envelope("aws.s3", "Object Created", json!({})),
            envelope(
                "aws.cloudwatch",
                "CloudWatch Alarm State Change",
                json!({"alarmName": 3}),
            ),
        ] {
            assert!(
                matches!(classify(&payload), Trigger::Unknown { .. }),
                "{payload}"
            );
        }
    }
}
