//! `[sources.NAME]` with `type = "prometheus_scrape"`.

use std::collections::BTreeMap;

use serde::Deserialize;

use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};

/// Scrapes Prometheus text endpoints every `interval_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusScrapeConfig {
    pub targets: Vec<TargetConfig>,
    #[serde(default = "config_default::u64::<60_000>")]
    pub interval_ms: u64,
    /// Whole scrape (connect, answer, body) of one target; at most `interval_ms`.
    #[serde(default = "config_default::u64::<10_000>")]
    pub timeout_ms: u64,
    /// Most sample lines taken from one target per scrape; more fails the scrape.
    #[serde(default = "config_default::usize::<50_000>")]
    pub max_series: usize,
    /// Largest body read from one target; a bigger one fails the scrape.
    #[serde(default = "config_default::usize::<{ 32 * 1024 * 1024 }>")]
    pub max_body_bytes: usize,
    /// The `job` tag; the source name by default.
    pub job: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// e.g. `http://127.0.0.1:9100/metrics`
    pub url: String,
    /// Tags added to every metric of this target (e.g. `module = "shop"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides the source's `job`.
    pub job: Option<String>,
    /// Overrides the source's `max_series`.
    pub max_series: Option<usize>,
    /// Overrides the source's `max_body_bytes`.
    pub max_body_bytes: Option<usize>,
    /// Overrides the source's `interval_ms`: each target runs on its own schedule.
    pub interval_ms: Option<u64>,
    /// Overrides the source's `timeout_ms`; at most this target's interval.
    pub timeout_ms: Option<u64>,
}

impl ComponentConfig for PrometheusScrapeConfig {
    fn emits(&self, _inputs: Signals) -> Signals {
        Signals::METRICS
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        if self.targets.is_empty() {
            errs.push(&path.key("targets"), "must list at least one target");
        }
        if self.interval_ms < 1_000 {
            errs.push(&path.key("interval_ms"), "must be at least 1000 (1 s)");
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            errs.push(
                &path.key("timeout_ms"),
                format!(
                    "must be greater than 0 and at most interval_ms ({})",
                    self.interval_ms
                ),
            );
        }
        errs.positive(
            path,
            &[
                ("max_series", self.max_series as u64),
                ("max_body_bytes", self.max_body_bytes as u64),
            ],
        );
        let mut seen = std::collections::BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let at = path.key("targets").index(i);
            match reqwest::Url::parse(&t.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if !seen.insert(t.url.as_str()) {
                        errs.push(&at.key("url"), format!("`{}` is listed twice", t.url));
                    }
                }
                Ok(_) => errs.push(
                    &at.key("url"),
                    format!("`{}` must be an http(s) URL with a host", t.url),
                ),
                Err(e) => errs.push(&at.key("url"), format!("invalid URL `{}`: {e}", t.url)),
            }
            for k in t.labels.keys() {
                let mut b = k.bytes();
                let ok = matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
                    && b.all(|c| c.is_ascii_alphanumeric() || c == b'_');
                if !ok {
                    errs.push(
                        &at.key("labels").key(k),
                        "invalid label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                    );
                }
            }
            let interval_ms = t.interval_ms.unwrap_or(self.interval_ms);
            if t.interval_ms.is_some_and(|ms| ms < 1_000) {
                errs.push(&at.key("interval_ms"), "must be at least 1000 (1 s)");
            }
            if let Some(timeout_ms) = t.timeout_ms
                && (timeout_ms == 0 || timeout_ms > interval_ms)
            {
                errs.push(
                    &at.key("timeout_ms"),
                    format!(
                        "must be greater than 0 and at most this target's interval_ms ({interval_ms})"
                    ),
                );
            } else if t.timeout_ms.is_none()
                && t.interval_ms.is_some()
                && self.timeout_ms > interval_ms
            {
                errs.push(
                    &at.key("interval_ms"),
                    format!(
                        "is shorter than the source's timeout_ms ({}): set this target's timeout_ms too",
                        self.timeout_ms
                    ),
                );
            }
            if t.max_series == Some(0) {
                errs.push(&at.key("max_series"), "must be greater than 0");
            }
            if t.max_body_bytes == Some(0) {
                errs.push(&at.key("max_body_bytes"), "must be greater than 0");
            }
        }
    }
}
