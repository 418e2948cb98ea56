//! `load`: the 1, 5 and 15 minute load averages.

use sysinfo::System;

use crate::event::Event;

use super::emit::Emitter;

pub fn collect(e: &Emitter, out: &mut Vec<Event>) -> Result<(), sysinfo::Error> {
    let l = System::load_average()?;
    for (name, v) in [
        ("system.cpu.load_average.1m", l.one),
        ("system.cpu.load_average.5m", l.five),
        ("system.cpu.load_average.15m", l.fifteen),
    ] {
        out.push(e.gauge(name, "{thread}", v, &[]));
    }
    Ok(())
}
