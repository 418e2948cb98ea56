//! The endpoints' published limits, checked item by item while encoding (so one bad span is a
//! counted drop, never a refused request that takes the batch with it).

use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::config::{MAX_RESOURCE_SCOPE_BYTES, MAX_SPAN_BYTES};
use crate::event::Resource;
use crate::otlp::Encoder;

/// Timestamps the endpoints take: from 14 days back to 2 hours ahead.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

/// Why an item is dropped before sending (the `vigil_component_errors_total` error name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The span alone is over 200 KB.
    SpanTooLarge,
    /// Its resource and scope together are over 16 KB.
    ResourceTooLarge,
    /// Its time is more than 14 days back or 2 hours ahead.
    TimeOutOfRange,
}

impl Drop {
    pub fn error_name(self) -> &'static str {
        match self {
            Drop::SpanTooLarge => "span_too_large",
            Drop::ResourceTooLarge => "resource_too_large",
            Drop::TimeOutOfRange => "time_out_of_range",
        }
    }
}

/// The size limits of one span, checked on its encoded message before it joins a request.
#[derive(Default)]
pub struct SpanCheck {
    /// The last resource seen and the size of its message (resources repeat batch after batch).
    last_resource: Option<(Arc<Resource>, usize)>,
}

impl SpanCheck {
    pub fn check(
        &mut self,
        encoder: &Encoder,
        resource: Option<&Arc<Resource>>,
        scope: (&str, &str),
        span: &Span,
    ) -> Result<(), Drop> {
        if span.encoded_len() > MAX_SPAN_BYTES {
            return Err(Drop::SpanTooLarge);
        }
        let resource_bytes = match (&self.last_resource, resource) {
            (Some((last, n)), Some(r)) if Arc::ptr_eq(last, r) => *n,
            _ => {
                let n = encoder.resource(resource).encoded_len();
                self.last_resource = resource.map(|r| (Arc::clone(r), n));
                n
            }
        };
        if resource_bytes + scope.0.len() + scope.1.len() > MAX_RESOURCE_SCOPE_BYTES {
            return Err(Drop::ResourceTooLarge);
        }
        Ok(())
    }
}

/// Is `[start_ms, end_ms]` inside the window the endpoints take at `now_ms`?
pub fn in_time_window(start_ms: i64, end_ms: i64, now_ms: i64) -> bool {
    start_ms >= now_ms - MAX_AGE_MS && end_ms <= now_ms + MAX_AHEAD_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_window() {
        let now = 1_000_000_000_000;
        assert!(in_time_window(now - 1000, now, now));
        assert!(!in_time_window(now - MAX_AGE_MS - 1, now, now));
        assert!(!in_time_window(now, now + MAX_AHEAD_MS + 1, now));
    }
}
