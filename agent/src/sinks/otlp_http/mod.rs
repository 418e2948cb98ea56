//! What the two sinks that speak OTLP/HTTP (New Relic, and AWS's OTLP endpoints) share: their
//! HTTP client, their request ([`batch`]), compressing it, reading its answer (the status,
//! `Retry-After`, a partial success, a short description for logs) and checking the
//! `resource_attributes` they both take. How a status is classified stays with each sink.

pub mod batch;

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;

/// `resource_attributes` (added to every exported resource) must have non-empty names.
pub fn check_resource_attributes(
    attributes: &std::collections::BTreeMap<String, String>,
    path: &vigil_common::config_error::KeyPath,
    errs: &mut vigil_common::config_error::Errors<'_>,
) {
    if attributes.keys().any(|k| k.is_empty()) {
        errs.push(
            &path.key("resource_attributes"),
            "attribute names must not be empty",
        );
    }
}

/// gzip at the fastest level: the payload is mostly repeated keys, which compress well anyway.
pub fn gzip(bytes: &[u8]) -> Bytes {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::fast(),
    );
    enc.write_all(bytes).expect("writing to a Vec cannot fail");
    Bytes::from(enc.finish().expect("writing to a Vec cannot fail"))
}

/// The HTTP client of an OTLP/HTTP sink: `timeout` per request, connecting within at most 10 s.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The answer to one export request.
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

impl Answer {
    /// Reads the answer to a sent request; `Err` is the text of a network error (retryable).
    pub async fn read(sent: reqwest::Result<reqwest::Response>) -> Result<Answer, String> {
        // reqwest's error text names the URL, never headers.
        let resp = sent.map_err(|e| format!("{e}"))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = resp.bytes().await.unwrap_or_default();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// `HTTP <status>: <the first 512 bytes of the body>`, for logs and refusal messages.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(512)]);
        format!("HTTP {}: {text}", self.status)
    }
}

/// Rejected items and the message of an OTLP partial-success answer (none when the body is
/// empty or not an OTLP response).
pub fn partial_success(path: &str, body: &[u8]) -> (u64, String) {
    let found = match path {
        "/v1/traces" => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message)),
        "/v1/metrics" => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points, p.error_message)),
        _ => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message)),
    };
    found.map(|(n, m)| (n.max(0) as u64, m)).unwrap_or_default()
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    let ms = when.timestamp_millis() - crate::event::now_ms();
    Some(Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::driver::backoff;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert!(backoff(30, Duration::from_secs(1)) <= Duration::from_secs(1));
    }
}
