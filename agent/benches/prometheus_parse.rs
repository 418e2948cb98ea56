//! Parsing a 50,000-series scrape: time and peak heap of `prometheus_scrape::parse`, against a
//! baseline in the same run that only splits the same bytes into lines.
//!
//! `cargo bench -p vigil-agent --bench prometheus_parse`

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vigil_agent::event::Tags;
use vigil_agent::sources::prometheus_scrape::parse;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A node_exporter-like body: counters, gauges and histograms with a few labels each.
fn body() -> (String, usize) {
    let mut s = String::new();
    let mut series = 0;
    s.push_str(
        "# HELP http_requests_total Requests handled.\n# TYPE http_requests_total counter\n",
    );
    for i in 0..20_000 {
        writeln!(
            s,
            "http_requests_total{{method=\"{}\",path=\"/api/v1/item/{}\",status=\"{}\"}} {}",
            ["GET", "POST", "PUT"][i % 3],
            i / 7,
            [200, 404, 500][i % 3],
            i * 13
        )
        .unwrap();
        series += 1;
    }
    s.push_str("# HELP queue_depth Items waiting.\n# TYPE queue_depth gauge\n");
    for i in 0..10_000 {
        writeln!(
            s,
            "queue_depth{{queue=\"q{i}\",shard=\"{}\"}} {}.5",
            i % 16,
            i
        )
        .unwrap();
        series += 1;
    }
    s.push_str(
        "# HELP request_duration_seconds Latency.\n# TYPE request_duration_seconds histogram\n",
    );
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
    ];
    for i in 0..1_540 {
        let labels = format!("route=\"/r/{i}\",method=\"{}\"", ["GET", "POST"][i % 2]);
        for (j, le) in bounds.iter().enumerate() {
            writeln!(
                s,
                "request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                (j + 1) * 10
            )
            .unwrap();
        }
        writeln!(s, "request_duration_seconds_sum{{{labels}}} 12.5").unwrap();
        writeln!(s, "request_duration_seconds_count{{{labels}}} 110").unwrap();
        series += bounds.len() + 2;
    }
    (s, series)
}

/// Median wall time of `runs` calls, and the peak heap above what was live before a call.
fn measure<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut peak = 0;
    for _ in 0..runs {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let t = Instant::now();
        let out = std::hint::black_box(f());
        times.push(t.elapsed());
        peak = peak.max(PEAK.load(Ordering::Relaxed) - before);
        drop(out);
    }
    times.sort();
    (times[runs / 2], peak)
}

fn main() {
    let (text, series) = body();
    let extra = Tags::from([
        ("instance".to_owned(), "127.0.0.1:9100".to_owned()),
        ("job".to_owned(), "bench".to_owned()),
    ]);
    let opts = parse::Options {
        max_series: 100_000,
        default_timestamp_ms: 1,
        start_ms: 0,
        extra_tags: &extra,
        deadline: None,
    };
    let runs = 15;
    let (split_time, split_peak) = measure(runs, || text.split('\n').collect::<Vec<&str>>());
    let mut events = 0;
    let (parse_time, parse_peak) = measure(runs, || {
        let mut out = Vec::new();
        parse::parse(&text, &opts, &mut out).expect("valid body");
        events = out.len();
        out
    });
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!(
        "body: {:.1} MiB, {series} series (sample lines) -> {events} events",
        mib(text.len())
    );
    println!(
        "split into lines (baseline): {:>8.2} ms  peak heap {:>7.2} MiB",
        split_time.as_secs_f64() * 1e3,
        mib(split_peak)
    );
    println!(
        "parse to metric events:      {:>8.2} ms  peak heap {:>7.2} MiB",
        parse_time.as_secs_f64() * 1e3,
        mib(parse_peak)
    );
    println!(
        "ratio parse/split: time x{:.1}, peak heap x{:.1}; {:.0} ns per series, {:.0} bytes per event",
        parse_time.as_secs_f64() / split_time.as_secs_f64(),
        parse_peak as f64 / split_peak.max(1) as f64,
        parse_time.as_nanos() as f64 / series as f64,
        parse_peak as f64 / events.max(1) as f64
    );
}
