//! `network`: bytes, packets, errors and drops of each interface, from `/proc/net/dev`.

use crate::event::Event;

use super::emit::Emitter;
use super::procfs::{self, ProcFile};

pub fn collect(file: &mut ProcFile, e: &Emitter, out: &mut Vec<Event>) -> std::io::Result<()> {
    for n in procfs::parse_net_dev(file.read()?) {
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
            out.push(e.since_boot("system.network.io", "By", bytes as f64, &tags));
            out.push(e.since_boot("system.network.packets", "{packet}", packets as f64, &tags));
            out.push(e.since_boot("system.network.errors", "{error}", errors as f64, &tags));
            out.push(e.since_boot("system.network.dropped", "{packet}", dropped as f64, &tags));
        }
    }
    Ok(())
}
