//! What every generated view draws, resolved once from the spec: each SLO with its alerts and
//! the exact CloudWatch series behind its SLI (load balancers named plainly in the spec are
//! turned into dimension values through `infrastructure.load_balancers`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::slo::CwSli;
use crate::slo::cloudwatch_sli;
use crate::spec::{BurnRateAlert, MetricRef, Service, Sli, Slo, Spec, SpecError};

/// The span-metric series New Relic receives through OTLP for this SLI, when it has one.
#[derive(Clone, Debug)]
pub enum NrSli {
    Span {
        service: String,
        route: String,
        /// `Some` for latency SLIs (`requests_under_threshold`).
        threshold_ms: Option<u32>,
    },
    /// A counter the agent ships under its own name (namespace `Vigil/...`).
    Counter {
        good_or_bad: MetricRef,
        total: MetricRef,
        is_good: bool,
    },
    /// Data that only CloudWatch has (AWS/* metrics).
    CloudWatchOnly,
}

#[derive(Clone, Debug)]
pub struct SloModel<'a> {
    pub service: &'a str,
    pub spec_service: &'a Service,
    pub slo: &'a Slo,
    pub alerts: &'a [BurnRateAlert],
    pub min_events: u64,
    pub cw: CwSli,
    pub nr: NrSli,
    /// Where the SLO is declared, for messages and the dashboards' text.
    pub file: PathBuf,
    /// Its place in the file, e.g. `services.checkout.slos[0]`.
    pub key: String,
}

impl SloModel<'_> {
    /// `<service>-<slo>`: unique, and made of the characters dashboard names allow.
    pub fn id(&self) -> String {
        format!("{}-{}", self.service, self.slo.name)
    }

    /// The error budget as a fraction (validated: objective strictly between 0 and 100).
    pub fn budget(&self) -> f64 {
        1.0 - self.slo.objective / 100.0
    }

    pub fn runbook(&self) -> Option<&str> {
        self.spec_service.labels.get("runbook").map(String::as_str)
    }
}

fn error(file: &Path, key: String, message: String) -> SpecError {
    SpecError {
        file: file.to_path_buf(),
        line: None,
        column: None,
        key,
        message,
    }
}

/// `value` itself when it is a dimension value already (it has a `/`), else what
/// `infrastructure:` declares for the name.
fn dimension(
    value: &str,
    declared: Option<&String>,
    missing: impl FnOnce() -> SpecError,
) -> Result<String, SpecError> {
    if value.contains('/') {
        return Ok(value.to_string());
    }
    declared.cloned().ok_or_else(missing)
}

/// ALB dimension values for an SLI's load balancer and target group.
fn alb_dimensions(
    spec: &Spec,
    file: &Path,
    key: &str,
    load_balancer: &str,
    target_group: &str,
) -> Result<(String, String), SpecError> {
    let declared = &spec.infrastructure.load_balancers;
    let lb = dimension(
        load_balancer,
        declared.get(load_balancer).map(|lb| &lb.dimension),
        || {
            error(
                file,
                format!("{key}.load_balancer"),
                format!(
                    "`{load_balancer}` is a name; dashboards and alarms need its CloudWatch dimension: \
                     declare infrastructure.load_balancers.{load_balancer}.dimension (app/{load_balancer}/<id>)"
                ),
            )
        },
    )?;
    let tg = dimension(
        target_group,
        declared
            .values()
            .find_map(|lb| lb.target_groups.get(target_group)),
        || {
            error(
                file,
                format!("{key}.target_group"),
                format!(
                    "`{target_group}` is a name; dashboards and alarms need its CloudWatch dimension: \
                     declare it under infrastructure.load_balancers.<load balancer>.target_groups \
                     (targetgroup/{target_group}/<id>)"
                ),
            )
        },
    )?;
    Ok((lb, tg))
}

fn resolve<'a>(
    spec: &'a Spec,
    service: &'a str,
    spec_service: &'a Service,
    index: usize,
    slo: &'a Slo,
) -> Result<SloModel<'a>, SpecError> {
    let file = spec
        .sources
        .get(service)
        .cloned()
        .unwrap_or_else(|| PathBuf::from("alerts/"));
    let key = format!("services.{service}.slos[{index}]");
    let sli_key = format!("{key}.sli");
    let (cw, nr) = series_of(spec, &file, &sli_key, &slo.sli)?;
    let (alerts, min_events) = spec.alerts_for(slo);
    if alerts.is_empty() {
        return Err(error(
            &file,
            format!("{key}.burn_rate_alerts"),
            "no burn-rate alerts: nothing would page, and the dashboards would have no thresholds to draw"
                .into(),
        ));
    }
    Ok(SloModel {
        service,
        spec_service,
        slo,
        alerts,
        min_events,
        cw,
        nr,
        file,
        key,
    })
}

/// The series an SLI reads in CloudWatch and what New Relic has of it.
fn series_of(
    spec: &Spec,
    file: &Path,
    sli_key: &str,
    sli: &Sli,
) -> Result<(CwSli, NrSli), SpecError> {
    let key = match sli {
        Sli::AlbAvailability { .. } => format!("{sli_key}.alb_availability"),
        _ => format!("{sli_key}.alb_latency"),
    };
    let cw = cloudwatch_sli(sli, |lb, tg| alb_dimensions(spec, file, &key, lb, tg))?;
    let nr = match sli {
        Sli::SpanErrors { service, route } => NrSli::Span {
            service: service.clone(),
            route: route.clone(),
            threshold_ms: None,
        },
        Sli::SpanLatency {
            service,
            route,
            threshold_ms,
        } => NrSli::Span {
            service: service.clone(),
            route: route.clone(),
            threshold_ms: Some(*threshold_ms),
        },
        Sli::AlbAvailability { .. } | Sli::AlbLatency { .. } => NrSli::CloudWatchOnly,
        Sli::GoodOverTotal { good, total } => agent_counter(good, total, true),
        Sli::BadOverTotal { bad, total } => agent_counter(bad, total, false),
    };
    Ok((cw, nr))
}

/// Counters in a `Vigil/...` namespace come from the agent, which ships the same metric to New
/// Relic under its own name; anything else only CloudWatch has.
fn agent_counter(counter: &MetricRef, total: &MetricRef, is_good: bool) -> NrSli {
    if counter.namespace.starts_with("Vigil/") && total.namespace.starts_with("Vigil/") {
        NrSli::Counter {
            good_or_bad: counter.clone(),
            total: total.clone(),
            is_good,
        }
    } else {
        NrSli::CloudWatchOnly
    }
}

/// Every SLO of the spec, in service then declaration order; all problems at once.
pub fn slos(spec: &Spec) -> Result<Vec<SloModel<'_>>, Vec<SpecError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (name, service) in &spec.services {
        for (i, slo) in service.slos.iter().enumerate() {
            match resolve(spec, name, service, i, slo) {
                Ok(model) => out.push(model),
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Span-metric service names per platform module: the spec's service keys (the shop names its
/// OpenTelemetry services after them) plus any other service a span SLI names.
pub fn span_services(spec: &Spec) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, service) in &spec.services {
        let Some(module) = &service.module else {
            continue;
        };
        let names = out.entry(module.clone()).or_default();
        names.push(name.clone());
        for slo in &service.slos {
            if let Sli::SpanErrors { service, .. } | Sli::SpanLatency { service, .. } = &slo.sli
                && !names.contains(service)
            {
                names.push(service.clone());
            }
        }
    }
    out
}
