//! `[sinks.NAME]` with `type = "cloudwatch_logs"`.

use serde::Deserialize;

use super::request::{MAX_EVENT_BYTES, MAX_REQUEST_BYTES, MAX_REQUEST_EVENTS, OutOfRange};
use super::template::{Template, group_char, stream_char};
use crate::sinks::driver::settings::{
    BatchConfig, BatchLimits, RequestConfig, RequestDefaults, Settings,
};
use crate::sinks::encoding::Encoding;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchLogsConfig {
    /// Log group name template, e.g. `/shop/{env}/{module}`.
    pub log_group: String,
    /// Log stream name template, e.g. `{instance_id|host}`.
    pub log_stream: String,
    /// Create missing groups and streams.
    #[serde(default = "yes")]
    pub create_missing: bool,
    /// Retention set on groups the agent creates (days; one of CloudWatch's allowed values).
    /// Groups that already exist are left as they are.
    #[serde(default = "default_retention_days")]
    pub retention_days: i32,
    #[serde(default)]
    pub encoding: Encoding,
    /// When a request is closed: `batch.max_events`, `batch.max_bytes`, `batch.timeout_ms`
    /// ([`BatchConfig`]; defaults and limits in `Self::BATCH`).
    #[serde(default)]
    pub batch: BatchConfig,
    /// How requests are sent: `request.concurrency`, `request.timeout_ms`,
    /// `request.max_backoff_ms` ([`RequestConfig`]; defaults in `Self::REQUEST`).
    #[serde(default)]
    pub request: RequestConfig,
    /// Longer events are cut (and counted as truncated).
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Events older than 14 days or more than 2 hours ahead, which CloudWatch refuses.
    #[serde(default)]
    pub out_of_range: OutOfRange,
    /// Requests that may wait per stream while it is throttled or failing, before the sink
    /// stops taking new data (backpressure).
    #[serde(default = "default_stream_queue_requests")]
    pub stream_queue_requests: usize,
    /// Most streams (each with a worker) that event data may open; events for further streams
    /// go to the overflow stream (`overflow.rs`).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
}

fn yes() -> bool {
    true
}
fn default_retention_days() -> i32 {
    30
}
fn default_max_event_bytes() -> usize {
    MAX_EVENT_BYTES
}
fn default_stream_queue_requests() -> usize {
    // Two requests ready behind the one in flight keep a stream's worker busy; a deeper queue
    // only holds more memory (up to 1 MiB of messages per request).
    2
}
fn default_max_streams() -> usize {
    1_000
}

/// Retention values CloudWatch Logs accepts.
const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl Settings for CloudWatchLogsConfig {
    const BATCH: BatchLimits = BatchLimits {
        max_events: (MAX_REQUEST_EVENTS, MAX_REQUEST_EVENTS),
        // The API's limit counts 26 bytes per event besides its message.
        max_bytes: Some((MAX_REQUEST_BYTES, 1024, MAX_REQUEST_BYTES)),
        timeout_ms: 1_000,
    };
    const REQUEST: RequestDefaults = RequestDefaults {
        // Streams sending at the same time.
        concurrency: 8,
        ..RequestDefaults::NETWORK
    };

    fn tables(&self) -> (&BatchConfig, &RequestConfig) {
        (&self.batch, &self.request)
    }
}

impl ComponentConfig for CloudWatchLogsConfig {
    fn accepts(&self) -> Signals {
        Signals::LOGS
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        for (key, t, valid) in [
            ("log_group", &self.log_group, group_char as fn(char) -> bool),
            ("log_stream", &self.log_stream, stream_char),
        ] {
            if let Err(e) = Template::parse_name(t, valid) {
                errs.push(&path.key(key), format!("invalid template: {e}"));
            }
        }
        if !RETENTION_DAYS.contains(&self.retention_days) {
            errs.push(
                &path.key("retention_days"),
                format!("must be one of {RETENTION_DAYS:?}"),
            );
        }
        self.validate_settings(path, errs);
        let ranges = [
            ("max_event_bytes", self.max_event_bytes, 64, MAX_EVENT_BYTES),
            ("stream_queue_requests", self.stream_queue_requests, 1, 1024),
            ("max_streams", self.max_streams, 1, 100_000),
        ];
        errs.within(path, &ranges);
        if self.max_event_bytes + 26 > self.batch_settings().max_bytes {
            errs.push(
                &path.key("max_event_bytes"),
                "must leave room for one event in batch.max_bytes",
            );
        }
    }
}
