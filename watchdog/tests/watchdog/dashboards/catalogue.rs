//! Which metrics a generated view may use: the span metrics the agent documents (read from
//! docs/agent-metrics.md, so a renamed metric there fails here), the agent heartbeat of the
//! watchdog's contract, and the AWS metrics with the dimension sets AWS documents for them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub type Dims = BTreeSet<String>;

pub struct Catalogue {
    /// (namespace, metric) -> allowed dimension sets.
    pub metrics: BTreeMap<(String, String), Vec<Dims>>,
}

fn set(names: &[&str]) -> Dims {
    names.iter().map(|s| s.to_string()).collect()
}

/// AWS metrics the infrastructure dashboard and alarms use, with the dimensions AWS publishes
/// them under (CloudWatch user guide, "metrics and dimensions" page of each service).
/// (namespace, metric names, the dimension sets they are published with)
type AwsMetrics = (
    &'static str,
    &'static [&'static str],
    &'static [&'static [&'static str]],
);

const AWS: &[AwsMetrics] = &[
    (
        "AWS/ApplicationELB",
        &[
            "RequestCount",
            "HTTPCode_Target_5XX_Count",
            "TargetResponseTime",
            "HealthyHostCount",
            "UnHealthyHostCount",
        ],
        &[&["LoadBalancer", "TargetGroup"]],
    ),
    (
        "AWS/CloudFront",
        &[
            "4xxErrorRate",
            "5xxErrorRate",
            "OriginLatency",
            "CacheHitRate",
        ],
        &[&["DistributionId", "Region"]],
    ),
    (
        "AWS/WAFV2",
        &["BlockedRequests"],
        &[&["Rule", "WebACL"], &["Region", "Rule", "WebACL"]],
    ),
    (
        "AWS/AutoScaling",
        &["GroupInServiceInstances"],
        &[&["AutoScalingGroupName"]],
    ),
    ("AWS/EC2", &["CPUUtilization"], &[&["AutoScalingGroupName"]]),
    (
        "AWS/SQS",
        &[
            "ApproximateNumberOfMessagesVisible",
            "ApproximateAgeOfOldestMessage",
        ],
        &[&["QueueName"]],
    ),
    (
        "AWS/RDS",
        &["DatabaseConnections", "AuroraReplicaLagMaximum"],
        &[&["DBClusterIdentifier"]],
    ),
    (
        "AWS/DynamoDB",
        &["ReadThrottleEvents", "WriteThrottleEvents"],
        &[&["TableName"]],
    ),
    (
        "AWS/ElastiCache",
        &["Evictions", "DatabaseMemoryUsagePercentage"],
        &[&["CacheClusterId"]],
    ),
    (
        "AWS/ES",
        &[
            "ClusterStatus.green",
            "ClusterStatus.yellow",
            "ClusterStatus.red",
        ],
        &[&["ClientId", "DomainName"]],
    ),
];

/// Reads the span-metrics table of the agent's documentation.
pub fn agent_metrics(doc: &Path) -> Catalogue {
    let text = std::fs::read_to_string(doc).unwrap();
    let section = text
        .split("## Span metrics")
        .nth(1)
        .expect("docs/agent-metrics.md has a Span metrics section");
    assert!(
        section.contains("`Vigil/SpanMetrics`"),
        "span metrics namespace documented"
    );
    let mut metrics = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | kind | unit | `dim`, `dim` | value |
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let dims: Dims = cells[4]
            .split(',')
            .map(|d| d.trim().trim_matches('`').to_string())
            .collect();
        metrics.insert(("Vigil/SpanMetrics".to_string(), name), vec![dims]);
    }
    for name in ["requests", "errors", "latency", "requests_under_threshold"] {
        assert!(
            metrics.contains_key(&("Vigil/SpanMetrics".to_string(), name.to_string())),
            "the agent documents span metric {name}"
        );
    }
    // The heartbeat contract (ARCHITECTURE.md, "Metric contract with the agent").
    let arch = std::fs::read_to_string(doc.parent().unwrap().join("../ARCHITECTURE.md")).unwrap();
    assert!(arch.contains("heartbeat `Vigil/Agent` `heartbeat` with dimension `host`"));
    metrics.insert(
        ("Vigil/Agent".into(), "heartbeat".into()),
        vec![set(&["host"])],
    );
    for (ns, names, dim_sets) in AWS {
        for name in *names {
            metrics.insert(
                (ns.to_string(), name.to_string()),
                dim_sets.iter().map(|d| set(d)).collect(),
            );
        }
    }
    Catalogue { metrics }
}

impl Catalogue {
    pub fn check(&self, where_: &str, namespace: &str, metric: &str, dims: &Dims) {
        let allowed = self
            .metrics
            .get(&(namespace.to_string(), metric.to_string()))
            .unwrap_or_else(|| panic!("{where_}: {namespace} {metric} is neither documented by the agent nor published by AWS"));
        assert!(
            allowed.contains(dims),
            "{where_}: {namespace} {metric} with dimensions {dims:?}; published with {allowed:?}"
        );
    }

    /// Span metric names (what NRQL may aggregate for the shipped spec).
    pub fn span_names(&self) -> BTreeSet<String> {
        self.metrics
            .keys()
            .filter(|(ns, _)| ns == "Vigil/SpanMetrics")
            .map(|(_, m)| m.clone())
            .collect()
    }
}
