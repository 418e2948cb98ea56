//! The X-Ray sink against a scripted stand-in speaking X-Ray's restJson protocol: each answer
//! PutTraceSegments can give, classified by one `Backend::send`, and the sink's conformance run.

use std::sync::Arc;
use std::time::Duration;

use vigil_test_support::{Canned, ScriptedBackend};

use super::service::{Request, Service};
use super::*;
use crate::event::{Resource, SpanKind, SpanStatus, StatusCode};
use crate::sinks::conformance::{Counts, run_to_completion};
use crate::sinks::driver::{Backend, Verdict};

const OP: &str = "/TraceSegments";

/// Small backoffs and a short request timeout, so retries and the timeout path take little time.
fn config() -> XRayConfig {
    let mut config: XRayConfig = toml::from_str("").expect("defaults");
    config.request.max_backoff_ms = Some(20);
    config.request.timeout_ms = Some(500);
    config.batch.timeout_ms = Some(20);
    config
}

async fn service(backend: &ScriptedBackend) -> Service {
    Service::with_sdk(&config(), backend.sdk_config().await)
}

fn request(ids: &[&str]) -> Request {
    ids.iter()
        .map(|id| ((*id).to_owned(), format!("{{\"id\":\"{id}\"}}")))
        .collect()
}

fn throttled() -> Canned {
    Canned::rest_json_error(429, "ThrottledException", "Rate exceeded")
}

fn invalid() -> Canned {
    Canned::rest_json_error(400, "InvalidRequestException", "Invalid segment document")
}

fn ok() -> Canned {
    Canned::rest_json_ok(serde_json::json!({ "UnprocessedTraceSegments": [] }))
}

fn unprocessed(ids: &[&str]) -> Canned {
    let list: Vec<_> = ids
        .iter()
        .map(|id| serde_json::json!({"Id": id, "ErrorCode": "ThrottledException", "Message": "Rate exceeded"}))
        .collect();
    Canned::rest_json_ok(serde_json::json!({ "UnprocessedTraceSegments": list }))
}

/// What each answer means, one `send` per answer.
#[tokio::test]
async fn every_answer_is_classified() {
    let backend = ScriptedBackend::start();
    let service = service(&backend).await;
    type Check = fn(&Verdict<Request>) -> bool;
    let table: [(&str, Canned, Check); 6] = [
        ("accepted", ok(), |v| {
            matches!(v, Verdict::Accepted { rejected: 0, .. })
        }),
        (
            "throttled",
            throttled(),
            |v| matches!(v, Verdict::Retry { after: None, why } if why.contains("ThrottledException")),
        ),
        (
            "5xx",
            Canned::rest_json_error(500, "InternalFailure", "internal error"),
            |v| matches!(v, Verdict::Retry { after: None, .. }),
        ),
        (
            "503",
            Canned::rest_json_error(503, "ServiceUnavailableException", "unavailable"),
            |v| matches!(v, Verdict::Retry { after: None, .. }),
        ),
        (
            "refused document",
            invalid(),
            |v| matches!(v, Verdict::Split { why } if why.contains("InvalidRequestException")),
        ),
        (
            "slower than the request timeout",
            ok().after(Duration::from_millis(1_500)),
            |v| matches!(v, Verdict::Retry { after: None, .. }),
        ),
    ];
    for (what, answer, check) in table {
        backend.script(OP, [answer]);
        let mut req = request(&["a", "b"]);
        let verdict = service.send(&(), &mut req).await;
        assert!(check(&verdict), "{what}: {verdict:?}");
    }
    // Each answer went to one real PutTraceSegments call carrying the documents.
    let calls = backend.requests_for(OP);
    assert_eq!(calls.len(), 6);
    assert_eq!(
        calls[0].json()["TraceSegmentDocuments"],
        serde_json::json!(["{\"id\":\"a\"}", "{\"id\":\"b\"}"])
    );
    assert!(calls[0].header("authorization").is_some());
    assert_eq!(backend.unscripted(), 0);
}

/// Unprocessed segments come back as a partial verdict holding exactly those documents.
#[tokio::test]
async fn unprocessed_segments_are_sent_again_exactly() {
    let backend = ScriptedBackend::start();
    let service = service(&backend).await;
    backend.script(OP, [unprocessed(&["b", "d"])]);
    let mut req = request(&["a", "b", "c", "d"]);
    match service.send(&(), &mut req).await {
        Verdict::Partial { again, why } => {
            let ids: Vec<_> = again.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(ids, ["b", "d"]);
            assert!(why.contains("ThrottledException"), "{why}");
        }
        other => panic!("expected Partial, got {other:?}"),
    }
}

fn span(n: u64, name: &str) -> Event {
    let mut trace_id = [0xab; 16];
    // An X-Ray trace id: its first four bytes are the trace's start time.
    trace_id[..4].copy_from_slice(&((crate::event::now_ms() / 1000) as u32).to_be_bytes());
    trace_id[8..].copy_from_slice(&n.to_be_bytes());
    Event::Span(crate::event::SpanEvent {
        resource: Arc::new(Resource::default()),
        scope_name: String::new(),
        scope_version: String::new(),
        trace_id,
        span_id: n.to_be_bytes(),
        parent_span_id: None,
        trace_state: String::new(),
        name: name.into(),
        kind: SpanKind::Server,
        start_unix_nano: 1_700_000_000_000_000_000,
        end_unix_nano: 1_700_000_000_500_000_000,
        attributes: Default::default(),
        events: vec![],
        links: vec![],
        status: SpanStatus {
            code: StatusCode::Unset,
            message: String::new(),
        },
    })
}

/// The sink over a script of mixed answers: throttled, 5xx, a document refused wherever it
/// goes, another left unprocessed once; every batch is acknowledged once and every span counted
/// once.
#[tokio::test]
async fn conformance() {
    let backend = ScriptedBackend::start();
    let mut config = config();
    config.batch.max_events = Some(8);
    backend.script(
        OP,
        [
            throttled(),
            Canned::rest_json_error(503, "ServiceUnavailableException", "unavailable"),
        ],
    );
    backend.otherwise(OP, ok());
    backend.when_body_contains(OP, "poisoned", invalid(), usize::MAX);
    // Span 17's id, as X-Ray reports it unprocessed once.
    let again = format!("{:016x}", 17u64);
    backend.when_body_contains(OP, &again, unprocessed(&[&again]), 1);
    let stats = Stats::new("xray_conformance");
    let sink = XRaySink {
        name: "xray_conformance".into(),
        service: Service::with_sdk(&config, backend.sdk_config().await),
        config,
        stats: stats.clone(),
    };
    let batches: Vec<Vec<Event>> = (0..10)
        .map(|b| {
            (0..5)
                .map(|i| {
                    let n = b * 5 + i;
                    span(n, if n == 23 { "poisoned" } else { "GET /" })
                })
                .collect()
        })
        .collect();
    run_to_completion(|rx| sink.run(rx), batches).await;
    let counts = Counts::of(&stats);
    counts.assert_add_up();
    assert_eq!((counts.received, counts.sent, counts.rejected), (50, 49, 1));
    // Span 17 went out again on its own after being left unprocessed.
    let calls = backend.requests_for(OP);
    assert!(
        calls.iter().any(
            |c| c.json()["TraceSegmentDocuments"].as_array().map(Vec::len) == Some(1)
                && String::from_utf8_lossy(&c.body).contains(&again)
        ),
        "the unprocessed document was sent again alone"
    );
    assert_eq!(backend.unscripted(), 0);
}
