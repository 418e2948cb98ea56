//! CloudWatch alarms for the minimum monitoring set, as PutMetricAlarm input (JSON) and as a
//! Terraform file. Names start with `vigil-page-` or `vigil-ticket-`, the prefixes the spec's
//! `alarms` checks watch, so an alarm in ALARM becomes a page or a ticket through the watchdog.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::spec::infrastructure::Infrastructure;
use crate::spec::{MetricRef, Severity};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    GreaterThanThreshold,
}

impl Comparison {
    fn as_str(self) -> &'static str {
        match self {
            Comparison::GreaterThanThreshold => "GreaterThanThreshold",
        }
    }
}

/// What the alarm evaluates: one statistic of one metric, or a metric-math expression over
/// named metrics (CloudWatch evaluates it).
#[derive(Clone, Debug)]
pub enum Source {
    Metric {
        metric: MetricRef,
        stat: &'static str,
    },
    Math {
        expression: String,
        label: String,
        inputs: Vec<(String, MetricRef, &'static str)>,
    },
}

#[derive(Clone, Debug)]
pub struct Alarm {
    pub name: String,
    pub severity: Severity,
    pub description: String,
    pub source: Source,
    pub period: u64,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub threshold: f64,
    pub comparison: Comparison,
}

/// Alarm names: CloudWatch allows 255 characters; ours are prefix-kind-resource.
fn name(severity: Severity, kind: &str, resource: &str) -> String {
    let resource: String = resource
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("vigil-{severity}-{kind}-{resource}")
}

/// When an alarm breaches: above `threshold` in `datapoints` of the last `periods` periods of
/// `period` seconds.
struct Breach {
    period: u64,
    periods: u32,
    datapoints: u32,
    threshold: f64,
}

fn above(
    severity: Severity,
    name: String,
    description: String,
    source: Source,
    when: Breach,
) -> Alarm {
    Alarm {
        name,
        severity,
        description,
        source,
        period: when.period,
        evaluation_periods: when.periods,
        datapoints_to_alarm: when.datapoints,
        threshold: when.threshold,
        comparison: Comparison::GreaterThanThreshold,
    }
}

/// The minimum monitoring set's alarms, in a stable order.
pub fn alarms(infra: &Infrastructure) -> Vec<Alarm> {
    let mut out = Vec::new();
    queue_alarms(infra, &mut out);
    load_balancer_alarms(infra, &mut out);
    aurora_alarms(infra, &mut out);
    dynamodb_alarms(infra, &mut out);
    redis_alarms(infra, &mut out);
    out
}

/// Dead-letter queues that hold messages.
fn queue_alarms(infra: &Infrastructure, out: &mut Vec<Alarm>) {
    for q in &infra.queues {
        if let Some(dlq) = &q.dlq {
            out.push(above(
                Severity::Ticket,
                name(Severity::Ticket, "dlq-depth", dlq),
                format!(
                    "Messages of {} failed and wait in its dead-letter queue {dlq}.",
                    q.queue
                ),
                Source::Metric {
                    metric: MetricRef::new(
                        "AWS/SQS",
                        "ApproximateNumberOfMessagesVisible",
                        &[("QueueName", dlq.as_str())],
                    ),
                    stat: "Maximum",
                },
                Breach {
                    period: 300,
                    periods: 1,
                    datapoints: 1,
                    threshold: 0.0,
                },
            ));
        }
    }
}

/// Unhealthy targets and the target 5xx rate of every target group.
fn load_balancer_alarms(infra: &Infrastructure, out: &mut Vec<Alarm>) {
    for (lb_name, lb) in &infra.load_balancers {
        for (tg, tg_dim) in &lb.target_groups {
            let dims = [
                ("LoadBalancer", lb.dimension.as_str()),
                ("TargetGroup", tg_dim.as_str()),
            ];
            out.push(above(
                Severity::Page,
                name(Severity::Page, "alb-unhealthy-hosts", tg),
                format!("{lb_name} sees unhealthy targets in {tg} for 3 minutes."),
                Source::Metric {
                    metric: MetricRef::new("AWS/ApplicationELB", "UnHealthyHostCount", &dims),
                    stat: "Maximum",
                },
                Breach {
                    period: 60,
                    periods: 3,
                    datapoints: 3,
                    threshold: 0.0,
                },
            ));
            out.push(above(
                Severity::Page,
                name(Severity::Page, "alb-target-5xx-rate", tg),
                format!("More than 1% of {tg}'s requests end in a target 5xx, 5 minutes running."),
                Source::Math {
                    // No 5xx point means no 5xx; no request point means no rate (not breaching).
                    expression: "IF(requests>0, 100*FILL(errors,0)/requests)".into(),
                    label: "target 5xx %".into(),
                    inputs: vec![
                        (
                            "requests".into(),
                            MetricRef::new("AWS/ApplicationELB", "RequestCount", &dims),
                            "Sum",
                        ),
                        (
                            "errors".into(),
                            MetricRef::new(
                                "AWS/ApplicationELB",
                                "HTTPCode_Target_5XX_Count",
                                &dims,
                            ),
                            "Sum",
                        ),
                    ],
                },
                Breach {
                    period: 60,
                    periods: 5,
                    datapoints: 5,
                    threshold: 1.0,
                },
            ));
        }
    }
}

/// Aurora replicas that lag.
fn aurora_alarms(infra: &Infrastructure, out: &mut Vec<Alarm>) {
    for c in &infra.aurora_clusters {
        out.push(above(
            Severity::Ticket,
            name(Severity::Ticket, "aurora-replica-lag", c),
            format!("An Aurora replica of {c} lags more than 1 s for 5 minutes (reads are stale)."),
            Source::Metric {
                metric: MetricRef::new(
                    "AWS/RDS",
                    "AuroraReplicaLagMaximum",
                    &[("DBClusterIdentifier", c.as_str())],
                ),
                stat: "Maximum",
            },
            Breach {
                period: 60,
                periods: 5,
                datapoints: 5,
                threshold: 1000.0,
            },
        ));
    }
}

/// DynamoDB tables that throttle.
fn dynamodb_alarms(infra: &Infrastructure, out: &mut Vec<Alarm>) {
    for t in &infra.dynamodb_tables {
        let d = [("TableName", t.as_str())];
        out.push(above(
            Severity::Ticket,
            name(Severity::Ticket, "dynamodb-throttles", t),
            format!("{t} throttled reads or writes in 3 of the last 5 minutes."),
            Source::Math {
                expression: "FILL(reads,0)+FILL(writes,0)".into(),
                label: "throttled requests".into(),
                inputs: vec![
                    (
                        "reads".into(),
                        MetricRef::new("AWS/DynamoDB", "ReadThrottleEvents", &d),
                        "Sum",
                    ),
                    (
                        "writes".into(),
                        MetricRef::new("AWS/DynamoDB", "WriteThrottleEvents", &d),
                        "Sum",
                    ),
                ],
            },
            Breach {
                period: 60,
                periods: 5,
                datapoints: 3,
                threshold: 0.0,
            },
        ));
    }
}

/// Redis clusters that evict keys.
fn redis_alarms(infra: &Infrastructure, out: &mut Vec<Alarm>) {
    for c in &infra.redis_clusters {
        out.push(above(
            Severity::Ticket,
            name(Severity::Ticket, "redis-evictions", c),
            format!("{c} evicts keys (carts and sessions are lost): memory is full."),
            Source::Metric {
                metric: MetricRef::new(
                    "AWS/ElastiCache",
                    "Evictions",
                    &[("CacheClusterId", c.as_str())],
                ),
                stat: "Sum",
            },
            Breach {
                period: 300,
                periods: 1,
                datapoints: 1,
                threshold: 0.0,
            },
        ));
    }
}

fn dimensions_json(m: &MetricRef) -> Value {
    Value::Array(
        m.dimensions
            .iter()
            .map(|(k, v)| json!({ "Name": k, "Value": v }))
            .collect(),
    )
}

/// One alarm as PutMetricAlarm's input (the API's member names, as `aws cloudwatch
/// put-metric-alarm --cli-input-json` takes it).
pub fn put_metric_alarm(a: &Alarm) -> Value {
    let mut v = json!({
        "AlarmName": a.name,
        "AlarmDescription": format!("[{}] {} Generated by vigil-watchdog render from alerts/.", a.severity, a.description),
        "ActionsEnabled": true,
        "EvaluationPeriods": a.evaluation_periods,
        "DatapointsToAlarm": a.datapoints_to_alarm,
        "Threshold": a.threshold,
        "ComparisonOperator": a.comparison.as_str(),
        // Absent data is no evidence of trouble here; the watchdog's own checks catch silence.
        "TreatMissingData": "notBreaching",
        "Tags": [{ "Key": "vigil:severity", "Value": a.severity.to_string() }],
    });
    match &a.source {
        Source::Metric { metric, stat } => {
            v["Namespace"] = json!(metric.namespace);
            v["MetricName"] = json!(metric.metric);
            v["Dimensions"] = dimensions_json(metric);
            v["Statistic"] = json!(stat);
            v["Period"] = json!(a.period);
        }
        Source::Math {
            expression,
            label,
            inputs,
        } => {
            let mut metrics = vec![
                json!({ "Id": "e1", "Expression": expression, "Label": label, "ReturnData": true }),
            ];
            for (id, metric, stat) in inputs {
                metrics.push(json!({
                    "Id": id,
                    "ReturnData": false,
                    "MetricStat": {
                        "Metric": { "Namespace": metric.namespace, "MetricName": metric.metric, "Dimensions": dimensions_json(metric) },
                        "Period": a.period,
                        "Stat": stat,
                    }
                }));
            }
            v["Metrics"] = Value::Array(metrics);
        }
    }
    v
}

/// HCL string literal (JSON escaping is valid HCL, plus `${` and `%{` escaped).
fn hcl(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace("${", "$${")
        .replace("%{", "%%{")
}

fn hcl_dims(m: &MetricRef) -> String {
    let pairs: Vec<String> = m
        .dimensions
        .iter()
        .map(|(k, v)| format!("{} = {}", hcl(k), hcl(v)))
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

fn resource_name(alarm: &str) -> String {
    alarm.replace('-', "_")
}

/// `aws_cloudwatch_metric_alarm` resources; actions come from the including module's variables.
pub fn terraform(alarms: &[Alarm]) -> String {
    let mut out = String::from(
        "# Generated by `vigil-watchdog render` from alerts/; do not edit (a test compares it).\n\
         # CloudWatch alarms of the minimum monitoring set. Pages and tickets reach people through\n\
         # the watchdog's `alarms` checks (prefixes vigil-page- / vigil-ticket-); add direct\n\
         # actions with var.alarm_actions if wanted.\n",
    );
    for a in alarms {
        let _ = writeln!(
            out,
            "\nresource \"aws_cloudwatch_metric_alarm\" \"{}\" {{",
            resource_name(&a.name)
        );
        let _ = writeln!(out, "  alarm_name          = {}", hcl(&a.name));
        let _ = writeln!(
            out,
            "  alarm_description   = {}",
            hcl(&format!(
                "[{}] {} Generated by vigil-watchdog render from alerts/.",
                a.severity, a.description
            ))
        );
        let _ = writeln!(
            out,
            "  comparison_operator = {}",
            hcl(a.comparison.as_str())
        );
        let _ = writeln!(out, "  evaluation_periods  = {}", a.evaluation_periods);
        let _ = writeln!(out, "  datapoints_to_alarm = {}", a.datapoints_to_alarm);
        let _ = writeln!(
            out,
            "  threshold           = {}",
            super::cloudwatch::fmt_num(a.threshold)
        );
        let _ = writeln!(out, "  treat_missing_data  = \"notBreaching\"");
        let _ = writeln!(out, "  alarm_actions       = var.alarm_actions");
        let _ = writeln!(out, "  ok_actions          = var.alarm_actions");
        let _ = writeln!(
            out,
            "  tags                = merge(var.tags, {{ \"vigil:severity\" = {} }})",
            hcl(&a.severity.to_string())
        );
        match &a.source {
            Source::Metric { metric, stat } => {
                let _ = writeln!(out, "  namespace           = {}", hcl(&metric.namespace));
                let _ = writeln!(out, "  metric_name         = {}", hcl(&metric.metric));
                let _ = writeln!(out, "  statistic           = {}", hcl(stat));
                let _ = writeln!(out, "  period              = {}", a.period);
                let _ = writeln!(out, "  dimensions          = {}", hcl_dims(metric));
            }
            Source::Math {
                expression,
                label,
                inputs,
            } => {
                let _ = writeln!(out, "\n  metric_query {{");
                let _ = writeln!(out, "    id          = \"e1\"");
                let _ = writeln!(out, "    expression  = {}", hcl(expression));
                let _ = writeln!(out, "    label       = {}", hcl(label));
                let _ = writeln!(out, "    return_data = true");
                let _ = writeln!(out, "  }}");
                for (id, metric, stat) in inputs {
                    let _ = writeln!(out, "\n  metric_query {{");
                    let _ = writeln!(out, "    id = {}", hcl(id));
                    let _ = writeln!(out, "    metric {{");
                    let _ = writeln!(out, "      namespace   = {}", hcl(&metric.namespace));
                    let _ = writeln!(out, "      metric_name = {}", hcl(&metric.metric));
                    let _ = writeln!(out, "      period      = {}", a.period);
                    let _ = writeln!(out, "      stat        = {}", hcl(stat));
                    let _ = writeln!(out, "      dimensions  = {}", hcl_dims(metric));
                    let _ = writeln!(out, "    }}");
                    let _ = writeln!(out, "  }}");
                }
            }
        }
        let _ = writeln!(out, "}}");
    }
    out
}
