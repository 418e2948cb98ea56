//! Fuzz entries: each takes arbitrary bytes, drives one parser or state machine that reads
//! outside input, and panics when an invariant breaks (a panic inside the code under test is
//! a finding too). `fuzz/fuzz_targets/*.rs` hand them to libFuzzer (`scripts/fuzz.sh TARGET
//! SECONDS`); the tests below run each over its committed corpus (`fuzz/corpus/TARGET`) and
//! a few thousand seeded mutations, so the normal suite needs no fuzzing toolchain.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;

use crate::buffer::segment;
use crate::event::{Event, LogEvent, MetricEvent, MetricValue, Tags, Temporality};
use crate::sinks::cloudwatch_logs::template::{Template, group_char, stream_char};
use crate::sinks::newrelic::delta::{Converted, DeltaConverter};
use crate::sources::file::checkpoint::{Checkpoints, Entry};
use crate::sources::file::lines::{LineSplitter, Piece};
use crate::sources::otlp::{DecodeError, Signal, decode_into};
use crate::sources::prometheus_scrape::parse;

/// The Prometheus text parser: no panic; at most `max_series` sample lines, no more events
/// than sample lines, every event carries the target's tags, histograms are well formed, and
/// an error names a line of the body.
pub fn prometheus_text(data: &[u8]) {
    // The scraper refuses a body that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut extra = Tags::new();
    extra.insert("instance".into(), "fuzz:9100".into());
    extra.insert("job".into(), "fuzz".into());
    let max_series = 64;
    let opts = parse::Options {
        max_series,
        default_timestamp_ms: 1_700_000_000_000,
        start_ms: 1_600_000_000_000,
        extra_tags: &extra,
        deadline: None,
    };
    let mut out = Vec::new();
    match parse::parse(text, &opts, &mut out) {
        Ok(samples) => {
            assert!(
                samples <= max_series,
                "{samples} sample lines over the limit"
            );
            assert!(
                out.len() <= samples,
                "{} events from {samples} sample lines",
                out.len()
            );
            for e in &out {
                assert_eq!(e.tags.get("instance"), extra.get("instance"), "{e:?}");
                assert_eq!(e.tags.get("job"), extra.get("job"), "{e:?}");
                if let MetricValue::Histogram {
                    bounds,
                    bucket_counts,
                    ..
                } = &e.value
                {
                    assert_eq!(bucket_counts.len(), bounds.len() + 1, "{e:?}");
                }
            }
        }
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(
                e.line >= 1 && e.line <= lines,
                "error on line {} of {lines}",
                e.line
            );
        }
    }
}

/// OTLP decoding, protobuf and JSON, all three signals (the first byte chooses): no panic; what
/// decodes stays within the byte budget, and every event is of the request's signal.
pub fn otlp_decode(data: &[u8]) {
    const BUDGET: usize = 256 * 1024;
    let Some((&head, body)) = data.split_first() else {
        return;
    };
    let signal = match head % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    };
    let json = head & 0x80 != 0;
    match decode_into(signal, body, json, BUDGET) {
        Ok((events, _rejected)) => {
            let used: usize = events.iter().map(Event::size_hint).sum();
            assert!(
                used <= BUDGET,
                "{used} bytes of events over the {BUDGET} budget"
            );
            for e in &events {
                let ok = matches!(
                    (signal, e),
                    (Signal::Traces, Event::Span(_))
                        | (Signal::Metrics, Event::Metric(_))
                        | (Signal::Logs, Event::Log(_))
                );
                assert!(ok, "a {signal:?} request decoded into {e:?}");
            }
        }
        Err(DecodeError::Malformed(_) | DecodeError::OverBudget) => {}
    }
}

thread_local! {
    /// One scratch file and directory per thread, reused by every input (fuzzing runs
    /// thousands of inputs a second).
    static SCRATCH: RefCell<Option<(tempfile::TempDir, std::fs::File)>> = const { RefCell::new(None) };
}

fn with_scratch<T>(f: impl FnOnce(&std::path::Path, &std::fs::File) -> T) -> T {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (dir, file) = s.get_or_insert_with(|| {
            let dir = tempfile::tempdir().expect("a scratch directory");
            let file = tempfile::tempfile_in(dir.path()).expect("a scratch file");
            (dir, file)
        });
        f(dir.path(), file)
    })
}

/// Disk-buffer segments: the input is cut at `0xA5` bytes into pieces that are, in turn,
/// garbage and the text of a record written properly. Scanning and reading never panic; when
/// no garbage piece holds a record's magic, every record is found again, in order, with its
/// events and origin, and each garbage run counts as one damaged region.
pub fn disk_segment(data: &[u8]) {
    let mut file_bytes = segment::FILE_HEADER.to_vec();
    let mut written = Vec::new();
    let mut garbage_runs = 0u64;
    let mut clean = true;
    let magic = 0x5647_5231u32.to_le_bytes();
    for (i, piece) in data.split(|b| *b == 0xA5).enumerate() {
        if i % 2 == 0 {
            if !piece.is_empty() {
                garbage_runs += 1;
                clean &= memchr::memmem::find(piece, &magic).is_none();
                file_bytes.extend_from_slice(piece);
            }
            continue;
        }
        let id = 1 + written.len() as u64;
        let text = String::from_utf8_lossy(piece).into_owned();
        let origin = (i % 4 == 1).then(|| ("/var/log/fuzz.log".to_owned(), id * 10));
        let mut events = vec![Event::Log(LogEvent::new(text, id as i64))];
        let record = segment::encode(
            id,
            origin.as_ref().map(|(o, e)| (o.as_str(), *e)),
            &mut events,
        )
        .expect("encodable events");
        file_bytes.extend_from_slice(&record);
        written.push((id, origin, events, file_bytes.len() as u64));
    }
    with_scratch(|_, file| {
        file.set_len(0).expect("truncate the scratch file");
        file.write_all_at(&file_bytes, 0)
            .expect("write the scratch file");
        let (last, events, valid_end, damaged) = segment::scan(file).expect("scan");
        assert!(valid_end <= file_bytes.len() as u64);
        // Walk it the way the reader does.
        let limit = file_bytes.len() as u64;
        let mut offset = segment::FILE_HEADER.len() as u64;
        let mut found = Vec::new();
        loop {
            match segment::read_at(file, offset, limit).expect("read") {
                segment::Read::End => break,
                segment::Read::Record(r) => {
                    assert!(r.end > offset && r.end <= limit);
                    offset = r.end;
                    let decoded = segment::decode(&r.payload, segment::Version::V2);
                    found.push((r.id, segment::origin(&r.payload), decoded, r.end));
                }
                segment::Read::Damaged { resume } => {
                    assert!(
                        resume > offset && resume <= limit,
                        "no progress at {offset}"
                    );
                    offset = resume;
                }
            }
        }
        if !clean {
            return;
        }
        assert_eq!(damaged, garbage_runs, "damaged regions");
        assert_eq!(last, written.last().map(|w| w.0));
        assert_eq!(events, written.len() as u64);
        assert_eq!(found.len(), written.len());
        for ((id, origin, events, end), (fid, forigin, fevents, fend)) in written.iter().zip(found)
        {
            assert_eq!(*id, fid);
            assert_eq!(*end, fend);
            let (forigin, _) = forigin.expect("an origin prefix");
            assert_eq!(*origin, forigin);
            assert_eq!(*events, fevents.expect("the events decode"));
        }
        if let Some(w) = written.last() {
            assert!(valid_end >= w.3);
        }
    })
}

/// The delivered-position file (two slots): whatever the file held, opening it never panics;
/// a stored id (at least the one found) is what the next open finds; and after a torn write
/// of that slot the next open finds either it or the id found before.
pub fn delivered_position(data: &[u8]) {
    let (initial, rest) = data.split_at(data.len().min(40));
    let delta = rest
        .get(..8)
        .map_or(1, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let torn_at = rest.get(8).map_or(0, |b| usize::from(*b % 17));
    with_scratch(|dir, _| {
        let path = dir.join("delivered");
        std::fs::write(&path, initial).expect("write the position file");
        let (mut file, found) = segment::AckFile::open(&path).expect("open");
        let stored = found.saturating_add(delta);
        let before = std::fs::read(&path).expect("read back");
        file.store(stored).expect("store");
        drop(file);
        let (_, again) = segment::AckFile::open(&path).expect("reopen");
        assert_eq!(again, stored, "stored {stored} over {found}");
        // Tear the write: the slot written keeps only its first `torn_at` new bytes.
        let after = std::fs::read(&path).expect("read back");
        let slot = (0..2)
            .find(|s| after.get(s * 16..s * 16 + 16) != before.get(s * 16..s * 16 + 16))
            .expect("one slot changed");
        let mut torn = after.clone();
        for (i, byte) in torn
            .iter_mut()
            .enumerate()
            .take(slot * 16 + 16)
            .skip(slot * 16 + torn_at)
        {
            *byte = before.get(i).copied().unwrap_or(0);
        }
        std::fs::write(&path, &torn).expect("write the torn file");
        let (_, recovered) = segment::AckFile::open(&path).expect("reopen torn");
        assert!(
            recovered == stored || recovered == found,
            "torn at {torn_at}: found {recovered}, expected {stored} or {found}"
        );
    })
}

/// File-source checkpoints: any file content loads without panicking; what loads cleanly is
/// written and loaded back unchanged.
pub fn file_checkpoints(data: &[u8]) {
    with_scratch(|dir, _| {
        let path = dir.join("fuzz.json");
        let aside = dir.join("fuzz.json.corrupt");
        let _ = std::fs::remove_file(&aside);
        std::fs::write(&path, data).expect("write the checkpoint file");
        let (checkpoints, problem) = Checkpoints::load(dir, "fuzz");
        if problem.is_some() {
            assert_eq!(checkpoints.entries().count(), 0);
            return;
        }
        let mut first: Vec<(u64, Entry)> =
            checkpoints.entries().map(|(k, v)| (k, v.clone())).collect();
        first.sort_by_key(|(k, _)| *k);
        checkpoints.write().expect("write checkpoints");
        let (again, problem) = Checkpoints::load(dir, "fuzz");
        assert_eq!(problem, None);
        let mut second: Vec<(u64, Entry)> = again.entries().map(|(k, v)| (k, v.clone())).collect();
        second.sort_by_key(|(k, _)| *k);
        assert_eq!(first, second);
    })
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().expect("split yields one part");
    let Some(mut left) = name.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return left.is_empty();
    };
    for part in middle {
        match left.find(part) {
            Some(at) => left = &left[at + part.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last)
}

/// CloudWatch Logs name templates: the input is a template, then `\0`-separated field values.
/// A template the config accepts renders, for any values, a name CloudWatch accepts: 1 to 512
/// characters, all allowed, matching the IAM pattern the template gives (`wildcard`).
pub fn name_templates(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or_default();
    let values: Vec<&str> = parts.collect();
    for (valid, kind) in [
        (group_char as fn(char) -> bool, "group"),
        (stream_char, "stream"),
    ] {
        let Ok(t) = Template::parse_name(template, valid) else {
            continue;
        };
        // Field names map to values by their position in the input, some missing.
        let fields: HashMap<String, String> = t
            .fields()
            .enumerate()
            .filter_map(|(i, f)| values.get(i).map(|v| (f.to_owned(), (*v).to_owned())))
            .collect();
        let mut missing = false;
        let name = t.render(|k| fields.get(k).cloned(), valid, &mut missing);
        let chars = name.chars().count();
        assert!(
            (1..=512).contains(&chars),
            "{kind} name of {chars} characters: {name:?}"
        );
        assert!(name.chars().all(valid), "invalid {kind} name {name:?}");
        if chars < 512 {
            let pattern = t.wildcard();
            assert!(
                glob(&pattern, &name),
                "{kind} {name:?} outside its IAM pattern {pattern:?}"
            );
        }
    }
}

/// The line splitter: the file's bytes fed in pieces of any size (as reads return them) give the
/// same lines as the whole file at once; no line is longer than the limit; offsets only grow
/// and never pass what was consumed; what is held back stays bounded.
pub fn line_splitter(data: &[u8]) {
    use crate::sources::file::config::OversizedLines;
    let Some((&head, content)) = data.split_first() else {
        return;
    };
    let max = 1 + usize::from(head % 16);
    let mode = if head & 0x80 != 0 {
        OversizedLines::Split
    } else {
        OversizedLines::Truncate
    };
    type Line = (Vec<u8>, u64, bool);
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| -> (Vec<Line>, u64, usize) {
        let mut splitter = LineSplitter::new(max, mode);
        let (mut lines, mut held, mut base, mut last_end) = (Vec::new(), Vec::new(), 0u64, 0u64);
        for piece in pieces {
            held.extend_from_slice(piece);
            let used = splitter.split(&held, base, |p| {
                let end = match &p {
                    Piece::Line { end, .. } | Piece::Skipped { end } => *end,
                };
                assert!(end >= last_end, "offset went back from {last_end} to {end}");
                last_end = end;
                if let Piece::Line {
                    bytes,
                    end,
                    oversized,
                } = p
                {
                    assert!(bytes.len() <= max, "a line of {} over {max}", bytes.len());
                    lines.push((bytes.to_vec(), end, oversized));
                }
            });
            assert!(used <= held.len());
            base += used as u64;
            assert!(
                last_end <= base,
                "offset {last_end} past the consumed {base}"
            );
            held.drain(..used);
            // A partial line is kept only up to the limit (and a `\r` that may end it).
            assert!(
                held.len() <= max + 1,
                "{} bytes held back over {max}",
                held.len()
            );
        }
        (lines, base, held.len())
    };
    let (whole, whole_used, whole_held) = run(&mut std::iter::once(content));
    // Read sizes from the content itself: deterministic, varied.
    let mut sizes = content.iter().map(|b| 1 + usize::from(b % 7)).cycle();
    let mut rest = content;
    let mut pieces = std::iter::from_fn(|| {
        if rest.is_empty() {
            return None;
        }
        let n = sizes.next().unwrap_or(1).min(rest.len());
        let (piece, after) = rest.split_at(n);
        rest = after;
        Some(piece)
    });
    let (chunked, chunked_used, chunked_held) = run(&mut pieces);
    assert_eq!(whole_used + whole_held as u64, content.len() as u64);
    assert_eq!(chunked_used + chunked_held as u64, content.len() as u64);
    let texts = |lines: &[Line]| -> Vec<(Vec<u8>, bool)> {
        lines.iter().map(|(b, _, o)| (b.clone(), *o)).collect()
    };
    assert_eq!(texts(&whole), texts(&chunked), "max {max}, {mode:?}");
    if mode == OversizedLines::Split {
        // Pieces of a split line end where they do in the file, however it was read.
        assert_eq!(whole, chunked, "max {max}, {mode:?}");
    }
}

/// The New Relic cumulative → delta converter, over a sequence of points of a few series: no
/// panic, cumulative points leave as deltas, and a counter's deltas are what its totals say:
/// the rise since the previous point, or the whole total after a reset or for a series that
/// started after the agent.
pub fn newrelic_delta(data: &[u8]) {
    const AGENT_START: i64 = 1_500;
    let mut converter = DeltaConverter::new(AGENT_START);
    // Per series: (start, total) of the previous counter point.
    let mut previous: HashMap<u8, Option<(i64, f64)>> = HashMap::new();
    let mut time = 10_000i64;
    for chunk in data.chunks_exact(4) {
        let (series, value, start, step) = (chunk[0] % 4, chunk[1], chunk[2], chunk[3]);
        // Time mostly moves on, sometimes back (clocks and replays).
        time += i64::from(step as i8) * 100;
        let start_ms = 1_000 * i64::from(start % 3);
        let kind = chunk[0] >> 6;
        let mut e = MetricEvent::new(
            format!("m{series}"),
            time,
            MetricValue::Gauge { value: 0.0 },
        );
        let mut tags = Tags::new();
        tags.insert("series".into(), series.to_string());
        e.tags = tags;
        let total = f64::from(value);
        e.value = match kind {
            0 | 1 => MetricValue::Counter {
                value: total,
                temporality: Temporality::Cumulative { start_ms },
            },
            2 => {
                let counts = vec![u64::from(value / 2), u64::from(value - value / 2)];
                MetricValue::Histogram {
                    temporality: Temporality::Cumulative { start_ms },
                    count: u64::from(value),
                    sum: total,
                    min: None,
                    max: None,
                    bounds: vec![f64::from(start)],
                    bucket_counts: counts,
                }
            }
            _ => MetricValue::Gauge { value: total },
        };
        let before = previous.insert(series, None).flatten();
        let converted = converter.convert(e);
        match converted {
            Converted::Send(out, window_start) => {
                assert!(window_start.is_some());
                match out.value {
                    MetricValue::Counter { value, temporality } => {
                        assert_eq!(temporality, Temporality::Delta);
                        let expected = match before {
                            Some((s, t)) if s == start_ms && total >= t => total - t,
                            _ => total,
                        };
                        assert_eq!(value, expected, "series {series}: {before:?} then {total}");
                        previous.insert(series, Some((start_ms, total)));
                    }
                    MetricValue::Histogram {
                        temporality,
                        count,
                        bucket_counts,
                        ..
                    } => {
                        assert_eq!(temporality, Temporality::Delta);
                        assert_eq!(bucket_counts.len(), 2);
                        assert!(count <= u64::from(value));
                    }
                    _ => {}
                }
            }
            Converted::Baseline => {
                assert!(kind < 3, "a gauge was kept as a baseline");
                assert!(before.is_none() && start_ms <= AGENT_START);
                if kind < 2 {
                    previous.insert(series, Some((start_ms, total)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vigil_common::fuzzing::run;

    fn workspace() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the agent is in the workspace")
    }

    /// Mutations per target in the normal suite: a few seconds of CPU for all of them.
    const ITERATIONS: usize = 3_000;

    #[test]
    fn prometheus_text() {
        let dict: &[&[u8]] = &[
            b"# TYPE x histogram\n",
            b"# TYPE x summary\n",
            b"# HELP x h\n",
            b"x_bucket{le=\"+Inf\"} 1\n",
            b"x_bucket{le=\"0.5\"} 1\n",
            b"x_sum 1\n",
            b"x_count 1\n",
            b"{quantile=\"0.5\"}",
            b"{a=\"b\",c=\"d\"}",
            b" NaN",
            b" +Inf",
            b" 1e300",
            b" -9223372036854775808",
            b"\\\"",
            b"\\n",
        ];
        run(
            workspace(),
            "prometheus_text",
            dict,
            12,
            ITERATIONS,
            super::prometheus_text,
        );
    }

    #[test]
    fn otlp_decode() {
        let dict: &[&[u8]] = &[
            b"\"resourceSpans\":[",
            b"\"resourceMetrics\":[",
            b"\"resourceLogs\":[",
            b"\"scopeSpans\":[{\"spans\":[{}]}]",
            b"\"traceId\":\"0102030405060708090a0b0c0d0e0f10\"",
            b"\"timeUnixNano\":\"18446744073709551615\"",
            b"\"asDouble\":1e308",
            b"\"intValue\":\"-9223372036854775808\"",
            b"\x0a\x00",
            b"\x12\x00",
            b"\x1a\x00",
        ];
        run(
            workspace(),
            "otlp_decode",
            dict,
            12,
            ITERATIONS,
            super::otlp_decode,
        );
    }

    #[test]
    fn disk_segment() {
        let dict: &[&[u8]] = &[b"\xa5", b"1RGV", b"\xa5\xa5", b"\xff\xff\xff\xff"];
        run(
            workspace(),
            "disk_segment",
            dict,
            12,
            ITERATIONS,
            super::disk_segment,
        );
    }

    #[test]
    fn delivered_position() {
        let dict: &[&[u8]] = &[b"1RGV", b"\xff\xff\xff\xff\xff\xff\xff\xff"];
        run(
            workspace(),
            "delivered_position",
            dict,
            12,
            ITERATIONS,
            super::delivered_position,
        );
    }

    #[test]
    fn file_checkpoints() {
        let dict: &[&[u8]] = &[
            b"{\"version\":1,\"files\":{}}",
            b"\"ffffffffffffffff\":{\"offset\":18446744073709551615,\"path\":\"/x\",\"seen_ms\":-1}",
            b"\"version\":2",
            b"\\u0000",
        ];
        run(
            workspace(),
            "file_checkpoints",
            dict,
            12,
            ITERATIONS,
            super::file_checkpoints,
        );
    }

    #[test]
    fn name_templates() {
        let dict: &[&[u8]] = &[
            b"{a}",
            b"{a|b}",
            b"\0",
            b"{",
            b"}",
            b"*",
            b":",
            "é".as_bytes(),
        ];
        run(
            workspace(),
            "name_templates",
            dict,
            12,
            ITERATIONS,
            super::name_templates,
        );
    }

    #[test]
    fn line_splitter() {
        let dict: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b"\n\n", b"0123456789abcdef"];
        run(
            workspace(),
            "line_splitter",
            dict,
            12,
            ITERATIONS,
            super::line_splitter,
        );
    }

    #[test]
    fn newrelic_delta() {
        let dict: &[&[u8]] = &[
            b"\x00\x05\x02\x01",
            b"\x80\x03\x00\x01",
            b"\xc0\x01\x01\xff",
        ];
        run(
            workspace(),
            "newrelic_delta",
            dict,
            12,
            ITERATIONS,
            super::newrelic_delta,
        );
    }
}
