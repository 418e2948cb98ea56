//! Building PutLogEvents requests that respect every limit of the API:
//! at most 1,048,576 bytes (each event's UTF-8 message plus 26 bytes), at most 10,000 events,
//! no more than 24 hours between the first and last event, events in chronological order, each
//! event at most `max_event_bytes`, and no event more than 14 days old or 2 hours ahead.

use std::io::Write;

use serde::Deserialize;

use crate::sinks::driver::{Open, Payload, TooLarge};
use crate::sinks::encoding::escape_into;
use crate::telemetry::{Outcome, Stats};

pub const MAX_REQUEST_BYTES: usize = 1_048_576;
pub const EVENT_OVERHEAD_BYTES: usize = 26;
pub const MAX_REQUEST_EVENTS: usize = 10_000;
/// The largest event CloudWatch Logs has always accepted (256 KiB including the overhead).
pub const MAX_EVENT_BYTES: usize = 262_144 - EVENT_OVERHEAD_BYTES;
const MAX_SPAN_MS: i64 = 24 * 3600 * 1000 - 1;
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;
/// Keep clear of the edges: by the time the request arrives the clock has moved on.
const EDGE_MARGIN_MS: i64 = 5 * 60 * 1000;

/// What to do with events CloudWatch would refuse for their timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRange {
    /// Send them with the timestamp moved to the nearest accepted time (counted); the line keeps
    /// its own text, so nothing is lost.
    #[default]
    Clamp,
    /// Leave them out (counted and logged).
    Drop,
}

/// Size and count limits for one stream's requests (configurable below the API's own).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_events: usize,
}

/// An event's message as a request carries it: the contents of its JSON string, escaped (the
/// sink writes it so, see `Encoding::encode_escaped`), and the length of the message itself,
/// which is what the API's limits count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    escaped: Box<[u8]>,
    len: usize,
}

impl Message {
    /// `text`, escaped.
    pub fn new(text: &str) -> Self {
        let mut escaped = Vec::with_capacity(text.len() + 16);
        escape_into(text, &mut escaped);
        Self::escaped(&escaped, text.len())
    }

    /// A message already escaped, `len` bytes long itself. Copied to a buffer of its exact
    /// length: requests hold thousands of them.
    pub fn escaped(escaped: &[u8], len: usize) -> Self {
        Self {
            escaped: escaped.into(),
            len,
        }
    }

    /// Bytes of the message itself (UTF-8, unescaped).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One PutLogEvents call's worth of events.
#[derive(Debug, Default)]
pub struct Request {
    pub events: Vec<(i64, Message)>,
}

impl Request {
    /// Applies the timestamp policy against `now_ms` and sorts chronologically (stable, so
    /// lines with the same time keep their file order). Returns how many events were dropped.
    pub fn prepare(&mut self, now_ms: i64, policy: OutOfRange, stats: &Stats) -> usize {
        let oldest = now_ms - MAX_AGE_MS + EDGE_MARGIN_MS;
        let newest = now_ms + MAX_AHEAD_MS - EDGE_MARGIN_MS;
        let before = self.events.len();
        match policy {
            OutOfRange::Clamp => {
                let mut clamped = 0;
                for (ts, _) in &mut self.events {
                    if *ts < oldest || *ts > newest {
                        *ts = (*ts).clamp(oldest, newest);
                        clamped += 1;
                    }
                }
                stats.count(Outcome::TimestampClamped, clamped);
            }
            OutOfRange::Drop => {
                self.events.retain(|(ts, _)| (oldest..=newest).contains(ts));
                stats.count(
                    Outcome::DroppedOutOfRange,
                    (before - self.events.len()) as u64,
                );
            }
        }
        self.events.sort_by_key(|(ts, _)| *ts);
        before - self.events.len()
    }

    /// The PutLogEvents body (awsJson 1.1) for this request to `group`/`stream`. Written here
    /// rather than by the SDK, whose JSON writer escapes strings a character at a time (with
    /// messages that are JSON lines, full of quotes, 7 % of the agent's CPU in a burst); the
    /// messages are already escaped, so this is mostly copying.
    pub fn body(&self, group: &str, stream: &str) -> Vec<u8> {
        let text: usize = self.events.iter().map(|(_, m)| m.escaped.len()).sum();
        let mut out = Vec::with_capacity(text + 48 * self.events.len() + 2 * group.len() + 256);
        out.extend_from_slice(b"{\"logGroupName\":\"");
        escape_into(group, &mut out);
        out.extend_from_slice(b"\",\"logStreamName\":\"");
        escape_into(stream, &mut out);
        out.extend_from_slice(b"\",\"logEvents\":[");
        for (i, (timestamp, message)) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{{\"timestamp\":{timestamp},\"message\":\"");
            out.extend_from_slice(&message.escaped);
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"]}");
        out
    }
}

impl Payload for Request {
    fn items(&self) -> usize {
        self.events.len()
    }

    /// Halves (to isolate an event the service refuses).
    fn split(mut self) -> Result<(Request, Request), Request> {
        let second = self.events.split_off(self.events.len() / 2);
        Ok((self, Request { events: second }))
    }
}

/// Events gathered for one stream, not yet cut into a request.
#[derive(Debug)]
pub struct Pending {
    request: Request,
    limits: Limits,
    bytes: usize,
    min_ts: i64,
    max_ts: i64,
}

impl Pending {
    pub fn new(limits: Limits) -> Self {
        Self {
            request: Request::default(),
            limits,
            bytes: 0,
            min_ts: 0,
            max_ts: 0,
        }
    }

    /// Whether one more event of `size` bytes at `ts` fits in the current request.
    pub fn fits(&self, ts: i64, size: usize) -> bool {
        let r = &self.request;
        if r.events.is_empty() {
            return true;
        }
        r.events.len() < self.limits.max_events
            && self.bytes + size + EVENT_OVERHEAD_BYTES <= self.limits.max_bytes
            && ts.max(self.max_ts) - ts.min(self.min_ts) <= MAX_SPAN_MS
    }

    fn push(&mut self, ts: i64, message: Message) {
        if self.request.events.is_empty() {
            self.min_ts = ts;
            self.max_ts = ts;
        }
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        self.bytes += message.len() + EVENT_OVERHEAD_BYTES;
        self.request.events.push((ts, message));
    }
}

impl Open for Pending {
    /// (timestamp, message); messages are already cut to `max_event_bytes`, so each fits alone.
    type Item = (i64, Message);
    type Request = Request;

    fn add(&mut self, (ts, message): (i64, Message)) -> Result<Option<Request>, TooLarge> {
        let full = (!self.fits(ts, message.len())).then(|| self.take());
        self.push(ts, message);
        Ok(full)
    }

    fn len(&self) -> usize {
        self.request.events.len()
    }

    fn take(&mut self) -> Request {
        self.bytes = 0;
        std::mem::take(&mut self.request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: MAX_REQUEST_BYTES,
        max_events: MAX_REQUEST_EVENTS,
    };

    #[test]
    fn cuts_at_the_byte_count_and_span_limits() {
        let mut p = Pending::new(LIMITS);
        let big = Message::new(&"x".repeat(100_000));
        let mut n = 0;
        while p.fits(0, big.len()) {
            p.push(0, big.clone());
            n += 1;
        }
        // 10 × (100,000 + 26) fits in 1,048,576; an 11th would not.
        assert_eq!(n, 10);
        let mut q = Pending::new(LIMITS);
        q.push(0, Message::new("a"));
        assert!(q.fits(MAX_SPAN_MS, 1));
        assert!(!q.fits(MAX_SPAN_MS + 1, 1));
    }

    #[test]
    fn the_body_is_the_awsjson_put_log_events_input() {
        let r = Request {
            events: vec![
                (1, Message::new("{\"a\":\"é\\n\"}")),
                (2, Message::new("plain\ttext")),
            ],
        };
        let body: serde_json::Value = serde_json::from_slice(&r.body("/g\"1", "s")).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({
                "logGroupName": "/g\"1",
                "logStreamName": "s",
                "logEvents": [
                    {"timestamp": 1, "message": "{\"a\":\"é\\n\"}"},
                    {"timestamp": 2, "message": "plain\ttext"},
                ],
            })
        );
    }

    #[test]
    fn clamps_or_drops_out_of_range_and_sorts_stably() {
        let now = 2_000_000_000_000;
        let stats = Stats::new("test_request");
        let mut r = Request {
            events: [
                (now, "b"),
                (now - 20 * 24 * 3600 * 1000, "old"),
                (now, "c"),
                (now + 3 * 3600 * 1000, "future"),
                (now - 1, "a"),
            ]
            .map(|(ts, m)| (ts, Message::new(m)))
            .into(),
        };
        let mut d = Request {
            events: r.events.clone(),
        };
        assert_eq!(r.prepare(now, OutOfRange::Clamp, &stats), 0);
        let order: Vec<_> = r.events.iter().map(|(_, m)| m.clone()).collect();
        assert_eq!(order, ["old", "a", "b", "c", "future"].map(Message::new));
        assert!(
            r.events
                .iter()
                .all(|(ts, _)| now - ts < MAX_AGE_MS && ts - now < MAX_AHEAD_MS)
        );
        assert_eq!(d.prepare(now, OutOfRange::Drop, &stats), 2);
        assert_eq!(d.events.len(), 3);
    }
}
