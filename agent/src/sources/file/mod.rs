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
mod read;
mod rotation;

pub use config::{FileSourceConfig, MultilineConfig, OversizedLines, StartAt};

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::event::{AckReceiver, AckStatus, Attributes, ack_channel, now_ms};
use crate::output::SourceOutput;
use checkpoint::{Checkpoints, Entry};
use fingerprint::fingerprint;
use lines::LineSplitter;
use multiline::Multiline;
use read::line_event;

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
            let read_any = match self.read_round(&mut state, &out, &ack_tx) {
                Ok(read_any) => read_any,
                Err(Closed) => return self.finish(state),
            };
            self.release_finished(&mut state);
            self.apply_acks(&mut state);
            self.maybe_write_checkpoint(&mut state, false);
            if read_any {
                idle_polls = 0;
            } else {
                idle_polls = idle_polls.saturating_add(1);
            }
            // A file stopped at its read budget (or not read yet): read on at once. Caught up
            // with every file: wait for the next poll even right after reading, so a steadily
            // written file is read in slices of one poll interval — a few full batches, one
            // fsync and one checkpoint each, instead of a small batch every few lines.
            let more = read_any
                && state
                    .files
                    .values()
                    .any(|t| !t.at_eof && t.read_offset != u64::MAX);
            if !more {
                let left = idle_wait(poll, idle_polls).saturating_sub(started.elapsed());
                self.wait_idle(&mut state, left, &stopped, &stop);
            }
        }
        self.flush_held(&mut state, &out, &ack_tx);
        drop(out);
        self.finish(state);
    }

    /// Reads each tracked file once. Oldest data first: rotated files before current ones,
    /// older rotations (by modification time) before newer, and a file waits while an older
    /// file of the same log path still has data — so the lines of one log path reach the
    /// sinks in the order they were written, across rotations and restarts. `Ok(true)`:
    /// something was read.
    fn read_round(
        &mut self,
        state: &mut State,
        out: &SourceOutput,
        ack_tx: &tokio::sync::mpsc::UnboundedSender<(u64, AckStatus)>,
    ) -> Result<bool, Closed> {
        let mut read_any = false;
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
            let n = self.read_file(state, key, out, ack_tx)?;
            read_any |= n > 0;
            if n > 0
                && let Some(t) = state.files.get(&key)
            {
                draining.insert(t.origin.clone());
            }
        }
        Ok(read_any)
    }

    /// Idle: waits `left` for the next poll, but wakes for shutdown. While batches are in
    /// flight or a checkpoint is due, looks at acknowledgements every 10 ms; with nothing
    /// pending, sleeps through to the next poll (an idle agent must not wake a hundred times
    /// a second).
    fn wait_idle(
        &mut self,
        state: &mut State,
        left: Duration,
        stopped: &StopSignal,
        stop: &CancellationToken,
    ) {
        let deadline = Instant::now() + left;
        while Instant::now() < deadline && !stop.is_cancelled() {
            let pending = state.dirty || state.files.values().any(|t| !t.in_flight.is_empty());
            let nap = if pending {
                Duration::from_millis(10)
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            stopped.wait(nap);
            self.maybe_write_checkpoint(state, false);
            self.apply_acks(state);
        }
    }

    /// Hands on the lines held by multiline grouping: they are complete now, since nothing
    /// more will be read.
    fn flush_held(
        &mut self,
        state: &mut State,
        out: &SourceOutput,
        ack_tx: &tokio::sync::mpsc::UnboundedSender<(u64, AckStatus)>,
    ) {
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
                .send(state, key, (vec![event], vec![end]), end, out, ack_tx)
                .is_err()
            {
                break;
            }
        }
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
        let opened = File::open(path).and_then(|file| {
            let fp = fingerprint(&file, self.config.fingerprint_bytes)?;
            Ok((file, fp))
        });
        let (file, fp) = match opened {
            Ok((file, Some(fp))) => (file, fp),
            Ok((_, None)) => {
                tracing::debug!(source = %self.name, path = %path.display(), "first line not complete yet");
                return;
            }
            // Cannot be opened, or its first line cannot be read.
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
