//! Throughput of the log hot path: file → lines → events → redaction → JSON parse → CloudWatch
//! request building (encoding and batching under the API limits), against the raw speed of
//! reading and splitting the same file into lines, measured in the same run.
//!
//! `cargo bench -p vigil-agent --bench file_pipeline` (optimised build). Prints lines/s, MB/s,
//! CPU-seconds per GB and the ratio to the baseline; also what 10,000 lines/s would cost.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use vigil_agent::event::{Event, LogEvent};
use vigil_agent::processors::json_parse::{JsonParse, JsonParseConfig};
use vigil_agent::redaction::{RedactionConfig, Redactor};
use vigil_agent::sinks::cloudwatch_logs::{Limits, Message, Pending};
use vigil_agent::sinks::driver::Open;
use vigil_agent::sinks::encoding::Encoding;
use vigil_agent::sources::file::OversizedLines;
use vigil_agent::sources::file::lines::{LineSplitter, Piece};
use vigil_agent::telemetry::Stats;

const TARGET_BYTES: usize = 256 * 1024 * 1024;
const BATCH: usize = 1000;

fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn make_file() -> (tempfile::NamedTempFile, usize, u64) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let mut written = 0;
    let mut lines = 0u64;
    let mut buf = String::new();
    let mut i = 0u64;
    while written < TARGET_BYTES {
        buf.clear();
        for _ in 0..1000 {
            i += 1;
            match i % 10 {
                // A realistic mix: structured JSON, plain text, an occasional card number.
                0 => buf.push_str(&format!("2026-11-22 10:00:{:02},{:03} INFO payment gateway call pan=4111 1111 1111 1111 amount={}.00 EUR order=A-{i}\n", i % 60, i % 1000, i % 500)),
                1..=3 => buf.push_str(&format!("10.0.{}.{} - - [22/Nov/2026:10:00:00 +0000] \"GET /api/cart/items?page={} HTTP/1.1\" 200 {} 0.0{}\n", i % 4, i % 250, i % 50, i % 9000, i % 90)),
                _ => buf.push_str(&format!("{{\"timestamp\":\"2026-11-22T10:00:{:02}.{:03}Z\",\"level\":\"info\",\"service\":\"checkout\",\"route\":\"POST /checkout\",\"order\":\"A-{i}\",\"duration_ms\":{},\"msg\":\"order placed\"}}\n", i % 60, i % 1000, i % 400)),
            }
            lines += 1;
        }
        f.write_all(buf.as_bytes()).unwrap();
        written += buf.len();
    }
    f.flush().unwrap();
    (f, written, lines)
}

/// Reads the file in 64 KiB chunks and calls `each` with every complete line.
fn read_lines(file: &std::fs::File, mut each: impl FnMut(&[u8], u64)) {
    let mut splitter = LineSplitter::new(256 * 1024, OversizedLines::Truncate);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut buf = Vec::new();
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut chunk, offset).unwrap();
        if n == 0 {
            break;
        }
        offset += n as u64;
        buf.extend_from_slice(&chunk[..n]);
        let base = offset - buf.len() as u64;
        let used = splitter.split(&buf, base, |p| {
            if let Piece::Line { bytes, end, .. } = p {
                each(bytes, end);
            }
        });
        buf.drain(..used);
    }
}

struct Run {
    secs: f64,
    cpu: f64,
}

fn measure(f: impl FnOnce()) -> Run {
    let (t, c) = (Instant::now(), cpu_seconds());
    f();
    Run {
        secs: t.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
    }
}

fn main() {
    let (file, bytes, lines) = make_file();
    let f = std::fs::File::open(file.path()).unwrap();
    // Warm the page cache so both runs read from memory.
    read_lines(&f, |_, _| {});

    let baseline = measure(|| {
        let mut n = 0u64;
        read_lines(&f, |line, _| n += line.len() as u64 & 1);
        std::hint::black_box(n);
    });

    let stats = Stats::new("bench");
    let redactor = Redactor::new(&RedactionConfig::default()).unwrap();
    let parse = JsonParse::new(&JsonParseConfig {
        timestamp_field: "timestamp".into(),
    });
    let limits = Limits {
        max_bytes: 1_048_576,
        max_events: 10_000,
    };
    let mut requests = 0u64;
    let full = measure(|| {
        let mut events = Vec::with_capacity(BATCH);
        let mut pending = Pending::new(limits);
        let mut flush = |events: &mut Vec<Event>, pending: &mut Pending| {
            redactor.apply(events, &stats);
            parse.process(events, &stats);
            for e in events.drain(..) {
                let Event::Log(log) = e else { continue };
                let mut m = Vec::with_capacity(log.message.len() + 64);
                let len = Encoding::Json.encode_escaped(&log, &mut m);
                if let Ok(Some(full)) = pending.add((log.timestamp_ms, Message::escaped(&m, len))) {
                    std::hint::black_box(full);
                    requests += 1;
                }
            }
        };
        read_lines(&f, |line, _| {
            let text = String::from_utf8_lossy(line).into_owned();
            events.push(Event::Log(LogEvent::new(text, 1_795_341_600_000)));
            if events.len() == BATCH {
                flush(&mut events, &mut pending);
            }
        });
        flush(&mut events, &mut pending);
    });

    let gb = bytes as f64 / 1e9;
    let report = |name: &str, r: &Run| {
        println!(
            "{name:<38} {:>10.0} lines/s {:>8.1} MB/s {:>7.2} CPU-s/GB",
            lines as f64 / r.secs,
            bytes as f64 / 1e6 / r.secs,
            r.cpu / gb
        );
    };
    println!(
        "input: {lines} lines, {:.0} MB (10% with a card number, 60% JSON)",
        bytes as f64 / 1e6
    );
    report("baseline: read + split lines", &baseline);
    report("pipeline: + redact, parse, encode, batch", &full);
    println!(
        "ratio pipeline/baseline: {:.2}x the CPU time per line ({} CloudWatch requests built)",
        full.cpu / baseline.cpu,
        requests
    );
    let per_line = full.cpu / lines as f64;
    println!(
        "at 10,000 lines/s the pipeline uses {:.2}% of one core; peak {:.0} lines/s per core",
        per_line * 10_000.0 * 100.0,
        1.0 / per_line
    );
    println!(
        "cards redacted: {}",
        stats.get(vigil_agent::telemetry::Outcome::RedactedCard)
    );
}
