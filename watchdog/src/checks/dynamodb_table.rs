//! DynamoDB tables are `ACTIVE` (not missing, creating, or inaccessible because of its key).

use super::{Check, Outcome, Want};
use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::MetricData;
use crate::spec::DynamoDbTableCheck;

pub struct Table<'a>(pub &'a DynamoDbTableCheck);

impl Check for Table<'_> {
    async fn run(&self, aws: &Aws, _: &[Want], _: &MetricData) -> Result<Outcome, CallError> {
        let name = &self.0.table;
        let answer = aws.dynamodb.describe_table().table_name(name).send().await;
        let Some(out) =
            CallError::missing_is_none(answer, |e| e.is_resource_not_found_exception())?
        else {
            return Ok(Outcome::new(
                false,
                format!("DynamoDB table {name} does not exist"),
            ));
        };
        let status = out
            .table()
            .and_then(|t| t.table_status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(Outcome::new(
            status == "ACTIVE",
            format!("DynamoDB table {name}: {status}"),
        )
        .detail(format!("TableStatus {status} (want ACTIVE)"))
        .value("status", status))
    }
}
