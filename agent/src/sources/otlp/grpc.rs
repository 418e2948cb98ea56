//! OTLP/gRPC: the `Export` methods of the trace, metrics and logs collector services, served by
//! tonic with gzip accepted and messages limited to `max_request_bytes` (`RESOURCE_EXHAUSTED`
//! beyond; undecodable messages get `INVALID_ARGUMENT`). Backpressure answers `UNAVAILABLE` with a `RetryInfo` detail,
//! which OTLP exporters honour.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Ingest, Refusal};
use crate::otlp::{Rejected, decode};

#[derive(Clone)]
struct Grpc(Arc<Ingest>);

pub async fn serve(
    listener: std::net::TcpListener,
    ingest: Arc<Ingest>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let listener = tokio::net::TcpListener::from_std(listener).expect("inside the runtime");
    let limit = ingest.max_request_bytes;
    let svc = Grpc(ingest);
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(otlp_status_codes))
        .add_service(
            TraceServiceServer::new(svc.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            MetricsServiceServer::new(svc.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            LogsServiceServer::new(svc)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async move { stop.cancelled().await },
        )
        .await
}

/// tonic answers a message it cannot decode with `INTERNAL` and one over the size limit with
/// `OUT_OF_RANGE`, which OTLP clients would retry forever. OTLP asks for `INVALID_ARGUMENT` for
/// bad data, and `RESOURCE_EXHAUSTED` without `RetryInfo` is not retried either, so the status
/// of exactly those answers is rewritten.
fn otlp_status_codes<B>(mut r: http::Response<B>) -> http::Response<B> {
    let h = r.headers_mut();
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let replace = match h.get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some("13") if message.contains("decode") => Some("3"),
        Some("11") if message.contains("too%20large") || message.contains("too large") => Some("8"),
        _ => None,
    };
    if let Some(code) = replace {
        h.insert("grpc-status", http::HeaderValue::from_static(code));
    }
    r
}

impl Grpc {
    /// Admits a request (sized by its encoded length; tonic has read it already, within
    /// `max_request_bytes`), converts it to events on a blocking thread within its memory
    /// share, and queues them.
    async fn take<M: prost::Message + Send + 'static>(
        &self,
        request: M,
        decode: fn(M, &mut decode::Budgeted) -> Rejected,
    ) -> Result<Rejected, Status> {
        let ingest = &self.0;
        let mut admission = ingest
            .admit(request.encoded_len())
            .map_err(|r| self.refused(r))?;
        let budget = admission.budget;
        let (out, rejected) = tokio::task::spawn_blocking(move || {
            let mut out = decode::Budgeted::new(budget);
            let rejected = decode(request, &mut out);
            (out, rejected)
        })
        .await
        .map_err(|e| Status::internal(format!("decoder failed: {e}")))?;
        if decode::Collect::is_full(&out) {
            // RESOURCE_EXHAUSTED without RetryInfo: OTLP clients do not retry it as is.
            return Err(Status::resource_exhausted(ingest.over_budget(budget)));
        }
        admission.release_memory();
        ingest
            .accept(out.events, &rejected)
            .await
            .map_err(|r| self.refused(r))?;
        Ok(rejected)
    }

    fn refused(&self, r: Refusal) -> Status {
        let message = match r {
            Refusal::Busy => "the agent's pipeline is full; retry later",
            Refusal::ShuttingDown => "the agent is shutting down; retry later",
        };
        Status::with_error_details(
            tonic::Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(self.0.retry_after)),
        )
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let r = self
            .take(request.into_inner(), decode::traces::<decode::Budgeted>)
            .await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (r.count > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: r.count as i64,
                error_message: r.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let r = self
            .take(request.into_inner(), decode::metrics::<decode::Budgeted>)
            .await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: (r.count > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: r.count as i64,
                error_message: r.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let r = self
            .take(request.into_inner(), decode::logs::<decode::Budgeted>)
            .await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (r.count > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: r.count as i64,
                error_message: r.message,
            }),
        }))
    }
}
