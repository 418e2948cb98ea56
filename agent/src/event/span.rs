//! Span events: one finished span, in the shape of the OpenTelemetry data model, carrying its
//! resource so sinks (X-Ray, New Relic) and span metrics need nothing else.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Attributes, Resource};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub resource: Arc<Resource>,
    /// Instrumentation scope (library) name and version.
    pub scope_name: String,
    pub scope_version: String,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    pub events: Vec<SpanEventRecord>,
    pub links: Vec<SpanLink>,
    pub status: SpanStatus,
}

impl SpanEvent {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    pub fn is_error(&self) -> bool {
        self.status.code == StatusCode::Error
    }

    /// A string attribute of the span, else of its resource.
    pub fn attribute_str(&self, key: &str) -> Option<&str> {
        self.attributes
            .get(key)
            .or_else(|| self.resource.attributes.get(key))
            .and_then(|v| v.as_str())
    }

    pub fn size_hint(&self) -> usize {
        self.name.len()
            + self.attributes.len() * 48
            + self.events.len() * 96
            + self.links.len() * 64
            + 128
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanStatus {
    pub code: StatusCode,
    pub message: String,
}

/// A timed event inside a span (e.g. an exception).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEventRecord {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub attributes: Attributes,
}
