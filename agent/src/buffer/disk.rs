//! A disk buffer in front of one sink: a writer appends every batch the sink is sent to segment
//! files and acknowledges it to its source once it is fsynced; a reader feeds the sink from the
//! files; a tracker persists how far deliveries got and deletes segments the sink is done with.
//!
//! Each of the three runs on a blocking thread (file I/O and fsync would stall the async
//! workers). They share the list of segments under one mutex; a condition variable wakes the
//! reader when data was written and the writer when space was freed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::limit::MemoryLimit;
use super::segment::{self, AckFile, FILE_HEADER, Read};
use super::{BufferConfig, WhenFull};
use crate::event::{Ack, AckStatus, EventBatch, ack_channel};
use crate::telemetry::{Outcome, Stats};

/// Bytes of batches written between two fsyncs at most (group commit).
const GROUP_BYTES: usize = 4 << 20;
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
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter_map(|p| segment::segment_first_id(&p).map(|id| (id, p)))
            .collect();
        found.sort();
        // A segment of an unknown format version (or not ours at all) is set aside, not read;
        // format 1 segments (resources inline) are still read.
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
        // The newest records tell how far each origin got before the crash; a source that
        // re-reads from an older checkpoint gets those events dropped (see `Writer::dedupe`).
        let mut positions: HashMap<String, u64> = HashMap::new();
        for seg in segments.iter().rev().take(2) {
            if let Ok(f) = File::open(&seg.path) {
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
        }
        let mut next_id = delivered + 1;
        if let Some(last) = segments.back_mut() {
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
        }
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
        let writer = Writer {
            shared: Arc::clone(&self.shared),
            file: self.active,
            unsynced: Vec::new(),
            unsynced_bytes: 0,
            failures: 0,
            positions: self.positions,
            broken: false,
            abandon,
        };
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

struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Batches taken but not yet fsynced, oldest first: written, or still to be written after
    /// a failed write (they keep their encoded record until they are durable).
    unsynced: Vec<Pending>,
    /// Bytes of the written ones.
    unsynced_bytes: u64,
    /// Failed writes in a row (the log says so on the first and then now and then).
    failures: u64,
    positions: HashMap<String, u64>,
    /// A failed write could be neither cut off nor left behind for a new segment: nothing is
    /// written (or acknowledged) until `recover` succeeds.
    broken: bool,
    /// Cancelled when the pipeline stops without waiting any longer (drain timeout): the
    /// writer stops at once, even while waiting for room, and what it holds is not
    /// acknowledged (its sources read it again next start).
    abandon: tokio_util::sync::CancellationToken,
}

/// A batch between being taken and being durable.
struct Pending {
    ack: Ack,
    events: u64,
    record: Vec<u8>,
    written: bool,
}

impl Writer {
    fn run(mut self, mut input: mpsc::Receiver<EventBatch>) {
        let runtime = tokio::runtime::Handle::current();
        let abandon = self.abandon.clone();
        'input: while let Some(first) = runtime.block_on(async {
            tokio::select! {
                biased;
                batch = input.recv() => batch,
                () = abandon.cancelled() => None,
            }
        }) {
            if self.abandon.is_cancelled() {
                break; // `first` and the rest of the queue are not acknowledged
            }
            let mut group = vec![first];
            let mut size: usize = group[0].events.iter().map(|e| e.size_hint()).sum();
            while size < GROUP_BYTES {
                let Ok(b) = input.try_recv() else { break };
                size += b.events.iter().map(|e| e.size_hint()).sum::<usize>();
                group.push(b);
            }
            for batch in group {
                if let Err(e) = self.append(batch)
                    && !self.retry(e)
                {
                    break 'input;
                }
            }
            if let Err(e) = self.sync()
                && !self.retry(e)
            {
                break;
            }
        }
        if !self.abandon.is_cancelled() {
            let _ = self.sync();
        }
        lock(&self.shared.state).closed = true;
        self.shared.changed.notify_all();
    }

    /// A write or fsync failed (disk full, I/O error): what was written since the last fsync is
    /// cut off, and every batch taken since is written again, until it is durable — a full
    /// disk holds the sources back like a full buffer does, and nothing taken is dropped.
    /// `false`: given up because the pipeline is abandoned (those batches are not
    /// acknowledged; their sources read them again next start).
    fn retry(&mut self, mut e: std::io::Error) -> bool {
        loop {
            if self.abandon.is_cancelled() {
                return false;
            }
            self.failed(&e);
            match self.write_pending().and_then(|()| self.sync()) {
                Ok(()) => {
                    tracing::info!(buffer = %self.shared.name, failures = self.failures, "disk buffer writes again");
                    self.failures = 0;
                    return true;
                }
                Err(again) => e = again,
            }
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        self.shared.stats.error("buffer_write_failed");
        if self.failures.is_multiple_of(100) {
            tracing::error!(buffer = %self.shared.name, error = %e, failures = self.failures + 1,
                "disk buffer write failed; sources wait while it is retried");
        }
        self.failures += 1;
        for p in &mut self.unsynced {
            p.written = false;
        }
        self.unsynced_bytes = 0;
        std::thread::sleep(Duration::from_millis(100));
        self.recover();
    }

    /// Makes the buffer writable again after a failure. The active segment is cut back to its
    /// last fsynced record (what the reader may read ends there anyway; record ids are never
    /// reused, so nothing written past it can be taken for a later record). Then, if it holds
    /// records, writing goes on in a new segment, so that once those are delivered the old
    /// one can be deleted: on a full disk that is the only way space comes back. If even the
    /// new segment cannot be made, and the old one is fully delivered, the old one is deleted
    /// first; until something works nothing is written or acknowledged.
    fn recover(&mut self) {
        let header = FILE_HEADER.len() as u64;
        let synced = lock(&self.shared.state)
            .segments
            .back()
            .map_or(header, |s| s.bytes);
        let cut = self
            .file
            .set_len(synced)
            .and_then(|()| self.file.seek(SeekFrom::Start(synced)).map(drop));
        if cut.is_ok() && synced <= header {
            self.broken = false;
            return;
        }
        let id = lock(&self.shared.state).next_id;
        if self.broken {
            let mut st = lock(&self.shared.state);
            let done = st.delivered + 1 >= id;
            if done && st.segments.len() == 1 {
                let old = st.segments.pop_back().expect("one segment");
                st.total_bytes -= old.bytes;
                let _ = std::fs::remove_file(&old.path);
                self.shared
                    .stats
                    .count(Outcome::BufferReclaimed, old.events.unwrap_or(0));
            }
        }
        match segment::create_segment(&self.shared.dir, id) {
            Ok((path, file)) => {
                self.file = file;
                let mut guard = lock(&self.shared.state);
                let st = &mut *guard;
                let same = st.segments.back().is_some_and(|s| s.first_id == id);
                if same {
                    // The active segment had nothing confirmed: it was just made anew.
                    let seg = st.segments.back_mut().expect("checked");
                    st.total_bytes -= seg.bytes - header;
                    seg.bytes = header;
                } else {
                    st.segments.push_back(Seg {
                        first_id: id,
                        path,
                        bytes: header,
                        events: Some(0),
                    });
                    st.total_bytes += header;
                }
                drop(guard);
                self.shared.changed.notify_all();
                self.broken = false;
            }
            Err(e) => {
                if !self.broken {
                    tracing::error!(buffer = %self.shared.name, error = %e,
                        "disk buffer cannot start a new segment; nothing is written until it can");
                }
                self.broken = true;
            }
        }
    }

    /// Drops the leading events of a batch that this buffer already stored (a source read
    /// them again after a crash); returns the batch's origin and end position.
    fn dedupe(&mut self, batch: &mut EventBatch) -> Option<(String, u64)> {
        let position = batch.ack.position()?;
        // Only when the events still line up with their positions (nothing filtered them).
        if position.ends.len() != batch.events.len() {
            return None;
        }
        let last = *position.ends.last()?;
        let stored = self.positions.get(&position.origin).copied();
        if let Some(stored) = stored {
            let skip = position.ends.iter().take_while(|e| **e <= stored).count();
            if skip > 0 {
                batch.events.drain(..skip);
                self.shared.stats.count(Outcome::Deduplicated, skip as u64);
                tracing::info!(buffer = %self.shared.name, origin = %position.origin, events = skip,
                    "events read again after a restart are already in the buffer; not storing them twice");
            }
        }
        let end = stored.map_or(last, |s| s.max(last));
        self.positions.insert(position.origin.clone(), end);
        Some((position.origin.clone(), end))
    }

    fn append(&mut self, mut batch: EventBatch) -> std::io::Result<()> {
        let origin = self.dedupe(&mut batch);
        if batch.events.is_empty() {
            // Everything was stored already: as durable as it gets.
            batch.ack.delivered();
            return Ok(());
        }
        let id = lock(&self.shared.state).next_id;
        let origin = origin.as_ref().map(|(o, e)| (o.as_str(), *e));
        let record = match segment::encode(id, origin, &mut batch.events) {
            Ok(r) => r,
            Err(e) => {
                // Not expected for our own types; the batch stays with its source.
                self.shared.stats.error("buffer_encode_failed");
                tracing::error!(buffer = %self.shared.name, error = %e, "cannot encode a batch for the disk buffer");
                return Ok(());
            }
        };
        let len = record.len() as u64;
        if len > segment::MAX_RECORD {
            // The reader would take it for damage: store it as two records.
            if batch.events.len() > 1 {
                let rest = batch.events.split_off(batch.events.len() / 2);
                let second = EventBatch {
                    events: rest,
                    ack: batch.ack.clone(),
                };
                self.append(batch)?;
                return self.append(second);
            }
            self.shared.stats.error("buffer_encode_failed");
            tracing::error!(buffer = %self.shared.name, bytes = len, "one event is larger than a disk buffer record may be; it is dropped");
            // Settled, or its source would offer it again forever.
            batch.ack.delivered();
            return Ok(());
        }
        self.unsynced.push(Pending {
            ack: batch.ack,
            events: batch.events.len() as u64,
            record,
            written: false,
        });
        self.write_pending()
    }

    /// Writes the taken batches not written yet, in order, each under the next record id.
    fn write_pending(&mut self) -> std::io::Result<()> {
        if self.broken {
            self.recover();
            if self.broken {
                return Err(std::io::Error::other(
                    "the disk buffer cannot start a new segment",
                ));
            }
        }
        while let Some(i) = self.unsynced.iter().position(|p| !p.written) {
            let len = self.unsynced[i].record.len() as u64;
            self.make_room(len)?;
            let active_bytes = lock(&self.shared.state)
                .segments
                .back()
                .map_or(0, |s| s.bytes)
                + self.unsynced_bytes;
            if active_bytes + len > self.shared.segment_bytes
                && active_bytes > FILE_HEADER.len() as u64
            {
                self.roll()?;
            }
            // `roll` made the written ones durable and let them go: find ours again.
            let i = self
                .unsynced
                .iter()
                .position(|p| !p.written)
                .expect("still pending");
            let id = lock(&self.shared.state).next_id;
            let pending = &mut self.unsynced[i];
            if segment::record_id(&pending.record) != id {
                segment::set_id(&mut pending.record, id);
            }
            self.file.write_all(&pending.record)?;
            pending.written = true;
            lock(&self.shared.state).next_id = id + 1;
            self.unsynced_bytes += len;
        }
        Ok(())
    }

    /// fsyncs what was written, makes it visible to the reader and acknowledges it.
    fn sync(&mut self) -> std::io::Result<()> {
        if !self.unsynced.iter().any(|p| p.written) {
            return Ok(());
        }
        self.file.sync_data()?;
        let events: u64 = self
            .unsynced
            .iter()
            .filter(|p| p.written)
            .map(|p| p.events)
            .sum();
        let bytes = self.unsynced_bytes;
        let total = {
            let mut st = lock(&self.shared.state);
            let seg = st.segments.back_mut().expect("an active segment");
            seg.bytes += bytes;
            *seg.events.get_or_insert(0) += events;
            st.total_bytes += bytes;
            st.total_bytes
        };
        self.shared.changed.notify_all();
        self.shared.publish_size(total);
        let stats = &self.shared.stats;
        stats.count(Outcome::BufferWritten, events);
        crate::telemetry::buffer_bytes(stats.component(), "written", bytes);
        self.unsynced_bytes = 0;
        let (durable, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.unsynced)
            .into_iter()
            .partition(|p| p.written);
        self.unsynced = waiting;
        for p in durable {
            p.ack.delivered();
        }
        Ok(())
    }

    /// Starts a new segment; the full one becomes deletable once delivered.
    fn roll(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let id = lock(&self.shared.state).next_id;
        let (path, file) = segment::create_segment(&self.shared.dir, id)?;
        self.file = file;
        let mut st = lock(&self.shared.state);
        st.segments.push_back(Seg {
            first_id: id,
            path,
            bytes: FILE_HEADER.len() as u64,
            events: Some(0),
        });
        st.total_bytes += FILE_HEADER.len() as u64;
        drop(st);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Waits (block) or drops the oldest segments (drop_oldest) until `len` more bytes fit.
    fn make_room(&mut self, len: u64) -> std::io::Result<()> {
        let max_bytes = self.shared.max_bytes;
        let fits = move |st: &State, unsynced: u64| {
            st.total_bytes + unsynced + len <= max_bytes
                // An empty buffer takes any record, however large: never wait forever.
                || (st.segments.len() == 1 && st.segments[0].bytes + unsynced <= FILE_HEADER.len() as u64)
        };
        if fits(&lock(&self.shared.state), self.unsynced_bytes) {
            return Ok(());
        }
        // What is written so far must be readable (and deletable once delivered) before we
        // wait for deliveries to make room.
        let active_has_data = lock(&self.shared.state)
            .segments
            .back()
            .is_some_and(|s| s.bytes > FILE_HEADER.len() as u64)
            || self.unsynced_bytes > 0;
        if active_has_data {
            self.roll()?;
        }
        let mut warned = false;
        let mut st = lock(&self.shared.state);
        while !fits(&st, 0) {
            if self.abandon.is_cancelled() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "stopping while the buffer is full",
                ));
            }
            match self.shared.when_full {
                WhenFull::Block => {
                    if !warned {
                        warned = true;
                        self.shared.stats.error("buffer_full");
                        tracing::warn!(buffer = %self.shared.name, max_bytes = self.shared.max_bytes,
                            "disk buffer is full; sources wait until the sink delivers");
                    }
                    st = self
                        .shared
                        .changed
                        .wait_timeout(st, Duration::from_millis(200))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                WhenFull::DropOldest => {
                    if st.segments.len() < 2 {
                        break;
                    }
                    let old = st.segments.pop_front().expect("two segments");
                    let last_id = st.segments[0].first_id - 1;
                    st.total_bytes -= old.bytes;
                    st.floor = st.floor.max(last_id);
                    let events = match old.events {
                        Some(n) => n,
                        None => File::open(&old.path)
                            .and_then(|f| segment::scan(&f))
                            .map_or(0, |(_, n, _, _)| n),
                    };
                    // Delivered records of it were never at risk; count only the rest.
                    let lost = if st.delivered >= last_id { 0 } else { events };
                    let _ = std::fs::remove_file(&old.path);
                    let stats = &self.shared.stats;
                    stats.count(Outcome::BufferDropped, lost);
                    crate::telemetry::buffer_bytes(stats.component(), "dropped", old.bytes);
                    tracing::warn!(buffer = %self.shared.name, events = lost, bytes = old.bytes,
                        "disk buffer full: dropped its oldest segment");
                }
            }
        }
        let total = st.total_bytes;
        drop(st);
        self.shared.publish_size(total);
        Ok(())
    }
}

/// Feeds the sink from the segments, oldest first, and never past what was fsynced.
fn reader(
    shared: &Shared,
    to_sink: &mpsc::Sender<EventBatch>,
    acks: mpsc::UnboundedSender<(u64, AckStatus)>,
    memory: &MemoryLimit,
    runtime: &tokio::runtime::Handle,
) {
    let stats = &shared.stats;
    // Records up to `next - 1` need not be sent (delivered in an earlier run).
    let mut next = lock(&shared.state).delivered + 1;
    // (first id of the segment, its file, read offset, its format)
    let mut current: Option<(u64, File, u64, segment::Version)> = None;
    loop {
        let Some((first_id, file, offset, version)) = current.as_mut() else {
            // Pick the segment holding `next`, or the first after the one just finished.
            let mut st = lock(&shared.state);
            loop {
                next = next.max(st.floor + 1);
                let seg = st
                    .segments
                    .iter()
                    .rev()
                    .find(|s| s.first_id <= next)
                    .or_else(|| st.segments.front());
                if let Some(seg) = seg {
                    // `open` kept only segments with a known header; ours are the current one.
                    match File::open(&seg.path).and_then(|f| {
                        let v = segment::read_version(&f)?.unwrap_or(segment::Version::V2);
                        Ok((f, v))
                    }) {
                        Ok((f, v)) => {
                            current = Some((seg.first_id, f, FILE_HEADER.len() as u64, v));
                            break;
                        }
                        Err(e) => {
                            // Deleted under us (dropped when full): look again.
                            tracing::debug!(buffer = %shared.name, error = %e, "segment gone");
                        }
                    }
                }
                if st.closed && st.segments.is_empty() {
                    return;
                }
                st = shared
                    .changed
                    .wait_timeout(st, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            continue;
        };
        let (limit, newest, closed, following) = {
            let st = lock(&shared.state);
            let pos = st.segments.iter().position(|s| s.first_id == *first_id);
            match pos {
                Some(i) => (
                    st.segments[i].bytes,
                    i + 1 == st.segments.len(),
                    st.closed,
                    st.segments.get(i + 1).map(|s| s.first_id),
                ),
                // Dropped to make room: read what the open handle still has, then move on.
                None => (
                    file.metadata().map_or(0, |m| m.len()),
                    false,
                    st.closed,
                    st.segments
                        .iter()
                        .find(|s| s.first_id > *first_id)
                        .map(|s| s.first_id),
                ),
            }
        };
        let start = *offset;
        match segment::read_at(file, start, limit) {
            Ok(Read::Record(r)) => {
                *offset = r.end;
                if r.id < next || r.id <= lock(&shared.state).floor {
                    continue;
                }
                // Records lost to damage before this one will never come: settle them.
                for lost in next..r.id {
                    let _ = acks.send((lost, AckStatus::Delivered));
                }
                next = r.id + 1;
                let events = match segment::decode(&r.payload, *version) {
                    Ok(ev) => ev,
                    Err(e) => {
                        stats.error("buffer_corrupt_records");
                        tracing::error!(buffer = %shared.name, record = r.id, error = %e,
                            "disk buffer record has a valid checksum but cannot be decoded; skipped");
                        let _ = acks.send((r.id, AckStatus::Delivered));
                        continue;
                    }
                };
                let bytes: u64 = events.iter().map(|e| e.size_hint() as u64).sum();
                let permit = runtime.block_on(memory.acquire(bytes));
                let ack = Ack::new(r.id, acks.clone());
                ack.hold(permit);
                stats.count(Outcome::BufferRead, r.count as u64);
                crate::telemetry::buffer_bytes(stats.component(), "read", r.end - start);
                if to_sink.blocking_send(EventBatch { events, ack }).is_err() {
                    return; // the sink is gone (shutdown)
                }
            }
            Ok(Read::Damaged { resume }) => {
                stats.error("buffer_corrupt_records");
                tracing::warn!(buffer = %shared.name, segment = *first_id, offset = *offset, skipped_bytes = resume - *offset,
                    "damaged record in the disk buffer; skipped");
                *offset = resume;
            }
            Ok(Read::End) => {
                if let Some(following) = following.filter(|_| !newest) {
                    // Whatever ids this segment was missing will never come.
                    for lost in next..following {
                        let _ = acks.send((lost, AckStatus::Delivered));
                    }
                    next = next.max(following);
                    current = None;
                    continue;
                }
                if closed && newest {
                    return; // everything written was handed to the sink
                }
                let st = lock(&shared.state);
                let listed = st.segments.iter().find(|s| s.first_id == *first_id);
                let grown = listed.is_some_and(|s| s.bytes > *offset);
                // Wait for more in the newest segment, or for the segment that follows one
                // deleted under us (the writer recovering from a full disk).
                if !grown
                    && (listed.is_none()
                        || st.segments.back().map(|s| s.first_id) == Some(*first_id))
                {
                    let _ = shared.changed.wait_timeout(st, Duration::from_millis(100));
                }
            }
            Err(e) => {
                stats.error("buffer_read_failed");
                tracing::error!(buffer = %shared.name, error = %e, "cannot read the disk buffer; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Advances the delivered position over contiguous delivered records, persists it after each
/// advance (so a crash re-sends only what was in flight) and deletes delivered segments.
fn tracker(shared: &Shared, mut acks: crate::event::AckReceiver, mut file: AckFile) {
    let stats = &shared.stats;
    let mut delivered = lock(&shared.state).delivered;
    let mut done: BTreeSet<u64> = BTreeSet::new();
    let mut failed: Option<u64> = None;
    while let Some(first) = acks.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = acks.try_recv() {
            batch.push(more);
        }
        for (id, status) in batch {
            match status {
                AckStatus::Delivered => {
                    done.insert(id);
                }
                AckStatus::Undelivered => {
                    // The sink let go of it unsent (shutdown): the position must not pass it.
                    failed = Some(failed.map_or(id, |f| f.min(id)));
                }
            }
        }
        let floor = lock(&shared.state).floor;
        let before = delivered;
        delivered = delivered.max(floor);
        while failed.is_none_or(|f| delivered + 1 < f) && done.remove(&(delivered + 1)) {
            delivered += 1;
        }
        done = done.split_off(&(delivered + 1));
        if delivered == before {
            continue;
        }
        if let Err(e) = file.store(delivered) {
            // Kept in memory; a crash before the next successful write re-sends (never loses).
            stats.error("buffer_write_failed");
            tracing::error!(buffer = %shared.name, error = %e, "cannot persist the disk buffer's delivered position");
        }
        reclaim(shared, delivered);
    }
}

/// Deletes every segment whose records were all delivered (never the one being written).
fn reclaim(shared: &Shared, delivered: u64) {
    let stats = &shared.stats;
    let mut st = lock(&shared.state);
    st.delivered = st.delivered.max(delivered);
    while st.segments.len() > 1 && st.segments[1].first_id - 1 <= delivered {
        let old = st.segments.pop_front().expect("two segments");
        st.total_bytes -= old.bytes;
        let events = match old.events {
            Some(n) => n,
            None => File::open(&old.path)
                .and_then(|f| segment::scan(&f))
                .map_or(0, |(_, n, _, _)| n),
        };
        if let Err(e) = std::fs::remove_file(&old.path) {
            tracing::warn!(buffer = %shared.name, path = %old.path.display(), error = %e, "cannot delete a delivered segment");
        }
        stats.count(Outcome::BufferReclaimed, events);
        crate::telemetry::buffer_bytes(stats.component(), "reclaimed", old.bytes);
    }
    let total = st.total_bytes;
    drop(st);
    shared.changed.notify_all();
    shared.publish_size(total);
}
