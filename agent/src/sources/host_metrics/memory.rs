//! `memory`: RAM and swap, from sysinfo (asked for memory only).

use sysinfo::{MemoryRefreshKind, System};

use crate::event::Event;

use super::emit::Emitter;

pub fn collect(system: &mut System, e: &Emitter, out: &mut Vec<Event>) {
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
    let s = &*system;
    let total = s.total_memory() as f64;
    let ram = [s.used_memory(), s.free_memory()];
    limit_and_usage(e, out, "system.memory", total, ram);
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
    let swap = [s.used_swap(), s.free_swap()];
    limit_and_usage(e, out, "system.paging", s.total_swap() as f64, swap);
}

/// `PREFIX.limit`, then `PREFIX.usage` split by `PREFIX.state` into used and free: RAM and swap
/// are reported alike.
fn limit_and_usage(
    e: &Emitter,
    out: &mut Vec<Event>,
    prefix: &str,
    total: f64,
    [used, free]: [u64; 2],
) {
    let (usage, state) = (format!("{prefix}.usage"), format!("{prefix}.state"));
    out.push(e.gauge(&format!("{prefix}.limit"), "By", total, &[]));
    for (tag, bytes) in [("used", used), ("free", free)] {
        out.push(e.gauge(&usage, "By", bytes as f64, &[(&state, tag)]));
    }
}
