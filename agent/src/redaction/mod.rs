//! Redaction before anything leaves the host: payment card numbers (on by default, PCI-DSS) and
//! configured secret patterns are replaced with a marker at the source, so no processor, sink or
//! buffer ever holds them. Configured under the top-level `[redaction]` table.

mod cards;

use serde::Deserialize;

use crate::event::{Attributes, Event};
use crate::telemetry::{Outcome, Stats};
use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

pub use cards::redact_cards;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// Replace digit runs that look like payment cards (issuer prefix, length, Luhn check).
    #[serde(default = "config_default::yes")]
    pub cards: bool,
    /// Extra patterns, e.g. API keys or passwords in query strings.
    #[serde(default)]
    pub patterns: Vec<SecretPattern>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretPattern {
    /// Shown in the marker: `[REDACTED:<name>]`.
    pub name: String,
    pub regex: String,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            cards: true,
            patterns: Vec::new(),
        }
    }
}

impl RedactionConfig {
    pub(crate) fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        for (i, p) in self.patterns.iter().enumerate() {
            let at = path.key("patterns").index(i);
            if p.name.is_empty() {
                errs.push(&at, "name: must not be empty");
            }
            if let Err(e) = regex::Regex::new(&p.regex) {
                errs.push(&at, format!("regex: invalid: {e}"));
            }
        }
    }
}

/// The compiled redaction rules.
#[derive(Debug)]
pub struct Redactor {
    cards: bool,
    patterns: Vec<(regex::Regex, String)>,
}

impl Redactor {
    /// Builds from a validated config.
    pub fn new(config: &RedactionConfig) -> Result<Self, regex::Error> {
        Ok(Self {
            cards: config.cards,
            patterns: config
                .patterns
                .iter()
                .map(|p| {
                    Ok((
                        regex::Regex::new(&p.regex)?,
                        format!("[REDACTED:{}]", p.name),
                    ))
                })
                .collect::<Result<_, regex::Error>>()?,
        })
    }

    /// Redacts every text of the events in place, counting what it replaced.
    pub fn apply(&self, events: &mut [Event], stats: &Stats) {
        for event in events {
            match event {
                Event::Log(log) => {
                    self.text(&mut log.message, stats);
                    self.attributes(&mut log.attributes, stats);
                }
                Event::Metric(metric) => {
                    for value in metric.tags.values_mut() {
                        self.text(value, stats);
                    }
                }
                Event::Span(span) => {
                    self.text(&mut span.name, stats);
                    self.text(&mut span.status.message, stats);
                    self.attributes(&mut span.attributes, stats);
                    for e in &mut span.events {
                        self.attributes(&mut e.attributes, stats);
                    }
                }
            }
        }
    }

    fn attributes(&self, attrs: &mut Attributes, stats: &Stats) {
        for value in attrs.values_mut() {
            self.value(value, stats);
        }
    }

    fn value(&self, value: &mut serde_json::Value, stats: &Stats) {
        match value {
            serde_json::Value::String(s) => self.text(s, stats),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| self.value(v, stats)),
            serde_json::Value::Object(o) => self.attributes(o, stats),
            _ => {}
        }
    }

    fn text(&self, text: &mut String, stats: &Stats) {
        if self.cards
            && let Some((redacted, n)) = redact_cards(text)
        {
            *text = redacted;
            stats.count(Outcome::RedactedCard, n as u64);
        }
        for (re, marker) in &self.patterns {
            // Cheap check first: most lines match nothing.
            if re.is_match(text) {
                let n = re.find_iter(text).count();
                *text = re.replace_all(text, marker.as_str()).into_owned();
                stats.count(Outcome::RedactedSecret, n as u64);
            }
        }
    }
}
