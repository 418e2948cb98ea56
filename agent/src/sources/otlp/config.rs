//! `[sources.NAME]` with `type = "otlp"`.

use std::net::SocketAddr;

use serde::Deserialize;

use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSourceConfig {
    /// Serve OTLP/gRPC.
    #[serde(default = "config_default::yes")]
    pub grpc: bool,
    #[serde(default = "default_grpc_address")]
    pub grpc_address: String,
    /// Serve OTLP/HTTP (protobuf and JSON).
    #[serde(default = "config_default::yes")]
    pub http: bool,
    #[serde(default = "default_http_address")]
    pub http_address: String,
    /// Largest request accepted, in bytes, both as received and after gzip decompression.
    #[serde(default = "config_default::usize::<{ 4 * 1024 * 1024 }>")]
    pub max_request_bytes: usize,
    /// How long a request may wait for room in the pipeline before the client is told to retry
    /// (HTTP 503 with `Retry-After`, gRPC `UNAVAILABLE` with `RetryInfo`).
    #[serde(default = "config_default::u64::<500>")]
    pub backpressure_wait_ms: u64,
    /// Requests being decoded or waiting for the pipeline at once; more are told to retry
    /// right away, so memory stays bounded however many clients send.
    #[serde(default = "config_default::usize::<64>")]
    pub max_concurrent_requests: usize,
    /// Seconds the retry answer asks clients to wait.
    #[serde(default = "config_default::u64::<1>")]
    pub retry_after_secs: u64,
}

fn default_grpc_address() -> String {
    "127.0.0.1:4317".to_owned()
}
fn default_http_address() -> String {
    "127.0.0.1:4318".to_owned()
}

impl ComponentConfig for OtlpSourceConfig {
    /// Whatever clients send: OTLP carries all three.
    fn emits(&self, _inputs: Signals) -> Signals {
        Signals::ALL
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        if !self.grpc && !self.http {
            errs.push(path, "at least one of grpc and http must be enabled");
        }
        for (key, on, addr) in [
            ("grpc_address", self.grpc, &self.grpc_address),
            ("http_address", self.http, &self.http_address),
        ] {
            if on && addr.parse::<SocketAddr>().is_err() {
                errs.push(
                    &path.key(key),
                    format!("`{addr}` is not an address like 127.0.0.1:4317"),
                );
            }
        }
        errs.within(
            path,
            &[
                (
                    "max_request_bytes",
                    self.max_request_bytes,
                    1024,
                    256 * 1024 * 1024,
                ),
                (
                    "max_concurrent_requests",
                    self.max_concurrent_requests,
                    1,
                    10_000,
                ),
            ],
        );
        if self.backpressure_wait_ms > 60_000 {
            errs.push(&path.key("backpressure_wait_ms"), "must be at most 60000");
        }
    }
}
