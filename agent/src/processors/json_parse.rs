//! `type = "json_parse"`: structured lines become fields.
//!
//! A line holding a JSON object has its fields added to the event (fields the source set, such
//! as `file` or `module`, are kept). The event's time comes from `timestamp_field` when present
//! and readable (RFC 3339 text, or a Unix time in s, ms, µs or ns); otherwise it stays the time the
//! line was read. Lines that are not JSON pass through unchanged; lines that look like JSON
//! (`{...`) but do not parse are counted as `parse_failed`.

use serde::Deserialize;

use crate::component::ComponentConfig;
use crate::event::Event;
use crate::telemetry::{Outcome, Stats};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonParseConfig {
    /// Field holding the record's time; `""` to always use the read time.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
}

/// Parses logs; other events pass through. Nothing to validate beyond serde.
impl ComponentConfig for JsonParseConfig {}

fn default_timestamp_field() -> String {
    "timestamp".to_owned()
}

#[derive(Debug)]
pub struct JsonParse {
    timestamp_field: String,
}

impl JsonParse {
    pub fn new(config: &JsonParseConfig) -> Self {
        Self {
            timestamp_field: config.timestamp_field.clone(),
        }
    }

    pub fn process(&self, events: &mut [Event], stats: &Stats) {
        for event in events {
            let Event::Log(log) = event else { continue };
            let text = log.message.trim_start();
            if !text.starts_with('{') {
                continue;
            }
            let fields: serde_json::Map<String, serde_json::Value> =
                match serde_json::from_str(text) {
                    Ok(f) => f,
                    Err(_) => {
                        stats.count(Outcome::ParseFailed, 1);
                        continue;
                    }
                };
            if !self.timestamp_field.is_empty()
                && let Some(ms) = fields.get(&self.timestamp_field).and_then(timestamp_ms)
            {
                log.timestamp_ms = ms;
            }
            // The parsed fields become the map and the source's few fields (`file`, ...) are
            // put back over them: the same result as adding each parsed field unless the source
            // set it, for one or two inserts a line instead of one per field.
            let from_source = std::mem::replace(&mut log.attributes, fields);
            log.attributes.extend(from_source);
            log.structured = true;
        }
    }
}

/// Reads a timestamp: RFC 3339 text, or a number of s / ms / µs / ns since the epoch (told
/// apart by magnitude).
fn timestamp_ms(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        serde_json::Value::Number(n) => {
            let x = n.as_f64()?;
            let ms = match x.abs() {
                a if a >= 1e17 => x / 1e6,
                a if a >= 1e14 => x / 1e3,
                a if a >= 1e11 => x,
                _ => x * 1e3,
            };
            Some(ms as i64)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LogEvent;

    #[test]
    fn parses_fields_and_timestamp_and_keeps_source_fields() {
        let p = JsonParse::new(&JsonParseConfig {
            timestamp_field: "ts".into(),
        });
        let mut log = LogEvent::new(
            r#"{"ts":"2026-11-22T10:00:00.5Z","level":"error","file":"x"}"#.into(),
            1,
        );
        log.attributes
            .insert("file".into(), "/var/log/a.log".into());
        let mut events = vec![
            Event::Log(log),
            Event::Log(LogEvent::new("plain text".into(), 2)),
            Event::Log(LogEvent::new("{broken".into(), 3)),
            Event::Log(LogEvent::new(r#"{"ts":1795341600}"#.into(), 4)),
        ];
        let stats = Stats::new("test_json_parse");
        p.process(&mut events, &stats);
        let Event::Log(a) = &events[0] else {
            panic!("log expected")
        };
        assert_eq!(a.timestamp_ms, 1_795_341_600_500);
        assert_eq!(a.attributes["level"], "error");
        assert_eq!(a.attributes["file"], "/var/log/a.log");
        assert!(a.structured);
        let Event::Log(b) = &events[1] else {
            panic!("log expected")
        };
        assert!(!b.structured && b.timestamp_ms == 2);
        let Event::Log(d) = &events[3] else {
            panic!("log expected")
        };
        assert_eq!(d.timestamp_ms, 1_795_341_600_000);
        assert_eq!(stats.get(Outcome::ParseFailed), 1);
    }
}
