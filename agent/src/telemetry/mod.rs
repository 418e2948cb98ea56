//! The agent's own metrics. Every component counts what happens to its events under one family
//! with a fixed set of outcomes, so dashboards and `vigil-agent top` need no per-component code.
//! Names and labels are a stable interface, documented in `docs/agent-metrics.md`.

mod health;
mod sinks;

pub use health::{FAILURES_UNHEALTHY, SinkHealth, all_healthy, health_report, register_sink};
pub use sinks::FileLag;

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Registry holding every agent metric (served by the metrics endpoint, printed at shutdown).
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Registers a metric family of a static in `REGISTRY` (each static is made once).
pub fn register<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

/// A counter family `name` with `labels`, registered in `REGISTRY`.
pub fn counter_family(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"))
}

/// A gauge family `name` with `labels`, registered in `REGISTRY`.
pub fn gauge_family(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"))
}

static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_family(
        "vigil_component_events_total",
        "Events handled by a component, by outcome.",
        &["component", "outcome"],
    )
});

static ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_family(
        "vigil_component_errors_total",
        "Errors met by a component, by kind. The component keeps running.",
        &["component", "error"],
    )
});

/// What happened to events; the `outcome` label of `vigil_component_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Entered the component.
    Received,
    /// Left it (sources, processors) or were delivered (sinks).
    Sent,
    /// Lines cut at `max_line_bytes`.
    Truncated,
    /// Lines with invalid UTF-8, kept with replacement characters.
    InvalidUtf8,
    /// Card numbers replaced before leaving the host.
    RedactedCard,
    /// Matches of a configured secret pattern replaced.
    RedactedSecret,
    /// Lines that were not valid JSON for a JSON parser (kept as text).
    ParseFailed,
    /// Events whose timestamp was moved into the range the backend accepts.
    TimestampClamped,
    /// Events left out because their timestamp was out of range and the policy says drop.
    DroppedOutOfRange,
    /// Events the backend refused (counted from its response).
    Rejected,
    /// Events in a request that was retried.
    Retried,
    /// Events re-sent after a restart that the backend already had, so not sent again.
    Deduplicated,
    /// Events written (and fsynced) to a sink's disk buffer.
    BufferWritten,
    /// Events read back from a disk buffer and handed to the sink.
    BufferRead,
    /// Delivered events whose segment files were deleted.
    BufferReclaimed,
    /// Undelivered events deleted because the buffer was full (`when_full = "drop_oldest"`).
    BufferDropped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Received => "received",
            Outcome::Sent => "sent",
            Outcome::Truncated => "truncated",
            Outcome::InvalidUtf8 => "invalid_utf8",
            Outcome::RedactedCard => "redacted_card",
            Outcome::RedactedSecret => "redacted_secret",
            Outcome::ParseFailed => "parse_failed",
            Outcome::TimestampClamped => "timestamp_clamped",
            Outcome::DroppedOutOfRange => "dropped_out_of_range",
            Outcome::Rejected => "rejected",
            Outcome::Retried => "retried",
            Outcome::Deduplicated => "deduplicated",
            Outcome::BufferWritten => "buffer_written",
            Outcome::BufferRead => "buffer_read",
            Outcome::BufferReclaimed => "buffer_reclaimed",
            Outcome::BufferDropped => "buffer_dropped",
        }
    }
}

/// Counters of one component.
#[derive(Debug, Clone)]
pub struct Stats {
    component: String,
}

impl Stats {
    pub fn new(component: &str) -> Self {
        Self {
            component: component.to_owned(),
        }
    }

    /// The component's name (label of components' own extra counters).
    pub fn component(&self) -> &str {
        &self.component
    }

    pub fn count(&self, outcome: Outcome, n: u64) {
        if n > 0 {
            EVENTS
                .with_label_values(&[self.component.as_str(), outcome.label()])
                .inc_by(n);
        }
    }

    pub fn get(&self, outcome: Outcome) -> u64 {
        EVENTS
            .with_label_values(&[self.component.as_str(), outcome.label()])
            .get()
    }

    /// Counts an error of `kind` (a short snake_case name, e.g. `unreadable_file`).
    pub fn error(&self, kind: &str) {
        ERRORS
            .with_label_values(&[self.component.as_str(), kind])
            .inc();
    }
}

/// Registers every family, so a gather lists them even before their first use.
pub fn render_touch() {
    LazyLock::force(&EVENTS);
    LazyLock::force(&ERRORS);
    sinks::force();
}

static BUFFER_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_family(
        "vigil_buffer_bytes_total",
        "Bytes of a sink's disk buffer written, read, reclaimed or dropped.",
        &["component", "op"],
    )
});

static BUFFER_SIZE: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    gauge_family(
        "vigil_buffer_size_bytes",
        "Bytes of a sink's disk buffer on disk now.",
        &["component"],
    )
});

/// Counts disk buffer bytes: `op` is `written`, `read`, `reclaimed` or `dropped`.
pub fn buffer_bytes(component: &str, op: &str, n: u64) {
    if n > 0 {
        BUFFER_BYTES.with_label_values(&[component, op]).inc_by(n);
    }
}

static BUFFER_MAX: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    gauge_family(
        "vigil_buffer_max_bytes",
        "The cap of a sink's disk buffer (its max_bytes).",
        &["component"],
    )
});

/// Sets the cap of a disk buffer, so its fill can be read as a share.
pub fn buffer_max(component: &str, bytes: u64) {
    BUFFER_MAX
        .with_label_values(&[component])
        .set(bytes.min(i64::MAX as u64) as i64);
}

/// Sets the size of a disk buffer on disk.
pub fn buffer_size(component: &str, bytes: u64) {
    BUFFER_SIZE
        .with_label_values(&[component])
        .set(bytes.min(i64::MAX as u64) as i64);
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    // Touch the families so they are listed even before the first event.
    LazyLock::force(&EVENTS);
    LazyLock::force(&ERRORS);
    sinks::force();
    prometheus::TextEncoder::new()
        .encode_utf8(&REGISTRY.gather(), &mut out)
        .expect("text encoding of gathered metrics cannot fail");
    out
}

/// Logs every non-zero counter, one line each: the run's summary at shutdown.
pub fn log_summary() {
    LazyLock::force(&EVENTS);
    LazyLock::force(&ERRORS);
    for family in REGISTRY.gather() {
        for m in family.get_metric() {
            if family.get_field_type() != prometheus::proto::MetricType::COUNTER {
                continue;
            }
            let value = m.get_counter().get_value();
            if value == 0.0 {
                continue;
            }
            let labels: Vec<String> = m
                .get_label()
                .iter()
                .map(|l| format!("{}={}", l.name(), l.value()))
                .collect();
            tracing::info!(
                metric = family.name(),
                labels = labels.join(","),
                value,
                "counter"
            );
        }
    }
}
