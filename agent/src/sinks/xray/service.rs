//! Talking to X-Ray: one PutTraceSegments call of up to 50 documents, and what its answer means
//! for the driver ([`crate::sinks::driver`]): documents X-Ray returns as unprocessed are sent
//! again (a few rounds, then counted as rejected); a call refused as invalid is halved until
//! the document at fault is isolated; throttling, 5xx, timeouts and network errors are retried.

use std::collections::HashSet;

use aws_sdk_xray::Client;
use vigil_common::aws_error::{code, error_text};

use super::config::XRayConfig;
use crate::sinks::driver::settings::Settings;
use crate::sinks::driver::{Backend, ErrorNames, Verdict};

/// Documents for one call: (segment id, JSON document).
pub type Request = Vec<(String, String)>;

pub struct Service {
    client: Client,
}

impl Service {
    pub async fn new(config: &XRayConfig) -> Self {
        Self::with_sdk(config, vigil_common::aws::load().await)
    }

    /// The service on a given SDK configuration (tests point it at a stand-in).
    pub fn with_sdk(config: &XRayConfig, sdk: aws_config::SdkConfig) -> Self {
        // Retries are the driver's (never give up on throttling; retry only unprocessed
        // documents).
        let sdk = vigil_common::aws::without_retries(sdk, config.request_settings().timeout);
        Self {
            client: Client::new(&sdk),
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
            .set_trace_segment_documents(Some(req.iter().map(|(_, d)| d.clone()).collect()))
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
            .iter()
            .filter(|(id, _)| failed.contains(id.as_str()))
            .cloned()
            .collect();
        let first = &unprocessed[0];
        Verdict::Partial {
            again,
            why: format!(
                "{}: {}",
                first.error_code().unwrap_or(""),
                first.message().unwrap_or("")
            ),
        }
    }
}
