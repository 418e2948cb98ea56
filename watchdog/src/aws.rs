//! The AWS clients the watchdog uses, built once from the standard SDK configuration chain.

use std::time::Duration;

use crate::metrics::aws_error_text;

pub struct Aws {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub rds: aws_sdk_rds::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub http: reqwest::Client,
}

impl Aws {
    /// Clients from `AWS_REGION`, `AWS_ENDPOINT_URL`, the credentials chain, ...
    pub async fn load() -> anyhow::Result<Aws> {
        let config = vigil_common::aws::load().await;
        Ok(Aws {
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            rds: aws_sdk_rds::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            http: reqwest::Client::builder()
                .user_agent(concat!("vigil-watchdog/", env!("CARGO_PKG_VERSION")))
                // Synthetic checks must not follow a redirect to a healthy-looking page.
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }
}

/// One-line text of any SDK error (all service crates share the smithy error types).
pub fn error_text<E, R>(error: &aws_sdk_cloudwatch::error::SdkError<E, R>) -> String
where
    E: aws_sdk_cloudwatch::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    aws_error_text(error)
}
