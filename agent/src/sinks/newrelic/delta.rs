//! Cumulative → delta for New Relic, which stores counters and histograms as deltas.
//!
//! Per series (metric name + tags + resource attributes) the last cumulative point is kept; each
//! new point is sent as the difference since it, over `[previous time, this time]`. A reset (the
//! value went down, buckets changed, or the series' start time moved) starts over: the new total
//! is itself the delta since the new start. The first point of a series is only sent when its
//! start lies after this agent started (then all of it is new); otherwise it only sets the
//! baseline, so a long-running counter does not arrive as one huge spike. Delta points pass
//! through and get their window start from the series' previous point.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::event::{MetricEvent, MetricValue, Temporality};

/// Series not seen for this long are forgotten (their next point is a new baseline).
const STALE_MS: i64 = 60 * 60 * 1000;
/// Bound on tracked series; past it, stale series are dropped first, then everything.
const MAX_SERIES: usize = 200_000;

enum Last {
    Counter {
        start_ms: i64,
        value: f64,
    },
    Histogram {
        start_ms: i64,
        count: u64,
        sum: f64,
        bucket_counts: Vec<u64>,
        bounds: Vec<f64>,
    },
    /// Delta and gauge series: only the time, to give the next point its window start.
    Seen,
}

struct Entry {
    time_ms: i64,
    last: Last,
}

pub struct DeltaConverter {
    series: HashMap<u64, Entry>,
    agent_start_ms: i64,
}

/// What to send for one point. Returned and matched at once, never stored, so its size does
/// not matter.
#[allow(clippy::large_enum_variant)]
pub enum Converted {
    /// The point (now delta where it was cumulative) and its window start.
    Send(MetricEvent, Option<i64>),
    /// The first cumulative point of a series that predates the agent: kept as the baseline.
    Baseline,
}

fn series_key(e: &MetricEvent) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    e.name.hash(&mut h);
    e.tags.hash(&mut h);
    if let Some(r) = &e.resource {
        for (k, v) in &r.attributes {
            k.hash(&mut h);
            // Resource values are small scalars; their JSON text identifies them.
            v.to_string().hash(&mut h);
        }
    }
    h.finish()
}

impl DeltaConverter {
    pub fn new(agent_start_ms: i64) -> Self {
        Self {
            series: HashMap::new(),
            agent_start_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn convert(&mut self, mut e: MetricEvent) -> Converted {
        self.bound_series(e.timestamp_ms);
        let key = series_key(&e);
        let time = e.timestamp_ms;
        let prev = self.series.remove(&key);
        let prev_time = prev.as_ref().map(|p| p.time_ms);
        let (next, out) = match &mut e.value {
            MetricValue::Counter {
                value,
                temporality: Temporality::Cumulative { start_ms },
            } => {
                let (start, total) = (*start_ms, *value);
                let next = Last::Counter {
                    start_ms: start,
                    value: total,
                };
                match prev {
                    Some(Entry {
                        time_ms,
                        last:
                            Last::Counter {
                                start_ms: ps,
                                value: pv,
                            },
                    }) if ps == start && total >= pv => {
                        *value = total - pv;
                        (next, Some(time_ms))
                    }
                    Some(_) => (next, Some(start)), // reset: all of it is new since `start`
                    None if start > self.agent_start_ms => (next, Some(start)),
                    None => (next, None),
                }
            }
            MetricValue::Histogram {
                temporality: Temporality::Cumulative { start_ms },
                count,
                sum,
                bucket_counts,
                bounds,
                ..
            } => {
                let start = *start_ms;
                histogram_delta(
                    prev,
                    self.agent_start_ms,
                    start,
                    count,
                    sum,
                    bucket_counts,
                    bounds,
                )
            }
            _ => (Last::Seen, Some(prev_time.unwrap_or(time))),
        };
        self.series.insert(
            key,
            Entry {
                time_ms: time,
                last: next,
            },
        );
        let Some(start) = out else {
            return Converted::Baseline;
        };
        // Whatever was cumulative is now the change over [start, time].
        match &mut e.value {
            MetricValue::Counter { temporality, .. }
            | MetricValue::Histogram { temporality, .. } => {
                *temporality = Temporality::Delta;
                // Min and max of a cumulative histogram are over its whole life, not the window.
                if let MetricValue::Histogram { min, max, .. } = &mut e.value
                    && prev_time.is_some()
                {
                    *min = None;
                    *max = None;
                }
            }
            _ => {}
        }
        Converted::Send(e, Some(start))
    }

    /// Keeps the number of tracked series under `MAX_SERIES`: stale series go first, then
    /// everything.
    fn bound_series(&mut self, now: i64) {
        if self.series.len() >= MAX_SERIES {
            self.series
                .retain(|_, s| now.saturating_sub(s.time_ms) < STALE_MS);
            if self.series.len() >= MAX_SERIES {
                self.series.clear();
            }
        }
    }
}

/// A cumulative histogram point against its series' previous one: turns its count, sum and
/// buckets into the change since then. Returns the series' next state and the window start
/// (`None`: the point is a baseline).
fn histogram_delta(
    prev: Option<Entry>,
    agent_start_ms: i64,
    start: i64,
    count: &mut u64,
    sum: &mut f64,
    bucket_counts: &mut [u64],
    bounds: &[f64],
) -> (Last, Option<i64>) {
    let next = Last::Histogram {
        start_ms: start,
        count: *count,
        sum: *sum,
        bucket_counts: bucket_counts.to_vec(),
        bounds: bounds.to_vec(),
    };
    match prev {
        Some(Entry {
            time_ms,
            last:
                Last::Histogram {
                    start_ms: ps,
                    count: pc,
                    sum: psum,
                    bucket_counts: pb,
                    bounds: pbounds,
                },
        }) if ps == start
            && *count >= pc
            && pbounds == bounds
            && pb.len() == bucket_counts.len()
            && bucket_counts.iter().zip(&pb).all(|(a, b)| a >= b) =>
        {
            *count -= pc;
            *sum -= psum;
            for (c, p) in bucket_counts.iter_mut().zip(&pb) {
                *c -= p;
            }
            (next, Some(time_ms))
        }
        Some(_) => (next, Some(start)),
        None if start > agent_start_ms => (next, Some(start)),
        None => (next, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(t: i64, start: i64, v: f64) -> MetricEvent {
        MetricEvent::new(
            "requests",
            t,
            MetricValue::Counter {
                value: v,
                temporality: Temporality::Cumulative { start_ms: start },
            },
        )
        .with_tag("route", "/cart")
    }

    fn sent(c: Converted) -> (f64, Option<i64>) {
        match c {
            Converted::Send(e, start) => match e.value {
                MetricValue::Counter {
                    value,
                    temporality: Temporality::Delta,
                } => (value, start),
                other => panic!("not a delta counter: {other:?}"),
            },
            Converted::Baseline => panic!("baseline"),
        }
    }

    #[test]
    fn cumulative_counters_become_deltas_with_resets() {
        let mut d = DeltaConverter::new(1_000);
        // Started before the agent: baseline only.
        assert!(matches!(
            d.convert(counter(2_000, 500, 10.0)),
            Converted::Baseline
        ));
        assert_eq!(
            sent(d.convert(counter(3_000, 500, 15.0))),
            (5.0, Some(2_000))
        );
        // Value went down: a restart; everything since the new start is new.
        assert_eq!(sent(d.convert(counter(4_000, 500, 3.0))), (3.0, Some(500)));
        // New start time: also a reset.
        assert_eq!(
            sent(d.convert(counter(5_000, 4_500, 7.0))),
            (7.0, Some(4_500))
        );
        // A series that started after the agent is sent from its first point.
        let other = counter(6_000, 5_500, 2.0).with_tag("route", "/pay");
        assert_eq!(sent(d.convert(other)), (2.0, Some(5_500)));
    }

    #[test]
    fn cumulative_histograms_become_deltas() {
        let mut d = DeltaConverter::new(0);
        let h = |t, count, b: Vec<u64>| {
            MetricEvent::new(
                "latency",
                t,
                MetricValue::Histogram {
                    temporality: Temporality::Cumulative { start_ms: 10 },
                    count,
                    sum: count as f64,
                    min: Some(1.0),
                    max: Some(9.0),
                    bounds: vec![1.0, 5.0],
                    bucket_counts: b,
                },
            )
        };
        assert!(matches!(
            d.convert(h(100, 3, vec![1, 1, 1])),
            Converted::Send(..)
        ));
        let Converted::Send(e, start) = d.convert(h(200, 7, vec![2, 3, 2])) else {
            panic!()
        };
        assert_eq!(start, Some(100));
        match e.value {
            MetricValue::Histogram {
                temporality,
                count,
                bucket_counts,
                min,
                ..
            } => {
                assert_eq!(temporality, Temporality::Delta);
                assert_eq!(count, 4);
                assert_eq!(bucket_counts, vec![1, 2, 1]);
                assert_eq!(min, None);
            }
            _ => panic!(),
        }
    }
}
