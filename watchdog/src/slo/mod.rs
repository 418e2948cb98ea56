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

/// How CloudWatch tells the bad events from the total: what the watchdog reads, and what
/// the dashboards and the SLO report draw.
#[derive(Clone, Debug)]
pub enum CwSli {
    /// `bad` counted directly (span errors, target 5xx, `bad_over_total`).
    Bad { bad: MetricRef, total: MetricRef },
    /// `good` counted (requests under a threshold, `good_over_total`): bad = total - good.
    Good { good: MetricRef, total: MetricRef },
    /// ALB latency: the latency's own percentile rank `PR(:threshold)` per bucket, so good =
    /// rank% of that bucket's sample count. Exact per bucket, so windows add up without
    /// percentiles.
    RankedBelow {
        latency: MetricRef,
        threshold_ms: u32,
    },
}

impl CwSli {
    /// The metric that counts all events, and the statistic that counts them (`SampleCount`
    /// of a latency metric).
    pub fn total(&self) -> (&MetricRef, Stat) {
        match self {
            CwSli::Bad { total, .. } | CwSli::Good { total, .. } => (total, Stat::Sum),
            CwSli::RankedBelow { latency, .. } => (latency, Stat::SampleCount),
        }
    }
}

/// The CloudWatch series an SLI reads. `alb` turns the (load balancer, target group) an ALB
/// SLI names into dimension values: looked up in AWS by the watchdog, taken from
/// `infrastructure:` by the dashboards.
pub fn cloudwatch_sli<E>(
    sli: &Sli,
    alb: impl FnOnce(&str, &str) -> Result<(String, String), E>,
) -> Result<CwSli, E> {
    let span = |service: &str, route: &str, name: &str, threshold: Option<u32>| {
        let threshold = threshold.map(|t| t.to_string());
        let mut dims = vec![("service", service), ("route", route)];
        if let Some(t) = &threshold {
            dims.push(("threshold_ms", t.as_str()));
        }
        MetricRef::new(SPAN_NAMESPACE, name, &dims)
    };
    let alb_metric = |lb: &str, tg: &str, name: &str| {
        MetricRef::new(
            ALB_NAMESPACE,
            name,
            &[("LoadBalancer", lb), ("TargetGroup", tg)],
        )
    };
    Ok(match sli {
        Sli::SpanErrors { service, route } => CwSli::Bad {
            bad: span(service, route, "errors", None),
            total: span(service, route, "requests", None),
        },
        Sli::SpanLatency {
            service,
            route,
            threshold_ms,
        } => CwSli::Good {
            good: span(
                service,
                route,
                "requests_under_threshold",
                Some(*threshold_ms),
            ),
            total: span(service, route, "requests", None),
        },
        Sli::AlbAvailability {
            load_balancer,
            target_group,
        }
        | Sli::AlbLatency {
            load_balancer,
            target_group,
            ..
        } => {
            let (lb, tg) = alb(load_balancer, target_group)?;
            let m = |name: &str| alb_metric(&lb, &tg, name);
            match sli {
                Sli::AlbLatency { threshold_ms, .. } => CwSli::RankedBelow {
                    latency: m("TargetResponseTime"),
                    threshold_ms: *threshold_ms,
                },
                _ => CwSli::Bad {
                    bad: m("HTTPCode_Target_5XX_Count"),
                    total: m("RequestCount"),
                },
            }
        }
        Sli::GoodOverTotal { good, total } => CwSli::Good {
            good: good.clone(),
            total: total.clone(),
        },
        Sli::BadOverTotal { bad, total } => CwSli::Bad {
            bad: bad.clone(),
            total: total.clone(),
        },
    })
}

/// Works out which series an SLI reads; fails only when an ALB name cannot be resolved.
pub fn series(sli: &Sli, alb: &alb::AlbDimensions) -> Result<CwSli, CallError> {
    cloudwatch_sli(sli, |lb, tg| {
        Ok((alb.load_balancer(lb)?, alb.target_group(tg)?))
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
pub fn plan(spec: &Spec, slo: &Slo, series: &CwSli, plan: &mut MetricsPlan) {
    let (total, total_stat) = series.total();
    for window in windows(spec, slo) {
        plan.want(total, total_stat, window);
        match series {
            CwSli::Good { good: m, .. } | CwSli::Bad { bad: m, .. } => {
                plan.want(m, Stat::Sum, window)
            }
            CwSli::RankedBelow {
                latency,
                threshold_ms,
            } => plan.want(
                latency,
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
    series: &CwSli,
    window: crate::spec::Span,
) -> Result<Counts, CallError> {
    // No datapoints in a window means no events (the agent publishes only what happened).
    let (total_metric, total_stat) = series.total();
    let total = || -> Result<f64, CallError> {
        let total = data.window(total_metric, total_stat, window)?;
        Ok(total.value.unwrap_or(0.0))
    };
    let sum =
        |m: &MetricRef| -> Result<f64, CallError> { Ok(data.sum(m, window)?.value.unwrap_or(0.0)) };
    Ok(match series {
        CwSli::Good { good, .. } => Counts::from_good(sum(good)?, total()?),
        CwSli::Bad { bad, .. } => Counts::from_bad(sum(bad)?, total()?),
        CwSli::RankedBelow {
            latency,
            threshold_ms,
        } => {
            let rank = Stat::PercentileRank {
                threshold_ms: *threshold_ms,
            };
            burn::ranked_counts(
                &data.points(latency, total_stat, window)?,
                &data.points(latency, rank, window)?,
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
    series: &'a CwSli,
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
    series: Result<&CwSli, &CallError>,
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
            crate::metrics::describe(series.total().0)
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
