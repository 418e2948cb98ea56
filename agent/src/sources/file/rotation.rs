//! Rotation and truncation: where the rest of a rotated or truncated file is read from.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::Entry;
use super::fingerprint::fingerprint;
use super::{FileSource, State};

impl FileSource {
    /// A tracked file shrank: it was truncated (copytruncate). Its unread old content is in the
    /// rotated copy, if logrotate left one; the truncated file is new content from offset 0.
    pub(super) fn truncated(&mut self, state: &mut State, key: u64, path: &Path) {
        let mut old = state.files.remove(&key).expect("tracked");
        let resume_at = old.read_offset - old.buf.len() as u64;
        match find_rotated_copy(path, key, self.config.fingerprint_bytes) {
            Some((copy_path, copy)) => {
                tracing::info!(source = %self.name, path = %path.display(), copy = %copy_path.display(),
                    "file truncated; reading the rest of its old content from the rotated copy");
                old.file = copy;
                old.dev_ino = old
                    .file
                    .metadata()
                    .map(|m| (m.dev(), m.ino()))
                    .unwrap_or_default();
                old.path = copy_path;
                old.origin = path.to_path_buf();
                old.read_offset = resume_at;
                old.buf.clear();
                old.splitter.reset();
                old.rotated = true;
                old.at_eof = false;
                old.last_growth = Instant::now();
                state.files.insert(key, old);
            }
            None => {
                self.stats.error("rotated_copy_missing");
                tracing::warn!(source = %self.name, path = %path.display(),
                    "file truncated and no rotated copy with the same first line was found next to it; lines written just before the truncation may be missing (use delaycompress with copytruncate)");
                // Keep it only for its acknowledgements; nothing more to read.
                old.rotated = true;
                old.buf.clear();
                old.read_offset = u64::MAX;
                state.files.insert(key, old);
            }
        }
        // The truncated file itself is picked up as a new file (by fingerprint) on this scan.
        self.discover(state, path, false);
    }

    /// Rotations of `origin` that the agent never saw under their log name (created and rotated
    /// away while it was stopped or too busy to look) are read from their start. Only
    /// rotations newer than a file already known for this path qualify, so old rotations from
    /// before the agent was installed are not read.
    pub(super) fn adopt_missed_rotations(&mut self, state: &mut State, origin: &Path) {
        let siblings = rotated_siblings(origin, self.config.fingerprint_bytes);
        tracing::debug!(origin = %origin.display(), siblings = ?siblings.iter().map(|s| (s.path.display().to_string(), s.fingerprint.map(|f| format!("{f:016x}")))).collect::<Vec<_>>(), "looking for missed rotations");
        let known = |fp: Option<u64>| {
            fp.is_some_and(|fp| state.files.contains_key(&fp) || self.checkpoints.get(fp).is_some())
        };
        let Some(first_known) = siblings
            .iter()
            .find(|s| known(s.fingerprint))
            .map(|s| s.modified)
        else {
            return;
        };
        let missed: Vec<Sibling> = siblings
            .into_iter()
            .filter(|s| {
                s.modified >= first_known && s.fingerprint.is_some() && !known(s.fingerprint)
            })
            .collect();
        for s in missed {
            let fp = s.fingerprint.expect("filtered");
            tracing::info!(source = %self.name, path = %s.path.display(),
                "found a rotation of this log that was never read under its name; reading it");
            self.track(state, fp, s.path, origin.to_path_buf(), s.file, 0, true);
        }
    }

    /// On start: files in the checkpoint that the globs no longer find may have been rotated
    /// while the agent was stopped; read what is left of them from their rotated copy.
    pub(super) fn resume_rotated(&mut self, state: &mut State) {
        let entries: Vec<(u64, Entry)> = self
            .checkpoints
            .entries()
            .map(|(k, e)| (k, e.clone()))
            .collect();
        for (fp, e) in &entries {
            tracing::debug!(source = %self.name, fingerprint = format!("{fp:016x}"), offset = e.offset, path = %e.path.display(), "checkpoint at start");
        }
        for (fp, entry) in entries {
            let at_path = File::open(&entry.path).ok().and_then(|f| {
                fingerprint(&f, self.config.fingerprint_bytes)
                    .ok()
                    .flatten()
            });
            if at_path == Some(fp) {
                continue; // still where it was: the scan finds it
            }
            if let Some((copy_path, copy)) =
                find_rotated_copy(&entry.path, fp, self.config.fingerprint_bytes)
                && copy
                    .metadata()
                    .map(|m| m.len() > entry.offset)
                    .unwrap_or(false)
            {
                tracing::info!(source = %self.name, path = %copy_path.display(), offset = entry.offset,
                    "file was rotated while the agent was stopped; reading the rest of it");
                self.track(
                    state,
                    fp,
                    copy_path,
                    entry.path.clone(),
                    copy,
                    entry.offset,
                    true,
                );
            }
        }
        let origins: HashSet<PathBuf> = self
            .checkpoints
            .entries()
            .map(|(_, e)| e.path.clone())
            .collect();
        for origin in origins {
            self.adopt_missed_rotations(state, &origin);
        }
    }
}

/// A rotation of a log file found next to it.
struct Sibling {
    path: PathBuf,
    file: File,
    fingerprint: Option<u64>,
    modified: std::time::SystemTime,
}

/// The rotations of `path` (`app.log.1`, `app.log-20261122`, ...): files in its directory whose
/// names extend its name.
fn rotated_siblings(path: &Path, fingerprint_bytes: usize) -> Vec<Sibling> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Sibling> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n != base && n.starts_with(base))
        })
        .filter_map(|p| {
            let file = File::open(&p).ok()?;
            let meta = file.metadata().ok().filter(|m| m.is_file())?;
            Some(Sibling {
                fingerprint: fingerprint(&file, fingerprint_bytes).ok().flatten(),
                modified: meta.modified().ok()?,
                path: p,
                file,
            })
        })
        .collect();
    found.sort_by_key(|s| s.modified);
    found
}

/// The rotation of `path` whose fingerprint is `fp`: where logrotate put the old content.
fn find_rotated_copy(path: &Path, fp: u64, fingerprint_bytes: usize) -> Option<(PathBuf, File)> {
    rotated_siblings(path, fingerprint_bytes)
        .into_iter()
        .find(|s| s.fingerprint == Some(fp))
        .map(|s| (s.path, s.file))
}
