//! The reader: feeds the sink from the segments, oldest first, and never past what was fsynced.

use std::fs::File;
use std::time::Duration;

use tokio::sync::mpsc;

use super::super::limit::MemoryLimit;
use super::super::segment::{self, FILE_HEADER, Read, Record};
use super::{Shared, lock};
use crate::event::{Ack, AckStatus, EventBatch};
use crate::telemetry::Outcome;

/// Feeds the sink until everything written was handed over, or the sink is gone.
pub(super) fn reader(
    shared: &Shared,
    to_sink: &mpsc::Sender<EventBatch>,
    acks: mpsc::UnboundedSender<(u64, AckStatus)>,
    memory: &MemoryLimit,
    runtime: &tokio::runtime::Handle,
) {
    let mut reader = Reader {
        shared,
        to_sink,
        acks,
        memory,
        runtime,
        // Records up to `next - 1` need not be sent (delivered in an earlier run).
        next: lock(&shared.state).delivered + 1,
    };
    let mut current: Option<Cursor> = None;
    loop {
        let Some(cursor) = current.as_mut() else {
            match reader.open_next() {
                Some(cursor) => current = Some(cursor),
                None => return,
            }
            continue;
        };
        match reader.step(cursor) {
            Step::Continue => {}
            Step::NextSegment => current = None,
            Step::Stop => return,
        }
    }
}

struct Reader<'a> {
    shared: &'a Shared,
    to_sink: &'a mpsc::Sender<EventBatch>,
    acks: mpsc::UnboundedSender<(u64, AckStatus)>,
    memory: &'a MemoryLimit,
    runtime: &'a tokio::runtime::Handle,
    /// Id of the next record to send.
    next: u64,
}

/// The segment being read.
struct Cursor {
    first_id: u64,
    file: File,
    offset: u64,
    version: segment::Version,
}

/// What the shared state says about the segment being read.
struct View {
    /// Bytes readable (fsynced).
    limit: u64,
    /// It is the one being written.
    newest: bool,
    /// The writer has finished.
    closed: bool,
    /// First id of the segment after it.
    following: Option<u64>,
}

enum Step {
    Continue,
    NextSegment,
    Stop,
}

impl Reader<'_> {
    /// Opens the segment holding `next`, or the first after the one just finished; waits for
    /// one to exist. `None`: the writer has finished and every segment is gone.
    fn open_next(&mut self) -> Option<Cursor> {
        let shared = self.shared;
        let mut st = lock(&shared.state);
        loop {
            self.next = self.next.max(st.floor + 1);
            let next = self.next;
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
                    Ok((file, version)) => {
                        return Some(Cursor {
                            first_id: seg.first_id,
                            file,
                            offset: FILE_HEADER.len() as u64,
                            version,
                        });
                    }
                    Err(e) => {
                        // Deleted under us (dropped when full): look again.
                        tracing::debug!(buffer = %shared.name, error = %e, "segment gone");
                    }
                }
            }
            if st.closed && st.segments.is_empty() {
                return None;
            }
            st = shared
                .changed
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn view(&self, cursor: &Cursor) -> View {
        let st = lock(&self.shared.state);
        let pos = st
            .segments
            .iter()
            .position(|s| s.first_id == cursor.first_id);
        match pos {
            Some(i) => View {
                limit: st.segments[i].bytes,
                newest: i + 1 == st.segments.len(),
                closed: st.closed,
                following: st.segments.get(i + 1).map(|s| s.first_id),
            },
            // Dropped to make room: read what the open handle still has, then move on.
            None => View {
                limit: cursor.file.metadata().map_or(0, |m| m.len()),
                newest: false,
                closed: st.closed,
                following: st
                    .segments
                    .iter()
                    .find(|s| s.first_id > cursor.first_id)
                    .map(|s| s.first_id),
            },
        }
    }

    /// Reads one record (or finds the end) of the current segment.
    fn step(&mut self, cursor: &mut Cursor) -> Step {
        let view = self.view(cursor);
        let stats = &self.shared.stats;
        let start = cursor.offset;
        match segment::read_at(&cursor.file, start, view.limit) {
            Ok(Read::Record(r)) => {
                cursor.offset = r.end;
                return self.send(cursor, r, start);
            }
            Ok(Read::Damaged { resume }) => {
                stats.error("buffer_corrupt_records");
                tracing::warn!(buffer = %self.shared.name, segment = cursor.first_id, offset = cursor.offset, skipped_bytes = resume - cursor.offset,
                    "damaged record in the disk buffer; skipped");
                cursor.offset = resume;
            }
            Ok(Read::End) => return self.at_end(cursor, &view),
            Err(e) => {
                stats.error("buffer_read_failed");
                tracing::error!(buffer = %self.shared.name, error = %e, "cannot read the disk buffer; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Step::Continue
    }

    /// Decodes a record that starts at `start` and hands it to the sink, unless it was
    /// delivered or dropped already.
    fn send(&mut self, cursor: &Cursor, r: Record, start: u64) -> Step {
        let shared = self.shared;
        let stats = &shared.stats;
        if r.id < self.next || r.id <= lock(&shared.state).floor {
            return Step::Continue;
        }
        // Records lost to damage before this one will never come: settle them.
        for lost in self.next..r.id {
            let _ = self.acks.send((lost, AckStatus::Delivered));
        }
        self.next = r.id + 1;
        let events = match segment::decode(&r.payload, cursor.version) {
            Ok(ev) => ev,
            Err(e) => {
                stats.error("buffer_corrupt_records");
                tracing::error!(buffer = %shared.name, record = r.id, error = %e,
                    "disk buffer record has a valid checksum but cannot be decoded; skipped");
                let _ = self.acks.send((r.id, AckStatus::Delivered));
                return Step::Continue;
            }
        };
        let bytes: u64 = events.iter().map(|e| e.size_hint() as u64).sum();
        let permit = self.runtime.block_on(self.memory.acquire(bytes));
        let ack = Ack::new(r.id, self.acks.clone());
        ack.hold(permit);
        stats.count(Outcome::BufferRead, r.count as u64);
        crate::telemetry::buffer_bytes(stats.component(), "read", r.end - start);
        if self
            .to_sink
            .blocking_send(EventBatch { events, ack })
            .is_err()
        {
            return Step::Stop; // the sink is gone (shutdown)
        }
        Step::Continue
    }

    /// At the end of what is readable in the current segment: move to the next segment, stop,
    /// or wait for more.
    fn at_end(&mut self, cursor: &Cursor, view: &View) -> Step {
        let shared = self.shared;
        if let Some(following) = view.following.filter(|_| !view.newest) {
            // Whatever ids this segment was missing will never come.
            for lost in self.next..following {
                let _ = self.acks.send((lost, AckStatus::Delivered));
            }
            self.next = self.next.max(following);
            return Step::NextSegment;
        }
        if view.closed && view.newest {
            return Step::Stop; // everything written was handed to the sink
        }
        let st = lock(&shared.state);
        let listed = st.segments.iter().find(|s| s.first_id == cursor.first_id);
        let grown = listed.is_some_and(|s| s.bytes > cursor.offset);
        // Wait for more in the newest segment, or for the segment that follows one
        // deleted under us (the writer recovering from a full disk).
        if !grown
            && (listed.is_none() || st.segments.back().map(|s| s.first_id) == Some(cursor.first_id))
        {
            let _ = shared.changed.wait_timeout(st, Duration::from_millis(100));
        }
        Step::Continue
    }
}
