//! Processors: synchronous changes to batches between sources and sinks.

pub mod enrich;
pub mod json_parse;

use crate::config::{Errors, KeyPath};
use crate::event::Event;
use crate::telemetry::Stats;

/// A processor as declared under `[processors.NAME]`.
#[derive(Debug, Clone)]
pub enum ProcessorConfig {
    JsonParse(json_parse::JsonParseConfig),
    Enrich(enrich::EnrichConfig),
}

impl ProcessorConfig {
    pub const TYPES: &[&str] = &["json_parse", "enrich"];

    pub(crate) fn parse(
        kind: &str,
        table: toml::Table,
        path: &KeyPath,
        errs: &mut Errors<'_>,
    ) -> Option<Self> {
        match kind {
            "json_parse" => {
                let c: json_parse::JsonParseConfig = errs.deserialize(path, table.into())?;
                Some(Self::JsonParse(c))
            }
            "enrich" => {
                let c: enrich::EnrichConfig = errs.deserialize(path, table.into())?;
                c.validate(path, errs);
                Some(Self::Enrich(c))
            }
            other => {
                errs.unknown_type(path, other, Self::TYPES);
                None
            }
        }
    }
}

/// A built processor.
#[derive(Debug)]
pub enum Processor {
    JsonParse(json_parse::JsonParse),
    Enrich(enrich::Enrich),
}

impl Processor {
    /// Builds a processor; may do I/O once (e.g. asking EC2 instance metadata).
    pub async fn build(config: &ProcessorConfig) -> anyhow::Result<Self> {
        Ok(match config {
            ProcessorConfig::JsonParse(c) => Self::JsonParse(json_parse::JsonParse::new(c)),
            ProcessorConfig::Enrich(c) => Self::Enrich(enrich::Enrich::new(c).await),
        })
    }

    pub fn process(&mut self, events: &mut [Event], stats: &Stats) {
        match self {
            Self::JsonParse(p) => p.process(events, stats),
            Self::Enrich(p) => p.process(events),
        }
    }
}
