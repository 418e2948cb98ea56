//! The on-disk format of a disk buffer: segment files of length-prefixed, checksummed records,
//! and the two-slot file that remembers how far deliveries got.
//!
//! A segment file is `<first record id, 20 digits>.seg`: an 8-byte file header (the format
//! version), then records. A record is a 24-byte header — magic, payload length, CRC32C, event
//! count, record id — and its payload (the events, MessagePack). The CRC covers id, count and payload, so a torn write
//! or a flipped bit anywhere in a record is caught; the magic lets a reader find the next good
//! record after a damaged one.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::event::{Event, Resource};

/// The header of segments written now (format 2: each distinct resource once per record).
pub const FILE_HEADER: &[u8; 8] = b"VIGBUF2\n";
/// Format 1 (every event carried its own copy of its resource): still read.
const FILE_HEADER_V1: &[u8; 8] = b"VIGBUF1\n";

/// How a segment's records encode their events (from the segment's file header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `[events]`, each event with its resource inline.
    V1,
    /// `[resources, resource index per event (empty when no event has one), events without
    /// their resources]`: a resource shared by many events is stored once, and read back
    /// shared (one `Arc`), as it was written.
    V2,
}

impl Version {
    pub fn of_header(header: &[u8]) -> Option<Self> {
        if header == FILE_HEADER {
            Some(Version::V2)
        } else if header == FILE_HEADER_V1 {
            Some(Version::V1)
        } else {
            None
        }
    }
}

/// The format of a segment, from its header; `None` when it is not a segment we can read.
pub fn read_version(file: &File) -> std::io::Result<Option<Version>> {
    let mut head = [0u8; 8];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => Ok(Version::of_header(&head)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}
const MAGIC: u32 = 0x5647_5231; // "VGR1"
pub const RECORD_HEADER: u64 = 24;
/// Records larger than this are treated as damage (the writer never makes one).
pub const MAX_RECORD: u64 = 256 << 20;

pub fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.seg"))
}

/// The first record id of a segment, from its file name.
pub fn segment_first_id(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".seg")?.parse().ok()
}

fn checksum(id: u64, count: u32, payload: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&id.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &count.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Encodes events into a complete record (header + payload). The payload starts with where
/// the events were read (origin and end position, see `event::Position`), so a restarted
/// buffer knows how far each origin got without decoding events: [origin length u16,
/// `u16::MAX` = none][origin][end u64][events, MessagePack, format `Version::V2`].
/// The events' resources are taken out while encoding and put back before returning.
pub fn encode(
    id: u64,
    origin: Option<(&str, u64)>,
    events: &mut [Event],
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = vec![0u8; RECORD_HEADER as usize];
    match origin {
        Some((name, end)) if name.len() < u16::MAX as usize => {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&end.to_le_bytes());
        }
        _ => out.extend_from_slice(&u16::MAX.to_le_bytes()),
    }
    let (resources, refs, taken) = take_resources(events);
    let written = rmp_serde::encode::write(&mut out, &(&resources, &refs, &*events));
    restore_resources(events, taken);
    written?;
    seal(&mut out, id, events.len() as u32);
    Ok(out)
}

/// Fills in the record header of `out` (header space + payload).
fn seal(out: &mut [u8], id: u64, count: u32) {
    let payload_len = out.len() - RECORD_HEADER as usize;
    let crc = checksum(id, count, &out[RECORD_HEADER as usize..]);
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out[12..16].copy_from_slice(&count.to_le_bytes());
    out[16..24].copy_from_slice(&id.to_le_bytes());
}

/// A format 1 segment file's header and one record, as the previous release wrote them (for
/// the test that they are still read).
#[cfg(test)]
pub fn encode_v1_segment(id: u64, events: &[Event]) -> Vec<u8> {
    let mut out = FILE_HEADER_V1.to_vec();
    let mut record = vec![0u8; RECORD_HEADER as usize];
    record.extend_from_slice(&u16::MAX.to_le_bytes());
    rmp_serde::encode::write(&mut record, events).expect("our own events encode");
    seal(&mut record, id, events.len() as u32);
    out.extend_from_slice(&record);
    out
}

/// The id a record was encoded with.
pub fn record_id(record: &[u8]) -> u64 {
    u64::from_le_bytes(record[16..24].try_into().expect("a record header"))
}

/// Gives an encoded record another id (and its checksum with it): a record written again after
/// a failed write takes the next free id.
pub fn set_id(record: &mut [u8], id: u64) {
    let count = u32::from_le_bytes(record[12..16].try_into().expect("a record header"));
    record[16..24].copy_from_slice(&id.to_le_bytes());
    let crc = checksum(id, count, &record[RECORD_HEADER as usize..]);
    record[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// The origin prefix of a payload and the offset of the events after it.
pub fn origin(payload: &[u8]) -> Option<(Option<(String, u64)>, usize)> {
    let len = u16::from_le_bytes(payload.get(0..2)?.try_into().ok()?);
    if len == u16::MAX {
        return Some((None, 2));
    }
    let len = len as usize;
    let name = std::str::from_utf8(payload.get(2..2 + len)?).ok()?;
    let end = u64::from_le_bytes(payload.get(2 + len..10 + len)?.try_into().ok()?);
    Some((Some((name.to_owned(), end)), 10 + len))
}

/// The resource of an event (spans always have one; logs and metrics may).
fn resource_slot(event: &mut Event) -> ResourceSlot<'_> {
    match event {
        Event::Log(l) => ResourceSlot::Optional(&mut l.resource),
        Event::Metric(m) => ResourceSlot::Optional(&mut m.resource),
        Event::Span(s) => ResourceSlot::Required(&mut s.resource),
    }
}

enum ResourceSlot<'a> {
    Optional(&'a mut Option<Arc<Resource>>),
    Required(&'a mut Arc<Resource>),
}

/// The distinct resources of a record, each event's index into them, and what was taken.
type TakenResources = (
    Vec<Arc<Resource>>,
    Vec<Option<u32>>,
    Vec<Option<Arc<Resource>>>,
);

/// Takes every event's resource out (an empty one stays in a span's required slot): returns
/// the distinct resources (by identity, in first-use order), each event's index into them
/// (empty when no event has a resource), and what was taken, to put back.
fn take_resources(events: &mut [Event]) -> TakenResources {
    let mut distinct: Vec<Arc<Resource>> = Vec::new();
    let mut index: std::collections::HashMap<*const Resource, u32> =
        std::collections::HashMap::new();
    let mut refs = Vec::new();
    let mut taken = Vec::new();
    let empty = Arc::new(Resource::default());
    for (i, event) in events.iter_mut().enumerate() {
        let resource = match resource_slot(event) {
            ResourceSlot::Optional(slot) => slot.take(),
            ResourceSlot::Required(slot) => Some(std::mem::replace(slot, Arc::clone(&empty))),
        };
        let Some(resource) = resource else {
            if !refs.is_empty() {
                refs.push(None);
            }
            taken.push(None);
            continue;
        };
        if refs.is_empty() {
            refs.resize(i, None);
        }
        let k = *index.entry(Arc::as_ptr(&resource)).or_insert_with(|| {
            distinct.push(Arc::clone(&resource));
            (distinct.len() - 1) as u32
        });
        refs.push(Some(k));
        taken.push(Some(resource));
    }
    (distinct, refs, taken)
}

fn restore_resources(events: &mut [Event], taken: Vec<Option<Arc<Resource>>>) {
    for (event, resource) in events.iter_mut().zip(taken) {
        match (resource_slot(event), resource) {
            (ResourceSlot::Optional(slot), r) => *slot = r,
            (ResourceSlot::Required(slot), Some(r)) => *slot = r,
            (ResourceSlot::Required(_), None) => {}
        }
    }
}

/// The events of a record's payload, written in format `version`.
pub fn decode(payload: &[u8], version: Version) -> Result<Vec<Event>, rmp_serde::decode::Error> {
    use rmp_serde::decode::Error;
    let invalid = |why: String| -> Error { serde::de::Error::custom(why) };
    let at = origin(payload).map_or(payload.len(), |(_, at)| at);
    let body = &payload[at..];
    match version {
        Version::V1 => rmp_serde::from_slice(body),
        Version::V2 => {
            let (resources, refs, mut events): (Vec<Resource>, Vec<Option<u32>>, Vec<Event>) =
                rmp_serde::from_slice(body)?;
            if refs.is_empty() {
                return Ok(events);
            }
            if refs.len() != events.len() {
                return Err(invalid(format!(
                    "{} resource references for {} events",
                    refs.len(),
                    events.len()
                )));
            }
            let shared: Vec<Arc<Resource>> = resources.into_iter().map(Arc::new).collect();
            for (event, r) in events.iter_mut().zip(refs) {
                let resource = match r {
                    Some(k) => Some(Arc::clone(shared.get(k as usize).ok_or_else(|| {
                        invalid(format!("resource {k} of {} in a record", shared.len()))
                    })?)),
                    None => None,
                };
                match (resource_slot(event), resource) {
                    (ResourceSlot::Optional(slot), r) => *slot = r,
                    (ResourceSlot::Required(slot), Some(r)) => *slot = r,
                    (ResourceSlot::Required(_), None) => {
                        return Err(invalid("a span without its resource".to_owned()));
                    }
                }
            }
            Ok(events)
        }
    }
}

/// A record read back and verified.
pub struct Record {
    pub id: u64,
    pub count: u32,
    pub payload: Vec<u8>,
    /// Offset just after it.
    pub end: u64,
}

/// What is at an offset of a segment.
pub enum Read {
    Record(Record),
    /// Nothing more before `limit`.
    End,
    /// Bytes that are not a valid record; `resume` is where the next valid record starts
    /// (or `limit` when there is none).
    Damaged {
        resume: u64,
    },
}

/// Reads the record at `offset`, not looking past `limit` (the end of what was written).
pub fn read_at(file: &File, offset: u64, limit: u64) -> std::io::Result<Read> {
    if offset >= limit {
        return Ok(Read::End);
    }
    match read_valid(file, offset, limit)? {
        Some(r) => Ok(Read::Record(r)),
        None => Ok(Read::Damaged {
            resume: resync(file, offset + 1, limit)?,
        }),
    }
}

/// The record at `offset` if it is complete and its checksum matches.
fn read_valid(file: &File, offset: u64, limit: u64) -> std::io::Result<Option<Record>> {
    if offset + RECORD_HEADER > limit {
        return Ok(None);
    }
    let mut h = [0u8; RECORD_HEADER as usize];
    file.read_exact_at(&mut h, offset)?;
    let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    if word(0) != MAGIC {
        return Ok(None);
    }
    let len = word(4) as u64;
    let end = offset + RECORD_HEADER + len;
    if len > MAX_RECORD || end > limit {
        return Ok(None);
    }
    let (crc, count) = (word(8), word(12));
    let id = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER)?;
    if checksum(id, count, &payload) != crc {
        return Ok(None);
    }
    Ok(Some(Record {
        id,
        count,
        payload,
        end,
    }))
}

/// Where the next valid record starts at or after `from`, or `limit`.
fn resync(file: &File, mut from: u64, limit: u64) -> std::io::Result<u64> {
    let magic = MAGIC.to_le_bytes();
    let mut chunk = vec![0u8; 64 * 1024];
    while from + RECORD_HEADER <= limit {
        let n = chunk.len().min((limit - from) as usize);
        file.read_exact_at(&mut chunk[..n], from)?;
        let mut i = 0;
        while let Some(p) = memchr::memmem::find(&chunk[i..n], &magic) {
            let at = from + (i + p) as u64;
            if read_valid(file, at, limit)?.is_some() {
                return Ok(at);
            }
            i += p + 1;
        }
        // Keep the last 3 bytes: a magic may straddle the chunk boundary.
        if n < 4 {
            break;
        }
        from += (n - 3) as u64;
    }
    Ok(limit)
}

/// Reads only the headers of a segment's valid records: (last id, events, end of the last
/// valid record, damaged regions met).
pub fn scan(file: &File) -> std::io::Result<(Option<u64>, u64, u64, u64)> {
    let limit = file.metadata()?.len();
    let mut offset = FILE_HEADER.len() as u64;
    let (mut last, mut events, mut valid_end, mut damaged) = (None, 0u64, offset, 0u64);
    loop {
        match read_at(file, offset, limit)? {
            Read::End => break,
            Read::Record(r) => {
                last = Some(r.id);
                events += r.count as u64;
                valid_end = r.end;
                offset = r.end;
            }
            Read::Damaged { resume } => {
                damaged += 1;
                offset = resume;
            }
        }
    }
    Ok((last, events, valid_end, damaged))
}

/// Creates a segment file with its header, synced along with its directory entry.
pub fn create_segment(dir: &Path, first_id: u64) -> std::io::Result<(PathBuf, File)> {
    let path = segment_path(dir, first_id);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    f.write_all(FILE_HEADER)?;
    f.sync_data()?;
    sync_dir(dir)?;
    Ok((path, f))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How far deliveries got: the highest record id such that it and every id before it were
/// delivered. Kept in two 16-byte slots written in turn, so a torn write of one slot leaves the
/// other: [id u64][crc32c(id) u32][magic u32].
pub struct AckFile {
    file: File,
    next_slot: u64,
}

impl AckFile {
    /// Opens (or creates) the file; returns it and the delivered id found (0 = none).
    pub fn open(path: &Path) -> std::io::Result<(Self, u64)> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let mut best: Option<(u64, u64)> = None;
        for slot in 0..2u64 {
            let mut b = [0u8; 16];
            if file.read_exact_at(&mut b, slot * 16).is_err() {
                continue;
            }
            let id = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
            let crc = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
            let magic = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
            if magic == MAGIC
                && crc == crc32c::crc32c(&id.to_le_bytes())
                && best.is_none_or(|(_, b)| id > b)
            {
                best = Some((slot, id));
            }
        }
        let (next_slot, id) = match best {
            Some((slot, id)) => (1 - slot, id),
            None => (0, 0),
        };
        Ok((Self { file, next_slot }, id))
    }

    /// Records `id` durably.
    pub fn store(&mut self, id: u64) -> std::io::Result<()> {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&id.to_le_bytes());
        b[8..12].copy_from_slice(&crc32c::crc32c(&id.to_le_bytes()).to_le_bytes());
        b[12..16].copy_from_slice(&MAGIC.to_le_bytes());
        self.file.write_all_at(&b, self.next_slot * 16)?;
        self.file.sync_data()?;
        self.next_slot = 1 - self.next_slot;
        Ok(())
    }
}
