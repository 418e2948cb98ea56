//! `type = "cloudwatch_logs"`: log events to CloudWatch Logs.
//!
//! The sink routes each event to its (group, stream) by the name templates, gathers events per
//! stream into requests that respect every PutLogEvents limit ([`request`]), and the shared
//! delivery driver ([`crate::sinks::driver`]) sends them: one lane per stream, which sends its
//! requests in order and retries until they are accepted ([`service`]). Streams are
//! independent: one that is throttled or failing queues up to `stream_queue_requests` requests
//! while the others go on; only beyond that does the sink stop taking new data, which slows the
//! sources rather than growing memory. At most `max_streams` streams (and lanes) are opened by
//! event data; see [`overflow`].

mod config;
mod overflow;
mod request;
mod resume;
mod service;
pub(crate) mod template;
#[cfg(test)]
mod tests;

pub use config::CloudWatchLogsConfig;
pub use overflow::OVERFLOW_STREAM;
pub use request::{Limits, Message, OutOfRange, Pending, Request};

use tokio::sync::mpsc;

use crate::event::{Ack, Event, EventBatch, LogEvent};
use crate::sinks::driver::settings::Settings;
use crate::sinks::driver::{self, Batches, Dispatch, Intake, Lanes, Ready, Schedule};
use crate::telemetry::{Outcome, Stats};
use service::{Service, StreamId};
use template::{Template, group_char, stream_char};

pub struct CloudWatchLogsSink {
    name: String,
    config: CloudWatchLogsConfig,
    group: Template,
    stream: Template,
    service: Service,
    stats: Stats,
}

/// The sink's half of the driver's loop: log events to messages, routed to their stream.
struct Streams {
    config: CloudWatchLogsConfig,
    group: Template,
    stream: Template,
    stats: Stats,
    /// The one stream of templates without fields: events need no routing then.
    fixed: Option<StreamId>,
    limit: overflow::StreamLimit,
    batches: Batches<StreamId, Pending>,
    /// Each message is written here, then copied into a buffer of exactly its length: requests
    /// hold thousands of them, and a buffer grown while being written keeps up to twice its
    /// length.
    scratch: Vec<u8>,
}

impl CloudWatchLogsSink {
    pub async fn new(name: &str, config: CloudWatchLogsConfig, stats: Stats) -> Self {
        // Validated at load time.
        let group = Template::parse(&config.log_group).expect("validated template");
        let stream = Template::parse(&config.log_stream).expect("validated template");
        let service = Service::new(name, &config, stats.clone()).await;
        Self {
            name: name.to_owned(),
            config,
            group,
            stream,
            service,
            stats,
        }
    }

    pub async fn run(self, rx: mpsc::Receiver<EventBatch>) {
        let config = self.config;
        let (batch, request) = (config.batch_settings(), config.request_settings());
        let lanes = Lanes::PerKey {
            queue: config.stream_queue_requests,
        };
        let dispatch = Dispatch::start(
            &self.name,
            self.service,
            self.stats.clone(),
            request,
            0,
            lanes,
        );
        let limits = Limits {
            max_bytes: batch.max_bytes,
            max_events: batch.max_events,
        };
        let mut fields = false;
        let fixed = StreamId {
            group: self.group.render(|_| None, group_char, &mut fields),
            stream: self.stream.render(|_| None, stream_char, &mut fields),
        };
        let intake = Streams {
            fixed: (!fields).then_some(fixed),
            limit: overflow::StreamLimit::new(config.max_streams),
            batches: Batches::new(
                move || Pending::new(limits),
                batch.max_events,
                batch.timeout,
            ),
            scratch: Vec::new(),
            group: self.group,
            stream: self.stream,
            stats: self.stats,
            config,
        };
        driver::run(intake, rx, dispatch).await;
    }
}

impl Intake for Streams {
    type Backend = Service;

    fn take(&mut self, events: Vec<Event>, ack: &Ack, ready: &mut Ready<Service>) {
        for event in &events {
            let Event::Log(log) = event else {
                // Only an input that emits several signals (OTLP) gets here: counted, not sent.
                self.stats.count(Outcome::Rejected, 1);
                self.stats.error("unsupported_signal");
                continue;
            };
            let message = self.message(log);
            let routed;
            let id = match &self.fixed {
                Some(id) => id,
                None => {
                    // A fixed name is one stream: only templated names need the bound.
                    let batches = &self.batches;
                    routed =
                        self.limit
                            .place(self.route(log), |id| batches.contains(id), &self.stats);
                    &routed
                }
            };
            // A message is cut to `max_event_bytes`, so it always fits a request.
            let _ = self
                .batches
                .add(id, (log.timestamp_ms, message), ack, ready);
        }
    }

    fn open(&mut self) -> impl Schedule<Service> + '_ {
        &mut self.batches
    }
}

impl Streams {
    /// The event's message as sent (escaped for the body), cut to `max_event_bytes` (counted).
    fn message(&mut self, log: &LogEvent) -> Message {
        self.scratch.clear();
        let len = self.config.encoding.encode_escaped(log, &mut self.scratch);
        if len <= self.config.max_event_bytes {
            return Message::escaped(&self.scratch, len);
        }
        // Rare: the text itself is cut (on a character boundary), then escaped.
        let mut text = String::new();
        self.config.encoding.encode(log, &mut text);
        crate::text::truncate_bytes(&mut text, self.config.max_event_bytes);
        self.stats.count(Outcome::Truncated, 1);
        Message::new(&text)
    }

    fn route(&self, log: &LogEvent) -> StreamId {
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
