//! The AWS clients the watchdog uses, built once from the standard SDK configuration chain.

use std::time::Duration;

pub struct Aws {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub rds: aws_sdk_rds::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sns: aws_sdk_sns::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
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
            ssm: aws_sdk_ssm::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            ses: aws_sdk_sesv2::Client::new(&config),
            eventbridge: aws_sdk_eventbridge::Client::new(&config),
            http: reqwest::Client::builder()
                .user_agent(concat!("vigil-watchdog/", env!("CARGO_PKG_VERSION")))
                // Synthetic checks must not follow a redirect to a healthy-looking page.
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }
}

/// The most useful one-line text of any SDK error (all service crates share smithy's error
/// types): the service's code and message, or the whole source chain of a transport error.
pub fn error_text<E, R>(error: &aws_sdk_cloudwatch::error::SdkError<E, R>) -> String
where
    E: aws_sdk_cloudwatch::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_cloudwatch::error::SdkError;
    match error {
        SdkError::ServiceError(e) => {
            let err = e.err();
            match (err.code(), err.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_string(),
                _ => format!("{err}"),
            }
        }
        // The top-level text ("dispatch failure") says little; the causes say why.
        other => error_chain(other),
    }
}

/// An error and all its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
