//! A disk buffer in front of one sink: a writer appends every batch the sink is sent to segment
//! files and acknowledges it to its source once it is fsynced; a reader feeds the sink from the
//! files; a tracker persists how far deliveries got and deletes segments the sink is done with.
//!
//! Each of the three runs on a blocking thread (file I/O and fsync would stall the async
//! workers). They share the list of segments under one mutex; a condition variable wakes the
//! reader when data was written and the writer when space was freed.

mod reader;
mod tracker;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::limit::MemoryLimit;
use super::segment::{self, AckFile, FILE_HEADER, Read};
use super::{BufferConfig, WhenFull};
use crate::event::{EventBatch, ack_channel};
use crate::telemetry::Stats;
use reader::reader;
use tracker::tracker;
use writer::Writer;
/// Depth of the queue from the reader to the sink, in batches: the reader decodes the next
/// while the sink works on one; more only holds memory (a decoded batch of 1,000 parsed lines
/// is about 2 MB).
const SINK_QUEUE: usize = 2;

/// An opened disk buffer, ready to start.
pub struct DiskBuffer {
    shared: Arc<Shared>,
    active: File,
    acks: AckFile,
    /// How far each origin's events are stored (from the newest segments).
    positions: HashMap<String, u64>,
}

struct Shared {
    name: String,
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    when_full: WhenFull,
    state: Mutex<State>,
    changed: Condvar,
    stats: Stats,
}

struct State {
    /// Oldest first; the writer appends to the last one.
    segments: VecDeque<Seg>,
    /// Bytes of every segment file.
    total_bytes: u64,
    /// Id of the next record to write.
    next_id: u64,
    /// Every record up to this id was delivered (0 = none yet).
    delivered: u64,
    /// Records up to this id were dropped to make room (`when_full = "drop_oldest"`).
    floor: u64,
    /// The writer has finished: nothing more will be written.
    closed: bool,
}

struct Seg {
    first_id: u64,
    path: PathBuf,
    /// Bytes written and visible to the reader.
    bytes: u64,
    /// Events in it, when known (segments written in this run).
    events: Option<u64>,
}

impl Seg {
    /// Events in it: known for segments written in this run, counted from the file otherwise.
    fn event_count(&self) -> u64 {
        match self.events {
            Some(n) => n,
            None => File::open(&self.path)
                .and_then(|f| segment::scan(&f))
                .map_or(0, |(_, n, _, _)| n),
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock would be a bug elsewhere; the state stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DiskBuffer {
    /// Opens the buffer in `dir`: finds the segments left by earlier runs, forgets those already
    /// delivered, cuts a torn record off the end of the newest one, and starts a new segment.
    pub fn open(
        name: &str,
        dir: &Path,
        config: &BufferConfig,
        stats: Stats,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (acks, delivered) = AckFile::open(&dir.join("delivered"))?;
        let found = readable_segments(name, dir, &stats)?;
        let mut segments = undelivered_segments(&found, delivered)?;
        let positions = stored_positions(&segments);
        let next_id = repair_newest(name, &mut segments, delivered, &stats)?;
        let (path, active) = segment::create_segment(dir, next_id)?;
        segments.push_back(Seg {
            first_id: next_id,
            path,
            bytes: FILE_HEADER.len() as u64,
            events: Some(0),
        });
        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let backlog = segments.len() - 1;
        if backlog > 0 {
            tracing::info!(
                buffer = name,
                segments = backlog,
                bytes = total_bytes,
                from_record = delivered + 1,
                "disk buffer has undelivered data from an earlier run; sending it first"
            );
        }
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
            max_bytes: config.max_bytes,
            segment_bytes: (config.max_bytes / 16).clamp(1 << 20, 64 << 20),
            when_full: config.when_full,
            state: Mutex::new(State {
                segments,
                total_bytes,
                next_id,
                delivered,
                floor: 0,
                closed: false,
            }),
            changed: Condvar::new(),
            stats,
        });
        shared.publish_size(total_bytes);
        Ok(Self {
            shared,
            active,
            acks,
            positions,
        })
    }

    /// Starts the writer (reading `input`), the reader and the tracker on `tasks`; returns the
    /// queue the sink reads. The reader takes memory for events it holds from `memory`.
    pub fn start(
        self,
        input: mpsc::Receiver<EventBatch>,
        memory: MemoryLimit,
        abandon: tokio_util::sync::CancellationToken,
        tasks: &mut JoinSet<String>,
    ) -> mpsc::Receiver<EventBatch> {
        let (to_sink, sink_rx) = mpsc::channel(SINK_QUEUE);
        let (ack_tx, ack_rx) = ack_channel();
        let name = self.shared.name.clone();
        let writer = Writer::new(
            Arc::clone(&self.shared),
            self.active,
            self.positions,
            abandon,
        );
        tasks.spawn_blocking({
            let name = format!("{name} (buffer writer)");
            move || {
                writer.run(input);
                name
            }
        });
        let shared = Arc::clone(&self.shared);
        let handle = tokio::runtime::Handle::current();
        tasks.spawn_blocking({
            let name = format!("{name} (buffer reader)");
            move || {
                reader(&shared, &to_sink, ack_tx, &memory, &handle);
                name
            }
        });
        let shared = Arc::clone(&self.shared);
        let acks = self.acks;
        tasks.spawn_blocking(move || {
            tracker(&shared, ack_rx, acks);
            format!("{name} (buffer tracker)")
        });
        sink_rx
    }
}

impl Shared {
    fn publish_size(&self, bytes: u64) {
        crate::telemetry::buffer_size(self.stats.component(), bytes);
        crate::telemetry::buffer_max(self.stats.component(), self.max_bytes);
    }
}

/// The segment files in `dir` (id of their first record, path), oldest first. A segment of an
/// unknown format version (or not ours at all) is set aside, not read; format 1 segments
/// (resources inline) are still read.
fn readable_segments(
    name: &str,
    dir: &Path,
    stats: &Stats,
) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter_map(|p| segment::segment_first_id(&p).map(|id| (id, p)))
        .collect();
    found.sort();
    found.retain(|(_, path)| {
        let mut head = [0u8; 8];
        let ok = File::open(path)
            .and_then(|f| {
                use std::os::unix::fs::FileExt;
                f.read_exact_at(&mut head, 0)
            })
            .is_ok_and(|_| segment::Version::of_header(&head).is_some());
        if !ok {
            stats.error("buffer_corrupt_records");
            let aside = path.with_extension("seg.unreadable");
            tracing::error!(buffer = name, path = %path.display(), aside = %aside.display(),
                "disk buffer segment has an unknown header; set aside unread");
            let _ = std::fs::rename(path, &aside);
        }
        ok
    });
    Ok(found)
}

/// Deletes the segments whose records were all delivered; lists the others.
fn undelivered_segments(
    found: &[(u64, PathBuf)],
    delivered: u64,
) -> std::io::Result<VecDeque<Seg>> {
    let mut segments: VecDeque<Seg> = VecDeque::new();
    for (i, (first_id, path)) in found.iter().enumerate() {
        // Every record of a segment that is not the newest ends before the next one starts.
        if let Some((next_first, _)) = found.get(i + 1)
            && next_first.saturating_sub(1) <= delivered
        {
            std::fs::remove_file(path)?;
            continue;
        }
        let bytes = std::fs::metadata(path)?.len();
        segments.push_back(Seg {
            first_id: *first_id,
            path: path.clone(),
            bytes,
            events: None,
        });
    }
    Ok(segments)
}

/// How far each origin's events are stored. The newest records tell how far each origin got
/// before the crash; a source that re-reads from an older checkpoint gets those events
/// dropped (see `Writer::dedupe`).
fn stored_positions(segments: &VecDeque<Seg>) -> HashMap<String, u64> {
    let mut positions: HashMap<String, u64> = HashMap::new();
    for seg in segments.iter().rev().take(2) {
        let Ok(f) = File::open(&seg.path) else {
            continue;
        };
        let limit = f.metadata().map_or(0, |m| m.len());
        let mut offset = FILE_HEADER.len() as u64;
        loop {
            match segment::read_at(&f, offset, limit) {
                Ok(Read::Record(r)) => {
                    offset = r.end;
                    if let Some((Some((origin, end)), _)) = segment::origin(&r.payload) {
                        let e = positions.entry(origin).or_insert(end);
                        *e = (*e).max(end);
                    }
                }
                Ok(Read::Damaged { resume }) => offset = resume,
                Ok(Read::End) | Err(_) => break,
            }
        }
    }
    positions
}

/// Cuts a torn record off the end of the newest segment (and forgets that segment if nothing
/// valid is in it); returns the id the next record gets.
fn repair_newest(
    name: &str,
    segments: &mut VecDeque<Seg>,
    delivered: u64,
    stats: &Stats,
) -> std::io::Result<u64> {
    let mut next_id = delivered + 1;
    let Some(last) = segments.back_mut() else {
        return Ok(next_id);
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&last.path)?;
    let (last_id, _, valid_end, _) = segment::scan(&file)?;
    if last.bytes > valid_end {
        // Torn by a crash mid-write (or damaged): what follows the last good record
        // can never be read, and new records must not follow garbage.
        stats.error("buffer_corrupt_records");
        tracing::warn!(buffer = name, path = %last.path.display(), bytes = last.bytes - valid_end,
            "disk buffer ends with a torn or damaged record; cutting it off");
        file.set_len(valid_end.max(FILE_HEADER.len() as u64))?;
        file.sync_data()?;
        last.bytes = valid_end.max(FILE_HEADER.len() as u64);
    }
    next_id = next_id.max(last_id.map_or(last.first_id, |id| id + 1));
    if last_id.is_none() {
        // Nothing valid in it: its name may be the one the new segment needs.
        std::fs::remove_file(&last.path)?;
        segments.pop_back();
    }
    Ok(next_id)
}
