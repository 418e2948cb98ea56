//! Not sending twice what a crashed run already delivered.
//!
//! CloudWatch Logs has no idempotency key. After a crash the disk buffer re-sends what was not
//! yet recorded as delivered: requests in flight when the process died, and records delivered
//! out of order. Per stream, a worker sends in order, so what the service already has of the
//! re-sent events is a *prefix* of what this run sends to the stream, and it is the *end* of
//! what the stream holds. So before its first request a worker reads the stream's newest events
//! and drops the leading events of its requests that repeat the stream's tail exactly
//! (timestamp and message, position by position, up to the tail's last event).
//!
//! A request that repeats the tail but ends before it is held back until the next request shows
//! whether the repetition reaches the tail's end; if it does not, everything held is sent
//! unchanged (a coincidence is never mistaken for a repeat: at worst a duplicate, never a loss).

use super::request::{Message, Request};
use crate::sinks::driver::Job;

/// The newest events of a stream at start, and the progress of matching them.
pub struct Resume {
    tail: Vec<(i64, Message)>,
    /// Where in `tail` the repetition starts, and how many tail events it matched so far.
    at: Option<(usize, usize)>,
    held: Vec<Job<Request>>,
}

/// What [`Resume::feed`] decided.
pub struct Fed {
    /// Requests to send now, in order (held ones first); duplicates removed.
    pub send: Vec<Job<Request>>,
    /// Events found already stored and removed.
    pub skipped: usize,
    /// Matching is over: later requests go out as they are.
    pub done: bool,
}

impl Resume {
    /// `tail`: the stream's newest events, oldest first.
    pub fn new(tail: Vec<(i64, Message)>) -> Self {
        Self {
            tail,
            at: None,
            held: Vec::new(),
        }
    }

    /// Takes the next request of the stream.
    pub fn feed(&mut self, job: Job<Request>) -> Fed {
        let req = &job.request;
        let tail = &self.tail;
        let (start, matched) = match self.at {
            Some(at) => at,
            None => {
                // The earliest position from which the tail's rest equals the request's head.
                let found = (0..tail.len()).find(|&p| {
                    tail[p..]
                        .iter()
                        .zip(&req.events)
                        .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
                });
                match found {
                    Some(p) => (p, 0),
                    None => return self.finish(job, 0),
                }
            }
        };
        let from = start + matched;
        let left = tail.len() - from;
        let same = tail[from..]
            .iter()
            .zip(&req.events)
            .take_while(|(a, b)| a.0 == b.0 && a.1 == b.1)
            .count();
        if same < left.min(req.events.len()) {
            // Diverged before the tail's end: not a repeat.
            return self.finish(job, 0);
        }
        if same == left {
            // The repetition reaches the tail's end: everything held, and the head of this
            // request, is already stored.
            let mut skipped = 0;
            for h in &mut self.held {
                skipped += h.request.events.len();
                h.request.events.clear();
            }
            let mut job = job;
            job.request.events.drain(..same);
            return self.finish(job, skipped + same);
        }
        // The whole request repeats the tail, which goes on: wait for the next one.
        self.at = Some((start, matched + same));
        self.held.push(job);
        Fed {
            send: Vec::new(),
            skipped: 0,
            done: false,
        }
    }

    fn finish(&mut self, job: Job<Request>, skipped: usize) -> Fed {
        let mut send = std::mem::take(&mut self.held);
        send.push(job);
        Fed {
            send,
            skipped,
            done: true,
        }
    }

    /// Requests held when the stream's input ends: sent unchanged.
    pub fn release(self) -> Vec<Job<Request>> {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(range: std::ops::Range<i64>) -> Job<Request> {
        let request = Request {
            events: range
                .map(|i| (i, Message::new(&format!("line {i}"))))
                .collect(),
        };
        Job {
            request,
            acks: Vec::new(),
        }
    }

    fn stamps(r: &[Job<Request>]) -> Vec<Vec<i64>> {
        r.iter()
            .map(|r| r.request.events.iter().map(|e| e.0).collect())
            .collect()
    }

    #[test]
    fn drops_the_head_that_repeats_the_streams_tail() {
        let mut r = Resume::new(req(0..100).request.events);
        let fed = r.feed(req(90..120));
        assert!(fed.done);
        assert_eq!(fed.skipped, 10);
        assert_eq!(stamps(&fed.send), vec![(100..120).collect::<Vec<_>>()]);
    }

    #[test]
    fn a_repeat_spanning_requests_is_held_then_dropped() {
        let mut r = Resume::new(req(0..100).request.events);
        let fed = r.feed(req(50..80));
        assert!(!fed.done && fed.send.is_empty());
        let fed = r.feed(req(80..130));
        assert!(fed.done);
        assert_eq!(fed.skipped, 50);
        assert_eq!(
            stamps(&fed.send),
            vec![vec![], (100..130).collect::<Vec<_>>()]
        );
    }

    #[test]
    fn nothing_is_dropped_unless_the_repeat_reaches_the_tails_end() {
        // Matches tail[50..80] but then diverges: sent unchanged.
        let mut r = Resume::new(req(0..100).request.events);
        r.feed(req(50..80));
        let mut other = req(80..90);
        other.request.events[5].1 = Message::new("something else");
        let fed = r.feed(other);
        assert!(fed.done);
        assert_eq!(fed.skipped, 0);
        assert_eq!(stamps(&fed.send)[0], (50..80).collect::<Vec<_>>());
        // New data after the tail: nothing to drop.
        let mut r = Resume::new(req(0..100).request.events);
        let fed = r.feed(req(100..110));
        assert_eq!(fed.skipped, 0);
        assert_eq!(stamps(&fed.send), vec![(100..110).collect::<Vec<_>>()]);
    }
}
