//! `vigil-agent`: collects logs, metrics and traces on a host or next to a container and ships
//! them to CloudWatch, X-Ray and New Relic without losing what it accepted. See ARCHITECTURE.md for the map.

pub mod api;
pub mod buffer;
pub mod component;
pub mod config;
pub mod event;
/// Fuzz entries, run by `fuzz/` (libFuzzer) and by the unit tests (seeded).
#[doc(hidden)]
pub mod fuzzing;
pub mod iam_policy;
pub mod otlp;
pub mod output;
pub mod pipeline;
pub mod processors;
pub mod redaction;
pub mod sinks;
pub mod sources;
pub mod supervisor;
pub mod telemetry;
pub mod text;
pub mod top;
