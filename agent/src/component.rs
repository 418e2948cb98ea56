//! What every source, processor and sink config offers the config loader, and the signals
//! (logs, metrics, traces) that flow between components.

use std::fmt;

use serde::de::DeserializeOwned;
use vigil_common::config_error::{Errors, KeyPath};

use crate::event::Event;

/// The config of one component (`[sources.NAME]`, `[processors.NAME]`, `[sinks.NAME]`).
///
/// The contract:
/// - `validate` checks what serde cannot (ranges, combinations, templates) and records every
///   problem at its key under `path`, never stopping at the first and never panicking; the
///   loader only starts a pipeline whose components all validated.
/// - `emits` says which signals a source or processor can output when its inputs together can
///   output `inputs` (a source has no inputs and gets `Signals::NONE`). It may over-approximate
///   (say a signal that never comes), never under-approximate.
/// - `accepts` says which signals a sink (or a processor) does something with; other events
///   reaching it are counted as `unsupported_signal` errors at run time. The loader rejects a
///   sink wired to an input that can emit no signal the sink accepts: every event of that input
///   would be refused, so the wiring is certainly a mistake. An input that emits several signals
///   (an OTLP source) may feed a sink that takes only one of them.
pub trait ComponentConfig {
    fn validate(&self, _path: &KeyPath, _errs: &mut Errors<'_>) {}

    fn emits(&self, inputs: Signals) -> Signals {
        inputs
    }

    fn accepts(&self) -> Signals {
        Signals::ALL
    }
}

/// Reads one component's table (its `type` and `inputs` already taken out) and validates it.
pub fn parse<C: ComponentConfig + DeserializeOwned>(
    table: toml::Table,
    path: &KeyPath,
    errs: &mut Errors<'_>,
) -> Option<C> {
    let config: C = errs.deserialize(path, toml::Value::Table(table))?;
    config.validate(path, errs);
    Some(config)
}

/// A component `type` and how a table of that type is read into the config enum `T`.
pub type Kind<T> = (
    &'static str,
    fn(toml::Table, &KeyPath, &mut Errors<'_>) -> Option<T>,
);

/// A config enum of one section (`[sources.*]`, `[processors.*]`): the `type`s it knows.
pub trait Kinds: Sized + 'static {
    /// Every `type`, in the order the "expected one of" error lists them.
    const KINDS: &'static [Kind<Self>];

    /// Reads a component table with the reader of its `type`; an unknown type is recorded with
    /// the list of known ones.
    fn parse(
        kind: &str,
        table: toml::Table,
        path: &KeyPath,
        errs: &mut Errors<'_>,
    ) -> Option<Self> {
        if let Some((_, read)) = Self::KINDS.iter().find(|(name, _)| *name == kind) {
            return read(table, path, errs);
        }
        let known: Vec<&str> = Self::KINDS.iter().map(|(name, _)| *name).collect();
        errs.unknown_type(path, kind, &known);
        None
    }
}

/// One kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Metrics,
    Traces,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Metrics, Signal::Traces];

    pub fn of(event: &Event) -> Self {
        match event {
            Event::Log(_) => Self::Logs,
            Event::Metric(_) => Self::Metrics,
            Event::Span(_) => Self::Traces,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Logs => "logs",
            Self::Metrics => "metrics",
            Self::Traces => "traces",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Logs => 1,
            Self::Metrics => 2,
            Self::Traces => 4,
        }
    }
}

/// A set of signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signals(u8);

impl Signals {
    pub const NONE: Signals = Signals(0);
    pub const LOGS: Signals = Signals(1);
    pub const METRICS: Signals = Signals(2);
    pub const TRACES: Signals = Signals(4);
    pub const ALL: Signals = Signals(7);

    pub fn contains(self, signal: Signal) -> bool {
        self.0 & signal.bit() != 0
    }

    pub fn union(self, other: Signals) -> Signals {
        Signals(self.0 | other.0)
    }

    pub fn without(self, other: Signals) -> Signals {
        Signals(self.0 & !other.0)
    }

    pub fn intersects(self, other: Signals) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl From<Signal> for Signals {
    fn from(signal: Signal) -> Self {
        Signals(signal.bit())
    }
}

impl fmt::Display for Signals {
    /// `logs`, `logs and traces`, `logs, metrics and traces`, `nothing`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Signal::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(Signal::name)
            .collect();
        match names.as_slice() {
            [] => f.write_str("nothing"),
            [one] => f.write_str(one),
            [rest @ .., last] => write!(f, "{} and {last}", rest.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_sets_print_as_words() {
        assert_eq!(Signals::NONE.to_string(), "nothing");
        assert_eq!(Signals::TRACES.to_string(), "traces");
        assert_eq!(
            Signals::LOGS.union(Signals::TRACES).to_string(),
            "logs and traces"
        );
        assert_eq!(Signals::ALL.to_string(), "logs, metrics and traces");
        assert!(
            Signals::ALL
                .without(Signals::TRACES)
                .contains(Signal::Metrics)
        );
        assert!(
            !Signals::ALL
                .without(Signals::TRACES)
                .contains(Signal::Traces)
        );
    }
}
