//! The tracker: settles the sink's acknowledgements into one delivered position, persists it,
//! and deletes the segments the sink is done with.

use std::collections::BTreeSet;

use super::super::segment::AckFile;
use super::{Shared, lock};
use crate::event::AckStatus;
use crate::telemetry::Outcome;

/// Advances the delivered position over contiguous delivered records, persists it after each
/// advance (so a crash re-sends only what was in flight) and deletes delivered segments.
pub(super) fn tracker(shared: &Shared, mut acks: crate::event::AckReceiver, mut file: AckFile) {
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
        let events = old.event_count();
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
