//! The alert spec: services, their SLOs and their desired-state checks, read from the YAML
//! files of one directory (`alerts/`). `load` parses and validates; every error names the file,
//! the key path and, where the parser knows it, the line and column.

mod deploy;
mod duration;
/// The spec loader's fuzz entry (`fuzz/`, and the unit tests run it seeded).
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub mod infrastructure;
mod load;
pub mod notify;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, de};

pub use deploy::{DeploySettings, HEARTBEAT_NAMESPACE};
pub use duration::Span;
pub use load::{Spec, SpecError, SpecErrors, load};

/// How loud a finding is: a page wakes someone, a ticket waits for working hours.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Ticket,
    Page,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Ticket => "ticket",
            Severity::Page => "page",
        })
    }
}

/// One YAML file: optional watchdog-wide settings and any number of services.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    #[serde(default)]
    pub settings: Option<Settings>,
    // Enums are written as one-key maps (`asg: {...}`), not YAML tags (`!asg {...}`).
    #[serde(
        default,
        deserialize_with = "yaml_serde::with::singleton_map_recursive::deserialize"
    )]
    pub services: BTreeMap<String, Service>,
    /// What the minimum monitoring set watches (at most one file may declare it).
    #[serde(default)]
    pub infrastructure: Option<infrastructure::Infrastructure>,
}

/// Settings that apply to every service (at most one file may declare them).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where alert state lives; without it the watchdog decides from this run alone.
    #[serde(default)]
    pub state: Option<StateSettings>,
    /// Default multiwindow, multi-burn-rate alerts for every SLO.
    #[serde(default = "default_burn_rate_alerts")]
    pub burn_rate_alerts: Vec<BurnRateAlert>,
    /// Fewest events in the long window before a burn rate may alert (the low-traffic guard).
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// Receivers and routes (see `spec::notify`); without it nothing is sent.
    #[serde(default)]
    pub notify: Option<notify::NotifySettings>,
    /// How the watchdog runs in AWS (function name, schedule); read by `iam-policy` and the
    /// Terraform module. See `spec/deploy.rs`.
    #[serde(default)]
    pub deploy: Option<DeploySettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            state: None,
            notify: None,
            deploy: None,
            burn_rate_alerts: default_burn_rate_alerts(),
            min_events: default_min_events(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// DynamoDB table with a string partition key `fingerprint` and TTL on `expires_at`.
    pub table: String,
    /// How long a resolved incident's record is kept before DynamoDB's TTL removes it.
    #[serde(default = "default_ttl")]
    pub keep_resolved_for: Span,
    /// Consecutive ok evaluations before an incident resolves (no flapping); at least 1.
    #[serde(default = "one_evaluation", deserialize_with = "at_least_one")]
    pub resolve_after: u32,
    /// While the table cannot be read, a firing finding is notified at most once per this
    /// long (remembered in a local file), and the outage is reported as a finding of its own.
    #[serde(default = "default_unreadable_repeat")]
    pub unreadable_repeat: Span,
}

fn default_unreadable_repeat() -> Span {
    Span::from_secs(3_600)
}

fn one_evaluation() -> u32 {
    1
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(de::Error::custom("resolve_after must be at least 1"));
    }
    Ok(n)
}

fn default_ttl() -> Span {
    Span::from_secs(30 * 86_400)
}

fn default_min_events() -> u64 {
    50
}

/// The SRE workbook's recommendation for a 30-day, 99.9% SLO: page on 2% of the budget in an
/// hour or 5% in six hours, ticket on 10% in three days.
pub fn default_burn_rate_alerts() -> Vec<BurnRateAlert> {
    let alert = |severity, long, short, factor| BurnRateAlert {
        severity,
        long: Span::from_secs(long),
        short: Span::from_secs(short),
        factor,
    };
    vec![
        alert(Severity::Page, 3600, 300, 14.4),
        alert(Severity::Page, 6 * 3600, 1800, 6.0),
        alert(Severity::Ticket, 3 * 86_400, 6 * 3600, 1.0),
    ]
}

/// Alert when both windows burn the error budget at least `factor` times faster than allowed.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnRateAlert {
    pub severity: Severity,
    pub long: Span,
    pub short: Span,
    #[serde(deserialize_with = "positive")]
    pub factor: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The platform module (ALB target group / Auto Scaling group family) serving it.
    #[serde(default)]
    pub module: Option<String>,
    /// Copied onto every finding (team, tier, runbook, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub slos: Vec<Slo>,
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Percentage of good events promised, e.g. `99.9`.
    #[serde(deserialize_with = "percentage")]
    pub objective: f64,
    /// The window the objective (and the error budget) is measured over.
    #[serde(default = "default_slo_period")]
    pub period: Span,
    pub sli: Sli,
    /// Replaces `settings.burn_rate_alerts` for this SLO.
    #[serde(default)]
    pub burn_rate_alerts: Option<Vec<BurnRateAlert>>,
    /// Replaces `settings.min_events` for this SLO.
    #[serde(default)]
    pub min_events: Option<u64>,
    /// When the current objective took effect (RFC 3339, e.g. `2026-11-15T00:00:00Z`), if it
    /// changed within the period: the report measures the budget from then on only, and the
    /// dashboards mark the change (events before it were promised another objective).
    #[serde(default)]
    pub objective_since: Option<String>,
}

impl Slo {
    /// `objective_since` as Unix seconds (validated at load).
    pub fn objective_since_secs(&self) -> Option<u64> {
        self.objective_since
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second().max(0) as u64)
    }
}

fn default_slo_period() -> Span {
    Span::from_secs(30 * 86_400)
}

/// What counts as a good event, always as two counts summed from CloudWatch, so the SLI is
/// exact over any window and needs no server-side percentile or metric math.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sli {
    /// Agent span metrics: good = `requests` - `errors` for one service route.
    SpanErrors {
        service: String,
        route: String,
    },
    /// Agent span metrics: good = `requests_under_threshold{threshold_ms}` / `requests`.
    SpanLatency {
        service: String,
        route: String,
        threshold_ms: u32,
    },
    /// ALB metrics: good = `RequestCount` - `HTTPCode_Target_5XX_Count` for one target group.
    AlbAvailability {
        load_balancer: String,
        target_group: String,
    },
    /// ALB latency where no span metrics exist: good = `TargetResponseTime` samples at or
    /// below the threshold, from CloudWatch's percentile rank `PR(:t)` weighted by each
    /// bucket's `SampleCount`.
    AlbLatency {
        load_balancer: String,
        target_group: String,
        threshold_ms: u32,
    },
    /// Any two CloudWatch counters.
    GoodOverTotal {
        good: MetricRef,
        total: MetricRef,
    },
    BadOverTotal {
        bad: MetricRef,
        total: MetricRef,
    },
}

/// One CloudWatch metric (always read as `Sum` by SLIs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricRef {
    pub namespace: String,
    pub metric: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
}

impl MetricRef {
    pub fn new(namespace: &str, metric: &str, dimensions: &[(&str, &str)]) -> MetricRef {
        MetricRef {
            namespace: namespace.into(),
            metric: metric.into(),
            dimensions: dimensions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// A desired-state check. Each variant is handled by one module under `checks/`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckSpec {
    Asg(AsgCheck),
    TargetGroup(TargetGroupCheck),
    RdsInstance(RdsCheck),
    RdsCluster(RdsCheck),
    DynamodbTable(DynamoDbTableCheck),
    Alarms(AlarmsCheck),
    SqsDlq(SqsDlqCheck),
    Http(HttpCheck),
    Heartbeat(HeartbeatCheck),
}

impl CheckSpec {
    /// The spec key, which is also the finding's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckSpec::Asg(_) => "asg",
            CheckSpec::TargetGroup(_) => "target_group",
            CheckSpec::RdsInstance(_) => "rds_instance",
            CheckSpec::RdsCluster(_) => "rds_cluster",
            CheckSpec::DynamodbTable(_) => "dynamodb_table",
            CheckSpec::Alarms(_) => "alarms",
            CheckSpec::SqsDlq(_) => "sqs_dlq",
            CheckSpec::Http(_) => "http",
            CheckSpec::Heartbeat(_) => "heartbeat",
        }
    }

    /// What is checked; with the kind and the service it makes the finding's fingerprint.
    pub fn target(&self) -> String {
        match self {
            CheckSpec::Asg(c) => c.group.clone(),
            CheckSpec::TargetGroup(c) => c.name.clone(),
            CheckSpec::RdsInstance(c) | CheckSpec::RdsCluster(c) => c.id.clone(),
            CheckSpec::DynamodbTable(c) => c.table.clone(),
            CheckSpec::Alarms(c) => {
                let mut parts = c.names.clone();
                parts.extend(c.prefix.iter().map(|p| format!("{p}*")));
                parts.join(",")
            }
            CheckSpec::SqsDlq(c) => c.queue.clone(),
            CheckSpec::Http(c) => c.url.clone(),
            CheckSpec::Heartbeat(c) => format!("{}/{}", c.namespace, c.metric),
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            CheckSpec::Asg(c) => c.severity,
            CheckSpec::TargetGroup(c) => c.severity,
            CheckSpec::RdsInstance(c) | CheckSpec::RdsCluster(c) => c.severity,
            CheckSpec::DynamodbTable(c) => c.severity,
            CheckSpec::Alarms(c) => c.severity,
            CheckSpec::SqsDlq(c) => c.severity,
            CheckSpec::Http(c) => c.severity,
            CheckSpec::Heartbeat(c) => c.severity,
        }
    }
}

/// At least `min_healthy` instances both `InService` and `Healthy`, over at least `min_azs` AZs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsgCheck {
    pub group: String,
    pub min_healthy: u32,
    #[serde(default = "one")]
    pub min_azs: u32,
    #[serde(default)]
    pub severity: Severity,
}

/// At least `min_healthy` healthy targets, and `min_healthy_per_az` in each AZ when given.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroupCheck {
    /// Target group name (not ARN).
    pub name: String,
    #[serde(default = "one")]
    pub min_healthy: u32,
    #[serde(default)]
    pub min_healthy_per_az: Option<u32>,
    /// AZs that must each hold `min_healthy_per_az`; by default the AZs targets are in.
    #[serde(default)]
    pub azs: Vec<String>,
    #[serde(default)]
    pub severity: Severity,
}

/// The instance or cluster is `available` (and Multi-AZ when required).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsCheck {
    pub id: String,
    #[serde(default)]
    pub multi_az: bool,
    #[serde(default)]
    pub severity: Severity,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoDbTableCheck {
    pub table: String,
    #[serde(default)]
    pub severity: Severity,
}

/// None of these CloudWatch alarms is in `ALARM`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsCheck {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub severity: Severity,
}

/// A dead-letter queue holds at most `max_messages` (from `AWS/SQS` metrics, no SQS client).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsDlqCheck {
    pub queue: String,
    #[serde(default)]
    pub max_messages: u64,
    /// How far back to look for the queue's depth (SQS publishes every 5 minutes).
    #[serde(default = "fifteen_minutes")]
    pub within: Span,
    #[serde(default)]
    pub severity: Severity,
}

/// A synthetic request: status, latency budget and optionally a body match.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub url: String,
    #[serde(default = "http_ok")]
    pub expect_status: u16,
    #[serde(default = "two_seconds")]
    pub latency_budget: Span,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default)]
    pub severity: Severity,
}

/// Every host's agent sent a heartbeat within `within`. Hosts come from `hosts`, from the
/// InService members of `asgs`, and (with `discover`) from ListMetrics.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatCheck {
    #[serde(default = "five_minutes")]
    pub within: Span,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub asgs: Vec<String>,
    #[serde(default = "yes")]
    pub discover: bool,
    #[serde(default = "heartbeat_namespace")]
    pub namespace: String,
    #[serde(default = "heartbeat_metric")]
    pub metric: String,
    #[serde(default)]
    pub severity: Severity,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn http_ok() -> u16 {
    200
}
fn two_seconds() -> Span {
    Span::from_secs(2)
}
fn five_minutes() -> Span {
    Span::from_secs(300)
}
fn fifteen_minutes() -> Span {
    Span::from_secs(900)
}
fn heartbeat_namespace() -> String {
    "Vigil/Agent".into()
}
fn heartbeat_metric() -> String {
    "heartbeat".into()
}

fn percentage<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value > 0.0 && value < 100.0 {
        Ok(value)
    } else {
        Err(de::Error::custom(format!(
            "objective {value} must be a percentage above 0 and below 100, e.g. 99.9"
        )))
    }
}

fn positive<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(de::Error::custom(format!(
            "{value} must be a number above 0"
        )))
    }
}
