//! Sending one request until it is answered for good.
//!
//! What [`Delivery::deliver`] counts, per request, from the [`Verdict`]s of its attempts:
//! - `sent`: items stored (accepted, less those a success reported rejected; items stored
//!   beside unprocessed ones), unless the backend counts `sent` itself;
//! - `rejected`: items refused within a success, the one item a halved request isolated, every
//!   item of a request refused for good, and items still unprocessed after `partial_retries`;
//! - `retried`: the items of every attempt that will be repeated (and of unprocessed rounds);
//! - errors: `request_failed` per failed attempt, the sink's [`super::ErrorNames`] otherwise,
//!   `request_refused` for a request refused whole, `unprocessed_dropped` when giving up;
//! - a request-latency sample per attempt (`ok` unless the verdict is a retry), which is also
//!   what `/ready` reads, and a batch-size sample per accepted request.
//!
//! So for every request: items given = `sent` + `rejected` (when `sent` is counted here), and
//! its acknowledgements are settled exactly once, after the last part was answered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::backend::{Backend, Job, Payload, Verdict};
use crate::sinks::driver::backoff;
use crate::telemetry::{Outcome, Stats};

/// The shortest wait between two attempts (also backoff's floor).
const MIN_WAIT: Duration = Duration::from_millis(10);

/// How long and how often to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Cap of the backoff between attempts, and of a `Retry-After`.
    pub max_backoff: Duration,
    /// Rounds of re-sending unprocessed items before they are counted as rejected.
    pub partial_retries: u32,
}

/// What became of a delivered request's items.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub rejected: u64,
}

/// Sends requests of one backend, at most `concurrency` attempts at once across all of them.
pub struct Delivery<B: Backend> {
    pub(super) backend: Arc<B>,
    name: String,
    pub(super) stats: Stats,
    policy: RetryPolicy,
    in_flight: Semaphore,
    pub(super) concurrency: usize,
}

/// Attempts made for one request (or one half of it).
#[derive(Default)]
struct Rounds {
    failed: u32,
    unprocessed: u32,
}

/// Where one request got to after an attempt.
enum Step<R> {
    /// Answered for good.
    Done,
    /// Send this (the request, or what is left of it) again after waiting.
    Again(R, Duration),
    /// Replaced by its two halves.
    Halved(R, R),
}

impl<B: Backend> Delivery<B> {
    pub fn new(
        name: &str,
        backend: Arc<B>,
        stats: Stats,
        policy: RetryPolicy,
        concurrency: usize,
    ) -> Self {
        Self {
            backend,
            name: name.to_owned(),
            stats,
            policy,
            in_flight: Semaphore::new(concurrency.max(1)),
            concurrency: concurrency.max(1),
        }
    }

    /// Delivers `job` however long it takes, then settles its acknowledgements.
    pub async fn deliver(&self, key: &B::Key, job: Job<B::Request>) -> Tally {
        let mut tally = Tally::default();
        let mut queue = VecDeque::from([job]);
        while let Some(Job { request, mut acks }) = queue.pop_front() {
            let mut rounds = Rounds::default();
            let mut request = Some(request);
            while let Some(r) = request.take() {
                if r.items() == 0 {
                    break;
                }
                match self.attempt(key, r, &mut rounds, &mut tally).await {
                    Step::Done => {}
                    Step::Again(r, delay) => {
                        tokio::time::sleep(delay).await;
                        request = Some(r);
                    }
                    Step::Halved(a, b) => {
                        let b_acks = acks.clone();
                        queue.push_front(Job {
                            request: b,
                            acks: b_acks,
                        });
                        queue.push_front(Job {
                            request: a,
                            acks: std::mem::take(&mut acks),
                        });
                    }
                }
            }
            for ack in acks {
                ack.delivered();
            }
        }
        tally
    }

    async fn attempt(
        &self,
        key: &B::Key,
        mut request: B::Request,
        rounds: &mut Rounds,
        tally: &mut Tally,
    ) -> Step<B::Request> {
        let started = Instant::now();
        let verdict = {
            let _permit = self.in_flight.acquire().await;
            self.backend.send(key, &mut request).await
        };
        let items = request.items() as u64;
        self.stats
            .request(started.elapsed(), !matches!(verdict, Verdict::Retry { .. }));
        match verdict {
            Verdict::Accepted { rejected, why } => {
                let rejected = rejected.min(items);
                if rejected > 0 {
                    self.stats.error(B::ERRORS.items_rejected);
                    tracing::warn!(sink = %self.name, ?key, rejected, of = items, message = %why,
                        "{} was accepted but some items were rejected", B::OPERATION);
                }
                self.stats.batch_size(items as usize);
                self.settle(tally, items - rejected, rejected);
                Step::Done
            }
            Verdict::Retry { after, why } => {
                rounds.failed += 1;
                let attempt = rounds.failed;
                self.stats.count(Outcome::Retried, items);
                self.stats.retry();
                self.stats.error("request_failed");
                // A `Retry-After` is capped, and a zero one still waits a little: a backend that
                // keeps saying "now" must not be called in a tight loop.
                let delay = match after {
                    Some(d) => d.min(self.policy.max_backoff).max(MIN_WAIT),
                    None => backoff(attempt, self.policy.max_backoff),
                };
                // The first failure and then every tenth: a long outage must not flood the log.
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::warn!(sink = %self.name, ?key, attempt,
                        retry_in_ms = delay.as_millis() as u64, error = %why,
                        "{} failed; will retry", B::OPERATION);
                }
                Step::Again(request, delay)
            }
            Verdict::Split { why } if items > 1 => match request.split() {
                Ok((a, b)) => {
                    tracing::debug!(sink = %self.name, ?key, items, error = %why,
                        "request refused; halving it to isolate the item at fault");
                    Step::Halved(a, b)
                }
                Err(_) => {
                    self.refuse(key, items, "request_refused", &why, tally);
                    Step::Done
                }
            },
            Verdict::Split { why } => {
                self.refuse(key, items, B::ERRORS.item_refused, &why, tally);
                Step::Done
            }
            Verdict::Refused { why } => {
                self.refuse(key, items, "request_refused", &why, tally);
                Step::Done
            }
            Verdict::Partial { again, why } => {
                let left = (again.items() as u64).min(items);
                self.settle(tally, items - left, 0);
                rounds.unprocessed += 1;
                let round = rounds.unprocessed;
                self.stats.error(B::ERRORS.unprocessed);
                tracing::warn!(sink = %self.name, ?key, unprocessed = left, of = items, message = %why,
                    round, "{} left items unprocessed", B::OPERATION);
                if round > self.policy.partial_retries {
                    self.stats.error("unprocessed_dropped");
                    self.settle(tally, 0, left);
                    return Step::Done;
                }
                self.stats.count(Outcome::Retried, left);
                Step::Again(again, backoff(round, self.policy.max_backoff))
            }
        }
    }

    fn refuse(&self, key: &B::Key, items: u64, error: &'static str, why: &str, tally: &mut Tally) {
        self.stats.error(error);
        tracing::error!(sink = %self.name, ?key, items, error = %why,
            "{} was refused; its items are counted as rejected and not sent again", B::OPERATION);
        self.settle(tally, 0, items);
    }

    fn settle(&self, tally: &mut Tally, sent: u64, rejected: u64) {
        tally.sent += sent;
        tally.rejected += rejected;
        if B::COUNTS_SENT {
            self.stats.count(Outcome::Sent, sent);
        }
        self.stats.count(Outcome::Rejected, rejected);
    }
}
