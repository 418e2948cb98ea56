//! How a log event becomes the text a backend stores.

use serde::Deserialize;

use crate::event::LogEvent;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON object: the parsed fields (for structured lines) or `message`, plus every
    /// attribute. CloudWatch Logs Insights discovers the fields by itself.
    #[default]
    Json,
    /// The line exactly as read (after redaction); attributes are not written.
    Text,
}

impl Encoding {
    /// Appends the event's text in this encoding to `out`.
    pub fn encode(self, log: &LogEvent, out: &mut String) {
        match self {
            Encoding::Text => out.push_str(&log.message),
            Encoding::Json => {
                // serde_json writes bytes; `out`'s buffer is reused (no copy, no new allocation
                // when it has room), and what it writes is UTF-8.
                let mut bytes = std::mem::take(out).into_bytes();
                let written = if log.structured {
                    serde_json::to_writer(&mut bytes, &log.attributes)
                } else {
                    serde_json::to_writer(&mut bytes, &WithMessage(log))
                };
                // Serialising strings and JSON values into memory cannot fail.
                debug_assert!(written.is_ok());
                *out = String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            }
        }
    }
}

/// A plain line as one JSON object: its attributes with `message` among them (the line wins
/// over an attribute of that name), keys in the map's order — written as it goes, without
/// building a merged map (a copy of every attribute per event).
struct WithMessage<'a>(&'a LogEvent);

impl serde::Serialize for WithMessage<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        const KEY: &str = "message";
        let log = self.0;
        let shadowed = log.attributes.contains_key(KEY);
        let mut map = s.serialize_map(Some(log.attributes.len() + usize::from(!shadowed)))?;
        let mut message_written = false;
        for (k, v) in &log.attributes {
            if !message_written && k.as_str() >= KEY {
                map.serialize_entry(KEY, &log.message)?;
                message_written = true;
            }
            if k != KEY {
                map.serialize_entry(k, v)?;
            }
        }
        if !message_written {
            map.serialize_entry(KEY, &log.message)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the JSON encoding of a plain line means: one object of the attributes and
    /// `message`, the line winning over an attribute of that name (built the slow way).
    fn merged(log: &LogEvent) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("message".to_owned(), log.message.clone().into());
        for (k, v) in &log.attributes {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        serde_json::to_string(&obj).unwrap()
    }

    #[test]
    fn a_plain_line_is_its_attributes_with_the_message_among_them() {
        let sets: &[&[&str]] = &[
            &[],
            &["file"],
            &["zone"],
            &["file", "zone", "module"],
            &["message"],
            &["a", "message", "z"],
            &["messages", "messag", "mess\u{e9}ge"],
        ];
        for keys in sets {
            let mut log = LogEvent::new("a \"quoted\" line \u{e9}".to_owned(), 1);
            for (i, k) in keys.iter().enumerate() {
                log.attributes.insert((*k).to_owned(), serde_json::json!(i));
            }
            let mut out = String::new();
            Encoding::Json.encode(&log, &mut out);
            assert_eq!(out, merged(&log), "attributes {keys:?}");
            // Appends, as the text encoding does.
            let mut more = "x".to_owned();
            Encoding::Json.encode(&log, &mut more);
            assert_eq!(more, format!("x{out}"));
        }
    }

    #[test]
    fn a_structured_line_is_its_fields() {
        let mut log = LogEvent::new("{\"a\":1}".to_owned(), 1);
        log.attributes.insert("a".into(), serde_json::json!(1));
        log.attributes
            .insert("file".into(), serde_json::json!("/x.log"));
        log.structured = true;
        let mut out = String::new();
        Encoding::Json.encode(&log, &mut out);
        assert_eq!(out, r#"{"a":1,"file":"/x.log"}"#);
        let mut text = String::new();
        Encoding::Text.encode(&log, &mut text);
        assert_eq!(text, log.message);
    }
}
