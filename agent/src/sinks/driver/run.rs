//! A network sink's loop: take batches, close requests when due, hand them to delivery.

use tokio::time::Instant;

use tokio::sync::mpsc;

use super::backend::{Backend, Job};
use super::dispatch::Dispatch;
use crate::event::{Ack, Event, EventBatch};
use crate::telemetry::Outcome;

/// Closed requests waiting to be submitted, with their keys.
pub type Ready<B> = Vec<(<B as Backend>::Key, Job<<B as Backend>::Request>)>;

/// The sink's own half of the loop: turning events into items of open requests.
///
/// The contract: `take` converts a batch's events into items (counting whatever it drops, as
/// `rejected` or a more specific outcome) and adds them to its [`super::Batches`] with the
/// batch's `ack`. `open` gives the loop those batches (one, or a tuple of several) to end each
/// batch and close requests when they are due. The loop counts `received` and settles the
/// batch's own ack once every request holding its items carries a copy.
pub trait Intake: Send {
    type Backend: Backend;

    fn take(&mut self, events: Vec<Event>, ack: &Ack, ready: &mut Ready<Self::Backend>);
    fn open(&mut self) -> impl Schedule<Self::Backend> + '_;
}

/// Open requests that close with time: [`super::Batches`], or a tuple of them (one per signal).
pub trait Schedule<B: Backend> {
    /// The batch whose items were added since the last call ends: every open request holding
    /// some of them keeps a copy of `ack`.
    fn end_batch(&mut self, ack: &Ack);
    /// Closes the requests whose first item waited the timeout by `now`.
    fn close_due(&mut self, now: Instant, ready: &mut Ready<B>);
    /// When the next one will have.
    fn next_due(&self) -> Option<Instant>;
    /// Closes everything (the input has ended).
    fn close_all(&mut self, ready: &mut Ready<B>);
}

impl<B: Backend, X: Schedule<B>, Y: Schedule<B>> Schedule<B> for (X, Y) {
    fn end_batch(&mut self, ack: &Ack) {
        self.0.end_batch(ack);
        self.1.end_batch(ack);
    }

    fn close_due(&mut self, now: Instant, ready: &mut Ready<B>) {
        self.0.close_due(now, ready);
        self.1.close_due(now, ready);
    }

    fn next_due(&self) -> Option<Instant> {
        earliest(self.0.next_due(), self.1.next_due())
    }

    fn close_all(&mut self, ready: &mut Ready<B>) {
        self.0.close_all(ready);
        self.1.close_all(ready);
    }
}

impl<B: Backend, X: Schedule<B>, Y: Schedule<B>, Z: Schedule<B>> Schedule<B> for (X, Y, Z) {
    fn end_batch(&mut self, ack: &Ack) {
        (&mut self.0, &mut self.1).end_batch(ack);
        self.2.end_batch(ack);
    }

    fn close_due(&mut self, now: Instant, ready: &mut Ready<B>) {
        (&mut self.0, &mut self.1).close_due(now, ready);
        self.2.close_due(now, ready);
    }

    fn next_due(&self) -> Option<Instant> {
        earliest(
            earliest(self.0.next_due(), self.1.next_due()),
            self.2.next_due(),
        )
    }

    fn close_all(&mut self, ready: &mut Ready<B>) {
        (&mut self.0, &mut self.1).close_all(ready);
        self.2.close_all(ready);
    }
}

impl<B: Backend, X: Schedule<B>> Schedule<B> for &mut X {
    fn end_batch(&mut self, ack: &Ack) {
        (**self).end_batch(ack);
    }

    fn close_due(&mut self, now: Instant, ready: &mut Ready<B>) {
        (**self).close_due(now, ready);
    }

    fn next_due(&self) -> Option<Instant> {
        (**self).next_due()
    }

    fn close_all(&mut self, ready: &mut Ready<B>) {
        (**self).close_all(ready);
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeps until `due`, or forever when nothing is due (for `select!` beside an input).
pub async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs until the input closes and everything taken from it is delivered (or the process stops
/// first; undelivered batches are then never acknowledged). It sleeps until a batch arrives or
/// the oldest open request is due: no polling tick while idle.
pub async fn run<I: Intake>(
    mut intake: I,
    mut rx: mpsc::Receiver<EventBatch>,
    mut dispatch: Dispatch<I::Backend>,
) {
    let mut ready: Ready<I::Backend> = Vec::new();
    loop {
        let due = intake.open().next_due();
        tokio::select! {
            batch = rx.recv() => {
                let Some(EventBatch { events, ack }) = batch else { break };
                dispatch.stats().count(Outcome::Received, events.len() as u64);
                intake.take(events, &ack, &mut ready);
                intake.open().end_batch(&ack);
                // Every request holding this batch's items has its own copy of the ack now.
                ack.delivered();
            }
            _ = sleep_until_due(due) => intake.open().close_due(Instant::now(), &mut ready),
        }
        for (key, job) in ready.drain(..) {
            dispatch.submit(key, job).await;
        }
    }
    intake.open().close_all(&mut ready);
    for (key, job) in ready {
        dispatch.submit(key, job).await;
    }
    dispatch.finish().await;
}
