//! A stand-in for New Relic's OTLP endpoint: a real OTLP/HTTP server on the official
//! `opentelemetry-proto` types, on a free loopback port, in its own thread and runtime (usable
//! from plain and async tests).
//!
//! Like New Relic it requires the `api-key` header and refuses payloads over 1 MB; like a strict
//! test it also requires gzip and `application/x-protobuf`, and decodes every payload. Anything
//! wrong is answered with a 4xx *and* recorded in [`OtlpReceiver::violations`], so a test can
//! assert that the agent never sent a bad request. It can be told to answer 429 with
//! `Retry-After` or 500 to the next N requests, and to answer slowly.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

/// New Relic's payload limit.
pub const MAX_PAYLOAD_BYTES: usize = 1_000_000;

/// How the next requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 429 with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// 500.
    ServerError,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub at: Instant,
    pub status: u16,
    pub wire_bytes: usize,
    pub decoded_bytes: usize,
}

#[derive(Default)]
struct Shared {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    requests: Vec<Received>,
    violations: Vec<String>,
    failures: Vec<Failure>,
    delay: Duration,
}

struct Inner {
    api_key: String,
    shared: Mutex<Shared>,
}

pub struct OtlpReceiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Starts the server; requests must carry `api-key: <api_key>`.
    pub fn start(api_key: &str) -> Self {
        let inner = Arc::new(Inner {
            api_key: api_key.to_owned(),
            shared: Mutex::new(Shared::default()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let app = Router::new()
                        .route(
                            "/v1/traces",
                            post(|s: State<Arc<Inner>>, h: HeaderMap, b: Bytes| {
                                handle(s, h, b, "/v1/traces")
                            }),
                        )
                        .route(
                            "/v1/metrics",
                            post(|s: State<Arc<Inner>>, h: HeaderMap, b: Bytes| {
                                handle(s, h, b, "/v1/metrics")
                            }),
                        )
                        .route(
                            "/v1/logs",
                            post(|s: State<Arc<Inner>>, h: HeaderMap, b: Bytes| {
                                handle(s, h, b, "/v1/logs")
                            }),
                        )
                        // Bodies are read whole so oversized ones can be recorded, not cut off.
                        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
                        .with_state(state);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await;
                });
            })
            .expect("spawn receiver thread");
        Self {
            addr,
            inner,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (the sink appends `/v1/...`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.inner.shared.lock().expect("not poisoned")
    }

    /// Answers the next `n` requests with `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        let mut s = self.shared();
        s.failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Waits this long before answering each request (a slow backend).
    pub fn set_delay(&self, delay: Duration) {
        self.shared().delay = delay;
    }

    pub fn traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.shared().traces.clone()
    }

    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.shared().metrics.clone()
    }

    pub fn logs(&self) -> Vec<ExportLogsServiceRequest> {
        self.shared().logs.clone()
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared().requests.clone()
    }

    /// Every way a request broke New Relic's rules (wrong key, no gzip, too large, undecodable).
    pub fn violations(&self) -> Vec<String> {
        self.shared().violations.clone()
    }

    /// Spans accepted so far.
    pub fn span_count(&self) -> usize {
        self.shared()
            .traces
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
    path: &'static str,
) -> Response {
    let (delay, failure) = {
        let mut s = inner.shared.lock().expect("not poisoned");
        let f = if s.failures.is_empty() {
            None
        } else {
            Some(s.failures.remove(0))
        };
        (s.delay, f)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, decoded_bytes, violation) =
        check_and_store(&inner, &headers, &body, path, failure);
    let mut s = inner.shared.lock().expect("not poisoned");
    s.requests.push(Received {
        path: path.to_owned(),
        at: Instant::now(),
        status: status.as_u16(),
        wire_bytes: body.len(),
        decoded_bytes,
    });
    if let Some(v) = violation {
        s.violations.push(format!("{path}: {v}"));
        return (status, v).into_response();
    }
    drop(s);
    match failure {
        Some(Failure::TooManyRequests { retry_after_secs }) => (
            status,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            "slow down",
        )
            .into_response(),
        Some(Failure::ServerError) => (status, "internal error").into_response(),
        None => {
            let body = match path {
                "/v1/traces" => ExportTraceServiceResponse::default().encode_to_vec(),
                "/v1/metrics" => ExportMetricsServiceResponse::default().encode_to_vec(),
                _ => ExportLogsServiceResponse::default().encode_to_vec(),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                body,
            )
                .into_response()
        }
    }
}

/// Checks the request like New Relic would; stores it when it is good and not failed on
/// purpose. Returns the status, the decompressed size and the rule broken, if any.
fn check_and_store(
    inner: &Inner,
    headers: &HeaderMap,
    body: &[u8],
    path: &str,
    failure: Option<Failure>,
) -> (StatusCode, usize, Option<String>) {
    let key = headers.get("api-key").and_then(|v| v.to_str().ok());
    if key != Some(inner.api_key.as_str()) {
        return (
            StatusCode::FORBIDDEN,
            0,
            Some("missing or wrong api-key header".into()),
        );
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct != "application/x-protobuf" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            0,
            Some(format!("content type `{ct}`")),
        );
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        != Some("gzip")
    {
        return (
            StatusCode::BAD_REQUEST,
            0,
            Some("body not gzip-encoded".into()),
        );
    }
    if body.len() > MAX_PAYLOAD_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            0,
            Some(format!("{} bytes on the wire, over 1 MB", body.len())),
        );
    }
    let mut raw = Vec::new();
    if let Err(e) = flate2::read::GzDecoder::new(body).read_to_end(&mut raw) {
        return (
            StatusCode::BAD_REQUEST,
            0,
            Some(format!("invalid gzip: {e}")),
        );
    }
    if raw.len() > MAX_PAYLOAD_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            raw.len(),
            Some(format!("{} bytes decompressed, over 1 MB", raw.len())),
        );
    }
    let mut s = inner.shared.lock().expect("not poisoned");
    let decoded = match path {
        "/v1/traces" => ExportTraceServiceRequest::decode(raw.as_slice()).map(|r| {
            if failure.is_none() {
                s.traces.push(r)
            }
        }),
        "/v1/metrics" => ExportMetricsServiceRequest::decode(raw.as_slice()).map(|r| {
            if failure.is_none() {
                s.metrics.push(r)
            }
        }),
        _ => ExportLogsServiceRequest::decode(raw.as_slice()).map(|r| {
            if failure.is_none() {
                s.logs.push(r)
            }
        }),
    };
    if let Err(e) = decoded {
        return (
            StatusCode::BAD_REQUEST,
            raw.len(),
            Some(format!("undecodable payload: {e}")),
        );
    }
    let status = match failure {
        Some(Failure::TooManyRequests { .. }) => StatusCode::TOO_MANY_REQUESTS,
        Some(Failure::ServerError) => StatusCode::INTERNAL_SERVER_ERROR,
        None => StatusCode::OK,
    };
    (status, raw.len(), None)
}
