//! The input: deterministic JSON log lines, and the single-thread baseline over them.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::Context;
use vigil_agent::event::{Event, LogEvent, now_ms};
use vigil_agent::processors::json_parse::{JsonParse, JsonParseConfig};
use vigil_agent::redaction::{RedactionConfig, Redactor};
use vigil_agent::sinks::encoding::Encoding;
use vigil_agent::sources::file::OversizedLines;
use vigil_agent::sources::file::lines::{LineSplitter, Piece};
use vigil_agent::telemetry::Stats;

/// Card numbers as written in the lines (valid test numbers: issuer prefix, length, Luhn); the
/// stand-in checks none of them (nor their bare digits) ever arrives.
pub const CARDS: [&str; 3] = [
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "340000000000009",
];

/// 2026-11-16T00:00:00Z: weeks before any run, so CloudWatch's 14-day window clamps them.
const BASE_MS: i64 = 1_794_787_200_000;

/// Appends line `seq` (about 245 bytes with its newline); every 100th carries a card number.
pub fn line(seq: u64, out: &mut Vec<u8>) {
    let ms = BASE_MS + seq as i64;
    let (secs, milli) = (ms / 1000, ms % 1000);
    let day = (secs - BASE_MS / 1000) / 86_400 + 16;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let _ = write!(
        out,
        r#"{{"timestamp":"2026-11-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z","level":"info","service":"checkout","seq":{seq},"route":"POST /api/checkout","order":"A-{seq:08}","duration_ms":{},"user_agent":"Mozilla/5.0 (X11; Linux x86_64)","msg":"#,
        seq % 400
    );
    if seq % 100 == 7 {
        let _ = write!(
            out,
            r#""payment captured for card {}""#,
            CARDS[(seq / 100 % 3) as usize]
        );
    } else {
        let _ = write!(
            out,
            r#""order placed and confirmed by the payment gateway""#
        );
    }
    out.extend_from_slice(b"}\n");
}

/// Writes the file unless it is already there with the right size; returns its size.
pub fn ensure_file(path: &Path, lines: u64) -> anyhow::Result<u64> {
    let mut buf = Vec::with_capacity(4 << 20);
    let mut expected = 0u64;
    for seq in 0..lines {
        buf.clear();
        line(seq, &mut buf);
        expected += buf.len() as u64;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() == expected) {
        return Ok(expected);
    }
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
    );
    for seq in 0..lines {
        buf.clear();
        line(seq, &mut buf);
        f.write_all(&buf)?;
    }
    f.flush()?;
    Ok(expected)
}

pub struct Baseline {
    pub lines: u64,
    pub cpu_seconds: f64,
}

fn thread_cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The work itself, in one thread with the agent's own code: read and split the lines, make
/// events, redact, `json_parse`, encode each as CloudWatch would get it.
pub fn baseline(path: &Path) -> anyhow::Result<Baseline> {
    let file = std::fs::File::open(path)?;
    let stats = Stats::new("bench_baseline");
    // The attribute the file source gives every line (it travels to CloudWatch too).
    let file_attribute = serde_json::Value::from(path.display().to_string());
    let redactor = Redactor::new(&RedactionConfig::default())?;
    let parse = JsonParse::new(&JsonParseConfig {
        timestamp_field: "timestamp".into(),
    });
    let process = |events: &mut Vec<Event>| {
        redactor.apply(events, &stats);
        parse.process(events, &stats);
        for e in events.drain(..) {
            if let Event::Log(log) = e {
                let mut m = String::with_capacity(log.message.len() + 64);
                Encoding::Json.encode(&log, &mut m);
                std::hint::black_box(m);
            }
        }
    };
    let cpu = thread_cpu_seconds();
    let mut splitter = LineSplitter::new(256 * 1024, OversizedLines::Truncate);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let mut events = Vec::with_capacity(1000);
    let mut lines = 0u64;
    loop {
        let n = file.read_at(&mut chunk, offset)?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        buf.extend_from_slice(&chunk[..n]);
        let base = offset - buf.len() as u64;
        let used = splitter.split(&buf, base, |p| {
            if let Piece::Line { bytes, .. } = p {
                let mut log = LogEvent::new(String::from_utf8_lossy(bytes).into_owned(), now_ms());
                log.attributes
                    .insert("file".to_owned(), file_attribute.clone());
                events.push(Event::Log(log));
                lines += 1;
            }
        });
        buf.drain(..used);
        if events.len() >= 1000 {
            process(&mut events);
        }
    }
    process(&mut events);
    Ok(Baseline {
        lines,
        cpu_seconds: thread_cpu_seconds() - cpu,
    })
}
