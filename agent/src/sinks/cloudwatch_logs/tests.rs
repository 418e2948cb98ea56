//! The CloudWatch Logs sink against a scripted stand-in speaking CloudWatch Logs' awsJson 1.1
//! protocol: each answer PutLogEvents can give, classified by one `Backend::send` (a missing
//! stream is created, then the events put again), and the sink's conformance run.

use std::time::Duration;

use serde_json::json;
use vigil_test_support::{Canned, ScriptedBackend};

use super::service::{Service, StreamId};
use super::*;
use crate::sinks::conformance::{Counts, run_to_completion};
use crate::sinks::driver::{Backend, Verdict};

const PUT: &str = "PutLogEvents";

/// Small backoffs and a short request timeout, so retries and the timeout path take little time.
fn config(group: &str, stream: &str) -> CloudWatchLogsConfig {
    let mut config: CloudWatchLogsConfig = toml::from_str(&format!(
        "log_group = \"{group}\"\nlog_stream = \"{stream}\"\n"
    ))
    .expect("a valid config");
    config.request.max_backoff_ms = Some(20);
    config.request.timeout_ms = Some(500);
    config.batch.timeout_ms = Some(20);
    config
}

fn id() -> StreamId {
    StreamId {
        group: "app".into(),
        stream: "web-1".into(),
    }
}

fn request(n: usize) -> Request {
    let now = crate::event::now_ms();
    Request {
        events: (0..n)
            .map(|i| (now - 1_000 + i as i64, Message::new(&format!("line {i}"))))
            .collect(),
    }
}

fn ok() -> Canned {
    Canned::aws_json_ok(json!({ "nextSequenceToken": "49590000000000000000000000000001" }))
}

fn error(status: u16, code: &str) -> Canned {
    Canned::aws_json_error(status, code, &format!("{code} (scripted)"))
}

/// What each answer means, one `send` per answer.
#[tokio::test]
async fn every_answer_is_classified() {
    let backend = ScriptedBackend::start();
    let stats = Stats::new("cwl_classify");
    let sdk = backend.sdk_config().await;
    let service = Service::with_sdk("cwl_classify", &config("app", "web-1"), stats, sdk);
    type Check = fn(&Verdict<Request>) -> bool;
    let table: [(&str, Canned, Check); 9] = [
        ("accepted", ok(), |v| {
            matches!(v, Verdict::Accepted { rejected: 0, .. })
        }),
        (
            "some events refused for their timestamps",
            Canned::aws_json_ok(json!({
                "nextSequenceToken": "2",
                "rejectedLogEventsInfo": { "tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 3 }
            })),
            |v| matches!(v, Verdict::Accepted { rejected: 2, why } if why.contains("too old 1")),
        ),
        (
            "throttled",
            error(400, "ThrottlingException"),
            |v| matches!(v, Verdict::Retry { after: None, why } if why.contains("ThrottlingException")),
        ),
        ("5xx", error(503, "ServiceUnavailableException"), |v| {
            matches!(v, Verdict::Retry { after: None, .. })
        }),
        (
            "refused event",
            error(400, "InvalidParameterException"),
            |v| matches!(v, Verdict::Split { why } if why.contains("InvalidParameterException")),
        ),
        (
            "already accepted (a retry of a stored request)",
            error(400, "DataAlreadyAcceptedException"),
            |v| matches!(v, Verdict::Accepted { rejected: 0, .. }),
        ),
        ("denied", error(400, "AccessDeniedException"), |v| {
            matches!(v, Verdict::Retry { after: None, .. })
        }),
        (
            "slower than the request timeout",
            ok().after(Duration::from_millis(1_500)),
            |v| matches!(v, Verdict::Retry { after: None, .. }),
        ),
        (
            "an answer that is not awsJson",
            Canned::new(502, "text/html", "<html>Bad Gateway</html>"),
            |v| matches!(v, Verdict::Retry { after: None, .. }),
        ),
    ];
    for (what, answer, check) in table {
        backend.script(PUT, [answer]);
        let mut req = request(4);
        let verdict = service.send(&id(), &mut req).await;
        assert!(check(&verdict), "{what}: {verdict:?}");
    }
    let calls = backend.requests_for(PUT);
    assert_eq!(calls.len(), 9);
    let body = calls[0].json();
    assert_eq!(body["logGroupName"], "app");
    assert_eq!(body["logStreamName"], "web-1");
    assert_eq!(body["logEvents"].as_array().map(Vec::len), Some(4));
    assert_eq!(backend.unscripted(), 0);
}

/// A missing stream is created (group with its retention, then the stream), and the events are
/// put again within the same attempt; with `create_missing = false` the request waits instead.
#[tokio::test]
async fn a_missing_stream_is_created_then_the_events_accepted() {
    let backend = ScriptedBackend::start();
    let sdk = backend.sdk_config().await;
    let stats = Stats::new("cwl_create");
    let service = Service::with_sdk("cwl_create", &config("app", "web-1"), stats, sdk.clone());
    backend.script(PUT, [error(400, "ResourceNotFoundException"), ok()]);
    backend.script("CreateLogGroup", [Canned::aws_json_ok(json!({}))]);
    backend.script("PutRetentionPolicy", [Canned::aws_json_ok(json!({}))]);
    backend.script("CreateLogStream", [Canned::aws_json_ok(json!({}))]);
    let verdict = service.send(&id(), &mut request(3)).await;
    assert!(
        matches!(verdict, Verdict::Accepted { rejected: 0, .. }),
        "{verdict:?}"
    );
    let ops: Vec<String> = backend
        .requests()
        .into_iter()
        .map(|r| r.operation)
        .collect();
    assert_eq!(
        ops,
        [
            PUT,
            "CreateLogGroup",
            "PutRetentionPolicy",
            "CreateLogStream",
            PUT
        ]
    );
    let calls = backend.requests();
    assert_eq!(calls[1].json()["logGroupName"], "app");
    assert_eq!(calls[2].json()["retentionInDays"], 30);
    assert_eq!(calls[3].json()["logStreamName"], "web-1");

    // The group is known now: only the stream is created; "already exists" is fine.
    backend.script(PUT, [error(400, "ResourceNotFoundException"), ok()]);
    backend.script(
        "CreateLogStream",
        [error(400, "ResourceAlreadyExistsException")],
    );
    let other = StreamId {
        group: "app".into(),
        stream: "web-2".into(),
    };
    let verdict = service.send(&other, &mut request(1)).await;
    assert!(matches!(verdict, Verdict::Accepted { .. }), "{verdict:?}");
    assert_eq!(backend.requests_for("CreateLogGroup").len(), 1);

    let mut no_create = config("app", "web-1");
    no_create.create_missing = false;
    let service = Service::with_sdk("cwl_create", &no_create, Stats::new("cwl_create"), sdk);
    backend.script(PUT, [error(400, "ResourceNotFoundException")]);
    let verdict = service.send(&id(), &mut request(1)).await;
    assert!(
        matches!(&verdict, Verdict::Retry { why, .. } if why.contains("create_missing = false")),
        "{verdict:?}"
    );
    assert_eq!(backend.unscripted(), 0);
}

fn log(ts: i64, message: &str, shard: &str) -> Event {
    let mut l = LogEvent::new(message.into(), ts);
    l.attributes.insert("shard".into(), shard.into());
    Event::Log(l)
}

/// The sink over a script of mixed answers, on two streams: the stream missing at first,
/// throttled, 5xx, an event refused wherever it goes, a success that reports one event
/// rejected, an event too old to send (dropped by policy), and a stream whose tail already
/// holds the first events (a restart): every batch is acknowledged once and every event counted
/// once.
#[tokio::test]
async fn conformance() {
    let backend = ScriptedBackend::start();
    let mut config = config("app", "shard-{shard}");
    config.out_of_range = OutOfRange::Drop;
    // Messages as written, so the stream's tail below matches them.
    config.encoding = crate::sinks::encoding::Encoding::Text;
    config.batch.max_events = Some(6);
    let base = crate::event::now_ms() - 60_000;
    // Stream shard-a already holds its first three events (sent before a crash).
    let tail: Vec<_> = (0..3)
        .map(|i| json!({"timestamp": base + i, "message": format!("event {i}"), "ingestionTime": base + i}))
        .collect();
    backend.when_body_contains(
        "GetLogEvents",
        "shard-a",
        Canned::aws_json_ok(
            json!({"events": tail, "nextForwardToken": "f/1", "nextBackwardToken": "b/1"}),
        ),
        usize::MAX,
    );
    backend.otherwise(
        "GetLogEvents",
        Canned::aws_json_ok(
            json!({"events": [], "nextForwardToken": "f/0", "nextBackwardToken": "b/0"}),
        ),
    );
    backend.script(
        PUT,
        [
            error(400, "ResourceNotFoundException"),
            error(400, "ThrottlingException"),
            error(503, "ServiceUnavailableException"),
        ],
    );
    backend.otherwise(PUT, ok());
    backend.when_body_contains(
        PUT,
        "poisoned",
        error(400, "InvalidParameterException"),
        usize::MAX,
    );
    backend.when_body_contains(
        PUT,
        "event 31",
        Canned::aws_json_ok(json!({"nextSequenceToken": "3", "rejectedLogEventsInfo": {"tooOldLogEventEndIndex": 1}})),
        1,
    );
    for op in ["CreateLogGroup", "PutRetentionPolicy", "CreateLogStream"] {
        backend.otherwise(op, Canned::aws_json_ok(json!({})));
    }
    let stats = Stats::new("cwl_conformance");
    let sdk = backend.sdk_config().await;
    let sink = CloudWatchLogsSink {
        name: "cwl_conformance".into(),
        group: template::Template::parse(&config.log_group).expect("template"),
        stream: template::Template::parse(&config.log_stream).expect("template"),
        service: Service::with_sdk("cwl_conformance", &config, stats.clone(), sdk),
        config,
        stats: stats.clone(),
    };
    // 8 batches of 5 events; events alternate between the streams only after the first ten,
    // so shard-a starts with the three events its tail holds.
    let batches: Vec<Vec<Event>> = (0..8)
        .map(|b| {
            (0..5)
                .map(|i| {
                    let n = b * 5 + i;
                    let shard = if n < 10 || n % 2 == 0 { "a" } else { "b" };
                    match n {
                        17 => log(base + n, "poisoned event", shard),
                        // Older than CloudWatch Logs keeps: dropped by `out_of_range = "drop"`.
                        25 => log(base - 20 * 24 * 3600 * 1000, "ancient", shard),
                        _ => log(base + n, &format!("event {n}"), shard),
                    }
                })
                .collect()
        })
        .collect();
    run_to_completion(|rx| sink.run(rx), batches).await;
    let counts = Counts::of(&stats);
    counts.assert_add_up();
    assert_eq!(
        counts,
        Counts {
            received: 40,
            sent: 34,
            rejected: 2,
            dropped_out_of_range: 1,
            deduplicated: 3,
        }
    );
    // Nothing already in the stream was sent again.
    let sent: Vec<String> = backend
        .requests_for(PUT)
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| {
            r.json()["logEvents"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    for i in 0..3 {
        assert!(
            !sent.contains(&format!("event {i}")),
            "event {i} sent again"
        );
    }
    assert_eq!(backend.requests_for("CreateLogStream").len(), 1);
    assert_eq!(backend.unscripted(), 0);
}
