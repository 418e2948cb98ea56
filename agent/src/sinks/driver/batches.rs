//! Gathering items into requests, per key, cut by the backend's limits, a count, and age; and
//! handing each closed request the acknowledgements of the batches it holds items of.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use super::backend::{Backend, Job, Payload};
use super::run::{Ready, Schedule};
use crate::event::Ack;

/// An item larger than a whole request may be: it can never be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// A request being filled.
///
/// The contract: `add` takes the item, or, when it does not fit beside the items already there,
/// returns those closed as a request and starts again with the item (`Ok(Some(full))`); an item
/// that would not fit even alone is refused (`Err(TooLarge)`) and the open request is unchanged.
/// `take` closes what is there (the open request is empty afterwards) and is only called when
/// `len() > 0`.
pub trait Open {
    type Item;
    type Request: Payload;

    fn add(&mut self, item: Self::Item) -> Result<Option<Self::Request>, TooLarge>;
    fn len(&self) -> usize;
    fn take(&mut self) -> Self::Request;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request that is a list of items, closed by count and age only.
impl<T: Send + 'static> Open for Vec<T> {
    type Item = T;
    type Request = Vec<T>;

    fn add(&mut self, item: T) -> Result<Option<Vec<T>>, TooLarge> {
        self.push(item);
        Ok(None)
    }

    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn take(&mut self) -> Vec<T> {
        std::mem::take(self)
    }
}

/// One key's open request and the batches with items in it.
struct Slot<O> {
    open: O,
    acks: Vec<Ack>,
    /// The batch being taken put items into `open` (its ack is added when the batch ends).
    has_current: bool,
    /// When the open request got its first item.
    started: Option<Instant>,
}

/// Open requests by key.
///
/// For every batch: `add` its items, then `end_batch` with its ack. Each closed request carries
/// a copy of the ack of every batch it holds items of, so a batch is acknowledged only when the
/// last request holding its items is delivered, whichever that is; the caller then settles its
/// own copy.
pub struct Batches<K, O> {
    slots: HashMap<K, Slot<O>>,
    /// Keys that got items from the batch being taken.
    touched: Vec<K>,
    /// Makes the open request of a new key.
    make: Box<dyn Fn() -> O + Send>,
    max_items: usize,
    timeout: Duration,
    /// No request opened before this is still open (it may be earlier than needed: a wake-up
    /// then finds nothing due).
    oldest: Option<Instant>,
}

impl<K: Clone + Eq + Hash, O: Open> Batches<K, O> {
    /// `make`: an open request without items, for each new key. A request closes when it holds
    /// `max_items` items or its first item waited `timeout`, besides `O`'s own limits.
    pub fn new(make: impl Fn() -> O + Send + 'static, max_items: usize, timeout: Duration) -> Self {
        Self {
            slots: HashMap::new(),
            touched: Vec::new(),
            make: Box::new(make),
            max_items: max_items.max(1),
            timeout,
            oldest: None,
        }
    }

    /// Whether `key` has been seen (its lane exists).
    pub fn contains(&self, key: &K) -> bool {
        self.slots.contains_key(key)
    }

    /// Adds an item of the batch whose ack is `ack`; requests that fill up go to `ready`.
    pub fn add(
        &mut self,
        key: &K,
        item: O::Item,
        ack: &Ack,
        ready: &mut Vec<(K, Job<O::Request>)>,
    ) -> Result<(), TooLarge> {
        if !self.slots.contains_key(key) {
            let slot = Slot {
                open: (self.make)(),
                acks: Vec::new(),
                has_current: false,
                started: None,
            };
            self.slots.insert(key.clone(), slot);
        }
        let slot = self.slots.get_mut(key).expect("inserted above");
        let now = Instant::now();
        if let Some(full) = slot.open.add(item)? {
            // The item that did not fit opens the next request: this batch goes on there too.
            let mut acks = std::mem::take(&mut slot.acks);
            if slot.has_current {
                acks.push(ack.clone());
            }
            ready.push((
                key.clone(),
                Job {
                    request: full,
                    acks,
                },
            ));
            slot.started = Some(now);
        }
        if !slot.has_current {
            slot.has_current = true;
            self.touched.push(key.clone());
        }
        if slot.started.is_none() {
            slot.started = Some(now);
            self.oldest = Some(self.oldest.map_or(now, |o| o.min(now)));
        }
        if slot.open.len() >= self.max_items {
            slot.acks.push(ack.clone());
            slot.has_current = false;
            ready.push((key.clone(), close(slot)));
        }
        Ok(())
    }
}

impl<B: Backend, O: Open<Request = B::Request>> Schedule<B> for Batches<B::Key, O> {
    fn end_batch(&mut self, ack: &Ack) {
        for key in self.touched.drain(..) {
            if let Some(slot) = self.slots.get_mut(&key)
                && slot.has_current
            {
                slot.acks.push(ack.clone());
                slot.has_current = false;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.timeout)
    }

    fn close_due(&mut self, now: Instant, ready: &mut Ready<B>) {
        let mut oldest: Option<Instant> = None;
        for (key, slot) in &mut self.slots {
            let Some(started) = slot.started else {
                continue;
            };
            if now.duration_since(started) >= self.timeout {
                ready.push((key.clone(), close(slot)));
            } else {
                oldest = Some(oldest.map_or(started, |o| o.min(started)));
            }
        }
        self.oldest = oldest;
    }

    fn close_all(&mut self, ready: &mut Ready<B>) {
        for (key, slot) in &mut self.slots {
            if !slot.open.is_empty() {
                ready.push((key.clone(), close(slot)));
            }
        }
        self.oldest = None;
    }
}

fn close<O: Open>(slot: &mut Slot<O>) -> Job<O::Request> {
    slot.started = None;
    Job {
        request: slot.open.take(),
        acks: std::mem::take(&mut slot.acks),
    }
}
