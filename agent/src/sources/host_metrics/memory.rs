//! `memory`: RAM and swap, from sysinfo (asked for memory only).

use sysinfo::{MemoryRefreshKind, System};

use crate::event::Event;

use super::emit::Emitter;

pub fn collect(system: &mut System, e: &Emitter, out: &mut Vec<Event>) {
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
    let s = &*system;
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
