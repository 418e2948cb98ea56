//! `type = "host_metrics"`: CPU, load, memory, filesystems, disk I/O, network and the module
//! processes of this host, as metric events every `interval_ms`.
//!
//! Names follow the OpenTelemetry semantic conventions (`system.cpu.time`,
//! `system.memory.usage`, ...) so CloudWatch and New Relic show the same series; every name,
//! unit and tag is listed in `docs/host-metrics.md`.
//!
//! Cost: collection runs on a thread of its own that sleeps between collections (no polling,
//! no wake-up in between). Only what is configured is refreshed; `/proc` files are kept open
//! and re-read into reused buffers; sysinfo is asked only for memory, filesystems and the
//! followed processes (by pid, never a full process table).

mod config;
mod cpu;
mod disk;
mod emit;
mod filesystem;
mod load;
mod memory;
mod modules;
mod network;
mod process;
mod processes;
mod procfs;

pub use config::{Collector, HostMetricsConfig, ProcessConfig};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sysinfo::System;
use tokio_util::sync::CancellationToken;

use crate::event::{Ack, Attributes, Event, Resource, now_ms};
use crate::output::SourceOutput;
use emit::{Emitter, Problems};
use procfs::{ProcFile, Stat};

/// One collector per file; each is `None` (or empty) when not configured.
pub struct HostMetricsSource {
    config: HostMetricsConfig,
    problems: Problems,
    boot_ms: i64,
    host: String,
    resource: Arc<Resource>,
    cpu: Option<cpu::Cpu>,
    diskstats: Option<ProcFile>,
    netdev: Option<ProcFile>,
    /// sysinfo's view, refreshed only for memory and the followed processes.
    system: System,
    filesystems: Option<filesystem::Filesystems>,
    modules: modules::Modules,
}

impl HostMetricsSource {
    pub fn new(name: &str, config: HostMetricsConfig) -> anyhow::Result<Self> {
        let system =
            System::new().map_err(|e| anyhow::anyhow!("cannot read system information: {e}"))?;
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
        let host = System::host_name().unwrap_or_else(|_| "unknown".to_owned());
        let mut attributes = Attributes::new();
        attributes.insert("host.name".to_owned(), Value::String(host.clone()));
        let open = |p: &str, c: Collector| {
            config
                .collects(c)
                .then(|| ProcFile::open(Path::new(p)))
                .transpose()
        };
        // Read once in any case: the boot time anchors every kernel counter.
        let mut stat_file = ProcFile::open(Path::new("/proc/stat"))
            .map_err(|e| anyhow::anyhow!("cannot open /proc/stat: {e}"))?;
        let mut stat = Stat::default();
        procfs::parse_stat(stat_file.read()?, &mut stat);
        let boot_ms = stat.boot_time_s as i64 * 1000;
        Ok(Self {
            problems: Problems::new(name),
            boot_ms,
            host,
            resource: Arc::new(Resource { attributes }),
            cpu: config
                .collects(Collector::Cpu)
                .then(|| cpu::Cpu::new(stat_file, stat, 1.0 / ticks, config.cpu_per_core)),
            diskstats: open("/proc/diskstats", Collector::Disk)
                .map_err(|e| anyhow::anyhow!("cannot open /proc/diskstats: {e}"))?,
            netdev: open("/proc/net/dev", Collector::Network)
                .map_err(|e| anyhow::anyhow!("cannot open /proc/net/dev: {e}"))?,
            system,
            filesystems: config
                .collects(Collector::Filesystem)
                .then(filesystem::Filesystems::new)
                .flatten(),
            modules: modules::Modules::new(&config.processes, now_ms()),
            config,
        })
    }

    /// Collects every `interval_ms` until `stop` is cancelled. Runs on a blocking thread; the
    /// wait between collections is a timer on the runtime, so nothing wakes in between.
    pub fn run(mut self, out: SourceOutput, stop: CancellationToken, rt: tokio::runtime::Handle) {
        let interval = Duration::from_millis(self.config.interval_ms);
        let mut next = tokio::time::Instant::now();
        let mut events = Vec::new();
        loop {
            let now = now_ms();
            self.collect(now, &mut events);
            let batch = std::mem::replace(&mut events, Vec::with_capacity(128));
            // Nobody waits for these acknowledgements: a missed reading is replaced by the next.
            if !batch.is_empty() && out.send_blocking(batch, Ack::none(), || {}).is_err() {
                return;
            }
            next += interval;
            let late = tokio::time::Instant::now();
            if next < late {
                // Missed collections (suspended host, slow sink) are skipped, not caught up.
                next = late + interval;
            }
            let stopped = rt.block_on(async {
                tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = tokio::time::sleep_until(next) => false,
                }
            });
            if stopped {
                return;
            }
        }
    }

    /// One collection into `out`: each configured collector in turn; one that cannot read its
    /// source is counted (and logged once) and the others go on.
    pub fn collect(&mut self, now: i64, out: &mut Vec<Event>) {
        let e = Emitter {
            now,
            host: &self.host,
            resource: &self.resource,
            boot_ms: self.boot_ms,
        };
        let problems = &mut self.problems;
        if let Some(cpu) = self.cpu.as_mut()
            && let Err(err) = cpu.collect(&e, out)
        {
            problems.warn("unreadable_proc_stat", &err);
        }
        if self.config.collects(Collector::Load)
            && let Err(err) = load::collect(&e, out)
        {
            problems.warn("unreadable_load_average", &err);
        }
        if self.config.collects(Collector::Memory) {
            memory::collect(&mut self.system, &e, out);
        }
        if let Some(filesystems) = self.filesystems.as_mut() {
            filesystems.collect(&e, out);
        }
        if let Some(f) = self.diskstats.as_mut()
            && let Err(err) = disk::collect(f, &e, out)
        {
            problems.warn("unreadable_proc_diskstats", &err);
        }
        if let Some(f) = self.netdev.as_mut()
            && let Err(err) = network::collect(f, &e, out)
        {
            problems.warn("unreadable_proc_net_dev", &err);
        }
        if self.config.collects(Collector::Processes)
            && let Err(err) = processes::collect(&e, out)
        {
            problems.warn("unreadable_proc", &err);
        }
        if !self.modules.is_empty() {
            self.modules.collect(&mut self.system, &e, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::assert_problems;
    use crate::event::{MetricEvent, MetricValue};

    fn source(processes: Vec<ProcessConfig>) -> HostMetricsSource {
        let config = HostMetricsConfig {
            interval_ms: 1000,
            collectors: Collector::all(),
            cpu_per_core: true,
            processes,
        };
        HostMetricsSource::new("host", config).unwrap()
    }

    fn find<'a>(
        events: &'a [Event],
        name: &str,
        tag: Option<(&str, &str)>,
    ) -> Vec<&'a MetricEvent> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Metric(m) if m.name == name => Some(m),
                _ => None,
            })
            .filter(|m| tag.is_none_or(|(k, v)| m.tags.get(k).map(String::as_str) == Some(v)))
            .collect()
    }

    #[test]
    fn collects_from_this_host() {
        let mut s = source(vec![ProcessConfig {
            module: "me".into(),
            name: None,
            pidfile: None,
        }]);
        let mut events = Vec::new();
        s.collect(now_ms(), &mut events);
        events.clear();
        // Shares need CPU ticks (10 ms each, idle included) to pass between collections.
        std::thread::sleep(Duration::from_millis(60));
        s.collect(now_ms(), &mut events);
        let cpu = find(&events, "system.cpu.time", Some(("cpu.mode", "user")));
        assert!(cpu.len() >= 2, "total and per core");
        assert_eq!(find(&events, "system.cpu.utilization", None).len(), 8);
        let total = find(&events, "system.memory.limit", None);
        assert!(matches!(total[0].value, MetricValue::Gauge { value } if value > 0.0));
        assert_eq!(total[0].unit, "By");
        assert!(!find(&events, "system.network.io", None).is_empty());
        assert!(!find(&events, "system.process.count", None).is_empty());
        // A module with neither name nor pidfile (rejected by the config) is never found.
        let up = find(&events, "process.running", Some(("module", "me")));
        assert!(matches!(up[0].value, MetricValue::Gauge { value } if value == 0.0));
    }

    #[test]
    fn config_errors_name_their_key() {
        let text = "[sources.h]\ntype = \"host_metrics\"\ninterval_ms = 500\ncollectors = [\"cpu\"]\n[[sources.h.processes]]\nmodule = \"a\"\n[[sources.h.processes]]\nmodule = \"b\"\npidfile = \"run/b.pid\"\n[sinks.o]\ntype = \"console\"\ninputs = [\"h\"]\n";
        assert_problems(
            text,
            &[
                "agent.toml:3:1: sources.h.interval_ms: must be at least 1000",
                "sources.h.processes[0]: missing: `name` or `pidfile`",
                "sources.h.processes[1].pidfile: must be an absolute path",
            ],
        );
        let bad = text.replace("[\"cpu\"]", "[\"gpu\"]");
        assert_problems(&bad, &["sources.h.collectors[0]", "unknown variant `gpu`"]);
    }

    #[test]
    fn scrape_config_errors_name_their_key() {
        let text = "[sources.p]\ntype = \"prometheus_scrape\"\ninterval_ms = 5000\ntimeout_ms = 9000\n[[sources.p.targets]]\nurl = \"ftp://x/metrics\"\nlabels = { \"9bad\" = \"v\" }\n[sinks.o]\ntype = \"console\"\ninputs = [\"p\"]\n";
        assert_problems(
            text,
            &[
                "sources.p.timeout_ms: must be greater than 0 and at most interval_ms",
                "sources.p.targets[0].url: `ftp://x/metrics` must be an http(s) URL",
                "invalid label name",
            ],
        );
    }
}
