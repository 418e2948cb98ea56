//! Aggregation of metric points into one value per series and storage period, so what is sent
//! (and paid for) depends on the number of series, not on how often sources report.
//!
//! Per kind:
//! - delta counters are summed; cumulative counters become deltas per source series first
//!   (a lower value or a new start time is a reset: the new value is the delta). The first point
//!   of a cumulative series is its baseline and sends nothing, unless the series started while
//!   the sink was running.
//! - gauges become a statistic set (min, max, sum, count) of the readings in the period.
//! - distributions are merged into value → count, sent as `Values`/`Counts`.
//! - explicit-bucket histograms (delta, or cumulative turned into deltas bucket by bucket) are
//!   sent as `Values`/`Counts` with one representative value per bucket: the middle of the
//!   bucket, kept within the point's min/max when known; the first bucket's lower edge is the
//!   min (or 0 for positive bounds) and the overflow bucket is represented by the max (or the
//!   last bound).
//! - summaries (cumulative count and sum) become a statistic set of the period's count and sum,
//!   with min = max = the period's mean (their quantiles cannot be merged across hosts).

use std::collections::{BTreeMap, HashMap};

use crate::event::{MetricEvent, MetricValue, Tags, Temporality};

/// Largest magnitude CloudWatch accepts (2^360); NaN and infinities are refused too.
pub const MAX_MAGNITUDE: f64 = 2.348_542_582_773_833e108;

pub fn valid(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_MAGNITUDE
}

/// One CloudWatch series: where it goes and what it is called.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub namespace: String,
    pub name: String,
    /// Sorted by name.
    pub dimensions: Vec<(String, String)>,
    /// A CloudWatch `StandardUnit` name.
    pub unit: &'static str,
}

/// A period's aggregate of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    /// Sent as one `Value` (counters: the period's total).
    Sum(f64),
    /// Sent as `StatisticValues`.
    Stats {
        min: f64,
        max: f64,
        sum: f64,
        count: f64,
    },
    /// Sent as `Values`/`Counts`: value (as its bits, ordered) → count.
    Values(BTreeMap<OrdF64, f64>),
}

/// An f64 that orders by value (only finite values get here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrdF64(pub f64);
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Aggregate {
    /// Statistics of nothing yet.
    fn empty_stats() -> Self {
        Aggregate::Stats {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            count: 0.0,
        }
    }

    fn add_stat(&mut self, v: f64, n: f64) {
        match self {
            Aggregate::Stats {
                min,
                max,
                sum,
                count,
            } => {
                *min = min.min(v);
                *max = max.max(v);
                *sum += v * n;
                *count += n;
            }
            other => {
                *other = Aggregate::Stats {
                    min: v,
                    max: v,
                    sum: v * n,
                    count: n,
                }
            }
        }
    }

    fn add_values(&mut self, pairs: impl IntoIterator<Item = (f64, f64)>) {
        if !matches!(self, Aggregate::Values(_)) {
            *self = Aggregate::Values(BTreeMap::new());
        }
        let Aggregate::Values(map) = self else {
            unreachable!("set above")
        };
        for (v, n) in pairs {
            if n > 0.0 {
                *map.entry(OrdF64(v)).or_default() += n;
            }
        }
    }
}

/// Last cumulative state of a source series.
#[derive(Debug, Clone)]
enum Cumulative {
    Counter {
        start_ms: i64,
        value: f64,
    },
    Histogram {
        start_ms: i64,
        count: u64,
        buckets: Vec<u64>,
    },
    Summary {
        count: u64,
        sum: f64,
    },
}

/// What became of one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Aggregated into the period starting at this time (ms).
    Into(i64),
    /// The baseline of a cumulative series (nothing to send yet).
    Baseline,
    /// A value CloudWatch would refuse (NaN, ±Inf, beyond ±2^360): left out.
    Invalid,
}

/// Aggregates of every open period, and the cumulative state of every source series.
pub struct Aggregator {
    period_ms: i64,
    /// Cumulative series that started at or after this time are new: their first point counts.
    started_ms: i64,
    periods: BTreeMap<i64, HashMap<SeriesKey, Aggregate>>,
    /// With the timestamp of the series' last point, to forget series that stopped reporting.
    cumulative: HashMap<(SeriesKey, Tags), (Cumulative, i64)>,
}

/// Cumulative series silent for this long are forgotten (their next point is a new baseline),
/// so series churn (rotated files, departed scrape targets) does not grow memory forever.
const FORGET_AFTER_MS: i64 = 3_600_000;

impl Aggregator {
    pub fn new(period_ms: i64, started_ms: i64) -> Self {
        Self {
            period_ms,
            started_ms,
            periods: BTreeMap::new(),
            cumulative: HashMap::new(),
        }
    }

    pub fn period_of(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.period_ms) * self.period_ms
    }

    pub fn series(&self) -> usize {
        self.periods.values().map(HashMap::len).sum()
    }

    /// Adds one point of `event` to the series `key`.
    pub fn add(&mut self, key: SeriesKey, event: &MetricEvent) -> Added {
        let period = self.period_of(event.timestamp_ms);
        match &event.value {
            MetricValue::Counter { value, temporality } => {
                if !valid(*value) {
                    return Added::Invalid;
                }
                let delta = match *temporality {
                    Temporality::Delta => *value,
                    Temporality::Cumulative { start_ms } => {
                        match self.counter_delta(&key, event, start_ms, *value) {
                            Some(delta) => delta,
                            None => return Added::Baseline,
                        }
                    }
                };
                let agg = self.slot(period, key, || Aggregate::Sum(0.0));
                match agg {
                    Aggregate::Sum(s) => *s += delta,
                    other => *other = Aggregate::Sum(delta),
                }
            }
            MetricValue::Gauge { value } => {
                if !valid(*value) {
                    return Added::Invalid;
                }
                self.slot(period, key, Aggregate::empty_stats)
                    .add_stat(*value, 1.0);
            }
            MetricValue::Distribution { samples } => {
                if samples.iter().any(|s| !valid(s.value)) {
                    return Added::Invalid;
                }
                self.slot(period, key, || Aggregate::Values(BTreeMap::new()))
                    .add_values(samples.iter().map(|s| (s.value, s.count as f64)));
            }
            MetricValue::Histogram {
                temporality,
                count,
                sum,
                min,
                max,
                bounds,
                bucket_counts,
            } => {
                if !valid(*sum)
                    || bounds.iter().any(|b| !valid(*b))
                    || min.is_some_and(|v| !valid(v))
                    || max.is_some_and(|v| !valid(v))
                    || bucket_counts.len() != bounds.len() + 1
                {
                    return Added::Invalid;
                }
                let (counts, min, max) = match *temporality {
                    Temporality::Delta => (bucket_counts.clone(), *min, *max),
                    Temporality::Cumulative { start_ms } => {
                        // min and max of a cumulative histogram are not the period's.
                        match self.bucket_deltas(&key, event, start_ms, *count, bucket_counts) {
                            Some(deltas) => (deltas, None, None),
                            None => return Added::Baseline,
                        }
                    }
                };
                let pairs = bucket_values(bounds, &counts, min, max);
                self.slot(period, key, || Aggregate::Values(BTreeMap::new()))
                    .add_values(pairs);
            }
            MetricValue::Summary { count, sum, .. } => {
                if !valid(*sum) {
                    return Added::Invalid;
                }
                return self.add_summary(period, key, event, *count, *sum);
            }
        }
        Added::Into(period)
    }

    /// The increase of a cumulative counter since its last point; `None`: the first point of
    /// a series older than the agent (a baseline).
    fn counter_delta(
        &mut self,
        key: &SeriesKey,
        event: &MetricEvent,
        start_ms: i64,
        value: f64,
    ) -> Option<f64> {
        let state = self.remember(
            event.timestamp_ms,
            (key.clone(), event.tags.clone()),
            Cumulative::Counter { start_ms, value },
        );
        match state {
            Some(Cumulative::Counter {
                start_ms: s,
                value: last,
            }) if s == start_ms && value >= last => Some(value - last),
            // A reset: the counter restarted from zero since the last point.
            Some(_) => Some(value),
            None if start_ms > 0 && start_ms >= self.started_ms => Some(value),
            None => None,
        }
    }

    /// The per-bucket increase of a cumulative histogram since its last point; `None`: a
    /// baseline (as for counters).
    fn bucket_deltas(
        &mut self,
        key: &SeriesKey,
        event: &MetricEvent,
        start_ms: i64,
        count: u64,
        bucket_counts: &[u64],
    ) -> Option<Vec<u64>> {
        let prev = self.remember(
            event.timestamp_ms,
            (key.clone(), event.tags.clone()),
            Cumulative::Histogram {
                start_ms,
                count,
                buckets: bucket_counts.to_vec(),
            },
        );
        match prev {
            Some(Cumulative::Histogram {
                start_ms: s,
                count: c,
                buckets,
                ..
            }) if s == start_ms
                && count >= c
                && buckets.len() == bucket_counts.len()
                && buckets.iter().zip(bucket_counts).all(|(a, b)| b >= a) =>
            {
                Some(
                    bucket_counts
                        .iter()
                        .zip(&buckets)
                        .map(|(b, a)| b - a)
                        .collect(),
                )
            }
            Some(_) => Some(bucket_counts.to_vec()),
            None if start_ms > 0 && start_ms >= self.started_ms => Some(bucket_counts.to_vec()),
            None => None,
        }
    }

    /// A summary's count and sum are cumulative: the period gets the mean of what was added
    /// since the last point, weighted by how many were added.
    fn add_summary(
        &mut self,
        period: i64,
        key: SeriesKey,
        event: &MetricEvent,
        count: u64,
        sum: f64,
    ) -> Added {
        let prev = self.remember(
            event.timestamp_ms,
            (key.clone(), event.tags.clone()),
            Cumulative::Summary { count, sum },
        );
        let (dc, ds) = match prev {
            Some(Cumulative::Summary { count: c, sum: s }) if count >= c => (count - c, sum - s),
            Some(_) => (count, sum),
            None => return Added::Baseline,
        };
        if dc > 0 {
            let mean = ds / dc as f64;
            let agg = self.slot(period, key, Aggregate::empty_stats);
            agg.add_stat(mean, dc as f64);
            if let Aggregate::Stats { sum, .. } = agg {
                // Exact sum rather than mean × count.
                *sum += ds - mean * dc as f64;
            }
        }
        Added::Into(period)
    }

    fn remember(
        &mut self,
        ts_ms: i64,
        series: (SeriesKey, Tags),
        state: Cumulative,
    ) -> Option<Cumulative> {
        self.cumulative.insert(series, (state, ts_ms)).map(|p| p.0)
    }

    fn slot(
        &mut self,
        period: i64,
        key: SeriesKey,
        init: impl FnOnce() -> Aggregate,
    ) -> &mut Aggregate {
        self.periods
            .entry(period)
            .or_default()
            .entry(key)
            .or_insert_with(init)
    }

    /// Takes every period that started at or before `last_start`.
    pub fn take_due(&mut self, last_start: i64) -> Vec<(i64, SeriesKey, Aggregate)> {
        let forget_before = last_start.saturating_sub(FORGET_AFTER_MS);
        self.cumulative
            .retain(|_, (_, seen)| *seen >= forget_before);
        let later = self.periods.split_off(&last_start.saturating_add(1));
        let due = std::mem::replace(&mut self.periods, later);
        let mut out = Vec::new();
        for (start, series) in due {
            let mut series: Vec<_> = series.into_iter().collect();
            series.sort_by(|a, b| a.0.cmp(&b.0));
            out.extend(series.into_iter().map(|(k, a)| (start, k, a)));
        }
        out
    }

    /// Start of the oldest open period.
    pub fn oldest(&self) -> Option<i64> {
        self.periods.keys().next().copied()
    }
}

/// (representative value, count) per non-empty bucket; see the module docs.
fn bucket_values(
    bounds: &[f64],
    counts: &[u64],
    min: Option<f64>,
    max: Option<f64>,
) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let v = if bounds.is_empty() {
            match (min, max) {
                (Some(a), Some(b)) => (a + b) / 2.0,
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => 0.0,
            }
        } else if i == 0 {
            let hi = bounds[0];
            let lo = min.unwrap_or(if hi > 0.0 { 0.0 } else { hi });
            (lo.min(hi) + hi) / 2.0
        } else if i == bounds.len() {
            max.unwrap_or(bounds[i - 1]).max(bounds[i - 1])
        } else {
            (bounds[i - 1] + bounds[i]) / 2.0
        };
        let v = match (min, max) {
            (Some(a), Some(b)) if a <= b => v.clamp(a, b),
            _ => v,
        };
        out.push((v, n as f64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Sample;

    fn key() -> SeriesKey {
        SeriesKey {
            namespace: "Shop".into(),
            name: "m".into(),
            dimensions: vec![],
            unit: "None",
        }
    }

    fn cum(v: f64, start: i64, ts: i64) -> MetricEvent {
        MetricEvent::new(
            "m",
            ts,
            MetricValue::Counter {
                value: v,
                temporality: Temporality::Cumulative { start_ms: start },
            },
        )
    }

    #[test]
    fn cumulative_counters_become_deltas_with_resets() {
        let mut a = Aggregator::new(60_000, 1_000_000);
        assert_eq!(a.add(key(), &cum(10.0, 5, 60_000)), Added::Baseline);
        assert_eq!(a.add(key(), &cum(15.0, 5, 61_000)), Added::Into(60_000));
        assert_eq!(a.add(key(), &cum(18.0, 5, 125_000)), Added::Into(120_000));
        // Reset: lower value.
        a.add(key(), &cum(4.0, 5, 126_000));
        // Reset: new start time with a higher value.
        a.add(key(), &cum(30.0, 9, 127_000));
        let due = a.take_due(120_000);
        assert_eq!(due[0].2, Aggregate::Sum(5.0));
        assert_eq!(due[1].2, Aggregate::Sum(3.0 + 4.0 + 30.0));
        // A series that started after the sink counts from its first point.
        assert_eq!(
            a.add(key(), &cum(7.0, 2_000_000, 2_000_000)),
            Added::Into(1_980_000)
        );
    }

    #[test]
    fn distributions_merge_and_invalid_values_are_refused() {
        let mut a = Aggregator::new(60_000, 0);
        let d = |s: Vec<(f64, u64)>| {
            MetricEvent::new(
                "lat",
                1_000,
                MetricValue::Distribution {
                    samples: s
                        .into_iter()
                        .map(|(value, count)| Sample { value, count })
                        .collect(),
                },
            )
        };
        a.add(key(), &d(vec![(1.0, 2), (5.0, 1)]));
        a.add(key(), &d(vec![(1.0, 3)]));
        assert_eq!(a.add(key(), &d(vec![(f64::NAN, 1)])), Added::Invalid);
        let g = MetricEvent::new(
            "g",
            1_000,
            MetricValue::Gauge {
                value: f64::INFINITY,
            },
        );
        assert_eq!(a.add(key(), &g), Added::Invalid);
        let due = a.take_due(0);
        let Aggregate::Values(m) = &due[0].2 else {
            panic!()
        };
        assert_eq!(m.get(&OrdF64(1.0)), Some(&5.0));
        assert_eq!(m.get(&OrdF64(5.0)), Some(&1.0));
    }

    #[test]
    fn histogram_buckets_get_representative_values() {
        let v = bucket_values(&[10.0, 20.0], &[1, 2, 3], Some(2.0), Some(50.0));
        assert_eq!(v, vec![(6.0, 1.0), (15.0, 2.0), (50.0, 3.0)]);
        let v = bucket_values(&[10.0, 20.0], &[1, 0, 3], None, None);
        assert_eq!(v, vec![(5.0, 1.0), (20.0, 3.0)]);
    }
}
