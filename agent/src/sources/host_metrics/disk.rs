//! `disk`: bytes, operations and time of each block device, from `/proc/diskstats`.

use crate::event::Event;

use super::emit::Emitter;
use super::procfs::{self, ProcFile};

pub fn collect(file: &mut ProcFile, e: &Emitter, out: &mut Vec<Event>) -> std::io::Result<()> {
    for d in procfs::parse_diskstats(file.read()?) {
        let dev = ("system.device", d.device);
        for (dir, bytes, ops, ms) in [
            ("read", d.read_bytes, d.reads, d.read_ms),
            ("write", d.write_bytes, d.writes, d.write_ms),
        ] {
            let tags = [dev, ("disk.io.direction", dir)];
            out.push(e.since_boot("system.disk.io", "By", bytes as f64, &tags));
            out.push(e.since_boot("system.disk.operations", "{operation}", ops as f64, &tags));
            out.push(e.since_boot("system.disk.operation_time", "s", ms as f64 / 1000.0, &tags));
        }
        out.push(e.since_boot("system.disk.io_time", "s", d.io_ms as f64 / 1000.0, &[dev]));
    }
    Ok(())
}
