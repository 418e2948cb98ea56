//! `type = "xray"`: spans to AWS X-Ray as segment documents ([`segment`]), sent with
//! PutTraceSegments in calls of at most 50 documents ([`service`]).
//!
//! Each span becomes one document, converted as it arrives; documents gather into a request
//! until it holds `batch_max_documents` or `batch_timeout_ms` passed. Up to `concurrency`
//! requests are in flight; beyond that the sink stops taking input (backpressure). A request
//! carries a share of the ack of every batch it holds documents of, so a batch is acknowledged
//! once all of its documents are delivered, whichever request finishes last.

mod config;
pub mod segment;
mod service;

pub use config::XRayConfig;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

use crate::event::{Event, EventBatch, now_ms};
use crate::telemetry::{Outcome, Stats};
use service::{Request, Service};

/// X-Ray refuses trace ids whose time part is older than this.
const MAX_TRACE_AGE_SECS: i64 = 30 * 24 * 3600;
/// ... or further ahead than this.
const MAX_TRACE_SKEW_SECS: i64 = 5 * 60;

pub struct XRaySink {
    config: XRayConfig,
    service: Arc<Service>,
    stats: Stats,
    /// Spans dropped as `trace_id_not_xray` (the warning is logged at powers of two).
    not_xray: AtomicU64,
}

impl XRaySink {
    pub async fn new(name: &str, config: XRayConfig, stats: Stats) -> Self {
        let service = Arc::new(Service::new(name, &config, stats.clone()).await);
        Self {
            config,
            service,
            stats,
            not_xray: AtomicU64::new(0),
        }
    }

    pub async fn run(self, mut rx: mpsc::Receiver<EventBatch>) {
        let timeout = Duration::from_millis(self.config.batch_timeout_ms);
        let in_flight = Arc::new(Semaphore::new(self.config.concurrency));
        let mut workers = tokio::task::JoinSet::new();
        let mut pending = Request::default();
        let mut started: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100).min(timeout));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            let cut = tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    self.stats.count(Outcome::Received, batch.events.len() as u64);
                    let mut in_pending = false;
                    for event in &batch.events {
                        let Some(doc) = self.document(event) else { continue };
                        if pending.docs.len() >= self.config.batch_max_documents {
                            let full = std::mem::take(&mut pending);
                            self.dispatch(full, &in_flight, &mut workers).await;
                            in_pending = false;
                        }
                        if !in_pending {
                            pending.acks.push(batch.ack.clone());
                            in_pending = true;
                        }
                        started.get_or_insert_with(Instant::now);
                        pending.docs.push(doc);
                    }
                    // The copies taken above carry the batch now.
                    batch.ack.delivered();
                    pending.docs.len() >= self.config.batch_max_documents
                }
                _ = tick.tick() => started.is_some_and(|t| t.elapsed() >= timeout),
            };
            if cut && !pending.docs.is_empty() {
                let req = std::mem::take(&mut pending);
                started = None;
                self.dispatch(req, &in_flight, &mut workers).await;
            }
            while workers.try_join_next().is_some() {}
        }
        if !pending.docs.is_empty() {
            self.dispatch(pending, &in_flight, &mut workers).await;
        }
        while workers.join_next().await.is_some() {}
    }

    /// Starts a request once a slot is free (waiting here is the sink's backpressure).
    async fn dispatch(
        &self,
        req: Request,
        in_flight: &Arc<Semaphore>,
        workers: &mut tokio::task::JoinSet<()>,
    ) {
        let Ok(permit) = Arc::clone(in_flight).acquire_owned().await else {
            return;
        };
        let service = Arc::clone(&self.service);
        workers.spawn(async move {
            service.deliver(req).await;
            drop(permit);
        });
    }

    /// The document of a span, or `None` (counted) if it cannot be sent.
    fn document(&self, event: &Event) -> Option<(String, String)> {
        let Event::Span(span) = event else {
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
