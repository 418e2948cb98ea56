//! `type = "enrich"`: attributes every event of a pipeline should carry.
//!
//! Static attributes (module, environment, ...) come from the config. Host attributes come from
//! the machine: `host` always, and on EC2 `instance_id`, `availability_zone`, `region` and
//! `autoscaling_group` from instance metadata (IMDSv2, with a short timeout so the agent starts
//! just as fast off EC2, where they are simply absent). As a sidecar on ECS (EC2 or Fargate),
//! the task metadata endpoint v4 adds cluster, task ARN, family, revision, launch type, zone and
//! container name ([`ecs`]). Existing attributes are not overwritten.

mod ecs;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::event::{Attributes, Event};
use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::ComponentConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Attributes added to every event, e.g. `{ module = "checkout", env = "prod" }`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Ask EC2 instance metadata (IMDSv2) for instance, zone, region and Auto Scaling group.
    #[serde(default = "config_default::yes")]
    pub ec2_metadata: bool,
    /// Ask the ECS task metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`, set by ECS in
    /// every container) for cluster, task ARN, family, revision, zone and container name.
    #[serde(default = "config_default::yes")]
    pub ecs_metadata: bool,
    /// Time allowed for all metadata requests together (EC2 and ECS each).
    #[serde(default = "config_default::u64::<1_000>")]
    pub imds_timeout_ms: u64,
}

impl ComponentConfig for EnrichConfig {
    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        for k in self.attributes.keys() {
            if k.is_empty() {
                errs.push(&path.key("attributes"), "attribute names must not be empty");
            }
        }
        errs.positive(path, &[("imds_timeout_ms", self.imds_timeout_ms)]);
    }
}

#[derive(Debug)]
pub struct Enrich {
    attributes: Attributes,
}

impl Enrich {
    pub async fn new(config: &EnrichConfig) -> Self {
        let mut attributes: Attributes = config
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        if let Some(host) = hostname() {
            attributes.entry("host").or_insert(host.into());
        }
        if config.ecs_metadata {
            let uri = std::env::var(ecs::URI_VAR).ok();
            for (k, v) in ecs::metadata(uri, Duration::from_millis(config.imds_timeout_ms)).await {
                attributes.entry(k).or_insert(v.into());
            }
        }
        if config.ec2_metadata {
            for (k, v) in ec2_metadata(Duration::from_millis(config.imds_timeout_ms)).await {
                attributes.entry(k).or_insert(v.into());
            }
        }
        Self { attributes }
    }

    pub fn process(&self, events: &mut [Event]) {
        for event in events {
            let Event::Log(log) = event else { continue };
            for (k, v) in &self.attributes {
                if !log.attributes.contains_key(k) {
                    log.attributes.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Instance attributes from IMDSv2; empty off EC2, when disabled by the SDK's standard
/// `AWS_EC2_METADATA_DISABLED`, or when metadata does not answer in time.
async fn ec2_metadata(timeout: Duration) -> Vec<(&'static str, String)> {
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Vec::new();
    }
    // The SDK's client does the IMDSv2 token dance and honours
    // AWS_EC2_METADATA_SERVICE_ENDPOINT.
    let client = aws_config::imds::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .max_attempts(1)
        .build();
    let query = async {
        let mut found = Vec::new();
        let paths = [
            ("instance_id", "/latest/meta-data/instance-id"),
            (
                "availability_zone",
                "/latest/meta-data/placement/availability-zone",
            ),
            ("region", "/latest/meta-data/placement/region"),
            // Present when instance metadata tags are enabled on the instance.
            (
                "autoscaling_group",
                "/latest/meta-data/tags/instance/aws:autoscaling:groupName",
            ),
        ];
        for (key, path) in paths {
            match client.get(path).await {
                Ok(v) => found.push((key, v.as_ref().to_owned())),
                // Off EC2 the first request fails: do not wait on the others.
                Err(e) if key == "instance_id" => {
                    tracing::info!(error = %e, "no EC2 instance metadata (not on EC2?): host attributes only");
                    break;
                }
                Err(e) => tracing::debug!(path, error = %e, "instance metadata not available"),
            }
        }
        found
    };
    match tokio::time::timeout(timeout, query).await {
        Ok(found) => found,
        Err(_) => {
            tracing::info!(
                timeout_ms = timeout.as_millis() as u64,
                "EC2 instance metadata did not answer in time: host attributes only"
            );
            Vec::new()
        }
    }
}
