//! Throughput cost of a sink's disk buffer: the same batches go from a producer to a consumer
//! that acknowledges them, once through the in-memory queue a memory buffer is, and once through
//! a disk buffer (encode, append, fsync, acknowledge to the source, read back, decode, hand to
//! the sink, persist the delivered position, delete delivered segments), in the same run.
//!
//! `cargo bench -p vigil-agent --bench disk_buffer`. Prints events/s, MB/s and the ratio.

use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use vigil_agent::buffer::{BufferConfig, DiskBuffer, MemoryLimit};
use vigil_agent::event::{Ack, Event, EventBatch, LogEvent, ack_channel};
use vigil_agent::telemetry::Stats;

const BATCHES: u64 = 400;
const BATCH: u64 = 1000;

fn make_batch(b: u64) -> Vec<Event> {
    let mut attrs = serde_json::Map::new();
    attrs.insert("module".into(), "checkout".into());
    attrs.insert("env".into(), "prod".into());
    attrs.insert("path".into(), "/var/log/shop/checkout/checkout.log".into());
    (0..BATCH)
        .map(|i| {
            let n = b * BATCH + i;
            let mut log = LogEvent::new(
                format!("10.0.{}.{} - - [22/Nov/2026:10:00:00 +0000] \"GET /api/cart/items?page={} HTTP/1.1\" 200 {} 0.0{}", n % 4, n % 250, n % 50, n % 9000, n % 90),
                1_795_341_600_000 + n as i64,
            );
            log.attributes = attrs.clone();
            Event::Log(log)
        })
        .collect()
}

/// Sends every batch into `input`, consumes `output` acknowledging each batch, and waits until
/// every source acknowledgement came back. Returns seconds.
async fn drive(
    input: mpsc::Sender<EventBatch>,
    mut output: mpsc::Receiver<EventBatch>,
    batches: &[Vec<Event>],
) -> f64 {
    let (ack_tx, mut acks) = ack_channel();
    let start = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut n = 0u64;
        while n < BATCHES * BATCH {
            let b = output.recv().await.expect("batches");
            n += b.events.len() as u64;
            b.ack.delivered();
        }
    });
    for (i, b) in batches.iter().enumerate() {
        let batch = EventBatch {
            events: b.clone(),
            ack: Ack::new(i as u64, ack_tx.clone()),
        };
        input.send(batch).await.expect("open");
    }
    for _ in 0..BATCHES {
        acks.recv().await.expect("ack");
    }
    consumer.await.expect("consumer");
    start.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let batches: Vec<Vec<Event>> = (0..BATCHES).map(make_batch).collect();
    let bytes: u64 = batches
        .iter()
        .flatten()
        .map(|e| match e {
            Event::Log(l) => l.message.len() as u64,
            _ => 0,
        })
        .sum();
    let events = (BATCHES * BATCH) as f64;
    rt.block_on(async {
        // Without: the queue a memory buffer is.
        let (tx, rx) = mpsc::channel(8);
        let memory = drive(tx, rx, &batches).await;

        // With: a disk buffer (in the target directory, on the same disk as a real data_dir).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let buffer = DiskBuffer::open(
            "bench",
            dir.path(),
            &BufferConfig::disk(4 << 30),
            Stats::new("bench"),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel(8);
        let mut tasks = JoinSet::new();
        let out = buffer.start(
            rx,
            MemoryLimit::new(256 << 20),
            tokio_util::sync::CancellationToken::new(),
            &mut tasks,
        );
        let disk = drive(tx, out, &batches).await;
        while tasks.join_next().await.is_some() {}

        let report = |name: &str, secs: f64| {
            println!(
                "{name:<34} {:>10.0} events/s {:>8.1} MB/s of messages",
                events / secs,
                bytes as f64 / secs / 1e6
            );
        };
        println!(
            "{} batches of {BATCH} log events ({:.0} MB of messages)",
            BATCHES,
            bytes as f64 / 1e6
        );
        report("without buffer (memory queue)", memory);
        report("through the disk buffer", disk);
        println!(
            "disk buffer throughput / memory queue throughput = {:.3} (cost: {:.1}x time)",
            memory / disk,
            disk / memory
        );
    });
}
