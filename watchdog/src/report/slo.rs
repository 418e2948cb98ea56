//! `vigil-watchdog report`: every SLO now and over its period (or a calendar month) — SLI,
//! error budget left, burn per alert window, and the incidents of the period from the alert
//! state — as text, as Markdown for a Slack post, or as one self-contained HTML page with inline
//! SVG (a budget burn-down per SLO and an incidents timeline).
//!
//! The SLIs are the same CloudWatch series the dashboards draw (`render::model`), summed bucket
//! by bucket in Rust with the watchdog's own arithmetic (`slo::burn`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use clap::ValueEnum;

use crate::aws::Aws;
use crate::error::CallError;
use crate::metrics::Stat;
use crate::render::model::{self, CwSli, SloModel};
use crate::slo::burn::{self, Counts};
use crate::spec::{MetricRef, Severity, Spec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    /// Markdown as Slack shows it (bold with `*`, bullets, no tables).
    Markdown,
    /// One self-contained page: inline CSS and SVG, no scripts, nothing fetched.
    Html,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    #[arg(long, default_value = "alerts/", env = "VIGIL_SPEC")]
    pub spec: PathBuf,
    /// A calendar month (UTC), e.g. 2026-11: that month's compliance instead of each SLO's
    /// period ending now.
    #[arg(long, value_parser = Month::parse)]
    pub month: Option<Month>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// DynamoDB table for alert state (overrides the spec's `settings.state.table`).
    #[arg(long, env = "VIGIL_STATE_TABLE")]
    pub state_table: Option<String>,
}

/// A calendar month in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Month {
    pub year: i16,
    pub month: i8,
}

impl Month {
    pub fn parse(text: &str) -> Result<Month, String> {
        let bad = || format!("`{text}` is not a month like 2026-11");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        let year: i16 = y.parse().map_err(|_| bad())?;
        let month: i8 = m.parse().map_err(|_| bad())?;
        if y.len() != 4 || !(1..=12).contains(&month) || year < 1970 {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    /// [first second, first second of the next month).
    pub fn range(self) -> (u64, u64) {
        let start = |y: i16, m: i8| -> u64 {
            jiff::civil::date(y, m, 1)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp().as_second().max(0) as u64)
                .unwrap_or(0)
        };
        let (ny, nm) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        (start(self.year, self.month), start(ny, nm))
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// One alert's burn over its two windows ending now.
#[derive(Clone, Debug)]
pub struct WindowBurn {
    pub severity: Severity,
    pub long: crate::spec::Span,
    pub short: crate::spec::Span,
    pub factor: f64,
    pub long_rate: Option<f64>,
    pub short_rate: Option<f64>,
    pub verdict: burn::Verdict,
}

#[derive(Clone, Debug)]
pub struct Incident {
    pub fingerprint: String,
    pub severity: Severity,
    pub opened: u64,
    pub resolved: Option<u64>,
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compliance {
    Met,
    Breached,
    /// Not one event in the range: unknown, never "met".
    NoData,
}

#[derive(Clone, Debug)]
pub struct SloReport {
    pub service: String,
    pub name: String,
    pub objective: f64,
    pub period: String,
    pub start: u64,
    pub end: u64,
    pub counts: Counts,
    /// (bucket start, share of the budget left after it), only buckets with events so far.
    pub burndown: Vec<(u64, f64)>,
    pub windows: Vec<WindowBurn>,
    pub incidents: Vec<Incident>,
    /// Why the SLO could not be read, if it could not.
    pub error: Option<String>,
    /// The objective changed inside the range: measured from this moment on.
    pub objective_since: Option<u64>,
}

impl SloReport {
    pub fn budget_left(&self) -> Option<f64> {
        (self.counts.total > 0.0).then(|| burn::budget_remaining(self.counts, self.objective))
    }

    pub fn compliance(&self) -> Compliance {
        match self.budget_left() {
            None => Compliance::NoData,
            Some(left) if left >= 0.0 => Compliance::Met,
            Some(_) => Compliance::Breached,
        }
    }
}

pub struct Report {
    pub generated_at: u64,
    pub month: Option<Month>,
    pub slos: Vec<SloReport>,
    /// Every incident of the report's range (SLOs and checks), for the timeline.
    pub incidents: Vec<Incident>,
    pub timeline: (u64, u64),
    pub state_note: Option<String>,
}

/// The CloudWatch statistics one SLI needs, in a fixed order.
fn queries(cw: &CwSli) -> Vec<(MetricRef, Stat)> {
    match cw {
        CwSli::Bad { bad, total } => vec![(total.clone(), Stat::Sum), (bad.clone(), Stat::Sum)],
        CwSli::Good { good, total } => vec![(total.clone(), Stat::Sum), (good.clone(), Stat::Sum)],
        CwSli::RankedBelow {
            latency,
            threshold_ms,
        } => vec![
            (latency.clone(), Stat::SampleCount),
            (
                latency.clone(),
                Stat::PercentileRank {
                    threshold_ms: *threshold_ms,
                },
            ),
        ],
    }
}

/// Good/bad per bucket from the series `queries` asked for.
fn bucket_counts(cw: &CwSli, series: &[Vec<(u64, f64)>]) -> BTreeMap<u64, Counts> {
    let mut out = BTreeMap::new();
    let (total, other) = (&series[0], &series[1]);
    let other_at: BTreeMap<u64, f64> = other.iter().copied().collect();
    for &(ts, t) in total {
        let counts = match cw {
            CwSli::Bad { .. } => Counts::from_bad(other_at.get(&ts).copied().unwrap_or(0.0), t),
            CwSli::Good { .. } => Counts::from_good(other_at.get(&ts).copied().unwrap_or(0.0), t),
            CwSli::RankedBelow { .. } => burn::ranked_counts(&[(ts, t)], other),
        };
        out.insert(ts, counts);
    }
    out
}

fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        total: a.total + b.total,
        bad: a.bad + b.bad,
    }
}

async fn read_series(
    cw: &aws_sdk_cloudwatch::Client,
    wanted: &[(MetricRef, Stat)],
    start: u64,
    end: u64,
    period: u64,
) -> Result<Vec<Vec<(u64, f64)>>, CallError> {
    let keys: Vec<&(MetricRef, Stat)> = wanted.iter().collect();
    let mut calls = 0;
    let mut out = Vec::with_capacity(wanted.len());
    // The evaluation's own reader, 500 queries (GetMetricData's limit) at a time.
    for chunk in keys.chunks(500) {
        let read = crate::metrics::read_chunk(cw, chunk, start, end, period, &mut calls)
            .await
            .map_err(|e| e.context("GetMetricData"))?;
        out.extend(read.into_iter().map(|(_, mut series)| {
            series.sort_by_key(|(ts, _)| *ts);
            series.dedup_by_key(|(ts, _)| *ts);
            series
        }));
    }
    Ok(out)
}

/// The range an SLO is judged over: its period ending now, or the month (up to now).
fn range_for(slo: &SloModel, month: Option<Month>, now: u64) -> (u64, u64) {
    match month {
        Some(m) => {
            let (start, end) = m.range();
            (start, end.min(now))
        }
        None => (now.saturating_sub(slo.slo.period.as_secs()), now),
    }
}

async fn slo_report(
    aws: &Aws,
    slo: &SloModel<'_>,
    month: Option<Month>,
    now: u64,
    incidents: &[Incident],
) -> SloReport {
    let (mut start, end) = range_for(slo, month, now);
    // Hourly buckets up to 60 days (CloudWatch keeps them 455 days), daily beyond.
    let bucket = if end - start <= 60 * 86_400 {
        3600
    } else {
        86_400
    };
    // Events before the objective changed were promised another one: the budget of the
    // current objective is measured from the first whole bucket after the change.
    let objective_since = slo
        .slo
        .objective_since_secs()
        .filter(|s| *s > start && *s < end)
        .map(|s| s.div_ceil(bucket) * bucket);
    if let Some(since) = objective_since {
        start = since;
    }
    let wanted = queries(&slo.cw);
    let fingerprint = crate::finding::Finding::fingerprint_of("slo", slo.service, &slo.slo.name);
    let mut report = SloReport {
        service: slo.service.to_string(),
        name: slo.slo.name.clone(),
        objective: slo.slo.objective,
        period: match month {
            Some(m) => m.to_string(),
            None => slo.slo.period.to_string(),
        },
        start,
        end,
        counts: Counts::default(),
        burndown: Vec::new(),
        windows: Vec::new(),
        incidents: incidents
            .iter()
            .filter(|i| {
                i.fingerprint == fingerprint
                    || i.fingerprint.starts_with(&format!("{fingerprint}/"))
            })
            .cloned()
            .collect(),
        error: None,
        objective_since,
    };
    match read_series(
        &aws.cloudwatch,
        &wanted,
        start / bucket * bucket,
        end.div_ceil(bucket) * bucket,
        bucket,
    )
    .await
    {
        Ok(series) => {
            let mut sum = Counts::default();
            for (ts, c) in bucket_counts(&slo.cw, &series) {
                let first = if objective_since.is_some() {
                    start
                } else {
                    start / bucket * bucket
                };
                if ts < first || ts >= end {
                    continue;
                }
                sum = add(sum, c);
                if sum.total > 0.0 {
                    report
                        .burndown
                        .push((ts, burn::budget_remaining(sum, slo.slo.objective)));
                }
            }
            report.counts = sum;
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    // Burn now: only when the range ends now (a past month has no "now").
    if month.is_none() || end == now {
        match burn_now(aws, slo, &wanted, now).await {
            Ok(windows) => report.windows = windows,
            Err(e) => {
                report.error.get_or_insert(e.to_string());
            }
        }
    }
    report
}

/// Each alert's two windows as they burn now.
async fn burn_now(
    aws: &Aws,
    slo: &SloModel<'_>,
    wanted: &[(MetricRef, Stat)],
    now: u64,
) -> Result<Vec<WindowBurn>, CallError> {
    let longest = slo
        .alerts
        .iter()
        .map(|a| a.long.as_secs())
        .max()
        .unwrap_or(0);
    let step = if longest <= 15 * 86_400 { 60 } else { 3600 };
    let to = now / step * step;
    let series = read_series(
        &aws.cloudwatch,
        wanted,
        to.saturating_sub(longest),
        to,
        step,
    )
    .await?;
    let buckets = bucket_counts(&slo.cw, &series);
    let window = |secs: u64| {
        buckets
            .range(to.saturating_sub(secs)..)
            .fold(Counts::default(), |acc, (_, c)| add(acc, *c))
    };
    let objective = slo.slo.objective;
    Ok(slo
        .alerts
        .iter()
        .map(|a| {
            let (long, short) = (window(a.long.as_secs()), window(a.short.as_secs()));
            WindowBurn {
                severity: a.severity,
                long: a.long,
                short: a.short,
                factor: a.factor,
                long_rate: long.burn_rate(objective),
                short_rate: short.burn_rate(objective),
                verdict: burn::judge(long, short, objective, a.factor, slo.min_events),
            }
        })
        .collect())
}

/// Every incident in the alert state overlapping [start, end). The state keeps one item per
/// fingerprint: the latest incident of each (earlier ones of the same fingerprint are gone).
async fn incidents(
    aws: &Aws,
    table: &str,
    start: u64,
    end: u64,
) -> Result<Vec<Incident>, CallError> {
    let mut out = Vec::new();
    let mut key = None;
    loop {
        let page = aws
            .dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(key)
            .send()
            .await
            .map_err(|e| CallError::from_sdk(e).context(format!("scanning {table}")))?;
        for item in page.items() {
            let s = |k: &str| {
                item.get(k)
                    .and_then(|v: &AttributeValue| v.as_s().ok())
                    .cloned()
            };
            let n = |k: &str| {
                item.get(k)
                    .and_then(|v: &AttributeValue| v.as_n().ok())
                    .and_then(|n| n.parse::<u64>().ok())
            };
            let (Some(fingerprint), Some(opened)) = (s("fingerprint"), n("first_seen")) else {
                continue;
            };
            let resolved = if s("status").as_deref() == Some("resolved") {
                n("resolved_at")
            } else {
                None
            };
            if opened >= end || resolved.is_some_and(|r| r < start) {
                continue;
            }
            out.push(Incident {
                fingerprint,
                severity: if s("severity").as_deref() == Some("page") {
                    Severity::Page
                } else {
                    Severity::Ticket
                },
                opened,
                resolved,
                summary: s("summary").unwrap_or_default(),
            });
        }
        key = page.last_evaluated_key().cloned();
        if key.is_none() {
            break;
        }
    }
    out.sort_by(|a, b| (a.opened, &a.fingerprint).cmp(&(b.opened, &b.fingerprint)));
    Ok(out)
}

pub async fn build(
    spec: &Spec,
    aws: &Aws,
    month: Option<Month>,
    table: Option<&str>,
    now: u64,
) -> Result<Report, String> {
    let slos = model::slos(spec).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if let Some(m) = month
        && m.range().0 >= now
    {
        return Err(format!("month {m} has not started yet"));
    }
    let timeline = match month {
        Some(m) => {
            let (s, e) = m.range();
            (s, e.min(now))
        }
        None => (
            now.saturating_sub(
                slos.iter()
                    .map(|s| s.slo.period.as_secs())
                    .max()
                    .unwrap_or(30 * 86_400),
            ),
            now,
        ),
    };
    let table = table
        .map(str::to_string)
        .or_else(|| spec.settings.state.as_ref().map(|s| s.table.clone()));
    let (all_incidents, state_note) = match &table {
        None => (
            Vec::new(),
            Some("no alert state configured (settings.state.table): incidents unknown".to_string()),
        ),
        Some(t) => match incidents(aws, t, timeline.0, timeline.1).await {
            Ok(list) => (list, None),
            Err(e) => (Vec::new(), Some(format!("incidents unknown: {e}"))),
        },
    };
    let reads = slos
        .iter()
        .map(|slo| slo_report(aws, slo, month, now, &all_incidents));
    let slos = futures_util::future::join_all(reads).await;
    Ok(Report {
        generated_at: now,
        month,
        slos,
        incidents: all_incidents,
        timeline,
        state_note,
    })
}

pub fn when(ts: u64) -> String {
    jiff::Timestamp::from_second(ts as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ts.to_string())
}

pub fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}
