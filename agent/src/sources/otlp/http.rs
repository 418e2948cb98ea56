//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with `application/x-protobuf` or
//! `application/json` bodies, optionally gzip-compressed.
//!
//! Answers (OTLP/HTTP spec): 200 with an `Export*ServiceResponse` (in the request's encoding,
//! `partialSuccess` when items were left out); 400 for a body that cannot be decoded; 413 for a
//! body over `max_request_bytes` (also after decompression, which stops reading at the limit,
//! so a gzip bomb costs nothing); 415 for another content type or encoding; 503 with
//! `Retry-After` while the pipeline is full. Error bodies are a `google.rpc.Status`.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::{DecodeError, Ingest, Refusal, Signal, decode_into};

/// A client gets this long to send its body once it has a slot: a slow sender cannot hold a
/// slot and its memory share for longer.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

pub async fn serve(
    listener: std::net::TcpListener,
    ingest: Arc<Ingest>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    // The body is taken unread: it is read only once the request has its slot and memory.
    let app = Router::new()
        .route(
            "/v1/traces",
            post(|s: State<Arc<Ingest>>, h: HeaderMap, b: Body| export(s, h, b, Signal::Traces)),
        )
        .route(
            "/v1/metrics",
            post(|s: State<Arc<Ingest>>, h: HeaderMap, b: Body| export(s, h, b, Signal::Metrics)),
        )
        .route(
            "/v1/logs",
            post(|s: State<Arc<Ingest>>, h: HeaderMap, b: Body| export(s, h, b, Signal::Logs)),
        )
        .with_state(ingest);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

/// The request's encoding, from its content type.
fn encoding(headers: &HeaderMap) -> Option<bool> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case(PROTOBUF) {
        Some(false)
    } else if mime.eq_ignore_ascii_case(JSON) {
        Some(true)
    } else {
        None
    }
}

async fn export(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    let json = encoding(&headers);
    let as_json = json.unwrap_or(false);
    let Some(json) = json else {
        ingest.stats().error("unsupported_content_type");
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            false,
            "content type must be application/x-protobuf or application/json",
        );
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > ingest.max_request_bytes) {
        return too_large(&ingest, as_json);
    }
    // Room first (a slot and a memory share sized from the body), then the body: clients
    // beyond the limits are told to retry before anything of theirs is read.
    let mut admission = match ingest.admit(declared.unwrap_or(ingest.max_request_bytes)) {
        Ok(a) => a,
        Err(r) => return refused(&ingest, r, as_json),
    };
    let body = match read_body(&ingest, body, as_json).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let body = match decompress(&ingest, &headers, body, as_json).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    // The share was sized from the compressed body; the decoded one needs room for its own.
    if let Err(r) = ingest.grow(&mut admission, body.len()) {
        return refused(&ingest, r, as_json);
    }
    let budget = admission.budget;
    let decoded = tokio::task::spawn_blocking(move || decode_into(signal, &body, json, budget))
        .await
        .unwrap_or_else(|e| Err(DecodeError::Malformed(format!("decoder failed: {e}"))));
    let (events, rejected) = match decoded {
        Ok(d) => d,
        Err(DecodeError::OverBudget) => {
            let why = ingest.over_budget(budget);
            return status(StatusCode::PAYLOAD_TOO_LARGE, json, &why);
        }
        Err(DecodeError::Malformed(why)) => {
            let why = format!("cannot decode the request: {why}");
            ingest.malformed(&why);
            return status(StatusCode::BAD_REQUEST, json, &why);
        }
    };
    // The events now hold their own memory share once queued; the request's is returned.
    admission.release_memory();
    if let Err(r) = ingest.accept(events, &rejected).await {
        return refused(&ingest, r, json);
    }
    success(signal, json, rejected.count as i64, rejected.message)
}

/// The request body, within the size limit and `BODY_READ_TIMEOUT`; or the answer to give.
async fn read_body(ingest: &Ingest, body: Body, as_json: bool) -> Result<Bytes, Response> {
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, ingest.max_request_bytes),
    )
    .await;
    match read {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large(ingest, as_json)),
        Ok(Err(e)) => {
            ingest.malformed(&e.to_string());
            Err(status(StatusCode::BAD_REQUEST, as_json, &e.to_string()))
        }
        Err(_) => {
            ingest.stats().error("request_read_timeout");
            Err(status(
                StatusCode::REQUEST_TIMEOUT,
                as_json,
                "the request body did not arrive in time",
            ))
        }
    }
}

/// The body as sent, or gunzipped (`Content-Encoding: gzip`) within the size limit, off the
/// async workers; or the answer to give.
async fn decompress(
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Bytes,
    as_json: bool,
) -> Result<Bytes, Response> {
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" => true,
        Some(other) => {
            ingest.stats().error("unsupported_content_encoding");
            return Err(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                as_json,
                &format!("content encoding `{other}` is not supported (gzip is)"),
            ));
        }
    };
    if !gzip {
        return Ok(body);
    }
    // Decompressing (and decoding, later) take CPU: off the async workers.
    let limit = ingest.max_request_bytes;
    let unzipped = tokio::task::spawn_blocking(move || gunzip(&body, limit)).await;
    match unzipped {
        Ok(Ok(b)) => Ok(Bytes::from(b)),
        Ok(Err(Gunzip::TooLarge)) => Err(too_large(ingest, as_json)),
        Ok(Err(Gunzip::Invalid(why))) => {
            let why = format!("invalid gzip body: {why}");
            ingest.malformed(&why);
            Err(status(StatusCode::BAD_REQUEST, as_json, &why))
        }
        Err(e) => Err(status(StatusCode::BAD_REQUEST, as_json, &e.to_string())),
    }
}

/// Whether reading a body failed on its length limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

enum Gunzip {
    TooLarge,
    Invalid(String),
}

/// Decompresses, reading at most `limit + 1` bytes so that a bomb is refused after `limit`.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Gunzip> {
    let mut out = Vec::with_capacity((body.len() * 4).min(limit));
    let mut reader = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| Gunzip::Invalid(e.to_string()))?;
    if out.len() > limit {
        return Err(Gunzip::TooLarge);
    }
    Ok(out)
}

fn too_large(ingest: &Ingest, json: bool) -> Response {
    ingest.stats().error("request_too_large");
    status(
        StatusCode::PAYLOAD_TOO_LARGE,
        json,
        &format!(
            "request larger than {} bytes (max_request_bytes)",
            ingest.max_request_bytes
        ),
    )
}

fn refused(ingest: &Ingest, r: Refusal, json: bool) -> Response {
    let message = match r {
        Refusal::Busy => "the agent's pipeline is full; retry later",
        Refusal::ShuttingDown => "the agent is shutting down; retry later",
    };
    let mut resp = status(StatusCode::SERVICE_UNAVAILABLE, json, message);
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(ingest.retry_after.as_secs().max(1)),
    );
    resp
}

/// An error answer with a `google.rpc.Status` body.
fn status(code: StatusCode, json: bool, message: &str) -> Response {
    let grpc_code = match code {
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        _ => tonic::Code::InvalidArgument,
    } as i32;
    let body = if json {
        serde_json::json!({"code": grpc_code, "message": message})
            .to_string()
            .into_bytes()
    } else {
        tonic_types::Status {
            code: grpc_code,
            message: message.to_owned(),
            details: Vec::new(),
        }
        .encode_to_vec()
    };
    (
        code,
        [(header::CONTENT_TYPE, if json { JSON } else { PROTOBUF })],
        body,
    )
        .into_response()
}

fn success(signal: Signal, json: bool, rejected: i64, error_message: String) -> Response {
    let partial = rejected > 0;
    macro_rules! answer {
        ($resp:ident, $partial:ident, $field:ident) => {{
            let r = $resp {
                partial_success: partial.then(|| $partial {
                    $field: rejected,
                    error_message,
                }),
            };
            if json {
                serde_json::to_vec(&r).unwrap_or_default()
            } else {
                r.encode_to_vec()
            }
        }};
    }
    let body = match signal {
        Signal::Traces => answer!(
            ExportTraceServiceResponse,
            ExportTracePartialSuccess,
            rejected_spans
        ),
        Signal::Metrics => answer!(
            ExportMetricsServiceResponse,
            ExportMetricsPartialSuccess,
            rejected_data_points
        ),
        Signal::Logs => answer!(
            ExportLogsServiceResponse,
            ExportLogsPartialSuccess,
            rejected_log_records
        ),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, if json { JSON } else { PROTOBUF })],
        body,
    )
        .into_response()
}
