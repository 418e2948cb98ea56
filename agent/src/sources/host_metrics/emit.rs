//! What every collector shares: building events with the collection's time, host tag and
//! resource, and counting (and logging once) what could not be read.

use std::collections::HashSet;
use std::sync::Arc;

use crate::event::{Event, MetricEvent, MetricValue, Resource, Temporality};
use crate::telemetry::Stats;

/// Builds events that share the collection's time, host tag and resource.
pub struct Emitter<'a> {
    pub now: i64,
    pub host: &'a str,
    pub resource: &'a Arc<Resource>,
    /// Kernel counters count from boot.
    pub boot_ms: i64,
}

impl Emitter<'_> {
    fn event(&self, name: &str, unit: &str, value: MetricValue, tags: &[(&str, &str)]) -> Event {
        let mut m = MetricEvent::new(name, self.now, value).with_unit(unit);
        m.tags.insert("host".to_owned(), self.host.to_owned());
        for (k, v) in tags {
            m.tags.insert((*k).to_owned(), (*v).to_owned());
        }
        m.resource = Some(Arc::clone(self.resource));
        Event::Metric(m)
    }

    pub fn gauge(&self, name: &str, unit: &str, value: f64, tags: &[(&str, &str)]) -> Event {
        self.event(name, unit, MetricValue::Gauge { value }, tags)
    }

    pub fn counter(
        &self,
        name: &str,
        unit: &str,
        value: f64,
        temporality: Temporality,
        tags: &[(&str, &str)],
    ) -> Event {
        self.event(
            name,
            unit,
            MetricValue::Counter { value, temporality },
            tags,
        )
    }

    /// A counter of the kernel's, cumulative since boot.
    pub fn since_boot(&self, name: &str, unit: &str, value: f64, tags: &[(&str, &str)]) -> Event {
        let since_boot = Temporality::Cumulative {
            start_ms: self.boot_ms,
        };
        self.counter(name, unit, value, since_boot, tags)
    }
}

/// Collection problems: counted always, logged once per kind.
pub struct Problems {
    pub source: String,
    pub stats: Stats,
    warned: HashSet<&'static str>,
}

impl Problems {
    pub fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            stats: Stats::new(source),
            warned: HashSet::new(),
        }
    }

    pub fn warn(&mut self, kind: &'static str, error: &dyn std::fmt::Display) {
        self.stats.error(kind);
        if self.warned.insert(kind) {
            tracing::warn!(source = %self.source, kind, error = %error, "host metrics: cannot collect; will retry");
        }
    }
}
