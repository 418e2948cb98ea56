//! CloudWatch dashboards as PutDashboard `DashboardBody` JSON: the overview, one per SLO and the
//! infrastructure dashboard. Arithmetic on counts is CloudWatch metric math, evaluated
//! server-side; every SLI expression is guarded so that a window without events draws nothing
//! ("no data") instead of 100 %.

use serde_json::{Value, json};

use super::layout::{Layout, Whole};
use super::model::{CwSli, SloModel};
use crate::spec::infrastructure::{Infrastructure, WebAclScope};
use crate::spec::{MetricRef, Severity, Spec};

/// Widgets are placed left to right on CloudWatch's 24-column grid, wrapping to a new row.
struct Grid {
    widgets: Vec<Value>,
    layout: Layout,
}

pub const COLUMNS: u32 = 24;

impl Grid {
    fn new() -> Grid {
        Grid {
            widgets: Vec::new(),
            layout: Layout::new(COLUMNS, 0),
        }
    }

    fn place(&mut self, width: u32, height: u32, kind: &str, properties: Value) {
        let (x, y) = self.layout.place(width, height);
        self.widgets.push(json!({
            "type": kind,
            "x": x,
            "y": y,
            "width": width,
            "height": height,
            "properties": properties,
        }));
    }

    fn new_row(&mut self) {
        self.layout.new_row();
    }

    fn text(&mut self, width: u32, height: u32, markdown: String) {
        self.place(width, height, "text", json!({ "markdown": markdown }));
    }

    fn body(self, start: &str) -> Value {
        json!({ "start": start, "periodOverride": "inherit", "widgets": self.widgets })
    }
}

/// One `metrics` array entry for a metric: namespace, name, dimension pairs, options.
pub fn metric_entry(m: &MetricRef, options: Value) -> Value {
    let mut entry = vec![json!(m.namespace), json!(m.metric)];
    for (k, v) in &m.dimensions {
        entry.push(json!(k));
        entry.push(json!(v));
    }
    entry.push(options);
    Value::Array(entry)
}

fn expression(id: &str, expression: String, label: &str) -> Value {
    json!([{ "id": id, "expression": expression, "label": label }])
}

/// Duration as ISO 8601 for a widget's relative `start` (`-PT6H`, `-P30D`).
fn iso_ago(secs: u64) -> String {
    match Whole::of(secs) {
        Whole::Days(n) => format!("-P{n}D"),
        Whole::Hours(n) => format!("-PT{n}H"),
        Whole::Minutes(n) => format!("-PT{n}M"),
    }
}

/// The hidden per-bucket queries of an SLI; defines `total` and `bad` (as expressions or
/// metrics) for the expressions that follow.
fn sli_queries(slo: &SloModel, period: u64) -> (Vec<Value>, &'static str, &'static str) {
    let hidden = |id: &str, stat: &str| json!({ "id": id, "stat": stat, "period": period, "visible": false });
    match &slo.cw {
        CwSli::Bad { bad, total } => (
            vec![
                metric_entry(total, hidden("total", "Sum")),
                metric_entry(bad, hidden("badraw", "Sum")),
            ],
            "total",
            // A bucket without a bad-event point had no bad events.
            "FILL(badraw,0)",
        ),
        CwSli::Good { good, total } => (
            vec![
                metric_entry(total, hidden("total", "Sum")),
                metric_entry(good, hidden("good", "Sum")),
            ],
            "total",
            // Never below zero: the two counters are published separately.
            "MAX([total-FILL(good,0),total*0])",
        ),
        CwSli::RankedBelow {
            latency,
            threshold_ms,
        } => {
            // TargetResponseTime is in seconds; PR(:t) is the percent of samples at or below t.
            let rank = format!("PR(:{})", *threshold_ms as f64 / 1000.0);
            (
                vec![
                    metric_entry(latency, hidden("total", "SampleCount")),
                    metric_entry(latency, hidden("rank", rank.as_str())),
                ],
                "total",
                "total*(100-rank)/100",
            )
        }
    }
}

/// The metrics of a widget that shows one expression of `total`/`bad` over `period` buckets.
fn sli_widget_metrics(slo: &SloModel, period: u64, exprs: &[(&str, String, &str)]) -> Vec<Value> {
    let (mut metrics, total, bad) = sli_queries(slo, period);
    metrics
        .push(json!([{ "id": "bad", "expression": bad, "label": "bad events", "visible": false }]));
    let _ = total;
    for (id, e, label) in exprs {
        metrics.push(expression(id, e.clone(), label));
    }
    metrics
}

/// SLI in percent; no events = no point (never 100 %).
fn sli_expr() -> String {
    "IF(total>0, 100*(1-bad/total))".into()
}

/// Numbers printed without float noise (0.1 % budget is 0.001, not 0.0010000000000000009).
pub fn fmt_num(x: f64) -> String {
    let s = format!("{:.10}", x);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn alert_title(a: &crate::spec::BurnRateAlert) -> String {
    format!(
        "{}: burn over {} and {} ≥ {}×",
        a.severity,
        a.long,
        a.short,
        fmt_num(a.factor)
    )
}

fn severity_colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Page => "#d62728",
        Severity::Ticket => "#ff7f0e",
    }
}

/// Dashboard names: letters, digits, `-` and `_` only.
pub fn slo_dashboard_name(slo: &SloModel) -> String {
    format!("vigil-slo-{}", slo.id())
}

fn console_link(region: &str, dashboard: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards:name={dashboard}"
    )
}

/// Markdown cannot contain an unescaped `|` in a table cell or stray markup from spec text.
fn md(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('*', "\\*")
        .replace('_', "\\_")
        .replace('[', "\\[")
        .replace(']', "\\]")
        .replace('<', "&lt;")
}

fn what_pages(slo: &SloModel) -> String {
    let period_hours = slo.slo.period.as_secs() as f64 / 3600.0;
    let mut lines = vec![
        "| severity | long window | short window | factor | means |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    for a in slo.alerts {
        let share = a.factor * a.long.as_secs() as f64 / 3600.0 / period_hours * 100.0;
        lines.push(format!(
            "| **{}** | {} | {} | {}× | {}% of the {} budget spent in {} |",
            a.severity,
            a.long,
            a.short,
            fmt_num(a.factor),
            fmt_num((share * 10.0).round() / 10.0),
            slo.slo.period,
            a.long
        ));
    }
    lines.join("\n")
}

fn slo_header(slo: &SloModel, region: &str) -> String {
    let mut text = format!(
        "# {} / {}\n{}\n\n**Objective {}%** of events good over {} (error budget {}%). \
         An alert fires only when **both** of its windows burn the budget at least *factor* times \
         faster than allowed, and only with at least {} events in the long window \
         (the low-traffic guard):\n\n{}\n\n",
        md(slo.service),
        md(&slo.slo.name),
        slo.slo.description.as_deref().map(md).unwrap_or_default(),
        fmt_num(slo.slo.objective),
        slo.slo.period,
        fmt_num(slo.budget() * 100.0),
        slo.min_events,
        what_pages(slo)
    );
    if let Some(since) = &slo.slo.objective_since {
        text.push_str(&format!(
            "**The objective changed at {since}** (the vertical line): events before it were promised \
             another objective, so the SLI and budget over the whole {} mix both; \
             `vigil-watchdog report` measures the budget from {since} on.\n\n",
            slo.slo.period
        ));
    }
    text.push_str(&format!(
        "Pages go out as finding `slo:{}:{}` (declared in {} at `{}`). \
         Gaps in the graphs mean **no data**: no events were counted, which is never shown as 100 %.",
        slo.service,
        slo.slo.name,
        // The file name only: the output must not depend on where the spec was read from.
        md(&slo
            .file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())),
        slo.key
    ));
    match slo.runbook() {
        Some(url) => text.push_str(&format!("\n\n[button:primary:Runbook]({url})")),
        None => text.push_str("\n\nNo runbook: add a `runbook` label to the service."),
    }
    text.push_str(&format!(
        " [button:Overview]({})",
        console_link(region, "vigil-overview")
    ));
    text
}

fn single_values(slo: &SloModel, region: &str) -> Value {
    let period = slo.slo.period.as_secs();
    let metrics = sli_widget_metrics(
        slo,
        period,
        &[
            ("sli", sli_expr(), "SLI %"),
            (
                "budgetleft",
                format!("IF(total>0, 100*(1-(bad/total)/{}))", fmt_num(slo.budget())),
                "error budget left %",
            ),
            ("events", "total".into(), "events"),
        ],
    );
    json!({
        "title": format!("{} over {} (objective {}%)", slo.slo.name, slo.slo.period, fmt_num(slo.slo.objective)),
        "view": "singleValue",
        "region": region,
        "metrics": metrics,
        "period": period,
        "start": iso_ago(period),
        "setPeriodToTimeRange": true,
        "singleValueFullPrecision": true,
    })
}

/// A graph period that gives at most ~720 points over `range` and is a multiple of a minute.
fn bucket_for(range: u64) -> u64 {
    let raw = (range / 720).max(60);
    [60, 300, 900, 3600, 21_600, 86_400]
        .into_iter()
        .find(|p| *p >= raw)
        .unwrap_or(86_400)
}

fn sli_over_period(slo: &SloModel, region: &str) -> Value {
    let range = slo.slo.period.as_secs();
    let period = bucket_for(range);
    json!({
        "title": format!("SLI per {} over {}", crate::spec::Span::from_secs(period), slo.slo.period),
        "view": "timeSeries",
        "region": region,
        "metrics": sli_widget_metrics(slo, period, &[("sli", sli_expr(), "SLI %")]),
        "period": period,
        "start": iso_ago(range),
        "yAxis": { "left": { "label": "% good", "showUnits": false } },
        "annotations": with_objective_change(slo, json!({ "horizontal": [
            { "label": format!("objective {}%", fmt_num(slo.slo.objective)), "value": slo.slo.objective, "color": "#d62728" }
        ] })),
    })
}

/// Marks the moment the objective changed with a vertical annotation.
fn with_objective_change(slo: &SloModel, mut annotations: Value) -> Value {
    if let Some(since) = &slo.slo.objective_since {
        annotations["vertical"] = json!([{
            "label": format!("objective {}% since", fmt_num(slo.slo.objective)),
            "value": since,
        }]);
    }
    annotations
}

fn burn_down(slo: &SloModel, region: &str) -> Value {
    let range = slo.slo.period.as_secs();
    let period = bucket_for(range);
    let budget = fmt_num(slo.budget());
    let metrics = sli_widget_metrics(
        slo,
        period,
        &[
            (
                "ctotal",
                "RUNNING_SUM(FILL(total,0))".into(),
                "events so far",
            ),
            (
                "cbad",
                "RUNNING_SUM(FILL(bad,0))".into(),
                "bad events so far",
            ),
            (
                "left",
                format!("IF(ctotal>0, 100*(1-cbad/({budget}*ctotal)))"),
                "error budget left %",
            ),
        ],
    );
    // Only the budget line is drawn; the running sums are its inputs.
    let metrics: Vec<Value> = metrics
        .into_iter()
        .map(|mut m| {
            if let Some(opts) = m.as_array_mut().and_then(|a| a.last_mut())
                && (opts["id"] == "ctotal" || opts["id"] == "cbad")
            {
                opts["visible"] = json!(false);
            }
            m
        })
        .collect();
    json!({
        "title": format!("Error budget left over {} (burn-down)", slo.slo.period),
        "view": "timeSeries",
        "region": region,
        "metrics": metrics,
        "period": period,
        "start": iso_ago(range),
        "yAxis": { "left": { "label": "% of budget left", "showUnits": false, "max": 100 } },
        "annotations": with_objective_change(slo, json!({ "horizontal": [
            { "label": "budget spent", "value": 0, "color": "#d62728" }
        ] })),
    })
}

/// Both windows of one alert as tumbling buckets of their own length, and the factor.
fn alert_windows(slo: &SloModel, alert: &crate::spec::BurnRateAlert, region: &str) -> Value {
    let mut metrics = Vec::new();
    for (suffix, window) in [("long", alert.long), ("short", alert.short)] {
        let period = window.as_secs().div_ceil(60) * 60;
        let (queries, _, bad) = sli_queries(slo, period);
        // Each window's queries need their own ids.
        for mut q in queries {
            if let Some(opts) = q.as_array_mut().and_then(|a| a.last_mut()) {
                let id = opts["id"].as_str().unwrap_or_default().to_string();
                opts["id"] = json!(format!("{id}{suffix}"));
            }
            metrics.push(q);
        }
        let rename = |e: &str| {
            e.replace("badraw", &format!("badraw{suffix}"))
                .replace("total", &format!("total{suffix}"))
                .replace("good", &format!("good{suffix}"))
                .replace("rank", &format!("rank{suffix}"))
        };
        let bad = rename(bad);
        let total = format!("total{suffix}");
        metrics.push(json!([{
            "id": format!("burn{suffix}"),
            "expression": format!("IF({total}>0, (({bad})/{total})/{})", fmt_num(slo.budget())),
            "label": format!("burn rate over {window}"),
            "period": period,
        }]));
    }
    let range = (alert.long.as_secs() * 4).max(3 * 3600);
    let color = severity_colour(alert.severity);
    json!({
        "title": alert_title(alert),
        "view": "timeSeries",
        "region": region,
        "metrics": metrics,
        "start": iso_ago(range),
        "period": alert.short.as_secs().div_ceil(60) * 60,
        "yAxis": { "left": { "label": "× budget rate", "showUnits": false, "min": 0 } },
        "annotations": { "horizontal": [
            { "label": format!("{} threshold {}×", alert.severity, fmt_num(alert.factor)), "value": alert.factor,
              "color": color }
        ] },
    })
}

fn events(slo: &SloModel, region: &str) -> Value {
    let period = 300;
    json!({
        "title": "Events and bad events per 5 minutes",
        "view": "timeSeries",
        "region": region,
        "metrics": sli_widget_metrics(slo, period, &[
            ("all", "total".into(), "events"),
            ("badshown", "bad".into(), "bad events"),
        ]),
        "period": period,
        "start": "-PT24H",
    })
}

/// One dashboard per SLO.
pub fn slo_dashboard(slo: &SloModel, region: &str) -> Value {
    let mut grid = Grid::new();
    grid.text(24, 7, slo_header(slo, region));
    grid.place(8, 6, "metric", single_values(slo, region));
    grid.place(8, 6, "metric", sli_over_period(slo, region));
    grid.place(8, 6, "metric", burn_down(slo, region));
    grid.new_row();
    for alert in slo.alerts {
        grid.place(8, 6, "metric", alert_windows(slo, alert, region));
    }
    grid.new_row();
    grid.place(24, 5, "metric", events(slo, region));
    grid.body("-PT24H")
}

/// A SEARCH expression over the agent's span metrics of one service.
fn span_search(metric: &str, service: &str, stat: &str) -> String {
    format!(
        "SEARCH('{{Vigil/SpanMetrics,route,service}} MetricName=\"{metric}\" service=\"{}\"', '{stat}', 60)",
        service
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\'', "\\'")
    )
}

/// The overview: every SLO against its objective, budget left and burn rates; per module
/// requests, errors and latency; agent heartbeats per host.
pub fn overview(spec: &Spec, slos: &[SloModel], region: &str) -> Value {
    let mut grid = Grid::new();
    grid.text(24, 3, overview_intro(slos, region));
    for slo in slos {
        grid.new_row();
        grid.place(8, 5, "metric", single_values(slo, region));
        grid.place(16, 5, "metric", burn_rates(slo, region));
    }
    grid.new_row();
    grid.text(
        24,
        1,
        "## Modules: requests, errors and p95 latency (agent span metrics, all routes)".into(),
    );
    for (module, services) in super::model::span_services(spec) {
        let mut traffic = Vec::new();
        let mut latency = Vec::new();
        for (i, service) in services.iter().enumerate() {
            traffic.push(json!([{ "id": format!("req{i}"), "expression": span_search("requests", service, "Sum"), "label": "requests" }]));
            traffic.push(json!([{ "id": format!("err{i}"), "expression": span_search("errors", service, "Sum"), "label": "errors" }]));
            latency.push(json!([{ "id": format!("lat{i}"), "expression": span_search("latency", service, "p95"), "label": "p95 ms" }]));
        }
        grid.place(
            8,
            5,
            "metric",
            json!({ "title": format!("{module}: requests and errors per minute"), "view": "timeSeries",
                    "region": region, "metrics": traffic, "period": 60 }),
        );
        grid.place(
            4,
            5,
            "metric",
            json!({ "title": format!("{module}: p95 latency (ms)"), "view": "timeSeries",
                    "region": region, "metrics": latency, "period": 60 }),
        );
    }
    grid.new_row();
    grid.place(
        24,
        5,
        "metric",
        json!({
            "title": "Agent heartbeats per host (a missing line = an agent that stopped)",
            "view": "timeSeries",
            "region": region,
            "metrics": [[{ "id": "hb", "expression": "SEARCH('{Vigil/Agent,host} MetricName=\"heartbeat\"', 'SampleCount', 60)", "label": "" }]],
            "period": 60,
        }),
    );
    grid.body("-PT6H")
}

/// The overview's heading: what it shows, and links to every SLO's dashboard.
fn overview_intro(slos: &[SloModel], region: &str) -> String {
    let mut intro = String::from(
        "# Vigil overview\nEvery SLO of `alerts/` against its objective, the error budget left over its \
         period, and the burn rate of each alert's long window with the alert's factor as a line. \
         Gaps mean **no data** (no events), never 100 %.\n\n",
    );
    if slos.is_empty() {
        intro.push_str(
            "**No SLOs are declared** (`services.<name>.slos` is empty in every file): only module traffic and heartbeats are shown.\n",
        );
    } else {
        let links: Vec<String> = slos
            .iter()
            .map(|s| {
                format!(
                    "[{}]({})",
                    md(&s.id()),
                    console_link(region, &slo_dashboard_name(s))
                )
            })
            .collect();
        intro.push_str(&format!(
            "SLO dashboards: {}. Infrastructure: [vigil-infrastructure]({}).",
            links.join(" · "),
            console_link(region, "vigil-infrastructure")
        ));
    }
    intro
}

/// One SLO's burn-rate graph: the long window of every alert, each with its factor as a line.
fn burn_rates(slo: &SloModel, region: &str) -> Value {
    let mut metrics = Vec::new();
    let mut annotations = Vec::new();
    for (i, alert) in slo.alerts.iter().enumerate() {
        let period = alert.long.as_secs().div_ceil(60) * 60;
        let (queries, _, bad) = sli_queries(slo, period);
        let suffix = format!("a{i}");
        for mut q in queries {
            if let Some(opts) = q.as_array_mut().and_then(|a| a.last_mut()) {
                let id = opts["id"].as_str().unwrap_or_default().to_string();
                opts["id"] = json!(format!("{id}{suffix}"));
            }
            metrics.push(q);
        }
        let bad = bad
            .replace("badraw", &format!("badraw{suffix}"))
            .replace("total", &format!("total{suffix}"))
            .replace("good", &format!("good{suffix}"))
            .replace("rank", &format!("rank{suffix}"));
        metrics.push(json!([{
            "id": format!("burn{suffix}"),
            "expression": format!("IF(total{suffix}>0, (({bad})/total{suffix})/{})", fmt_num(slo.budget())),
            "label": format!("burn over {} ({} at {}×)", alert.long, alert.severity, fmt_num(alert.factor)),
            "period": period,
        }]));
        annotations.push(json!({
            "label": format!("{} {}×", alert.severity, fmt_num(alert.factor)),
            "value": alert.factor,
            "color": severity_colour(alert.severity),
        }));
    }
    json!({
        "title": format!("{} burn rates", slo.id()),
        "view": "timeSeries",
        "region": region,
        "metrics": metrics,
        "start": "-P3D",
        "period": 3600,
        "yAxis": { "left": { "label": "× budget rate", "showUnits": false, "min": 0 } },
        "annotations": { "horizontal": annotations },
    })
}

fn graph(title: String, region: &str, metrics: Vec<Value>, period: u64) -> Value {
    json!({ "title": title, "view": "timeSeries", "region": region, "metrics": metrics, "period": period })
}

fn opts(stat: &str, label: &str) -> Value {
    json!({ "stat": stat, "label": label })
}

/// One `metrics` entry for the metric `namespace`/`name` with `dims`.
fn entry(namespace: &str, name: &str, dims: &[(&str, &str)], options: Value) -> Value {
    metric_entry(&MetricRef::new(namespace, name, dims), options)
}

impl Grid {
    /// A time-series graph, 5 rows high.
    fn graph(&mut self, width: u32, title: String, region: &str, metrics: Vec<Value>, period: u64) {
        self.place(width, 5, "metric", graph(title, region, metrics, period));
    }

    /// A section heading on a row of its own.
    fn section(&mut self, title: &str) {
        self.new_row();
        self.text(24, 1, format!("## {title}"));
    }
}

/// The minimum monitoring set: edge, load balancers, hosts, queues, databases, caches, search.
pub fn infrastructure(spec: &Spec, region: &str) -> Value {
    let infra: &Infrastructure = &spec.infrastructure;
    let mut grid = Grid::new();
    grid.text(
        24,
        2,
        "# Vigil infrastructure\nThe minimum monitoring set declared under `infrastructure:` in `alerts/`. \
         Alarms on the same metrics are in `dashboards/alarms/` (names `vigil-page-*` and `vigil-ticket-*`, watched by the `alarms` checks)."
            .into(),
    );
    edge(&mut grid, infra, region);
    load_balancers(&mut grid, infra, region);
    hosts(&mut grid, spec, region);
    queues(&mut grid, infra, region);
    aurora(&mut grid, infra, region);
    dynamodb(&mut grid, infra, region);
    redis(&mut grid, infra, region);
    opensearch(&mut grid, infra, region);
    grid.body("-PT6H")
}

fn edge(grid: &mut Grid, infra: &Infrastructure, region: &str) {
    if infra.cloudfront_distributions.is_empty() && infra.web_acls.is_empty() {
        return;
    }
    grid.section("Edge: CloudFront and WAF");
    let global = "us-east-1";
    for id in &infra.cloudfront_distributions {
        let d = [("DistributionId", id.as_str()), ("Region", "Global")];
        let cf = |name: &str, stat: &str, label: &str| {
            entry("AWS/CloudFront", name, &d, opts(stat, label))
        };
        grid.graph(
            8,
            format!("CloudFront {id}: error rates %"),
            global,
            vec![
                cf("4xxErrorRate", "Average", "4xx %"),
                cf("5xxErrorRate", "Average", "5xx %"),
            ],
            300,
        );
        grid.graph(
            8,
            format!("CloudFront {id}: origin latency (p95, ms)"),
            global,
            vec![cf("OriginLatency", "p95", "origin latency p95")],
            300,
        );
        grid.graph(
            8,
            format!("CloudFront {id}: cache hit ratio %"),
            global,
            vec![cf("CacheHitRate", "Average", "cache hit %")],
            300,
        );
    }
    for acl in &infra.web_acls {
        let (acl_region, dims) = match acl.scope {
            WebAclScope::Cloudfront => {
                (global, vec![("Rule", "ALL"), ("WebACL", acl.name.as_str())])
            }
            WebAclScope::Regional => (
                region,
                vec![
                    ("Region", region),
                    ("Rule", "ALL"),
                    ("WebACL", acl.name.as_str()),
                ],
            ),
        };
        grid.graph(
            8,
            format!("WAF {}: blocked requests", acl.name),
            acl_region,
            vec![entry(
                "AWS/WAFV2",
                "BlockedRequests",
                &dims,
                opts("Sum", "blocked"),
            )],
            300,
        );
    }
}

fn load_balancers(grid: &mut Grid, infra: &Infrastructure, region: &str) {
    if infra.load_balancers.is_empty() {
        return;
    }
    grid.section("Load balancers: target errors, p95 latency, unhealthy hosts");
    for (name, lb) in &infra.load_balancers {
        for (tg, tg_dim) in &lb.target_groups {
            let d = [
                ("LoadBalancer", lb.dimension.as_str()),
                ("TargetGroup", tg_dim.as_str()),
            ];
            let alb =
                |metric: &str, options: Value| entry("AWS/ApplicationELB", metric, &d, options);
            grid.graph(
                8,
                format!("{name} → {tg}: target 5xx and requests"),
                region,
                vec![
                    alb("RequestCount", json!({ "stat": "Sum", "label": "requests", "id": "req" })),
                    alb(
                        "HTTPCode_Target_5XX_Count",
                        json!({ "stat": "Sum", "label": "target 5xx", "id": "e5xx", "yAxis": "right" }),
                    ),
                ],
                60,
            );
            grid.graph(
                8,
                format!("{name} → {tg}: p95 response time (s)"),
                region,
                vec![alb("TargetResponseTime", opts("p95", "p95"))],
                60,
            );
            grid.graph(
                8,
                format!("{name} → {tg}: healthy and unhealthy hosts"),
                region,
                vec![
                    alb("HealthyHostCount", opts("Minimum", "healthy")),
                    alb("UnHealthyHostCount", opts("Maximum", "unhealthy")),
                ],
                60,
            );
        }
    }
}

fn hosts(grid: &mut Grid, spec: &Spec, region: &str) {
    let asgs: Vec<&str> = spec
        .services
        .values()
        .flat_map(|s| &s.checks)
        .filter_map(|c| match c {
            crate::spec::CheckSpec::Asg(a) => Some(a.group.as_str()),
            _ => None,
        })
        .collect();
    if asgs.is_empty() {
        return;
    }
    grid.section("Hosts (Auto Scaling groups)");
    for group in asgs {
        let d = [("AutoScalingGroupName", group)];
        grid.graph(
            6,
            format!("{group}: hosts and CPU"),
            region,
            vec![
                entry(
                    "AWS/AutoScaling",
                    "GroupInServiceInstances",
                    &d,
                    opts("Minimum", "in service"),
                ),
                entry(
                    "AWS/EC2",
                    "CPUUtilization",
                    &d,
                    json!({ "stat": "Average", "label": "CPU %", "yAxis": "right" }),
                ),
            ],
            60,
        );
    }
}

fn queues(grid: &mut Grid, infra: &Infrastructure, region: &str) {
    if infra.queues.is_empty() {
        return;
    }
    grid.section("Queues and dead-letter queues");
    for q in &infra.queues {
        let d = [("QueueName", q.queue.as_str())];
        let mut metrics = vec![
            entry(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                &d,
                opts("Maximum", "visible"),
            ),
            entry(
                "AWS/SQS",
                "ApproximateAgeOfOldestMessage",
                &d,
                json!({ "stat": "Maximum", "label": "oldest (s)", "yAxis": "right" }),
            ),
        ];
        if let Some(dlq) = &q.dlq {
            metrics.push(entry(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                &[("QueueName", dlq.as_str())],
                opts("Maximum", "in the DLQ"),
            ));
        }
        grid.graph(8, format!("SQS {}", q.queue), region, metrics, 300);
    }
}

fn aurora(grid: &mut Grid, infra: &Infrastructure, region: &str) {
    if infra.aurora_clusters.is_empty() {
        return;
    }
    grid.section("Aurora: connections, replication lag, slow queries");
    for c in &infra.aurora_clusters {
        let d = [("DBClusterIdentifier", c.as_str())];
        grid.graph(
            8,
            format!("{c}: connections"),
            region,
            vec![entry(
                "AWS/RDS",
                "DatabaseConnections",
                &d,
                opts("Maximum", "connections"),
            )],
            60,
        );
        grid.graph(
            8,
            format!("{c}: replica lag (ms)"),
            region,
            vec![entry(
                "AWS/RDS",
                "AuroraReplicaLagMaximum",
                &d,
                opts("Maximum", "max replica lag"),
            )],
            60,
        );
        grid.place(8, 5, "log", json!({
            "title": format!("{c}: slow queries per 5 minutes"),
            "region": region,
            "view": "timeSeries",
            "query": format!("SOURCE '/aws/rds/cluster/{c}/slowquery' | stats count(*) as slow_queries by bin(5m)"),
        }));
    }
}

fn dynamodb(grid: &mut Grid, infra: &Infrastructure, region: &str) {
    if infra.dynamodb_tables.is_empty() {
        return;
    }
    grid.section("DynamoDB throttles");
    for t in &infra.dynamodb_tables {
        let d = [("TableName", t.as_str())];
        grid.graph(
            8,
            format!("{t}: throttled reads and writes"),
            region,
            vec![
                entry(
                    "AWS/DynamoDB",
                    "ReadThrottleEvents",
                    &d,
                    opts("Sum", "read throttles"),
                ),
                entry(
                    "AWS/DynamoDB",
                    "WriteThrottleEvents",
                    &d,
                    opts("Sum", "write throttles"),
                ),
            ],
            60,
        );
    }
}

fn redis(grid: &mut Grid, infra: &Infrastructure, region: &str) {
    if infra.redis_clusters.is_empty() {
        return;
    }
    grid.section("Redis (ElastiCache) evictions");
    for c in &infra.redis_clusters {
        let d = [("CacheClusterId", c.as_str())];
        grid.graph(
            8,
            format!("{c}: evictions and memory"),
            region,
            vec![
                entry("AWS/ElastiCache", "Evictions", &d, opts("Sum", "evictions")),
                entry(
                    "AWS/ElastiCache",
                    "DatabaseMemoryUsagePercentage",
                    &d,
                    json!({ "stat": "Maximum", "label": "memory %", "yAxis": "right" }),
                ),
            ],
            60,
        );
    }
}

fn opensearch(grid: &mut Grid, infra: &Infrastructure, region: &str) {
    let (false, Some(account)) = (infra.opensearch_domains.is_empty(), &infra.account_id) else {
        return;
    };
    grid.section("OpenSearch cluster health");
    for domain in &infra.opensearch_domains {
        let d = [
            ("ClientId", account.as_str()),
            ("DomainName", domain.as_str()),
        ];
        let status = |colour: &str, stat: &str, hex: &str| {
            entry(
                "AWS/ES",
                &format!("ClusterStatus.{colour}"),
                &d,
                json!({ "stat": stat, "label": colour, "color": hex }),
            )
        };
        grid.graph(
            8,
            format!("{domain}: cluster status (1 = in that state)"),
            region,
            vec![
                status("green", "Minimum", "#2ca02c"),
                status("yellow", "Maximum", "#ff7f0e"),
                status("red", "Maximum", "#d62728"),
            ],
            60,
        );
    }
}
