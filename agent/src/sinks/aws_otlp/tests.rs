//! The AWS OTLP sink against a scripted OTLP/HTTP stand-in: each answer an export can get,
//! classified by one `Backend::send` (403 drops the cached credentials, Retry-After read, 400
//! and 413 halve, partial successes counted), and the sink's conformance run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::credential_fn::provide_credentials_fn;
use aws_credential_types::provider::SharedCredentialsProvider;
use vigil_test_support::{Canned, ScriptedBackend};

use super::*;
use crate::event::LogEvent;
use crate::sinks::conformance::otlp::{
    Check, decode_logs, describe, failure, logs, logs_ok, logs_partial, records, retried, spans,
    traces_ok, traces_partial,
};
use crate::sinks::conformance::{Counts, run_to_completion};
use crate::sinks::driver::{Backend, Verdict};

const TRACES: &str = "/v1/traces";
const LOGS: &str = "/v1/logs";
const TIMEOUT: Duration = Duration::from_millis(500);

/// Credentials that change at every call to the provider (`AKIDTEST1`, `AKIDTEST2`, ...), so
/// a test sees when the sink asked for new ones.
fn rotating_credentials() -> CredentialsCache {
    let calls = Arc::new(AtomicU32::new(0));
    let provider = provide_credentials_fn(move || {
        let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            Ok(Credentials::new(
                format!("AKIDTEST{n}"),
                "secret",
                None,
                None,
                "rotating",
            ))
        }
    });
    CredentialsCache::new(SharedCredentialsProvider::new(provider))
}

fn service(backend: &ScriptedBackend) -> Service {
    let endpoints = Endpoints {
        region: "us-east-1".into(),
        traces_url: format!("{}{TRACES}", backend.endpoint),
        logs_url: format!("{}{LOGS}", backend.endpoint),
        log_destination: Some(("app".into(), "otlp".into())),
    };
    Service::new(endpoints, rotating_credentials(), TIMEOUT).expect("a client")
}

/// The access key id a recorded request was signed with.
fn signed_with(r: &vigil_test_support::Recorded) -> String {
    let auth = r.header("authorization").expect("signed");
    let credential = auth
        .split("Credential=")
        .nth(1)
        .expect("a SigV4 authorization header");
    credential.split('/').next().unwrap_or_default().to_owned()
}

/// What each answer means, one `send` per answer.
#[tokio::test]
async fn every_answer_is_classified() {
    let backend = ScriptedBackend::start();
    let service = service(&backend);
    let table: [(&str, Canned, Check); 2] = [
        ("accepted", traces_ok(), |v| {
            matches!(v, Verdict::Accepted { rejected: 0, .. })
        }),
        (
            "partial success",
            traces_partial(3),
            |v| matches!(v, Verdict::Accepted { rejected: 3, why } if why.contains("invalid")),
        ),
    ];
    let rest: [(&str, Canned, Check); 5] = [
        (
            "credentials refused",
            failure(403, "expired token"),
            |v| matches!(v, Verdict::Retry { after: None, why } if why.contains("403")),
        ),
        (
            "refused item",
            failure(400, "invalid span"),
            |v| matches!(v, Verdict::Split { why } if why.contains("400")),
        ),
        ("too large", failure(413, "payload too large"), |v| {
            matches!(v, Verdict::Split { .. })
        }),
        (
            "refused for good",
            failure(404, "no such endpoint"),
            |v| matches!(v, Verdict::Refused { why } if why.contains("404")),
        ),
        (
            "slower than the request timeout",
            traces_ok().after(Duration::from_millis(1_500)),
            |v| matches!(v, Verdict::Retry { after: None, .. }),
        ),
    ];
    for (what, answer, check) in table.into_iter().chain(retried()).chain(rest) {
        backend.script(TRACES, [answer]);
        let verdict = service.send(&Signal::Traces, &mut spans(4)).await;
        assert!(check(&verdict), "{what}: {}", describe(&verdict));
    }
    let calls = backend.requests_for(TRACES);
    assert_eq!(calls.len(), 11);
    // The credentials were asked for again after the 403 (index 6), and only then.
    let keys: Vec<String> = calls.iter().map(signed_with).collect();
    assert!(keys[..=6].iter().all(|k| k == "AKIDTEST1"), "{keys:?}");
    assert!(keys[7..].iter().all(|k| k == "AKIDTEST2"), "{keys:?}");
    assert!(
        calls[0]
            .header("authorization")
            .is_some_and(|a| a.contains("/us-east-1/xray/aws4_request")),
        "{:?}",
        calls[0].header("authorization")
    );

    // Logs carry their destination and are signed for CloudWatch Logs.
    backend.script(LOGS, [logs_partial(1)]);
    let verdict = service.send(&Signal::Logs, &mut logs(2)).await;
    assert!(
        matches!(verdict, Verdict::Accepted { rejected: 1, .. }),
        "{}",
        describe(&verdict)
    );
    let call = &backend.requests_for(LOGS)[0];
    assert_eq!(call.header("x-aws-log-group"), Some("app"));
    assert_eq!(call.header("x-aws-log-stream"), Some("otlp"));
    assert!(
        call.header("authorization")
            .is_some_and(|a| a.contains("/logs/aws4_request"))
    );
    assert_eq!(records(&decode_logs(&call.body)), 2);
    assert_eq!(backend.unscripted(), 0);
}

fn log(n: u64) -> Event {
    let message = match n {
        17 => "poisoned".to_owned(),
        _ => format!("event {n}"),
    };
    Event::Log(LogEvent::new(message, crate::event::now_ms()))
}

/// The sink over a script of mixed answers: an expired key (403), throttled with Retry-After,
/// 5xx, a record refused wherever it goes (halved until alone), a partial success: every batch
/// is acknowledged once and every record counted once.
#[tokio::test]
async fn conformance() {
    let backend = ScriptedBackend::start();
    let mut config: AwsOtlpConfig =
        toml::from_str("log_group = \"app\"\nlog_stream = \"otlp\"\n").expect("a valid config");
    config.request.max_backoff_ms = Some(20);
    config.request.timeout_ms = Some(TIMEOUT.as_millis() as u64);
    config.batch.timeout_ms = Some(20);
    config.batch.max_events = Some(8);
    backend.script(
        LOGS,
        [
            failure(403, "expired token"),
            failure(429, "rate exceeded").with_header("Retry-After", "1"),
            failure(503, "unavailable"),
        ],
    );
    backend.otherwise(LOGS, logs_ok());
    backend.when_body_contains(LOGS, "poisoned", failure(400, "invalid record"), usize::MAX);
    backend.when_body_contains(LOGS, "event 31", logs_partial(2), 1);
    let stats = Stats::new("aws_otlp_conformance");
    let (traces, logs) = encoders(&config, "us-east-1");
    let request = config.request_settings();
    let sink = AwsOtlpSink {
        dispatch: Dispatch::shared(
            "aws_otlp_conformance",
            service(&backend),
            stats.clone(),
            request,
        ),
        name: "aws_otlp_conformance".into(),
        traces: Arc::new(traces),
        logs: Arc::new(logs),
        config,
        stats: stats.clone(),
    };
    let batches: Vec<Vec<Event>> = (0..8)
        .map(|b| (0..5).map(|i| log(b * 5 + i)).collect())
        .collect();
    run_to_completion(|rx| sink.run(rx), batches).await;
    let counts = Counts::of(&stats);
    counts.assert_add_up();
    assert_eq!((counts.received, counts.sent, counts.rejected), (40, 37, 3));
    assert_eq!(backend.unscripted(), 0);
}
