//! `filesystem`: size, use and utilization of each mounted filesystem that holds data.

use std::collections::HashSet;

use sysinfo::{DiskRefreshKind, Disks};

use crate::event::Event;

use super::emit::Emitter;

/// Filesystem types that hold no user data (beyond those sysinfo already leaves out).
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "configfs",
    "debugfs",
    "efivarfs",
    "fuse.lxcfs",
    "fusectl",
    "nsfs",
    "ramfs",
    "securityfs",
    "selinuxfs",
    "tracefs",
    "tmpfs",
    "devtmpfs",
];

pub struct Filesystems {
    disks: Disks,
    /// A filesystem mounted twice (bind mounts) is reported once.
    mounts_seen: HashSet<String>,
}

impl Filesystems {
    pub fn new() -> Option<Self> {
        Some(Self {
            disks: Disks::new().ok()?,
            mounts_seen: HashSet::new(),
        })
    }

    pub fn collect(&mut self, e: &Emitter, out: &mut Vec<Event>) {
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        self.mounts_seen.clear();
        for d in self.disks.iter() {
            let fs = d.file_system().to_string_lossy();
            let total = d.total_space();
            if total == 0 || PSEUDO_FILESYSTEMS.contains(&fs.as_ref()) {
                continue;
            }
            let mount = d.mount_point().to_string_lossy();
            if !self.mounts_seen.insert(mount.to_string()) {
                continue;
            }
            let device = d.name().to_string_lossy();
            let free = d.available_space();
            let used = total.saturating_sub(free);
            let tags = [
                ("system.device", device.as_ref()),
                ("system.filesystem.mountpoint", mount.as_ref()),
                ("system.filesystem.type", fs.as_ref()),
            ];
            let with_state = |state: &'static str| {
                [
                    tags[0],
                    tags[1],
                    tags[2],
                    ("system.filesystem.state", state),
                ]
            };
            out.push(e.gauge("system.filesystem.limit", "By", total as f64, &tags));
            out.push(e.gauge(
                "system.filesystem.usage",
                "By",
                used as f64,
                &with_state("used"),
            ));
            out.push(e.gauge(
                "system.filesystem.usage",
                "By",
                free as f64,
                &with_state("free"),
            ));
            out.push(e.gauge(
                "system.filesystem.utilization",
                "1",
                used as f64 / total as f64,
                &tags,
            ));
        }
    }
}
