//! The driver against a test double of a backend: a backend whose answers follow a script, so
//! every verdict path (throttled, 5xx, Retry-After, refused item, unprocessed items, refused
//! request, timeout) is exercised. Backoffs are capped at 200 ms so the tests take little time;
//! waits are checked with lower bounds (a sleep never ends early) and generous upper ones.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::event::{Ack, AckStatus, Event, EventBatch, LogEvent, ack_channel};
use crate::telemetry::{Outcome, Stats};

/// A request of the double: item numbers.
#[derive(Debug, Clone, PartialEq)]
struct Items(Vec<u32>);

impl Payload for Items {
    fn items(&self) -> usize {
        self.0.len()
    }
    fn split(mut self) -> Result<(Self, Self), Self> {
        let b = self.0.split_off(self.0.len() / 2);
        Ok((self, Items(b)))
    }
}

/// How the double answers.
#[derive(Debug, Clone)]
enum Answer {
    Accept,
    /// Accepted, with this many items reported rejected.
    AcceptRejecting(u64),
    Throttled,
    ServerError,
    RetryAfter(Duration),
    /// Every item but the first `n` of the request is left unprocessed.
    LeaveUnprocessed(usize),
    RefuseRequest,
    /// The backend does not answer within the request timeout.
    Timeout,
}

#[derive(Default)]
struct Double {
    /// Answers in turn; when they run out, `Accept` — except that a request holding a poisoned
    /// item is always refused for its content.
    script: Mutex<VecDeque<Answer>>,
    poisoned: HashSet<u32>,
    /// Every attempt, with the key and the time it was made at.
    attempts: Mutex<Vec<(u8, Vec<u32>, tokio::time::Instant)>>,
    /// Items stored.
    stored: Mutex<Vec<u32>>,
    /// Attempts of one key overlapping in time (must never happen with per-key lanes).
    busy: Mutex<HashSet<u8>>,
    overlaps: Mutex<u32>,
}

impl Backend for Double {
    type Key = u8;
    type Request = Items;
    type Lane = ();
    const OPERATION: &'static str = "Store";

    async fn send(&self, key: &u8, req: &mut Items) -> Verdict<Items> {
        if !self.busy.lock().unwrap().insert(*key) {
            *self.overlaps.lock().unwrap() += 1;
        }
        self.attempts
            .lock()
            .unwrap()
            .push((*key, req.0.clone(), tokio::time::Instant::now()));
        // Answers take a while, so that lanes of other keys can overlap with this one.
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.busy.lock().unwrap().remove(key);
        let why = String::from("scripted");
        if req.0.iter().any(|i| self.poisoned.contains(i)) {
            return Verdict::Split { why };
        }
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Accept);
        match answer {
            Answer::Accept => {
                self.stored.lock().unwrap().extend(&req.0);
                Verdict::Accepted { rejected: 0, why }
            }
            Answer::AcceptRejecting(n) => {
                self.stored
                    .lock()
                    .unwrap()
                    .extend(&req.0[..req.0.len() - n as usize]);
                Verdict::Accepted { rejected: n, why }
            }
            Answer::Throttled | Answer::ServerError | Answer::Timeout => {
                Verdict::Retry { after: None, why }
            }
            Answer::RetryAfter(d) => Verdict::Retry {
                after: Some(d),
                why,
            },
            Answer::LeaveUnprocessed(n) => {
                self.stored.lock().unwrap().extend(&req.0[..n]);
                Verdict::Partial {
                    again: Items(req.0[n..].to_vec()),
                    why,
                }
            }
            Answer::RefuseRequest => Verdict::Refused { why },
        }
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    max_backoff: Duration::from_millis(200),
    partial_retries: 2,
};

/// How late a timer may fire on a busy 2-core machine.
const SLACK: Duration = Duration::from_secs(1);

fn delivery(double: Double, name: &str) -> (Delivery<Double>, Arc<Double>, Stats) {
    let double = Arc::new(double);
    let stats = Stats::new(name);
    let d = Delivery::new(name, Arc::clone(&double), stats.clone(), POLICY, 4);
    (d, double, stats)
}

fn scripted(answers: &[Answer]) -> Double {
    Double {
        script: Mutex::new(answers.iter().cloned().collect()),
        ..Double::default()
    }
}

/// An ack for batch `id` and where its settlement is reported.
fn acked() -> (Ack, crate::event::AckReceiver) {
    let (tx, rx) = ack_channel();
    (Ack::new(7, tx), rx)
}

fn settled(rx: &mut crate::event::AckReceiver) -> Vec<AckStatus> {
    let mut out = Vec::new();
    while let Ok((_, status)) = rx.try_recv() {
        out.push(status);
    }
    out
}

async fn deliver_one(
    answers: &[Answer],
    items: Vec<u32>,
    name: &str,
) -> (Tally, Arc<Double>, Stats, Vec<AckStatus>) {
    deliver_with(scripted(answers), items, name).await
}

/// Delivers `items` as one request with one ack through `double`.
async fn deliver_with(
    double: Double,
    items: Vec<u32>,
    name: &str,
) -> (Tally, Arc<Double>, Stats, Vec<AckStatus>) {
    let (d, double, stats) = delivery(double, name);
    let (ack, mut rx) = acked();
    let request = Items(items);
    let tally = d
        .deliver(
            &0,
            Job {
                request,
                acks: vec![ack],
            },
        )
        .await;
    (tally, double, stats, settled(&mut rx))
}

#[tokio::test]
async fn throttling_5xx_and_timeouts_are_retried_with_backoff_until_accepted() {
    let answers = [Answer::Throttled, Answer::ServerError, Answer::Timeout];
    let (tally, double, stats, acks) = deliver_one(&answers, vec![1, 2, 3], "drv_retry").await;
    assert_eq!(
        tally,
        Tally {
            sent: 3,
            rejected: 0
        }
    );
    assert_eq!(acks, [AckStatus::Delivered]);
    let attempts = double.attempts.lock().unwrap();
    assert_eq!(attempts.len(), 4);
    // Each wait lies within the full-jitter window: at least 10 ms, at most the cap (plus
    // scheduling slack).
    for pair in attempts.windows(2) {
        let waited = pair[1].2 - pair[0].2 - Duration::from_millis(5);
        assert!(
            waited >= Duration::from_millis(10) && waited <= POLICY.max_backoff + SLACK,
            "{waited:?}"
        );
    }
    assert_eq!(stats.get(Outcome::Sent), 3);
    assert_eq!(stats.get(Outcome::Retried), 9);
    assert_eq!(stats.get(Outcome::Rejected), 0);
    assert_eq!(*double.stored.lock().unwrap(), [1, 2, 3]);
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_backoff_cap() {
    let answers = [
        Answer::RetryAfter(Duration::from_millis(150)),
        Answer::RetryAfter(Duration::from_secs(600)),
        Answer::RetryAfter(Duration::ZERO),
    ];
    let (tally, double, _, acks) = deliver_one(&answers, vec![1], "drv_retry_after").await;
    assert_eq!(tally.sent, 1);
    assert_eq!(acks, [AckStatus::Delivered]);
    let at: Vec<_> = double
        .attempts
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.2)
        .collect();
    let step = Duration::from_millis(5);
    let first = at[1] - at[0] - step;
    assert!(first >= Duration::from_millis(150) && first <= Duration::from_millis(150) + SLACK);
    // 600 s asked, capped at max_backoff.
    let second = at[2] - at[1] - step;
    assert!(second >= POLICY.max_backoff && second <= POLICY.max_backoff + SLACK);
    // "Now" still waits a little: never a tight loop.
    assert!(at[3] - at[2] - step >= Duration::from_millis(10));
}

#[tokio::test]
async fn a_refused_item_is_isolated_by_halving_and_the_rest_is_delivered() {
    let double = Double {
        poisoned: HashSet::from([6]),
        ..Double::default()
    };
    let (tally, double, stats, acks) = deliver_with(double, (0..11).collect(), "drv_split").await;
    assert_eq!(
        tally,
        Tally {
            sent: 10,
            rejected: 1
        }
    );
    let mut stored = double.stored.lock().unwrap().clone();
    stored.sort();
    assert_eq!(stored, [0, 1, 2, 3, 4, 5, 7, 8, 9, 10]);
    // Order is kept: halves go out first half first.
    assert_eq!(*double.stored.lock().unwrap(), stored);
    assert_eq!(acks, [AckStatus::Delivered]);
    assert_eq!(stats.get(Outcome::Rejected), 1);
    assert_eq!(stats.get(Outcome::Sent), 10);
}

#[tokio::test]
async fn unprocessed_items_are_sent_again_then_given_up_on() {
    // 5 items: 2 stored, 3 unprocessed; then 1 of those stored, 2 unprocessed; then the
    // double keeps leaving everything unprocessed: after `partial_retries` rounds, rejected.
    let answers = [
        Answer::LeaveUnprocessed(2),
        Answer::LeaveUnprocessed(1),
        Answer::LeaveUnprocessed(0),
        Answer::LeaveUnprocessed(0),
    ];
    let (tally, double, stats, acks) = deliver_one(&answers, vec![1, 2, 3, 4, 5], "drv_part").await;
    assert_eq!(
        tally,
        Tally {
            sent: 3,
            rejected: 2
        }
    );
    assert_eq!(acks, [AckStatus::Delivered]);
    let sent: Vec<Vec<u32>> = double
        .attempts
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.1.clone())
        .collect();
    assert_eq!(sent, [vec![1, 2, 3, 4, 5], vec![3, 4, 5], vec![4, 5]]);
    assert_eq!(stats.get(Outcome::Retried), 3 + 2);
    assert_eq!(stats.get(Outcome::Sent) + stats.get(Outcome::Rejected), 5);
}

#[tokio::test]
async fn refusals_and_partial_successes_are_counted_not_retried() {
    let (tally, double, stats, acks) =
        deliver_one(&[Answer::RefuseRequest], vec![1, 2, 3], "drv_refused").await;
    assert_eq!(
        tally,
        Tally {
            sent: 0,
            rejected: 3
        }
    );
    assert_eq!(double.attempts.lock().unwrap().len(), 1);
    assert_eq!(acks, [AckStatus::Delivered]);
    assert_eq!(stats.get(Outcome::Rejected), 3);

    let (tally, _, stats, acks) = deliver_one(
        &[Answer::AcceptRejecting(1)],
        vec![1, 2, 3],
        "drv_partial_ok",
    )
    .await;
    assert_eq!(
        tally,
        Tally {
            sent: 2,
            rejected: 1
        }
    );
    assert_eq!(acks, [AckStatus::Delivered]);
    assert_eq!(stats.get(Outcome::Sent), 2);
}

/// A request that cannot be halved is refused whole when its content is refused.
#[tokio::test]
async fn a_split_verdict_on_a_request_that_cannot_halve_refuses_it() {
    struct Whole(usize);
    impl Payload for Whole {
        fn items(&self) -> usize {
            self.0
        }
        fn split(self) -> Result<(Self, Self), Self> {
            Err(self)
        }
    }
    struct Refusing;
    impl Backend for Refusing {
        type Key = ();
        type Request = Whole;
        type Lane = ();
        const OPERATION: &'static str = "Store";
        async fn send(&self, _: &(), _: &mut Whole) -> Verdict<Whole> {
            Verdict::Split { why: "bad".into() }
        }
    }
    let stats = Stats::new("drv_whole");
    let d = Delivery::new("drv_whole", Arc::new(Refusing), stats.clone(), POLICY, 1);
    let (ack, mut rx) = acked();
    let tally = d
        .deliver(
            &(),
            Job {
                request: Whole(4),
                acks: vec![ack],
            },
        )
        .await;
    assert_eq!(
        tally,
        Tally {
            sent: 0,
            rejected: 4
        }
    );
    assert_eq!(settled(&mut rx), [AckStatus::Delivered]);
}

/// A sink's intake for the double: events' numbers (their `message`) into per-key requests,
/// keyed by the number's remainder mod `keys`.
struct NumberIntake {
    batches: Batches<u8, OpenItems>,
    keys: u32,
    stats: Stats,
}

#[derive(Default)]
struct OpenItems(Vec<u32>, usize);

impl Open for OpenItems {
    type Item = u32;
    type Request = Items;
    fn add(&mut self, item: u32) -> Result<Option<Items>, TooLarge> {
        if item == u32::MAX {
            return Err(TooLarge);
        }
        let full = (self.0.len() >= self.1).then(|| self.take());
        self.0.push(item);
        Ok(full)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn take(&mut self) -> Items {
        Items(std::mem::take(&mut self.0))
    }
}

impl Intake for NumberIntake {
    type Backend = Double;
    fn take(&mut self, events: Vec<Event>, ack: &Ack, ready: &mut Ready<Double>) {
        for e in &events {
            let Event::Log(l) = e else { continue };
            let n: u32 = l.message.parse().unwrap();
            let key = (n % self.keys) as u8;
            if self.batches.add(&key, n, ack, ready).is_err() {
                self.stats.count(Outcome::Rejected, 1);
            }
        }
    }
    fn open(&mut self) -> impl Schedule<Double> + '_ {
        &mut self.batches
    }
}

/// The whole loop: batches of numbers through intake, batching by key (size, count, age),
/// per-key lanes, a mixed script of answers. Every batch is acknowledged exactly once and only
/// after all of its items were answered; received = sent + rejected; per key, items are stored
/// in order; no two attempts of one key overlap.
#[tokio::test]
async fn the_loop_acknowledges_each_batch_once_and_keeps_per_key_order() {
    let double = Double {
        script: Mutex::new(
            [
                Answer::Throttled,
                Answer::Accept,
                Answer::RetryAfter(Duration::from_millis(300)),
                Answer::ServerError,
                Answer::AcceptRejecting(1),
                Answer::Accept,
                Answer::Timeout,
            ]
            .into_iter()
            .collect(),
        ),
        poisoned: HashSet::from([13, 77]),
        ..Double::default()
    };
    let (d, double, stats) = delivery(double, "drv_loop");
    let dispatch = Dispatch::new(d, Lanes::PerKey { queue: 2 });
    let intake = NumberIntake {
        batches: Batches::new(|| OpenItems(Vec::new(), 7), 5, Duration::from_millis(60)),
        keys: 3,
        stats: stats.clone(),
    };
    let (tx, rx) = mpsc::channel(2);
    let looped = tokio::spawn(run(intake, rx, dispatch));
    let (ack_tx, mut ack_rx) = ack_channel();
    let mut next = 0u32;
    for id in 0..20u64 {
        let size = 1 + (id as u32 * 7) % 9;
        let mut events: Vec<Event> = (next..next + size)
            .map(|n| Event::Log(LogEvent::new(n.to_string(), 0)))
            .collect();
        next += size;
        if id == 4 {
            // Too large for any request: counted, the batch still completes.
            events.push(Event::Log(LogEvent::new(u32::MAX.to_string(), 0)));
        }
        let batch = EventBatch {
            events,
            ack: Ack::new(id, ack_tx.clone()),
        };
        tx.send(batch).await.unwrap();
        if id % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(tx);
    looped.await.unwrap();
    drop(ack_tx);
    let mut acks: HashMap<u64, Vec<AckStatus>> = HashMap::new();
    while let Some((id, status)) = ack_rx.recv().await {
        acks.entry(id).or_default().push(status);
    }
    assert_eq!(acks.len(), 20, "{acks:?}");
    assert!(
        acks.values().all(|s| s == &[AckStatus::Delivered]),
        "{acks:?}"
    );
    assert_eq!(*double.overlaps.lock().unwrap(), 0);
    let received = stats.get(Outcome::Received);
    assert_eq!(received, u64::from(next) + 1);
    assert_eq!(
        stats.get(Outcome::Sent) + stats.get(Outcome::Rejected),
        received
    );
    // 13 and 77 were isolated and refused, one item was reported rejected in a success, one was
    // too large; everything else was stored, in order within its key.
    assert_eq!(stats.get(Outcome::Rejected), 4);
    let stored = double.stored.lock().unwrap().clone();
    assert_eq!(stored.len() as u32, next - 3);
    for key in 0..3 {
        let of_key: Vec<u32> = stored.iter().copied().filter(|n| n % 3 == key).collect();
        assert!(
            of_key.windows(2).all(|w| w[0] < w[1]),
            "key {key}: {of_key:?}"
        );
    }
}

/// The loop sleeps until a request is due: a lone item waits `timeout`, not a polling tick.
#[tokio::test]
async fn an_open_request_is_closed_when_its_first_item_waited_the_timeout() {
    let (d, double, stats) = delivery(Double::default(), "drv_due");
    let dispatch = Dispatch::new(d, Lanes::Shared);
    let intake = NumberIntake {
        batches: Batches::new(
            || OpenItems(Vec::new(), 100),
            100,
            Duration::from_millis(300),
        ),
        keys: 1,
        stats,
    };
    let (tx, rx) = mpsc::channel(2);
    let looped = tokio::spawn(run(intake, rx, dispatch));
    let start = tokio::time::Instant::now();
    let (ack, mut ack_rx) = acked();
    let batch = EventBatch {
        events: vec![Event::Log(LogEvent::new("42".into(), 0))],
        ack,
    };
    tx.send(batch).await.unwrap();
    let (_, status) = ack_rx.recv().await.unwrap();
    assert_eq!(status, AckStatus::Delivered);
    let waited = double.attempts.lock().unwrap()[0].2 - start;
    assert!(waited >= Duration::from_millis(300) && waited <= Duration::from_millis(300) + SLACK);
    drop(tx);
    looped.await.unwrap();
}
