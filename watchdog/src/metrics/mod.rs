//! Batched CloudWatch reads. Everyone who needs metric data (SLOs, the SQS and heartbeat
//! checks) first says what it wants in a `MetricsPlan`; `fetch` then reads it all with as few
//! `GetMetricData` calls as CloudWatch's limits allow, and answers window sums from memory.
//!
//! Every series is read at one of a few fixed resolutions ("tiers"). A tier covers a look-back
//! range at a period CloudWatch still keeps for data that old (1-minute data for 15 days,
//! 5-minute for 63 days, hourly for 455 days), so one read of a series serves every window
//! that fits in its tier (5m, 30m, 1h and 6h all come from the same 6-hour, 1-minute series).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};

use crate::spec::{MetricRef, Span};

/// GetMetricData accepts at most 500 queries and returns at most 100,800 datapoints per call.
const MAX_QUERIES_PER_CALL: usize = 500;
const MAX_DATAPOINTS_PER_CALL: u64 = 100_800;

/// (look-back range, period), both in seconds, finest first.
const TIERS: [(u64, u64); 4] = [
    (6 * 3600, 60),
    (3 * 86_400, 300),
    (35 * 86_400, 3600),
    (455 * 86_400, 86_400),
];

/// The tier that serves a window: the finest one whose range covers it.
fn tier_for(window: Span) -> usize {
    let secs = window.as_secs();
    TIERS
        .iter()
        .position(|(range, _)| secs <= *range)
        .unwrap_or(TIERS.len() - 1)
}

/// How datapoints of one series combine, both inside CloudWatch and across buckets here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stat {
    Sum,
    Maximum,
}

impl Stat {
    fn as_str(self) -> &'static str {
        match self {
            Stat::Sum => "Sum",
            Stat::Maximum => "Maximum",
        }
    }
}

type SeriesKey = (MetricRef, Stat);

/// What to read.
#[derive(Debug, Default)]
pub struct MetricsPlan {
    wanted: BTreeSet<(usize, SeriesKey)>,
}

impl MetricsPlan {
    /// Asks for `stat` of `metric` over the last `window`.
    pub fn want(&mut self, metric: &MetricRef, stat: Stat, window: Span) {
        let tier = tier_for(window);
        self.wanted.insert((tier, (metric.clone(), stat)));
        // Coarse tiers end up to 5 minutes back; the finest tier fills in those last minutes.
        if tier > 0 {
            self.wanted.insert((0, (metric.clone(), stat)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }
}

/// Datapoints of one tier, or why they could not be read.
#[derive(Debug)]
struct TierData {
    end: u64,
    series: Result<BTreeMap<SeriesKey, Vec<(u64, f64)>>, String>,
}

/// Everything read, and how many calls it took.
#[derive(Debug, Default)]
pub struct MetricData {
    tiers: BTreeMap<usize, TierData>,
    pub calls: usize,
    pub queries: usize,
}

/// A metric over one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowValue {
    /// The combined value, `None` when CloudWatch had no datapoint in the window.
    pub value: Option<f64>,
    /// Start of the newest bucket that had data (seconds since the epoch).
    pub newest: Option<u64>,
}

impl MetricData {
    /// `stat` of `metric` over the last `window`; an error when the read failed or the
    /// series was never planned.
    pub fn window(
        &self,
        metric: &MetricRef,
        stat: Stat,
        window: Span,
    ) -> Result<WindowValue, String> {
        let tier = tier_for(window);
        let data = self
            .tiers
            .get(&tier)
            .ok_or_else(|| format!("{}: not read (missing from the plan)", describe(metric)))?;
        let series = data.series.as_ref().map_err(|e| e.clone())?;
        let points = series
            .get(&(metric.clone(), stat))
            .ok_or_else(|| format!("{}: not read (missing from the plan)", describe(metric)))?;
        let from = data.end.saturating_sub(window.as_secs());
        let mut selected: Vec<(u64, f64)> = points
            .iter()
            .copied()
            .filter(|(ts, _)| *ts >= from && *ts < data.end)
            .collect();
        // The minutes after a coarse tier's end, from the 1-minute tier (when it was read).
        if tier > 0
            && let Some(TierData {
                end: fine_end,
                series: Ok(fine),
            }) = self.tiers.get(&0)
            && let Some(fine_points) = fine.get(&(metric.clone(), stat))
        {
            selected.extend(
                fine_points
                    .iter()
                    .copied()
                    .filter(|(ts, _)| *ts >= data.end && *ts < *fine_end),
            );
        }
        let mut value: Option<f64> = None;
        let mut newest = None;
        for (ts, v) in selected {
            value = Some(match (value, stat) {
                (None, _) => v,
                (Some(acc), Stat::Sum) => acc + v,
                (Some(acc), Stat::Maximum) => acc.max(v),
            });
            newest = newest.max(Some(ts));
        }
        Ok(WindowValue { value, newest })
    }

    /// Shorthand: the sum over a window, 0 when there was no data.
    pub fn sum(&self, metric: &MetricRef, window: Span) -> Result<WindowValue, String> {
        self.window(metric, Stat::Sum, window)
    }
}

/// `Namespace/metric{k=v,...}` for messages.
pub fn describe(metric: &MetricRef) -> String {
    let dims: Vec<String> = metric
        .dimensions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{}/{}{{{}}}",
        metric.namespace,
        metric.metric,
        dims.join(",")
    )
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads everything in `plan`: per tier, chunks of queries sized to CloudWatch's limits.
/// A failed call marks its tier as failed; the rest still answer.
pub async fn fetch(client: &Client, plan: &MetricsPlan, now: u64) -> MetricData {
    let mut data = MetricData::default();
    let mut by_tier: BTreeMap<usize, Vec<&SeriesKey>> = BTreeMap::new();
    for (tier, key) in &plan.wanted {
        by_tier.entry(*tier).or_default().push(key);
    }
    for (tier, keys) in by_tier {
        let (range, period) = TIERS[tier];
        // End on a boundary CloudWatch does not round (it rounds starts older than 15 days to
        // 5 minutes, older than 63 days to the hour); the minute still filling is left out.
        // Coarse tiers therefore lag by at most 5 minutes (an hour beyond 35 days).
        let align = match period {
            p if p <= 300 => p,
            p if p <= 3600 => 300,
            _ => 3600,
        };
        let end = now / align * align;
        let start = end - range;
        let per_call =
            MAX_QUERIES_PER_CALL.min((MAX_DATAPOINTS_PER_CALL / (range / period)) as usize);
        let mut series = BTreeMap::new();
        let mut failure = None;
        for chunk in keys.chunks(per_call.max(1)) {
            data.queries += chunk.len();
            match read_chunk(client, chunk, start, end, period, &mut data.calls).await {
                Ok(points) => series.extend(points),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let series = match failure {
            Some(e) => Err(format!("GetMetricData failed: {e}")),
            None => Ok(series),
        };
        data.tiers.insert(tier, TierData { end, series });
    }
    data
}

async fn read_chunk(
    client: &Client,
    keys: &[&SeriesKey],
    start: u64,
    end: u64,
    period: u64,
    calls: &mut usize,
) -> Result<Vec<(SeriesKey, Vec<(u64, f64)>)>, String> {
    let queries: Vec<MetricDataQuery> = keys
        .iter()
        .enumerate()
        .map(|(i, (metric, stat))| {
            let dimensions = metric
                .dimensions
                .iter()
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect::<Vec<_>>();
            MetricDataQuery::builder()
                .id(format!("q{i}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(&metric.namespace)
                                .metric_name(&metric.metric)
                                .set_dimensions(Some(dimensions))
                                .build(),
                        )
                        .period(period as i32)
                        .stat(stat.as_str())
                        .build(),
                )
                .return_data(true)
                .build()
        })
        .collect();
    let mut points: Vec<Vec<(u64, f64)>> = vec![Vec::new(); keys.len()];
    let mut next_token = None;
    loop {
        *calls += 1;
        let out = client
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from_secs(start as i64))
            .end_time(DateTime::from_secs(end as i64))
            .scan_by(ScanBy::TimestampAscending)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| aws_error_text(&e))?;
        for result in out.metric_data_results() {
            let Some(index) = result
                .id()
                .and_then(|id| id.strip_prefix('q'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|i| *i < keys.len())
            else {
                continue;
            };
            for (ts, value) in result.timestamps().iter().zip(result.values()) {
                points[index].push((ts.secs().max(0) as u64, *value));
            }
        }
        next_token = out.next_token().map(str::to_string);
        if next_token.is_none() {
            break;
        }
    }
    Ok(keys.iter().map(|k| (*k).clone()).zip(points).collect())
}

/// The most useful one-line text of an SDK error (service code and message when there is one).
pub fn aws_error_text<E, R>(error: &aws_sdk_cloudwatch::error::SdkError<E, R>) -> String
where
    E: aws_sdk_cloudwatch::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_cloudwatch::error::SdkError;
    match error {
        SdkError::ServiceError(e) => {
            let err = e.err();
            match (err.code(), err.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_string(),
                _ => format!("{err}"),
            }
        }
        other => {
            // Walk the source chain: the top-level text ("dispatch failure") says little.
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_map_to_the_finest_tier_that_covers_them() {
        assert_eq!(tier_for(Span::from_secs(300)), 0);
        assert_eq!(tier_for(Span::from_secs(6 * 3600)), 0);
        assert_eq!(tier_for(Span::from_secs(3 * 86_400)), 1);
        assert_eq!(tier_for(Span::from_secs(30 * 86_400)), 2);
        assert_eq!(tier_for(Span::from_secs(90 * 86_400)), 3);
        // Every tier respects CloudWatch's retention and the per-call datapoint limit.
        for (range, period) in TIERS {
            let oldest_day = range / 86_400;
            let finest_kept = if oldest_day <= 15 {
                60
            } else if oldest_day <= 63 {
                300
            } else {
                3600
            };
            assert!(
                period >= finest_kept && period % finest_kept == 0,
                "{range} {period}"
            );
            assert!(range / period <= MAX_DATAPOINTS_PER_CALL);
        }
    }

    fn metric(name: &str) -> MetricRef {
        MetricRef {
            namespace: "N".into(),
            metric: name.into(),
            dimensions: Default::default(),
        }
    }

    #[test]
    fn coarse_windows_are_completed_by_the_finest_tier() {
        let fine_end = 1_000_020 / 60 * 60;
        let coarse_end = fine_end / 300 * 300;
        assert!(fine_end > coarse_end);
        let key = (metric("m"), Stat::Sum);
        let data = MetricData {
            tiers: BTreeMap::from([
                // 5-minute buckets over 3 days, ending on a 5-minute boundary.
                (
                    1,
                    TierData {
                        end: coarse_end,
                        series: Ok(BTreeMap::from([(
                            key.clone(),
                            vec![(coarse_end - 300, 10.0)],
                        )])),
                    },
                ),
                // The last minutes, after that boundary, plus one already counted above.
                (
                    0,
                    TierData {
                        end: fine_end,
                        series: Ok(BTreeMap::from([(
                            key,
                            vec![(coarse_end - 60, 2.0), (coarse_end, 1.0)],
                        )])),
                    },
                ),
            ]),
            calls: 2,
            queries: 2,
        };
        assert_eq!(
            data.sum(&metric("m"), Span::from_secs(86_400))
                .unwrap()
                .value,
            Some(11.0)
        );
    }

    #[test]
    fn window_sums_only_the_buckets_inside_it() {
        let end = 1_000_000 / 60 * 60;
        let series = BTreeMap::from([(
            (metric("m"), Stat::Sum),
            vec![
                (end - 3600, 5.0),
                (end - 600, 2.0),
                (end - 300, 3.0),
                (end - 60, 4.0),
            ],
        )]);
        let data = MetricData {
            tiers: BTreeMap::from([(
                0,
                TierData {
                    end,
                    series: Ok(series),
                },
            )]),
            calls: 1,
            queries: 1,
        };
        let five = data.sum(&metric("m"), Span::from_secs(300)).unwrap();
        assert_eq!(
            five,
            WindowValue {
                value: Some(7.0),
                newest: Some(end - 60)
            }
        );
        assert_eq!(
            data.sum(&metric("m"), Span::from_secs(3600)).unwrap().value,
            Some(14.0)
        );
        assert!(
            data.window(&metric("m"), Stat::Maximum, Span::from_secs(3600))
                .is_err()
        );
        assert!(
            data.sum(&metric("other"), Span::from_secs(300))
                .unwrap_err()
                .contains("not read")
        );
        assert!(
            data.sum(&metric("m"), Span::from_secs(86_400))
                .unwrap_err()
                .contains("not read")
        );
    }
}
