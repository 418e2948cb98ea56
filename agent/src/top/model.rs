//! What `top` shows, computed from two readings of the agent's metrics endpoint: per component,
//! events per second in and out, errors and retries per second, buffer fill and file lag.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::event::{MetricEvent, MetricValue};

/// Totals of one component at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub received: f64,
    pub sent: f64,
    pub errors: f64,
    pub retried: f64,
    pub dropped: f64,
    pub buffer_bytes: Option<f64>,
    pub buffer_max_bytes: Option<f64>,
    pub lag_bytes: Option<f64>,
}

/// One reading: every component's totals plus the process's own figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub components: BTreeMap<String, Totals>,
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<f64>,
}

impl Reading {
    /// Folds the agent's own metrics (names in docs/agent-metrics.md) into totals.
    pub fn from_metrics(metrics: &[MetricEvent]) -> Self {
        let mut r = Reading::default();
        for m in metrics {
            let value = match &m.value {
                MetricValue::Counter { value, .. } | MetricValue::Gauge { value } => *value,
                _ => continue,
            };
            let family = m.name.as_str();
            match family {
                "process_cpu_seconds_total" => r.cpu_seconds = Some(value),
                "process_resident_memory_bytes" => r.rss_bytes = Some(value),
                _ => {}
            }
            let Some(component) = m.tags.get("component") else {
                continue;
            };
            let t = r.components.entry(component.clone()).or_default();
            match family {
                "vigil_component_events_total" => match m.tags.get("outcome").map(String::as_str) {
                    Some("received") => t.received += value,
                    Some("sent") => t.sent += value,
                    Some("retried") => t.retried += value,
                    Some(o) if o.starts_with("dropped") || o == "rejected" => t.dropped += value,
                    _ => {}
                },
                "vigil_component_errors_total" => t.errors += value,
                // The disk buffer's files; memory buffers are bounded queues and not shown.
                "vigil_buffer_size_bytes" => *t.buffer_bytes.get_or_insert(0.0) += value,
                "vigil_buffer_max_bytes" => *t.buffer_max_bytes.get_or_insert(0.0) += value,
                "vigil_file_lag_bytes" => *t.lag_bytes.get_or_insert(0.0) += value,
                _ => {}
            }
        }
        r
    }
}

/// One line of the view.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub component: String,
    pub in_per_s: f64,
    pub out_per_s: f64,
    pub errors_per_s: f64,
    pub retries_per_s: f64,
    pub dropped_per_s: f64,
    /// Buffer fill as a share of its cap (0..=1), or its size when there is no cap.
    pub buffer: Option<(f64, Option<f64>)>,
    pub lag_bytes: Option<f64>,
}

/// The view between two readings `elapsed` apart.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub rows: Vec<Row>,
    /// Share of one core used by the agent between the readings.
    pub cpu_share: Option<f64>,
    pub rss_bytes: Option<f64>,
}

impl View {
    pub fn between(before: &Reading, after: &Reading, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-3);
        // Counters restart from zero when the agent restarts: never show a negative rate.
        let rate = |a: f64, b: f64| ((b - a) / secs).max(0.0);
        let empty = Totals::default();
        let rows = after
            .components
            .iter()
            .map(|(name, now)| {
                let was = before.components.get(name).unwrap_or(&empty);
                Row {
                    component: name.clone(),
                    in_per_s: rate(was.received, now.received),
                    out_per_s: rate(was.sent, now.sent),
                    errors_per_s: rate(was.errors, now.errors),
                    retries_per_s: rate(was.retried, now.retried),
                    dropped_per_s: rate(was.dropped, now.dropped),
                    buffer: now.buffer_bytes.map(|b| (b, now.buffer_max_bytes)),
                    lag_bytes: now.lag_bytes,
                }
            })
            .collect();
        let cpu_share = match (before.cpu_seconds, after.cpu_seconds) {
            (Some(a), Some(b)) => Some(((b - a) / secs).max(0.0)),
            _ => None,
        };
        View {
            rows,
            cpu_share,
            rss_bytes: after.rss_bytes,
        }
    }
}

/// `12.3k`, `4.5M`: rates and sizes in a narrow column.
pub fn human(v: f64) -> String {
    let (v, suffix) = match v.abs() {
        x if x >= 1e9 => (v / 1e9, "G"),
        x if x >= 1e6 => (v / 1e6, "M"),
        x if x >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    if suffix.is_empty() && v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}{suffix}")
    }
}

impl Row {
    pub fn buffer_text(&self) -> String {
        match self.buffer {
            None => "-".into(),
            Some((bytes, Some(max))) if max > 0.0 => {
                format!("{:.0}% of {}B", bytes / max * 100.0, human(max))
            }
            Some((bytes, _)) => format!("{}B", human(bytes)),
        }
    }

    pub fn lag_text(&self) -> String {
        self.lag_bytes
            .map(|b| format!("{}B", human(b)))
            .unwrap_or_else(|| "-".into())
    }

    /// The cells, in column order.
    pub fn cells(&self) -> [String; 8] {
        [
            self.component.clone(),
            human(self.in_per_s),
            human(self.out_per_s),
            human(self.errors_per_s),
            human(self.retries_per_s),
            human(self.dropped_per_s),
            self.buffer_text(),
            self.lag_text(),
        ]
    }
}

pub const HEADERS: [&str; 8] = [
    "COMPONENT",
    "IN/s",
    "OUT/s",
    "ERR/s",
    "RETRY/s",
    "DROP/s",
    "BUFFER",
    "LAG",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Temporality;

    fn counter(name: &str, tags: &[(&str, &str)], value: f64) -> MetricEvent {
        let mut m = MetricEvent::new(
            name,
            0,
            MetricValue::Counter {
                value,
                temporality: Temporality::Cumulative { start_ms: 0 },
            },
        );
        for (k, v) in tags {
            m = m.with_tag(*k, *v);
        }
        m
    }

    /// `vigil_component_events_total` of one component and outcome.
    fn events(component: &str, outcome: &str, value: f64) -> MetricEvent {
        let tags = [("component", component), ("outcome", outcome)];
        counter("vigil_component_events_total", &tags, value)
    }

    #[test]
    fn rates_come_from_the_difference_of_two_readings() {
        let before = Reading::from_metrics(&[
            events("cw", "received", 100.0),
            events("cw", "sent", 90.0),
            counter("process_cpu_seconds_total", &[], 1.0),
        ]);
        let after = Reading::from_metrics(&[
            events("cw", "received", 300.0),
            events("cw", "sent", 290.0),
            counter(
                "vigil_component_errors_total",
                &[("component", "cw"), ("error", "throttled")],
                4.0,
            ),
            counter("process_cpu_seconds_total", &[], 1.5),
        ]);
        let view = View::between(&before, &after, Duration::from_secs(2));
        assert_eq!(view.rows.len(), 1);
        let row = &view.rows[0];
        assert_eq!(
            (row.in_per_s, row.out_per_s, row.errors_per_s),
            (100.0, 100.0, 2.0)
        );
        assert_eq!(view.cpu_share, Some(0.25));
        assert_eq!(row.cells()[1], "100");
    }

    #[test]
    fn a_restarted_agent_shows_no_negative_rates() {
        let before = Reading::from_metrics(&[events("f", "sent", 1000.0)]);
        let after = Reading::from_metrics(&[events("f", "sent", 10.0)]);
        assert_eq!(
            View::between(&before, &after, Duration::from_secs(1)).rows[0].out_per_s,
            0.0
        );
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(4_500_000.0), "4.5M");
        assert_eq!(human(7.0), "7");
        assert_eq!(human(0.5), "0.5");
    }
}
