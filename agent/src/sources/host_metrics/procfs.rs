//! Readers of the few `/proc` files sysinfo does not cover (or covers with many more syscalls):
//! CPU time by mode (`/proc/stat`), disk I/O (`/proc/diskstats`) and network counters with drops
//! (`/proc/net/dev`). Each file is kept open and re-read from offset 0 into a reused buffer, so a
//! collection costs one `pread` per file and no allocation beyond the parsed values.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A `/proc` file read again and again into the same buffer.
pub struct ProcFile {
    file: File,
    buf: Vec<u8>,
}

impl ProcFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
            buf: Vec::with_capacity(8192),
        })
    }

    /// The file's current content (valid until the next call).
    pub fn read(&mut self) -> io::Result<&str> {
        self.buf.clear();
        let mut offset = 0u64;
        loop {
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(self.buf.capacity().max(4096));
            }
            let len = self.buf.len();
            let cap = self.buf.capacity();
            self.buf.resize(cap, 0);
            let n = self.file.read_at(&mut self.buf[len..], offset)?;
            self.buf.truncate(len + n);
            if n == 0 {
                break;
            }
            offset += n as u64;
        }
        std::str::from_utf8(&self.buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
}

/// CPU time in clock ticks by mode, as in one `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// (mode label, ticks) in a fixed order.
    pub fn modes(&self) -> [(&'static str, u64); 8] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("interrupt", self.irq),
            ("softirq", self.softirq),
            ("steal", self.steal),
        ]
    }

    pub fn total(&self) -> u64 {
        self.modes().iter().map(|(_, v)| v).sum()
    }
}

/// What `/proc/stat` says: the host total, one entry per core (index = logical number), boot
/// time in seconds since the epoch.
#[derive(Debug, Default)]
pub struct Stat {
    pub total: CpuTimes,
    pub cores: Vec<(u32, CpuTimes)>,
    pub boot_time_s: u64,
}

/// Parses `/proc/stat` into `out` (its `cores` vector is reused).
pub fn parse_stat(text: &str, out: &mut Stat) {
    out.cores.clear();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if key == "btime" {
            out.boot_time_s = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if let Some(rest) = key.strip_prefix("cpu") {
            let mut v = [0u64; 8];
            for slot in v.iter_mut() {
                *slot = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
            }
            let times = CpuTimes {
                user: v[0],
                nice: v[1],
                system: v[2],
                idle: v[3],
                iowait: v[4],
                irq: v[5],
                softirq: v[6],
                steal: v[7],
            };
            if rest.is_empty() {
                out.total = times;
            } else if let Ok(n) = rest.parse() {
                out.cores.push((n, times));
            }
        }
    }
}

/// One block device's counters from `/proc/diskstats` (sectors are 512 bytes there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskStat<'a> {
    pub device: &'a str,
    pub reads: u64,
    pub read_bytes: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub write_ms: u64,
    pub io_ms: u64,
}

/// Devices worth reporting: not loop or RAM disks, and used at least once.
pub fn parse_diskstats(text: &str) -> impl Iterator<Item = DiskStat<'_>> {
    text.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let device = f.nth(2)?;
        let mut n = [0u64; 10];
        for slot in n.iter_mut() {
            *slot = f.next()?.parse().ok()?;
        }
        if device.starts_with("loop") || device.starts_with("ram") || device.starts_with("zram") {
            return None;
        }
        let d = DiskStat {
            device,
            reads: n[0],
            read_bytes: n[2] * 512,
            read_ms: n[3],
            writes: n[4],
            write_bytes: n[6] * 512,
            write_ms: n[7],
            io_ms: n[9],
        };
        (d.reads + d.writes > 0).then_some(d)
    })
}

/// One interface's counters from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetStat<'a> {
    pub interface: &'a str,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

pub fn parse_net_dev(text: &str) -> impl Iterator<Item = NetStat<'_>> {
    // Two header lines, then `iface: 16 numbers`.
    text.lines().skip(2).filter_map(|line| {
        let (name, rest) = line.split_once(':')?;
        let mut n = [0u64; 12];
        let mut f = rest.split_ascii_whitespace();
        for slot in n.iter_mut() {
            *slot = f.next()?.parse().ok()?;
        }
        Some(NetStat {
            interface: name.trim(),
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_errors: n[2],
            rx_dropped: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_errors: n[10],
            tx_dropped: n[11],
        })
    })
}

/// Fields of `/proc/PID/stat` needed to follow a process: its name and its start time (clock
/// ticks after boot), which tells a restarted process from a reused pid.
pub fn parse_pid_stat(text: &str) -> Option<(&str, u64)> {
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split at the last `)`.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    // After `)`: state is field 3; starttime is field 22.
    let start = text
        .get(close + 1..)?
        .split_ascii_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    Some((comm, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_total_cores_and_boot_time() {
        let text = "cpu  10 1 5 100 3 2 1 0 0 0\ncpu0 6 1 3 50 2 1 1 0 0 0\ncpu1 4 0 2 50 1 1 0 0 0 0\nintr 1 2 3\nctxt 99\nbtime 1700000000\nprocesses 5\n";
        let mut s = Stat::default();
        parse_stat(text, &mut s);
        assert_eq!(s.total.user, 10);
        assert_eq!(s.total.iowait, 3);
        assert_eq!(s.total.total(), 122);
        assert_eq!(s.cores.len(), 2);
        assert_eq!(s.cores[1].0, 1);
        assert_eq!(s.cores[1].1.idle, 50);
        assert_eq!(s.boot_time_s, 1_700_000_000);
        // Reused: a second parse does not accumulate cores.
        parse_stat(text, &mut s);
        assert_eq!(s.cores.len(), 2);
    }

    #[test]
    fn diskstats_skip_loop_and_unused_devices() {
        let text = "   7       0 loop0 10 0 20 1 0 0 0 0 0 1 1 0 0 0 0\n 259       0 nvme0n1 100 5 2000 30 50 3 800 40 0 60 70 0 0 0 0\n   8       0 sdb 0 0 0 0 0 0 0 0 0 0 0\n";
        let d: Vec<_> = parse_diskstats(text).collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].device, "nvme0n1");
        assert_eq!(d[0].read_bytes, 2000 * 512);
        assert_eq!(d[0].write_bytes, 800 * 512);
        assert_eq!(d[0].reads, 100);
        assert_eq!(d[0].writes, 50);
        assert_eq!(d[0].read_ms, 30);
        assert_eq!(d[0].write_ms, 40);
        assert_eq!(d[0].io_ms, 60);
    }

    #[test]
    fn net_dev_counters() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  eth0: 5000 50 1 2 0 0 0 0 7000 70 3 4 0 0 0 0\n";
        let n: Vec<_> = parse_net_dev(text).collect();
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].interface, "eth0");
        assert_eq!(
            (
                n[1].rx_bytes,
                n[1].rx_packets,
                n[1].rx_errors,
                n[1].rx_dropped
            ),
            (5000, 50, 1, 2)
        );
        assert_eq!(
            (
                n[1].tx_bytes,
                n[1].tx_packets,
                n[1].tx_errors,
                n[1].tx_dropped
            ),
            (7000, 70, 3, 4)
        );
    }

    #[test]
    fn pid_stat_with_odd_names() {
        let text = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 12345 1000 100 18446744073709551615";
        assert_eq!(parse_pid_stat(text), Some(("my (odd) name", 12345)));
        assert_eq!(parse_pid_stat("garbage"), None);
    }

    #[test]
    fn reads_real_proc_files_twice() {
        let mut f = ProcFile::open(Path::new("/proc/stat")).unwrap();
        let first = f.read().unwrap().len();
        assert!(first > 0);
        let mut s = Stat::default();
        parse_stat(f.read().unwrap(), &mut s);
        assert!(s.total.total() > 0 && s.boot_time_s > 0);
    }
}
