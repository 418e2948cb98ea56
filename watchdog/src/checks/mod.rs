//! Desired-state checks: one module per kind, all behind the `Check` trait. The evaluator
//! first asks each check which metric series it reads (so all CloudWatch reads go into one
//! batch), then runs it with the batch's answers.

mod alarms;
mod asg;
mod dynamodb_table;
mod heartbeat;
mod http;
mod rds;
mod sqs_dlq;
mod target_group;

pub use alarms::covers as alarms_cover;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::{MetricData, Stat};
use crate::spec::{CheckSpec, MetricRef, Span};

/// One metric series a check reads.
#[derive(Clone, Debug)]
pub struct Want {
    pub metric: MetricRef,
    pub stat: Stat,
    pub window: Span,
}

/// The verdict of one check that could run.
#[derive(Debug, Default)]
pub struct Outcome {
    pub healthy: bool,
    pub summary: String,
    /// One line per fact the verdict rests on.
    pub details: Vec<String>,
    pub values: BTreeMap<String, Value>,
}

impl Outcome {
    pub fn new(healthy: bool, summary: impl Into<String>) -> Self {
        Outcome {
            healthy,
            summary: summary.into(),
            ..Default::default()
        }
    }

    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    pub fn value(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }
}

/// A desired-state check. `Ok` carries the verdict (a missing resource is a failed check);
/// `Err` means "could not tell" (access denied, throttled after the SDK's retries,
/// unreachable), which the evaluator reports as an `unknown` finding.
pub(crate) trait Check {
    /// Metric series to read in the shared batch. Most checks read none.
    async fn wants(&self, _aws: &Aws) -> Result<Vec<Want>, CallError> {
        Ok(Vec::new())
    }

    /// Runs the check; `wants` are the series this check asked for, answered in `data`.
    async fn run(&self, aws: &Aws, wants: &[Want], data: &MetricData)
    -> Result<Outcome, CallError>;
}

/// Every check kind, so evaluation can dispatch with a plain `match`.
pub enum AnyCheck<'a> {
    Asg(asg::Asg<'a>),
    TargetGroup(target_group::TargetGroup<'a>),
    RdsInstance(rds::Instance<'a>),
    RdsCluster(rds::Cluster<'a>),
    DynamodbTable(dynamodb_table::Table<'a>),
    Alarms(alarms::Alarms<'a>),
    SqsDlq(sqs_dlq::Dlq<'a>),
    Http(http::Http<'a>),
    Heartbeat(heartbeat::Heartbeat<'a>),
}

impl<'a> AnyCheck<'a> {
    pub fn new(spec: &'a CheckSpec) -> Self {
        match spec {
            CheckSpec::Asg(c) => AnyCheck::Asg(asg::Asg(c)),
            CheckSpec::TargetGroup(c) => AnyCheck::TargetGroup(target_group::TargetGroup(c)),
            CheckSpec::RdsInstance(c) => AnyCheck::RdsInstance(rds::Instance(c)),
            CheckSpec::RdsCluster(c) => AnyCheck::RdsCluster(rds::Cluster(c)),
            CheckSpec::DynamodbTable(c) => AnyCheck::DynamodbTable(dynamodb_table::Table(c)),
            CheckSpec::Alarms(c) => AnyCheck::Alarms(alarms::Alarms(c)),
            CheckSpec::SqsDlq(c) => AnyCheck::SqsDlq(sqs_dlq::Dlq(c)),
            CheckSpec::Http(c) => AnyCheck::Http(http::Http(c)),
            CheckSpec::Heartbeat(c) => AnyCheck::Heartbeat(heartbeat::Heartbeat(c)),
        }
    }
}

impl AnyCheck<'_> {
    pub async fn wants(&self, aws: &Aws) -> Result<Vec<Want>, CallError> {
        match self {
            AnyCheck::Asg(c) => c.wants(aws).await,
            AnyCheck::TargetGroup(c) => c.wants(aws).await,
            AnyCheck::RdsInstance(c) => c.wants(aws).await,
            AnyCheck::RdsCluster(c) => c.wants(aws).await,
            AnyCheck::DynamodbTable(c) => c.wants(aws).await,
            AnyCheck::Alarms(c) => c.wants(aws).await,
            AnyCheck::SqsDlq(c) => c.wants(aws).await,
            AnyCheck::Http(c) => c.wants(aws).await,
            AnyCheck::Heartbeat(c) => c.wants(aws).await,
        }
    }

    pub async fn run(
        &self,
        aws: &Aws,
        wants: &[Want],
        data: &MetricData,
    ) -> Result<Outcome, CallError> {
        match self {
            AnyCheck::Asg(c) => c.run(aws, wants, data).await,
            AnyCheck::TargetGroup(c) => c.run(aws, wants, data).await,
            AnyCheck::RdsInstance(c) => c.run(aws, wants, data).await,
            AnyCheck::RdsCluster(c) => c.run(aws, wants, data).await,
            AnyCheck::DynamodbTable(c) => c.run(aws, wants, data).await,
            AnyCheck::Alarms(c) => c.run(aws, wants, data).await,
            AnyCheck::SqsDlq(c) => c.run(aws, wants, data).await,
            AnyCheck::Http(c) => c.run(aws, wants, data).await,
            AnyCheck::Heartbeat(c) => c.run(aws, wants, data).await,
        }
    }
}

/// `n thing` / `n things`.
pub(crate) fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}
