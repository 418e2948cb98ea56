//! `type = "file"`: tails files matched by globs, with checkpoints that survive restarts and
//! rotations.
//!
//! - Identity: a file is its fingerprint (a hash of its first line, see [`fingerprint`]), so a
//!   renamed file keeps its checkpoint, and a truncated file (copytruncate) is a new file.
//! - Rotation by rename (`create`): the open handle keeps reading the old file until it has been
//!   quiet for `rotate_wait_ms`, while the new file is picked up by the glob.
//! - Rotation by copy and truncate: when a file shrinks, the rest of its old content is read from
//!   the rotated copy (a sibling with the same fingerprint, e.g. `app.log.1`) before the truncated
//!   file is read from its start.
//! - Checkpoints advance only when every sink acknowledged a batch, and only over contiguous
//!   acknowledged batches, so a restart neither skips nor (beyond the last moments) repeats.
//!
//! Reading runs on a blocking thread: file I/O is blocking anyway, and a full downstream queue
//! simply blocks the thread, which is the backpressure we want.

pub(crate) mod checkpoint;
pub(crate) mod config;
mod fingerprint;
pub mod lines;
mod multiline;

pub use config::{FileSourceConfig, MultilineConfig, OversizedLines, StartAt};

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::event::{
    Ack, AckReceiver, AckStatus, Attributes, Event, LogEvent, Position, ack_channel, now_ms,
};
use crate::output::SourceOutput;
use crate::telemetry::Outcome;
use checkpoint::{Checkpoints, Entry};
use fingerprint::fingerprint;
use lines::{LineSplitter, Piece};
use multiline::Multiline;

/// Bytes read from one file before moving on to the next (fairness between files).
const READ_BUDGET: usize = 1 << 20;
const READ_CHUNK: usize = 64 * 1024;
/// Checkpoints are written at most this often (and at shutdown): short, because what was
/// delivered but not yet checkpointed is sent again after a crash.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// Checkpoint entries of files not seen for this long are forgotten.
const CHECKPOINT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Upper bound on the wait for outstanding acknowledgements at shutdown.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(30);

pub struct FileSource {
    name: String,
    config: FileSourceConfig,
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    path_fields: Option<regex::Regex>,
    checkpoints: Checkpoints,
    /// This source's counters (the same component as its `SourceOutput`'s).
    stats: crate::telemetry::Stats,
}

/// One file being read.
struct Tracked {
    fingerprint: u64,
    path: PathBuf,
    /// The path this file was written under (its name before a rotation), which its
    /// successor now has.
    origin: PathBuf,
    file: File,
    dev_ino: (u64, u64),
    /// File offset up to which bytes were read into `buf`.
    read_offset: u64,
    /// Read but not yet split into lines (an incomplete last line).
    buf: Vec<u8>,
    splitter: LineSplitter,
    multiline: Option<Multiline>,
    /// End offset up to which every batch was acknowledged: what the checkpoint says.
    committed: u64,
    /// Batches handed on and not yet acknowledged, oldest first: (batch id, end offset, status).
    in_flight: VecDeque<(u64, u64, Option<AckStatus>)>,
    /// A batch was not delivered (shutdown mid-way): the checkpoint must not pass it.
    stalled: bool,
    /// The path no longer leads to this file (renamed, deleted or truncated away).
    rotated: bool,
    /// The last read found no more data (a rotated file is let go only once read to its end).
    at_eof: bool,
    last_growth: Instant,
    attributes: Attributes,
    /// `vigil_file_lag_bytes` of this file: set at each scan (size − read offset) and to 0
    /// when a read reaches the end, never per line.
    lag: crate::telemetry::FileLag,
}

impl FileSource {
    pub fn new(name: &str, config: FileSourceConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let (checkpoints, problem) = Checkpoints::load(&data_dir.join("checkpoints"), name);
        if let Some(p) = problem {
            tracing::error!(source = name, "{p}");
        }
        Ok(Self {
            name: name.to_owned(),
            include: config.include.clone(),
            exclude: config
                .exclude
                .iter()
                .map(|p| glob::Pattern::new(p))
                .collect::<Result<_, _>>()?,
            path_fields: config
                .path_fields
                .as_deref()
                .map(regex::Regex::new)
                .transpose()?,
            config,
            checkpoints,
            stats: crate::telemetry::Stats::new(name),
        })
    }

    /// Reads until `stop` is cancelled, then waits (bounded) for outstanding acknowledgements
    /// and writes the final checkpoint.
    pub fn run(mut self, out: SourceOutput, stop: CancellationToken) {
        let (ack_tx, acks) = ack_channel();
        let mut state = State {
            files: HashMap::new(),
            batch_files: HashMap::new(),
            next_batch: 1,
            warned: HashSet::new(),
            dirty: false,
            last_write: Instant::now(),
            acks,
        };
        self.resume_rotated(&mut state);
        let stopped = StopSignal::new(&stop);
        let mut idle_polls = 0u32;
        let mut first_scan = true;
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        while !stop.is_cancelled() {
            let started = Instant::now();
            self.scan(&mut state, first_scan);
            first_scan = false;
            let mut read_any = false;
            // Oldest data first: rotated files before current ones, older rotations (by
            // modification time) before newer, and a file waits while an older file of the same
            // log path still has data — so the lines of one log path reach the sinks in the
            // order they were written, across rotations and restarts.
            let mut order: Vec<(bool, std::time::SystemTime, u64)> = state
                .files
                .values()
                .map(|t| {
                    let mtime = t
                        .file
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (!t.rotated, mtime, t.fingerprint)
                })
                .collect();
            order.sort_unstable();
            let mut draining: HashSet<PathBuf> = HashSet::new();
            for (_, _, key) in order {
                if draining.contains(&state.files[&key].origin) {
                    continue;
                }
                match self.read_file(&mut state, key, &out, &ack_tx) {
                    Ok(n) => {
                        read_any |= n > 0;
                        if n > 0
                            && let Some(t) = state.files.get(&key)
                        {
                            draining.insert(t.origin.clone());
                        }
                    }
                    Err(Closed) => return self.finish(state),
                }
            }
            self.release_finished(&mut state);
            self.apply_acks(&mut state);
            self.maybe_write_checkpoint(&mut state, false);
            if read_any {
                idle_polls = 0;
            } else {
                // Idle: wait for the next poll, but wake for shutdown. While batches are in
                // flight or a checkpoint is due, look at acknowledgements every 10 ms; with
                // nothing pending, sleep through to the next poll (an idle agent must not wake
                // a hundred times a second).
                idle_polls = idle_polls.saturating_add(1);
                let left = idle_wait(poll, idle_polls).saturating_sub(started.elapsed());
                let deadline = Instant::now() + left;
                while Instant::now() < deadline && !stop.is_cancelled() {
                    let pending =
                        state.dirty || state.files.values().any(|t| !t.in_flight.is_empty());
                    let nap = if pending {
                        Duration::from_millis(10)
                    } else {
                        deadline.saturating_duration_since(Instant::now())
                    };
                    stopped.wait(nap);
                    self.maybe_write_checkpoint(&mut state, false);
                    self.apply_acks(&mut state);
                }
            }
        }
        // Lines held by multiline grouping are complete now: nothing more will be read.
        let held: Vec<(u64, String, u64)> = state
            .files
            .iter_mut()
            .filter_map(|(k, t)| {
                let (text, end) = t.multiline.as_mut()?.flush()?;
                Some((*k, text, end))
            })
            .collect();
        for (key, text, end) in held {
            let event = line_event(&state.files[&key].attributes, text);
            if self
                .send(
                    &mut state,
                    key,
                    (vec![event], vec![end]),
                    end,
                    &out,
                    &ack_tx,
                )
                .is_err()
            {
                break;
            }
        }
        drop(out);
        self.finish(state);
    }

    fn finish(mut self, mut state: State) {
        let deadline = Instant::now() + SHUTDOWN_ACK_WAIT;
        while state.files.values().any(|t| !t.in_flight.is_empty()) && Instant::now() < deadline {
            match state.acks.try_recv() {
                Ok((id, status)) => self.ack(&mut state, id, status),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        self.apply_acks(&mut state);
        self.maybe_write_checkpoint(&mut state, true);
    }

    /// Finds files matching the globs; starts tracking new ones and notices rotations.
    fn scan(&mut self, state: &mut State, first_scan: bool) {
        let mut seen_inodes = HashMap::new();
        for pattern in self.include.clone() {
            let paths = match glob::glob(&pattern) {
                Ok(p) => p,
                Err(_) => continue, // validated at load time
            };
            for entry in paths {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        warn_once(
                            state,
                            e.path(),
                            "unreadable_path",
                            &self.name,
                            &e.to_string(),
                            &self.stats,
                        );
                        continue;
                    }
                };
                if self.exclude.iter().any(|x| x.matches_path(&path)) {
                    continue;
                }
                let meta = match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    Err(e) => {
                        warn_once(
                            state,
                            &path,
                            "unreadable_file",
                            &self.name,
                            &e.to_string(),
                            &self.stats,
                        );
                        continue;
                    }
                };
                let dev_ino = (meta.dev(), meta.ino());
                seen_inodes.insert(dev_ino, path.clone());
                if let Some(key) = state.tracked_inode(dev_ino) {
                    let t = state.files.get_mut(&key).expect("tracked");
                    if t.path != path && !t.rotated {
                        t.path = path.clone();
                    }
                    t.lag.set(meta.len().saturating_sub(t.read_offset));
                    // Truncated: shorter than what was read, or (when the writer already wrote
                    // past the old length again) a different first line.
                    let replaced = meta.len() < t.read_offset
                        || File::open(&path)
                            .ok()
                            .and_then(|f| fingerprint(&f, self.config.fingerprint_bytes).ok())
                            .is_some_and(|fp| fp != Some(key));
                    if replaced {
                        self.truncated(state, key, &path);
                    }
                    continue;
                }
                self.discover(state, &path, first_scan);
            }
        }
        // Files whose path now leads elsewhere (or nowhere) were rotated or deleted.
        for t in state.files.values_mut() {
            if !t.rotated && seen_inodes.get(&t.dev_ino) != Some(&t.path) {
                let still_there = std::fs::metadata(&t.path)
                    .map(|m| (m.dev(), m.ino()) == t.dev_ino)
                    .unwrap_or(false);
                if !still_there {
                    tracing::debug!(source = %self.name, path = %t.path.display(), "file rotated or deleted; reading it to its end");
                    t.rotated = true;
                }
            }
        }
    }

    /// Starts tracking a file seen for the first time (or again after a restart).
    fn discover(&mut self, state: &mut State, path: &Path, first_scan: bool) {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                warn_once(
                    state,
                    path,
                    "unreadable_file",
                    &self.name,
                    &e.to_string(),
                    &self.stats,
                );
                return;
            }
        };
        let fp = match fingerprint(&file, self.config.fingerprint_bytes) {
            Ok(Some(fp)) => fp,
            Ok(None) => {
                tracing::debug!(source = %self.name, path = %path.display(), "first line not complete yet");
                return;
            }
            Err(e) => {
                warn_once(
                    state,
                    path,
                    "unreadable_file",
                    &self.name,
                    &e.to_string(),
                    &self.stats,
                );
                return;
            }
        };
        if state.files.contains_key(&fp) {
            // Same first line as a file being read: a rotated copy of it (copytruncate) or a
            // rename still settling. The tracked handle covers it.
            tracing::debug!(source = %self.name, path = %path.display(), fingerprint = format!("{fp:016x}"), "already tracked under another name");
            return;
        }
        let Ok(meta) = file.metadata() else { return };
        let start = match self.checkpoints.get(fp) {
            Some(e) => e.offset.min(meta.len()),
            None if first_scan && self.config.start_at == StartAt::End => meta.len(),
            None => 0,
        };
        if !first_scan && self.checkpoints.get(fp).is_none() {
            // A new file under a known name: if the agent fell behind, a whole generation of
            // this log may have come and gone since it last looked.
            self.adopt_missed_rotations(state, path);
        }
        tracing::info!(source = %self.name, path = %path.display(), offset = start, fingerprint = format!("{fp:016x}"), "reading file");
        state.warned.remove(path);
        self.track(
            state,
            fp,
            path.to_path_buf(),
            path.to_path_buf(),
            file,
            start,
            false,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn track(
        &self,
        state: &mut State,
        fp: u64,
        path: PathBuf,
        origin: PathBuf,
        file: File,
        start: u64,
        rotated: bool,
    ) {
        let dev_ino = file
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or_default();
        let attributes = self.file_attributes(&path);
        let lag = self.stats.file_lag(&origin.to_string_lossy());
        state.files.insert(
            fp,
            Tracked {
                fingerprint: fp,
                path,
                origin,
                file,
                dev_ino,
                read_offset: start,
                buf: Vec::new(),
                splitter: LineSplitter::new(
                    self.config.max_line_bytes,
                    self.config.oversized_lines,
                ),
                multiline: self
                    .config
                    .multiline
                    .as_ref()
                    .map(|m| Multiline::new(m).expect("validated pattern")),
                committed: start,
                in_flight: VecDeque::new(),
                stalled: false,
                rotated,
                at_eof: false,
                last_growth: Instant::now(),
                attributes,
                lag,
            },
        );
        state.dirty = true;
    }

    fn file_attributes(&self, path: &Path) -> Attributes {
        let mut attrs = Attributes::new();
        let p = path.to_string_lossy();
        attrs.insert("file".to_owned(), p.as_ref().into());
        if let Some(re) = &self.path_fields
            && let Some(caps) = re.captures(&p)
        {
            for name in re.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    attrs.insert(name.to_owned(), m.as_str().into());
                }
            }
        }
        attrs
    }

    /// A tracked file shrank: it was truncated (copytruncate). Its unread old content is in the
    /// rotated copy, if logrotate left one; the truncated file is new content from offset 0.
    fn truncated(&mut self, state: &mut State, key: u64, path: &Path) {
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
    fn adopt_missed_rotations(&mut self, state: &mut State, origin: &Path) {
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
    fn resume_rotated(&mut self, state: &mut State) {
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

    /// Reads new data of one file and hands complete events on. Returns bytes read.
    fn read_file(
        &mut self,
        state: &mut State,
        key: u64,
        out: &SourceOutput,
        ack_tx: &tokio::sync::mpsc::UnboundedSender<(u64, AckStatus)>,
    ) -> Result<usize, Closed> {
        let now = Instant::now();
        let max_batch = self.config.max_batch_events;
        let mut total = 0;
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut events = Vec::new();
        // File offset just after each event (see `Position`).
        let mut ends = Vec::new();
        let mut batch_end = None;
        let mut replaced = false;
        loop {
            let t = state.files.get_mut(&key).expect("tracked");
            if t.read_offset == u64::MAX || total >= READ_BUDGET {
                break;
            }
            let n = match t.file.read_at(&mut chunk, t.read_offset) {
                Ok(n) => n,
                Err(e) => {
                    let path = t.path.clone();
                    warn_once(
                        state,
                        &path,
                        "read_failed",
                        &self.name,
                        &e.to_string(),
                        &out.stats,
                    );
                    break;
                }
            };
            if n == 0 {
                t.at_eof = true;
                t.lag.set(0);
                break;
            }
            t.at_eof = false;
            // A file truncated and written again between the last scan and this read would
            // hand us the middle of a new line: check it is still the same file (by its first
            // line) after reading, and if not, let the truncation handling take over.
            if !t.rotated
                && fingerprint(&t.file, self.config.fingerprint_bytes)
                    .ok()
                    .flatten()
                    != Some(key)
            {
                replaced = true;
                break;
            }
            total += n;
            t.read_offset += n as u64;
            t.last_growth = now;
            t.buf.extend_from_slice(&chunk[..n]);
            let base = t.read_offset - t.buf.len() as u64;
            let mut pieces = Vec::new();
            let used = t.splitter.split(&t.buf, base, |p| match p {
                Piece::Line {
                    bytes,
                    end,
                    oversized,
                } => pieces.push((Some(bytes.to_vec()), end, oversized)),
                Piece::Skipped { end } => pieces.push((None, end, false)),
            });
            t.buf.drain(..used);
            // Counted once per chunk, not per line (each update looks its labels up).
            let mut received = 0;
            for (bytes, end, oversized) in pieces {
                let Some(bytes) = bytes else {
                    // Tail of a truncated line: nothing to emit, but the offset moves on when
                    // nothing is held back.
                    if t.multiline.as_ref().is_none_or(|m| !m.is_open()) {
                        batch_end = Some(end);
                    }
                    continue;
                };
                if oversized {
                    out.stats.count(Outcome::Truncated, 1);
                }
                let text = match String::from_utf8(bytes) {
                    Ok(s) => s,
                    Err(e) => {
                        out.stats.count(Outcome::InvalidUtf8, 1);
                        String::from_utf8_lossy(e.as_bytes()).into_owned()
                    }
                };
                received += 1;
                match t.multiline.as_mut() {
                    Some(m) => {
                        if let Some((group, group_end)) = m.push(text, end, now) {
                            events.push(line_event(&t.attributes, group));
                            ends.push(group_end);
                            batch_end = Some(group_end);
                        }
                    }
                    None => {
                        events.push(line_event(&t.attributes, text));
                        ends.push(end);
                        batch_end = Some(end);
                    }
                }
            }
            out.stats.count(Outcome::Received, received);
            if events.len() >= max_batch
                && let Some(end) = batch_end.take()
            {
                let batch = (std::mem::take(&mut events), std::mem::take(&mut ends));
                self.send(state, key, batch, end, out, ack_tx)?;
            }
        }
        // A multiline group that has been quiet long enough is complete.
        let t = state.files.get_mut(&key).expect("tracked");
        if let Some(m) = t.multiline.as_mut()
            && let Some((group, group_end)) = m.flush_idle(now)
        {
            events.push(line_event(&t.attributes, group));
            ends.push(group_end);
            batch_end = Some(group_end);
        }
        if let Some(end) = batch_end {
            self.send(state, key, (events, ends), end, out, ack_tx)?;
        }
        if replaced {
            let path = state.files[&key].path.clone();
            self.truncated(state, key, &path);
        }
        Ok(total)
    }

    /// Hands a batch of one file on, remembering which offset it completes.
    fn send(
        &mut self,
        state: &mut State,
        key: u64,
        (events, ends): (Vec<Event>, Vec<u64>),
        end: u64,
        out: &SourceOutput,
        ack_tx: &tokio::sync::mpsc::UnboundedSender<(u64, AckStatus)>,
    ) -> Result<(), Closed> {
        let id = state.next_batch;
        state.next_batch += 1;
        state.batch_files.insert(id, key);
        let t = state.files.get_mut(&key).expect("tracked");
        t.in_flight.push_back((id, end, None));
        let ack = Ack::new(id, ack_tx.clone());
        // Lines read again after a crash are recognised by their offsets in this file.
        ack.set_position(Position {
            origin: format!("{}:{key:016x}", self.name),
            ends,
        });
        out.send_blocking(events, ack, || {
            self.apply_acks(state);
            self.maybe_write_checkpoint(state, false);
        })
        .map_err(|_| Closed)
    }

    fn apply_acks(&mut self, state: &mut State) {
        while let Ok((id, status)) = state.acks.try_recv() {
            self.ack(state, id, status);
        }
    }

    fn ack(&mut self, state: &mut State, id: u64, status: AckStatus) {
        let Some(key) = state.batch_files.remove(&id) else {
            tracing::debug!(batch = id, "acknowledgement for an unknown batch");
            return;
        };
        let Some(t) = state.files.get_mut(&key) else {
            tracing::debug!(batch = id, "acknowledgement for a file no longer tracked");
            return;
        };
        if let Some(slot) = t.in_flight.iter_mut().find(|(b, _, _)| *b == id) {
            slot.2 = Some(status);
        }
        while let Some(&(_, end, Some(status))) = t.in_flight.front() {
            if status == AckStatus::Undelivered && !t.stalled {
                tracing::warn!(source = %self.name, path = %t.path.display(), offset = t.committed,
                    "a batch was not delivered; this file's checkpoint stays where it is until restart");
                t.stalled = true;
            }
            if t.stalled {
                break;
            }
            t.committed = end;
            t.in_flight.pop_front();
            state.dirty = true;
            tracing::trace!(path = %t.path.display(), committed = end, "acknowledged");
        }
    }

    /// Lets go of rotated files that were read to their end, have been quiet for
    /// `rotate_wait_ms` and have nothing in flight.
    fn release_finished(&mut self, state: &mut State) {
        let wait = Duration::from_millis(self.config.rotate_wait_ms);
        let done: Vec<u64> = state
            .files
            .values()
            .filter(|t| {
                t.rotated
                    && (t.at_eof || t.read_offset == u64::MAX)
                    && t.last_growth.elapsed() >= wait
                    && t.in_flight.is_empty()
            })
            .filter(|t| t.multiline.as_ref().is_none_or(|m| !m.is_open()))
            .map(|t| t.fingerprint)
            .collect();
        for key in done {
            let t = state.files.remove(&key).expect("tracked");
            if !t.buf.is_empty() {
                tracing::warn!(source = %self.name, path = %t.path.display(), bytes = t.buf.len(),
                    "rotated file ends with an incomplete line; it was not shipped");
            }
            tracing::debug!(source = %self.name, path = %t.path.display(), "done with rotated file");
            // Keep its checkpoint: the same file may be seen again (e.g. a copy matched later).
            self.checkpoints.set(
                key,
                Entry {
                    offset: t.committed,
                    path: t.origin.clone(),
                    seen_ms: now_ms(),
                },
            );
            state.dirty = true;
        }
    }

    fn maybe_write_checkpoint(&mut self, state: &mut State, force: bool) {
        if !state.dirty || (!force && state.last_write.elapsed() < CHECKPOINT_EVERY) {
            return;
        }
        let now = now_ms();
        for t in state.files.values() {
            self.checkpoints.set(
                t.fingerprint,
                Entry {
                    offset: t.committed,
                    path: t.origin.clone(),
                    seen_ms: now,
                },
            );
        }
        self.checkpoints.prune(now - CHECKPOINT_RETENTION_MS);
        if force {
            for (fp, e) in self.checkpoints.entries() {
                tracing::debug!(source = %self.name, fingerprint = format!("{fp:016x}"), offset = e.offset, path = %e.path.display(), "final checkpoint");
            }
        }
        match self.checkpoints.write() {
            Ok(()) => {
                state.dirty = false;
                state.warned.remove(Path::new("<checkpoint>"));
            }
            Err(e) => {
                // Keep reading: acknowledged positions stay in memory and are written once the
                // directory is writable again. A restart before that re-reads (duplicates), it
                // never skips.
                warn_once(
                    state,
                    Path::new("<checkpoint>"),
                    "checkpoint_write_failed",
                    &self.name,
                    &e.to_string(),
                    &self.stats,
                );
            }
        }
        state.last_write = Instant::now();
    }
}

/// The source's run-time state.
struct State {
    files: HashMap<u64, Tracked>,
    /// Batch id → fingerprint of the file it came from.
    batch_files: HashMap<u64, u64>,
    next_batch: u64,
    /// Paths already warned about (cleared when they recover), so a broken file logs once.
    warned: HashSet<PathBuf>,
    dirty: bool,
    last_write: Instant,
    /// Acknowledgements of sent batches, applied between reads and while waiting on a full
    /// queue, so checkpoints keep up with deliveries even under backpressure.
    acks: AckReceiver,
}

impl State {
    fn tracked_inode(&self, dev_ino: (u64, u64)) -> Option<u64> {
        self.files
            .values()
            .find(|t| t.dev_ino == dev_ino && !t.rotated)
            .map(|t| t.fingerprint)
    }
}

/// Downstream is gone.
struct Closed;

fn line_event(attributes: &Attributes, text: String) -> Event {
    let mut log = LogEvent::new(text, now_ms());
    log.attributes = attributes.clone();
    Event::Log(log)
}

/// Longest wait between polls once a source has been idle for a while.
const IDLE_POLL_MAX: Duration = Duration::from_secs(1);

/// The wait before the next poll after `idle_polls` polls in a row found nothing: the configured
/// interval for the first few, then doubling up to `IDLE_POLL_MAX` (never below the configured
/// interval). A quiet host then polls about once a second; the first new line resets it.
fn idle_wait(poll: Duration, idle_polls: u32) -> Duration {
    let ceiling = poll.max(IDLE_POLL_MAX);
    let doublings = idle_polls.saturating_sub(4).min(8);
    poll.saturating_mul(1 << doublings).min(ceiling)
}

/// Lets a blocking thread sleep until a deadline yet wake at once on shutdown: a task on the
/// runtime waits for the token and then drops the sender, which ends the thread's wait.
struct StopSignal {
    rx: Option<std::sync::mpsc::Receiver<()>>,
}

impl StopSignal {
    fn new(stop: &CancellationToken) -> Self {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime (a caller outside the agent): fall back to short sleeps.
            return Self { rx: None };
        };
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let stop = stop.clone();
        rt.spawn(async move {
            stop.cancelled().await;
            drop(tx);
        });
        Self { rx: Some(rx) }
    }

    /// Sleeps for `d`, or less if shutdown starts.
    fn wait(&self, d: Duration) {
        match &self.rx {
            Some(rx) => {
                let _ = rx.recv_timeout(d);
            }
            None => std::thread::sleep(d.min(Duration::from_millis(10))),
        }
    }
}

fn warn_once(
    state: &mut State,
    path: &Path,
    kind: &str,
    source: &str,
    error: &str,
    stats: &crate::telemetry::Stats,
) {
    stats.error(kind);
    if state.warned.insert(path.to_path_buf()) {
        tracing::warn!(source, path = %path.display(), error, kind, "cannot read file; will retry");
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

#[cfg(test)]
mod idle_tests {
    use super::*;

    #[test]
    fn idle_polling_backs_off_to_a_second() {
        let poll = Duration::from_millis(250);
        assert_eq!(idle_wait(poll, 1), poll);
        assert_eq!(idle_wait(poll, 4), poll);
        assert_eq!(idle_wait(poll, 5), Duration::from_millis(500));
        assert_eq!(idle_wait(poll, 6), IDLE_POLL_MAX);
        assert_eq!(idle_wait(poll, u32::MAX), IDLE_POLL_MAX);
        // A configured interval above the ceiling is kept as it is.
        assert_eq!(
            idle_wait(Duration::from_secs(5), 50),
            Duration::from_secs(5)
        );
    }
}
