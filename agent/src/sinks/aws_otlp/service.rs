//! Sending one request to an AWS OTLP endpoint until it is answered for good, signed with SigV4
//! for each attempt (fresh time, current credentials).
//!
//! 429, 408, 5xx, timeouts and network errors back off (full jitter, `Retry-After` honoured up to
//! `max_backoff_ms`) and retry forever; 403 does too, after dropping the cached credentials (an
//! expired or rotated key); 400 and 413 halve the request until the refused item is isolated
//! and counted; other 4xx refuse the request (counted). A 2xx may carry a partial success, whose
//! rejected items are counted.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use reqwest::StatusCode;

use super::config::Signal;
use super::credentials::CredentialsCache;
use super::request;
use crate::event::Ack;
use crate::otlp::Encoded;
use crate::sinks::otlp_http::{self, Answer, gzip, partial_success};
use crate::sinks::retry::backoff;
use crate::telemetry::{Outcome, Stats};

/// An export request and the batches it carries.
pub struct Request {
    pub signal: Signal,
    pub message: Encoded,
    pub items: usize,
    pub acks: Vec<Ack>,
}

pub struct Service {
    name: String,
    client: reqwest::Client,
    region: String,
    traces_url: String,
    logs_url: String,
    /// `x-aws-log-group`, `x-aws-log-stream`.
    log_destination: Option<(String, String)>,
    credentials: CredentialsCache,
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
    /// The content was refused: halve to isolate it.
    Invalid {
        why: String,
    },
    Refused {
        why: String,
    },
}

pub struct Endpoints {
    pub region: String,
    pub traces_url: String,
    pub logs_url: String,
    pub log_destination: Option<(String, String)>,
}

impl Service {
    pub fn new(
        name: &str,
        endpoints: Endpoints,
        credentials: CredentialsCache,
        timeout: Duration,
        max_backoff: Duration,
        stats: Stats,
    ) -> anyhow::Result<Self> {
        let client = otlp_http::client(timeout)?;
        Ok(Self {
            name: name.to_owned(),
            client,
            region: endpoints.region,
            traces_url: endpoints.traces_url,
            logs_url: endpoints.logs_url,
            log_destination: endpoints.log_destination,
            credentials,
            max_backoff,
            stats,
        })
    }

    /// Delivers `req`, however long it takes; acknowledges its batches once every part of it
    /// was answered for good.
    pub async fn deliver(&self, req: Request) {
        let mut queue = VecDeque::from([req]);
        while let Some(req) = queue.pop_front() {
            let body = gzip(&req.message.encode_to_vec());
            let mut attempt: u32 = 0;
            loop {
                match self.attempt(&req, &body).await {
                    Verdict::Accepted { rejected, message } => {
                        let rejected = rejected.min(req.items as u64);
                        if rejected > 0 {
                            self.stats.count(Outcome::Rejected, rejected);
                            self.stats.error("items_rejected");
                            tracing::warn!(sink = %self.name, signal = req.signal.service(), rejected,
                                message = %message, "AWS accepted the request but rejected some items");
                        }
                        self.stats.count(Outcome::Sent, req.items as u64 - rejected);
                        for ack in req.acks {
                            ack.delivered();
                        }
                        break;
                    }
                    Verdict::Invalid { why } if req.items > 1 => {
                        tracing::debug!(sink = %self.name, items = req.items, error = %why,
                            "request refused; halving it to isolate the refused item");
                        let half = req.items / 2;
                        let (a, b) = request::split(req.message, half);
                        let acks_b = req.acks.to_vec();
                        queue.push_front(Request {
                            signal: req.signal,
                            items: request::items(&b),
                            message: b,
                            acks: acks_b,
                        });
                        queue.push_front(Request {
                            signal: req.signal,
                            items: request::items(&a),
                            message: a,
                            acks: req.acks,
                        });
                        break;
                    }
                    Verdict::Invalid { why } | Verdict::Refused { why } => {
                        self.stats.count(Outcome::Rejected, req.items as u64);
                        self.stats.error("request_refused");
                        tracing::error!(sink = %self.name, signal = req.signal.service(), items = req.items,
                            error = %why, "AWS refused the request; its items are dropped (not retried)");
                        for ack in req.acks {
                            ack.delivered();
                        }
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
                            tracing::warn!(sink = %self.name, signal = req.signal.service(), attempt,
                                retry_in_ms = delay.as_millis() as u64, error = %why,
                                "sending to AWS failed; will retry");
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }

    async fn attempt(&self, req: &Request, body: &Bytes) -> Verdict {
        let url = match req.signal {
            Signal::Traces => &self.traces_url,
            Signal::Logs => &self.logs_url,
        };
        let mut headers: Vec<(&'static str, &str)> = vec![
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ];
        if req.signal == Signal::Logs
            && let Some((group, stream)) = &self.log_destination
        {
            headers.push(("x-aws-log-group", group));
            headers.push(("x-aws-log-stream", stream));
        }
        let credentials = match self.credentials.get().await {
            Ok(c) => c,
            Err(why) => {
                return Verdict::Retry {
                    after: None,
                    why: format!("no AWS credentials: {why}"),
                };
            }
        };
        let identity: Identity = credentials.into();
        let signed = match sign_headers(
            &self.region,
            req.signal.service(),
            url,
            &headers,
            body,
            &identity,
        ) {
            Ok(s) => s,
            Err(why) => return Verdict::Refused { why },
        };
        let mut builder = self.client.post(url.as_str()).body(body.clone());
        for (k, v) in headers
            .iter()
            .copied()
            .chain(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            builder = builder.header(k, v);
        }
        let answer = match Answer::read(builder.send().await).await {
            Ok(a) => a,
            Err(why) => return Verdict::Retry { after: None, why },
        };
        if answer.status.is_success() {
            let (rejected, message) = partial_success(req.signal.path(), &answer.body);
            return Verdict::Accepted { rejected, message };
        }
        let (retry_after, why) = (answer.retry_after, answer.describe());
        match answer.status {
            StatusCode::FORBIDDEN => {
                // An expired or rotated key: ask the chain again before the next attempt.
                self.credentials.invalidate().await;
                Verdict::Retry { after: None, why }
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Verdict::Retry {
                after: retry_after,
                why,
            },
            s if s.is_server_error() => Verdict::Retry {
                after: retry_after,
                why,
            },
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Verdict::Invalid { why },
            _ => Verdict::Refused { why },
        }
    }
}

/// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for a POST of
/// `body` with `headers` to `url`.
pub fn sign_headers(
    region: &str,
    service: &str,
    url: &str,
    headers: &[(&'static str, &str)],
    body: &[u8],
    identity: &Identity,
) -> Result<Vec<(String, String)>, String> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign a request to {url}: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("signing failed: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}
