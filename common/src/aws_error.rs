//! What an AWS SDK error says, written once for the agent's sinks and the watchdog's checks:
//! one line of text for people, and the kind of failure for code to branch on. Every service
//! crate shares smithy's error types, so these work for any of them.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure a call met, as far as the codes AWS services answer tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The caller is not allowed (IAM, or credentials that are expired or unknown).
    Denied,
    /// The caller goes too fast.
    Throttled,
    /// No usable answer: connection refused, DNS, TLS, a timeout, or the service's own internal
    /// error. Worth trying again.
    Unavailable,
    /// An answer that could not be read.
    BadResponse,
    /// The service refused the request for another reason; [`code`] says which.
    Refused,
}

/// Error codes AWS services answer when a caller is not allowed.
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// Error codes AWS services answer when a caller goes too fast.
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
];

/// Error codes for the service's own failures.
const UNAVAILABLE: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServiceError",
    "InternalServiceFault",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// The kind of failure of any SDK error.
pub fn failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Failure {
    match error {
        SdkError::ServiceError(e) => match e.err().code() {
            Some(code) if DENIED.contains(&code) => Failure::Denied,
            Some(code) if THROTTLED.contains(&code) => Failure::Throttled,
            Some(code) if UNAVAILABLE.contains(&code) => Failure::Unavailable,
            _ => Failure::Refused,
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Failure::Unavailable,
        SdkError::ResponseError(_) => Failure::BadResponse,
        _ => Failure::Refused,
    }
}

/// The service's error code, when it answered with one.
pub fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    match error {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// The most useful one-line text of any SDK error: the service's code and message, or the
/// whole source chain of a transport error (whose top-level text, "dispatch failure", says
/// little).
pub fn error_text<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(e) => {
            let err = e.err();
            match (err.code(), err.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_string(),
                _ => format!("{err}"),
            }
        }
        other => error_chain(other),
    }
}

/// An error and all its causes on one line.
pub use crate::error_text::chain as error_chain;
