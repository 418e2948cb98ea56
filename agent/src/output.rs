//! How components hand batches on: a source's output (redaction, memory limit, fan-out) and the
//! fan-out every processor writes to. Sources and processors depend on this module; the
//! pipeline that wires them together depends on them, never the reverse.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::{Ack, Event, EventBatch};
use crate::redaction::Redactor;
use crate::telemetry::{Outcome, Stats};

/// The queues of every component reading one output.
#[derive(Debug)]
pub struct Fanout {
    senders: Vec<mpsc::Sender<EventBatch>>,
}

/// Every reader of this output is gone (shutdown).
#[derive(Debug)]
pub struct Closed;

impl Fanout {
    pub fn new(senders: Vec<mpsc::Sender<EventBatch>>) -> Self {
        Self { senders }
    }

    /// Sends a copy to each reader, waiting while a reader's queue is full.
    pub async fn send(&self, batch: EventBatch) -> Result<(), Closed> {
        let Some((last, rest)) = self.senders.split_last() else {
            return Err(Closed);
        };
        for tx in rest {
            tx.send(batch.fork()).await.map_err(|_| Closed)?;
        }
        last.send(batch).await.map_err(|_| Closed)
    }

    /// As [`Fanout::send`], from a thread outside the async runtime (file reading threads).
    /// While a reader's queue is full, `waiting` is called between attempts, so the thread
    /// can keep doing its bookkeeping (applying acknowledgements, writing checkpoints).
    pub fn send_blocking(
        &self,
        batch: EventBatch,
        mut waiting: impl FnMut(),
    ) -> Result<(), Closed> {
        let Some((last, rest)) = self.senders.split_last() else {
            return Err(Closed);
        };
        let mut send = |tx: &mpsc::Sender<EventBatch>, mut b: EventBatch| loop {
            match tx.try_send(b) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Closed),
                Err(mpsc::error::TrySendError::Full(back)) => {
                    b = back;
                    waiting();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        };
        for tx in rest {
            send(tx, batch.fork())?;
        }
        send(last, batch)
    }
}

/// A source's output: redaction, then the fan-out. Redaction happens here so that no source can
/// forget it and nothing downstream ever holds an unredacted card number.
#[derive(Debug)]
pub struct SourceOutput {
    fanout: Fanout,
    redactor: Arc<Redactor>,
    pub stats: Stats,
    /// The sources' share of `memory_limit_bytes`; a batch holds its part until settled.
    memory: Option<crate::buffer::MemoryLimit>,
}

impl SourceOutput {
    pub fn new(name: &str, fanout: Fanout, redactor: Arc<Redactor>) -> Self {
        Self {
            fanout,
            redactor,
            stats: Stats::new(name),
            memory: None,
        }
    }

    /// Makes every batch wait for, and hold until settled, its size in `memory`.
    pub fn with_memory_limit(mut self, memory: crate::buffer::MemoryLimit) -> Self {
        self.memory = Some(memory);
        self
    }

    /// The sources' share of the memory limit, if one is set.
    pub fn memory(&self) -> Option<&crate::buffer::MemoryLimit> {
        self.memory.as_ref()
    }

    /// Sends from a blocking thread; while downstream is full, calls `waiting` between tries.
    pub fn send_blocking(
        &self,
        mut events: Vec<Event>,
        ack: Ack,
        waiting: impl FnMut(),
    ) -> Result<(), Closed> {
        self.redactor.apply(&mut events, &self.stats);
        let n = events.len() as u64;
        let mut waiting = waiting;
        if let Some(memory) = &self.memory {
            let bytes = events.iter().map(|e| e.size_hint() as u64).sum();
            let permit = loop {
                if let Some(p) = memory.try_acquire(bytes) {
                    break p;
                }
                waiting();
                std::thread::sleep(std::time::Duration::from_millis(2));
            };
            ack.hold(permit);
        }
        self.fanout
            .send_blocking(EventBatch { events, ack }, waiting)?;
        self.stats.count(Outcome::Sent, n);
        Ok(())
    }

    /// Sends from async code; waits while downstream is full.
    pub async fn send(&self, mut events: Vec<Event>, ack: Ack) -> Result<(), Closed> {
        self.redactor.apply(&mut events, &self.stats);
        let n = events.len() as u64;
        if let Some(memory) = &self.memory {
            let bytes = events.iter().map(|e| e.size_hint() as u64).sum();
            ack.hold(memory.acquire(bytes).await);
        }
        self.fanout.send(EventBatch { events, ack }).await?;
        self.stats.count(Outcome::Sent, n);
        Ok(())
    }
}
