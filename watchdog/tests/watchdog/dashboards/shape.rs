//! Structural checks against the documented shapes: CloudWatch's dashboard body ("Dashboard
//! Body Structure and Syntax"), NerdGraph's `DashboardInput`, and PutMetricAlarm's input.

use std::collections::BTreeSet;

use serde_json::Value;

use super::catalogue::{Catalogue, Dims};

const WIDGET_TYPES: &[&str] = &["metric", "text", "log", "alarm", "explorer"];
const METRIC_VIEWS: &[&str] = &["timeSeries", "singleValue", "gauge", "bar", "pie"];
const METRIC_OPTIONS: &[&str] = &[
    "id",
    "stat",
    "period",
    "visible",
    "label",
    "yAxis",
    "color",
    "region",
    "expression",
];

/// CloudWatch statistic names: the five basic ones, pNN(.N), trimmed/winsorized means, PR.
fn is_stat(s: &str) -> bool {
    let number =
        |t: &str| !t.is_empty() && t.parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v));
    matches!(
        s,
        "SampleCount" | "Average" | "Sum" | "Minimum" | "Maximum" | "IQM"
    ) || s.strip_prefix('p').is_some_and(number)
        || ["tm", "wm", "tc", "ts"]
            .iter()
            .any(|p| s.strip_prefix(p).is_some_and(number))
        || s.strip_prefix("PR(:")
            .and_then(|r| r.strip_suffix(')'))
            .is_some_and(|t| t.parse::<f64>().is_ok())
}

fn is_id(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Identifiers an expression refers to (outside string literals, not function names).
fn references(expression: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut chars = expression.char_indices().peekable();
    let mut in_string = None;
    while let Some((i, c)) = chars.next() {
        if let Some(q) = in_string {
            if c == '\\' {
                chars.next();
            } else if c == q {
                in_string = None;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            in_string = Some(c);
            continue;
        }
        if c.is_ascii_alphabetic() {
            let mut end = i + c.len_utf8();
            while let Some((j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || *d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &expression[i..end];
            let is_call = expression[end..].trim_start().starts_with('(');
            if !is_call && word.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                out.insert(word.to_string());
            }
        }
    }
    out
}

/// `SEARCH('{Namespace,dim,...} MetricName="m" ...', 'stat', period)` -> checked like a metric.
fn check_search(where_: &str, expression: &str, catalogue: &Catalogue) {
    let Some(rest) = expression.strip_prefix("SEARCH('{") else {
        return;
    };
    let (schema, rest) = rest.split_once('}').expect("SEARCH schema");
    let mut parts = schema.split(',');
    let namespace = parts.next().unwrap();
    let dims: Dims = parts.map(str::to_string).collect();
    let metric = rest
        .split("MetricName=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("SEARCH names its metric");
    catalogue.check(where_, namespace, metric, &dims);
    let stat = rest
        .split("', '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("SEARCH stat");
    assert!(is_stat(stat), "{where_}: SEARCH stat {stat}");
}

fn check_metric_widget(where_: &str, p: &Value, catalogue: &Catalogue) {
    assert!(p["region"].is_string(), "{where_}: region");
    let view = p["view"].as_str().unwrap_or("timeSeries");
    assert!(METRIC_VIEWS.contains(&view), "{where_}: view {view}");
    if let Some(stat) = p["stat"].as_str() {
        assert!(is_stat(stat), "{where_}: stat {stat}");
    }
    if let Some(period) = p["period"].as_u64() {
        assert!(
            period >= 60 && period % 60 == 0,
            "{where_}: period {period}"
        );
    }
    let metrics = p["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("{where_}: metrics array"));
    assert!(
        !metrics.is_empty() && metrics.len() <= 100,
        "{where_}: 1-100 metrics"
    );
    let mut ids = BTreeSet::new();
    let mut expressions = Vec::new();
    let mut visible = 0;
    for m in metrics {
        let entry = m
            .as_array()
            .unwrap_or_else(|| panic!("{where_}: each metric is an array"));
        let (opts, strings) = match entry.last() {
            Some(Value::Object(o)) => (Some(o), &entry[..entry.len() - 1]),
            _ => (None, &entry[..]),
        };
        if let Some(o) = opts {
            for k in o.keys() {
                assert!(
                    METRIC_OPTIONS.contains(&k.as_str()),
                    "{where_}: metric option {k}"
                );
            }
            if let Some(id) = o.get("id").and_then(Value::as_str) {
                assert!(is_id(id), "{where_}: id {id}");
                assert!(ids.insert(id.to_string()), "{where_}: id {id} used twice");
            }
            if let Some(stat) = o.get("stat").and_then(Value::as_str) {
                assert!(is_stat(stat), "{where_}: stat {stat}");
            }
            if let Some(period) = o.get("period").and_then(Value::as_u64) {
                assert!(
                    period >= 60 && period % 60 == 0,
                    "{where_}: period {period}"
                );
            }
            if o.get("visible") != Some(&Value::Bool(false)) {
                visible += 1;
            }
        }
        if strings.is_empty() {
            let o = opts.unwrap_or_else(|| panic!("{where_}: empty metric"));
            let e = o["expression"]
                .as_str()
                .unwrap_or_else(|| panic!("{where_}: expression entry without expression"));
            assert!(o.contains_key("id"), "{where_}: expressions need an id");
            check_search(where_, e, catalogue);
            expressions.push(e.to_string());
        } else {
            assert!(
                strings.len() >= 2 && strings.len() % 2 == 0,
                "{where_}: [namespace, name, (dim, value)...]"
            );
            let s: Vec<&str> = strings
                .iter()
                .map(|v| {
                    v.as_str()
                        .unwrap_or_else(|| panic!("{where_}: strings only"))
                })
                .collect();
            assert!(!s.contains(&"..."), "{where_}: no shorthand");
            let dims: Dims = s[2..].chunks(2).map(|kv| kv[0].to_string()).collect();
            catalogue.check(where_, s[0], s[1], &dims);
        }
    }
    assert!(visible > 0, "{where_}: nothing visible");
    for e in &expressions {
        for r in references(e) {
            assert!(
                ids.contains(&r),
                "{where_}: expression {e} refers to unknown id {r}"
            );
        }
    }
    for a in p["annotations"]["horizontal"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(a["value"].is_number(), "{where_}: annotation value");
    }
}

/// Checks one DashboardBody; returns its widget count.
pub fn cloudwatch_body(name: &str, body: &Value, catalogue: &Catalogue) -> usize {
    for k in body.as_object().unwrap().keys() {
        assert!(
            ["widgets", "start", "end", "periodOverride", "variables"].contains(&k.as_str()),
            "{name}: key {k}"
        );
    }
    let widgets = body["widgets"].as_array().unwrap();
    assert!(widgets.len() <= 500, "{name}: at most 500 widgets");
    let mut cells = BTreeSet::new();
    for (i, w) in widgets.iter().enumerate() {
        let where_ = format!("{name} widget {i}");
        let kind = w["type"].as_str().unwrap();
        assert!(WIDGET_TYPES.contains(&kind), "{where_}: type {kind}");
        let (x, y) = (w["x"].as_u64().unwrap(), w["y"].as_u64().unwrap());
        let (width, height) = (w["width"].as_u64().unwrap(), w["height"].as_u64().unwrap());
        assert!(
            (1..=24).contains(&width) && x + width <= 24,
            "{where_}: 24-column grid"
        );
        assert!((1..=1000).contains(&height), "{where_}: height");
        for cx in x..x + width {
            for cy in y..y + height {
                assert!(
                    cells.insert((cx, cy)),
                    "{where_}: overlaps another widget at {cx},{cy}"
                );
            }
        }
        let p = &w["properties"];
        match kind {
            "text" => assert!(
                !p["markdown"].as_str().unwrap().is_empty(),
                "{where_}: markdown"
            ),
            "log" => {
                assert!(
                    p["query"].as_str().unwrap().starts_with("SOURCE '"),
                    "{where_}: query"
                );
                assert!(p["region"].is_string(), "{where_}: region");
            }
            "metric" => check_metric_widget(&where_, p, catalogue),
            _ => {}
        }
    }
    widgets.len()
}

/// Checks NerdGraph's `dashboardCreate` variables; returns the widget count.
pub fn newrelic_input(v: &Value, catalogue: &Catalogue) -> usize {
    assert!(v["accountId"].is_u64(), "accountId");
    let d = &v["dashboard"];
    assert!(d["name"].is_string());
    assert!(
        ["PRIVATE", "PUBLIC_READ_ONLY", "PUBLIC_READ_WRITE"]
            .contains(&d["permissions"].as_str().unwrap())
    );
    let pages = d["pages"].as_array().unwrap();
    assert!(!pages.is_empty());
    let allowed = catalogue.span_names();
    let mut count = 0;
    for page in pages {
        let pname = page["name"].as_str().unwrap();
        let mut cells = BTreeSet::new();
        for w in page["widgets"].as_array().unwrap() {
            count += 1;
            let where_ = format!("page {pname} widget {}", w["title"]);
            let l = &w["layout"];
            let (col, row) = (l["column"].as_u64().unwrap(), l["row"].as_u64().unwrap());
            let (width, height) = (l["width"].as_u64().unwrap(), l["height"].as_u64().unwrap());
            assert!(col >= 1 && row >= 1 && height >= 1, "{where_}: layout");
            assert!(
                (1..=12).contains(&width) && col + width - 1 <= 12,
                "{where_}: 12-column grid"
            );
            for c in col..col + width {
                for r in row..row + height {
                    assert!(cells.insert((c, r)), "{where_}: overlaps");
                }
            }
            let viz = w["visualization"]["id"].as_str().unwrap();
            let raw = &w["rawConfiguration"];
            match viz {
                "viz.markdown" => assert!(!raw["text"].as_str().unwrap().is_empty()),
                "viz.billboard" | "viz.line" | "viz.area" | "viz.table" | "viz.bar" => {
                    let queries = raw["nrqlQueries"].as_array().unwrap();
                    assert!(!queries.is_empty(), "{where_}: NRQL present");
                    for q in queries {
                        assert!(
                            q["accountIds"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .all(Value::is_u64)
                        );
                        let nrql = q["query"].as_str().unwrap();
                        assert!(nrql.starts_with("FROM Metric SELECT "), "{where_}: {nrql}");
                        assert_eq!(
                            nrql.matches('(').count(),
                            nrql.matches(')').count(),
                            "{where_}: {nrql}"
                        );
                        // Every aggregated metric is one the agent sends (or a quoted name).
                        for agg in ["sum(", "percentile("] {
                            for part in nrql.split(agg).skip(1) {
                                let name = part.split([')', ',']).next().unwrap().trim();
                                assert!(
                                    allowed.contains(name) || name.starts_with('`'),
                                    "{where_}: {name} is not a metric the agent sends"
                                );
                            }
                        }
                    }
                }
                other => panic!("{where_}: visualization {other}"),
            }
        }
    }
    count
}

/// Checks one PutMetricAlarm input.
pub fn alarm_input(a: &Value, catalogue: &Catalogue) {
    let name = a["AlarmName"].as_str().unwrap();
    let dims = |d: &Value| -> Dims {
        d.as_array()
            .unwrap()
            .iter()
            .map(|x| x["Name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(name.len() <= 255);
    assert!(
        name.starts_with("vigil-page-") || name.starts_with("vigil-ticket-"),
        "{name}"
    );
    let evaluation = a["EvaluationPeriods"].as_u64().unwrap();
    assert!(evaluation >= 1 && a["DatapointsToAlarm"].as_u64().unwrap() <= evaluation);
    assert!(a["Threshold"].is_number());
    assert!(
        [
            "GreaterThanOrEqualToThreshold",
            "GreaterThanThreshold",
            "LessThanThreshold",
            "LessThanOrEqualToThreshold"
        ]
        .contains(&a["ComparisonOperator"].as_str().unwrap())
    );
    assert!(
        ["breaching", "notBreaching", "ignore", "missing"]
            .contains(&a["TreatMissingData"].as_str().unwrap())
    );
    match a.get("Metrics") {
        Some(metrics) => {
            let metrics = metrics.as_array().unwrap();
            assert_eq!(
                metrics.iter().filter(|m| m["ReturnData"] == true).count(),
                1,
                "{name}"
            );
            assert!(
                a.get("MetricName").is_none(),
                "{name}: Metrics or MetricName, not both"
            );
            for m in metrics {
                match m["Expression"].as_str() {
                    Some(e) => {
                        for r in references(e) {
                            assert!(
                                metrics.iter().any(|x| x["Id"] == r.as_str()),
                                "{name}: {e} refers to {r}"
                            );
                        }
                    }
                    None => {
                        let metric = &m["MetricStat"]["Metric"];
                        catalogue.check(
                            name,
                            metric["Namespace"].as_str().unwrap(),
                            metric["MetricName"].as_str().unwrap(),
                            &dims(&metric["Dimensions"]),
                        );
                        assert!(is_stat(m["MetricStat"]["Stat"].as_str().unwrap()));
                    }
                }
            }
        }
        None => {
            catalogue.check(
                name,
                a["Namespace"].as_str().unwrap(),
                a["MetricName"].as_str().unwrap(),
                &dims(&a["Dimensions"]),
            );
            assert!(is_stat(a["Statistic"].as_str().unwrap()));
            assert_eq!(a["Period"].as_u64().unwrap() % 60, 0);
        }
    }
}
