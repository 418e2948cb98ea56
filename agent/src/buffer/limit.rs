//! The global bound on event data held in memory. Sources take a share before handing a batch
//! on and give it back when every copy of the batch is settled (for a disk-buffered sink: once
//! the batch is on disk); disk buffer readers take from their own share for what they hand to
//! their sink. At the limit sources wait, so a backlog grows on disk, never in memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Accounting unit: permits are KiB, so limits above 4 GiB still fit a semaphore's u32 asks.
const UNIT: u64 = 1024;

#[derive(Debug, Clone)]
pub struct MemoryLimit {
    sem: Arc<Semaphore>,
    units: u32,
}

impl MemoryLimit {
    pub fn new(bytes: u64) -> Self {
        let units = (bytes / UNIT).clamp(1, u32::MAX as u64) as u32;
        Self {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// A batch larger than the whole limit takes all of it (and waits until all is free)
    /// rather than waiting forever.
    fn units(&self, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, self.units as u64) as u32
    }

    /// Waits until `bytes` are free and takes them; they return when the permit drops.
    pub async fn acquire(&self, bytes: u64) -> OwnedSemaphorePermit {
        Arc::clone(&self.sem)
            .acquire_many_owned(self.units(bytes))
            .await
            .expect("the semaphore is never closed")
    }

    /// Takes `bytes` if they are free now.
    pub fn try_acquire(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        match Arc::clone(&self.sem).try_acquire_many_owned(self.units(bytes)) {
            Ok(p) => Some(p),
            Err(TryAcquireError::NoPermits) | Err(TryAcquireError::Closed) => None,
        }
    }

    /// The whole limit, in bytes.
    pub fn total(&self) -> u64 {
        self.units as u64 * UNIT
    }

    /// Bytes currently free.
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_and_returns_shares_and_caps_a_huge_ask() {
        let m = MemoryLimit::new(10 * 1024);
        let a = m.try_acquire(6 * 1024).unwrap();
        assert!(m.try_acquire(6 * 1024).is_none(), "over the limit");
        drop(a);
        let all = m
            .try_acquire(1 << 40)
            .expect("a huge batch takes the whole limit");
        assert_eq!(m.available(), 0);
        drop(all);
        assert_eq!(m.available(), 10 * 1024);
    }
}
