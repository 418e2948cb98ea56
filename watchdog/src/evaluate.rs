//! One evaluation: plan every metric read, fetch them in one batch, judge the SLOs, run the
//! checks concurrently, and return one finding per SLO and per check.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::aws::Aws;
use crate::checks::{AnyCheck, Outcome, Want};
use crate::error::{CallError, ErrorKind};
use crate::finding::{Finding, Status};
use crate::metrics::{self, MetricsPlan};
use crate::slo;
use crate::spec::{CheckSpec, Service, Slo, Spec};

/// A check that takes longer than this is reported as unknown; the rest carry on.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// What to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// Every SLO and every check (the scheduled run, the CLI).
    Everything,
    /// Only these checks, as (service, index into its `checks`) — a state-change event.
    Checks(Vec<(String, usize)>),
}

#[derive(Debug, serde::Serialize)]
pub struct Evaluation {
    pub evaluated_at: u64,
    pub findings: Vec<Finding>,
    /// GetMetricData calls and queries this evaluation needed.
    pub metric_calls: usize,
    pub metric_queries: usize,
    pub elapsed_ms: u64,
}

/// Which limit a step runs under: its own `CHECK_TIMEOUT`, or the invocation's deadline
/// when that comes first.
enum Limit {
    Timeout,
    Deadline(Duration),
}

impl Limit {
    fn for_step(deadline: Option<Instant>) -> Limit {
        match deadline {
            Some(d) if d.saturating_duration_since(Instant::now()) < CHECK_TIMEOUT => {
                Limit::Deadline(d.saturating_duration_since(Instant::now()))
            }
            _ => Limit::Timeout,
        }
    }

    /// Runs `step` within the limit; `doing` ends the timeout's text ("while planning").
    async fn run<T>(
        self,
        step: impl Future<Output = Result<T, CallError>>,
        doing: &str,
    ) -> Result<T, CallError> {
        let within = match self {
            Limit::Timeout => CHECK_TIMEOUT,
            Limit::Deadline(left) => left,
        };
        match (tokio::time::timeout(within, step).await, self) {
            (Ok(r), _) => r,
            (Err(_), Limit::Deadline(_)) => Err(CallError::new(
                ErrorKind::Skipped,
                "skipped: the invocation's deadline came first",
            )),
            (Err(_), Limit::Timeout) => Err(CallError::new(
                ErrorKind::TimedOut,
                format!("timed out after {}s{doing}", CHECK_TIMEOUT.as_secs()),
            )),
        }
    }
}

/// A check in scope: its service's name, the service, and the check.
type Selected<'a> = (&'a str, &'a Service, &'a CheckSpec, AnyCheck<'a>);

/// An SLO with the series its SLI reads (or why they could not be worked out).
type SloSeries<'a> = (
    &'a String,
    &'a Service,
    &'a Slo,
    Result<slo::CwSli, CallError>,
);

pub async fn evaluate(
    spec: &Spec,
    aws: &Aws,
    scope: &Scope,
    deadline: Option<Instant>,
) -> Evaluation {
    let started = Instant::now();
    let now = metrics::now_secs();
    let selected = select(spec, scope);

    // 1. What each check reads (discovery calls such as ListMetrics happen here), and the
    //    SLOs' ALB names resolved, at the same time.
    let plan_checks = join_all(selected.iter().map(|(_, _, _, check)| {
        Limit::for_step(deadline).run(check.wants(aws), " while planning")
    }));
    let resolve_albs = async {
        match scope {
            Scope::Everything => Some(slo::alb::resolve(spec, aws).await),
            Scope::Checks(_) => None,
        }
    };
    let (wants, alb): (Vec<Result<Vec<Want>, CallError>>, _) =
        tokio::join!(plan_checks, resolve_albs);

    // 2. One batched read for SLOs and checks together.
    let mut plan = MetricsPlan::default();
    let slos = match &alb {
        Some(alb) => plan_slos(spec, alb, &mut plan),
        None => Vec::new(),
    };
    for want in wants.iter().flatten().flatten() {
        plan.want(&want.metric, want.stat, want.window);
    }

    // 3. The checks, while and after the metrics are read.
    let (outcomes, data) = run_checks(aws, &selected, &wants, &plan, now, deadline).await;
    let metrics_skipped = data.is_none();
    let data = data.unwrap_or_default();

    // 4. Verdicts.
    let mut findings = Vec::new();
    for (name, service, s, series) in &slos {
        let mut finding = slo::evaluate(spec, name, service, s, series.as_ref(), &data);
        if metrics_skipped {
            let why = format!(
                "slo {}: skipped: the invocation's deadline came before the metrics",
                s.name
            );
            if finding.status == Status::Unknown {
                finding.summary = why;
            } else {
                finding.mark_unknown(why);
            }
        }
        findings.push(finding);
    }
    for ((service_name, service, check, _), outcome) in selected.iter().zip(outcomes) {
        findings.push(check_finding(service_name, service, check, outcome));
    }

    Evaluation {
        evaluated_at: now,
        findings,
        metric_calls: data.calls,
        metric_queries: data.queries,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

/// The checks in scope, in spec order.
fn select<'a>(spec: &'a Spec, scope: &Scope) -> Vec<Selected<'a>> {
    spec.services
        .iter()
        .flat_map(|(name, service)| {
            service
                .checks
                .iter()
                .enumerate()
                .filter_map(move |(i, check)| {
                    let wanted = match scope {
                        Scope::Everything => true,
                        Scope::Checks(list) => list.iter().any(|(s, j)| s == name && *j == i),
                    };
                    wanted.then(|| (name.as_str(), service, check, AnyCheck::new(check)))
                })
        })
        .collect()
}

/// Every SLO's series, added to the shared read.
fn plan_slos<'a>(
    spec: &'a Spec,
    alb: &slo::alb::AlbDimensions,
    plan: &mut MetricsPlan,
) -> Vec<SloSeries<'a>> {
    let mut slos = Vec::new();
    for (name, service) in &spec.services {
        for s in &service.slos {
            let series = slo::series(&s.sli, alb);
            if let Ok(series) = &series {
                slo::plan(spec, s, series, plan);
            }
            slos.push((name, service, s, series));
        }
    }
    slos
}

/// Runs every selected check: those that read no metrics while the metrics are fetched, the
/// others after. Outcomes are in the order of `selected`; the data is `None` when the
/// deadline came before the metrics did.
async fn run_checks(
    aws: &Aws,
    selected: &[Selected<'_>],
    wants: &[Result<Vec<Want>, CallError>],
    plan: &MetricsPlan,
    now: u64,
    deadline: Option<Instant>,
) -> (Vec<Result<Outcome, CallError>>, Option<metrics::MetricData>) {
    let fetch = async {
        if plan.is_empty() {
            Some(metrics::MetricData::default())
        } else {
            let read = metrics::fetch(&aws.cloudwatch, plan, now);
            match deadline {
                Some(d) => tokio::time::timeout(d.saturating_duration_since(Instant::now()), read)
                    .await
                    .ok(),
                None => Some(read.await),
            }
        }
    };
    let no_data = metrics::MetricData::default();
    let needs_data =
        |wants: &Result<Vec<Want>, CallError>| wants.as_ref().is_ok_and(|w| !w.is_empty());
    let independent = join_all(
        selected
            .iter()
            .zip(wants)
            .filter(|(_, w)| !needs_data(w))
            .map(|((_, _, _, check), w)| run_check(check, aws, w, &no_data, deadline)),
    );
    let (independent, data) = tokio::join!(independent, fetch);
    let fetched = data.as_ref().unwrap_or(&no_data);
    let dependent = join_all(
        selected
            .iter()
            .zip(wants)
            .filter(|(_, w)| needs_data(w))
            .map(|((_, _, _, check), w)| run_check(check, aws, w, fetched, deadline)),
    )
    .await;
    let (mut independent, mut dependent) = (independent.into_iter(), dependent.into_iter());
    let outcomes = wants
        .iter()
        .map(|w| {
            if needs_data(w) {
                dependent.next()
            } else {
                independent.next()
            }
        })
        .map(|o| o.unwrap_or_else(|| Err(CallError::bad_data("internal: outcome missing"))))
        .collect();
    (outcomes, data)
}

/// A check's finding: its verdict, or `unknown` when it could not run.
fn check_finding(
    service_name: &str,
    service: &Service,
    check: &CheckSpec,
    outcome: Result<Outcome, CallError>,
) -> Finding {
    let kind = check.kind();
    let target = check.target();
    let mut finding = Finding {
        fingerprint: Finding::fingerprint_of(kind, service_name, &target),
        status: Status::Ok,
        severity: check.severity(),
        service: service_name.to_string(),
        module: service.module.clone(),
        kind: kind.into(),
        target: target.clone(),
        labels: service.labels.clone(),
        summary: String::new(),
        details: Vec::new(),
        values: Default::default(),
    };
    match outcome {
        Ok(outcome) => {
            finding.status = if outcome.healthy {
                Status::Ok
            } else {
                Status::Firing
            };
            finding.summary = outcome.summary;
            finding.details = outcome.details;
            finding.values = outcome.values;
        }
        Err(e) => {
            tracing::warn!(check = kind, %target, error = %e, error_kind = ?e.kind, "check could not run");
            finding.mark_unknown(format!("{kind} {target}: could not check: {e}"));
        }
    }
    finding
}

/// Runs one check with its planned series, within the time limit.
async fn run_check(
    check: &AnyCheck<'_>,
    aws: &Aws,
    wants: &Result<Vec<Want>, CallError>,
    data: &metrics::MetricData,
    deadline: Option<Instant>,
) -> Result<Outcome, CallError> {
    let wants = wants.as_ref().map_err(Clone::clone)?;
    Limit::for_step(deadline)
        .run(check.run(aws, wants, data), "")
        .await
}
