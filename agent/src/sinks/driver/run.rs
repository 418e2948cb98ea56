//! A network sink's loop: take batches, close requests when due, hand them to delivery.

use tokio::time::Instant;

use tokio::sync::mpsc;

use super::backend::{Backend, Job};
use super::dispatch::Dispatch;
use crate::event::EventBatch;

/// Closed requests waiting to be submitted, with their keys.
pub type Ready<B> = Vec<(<B as Backend>::Key, Job<<B as Backend>::Request>)>;

/// The sink's own half of the loop: turning events into items of open requests.
///
/// The contract: `take` converts a batch's events (counting `received` and whatever it drops),
/// adds them to its [`super::Batches`], ends the batch there and then settles the batch's own
/// ack: every request holding its items carries a copy by then. `close_due` closes the requests
/// that waited long enough by `now`; `next_due` says when the next one will have; `close_all`
/// closes everything (the input has ended).
pub trait Intake: Send {
    type Backend: Backend;

    fn take(&mut self, batch: EventBatch, ready: &mut Ready<Self::Backend>);
    fn close_due(&mut self, now: Instant, ready: &mut Ready<Self::Backend>);
    fn next_due(&self) -> Option<Instant>;
    fn close_all(&mut self, ready: &mut Ready<Self::Backend>);
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
        let due = intake.next_due();
        let wait = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                intake.take(batch, &mut ready);
            }
            _ = wait => intake.close_due(Instant::now(), &mut ready),
        }
        for (key, job) in ready.drain(..) {
            dispatch.submit(key, job).await;
        }
    }
    intake.close_all(&mut ready);
    for (key, job) in ready {
        dispatch.submit(key, job).await;
    }
    dispatch.finish().await;
}
