use std::io::Write;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::*;
use crate::event::{
    Ack, AckStatus, Event, EventBatch, LogEvent, MetricEvent, MetricValue, ack_channel,
};
use crate::telemetry::{Outcome, Stats};

fn batch(from: u64, n: u64, ack: Ack) -> EventBatch {
    let events = (from..from + n)
        .map(|i| {
            let mut log = LogEvent::new(format!("line {i:08} {}", "x".repeat(100)), i as i64);
            log.attributes
                .insert("seq".into(), serde_json::json!({ "n": i, "f": 1.5 }));
            Event::Log(log)
        })
        .collect();
    EventBatch { events, ack }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| match e {
            Event::Log(l) => l.timestamp_ms as u64,
            Event::Metric(m) => m.timestamp_ms as u64,
            Event::Span(s) => s.start_unix_nano,
        })
        .collect()
}

/// A disk buffer started for a test: what the source side writes to, what the sink reads, and
/// the buffer's tasks.
struct Running {
    tx: mpsc::Sender<EventBatch>,
    sink: mpsc::Receiver<EventBatch>,
    tasks: JoinSet<String>,
}

impl Running {
    /// Opens the buffer `name` in `dir` and starts it behind a channel of `capacity` batches.
    fn start(name: &str, dir: &std::path::Path, config: &BufferConfig, capacity: usize) -> Self {
        let buffer = DiskBuffer::open(name, dir, config, Stats::new(name)).unwrap();
        let (tx, rx) = mpsc::channel(capacity);
        let mut tasks = JoinSet::new();
        let sink = buffer.start(
            rx,
            MemoryLimit::new(64 << 20),
            Default::default(),
            &mut tasks,
        );
        Self { tx, sink, tasks }
    }

    /// The next batch handed to the sink, within `secs` seconds.
    async fn next_within(&mut self, secs: u64) -> EventBatch {
        tokio::time::timeout(Duration::from_secs(secs), self.sink.recv())
            .await
            .expect("the sink is given a batch in time")
            .unwrap()
    }

    /// Sends `events` (no acknowledgement wanted) and returns the batch the sink is given for
    /// them, checking it holds the same events.
    async fn round_trip(&mut self, events: &[Event]) -> EventBatch {
        let batch = EventBatch {
            events: events.to_vec(),
            ack: Ack::none(),
        };
        self.tx.send(batch).await.unwrap();
        let b = self.next_within(5).await;
        assert_eq!(b.events, events);
        b
    }

    /// Stops as a crash would: what the sink holds is never acknowledged.
    async fn crash(mut self) {
        drop(self.tx);
        drop(self.sink);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops cleanly: the sink reads to the end first.
    async fn stop(mut self) {
        drop(self.tx);
        while self.sink.recv().await.is_some() {}
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Runs a buffer in `dir`: sends `batches` of 10 events (acks to the returned receiver), lets
/// the sink take `deliver` batches and acknowledge them, then stops everything.
async fn run_once(
    dir: &std::path::Path,
    config: &BufferConfig,
    name: &str,
    batches: std::ops::Range<u64>,
    deliver: usize,
) -> (Vec<u64>, Vec<(u64, AckStatus)>) {
    let mut run = Running::start(name, dir, config, 8);
    let (src_tx, mut src_acks) = ack_channel();
    for b in batches.clone() {
        run.tx
            .send(batch(b * 10, 10, Ack::new(b, src_tx.clone())))
            .await
            .unwrap();
    }
    let mut source_acks = Vec::new();
    while source_acks.len() < batches.clone().count() {
        source_acks.push(src_acks.recv().await.unwrap());
    }
    let mut got = Vec::new();
    for _ in 0..deliver {
        let b = run.next_within(5).await;
        got.extend(seqs(&b.events));
        b.ack.delivered();
    }
    // Let the tracker persist, then "crash": the rest is never acknowledged.
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.crash().await;
    (got, source_acks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_acknowledged_when_durable_and_resent_after_a_crash_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig::disk(64 << 20);
    let (got, acks) = run_once(dir.path(), &config, "t_resend", 0..20, 5).await;
    assert!(acks.iter().all(|(_, s)| *s == AckStatus::Delivered));
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    // Second run: the 15 undelivered batches come first, then new ones, in order, once.
    let (got, _) = run_once(dir.path(), &config, "t_resend", 20..25, 20).await;
    assert_eq!(got, (50..250).collect::<Vec<_>>());
    let (got, _) = run_once(dir.path(), &config, "t_resend", 25..26, 1).await;
    assert_eq!(
        got,
        (250..260).collect::<Vec<_>>(),
        "nothing delivered twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_survives_the_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::start("t_kinds", dir.path(), &BufferConfig::disk(8 << 20), 8);
    let mut log = LogEvent::new("hello".into(), 1);
    log.attributes.insert(
        "nested".into(),
        serde_json::json!({"a": [1, -2, 3.5, null, true, "x"]}),
    );
    log.resource = Some(std::sync::Arc::new(crate::event::Resource::default()));
    let metric = MetricEvent::new(
        "latency",
        2,
        MetricValue::Histogram {
            temporality: crate::event::Temporality::Cumulative { start_ms: 1 },
            count: 3,
            sum: 4.5,
            min: Some(0.5),
            max: None,
            bounds: vec![1.0, 2.0],
            bucket_counts: vec![1, 1, 1],
        },
    )
    .with_tag("route", "/a");
    // An OTLP log (its optional fields present) and a span, between the others.
    let mut otlp_log = LogEvent::new("from otlp".into(), 3);
    otlp_log.otlp = Some(Box::new(crate::event::OtlpLogFields {
        severity_number: 9,
        severity_text: "INFO".into(),
        trace_id: Some([7; 16]),
        body: Some(serde_json::json!({"k": 1})),
        ..Default::default()
    }));
    let span = crate::event::SpanEvent {
        resource: std::sync::Arc::new(crate::event::Resource::default()),
        scope_name: "shop".into(),
        scope_version: String::new(),
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: Some([3; 8]),
        trace_state: String::new(),
        name: "POST /checkout".into(),
        kind: crate::event::SpanKind::Server,
        start_unix_nano: 10,
        end_unix_nano: 20,
        attributes: serde_json::Map::from_iter([("http.route".to_owned(), "/checkout".into())]),
        events: vec![crate::event::SpanEventRecord {
            time_unix_nano: 15,
            name: "exception".into(),
            attributes: Default::default(),
        }],
        links: vec![],
        status: crate::event::SpanStatus {
            code: crate::event::StatusCode::Error,
            message: "boom".into(),
        },
    };
    let events = vec![
        Event::Log(log),
        Event::Log(otlp_log),
        Event::Span(span),
        Event::Metric(metric),
    ];
    let b = run.round_trip(&events).await;
    b.ack.delivered();
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_and_damaged_records_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig::disk(64 << 20);
    run_once(dir.path(), &config, "t_damage", 0..10, 0).await;
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "seg") && std::fs::metadata(p).unwrap().len() > 100
        })
        .unwrap();
    // Flip bytes inside the third record and append half a record (a torn write).
    let bytes = std::fs::read(&seg).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    let record = (bytes.len() - 8) / 10;
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"garbage!", 8 + 2 * record as u64 + 40)
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&bytes[8..8 + record / 2]).unwrap();
    drop(f);

    let (got, _) = run_once(dir.path(), &config, "t_damage", 10..11, 10).await;
    let mut expected: Vec<u64> = (0..20).chain(30..110).collect();
    expected.sort();
    assert_eq!(
        got, expected,
        "the damaged batch (20..30) is skipped, the rest arrives"
    );
    let errors = crate::telemetry::render();
    assert!(
        errors.contains("vigil_component_errors_total{component=\"t_damage\",error=\"buffer_corrupt_records\"} 2"),
        "{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_makes_room_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig {
        kind: BufferKind::Disk,
        max_bytes: 1 << 20,
        when_full: WhenFull::DropOldest,
    };
    // ~1.8 KB per batch of 10; 3 MB in total into a 1 MiB buffer, nothing delivered.
    let (_, acks) = run_once(dir.path(), &config, "t_drop", 0..1600, 0).await;
    assert!(acks.iter().all(|(_, s)| *s == AckStatus::Delivered));
    let stats = Stats::new("t_drop");
    let dropped = stats.get(Outcome::BufferDropped);
    assert!(dropped > 0, "some events dropped");
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= (1 << 20) + 4096, "buffer holds {on_disk} bytes");
    // The newest data is what is left, in order.
    let (got, _) = run_once(dir.path(), &config, "t_drop", 1600..1601, 1).await;
    assert!(
        got[0] > 0 && got.windows(2).all(|w| w[1] == w[0] + 1),
        "{:?}",
        &got[..10]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_holds_the_writer_until_deliveries_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::start("t_block", dir.path(), &BufferConfig::disk(1 << 20), 1);
    let (src_tx, mut src_acks) = ack_channel();
    let tx = run.tx.clone();
    let writer = tokio::spawn(async move {
        for b in 0..1000u64 {
            tx.send(batch(b * 10, 10, Ack::new(b, src_tx.clone())))
                .await
                .unwrap();
        }
    });
    // Nothing delivered: the writer stalls near 1 MiB.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut acked = 0;
    while src_acks.try_recv().is_ok() {
        acked += 1;
    }
    assert!(
        acked > 100 && acked < 1000,
        "{acked} batches taken while full"
    );
    // Deliver everything: the rest goes through.
    let mut got = Vec::new();
    while got.len() < 10_000 {
        // The sink is fed again once deliveries free space.
        let b = run.next_within(30).await;
        got.extend(seqs(&b.events));
        b.ack.delivered();
    }
    assert_eq!(got, (0..10_000).collect::<Vec<_>>());
    writer.await.unwrap();
    run.crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_read_again_after_a_crash_are_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig::disk(64 << 20);
    let with_position = |from: u64, n: u64, ack: Ack| {
        let b = batch(from, n, ack);
        b.ack.set_position(crate::event::Position {
            origin: "shop:00000000000000ab".into(),
            ends: (from..from + n).map(|i| (i + 1) * 100).collect(),
        });
        b
    };
    for (round, from, n) in [(0, 0u64, 30u64), (1, 20, 30)] {
        let mut run = Running::start("t_reread", dir.path(), &config, 8);
        let (src_tx, mut src_acks) = ack_channel();
        run.tx
            .send(with_position(from, n, Ack::new(round, src_tx)))
            .await
            .unwrap();
        assert_eq!(
            src_acks.recv().await.unwrap(),
            (round, AckStatus::Delivered)
        );
        let mut got = Vec::new();
        while got.len() < 30 {
            let b = run.next_within(5).await;
            got.extend(seqs(&b.events));
            // First run: "crash" before anything is delivered (the sink lets go of it).
            if round == 1 {
                b.ack.delivered();
            }
        }
        if round == 1 {
            // The undelivered 0..30 come first, then only the new 30..50 of the re-read batch.
            got.extend(seqs(&run.next_within(5).await.events));
            assert_eq!(got, (0..50).collect::<Vec<_>>());
            assert_eq!(Stats::new("t_reread").get(Outcome::Deduplicated), 10);
        }
        run.crash().await;
    }
}

const SINKS: &str = include_str!("../config/testdata/buffer_keys.toml");

#[test]
fn buffer_and_memory_keys_are_checked_with_their_place() {
    let errs = crate::config::problems(SINKS);
    let expected = [
        "agent.toml:2:1: memory_limit_bytes: must be at least 4194304 (4 MiB)",
        "agent.toml:3:1: drain_timeout_ms: must be greater than 0",
        "agent.toml:14:28: sinks.cw.buffer.when_full: unknown variant `sometimes`, expected `block` or `drop_oldest`",
        "agent.toml:20:12: sinks.out.buffer: max_bytes and when_full apply to disk buffers only (a memory buffer is bounded by memory_limit_bytes)",
    ];
    for e in expected {
        assert!(errs.iter().any(|x| x == e), "missing {e:?} in {errs:#?}");
    }
    // Defaults: disk for CloudWatch Logs, memory for the console.
    let good = SINKS
        .replace("memory_limit_bytes = 1000\ndrain_timeout_ms = 0\n", "")
        .replace("buffer = { max_bytes = 10, when_full = \"sometimes\" }", "")
        .replace("[sinks.out.buffer]\nmax_bytes = 2000000\n", "");
    let c = crate::config::parse(std::path::Path::new("agent.toml"), &good).unwrap();
    assert_eq!(c.buffers["cw"], BufferConfig::disk(DEFAULT_MAX_BYTES));
    assert_eq!(c.buffers["out"].kind, BufferKind::Memory);
    assert_eq!(
        c.memory_limit_bytes,
        crate::config::DEFAULT_MEMORY_LIMIT_BYTES
    );
}

/// Events sharing one large resource, as an OTLP export gives them.
fn sharing(n: usize, resource: &std::sync::Arc<crate::event::Resource>) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut log = LogEvent::new(format!("record {i}"), i as i64);
            log.resource = Some(std::sync::Arc::clone(resource));
            Event::Log(log)
        })
        .collect()
}

fn big_resource(bytes: usize) -> std::sync::Arc<crate::event::Resource> {
    let mut r = crate::event::Resource::default();
    r.attributes
        .insert("service.name".into(), "checkout".into());
    r.attributes
        .insert("k8s.pod.labels".into(), "l".repeat(bytes).into());
    std::sync::Arc::new(r)
}

#[test]
fn a_resource_shared_by_a_records_events_is_stored_once_and_shared_again_when_read() {
    let resource = big_resource(64 * 1024);
    let other = big_resource(1024);
    let mut events = sharing(1000, &resource);
    // A second resource, events without one and a span (whose resource is required).
    events[500] = sharing(1, &other).remove(0);
    if let Event::Log(l) = &mut events[600] {
        l.resource = None;
    }
    let mut bare = events.clone();
    for e in &mut bare {
        if let Event::Log(l) = e {
            l.resource = None;
        }
    }
    let record = segment::encode(1, None, &mut events).unwrap();
    let without = segment::encode(1, None, &mut bare).unwrap();
    // About one copy of each resource on top of the events themselves (format 1 stored it
    // 998 times: 64 MiB).
    let extra = record.len() - without.len();
    assert!(
        extra < 64 * 1024 + 1024 + 8 * 1024,
        "resources took {extra} bytes in a record of {}",
        record.len()
    );
    // Encoding gave every event its resource back.
    let Event::Log(first) = &events[0] else {
        panic!()
    };
    assert!(std::sync::Arc::ptr_eq(
        first.resource.as_ref().unwrap(),
        &resource
    ));

    let payload = &record[segment::RECORD_HEADER as usize..];
    let back = segment::decode(payload, segment::Version::V2).unwrap();
    assert_eq!(back, events);
    let resources: Vec<Option<&std::sync::Arc<crate::event::Resource>>> = back
        .iter()
        .map(|e| match e {
            Event::Log(l) => l.resource.as_ref(),
            _ => unreachable!(),
        })
        .collect();
    let shared = resources[0].unwrap();
    for (i, r) in resources.iter().enumerate() {
        match i {
            500 => assert!(!std::sync::Arc::ptr_eq(r.unwrap(), shared)),
            600 => assert!(r.is_none()),
            _ => assert!(std::sync::Arc::ptr_eq(r.unwrap(), shared), "event {i}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_resource_takes_one_copy_on_disk_and_comes_back_shared() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig::disk(64 << 20);
    let mut run = Running::start("t_shared_resource", dir.path(), &config, 8);
    let resource = big_resource(256 * 1024);
    let events = sharing(2000, &resource);
    let b = run.round_trip(&events).await;
    let Event::Log(first) = &b.events[0] else {
        panic!()
    };
    let shared = first.resource.as_ref().unwrap();
    assert!(b.events.iter().all(|e| match e {
        Event::Log(l) => std::sync::Arc::ptr_eq(l.resource.as_ref().unwrap(), shared),
        _ => false,
    }));
    // On disk: one resource (256 KiB) and 2,000 short events, not 2,000 resources (500 MiB).
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        on_disk < 256 * 1024 + 2000 * 64,
        "{on_disk} bytes of segments"
    );
    b.ack.delivered();
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_of_format_1_left_by_the_previous_release_are_still_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let resource = big_resource(100);
    let old: Vec<Event> = sharing(3, &resource);
    std::fs::write(
        segment::segment_path(dir.path(), 1),
        segment::encode_v1_segment(1, &old),
    )
    .unwrap();
    let mut run = Running::start("t_format_1", dir.path(), &BufferConfig::disk(8 << 20), 8);
    let new = batch(100, 5, Ack::none());
    let expected_new = new.events.clone();
    run.tx.send(new).await.unwrap();
    let first = run.next_within(5).await;
    assert_eq!(
        first.events, old,
        "the old segment comes first, decoded as format 1"
    );
    first.ack.delivered();
    let second = run.next_within(5).await;
    assert_eq!(second.events, expected_new);
    second.ack.delivered();
    run.stop().await;
    assert!(
        !segment::segment_path(dir.path(), 1).exists(),
        "the delivered old segment is deleted"
    );
}
