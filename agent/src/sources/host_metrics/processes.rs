//! `processes`: how many processes the host runs (counting `/proc` entries reads no process
//! file).

use crate::event::Event;

use super::emit::Emitter;

pub fn collect(e: &Emitter, out: &mut Vec<Event>) -> std::io::Result<()> {
    let n = std::fs::read_dir("/proc")?
        .flatten()
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .count();
    out.push(e.gauge("system.process.count", "{process}", n as f64, &[]));
    Ok(())
}
