//! Per-source checkpoints on disk: for each file fingerprint, the offset up to which every line
//! has been acknowledged. Written atomically (temp file, fsync, rename, fsync of the directory),
//! so a crash leaves either the old or the new file, never a torn one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is remembered about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Byte offset after the last acknowledged line.
    pub offset: u64,
    /// The log path the file was written under (for a rotated file, its name before the
    /// rotation): its rotations are found next to it after the agent was stopped.
    pub path: PathBuf,
    /// Last time the file was seen, in ms since the epoch; old entries are pruned.
    pub seen_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    /// Fingerprints as hex strings: JSON numbers lose precision above 2^53.
    files: HashMap<String, Entry>,
}

const VERSION: u32 = 1;

/// The checkpoints of one source.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    entries: HashMap<u64, Entry>,
}

impl Checkpoints {
    /// Loads `dir/<source>.json`. A missing file is an empty start; an unreadable or corrupt one
    /// is kept aside (renamed `.corrupt`) and reported, and reading starts without it.
    pub fn load(dir: &Path, source: &str) -> (Self, Option<String>) {
        let path = dir.join(format!("{source}.json"));
        let mut problem = None;
        let entries = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(d) if d.version == VERSION => d
                    .files
                    .into_iter()
                    .filter_map(|(k, v)| u64::from_str_radix(&k, 16).ok().map(|k| (k, v)))
                    .collect(),
                Ok(d) => {
                    problem = Some(format!(
                        "checkpoint file {} has unknown version {}; starting without it",
                        path.display(),
                        d.version
                    ));
                    HashMap::new()
                }
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    problem = Some(format!(
                        "checkpoint file {} is corrupt ({e}); moved to {} and starting without it",
                        path.display(),
                        aside.display()
                    ));
                    HashMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                problem = Some(format!(
                    "cannot read checkpoint file {}: {e}; starting without it",
                    path.display()
                ));
                HashMap::new()
            }
        };
        (Self { path, entries }, problem)
    }

    pub fn get(&self, fingerprint: u64) -> Option<&Entry> {
        self.entries.get(&fingerprint)
    }

    pub fn entries(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    pub fn set(&mut self, fingerprint: u64, entry: Entry) {
        self.entries.insert(fingerprint, entry);
    }

    /// Drops entries for files not seen since `before_ms`.
    pub fn prune(&mut self, before_ms: i64) {
        self.entries.retain(|_, e| e.seen_ms >= before_ms);
    }

    /// Writes the checkpoints atomically.
    pub fn write(&self) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let doc = OnDisk {
            version: VERSION,
            files: self
                .entries
                .iter()
                .map(|(k, v)| (format!("{k:016x}"), v.clone()))
                .collect(),
        };
        // Serialised in memory first: straight into the file it took one write() per token.
        let bytes = serde_json::to_vec(&doc)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_data()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        // The rename itself must reach the disk to survive a power cut.
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sets_aside_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, problem) = Checkpoints::load(dir.path(), "logs");
        assert!(problem.is_none());
        c.set(
            u64::MAX - 1,
            Entry {
                offset: 42,
                path: "/var/log/a.log".into(),
                seen_ms: 1,
            },
        );
        c.write().unwrap();
        let (again, _) = Checkpoints::load(dir.path(), "logs");
        assert_eq!(again.get(u64::MAX - 1).unwrap().offset, 42);

        std::fs::write(dir.path().join("logs.json"), b"{not json").unwrap();
        let (empty, problem) = Checkpoints::load(dir.path(), "logs");
        assert!(empty.get(u64::MAX - 1).is_none());
        assert!(problem.unwrap().contains("corrupt"));
        assert!(dir.path().join("logs.json.corrupt").exists());
    }
}
