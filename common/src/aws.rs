//! AWS SDK configuration from the SDK's standard chain only: `AWS_REGION`, `AWS_ENDPOINT_URL`
//! (and the per-service `AWS_ENDPOINT_URL_<SERVICE>`), profiles, and the credentials chain
//! (environment, web identity, ECS, IMDSv2). Pointing Vigil at a local stand-in such as moto
//! therefore needs no Vigil-specific flag.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the shared SDK configuration.
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
