//! The arithmetic of error budgets, kept free of I/O so it can be tested exhaustively.
//!
//! An SLO promises that `objective`% of events are good. The error budget is the remaining
//! fraction, `1 - objective/100`. A burn rate is how fast a window spends it: the window's
//! bad-event ratio divided by the budget fraction, so 1.0 spends exactly the budget over the
//! SLO period and 14.4 spends a 30-day budget's 2% in one hour.

/// Good and total events in one window, as summed from CloudWatch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    pub total: f64,
    pub bad: f64,
}

impl Counts {
    /// From a good-event counter: bad = total - good, never below zero (the two series are
    /// published separately and may disagree by a bucket at the window's edge).
    pub fn from_good(good: f64, total: f64) -> Counts {
        let total = total.max(0.0);
        Counts {
            total,
            bad: (total - good.max(0.0)).clamp(0.0, total),
        }
    }

    /// From a bad-event counter, capped at the total for the same reason.
    pub fn from_bad(bad: f64, total: f64) -> Counts {
        let total = total.max(0.0);
        Counts {
            total,
            bad: bad.max(0.0).min(total),
        }
    }

    /// The fraction of good events; `None` without events (no data is not 0% or 100%).
    pub fn sli(&self) -> Option<f64> {
        (self.total > 0.0).then(|| 1.0 - self.bad / self.total)
    }

    /// How many times faster than allowed this window spends the budget; `None` without events.
    pub fn burn_rate(&self, objective_percent: f64) -> Option<f64> {
        let budget = budget_fraction(objective_percent)?;
        (self.total > 0.0).then(|| (self.bad / self.total) / budget)
    }
}

/// Counts from a latency metric's per-bucket sample counts and percentile ranks `PR(:t)`
/// (percent of samples at or below `t`): good = Σ count × rank / 100. Buckets are matched by
/// start time; a bucket with a count but no rank is left out of both sums, so an incomplete
/// read never reads as all-good or all-bad.
pub fn ranked_counts(counts: &[(u64, f64)], ranks: &[(u64, f64)]) -> Counts {
    let mut total = 0.0;
    let mut good = 0.0;
    for (ts, count) in counts {
        if let Some((_, rank)) = ranks.iter().find(|(t, _)| t == ts) {
            total += count.max(0.0);
            good += count.max(0.0) * rank.clamp(0.0, 100.0) / 100.0;
        }
    }
    Counts::from_good(good, total)
}

/// `1 - objective/100`, or `None` for an objective that leaves no budget (validated away,
/// but a division by zero must stay impossible).
pub fn budget_fraction(objective_percent: f64) -> Option<f64> {
    let budget = 1.0 - objective_percent / 100.0;
    (budget > 0.0 && budget.is_finite()).then_some(budget)
}

/// Share of the period's error budget still unspent: 1.0 untouched, 0.0 spent, negative when
/// overspent. Without events nothing was spent.
pub fn budget_remaining(period: Counts, objective_percent: f64) -> f64 {
    match (budget_fraction(objective_percent), period.total > 0.0) {
        (Some(budget), true) => 1.0 - period.bad / (period.total * budget),
        _ => 1.0,
    }
}

/// Why one multiwindow alert does or does not fire.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Firing,
    /// Fewer events in the long window than the low-traffic guard asks for.
    TooFewEvents,
    /// A window has no events at all.
    NoData,
    /// At least one window burns slower than the factor.
    BelowFactor,
}

/// Both windows must burn at least `factor`: the long window proves the problem is big
/// enough, the short one that it is still happening (so the alert also resets quickly).
pub fn judge(
    long: Counts,
    short: Counts,
    objective_percent: f64,
    factor: f64,
    min_events: u64,
) -> Verdict {
    let (Some(long_rate), Some(short_rate)) = (
        long.burn_rate(objective_percent),
        short.burn_rate(objective_percent),
    ) else {
        return Verdict::NoData;
    };
    if long.total < min_events as f64 {
        return Verdict::TooFewEvents;
    }
    if long_rate >= factor && short_rate >= factor {
        Verdict::Firing
    } else {
        Verdict::BelowFactor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn burn_rate_is_error_ratio_over_budget() {
        // 99.9%: budget 0.001. 1.44% errors burn 14.4x.
        let c = Counts::from_bad(144.0, 10_000.0);
        assert!(close(c.burn_rate(99.9).unwrap(), 14.4));
        assert!(close(c.sli().unwrap(), 0.9856));
        // Exactly on budget burns 1x.
        assert!(close(
            Counts::from_bad(1.0, 1000.0).burn_rate(99.9).unwrap(),
            1.0
        ));
        // No errors, no burn.
        assert_eq!(Counts::from_bad(0.0, 50.0).burn_rate(99.9), Some(0.0));
    }

    #[test]
    fn threshold_sli_counts_slow_requests_as_bad() {
        // 95% under 300 ms: 1000 requests, 900 under the threshold -> 10% slow -> 2x burn.
        let c = Counts::from_good(900.0, 1000.0);
        assert!(close(c.bad, 100.0));
        assert!(close(c.sli().unwrap(), 0.9));
        assert!(close(c.burn_rate(95.0).unwrap(), 2.0));
        // Counts from separately published series may disagree: never negative, never > total.
        assert_eq!(Counts::from_good(1010.0, 1000.0).bad, 0.0);
        assert_eq!(Counts::from_good(-5.0, 10.0).bad, 10.0);
        assert_eq!(Counts::from_bad(12.0, 10.0).bad, 10.0);
        // Sums over windows aggregate exactly (unlike percentiles): two halves add up.
        let (a, b) = (
            Counts::from_good(480.0, 500.0),
            Counts::from_good(420.0, 500.0),
        );
        let whole = Counts {
            total: a.total + b.total,
            bad: a.bad + b.bad,
        };
        assert_eq!(whole, c);
    }

    #[test]
    fn percentile_rank_sli_weights_each_bucket_by_its_samples() {
        // 100 requests with 90% under the threshold, then 300 with 99%: 387 of 400 good.
        let counts = [(60, 100.0), (120, 300.0), (180, 50.0)];
        let ranks = [(60, 90.0), (120, 99.0)]; // the last bucket's rank is missing
        let c = ranked_counts(&counts, &ranks);
        assert!(close(c.total, 400.0) && close(c.bad, 13.0), "{c:?}");
        assert!(close(c.sli().unwrap(), 0.9675));
        // Against "95% under the threshold": 3.25% bad of a 5% budget burns 0.65x.
        assert!(close(c.burn_rate(95.0).unwrap(), 0.65));
        // Averaging the two ranks would claim 94.5% and a 1.1x burn: the weighting matters.
        assert!(close((1.0 - (90.0 + 99.0) / 200.0) / 0.05, 1.1));
        // Out-of-range ranks are clamped; no buckets means no data.
        assert_eq!(ranked_counts(&[(60, 10.0)], &[(60, 120.0)]).bad, 0.0);
        assert_eq!(ranked_counts(&[], &[]).sli(), None);
    }

    #[test]
    fn absent_data_never_divides_by_zero() {
        let none = Counts::default();
        assert_eq!(none.sli(), None);
        assert_eq!(none.burn_rate(99.9), None);
        assert_eq!(budget_remaining(none, 99.9), 1.0);
        assert_eq!(Counts::from_good(0.0, 0.0).sli(), None);
        // An objective without budget is refused instead of dividing by zero.
        assert_eq!(budget_fraction(100.0), None);
        assert_eq!(Counts::from_bad(1.0, 10.0).burn_rate(100.0), None);
        assert_eq!(judge(none, none, 99.9, 14.4, 0), Verdict::NoData);
        assert_eq!(
            judge(Counts::from_bad(500.0, 1000.0), none, 99.9, 14.4, 0),
            Verdict::NoData
        );
    }

    #[test]
    fn budget_remaining_tracks_the_period() {
        // 1,000,000 events at 99.9% allow 1000 bad ones.
        assert!(close(
            budget_remaining(Counts::from_bad(250.0, 1e6), 99.9),
            0.75
        ));
        assert!(close(
            budget_remaining(Counts::from_bad(1000.0, 1e6), 99.9),
            0.0
        ));
        assert!(close(
            budget_remaining(Counts::from_bad(3000.0, 1e6), 99.9),
            -2.0
        ));
        assert!(close(
            budget_remaining(Counts::from_good(1e6, 1e6), 99.9),
            1.0
        ));
    }

    #[test]
    fn both_windows_must_burn() {
        let burning = Counts::from_bad(150.0, 10_000.0); // 15x at 99.9%
        let calm = Counts::from_bad(1.0, 10_000.0); // 0.1x
        assert_eq!(judge(burning, burning, 99.9, 14.4, 100), Verdict::Firing);
        // A blip only the short window sees.
        assert_eq!(judge(calm, burning, 99.9, 14.4, 100), Verdict::BelowFactor);
        // A past problem that has stopped: the long window still burns, the short does not.
        assert_eq!(judge(burning, calm, 99.9, 14.4, 100), Verdict::BelowFactor);
        // Exactly at the factor fires (>=).
        let at = Counts::from_bad(144.0, 10_000.0);
        assert_eq!(judge(at, at, 99.9, 14.4, 100), Verdict::Firing);
        let just_below = Counts::from_bad(143.0, 10_000.0);
        assert_eq!(judge(just_below, at, 99.9, 14.4, 100), Verdict::BelowFactor);
    }

    #[test]
    fn low_traffic_guard_holds_back_small_samples() {
        // 2 failures out of 10 requests is a 200x burn, but 10 events prove little.
        let tiny = Counts::from_bad(2.0, 10.0);
        assert_eq!(judge(tiny, tiny, 99.9, 14.4, 50), Verdict::TooFewEvents);
        assert_eq!(judge(tiny, tiny, 99.9, 14.4, 10), Verdict::Firing);
    }

    #[test]
    fn workbook_factors_match_budget_fractions() {
        // 14.4x for 1h spends 2% of a 30d budget; 6x for 6h 5%; 1x for 3d 10%.
        let period_h = 30.0 * 24.0;
        assert!(close(14.4 * 1.0 / period_h, 0.02));
        assert!(close(6.0 * 6.0 / period_h, 0.05));
        assert!(close(1.0 * 72.0 / period_h, 0.1));
    }
}
