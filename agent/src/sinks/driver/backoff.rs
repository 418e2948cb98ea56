//! How long to wait between attempts: full-jitter exponential backoff, so many agents recovering
//! from one outage do not retry in step.

use std::time::Duration;

/// Uniform in [10 ms, min(cap, 100 ms × 2^attempt)].
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(16))
        .min(cap);
    ceiling
        .mul_f64(fastrand::f64())
        .max(Duration::from_millis(10))
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
