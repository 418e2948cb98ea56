//! The agent's TOML config: loading, per-component parsing and validation of the whole graph.
//!
//! ```toml
//! data_dir = "/var/lib/vigil-agent"
//! [sources.shop]       # type = "file", ...
//! [processors.parse]   # type = "json_parse", inputs = ["shop"]
//! [sinks.cloudwatch]   # type = "cloudwatch_logs", inputs = ["parse"]
//! ```
//!
//! Each component table is parsed on its own so that one broken component does not hide the
//! problems of the next: `validate` reports them all, each with file, line and key path.

mod errors;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use errors::SourceMap;
pub use vigil_common::config_error::{ConfigError, ConfigErrors, Errors, KeyPath, line_col};

use crate::component::{Kinds, Signals};
use crate::processors::ProcessorConfig;
use crate::redaction::RedactionConfig;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;

/// A fully parsed and validated agent config.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where checkpoints and disk buffers live.
    pub data_dir: PathBuf,
    pub sources: BTreeMap<String, SourceConfig>,
    pub processors: BTreeMap<String, Component<ProcessorConfig>>,
    pub sinks: BTreeMap<String, Component<SinkConfig>>,
    /// Applied by every source before events go anywhere.
    pub redaction: RedactionConfig,
    /// The agent's own endpoint (`/metrics`, `/health`, `/ready`).
    pub api: crate::api::ApiConfig,
    /// Each sink's buffer (`[sinks.NAME.buffer]`, defaults applied), by sink name.
    pub buffers: BTreeMap<String, crate::buffer::BufferConfig>,
    /// Most bytes of event data held in memory at once (sources wait at the limit).
    pub memory_limit_bytes: u64,
    /// How long a shutdown keeps delivering; `--drain-timeout-ms` overrides it.
    pub drain_timeout_ms: u64,
}

/// A processor or sink with the names of the components it reads from.
#[derive(Debug, Clone)]
pub struct Component<T> {
    pub inputs: Vec<String>,
    pub config: T,
}

/// Top-level keys; component tables are kept raw and parsed one by one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    memory_limit_bytes: Option<u64>,
    drain_timeout_ms: Option<u64>,
    #[serde(default)]
    redaction: RedactionConfig,
    #[serde(default)]
    api: crate::api::ApiConfig,
    #[serde(default)]
    sources: BTreeMap<String, toml::Table>,
    #[serde(default)]
    processors: BTreeMap<String, toml::Table>,
    #[serde(default)]
    sinks: BTreeMap<String, toml::Table>,
}

const DEFAULT_DATA_DIR: &str = "/var/lib/vigil-agent";
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 256 << 20;
const MIN_MEMORY_LIMIT_BYTES: u64 = 4 << 20;
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 10_000;

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::unplaced(
            path,
            "",
            format!("cannot read config: {e}"),
        )])
    })?;
    parse(path, &text)
}

/// Parses and validates config text; `path` is only used in error messages.
pub fn parse(path: &Path, text: &str) -> Result<AgentConfig, ConfigErrors> {
    let doc = match toml_edit::Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let (line, column) = line_col(text, e.span().map(|s| s.start).unwrap_or(0));
            return Err(ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: Some(line),
                column: Some(column),
                key: String::new(),
                message: format!("invalid TOML: {}", e.message()),
            }]));
        }
    };
    let map = SourceMap::new(path, text, doc);
    let mut errs = Errors::new(&map);

    let raw: RawConfig = match toml::from_str::<toml::Table>(text).map_err(|e| e.to_string()) {
        Ok(table) => match errs.deserialize(&KeyPath::root(), toml::Value::Table(table)) {
            Some(raw) => raw,
            None => return Err(errs.finish()),
        },
        Err(message) => {
            errs.push(&KeyPath::root(), message);
            return Err(errs.finish());
        }
    };

    raw.redaction
        .validate(&KeyPath::root().key("redaction"), &mut errs);
    // The graph is checked over every declared component, parsed or not, so that one broken
    // component does not cause follow-on errors about its neighbours.
    let mut graph = Graph {
        sources: raw.sources.keys().cloned().collect(),
        ..Graph::default()
    };
    let mut sources = BTreeMap::new();
    for (name, table) in raw.sources {
        let path = KeyPath::root().key("sources").key(&name);
        if let (_, Some(config)) = component(&mut errs, &path, table, false, SourceConfig::parse) {
            sources.insert(name, config);
        }
    }
    let processors = parse_processors(raw.processors, &mut graph, &mut errs);
    let (sinks, buffers) = parse_sinks(raw.sinks, &mut graph, &mut errs);
    let memory_limit_bytes = raw.memory_limit_bytes.unwrap_or(DEFAULT_MEMORY_LIMIT_BYTES);
    if memory_limit_bytes < MIN_MEMORY_LIMIT_BYTES {
        errs.push(
            &KeyPath::root().key("memory_limit_bytes"),
            format!("must be at least {MIN_MEMORY_LIMIT_BYTES} (4 MiB)"),
        );
    }
    if raw.drain_timeout_ms == Some(0) {
        errs.push(
            &KeyPath::root().key("drain_timeout_ms"),
            "must be greater than 0",
        );
    }

    let config = AgentConfig {
        data_dir: raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        sources,
        processors,
        sinks,
        redaction: raw.redaction,
        api: raw.api,
        buffers,
        memory_limit_bytes,
        drain_timeout_ms: raw.drain_timeout_ms.unwrap_or(DEFAULT_DRAIN_TIMEOUT_MS),
    };
    check_graph(&graph, &mut errs);
    // Signals are only known once every source and processor parsed; until then the errors
    // above are the ones to fix.
    if config.sources.len() == graph.sources.len()
        && config.processors.len() == graph.processors.len()
    {
        check_signals(&config, &mut errs);
    }
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(errs.finish())
    }
}

/// `[processors.NAME]` tables; every declared one's inputs go into `graph`.
fn parse_processors(
    tables: BTreeMap<String, toml::Table>,
    graph: &mut Graph,
    errs: &mut Errors<'_>,
) -> BTreeMap<String, Component<ProcessorConfig>> {
    let mut processors = BTreeMap::new();
    for (name, table) in tables {
        let path = KeyPath::root().key("processors").key(&name);
        let (inputs, config) = component(errs, &path, table, true, ProcessorConfig::parse);
        graph.processors.insert(name.clone(), inputs.clone());
        if let Some(config) = config {
            processors.insert(name, Component { inputs, config });
        }
    }
    processors
}

type Sinks = BTreeMap<String, Component<SinkConfig>>;
type Buffers = BTreeMap<String, crate::buffer::BufferConfig>;

/// `[sinks.NAME]` tables with their `buffer` tables (defaults applied per sink); every declared
/// sink's inputs go into `graph`.
fn parse_sinks(
    tables: BTreeMap<String, toml::Table>,
    graph: &mut Graph,
    errs: &mut Errors<'_>,
) -> (Sinks, Buffers) {
    let mut sinks = BTreeMap::new();
    let mut buffers = BTreeMap::new();
    for (name, mut table) in tables {
        let path = KeyPath::root().key("sinks").key(&name);
        let buffer = table.remove("buffer").map(|v| {
            errs.deserialize::<crate::buffer::RawBufferConfig>(&path.key("buffer"), v)
                .unwrap_or_default()
        });
        let (inputs, config) = component(errs, &path, table, true, SinkConfig::parse);
        graph.sinks.insert(name.clone(), inputs.clone());
        if let Some(config) = config {
            let buffer = crate::buffer::BufferConfig::resolve(
                buffer.unwrap_or_default(),
                config.default_buffer(),
                &path.key("buffer"),
                errs,
            );
            buffers.insert(name.clone(), buffer);
            sinks.insert(name, Component { inputs, config });
        }
    }
    (sinks, buffers)
}

/// Names and inputs of every declared component.
#[derive(Default)]
struct Graph {
    sources: BTreeSet<String>,
    processors: BTreeMap<String, Vec<String>>,
    sinks: BTreeMap<String, Vec<String>>,
}

/// Every input names an existing source or processor, nothing reads from a sink, processors
/// form no cycle, and every source and processor feeds something.
fn check_graph(g: &Graph, errs: &mut Errors<'_>) {
    if g.sinks.is_empty() {
        errs.push(
            &KeyPath::root().key("sinks"),
            "missing: at least one sink is needed",
        );
    }
    let mut seen = BTreeSet::new();
    let all = g
        .sources
        .iter()
        .map(|n| ("sources", n))
        .chain(g.processors.keys().map(|n| ("processors", n)))
        .chain(g.sinks.keys().map(|n| ("sinks", n)));
    for (section, name) in all {
        // Names become file names (checkpoints, disk buffers) and metric labels.
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            errs.push(
                &KeyPath::root().key(section).key(name),
                format!(
                    "component name `{name}`: use 1 to 64 ASCII letters, digits, `_` or `-` \
                     (names become file names)"
                ),
            );
        }
        if !seen.insert(name.as_str()) {
            errs.push(
                &KeyPath::root().key(section).key(name),
                format!("component name `{name}` is used twice; names must be unique"),
            );
        }
    }
    let mut used = BTreeSet::new();
    let inputs_of = g
        .processors
        .iter()
        .map(|(n, i)| ("processors", n, i))
        .chain(g.sinks.iter().map(|(n, i)| ("sinks", n, i)));
    for (section, name, inputs) in inputs_of {
        let path = KeyPath::root().key(section).key(name).key("inputs");
        for (i, input) in inputs.iter().enumerate() {
            used.insert(input.as_str());
            if g.sinks.contains_key(input) {
                errs.push(
                    &path.index(i),
                    format!("`{input}` is a sink; sinks have no output"),
                );
            } else if !g.sources.contains(input) && !g.processors.contains_key(input) {
                errs.push(
                    &path.index(i),
                    format!("no source or processor named `{input}`"),
                );
            } else if input == name {
                errs.push(&path.index(i), "a component cannot read its own output");
            }
        }
    }
    for (section, names) in [
        ("sources", g.sources.iter().collect::<Vec<_>>()),
        ("processors", g.processors.keys().collect()),
    ] {
        for name in names {
            if !used.contains(name.as_str()) {
                errs.push(
                    &KeyPath::root().key(section).key(name),
                    "unused: no processor or sink reads it",
                );
            }
        }
    }
    if let Some(name) = find_cycle(g) {
        errs.push(
            &KeyPath::root().key("processors").key(&name),
            "processors form a cycle through this one",
        );
    }
}

/// Every input of a sink can emit at least one signal the sink takes (the contract of
/// `ComponentConfig::accepts`): a `file` source wired into `xray` would have every line refused.
fn check_signals(config: &AgentConfig, errs: &mut Errors<'_>) {
    let mut emits: BTreeMap<&str, Signals> = config
        .sources
        .iter()
        .map(|(name, c)| (name.as_str(), c.component().emits(Signals::NONE)))
        .collect();
    // Processors read sources or other processors: repeat until nothing changes. Each round that
    // changes something adds a signal to a processor, so 3 × processors + 1 rounds always do.
    for _ in 0..=3 * config.processors.len() {
        let mut changed = false;
        for (name, p) in &config.processors {
            let inputs = p
                .inputs
                .iter()
                .filter_map(|i| emits.get(i.as_str()).copied())
                .fold(Signals::NONE, Signals::union);
            let out = p.config.component().emits(inputs);
            if emits.insert(name.as_str(), out) != Some(out) {
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (name, sink) in &config.sinks {
        let accepted = sink.config.component().accepts();
        let path = KeyPath::root().key("sinks").key(name).key("inputs");
        for (i, input) in sink.inputs.iter().enumerate() {
            let Some(&emitted) = emits.get(input.as_str()) else {
                continue;
            };
            if !emitted.is_empty() && !emitted.intersects(accepted) {
                errs.push(
                    &path.index(i),
                    format!(
                        "`{input}` emits {emitted}, but a `{}` sink takes {accepted}; \
                         wire it to a sink for {emitted}",
                        sink.config.kind()
                    ),
                );
            }
        }
    }
}

fn find_cycle(g: &Graph) -> Option<String> {
    // Depth-first search over processor → input edges; 1 = on the stack, 2 = done.
    fn visit(name: &str, g: &Graph, state: &mut BTreeMap<String, u8>) -> Option<String> {
        match state.get(name) {
            Some(1) => return Some(name.to_owned()),
            Some(_) => return None,
            None => {}
        }
        state.insert(name.to_owned(), 1);
        for input in g.processors.get(name).into_iter().flatten() {
            if g.processors.contains_key(input)
                && let Some(c) = visit(input, g, state)
            {
                return Some(c);
            }
        }
        state.insert(name.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    g.processors
        .keys()
        .find_map(|name| visit(name, g, &mut state))
}

/// Parses one component table: its `type`, its `inputs` (when it has any) and the rest of its
/// keys through `parse(type, table)`.
fn component<'a, T>(
    errs: &mut Errors<'a>,
    path: &KeyPath,
    mut table: toml::Table,
    has_inputs: bool,
    parse: impl FnOnce(&str, toml::Table, &KeyPath, &mut Errors<'a>) -> Option<T>,
) -> (Vec<String>, Option<T>) {
    let inputs = match (has_inputs, table.remove("inputs")) {
        (true, Some(v)) => errs
            .deserialize::<Vec<String>>(&path.key("inputs"), v)
            .unwrap_or_default(),
        (true, None) => {
            errs.push(&path.key("inputs"), "missing");
            Vec::new()
        }
        (false, Some(_)) => {
            errs.push(&path.key("inputs"), "unknown key: sources have no inputs");
            Vec::new()
        }
        (false, None) => Vec::new(),
    };
    if has_inputs && inputs.is_empty() && table.contains_key("type") {
        errs.push(&path.key("inputs"), "must name at least one input");
    }
    let kind = match table.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(_) => {
            errs.push(&path.key("type"), "must be a string");
            return (inputs, None);
        }
        None => {
            errs.push(&path.key("type"), "missing");
            return (inputs, None);
        }
    };
    let config = parse(&kind, table, path, errs);
    (inputs, config)
}

/// The problems `parse` finds in `text` read as `agent.toml`, one a line; none when it loads.
#[cfg(test)]
pub(crate) fn problems(text: &str) -> Vec<String> {
    match parse(Path::new("agent.toml"), text) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// Checks that `parse` reports each of `expected` (a part of one problem line) for `text`.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_problems(text: &str, expected: &[&str]) {
    let problems = problems(text);
    for e in expected {
        assert!(
            problems.iter().any(|p| p.contains(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
}

#[cfg(test)]
mod tests;
