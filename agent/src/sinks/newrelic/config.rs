//! `[sinks.NAME]` with `type = "newrelic"`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::sinks::driver::settings::{
    BatchConfig, BatchLimits, RequestConfig, RequestDefaults, Settings,
};

use vigil_common::config_error::{Errors, KeyPath};

use crate::component::ComponentConfig;
use crate::sinks::otlp_http;

/// New Relic's OTLP endpoints (OTLP/HTTP on 443; `/v1/traces` etc. are appended).
pub const US_ENDPOINT: &str = "https://otlp.nr-data.net";
pub const EU_ENDPOINT: &str = "https://otlp.eu01.nr-data.net";
/// New Relic refuses payloads over 1 MB (10^6 bytes).
pub const MAX_PAYLOAD_BYTES: usize = 1_000_000;
/// New Relic's limits on attribute values.
pub const MAX_VALUE_CHARS: usize = 4_095;
pub const MAX_ARRAY_ENTRIES: usize = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    #[default]
    Us,
    Eu,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRelicConfig {
    /// `us` or `eu`: which New Relic endpoint to use.
    #[serde(default)]
    pub region: Region,
    /// Overrides the region's endpoint (scheme, host and port; the signal path is appended).
    pub endpoint: Option<String>,
    /// Allows an `http://` endpoint, which sends the license key in clear: for local
    /// stand-ins only.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Where the license key comes from (default: the `NEW_RELIC_LICENSE_KEY` variable).
    #[serde(default)]
    pub license_key: LicenseKeySource,
    /// Resource attributes added to every payload when the event's resource lacks them
    /// (`service.name`, `host.name`, ... for file logs and host metrics).
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

/// Exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseKeySource {
    /// An environment variable.
    pub env: Option<String>,
    /// A file holding the key (surrounding whitespace is ignored).
    pub file: Option<PathBuf>,
    /// An SSM Parameter Store parameter (SecureString, decrypted).
    pub ssm_parameter: Option<String>,
}

pub const DEFAULT_LICENSE_ENV: &str = "NEW_RELIC_LICENSE_KEY";

impl NewRelicConfig {
    pub fn endpoint(&self) -> String {
        let base = match (&self.endpoint, self.region) {
            (Some(e), _) => e.as_str(),
            (None, Region::Us) => US_ENDPOINT,
            (None, Region::Eu) => EU_ENDPOINT,
        };
        base.trim_end_matches('/').to_owned()
    }
}

impl Settings for NewRelicConfig {
    const BATCH: BatchLimits = BatchLimits {
        max_events: (5_000, 100_000),
        // New Relic refuses payloads over 1 MB (before compression).
        max_bytes: Some((MAX_PAYLOAD_BYTES, 1024, MAX_PAYLOAD_BYTES)),
        timeout_ms: 1_000,
    };
    const REQUEST: RequestDefaults = RequestDefaults::NETWORK;

    fn tables(&self) -> (&BatchConfig, &RequestConfig) {
        (&self.batch, &self.request)
    }
}

impl ComponentConfig for NewRelicConfig {
    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            errs.push(&path.key("endpoint"), "must start with http:// or https://");
        }
        if let Some(e) = &self.endpoint
            && e.starts_with("http://")
            && !self.allow_insecure_http
        {
            errs.push(
                &path.key("endpoint"),
                "http:// would send the license key in clear: use https://, or set \
                 allow_insecure_http = true for a local stand-in",
            );
        }
        let k = &self.license_key;
        let given = [k.env.is_some(), k.file.is_some(), k.ssm_parameter.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given > 1 {
            errs.push(
                &path.key("license_key"),
                "give exactly one of env, file, ssm_parameter",
            );
        }
        self.validate_settings(path, errs);
        otlp_http::check_resource_attributes(&self.resource_attributes, path, errs);
    }
}
