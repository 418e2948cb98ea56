//! `[sinks.NAME]` with `type = "aws_otlp"`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::sinks::driver::settings::{
    BatchConfig, BatchLimits, RequestConfig, RequestDefaults, Settings,
};

use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};
use crate::sinks::otlp_http;

/// X-Ray's published OTLP limits (traces).
pub const MAX_TRACE_REQUEST_BYTES: usize = 5_000_000;
pub const MAX_TRACE_REQUEST_SPANS: usize = 10_000;
pub const MAX_SPAN_BYTES: usize = 200 * 1024;
pub const MAX_RESOURCE_SCOPE_BYTES: usize = 16 * 1024;
/// CloudWatch Logs' OTLP limits (the same as PutLogEvents: 1 MiB and 10,000 events).
pub const MAX_LOG_REQUEST_BYTES: usize = 1_048_576;
pub const MAX_LOG_REQUEST_RECORDS: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsOtlpConfig {
    /// Overrides both endpoints (`https://xray.<region>.amazonaws.com` and
    /// `https://logs.<region>.amazonaws.com`; `/v1/traces` and `/v1/logs` are appended). For
    /// local stand-ins and VPC endpoints.
    pub endpoint: Option<String>,
    /// Allows an `http://` endpoint (requests are still signed, but travel in clear): for local
    /// stand-ins only.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// CloudWatch Logs group and stream for OTLP logs (`x-aws-log-group`, `x-aws-log-stream`);
    /// without them this sink takes spans only and counts logs as `unsupported_signal`.
    pub log_group: Option<String>,
    pub log_stream: Option<String>,
    /// Resource attributes added to every payload when the event's resource lacks them
    /// (`service.name`, `deployment.environment`, ...). `cloud.provider` and `cloud.region` are
    /// always added when missing.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// When a request is closed: `batch.max_events`, `batch.max_bytes`, `batch.timeout_ms`
    /// ([`BatchConfig`]; defaults and limits in `Self::BATCH`).
    #[serde(default)]
    pub batch: BatchConfig,
    /// How requests are sent: `request.concurrency`, `request.timeout_ms`,
    /// `request.max_backoff_ms` ([`RequestConfig`]; defaults in `Self::REQUEST`).
    #[serde(default)]
    pub request: RequestConfig,
}

/// Which AWS service a request goes to: the host and the SigV4 service name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Logs,
}

impl Signal {
    /// The SigV4 signing name (and the endpoint's host prefix).
    pub fn service(self) -> &'static str {
        match self {
            Signal::Traces => "xray",
            Signal::Logs => "logs",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
        }
    }
}

impl AwsOtlpConfig {
    /// The URL a signal is sent to in `region`.
    pub fn url(&self, signal: Signal, region: &str) -> String {
        let base = match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("https://{}.{region}.amazonaws.com", signal.service()),
        };
        format!("{base}{}", signal.path())
    }
}

impl Settings for AwsOtlpConfig {
    /// X-Ray takes at most 10,000 spans a request (logs are cut at 10,000 records too);
    /// requests are cut at the endpoints' own byte limits (5 MB traces, 1 MiB logs).
    const BATCH: BatchLimits = BatchLimits::by_count(MAX_TRACE_REQUEST_SPANS, 1_000);
    const REQUEST: RequestDefaults = RequestDefaults::NETWORK;

    fn tables(&self) -> (&BatchConfig, &RequestConfig) {
        (&self.batch, &self.request)
    }
}

impl ComponentConfig for AwsOtlpConfig {
    /// Logs only with a log group to put them in.
    fn accepts(&self) -> Signals {
        if self.log_group.is_some() {
            Signals::TRACES.union(Signals::LOGS)
        } else {
            Signals::TRACES
        }
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                errs.push(&path.key("endpoint"), "must start with http:// or https://");
            } else if e.starts_with("http://") && !self.allow_insecure_http {
                errs.push(
                    &path.key("endpoint"),
                    "http:// would send the data and the signed requests in clear: use \
                     https://, or set allow_insecure_http = true for a local stand-in",
                );
            }
        }
        match (&self.log_group, &self.log_stream) {
            (Some(_), None) => errs.push(
                &path.key("log_stream"),
                "log_group is set, so log_stream is needed too",
            ),
            (None, Some(_)) => errs.push(
                &path.key("log_group"),
                "log_stream is set, so log_group is needed too",
            ),
            _ => {}
        }
        for (key, v) in [
            ("log_group", &self.log_group),
            ("log_stream", &self.log_stream),
        ] {
            if v.as_ref().is_some_and(|v| v.is_empty() || v.len() > 512) {
                errs.push(&path.key(key), "must be 1 to 512 characters");
            }
        }
        self.validate_settings(path, errs);
        otlp_http::check_resource_attributes(&self.resource_attributes, path, errs);
    }
}
