//! `[sinks.NAME]` with `type = "cloudwatch_metrics"`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::sinks::cloudwatch_logs::template::Template;
use crate::sinks::driver::settings::{RequestConfig, RequestDefaults, RequestSettings};
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};

/// CloudWatch's limit of dimensions per metric.
pub const MAX_DIMENSIONS: usize = 30;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchMetricsConfig {
    /// `put_metric_data` (default) or `emf` (log events CloudWatch turns into metrics).
    #[serde(default)]
    pub mode: Mode,
    /// Namespace template, e.g. `Shop/{module}` or `Vigil/SpanMetrics`.
    pub namespace: String,
    /// Dimension name → value template (`{instance_id|host.id}`). A dimension whose fields are
    /// all missing is left out (and counted). Without this table every tag of the metric is a
    /// dimension (the span-metrics contract relies on that).
    pub dimensions: Option<BTreeMap<String, String>>,
    /// Metric name mapping: source name → CloudWatch name. Others keep their own name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Storage resolution in seconds: 60 (standard) or 1 (high resolution). Points are
    /// aggregated per period of this length before they are sent.
    #[serde(default = "default_resolution")]
    pub resolution_secs: u32,
    /// How long after a period ends its aggregate waits for late points before it is sent.
    #[serde(default = "default_grace_ms")]
    pub period_grace_ms: u64,
    /// gzip the PutMetricData body (the SDK does it above `compression_min_bytes`).
    #[serde(default = "yes")]
    pub compression: bool,
    #[serde(default = "default_compression_min_bytes")]
    pub compression_min_bytes: u32,
    /// How requests are sent: `request.timeout_ms` and `request.max_backoff_ms`
    /// ([`RequestConfig`]; requests go one at a time, so `request.concurrency` is refused).
    #[serde(default)]
    pub request: RequestConfig,
    /// EMF mode: log group and stream templates (fields: the metric's dimensions and
    /// `namespace`).
    pub log_group: Option<String>,
    pub log_stream: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    PutMetricData,
    Emf,
}

fn yes() -> bool {
    true
}
fn default_resolution() -> u32 {
    60
}
fn default_grace_ms() -> u64 {
    2_000
}
fn default_compression_min_bytes() -> u32 {
    4_096
}

impl CloudWatchMetricsConfig {
    pub const REQUEST: RequestDefaults = RequestDefaults {
        concurrency: 1,
        ..RequestDefaults::NETWORK
    };

    pub fn request_settings(&self) -> RequestSettings {
        self.request.resolve(&Self::REQUEST)
    }
}

impl ComponentConfig for CloudWatchMetricsConfig {
    fn accepts(&self) -> Signals {
        Signals::METRICS
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        if let Err(e) = Template::parse(&self.namespace) {
            errs.push(&path.key("namespace"), format!("invalid template: {e}"));
        } else if self.namespace.starts_with("AWS/") {
            errs.push(&path.key("namespace"), "`AWS/` namespaces are reserved");
        }
        if let Some(dims) = &self.dimensions {
            if dims.len() > MAX_DIMENSIONS {
                errs.push(
                    &path.key("dimensions"),
                    format!(
                        "{} dimensions; CloudWatch allows at most {MAX_DIMENSIONS}",
                        dims.len()
                    ),
                );
            }
            for (name, t) in dims {
                if let Err(e) = Template::parse(t) {
                    errs.push(
                        &path.key("dimensions").key(name),
                        format!("invalid template: {e}"),
                    );
                }
                if name.is_empty() || name.len() > 255 || name.starts_with(':') {
                    errs.push(
                        &path.key("dimensions").key(name),
                        "dimension names are 1 to 255 characters and do not start with `:`",
                    );
                }
            }
        }
        for (from, to) in &self.rename {
            if to.is_empty() || to.len() > 255 {
                errs.push(
                    &path.key("rename").key(from),
                    "metric names are 1 to 255 characters",
                );
            }
        }
        if !matches!(self.resolution_secs, 1 | 60) {
            errs.push(
                &path.key("resolution_secs"),
                "must be 60 (standard) or 1 (high resolution)",
            );
        }
        self.request.validate(path, errs);
        if self.request.concurrency.is_some() {
            errs.push(
                &path.key("request").key("concurrency"),
                "periods are sent one request at a time; this sink takes no concurrency",
            );
        }
        match self.mode {
            Mode::Emf => {
                for (key, t) in [
                    ("log_group", &self.log_group),
                    ("log_stream", &self.log_stream),
                ] {
                    match t {
                        None => errs.push(&path.key(key), "missing: required with mode = \"emf\""),
                        Some(t) => {
                            if let Err(e) = Template::parse(t) {
                                errs.push(&path.key(key), format!("invalid template: {e}"));
                            }
                        }
                    }
                }
            }
            Mode::PutMetricData => {
                for (key, t) in [
                    ("log_group", &self.log_group),
                    ("log_stream", &self.log_stream),
                ] {
                    if t.is_some() {
                        errs.push(&path.key(key), "only used with mode = \"emf\"");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn errors(sink: &str) -> String {
        let text = format!(
            "[sources.in]\ntype = \"host_metrics\"\n[sinks.cw]\ntype = \"cloudwatch_metrics\"\ninputs = [\"in\"]\n{sink}"
        );
        match crate::config::parse(Path::new("agent.toml"), &text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn limits_and_mode_keys_are_checked_at_load() {
        let dims: String = (0..31).map(|i| format!("D{i} = \"{{d{i}}}\"\n")).collect();
        let e = errors(&format!(
            "namespace = \"Shop\"\n[sinks.cw.dimensions]\n{dims}"
        ));
        assert!(
            e.contains("sinks.cw.dimensions") && e.contains("at most 30"),
            "{e}"
        );
        let e = errors("namespace = \"Shop\"\nmode = \"emf\"\n");
        assert!(
            e.contains("sinks.cw.log_group") && e.contains("required"),
            "{e}"
        );
        let e = errors("namespace = \"Shop/{a\"\nresolution_secs = 10\n");
        assert!(
            e.contains("sinks.cw.namespace") && e.contains("sinks.cw.resolution_secs"),
            "{e}"
        );
        assert_eq!(errors("namespace = \"Shop/{module}\"\n"), "");
    }
}
