//! What a sink tells the driver: its request, one attempt at sending it, and what the answer
//! means.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use crate::event::Ack;

/// A request the driver can count, retry and halve.
pub trait Payload: Send + 'static {
    /// The items (events, documents, data points) it carries: what `sent`, `rejected` and
    /// `retried` count.
    fn items(&self) -> usize;

    /// Two requests with the first and second half of the items, in order; `Err(self)` when this
    /// kind of request cannot be halved (the driver then treats [`Verdict::Split`] as
    /// [`Verdict::Refused`]). Called only when `items() > 1`.
    fn split(self) -> Result<(Self, Self), Self>
    where
        Self: Sized;
}

/// A request that is a list of items (X-Ray's documents).
impl<T: Send + 'static> Payload for Vec<T> {
    fn items(&self) -> usize {
        self.len()
    }

    fn split(mut self) -> Result<(Self, Self), Self> {
        let tail = self.split_off(self.len() / 2);
        Ok((self, tail))
    }
}

/// A request with the acknowledgements it completes. The driver settles each of them exactly
/// once, after the request was answered for good (a half of a split request holds a copy).
pub struct Job<R> {
    pub request: R,
    pub acks: Vec<Ack>,
}

/// What one attempt came to, as the sink reads the backend's answer.
#[derive(Debug)]
pub enum Verdict<R> {
    /// Stored. `rejected` of its items were refused within the success (a partial success,
    /// CloudWatch Logs' `rejectedLogEventsInfo`): counted, never sent again.
    Accepted { rejected: u64, why: String },
    /// Not stored this time (throttled, 5xx, timeout, network, no credentials): the same request
    /// goes again after `after` (the backend's `Retry-After`, capped) or a full-jitter backoff.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// The backend refuses the request for its content: it is halved until the item at fault is
    /// alone, which is then counted as rejected; the other items go out.
    Split { why: String },
    /// Some items were left unprocessed (X-Ray's `UnprocessedTraceSegments`): the rest is
    /// stored; `again` (those items) is sent again, at most `partial_retries` times.
    Partial { again: R, why: String },
    /// Refused for good, all of it (a 4xx that halving cannot help): counted as rejected.
    Refused { why: String },
}

/// The error names ([`crate::telemetry::Stats::error`]) a sink's answers are counted under, so
/// each keeps the names documented in `docs/agent-metrics.md`.
pub struct ErrorNames {
    /// One item, isolated by halving, was refused.
    pub item_refused: &'static str,
    /// A success reported some items rejected.
    pub items_rejected: &'static str,
    /// Items were left unprocessed (and will be sent again).
    pub unprocessed: &'static str,
}

impl ErrorNames {
    pub const DEFAULT: ErrorNames = ErrorNames {
        item_refused: "request_refused",
        items_rejected: "items_rejected",
        unprocessed: "items_unprocessed",
    };
}

/// How a sink talks to its backend.
///
/// The contract:
/// - `send` makes exactly one attempt and classifies the answer. It never sleeps, retries,
///   splits, acknowledges, nor counts `sent`/`rejected`/`retried`: the driver does all of that
///   from the [`Verdict`]. It may change the request before sending (CloudWatch Logs sorts and
///   clamps timestamps), counting what it changes itself, and it never panics on any answer.
/// - Requests of one key are only ever given to `send` one at a time and in order when the
///   dispatch is [`super::Lanes::PerKey`]; otherwise any number at once.
/// - `admit` and `release` run in a per-key lane only (state in `Lane`): `admit` may replace a
///   request by others before it is delivered (CloudWatch Logs drops what a crashed run already
///   delivered) and `release` returns what it still holds when the lane ends. Every job given
///   to `admit` comes back, whole or in parts, from `admit` or `release`: acknowledgements are
///   never dropped on the way.
pub trait Backend: Send + Sync + 'static {
    /// Where a request goes (a log stream, a signal); `()` when there is one destination.
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    type Request: Payload;
    /// Per-key state of an ordered lane; `()` where there is none.
    type Lane: Default + Send + 'static;

    /// The operation, for logs ("PutLogEvents").
    const OPERATION: &'static str;
    const ERRORS: ErrorNames = ErrorNames::DEFAULT;
    /// Whether the driver counts delivered items as `sent`. A sink whose `sent` counts something
    /// else (the metrics sink counts the events whose aggregates were stored) says `false`.
    const COUNTS_SENT: bool = true;

    fn send(
        &self,
        key: &Self::Key,
        request: &mut Self::Request,
    ) -> impl Future<Output = Verdict<Self::Request>> + Send;

    fn admit(
        &self,
        _key: &Self::Key,
        _lane: &mut Self::Lane,
        job: Job<Self::Request>,
    ) -> impl Future<Output = Vec<Job<Self::Request>>> + Send {
        async move { vec![job] }
    }

    fn release(&self, _key: &Self::Key, _lane: Self::Lane) -> Vec<Job<Self::Request>> {
        Vec::new()
    }
}
