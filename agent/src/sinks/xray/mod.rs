//! `type = "xray"`: spans to AWS X-Ray as segment documents ([`segment`]), sent with
//! PutTraceSegments in calls of at most 50 documents ([`service`]).
//!
//! Each span becomes one document, converted as it arrives; documents gather into a request
//! until it holds `batch.max_events` or `batch.timeout_ms` passed, and the shared delivery
//! driver ([`crate::sinks::driver`]) sends it, up to `request.concurrency` at once; beyond that the sink
//! stops taking input (backpressure). A batch is acknowledged once all of its documents are
//! answered for good, whichever request finishes last.

mod config;
pub mod segment;
mod service;
#[cfg(test)]
mod tests;

pub use config::XRayConfig;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::event::{Ack, Event, EventBatch, now_ms};
use crate::sinks::driver::settings::Settings;
use crate::sinks::driver::{self, Batches, Dispatch, Intake, Lanes, Ready, Schedule};
use crate::telemetry::{Outcome, Stats};
use service::Service;

/// X-Ray refuses trace ids whose time part is older than this.
const MAX_TRACE_AGE_SECS: i64 = 30 * 24 * 3600;
/// ... or further ahead than this.
const MAX_TRACE_SKEW_SECS: i64 = 5 * 60;

pub struct XRaySink {
    name: String,
    config: XRayConfig,
    service: Service,
    stats: Stats,
}

/// The sink's half of the driver's loop: spans to documents.
struct Documents {
    config: XRayConfig,
    stats: Stats,
    /// Documents, up to `batch.max_events` (X-Ray takes 50) a request.
    batches: Batches<(), Vec<(String, String)>>,
    /// Spans dropped as `trace_id_not_xray` (the warning is logged at powers of two).
    not_xray: AtomicU64,
}

impl XRaySink {
    pub async fn new(name: &str, config: XRayConfig, stats: Stats) -> Self {
        let service = Service::new(&config).await;
        Self {
            name: name.to_owned(),
            config,
            service,
            stats,
        }
    }

    pub async fn run(self, rx: mpsc::Receiver<EventBatch>) {
        let (batch, request) = (self.config.batch_settings(), self.config.request_settings());
        let dispatch = Dispatch::start(
            &self.name,
            self.service,
            self.stats.clone(),
            request,
            self.config.unprocessed_retries,
            Lanes::Shared,
        );
        let intake = Documents {
            batches: Batches::new(Vec::new, batch.max_events, batch.timeout),
            config: self.config,
            stats: self.stats,
            not_xray: AtomicU64::new(0),
        };
        driver::run(intake, rx, dispatch).await;
    }
}

impl Intake for Documents {
    type Backend = Service;

    fn take(&mut self, events: Vec<Event>, ack: &Ack, ready: &mut Ready<Service>) {
        for event in &events {
            if let Some(doc) = self.document(event) {
                // Documents are within their limit already: they always fit.
                let _ = self.batches.add(&(), doc, ack, ready);
            }
        }
    }

    fn open(&mut self) -> impl Schedule<Service> + '_ {
        &mut self.batches
    }
}

impl Documents {
    /// The document of a span, or `None` (counted) if it cannot be sent.
    fn document(&self, event: &Event) -> Option<(String, String)> {
        let Event::Span(span) = event else {
            // Only an input that emits several signals (OTLP) gets here: counted, not sent.
            self.stats.count(Outcome::Rejected, 1);
            self.stats.error("unsupported_signal");
            return None;
        };
        if self.config.drop_invalid_trace_ids {
            let epoch = i64::from(segment::trace_id_epoch(&span.trace_id));
            let now = now_ms() / 1000;
            if epoch < now - MAX_TRACE_AGE_SECS || epoch > now + MAX_TRACE_SKEW_SECS {
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("trace_id_not_xray");
                let n = self.not_xray.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() || n == 0 {
                    tracing::warn!(
                        dropped = n + 1,
                        "span dropped: its trace id is not X-Ray-compatible (default OpenTelemetry \
                         SDKs make random W3C ids, which PutTraceSegments refuses); send traces \
                         through the `aws_otlp` sink (X-Ray's OTLP endpoint takes any trace id)"
                    );
                }
                return None;
            }
        }
        let doc = segment::document(span, &self.config.annotations);
        let mut shed = false;
        let text = segment::encode(doc, self.config.max_document_bytes, &mut shed);
        if shed {
            self.stats.error("document_metadata_shed");
        }
        match text {
            Some(t) => Some((segment::hex(&span.span_id), t)),
            None => {
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("document_too_large");
                None
            }
        }
    }
}
