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

use crate::error::CallError;
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

/// The statistic read per bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stat {
    Sum,
    Maximum,
    SampleCount,
    /// CloudWatch's percentile rank `PR(:t)`: the percentage of samples at or below `t`
    /// (given here in milliseconds, asked in the metric's unit, seconds for ALB latency).
    PercentileRank {
        threshold_ms: u32,
    },
}

impl Stat {
    pub fn name(self) -> String {
        match self {
            Stat::Sum => "Sum".into(),
            Stat::Maximum => "Maximum".into(),
            Stat::SampleCount => "SampleCount".into(),
            Stat::PercentileRank { threshold_ms } => {
                format!("PR(:{})", f64::from(threshold_ms) / 1000.0)
            }
        }
    }

    /// Extended statistics are read in calls of their own: a backend that cannot compute
    /// them (moto answers 500) then fails only those series, not the whole batch.
    fn is_extended(self) -> bool {
        matches!(self, Stat::PercentileRank { .. })
    }
}

pub(crate) type SeriesKey = (MetricRef, Stat);

/// One series given by hand in unit tests: metric, statistic, (bucket start, value) pairs.
#[cfg(test)]
pub type TestSeries = (MetricRef, Stat, Vec<(u64, f64)>);

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

/// Datapoints of one tier: per series, its (bucket start, value) pairs or why the read failed.
#[derive(Debug)]
struct TierData {
    end: u64,
    series: BTreeMap<SeriesKey, Result<Vec<(u64, f64)>, CallError>>,
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
    /// The buckets of `stat` of `metric` inside the last `window`, oldest first; an error when
    /// the read failed or the series was never planned.
    pub fn points(
        &self,
        metric: &MetricRef,
        stat: Stat,
        window: Span,
    ) -> Result<Vec<(u64, f64)>, CallError> {
        let key = (metric.clone(), stat);
        let tier = tier_for(window);
        let not_read = || {
            CallError::bad_data(format!(
                "{}: not read (missing from the plan)",
                describe(metric)
            ))
        };
        let data = self.tiers.get(&tier).ok_or_else(not_read)?;
        let points = data
            .series
            .get(&key)
            .ok_or_else(not_read)?
            .as_ref()
            .map_err(Clone::clone)?;
        let from = data.end.saturating_sub(window.as_secs());
        let mut selected: Vec<(u64, f64)> = points
            .iter()
            .copied()
            .filter(|(ts, _)| *ts >= from && *ts < data.end)
            .collect();
        // The minutes after a coarse tier's end, from the 1-minute tier (when it was read).
        if tier > 0
            && let Some(fine) = self.tiers.get(&0)
            && let Some(Ok(fine_points)) = fine.series.get(&key)
        {
            selected.extend(
                fine_points
                    .iter()
                    .copied()
                    .filter(|(ts, _)| *ts >= data.end && *ts < fine.end),
            );
        }
        Ok(selected)
    }

    /// `stat` of `metric` combined over the last `window`.
    pub fn window(
        &self,
        metric: &MetricRef,
        stat: Stat,
        window: Span,
    ) -> Result<WindowValue, CallError> {
        let mut value: Option<f64> = None;
        let mut newest = None;
        for (ts, v) in self.points(metric, stat, window)? {
            value = Some(match (value, stat) {
                (None, _) => v,
                (Some(acc), Stat::Sum | Stat::SampleCount) => acc + v,
                (Some(acc), Stat::Maximum) => acc.max(v),
                // Ranks of different buckets only combine weighted by their sample counts.
                (Some(_), Stat::PercentileRank { .. }) => {
                    return Err(CallError::bad_data(
                        "percentile ranks do not add up across buckets",
                    ));
                }
            });
            newest = newest.max(Some(ts));
        }
        Ok(WindowValue { value, newest })
    }

    /// Shorthand: the sum over a window.
    pub fn sum(&self, metric: &MetricRef, window: Span) -> Result<WindowValue, CallError> {
        self.window(metric, Stat::Sum, window)
    }

    /// Data assembled by hand, for unit tests elsewhere: (tier, tier end, series).
    #[cfg(test)]
    pub fn from_tiers(tiers: Vec<(usize, u64, Vec<TestSeries>)>) -> Self {
        MetricData {
            tiers: tiers
                .into_iter()
                .map(|(tier, end, series)| {
                    let series = series
                        .into_iter()
                        .map(|(m, s, p)| ((m, s), Ok(p)))
                        .collect();
                    (tier, TierData { end, series })
                })
                .collect(),
            calls: 0,
            queries: 0,
        }
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
    let mut by_tier: BTreeMap<usize, Vec<&SeriesKey>> = BTreeMap::new();
    for (tier, key) in &plan.wanted {
        by_tier.entry(*tier).or_default().push(key);
    }
    // Tiers are independent reads: issue them concurrently.
    let reads = by_tier.into_iter().map(|(tier, keys)| async move {
        let (range, period) = TIERS[tier];
        // End on a boundary CloudWatch does not round (it rounds starts older than 15 days to
        // 5 minutes, older than 63 days to the hour); the minute still filling is left out.
        let align = match period {
            p if p <= 300 => p,
            p if p <= 3600 => 300,
            _ => 3600,
        };
        let end = now / align * align;
        let start = end - range;
        let per_call =
            MAX_QUERIES_PER_CALL.min((MAX_DATAPOINTS_PER_CALL / (range / period)) as usize);
        let mut calls = 0;
        let mut series = BTreeMap::new();
        let (extended, plain): (Vec<&SeriesKey>, Vec<&SeriesKey>) =
            keys.iter().partition(|(_, stat)| stat.is_extended());
        for chunk in plain
            .chunks(per_call.max(1))
            .chain(extended.chunks(per_call.max(1)))
        {
            match read_chunk(client, chunk, start, end, period, &mut calls).await {
                Ok(points) => series.extend(points.into_iter().map(|(k, p)| (k, Ok(p)))),
                // This chunk's series are unknown; the other chunks still answer.
                Err(e) => series.extend(
                    chunk
                        .iter()
                        .map(|k| ((*k).clone(), Err(e.clone().context("GetMetricData failed")))),
                ),
            }
        }
        (tier, TierData { end, series }, calls, keys.len())
    });
    let mut data = MetricData::default();
    for (tier, tier_data, calls, queries) in futures_util::future::join_all(reads).await {
        data.calls += calls;
        data.queries += queries;
        data.tiers.insert(tier, tier_data);
    }
    data
}

/// One GetMetricData read of `keys` (at most 500), every page of it; `calls` counts the
/// requests. Also the report's reader.
pub(crate) async fn read_chunk(
    client: &Client,
    keys: &[&SeriesKey],
    start: u64,
    end: u64,
    period: u64,
    calls: &mut usize,
) -> Result<Vec<(SeriesKey, Vec<(u64, f64)>)>, CallError> {
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
                        .stat(stat.name())
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
            .map_err(CallError::from_sdk)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

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
        let data = MetricData::from_tiers(vec![
            // 5-minute buckets over 3 days, ending on a 5-minute boundary.
            (
                1,
                coarse_end,
                vec![(metric("m"), Stat::Sum, vec![(coarse_end - 300, 10.0)])],
            ),
            // The last minutes, after that boundary, plus one already counted above.
            (
                0,
                fine_end,
                vec![(
                    metric("m"),
                    Stat::Sum,
                    vec![(coarse_end - 60, 2.0), (coarse_end, 1.0)],
                )],
            ),
        ]);
        let day = data.sum(&metric("m"), Span::from_secs(86_400)).unwrap();
        assert_eq!(day.value, Some(11.0));
    }

    #[test]
    fn percentile_ranks_are_not_summed() {
        let end = 1_000_000 / 60 * 60;
        let rank = Stat::PercentileRank { threshold_ms: 300 };
        assert_eq!(rank.name(), "PR(:0.3)");
        assert!(rank.is_extended() && !Stat::SampleCount.is_extended());
        let data = MetricData::from_tiers(vec![(
            0,
            end,
            vec![(metric("m"), rank, vec![(end - 120, 90.0), (end - 60, 99.0)])],
        )]);
        assert!(
            data.window(&metric("m"), rank, Span::from_secs(300))
                .unwrap_err()
                .to_string()
                .contains("do not add up")
        );
        assert_eq!(
            data.window(&metric("m"), rank, Span::from_secs(300))
                .unwrap_err()
                .kind,
            ErrorKind::BadData
        );
        assert_eq!(
            data.points(&metric("m"), rank, Span::from_secs(60))
                .unwrap(),
            [(end - 60, 99.0)]
        );
    }

    #[test]
    fn window_sums_only_the_buckets_inside_it() {
        let end = 1_000_000 / 60 * 60;
        let points = vec![
            (end - 3600, 5.0),
            (end - 600, 2.0),
            (end - 300, 3.0),
            (end - 60, 4.0),
        ];
        let data = MetricData::from_tiers(vec![(0, end, vec![(metric("m"), Stat::Sum, points)])]);
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
                .to_string()
                .contains("not read")
        );
        assert!(
            data.sum(&metric("m"), Span::from_secs(86_400))
                .unwrap_err()
                .to_string()
                .contains("not read")
        );
    }
}
