//! Talking to X-Ray: PutTraceSegments with up to 50 documents. Throttling, 5xx, timeouts and
//! network errors are retried with full-jitter exponential backoff until the call succeeds;
//! documents X-Ray returns as unprocessed are sent again (a few times, then counted as
//! rejected); a call refused as invalid is halved until the document at fault is isolated.

use crate::sinks::retry::{backoff, describe};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use aws_sdk_xray::Client;
use aws_sdk_xray::config::retry::RetryConfig;
use aws_sdk_xray::config::timeout::TimeoutConfig;
use aws_sdk_xray::error::ProvideErrorMetadata;

use super::config::XRayConfig;
use crate::event::Ack;
use crate::telemetry::{Outcome, Stats};

/// Documents for one call, with the acknowledgements they complete.
#[derive(Debug, Default)]
pub struct Request {
    /// (segment id, JSON document)
    pub docs: Vec<(String, String)>,
    pub acks: Vec<Ack>,
}

impl Request {
    /// Splits in two halves; both keep a share of every ack.
    fn split(mut self) -> (Request, Request) {
        let tail = self.docs.split_off(self.docs.len() / 2);
        let acks_b = self.acks.to_vec();
        let b = Request {
            docs: tail,
            acks: acks_b,
        };
        (self, b)
    }
}

pub struct Service {
    name: String,
    client: Client,
    max_backoff: Duration,
    unprocessed_retries: u32,
    stats: Stats,
}

impl Service {
    pub async fn new(name: &str, config: &XRayConfig, stats: Stats) -> Self {
        let sdk = vigil_common::aws::load().await;
        // Retries are ours (never give up on throttling; retry only unprocessed documents).
        let conf = aws_sdk_xray::config::Builder::from(&sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(config.request_timeout_ms))
                    .build(),
            )
            .build();
        Self {
            name: name.to_owned(),
            client: Client::from_conf(conf),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            unprocessed_retries: config.unprocessed_retries,
            stats,
        }
    }

    /// Delivers one request, however long it takes; only documents X-Ray refuses (counted and
    /// logged) are left out. Then its acks are delivered.
    pub async fn deliver(&self, req: Request) {
        let mut queue = VecDeque::from([req]);
        while let Some(mut req) = queue.pop_front() {
            let mut attempt: u32 = 0;
            let mut unprocessed_rounds: u32 = 0;
            while !req.docs.is_empty() {
                let result = self
                    .client
                    .put_trace_segments()
                    .set_trace_segment_documents(Some(
                        req.docs.iter().map(|(_, d)| d.clone()).collect(),
                    ))
                    .send()
                    .await;
                match result {
                    Ok(out) => {
                        attempt = 0;
                        let failed: HashSet<&str> = out
                            .unprocessed_trace_segments()
                            .iter()
                            .filter_map(|u| u.id())
                            .collect();
                        let before = req.docs.len();
                        let docs = std::mem::take(&mut req.docs);
                        let (again, done): (Vec<_>, Vec<_>) = docs
                            .into_iter()
                            .partition(|(id, _)| failed.contains(id.as_str()));
                        self.stats.count(Outcome::Sent, done.len() as u64);
                        if again.is_empty() {
                            break;
                        }
                        unprocessed_rounds += 1;
                        self.stats.error("unprocessed_segments");
                        if let Some(u) = out.unprocessed_trace_segments().first() {
                            tracing::warn!(sink = %self.name, unprocessed = again.len(), of = before,
                                code = u.error_code().unwrap_or(""), message = u.message().unwrap_or(""),
                                round = unprocessed_rounds, "X-Ray left segment documents unprocessed");
                        }
                        if unprocessed_rounds > self.unprocessed_retries {
                            self.stats.count(Outcome::Rejected, again.len() as u64);
                            self.stats.error("unprocessed_dropped");
                            break;
                        }
                        self.stats.count(Outcome::Retried, again.len() as u64);
                        tokio::time::sleep(backoff(unprocessed_rounds, self.max_backoff)).await;
                        req.docs = again;
                    }
                    Err(e) if e.code() == Some("InvalidRequestException") => {
                        let why = describe(&e);
                        if req.docs.len() > 1 {
                            tracing::debug!(sink = %self.name, %why, "request refused; splitting it");
                            let (a, b) = std::mem::take(&mut req).split();
                            queue.push_front(b);
                            queue.push_front(a);
                        } else {
                            self.stats.count(Outcome::Rejected, 1);
                            self.stats.error("document_refused");
                            tracing::error!(sink = %self.name, %why,
                                "X-Ray refused a segment document; it is counted as rejected and not retried");
                            req.docs.clear();
                        }
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        let why = describe(&e);
                        self.stats.count(Outcome::Retried, req.docs.len() as u64);
                        self.stats.error("request_failed");
                        let delay = backoff(attempt, self.max_backoff);
                        if attempt == 1 || attempt.is_multiple_of(10) {
                            tracing::warn!(sink = %self.name, attempt, retry_in_ms = delay.as_millis() as u64,
                                error = %why, "PutTraceSegments failed; will retry");
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            for ack in req.acks.drain(..) {
                ack.delivered();
            }
        }
    }
}
