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
                let written = serde_json::to_writer(&mut bytes, &AsJson(log));
                // Serialising strings and JSON values into memory cannot fail.
                debug_assert!(written.is_ok());
                *out = String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            }
        }
    }

    /// Appends the event's text as the contents of a JSON string (escaped, without the quotes),
    /// as a JSON request body carries it, and returns the length of the text itself. A JSON
    /// encoding is written escaped in one pass rather than written, then escaped again: that
    /// second pass over PutLogEvents bodies was a tenth of the agent's CPU.
    pub fn encode_escaped(self, log: &LogEvent, out: &mut Vec<u8>) -> usize {
        match self {
            Encoding::Text => {
                escape_into(&log.message, out);
                log.message.len()
            }
            Encoding::Json => {
                let start = out.len();
                let mut added = 0;
                let mut ser =
                    serde_json::Serializer::with_formatter(&mut *out, Nested { added: &mut added });
                let written = serde::Serialize::serialize(&AsJson(log), &mut ser);
                debug_assert!(written.is_ok());
                out.len() - start - added
            }
        }
    }
}

/// Appends `text` escaped as the contents of a JSON string (without the quotes).
pub fn escape_into(text: &str, out: &mut Vec<u8>) {
    let mut ser = serde_json::Serializer::with_formatter(out, Contents);
    let written = serde::Serializer::serialize_str(&mut ser, text);
    debug_assert!(written.is_ok());
}

/// Writes a string's contents only: escaped, without its quotes.
struct Contents;

impl serde_json::ser::Formatter for Contents {
    fn begin_string<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        Ok(())
    }

    fn end_string<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes JSON already escaped as the contents of another JSON string: quotes and the escapes
/// of string values get a backslash more. Numbers, `true`, punctuation and the runs of text
/// between escapes need none. Counts the bytes it adds, so the caller knows the length of the
/// JSON itself.
struct Nested<'a> {
    added: &'a mut usize,
}

impl serde_json::ser::Formatter for Nested<'_> {
    fn begin_string<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        *self.added += 1;
        w.write_all(b"\\\"")
    }

    fn end_string<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        *self.added += 1;
        w.write_all(b"\\\"")
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        use serde_json::ser::CharEscape::*;
        // The inner escape (`\"`, `\n`, `\u001f`, ...) with its backslash escaped, and a
        // quote or backslash after it escaped too.
        let (bytes, added): (&[u8], usize) = match escape {
            Quote => (b"\\\\\\\"", 2),
            ReverseSolidus => (b"\\\\\\\\", 2),
            Solidus => (b"\\\\/", 1),
            Backspace => (b"\\\\b", 1),
            FormFeed => (b"\\\\f", 1),
            LineFeed => (b"\\\\n", 1),
            CarriageReturn => (b"\\\\r", 1),
            Tab => (b"\\\\t", 1),
            AsciiControl(byte) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                *self.added += 1;
                return w.write_all(&[
                    b'\\',
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
            }
        };
        *self.added += added;
        w.write_all(bytes)
    }
}

/// The event's JSON object: a structured line's fields, or a plain line [`WithMessage`].
struct AsJson<'a>(&'a LogEvent);

impl serde::Serialize for AsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.structured {
            self.0.attributes.serialize(s)
        } else {
            WithMessage(self.0).serialize(s)
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

    /// What `encode_escaped` appends is what escaping `encode`'s text gives, and the length
    /// it returns is that text's.
    #[test]
    fn escaped_encoding_is_the_encoding_escaped() {
        let texts = [
            "",
            "plain",
            "a \"quoted\" \\ back\\slash",
            "tab\tnew\nline\rcr \u{8}\u{c} \u{1} \u{1f} \u{7f}",
            "{\"k\":\"v \\\"q\\\" \\\\ \\n\"}",
            "é ü 漢字 🎉 /slash/",
        ];
        for text in texts {
            for structured in [false, true] {
                let mut log = LogEvent::new(text.to_owned(), 1);
                log.structured = structured;
                log.attributes
                    .insert(text.to_owned(), serde_json::json!(text));
                log.attributes.insert(
                    "nested".into(),
                    serde_json::json!({ "k": [text, 1, 2.5, null, true], text: {} }),
                );
                for encoding in [Encoding::Json, Encoding::Text] {
                    let mut plain = String::new();
                    encoding.encode(&log, &mut plain);
                    let mut want = Vec::new();
                    escape_into(&plain, &mut want);
                    let mut got = b"x".to_vec();
                    let len = encoding.encode_escaped(&log, &mut got);
                    assert_eq!(
                        String::from_utf8_lossy(&got[1..]),
                        String::from_utf8_lossy(&want),
                        "{encoding:?} {text:?} structured {structured}"
                    );
                    assert_eq!(len, plain.len(), "{encoding:?} {text:?}");
                    // And it reads back as the text inside a JSON string.
                    let quoted = format!("\"{}\"", String::from_utf8_lossy(&want));
                    let back: String = serde_json::from_str(&quoted).expect("a JSON string");
                    assert_eq!(back, plain);
                }
            }
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
