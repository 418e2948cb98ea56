//! `infrastructure:` in the spec: the AWS resources the minimum monitoring set watches (the
//! infrastructure dashboard and the CloudWatch alarms of `render`), and the CloudWatch
//! dimension values of the load balancers SLOs name plainly (dashboards and alarms cannot look
//! names up at view time the way the watchdog does each cycle).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Infrastructure {
    /// Region of the dashboards' and alarms' metrics (CloudFront and its WAF are always
    /// read in us-east-1, where AWS publishes them).
    #[serde(default = "default_region")]
    pub region: String,
    /// Account id: OpenSearch metrics are dimensioned by it (`ClientId`).
    #[serde(default)]
    pub account_id: Option<String>,
    /// New Relic account the generated NerdGraph dashboards query.
    #[serde(default)]
    pub newrelic_account_id: Option<u64>,
    /// Load balancer name -> its CloudWatch dimension value and its target groups'.
    #[serde(default)]
    pub load_balancers: BTreeMap<String, LoadBalancer>,
    /// CloudFront distribution ids.
    #[serde(default)]
    pub cloudfront_distributions: Vec<String>,
    #[serde(default)]
    pub web_acls: Vec<WebAcl>,
    /// Work queues and their dead-letter queues.
    #[serde(default)]
    pub queues: Vec<Queue>,
    /// Aurora cluster identifiers.
    #[serde(default)]
    pub aurora_clusters: Vec<String>,
    #[serde(default)]
    pub dynamodb_tables: Vec<String>,
    /// ElastiCache (Redis) cache cluster ids, e.g. `shop-cart-redis-001`.
    #[serde(default)]
    pub redis_clusters: Vec<String>,
    #[serde(default)]
    pub opensearch_domains: Vec<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    /// `app/<name>/<id>`: the ARN's part after `loadbalancer/`.
    pub dimension: String,
    /// Target group name -> `targetgroup/<name>/<id>`.
    #[serde(default)]
    pub target_groups: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebAclScope {
    /// Attached to CloudFront: metrics in us-east-1 without a `Region` dimension.
    Cloudfront,
    /// Attached to an ALB: metrics carry the `Region` dimension.
    Regional,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebAcl {
    pub name: String,
    pub scope: WebAclScope,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub queue: String,
    #[serde(default)]
    pub dlq: Option<String>,
}

impl Infrastructure {
    /// Problems as (key, message), for the loader to locate in its file.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, lb) in &self.load_balancers {
            if !lb.dimension.starts_with(&format!("app/{name}/")) {
                out.push((
                    format!("infrastructure.load_balancers.{name}.dimension"),
                    format!(
                        "`{}` is not this load balancer's CloudWatch dimension `app/{name}/<id>`",
                        lb.dimension
                    ),
                ));
            }
            for (tg, value) in &lb.target_groups {
                if !value.starts_with(&format!("targetgroup/{tg}/")) {
                    out.push((
                        format!("infrastructure.load_balancers.{name}.target_groups.{tg}"),
                        format!(
                            "`{value}` is not this target group's CloudWatch dimension `targetgroup/{tg}/<id>`"
                        ),
                    ));
                }
            }
        }
        if !self.opensearch_domains.is_empty() && self.account_id.is_none() {
            out.push((
                "infrastructure.account_id".into(),
                "OpenSearch metrics are dimensioned by the account id (ClientId): give `account_id`"
                    .into(),
            ));
        }
        if let Some(id) = &self.account_id
            && !(id.len() == 12 && id.chars().all(|c| c.is_ascii_digit()))
        {
            out.push((
                "infrastructure.account_id".into(),
                format!("`{id}` is not a 12-digit AWS account id"),
            ));
        }
        out
    }
}
