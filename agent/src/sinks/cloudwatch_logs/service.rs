//! Talking to CloudWatch Logs: one worker per stream sends its requests in order, creates the
//! group and stream when missing, and retries throttling, 5xx, timeouts and network errors with
//! full-jitter exponential backoff until the request is accepted. Workers of different streams
//! run side by side, so one throttled stream never blocks the others.

use crate::sinks::retry::{backoff, describe};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::config::timeout::TimeoutConfig;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use tokio::sync::{Semaphore, mpsc};

use super::config::CloudWatchLogsConfig;
use super::request::{OutOfRange, Request};
use super::resume::Resume;
use crate::event::now_ms;
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
    /// Requests in flight across all streams.
    in_flight: Semaphore,
    /// Groups known to exist (created or seen), to create each at most once.
    groups: Mutex<HashSet<String>>,
    /// Set once GetLogEvents was denied or is not supported: no stream's tail is read again
    /// (the check after a crash is skipped, at the price of possible duplicates).
    tail_unreadable: std::sync::atomic::AtomicBool,
    stats: Stats,
}

/// What an API error means for the request.
enum Verdict {
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

fn verdict<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> Verdict {
    let describe = || match e {
        SdkError::ServiceError(s) => format!(
            "{}: {}",
            s.err().code().unwrap_or("unknown"),
            s.err().message().unwrap_or("")
        ),
        other => format!("{other:?}"),
    };
    match e.code() {
        Some("ResourceNotFoundException") => Verdict::Missing,
        Some("DataAlreadyAcceptedException") => Verdict::AlreadyAccepted,
        Some("InvalidParameterException") => Verdict::Invalid(describe()),
        Some(
            "AccessDeniedException"
            | "AccessDenied"
            | "UnauthorizedOperation"
            | "UnknownOperationException"
            | "InvalidAction"
            | "NotImplemented",
        ) => Verdict::Denied(describe()),
        _ => Verdict::Retry(describe()),
    }
}

impl Service {
    pub async fn new(name: &str, config: &CloudWatchLogsConfig, stats: Stats) -> Self {
        let sdk = vigil_common::aws::load().await;
        // Retries are ours: they must never give up on accepted data, and must back off per
        // stream; the SDK's own retries would only multiply the attempts.
        let conf = aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(config.request_timeout_ms))
                    .build(),
            )
            .build();
        Self {
            name: name.to_owned(),
            client: Client::from_conf(conf),
            create_missing: config.create_missing,
            retention_days: config.retention_days,
            out_of_range: config.out_of_range,
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            in_flight: Semaphore::new(config.concurrency),
            groups: Mutex::new(HashSet::new()),
            tail_unreadable: std::sync::atomic::AtomicBool::new(false),
            stats,
        }
    }

    /// Sends the requests of one stream, in order, until the dispatcher closes the queue.
    /// Before the first, reads the stream's newest events so that what a crashed run already
    /// delivered is not sent again ([`Resume`]).
    pub async fn worker(self: std::sync::Arc<Self>, id: StreamId, mut rx: mpsc::Receiver<Request>) {
        let mut resume: Option<Resume> = None;
        let mut first = true;
        while let Some(mut req) = rx.recv().await {
            if first {
                first = false;
                let tail = self.stream_tail(&id).await;
                if !tail.is_empty() {
                    resume = Some(Resume::new(tail));
                }
            }
            let ready = match resume.as_mut() {
                Some(r) => {
                    // Compare in the order the request will be sent.
                    req.prepare(now_ms(), self.out_of_range, &self.stats);
                    let fed = r.feed(req);
                    if fed.skipped > 0 {
                        self.stats.count(Outcome::Deduplicated, fed.skipped as u64);
                        tracing::info!(sink = %self.name, group = %id.group, stream = %id.stream, events = fed.skipped,
                            "events re-sent after a restart are already in the stream; not sending them again");
                    }
                    if fed.done {
                        resume = None;
                    }
                    fed.send
                }
                None => vec![req],
            };
            for req in ready {
                self.deliver(&id, req).await;
            }
        }
        for req in resume.map(Resume::release).unwrap_or_default() {
            self.deliver(&id, req).await;
        }
    }

    /// The newest events of the stream (up to 10,000), oldest first; none when the stream does
    /// not exist. Retries like a request while the service cannot be reached. Reading is
    /// optional: without `logs:GetLogEvents` (most agent policies, AWS's
    /// `CloudWatchAgentServerPolicy` among them, do not grant it) or on an endpoint without the
    /// operation, shipping goes ahead unchecked — warned once, counted as `tail_read_skipped`.
    async fn stream_tail(&self, id: &StreamId) -> Vec<(i64, String)> {
        use std::sync::atomic::Ordering;
        let mut attempt = 0;
        loop {
            if self.tail_unreadable.load(Ordering::Relaxed) {
                self.stats.error("tail_read_skipped");
                return Vec::new();
            }
            let started = std::time::Instant::now();
            let result = {
                let _permit = self.in_flight.acquire().await;
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
                        matches!(verdict(e), Verdict::Missing | Verdict::Denied(_))
                    }),
            );
            match result {
                Ok(out) => {
                    return out
                        .events()
                        .iter()
                        .filter_map(|e| Some((e.timestamp()?, e.message()?.to_owned())))
                        .collect();
                }
                Err(e) => match verdict(&e) {
                    Verdict::Missing => return Vec::new(),
                    Verdict::Denied(why) => {
                        if !self.tail_unreadable.swap(true, Ordering::Relaxed) {
                            tracing::warn!(sink = %self.name, group = %id.group, %why,
                                "cannot call logs:GetLogEvents (optional permission): shipping without \
                                 checking streams for events re-sent after a crash, so a crash may \
                                 duplicate up to one request per stream");
                        }
                        self.stats.error("tail_read_skipped");
                        return Vec::new();
                    }
                    Verdict::Invalid(why) => {
                        tracing::warn!(sink = %self.name, group = %id.group, %why, "cannot read the stream's newest events; not checking for re-sent events");
                        return Vec::new();
                    }
                    Verdict::AlreadyAccepted | Verdict::Retry(_) => {
                        attempt += 1;
                        let delay = backoff(attempt, self.max_backoff);
                        if attempt == 1 || attempt.is_multiple_of(10) {
                            tracing::warn!(sink = %self.name, group = %id.group, stream = %id.stream, attempt,
                                error = %describe(&e), "GetLogEvents failed; will retry");
                        }
                        self.stats.error("request_failed");
                        self.stats.retry();
                        tokio::time::sleep(delay).await;
                    }
                },
            }
        }
    }

    /// Delivers one request, however long it takes; only events the service refuses outright
    /// (counted and logged) are left out.
    async fn deliver(&self, id: &StreamId, req: Request) {
        let mut queue = VecDeque::from([req]);
        let mut attempt: u32 = 0;
        while let Some(mut req) = queue.pop_front() {
            req.prepare(now_ms(), self.out_of_range, &self.stats);
            // The messages move into the SDK's events (no copy); a request split below to
            // isolate a refused event takes them back.
            let mut events: Vec<InputLogEvent> = std::mem::take(&mut req.events)
                .into_iter()
                .filter_map(|(ts, m)| {
                    InputLogEvent::builder()
                        .timestamp(ts)
                        .message(m)
                        .build()
                        .ok()
                })
                .collect();
            loop {
                if events.is_empty() {
                    break;
                }
                let result = {
                    let _permit = self.in_flight.acquire().await;
                    let started = std::time::Instant::now();
                    let result = self
                        .client
                        .put_log_events()
                        .log_group_name(&id.group)
                        .log_stream_name(&id.stream)
                        .set_log_events(Some(events.clone()))
                        .send()
                        .await;
                    self.stats.request(started.elapsed(), result.is_ok());
                    result
                };
                let e = match result {
                    Ok(out) => {
                        attempt = 0;
                        self.stats.batch_size(events.len());
                        self.count_rejected(id, out.rejected_log_events_info(), events.len());
                        break;
                    }
                    Err(e) => e,
                };
                match verdict(&e) {
                    Verdict::AlreadyAccepted => {
                        self.stats.count(Outcome::Sent, events.len() as u64);
                        break;
                    }
                    Verdict::Missing if self.create_missing => {
                        if let Err(err) = self.create(id).await {
                            attempt += 1;
                            self.retry_later(id, attempt, &err, events.len()).await;
                        }
                    }
                    Verdict::Missing => {
                        attempt += 1;
                        let why = "log group or stream does not exist and create_missing = false";
                        self.retry_later(id, attempt, why, events.len()).await;
                    }
                    Verdict::Invalid(why) if events.len() > 1 => {
                        // Find the event at fault by halving; the rest still goes out.
                        tracing::debug!(sink = %self.name, group = %id.group, %why, "request refused; splitting it");
                        req.events = std::mem::take(&mut events)
                            .into_iter()
                            .map(|e| (e.timestamp, e.message))
                            .collect();
                        let (a, b) = std::mem::take(&mut req).split();
                        queue.push_front(b);
                        queue.push_front(a);
                        break;
                    }
                    Verdict::Invalid(why) => {
                        self.stats.count(Outcome::Rejected, 1);
                        self.stats.error("event_refused");
                        tracing::error!(sink = %self.name, group = %id.group, stream = %id.stream, %why,
                            "CloudWatch Logs refused an event; it is counted as rejected and not retried");
                        break;
                    }
                    // PutLogEvents is required: without it nothing can be shipped, so the data
                    // waits (in the buffer) until the permission is granted.
                    Verdict::Denied(why) | Verdict::Retry(why) => {
                        attempt += 1;
                        self.retry_later(id, attempt, &why, events.len()).await;
                    }
                }
            }
            for ack in req.acks.drain(..) {
                ack.delivered();
            }
        }
    }

    fn count_rejected(
        &self,
        id: &StreamId,
        info: Option<&aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo>,
        sent: usize,
    ) {
        let mut rejected = 0usize;
        if let Some(info) = info {
            // Indexes into the request: events before `too_old_end`/`expired_end` and from
            // `too_new_start` on were refused.
            let old = info.too_old_log_event_end_index().unwrap_or(0).max(0) as usize;
            let expired = info.expired_log_event_end_index().unwrap_or(0).max(0) as usize;
            let new = info
                .too_new_log_event_start_index()
                .map(|i| sent.saturating_sub(i.max(0) as usize))
                .unwrap_or(0);
            rejected = (old.max(expired) + new).min(sent);
            if rejected > 0 {
                self.stats.error("events_rejected");
                tracing::warn!(sink = %self.name, group = %id.group, stream = %id.stream,
                    too_old = old, expired, too_new = new,
                    "CloudWatch Logs rejected events for their timestamps");
            }
        }
        self.stats.count(Outcome::Rejected, rejected as u64);
        self.stats.count(Outcome::Sent, (sent - rejected) as u64);
    }

    async fn retry_later(&self, id: &StreamId, attempt: u32, why: &str, events: usize) {
        self.stats.count(Outcome::Retried, events as u64);
        self.stats.retry();
        self.stats.error("request_failed");
        let delay = backoff(attempt, self.max_backoff);
        // The first failure and then every tenth: a long outage should not flood the log.
        if attempt == 1 || attempt.is_multiple_of(10) {
            tracing::warn!(sink = %self.name, group = %id.group, stream = %id.stream, attempt,
                retry_in_ms = delay.as_millis() as u64, error = %why, "PutLogEvents failed; will retry");
        }
        tokio::time::sleep(delay).await;
    }

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
                        .map_err(|e| format!("set retention: {}", describe(&e)))?;
                }
                Err(e) if e.code() == Some("ResourceAlreadyExistsException") => {}
                Err(e) => return Err(format!("create log group: {}", describe(&e))),
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
            Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                // The group vanished since we saw it: create it next time.
                self.groups.lock().expect("not poisoned").remove(&id.group);
                Err(format!("create log stream: {}", describe(&e)))
            }
            Err(e) => Err(format!("create log stream: {}", describe(&e))),
        }
    }
}
