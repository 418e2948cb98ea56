//! `type = "prometheus_scrape"`: reads Prometheus text endpoints (exposition format 0.0.4) on an
//! interval and turns every sample into a metric event tagged with `instance` and `job`.
//!
//! Containment: each target is fetched with a timeout covering the whole exchange, its body is
//! read up to `max_body_bytes`, and parsing stops after `max_series` sample lines, so one bad
//! exporter costs at most those bounds. A failed scrape (refused, timeout, hung socket, HTTP
//! error, too big, too many series, bad syntax) sends nothing for that target — the body is
//! parsed whole before anything is sent — marks it down (`vigil_scrape_target_up` = 0), counts
//! `vigil_scrape_failures_total{reason}` and logs at most once a minute per target. The other
//! targets are scraped concurrently, each by its own loop on its own interval (which a target may
//! override, with its timeout), so a slow target never delays another's tick.
//!
//! The parser is our own (`parse.rs`); ARCHITECTURE.md says why.

mod config;
pub mod parse;

pub use config::{PrometheusScrapeConfig, TargetConfig};

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::event::{Ack, Event, MetricEvent, Tags, now_ms};
use crate::output::SourceOutput;
use crate::telemetry::{Stats, counter_family, gauge_family};
use vigil_common::error_text;

/// A failing target is logged at most this often (and when it changes state).
const LOG_EVERY: Duration = Duration::from_secs(60);

static FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_family(
        "vigil_scrape_failures_total",
        "Failed scrapes of a Prometheus target, by reason.",
        &["component", "target", "reason"],
    )
});

static UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_family(
        "vigil_scrape_target_up",
        "1 if the last scrape of a Prometheus target succeeded, else 0.",
        &["component", "target"],
    )
});

/// Why a scrape failed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Connection,
    Timeout,
    HttpStatus,
    BodyTooLarge,
    TooManySeries,
    InvalidSyntax,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Connection => "connection",
            Reason::Timeout => "timeout",
            Reason::HttpStatus => "http_status",
            Reason::BodyTooLarge => "body_too_large",
            Reason::TooManySeries => "too_many_series",
            Reason::InvalidSyntax => "invalid_syntax",
        }
    }
}

struct Target {
    url: String,
    /// The URL without `user:password@`: what metrics labels and logs show.
    label: String,
    tags: Tags,
    interval: Duration,
    timeout: Duration,
    max_series: usize,
    max_body_bytes: usize,
}

/// What one target's state is between scrapes.
#[derive(Default)]
struct TargetState {
    up: Option<bool>,
    last_log: Option<Instant>,
    /// Start of its cumulative series: the first successful scrape of this target.
    start_ms: Option<i64>,
}

pub struct PrometheusScrape {
    name: String,
    targets: Vec<Arc<Target>>,
    client: reqwest::Client,
    stats: Stats,
}

impl PrometheusScrape {
    pub fn new(name: &str, config: PrometheusScrapeConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(1)
            .build()?;
        let targets = config
            .targets
            .iter()
            .map(|t| {
                let url = reqwest::Url::parse(&t.url)?;
                let instance = match url.port_or_known_default() {
                    Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_owned(),
                };
                let mut tags = t.labels.clone();
                tags.insert("instance".to_owned(), instance);
                tags.insert(
                    "job".to_owned(),
                    t.job
                        .clone()
                        .or_else(|| config.job.clone())
                        .unwrap_or_else(|| name.to_owned()),
                );
                let mut shown = url.clone();
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                Ok(Arc::new(Target {
                    url: t.url.clone(),
                    label: shown.to_string(),
                    tags,
                    interval: Duration::from_millis(t.interval_ms.unwrap_or(config.interval_ms)),
                    timeout: Duration::from_millis(t.timeout_ms.unwrap_or(config.timeout_ms)),
                    max_series: t.max_series.unwrap_or(config.max_series),
                    max_body_bytes: t.max_body_bytes.unwrap_or(config.max_body_bytes),
                }))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            name: name.to_owned(),
            targets,
            client,
            stats: Stats::new(name),
        })
    }

    /// One loop per target, each on its own schedule: a slow or hung target delays only its
    /// own next scrape, never another target's tick.
    pub async fn run(self, out: SourceOutput, stop: CancellationToken) {
        let this = Arc::new(self);
        let out = Arc::new(out);
        // Our own token: a loop that ends (pipeline closed) stops its siblings, not the agent.
        let stop = stop.child_token();
        let mut loops = JoinSet::new();
        for i in 0..this.targets.len() {
            loops.spawn(Arc::clone(&this).scrape_loop(i, Arc::clone(&out), stop.clone()));
        }
        // A loop ends on stop or when the pipeline is closed; either way the source is done.
        let _ = loops.join_next().await;
        stop.cancel();
        while loops.join_next().await.is_some() {}
    }

    async fn scrape_loop(
        self: Arc<Self>,
        i: usize,
        out: Arc<SourceOutput>,
        stop: CancellationToken,
    ) {
        let target = &self.targets[i];
        let mut state = TargetState::default();
        let mut ticker = tokio::time::interval(target.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let scrape_ms = now_ms();
            let start_ms = state.start_ms.unwrap_or(scrape_ms);
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                result = scrape(&self.client, target, scrape_ms, start_ms) => result,
            };
            match result {
                Ok(events) => {
                    self.mark(&mut state, i, None);
                    state.start_ms.get_or_insert(scrape_ms);
                    if events.is_empty() {
                        continue;
                    }
                    let events = events.into_iter().map(Event::Metric).collect();
                    // Nobody waits on these acknowledgements: a lost scrape is replaced by the
                    // next one.
                    let sent = tokio::select! {
                        _ = stop.cancelled() => return,
                        sent = out.send(events, Ack::none()) => sent,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                Err((reason, message)) => self.mark(&mut state, i, Some((reason, message))),
            }
        }
    }

    /// Records a scrape's outcome: gauge, counters, and a log line on change or once a minute.
    fn mark(&self, state: &mut TargetState, i: usize, failure: Option<(Reason, String)>) {
        let target = &self.targets[i].label;
        UP.with_label_values(&[self.name.as_str(), target])
            .set(i64::from(failure.is_none()));
        match failure {
            None => {
                if state.up == Some(false) {
                    tracing::info!(source = %self.name, target, "scrape target is back");
                }
                state.up = Some(true);
            }
            Some((reason, message)) => {
                FAILURES
                    .with_label_values(&[self.name.as_str(), target, reason.label()])
                    .inc();
                self.stats.error(&format!("scrape_{}", reason.label()));
                let changed = state.up != Some(false);
                let due = state.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY);
                if changed || due {
                    tracing::warn!(source = %self.name, target, reason = reason.label(), error = %message, "scrape failed; target marked down, others continue");
                    state.last_log = Some(Instant::now());
                }
                state.up = Some(false);
            }
        }
    }
}

/// Fetches and parses one target; all or nothing.
async fn scrape(
    client: &reqwest::Client,
    target: &Arc<Target>,
    scrape_ms: i64,
    start_ms: i64,
) -> Result<Vec<MetricEvent>, (Reason, String)> {
    // The timeout covers fetching and parsing: a target answers within it, or not at all.
    let timeout = target.timeout;
    let deadline = std::time::Instant::now() + timeout;
    let body = match tokio::time::timeout(timeout, fetch(client, target)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err((
                Reason::Timeout,
                format!("no complete answer within {} ms", timeout.as_millis()),
            ));
        }
    };
    // Parsing a large body is CPU work: keep it off the runtime's workers.
    let target = Arc::clone(target);
    tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body)
            .map_err(|e| (Reason::InvalidSyntax, format!("body is not UTF-8: {e}")))?;
        let opts = parse::Options {
            max_series: target.max_series,
            default_timestamp_ms: scrape_ms,
            start_ms,
            extra_tags: &target.tags,
            deadline: Some(deadline),
        };
        let mut events = Vec::new();
        match parse::parse(text, &opts, &mut events) {
            Ok(_) => Ok(events),
            Err(e) if e.too_many_series => Err((Reason::TooManySeries, e.to_string())),
            Err(e) if e.timed_out => Err((Reason::Timeout, e.to_string())),
            Err(e) => Err((Reason::InvalidSyntax, e.to_string())),
        }
    })
    .await
    .unwrap_or_else(|e| Err((Reason::InvalidSyntax, format!("parser failed: {e}"))))
}

async fn fetch(client: &reqwest::Client, target: &Target) -> Result<Vec<u8>, (Reason, String)> {
    let mut resp = client
        .get(&target.url)
        .header(
            reqwest::header::ACCEPT,
            "text/plain;version=0.0.4;q=1,*/*;q=0.1",
        )
        .send()
        .await
        // reqwest's errors name the URL, credentials and all.
        .map_err(|e| (Reason::Connection, error_text::chain(&e.without_url())))?;
    if !resp.status().is_success() {
        return Err((Reason::HttpStatus, format!("HTTP {}", resp.status())));
    }
    let limit = target.max_body_bytes;
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err((
            Reason::BodyTooLarge,
            format!(
                "body of {} bytes is over max_body_bytes ({limit})",
                resp.content_length().unwrap_or(0)
            ),
        ));
    }
    let mut body = Vec::with_capacity(resp.content_length().map_or(64 * 1024, |n| n as usize));
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| (Reason::Connection, error_text::chain(&e.without_url())))?
    {
        if body.len() + chunk.len() > limit {
            return Err((
                Reason::BodyTooLarge,
                format!("body is over max_body_bytes ({limit})"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
