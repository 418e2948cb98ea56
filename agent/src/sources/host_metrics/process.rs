//! Following the module processes named in the config: which pid is the module now, and did it
//! change (a restart). The pid found last time is checked first (one small read); all of
//! `/proc` is scanned only when it is gone, so a steady host costs one read per module.

use std::path::Path;

use super::config::ProcessConfig;
use super::procfs::parse_pid_stat;

/// One followed module.
pub struct Tracked {
    pub config: ProcessConfig,
    /// (pid, start time in ticks after boot) of the process found last, kept while it is gone so
    /// that its successor counts as a restart.
    pub current: Option<(u32, u64)>,
    /// Whether the process was found at the last collection.
    pub running: bool,
    pub restarts: u64,
    /// `comm` is cut at 15 bytes by the kernel; longer names are compared on that prefix and
    /// then on the executable's file name.
    comm_prefix: Option<String>,
}

impl Tracked {
    pub fn new(config: ProcessConfig) -> Self {
        let comm_prefix = config
            .name
            .as_deref()
            .map(|n| n.chars().take(15).collect::<String>());
        Self {
            config,
            current: None,
            running: false,
            restarts: 0,
            comm_prefix,
        }
    }

    fn is_match(&self, pid: u32, comm: &str) -> bool {
        let (Some(name), Some(prefix)) = (&self.config.name, &self.comm_prefix) else {
            return false;
        };
        if comm == name {
            return true;
        }
        if name.len() > 15 && comm == prefix {
            // Compare the full name against the executable's file name.
            return std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy() == name.as_str()))
                .unwrap_or(false);
        }
        false
    }

    /// Is the process found last time still there (same pid, same start time)?
    fn still_alive(&self, buf: &mut String) -> bool {
        let Some((pid, start)) = self.current else {
            return false;
        };
        read_pid_stat(pid, buf)
            .and_then(|_| parse_pid_stat(buf))
            .is_some_and(|(comm, s)| {
                s == start && (self.config.pidfile.is_some() || self.is_match(pid, comm))
            })
    }

    /// Records what was found this time; a different process than last time is a restart.
    fn found(&mut self, now: Option<(u32, u64)>) {
        if let Some(now) = now {
            if self.current.is_some_and(|prev| prev != now) {
                self.restarts += 1;
            }
            self.current = Some(now);
        }
        self.running = now.is_some();
    }
}

fn read_pid_stat(pid: u32, buf: &mut String) -> Option<()> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .ok()?
        .read_to_string(buf)
        .ok()?;
    Some(())
}

/// Updates every module: keeps live ones, finds missing ones (pidfile, or one scan of `/proc`
/// shared by all name matches), counts restarts.
pub fn refresh(modules: &mut [Tracked], buf: &mut String) {
    let mut pending = Vec::new();
    for (i, m) in modules.iter_mut().enumerate() {
        if m.still_alive(buf) {
            m.running = true;
        } else if let Some(pidfile) = &m.config.pidfile {
            let found = read_pidfile(pidfile).and_then(|pid| {
                read_pid_stat(pid, buf)?;
                let (_, start) = parse_pid_stat(buf)?;
                Some((pid, start))
            });
            m.found(found);
        } else {
            pending.push(i);
        }
    }
    if pending.is_empty() {
        return;
    }
    // Oldest matching process per module (the parent of any workers it forks).
    let mut best: Vec<Option<(u32, u64)>> = vec![None; modules.len()];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if read_pid_stat(pid, buf).is_none() {
                continue;
            }
            let Some((comm, start)) = parse_pid_stat(buf) else {
                continue;
            };
            for &i in &pending {
                if modules[i].is_match(pid, comm) && best[i].is_none_or(|(_, s)| start < s) {
                    best[i] = Some((pid, start));
                }
            }
        }
    }
    for &i in &pending {
        modules[i].found(best[i]);
    }
}

fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
