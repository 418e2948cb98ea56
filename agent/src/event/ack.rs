//! End-to-end acknowledgement. A source attaches an [`Ack`] to each batch; every copy made for a
//! fan-out or for a split into requests shares it. When the last copy is gone the source learns
//! whether *all* of them were delivered. A copy dropped without [`Ack::delivered`] (a sink shut
//! down with the data unsent) marks the whole batch undelivered, so the source never advances
//! its checkpoint past data that is not safely somewhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

/// What the source hears back for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    Delivered,
    Undelivered,
}

/// Receives `(batch id, status)` for the batches a source sent.
pub type AckReceiver = mpsc::UnboundedReceiver<(u64, AckStatus)>;

/// A channel for one source; `Ack::new` tokens made from the sender report into it.
pub fn ack_channel() -> (mpsc::UnboundedSender<(u64, AckStatus)>, AckReceiver) {
    mpsc::unbounded_channel()
}

struct Shared {
    id: u64,
    failed: AtomicBool,
    notify: Option<mpsc::UnboundedSender<(u64, AckStatus)>>,
    /// Acknowledgements of the inputs this batch was made from (a processor that aggregates or
    /// holds events): they settle as this one does.
    held: Vec<Ack>,
    /// Released with the batch (a share of the memory limit).
    guard: std::sync::Mutex<Option<Box<dyn Send + Sync>>>,
    position: OnceLock<Position>,
}

/// Where a batch's events were read, for sources that read them again after a crash (files
/// re-read from their checkpoint): `origin` names one sequence of positions (source and file),
/// `ends[i]` is the position just after event `i`. A disk buffer that already holds events up
/// to a position drops the copies read again, so a crash between a batch becoming durable and
/// the source's checkpoint being written does not duplicate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub origin: String,
    pub ends: Vec<u64>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.held);
        if !self.failed.load(Ordering::Acquire) {
            held.into_iter().for_each(Ack::delivered);
        }
        // Undelivered: dropping the held shares marks their batches undelivered too.
        if let Some(tx) = &self.notify {
            let status = if self.failed.load(Ordering::Acquire) {
                AckStatus::Undelivered
            } else {
                AckStatus::Delivered
            };
            // The source may be gone (shutdown); then nobody needs to know.
            let _ = tx.send((self.id, status));
        }
    }
}

/// One holder's share of a batch acknowledgement.
pub struct Ack {
    shared: Arc<Shared>,
    settled: bool,
}

impl Ack {
    /// A token that reports batch `id` to `notify` once every copy is settled.
    pub fn new(id: u64, notify: mpsc::UnboundedSender<(u64, AckStatus)>) -> Self {
        Self {
            shared: Arc::new(Shared {
                id,
                failed: AtomicBool::new(false),
                notify: Some(notify),
                held: Vec::new(),
                guard: std::sync::Mutex::new(None),
                position: OnceLock::new(),
            }),
            settled: false,
        }
    }

    /// A token nobody listens to (data whose source needs no acknowledgement).
    pub fn none() -> Self {
        Self {
            shared: Arc::new(Shared {
                id: 0,
                failed: AtomicBool::new(false),
                notify: None,
                held: Vec::new(),
                guard: std::sync::Mutex::new(None),
                position: OnceLock::new(),
            }),
            settled: false,
        }
    }

    /// A token for a batch made from several inputs (span metrics, sampled traces): once every
    /// copy of it is delivered, each of `inputs` is delivered; if any copy is dropped unsent,
    /// every input is undelivered.
    pub fn merged(inputs: Vec<Ack>) -> Self {
        // The inputs' events were consumed (counted, or moved into this batch, which gets its
        // own share when it is buffered): holding their memory share until a window of span
        // metrics is delivered would stall sources for a whole window at the memory limit.
        for input in &inputs {
            if let Ok(mut slot) = input.shared.guard.lock() {
                slot.take();
            }
        }
        Self {
            shared: Arc::new(Shared {
                id: 0,
                failed: AtomicBool::new(false),
                notify: None,
                held: inputs,
                guard: std::sync::Mutex::new(None),
                position: OnceLock::new(),
            }),
            settled: false,
        }
    }

    /// This copy's data reached its destination.
    pub fn delivered(mut self) {
        self.settled = true;
    }

    /// Keeps `guard` alive until every copy of the batch is settled (e.g. the batch's share of
    /// the memory limit). A batch holds one guard; later ones are dropped at once.
    pub fn hold(&self, guard: impl Send + Sync + 'static) {
        if let Ok(mut slot) = self.shared.guard.lock()
            && slot.is_none()
        {
            *slot = Some(Box::new(guard));
        }
    }

    /// Records where the batch's events were read (see [`Position`]); set once, by the source.
    pub fn set_position(&self, position: Position) {
        let _ = self.shared.position.set(position);
    }

    pub fn position(&self) -> Option<&Position> {
        self.shared.position.get()
    }

    /// Whether two tokens belong to the same batch (to keep one copy per batch in a request).
    pub fn same_batch(&self, other: &Ack) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            settled: false,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.failed.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack")
            .field("batch", &self.shared.id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_delivered_only_when_every_copy_is_delivered() {
        let (tx, mut rx) = ack_channel();
        let a = Ack::new(7, tx.clone());
        let b = a.clone();
        a.delivered();
        assert!(rx.try_recv().is_err(), "one copy still out");
        b.delivered();
        assert_eq!(rx.try_recv().unwrap(), (7, AckStatus::Delivered));

        let c = Ack::new(8, tx);
        let d = c.clone();
        c.delivered();
        drop(d);
        assert_eq!(rx.try_recv().unwrap(), (8, AckStatus::Undelivered));
    }

    #[test]
    fn merged_ack_settles_its_inputs() {
        let (tx, mut rx) = ack_channel();
        let merged = Ack::merged(vec![Ack::new(1, tx.clone()), Ack::new(2, tx.clone())]);
        let copy = merged.clone();
        merged.delivered();
        assert!(rx.try_recv().is_err(), "a copy of the output is still out");
        copy.delivered();
        let mut got = vec![rx.try_recv().unwrap(), rx.try_recv().unwrap()];
        got.sort_by_key(|(id, _)| *id);
        assert_eq!(
            got,
            vec![(1, AckStatus::Delivered), (2, AckStatus::Delivered)]
        );

        let lost = Ack::merged(vec![Ack::new(3, tx)]);
        drop(lost);
        assert_eq!(rx.try_recv().unwrap(), (3, AckStatus::Undelivered));
    }
}
