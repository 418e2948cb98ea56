//! Handing closed requests to delivery tasks: how many at once, and in what order.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::backend::{Backend, Job};
use super::delivery::{Delivery, RetryPolicy};
use super::settings::RequestSettings;
use crate::telemetry::Stats;

/// Whether requests of one key may overtake each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// Up to the delivery's concurrency of requests in flight, of any keys, finishing in any
    /// order.
    Shared,
    /// One request of a key in flight at a time, in the order they were closed (CloudWatch
    /// Logs streams); up to `queue` more wait per key. Keys go on side by side, within the
    /// delivery's concurrency limit.
    PerKey { queue: usize },
}

/// Where closed requests go. [`Dispatch::submit`] waits while the limit is reached: that is the
/// sink's backpressure (it stops reading its input, which slows the sources).
pub struct Dispatch<B: Backend> {
    delivery: Arc<Delivery<B>>,
    lanes: Lanes,
    /// `Shared`: one permit per request in flight.
    slots: Arc<Semaphore>,
    /// `PerKey`: the queue of each key's lane.
    queues: HashMap<B::Key, mpsc::Sender<Job<B::Request>>>,
    tasks: JoinSet<()>,
}

impl<B: Backend> Dispatch<B> {
    /// A sink's dispatch: `backend` sent as `request` says (concurrency, backoff cap), giving
    /// unprocessed items `partial_retries` more rounds.
    pub fn start(
        name: &str,
        backend: B,
        stats: Stats,
        request: RequestSettings,
        partial_retries: u32,
        lanes: Lanes,
    ) -> Self {
        let policy = RetryPolicy {
            max_backoff: request.max_backoff,
            partial_retries,
        };
        let delivery = Delivery::new(name, Arc::new(backend), stats, policy, request.concurrency);
        Self::new(delivery, lanes)
    }

    /// [`Dispatch::start`] for the common case: shared lanes, no unprocessed items.
    pub fn shared(name: &str, backend: B, stats: Stats, request: RequestSettings) -> Self {
        Self::start(name, backend, stats, request, 0, Lanes::Shared)
    }

    pub fn new(delivery: Delivery<B>, lanes: Lanes) -> Self {
        let permits = match lanes {
            Lanes::Shared => delivery.concurrency,
            Lanes::PerKey { .. } => 0,
        };
        Self {
            delivery: Arc::new(delivery),
            lanes,
            slots: Arc::new(Semaphore::new(permits)),
            queues: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// The sink's counters.
    pub fn stats(&self) -> &Stats {
        &self.delivery.stats
    }

    /// Starts delivering `job`, waiting first if the limit is reached.
    pub async fn submit(&mut self, key: B::Key, job: Job<B::Request>) {
        match self.lanes {
            Lanes::Shared => {
                let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else {
                    return;
                };
                let delivery = Arc::clone(&self.delivery);
                self.tasks.spawn(async move {
                    delivery.deliver(&key, job).await;
                    drop(permit);
                });
                while self.tasks.try_join_next().is_some() {}
            }
            Lanes::PerKey { queue } => {
                let tx = match self.queues.get(&key) {
                    Some(tx) => tx.clone(),
                    None => {
                        let (tx, rx) = mpsc::channel(queue.max(1));
                        let delivery = Arc::clone(&self.delivery);
                        self.tasks.spawn(lane(delivery, key.clone(), rx));
                        self.queues.insert(key, tx.clone());
                        tx
                    }
                };
                // A lane only ends when its queue is closed, which happens in `finish`.
                let _ = tx.send(job).await;
            }
        }
    }

    /// Waits until everything submitted is delivered.
    pub async fn finish(mut self) {
        self.queues.clear();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// One key's requests, delivered one after the other.
async fn lane<B: Backend>(
    delivery: Arc<Delivery<B>>,
    key: B::Key,
    mut rx: mpsc::Receiver<Job<B::Request>>,
) {
    let backend = Arc::clone(&delivery.backend);
    let mut state = B::Lane::default();
    while let Some(job) = rx.recv().await {
        for job in backend.admit(&key, &mut state, job).await {
            delivery.deliver(&key, job).await;
        }
    }
    for job in backend.release(&key, state) {
        delivery.deliver(&key, job).await;
    }
}
