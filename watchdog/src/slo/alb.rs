//! ALB metrics are dimensioned by `app/<name>/<id>` and `targetgroup/<name>/<id>`, IDs that
//! only exist once the load balancer does. The spec may name them plainly (`shop-private`,
//! `shop-checkout`); this resolves names to dimension values through ELBv2 once per cycle.

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::Aws;
use crate::error::CallError;
use crate::spec::{Sli, Spec};

/// Name -> CloudWatch dimension value, or why it could not be resolved.
#[derive(Debug, Default)]
pub struct AlbDimensions {
    load_balancers: BTreeMap<String, Result<String, CallError>>,
    target_groups: BTreeMap<String, Result<String, CallError>>,
}

/// A value with a `/` already is a dimension value; anything else is a name to look up.
fn is_name(value: &str) -> bool {
    !value.contains('/')
}

impl AlbDimensions {
    pub fn load_balancer(&self, value: &str) -> Result<String, CallError> {
        lookup(&self.load_balancers, value, "load balancer")
    }

    pub fn target_group(&self, value: &str) -> Result<String, CallError> {
        lookup(&self.target_groups, value, "target group")
    }
}

fn lookup(
    map: &BTreeMap<String, Result<String, CallError>>,
    value: &str,
    what: &str,
) -> Result<String, CallError> {
    if !is_name(value) {
        return Ok(value.to_string());
    }
    map.get(value).cloned().unwrap_or_else(|| {
        Err(CallError::bad_data(format!(
            "{what} {value} was not looked up"
        )))
    })
}

/// `arn:...:loadbalancer/app/<name>/<id>` -> `app/<name>/<id>`.
fn load_balancer_dimension(arn: &str) -> Option<String> {
    arn.split_once(":loadbalancer/")
        .map(|(_, rest)| rest.to_string())
}

/// `arn:...:targetgroup/<name>/<id>` -> `targetgroup/<name>/<id>`.
fn target_group_dimension(arn: &str) -> Option<String> {
    arn.rsplit_once(':')
        .map(|(_, rest)| rest.to_string())
        .filter(|r| r.starts_with("targetgroup/"))
}

/// Looks up every plainly named load balancer and target group used by an SLO.
pub async fn resolve(spec: &Spec, aws: &Aws) -> AlbDimensions {
    let mut lbs = BTreeSet::new();
    let mut tgs = BTreeSet::new();
    for service in spec.services.values() {
        for slo in &service.slos {
            if let Sli::AlbAvailability {
                load_balancer,
                target_group,
            }
            | Sli::AlbLatency {
                load_balancer,
                target_group,
                ..
            } = &slo.sli
            {
                if is_name(load_balancer) {
                    lbs.insert(load_balancer.clone());
                }
                if is_name(target_group) {
                    tgs.insert(target_group.clone());
                }
            }
        }
    }
    let mut out = AlbDimensions::default();
    // One name per call: a batch fails as a whole when any one name is missing.
    for name in lbs {
        let answer = aws
            .elbv2
            .describe_load_balancers()
            .names(&name)
            .send()
            .await;
        let arn = CallError::missing_is_none(answer, |e| e.is_load_balancer_not_found_exception())
            .map(|o| {
                o.and_then(|o| {
                    o.load_balancers()
                        .first()?
                        .load_balancer_arn()
                        .map(str::to_string)
                })
            });
        let value = found("load balancer", &name, arn, load_balancer_dimension);
        out.load_balancers.insert(name, value);
    }
    for name in tgs {
        let answer = aws.elbv2.describe_target_groups().names(&name).send().await;
        let arn = CallError::missing_is_none(answer, |e| e.is_target_group_not_found_exception())
            .map(|o| {
                o.and_then(|o| {
                    o.target_groups()
                        .first()?
                        .target_group_arn()
                        .map(str::to_string)
                })
            });
        let value = found("target group", &name, arn, target_group_dimension);
        out.target_groups.insert(name, value);
    }
    out
}

/// The dimension value of the ARN one lookup found; a name ELBv2 does not know is `NotFound`.
fn found(
    what: &str,
    name: &str,
    arn: Result<Option<String>, CallError>,
    dimension: fn(&str) -> Option<String>,
) -> Result<String, CallError> {
    match arn {
        Ok(arn) => arn
            .as_deref()
            .and_then(dimension)
            .ok_or_else(|| CallError::not_found(format!("{what} {name} not found"))),
        Err(e) => Err(e.context(format!("looking up {what} {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_become_cloudwatch_dimension_values() {
        assert_eq!(
            load_balancer_dimension("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/shop-private/50dc6c495c0c9188").as_deref(),
            Some("app/shop-private/50dc6c495c0c9188")
        );
        assert_eq!(
            target_group_dimension("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-checkout/943f017f100becff").as_deref(),
            Some("targetgroup/shop-checkout/943f017f100becff")
        );
        let dims = AlbDimensions::default();
        assert_eq!(
            dims.target_group("targetgroup/a/1").unwrap(),
            "targetgroup/a/1"
        );
        assert!(
            dims.load_balancer("shop-private")
                .unwrap_err()
                .to_string()
                .contains("not looked up")
        );
    }
}
