//! Why a call (to AWS, or the watchdog's own time limits) gave no usable answer. Checks, the
//! metric reads, ALB name lookups and alert state all fail with a `CallError`: a kind the code
//! can branch on, and the text an operator reads in the finding or the log.

use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};

use vigil_common::aws_error::{Failure, failure};

use crate::aws::{NotGranted, error_text};

/// What kind of failure it was, as far as the watchdog tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Access denied by IAM, or refused before sending because the policy generated for the
    /// spec does not grant the operation.
    Denied,
    /// Throttled, after the SDK's own retries.
    Throttled,
    /// No answer: connection refused, DNS, TLS, a timeout on the wire, or the service's own
    /// internal error.
    Unreachable,
    /// An answer that cannot be read or used (malformed, missing or inconsistent data).
    BadData,
    /// The resource named in the spec does not exist.
    NotFound,
    /// The service refused the request for another reason (validation, conflict, ...).
    Refused,
    /// The check's own time limit ran out.
    TimedOut,
    /// Not tried: the invocation's deadline came first.
    Skipped,
}

/// A failed call: its kind, and one line for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub kind: ErrorKind,
    message: String,
}

impl CallError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CallError {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        CallError::new(ErrorKind::BadData, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        CallError::new(ErrorKind::NotFound, message)
    }

    /// Any AWS SDK error (every service crate shares smithy's error types), classified.
    pub fn from_sdk<E, R>(error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        CallError::new(sdk_error_kind(&error), error_text(&error))
    }

    /// An SDK answer in which a missing resource is an answer (`None`), not a failure.
    pub fn missing_is_none<T, E, R>(
        answer: Result<T, SdkError<E, R>>,
        is_missing: impl Fn(&E) -> bool,
    ) -> Result<Option<T>, CallError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match answer {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.as_service_error().is_some_and(is_missing) => Ok(None),
            Err(e) => Err(CallError::from_sdk(e)),
        }
    }

    /// The same error with `context` in front of its text ("looking up target group x: ...").
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        CallError::new(self.kind, format!("{context}: {}", self.message))
    }
}

fn sdk_error_kind<E, R>(error: &SdkError<E, R>) -> ErrorKind
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    // The operation guard refuses before anything is sent.
    if !matches!(error, SdkError::ServiceError(_)) && not_granted(error) {
        return ErrorKind::Denied;
    }
    match failure(error) {
        Failure::Denied => ErrorKind::Denied,
        Failure::Throttled => ErrorKind::Throttled,
        Failure::Unavailable => ErrorKind::Unreachable,
        Failure::BadResponse => ErrorKind::BadData,
        Failure::Refused => ErrorKind::Refused,
    }
}

/// Whether the operation guard's refusal is somewhere in the error's causes.
fn not_granted(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<NotGranted>().is_some() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sns::error::ErrorMetadata;
    use aws_sdk_sns::operation::publish::PublishError;
    use aws_smithy_runtime_api::client::result::ConnectorError;

    fn answered(code: &str) -> CallError {
        let meta = ErrorMetadata::builder().code(code).message("why").build();
        CallError::from_sdk(SdkError::<_, ()>::service_error(
            PublishError::generic(meta),
            (),
        ))
    }

    #[test]
    fn sdk_errors_are_classified_by_their_code_or_their_failure() {
        assert_eq!(answered("AccessDenied").kind, ErrorKind::Denied);
        assert_eq!(answered("ThrottlingException").kind, ErrorKind::Throttled);
        assert_eq!(answered("Throttling").kind, ErrorKind::Throttled);
        assert_eq!(answered("InternalFailure").kind, ErrorKind::Unreachable);
        assert_eq!(answered("InvalidParameter").kind, ErrorKind::Refused);
        assert_eq!(answered("Throttling").to_string(), "Throttling: why");
        let refused = ConnectorError::io("connection refused".into());
        let unreachable =
            CallError::from_sdk(SdkError::<PublishError, ()>::dispatch_failure(refused));
        assert_eq!(unreachable.kind, ErrorKind::Unreachable);
        assert!(
            unreachable.to_string().contains("connection refused"),
            "{unreachable}"
        );
        let context = answered("Throttling").context("scanning t");
        assert_eq!(
            (context.kind, context.to_string()),
            (
                ErrorKind::Throttled,
                "scanning t: Throttling: why".to_string()
            )
        );
    }
}
