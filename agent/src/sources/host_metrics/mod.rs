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
mod process;
mod procfs;

pub use config::{Collector, HostMetricsConfig, ProcessConfig};

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sysinfo::{
    DiskRefreshKind, Disks, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System,
};
use tokio_util::sync::CancellationToken;

use crate::event::{
    Ack, Attributes, Event, MetricEvent, MetricValue, Resource, Temporality, now_ms,
};
use crate::output::SourceOutput;
use crate::telemetry::Stats;
use procfs::{CpuTimes, ProcFile, Stat};

/// Filesystem types that hold no user data (beyond those sysinfo already leaves out).
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "configfs",
    "debugfs",
    "efivarfs",
    "fuse.lxcfs",
    "fusectl",
    "nsfs",
    "ramfs",
    "securityfs",
    "selinuxfs",
    "tracefs",
    "tmpfs",
    "devtmpfs",
];

pub struct HostMetricsSource {
    name: String,
    config: HostMetricsConfig,
    stats: Stats,
    tick_s: f64,
    boot_ms: i64,
    started_ms: i64,
    host: String,
    resource: Arc<Resource>,
    stat_file: Option<ProcFile>,
    stat: Stat,
    prev_total: Option<CpuTimes>,
    diskstats: Option<ProcFile>,
    netdev: Option<ProcFile>,
    system: System,
    disks: Option<Disks>,
    modules: Vec<process::Tracked>,
    pid_buf: String,
    pids: Vec<Pid>,
    mounts_seen: HashSet<String>,
    /// Kinds of problem already logged (each is logged once, counted always).
    warned: HashSet<&'static str>,
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
        let mut stat_file = ProcFile::open(Path::new("/proc/stat"))
            .map_err(|e| anyhow::anyhow!("cannot open /proc/stat: {e}"))?;
        let mut stat = Stat::default();
        procfs::parse_stat(stat_file.read()?, &mut stat);
        let boot_ms = stat.boot_time_s as i64 * 1000;
        Ok(Self {
            name: name.to_owned(),
            stats: Stats::new(name),
            tick_s: 1.0 / ticks,
            boot_ms,
            started_ms: now_ms(),
            host,
            resource: Arc::new(Resource { attributes }),
            stat_file: config.collects(Collector::Cpu).then_some(stat_file),
            stat,
            prev_total: None,
            diskstats: open("/proc/diskstats", Collector::Disk)
                .map_err(|e| anyhow::anyhow!("cannot open /proc/diskstats: {e}"))?,
            netdev: open("/proc/net/dev", Collector::Network)
                .map_err(|e| anyhow::anyhow!("cannot open /proc/net/dev: {e}"))?,
            system,
            disks: config
                .collects(Collector::Filesystem)
                .then(|| Disks::new().ok())
                .flatten(),
            modules: config
                .processes
                .iter()
                .cloned()
                .map(process::Tracked::new)
                .collect(),
            pid_buf: String::with_capacity(512),
            pids: Vec::new(),
            mounts_seen: HashSet::new(),
            warned: HashSet::new(),
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

    /// One collection into `out`.
    pub fn collect(&mut self, now: i64, out: &mut Vec<Event>) {
        let e = Emitter {
            now,
            host: &self.host,
            resource: &self.resource,
        };
        let since_boot = Temporality::Cumulative {
            start_ms: self.boot_ms,
        };
        if let Some(f) = self.stat_file.as_mut() {
            match f.read() {
                Ok(text) => {
                    procfs::parse_stat(text, &mut self.stat);
                    let tick = self.tick_s;
                    for (mode, ticks) in self.stat.total.modes() {
                        out.push(e.counter(
                            "system.cpu.time",
                            "s",
                            ticks as f64 * tick,
                            since_boot,
                            &[("cpu.mode", mode)],
                        ));
                    }
                    if self.config.cpu_per_core {
                        for (n, times) in &self.stat.cores {
                            let core = n.to_string();
                            for (mode, ticks) in times.modes() {
                                out.push(e.counter(
                                    "system.cpu.time",
                                    "s",
                                    ticks as f64 * tick,
                                    since_boot,
                                    &[("cpu.mode", mode), ("cpu.logical_number", &core)],
                                ));
                            }
                        }
                    }
                    // Share of each mode since the previous collection (host total).
                    if let Some(prev) = self.prev_total {
                        let total = self.stat.total.total().saturating_sub(prev.total());
                        if total > 0 {
                            for ((mode, now_t), (_, prev_t)) in
                                self.stat.total.modes().into_iter().zip(prev.modes())
                            {
                                let share = now_t.saturating_sub(prev_t) as f64 / total as f64;
                                out.push(e.gauge(
                                    "system.cpu.utilization",
                                    "1",
                                    share,
                                    &[("cpu.mode", mode)],
                                ));
                            }
                        }
                    }
                    self.prev_total = Some(self.stat.total);
                    out.push(e.gauge(
                        "system.cpu.logical.count",
                        "{cpu}",
                        self.stat.cores.len() as f64,
                        &[],
                    ));
                }
                Err(err) => warn(
                    &self.name,
                    &self.stats,
                    &mut self.warned,
                    "unreadable_proc_stat",
                    &err,
                ),
            }
        }
        if self.config.collects(Collector::Load) {
            match System::load_average() {
                Ok(l) => {
                    for (name, v) in [
                        ("system.cpu.load_average.1m", l.one),
                        ("system.cpu.load_average.5m", l.five),
                        ("system.cpu.load_average.15m", l.fifteen),
                    ] {
                        out.push(e.gauge(name, "{thread}", v, &[]));
                    }
                }
                Err(err) => warn(
                    &self.name,
                    &self.stats,
                    &mut self.warned,
                    "unreadable_load_average",
                    &err,
                ),
            }
        }
        if self.config.collects(Collector::Memory) {
            self.system
                .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
            let s = &self.system;
            let total = s.total_memory() as f64;
            out.push(e.gauge("system.memory.limit", "By", total, &[]));
            out.push(e.gauge(
                "system.memory.usage",
                "By",
                s.used_memory() as f64,
                &[("system.memory.state", "used")],
            ));
            out.push(e.gauge(
                "system.memory.usage",
                "By",
                s.free_memory() as f64,
                &[("system.memory.state", "free")],
            ));
            out.push(e.gauge(
                "system.linux.memory.available",
                "By",
                s.available_memory() as f64,
                &[],
            ));
            if total > 0.0 {
                out.push(e.gauge(
                    "system.memory.utilization",
                    "1",
                    s.used_memory() as f64 / total,
                    &[],
                ));
            }
            out.push(e.gauge("system.paging.limit", "By", s.total_swap() as f64, &[]));
            out.push(e.gauge(
                "system.paging.usage",
                "By",
                s.used_swap() as f64,
                &[("system.paging.state", "used")],
            ));
            out.push(e.gauge(
                "system.paging.usage",
                "By",
                s.free_swap() as f64,
                &[("system.paging.state", "free")],
            ));
        }
        if let Some(disks) = self.disks.as_mut() {
            disks.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
            self.mounts_seen.clear();
            for d in disks.iter() {
                let fs = d.file_system().to_string_lossy();
                let total = d.total_space();
                if total == 0 || PSEUDO_FILESYSTEMS.contains(&fs.as_ref()) {
                    continue;
                }
                let mount = d.mount_point().to_string_lossy();
                if !self.mounts_seen.insert(mount.to_string()) {
                    continue;
                }
                let device = d.name().to_string_lossy();
                let free = d.available_space();
                let used = total.saturating_sub(free);
                let tags = [
                    ("system.device", device.as_ref()),
                    ("system.filesystem.mountpoint", mount.as_ref()),
                    ("system.filesystem.type", fs.as_ref()),
                ];
                let with_state = |state: &'static str| {
                    [
                        tags[0],
                        tags[1],
                        tags[2],
                        ("system.filesystem.state", state),
                    ]
                };
                out.push(e.gauge("system.filesystem.limit", "By", total as f64, &tags));
                out.push(e.gauge(
                    "system.filesystem.usage",
                    "By",
                    used as f64,
                    &with_state("used"),
                ));
                out.push(e.gauge(
                    "system.filesystem.usage",
                    "By",
                    free as f64,
                    &with_state("free"),
                ));
                out.push(e.gauge(
                    "system.filesystem.utilization",
                    "1",
                    used as f64 / total as f64,
                    &tags,
                ));
            }
        }
        if let Some(f) = self.diskstats.as_mut() {
            match f.read() {
                Ok(text) => {
                    for d in procfs::parse_diskstats(text) {
                        let dev = ("system.device", d.device);
                        for (dir, bytes, ops, ms) in [
                            ("read", d.read_bytes, d.reads, d.read_ms),
                            ("write", d.write_bytes, d.writes, d.write_ms),
                        ] {
                            let tags = [dev, ("disk.io.direction", dir)];
                            out.push(e.counter(
                                "system.disk.io",
                                "By",
                                bytes as f64,
                                since_boot,
                                &tags,
                            ));
                            out.push(e.counter(
                                "system.disk.operations",
                                "{operation}",
                                ops as f64,
                                since_boot,
                                &tags,
                            ));
                            out.push(e.counter(
                                "system.disk.operation_time",
                                "s",
                                ms as f64 / 1000.0,
                                since_boot,
                                &tags,
                            ));
                        }
                        out.push(e.counter(
                            "system.disk.io_time",
                            "s",
                            d.io_ms as f64 / 1000.0,
                            since_boot,
                            &[dev],
                        ));
                    }
                }
                Err(err) => warn(
                    &self.name,
                    &self.stats,
                    &mut self.warned,
                    "unreadable_proc_diskstats",
                    &err,
                ),
            }
        }
        if let Some(f) = self.netdev.as_mut() {
            match f.read() {
                Ok(text) => {
                    for n in procfs::parse_net_dev(text) {
                        let iface = ("network.interface.name", n.interface);
                        for (dir, bytes, packets, errors, dropped) in [
                            (
                                "receive",
                                n.rx_bytes,
                                n.rx_packets,
                                n.rx_errors,
                                n.rx_dropped,
                            ),
                            (
                                "transmit",
                                n.tx_bytes,
                                n.tx_packets,
                                n.tx_errors,
                                n.tx_dropped,
                            ),
                        ] {
                            let tags = [iface, ("network.io.direction", dir)];
                            out.push(e.counter(
                                "system.network.io",
                                "By",
                                bytes as f64,
                                since_boot,
                                &tags,
                            ));
                            out.push(e.counter(
                                "system.network.packets",
                                "{packet}",
                                packets as f64,
                                since_boot,
                                &tags,
                            ));
                            out.push(e.counter(
                                "system.network.errors",
                                "{error}",
                                errors as f64,
                                since_boot,
                                &tags,
                            ));
                            out.push(e.counter(
                                "system.network.dropped",
                                "{packet}",
                                dropped as f64,
                                since_boot,
                                &tags,
                            ));
                        }
                    }
                }
                Err(err) => warn(
                    &self.name,
                    &self.stats,
                    &mut self.warned,
                    "unreadable_proc_net_dev",
                    &err,
                ),
            }
        }
        if self.config.collects(Collector::Processes) {
            // Counting entries needs no read of any process file.
            match std::fs::read_dir("/proc") {
                Ok(dir) => {
                    let n = dir
                        .flatten()
                        .filter(|e| {
                            e.file_name()
                                .as_encoded_bytes()
                                .iter()
                                .all(u8::is_ascii_digit)
                        })
                        .count();
                    out.push(e.gauge("system.process.count", "{process}", n as f64, &[]));
                }
                Err(err) => warn(
                    &self.name,
                    &self.stats,
                    &mut self.warned,
                    "unreadable_proc",
                    &err,
                ),
            }
        }
        if !self.modules.is_empty() {
            process::refresh(&mut self.modules, &mut self.pid_buf);
            self.pids.clear();
            self.pids.extend(
                self.modules
                    .iter()
                    .filter(|m| m.running)
                    .filter_map(|m| m.current.map(|(pid, _)| Pid::from_u32(pid))),
            );
            if !self.pids.is_empty() {
                self.system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&self.pids),
                    true,
                    ProcessRefreshKind::nothing().with_cpu().with_memory(),
                );
            }
            let since_start = Temporality::Cumulative {
                start_ms: self.started_ms,
            };
            for m in &self.modules {
                let module = [("module", m.config.module.as_str())];
                out.push(e.gauge(
                    "process.running",
                    "1",
                    if m.running { 1.0 } else { 0.0 },
                    &module,
                ));
                out.push(e.counter(
                    "process.restarts",
                    "{restart}",
                    m.restarts as f64,
                    since_start,
                    &module,
                ));
                let Some(p) = m
                    .current
                    .filter(|_| m.running)
                    .and_then(|(pid, _)| self.system.process(Pid::from_u32(pid)))
                else {
                    continue;
                };
                let started = Temporality::Cumulative {
                    start_ms: p.start_time() as i64 * 1000,
                };
                out.push(e.counter(
                    "process.cpu.time",
                    "s",
                    p.accumulated_cpu_time() as f64 / 1000.0,
                    started,
                    &module,
                ));
                out.push(e.gauge(
                    "process.cpu.utilization",
                    "1",
                    p.cpu_usage() as f64 / 100.0,
                    &module,
                ));
                out.push(e.gauge("process.memory.usage", "By", p.memory() as f64, &module));
                out.push(e.gauge(
                    "process.memory.virtual",
                    "By",
                    p.virtual_memory() as f64,
                    &module,
                ));
            }
        }
    }
}

/// Counts a collection problem; logs each kind once.
fn warn(
    source: &str,
    stats: &Stats,
    warned: &mut HashSet<&'static str>,
    kind: &'static str,
    error: &dyn std::fmt::Display,
) {
    stats.error(kind);
    if warned.insert(kind) {
        tracing::warn!(source, kind, error = %error, "host metrics: cannot collect; will retry");
    }
}

/// Builds events that share the collection's time, host tag and resource.
struct Emitter<'a> {
    now: i64,
    host: &'a str,
    resource: &'a Arc<Resource>,
}

impl Emitter<'_> {
    fn event(&self, name: &str, unit: &str, value: MetricValue, tags: &[(&str, &str)]) -> Event {
        let mut m = MetricEvent::new(name, self.now, value).with_unit(unit);
        m.tags.insert("host".to_owned(), self.host.to_owned());
        for (k, v) in tags {
            m.tags.insert((*k).to_owned(), (*v).to_owned());
        }
        m.resource = Some(Arc::clone(self.resource));
        Event::Metric(m)
    }

    fn gauge(&self, name: &str, unit: &str, value: f64, tags: &[(&str, &str)]) -> Event {
        self.event(name, unit, MetricValue::Gauge { value }, tags)
    }

    fn counter(
        &self,
        name: &str,
        unit: &str,
        value: f64,
        temporality: Temporality,
        tags: &[(&str, &str)],
    ) -> Event {
        self.event(
            name,
            unit,
            MetricValue::Counter { value, temporality },
            tags,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(processes: Vec<ProcessConfig>) -> HostMetricsSource {
        let config = HostMetricsConfig {
            interval_ms: 1000,
            collectors: vec![
                Collector::Cpu,
                Collector::Load,
                Collector::Memory,
                Collector::Filesystem,
                Collector::Disk,
                Collector::Network,
                Collector::Processes,
            ],
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
        let e = crate::config::parse(Path::new("a.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.toml:3:1: sources.h.interval_ms: must be at least 1000"),
            "{e}"
        );
        assert!(
            e.contains("sources.h.processes[0]: missing: `name` or `pidfile`"),
            "{e}"
        );
        assert!(
            e.contains("sources.h.processes[1].pidfile: must be an absolute path"),
            "{e}"
        );
        let bad = text.replace("[\"cpu\"]", "[\"gpu\"]");
        let e = crate::config::parse(Path::new("a.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sources.h.collectors[0]") && e.contains("unknown variant `gpu`"),
            "{e}"
        );
    }

    #[test]
    fn scrape_config_errors_name_their_key() {
        let text = "[sources.p]\ntype = \"prometheus_scrape\"\ninterval_ms = 5000\ntimeout_ms = 9000\n[[sources.p.targets]]\nurl = \"ftp://x/metrics\"\nlabels = { \"9bad\" = \"v\" }\n[sinks.o]\ntype = \"console\"\ninputs = [\"p\"]\n";
        let e = crate::config::parse(Path::new("a.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sources.p.timeout_ms: must be greater than 0 and at most interval_ms"),
            "{e}"
        );
        assert!(
            e.contains("sources.p.targets[0].url: `ftp://x/metrics` must be an http(s) URL"),
            "{e}"
        );
        assert!(e.contains("invalid label name"), "{e}");
    }
}
