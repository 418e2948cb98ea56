//! The request of the OTLP/HTTP sinks, as the delivery driver sees it: items of one signal
//! grouped by resource and scope ([`OpenOtlp`]), closed into an export request that can be
//! halved and is compressed once however often it is sent ([`OtlpRequest`]).

use std::hash::Hash;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::gzip;
use crate::event::Resource;
use crate::otlp::encode::Pending;
use crate::otlp::split::{items, split};
use crate::otlp::{Encoded, Encoder, Truncations};
use crate::sinks::driver::settings::BatchSettings;
use crate::sinks::driver::{Batches, Open, Payload, TooLarge};
use crate::telemetry::{Outcome, Stats};

/// One export request and its item count.
pub struct OtlpRequest {
    pub message: Encoded,
    items: usize,
    /// The gzipped protobuf body, made at the first attempt.
    body: Option<Bytes>,
}

impl OtlpRequest {
    pub fn new(message: Encoded, items: usize) -> Self {
        Self {
            message,
            items,
            body: None,
        }
    }

    /// The body to send: the message as gzipped protobuf.
    pub fn body(&mut self) -> Bytes {
        self.body
            .get_or_insert_with(|| gzip(&self.message.encode_to_vec()))
            .clone()
    }
}

impl Payload for OtlpRequest {
    fn items(&self) -> usize {
        self.items
    }

    /// Spans and log records halve; metrics (whose data points are nested in their metric) do
    /// not.
    fn split(self) -> Result<(Self, Self), Self> {
        if matches!(self.message, Encoded::Metrics(_)) {
            return Err(self);
        }
        let (a, b) = split(self.message, self.items / 2);
        let (na, nb) = (items(&a), items(&b));
        Ok((OtlpRequest::new(a, na), OtlpRequest::new(b, nb)))
    }
}

/// An item with the resource and scope it is grouped under.
pub struct Scoped<I> {
    pub resource: Option<Arc<Resource>>,
    pub scope: (String, String),
    pub item: I,
}

/// The OTLP item types, each with its export request.
pub trait OtlpItem: Message + Sized {
    fn request(pending: Pending<Self>) -> Encoded;
}

impl OtlpItem for Span {
    fn request(pending: Pending<Self>) -> Encoded {
        pending.into_request()
    }
}

impl OtlpItem for Metric {
    fn request(pending: Pending<Self>) -> Encoded {
        pending.into_request()
    }
}

impl OtlpItem for LogRecord {
    fn request(pending: Pending<Self>) -> Encoded {
        pending.into_request()
    }
}

/// An export request being filled, cut at the encoder's byte limit.
pub struct OpenOtlp<I> {
    encoder: Arc<Encoder>,
    pending: Pending<I>,
}

impl<I: OtlpItem> OpenOtlp<I> {
    pub fn new(encoder: Arc<Encoder>) -> Self {
        Self {
            encoder,
            pending: Pending::default(),
        }
    }

    /// The driver's open requests of this signal, per key: cut at the encoder's byte limit and
    /// as `batch` says (item count, age).
    pub fn batches<K: Clone + Eq + Hash>(
        encoder: &Arc<Encoder>,
        batch: BatchSettings,
    ) -> Batches<K, Self> {
        let encoder = Arc::clone(encoder);
        let make = move || Self::new(Arc::clone(&encoder));
        Batches::new(make, batch.max_events, batch.timeout)
    }
}

impl<I: OtlpItem> Open for OpenOtlp<I> {
    type Item = Scoped<I>;
    type Request = OtlpRequest;

    fn add(&mut self, s: Scoped<I>) -> Result<Option<OtlpRequest>, TooLarge> {
        let scope = (s.scope.0.as_str(), s.scope.1.as_str());
        match self
            .pending
            .add(&self.encoder, s.resource.as_ref(), scope, s.item)
        {
            Ok(full) => Ok(full.map(|p| {
                let n = p.len();
                OtlpRequest::new(I::request(p), n)
            })),
            Err(crate::otlp::encode::TooLarge) => Err(TooLarge),
        }
    }

    fn len(&self) -> usize {
        self.pending.len()
    }

    fn take(&mut self) -> OtlpRequest {
        let pending = std::mem::take(&mut self.pending);
        let n = pending.len();
        OtlpRequest::new(I::request(pending), n)
    }
}

/// Counts an item whose values were cut to the backend's limits.
pub fn count_truncations(stats: &Stats, cuts: Truncations) {
    if cuts == Truncations::default() {
        return;
    }
    stats.count(Outcome::Truncated, 1);
    for _ in 0..cuts.strings {
        stats.error("attribute_value_truncated");
    }
    for _ in 0..cuts.arrays {
        stats.error("attribute_array_truncated");
    }
}
