//! How components hand batches on.

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
    pub fn send_blocking(&self, batch: EventBatch) -> Result<(), Closed> {
        let Some((last, rest)) = self.senders.split_last() else {
            return Err(Closed);
        };
        for tx in rest {
            tx.blocking_send(batch.fork()).map_err(|_| Closed)?;
        }
        last.blocking_send(batch).map_err(|_| Closed)
    }
}

/// A source's output: redaction, then the fan-out. Redaction happens here so that no source can
/// forget it and nothing downstream ever holds an unredacted card number.
#[derive(Debug)]
pub struct SourceOutput {
    fanout: Fanout,
    redactor: Arc<Redactor>,
    pub stats: Stats,
}

impl SourceOutput {
    pub fn new(name: &str, fanout: Fanout, redactor: Arc<Redactor>) -> Self {
        Self {
            fanout,
            redactor,
            stats: Stats::new(name),
        }
    }

    /// Sends from a blocking thread; waits while downstream is full.
    pub fn send_blocking(&self, mut events: Vec<Event>, ack: Ack) -> Result<(), Closed> {
        self.redactor.apply(&mut events, &self.stats);
        let n = events.len() as u64;
        self.fanout.send_blocking(EventBatch { events, ack })?;
        self.stats.count(Outcome::Sent, n);
        Ok(())
    }

    /// Sends from async code; waits while downstream is full.
    pub async fn send(&self, mut events: Vec<Event>, ack: Ack) -> Result<(), Closed> {
        self.redactor.apply(&mut events, &self.stats);
        let n = events.len() as u64;
        self.fanout.send(EventBatch { events, ack }).await?;
        self.stats.count(Outcome::Sent, n);
        Ok(())
    }
}
