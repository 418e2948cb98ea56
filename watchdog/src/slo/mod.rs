//! SLO evaluation: which CloudWatch sums each SLI needs, and the verdict from them.

pub mod alb;
pub mod burn;

use std::collections::BTreeMap;

use serde_json::json;

use crate::error::CallError;
use crate::finding::{Finding, Status};
use crate::metrics::{MetricData, MetricsPlan, Stat};
use crate::spec::{MetricRef, Service, Severity, Sli, Slo, Spec};
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

fn metric(namespace: &str, name: &str, dims: &[(&str, &str)]) -> MetricRef {
    MetricRef {
        namespace: namespace.into(),
        metric: name.into(),
        dimensions: dims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
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
                Counter::Bad(metric(SPAN_NAMESPACE, "errors", &dims)),
                metric(SPAN_NAMESPACE, "requests", &dims),
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
                Counter::Good(metric(
                    SPAN_NAMESPACE,
                    "requests_under_threshold",
                    &good_dims,
                )),
                metric(SPAN_NAMESPACE, "requests", &dims),
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
                Counter::Bad(metric(ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", &dims)),
                metric(ALB_NAMESPACE, "RequestCount", &dims),
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
                metric(ALB_NAMESPACE, "TargetResponseTime", &dims),
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
    finding
        .values
        .insert("objective_percent".into(), json!(objective));
    finding.values.insert("sli".into(), json!(period.sli()));
    finding
        .values
        .insert("period_events".into(), json!(period.total));
    finding
        .values
        .insert("period_bad_events".into(), json!(period.bad));
    finding
        .values
        .insert("budget_remaining".into(), json!(budget_left));
    finding.details.push(format!(
        "SLI over {}: {} ({} of {} events bad); objective {objective}%; error budget left {:.1}%",
        slo.period,
        percent(period.sli()),
        period.bad,
        period.total,
        budget_left * 100.0
    ));

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
    for alert in alerts {
        let judged = counts(data, series, alert.long)
            .and_then(|long| counts(data, series, alert.short).map(|short| (long, short)));
        let (long, short) = match judged {
            Ok(pair) => pair,
            Err(e) => {
                finding.details.push(format!(
                    "{}/{}: could not read: {e}",
                    alert.long, alert.short
                ));
                continue;
            }
        };
        let (long_rate, short_rate) = (long.burn_rate(objective), short.burn_rate(objective));
        burn_rates.insert(alert.long.to_string(), json!(long_rate));
        burn_rates.insert(alert.short.to_string(), json!(short_rate));
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
        finding.details.push(format!(
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
        ));
        if verdict == Verdict::Firing && firing.as_ref().is_none_or(|(s, _)| alert.severity > *s) {
            firing = Some((
                alert.severity,
                format!(
                    "{service_name}/{}: burning error budget {} over {} and {} over {} (objective {objective}%, {:.1}% budget left)",
                    slo.name,
                    rate(long_rate),
                    alert.long,
                    rate(short_rate),
                    alert.short,
                    budget_left * 100.0
                ),
            ));
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
