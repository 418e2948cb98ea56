//! A parser for the Prometheus text exposition format 0.0.4, straight into metric events.
//!
//! One pass over the body, line by line, with no intermediate document: samples of counters,
//! gauges and untyped metrics become events as they are read; the `_bucket`/`_sum`/`_count`
//! lines of a histogram and the quantile/`_sum`/`_count` lines of a summary are gathered per
//! label set until their family ends, then become one `Histogram` or `Summary` event each.
//! Names in `# TYPE` lines are borrowed from the body, never copied.
//!
//! Errors name the line. The caller treats any error as a failed scrape and keeps nothing of
//! it, so a body is used whole or not at all.

use std::collections::{HashMap, HashSet};

use crate::event::{MetricEvent, MetricValue, Tags, Temporality};

/// How to turn a body into events.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// Most sample lines accepted; one more is an error (so memory stays bounded).
    pub max_series: usize,
    /// Timestamp of samples that carry none (the scrape time), ms since the epoch.
    pub default_timestamp_ms: i64,
    /// Start of cumulative counters and histograms.
    pub start_ms: i64,
    /// Tags added to every event (`instance`, `job`, configured labels). A label of the same
    /// name from the exporter is kept as `exported_<name>`, as Prometheus does.
    pub extra_tags: &'a Tags,
    /// Parsing stops with an error past this instant (the scrape's timeout covers it too).
    pub deadline: Option<std::time::Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the body.
    pub line: usize,
    pub message: String,
    /// The body has more sample lines than `max_series`.
    pub too_many_series: bool,
    /// Parsing ran past `Options::deadline`.
    pub timed_out: bool,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// The histogram or summary lines of one label set, gathered until the family ends.
#[derive(Default)]
struct Group {
    tags: Tags,
    /// (upper bound or quantile, cumulative count or value)
    points: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
    timestamp_ms: Option<i64>,
}

struct Family<'t> {
    name: &'t str,
    kind: Kind,
    unit: &'static str,
    groups: Vec<Group>,
    index: HashMap<Tags, usize>,
}

/// Parses `text`, appending one event per counter/gauge/untyped sample and per histogram or
/// summary label set to `out`. Returns the number of sample lines read. On error `out` may hold
/// part of the body: the caller discards it.
pub fn parse(
    text: &str,
    opts: &Options<'_>,
    out: &mut Vec<MetricEvent>,
) -> Result<usize, ParseError> {
    let mut types: HashMap<&str, Kind> = HashMap::new();
    let mut sampled: HashSet<&str> = HashSet::new();
    let mut family: Option<Family<'_>> = None;
    let mut series = 0usize;
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut last: Option<(&str, (&str, Kind, Role))> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let err = |message: String| ParseError {
            line: line_no,
            message,
            too_many_series: false,
            timed_out: false,
        };
        if i % 4096 == 4095 && opts.deadline.is_some_and(|d| std::time::Instant::now() > d) {
            return Err(ParseError {
                timed_out: true,
                ..err("parsing took longer than the scrape timeout".to_owned())
            });
        }
        let line = raw
            .strip_suffix('\r')
            .unwrap_or(raw)
            .trim_start_matches([' ', '\t']);
        if line.trim_end().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if read_comment(comment, &mut types, &sampled).map_err(err)? {
                last = None;
            }
            continue;
        }

        series += 1;
        if series > opts.max_series {
            return Err(ParseError {
                line: line_no,
                message: format!("more than {} series (max_series)", opts.max_series),
                too_many_series: true,
                timed_out: false,
            });
        }
        let sample = parse_sample(line, &mut labels).map_err(err)?;
        // Runs of one name are the norm: resolve (two or more hash lookups) only on a change.
        let (family_name, kind, role) = match last {
            Some((name, resolved)) if name == sample.name => resolved,
            _ => {
                let resolved = resolve(sample.name, &types);
                sampled.insert(resolved.0);
                last = Some((sample.name, resolved));
                resolved
            }
        };
        if family.as_ref().is_none_or(|f| f.name != family_name) {
            if let Some(done) = family.take() {
                flush(done, opts, out);
            }
            family = Some(Family {
                name: family_name,
                kind,
                unit: unit_of(family_name),
                groups: Vec::new(),
                index: HashMap::new(),
            });
        }
        let f = family.as_mut().expect("set above");
        match (kind, role) {
            (Kind::Counter | Kind::Gauge | Kind::Untyped, _) => {
                out.push(scalar(&sample, kind, f.unit, &mut labels, opts));
            }
            (Kind::Histogram | Kind::Summary, role) => {
                f.add(&sample, role, &mut labels).map_err(err)?;
            }
        }
    }
    if let Some(done) = family.take() {
        flush(done, opts, out);
    }
    Ok(series)
}

/// A `# TYPE` or `# HELP` line (other comments are ignored); true for a TYPE line.
fn read_comment<'t>(
    comment: &'t str,
    types: &mut HashMap<&'t str, Kind>,
    sampled: &HashSet<&str>,
) -> Result<bool, String> {
    let mut words = comment
        .trim_start_matches([' ', '\t'])
        .splitn(3, [' ', '\t']);
    match words.next() {
        Some("TYPE") => {
            let name = words.next().unwrap_or("");
            if !valid_metric_name(name) {
                return Err(format!("TYPE line with invalid metric name `{name}`"));
            }
            let kind = match words.next().map(str::trim) {
                Some("counter") => Kind::Counter,
                Some("gauge") => Kind::Gauge,
                Some("histogram") => Kind::Histogram,
                Some("summary") => Kind::Summary,
                Some("untyped") => Kind::Untyped,
                other => {
                    return Err(format!(
                        "unknown type `{}` for `{name}`",
                        other.unwrap_or("")
                    ));
                }
            };
            if types.insert(name, kind).is_some() {
                return Err(format!("second TYPE line for `{name}`"));
            }
            if sampled.contains(name) {
                return Err(format!("TYPE line for `{name}` after its samples"));
            }
            Ok(true)
        }
        Some("HELP") => {
            let name = words.next().unwrap_or("");
            if !valid_metric_name(name) {
                return Err(format!("HELP line with invalid metric name `{name}`"));
            }
            Ok(false)
        }
        // Any other comment (including OpenMetrics' `# EOF`) is ignored.
        _ => Ok(false),
    }
}

/// The event of one counter, gauge or untyped sample.
fn scalar(
    sample: &Sample<'_>,
    kind: Kind,
    unit: &'static str,
    labels: &mut Vec<(String, String)>,
    opts: &Options<'_>,
) -> MetricEvent {
    let mut tags = Tags::new();
    for (k, v) in labels.drain(..) {
        tags.insert(k, v);
    }
    let value = if kind == Kind::Counter {
        MetricValue::Counter {
            value: sample.value,
            temporality: Temporality::Cumulative {
                start_ms: opts.start_ms,
            },
        }
    } else {
        MetricValue::Gauge {
            value: sample.value,
        }
    };
    event(
        sample.name,
        unit,
        sample.timestamp_ms.unwrap_or(opts.default_timestamp_ms),
        tags,
        value,
        opts,
    )
}

impl Family<'_> {
    /// Adds one line of a histogram or summary to the group of its label set (`le` or
    /// `quantile` is the point's bound, not a label).
    fn add(
        &mut self,
        sample: &Sample<'_>,
        role: Role,
        labels: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        let special = match (self.kind, role) {
            (Kind::Histogram, Role::Bucket) => Some("le"),
            (Kind::Summary, Role::Plain) => Some("quantile"),
            (Kind::Histogram, Role::Plain) => {
                return Err(format!(
                    "`{}` is a histogram: expected `_bucket`, `_sum` or `_count` samples",
                    sample.name
                ));
            }
            _ => None,
        };
        let mut bound = None;
        let mut tags = Tags::new();
        for (k, v) in labels.drain(..) {
            if Some(k.as_str()) == special {
                bound = Some(
                    parse_float(&v).ok_or_else(|| format!("label {k}=\"{v}\" is not a number"))?,
                );
            } else {
                tags.insert(k, v);
            }
        }
        if let Some(label) = special
            && bound.is_none()
        {
            return Err(format!(
                "`{}` sample without a `{label}` label",
                sample.name
            ));
        }
        // Lines of one label set are usually adjacent: try the last group first.
        let at = match self.groups.last() {
            Some(g) if g.tags == tags => self.groups.len() - 1,
            _ => match self.index.get(&tags) {
                Some(&at) => at,
                None => {
                    self.index.insert(tags.clone(), self.groups.len());
                    self.groups.push(Group {
                        tags,
                        ..Group::default()
                    });
                    self.groups.len() - 1
                }
            },
        };
        let g = &mut self.groups[at];
        if sample.timestamp_ms.is_some() {
            g.timestamp_ms = sample.timestamp_ms;
        }
        match (role, bound) {
            (Role::Sum, _) => g.sum = Some(sample.value),
            (Role::Count, _) => g.count = Some(sample.value),
            (_, Some(b)) => g.points.push((b, sample.value)),
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Bucket,
    Sum,
    Count,
}

/// Which family a sample belongs to: its own name when typed (or untyped), else the histogram
/// or summary it is a `_bucket`/`_sum`/`_count` line of.
fn resolve<'t>(name: &'t str, types: &HashMap<&'t str, Kind>) -> (&'t str, Kind, Role) {
    if let Some(&kind) = types.get(name) {
        return (name, kind, Role::Plain);
    }
    for (suffix, role) in [
        ("_bucket", Role::Bucket),
        ("_sum", Role::Sum),
        ("_count", Role::Count),
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some((&base, &kind)) = types.get_key_value(base)
            && (kind == Kind::Histogram || (kind == Kind::Summary && role != Role::Bucket))
        {
            return (base, kind, role);
        }
    }
    (name, Kind::Untyped, Role::Plain)
}

fn flush(f: Family<'_>, opts: &Options<'_>, out: &mut Vec<MetricEvent>) {
    let temporality = Temporality::Cumulative {
        start_ms: opts.start_ms,
    };
    for mut g in f.groups {
        let ts = g.timestamp_ms.unwrap_or(opts.default_timestamp_ms);
        let value = match f.kind {
            Kind::Histogram => {
                g.points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut bounds = Vec::with_capacity(g.points.len());
                let mut bucket_counts = Vec::with_capacity(g.points.len() + 1);
                let mut below = 0u64;
                let mut inf = None;
                for &(le, cumulative) in &g.points {
                    let cumulative = to_count(cumulative);
                    if le == f64::INFINITY {
                        inf = Some(cumulative);
                        continue;
                    }
                    bounds.push(le);
                    // Cumulative counts never decrease; a broken exporter's dip counts as 0.
                    bucket_counts.push(cumulative.saturating_sub(below));
                    below = below.max(cumulative);
                }
                let count = g.count.map(to_count).or(inf).unwrap_or(below);
                bucket_counts.push(count.saturating_sub(below));
                MetricValue::Histogram {
                    temporality,
                    count,
                    sum: g.sum.unwrap_or(0.0),
                    min: None,
                    max: None,
                    bounds,
                    bucket_counts,
                }
            }
            _ => MetricValue::Summary {
                count: g.count.map(to_count).unwrap_or(0),
                sum: g.sum.unwrap_or(0.0),
                quantiles: g.points,
            },
        };
        out.push(event(f.name, f.unit, ts, g.tags, value, opts));
    }
}

fn event(
    name: &str,
    unit: &'static str,
    timestamp_ms: i64,
    mut tags: Tags,
    value: MetricValue,
    opts: &Options<'_>,
) -> MetricEvent {
    for (k, v) in opts.extra_tags {
        if let Some(theirs) = tags.insert(k.clone(), v.clone()) {
            tags.insert(format!("exported_{k}"), theirs);
        }
    }
    MetricEvent {
        name: name.to_owned(),
        timestamp_ms,
        unit: unit.to_owned(),
        tags,
        value,
        resource: None,
    }
}

fn to_count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

/// The unit a name's conventional suffix states (`_seconds`, `_bytes`, `_ratio`), in UCUM.
pub fn unit_of(family: &str) -> &'static str {
    let base = family.strip_suffix("_total").unwrap_or(family);
    if base.ends_with("_seconds") {
        "s"
    } else if base.ends_with("_milliseconds") {
        "ms"
    } else if base.ends_with("_bytes") {
        "By"
    } else if base.ends_with("_ratio") {
        "1"
    } else {
        ""
    }
}

struct Sample<'t> {
    name: &'t str,
    value: f64,
    timestamp_ms: Option<i64>,
}

/// The quoted value of `label` starting at byte `pos` (after the opening quote), unescaped;
/// and the position after its closing quote.
fn label_value(line: &str, mut pos: usize, label: &str) -> Result<(String, usize), String> {
    let bytes = line.as_bytes();
    let mut value = String::new();
    let mut run = pos;
    loop {
        match bytes.get(pos) {
            None => return Err(format!("unterminated value of label `{label}`")),
            Some(b'"') => {
                value.push_str(&line[run..pos]);
                return Ok((value, pos + 1));
            }
            Some(b'\\') => {
                value.push_str(&line[run..pos]);
                match bytes.get(pos + 1) {
                    Some(b'\\') => value.push('\\'),
                    Some(b'"') => value.push('"'),
                    Some(b'n') => value.push('\n'),
                    _ => {
                        return Err(format!(
                            "invalid escape in the value of label `{label}` (only \\\\, \\\" and \\n)"
                        ));
                    }
                }
                pos += 2;
                run = pos;
            }
            Some(_) => pos += 1,
        }
    }
}

/// `name{label="value",...} value [timestamp]`; labels go to `labels` (unescaped).
fn parse_sample<'t>(
    line: &'t str,
    labels: &mut Vec<(String, String)>,
) -> Result<Sample<'t>, String> {
    labels.clear();
    let bytes = line.as_bytes();
    let name_end = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'))
        .unwrap_or(bytes.len());
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name at `{}`", excerpt(line)));
    }
    let mut pos = skip_blanks(bytes, name_end);
    if pos == name_end && pos < bytes.len() && bytes[pos] != b'{' {
        return Err(format!(
            "expected a blank after the metric name in `{}`",
            excerpt(line)
        ));
    }
    if bytes.get(pos) == Some(&b'{') {
        pos += 1;
        loop {
            pos = skip_blanks(bytes, pos);
            match bytes.get(pos) {
                Some(b'}') => {
                    pos += 1;
                    break;
                }
                None => return Err(format!("unclosed `{{` in `{}`", excerpt(line))),
                _ => {}
            }
            let start = pos;
            while pos < bytes.len() && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_') {
                pos += 1;
            }
            let label = &line[start..pos];
            if label.is_empty() || label.as_bytes()[0].is_ascii_digit() {
                return Err(format!("invalid label name in `{}`", excerpt(line)));
            }
            pos = skip_blanks(bytes, pos);
            if bytes.get(pos) != Some(&b'=') {
                return Err(format!("expected `=` after label `{label}`"));
            }
            pos = skip_blanks(bytes, pos + 1);
            if bytes.get(pos) != Some(&b'"') {
                return Err(format!(
                    "expected `\"` to open the value of label `{label}`"
                ));
            }
            let (value, end) = label_value(line, pos + 1, label)?;
            pos = end;
            labels.push((label.to_owned(), value));
            pos = skip_blanks(bytes, pos);
            match bytes.get(pos) {
                Some(b',') => pos += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected `,` or `}}` after label `{label}`")),
            }
        }
        // A label named twice: sorted names find it in n log n (a line may carry thousands).
        if labels.len() > 1 {
            let mut names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("label `{}` appears twice", w[0]));
            }
        }
    }
    let rest = &line[pos..];
    let mut tokens = rest.split_ascii_whitespace();
    let value_text = tokens
        .next()
        .ok_or_else(|| format!("missing value in `{}`", excerpt(line)))?;
    let value = parse_float(value_text)
        .ok_or_else(|| format!("invalid value `{}`", excerpt(value_text)))?;
    let timestamp_ms = match tokens.next() {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("invalid timestamp `{}`", excerpt(t)))?,
        ),
    };
    if let Some(extra) = tokens.next() {
        return Err(format!(
            "unexpected `{}` after the timestamp",
            excerpt(extra)
        ));
    }
    Ok(Sample {
        name,
        value,
        timestamp_ms,
    })
}

/// Go's ParseFloat as Prometheus uses it: decimals, exponents, `NaN`, `+Inf`, `-Inf`.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        // Rust also takes "infinity" and friends; Prometheus' words are matched above.
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

fn skip_blanks(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && (bytes[pos] == b' ' || bytes[pos] == b'\t') {
        pos += 1;
    }
    pos
}

fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// At most 60 characters of `s`, for error messages (bodies can hold huge lines).
fn excerpt(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<Vec<MetricEvent>, ParseError> {
        let extra = Tags::from([("instance".to_owned(), "h:9100".to_owned())]);
        let opts = Options {
            max_series: 100,
            default_timestamp_ms: 1_000,
            start_ms: 500,
            extra_tags: &extra,
            deadline: None,
        };
        let mut out = Vec::new();
        parse(text, &opts, &mut out).map(|_| out)
    }

    /// Options for the tests that time the parser: up to `max_series`, no deadline.
    fn quick(extra: &Tags, max_series: usize) -> Options<'_> {
        Options {
            max_series,
            default_timestamp_ms: 1,
            start_ms: 0,
            extra_tags: extra,
            deadline: None,
        }
    }

    fn tag<'a>(m: &'a MetricEvent, k: &str) -> Option<&'a str> {
        m.tags.get(k).map(String::as_str)
    }

    #[test]
    fn counters_gauges_untyped_with_help_and_timestamps() {
        let out = run("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\nnode_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12345.5\nnode_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 10 1700000000000\n# TYPE node_load1 gauge\nnode_load1 0.25\nsome_untyped 3\n").unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].name, "node_cpu_seconds_total");
        assert_eq!(out[0].unit, "s");
        assert_eq!(
            out[0].value,
            MetricValue::Counter {
                value: 12345.5,
                temporality: Temporality::Cumulative { start_ms: 500 }
            }
        );
        assert_eq!(tag(&out[0], "mode"), Some("idle"));
        assert_eq!(tag(&out[0], "instance"), Some("h:9100"));
        assert_eq!(out[0].timestamp_ms, 1_000);
        assert_eq!(out[1].timestamp_ms, 1_700_000_000_000);
        assert_eq!(out[2].value, MetricValue::Gauge { value: 0.25 });
        assert_eq!(out[3].value, MetricValue::Gauge { value: 3.0 });
    }

    #[test]
    fn histograms_become_buckets_with_overflow() {
        let out = run("# TYPE req_seconds histogram\nreq_seconds_bucket{path=\"/a\",le=\"0.1\"} 3\nreq_seconds_bucket{path=\"/a\",le=\"0.5\"} 7\nreq_seconds_bucket{path=\"/a\",le=\"+Inf\"} 9\nreq_seconds_sum{path=\"/a\"} 2.5\nreq_seconds_count{path=\"/a\"} 9\nreq_seconds_bucket{path=\"/b\",le=\"0.1\"} 1\nreq_seconds_bucket{path=\"/b\",le=\"0.5\"} 1\nreq_seconds_bucket{path=\"/b\",le=\"+Inf\"} 1\nreq_seconds_sum{path=\"/b\"} 0.05\nreq_seconds_count{path=\"/b\"} 1\n").unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "req_seconds");
        assert_eq!(tag(&out[0], "path"), Some("/a"));
        assert!(tag(&out[0], "le").is_none());
        match &out[0].value {
            MetricValue::Histogram {
                count,
                sum,
                bounds,
                bucket_counts,
                temporality,
                ..
            } => {
                assert_eq!(*count, 9);
                assert_eq!(*sum, 2.5);
                assert_eq!(bounds, &[0.1, 0.5]);
                assert_eq!(bucket_counts, &[3, 4, 2]);
                assert_eq!(*temporality, Temporality::Cumulative { start_ms: 500 });
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn histogram_lines_of_label_sets_may_interleave() {
        let out = run("# TYPE h histogram\nh_bucket{a=\"1\",le=\"1\"} 1\nh_bucket{a=\"2\",le=\"1\"} 2\nh_bucket{a=\"1\",le=\"+Inf\"} 1\nh_bucket{a=\"2\",le=\"+Inf\"} 5\nh_count{a=\"1\"} 1\nh_count{a=\"2\"} 5\nh_sum{a=\"1\"} 1\nh_sum{a=\"2\"} 3\n").unwrap();
        assert_eq!(out.len(), 2);
        let MetricValue::Histogram { bucket_counts, .. } = &out[1].value else {
            panic!()
        };
        assert_eq!(bucket_counts, &[2, 3]);
    }

    #[test]
    fn summaries_keep_quantiles() {
        let out = run("# TYPE rpc summary\nrpc{quantile=\"0.5\"} 0.01\nrpc{quantile=\"0.99\"} NaN\nrpc_sum 5\nrpc_count 100\n").unwrap();
        assert_eq!(out.len(), 1);
        let MetricValue::Summary {
            count,
            sum,
            quantiles,
        } = &out[0].value
        else {
            panic!()
        };
        assert_eq!((*count, *sum), (100, 5.0));
        assert_eq!(quantiles[0], (0.5, 0.01));
        assert!(quantiles[1].1.is_nan());
    }

    #[test]
    fn escapes_blanks_and_special_values() {
        let out = run(
            "m{a=\"x\\\"y\\\\z\\nw\" , b=\"{},= \",} +Inf\nm{a=\"2\"} -Inf\nm{a=\"3\"}\t1e-3\n",
        )
        .unwrap();
        assert_eq!(tag(&out[0], "a"), Some("x\"y\\z\nw"));
        assert_eq!(tag(&out[0], "b"), Some("{},= "));
        assert_eq!(
            out[0].value,
            MetricValue::Gauge {
                value: f64::INFINITY
            }
        );
        assert_eq!(
            out[1].value,
            MetricValue::Gauge {
                value: f64::NEG_INFINITY
            }
        );
        assert_eq!(out[2].value, MetricValue::Gauge { value: 0.001 });
    }

    #[test]
    fn exporter_labels_clashing_with_ours_are_renamed() {
        let out = run("up{instance=\"theirs\"} 1\n").unwrap();
        assert_eq!(tag(&out[0], "instance"), Some("h:9100"));
        assert_eq!(tag(&out[0], "exported_instance"), Some("theirs"));
    }

    #[test]
    fn bad_input_is_an_error_with_its_line() {
        for (text, line, what) in [
            ("ok 1\nbad{a=\"1\" 2\n", 2, "expected `,`"),
            ("m{a=\"\\x\"} 1\n", 1, "invalid escape"),
            ("m 1 2 3\n", 1, "unexpected"),
            ("m abc\n", 1, "invalid value"),
            ("m infinity\n", 1, "invalid value"),
            ("m 1 1.5\n", 1, "invalid timestamp"),
            ("m{a=\"1\",a=\"2\"} 1\n", 1, "twice"),
            ("9m 1\n", 1, "invalid metric name"),
            ("m{a=\"1\n", 1, "unterminated"),
            ("m\n", 1, "missing value"),
            ("# TYPE m foo\n", 1, "unknown type"),
            ("# TYPE m gauge\n# TYPE m gauge\n", 2, "second TYPE"),
            ("m 1\n# TYPE m gauge\n", 2, "after its samples"),
            ("# TYPE h histogram\nh_bucket 1\n", 2, "without a `le`"),
            (
                "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
                2,
                "not a number",
            ),
            ("# TYPE h histogram\nh 1\n", 2, "is a histogram"),
        ] {
            let e = run(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn series_limit_stops_parsing() {
        let text: String = (0..150).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
        let e = run(&text).unwrap_err();
        assert!(e.too_many_series);
        assert_eq!(e.line, 101);
    }

    #[test]
    fn empty_body_and_comments_only() {
        assert!(run("").unwrap().is_empty());
        assert!(run("# just a comment\n\n# EOF\n").unwrap().is_empty());
    }

    #[test]
    fn many_labels_are_checked_for_duplicates_in_n_log_n() {
        // 50,000 labels on one line: a pairwise check would take billions of comparisons.
        let labels: Vec<String> = (0..50_000).map(|i| format!("l{i}=\"v\"")).collect();
        let line = format!("m{{{}}} 1\n", labels.join(","));
        let started = std::time::Instant::now();
        let extra = Tags::new();
        let opts = quick(&extra, 10);
        let mut out = Vec::new();
        parse(&line, &opts, &mut out).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let twice = format!("m{{{},l7=\"w\"}} 1\n", labels.join(","));
        let e = parse(&twice, &opts, &mut Vec::new()).unwrap_err();
        assert!(e.message.contains("label `l7` appears twice"), "{e}");
    }

    #[test]
    fn parsing_stops_at_the_deadline() {
        let text: String = (0..100_000)
            .map(|i| format!("m{{i=\"{i}\"}} 1\n"))
            .collect();
        let extra = Tags::new();
        let opts = Options {
            deadline: Some(std::time::Instant::now()),
            ..quick(&extra, 1_000_000)
        };
        let e = parse(&text, &opts, &mut Vec::new()).unwrap_err();
        assert!(e.timed_out, "{e}");
    }
}
