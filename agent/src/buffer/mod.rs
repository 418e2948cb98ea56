//! Buffers in front of sinks, and the global memory bound.
//!
//! Every sink reads from a buffer, declared under `[sinks.NAME.buffer]`:
//!
//! - `type = "memory"`: a queue of a few batches; a batch is acknowledged to its source only
//!   once the sink delivered it, so a crash re-reads it from the source. A stalled sink fills
//!   its queue and then holds back its sources (and the other sinks they feed).
//! - `type = "disk"` ([`disk`]): batches are appended to checksummed segment files and
//!   acknowledged to their source once fsynced; the sink is fed from the files, and the files
//!   are deleted once delivered. A stalled sink fills its own buffer up to `max_bytes` while the
//!   other sinks go on; then `when_full` decides: `block` (backpressure to the sources) or
//!   `drop_oldest` (counted). Network sinks default to disk.

pub mod disk;
pub mod limit;
pub mod segment;
#[cfg(test)]
mod tests;

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::event::EventBatch;
use crate::telemetry::Stats;
pub use disk::DiskBuffer;
pub use limit::MemoryLimit;
use vigil_common::config_error::{Errors, KeyPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    Memory,
    Disk,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The sources wait until the sink delivers (nothing is lost).
    #[default]
    Block,
    /// The oldest undelivered segment is deleted to make room (counted as `buffer_dropped`).
    DropOldest,
}

/// `[sinks.NAME.buffer]` as written; `type` defaults per sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBufferConfig {
    #[serde(rename = "type")]
    pub kind: Option<BufferKind>,
    pub max_bytes: Option<u64>,
    pub when_full: Option<WhenFull>,
}

/// A sink's buffer, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferConfig {
    pub kind: BufferKind,
    /// Disk buffers: most bytes of segment files.
    pub max_bytes: u64,
    pub when_full: WhenFull,
}

pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
const MIN_MAX_BYTES: u64 = 1 << 20;

impl BufferConfig {
    pub fn memory() -> Self {
        Self {
            kind: BufferKind::Memory,
            max_bytes: DEFAULT_MAX_BYTES,
            when_full: WhenFull::Block,
        }
    }

    pub fn disk(max_bytes: u64) -> Self {
        Self {
            kind: BufferKind::Disk,
            max_bytes,
            when_full: WhenFull::Block,
        }
    }

    /// Applies the sink's default kind and checks the values.
    pub(crate) fn resolve(
        raw: RawBufferConfig,
        default: BufferKind,
        path: &KeyPath,
        errs: &mut Errors<'_>,
    ) -> Self {
        let kind = raw.kind.unwrap_or(default);
        let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        if max_bytes < MIN_MAX_BYTES {
            errs.push(
                &path.key("max_bytes"),
                format!("must be at least {MIN_MAX_BYTES} (1 MiB)"),
            );
        }
        if kind == BufferKind::Memory && (raw.max_bytes.is_some() || raw.when_full.is_some()) {
            errs.push(
                path,
                "max_bytes and when_full apply to disk buffers only (a memory buffer is bounded by memory_limit_bytes)",
            );
        }
        Self {
            kind,
            max_bytes,
            when_full: raw.when_full.unwrap_or_default(),
        }
    }
}

/// Puts the sink's buffer between its input queue and the sink; returns what the sink reads.
/// Disk buffers live in `data_dir/buffers/NAME` (NAME: the sink's, from `stats`).
pub fn attach(
    config: &BufferConfig,
    data_dir: &Path,
    input: mpsc::Receiver<EventBatch>,
    memory: MemoryLimit,
    stats: Stats,
    abandon: &tokio_util::sync::CancellationToken,
    tasks: &mut JoinSet<String>,
) -> anyhow::Result<mpsc::Receiver<EventBatch>> {
    match config.kind {
        BufferKind::Memory => Ok(input),
        BufferKind::Disk => {
            let name = stats.component().to_owned();
            let dir = data_dir.join("buffers").join(&name);
            let buffer = DiskBuffer::open(&name, &dir, config, stats)
                .with_context(|| format!("open disk buffer {}", dir.display()))?;
            Ok(buffer.start(input, memory, abandon.clone(), tasks))
        }
    }
}
