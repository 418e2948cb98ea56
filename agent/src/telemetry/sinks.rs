//! Delivery metrics beyond the event counters: request latency, batch sizes and retries per
//! sink, buffer fill, file lag, and the process's own CPU and memory.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec};

use super::{REGISTRY, Stats, counter_family, gauge_family, register};

static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "vigil_sink_request_duration_seconds",
                "Time of one request to a sink's backend, answered or failed.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["component", "result"],
        )
        .expect("static metric definition"),
    )
});

static BATCH_EVENTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "vigil_sink_request_events",
                "Events (or metric data) in one request a sink sends.",
            )
            .buckets(vec![
                1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
            ]),
            &["component"],
        )
        .expect("static metric definition"),
    )
});

static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_family(
        "vigil_sink_retries_total",
        "Requests a sink sends again after a failure (throttling, 5xx, network).",
        &["component"],
    )
});

static BUFFER_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_family(
        "vigil_buffer_bytes",
        "Bytes held in a component's buffer, waiting for delivery.",
        &["component"],
    )
});

static BUFFER_EVENTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_family(
        "vigil_buffer_events",
        "Events held in a component's buffer, waiting for delivery.",
        &["component"],
    )
});

static FILE_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_family(
        "vigil_file_lag_bytes",
        "Bytes of a file not read yet (file size minus read position).",
        &["component", "file"],
    )
});

/// How many tracked files share one (component, file) label set: a rotated file and its
/// successor have the same log path for a while, and the label goes only with the last.
static FILE_LAG_HOLDERS: LazyLock<Mutex<HashMap<(String, String), usize>>> =
    LazyLock::new(Default::default);

/// Registers every family (and the process collector) so they are listed from the start.
pub(super) fn force() {
    LazyLock::force(&REQUEST_SECONDS);
    LazyLock::force(&BATCH_EVENTS);
    LazyLock::force(&RETRIES);
    LazyLock::force(&BUFFER_BYTES);
    LazyLock::force(&BUFFER_EVENTS);
    LazyLock::force(&FILE_LAG);
    LazyLock::force(&PROCESS);
}

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`, open fds, threads, start time.
static PROCESS: LazyLock<()> = LazyLock::new(|| {
    let pc = prometheus::process_collector::ProcessCollector::for_self();
    // Only fails when registered twice, which LazyLock prevents.
    let _ = REGISTRY.register(Box::new(pc));
});

impl Stats {
    /// One request to the backend took `took`; `ok` says whether it was accepted.
    pub fn request(&self, took: Duration, ok: bool) {
        REQUEST_SECONDS
            .with_label_values(&[self.component.as_str(), if ok { "ok" } else { "error" }])
            .observe(took.as_secs_f64());
        super::health::record(&self.component, ok);
    }

    /// Size of one request, in events (or metric data).
    pub fn batch_size(&self, events: usize) {
        BATCH_EVENTS
            .with_label_values(&[self.component.as_str()])
            .observe(events as f64);
    }

    /// A request will be sent again.
    pub fn retry(&self) {
        RETRIES.with_label_values(&[self.component.as_str()]).inc();
    }

    /// What this component's buffer holds now (a disk or memory buffer in front of a sink).
    pub fn buffer_fill(&self, bytes: u64, events: u64) {
        BUFFER_BYTES
            .with_label_values(&[self.component.as_str()])
            .set(bytes as i64);
        BUFFER_EVENTS
            .with_label_values(&[self.component.as_str()])
            .set(events as i64);
    }

    /// The lag gauge of one file; the series disappears when the last handle for it drops.
    pub fn file_lag(&self, file: &str) -> FileLag {
        let key = (self.component.clone(), file.to_owned());
        *FILE_LAG_HOLDERS
            .lock()
            .expect("not poisoned")
            .entry(key.clone())
            .or_default() += 1;
        FileLag {
            gauge: FILE_LAG.with_label_values(&[key.0.as_str(), key.1.as_str()]),
            key,
        }
    }
}

/// Bytes behind for one file. Set on each read or scan (not per line: it is a hot path).
pub struct FileLag {
    gauge: IntGauge,
    key: (String, String),
}

impl FileLag {
    pub fn set(&self, bytes_behind: u64) {
        self.gauge.set(bytes_behind.min(i64::MAX as u64) as i64);
    }
}

impl Drop for FileLag {
    fn drop(&mut self) {
        let mut holders = FILE_LAG_HOLDERS.lock().expect("not poisoned");
        if let Some(n) = holders.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                holders.remove(&self.key);
                let _ = FILE_LAG.remove_label_values(&[self.key.0.as_str(), self.key.1.as_str()]);
            }
        }
    }
}

impl std::fmt::Debug for FileLag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLag")
            .field("file", &self.key.1)
            .finish()
    }
}
