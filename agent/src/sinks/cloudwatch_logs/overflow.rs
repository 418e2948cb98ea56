//! The bound on streams that data can open. Stream (and group) names come from event fields,
//! and every stream has a worker and its queued requests, so a field with unbounded values (a
//! request id in the template) would otherwise open streams without end. Up to `max_streams`
//! streams open as their names say; an event for any further stream goes to the stream
//! [`OVERFLOW_STREAM`] in its own group when that group already has a stream open (no new
//! group is created), else in the group of the first stream the sink opened. The event keeps
//! its text; it is counted (`stream_overflow`) and the first one is logged.

use std::collections::HashSet;

use super::service::StreamId;
use crate::telemetry::Stats;

/// Where events beyond `max_streams` go, in a group that is already open.
pub const OVERFLOW_STREAM: &str = "vigil-overflow";

/// Which streams an event may open.
pub struct StreamLimit {
    max: usize,
    /// Streams opened by their own name (the overflow streams are not counted: there are at
    /// most as many as open groups).
    opened: usize,
    groups: HashSet<String>,
    first_group: Option<String>,
    warned: bool,
}

impl StreamLimit {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            opened: 0,
            groups: HashSet::new(),
            first_group: None,
            warned: false,
        }
    }

    /// The stream an event whose templates rendered `id` goes to; `known` says whether a stream
    /// is open (or being opened) already.
    pub fn place(
        &mut self,
        id: StreamId,
        known: impl Fn(&StreamId) -> bool,
        stats: &Stats,
    ) -> StreamId {
        if known(&id) {
            return id;
        }
        if self.opened < self.max {
            self.opened += 1;
            self.groups.insert(id.group.clone());
            self.first_group.get_or_insert_with(|| id.group.clone());
            return id;
        }
        stats.error("stream_overflow");
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                sink = stats.component(),
                max_streams = self.max,
                group = %id.group,
                stream = %id.stream,
                overflow = OVERFLOW_STREAM,
                "the sink has max_streams streams open: events for further streams go to the overflow stream (counted as stream_overflow; logged once)"
            );
        }
        let group = if self.groups.contains(&id.group) {
            id.group
        } else {
            // max_streams is at least 1, so a first stream was opened before any overflow.
            self.first_group.clone().unwrap_or(id.group)
        };
        StreamId {
            group,
            stream: OVERFLOW_STREAM.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: &str, stream: &str) -> StreamId {
        StreamId {
            group: group.into(),
            stream: stream.into(),
        }
    }

    #[test]
    fn streams_beyond_the_limit_go_to_the_overflow_stream_of_an_open_group() {
        let stats = Stats::new("overflow_unit");
        let mut limit = StreamLimit::new(2);
        let mut open: HashSet<StreamId> = HashSet::new();
        let mut place = |limit: &mut StreamLimit, i: StreamId| {
            let placed = limit.place(i, |s| open.contains(s), &stats);
            open.insert(placed.clone());
            placed
        };
        assert_eq!(place(&mut limit, id("g1", "a")), id("g1", "a"));
        assert_eq!(place(&mut limit, id("g2", "b")), id("g2", "b"));
        // Known streams stay where they are.
        assert_eq!(place(&mut limit, id("g1", "a")), id("g1", "a"));
        // A third stream in an open group: that group's overflow stream.
        assert_eq!(place(&mut limit, id("g2", "c")), id("g2", OVERFLOW_STREAM));
        // A new group is not created: the first group's overflow stream.
        assert_eq!(place(&mut limit, id("g3", "d")), id("g1", OVERFLOW_STREAM));
        assert_eq!(place(&mut limit, id("g3", "e")), id("g1", OVERFLOW_STREAM));
        assert_eq!(open.len(), 4);
    }
}
