//! `vigil-agent iam-policy`: the least-privilege IAM policy a config needs, so the instance
//! role (or task role) is written from the config instead of guessed.
//!
//! Log groups become ARNs from their name templates (each `{field}` is a `*`), metric
//! namespaces become a condition on `cloudwatch:PutMetricData` (which has no resource ARN),
//! X-Ray needs `PutTraceSegments`, and New Relic license keys in SSM need `GetParameter` on
//! exactly the parameters named.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::config::AgentConfig;
use crate::sinks::SinkConfig;
use crate::sinks::cloudwatch_logs::template::Template;
use crate::sinks::cloudwatch_metrics::Mode;

/// Where the role is used: `*` for any region or account.
#[derive(Debug, Clone)]
pub struct Scope {
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            partition: "aws".into(),
            region: "*".into(),
            account: "*".into(),
        }
    }
}

/// A config none of whose sinks calls AWS needs no policy.
#[derive(Debug, thiserror::Error)]
#[error(
    "no sink in this config calls AWS (cloudwatch_logs, cloudwatch_metrics, xray, aws_otlp, newrelic with ssm_parameter): no policy needed"
)]
pub struct NothingToAllow;

/// The policy document (IAM JSON) for `config`.
pub fn policy(config: &AgentConfig, scope: &Scope) -> Result<Value, NothingToAllow> {
    let statements = statements(&Needs::of(config, scope), scope);
    if statements.is_empty() {
        return Err(NothingToAllow);
    }
    Ok(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// What the configured sinks call, as IAM resource patterns.
#[derive(Default)]
struct Needs {
    /// Log groups written, and those the agent may create (and set the retention of).
    groups: BTreeSet<String>,
    created_groups: BTreeSet<String>,
    namespaces: BTreeSet<String>,
    xray: bool,
    parameters: BTreeSet<String>,
}

impl Needs {
    fn of(config: &AgentConfig, scope: &Scope) -> Self {
        let mut needs = Needs::default();
        for sink in config.sinks.values() {
            needs.add(&sink.config, scope);
        }
        needs
    }

    fn add(&mut self, sink: &SinkConfig, scope: &Scope) {
        match sink {
            SinkConfig::CloudWatchLogs(c) => {
                let group = pattern(&c.log_group);
                if c.create_missing {
                    self.created_groups.insert(group.clone());
                }
                self.groups.insert(group);
            }
            SinkConfig::CloudWatchMetrics(c) => match c.mode {
                Mode::PutMetricData => {
                    self.namespaces.insert(pattern(&c.namespace));
                }
                // EMF documents go through an inner CloudWatch Logs sink that creates its group.
                Mode::Emf => {
                    if let Some(g) = &c.log_group {
                        let group = pattern(g);
                        self.created_groups.insert(group.clone());
                        self.groups.insert(group);
                    }
                }
            },
            SinkConfig::XRay(_) => self.xray = true,
            SinkConfig::NewRelic(c) => {
                if let Some(name) = &c.license_key.ssm_parameter {
                    self.parameters.insert(parameter_arn(name, scope));
                }
            }
            // The X-Ray OTLP endpoint is authorised as xray:PutTraceSegments; the Logs one as
            // PutLogEvents into the named group (which must exist: it is not created).
            SinkConfig::AwsOtlp(c) => {
                self.xray = true;
                if let Some(g) = &c.log_group {
                    self.groups.insert(g.clone());
                }
            }
            SinkConfig::Console(_) => {}
        }
    }
}

/// One statement per kind of call, each limited to the resources `needs` names.
fn statements(needs: &Needs, scope: &Scope) -> Vec<Value> {
    let Needs {
        groups,
        created_groups,
        namespaces,
        xray,
        parameters,
    } = needs;
    let Scope {
        partition,
        region,
        account,
    } = scope;
    let group_arn = |g: &str| format!("arn:{partition}:logs:{region}:{account}:log-group:{g}");
    let mut statements = Vec::new();
    if !created_groups.is_empty() {
        statements.push(json!({
            "Sid": "CreateLogGroups",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
            "Resource": created_groups.iter().map(|g| group_arn(g)).collect::<Vec<_>>(),
        }));
    }
    let streams = |groups: &BTreeSet<String>| -> Vec<String> {
        groups
            .iter()
            .map(|g| format!("{}:log-stream:*", group_arn(g)))
            .collect()
    };
    if !created_groups.is_empty() {
        statements.push(json!({
            "Sid": "CreateLogStreams",
            "Effect": "Allow",
            "Action": "logs:CreateLogStream",
            "Resource": streams(created_groups),
        }));
    }
    if !groups.is_empty() {
        statements.push(json!({
            "Sid": "WriteLogStreams",
            "Effect": "Allow",
            // GetLogEvents: after a crash the agent reads a stream's tail to skip what was
            // already delivered.
            "Action": ["logs:PutLogEvents", "logs:GetLogEvents"],
            "Resource": streams(groups),
        }));
    }
    if !namespaces.is_empty() {
        statements.push(json!({
            "Sid": "PutMetricDataInOwnNamespaces",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            // PutMetricData has no resource ARN: the namespace condition is what limits it.
            "Resource": "*",
            "Condition": {"StringLike": {"cloudwatch:namespace": namespaces.iter().collect::<Vec<_>>()}},
        }));
    }
    if *xray {
        statements.push(json!({
            "Sid": "PutTraceSegments",
            "Effect": "Allow",
            "Action": "xray:PutTraceSegments",
            "Resource": "*",
        }));
    }
    if !parameters.is_empty() {
        statements.push(json!({
            "Sid": "ReadNamedParameters",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": parameters.iter().collect::<Vec<_>>(),
        }));
    }
    statements
}

/// A name template as an IAM pattern; templates were validated when the config was loaded.
fn pattern(template: &str) -> String {
    Template::parse(template)
        .map(|t| t.wildcard())
        .unwrap_or_else(|_| template.to_owned())
}

fn parameter_arn(name: &str, scope: &Scope) -> String {
    if name.starts_with("arn:") {
        return name.to_owned();
    }
    format!(
        "arn:{}:ssm:{}:{}:parameter/{}",
        scope.partition,
        scope.region,
        scope.account,
        name.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn policy_for(toml: &str, scope: &Scope) -> Result<Value, NothingToAllow> {
        let config = crate::config::parse(Path::new("agent.toml"), toml).expect("valid config");
        policy(&config, scope)
    }

    /// `sink` read from a file source `shop`.
    fn with_app_log(sink: &str) -> String {
        format!("[sources.shop]\ntype = \"file\"\ninclude = [\"/var/log/app.log\"]\n{sink}")
    }

    const EVERY_SINK: &str = include_str!("config/testdata/every_sink.toml");

    #[test]
    fn every_sink_gets_only_what_it_calls() {
        let scope = Scope {
            region: "eu-west-1".into(),
            account: "123456789012".into(),
            ..Scope::default()
        };
        let p = policy_for(EVERY_SINK, &scope).unwrap();
        assert_eq!(
            p,
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "CreateLogGroups",
                        "Effect": "Allow",
                        "Action": ["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
                        "Resource": ["arn:aws:logs:eu-west-1:123456789012:log-group:/shop/*/*"],
                    },
                    {
                        "Sid": "CreateLogStreams",
                        "Effect": "Allow",
                        "Action": "logs:CreateLogStream",
                        "Resource": ["arn:aws:logs:eu-west-1:123456789012:log-group:/shop/*/*:log-stream:*"],
                    },
                    {
                        "Sid": "WriteLogStreams",
                        "Effect": "Allow",
                        "Action": ["logs:PutLogEvents", "logs:GetLogEvents"],
                        "Resource": ["arn:aws:logs:eu-west-1:123456789012:log-group:/shop/*/*:log-stream:*"],
                    },
                    {
                        "Sid": "PutMetricDataInOwnNamespaces",
                        "Effect": "Allow",
                        "Action": "cloudwatch:PutMetricData",
                        "Resource": "*",
                        "Condition": {"StringLike": {"cloudwatch:namespace": ["Shop/*", "Vigil/SpanMetrics"]}},
                    },
                    {
                        "Sid": "PutTraceSegments",
                        "Effect": "Allow",
                        "Action": "xray:PutTraceSegments",
                        "Resource": "*",
                    },
                    {
                        "Sid": "ReadNamedParameters",
                        "Effect": "Allow",
                        "Action": "ssm:GetParameter",
                        "Resource": ["arn:aws:ssm:eu-west-1:123456789012:parameter/vigil/newrelic-license"],
                    },
                ]
            })
        );
    }

    #[test]
    fn a_group_the_agent_may_not_create_needs_no_create_permissions() {
        let sink = r#"
[sinks.logs]
type = "cloudwatch_logs"
inputs = ["shop"]
log_group = "/fixed/group"
log_stream = "{host}-{module|unknown}"
create_missing = false
"#;
        let p = policy_for(&with_app_log(sink), &Scope::default()).unwrap();
        let statements = p["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0]["Resource"],
            json!(["arn:aws:logs:*:*:log-group:/fixed/group:log-stream:*"])
        );
    }

    #[test]
    fn a_config_without_aws_sinks_has_no_policy() {
        let sink = "[sinks.out]\ntype = \"console\"\ninputs = [\"shop\"]\n";
        let r = policy_for(&with_app_log(sink), &Scope::default());
        assert!(r.is_err());
    }

    #[test]
    fn adjacent_fields_make_one_wildcard() {
        assert_eq!(pattern("/a/{x}{y}/b{z|w}"), "/a/*/b*");
        assert_eq!(pattern("/literal"), "/literal");
    }
}
