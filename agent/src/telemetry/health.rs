//! Sink health for `/ready`: a sink is unhealthy after `FAILURES_UNHEALTHY` requests in a row
//! failed, and healthy again after one success. A sink that has not sent anything yet is
//! healthy (nothing failed). Exported as `vigil_sink_healthy{component}`.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use prometheus::IntGaugeVec;

use super::gauge_family;

/// Consecutive failed requests after which a sink is reported unhealthy.
pub const FAILURES_UNHEALTHY: u32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkHealth {
    pub consecutive_failures: u32,
    pub healthy: bool,
}

static SINKS: LazyLock<Mutex<BTreeMap<String, SinkHealth>>> = LazyLock::new(Default::default);

static HEALTHY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_family(
        "vigil_sink_healthy",
        "1 while a sink delivers, 0 after consecutive failed requests.",
        &["component"],
    )
});

/// Declares a sink (at build time), so `/ready` knows every sink before its first request.
pub fn register_sink(component: &str) {
    SINKS
        .lock()
        .expect("not poisoned")
        .entry(component.to_owned())
        .or_insert(SinkHealth {
            consecutive_failures: 0,
            healthy: true,
        });
    HEALTHY.with_label_values(&[component]).set(1);
}

/// Records the outcome of one request of a registered sink (other components are ignored).
pub(super) fn record(component: &str, ok: bool) {
    let mut sinks = SINKS.lock().expect("not poisoned");
    let Some(h) = sinks.get_mut(component) else {
        return;
    };
    if ok {
        h.consecutive_failures = 0;
        h.healthy = true;
    } else {
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        if h.consecutive_failures >= FAILURES_UNHEALTHY {
            h.healthy = false;
        }
    }
    HEALTHY
        .with_label_values(&[component])
        .set(i64::from(h.healthy));
}

/// Every sink's health, by component name.
pub fn health_report() -> BTreeMap<String, SinkHealth> {
    SINKS.lock().expect("not poisoned").clone()
}

/// Whether every registered sink is healthy.
pub fn all_healthy() -> bool {
    SINKS
        .lock()
        .expect("not poisoned")
        .values()
        .all(|h| h.healthy)
}
