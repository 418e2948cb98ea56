//! `type = "cloudwatch_logs"`: log events to CloudWatch Logs.
//!
//! The sink routes each event to its (group, stream) by the name templates, gathers events per
//! stream into requests that respect every PutLogEvents limit ([`request`]), and hands them to
//! one worker per stream ([`service`]), which sends them in order and retries until they are
//! accepted. Streams are independent: one that is throttled or failing queues up to
//! `stream_queue_requests` requests while the others go on; only beyond that does the sink stop
//! taking new data, which slows the sources rather than growing memory. At most `max_streams`
//! streams (and workers) are opened by event data; see [`overflow`].

mod config;
mod overflow;
mod request;
mod resume;
mod service;
pub(crate) mod template;

pub use config::CloudWatchLogsConfig;
pub use overflow::OVERFLOW_STREAM;
pub use request::{Limits, OutOfRange, Pending, Request};

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::event::{Event, EventBatch};
use crate::telemetry::{Outcome, Stats};
use service::{Service, StreamId};
use template::{Template, group_char, stream_char};

pub struct CloudWatchLogsSink {
    config: CloudWatchLogsConfig,
    group: Template,
    stream: Template,
    service: Arc<Service>,
    stats: Stats,
    /// The one stream of templates without fields: events need no routing then.
    fixed: Option<StreamId>,
}

/// Per-stream state in the dispatcher.
struct StreamState {
    pending: Pending,
    /// Requests cut but not yet taken by the worker.
    ready: VecDeque<Request>,
    worker: mpsc::Sender<Request>,
}

impl CloudWatchLogsSink {
    pub async fn new(name: &str, config: CloudWatchLogsConfig, stats: Stats) -> Self {
        // Validated at load time.
        let group = Template::parse(&config.log_group).expect("validated template");
        let stream = Template::parse(&config.log_stream).expect("validated template");
        let service = Arc::new(Service::new(name, &config, stats.clone()).await);
        let mut fields = false;
        let fixed = StreamId {
            group: group.render(|_| None, group_char, &mut fields),
            stream: stream.render(|_| None, stream_char, &mut fields),
        };
        Self {
            config,
            group,
            stream,
            service,
            stats,
            fixed: (!fields).then_some(fixed),
        }
    }

    pub async fn run(self, mut rx: mpsc::Receiver<EventBatch>) {
        let limits = Limits {
            max_bytes: self.config.batch_max_bytes,
            max_events: self.config.batch_max_events,
        };
        let timeout = Duration::from_millis(self.config.batch_timeout_ms);
        let mut streams: HashMap<StreamId, StreamState> = HashMap::new();
        let mut limit = overflow::StreamLimit::new(self.config.max_streams);
        let mut workers = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100).min(timeout));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    self.stats.count(Outcome::Received, batch.events.len() as u64);
                    // Group the batch by stream first, so each stream gets the batch's
                    // acknowledgement after the last of its events (a request that is cut in
                    // the middle of a batch must not complete it).
                    let by_stream = self.group_by_stream(&batch.events, &mut limit, &streams);
                    for (id, events) in by_stream {
                        let state = streams.entry(id.clone()).or_insert_with(|| {
                            let (tx, rx) = mpsc::channel(1);
                            let service = Arc::clone(&self.service);
                            workers.spawn(service.worker(id, rx));
                            StreamState { pending: Pending::default(), ready: VecDeque::new(), worker: tx }
                        });
                        for (ts, message) in events {
                            if !state.pending.fits(ts, message.len(), limits) {
                                state.ready.push_back(state.pending.take());
                            }
                            state.pending.push(ts, message);
                        }
                        state.pending.push_ack(batch.ack.clone());
                        // Backpressure: a stream with a full backlog blocks intake here.
                        while state.ready.len() > self.config.stream_queue_requests {
                            let req = state.ready.pop_front().expect("non-empty");
                            if state.worker.send(req).await.is_err() {
                                break;
                            }
                        }
                    }
                    // Every copy made above now carries the batch; this one is settled.
                    batch.ack.delivered();
                    hand_over(&mut streams);
                }
                _ = tick.tick() => {
                    for state in streams.values_mut() {
                        if state.pending.started().is_some_and(|t| t.elapsed() >= timeout) {
                            state.ready.push_back(state.pending.take());
                        }
                    }
                    hand_over(&mut streams);
                }
            }
        }

        // Input closed: send everything that is left, in order, then let the workers finish.
        for state in streams.values_mut() {
            if !state.pending.is_empty() {
                state.ready.push_back(state.pending.take());
            }
            while let Some(req) = state.ready.pop_front() {
                if state.worker.send(req).await.is_err() {
                    break;
                }
            }
        }
        drop(streams);
        while workers.join_next().await.is_some() {}
    }

    /// The batch's log events as messages, by the stream each goes to (opening no more than
    /// `limit` allows).
    fn group_by_stream(
        &self,
        events: &[Event],
        limit: &mut overflow::StreamLimit,
        streams: &HashMap<StreamId, StreamState>,
    ) -> HashMap<StreamId, Vec<(i64, String)>> {
        let mut by_stream: HashMap<StreamId, Vec<(i64, String)>> = HashMap::new();
        let mut to_fixed = Vec::new();
        // Each message is written here, then copied into a string of exactly its length:
        // requests hold thousands of them, and a string grown while being written keeps up to
        // twice its length.
        let mut scratch = String::new();
        for event in events {
            let Event::Log(log) = event else {
                // Metrics and spans have their own sinks; the config put them here.
                self.stats.error("unsupported_signal");
                continue;
            };
            scratch.clear();
            self.config.encoding.encode(log, &mut scratch);
            if crate::text::truncate_bytes(&mut scratch, self.config.max_event_bytes) {
                self.stats.count(Outcome::Truncated, 1);
            }
            let message = scratch.clone();
            match &self.fixed {
                Some(_) => to_fixed.push((log.timestamp_ms, message)),
                None => {
                    // A fixed name is one stream: only templated names need the bound.
                    let id = limit.place(
                        self.route(log),
                        |id| streams.contains_key(id) || by_stream.contains_key(id),
                        &self.stats,
                    );
                    by_stream
                        .entry(id)
                        .or_default()
                        .push((log.timestamp_ms, message));
                }
            }
        }
        if let Some(id) = &self.fixed
            && !to_fixed.is_empty()
        {
            by_stream.insert(id.clone(), to_fixed);
        }
        by_stream
    }

    fn route(&self, log: &crate::event::LogEvent) -> StreamId {
        let mut missing = false;
        let lookup = |k: &str| log.attribute_str(k);
        let group = self.group.render(lookup, group_char, &mut missing);
        let stream = self.stream.render(lookup, stream_char, &mut missing);
        if missing {
            self.stats.error("template_field_missing");
        }
        StreamId { group, stream }
    }
}

/// Moves ready requests to workers that have room, without waiting.
fn hand_over(streams: &mut HashMap<StreamId, StreamState>) {
    for state in streams.values_mut() {
        while let Some(req) = state.ready.pop_front() {
            match state.worker.try_send(req) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(req))
                | Err(mpsc::error::TrySendError::Closed(req)) => {
                    state.ready.push_front(req);
                    break;
                }
            }
        }
    }
}
