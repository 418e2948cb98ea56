//! Sending one request to New Relic until it is accepted: `429` and `503` wait for
//! `Retry-After` (capped at `max_backoff_ms`), other 5xx, 408, timeouts and network errors back
//! off exponentially with full jitter; any other 4xx is a permanent refusal (counted as
//! rejected and logged with New Relic's answer). A 2xx may report a partial success, whose
//! rejected items are counted too.

use crate::sinks::retry::backoff;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

use super::secret::LicenseKey;
use crate::event::Ack;
use crate::telemetry::{Outcome, Stats};

/// A gzip-compressed export request and the batches it carries.
pub struct Request {
    pub path: &'static str,
    pub body: Bytes,
    pub items: usize,
    pub acks: Vec<Ack>,
}

pub struct Service {
    name: String,
    client: reqwest::Client,
    endpoint: String,
    key: LicenseKey,
    max_backoff: Duration,
    stats: Stats,
}

enum Verdict {
    Accepted {
        rejected: u64,
        message: String,
    },
    Retry {
        after: Option<Duration>,
        why: String,
    },
    Refused {
        why: String,
    },
}

impl Service {
    pub fn new(
        name: &str,
        endpoint: String,
        key: LicenseKey,
        timeout: Duration,
        max_backoff: Duration,
        stats: Stats,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            name: name.to_owned(),
            client,
            endpoint,
            key,
            max_backoff,
            stats,
        })
    }

    /// Delivers `req`, however long it takes; acknowledges its batches once New Relic has
    /// answered for good (accepted, or refused the content).
    pub async fn deliver(&self, req: Request) {
        let url = format!("{}{}", self.endpoint, req.path);
        let mut attempt: u32 = 0;
        loop {
            let verdict = self.attempt(&url, &req).await;
            match verdict {
                Verdict::Accepted { rejected, message } => {
                    let rejected = rejected.min(req.items as u64);
                    if rejected > 0 {
                        self.stats.count(Outcome::Rejected, rejected);
                        self.stats.error("items_rejected");
                        tracing::warn!(sink = %self.name, path = req.path, rejected, message = %message,
                            "New Relic accepted the request but rejected some items");
                    }
                    self.stats.count(Outcome::Sent, req.items as u64 - rejected);
                    break;
                }
                Verdict::Refused { why } => {
                    self.stats.count(Outcome::Rejected, req.items as u64);
                    self.stats.error("request_refused");
                    tracing::error!(sink = %self.name, path = req.path, items = req.items, error = %why,
                        "New Relic refused the request; its items are dropped (not retried)");
                    break;
                }
                Verdict::Retry { after, why } => {
                    attempt += 1;
                    self.stats.count(Outcome::Retried, req.items as u64);
                    self.stats.error("request_failed");
                    let delay = match after {
                        Some(d) => d.min(self.max_backoff),
                        None => backoff(attempt, self.max_backoff),
                    };
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(sink = %self.name, path = req.path, attempt,
                            retry_in_ms = delay.as_millis() as u64, error = %why,
                            "sending to New Relic failed; will retry");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
        for ack in req.acks {
            ack.delivered();
        }
    }

    async fn attempt(&self, url: &str, req: &Request) -> Verdict {
        let sent = self
            .client
            .post(url)
            .header("api-key", self.key.header())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_ENCODING, "gzip")
            .body(req.body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                // reqwest's error text names the URL, never headers.
                return Verdict::Retry {
                    after: None,
                    why: format!("{e}"),
                };
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            let (rejected, message) = partial_success(req.path, &body);
            return Verdict::Accepted { rejected, message };
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        let why = format!("HTTP {status}: {text}");
        match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Verdict::Retry {
                after: retry_after,
                why,
            },
            s if s.is_server_error() => Verdict::Retry {
                after: retry_after,
                why,
            },
            _ => Verdict::Refused { why },
        }
    }
}

/// Rejected items and the message of an OTLP partial-success answer (none when the body is
/// empty or not an OTLP response).
pub(crate) fn partial_success(path: &str, body: &[u8]) -> (u64, String) {
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
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
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
