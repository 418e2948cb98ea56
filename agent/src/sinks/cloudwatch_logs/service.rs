//! Talking to CloudWatch Logs, for the delivery driver: one PutLogEvents call per attempt
//! (creating the group and stream when missing) and what its answer means; before a stream's
//! first request, reading the stream's newest events so that what a crashed run already
//! delivered is not sent again ([`Resume`]). The driver gives each stream its own lane, so a
//! stream's requests go out one at a time and in order, and streams go on side by side.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::SdkError;
use aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo;
use aws_smithy_types::body::SdkBody;
use tokio::sync::Semaphore;
use vigil_common::aws_error::{code, error_text};

use super::config::CloudWatchLogsConfig;
use super::request::{Message, OutOfRange, Request};
use super::resume::Resume;
use crate::event::now_ms;
use crate::sinks::driver::backoff;
use crate::sinks::driver::settings::Settings;
use crate::sinks::driver::{Backend, ErrorNames, Job, Verdict};
use crate::telemetry::{Outcome, Stats};

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamId {
    pub group: String,
    pub stream: String,
}

pub struct Service {
    name: String,
    client: Client,
    create_missing: bool,
    retention_days: i32,
    out_of_range: OutOfRange,
    max_backoff: Duration,
    /// Reads of streams' newest events at once (one per stream, before its first request).
    reads: Semaphore,
    /// Groups known to exist (created or seen), to create each at most once.
    groups: Mutex<HashSet<String>>,
    /// Set once GetLogEvents was denied or is not supported: no stream's tail is read again
    /// (the check after a crash is skipped, at the price of possible duplicates).
    tail_unreadable: AtomicBool,
    stats: Stats,
}

/// A stream's lane: whether its tail was read, and the matching against it while it lasts.
#[derive(Default)]
pub struct Lane {
    started: bool,
    resume: Option<Resume>,
}

/// What an API error means for the request.
enum Meaning {
    /// The group or stream does not exist.
    Missing,
    /// The service refuses the request's content; retrying it as is would never succeed.
    Invalid(String),
    /// The credentials may not call this operation, or the endpoint does not offer it.
    Denied(String),
    /// Already stored (a retry of an accepted request).
    AlreadyAccepted,
    /// Throttling, 5xx, timeouts, network, credentials: try again later.
    Retry(String),
}

fn meaning<E, R>(e: &SdkError<E, R>) -> Meaning
where
    E: aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match code(e) {
        Some("ResourceNotFoundException") => Meaning::Missing,
        Some("DataAlreadyAcceptedException") => Meaning::AlreadyAccepted,
        Some("InvalidParameterException") => Meaning::Invalid(error_text(e)),
        Some(
            "AccessDeniedException"
            | "AccessDenied"
            | "UnauthorizedOperation"
            | "UnknownOperationException"
            | "InvalidAction"
            | "NotImplemented",
        ) => Meaning::Denied(error_text(e)),
        _ => Meaning::Retry(error_text(e)),
    }
}

impl Service {
    pub async fn new(name: &str, config: &CloudWatchLogsConfig, stats: Stats) -> Self {
        let sdk = vigil_common::aws::load().await;
        Self::with_sdk(name, config, stats, sdk)
    }

    /// The service on a given SDK configuration (tests point it at a stand-in).
    pub fn with_sdk(
        name: &str,
        config: &CloudWatchLogsConfig,
        stats: Stats,
        sdk: aws_config::SdkConfig,
    ) -> Self {
        let request = config.request_settings();
        // Retries are the driver's.
        let sdk = vigil_common::aws::without_retries(sdk, request.timeout);
        Self {
            name: name.to_owned(),
            client: Client::new(&sdk),
            create_missing: config.create_missing,
            retention_days: config.retention_days,
            out_of_range: config.out_of_range,
            max_backoff: request.max_backoff,
            reads: Semaphore::new(request.concurrency),
            groups: Mutex::new(HashSet::new()),
            tail_unreadable: AtomicBool::new(false),
            stats,
        }
    }

    /// Events of a successful call that CloudWatch refused for their timestamps, and why.
    fn rejected(&self, info: Option<&RejectedLogEventsInfo>, sent: usize) -> (u64, String) {
        let Some(info) = info else {
            return (0, String::new());
        };
        // Indexes into the request: events before `too_old_end`/`expired_end` and from
        // `too_new_start` on were refused.
        let old = info.too_old_log_event_end_index().unwrap_or(0).max(0) as usize;
        let expired = info.expired_log_event_end_index().unwrap_or(0).max(0) as usize;
        let new = info
            .too_new_log_event_start_index()
            .map(|i| sent.saturating_sub(i.max(0) as usize))
            .unwrap_or(0);
        let rejected = (old.max(expired) + new).min(sent);
        let why = format!(
            "rejected for their timestamps: too old {old}, expired {expired}, too new {new}"
        );
        (rejected as u64, why)
    }

    /// The newest events of the stream (up to 10,000), oldest first; none when the stream does
    /// not exist. Retries like a request while the service cannot be reached. Reading is
    /// optional: without `logs:GetLogEvents` (most agent policies, AWS's
    /// `CloudWatchAgentServerPolicy` among them, do not grant it) or on an endpoint without the
    /// operation, shipping goes ahead unchecked — warned once, counted as `tail_read_skipped`.
    async fn stream_tail(&self, id: &StreamId) -> Vec<(i64, Message)> {
        let mut attempt = 0;
        loop {
            if self.tail_unreadable.load(Ordering::Relaxed) {
                self.stats.error("tail_read_skipped");
                return Vec::new();
            }
            let started = std::time::Instant::now();
            let result = {
                let _permit = self.reads.acquire().await;
                self.client
                    .get_log_events()
                    .log_group_name(&id.group)
                    .log_stream_name(&id.stream)
                    .start_from_head(false)
                    .limit(10_000)
                    .send()
                    .await
            };
            // A request to the backend like any other: it counts for `/ready`.
            self.stats.request(
                started.elapsed(),
                result.is_ok()
                    || result.as_ref().is_err_and(|e| {
                        matches!(meaning(e), Meaning::Missing | Meaning::Denied(_))
                    }),
            );
            match result {
                Ok(out) => {
                    return out
                        .events()
                        .iter()
                        .filter_map(|e| Some((e.timestamp()?, Message::new(e.message()?))))
                        .collect();
                }
                Err(e) => match meaning(&e) {
                    Meaning::Missing => return Vec::new(),
                    Meaning::Denied(why) => {
                        if !self.tail_unreadable.swap(true, Ordering::Relaxed) {
                            tracing::warn!(sink = %self.name, group = %id.group, %why,
                                "cannot call logs:GetLogEvents (optional permission): shipping without \
                                 checking streams for events re-sent after a crash, so a crash may \
                                 duplicate up to one request per stream");
                        }
                        self.stats.error("tail_read_skipped");
                        return Vec::new();
                    }
                    Meaning::Invalid(why) => {
                        tracing::warn!(sink = %self.name, group = %id.group, %why, "cannot read the stream's newest events; not checking for re-sent events");
                        return Vec::new();
                    }
                    Meaning::AlreadyAccepted | Meaning::Retry(_) => {
                        attempt += 1;
                        let delay = backoff(attempt, self.max_backoff);
                        if attempt == 1 || attempt.is_multiple_of(10) {
                            tracing::warn!(sink = %self.name, group = %id.group, stream = %id.stream, attempt,
                                error = %error_text(&e), "GetLogEvents failed; will retry");
                        }
                        self.stats.error("request_failed");
                        self.stats.retry();
                        tokio::time::sleep(delay).await;
                    }
                },
            }
        }
    }
}

impl Backend for Service {
    type Key = StreamId;
    type Request = Request;
    type Lane = Lane;
    const OPERATION: &'static str = "PutLogEvents";
    const ERRORS: ErrorNames = ErrorNames {
        item_refused: "event_refused",
        items_rejected: "events_rejected",
        ..ErrorNames::DEFAULT
    };

    async fn send(&self, id: &StreamId, req: &mut Request) -> Verdict<Request> {
        req.prepare(now_ms(), self.out_of_range, &self.stats);
        if req.events.is_empty() {
            // Every event was out of range and dropped (counted by `prepare`).
            return Verdict::Accepted {
                rejected: 0,
                why: String::new(),
            };
        }
        // The SDK is given no events, and its request's body is swapped for ours before signing:
        // endpoint resolution, credentials, signing and reading the answer stay the SDK's, the
        // events' serialisation is `Request::body`'s.
        let body = bytes::Bytes::from(req.body(&id.group, &id.stream));
        let length = body.len().to_string();
        let mut created = false;
        loop {
            let (body, length) = (body.clone(), length.clone());
            let result = self
                .client
                .put_log_events()
                .log_group_name(&id.group)
                .log_stream_name(&id.stream)
                .set_log_events(Some(Vec::new()))
                .customize()
                .mutate_request(move |request| {
                    *request.body_mut() = SdkBody::from(body.clone());
                    request
                        .headers_mut()
                        .insert("content-length", length.clone());
                })
                .send()
                .await;
            let e = match result {
                Ok(out) => {
                    let (rejected, why) =
                        self.rejected(out.rejected_log_events_info(), req.events.len());
                    return Verdict::Accepted { rejected, why };
                }
                Err(e) => e,
            };
            return match meaning(&e) {
                Meaning::AlreadyAccepted => Verdict::Accepted {
                    rejected: 0,
                    why: String::new(),
                },
                Meaning::Missing if self.create_missing && !created => {
                    match self.create(id).await {
                        Ok(()) => {
                            created = true;
                            continue;
                        }
                        Err(why) => Verdict::Retry { after: None, why },
                    }
                }
                Meaning::Missing if !self.create_missing => Verdict::Retry {
                    after: None,
                    why: "log group or stream does not exist and create_missing = false".into(),
                },
                Meaning::Invalid(why) => Verdict::Split { why },
                // PutLogEvents is required: without it nothing can be shipped, so the data
                // waits (in the buffer) until the permission is granted.
                Meaning::Missing => Verdict::Retry {
                    after: None,
                    why: error_text(&e),
                },
                Meaning::Denied(why) | Meaning::Retry(why) => Verdict::Retry { after: None, why },
            };
        }
    }

    /// Before a stream's first request, reads its newest events; while they last, leaves out
    /// of the requests what the stream already holds.
    async fn admit(&self, id: &StreamId, lane: &mut Lane, job: Job<Request>) -> Vec<Job<Request>> {
        if !lane.started {
            lane.started = true;
            let tail = self.stream_tail(id).await;
            if !tail.is_empty() {
                lane.resume = Some(Resume::new(tail));
            }
        }
        let Some(resume) = lane.resume.as_mut() else {
            return vec![job];
        };
        // Compare in the order the request will be sent.
        let mut job = job;
        job.request
            .prepare(now_ms(), self.out_of_range, &self.stats);
        let fed = resume.feed(job);
        if fed.skipped > 0 {
            self.stats.count(Outcome::Deduplicated, fed.skipped as u64);
            tracing::info!(sink = %self.name, group = %id.group, stream = %id.stream, events = fed.skipped,
                "events re-sent after a restart are already in the stream; not sending them again");
        }
        if fed.done {
            lane.resume = None;
        }
        fed.send
    }

    fn release(&self, _: &StreamId, lane: Lane) -> Vec<Job<Request>> {
        lane.resume.map(Resume::release).unwrap_or_default()
    }
}

impl Service {
    /// Creates the group (with its retention) and the stream; "already exists" is fine.
    async fn create(&self, id: &StreamId) -> Result<(), String> {
        let known = self
            .groups
            .lock()
            .expect("not poisoned")
            .contains(&id.group);
        if !known {
            match self
                .client
                .create_log_group()
                .log_group_name(&id.group)
                .send()
                .await
            {
                Ok(_) => {
                    tracing::info!(sink = %self.name, group = %id.group, retention_days = self.retention_days, "created log group");
                    self.client
                        .put_retention_policy()
                        .log_group_name(&id.group)
                        .retention_in_days(self.retention_days)
                        .send()
                        .await
                        .map_err(|e| format!("set retention: {}", error_text(&e)))?;
                }
                Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => {}
                Err(e) => return Err(format!("create log group: {}", error_text(&e))),
            }
            self.groups
                .lock()
                .expect("not poisoned")
                .insert(id.group.clone());
        }
        match self
            .client
            .create_log_stream()
            .log_group_name(&id.group)
            .log_stream_name(&id.stream)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                // The group vanished since we saw it: create it next time.
                self.groups.lock().expect("not poisoned").remove(&id.group);
                Err(format!("create log stream: {}", error_text(&e)))
            }
            Err(e) => Err(format!("create log stream: {}", error_text(&e))),
        }
    }
}
