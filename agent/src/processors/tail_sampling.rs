//! `type = "tail_sampling"`: keeps or drops whole traces. Spans are held per trace id for
//! `decision_wait_ms` after the trace's first span arrived; then the trace is kept if any span
//! is an error (status Error or HTTP ≥ 500) or slower than `latency_threshold_ms`, else kept
//! with probability `sample_percent`, decided from a hash of the trace id so that every agent
//! holding part of the same trace decides the same way.
//!
//! Memory is bounded: beyond `max_traces` traces or `max_spans` spans held, the oldest traces
//! are decided early. Decisions are remembered (up to `max_decisions`) so spans arriving after
//! their trace was decided follow it. Other signals pass through untouched.
//!
//! Acknowledgements: a kept trace's output batch carries the acks of the input batches its spans
//! came in, so sources hear "delivered" once the sink has them; a dropped trace's share is
//! delivered at once (dropping it on purpose is its fate).

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::span_metrics::is_error;
use crate::event::{Ack, Event, EventBatch, SpanEvent};
use crate::output::{Closed, Fanout};
use crate::telemetry::{Outcome, Stats, counter_family};
use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::ComponentConfig;

static TRACES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_family(
        "vigil_tail_sampling_traces_total",
        "Traces decided by a tail sampler, by decision (kept, dropped) and reason.",
        &["component", "decision", "reason"],
    )
});

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailSamplingConfig {
    /// How long a trace's spans are held after its first span arrived.
    #[serde(default = "config_default::u64::<10_000>")]
    pub decision_wait_ms: u64,
    /// Traces with a span slower than this are kept.
    #[serde(default = "config_default::u64::<1_000>")]
    pub latency_threshold_ms: u64,
    /// Share of the other traces kept, in percent (0–100).
    #[serde(default = "default_sample_percent")]
    pub sample_percent: f64,
    /// Most traces held at once; beyond, the oldest are decided early.
    #[serde(default = "config_default::usize::<50_000>")]
    pub max_traces: usize,
    /// Most spans held at once; beyond, the oldest traces are decided early.
    #[serde(default = "config_default::usize::<500_000>")]
    pub max_spans: usize,
    /// Decisions remembered for late spans.
    #[serde(default = "config_default::usize::<200_000>")]
    pub max_decisions: usize,
}

fn default_sample_percent() -> f64 {
    10.0
}

impl ComponentConfig for TailSamplingConfig {
    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        errs.within(path, &[("sample_percent", self.sample_percent, 0.0, 100.0)]);
        errs.within(
            path,
            &[("decision_wait_ms", self.decision_wait_ms, 1, 600_000)],
        );
        errs.within(
            path,
            &[
                ("max_traces", self.max_traces, 1, 100_000_000),
                ("max_spans", self.max_spans, 1, 100_000_000),
                ("max_decisions", self.max_decisions, 1, 100_000_000),
            ],
        );
    }
}

/// Why a trace was kept or dropped (`reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Error,
    Slow,
    Sampled,
    NotSampled,
}

impl Reason {
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Reason::Error => ("kept", "error"),
            Reason::Slow => ("kept", "slow"),
            Reason::Sampled => ("kept", "sampled"),
            Reason::NotSampled => ("dropped", "not_sampled"),
        }
    }
    fn keep(self) -> bool {
        self != Reason::NotSampled
    }
}

#[derive(Debug)]
struct Held {
    spans: Vec<SpanEvent>,
    acks: Vec<Ack>,
    since: Instant,
    error: bool,
    slow: bool,
}

/// What leaves after a decision round: spans to send with the acks that travel with them.
#[derive(Debug, Default)]
pub struct Decided {
    pub kept: Vec<SpanEvent>,
    pub acks: Vec<Ack>,
}

#[derive(Debug)]
pub struct TailSampling {
    config: TailSamplingConfig,
    held: HashMap<[u8; 16], Held>,
    /// Trace ids in arrival order of their first span (may hold ids decided early).
    order: VecDeque<[u8; 16]>,
    spans_held: usize,
    decisions: HashMap<[u8; 16], bool>,
    decision_order: VecDeque<[u8; 16]>,
    component: String,
}

impl TailSampling {
    pub fn new(config: &TailSamplingConfig) -> Self {
        Self {
            config: config.clone(),
            held: HashMap::new(),
            order: VecDeque::new(),
            spans_held: 0,
            decisions: HashMap::new(),
            decision_order: VecDeque::new(),
            component: String::new(),
        }
    }

    /// Whether the trace falls in the sampled share, the same on every agent.
    pub fn sampled(&self, trace_id: &[u8; 16]) -> bool {
        let h = xxhash_rust::xxh3::xxh3_64(trace_id);
        // 0..10,000 so fractions of a percent work.
        (h % 10_000) < (self.config.sample_percent * 100.0).round() as u64
    }

    /// Takes a span; `late` collects spans of already kept traces (sent at once).
    pub fn add(&mut self, span: SpanEvent, ack: &Ack, late: &mut Vec<SpanEvent>, now: Instant) {
        if let Some(keep) = self.decisions.get(&span.trace_id) {
            if *keep {
                late.push(span);
            }
            let decision = if *keep { "kept" } else { "dropped" };
            TRACES
                .with_label_values(&[&self.component, decision, "late_span"])
                .inc();
            return;
        }
        let slow = span.duration_nanos() > self.config.latency_threshold_ms * 1_000_000;
        let error = is_error(&span);
        let entry = self.held.entry(span.trace_id).or_insert_with(|| {
            self.order.push_back(span.trace_id);
            Held {
                spans: Vec::new(),
                acks: Vec::new(),
                since: now,
                error: false,
                slow: false,
            }
        });
        entry.error |= error;
        entry.slow |= slow;
        entry.spans.push(span);
        if !entry.acks.last().is_some_and(|a| a.same_batch(ack)) {
            entry.acks.push(ack.clone());
        }
        self.spans_held += 1;
    }

    /// Decides traces whose wait is over, and the oldest ones while over the limits.
    pub fn decide_due(&mut self, now: Instant, out: &mut Decided) {
        let wait = Duration::from_millis(self.config.decision_wait_ms);
        while let Some(id) = self.order.front().copied() {
            let Some(held) = self.held.get(&id) else {
                self.order.pop_front();
                continue;
            };
            let over =
                self.held.len() > self.config.max_traces || self.spans_held > self.config.max_spans;
            if !over && now.duration_since(held.since) < wait {
                break;
            }
            self.order.pop_front();
            self.decide(id, out);
        }
    }

    /// Decides everything still held (shutdown).
    pub fn decide_all(&mut self, out: &mut Decided) {
        while let Some(id) = self.order.pop_front() {
            if self.held.contains_key(&id) {
                self.decide(id, out);
            }
        }
    }

    fn decide(&mut self, id: [u8; 16], out: &mut Decided) {
        let Some(held) = self.held.remove(&id) else {
            return;
        };
        self.spans_held -= held.spans.len();
        let reason = if held.error {
            Reason::Error
        } else if held.slow {
            Reason::Slow
        } else if self.sampled(&id) {
            Reason::Sampled
        } else {
            Reason::NotSampled
        };
        let (decision, label) = reason.labels();
        TRACES
            .with_label_values(&[&self.component, decision, label])
            .inc();
        if reason.keep() {
            out.kept.extend(held.spans);
            out.acks.extend(held.acks);
        } else {
            held.acks.into_iter().for_each(Ack::delivered);
        }
        self.decisions.insert(id, reason.keep());
        self.decision_order.push_back(id);
        while self.decision_order.len() > self.config.max_decisions {
            if let Some(old) = self.decision_order.pop_front() {
                self.decisions.remove(&old);
            }
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<EventBatch>, out: Fanout, stats: Stats) {
        self.component = stats.component().to_owned();
        let tick = Duration::from_millis((self.config.decision_wait_ms / 4).clamp(1, 250));
        let mut timer = tokio::time::interval(tick);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    stats.count(Outcome::Received, batch.events.len() as u64);
                    let now = Instant::now();
                    let mut passed = Vec::new();
                    let mut late = Vec::new();
                    for event in batch.events {
                        match event {
                            Event::Span(span) => self.add(span, &batch.ack, &mut late, now),
                            other => passed.push(other),
                        }
                    }
                    passed.extend(late.into_iter().map(Event::Span));
                    // Over the limits: decide the oldest now rather than hold more.
                    let mut decided = Decided::default();
                    if self.held.len() > self.config.max_traces
                        || self.spans_held > self.config.max_spans
                    {
                        self.decide_due(now, &mut decided);
                    }
                    let ack = batch.ack;
                    if passed.is_empty() {
                        ack.delivered();
                    } else if send(&out, &stats, passed, ack).await.is_err() {
                        return;
                    }
                    if emit(&out, &stats, decided).await.is_err() {
                        return;
                    }
                }
                _ = timer.tick() => {
                    let mut decided = Decided::default();
                    self.decide_due(Instant::now(), &mut decided);
                    if emit(&out, &stats, decided).await.is_err() {
                        return;
                    }
                }
            }
        }
        // Shutdown: decide what is held now; kept traces still go out.
        let mut decided = Decided::default();
        self.decide_all(&mut decided);
        let _ = emit(&out, &stats, decided).await;
    }
}

async fn send(out: &Fanout, stats: &Stats, events: Vec<Event>, ack: Ack) -> Result<(), Closed> {
    stats.count(Outcome::Sent, events.len() as u64);
    out.send(EventBatch { events, ack }).await
}

async fn emit(out: &Fanout, stats: &Stats, decided: Decided) -> Result<(), Closed> {
    if decided.kept.is_empty() {
        decided.acks.into_iter().for_each(Ack::delivered);
        return Ok(());
    }
    let events = decided.kept.into_iter().map(Event::Span).collect();
    send(out, stats, events, Ack::merged(decided.acks)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Resource, SpanKind, SpanStatus, StatusCode, ack_channel};
    use std::sync::Arc;

    fn span(trace: u64, ms: u64, error: bool) -> SpanEvent {
        let mut trace_id = [0u8; 16];
        trace_id[8..].copy_from_slice(&trace.to_be_bytes());
        SpanEvent {
            resource: Arc::new(Resource::default()),
            scope_name: String::new(),
            scope_version: String::new(),
            trace_id,
            span_id: [3; 8],
            parent_span_id: None,
            trace_state: String::new(),
            name: "GET /".into(),
            kind: SpanKind::Server,
            start_unix_nano: 0,
            end_unix_nano: ms * 1_000_000,
            attributes: Default::default(),
            events: vec![],
            links: vec![],
            status: SpanStatus {
                code: if error {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                message: String::new(),
            },
        }
    }

    fn config(percent: f64) -> TailSamplingConfig {
        TailSamplingConfig {
            decision_wait_ms: 1000,
            latency_threshold_ms: 300,
            sample_percent: percent,
            max_traces: 100_000,
            max_spans: 1_000_000,
            max_decisions: 100_000,
        }
    }

    #[test]
    fn keeps_every_error_and_slow_trace_and_about_the_share_of_the_rest() {
        let mut s = TailSampling::new(&config(10.0));
        let (tx, mut rx) = ack_channel();
        let ack = Ack::new(1, tx);
        let t0 = Instant::now();
        let mut late = Vec::new();
        // Traces 0..10,000: every 10th has an error span, every 7th a slow span, each has
        // two fast spans as well.
        for t in 0..10_000u64 {
            s.add(span(t, 20, false), &ack, &mut late, t0);
            s.add(span(t, 30, t % 10 == 0), &ack, &mut late, t0);
            s.add(
                span(t, if t % 7 == 0 { 400 } else { 10 }, false),
                &ack,
                &mut late,
                t0,
            );
        }
        ack.delivered();
        let mut out = Decided::default();
        s.decide_due(t0 + Duration::from_millis(500), &mut out);
        assert!(out.kept.is_empty(), "nothing is due before the wait");
        s.decide_due(t0 + Duration::from_millis(1000), &mut out);
        let kept: std::collections::HashSet<u64> = out
            .kept
            .iter()
            .map(|s| u64::from_be_bytes(s.trace_id[8..].try_into().unwrap()))
            .collect();
        for t in 0..10_000u64 {
            if t % 10 == 0 || t % 7 == 0 {
                assert!(kept.contains(&t), "trace {t} has an error or slow span");
            }
        }
        let rest = (0..10_000u64).filter(|t| t % 10 != 0 && t % 7 != 0);
        let (n, k) = rest.fold((0, 0), |(n, k), t| (n + 1, k + kept.contains(&t) as u32));
        let share = f64::from(k) / f64::from(n);
        assert!((0.08..0.12).contains(&share), "sampled share {share}");
        // Whole traces: every kept trace has all three spans.
        assert_eq!(out.kept.len(), kept.len() * 3);
        // The input's ack waits for the kept spans to be delivered.
        assert!(rx.try_recv().is_err());
        Ack::merged(out.acks).delivered();
        assert_eq!(
            rx.try_recv().unwrap(),
            (1, crate::event::AckStatus::Delivered)
        );
    }

    #[test]
    fn decisions_agree_across_instances_and_late_spans_follow() {
        let a = TailSampling::new(&config(30.0));
        let b = TailSampling::new(&config(30.0));
        for t in 0..1000u64 {
            let id = span(t, 1, false).trace_id;
            assert_eq!(a.sampled(&id), b.sampled(&id));
        }
        let mut s = TailSampling::new(&config(0.0));
        let t0 = Instant::now();
        let mut late = Vec::new();
        s.add(span(1, 1, true), &Ack::none(), &mut late, t0);
        s.add(span(2, 1, false), &Ack::none(), &mut late, t0);
        let mut out = Decided::default();
        s.decide_due(t0 + Duration::from_secs(2), &mut out);
        assert_eq!(out.kept.len(), 1);
        s.add(span(1, 1, false), &Ack::none(), &mut late, t0);
        s.add(span(2, 1, false), &Ack::none(), &mut late, t0);
        assert_eq!(late.len(), 1, "the late span of the kept trace goes out");
        assert_eq!(late[0].trace_id, span(1, 1, false).trace_id);
    }

    #[test]
    fn decides_early_when_over_the_limit() {
        let mut c = config(100.0);
        c.max_traces = 10;
        let mut s = TailSampling::new(&c);
        let t0 = Instant::now();
        let mut late = Vec::new();
        for t in 0..25u64 {
            s.add(span(t, 1, false), &Ack::none(), &mut late, t0);
        }
        let mut out = Decided::default();
        s.decide_due(t0, &mut out);
        assert_eq!(out.kept.len(), 15, "the oldest 15 are decided early");
        assert_eq!(s.held.len(), 10);
        assert_eq!(out.kept[0].trace_id, span(0, 1, false).trace_id);
    }
}
