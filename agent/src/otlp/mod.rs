//! The one place that converts between OTLP (the official protobuf types of
//! `opentelemetry-proto`) and Vigil's events.
//!
//! - [`decode`]: export requests → events. Every event of one `Resource*` shares one
//!   `Arc<Resource>`; strings are moved out of the decoded messages, never copied. Items that
//!   cannot become events (bad ids, data points without a value, exponential histograms with
//!   negative buckets) are counted and described, for the OTLP partial-success answer.
//! - [`encode`]: events → export requests grouped by resource and scope, cut into requests under
//!   a byte limit, with attribute values and arrays truncated to a backend's limits.
//! - [`value`]: `AnyValue` ↔ JSON values (attributes are JSON in the event model).

pub mod decode;
pub mod encode;
pub mod split;
pub mod value;

pub use opentelemetry_proto::tonic as proto;

pub use decode::Rejected;
pub use encode::{EncodeLimits, Encoded, Encoder, Truncations};

#[cfg(test)]
mod tests;
