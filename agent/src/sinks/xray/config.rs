//! `[sinks.NAME]` with `type = "xray"`.

use serde::Deserialize;

use crate::sinks::driver::settings::{
    BatchConfig, BatchLimits, RequestConfig, RequestDefaults, Settings,
};

use super::segment::MAX_DOCUMENT_BYTES;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};

/// Most documents in one PutTraceSegments call.
pub const MAX_REQUEST_DOCUMENTS: usize = 50;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XRayConfig {
    /// Span (or resource) attribute keys indexed as annotations (searchable in X-Ray); the other
    /// attributes go to metadata. Only string, number and bool values can be annotations.
    #[serde(default)]
    pub annotations: Vec<String>,
    /// When a request is closed: `batch.max_events`, `batch.max_bytes`, `batch.timeout_ms`
    /// ([`BatchConfig`]; defaults and limits in `Self::BATCH`).
    #[serde(default)]
    pub batch: BatchConfig,
    /// Largest document sent (API limit 64 KiB); larger ones lose their metadata, then are
    /// dropped and counted.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: usize,
    /// Times a document X-Ray returned as unprocessed is sent again before it is counted as
    /// rejected.
    #[serde(default = "default_unprocessed_retries")]
    pub unprocessed_retries: u32,
    /// How requests are sent: `request.concurrency`, `request.timeout_ms`,
    /// `request.max_backoff_ms` ([`RequestConfig`]; defaults in `Self::REQUEST`).
    #[serde(default)]
    pub request: RequestConfig,
    /// X-Ray refuses trace ids whose time part is more than 30 days old (ids not made by an
    /// X-Ray-compatible id generator); such spans are dropped and counted unless this is false.
    #[serde(default = "yes")]
    pub drop_invalid_trace_ids: bool,
}

fn yes() -> bool {
    true
}
fn default_max_document_bytes() -> usize {
    MAX_DOCUMENT_BYTES
}
fn default_unprocessed_retries() -> u32 {
    5
}

impl Settings for XRayConfig {
    /// Documents per PutTraceSegments call (API limit 50).
    const BATCH: BatchLimits = BatchLimits::by_count(MAX_REQUEST_DOCUMENTS, 1_000);
    const REQUEST: RequestDefaults = RequestDefaults::NETWORK;

    fn tables(&self) -> (&BatchConfig, &RequestConfig) {
        (&self.batch, &self.request)
    }
}

impl ComponentConfig for XRayConfig {
    fn accepts(&self) -> Signals {
        Signals::TRACES
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        self.validate_settings(path, errs);
        let ranges = [(
            "max_document_bytes",
            self.max_document_bytes,
            1024,
            MAX_DOCUMENT_BYTES,
        )];
        errs.within(path, &ranges);
        for (i, key) in self.annotations.iter().enumerate() {
            if key.is_empty() {
                errs.push(&path.key("annotations").index(i), "must not be empty");
            }
        }
    }
}
