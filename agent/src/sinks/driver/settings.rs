//! The settings every network sink takes for the driver, each in a table of its own:
//!
//! ```toml
//! [sinks.logs.batch]      # when a request is closed
//! max_events = 10000
//! max_bytes = 1048576
//! timeout_ms = 1000
//!
//! [sinks.logs.request]    # how requests are sent
//! concurrency = 4
//! timeout_ms = 15000
//! max_backoff_ms = 30000
//! ```
//!
//! A key left out takes the sink's default ([`BatchLimits`], [`RequestDefaults`]); a value
//! outside what the backend allows is refused at load time, naming the key.

use std::time::Duration;

use serde::Deserialize;
use vigil_common::config_error::{Errors, KeyPath};

/// `batch`, as written.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most items in one request.
    pub max_events: Option<usize>,
    /// Most bytes in one request (sinks whose backend limits bytes).
    pub max_bytes: Option<usize>,
    /// How long the first item of a request may wait for a fuller one.
    pub timeout_ms: Option<u64>,
}

/// What a sink allows in `batch`, and its defaults.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// (default, largest allowed)
    pub max_events: (usize, usize),
    /// (default, smallest, largest allowed); `None` when the sink has no byte limit to set.
    pub max_bytes: Option<(usize, usize, usize)>,
    pub timeout_ms: u64,
}

impl BatchLimits {
    /// A sink whose requests are limited by their count only (the backend's own byte limit is
    /// kept by the request itself): `max_events` is both the default and the largest allowed.
    pub const fn by_count(max_events: usize, timeout_ms: u64) -> BatchLimits {
        BatchLimits {
            max_events: (max_events, max_events),
            max_bytes: None,
            timeout_ms,
        }
    }
}

/// `batch`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub max_events: usize,
    /// `usize::MAX` for sinks without a byte limit to set.
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl BatchSettings {
    /// The same, with at most `max_events` items a request (a signal with a lower limit).
    pub fn at_most(self, max_events: usize) -> BatchSettings {
        BatchSettings {
            max_events: self.max_events.min(max_events),
            ..self
        }
    }
}

impl BatchConfig {
    pub fn resolve(&self, limits: &BatchLimits) -> BatchSettings {
        BatchSettings {
            max_events: self.max_events.unwrap_or(limits.max_events.0),
            max_bytes: match limits.max_bytes {
                Some((default, ..)) => self.max_bytes.unwrap_or(default),
                None => usize::MAX,
            },
            timeout: Duration::from_millis(self.timeout_ms.unwrap_or(limits.timeout_ms)),
        }
    }

    /// `path` is the sink's; errors name `batch.<key>`.
    pub fn validate(&self, limits: &BatchLimits, path: &KeyPath, errs: &mut Errors<'_>) {
        let path = path.key("batch");
        if let Some(n) = self.max_events {
            errs.within(&path, &[("max_events", n, 1, limits.max_events.1)]);
        }
        match (self.max_bytes, limits.max_bytes) {
            (Some(n), Some((_, lo, hi))) => errs.within(&path, &[("max_bytes", n, lo, hi)]),
            (Some(_), None) => errs.push(
                &path.key("max_bytes"),
                "this sink's requests are limited by `max_events` only",
            ),
            (None, _) => {}
        }
        if let Some(ms) = self.timeout_ms {
            errs.positive(&path, &[("timeout_ms", ms)]);
        }
    }
}

/// A sink config with `batch` and `request` tables, and the sink's defaults for them.
pub trait Settings {
    const BATCH: BatchLimits;
    const REQUEST: RequestDefaults;

    /// Its `batch` and `request` tables, as written.
    fn tables(&self) -> (&BatchConfig, &RequestConfig);

    fn batch_settings(&self) -> BatchSettings {
        self.tables().0.resolve(&Self::BATCH)
    }

    fn request_settings(&self) -> RequestSettings {
        self.tables().1.resolve(&Self::REQUEST)
    }

    /// Records what is wrong in either table (`path` is the sink's).
    fn validate_settings(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        let (batch, request) = self.tables();
        batch.validate(&Self::BATCH, path, errs);
        request.validate(path, errs);
    }
}

/// `request`, as written.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Requests in flight at once.
    pub concurrency: Option<usize>,
    /// Timeout of one attempt.
    pub timeout_ms: Option<u64>,
    /// Cap of the exponential backoff between attempts (and of a `Retry-After`).
    pub max_backoff_ms: Option<u64>,
}

/// A sink's defaults for `request`.
#[derive(Debug, Clone, Copy)]
pub struct RequestDefaults {
    pub concurrency: usize,
    pub timeout_ms: u64,
    pub max_backoff_ms: u64,
}

impl RequestDefaults {
    /// What most sinks use: 4 in flight, 15 s per attempt, backoff up to 30 s.
    pub const NETWORK: RequestDefaults = RequestDefaults {
        concurrency: 4,
        timeout_ms: 15_000,
        max_backoff_ms: 30_000,
    };
}

/// `request`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSettings {
    pub concurrency: usize,
    pub timeout: Duration,
    pub max_backoff: Duration,
}

/// Most requests in flight at once that any sink allows.
const MAX_CONCURRENCY: usize = 256;

impl RequestConfig {
    pub fn resolve(&self, defaults: &RequestDefaults) -> RequestSettings {
        RequestSettings {
            concurrency: self.concurrency.unwrap_or(defaults.concurrency),
            timeout: Duration::from_millis(self.timeout_ms.unwrap_or(defaults.timeout_ms)),
            max_backoff: Duration::from_millis(
                self.max_backoff_ms.unwrap_or(defaults.max_backoff_ms),
            ),
        }
    }

    /// `path` is the sink's; errors name `request.<key>`.
    pub fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        let path = path.key("request");
        if let Some(n) = self.concurrency {
            errs.within(&path, &[("concurrency", n, 1, MAX_CONCURRENCY)]);
        }
        for (key, value) in [
            ("timeout_ms", self.timeout_ms),
            ("max_backoff_ms", self.max_backoff_ms),
        ] {
            if let Some(ms) = value {
                errs.positive(&path, &[(key, ms)]);
            }
        }
    }
}
