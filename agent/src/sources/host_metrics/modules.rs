//! `processes = [...]`: whether each followed module process runs, its restarts, CPU and memory
//! (sysinfo asked for those pids only, never the full process table).

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::event::{Event, Temporality};

use super::config::ProcessConfig;
use super::emit::Emitter;
use super::process::{self, Tracked};

pub struct Modules {
    tracked: Vec<Tracked>,
    pid_buf: String,
    pids: Vec<Pid>,
    /// Restarts are counted from the agent's start.
    started_ms: i64,
}

impl Modules {
    pub fn new(configs: &[ProcessConfig], started_ms: i64) -> Self {
        Self {
            tracked: configs.iter().cloned().map(Tracked::new).collect(),
            pid_buf: String::with_capacity(512),
            pids: Vec::new(),
            started_ms,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    pub fn collect(&mut self, system: &mut System, e: &Emitter, out: &mut Vec<Event>) {
        process::refresh(&mut self.tracked, &mut self.pid_buf);
        self.pids.clear();
        self.pids.extend(
            self.tracked
                .iter()
                .filter(|m| m.running)
                .filter_map(|m| m.current.map(|(pid, _)| Pid::from_u32(pid))),
        );
        if !self.pids.is_empty() {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&self.pids),
                true,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            );
        }
        let since_start = Temporality::Cumulative {
            start_ms: self.started_ms,
        };
        for m in &self.tracked {
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
                .and_then(|(pid, _)| system.process(Pid::from_u32(pid)))
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
