//! One event model for the three signals. Logs are carried today; metrics and spans join the
//! same enum (and the same batches, acks and queues) when their sources arrive.

mod ack;

pub use ack::{Ack, AckReceiver, AckStatus, ack_channel};

use std::time::{SystemTime, UNIX_EPOCH};

/// Structured fields of an event (parsed JSON, enrichment, file path, ...).
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// A unit of telemetry flowing through the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Log(LogEvent),
}

impl Event {
    /// Approximate in-memory size, used for batch and memory accounting.
    pub fn size_hint(&self) -> usize {
        match self {
            Event::Log(l) => l.size_hint(),
        }
    }
}

/// One log record: a line (or a multiline group) from a file, or a record received by a source.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch: the record's own time when it carries one, else the
    /// time it was read.
    pub timestamp_ms: i64,
    /// The record as written (after redaction).
    pub message: String,
    /// Structured fields; empty for plain text lines.
    pub attributes: Attributes,
    /// The message was parsed into `attributes` (which then hold all of its fields), so
    /// structured encodings write the attributes rather than the raw text.
    pub structured: bool,
}

impl LogEvent {
    pub fn new(message: String, timestamp_ms: i64) -> Self {
        Self {
            timestamp_ms,
            message,
            attributes: Attributes::new(),
            structured: false,
        }
    }

    pub fn size_hint(&self) -> usize {
        // Attributes are rare on the hot path; a rough per-entry estimate is enough here.
        self.message.len() + self.attributes.len() * 48 + 32
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
