//! Metric events: one data point of one series (name + tags), as sources produce them.
//!
//! The model keeps what each backend needs to be exact: counters say whether they are
//! cumulative (Prometheus, host counters) or deltas, histograms keep their buckets, and
//! distributions keep raw values with counts so CloudWatch can compute percentiles and
//! threshold fractions itself (`Values`/`Counts`), never pre-averaged numbers.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Resource;

/// Dimensions of a series. Ordered, so a series has one canonical key.
pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricEvent {
    /// Metric name as the source gave it (e.g. `node_cpu_seconds_total`, `http.server.duration`).
    pub name: String,
    /// End of the observation window (or time of the reading), ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Unit in UCUM notation as OpenTelemetry uses it (`s`, `ms`, `By`, `1`, `%`, `By/s`);
    /// empty when unknown. Sinks map it to their own unit names.
    pub unit: String,
    pub tags: Tags,
    pub value: MetricValue,
    /// Who emitted it (service, host), when the source knows.
    pub resource: Option<Arc<Resource>>,
}

impl MetricEvent {
    pub fn new(name: impl Into<String>, timestamp_ms: i64, value: MetricValue) -> Self {
        Self {
            name: name.into(),
            timestamp_ms,
            unit: String::new(),
            tags: Tags::new(),
            value,
            resource: None,
        }
    }

    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = unit.into();
        self
    }

    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    pub fn size_hint(&self) -> usize {
        let value = match &self.value {
            MetricValue::Counter { .. } | MetricValue::Gauge { .. } => 16,
            MetricValue::Histogram { bounds, .. } => bounds.len() * 16 + 32,
            MetricValue::Summary { quantiles, .. } => quantiles.len() * 16 + 16,
            MetricValue::Distribution { samples } => samples.len() * 16,
        };
        self.name.len()
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 16)
                .sum::<usize>()
            + value
            + 48
    }
}

/// Whether a sum or histogram holds the total since `start_ms` or only the change since the
/// previous point of the same series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Temporality {
    Delta,
    Cumulative { start_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetricValue {
    /// A monotonic sum.
    Counter {
        value: f64,
        temporality: Temporality,
    },
    /// A reading that may go up and down (also non-monotonic sums).
    Gauge { value: f64 },
    /// Explicit-bucket histogram: `bucket_counts[i]` counts values in
    /// `(bounds[i-1], bounds[i]]`; the last count is the overflow bucket, so
    /// `bucket_counts.len() == bounds.len() + 1`.
    Histogram {
        temporality: Temporality,
        count: u64,
        sum: f64,
        min: Option<f64>,
        max: Option<f64>,
        bounds: Vec<f64>,
        bucket_counts: Vec<u64>,
    },
    /// Precomputed quantiles (Prometheus summaries); cumulative count and sum.
    Summary {
        count: u64,
        sum: f64,
        /// (quantile in 0..=1, value)
        quantiles: Vec<(f64, f64)>,
    },
    /// Values observed during the window, each with how often it was seen (always a delta).
    Distribution { samples: Vec<Sample> },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub value: f64,
    pub count: u64,
}
