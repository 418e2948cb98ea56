//! The writer: appends every batch the sink is sent to the active segment, fsyncs in groups,
//! and acknowledges a batch to its source once it is durable.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::super::WhenFull;
use super::super::segment::{self, FILE_HEADER};
use super::{Seg, Shared, State, lock};
use crate::event::{Ack, EventBatch};
use crate::telemetry::Outcome;

/// Bytes of batches written between two fsyncs at most (group commit).
const GROUP_BYTES: usize = 4 << 20;

pub(super) struct Writer {
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
    pub(super) fn new(
        shared: Arc<Shared>,
        file: File,
        positions: HashMap<String, u64>,
        abandon: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            shared,
            file,
            unsynced: Vec::new(),
            unsynced_bytes: 0,
            failures: 0,
            positions,
            broken: false,
            abandon,
        }
    }

    pub(super) fn run(mut self, mut input: mpsc::Receiver<EventBatch>) {
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
                    let events = old.event_count();
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
