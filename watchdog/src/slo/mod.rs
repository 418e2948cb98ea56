//! SLO evaluation: which CloudWatch sums each SLI needs, and the verdict from them.

pub mod alb;
pub mod burn;

use std::collections::BTreeMap;

use serde_json::json;

use crate::error::CallError;
use crate::finding::{Finding, Status};
use crate::metrics::{MetricData, MetricsPlan, Stat};
use crate::spec::{BurnRateAlert, MetricRef, Service, Severity, Sli, Slo, Spec};
use burn::{Counts, Verdict};

/// The agent's span-metric contract (see the agent's telemetry module).
const SPAN_NAMESPACE: &str = "Vigil/SpanMetrics";
const ALB_NAMESPACE: &str = "AWS/ApplicationELB";

/// How an SLI knows the good events besides the total.
#[derive(Clone, Debug)]
enum Counter {
    /// A counter of good events.
    Good(MetricRef),
    /// A counter of bad events.
    Bad(MetricRef),
    /// The total's own percentile rank `PR(:threshold)` per bucket: good = rank% of that
    /// bucket's sample count. Exact per bucket, so windows add up without percentiles.
    RankedBelow { threshold_ms: u32 },
}

/// The CloudWatch series behind one SLO's SLI.
#[derive(Clone, Debug)]
pub struct SliSeries {
    counter: Counter,
    total: MetricRef,
    /// `Sum` for counters; `SampleCount` when the total is a latency metric's sample count.
    total_stat: Stat,
}

/// Works out which series an SLI reads; fails only when an ALB name cannot be resolved.
pub fn series(sli: &Sli, alb: &alb::AlbDimensions) -> Result<SliSeries, CallError> {
    let mut total_stat = Stat::Sum;
    let (counter, total) = match sli {
        Sli::SpanErrors { service, route } => {
            let dims = [("service", service.as_str()), ("route", route.as_str())];
            (
                Counter::Bad(MetricRef::new(SPAN_NAMESPACE, "errors", &dims)),
                MetricRef::new(SPAN_NAMESPACE, "requests", &dims),
            )
        }
        Sli::SpanLatency {
            service,
            route,
            threshold_ms,
        } => {
            let threshold = threshold_ms.to_string();
            let dims = [("service", service.as_str()), ("route", route.as_str())];
            let good_dims = [dims[0], dims[1], ("threshold_ms", threshold.as_str())];
            (
                Counter::Good(MetricRef::new(
                    SPAN_NAMESPACE,
                    "requests_under_threshold",
                    &good_dims,
                )),
                MetricRef::new(SPAN_NAMESPACE, "requests", &dims),
            )
        }
        Sli::AlbAvailability {
            load_balancer,
            target_group,
        } => {
            let (lb, tg) = (
                alb.load_balancer(load_balancer)?,
                alb.target_group(target_group)?,
            );
            let dims = [("LoadBalancer", lb.as_str()), ("TargetGroup", tg.as_str())];
            (
                Counter::Bad(MetricRef::new(
                    ALB_NAMESPACE,
                    "HTTPCode_Target_5XX_Count",
                    &dims,
                )),
                MetricRef::new(ALB_NAMESPACE, "RequestCount", &dims),
            )
        }
        Sli::AlbLatency {
            load_balancer,
            target_group,
            threshold_ms,
        } => {
            let (lb, tg) = (
                alb.load_balancer(load_balancer)?,
                alb.target_group(target_group)?,
            );
            let dims = [("LoadBalancer", lb.as_str()), ("TargetGroup", tg.as_str())];
            total_stat = Stat::SampleCount;
            (
                Counter::RankedBelow {
                    threshold_ms: *threshold_ms,
                },
                MetricRef::new(ALB_NAMESPACE, "TargetResponseTime", &dims),
            )
        }
        Sli::GoodOverTotal { good, total } => (Counter::Good(good.clone()), total.clone()),
        Sli::BadOverTotal { bad, total } => (Counter::Bad(bad.clone()), total.clone()),
    };
    Ok(SliSeries {
        counter,
        total,
        total_stat,
    })
}

/// Every window an SLO is judged on: each alert's two windows and the SLO period.
fn windows(spec: &Spec, slo: &Slo) -> Vec<crate::spec::Span> {
    let (alerts, _) = spec.alerts_for(slo);
    let mut windows: Vec<_> = alerts.iter().flat_map(|a| [a.long, a.short]).collect();
    windows.push(slo.period);
    windows
}

/// Adds the sums this SLO needs to the shared read.
pub fn plan(spec: &Spec, slo: &Slo, series: &SliSeries, plan: &mut MetricsPlan) {
    for window in windows(spec, slo) {
        plan.want(&series.total, series.total_stat, window);
        match &series.counter {
            Counter::Good(m) | Counter::Bad(m) => plan.want(m, Stat::Sum, window),
            Counter::RankedBelow { threshold_ms } => plan.want(
                &series.total,
                Stat::PercentileRank {
                    threshold_ms: *threshold_ms,
                },
                window,
            ),
        }
    }
}

/// Good/bad counts over one window; `Err` when CloudWatch could not be read.
fn counts(
    data: &MetricData,
    series: &SliSeries,
    window: crate::spec::Span,
) -> Result<Counts, CallError> {
    // No datapoints in a window means no events (the agent publishes only what happened).
    let total = || -> Result<f64, CallError> {
        let total = data.window(&series.total, series.total_stat, window)?;
        Ok(total.value.unwrap_or(0.0))
    };
    let sum =
        |m: &MetricRef| -> Result<f64, CallError> { Ok(data.sum(m, window)?.value.unwrap_or(0.0)) };
    Ok(match &series.counter {
        Counter::Good(m) => Counts::from_good(sum(m)?, total()?),
        Counter::Bad(m) => Counts::from_bad(sum(m)?, total()?),
        Counter::RankedBelow { threshold_ms } => {
            let rank = Stat::PercentileRank {
                threshold_ms: *threshold_ms,
            };
            burn::ranked_counts(
                &data.points(&series.total, series.total_stat, window)?,
                &data.points(&series.total, rank, window)?,
            )
        }
    })
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "no data".into(), |x| format!("{:.3}%", x * 100.0))
}

fn rate(x: Option<f64>) -> String {
    x.map_or_else(|| "no data".into(), |x| format!("{x:.2}x"))
}

/// An SLO's finding before it is judged: ok, at the severity of its most severe alert.
fn slo_finding(
    service_name: &str,
    service: &Service,
    slo: &Slo,
    alerts: &[BurnRateAlert],
) -> Finding {
    let mut finding = Finding {
        fingerprint: Finding::fingerprint_of("slo", service_name, &slo.name),
        status: Status::Ok,
        severity: alerts
            .iter()
            .map(|a| a.severity)
            .max()
            .unwrap_or(Severity::Ticket),
        service: service_name.into(),
        module: service.module.clone(),
        kind: "slo".into(),
        target: slo.name.clone(),
        labels: service.labels.clone(),
        summary: String::new(),
        details: Vec::new(),
        values: BTreeMap::new(),
    };
    if let Some(description) = &slo.description {
        finding.details.push(description.clone());
    }
    finding
}

/// The SLO period's numbers, as values and one detail line.
fn record_period(finding: &mut Finding, slo: &Slo, period: &Counts, budget_left: f64) {
    let objective = slo.objective;
    let values = [
        ("objective_percent", json!(objective)),
        ("sli", json!(period.sli())),
        ("period_events", json!(period.total)),
        ("period_bad_events", json!(period.bad)),
        ("budget_remaining", json!(budget_left)),
    ];
    for (key, value) in values {
        finding.values.insert(key.into(), value);
    }
    finding.details.push(format!(
        "SLI over {}: {} ({} of {} events bad); objective {objective}%; error budget left {:.1}%",
        slo.period,
        percent(period.sli()),
        period.bad,
        period.total,
        budget_left * 100.0
    ));
}

/// What judging one SLO's alerts needs besides the alert.
struct AlertContext<'a> {
    data: &'a MetricData,
    series: &'a SliSeries,
    objective: f64,
    min_events: u64,
    /// `service/slo`, as summaries begin.
    headline: &'a str,
    budget_left: f64,
}

/// One alert's verdict: its detail line, both windows' burn rates, and the summary when it
/// fires.
struct AlertVerdict {
    detail: String,
    long_rate: Option<f64>,
    short_rate: Option<f64>,
    firing: Option<String>,
}

impl AlertContext<'_> {
    fn judge(&self, alert: &BurnRateAlert) -> Result<AlertVerdict, CallError> {
        let (objective, min_events) = (self.objective, self.min_events);
        let long = counts(self.data, self.series, alert.long)?;
        let short = counts(self.data, self.series, alert.short)?;
        let (long_rate, short_rate) = (long.burn_rate(objective), short.burn_rate(objective));
        let verdict = burn::judge(long, short, objective, alert.factor, min_events);
        let why = match verdict {
            Verdict::Firing => "FIRING: both windows burn at or above the factor".to_string(),
            Verdict::BelowFactor => "ok: not both windows at or above the factor".to_string(),
            Verdict::NoData => {
                "ok: no events in a window (no data is not an outage here)".to_string()
            }
            Verdict::TooFewEvents => format!(
                "ok: only {} events in {}, fewer than the {min_events} the low-traffic guard needs",
                long.total, alert.long
            ),
        };
        let detail = format!(
            "{} alert {}/{} at {}x: burn {} over {} ({} events), {} over {} ({} events) -> {why}",
            alert.severity,
            alert.long,
            alert.short,
            alert.factor,
            rate(long_rate),
            alert.long,
            long.total,
            rate(short_rate),
            alert.short,
            short.total,
        );
        let firing = (verdict == Verdict::Firing).then(|| {
            format!(
                "{}: burning error budget {} over {} and {} over {} (objective {objective}%, {:.1}% budget left)",
                self.headline,
                rate(long_rate),
                alert.long,
                rate(short_rate),
                alert.short,
                self.budget_left * 100.0
            )
        });
        Ok(AlertVerdict {
            detail,
            long_rate,
            short_rate,
            firing,
        })
    }
}

/// Judges one SLO from the fetched data.
pub fn evaluate(
    spec: &Spec,
    service_name: &str,
    service: &Service,
    slo: &Slo,
    series: Result<&SliSeries, &CallError>,
    data: &MetricData,
) -> Finding {
    let (alerts, min_events) = spec.alerts_for(slo);
    let mut finding = slo_finding(service_name, service, slo, alerts);
    let objective = slo.objective;
    let read = series
        .map_err(Clone::clone)
        .and_then(|series| counts(data, series, slo.period).map(|c| (series, c)));
    let (series, period) = match read {
        Ok(pair) => pair,
        Err(e) => {
            finding.mark_unknown(format!("SLO {} could not be evaluated: {e}", slo.name));
            return finding;
        }
    };
    let budget_left = burn::budget_remaining(period, objective);
    record_period(&mut finding, slo, &period, budget_left);

    if period.total <= 0.0 {
        // Not one event in the whole period: no window can burn, and most likely the metric is
        // misnamed or no longer published. That is a question for a human (a ticket under
        // its own fingerprint), never a page and never an "all good".
        finding.mark_unknown(format!(
            "{service_name}/{}: no events in {}; is {} published?",
            slo.name,
            slo.period,
            crate::metrics::describe(&series.total)
        ));
        return finding;
    }

    let mut firing: Option<(Severity, String)> = None;
    let mut burn_rates = serde_json::Map::new();
    let headline = format!("{service_name}/{}", slo.name);
    for alert in alerts {
        let judged = AlertContext {
            data,
            series,
            objective,
            min_events,
            headline: &headline,
            budget_left,
        }
        .judge(alert);
        let judged = match judged {
            Ok(judged) => judged,
            Err(e) => {
                finding.details.push(format!(
                    "{}/{}: could not read: {e}",
                    alert.long, alert.short
                ));
                continue;
            }
        };
        burn_rates.insert(alert.long.to_string(), json!(judged.long_rate));
        burn_rates.insert(alert.short.to_string(), json!(judged.short_rate));
        finding.details.push(judged.detail);
        if let Some(summary) = judged.firing
            && firing.as_ref().is_none_or(|(s, _)| alert.severity > *s)
        {
            firing = Some((alert.severity, summary));
        }
    }
    finding
        .values
        .insert("burn_rates".into(), serde_json::Value::Object(burn_rates));
    match firing {
        Some((severity, summary)) => {
            finding.status = Status::Firing;
            finding.severity = severity;
            finding.summary = summary;
        }
        None => {
            finding.summary = format!(
                "{service_name}/{}: within budget (SLI {}, {:.1}% budget left)",
                slo.name,
                percent(period.sli()),
                budget_left * 100.0
            );
        }
    }
    finding
}
