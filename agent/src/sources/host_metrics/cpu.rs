//! `cpu`: time per mode (host and, optionally, per core), utilization since the previous
//! collection, and the number of logical CPUs, from `/proc/stat`.

use crate::event::Event;

use super::emit::Emitter;
use super::procfs::{self, CpuTimes, ProcFile, Stat};

pub struct Cpu {
    file: ProcFile,
    stat: Stat,
    prev_total: Option<CpuTimes>,
    /// Seconds per clock tick.
    tick_s: f64,
    per_core: bool,
}

impl Cpu {
    pub fn new(file: ProcFile, stat: Stat, tick_s: f64, per_core: bool) -> Self {
        Self {
            file,
            stat,
            prev_total: None,
            tick_s,
            per_core,
        }
    }

    pub fn collect(&mut self, e: &Emitter, out: &mut Vec<Event>) -> std::io::Result<()> {
        procfs::parse_stat(self.file.read()?, &mut self.stat);
        let tick = self.tick_s;
        for (mode, ticks) in self.stat.total.modes() {
            out.push(e.since_boot(
                "system.cpu.time",
                "s",
                ticks as f64 * tick,
                &[("cpu.mode", mode)],
            ));
        }
        if self.per_core {
            for (n, times) in &self.stat.cores {
                let core = n.to_string();
                for (mode, ticks) in times.modes() {
                    out.push(e.since_boot(
                        "system.cpu.time",
                        "s",
                        ticks as f64 * tick,
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
                    out.push(e.gauge("system.cpu.utilization", "1", share, &[("cpu.mode", mode)]));
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
        Ok(())
    }
}
