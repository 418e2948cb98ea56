//! The New Relic sink against a scripted OTLP/HTTP stand-in: each answer an export can get,
//! classified by one `Backend::send` (Retry-After read, partial successes counted, other 4xx
//! refused for good), and the sink's conformance run.

use std::time::Duration;

use vigil_test_support::{Canned, ScriptedBackend};

use super::service::Service;
use super::*;
use crate::event::LogEvent;
use crate::sinks::conformance::otlp::{
    Check, decode_logs, describe, failure, logs, logs_ok, logs_partial, records, retried,
};
use crate::sinks::conformance::{Counts, run_to_completion};
use crate::sinks::driver::{Backend, Verdict};

const LOGS: &str = "/v1/logs";
const TIMEOUT: Duration = Duration::from_millis(500);

fn service(backend: &ScriptedBackend) -> Service {
    let key = LicenseKey::new("scripted-license-key".into()).expect("a valid key");
    Service::new(backend.endpoint.clone(), key, TIMEOUT).expect("a client")
}

/// What each answer means, one `send` per answer.
#[tokio::test]
async fn every_answer_is_classified() {
    let backend = ScriptedBackend::start();
    let service = service(&backend);
    let table: [(&str, Canned, Check); 2] = [
        ("accepted", logs_ok(), |v| {
            matches!(v, Verdict::Accepted { rejected: 0, .. })
        }),
        (
            "partial success",
            logs_partial(2),
            |v| matches!(v, Verdict::Accepted { rejected: 2, why } if why.contains("too old")),
        ),
    ];
    let rest: [(&str, Canned, Check); 4] = [
        (
            "refused",
            failure(400, "bad payload"),
            |v| matches!(v, Verdict::Refused { why } if why.contains("400")),
        ),
        ("bad license key", failure(403, "forbidden"), |v| {
            matches!(v, Verdict::Refused { .. })
        }),
        ("too large", failure(413, "payload too large"), |v| {
            matches!(v, Verdict::Refused { .. })
        }),
        (
            "slower than the request timeout",
            logs_ok().after(Duration::from_millis(1_500)),
            |v| matches!(v, Verdict::Retry { after: None, .. }),
        ),
    ];
    for (what, answer, check) in table.into_iter().chain(retried()).chain(rest) {
        backend.script(LOGS, [answer]);
        let verdict = service.send(&(), &mut logs(3)).await;
        assert!(check(&verdict), "{what}: {}", describe(&verdict));
    }
    let calls = backend.requests_for(LOGS);
    assert_eq!(calls.len(), 10);
    let first = &calls[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.header("api-key"), Some("scripted-license-key"));
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    assert_eq!(first.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(records(&decode_logs(&first.body)), 3);
    assert_eq!(backend.unscripted(), 0);
}

fn log(n: u64) -> Event {
    let message = if n == 17 {
        "poisoned".to_owned()
    } else {
        format!("event {n}")
    };
    Event::Log(LogEvent::new(message, crate::event::now_ms()))
}

/// The sink over a script of mixed answers: throttled with Retry-After, 5xx, a request refused
/// for good (the one holding a bad record), a partial success: every batch is acknowledged once
/// and every record counted once.
#[tokio::test]
async fn conformance() {
    let backend = ScriptedBackend::start();
    let mut config: NewRelicConfig = toml::from_str("").expect("defaults");
    config.endpoint = Some(backend.endpoint.clone());
    config.allow_insecure_http = true;
    config.request.max_backoff_ms = Some(20);
    config.request.timeout_ms = Some(TIMEOUT.as_millis() as u64);
    config.batch.timeout_ms = Some(20);
    // One request per input batch of 5, so a refusal takes exactly one batch's records.
    config.batch.max_events = Some(5);
    backend.script(
        LOGS,
        [
            failure(429, "rate limited").with_header("Retry-After", "1"),
            failure(503, "unavailable"),
        ],
    );
    backend.otherwise(LOGS, logs_ok());
    backend.when_body_contains(LOGS, "poisoned", failure(400, "bad record"), usize::MAX);
    backend.when_body_contains(LOGS, "event 31", logs_partial(2), 1);
    let stats = Stats::new("newrelic_conformance");
    let request = config.request_settings();
    let sink = NewRelicSink {
        dispatch: Dispatch::shared(
            "newrelic_conformance",
            service(&backend),
            stats.clone(),
            request,
        ),
        encoder: Arc::new(encoder(&config)),
        config,
        stats: stats.clone(),
    };
    let batches: Vec<Vec<Event>> = (0..8)
        .map(|b| (0..5).map(|i| log(b * 5 + i)).collect())
        .collect();
    run_to_completion(|rx| sink.run(rx), batches).await;
    let counts = Counts::of(&stats);
    counts.assert_add_up();
    assert_eq!((counts.received, counts.sent, counts.rejected), (40, 33, 7));
    // The refused request was not sent again.
    let refused = backend
        .requests_for(LOGS)
        .iter()
        .filter(|r| r.status == 400)
        .count();
    assert_eq!(refused, 1);
    assert_eq!(backend.unscripted(), 0);
}
