//! `[sinks.NAME]` with `type = "xray"`.

use serde::Deserialize;

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
    /// Documents per PutTraceSegments call (API limit 50).
    #[serde(default = "default_batch_max_documents")]
    pub batch_max_documents: usize,
    /// How long documents may wait for a fuller request.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// Largest document sent (API limit 64 KiB); larger ones lose their metadata, then are
    /// dropped and counted.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: usize,
    /// Calls in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Times a document X-Ray returned as unprocessed is sent again before it is counted as
    /// rejected.
    #[serde(default = "default_unprocessed_retries")]
    pub unprocessed_retries: u32,
    /// Cap of the exponential backoff between retries.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Timeout of one API call.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// X-Ray refuses trace ids whose time part is more than 30 days old (ids not made by an
    /// X-Ray-compatible id generator); such spans are dropped and counted unless this is false.
    #[serde(default = "yes")]
    pub drop_invalid_trace_ids: bool,
}

fn yes() -> bool {
    true
}
fn default_batch_max_documents() -> usize {
    MAX_REQUEST_DOCUMENTS
}
fn default_batch_timeout_ms() -> u64 {
    1_000
}
fn default_max_document_bytes() -> usize {
    MAX_DOCUMENT_BYTES
}
fn default_concurrency() -> usize {
    4
}
fn default_unprocessed_retries() -> u32 {
    5
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_request_timeout_ms() -> u64 {
    15_000
}

impl ComponentConfig for XRayConfig {
    fn accepts(&self) -> Signals {
        Signals::TRACES
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        let ranges = [
            (
                "batch_max_documents",
                self.batch_max_documents,
                1,
                MAX_REQUEST_DOCUMENTS,
            ),
            (
                "max_document_bytes",
                self.max_document_bytes,
                1024,
                MAX_DOCUMENT_BYTES,
            ),
            ("concurrency", self.concurrency, 1, 64),
        ];
        errs.within(path, &ranges);
        errs.positive(
            path,
            &[
                ("batch_timeout_ms", self.batch_timeout_ms),
                ("max_backoff_ms", self.max_backoff_ms),
                ("request_timeout_ms", self.request_timeout_ms),
            ],
        );
        for (i, key) in self.annotations.iter().enumerate() {
            if key.is_empty() {
                errs.push(&path.key("annotations").index(i), "must not be empty");
            }
        }
    }
}
