//! `type = "internal_metrics"`: the agent's own metrics (everything `/metrics` serves) as metric
//! events, so an agent can ship its own health to CloudWatch next to what it collects.
//!
//! Counters become cumulative counters (started when this source started), gauges gauges, and
//! histograms cumulative explicit-bucket histograms; labels become tags. Names are kept.

use std::time::Duration;

use prometheus::proto::MetricType;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::event::{Ack, Event, MetricEvent, MetricValue, Temporality, now_ms};
use crate::output::SourceOutput;
use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalMetricsConfig {
    /// How often the metrics are read.
    #[serde(default = "config_default::u64::<60>")]
    pub interval_secs: u64,
}

impl ComponentConfig for InternalMetricsConfig {
    fn emits(&self, _inputs: Signals) -> Signals {
        Signals::METRICS
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        errs.within(path, &[("interval_secs", self.interval_secs, 1, 3600)]);
    }
}

/// Runs until `stop`; reads once more when stopping so the last counts are not lost.
pub async fn run(config: InternalMetricsConfig, out: SourceOutput, stop: CancellationToken) {
    let started_ms = now_ms();
    let mut tick = tokio::time::interval(Duration::from_secs(config.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.cancelled() => true,
        };
        let events = collect(started_ms);
        out.stats
            .count(crate::telemetry::Outcome::Received, events.len() as u64);
        // Nobody re-reads the agent's own counters: there is nothing to acknowledge to.
        if out.send(events, Ack::none()).await.is_err() || last {
            break;
        }
    }
}

/// Every metric of the agent's registry, now.
pub fn collect(started_ms: i64) -> Vec<Event> {
    let now = now_ms();
    let mut events = Vec::new();
    crate::telemetry::render_touch();
    for family in crate::telemetry::REGISTRY.gather() {
        let name = family.name();
        let unit = if name.ends_with("_seconds") || name.ends_with("_seconds_total") {
            "s"
        } else if name.ends_with("_bytes") || name.ends_with("_bytes_total") {
            "By"
        } else {
            ""
        };
        for m in family.get_metric() {
            let value = match family.get_field_type() {
                MetricType::COUNTER => MetricValue::Counter {
                    value: m.get_counter().get_value(),
                    temporality: Temporality::Cumulative {
                        start_ms: started_ms,
                    },
                },
                MetricType::GAUGE => MetricValue::Gauge {
                    value: m.get_gauge().get_value(),
                },
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let mut bounds = Vec::new();
                    let mut counts = Vec::new();
                    let mut below = 0u64;
                    for b in h.get_bucket() {
                        if !b.upper_bound().is_finite() {
                            continue;
                        }
                        bounds.push(b.upper_bound());
                        counts.push(b.cumulative_count().saturating_sub(below));
                        below = b.cumulative_count();
                    }
                    counts.push(h.get_sample_count().saturating_sub(below));
                    MetricValue::Histogram {
                        temporality: Temporality::Cumulative {
                            start_ms: started_ms,
                        },
                        count: h.get_sample_count(),
                        sum: h.get_sample_sum(),
                        min: None,
                        max: None,
                        bounds,
                        bucket_counts: counts,
                    }
                }
                _ => continue,
            };
            let mut event = MetricEvent::new(name, now, value).with_unit(unit);
            for l in m.get_label() {
                event = event.with_tag(l.name(), l.value());
            }
            events.push(Event::Metric(event));
        }
    }
    events
}
