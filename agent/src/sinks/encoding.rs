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
    pub fn encode(self, log: &LogEvent, out: &mut String) {
        match self {
            Encoding::Text => out.push_str(&log.message),
            Encoding::Json if log.structured => {
                // Serialising a map of JSON values into a String cannot fail. Into an empty
                // `out` directly (the usual case): no second buffer, no copy.
                let text = serde_json::to_string(&log.attributes).unwrap_or_default();
                if out.is_empty() {
                    *out = text;
                } else {
                    out.push_str(&text);
                }
            }
            Encoding::Json => {
                let mut obj = serde_json::Map::with_capacity(log.attributes.len() + 1);
                obj.insert("message".to_owned(), log.message.clone().into());
                for (k, v) in &log.attributes {
                    obj.entry(k.clone()).or_insert_with(|| v.clone());
                }
                out.push_str(&serde_json::to_string(&obj).unwrap_or_default());
            }
        }
    }
}
