//! The CloudWatch metrics sink against a scripted stand-in speaking the protocol of the pinned
//! `aws-sdk-cloudwatch` (1.99.0: awsQuery, form-encoded requests and XML answers; checked
//! below on the wire): each answer PutMetricData can give, classified by one `Backend::send`,
//! and the sink's conformance run.

use std::time::Duration;

use vigil_test_support::{Canned, ScriptedBackend};

use super::aggregate::SeriesKey;
use super::request::{Datum, DatumValue, Request};
use super::service::Service;
use super::*;
use crate::sinks::conformance::run_to_completion;
use crate::sinks::driver::{Backend, Verdict};

const PUT: &str = "PutMetricData";

/// Small backoffs and a short request timeout, so retries and the timeout path take little time.
fn config() -> CloudWatchMetricsConfig {
    let mut config: CloudWatchMetricsConfig =
        toml::from_str("namespace = \"Shop\"\n").expect("a valid config");
    config.request.max_backoff_ms = Some(20);
    config.request.timeout_ms = Some(500);
    config
}

fn request(names: &[&str]) -> Request {
    let ts = (crate::event::now_ms() / 60_000 - 2) * 60_000;
    let data = names
        .iter()
        .enumerate()
        .map(|(i, name)| Datum {
            key: SeriesKey {
                namespace: "Shop".into(),
                name: (*name).to_owned(),
                dimensions: vec![("host".into(), "web-1".into())],
                unit: "Count",
            },
            timestamp_ms: ts,
            value: DatumValue::Value(i as f64),
        })
        .collect();
    Request {
        namespace: "Shop".into(),
        data,
    }
}

fn error(status: u16, code: &str) -> Canned {
    Canned::aws_query_error(status, code, &format!("{code} (scripted)"))
}

/// What each answer means, one `send` per answer.
#[tokio::test]
async fn every_answer_is_classified() {
    let backend = ScriptedBackend::start();
    let service = Service::with_sdk(&config(), backend.sdk_config().await);
    type Check = fn(&Verdict<Request>) -> bool;
    let table: [(&str, Canned, Check); 9] = [
        ("accepted", Canned::aws_query_ok(PUT), |v| {
            matches!(v, Verdict::Accepted { rejected: 0, .. })
        }),
        (
            "throttled",
            error(400, "Throttling"),
            |v| matches!(v, Verdict::Retry { after: None, why } if why.contains("Throttling")),
        ),
        ("5xx", error(500, "InternalServiceError"), |v| {
            matches!(v, Verdict::Retry { after: None, .. })
        }),
        ("unavailable", error(503, "ServiceUnavailable"), |v| {
            matches!(v, Verdict::Retry { after: None, .. })
        }),
        (
            "refused value",
            error(400, "InvalidParameterValue"),
            |v| matches!(v, Verdict::Split { why } if why.contains("InvalidParameterValue")),
        ),
        (
            "refused combination",
            error(400, "InvalidParameterCombination"),
            |v| matches!(v, Verdict::Split { .. }),
        ),
        ("missing parameter", error(400, "MissingParameter"), |v| {
            matches!(v, Verdict::Split { .. })
        }),
        ("denied", error(403, "AccessDenied"), |v| {
            matches!(v, Verdict::Retry { after: None, .. })
        }),
        (
            "slower than the request timeout",
            Canned::aws_query_ok(PUT).after(Duration::from_millis(1_500)),
            |v| matches!(v, Verdict::Retry { after: None, .. }),
        ),
    ];
    for (what, answer, check) in table {
        backend.script(PUT, [answer]);
        let verdict = service.send(&(), &mut request(&["orders", "errors"])).await;
        assert!(check(&verdict), "{what}: {verdict:?}");
    }
    let calls = backend.requests_for(PUT);
    assert_eq!(calls.len(), 9);
    // The pinned SDK speaks awsQuery: a form body naming the action and the data.
    assert!(
        calls[0]
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        "{:?}",
        calls[0].header("content-type")
    );
    let body = String::from_utf8_lossy(&calls[0].body);
    assert!(body.contains("Action=PutMetricData"), "{body}");
    assert!(body.contains("Namespace=Shop"), "{body}");
    assert!(
        body.contains("MetricData.member.2.MetricName=errors"),
        "{body}"
    );
    assert_eq!(backend.unscripted(), 0);
}

fn gauge(name: &str, ts: i64, value: f64) -> Event {
    Event::Metric(
        crate::event::MetricEvent::new(name, ts, crate::event::MetricValue::Gauge { value })
            .with_tag("host", "web-1"),
    )
}

/// The sink over a script of mixed answers (throttled, 5xx, a datum refused wherever it goes;
/// PutMetricData has no partial success), over three periods, with an event too old to send
/// and a log that reached it: every batch is acknowledged once. The sink counts `sent` per
/// input event whose aggregate was delivered, and the driver counts a refused datum as
/// `rejected` (one datum, whatever number of events it aggregated): so received = sent +
/// dropped_out_of_range + the events rejected on intake, and rejected = those + refused data.
#[tokio::test]
async fn conformance() {
    let backend = ScriptedBackend::start();
    let mut config = config();
    // Keep bodies readable for the body-matching answers below.
    config.compression = false;
    backend.script(
        PUT,
        [error(400, "Throttling"), error(503, "ServiceUnavailable")],
    );
    backend.otherwise(PUT, Canned::aws_query_ok(PUT));
    backend.when_body_contains(
        PUT,
        "MetricName=poisoned",
        error(400, "InvalidParameterValue"),
        usize::MAX,
    );
    let stats = Stats::new("cwm_conformance");
    let sdk = backend.sdk_config().await;
    let service = Arc::new(Service::with_sdk(&config, sdk));
    let policy = RetryPolicy {
        max_backoff: config.request_settings().max_backoff,
        partial_retries: 0,
    };
    let sink = CloudWatchMetricsSink {
        namespace: Template::parse(&config.namespace).expect("template"),
        dimensions: None,
        out: Output::PutMetricData(Delivery::new(
            "cwm_conformance",
            service,
            stats.clone(),
            policy,
            1,
        )),
        config,
        stats: stats.clone(),
    };
    // Three whole periods in the past: each is due at once.
    let base = (crate::event::now_ms() / 60_000 - 5) * 60_000;
    let mut batches: Vec<Vec<Event>> = (0..9)
        .map(|b| {
            let period = base + (b / 3) * 60_000;
            (0..5)
                .map(|i| {
                    let name = if b == 4 && i == 2 {
                        "poisoned".to_owned()
                    } else {
                        format!("m{i}")
                    };
                    gauge(&name, period + b * 1_000, (b * 5 + i) as f64)
                })
                .collect()
        })
        .collect();
    let old = crate::event::now_ms() - 20 * 24 * 3600 * 1000;
    batches[7].push(gauge("m0", old, 1.0));
    batches[8].push(Event::Log(crate::event::LogEvent::new(
        "not a metric".into(),
        base,
    )));
    run_to_completion(|rx| sink.run(rx), batches).await;
    let received = stats.get(Outcome::Received);
    let sent = stats.get(Outcome::Sent);
    let rejected = stats.get(Outcome::Rejected);
    let dropped = stats.get(Outcome::DroppedOutOfRange);
    let refused_data = 1;
    assert_eq!(
        (received, sent, dropped, rejected),
        (47, 45, 1, 1 + refused_data)
    );
    assert_eq!(received, sent + dropped + (rejected - refused_data));
    // Every series of every period was stored (a period may go out in several requests, as
    // batches arrive), the refused datum never.
    let mut stored = std::collections::BTreeSet::new();
    for r in backend.requests_for(PUT).iter().filter(|r| r.status == 200) {
        stored.extend(members(&String::from_utf8_lossy(&r.body)));
    }
    assert_eq!(stored.len(), 3 * 5, "{stored:?}");
    assert!(stored.iter().all(|(_, name)| name != "poisoned"));
    assert_eq!(backend.unscripted(), 0);
}

/// (timestamp, metric name) of each datum of an awsQuery PutMetricData body.
fn members(body: &str) -> Vec<(String, String)> {
    let field = |n: &str, key: &str| {
        body.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("MetricData.member.{n}.{key}=")))
            .map(str::to_owned)
    };
    (1..)
        .map(|n: usize| n.to_string())
        .map_while(|n| Some((field(&n, "Timestamp")?, field(&n, "MetricName")?)))
        .collect()
}
