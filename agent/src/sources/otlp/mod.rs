//! `type = "otlp"`: receives OTLP traces, metrics and logs over gRPC (default
//! `127.0.0.1:4317`) and HTTP (default `127.0.0.1:4318`, protobuf and JSON).
//!
//! When a request is answered: success means its items are decoded into events and handed to
//! the pipeline's queues (the queue of every component reading this source has them). From
//! there on delivery is the pipeline's job (and, with a disk buffer, survives a restart);
//! before, nothing is kept, so an error answer always means "not taken".
//!
//! Backpressure follows the OTLP spec: a request waits at most `backpressure_wait_ms` for room
//! in the queues; if the pipeline is still full the client is told to retry later (HTTP 503
//! with `Retry-After`, gRPC `UNAVAILABLE` with `RetryInfo`). At most `max_concurrent_requests`
//! are decoded or waiting at once; more get the same answer immediately. So memory stays
//! bounded however much clients send.
//!
//! Items that cannot become events (malformed ids, points without values) are left out and
//! reported in the answer's `partial_success`; a body that cannot be decoded at all is refused
//! (HTTP 400, gRPC `INVALID_ARGUMENT`).

mod config;
mod grpc;
mod http;
mod prescan;

pub use config::OtlpSourceConfig;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::event::{Ack, Event};
use crate::otlp::Rejected;
use crate::output::SourceOutput;
use crate::telemetry::{Outcome, Stats};

/// The signals OTLP carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

/// Why a request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The pipeline stayed full (or too many requests are waiting): retry later.
    Busy,
    /// The agent is shutting down: retry later (elsewhere).
    ShuttingDown,
}

/// What both servers share: the pipeline entry and its limits.
pub struct Ingest {
    out: SourceOutput,
    stats: Stats,
    wait: Duration,
    slots: Semaphore,
    pub max_request_bytes: usize,
    pub retry_after: Duration,
}

/// A request's room: its slot among `max_concurrent_requests`, and its share of the memory
/// limit, taken before its body is read and held until its events are decoded.
pub struct Admission<'a> {
    _slot: tokio::sync::SemaphorePermit<'a>,
    memory: Vec<tokio::sync::OwnedSemaphorePermit>,
    /// Bytes the request may decode into (its memory share).
    pub budget: usize,
}

impl Admission<'_> {
    /// Gives the memory share back (the decoded events take their own when queued); the slot
    /// stays taken until the request is answered.
    pub fn release_memory(&mut self) {
        self.memory.clear();
    }
}

/// How many bytes of events one body byte may decode into before the request is refused:
/// realistic spans and metrics take 3–8×; tiny items repeating a long scope name take far more.
const DECODE_FACTOR: usize = 16;

impl Ingest {
    /// Room for a request whose body is (at most) `body_bytes`, or `Busy` when
    /// `max_concurrent_requests` are in or the memory share is taken. Nothing is read before.
    pub fn admit(&self, body_bytes: usize) -> Result<Admission<'_>, Refusal> {
        let slot = self.slots.try_acquire().map_err(|_| {
            self.stats.error("too_many_requests");
            Refusal::Busy
        })?;
        let mut admission = Admission {
            _slot: slot,
            memory: Vec::new(),
            budget: 0,
        };
        self.grow(&mut admission, body_bytes)?;
        Ok(admission)
    }

    /// Enlarges a request's memory share for a body of `body_bytes` (a gzip body, once
    /// decompressed); `Busy` when that much is not free now.
    pub fn grow(&self, admission: &mut Admission<'_>, body_bytes: usize) -> Result<(), Refusal> {
        let want = body_bytes.max(64 << 10).saturating_mul(DECODE_FACTOR);
        let Some(limit) = self.out.memory() else {
            admission.budget = admission.budget.max(want);
            return Ok(());
        };
        let want = want.min(limit.total() as usize);
        if want > admission.budget {
            let permit = limit
                .try_acquire((want - admission.budget) as u64)
                .ok_or_else(|| {
                    self.stats.error("memory_limit");
                    Refusal::Busy
                })?;
            admission.memory.push(permit);
            admission.budget = want;
        }
        Ok(())
    }

    /// A request that decoded past its budget.
    pub fn over_budget(&self, budget: usize) -> String {
        self.stats.error("decoded_too_large");
        format!(
            "the request decodes into more than {budget} bytes of events; send smaller requests"
        )
    }

    /// Hands decoded events to the pipeline, waiting a bounded time for room.
    pub async fn accept(&self, events: Vec<Event>, rejected: &Rejected) -> Result<(), Refusal> {
        let n = events.len() as u64;
        self.stats.count(Outcome::Received, n + rejected.count);
        if rejected.count > 0 {
            self.stats.count(Outcome::Rejected, rejected.count);
            self.stats.error("items_rejected");
            tracing::debug!(rejected = rejected.count, reason = %rejected.message, "OTLP items left out");
        }
        if events.is_empty() {
            return Ok(());
        }
        // The OTLP source needs no acknowledgement: its answer to the client is given once the
        // events are queued, and the client keeps nothing to resend after that.
        match tokio::time::timeout(self.wait, self.out.send(events, Ack::none())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Refusal::ShuttingDown),
            Err(_) => {
                self.stats.count(Outcome::Retried, n);
                self.stats.error("pipeline_full");
                Err(Refusal::Busy)
            }
        }
    }

    pub fn malformed(&self, what: &str) {
        self.stats.error("malformed_request");
        tracing::debug!(error = what, "malformed OTLP request refused");
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// Why a body was not decoded.
pub enum DecodeError {
    Malformed(String),
    /// It decoded into more than its budget.
    OverBudget,
}

/// Decodes a request body of `signal` into events (protobuf or JSON), within `budget` bytes of
/// events. Runs on a blocking thread: decoding a large body takes milliseconds of CPU.
pub fn decode_into(
    signal: Signal,
    body: &[u8],
    json: bool,
    budget: usize,
) -> Result<(Vec<Event>, Rejected), DecodeError> {
    use crate::otlp::decode;
    // What the decoder would allocate before any event exists: refused up front.
    let items = if json {
        Some(prescan::json_items(body))
    } else {
        prescan::protobuf_items(body, signal)
    };
    if items.is_some_and(|n| {
        n.saturating_mul(prescan::ITEM_COST)
            .saturating_add(body.len())
            > budget
    }) {
        return Err(DecodeError::OverBudget);
    }
    let mut out = decode::Budgeted::new(budget);
    let rejected = match signal {
        Signal::Traces => decode::traces(request(body, json)?, &mut out),
        Signal::Metrics => decode::metrics(request(body, json)?, &mut out),
        Signal::Logs => decode::logs(request(body, json)?, &mut out),
    };
    use decode::Collect;
    if out.is_full() {
        return Err(DecodeError::OverBudget);
    }
    Ok((out.events, rejected))
}

/// An export request read from its body: OTLP/JSON or protobuf.
fn request<R>(body: &[u8], json: bool) -> Result<R, DecodeError>
where
    R: prost::Message + Default + serde::de::DeserializeOwned,
{
    let read = if json {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        R::decode(body).map_err(|e| e.to_string())
    };
    read.map_err(DecodeError::Malformed)
}

pub struct OtlpSource {
    name: String,
    grpc: Option<std::net::TcpListener>,
    http: Option<std::net::TcpListener>,
    ingest: Arc<Ingest>,
}

fn bind(addr: &str, what: &str) -> anyhow::Result<std::net::TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{what} address `{addr}`"))?;
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen for {what} on {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl OtlpSource {
    /// Binds the listeners now, so a taken port fails the start with a clear error.
    pub fn new(name: &str, config: OtlpSourceConfig, out: SourceOutput) -> anyhow::Result<Self> {
        let grpc = config
            .grpc
            .then(|| bind(&config.grpc_address, "OTLP/gRPC"))
            .transpose()?;
        let http = config
            .http
            .then(|| bind(&config.http_address, "OTLP/HTTP"))
            .transpose()?;
        for (l, what) in [(&grpc, "OTLP/gRPC"), (&http, "OTLP/HTTP")] {
            if let Some(addr) = l.as_ref().and_then(|l| l.local_addr().ok()) {
                tracing::info!(source = name, %addr, "listening for {what}");
            }
        }
        let stats = out.stats.clone();
        Ok(Self {
            name: name.to_owned(),
            grpc,
            http,
            ingest: Arc::new(Ingest {
                out,
                stats,
                wait: Duration::from_millis(config.backpressure_wait_ms),
                slots: Semaphore::new(config.max_concurrent_requests),
                max_request_bytes: config.max_request_bytes,
                retry_after: Duration::from_secs(config.retry_after_secs),
            }),
        })
    }

    /// Serves until `stop`; in-flight requests are finished first.
    pub async fn run(self, stop: CancellationToken) {
        let mut servers = JoinSet::new();
        if let Some(l) = self.grpc {
            let ingest = Arc::clone(&self.ingest);
            let stop = stop.clone();
            let name = self.name.clone();
            servers.spawn(async move {
                if let Err(e) = grpc::serve(l, ingest, stop).await {
                    tracing::error!(source = %name, error = %e, "OTLP/gRPC server stopped");
                }
            });
        }
        if let Some(l) = self.http {
            let ingest = Arc::clone(&self.ingest);
            let name = self.name.clone();
            servers.spawn(async move {
                if let Err(e) = http::serve(l, ingest, stop).await {
                    tracing::error!(source = %name, error = %e, "OTLP/HTTP server stopped");
                }
            });
        }
        while servers.join_next().await.is_some() {}
    }
}
