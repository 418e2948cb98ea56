//! Least-privilege IAM for a spec. `OPERATIONS` is the one table of every AWS operation the
//! watchdog may call (SDK service and operation → IAM action); every SDK client carries a
//! guard (`aws::OperationGuard`) that refuses an operation missing from it, so a new call
//! cannot ship without its row. `policy` turns a spec into the policy document: only the
//! operations its checks, SLOs, alert state and receivers use, on the resources they name.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::spec::notify::{NotifySettings, ReceiverSpec, SecretRef};
use crate::spec::{CheckSpec, HEARTBEAT_NAMESPACE, Sli, Spec};

/// Every AWS operation the watchdog calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    GetMetricData,
    ListMetrics,
    DescribeAlarms,
    PutMetricData,
    DescribeAutoScalingGroups,
    DescribeAutoScalingInstances,
    DescribeLoadBalancers,
    DescribeTargetGroups,
    DescribeTargetHealth,
    DescribeDbInstances,
    DescribeDbClusters,
    DescribeTable,
    BatchGetItem,
    UpdateItem,
    GetParameter,
    Publish,
    SendEmail,
    PutEvents,
    /// `create-state-table` only (local runs): in AWS the Terraform module owns the table, so
    /// these two are never granted to the function.
    CreateTable,
    UpdateTimeToLive,
    /// `report` only (run by people, with their own credentials): the incidents of a period
    /// are read from the whole table. Never granted to the function.
    Scan,
}

/// One row: the operation, the SDK's service and operation names (as the client's
/// `Metadata` spells them), the IAM action, and actions the service performs on the caller's
/// behalf with the caller's permissions (KMS for encrypted parameters and topics).
pub struct Row {
    pub operation: Operation,
    pub sdk_service: &'static str,
    pub sdk_operation: &'static str,
    pub action: &'static str,
    pub implied: &'static [&'static str],
}

const fn row(
    operation: Operation,
    sdk_service: &'static str,
    sdk_operation: &'static str,
    action: &'static str,
    implied: &'static [&'static str],
) -> Row {
    Row {
        operation,
        sdk_service,
        sdk_operation,
        action,
        implied,
    }
}

use Operation as O;

pub const OPERATIONS: &[Row] = &[
    row(
        O::GetMetricData,
        "CloudWatch",
        "GetMetricData",
        "cloudwatch:GetMetricData",
        &[],
    ),
    row(
        O::ListMetrics,
        "CloudWatch",
        "ListMetrics",
        "cloudwatch:ListMetrics",
        &[],
    ),
    row(
        O::DescribeAlarms,
        "CloudWatch",
        "DescribeAlarms",
        "cloudwatch:DescribeAlarms",
        &[],
    ),
    row(
        O::PutMetricData,
        "CloudWatch",
        "PutMetricData",
        "cloudwatch:PutMetricData",
        &[],
    ),
    row(
        O::DescribeAutoScalingGroups,
        "Auto Scaling",
        "DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingGroups",
        &[],
    ),
    row(
        O::DescribeAutoScalingInstances,
        "Auto Scaling",
        "DescribeAutoScalingInstances",
        "autoscaling:DescribeAutoScalingInstances",
        &[],
    ),
    row(
        O::DescribeLoadBalancers,
        "Elastic Load Balancing v2",
        "DescribeLoadBalancers",
        "elasticloadbalancing:DescribeLoadBalancers",
        &[],
    ),
    row(
        O::DescribeTargetGroups,
        "Elastic Load Balancing v2",
        "DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetGroups",
        &[],
    ),
    row(
        O::DescribeTargetHealth,
        "Elastic Load Balancing v2",
        "DescribeTargetHealth",
        "elasticloadbalancing:DescribeTargetHealth",
        &[],
    ),
    row(
        O::DescribeDbInstances,
        "RDS",
        "DescribeDBInstances",
        "rds:DescribeDBInstances",
        &[],
    ),
    row(
        O::DescribeDbClusters,
        "RDS",
        "DescribeDBClusters",
        "rds:DescribeDBClusters",
        &[],
    ),
    row(
        O::DescribeTable,
        "DynamoDB",
        "DescribeTable",
        "dynamodb:DescribeTable",
        &[],
    ),
    row(
        O::BatchGetItem,
        "DynamoDB",
        "BatchGetItem",
        "dynamodb:BatchGetItem",
        &[],
    ),
    row(
        O::UpdateItem,
        "DynamoDB",
        "UpdateItem",
        "dynamodb:UpdateItem",
        &[],
    ),
    // SecureString: SSM decrypts with the caller's kms:Decrypt.
    row(
        O::GetParameter,
        "SSM",
        "GetParameter",
        "ssm:GetParameter",
        &["kms:Decrypt"],
    ),
    // A KMS-encrypted topic: SNS encrypts the message with the publisher's permissions.
    row(
        O::Publish,
        "SNS",
        "Publish",
        "sns:Publish",
        &["kms:GenerateDataKey", "kms:Decrypt"],
    ),
    row(O::SendEmail, "SESv2", "SendEmail", "ses:SendEmail", &[]),
    row(
        O::PutEvents,
        "EventBridge",
        "PutEvents",
        "events:PutEvents",
        &[],
    ),
    row(
        O::CreateTable,
        "DynamoDB",
        "CreateTable",
        "dynamodb:CreateTable",
        &[],
    ),
    row(
        O::UpdateTimeToLive,
        "DynamoDB",
        "UpdateTimeToLive",
        "dynamodb:UpdateTimeToLive",
        &[],
    ),
    row(O::Scan, "DynamoDB", "Scan", "dynamodb:Scan", &[]),
];

impl Operation {
    pub fn row(self) -> &'static Row {
        OPERATIONS
            .iter()
            .find(|r| r.operation == self)
            .expect("every operation has a row in OPERATIONS")
    }

    /// The operation an SDK client is about to call, if it is in the table.
    pub fn from_sdk(service: &str, operation: &str) -> Option<Operation> {
        OPERATIONS
            .iter()
            .find(|r| r.sdk_service == service && r.sdk_operation == operation)
            .map(|r| r.operation)
    }

    /// The IAM action as `prefix:Name`.
    pub fn action(self) -> &'static str {
        self.row().action
    }
}

/// Where the policy is for. Without an account or region, ARNs carry Terraform template
/// placeholders (`${account_id}`, `${region}`, `${partition}`) filled by `templatefile()`.
#[derive(Clone, Debug)]
pub struct Target {
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            partition: "${partition}".into(),
            region: "${region}".into(),
            account: "${account_id}".into(),
        }
    }
}

impl Target {
    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition, self.region, self.account
        )
    }
}

/// One statement of the document.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: String,
    pub effect: &'static str,
    pub action: Vec<String>,
    pub resource: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

/// The operations a Lambda running this spec calls (what the guard lets through).
pub fn operations(spec: &Spec) -> BTreeSet<Operation> {
    grants(spec, &Target::default()).into_keys().collect()
}

/// `operations`, plus the alert-state item actions when a table is named outside the spec
/// (`--state-table`, `VIGIL_STATE_TABLE`).
pub fn operations_with_table(spec: &Spec, table_override: bool) -> BTreeSet<Operation> {
    let mut ops = operations(spec);
    if table_override {
        ops.extend([O::BatchGetItem, O::UpdateItem]);
    }
    ops
}

/// Operation → the resources it is granted on (`*` only where the action has no resource-level
/// permissions; each such case says so below).
fn grants(spec: &Spec, target: &Target) -> BTreeMap<Operation, BTreeSet<String>> {
    let mut g: BTreeMap<Operation, BTreeSet<String>> = BTreeMap::new();
    let mut grant = |op: Operation, resource: String| {
        g.entry(op).or_default().insert(resource);
    };
    let star = || "*".to_string();

    let has_slos = spec.services.values().any(|s| !s.slos.is_empty());
    if has_slos {
        // GetMetricData and ListMetrics support no resource-level permissions: AWS requires `*`.
        grant(O::GetMetricData, star());
    }
    for s in spec.services.values() {
        for slo in &s.slos {
            if matches!(
                slo.sli,
                Sli::AlbAvailability { .. } | Sli::AlbLatency { .. }
            ) {
                // ELBv2 Describe* actions support no resource-level permissions: `*` required.
                grant(O::DescribeLoadBalancers, star());
                grant(O::DescribeTargetGroups, star());
            }
        }
    }
    // Heartbeat runs on every non-dry run. PutMetricData has no resource-level permissions
    // (`*` required); the `cloudwatch:namespace` condition narrows it to the heartbeat.
    grant(O::PutMetricData, star());

    let mut asg_lookup = false;
    for s in spec.services.values() {
        for check in &s.checks {
            asg_lookup |= check_grants(check, target, &mut grant);
        }
    }
    if asg_lookup {
        // An EC2 state-change event names an instance: its group comes from Auto Scaling.
        grant(O::DescribeAutoScalingInstances, star());
    }

    if let Some(state) = &spec.settings.state {
        let table = target.arn("dynamodb", &format!("table/{}", state.table));
        grant(O::BatchGetItem, table.clone());
        grant(O::UpdateItem, table);
    }

    if let Some(notify) = &spec.settings.notify {
        notify_grants(notify, target, &mut grant);
    }
    g
}

/// What one check needs; `true` when it follows instances through Auto Scaling.
fn check_grants(
    check: &CheckSpec,
    target: &Target,
    grant: &mut impl FnMut(Operation, String),
) -> bool {
    let star = || "*".to_string();
    let mut asg_lookup = false;
    match check {
        CheckSpec::Asg(_) => {
            // Auto Scaling Describe* actions support no resource-level permissions.
            grant(O::DescribeAutoScalingGroups, star());
            asg_lookup = true;
        }
        CheckSpec::TargetGroup(tg) => {
            grant(O::DescribeTargetGroups, star());
            grant(O::DescribeTargetHealth, star());
            if tg.min_healthy_per_az.is_some() {
                // Instance AZs come from Auto Scaling (no EC2 API).
                grant(O::DescribeAutoScalingInstances, star());
            }
            asg_lookup = true;
        }
        CheckSpec::RdsInstance(c) => {
            grant(
                O::DescribeDbInstances,
                target.arn("rds", &format!("db:{}", c.id)),
            );
        }
        CheckSpec::RdsCluster(c) => {
            grant(
                O::DescribeDbClusters,
                target.arn("rds", &format!("cluster:{}", c.id)),
            );
        }
        CheckSpec::DynamodbTable(c) => {
            grant(
                O::DescribeTable,
                target.arn("dynamodb", &format!("table/{}", c.table)),
            );
        }
        CheckSpec::Alarms(c) => {
            // Metric alarms only: a narrower scope than `*` hides composite alarms,
            // which this check does not read.
            for name in &c.names {
                grant(
                    O::DescribeAlarms,
                    target.arn("cloudwatch", &format!("alarm:{name}")),
                );
            }
            if let Some(prefix) = &c.prefix {
                grant(
                    O::DescribeAlarms,
                    target.arn("cloudwatch", &format!("alarm:{prefix}*")),
                );
            }
        }
        CheckSpec::SqsDlq(_) => grant(O::GetMetricData, star()),
        CheckSpec::Http(_) => {}
        CheckSpec::Heartbeat(h) => {
            grant(O::GetMetricData, star());
            if h.discover {
                grant(O::ListMetrics, star());
            }
            if !h.asgs.is_empty() {
                grant(O::DescribeAutoScalingGroups, star());
            }
            asg_lookup = true;
        }
    }
    asg_lookup
}

/// What the receivers' secrets, topics and identities and the event bus need.
fn notify_grants(
    notify: &NotifySettings,
    target: &Target,
    grant: &mut impl FnMut(Operation, String),
) {
    for receiver in notify.receivers.values() {
        let secret = match receiver {
            ReceiverSpec::SlackWebhook { url, .. } => Some(url),
            ReceiverSpec::SlackBot { token, .. } => Some(token),
            ReceiverSpec::SmtpEmail { password, .. } => password.as_ref(),
            ReceiverSpec::Sns { topic_arn } => {
                grant(O::Publish, topic_arn.clone());
                None
            }
            ReceiverSpec::SesEmail { from, .. } => {
                let address = email_address(from);
                grant(
                    O::SendEmail,
                    target.arn("ses", &format!("identity/{address}")),
                );
                // The verified identity may be the address or its domain.
                if let Some((_, domain)) = address.split_once('@') {
                    grant(
                        O::SendEmail,
                        target.arn("ses", &format!("identity/{domain}")),
                    );
                }
                None
            }
        };
        if let Some(SecretRef::Ssm(parameter)) = secret {
            // Validated as a path (`/a/b`): its ARN is `parameter/a/b`.
            grant(
                O::GetParameter,
                target.arn("ssm", &format!("parameter{parameter}")),
            );
        }
    }
    if let Some(bus) = &notify.event_bus {
        let arn = if bus.starts_with("arn:") {
            bus.clone()
        } else {
            target.arn("events", &format!("event-bus/{bus}"))
        };
        grant(O::PutEvents, arn);
    }
}

/// `Name <a@b>` → `a@b`.
fn email_address(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(start), Some(end)) if start < end => from[start + 1..end].trim(),
        _ => from.trim(),
    }
}

/// The policy document for `spec`.
pub fn policy(spec: &Spec, target: &Target) -> Policy {
    let grants = grants(spec, target);
    // Group operations sharing a statement: one statement per (sid, resources, condition).
    let mut statements: Vec<Statement> = Vec::new();
    let mut add = |sid: &str, ops: &[Operation], condition: Option<Value>| {
        let mut actions = BTreeSet::new();
        let mut resources = BTreeSet::new();
        for op in ops {
            if let Some(r) = grants.get(op) {
                actions.insert(op.action().to_string());
                resources.extend(r.iter().cloned());
            }
        }
        if !actions.is_empty() {
            statements.push(Statement {
                sid: sid.into(),
                effect: "Allow",
                action: actions.into_iter().collect(),
                resource: resources.into_iter().collect(),
                condition,
            });
        }
    };
    add("ReadMetrics", &[O::GetMetricData, O::ListMetrics], None);
    add("DescribeAlarms", &[O::DescribeAlarms], None);
    add(
        "Heartbeat",
        &[O::PutMetricData],
        Some(json!({"StringEquals": {"cloudwatch:namespace": HEARTBEAT_NAMESPACE}})),
    );
    add(
        "DescribeAutoScaling",
        &[
            O::DescribeAutoScalingGroups,
            O::DescribeAutoScalingInstances,
        ],
        None,
    );
    add(
        "DescribeLoadBalancing",
        &[
            O::DescribeLoadBalancers,
            O::DescribeTargetGroups,
            O::DescribeTargetHealth,
        ],
        None,
    );
    add("DescribeRdsInstances", &[O::DescribeDbInstances], None);
    add("DescribeRdsClusters", &[O::DescribeDbClusters], None);
    add("DescribeDynamoDbTables", &[O::DescribeTable], None);
    add("AlertState", &[O::BatchGetItem, O::UpdateItem], None);
    add("ReadSecrets", &[O::GetParameter], None);
    add("PublishPages", &[O::Publish], None);
    add("SendEmail", &[O::SendEmail], None);
    add("PutFindingEvents", &[O::PutEvents], None);

    // KMS on the caller's behalf. The key ids are not in the spec, so the resource is every key
    // of the account and region; the kms:ViaService condition limits use to the one service.
    let keys = target.arn("kms", "key/*");
    let via = |service: &str| json!({"StringEquals": {"kms:ViaService": format!("{service}.{}.amazonaws.com", target.region)}});
    if grants.contains_key(&O::GetParameter) {
        statements.push(Statement {
            sid: "DecryptSecretsViaSsm".into(),
            effect: "Allow",
            action: O::GetParameter
                .row()
                .implied
                .iter()
                .map(|a| a.to_string())
                .collect(),
            resource: vec![keys.clone()],
            condition: Some(via("ssm")),
        });
    }
    if grants.contains_key(&O::Publish) {
        statements.push(Statement {
            sid: "EncryptPagesViaSns".into(),
            effect: "Allow",
            action: O::Publish
                .row()
                .implied
                .iter()
                .map(|a| a.to_string())
                .collect(),
            resource: vec![keys],
            condition: Some(via("sns")),
        });
    }
    Policy {
        version: "2012-10-17",
        statement: statements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_exactly_one_row() {
        for r in OPERATIONS {
            assert_eq!(
                OPERATIONS
                    .iter()
                    .filter(|o| o.operation == r.operation)
                    .count(),
                1
            );
            assert_eq!(
                Operation::from_sdk(r.sdk_service, r.sdk_operation),
                Some(r.operation)
            );
        }
        assert_eq!(Operation::from_sdk("S3", "GetObject"), None);
    }

    #[test]
    fn email_addresses_are_taken_out_of_display_names() {
        assert_eq!(
            email_address("Vigil <alerts@shop.example>"),
            "alerts@shop.example"
        );
        assert_eq!(email_address("alerts@shop.example"), "alerts@shop.example");
    }

    #[test]
    fn a_spec_without_notify_or_state_gets_only_its_reads_and_the_heartbeat() {
        let dir = tempfile_dir();
        std::fs::write(
            dir.join("s.yaml"),
            "services:\n  db:\n    checks:\n      - rds_instance: { id: orders }\n",
        )
        .unwrap();
        let spec = crate::spec::load(&dir).unwrap();
        let target = Target {
            partition: "aws".into(),
            region: "eu-west-1".into(),
            account: "111122223333".into(),
        };
        let p = policy(&spec, &target);
        let sids: Vec<&str> = p.statement.iter().map(|s| s.sid.as_str()).collect();
        assert_eq!(sids, ["Heartbeat", "DescribeRdsInstances"]);
        assert_eq!(
            p.statement[1].resource,
            ["arn:aws:rds:eu-west-1:111122223333:db:orders"]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vigil-iam-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
