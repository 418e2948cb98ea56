//! Dead-letter queues stay empty. Read from `AWS/SQS ApproximateNumberOfMessagesVisible`
//! (Maximum) in the shared metric batch, so it costs no SQS call and no extra permission.

use std::collections::BTreeMap;

use super::{Check, Outcome, Want};
use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::{MetricData, Stat};
use crate::spec::{MetricRef, SqsDlqCheck};

pub struct Dlq<'a>(pub &'a SqsDlqCheck);

impl Check for Dlq<'_> {
    async fn wants(&self, _: &Aws) -> Result<Vec<Want>, CallError> {
        Ok(vec![Want {
            metric: MetricRef {
                namespace: "AWS/SQS".into(),
                metric: "ApproximateNumberOfMessagesVisible".into(),
                dimensions: BTreeMap::from([("QueueName".to_string(), self.0.queue.clone())]),
            },
            stat: Stat::Maximum,
            window: self.0.within,
        }])
    }

    async fn run(&self, _: &Aws, wants: &[Want], data: &MetricData) -> Result<Outcome, CallError> {
        let want = wants
            .first()
            .ok_or_else(|| CallError::bad_data("no metric planned"))?;
        let depth = data.window(&want.metric, want.stat, want.window)?;
        let queue = &self.0.queue;
        Ok(match depth.value {
            // SQS publishes queue metrics for every queue every 5 minutes, even at zero, so
            // silence means a wrong name or a deleted queue: say so rather than pass.
            None => Outcome::new(
                false,
                format!(
                    "DLQ {queue}: no depth reported in the last {}",
                    self.0.within
                ),
            )
            .detail(
                "no ApproximateNumberOfMessagesVisible datapoints (queue missing or misnamed?)",
            ),
            Some(n) => Outcome::new(
                n <= self.0.max_messages as f64,
                format!(
                    "DLQ {queue}: {n} messages (want <= {})",
                    self.0.max_messages
                ),
            )
            .detail(format!(
                "max ApproximateNumberOfMessagesVisible over {} = {n}",
                self.0.within
            ))
            .value("messages", n),
        })
    }
}
