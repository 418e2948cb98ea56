//! The conformance check every network sink passes: a real sink's `run`, fed a stream of batches
//! with real acknowledgements, against a stand-in backend whose script mixes answers (accepted,
//! throttled, 5xx, a refused item, a partial success). Whatever the answers, each batch is
//! acknowledged exactly once, as delivered, and once the input ends the sink finishes.
//! Each sink's test then checks that its counters add up (see [`Counts`]).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::event::{Ack, AckStatus, Event, EventBatch, ack_channel};
use crate::telemetry::{Outcome, Stats};

/// However the script goes, a sink with small backoffs is done well within this.
const DEADLINE: Duration = Duration::from_secs(60);

/// A sink's counters after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub received: u64,
    pub sent: u64,
    pub rejected: u64,
    pub dropped_out_of_range: u64,
    pub deduplicated: u64,
}

impl Counts {
    pub fn of(stats: &Stats) -> Counts {
        Counts {
            received: stats.get(Outcome::Received),
            sent: stats.get(Outcome::Sent),
            rejected: stats.get(Outcome::Rejected),
            dropped_out_of_range: stats.get(Outcome::DroppedOutOfRange),
            deduplicated: stats.get(Outcome::Deduplicated),
        }
    }

    /// Every event received is accounted for exactly once.
    pub fn assert_add_up(&self) {
        assert_eq!(
            self.received,
            self.sent + self.rejected + self.dropped_out_of_range + self.deduplicated,
            "received = sent + rejected + dropped_out_of_range + deduplicated: {self:?}"
        );
    }
}

/// Runs a sink (`run` starts it on the receiving end of its input) on `batches`, closes its
/// input, and asserts that it finished and that every batch was acknowledged exactly once, as
/// delivered.
pub async fn run_to_completion<F, Fut>(run: F, batches: Vec<Vec<Event>>)
where
    F: FnOnce(mpsc::Receiver<EventBatch>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    let sink = tokio::spawn(run(rx));
    let (acks_tx, mut acks) = ack_channel();
    let count = batches.len() as u64;
    for (id, events) in batches.into_iter().enumerate() {
        let batch = EventBatch {
            events,
            ack: Ack::new(id as u64, acks_tx.clone()),
        };
        tx.send(batch).await.expect("the sink takes its input");
    }
    drop(acks_tx);
    drop(tx);
    tokio::time::timeout(DEADLINE, sink)
        .await
        .expect("the sink finishes once its input ends and everything is answered")
        .expect("the sink does not panic");
    // Every copy of every ack is gone once the sink has finished: the channel is closed after
    // the last settlement arrived.
    let mut settled: HashMap<u64, Vec<AckStatus>> = HashMap::new();
    let drained = tokio::time::timeout(DEADLINE, async {
        while let Some((id, status)) = acks.recv().await {
            settled.entry(id).or_default().push(status);
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "an acknowledgement is still held after the sink finished: {settled:?}"
    );
    for id in 0..count {
        assert_eq!(
            settled.remove(&id).unwrap_or_default(),
            [AckStatus::Delivered],
            "batch {id} is acknowledged exactly once, as delivered"
        );
    }
    assert!(settled.is_empty(), "acks of unknown batches: {settled:?}");
}

/// Requests and answers of the two OTLP/HTTP sinks (New Relic, AWS's OTLP endpoints), for
/// their tests.
pub mod otlp {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    use vigil_test_support::Canned;

    use crate::otlp::Encoded;
    use crate::sinks::driver::{Payload, Verdict};
    use crate::sinks::otlp_http::batch::OtlpRequest;

    /// How a test checks one verdict.
    pub type Check = fn(&Verdict<OtlpRequest>) -> bool;

    /// The answers both OTLP/HTTP sinks retry: 429 and 503 with the `Retry-After` to honour,
    /// 500 and 408 without.
    pub fn retried() -> [(&'static str, Canned, Check); 4] {
        use std::time::Duration;
        [
            (
                "throttled, with Retry-After",
                failure(429, "rate limited").with_header("Retry-After", "4"),
                |v| matches!(v, Verdict::Retry { after: Some(d), .. } if *d == Duration::from_secs(4)),
            ),
            (
                "unavailable, with Retry-After",
                failure(503, "unavailable").with_header("Retry-After", "1"),
                |v| matches!(v, Verdict::Retry { after: Some(d), .. } if *d == Duration::from_secs(1)),
            ),
            (
                "5xx",
                failure(500, "internal"),
                |v| matches!(v, Verdict::Retry { after: None, why } if why.contains("500")),
            ),
            ("request timeout", failure(408, "timeout"), |v| {
                matches!(v, Verdict::Retry { after: None, .. })
            }),
        ]
    }

    /// A verdict for assertion messages (an export request has no `Debug`).
    pub fn describe(verdict: &Verdict<OtlpRequest>) -> String {
        match verdict {
            Verdict::Accepted { rejected, why } => {
                format!("Accepted {{ rejected: {rejected}, why: {why:?} }}")
            }
            Verdict::Retry { after, why } => format!("Retry {{ after: {after:?}, why: {why:?} }}"),
            Verdict::Split { why } => format!("Split {{ why: {why:?} }}"),
            Verdict::Partial { again, why } => {
                format!("Partial {{ again: {} items, why: {why:?} }}", again.items())
            }
            Verdict::Refused { why } => format!("Refused {{ why: {why:?} }}"),
        }
    }

    /// An export request of `n` log records.
    pub fn logs(n: usize) -> OtlpRequest {
        let records = (0..n)
            .map(|i| LogRecord {
                time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                            format!("record {i}"),
                        ),
                    ),
                }),
                ..Default::default()
            })
            .collect();
        let message = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        OtlpRequest::new(Encoded::Logs(message), n)
    }

    /// An export request of `n` spans.
    pub fn spans(n: usize) -> OtlpRequest {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: format!("span {i}"),
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_100_000_000,
                ..Default::default()
            })
            .collect();
        let message = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        OtlpRequest::new(Encoded::Traces(message), n)
    }

    /// A full success of a logs export.
    pub fn logs_ok() -> Canned {
        Canned::protobuf(200, ExportLogsServiceResponse::default().encode_to_vec())
    }

    /// A logs export's partial success: `rejected` records refused, with a message.
    pub fn logs_partial(rejected: i64) -> Canned {
        let answer = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: format!("{rejected} log records were too old"),
            }),
        };
        Canned::protobuf(200, answer.encode_to_vec())
    }

    /// A full success of a traces export.
    pub fn traces_ok() -> Canned {
        Canned::protobuf(200, ExportTraceServiceResponse::default().encode_to_vec())
    }

    /// A traces export's partial success.
    pub fn traces_partial(rejected: i64) -> Canned {
        let answer = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: format!("{rejected} spans were invalid"),
            }),
        };
        Canned::protobuf(200, answer.encode_to_vec())
    }

    /// `google.rpc.Status`, the body OTLP/HTTP servers send with a 4xx or 5xx.
    #[derive(Clone, PartialEq, Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }

    /// An OTLP/HTTP failure: `status` with a `google.rpc.Status` body.
    pub fn failure(status: u16, message: &str) -> Canned {
        // gRPC codes: RESOURCE_EXHAUSTED for 429, UNAVAILABLE for 5xx, INVALID_ARGUMENT else.
        let code = match status {
            429 => 8,
            500..=599 => 14,
            _ => 3,
        };
        let body = Status {
            code,
            message: message.to_owned(),
        };
        Canned::protobuf(status, body.encode_to_vec())
    }

    /// The decoded logs export a recorded request carried.
    pub fn decode_logs(body: &[u8]) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest::decode(body).expect("an OTLP logs export")
    }

    /// Log records in a decoded export.
    pub fn records(export: &ExportLogsServiceRequest) -> usize {
        export
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    }
}
