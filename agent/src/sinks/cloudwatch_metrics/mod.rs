//! `type = "cloudwatch_metrics"`: metric events to CloudWatch, through PutMetricData or as
//! Embedded Metric Format log events (`mode = "emf"`).
//!
//! Points are routed to a series (namespace and dimensions from templates over the metric's
//! tags and resource, name through `rename`, unit mapped to a CloudWatch unit), aggregated per
//! storage period ([`aggregate`]), and each period is sent once it has ended (plus
//! `period_grace_ms` for late points). A batch is acknowledged only when every period holding
//! its points was accepted. Sending happens in the sink's loop: while CloudWatch is throttled or
//! unreachable the sink stops taking input, which slows the sources instead of growing memory.

pub mod aggregate;
mod config;
pub mod emf;
pub mod request;
mod service;
#[cfg(test)]
mod tests;

pub use config::{CloudWatchMetricsConfig, MAX_DIMENSIONS, Mode};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::event::{Ack, AckStatus, Event, EventBatch, LogEvent, MetricEvent, ack_channel, now_ms};
use crate::sinks::cloudwatch_logs::template::Template;
use crate::sinks::cloudwatch_logs::{CloudWatchLogsConfig, CloudWatchLogsSink};
use crate::sinks::driver::settings::RequestConfig;
use crate::sinks::driver::{Delivery, Job, RetryPolicy, sleep_until_due};
use crate::telemetry::{Outcome, Stats};
use crate::text::truncate_chars;
use aggregate::{Added, Aggregator, SeriesKey};
use request::{Datum, MAX_DATA_PER_REQUEST};

/// CloudWatch accepts data points up to two weeks old.
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000 - 5 * 60 * 1000;
/// ... and up to two hours ahead.
const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000 - 5 * 60 * 1000;

pub struct CloudWatchMetricsSink {
    config: CloudWatchMetricsConfig,
    namespace: Template,
    dimensions: Option<Vec<(String, Template)>>,
    out: Output,
    stats: Stats,
}

enum Output {
    /// Periods go out one request after the other, through the shared delivery driver.
    PutMetricData(Delivery<service::Service>),
    Emf {
        tx: mpsc::Sender<EventBatch>,
        sink: tokio::task::JoinHandle<()>,
    },
}

/// A batch waiting for the periods it touched to be accepted.
struct PendingAck {
    last_period: i64,
    events: u64,
    ack: Ack,
}

impl CloudWatchMetricsSink {
    pub async fn new(
        name: &str,
        config: CloudWatchMetricsConfig,
        stats: Stats,
    ) -> anyhow::Result<Self> {
        // Templates were validated at load time.
        let namespace = Template::parse(&config.namespace).map_err(anyhow::Error::msg)?;
        let dimensions = match &config.dimensions {
            Some(d) => Some(
                d.iter()
                    .map(|(k, t)| Ok((k.clone(), Template::parse(t).map_err(anyhow::Error::msg)?)))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let out = match config.mode {
            Mode::PutMetricData => {
                let service = Arc::new(service::Service::new(&config).await);
                let policy = RetryPolicy {
                    max_backoff: config.request_settings().max_backoff,
                    partial_retries: 0,
                };
                Output::PutMetricData(Delivery::new(name, service, stats.clone(), policy, 1))
            }
            Mode::Emf => {
                // The CloudWatch Logs sink does the delivery; it counts as its own component.
                let mut table = toml::Table::new();
                table.insert(
                    "log_group".into(),
                    config.log_group.clone().unwrap_or_default().into(),
                );
                table.insert(
                    "log_stream".into(),
                    config.log_stream.clone().unwrap_or_default().into(),
                );
                table.insert("encoding".into(), "text".into());
                let mut logs: CloudWatchLogsConfig = toml::Value::Table(table).try_into()?;
                // The metrics sink's timeout and backoff; the log sink's own concurrency.
                logs.request = RequestConfig {
                    concurrency: None,
                    ..config.request
                };
                let inner = format!("{name}/emf");
                crate::telemetry::register_sink(&inner);
                let sink = CloudWatchLogsSink::new(&inner, logs, Stats::new(&inner)).await;
                let (tx, rx) = mpsc::channel(2);
                Output::Emf {
                    tx,
                    sink: tokio::spawn(sink.run(rx)),
                }
            }
        };
        Ok(Self {
            config,
            namespace,
            dimensions,
            out,
            stats,
        })
    }

    pub async fn run(self, mut rx: mpsc::Receiver<EventBatch>) {
        let period_ms = i64::from(self.config.resolution_secs) * 1000;
        let grace_ms = self.config.period_grace_ms as i64;
        let mut agg = Aggregator::new(period_ms, now_ms());
        let mut pending: VecDeque<PendingAck> = VecDeque::new();
        loop {
            // Wake exactly when the oldest open period is due (one wakeup per period, not a
            // polling tick: the agent's idle cost counts wakeups).
            let due = agg
                .oldest()
                .or_else(|| pending.front().map(|p| p.last_period))
                .map(|p| {
                    let due_ms = p.saturating_add(period_ms + grace_ms);
                    let wait = due_ms.saturating_sub(now_ms()).max(0) as u64;
                    tokio::time::Instant::now() + Duration::from_millis(wait)
                });
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    let (last_period, events) = self.take(&batch, &mut agg);
                    pending.push_back(PendingAck { last_period, events, ack: batch.ack });
                }
                _ = sleep_until_due(due) => {
                    let last_start = now_ms() - grace_ms - period_ms;
                    self.flush(&mut agg, &mut pending, last_start).await;
                }
            }
        }
        // Input closed: send every open period, then finish the EMF delivery.
        self.flush(&mut agg, &mut pending, i64::MAX).await;
        if let Output::Emf { tx, sink } = self.out {
            drop(tx);
            let _ = sink.await;
        }
    }

    /// Aggregates a batch; returns the last period it touched and how many of its events count
    /// as sent once that period is accepted.
    fn take(&self, batch: &EventBatch, agg: &mut Aggregator) -> (i64, u64) {
        self.stats
            .count(Outcome::Received, batch.events.len() as u64);
        let now = now_ms();
        let mut last = i64::MIN;
        let mut ok = 0;
        for event in &batch.events {
            let Event::Metric(m) = event else {
                // Counted as rejected, as in the other sinks: every event received is accounted.
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("unsupported_signal");
                continue;
            };
            if m.timestamp_ms < now - MAX_AGE_MS || m.timestamp_ms > now + MAX_AHEAD_MS {
                self.stats.count(Outcome::DroppedOutOfRange, 1);
                continue;
            }
            let Some(key) = self.series(m) else {
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("too_many_dimensions");
                continue;
            };
            match agg.add(key, m) {
                Added::Into(p) => {
                    last = last.max(p);
                    ok += 1;
                }
                Added::Baseline => ok += 1,
                Added::Invalid => {
                    self.stats.count(Outcome::Rejected, 1);
                    self.stats.error("invalid_value");
                }
            }
        }
        (last, ok)
    }

    /// The CloudWatch series of a point; `None` when it would have more than 30 dimensions.
    fn series(&self, m: &MetricEvent) -> Option<SeriesKey> {
        let lookup = |k: &str| -> Option<String> {
            if let Some(v) = m.tags.get(k) {
                return Some(v.clone());
            }
            match m.resource.as_ref()?.attributes.get(k)? {
                serde_json::Value::String(s) => Some(s.clone()),
                v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                    Some(v.to_string())
                }
                _ => None,
            }
        };
        let mut missing = false;
        let mut namespace = self.namespace.render(lookup, namespace_char, &mut missing);
        truncate_chars(&mut namespace, 255);
        if missing {
            self.stats.error("template_field_missing");
        }
        let mut dimensions: Vec<(String, String)> = match &self.dimensions {
            Some(templates) => templates
                .iter()
                .filter_map(|(name, t)| {
                    let mut missing = false;
                    let v = t.render(lookup, |c| !c.is_control(), &mut missing);
                    if missing {
                        // Left out rather than sent as `unknown`: a wrong dimension value would
                        // make a series nobody queries.
                        self.stats.error("template_field_missing");
                        return None;
                    }
                    Some((name.clone(), v))
                })
                .collect(),
            None => {
                if m.tags.len() > MAX_DIMENSIONS {
                    return None;
                }
                m.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
        };
        dimensions.retain(|(k, v)| !k.is_empty() && !v.trim().is_empty());
        for (k, v) in &mut dimensions {
            truncate_chars(k, 255);
            truncate_chars(v, 1024);
        }
        dimensions.sort();
        let mut name = self
            .config
            .rename
            .get(&m.name)
            .cloned()
            .unwrap_or_else(|| m.name.clone());
        truncate_chars(&mut name, 255);
        Some(SeriesKey {
            namespace,
            name,
            dimensions,
            unit: request::standard_unit(&m.unit),
        })
    }

    /// Sends every period that started at or before `last_start`, then acknowledges the
    /// batches whose points all lie in those periods.
    async fn flush(
        &self,
        agg: &mut Aggregator,
        pending: &mut VecDeque<PendingAck>,
        last_start: i64,
    ) {
        let mut data = Vec::new();
        for (start, key, a) in agg.take_due(last_start) {
            request::data_of(start, key, a, &mut data);
        }
        let mut done = Vec::new();
        while pending.front().is_some_and(|p| p.last_period <= last_start) {
            done.push(pending.pop_front().expect("non-empty"));
        }
        match &self.out {
            Output::PutMetricData(delivery) => {
                for request in request::requests(data, MAX_DATA_PER_REQUEST) {
                    let job = Job {
                        request,
                        acks: Vec::new(),
                    };
                    delivery.deliver(&(), job).await;
                }
                for p in done {
                    self.stats.count(Outcome::Sent, p.events);
                    p.ack.delivered();
                }
            }
            Output::Emf { tx, .. } => self.send_emf(tx, data, done).await,
        }
    }

    async fn send_emf(
        &self,
        tx: &mpsc::Sender<EventBatch>,
        data: Vec<Datum>,
        done: Vec<PendingAck>,
    ) {
        if data.is_empty() {
            for p in done {
                self.stats.count(Outcome::Sent, p.events);
                p.ack.delivered();
            }
            return;
        }
        let events: Vec<Event> = emf::split_for_emf(data)
            .iter()
            .map(|d| {
                let mut log = LogEvent::new(
                    emf::document(d, self.config.resolution_secs),
                    d.timestamp_ms,
                );
                log.attributes
                    .insert("namespace".into(), d.key.namespace.clone().into());
                for (k, v) in &d.key.dimensions {
                    log.attributes.insert(k.clone(), v.clone().into());
                }
                Event::Log(log)
            })
            .collect();
        // The originals are acknowledged when the log sink has delivered every document.
        let (ack_tx, mut ack_rx) = ack_channel();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            if let Some((_, AckStatus::Delivered)) = ack_rx.recv().await {
                for p in done {
                    stats.count(Outcome::Sent, p.events);
                    p.ack.delivered();
                }
            }
        });
        let batch = EventBatch {
            events,
            ack: Ack::new(0, ack_tx),
        };
        if tx.send(batch).await.is_err() {
            tracing::error!("EMF delivery stopped; metrics not acknowledged");
        }
    }
}

/// Characters CloudWatch allows in a namespace.
fn namespace_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#' | ':' | ' ')
}
