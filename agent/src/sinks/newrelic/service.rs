//! Sending one request to New Relic until it is accepted: `429` and `503` wait for
//! `Retry-After` (capped at `max_backoff_ms`), other 5xx, 408, timeouts and network errors back
//! off exponentially with full jitter; any other 4xx is a permanent refusal (counted as
//! rejected and logged with New Relic's answer). A 2xx may report a partial success, whose
//! rejected items are counted too.

use crate::sinks::retry::backoff;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};

use super::secret::LicenseKey;
use crate::event::Ack;
use crate::sinks::otlp_http::{self, Answer, partial_success};
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
        let client = otlp_http::client(timeout)?;
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
        let answer = match Answer::read(sent).await {
            Ok(a) => a,
            Err(why) => return Verdict::Retry { after: None, why },
        };
        if answer.status.is_success() {
            let (rejected, message) = partial_success(req.path, &answer.body);
            return Verdict::Accepted { rejected, message };
        }
        let (retry_after, why) = (answer.retry_after, answer.describe());
        match answer.status {
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
