//! What every network sink does between attempts: wait with full-jitter exponential backoff
//! (so many agents recovering from one outage do not retry in step), and describe an AWS error
//! in one short line for the log.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};

/// Uniform in [10 ms, min(cap, 100 ms × 2^attempt)].
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(16))
        .min(cap);
    ceiling
        .mul_f64(fastrand::f64())
        .max(Duration::from_millis(10))
}

/// `Code: message` when the service answered, else the transport error.
pub fn describe<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> String {
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("")),
        None => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_but_stays_under_its_cap() {
        for attempt in 0..40 {
            let d = backoff(attempt, Duration::from_secs(5));
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_secs(5));
        }
    }
}
