//! A CloudWatch Logs stand-in for the benchmark: awsJson 1.1 on one thread (so it takes as
//! little of the machine from the agent as it can), answering at once, checking every event.
//! Operations: CreateLogGroup, CreateLogStream, PutRetentionPolicy, DescribeLogGroups,
//! DescribeLogStreams, GetLogEvents (an empty tail), PutLogEvents.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::generate::CARDS;

const MAX_REQUEST_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
const MAX_EVENTS: usize = 10_000;
const MAX_EVENT_BYTES: usize = 262_144 - EVENT_OVERHEAD;
const DAY_MS: i64 = 24 * 3600 * 1000;

pub struct Standin {
    port: u16,
    state: Arc<State>,
}

struct State {
    expected: u64,
    distinct: AtomicU64,
    last_new: Mutex<Option<Instant>>,
    check: Mutex<Check>,
}

#[derive(Default)]
struct Check {
    groups: HashSet<String>,
    streams: HashSet<(String, String)>,
    retention_set: u64,
    requests: u64,
    events: u64,
    seen: Vec<bool>,
    /// Per stream: the sequence number of the last event.
    last_seq: HashMap<(String, String), u64>,
    duplicates: u64,
    out_of_order: u64,
    unexpected: u64,
    unparsed: u64,
    cards_leaked: u64,
    redacted: u64,
    violations: Vec<String>,
    violation_count: u64,
}

/// What the stand-in saw, checked.
pub struct Report {
    pub requests: u64,
    expected: u64,
    check: Check,
    distinct: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Names {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Put {
    log_group_name: String,
    log_stream_name: String,
    log_events: Vec<InEvent>,
}

#[derive(Deserialize)]
struct InEvent {
    timestamp: i64,
    message: String,
}

impl Standin {
    /// Starts on a free port; `expected` events numbered 0.. are expected.
    pub fn start(expected: u64) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            expected,
            distinct: AtomicU64::new(0),
            last_new: Mutex::new(None),
            check: Mutex::new(Check {
                seen: vec![false; expected as usize],
                ..Check::default()
            }),
        });
        let shared = Arc::clone(&state);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("standin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a bound listener");
                    let app = axum::Router::new().route(
                        "/",
                        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                            let state = Arc::clone(&shared);
                            async move { handle(&state, &headers, &body) }
                        }),
                    );
                    let _ = axum::serve(listener, app).await;
                });
            })?;
        Ok(Self { port, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Distinct expected events received so far.
    pub fn distinct(&self) -> u64 {
        self.state.distinct.load(Ordering::Acquire)
    }

    /// When the last event not seen before arrived.
    pub fn last_new_event(&self) -> Option<Instant> {
        *self.state.last_new.lock().expect("not poisoned")
    }

    pub fn finish(self) -> Report {
        let check = std::mem::take(&mut *self.state.check.lock().expect("not poisoned"));
        Report {
            requests: check.requests,
            expected: self.state.expected,
            distinct: self.distinct(),
            check,
        }
    }
}

fn answer(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/x-amz-json-1.1"),
            (header::HeaderName::from_static("x-amzn-requestid"), "bench"),
        ],
        body,
    )
        .into_response()
}

fn error(kind: &str, message: &str) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        serde_json::json!({"__type": kind, "message": message}).to_string(),
    )
}

fn handle(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(op) = target.strip_prefix("Logs_20140328.") else {
        return error("UnknownOperationException", "not a CloudWatch Logs request");
    };
    if op == "PutLogEvents" {
        return put(state, body);
    }
    let names: Names = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(e) => return error("SerializationException", &e.to_string()),
    };
    let group = names.log_group_name.unwrap_or_default();
    let stream = names.log_stream_name.unwrap_or_default();
    let mut c = state.check.lock().expect("not poisoned");
    match op {
        "CreateLogGroup" => {
            if !c.groups.insert(group) {
                return error("ResourceAlreadyExistsException", "group exists");
            }
            answer(StatusCode::OK, "{}".into())
        }
        "PutRetentionPolicy" => {
            c.retention_set += 1;
            answer(StatusCode::OK, "{}".into())
        }
        "CreateLogStream" => {
            if !c.groups.contains(&group) {
                return error(
                    "ResourceNotFoundException",
                    "The specified log group does not exist.",
                );
            }
            if !c.streams.insert((group, stream)) {
                return error("ResourceAlreadyExistsException", "stream exists");
            }
            answer(StatusCode::OK, "{}".into())
        }
        "DescribeLogGroups" => {
            let groups: Vec<_> = c
                .groups
                .iter()
                .map(|g| serde_json::json!({"logGroupName": g, "creationTime": 0}))
                .collect();
            answer(
                StatusCode::OK,
                serde_json::json!({"logGroups": groups}).to_string(),
            )
        }
        "DescribeLogStreams" => {
            let streams: Vec<_> = c
                .streams
                .iter()
                .filter(|(g, _)| *g == group)
                .map(|(_, s)| serde_json::json!({"logStreamName": s, "creationTime": 0}))
                .collect();
            answer(
                StatusCode::OK,
                serde_json::json!({"logStreams": streams}).to_string(),
            )
        }
        "GetLogEvents" => {
            if !c.streams.contains(&(group, stream)) {
                return error(
                    "ResourceNotFoundException",
                    "The specified log stream does not exist.",
                );
            }
            // Nothing was shipped before this run: an empty tail.
            answer(
                StatusCode::OK,
                r#"{"events":[],"nextForwardToken":"f/0","nextBackwardToken":"b/0"}"#.into(),
            )
        }
        _ => error("UnknownOperationException", op),
    }
}

/// The number after `"seq":` in a message (the generator's line number).
fn seq_of(message: &str) -> Option<u64> {
    let at = memchr::memmem::find(message.as_bytes(), b"\"seq\":")? + 6;
    let digits: &str = &message[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn put(state: &State, body: &[u8]) -> Response {
    let put: Put = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return error("SerializationException", &e.to_string()),
    };
    let now = vigil_agent::event::now_ms();
    let mut c = state.check.lock().expect("not poisoned");
    let key = (put.log_group_name, put.log_stream_name);
    if !c.streams.contains(&key) {
        return error(
            "ResourceNotFoundException",
            "The specified log stream does not exist.",
        );
    }
    c.requests += 1;
    let events = &put.log_events;
    let bytes: usize = events
        .iter()
        .map(|e| e.message.len() + EVENT_OVERHEAD)
        .sum();
    let mut violations = Vec::new();
    if events.is_empty() || events.len() > MAX_EVENTS {
        violations.push(format!("{} events in one request", events.len()));
    }
    if bytes > MAX_REQUEST_BYTES {
        violations.push(format!("{bytes} bytes in one request"));
    }
    if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
        violations.push("events not in chronological order".into());
    }
    if let (Some(first), Some(last)) = (events.first(), events.last())
        && last.timestamp - first.timestamp > DAY_MS
    {
        violations.push("a request spans more than 24 hours".into());
    }
    let needles: Vec<String> = CARDS
        .iter()
        .flat_map(|card| {
            [
                card.to_string(),
                card.chars().filter(char::is_ascii_digit).collect(),
            ]
        })
        .collect();
    let mut new = 0;
    for e in events {
        if e.message.len() > MAX_EVENT_BYTES {
            violations.push(format!("an event of {} bytes", e.message.len()));
        }
        if e.timestamp < now - 14 * DAY_MS || e.timestamp > now + 2 * 3600 * 1000 {
            violations.push(format!(
                "timestamp {} outside CloudWatch's window",
                e.timestamp
            ));
        }
        if needles.iter().any(|n| e.message.contains(n.as_str())) {
            c.cards_leaked += 1;
        }
        if e.message.contains("[REDACTED") {
            c.redacted += 1;
        }
        c.events += 1;
        let Some(seq) = seq_of(&e.message) else {
            c.unparsed += 1;
            continue;
        };
        if seq >= state.expected {
            c.unexpected += 1;
            continue;
        }
        let last = c.last_seq.insert(key.clone(), seq);
        if last.map_or(seq != 0, |l| seq != l + 1) {
            c.out_of_order += 1;
        }
        if std::mem::replace(&mut c.seen[seq as usize], true) {
            c.duplicates += 1;
        } else {
            new += 1;
        }
    }
    c.violation_count += violations.len() as u64;
    for v in violations {
        if c.violations.len() < 5 {
            c.violations.push(v);
        }
    }
    drop(c);
    if new > 0 {
        *state.last_new.lock().expect("not poisoned") = Some(Instant::now());
        state.distinct.fetch_add(new, Ordering::AcqRel);
    }
    answer(StatusCode::OK, r#"{"nextSequenceToken":"1"}"#.into())
}

impl Report {
    /// Prints what was checked; an error when a promise did not hold.
    pub fn print_and_check(&self) -> anyhow::Result<()> {
        let c = &self.check;
        let expected_redacted = (0..self.expected).filter(|s| s % 100 == 7).count() as u64;
        println!(
            "  stand-in: {} events in {} requests; {} of {} distinct, {} duplicates, {} out of order, {} limit violations, {} card numbers leaked, {} of {} card lines redacted; {} group(s) created, retention set {} time(s)",
            c.events,
            c.requests,
            self.distinct,
            self.expected,
            c.duplicates,
            c.out_of_order,
            c.violation_count,
            c.cards_leaked,
            c.redacted,
            expected_redacted,
            c.groups.len(),
            c.retention_set,
        );
        let mut failed = Vec::new();
        if self.distinct != self.expected {
            failed.push(format!("{} events missing", self.expected - self.distinct));
        }
        if c.duplicates > 0 {
            failed.push(format!("{} duplicates", c.duplicates));
        }
        if c.out_of_order > 0 {
            failed.push(format!("{} events out of order", c.out_of_order));
        }
        if c.unexpected + c.unparsed > 0 {
            failed.push(format!(
                "{} events not from the generator",
                c.unexpected + c.unparsed
            ));
        }
        if c.violation_count > 0 {
            failed.push(format!("limits broken: {}", c.violations.join("; ")));
        }
        if c.cards_leaked > 0 {
            failed.push(format!(
                "{} card numbers arrived unredacted",
                c.cards_leaked
            ));
        }
        if c.redacted != expected_redacted {
            failed.push(format!(
                "{} of {expected_redacted} card lines redacted",
                c.redacted
            ));
        }
        anyhow::ensure!(
            failed.is_empty(),
            "the stand-in's checks failed: {}",
            failed.join(", ")
        );
        Ok(())
    }
}
