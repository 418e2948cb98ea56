//! New Relic dashboards as the variables of NerdGraph's `dashboardCreate(accountId, dashboard)`
//! mutation: pages of widgets on New Relic's 12-column grid, NRQL on the metric names the agent
//! sends through OTLP (`requests`, `errors`, `requests_under_threshold`, `latency` with the
//! `service`, `route` and `threshold_ms` attributes).

use serde_json::{Value, json};

use super::cloudwatch::{fmt_num, slo_dashboard_name};
use super::layout::{Layout, Whole};
use super::model::{NrSli, SloModel};
use crate::spec::{BurnRateAlert, MetricRef, Severity, Spec, SpecError};

pub const COLUMNS: u32 = 12;

/// NRQL words that cannot be used as bare attribute or metric names.
const RESERVED: &[&str] = &[
    "ago",
    "and",
    "as",
    "auto",
    "begin",
    "begintime",
    "by",
    "compare",
    "day",
    "days",
    "end",
    "endtime",
    "explain",
    "facet",
    "false",
    "from",
    "hour",
    "hours",
    "in",
    "is",
    "like",
    "limit",
    "minute",
    "minutes",
    "month",
    "months",
    "not",
    "null",
    "offset",
    "or",
    "order",
    "raw",
    "second",
    "seconds",
    "select",
    "since",
    "timeseries",
    "true",
    "until",
    "week",
    "weeks",
    "where",
    "with",
    "year",
    "years",
];

/// A metric or attribute name as NRQL needs it: bare when plain, in backticks otherwise.
/// A name containing a backtick cannot be written in NRQL at all.
pub fn ident(name: &str) -> Result<String, String> {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !RESERVED.contains(&name.to_ascii_lowercase().as_str());
    if plain {
        Ok(name.to_string())
    } else if name.contains('`') || name.is_empty() {
        Err(format!(
            "`{name}` cannot be written in NRQL (a name may not contain a backtick or be empty)"
        ))
    } else {
        Ok(format!("`{name}`"))
    }
}

/// A string literal: single quotes, with `\` and `'` escaped.
pub fn string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// NRQL's relative time for `SINCE ... ago` / `TIMESERIES ...`.
fn nrql_span(secs: u64) -> String {
    let (n, unit) = match Whole::of(secs) {
        Whole::Days(n) => (n, "days"),
        Whole::Hours(n) => (n, "hours"),
        Whole::Minutes(n) => (n, "minutes"),
    };
    format!("{n} {unit}")
}

/// The pieces of NRQL one SLI needs: the bad and total aggregates and the WHERE clause.
struct Nrql {
    bad: String,
    total: String,
    filter: String,
}

fn filter(dims: &std::collections::BTreeMap<String, String>) -> Result<String, String> {
    let mut parts = Vec::new();
    for (k, v) in dims {
        parts.push(format!("{} = {}", ident(k)?, string(v)));
    }
    Ok(parts.join(" AND "))
}

fn nrql_for(slo: &SloModel) -> Result<Option<Nrql>, SpecError> {
    let err = |key: String, message: String| SpecError {
        file: slo.file.clone(),
        line: None,
        column: None,
        key,
        message,
    };
    let sli_key = format!("{}.sli", slo.key);
    Ok(match &slo.nr {
        NrSli::CloudWatchOnly => None,
        NrSli::Span {
            service,
            route,
            threshold_ms,
        } => {
            let base = format!(
                "service = {} AND route = {}",
                string(service),
                string(route)
            );
            match threshold_ms {
                None => Some(Nrql {
                    bad: "sum(errors)".into(),
                    total: "sum(requests)".into(),
                    filter: base,
                }),
                // Attributes must hold on both aggregates: filter() each one.
                Some(t) => Some(Nrql {
                    bad: format!(
                        "(sum(requests) - filter(sum(requests_under_threshold), WHERE threshold_ms = {}))",
                        string(&t.to_string())
                    ),
                    total: "sum(requests)".into(),
                    filter: base,
                }),
            }
        }
        NrSli::Counter {
            good_or_bad,
            total,
            is_good,
        } => {
            let variant = if *is_good {
                "good_over_total"
            } else {
                "bad_over_total"
            };
            let name = |m: &MetricRef, which: &str| {
                ident(&m.metric).map_err(|e| err(format!("{sli_key}.{variant}.{which}.metric"), e))
            };
            let dims = |m: &MetricRef, which: &str| {
                filter(&m.dimensions)
                    .map_err(|e| err(format!("{sli_key}.{variant}.{which}.dimensions"), e))
            };
            let which = if *is_good { "good" } else { "bad" };
            let (counter, total_name) = (name(good_or_bad, which)?, name(total, "total")?);
            let (counter_filter, total_filter) = (dims(good_or_bad, which)?, dims(total, "total")?);
            let wrap = |agg: String, f: &str| {
                if f.is_empty() {
                    agg
                } else {
                    format!("filter({agg}, WHERE {f})")
                }
            };
            let counter_sum = wrap(format!("sum({counter})"), &counter_filter);
            let total_sum = wrap(format!("sum({total_name})"), &total_filter);
            Some(Nrql {
                bad: if *is_good {
                    format!("({total_sum} - {counter_sum})")
                } else {
                    counter_sum
                },
                total: total_sum,
                filter: String::new(),
            })
        }
    })
}

impl Nrql {
    fn query(&self, select: String, tail: &str) -> String {
        let filter = if self.filter.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.filter)
        };
        format!("FROM Metric SELECT {select}{filter} {tail}")
    }

    fn sli(&self) -> String {
        // NRQL divides by zero to null: no events shows as no value, never as 100 %.
        format!("100 * (1 - {} / {}) AS 'SLI %'", self.bad, self.total)
    }

    fn burn(&self, budget: f64, label: &str) -> String {
        format!(
            "({} / {}) / {} AS '{}'",
            self.bad,
            self.total,
            fmt_num(budget),
            label
        )
    }
}

struct Page {
    account: u64,
    widgets: Vec<Value>,
    layout: Layout,
}

impl Page {
    fn new(account: u64) -> Page {
        Page {
            account,
            widgets: Vec::new(),
            layout: Layout::new(COLUMNS, 1),
        }
    }

    fn place(&mut self, width: u32, height: u32, title: String, viz: &str, raw: Value) {
        let (column, row) = self.layout.place(width, height);
        self.widgets.push(json!({
            "title": title,
            "layout": { "column": column, "row": row, "width": width, "height": height },
            "visualization": { "id": viz },
            "rawConfiguration": raw,
        }));
    }

    fn new_row(&mut self) {
        self.layout.new_row();
    }

    fn markdown(&mut self, width: u32, height: u32, text: String) {
        self.place(
            width,
            height,
            String::new(),
            "viz.markdown",
            json!({ "text": text }),
        );
    }

    fn nrql(
        &mut self,
        width: u32,
        height: u32,
        title: String,
        viz: &str,
        query: String,
        extra: Value,
    ) {
        let mut raw = json!({ "nrqlQueries": [{ "accountIds": [self.account], "query": query }] });
        if let (Some(raw), Some(extra)) = (raw.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                raw.insert(k.clone(), v.clone());
            }
        }
        self.place(width, height, title, viz, raw);
    }

    fn finish(self, name: String, description: String) -> Value {
        json!({ "name": name, "description": description, "widgets": self.widgets })
    }
}

fn thresholds(alert: &crate::spec::BurnRateAlert) -> Value {
    let severity = match alert.severity {
        Severity::Page => "critical",
        Severity::Ticket => "warning",
    };
    json!({ "thresholds": { "isLabelVisible": true, "thresholds": [{
        "from": alert.factor,
        "name": format!("{} at {}×", alert.severity, fmt_num(alert.factor)),
        "severity": severity,
    }] } })
}

fn slo_page(slo: &SloModel, nrql: Option<&Nrql>, account: u64) -> Value {
    let mut page = Page::new(account);
    let mut text = slo_intro(slo);
    let Some(q) = nrql else {
        text.push_str(&format!(
            "\nThis SLI is measured from AWS metrics that only CloudWatch has: see the CloudWatch dashboard `{}`.",
            slo_dashboard_name(slo)
        ));
        page.markdown(12, 4, text);
        return page.finish(slo.id(), format!("SLO {}", slo.id()));
    };
    text.push_str("\nA missing value means no events (never 100 %).");
    page.markdown(12, 4, text);
    let period = slo.slo.period.as_secs();
    page.nrql(
        4,
        3,
        format!("SLI and budget left over {}", slo.slo.period),
        "viz.billboard",
        q.query(
            format!(
                "{}, 100 * (1 - ({} / {}) / {}) AS 'error budget left %', {} AS 'events'",
                q.sli(),
                q.bad,
                q.total,
                fmt_num(slo.budget()),
                q.total
            ),
            &format!("SINCE {} ago", nrql_span(period)),
        ),
        json!({}),
    );
    page.nrql(
        8,
        3,
        format!("SLI over {}", slo.slo.period),
        "viz.line",
        q.query(
            q.sli(),
            &format!("TIMESERIES 1 hour SINCE {} ago", nrql_span(period)),
        ),
        json!({ "yAxisLeft": { "zero": false } }),
    );
    for a in slo.alerts {
        alert_widgets(&mut page, slo, q, a, account);
    }
    page.finish(slo.id(), format!("SLO {}", slo.id()))
}

/// An SLO page's heading: objective, alerts and runbook.
fn slo_intro(slo: &SloModel) -> String {
    let mut text = format!(
        "# {} / {}\n{}\n\nObjective **{}%** over {} (error budget {}%). Pages when **both** windows of an alert burn at least the factor:\n\n",
        slo.service,
        slo.slo.name,
        slo.slo.description.clone().unwrap_or_default(),
        fmt_num(slo.slo.objective),
        slo.slo.period,
        fmt_num(slo.budget() * 100.0),
    );
    for a in slo.alerts {
        text.push_str(&format!(
            "- **{}**: {} and {} at ≥ {}×\n",
            a.severity,
            a.long,
            a.short,
            fmt_num(a.factor)
        ));
    }
    if let Some(url) = slo.runbook() {
        text.push_str(&format!("\n[Runbook]({url})\n"));
    }
    text
}

/// One alert's widgets: both windows' burn now, and the burn rate over time with its threshold.
fn alert_widgets(page: &mut Page, slo: &SloModel, q: &Nrql, a: &BurnRateAlert, account: u64) {
    page.nrql(
        4,
        3,
        format!("{}: burn now over {} and {}", a.severity, a.long, a.short),
        "viz.billboard",
        // Two queries, each over exactly its window ending now (as the watchdog judges).
        q.query(
            q.burn(slo.budget(), &format!("burn {}", a.long)),
            &format!("SINCE {} ago", nrql_span(a.long.as_secs())),
        ),
        json!({ "thresholds": [{ "alertSeverity": "CRITICAL", "value": a.factor }] }),
    );
    let short = q.query(
        q.burn(slo.budget(), &format!("burn {}", a.short)),
        &format!("SINCE {} ago", nrql_span(a.short.as_secs())),
    );
    if let Some(queries) = page
        .widgets
        .last_mut()
        .and_then(|w| w["rawConfiguration"]["nrqlQueries"].as_array_mut())
    {
        queries.push(json!({ "accountIds": [account], "query": short }));
    }
    page.nrql(
        8,
        3,
        format!(
            "{}: burn rate per {} with the {}× threshold",
            a.severity,
            a.short,
            fmt_num(a.factor)
        ),
        "viz.line",
        q.query(
            q.burn(slo.budget(), "burn"),
            &format!(
                "TIMESERIES {} SINCE {} ago",
                nrql_span(a.short.as_secs().max(60)),
                nrql_span((a.long.as_secs() * 4).max(3 * 3600))
            ),
        ),
        thresholds(a),
    );
}

/// The NerdGraph variables of one dashboard: overview page, then one page per SLO.
pub fn dashboard(spec: &Spec, slos: &[SloModel], account: u64) -> Result<Value, Vec<SpecError>> {
    let mut errors = Vec::new();
    let mut queries = Vec::new();
    for slo in slos {
        match nrql_for(slo) {
            Ok(q) => queries.push(q),
            Err(e) => {
                errors.push(e);
                queries.push(None);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut overview = Page::new(account);
    overview.markdown(
        12,
        2,
        if slos.is_empty() {
            "# Vigil overview\n**No SLOs are declared** in `alerts/`: only module traffic is shown.".into()
        } else {
            "# Vigil overview\nEvery SLO against its objective (one page each follows), module traffic from the agent's span metrics. A missing value means no events, never 100 %.".into()
        },
    );
    for (slo, q) in slos.iter().zip(&queries) {
        match q {
            Some(q) => overview.nrql(
                3,
                3,
                format!("{} (objective {}%)", slo.id(), fmt_num(slo.slo.objective)),
                "viz.billboard",
                q.query(q.sli(), &format!("SINCE {} ago", nrql_span(slo.slo.period.as_secs()))),
                json!({ "thresholds": [{ "alertSeverity": "CRITICAL", "value": slo.slo.objective }] }),
            ),
            None => overview.markdown(
                3,
                3,
                format!(
                    "**{}** (objective {}%)\n\nMeasured from AWS metrics in CloudWatch: dashboard `{}`.",
                    slo.id(),
                    fmt_num(slo.slo.objective),
                    slo_dashboard_name(slo)
                ),
            ),
        }
    }
    overview.new_row();
    for (module, services) in super::model::span_services(spec) {
        let list: Vec<String> = services.iter().map(|s| string(s)).collect();
        let filter = format!("service IN ({})", list.join(", "));
        overview.nrql(
            6,
            3,
            format!("{module}: requests and errors"),
            "viz.line",
            format!("FROM Metric SELECT sum(requests) AS 'requests', sum(errors) AS 'errors' WHERE {filter} TIMESERIES 1 minute SINCE 6 hours ago"),
            json!({}),
        );
        overview.nrql(
            6,
            3,
            format!("{module}: p95 latency (ms)"),
            "viz.line",
            format!("FROM Metric SELECT percentile(latency, 95) AS 'p95 ms' WHERE {filter} TIMESERIES 1 minute SINCE 6 hours ago"),
            json!({}),
        );
    }
    let mut pages = vec![overview.finish("Overview".into(), "Every SLO and module".into())];
    for (slo, q) in slos.iter().zip(&queries) {
        pages.push(slo_page(slo, q.as_ref(), account));
    }
    Ok(json!({
        "accountId": account,
        "dashboard": {
            "name": "Vigil SLOs",
            "description": "Generated by vigil-watchdog render from alerts/; do not edit by hand.",
            "permissions": "PUBLIC_READ_ONLY",
            "pages": pages,
        }
    }))
}
