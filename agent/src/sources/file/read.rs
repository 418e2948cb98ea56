//! Reading: new bytes of a tracked file split into lines (and multiline groups), batched and
//! handed on with the offsets they complete.

use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::fingerprint::fingerprint;
use super::lines::Piece;
use super::{Closed, FileSource, READ_BUDGET, READ_CHUNK, State, Tracked, warn_once};
use crate::event::{Ack, AckStatus, Attributes, Event, LogEvent, Position, now_ms};
use crate::output::SourceOutput;
use crate::telemetry::{Outcome, Stats};

impl FileSource {
    /// Reads new data of one file and hands complete events on. Returns bytes read.
    pub(super) fn read_file(
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
        let mut batch = Batch::default();
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
            take_lines(t, now, &out.stats, &mut batch);
            if batch.events.len() >= max_batch
                && let Some(end) = batch.end.take()
            {
                let full = (
                    std::mem::take(&mut batch.events),
                    std::mem::take(&mut batch.ends),
                );
                self.send(state, key, full, end, out, ack_tx)?;
            }
        }
        // A multiline group that has been quiet long enough is complete.
        let t = state.files.get_mut(&key).expect("tracked");
        if let Some(m) = t.multiline.as_mut()
            && let Some((group, group_end)) = m.flush_idle(now)
        {
            batch.push(line_event(&t.attributes, group), group_end);
        }
        if let Some(end) = batch.end {
            self.send(state, key, (batch.events, batch.ends), end, out, ack_tx)?;
        }
        if replaced {
            let path = state.files[&key].path.clone();
            self.truncated(state, key, &path);
        }
        Ok(total)
    }

    /// Hands a batch of one file on, remembering which offset it completes.
    pub(super) fn send(
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
}

pub(super) fn line_event(attributes: &Attributes, text: String) -> Event {
    let mut log = LogEvent::new(text, now_ms());
    log.attributes = attributes.clone();
    Event::Log(log)
}

/// Events read from one file and not yet handed on.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    /// File offset just after each event (see `Position`).
    ends: Vec<u64>,
    /// The offset the batch completes, once something moved it (a line, or a skipped tail).
    end: Option<u64>,
}

impl Batch {
    fn push(&mut self, event: Event, end: u64) {
        self.events.push(event);
        self.ends.push(end);
        self.end = Some(end);
    }
}

/// Splits the complete lines off the bytes read into `t.buf` and adds their events (grouped
/// when multiline is set) to `batch`.
fn take_lines(t: &mut Tracked, now: Instant, stats: &Stats, batch: &mut Batch) {
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
                batch.end = Some(end);
            }
            continue;
        };
        if oversized {
            stats.count(Outcome::Truncated, 1);
        }
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                stats.count(Outcome::InvalidUtf8, 1);
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        received += 1;
        match t.multiline.as_mut() {
            Some(m) => {
                if let Some((group, group_end)) = m.push(text, end, now) {
                    batch.push(line_event(&t.attributes, group), group_end);
                }
            }
            None => batch.push(line_event(&t.attributes, text), end),
        }
    }
    stats.count(Outcome::Received, received);
}
