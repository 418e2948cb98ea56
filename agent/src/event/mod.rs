//! One event model for the three signals: logs, metrics and spans travel in the same batches,
//! with the same acknowledgements, through the same queues.

mod ack;
mod metric;
mod span;

pub use ack::{Ack, AckReceiver, AckStatus, Position, ack_channel};
pub use metric::{MetricEvent, MetricValue, Sample, Tags, Temporality};
pub use span::{SpanEvent, SpanEventRecord, SpanKind, SpanLink, SpanStatus, StatusCode};

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Structured fields of an event (parsed JSON, enrichment, file path, ...).
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// A unit of telemetry flowing through the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Log(LogEvent),
    Metric(MetricEvent),
    Span(SpanEvent),
}

impl Event {
    /// Approximate in-memory size, used for batch and memory accounting.
    pub fn size_hint(&self) -> usize {
        match self {
            Event::Log(l) => l.size_hint(),
            Event::Metric(m) => m.size_hint(),
            Event::Span(s) => s.size_hint(),
        }
    }

    /// The signal, for sinks that take only some (`log`, `metric`, `span`); the label of the
    /// `unsupported_signal` error count.
    pub fn signal(&self) -> &'static str {
        match self {
            Event::Log(_) => "log",
            Event::Metric(_) => "metric",
            Event::Span(_) => "span",
        }
    }
}

/// The entity that produced telemetry (OpenTelemetry resource): `service.name`, `host.id`,
/// `cloud.*`, ... Shared by every event from the same export.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub attributes: Attributes,
}

/// One log record: a line (or a multiline group) from a file, or a record received by a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch: the record's own time when it carries one, else the
    /// time it was read.
    pub timestamp_ms: i64,
    /// The record as written (after redaction).
    pub message: String,
    /// Structured fields; empty for plain text lines.
    #[serde(deserialize_with = "attributes_in_one_go")]
    pub attributes: Attributes,
    /// The message was parsed into `attributes` (which then hold all of its fields), so
    /// structured encodings write the attributes rather than the raw text.
    pub structured: bool,
    /// Who emitted it, when the source knows (OTLP); file lines get theirs from enrichment.
    pub resource: Option<Arc<Resource>>,
    /// The OTLP record's own fields (severity, trace context, scope), for records received over
    /// OTLP, so they leave for OTLP backends as they came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<Box<OtlpLogFields>>,
}

/// Fields of an OTLP log record that have no place in a plain log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OtlpLogFields {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: String,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub flags: u32,
    pub event_name: String,
    pub scope_name: String,
    pub scope_version: String,
    /// The body when it was not a plain string (a map, an array, a number); `message` then
    /// holds its JSON text.
    pub body: Option<serde_json::Value>,
}

impl LogEvent {
    pub fn new(message: String, timestamp_ms: i64) -> Self {
        Self {
            timestamp_ms,
            message,
            attributes: Attributes::new(),
            structured: false,
            resource: None,
            otlp: None,
        }
    }

    pub fn size_hint(&self) -> usize {
        // Counts what the heap really holds, as the memory limit relies on it: a map's node
        // (~640 bytes for up to 11 entries) weighs more than a short line's text.
        std::mem::size_of::<Self>() + self.message.capacity() + attributes_size(&self.attributes)
    }

    /// A string attribute, or a string rendering of a scalar attribute.
    pub fn attribute_str(&self, key: &str) -> Option<String> {
        match self.attributes.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }
}

/// Reads an attribute map by collecting its entries and building the tree at once. The disk
/// buffer wrote the map in key order, and inserting sorted keys one by one compares each new
/// key with every key already in its node (a quarter of the buffer's decoding time); building
/// from the collected entries compares each key once. Duplicate keys: the last one wins, as
/// with inserts.
fn attributes_in_one_go<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Attributes, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Attributes;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of attributes")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Attributes, A::Error> {
            let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(256));
            while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                entries.push(entry);
            }
            Ok(entries.into_iter().collect())
        }
    }
    d.deserialize_map(Entries)
}

/// Approximate heap bytes of an attribute map (B-tree nodes, keys, values).
pub fn attributes_size(attributes: &Attributes) -> usize {
    if attributes.is_empty() {
        return 0;
    }
    let nodes = attributes.len().div_ceil(11);
    nodes * 640
        + attributes
            .iter()
            .map(|(k, v)| k.len() + value_size(v))
            .sum::<usize>()
}

fn value_size(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(a) => a.len() * 32 + a.iter().map(value_size).sum::<usize>(),
        serde_json::Value::Object(o) => attributes_size(o),
        _ => 0,
    }
}

/// Events moving together through the pipeline, with the acknowledgement that tells their
/// source when every sink has them.
#[derive(Debug)]
pub struct EventBatch {
    pub events: Vec<Event>,
    pub ack: Ack,
}

impl EventBatch {
    /// A copy for another sink of a fan-out: same events, its own share of the acknowledgement.
    pub fn fork(&self) -> Self {
        Self {
            events: self.events.clone(),
            ack: self.ack.clone(),
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
