//! The AWS clients the watchdog uses, built once from the standard SDK configuration chain.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_sns::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use crate::iam::Operation;

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
    /// Clients from `AWS_REGION`, `AWS_ENDPOINT_URL`, the credentials chain, ... Every client
    /// refuses operations outside `allowed` (and outside `iam::OPERATIONS` in any case).
    pub async fn load(allowed: Allowed) -> anyhow::Result<Aws> {
        let config = vigil_common::aws::load().await;
        let guard = OperationGuard(std::sync::Arc::new(allowed));
        macro_rules! client {
            ($sdk:ident) => {
                $sdk::Client::from_conf(
                    $sdk::config::Builder::from(&config)
                        .interceptor(guard.clone())
                        .build(),
                )
            };
        }
        Ok(Aws {
            cloudwatch: client!(aws_sdk_cloudwatch),
            autoscaling: client!(aws_sdk_autoscaling),
            elbv2: client!(aws_sdk_elasticloadbalancingv2),
            rds: client!(aws_sdk_rds),
            dynamodb: client!(aws_sdk_dynamodb),
            ssm: client!(aws_sdk_ssm),
            sns: client!(aws_sdk_sns),
            ses: client!(aws_sdk_sesv2),
            eventbridge: client!(aws_sdk_eventbridge),
            http: reqwest::Client::builder()
                .user_agent(concat!("vigil-watchdog/", env!("CARGO_PKG_VERSION")))
                // Synthetic checks must not follow a redirect to a healthy-looking page.
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }
}

/// Which operations the clients may call.
#[derive(Debug)]
pub enum Allowed {
    /// Those the generated IAM policy grants for the spec (Lambda, `check`): a call outside
    /// them fails here the way AccessDenied would fail it in AWS.
    Granted(BTreeSet<Operation>),
    /// Any operation in the table (local setup such as `create-state-table`).
    AnyInTable,
}

/// Keeps the calls and the IAM table from drifting: an operation that is not in
/// `iam::OPERATIONS`, or not granted for this spec, fails before it is sent, naming itself.
#[derive(Clone, Debug)]
struct OperationGuard(std::sync::Arc<Allowed>);

impl Intercept for OperationGuard {
    fn name(&self) -> &'static str {
        "vigil-operation-guard"
    }

    // Not read_before_execution: client interceptors run that before the operation's own
    // configuration (which stores its Metadata) is applied.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Err(
                NotGranted("the SDK did not name the operation (no Metadata)".into()).into(),
            );
        };
        let Some(op) = Operation::from_sdk(meta.service(), meta.name()) else {
            return Err(NotGranted(format!(
                "{} {} is not in the watchdog's IAM table (watchdog/src/iam): add its row",
                meta.service(),
                meta.name()
            ))
            .into());
        };
        match &*self.0 {
            Allowed::Granted(ops) if !ops.contains(&op) => Err(NotGranted(format!(
                "{} is not granted by the IAM policy generated for this spec",
                op.action()
            ))
            .into()),
            _ => Ok(()),
        }
    }
}

/// The operation guard's refusal: a type, so that `error::CallError` finds it among an SDK
/// error's causes and calls it denied.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotGranted(String);

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
pub use vigil_common::error_text::chain as error_chain;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{CallError, ErrorKind};

    /// The guard's refusal travels inside the SDK's error; `CallError` finds it and calls it
    /// denied, as AWS's AccessDenied would be.
    #[tokio::test]
    async fn a_call_the_policy_does_not_grant_is_denied_before_it_is_sent() {
        use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_sns::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            // Never reached: the guard refuses before anything is sent.
            .endpoint_url("http://127.0.0.1:9")
            .interceptor(OperationGuard(std::sync::Arc::new(Allowed::Granted(
                BTreeSet::new(),
            ))))
            .build();
        let refused = aws_sdk_sns::Client::from_conf(config)
            .publish()
            .topic_arn("arn:aws:sns:us-east-1:123456789012:oncall")
            .message("m")
            .send()
            .await
            .unwrap_err();
        let error = CallError::from_sdk(refused);
        assert_eq!(error.kind, ErrorKind::Denied, "{error}");
        assert!(
            error.to_string().contains("sns:Publish is not granted"),
            "{error}"
        );
    }
}
