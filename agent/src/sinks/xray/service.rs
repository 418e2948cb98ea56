//! Talking to X-Ray: one PutTraceSegments call of up to 50 documents, and what its answer means
//! for the driver ([`crate::sinks::driver`]): documents X-Ray returns as unprocessed are sent
//! again (a few rounds, then counted as rejected); a call refused as invalid is halved until
//! the document at fault is isolated; throttling, 5xx, timeouts and network errors are retried.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_xray::Client;
use aws_sdk_xray::config::retry::RetryConfig;
use aws_sdk_xray::config::timeout::TimeoutConfig;
use vigil_common::aws_error::{code, error_text};

use super::config::XRayConfig;
use crate::sinks::driver::{Backend, ErrorNames, Payload, Verdict};

/// Documents for one call: (segment id, JSON document).
#[derive(Debug, Default)]
pub struct Request {
    pub docs: Vec<(String, String)>,
}

impl Payload for Request {
    fn items(&self) -> usize {
        self.docs.len()
    }

    fn split(mut self) -> Result<(Self, Self), Self> {
        let tail = self.docs.split_off(self.docs.len() / 2);
        Ok((self, Request { docs: tail }))
    }
}

pub struct Service {
    client: Client,
}

impl Service {
    pub async fn new(config: &XRayConfig) -> Self {
        let sdk = vigil_common::aws::load().await;
        Self::with_sdk(config, &sdk)
    }

    /// The service on a given SDK configuration (tests point it at a stand-in).
    pub fn with_sdk(config: &XRayConfig, sdk: &aws_config::SdkConfig) -> Self {
        // Retries are the driver's (never give up on throttling; retry only unprocessed
        // documents).
        let conf = aws_sdk_xray::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(config.request_timeout_ms))
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(conf),
        }
    }
}

impl Backend for Service {
    type Key = ();
    type Request = Request;
    type Lane = ();
    const OPERATION: &'static str = "PutTraceSegments";
    const ERRORS: ErrorNames = ErrorNames {
        item_refused: "document_refused",
        items_rejected: "items_rejected",
        unprocessed: "unprocessed_segments",
    };

    async fn send(&self, _: &(), req: &mut Request) -> Verdict<Request> {
        let result = self
            .client
            .put_trace_segments()
            .set_trace_segment_documents(Some(req.docs.iter().map(|(_, d)| d.clone()).collect()))
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if code(&e) == Some("InvalidRequestException") => {
                return Verdict::Split {
                    why: error_text(&e),
                };
            }
            Err(e) => {
                return Verdict::Retry {
                    after: None,
                    why: error_text(&e),
                };
            }
        };
        let unprocessed = out.unprocessed_trace_segments();
        let failed: HashSet<&str> = unprocessed.iter().filter_map(|u| u.id()).collect();
        if failed.is_empty() {
            return Verdict::Accepted {
                rejected: 0,
                why: String::new(),
            };
        }
        let again = req
            .docs
            .iter()
            .filter(|(id, _)| failed.contains(id.as_str()))
            .cloned()
            .collect();
        let first = &unprocessed[0];
        Verdict::Partial {
            again: Request { docs: again },
            why: format!(
                "{}: {}",
                first.error_code().unwrap_or(""),
                first.message().unwrap_or("")
            ),
        }
    }
}
