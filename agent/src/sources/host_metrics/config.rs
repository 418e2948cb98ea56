//! `[sources.NAME]` with `type = "host_metrics"`.

use std::path::PathBuf;

use serde::Deserialize;

use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};

/// CPU, load, memory, filesystems, disk I/O, network and the module processes of this host,
/// collected every `interval_ms`. Names and tags: `docs/host-metrics.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostMetricsConfig {
    /// How often to collect; at least 1000 (1 s).
    #[serde(default = "config_default::u64::<60_000>")]
    pub interval_ms: u64,
    /// What to collect; all of them by default.
    #[serde(default = "Collector::all")]
    pub collectors: Vec<Collector>,
    /// Also emit CPU time per logical core (the host total is always emitted).
    #[serde(default = "config_default::yes")]
    pub cpu_per_core: bool,
    /// Module processes to follow (CPU, memory, restarts).
    #[serde(default)]
    pub processes: Vec<ProcessConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collector {
    Cpu,
    Load,
    Memory,
    Filesystem,
    Disk,
    Network,
    Processes,
}

impl Collector {
    pub(super) fn all() -> Vec<Collector> {
        vec![
            Collector::Cpu,
            Collector::Load,
            Collector::Memory,
            Collector::Filesystem,
            Collector::Disk,
            Collector::Network,
            Collector::Processes,
        ]
    }
}

/// One module process, found by its name or through its pidfile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The `module` tag of its metrics.
    pub module: String,
    /// Process name as in `/proc/PID/comm` (or the file name of its executable).
    pub name: Option<String>,
    /// A file holding the process id.
    pub pidfile: Option<PathBuf>,
}

pub const MIN_INTERVAL_MS: u64 = 1_000;

impl HostMetricsConfig {
    pub fn collects(&self, c: Collector) -> bool {
        self.collectors.contains(&c)
    }
}

impl ComponentConfig for HostMetricsConfig {
    fn emits(&self, _inputs: Signals) -> Signals {
        Signals::METRICS
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        if self.interval_ms < MIN_INTERVAL_MS {
            errs.push(
                &path.key("interval_ms"),
                format!(
                    "must be at least {MIN_INTERVAL_MS} (1 s), got {}",
                    self.interval_ms
                ),
            );
        }
        if self.collectors.is_empty() {
            errs.push(&path.key("collectors"), "must name at least one collector");
        }
        let mut modules = std::collections::BTreeSet::new();
        for (i, p) in self.processes.iter().enumerate() {
            let at = path.key("processes").index(i);
            if p.module.trim().is_empty() {
                errs.push(&at.key("module"), "must not be empty");
            } else if !modules.insert(p.module.as_str()) {
                errs.push(
                    &at.key("module"),
                    format!("module `{}` is listed twice", p.module),
                );
            }
            match (&p.name, &p.pidfile) {
                (Some(_), Some(_)) => errs.push(&at, "set either `name` or `pidfile`, not both"),
                (None, None) => errs.push(&at, "missing: `name` or `pidfile`"),
                (Some(n), None) if n.is_empty() || n.contains('/') => errs.push(
                    &at.key("name"),
                    "must be a process name (no `/`); use `pidfile` for a path",
                ),
                (None, Some(f)) if !f.is_absolute() => {
                    errs.push(&at.key("pidfile"), "must be an absolute path")
                }
                _ => {}
            }
        }
    }
}
