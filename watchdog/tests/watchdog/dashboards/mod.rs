//! `render` and `report` (issue 15): the generated dashboards and alarms against moto and
//! against CloudWatch's and NerdGraph's documented shapes; the SLO report against moto with
//! seeded metrics and alert state, its HTML rendered by headless Chromium.

mod catalogue;
mod chromium;
mod shape;

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic, Tag,
};
use serde_json::Value;
use vigil_test_support::Moto;

use crate::support::{BIN, minute_ago, now, run_ok, runtime, start_of_a_minute, watchdog};
use vigil_test_support::put_minutes;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn render(spec: &Path, out: &Path, check: bool) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "render",
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    if check {
        cmd.arg("--check");
    }
    cmd.env("VIGIL_LOG", "warn").output().expect("run render")
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sub in ["cloudwatch", "newrelic", "alarms", "terraform"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            out.push((
                format!("{sub}/{}", e.file_name().to_string_lossy()),
                std::fs::read_to_string(e.path()).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed `dashboards/` is exactly what the shipped spec renders; a spec change without
/// regeneration is caught and the stale file named.
#[test]
fn render_regenerates_the_committed_dashboards_identically() {
    let (spec, committed) = (repo().join("alerts"), repo().join("dashboards"));
    let out = render(&spec, &committed, true);
    assert!(
        out.status.success(),
        "dashboards/ is stale: run `vigil-watchdog render --spec alerts/ --out dashboards/`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("shipped spec: {summary}");

    // Twice into empty folders: the same bytes, and the same as committed.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_ok_output(render(&spec, a.path(), false));
    run_ok_output(render(&spec, b.path(), false));
    assert_eq!(files(a.path()), files(b.path()));
    assert_eq!(files(a.path()), files(&committed));

    // An objective changed without regenerating: --check fails and names the stale files.
    let changed = tempfile::tempdir().unwrap();
    copy_dir(&spec, changed.path());
    let checkout = changed.path().join("services/checkout.yaml");
    let text = std::fs::read_to_string(&checkout).unwrap();
    std::fs::write(
        &checkout,
        text.replacen("objective: 99.9\n", "objective: 99.5\n", 1),
    )
    .unwrap();
    let out = render(changed.path(), &committed, true);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vigil-slo-checkout-checkout-success-rate.json: differs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("newrelic/vigil-slos.json: differs"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("vigil-slo-cart-cart-availability.json"),
        "{stderr}"
    );
    // A leftover file in a generated folder is named too, and removed by a render.
    let out_dir = tempfile::tempdir().unwrap();
    copy_dir(&committed, out_dir.path());
    std::fs::write(out_dir.path().join("cloudwatch/vigil-slo-old.json"), "{}").unwrap();
    let out = render(&spec, out_dir.path(), true);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("vigil-slo-old.json: no longer rendered from the spec")
    );
    run_ok_output(render(&spec, out_dir.path(), false));
    assert!(
        !out_dir
            .path()
            .join("cloudwatch/vigil-slo-old.json")
            .exists()
    );
    assert!(
        out_dir.path().join("README.md").exists(),
        "files outside the generated folders stay"
    );
}

fn run_ok_output(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "render failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every committed body against the documented structure, and every metric against what the
/// agent documents or AWS publishes.
#[test]
fn committed_dashboards_have_the_documented_shape_and_known_metrics() {
    let dir = repo().join("dashboards");
    let agent = catalogue::agent_metrics(&repo().join("docs/agent-metrics.md"));
    let mut dashboards = 0;
    let mut widgets = 0;
    for (name, _) in files(&dir)
        .iter()
        .filter(|(n, _)| n.starts_with("cloudwatch/"))
    {
        let body = json(&dir.join(name));
        widgets += shape::cloudwatch_body(name, &body, &agent);
        dashboards += 1;
    }
    // Overview, infrastructure and one per SLO of the shipped spec (12).
    assert_eq!(dashboards, 14);
    let nr = json(&dir.join("newrelic/vigil-slos.json"));
    let nr_widgets = shape::newrelic_input(&nr, &agent);
    let alarms = json(&dir.join("alarms/put-metric-alarm.json"));
    for alarm in alarms.as_array().unwrap() {
        shape::alarm_input(alarm, &agent);
    }
    eprintln!(
        "{dashboards} CloudWatch dashboards, {widgets} widgets; New Relic {nr_widgets} widgets; {} alarms",
        alarms.as_array().unwrap().len()
    );
}

fn dims(v: &Value) -> Vec<Dimension> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            Dimension::builder()
                .name(d["Name"].as_str().unwrap())
                .value(d["Value"].as_str().unwrap())
                .build()
        })
        .collect()
}

/// moto takes every dashboard through PutDashboard and gives it back unchanged; every alarm
/// through PutMetricAlarm; and the watchdog's `alarms` checks see them by prefix.
#[test]
fn moto_accepts_every_dashboard_and_alarm_and_the_watchdog_watches_the_alarms() {
    let moto = Moto::start();
    let dir = repo().join("dashboards");
    runtime().block_on(async {
        let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
        let mut names = Vec::new();
        for (file, body) in files(&dir)
            .iter()
            .filter(|(n, _)| n.starts_with("cloudwatch/"))
        {
            let name = file
                .trim_start_matches("cloudwatch/")
                .trim_end_matches(".json");
            let put = cw
                .put_dashboard()
                .dashboard_name(name)
                .dashboard_body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("PutDashboard {name}: {e:?}"));
            assert!(
                put.dashboard_validation_messages().is_empty(),
                "{name}: {put:?}"
            );
            let got = cw
                .get_dashboard()
                .dashboard_name(name)
                .send()
                .await
                .unwrap();
            assert_eq!(
                got.dashboard_body(),
                Some(body.as_str()),
                "{name} came back changed"
            );
            names.push(name.to_string());
        }
        let listed = cw.list_dashboards().send().await.unwrap();
        assert_eq!(listed.dashboard_entries().len(), names.len());

        let alarms = json(&dir.join("alarms/put-metric-alarm.json"));
        let alarms = alarms.as_array().unwrap();
        for a in alarms {
            let mut put = cw
                .put_metric_alarm()
                .alarm_name(a["AlarmName"].as_str().unwrap())
                .alarm_description(a["AlarmDescription"].as_str().unwrap())
                .actions_enabled(a["ActionsEnabled"].as_bool().unwrap())
                .evaluation_periods(a["EvaluationPeriods"].as_i64().unwrap() as i32)
                .datapoints_to_alarm(a["DatapointsToAlarm"].as_i64().unwrap() as i32)
                .threshold(a["Threshold"].as_f64().unwrap())
                .comparison_operator(ComparisonOperator::from(
                    a["ComparisonOperator"].as_str().unwrap(),
                ))
                .treat_missing_data(a["TreatMissingData"].as_str().unwrap());
            for t in a["Tags"].as_array().unwrap() {
                put = put.tags(
                    Tag::builder()
                        .key(t["Key"].as_str().unwrap())
                        .value(t["Value"].as_str().unwrap())
                        .build(),
                );
            }
            if a.get("Metrics").is_some() {
                for m in a["Metrics"].as_array().unwrap() {
                    let mut q = MetricDataQuery::builder()
                        .id(m["Id"].as_str().unwrap())
                        .return_data(m["ReturnData"].as_bool().unwrap());
                    if let Some(e) = m["Expression"].as_str() {
                        q = q.expression(e).label(m["Label"].as_str().unwrap());
                    } else {
                        let ms = &m["MetricStat"];
                        q = q.metric_stat(
                            MetricStat::builder()
                                .metric(
                                    Metric::builder()
                                        .namespace(ms["Metric"]["Namespace"].as_str().unwrap())
                                        .metric_name(ms["Metric"]["MetricName"].as_str().unwrap())
                                        .set_dimensions(Some(dims(&ms["Metric"]["Dimensions"])))
                                        .build(),
                                )
                                .period(ms["Period"].as_i64().unwrap() as i32)
                                .stat(ms["Stat"].as_str().unwrap())
                                .build(),
                        );
                    }
                    put = put.metrics(q.build());
                }
            } else {
                put = put
                    .namespace(a["Namespace"].as_str().unwrap())
                    .metric_name(a["MetricName"].as_str().unwrap())
                    .set_dimensions(Some(dims(&a["Dimensions"])))
                    .statistic(Statistic::from(a["Statistic"].as_str().unwrap()))
                    .period(a["Period"].as_i64().unwrap() as i32);
            }
            put.send()
                .await
                .unwrap_or_else(|e| panic!("PutMetricAlarm {}: {e:?}", a["AlarmName"]));
        }
        let described = cw.describe_alarms().max_records(100).send().await.unwrap();
        assert_eq!(described.metric_alarms().len(), alarms.len());
        for a in described.metric_alarms() {
            let name = a.alarm_name().unwrap();
            let want = alarms.iter().find(|x| x["AlarmName"] == name).unwrap();
            assert_eq!(a.threshold(), want["Threshold"].as_f64());
            assert_eq!(
                a.metrics().len(),
                want["Metrics"].as_array().map_or(0, Vec::len),
                "{name}"
            );
        }

        // One generated page alarm goes off: the shipped spec's `alarms` check (prefix
        // vigil-page-) turns it into a page; the ticket prefix stays quiet.
        let firing = "vigil-page-alb-unhealthy-hosts-shop-checkout";
        assert!(alarms.iter().any(|a| a["AlarmName"] == firing));
        cw.set_alarm_state()
            .alarm_name(firing)
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .state_reason("test: unhealthy targets")
            .send()
            .await
            .unwrap();
    });
    let spec = tempfile::tempdir().unwrap();
    std::fs::write(
        spec.path().join("spec.yaml"),
        "services:\n  platform:\n    checks:\n      - alarms: { prefix: vigil-page-, severity: page }\n      - alarms: { prefix: vigil-ticket-, severity: ticket }\n",
    )
    .unwrap();
    let report = crate::support::check_json(&moto, spec.path(), &["--dry-run"]);
    let page = crate::support::finding(&report, "alarms:platform:vigil-page-*");
    assert_eq!(page["status"], "firing", "{page:#}");
    assert_eq!(page["severity"], "page");
    assert!(
        page["summary"]
            .as_str()
            .unwrap()
            .contains("vigil-page-alb-unhealthy-hosts-shop-checkout"),
        "{page:#}"
    );
    let ticket = crate::support::finding(&report, "alarms:platform:vigil-ticket-*");
    assert_eq!(ticket["status"], "ok", "{ticket:#}");
}

fn spec_dir(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.yaml"), yaml).unwrap();
    dir
}

/// Bad input is refused with the key named, or rendered correctly.
#[test]
fn render_refuses_or_renders_bad_input_correctly() {
    let out_dir = tempfile::tempdir().unwrap();
    // An ALB named plainly without its dimension value: refused, naming the key.
    let spec = spec_dir(
        "services:\n  cart:\n    slos:\n      - name: cart-availability\n        objective: 99.5\n        sli:\n          alb_availability: { load_balancer: shop-private, target_group: shop-cart }\n",
    );
    let out = render(spec.path(), out_dir.path(), false);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "services.cart.slos[0].sli.alb_availability.load_balancer: `shop-private` is a name"
        ),
        "{stderr}"
    );

    // No SLOs: the overview says so; infrastructure and alarms are still rendered.
    let spec = spec_dir(
        "infrastructure:\n  dynamodb_tables: [shop-users]\nservices:\n  platform:\n    checks:\n      - asg: { group: shop-proxy, min_healthy: 1 }\n",
    );
    run_ok_output(render(spec.path(), out_dir.path(), false));
    let overview =
        std::fs::read_to_string(out_dir.path().join("cloudwatch/vigil-overview.json")).unwrap();
    assert!(overview.contains("No SLOs are declared"), "{overview}");
    let alarms = json(&out_dir.path().join("alarms/put-metric-alarm.json"));
    assert_eq!(
        alarms[0]["AlarmName"],
        "vigil-ticket-dynamodb-throttles-shop-users"
    );
    assert!(!out_dir.path().join("newrelic/vigil-slos.json").exists());

    // Names NRQL must quote: backticks for metric names, escaped quotes in values.
    let spec = spec_dir(
        "infrastructure:\n  newrelic_account_id: 42\nservices:\n  orders:\n    slos:\n      - name: orders-ok\n        objective: 99\n        sli:\n          good_over_total:\n            good: { namespace: Vigil/Shop, metric: orders-ok.count, dimensions: { shop: \"Bob's\" } }\n            total: { namespace: Vigil/Shop, metric: select, dimensions: {} }\n",
    );
    run_ok_output(render(spec.path(), out_dir.path(), false));
    let nr = std::fs::read_to_string(out_dir.path().join("newrelic/vigil-slos.json")).unwrap();
    assert!(
        nr.contains("sum(`orders-ok.count`), WHERE shop = 'Bob\\\\'s')"),
        "{nr}"
    );
    assert!(nr.contains("sum(`select`)"), "{nr}");
    shape::newrelic_input(
        &serde_json::from_str(&nr).unwrap(),
        &catalogue::agent_metrics(&repo().join("docs/agent-metrics.md")),
    );
    // A name NRQL cannot write at all: refused with the key.
    let spec = spec_dir(
        "infrastructure:\n  newrelic_account_id: 42\nservices:\n  orders:\n    slos:\n      - name: orders-ok\n        objective: 99\n        sli:\n          bad_over_total:\n            bad: { namespace: Vigil/Shop, metric: \"odd`name\" }\n            total: { namespace: Vigil/Shop, metric: orders }\n",
    );
    let out = render(spec.path(), out_dir.path(), false);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("services.orders.slos[0].sli.bad_over_total.bad.metric: `odd`name` cannot be written in NRQL"), "{stderr}");

    // An objective changed mid-period: marked on the graphs and said in the header.
    let spec = spec_dir(
        "infrastructure:\n  newrelic_account_id: 42\nservices:\n  checkout:\n    slos:\n      - name: ok\n        objective: 99.5\n        objective_since: \"2026-11-15T00:00:00Z\"\n        sli: { span_errors: { service: checkout, route: \"POST /checkout\" } }\n",
    );
    run_ok_output(render(spec.path(), out_dir.path(), false));
    let body = json(&out_dir.path().join("cloudwatch/vigil-slo-checkout-ok.json"));
    let text = body.to_string();
    assert!(
        text.contains("The objective changed at 2026-11-15T00:00:00Z"),
        "{text}"
    );
    let verticals: Vec<&Value> = body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| {
            w["properties"]["annotations"]["vertical"][0]["value"] == "2026-11-15T00:00:00Z"
        })
        .collect();
    assert_eq!(
        verticals.len(),
        2,
        "SLI and burn-down graphs mark the change"
    );

    // An SLO whose data may be missing: every SLI, budget and burn expression is guarded so
    // that no events draw nothing (never 100 %).
    for (name, body) in files(&repo().join("dashboards")) {
        if !name.starts_with("cloudwatch/vigil-slo-") {
            continue;
        }
        let body: Value = serde_json::from_str(&body).unwrap();
        for w in body["widgets"].as_array().unwrap() {
            for m in w["properties"]["metrics"].as_array().into_iter().flatten() {
                let opts = m.as_array().unwrap().last().unwrap();
                if let Some(e) = opts["expression"].as_str()
                    && e.contains("/total")
                {
                    assert!(e.starts_with("IF(total"), "{name}: unguarded {e}");
                }
            }
        }
    }
}

/// The SLO report from moto's metrics and alert state: text, Markdown, and HTML that headless
/// Chromium renders with one chart per SLO.
#[test]
fn report_from_seeded_metrics_and_state_renders_in_chromium() {
    let moto = Moto::start();
    let spec = spec_dir(
        "settings:\n  state: { table: vigil-alert-state }\nservices:\n  checkout:\n    labels: { runbook: \"https://runbooks.example/checkout\" }\n    slos:\n      - name: checkout-success-rate\n        objective: 99.9\n        sli: { span_errors: { service: checkout, route: \"POST /checkout\" } }\n      - name: checkout-latency\n        objective: 95\n        sli: { span_latency: { service: checkout, route: \"POST /nothing-yet\", threshold_ms: 300 } }\n",
    );
    run_ok(watchdog(
        &moto,
        &[
            "create-state-table",
            "--spec",
            spec.path().to_str().unwrap(),
        ],
    ));
    let t = now();
    runtime().block_on(async {
        let config = moto.sdk_config().await;
        let cw = aws_sdk_cloudwatch::Client::new(&config);
        start_of_a_minute().await;
        let dims = [("service", "checkout"), ("route", "POST /checkout")];
        // Two hours of 1000 requests a minute; one error a minute in the older hour only:
        // 60 bad of 120,000 = 0.05 % against a 0.1 % budget, so half the budget is left.
        put_minutes(
            &cw,
            "Vigil/SpanMetrics",
            "requests",
            &dims,
            (1..=120).map(|k| (minute_ago(k), 1000.0)),
        )
        .await;
        put_minutes(
            &cw,
            "Vigil/SpanMetrics",
            "errors",
            &dims,
            (61..=120).map(|k| (minute_ago(k), 1.0)),
        )
        .await;
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        use aws_sdk_dynamodb::types::AttributeValue::{N, S};
        ddb.put_item()
            .table_name("vigil-alert-state")
            .item(
                "fingerprint",
                S("slo:checkout:checkout-success-rate".into()),
            )
            .item("status", S("resolved".into()))
            .item("severity", S("page".into()))
            .item("first_seen", N((t - 100 * 60).to_string()))
            .item("resolved_at", N((t - 60 * 60).to_string()))
            .item(
                "summary",
                S("checkout/checkout-success-rate: burning".into()),
            )
            .send()
            .await
            .unwrap();
        ddb.put_item()
            .table_name("vigil-alert-state")
            .item(
                "fingerprint",
                S("target_group:checkout:shop-checkout".into()),
            )
            .item("status", S("firing".into()))
            .item("severity", S("ticket".into()))
            .item("first_seen", N((t - 10 * 60).to_string()))
            .send()
            .await
            .unwrap();
    });
    let spec_arg = spec.path().to_str().unwrap();
    let text = run_ok(watchdog(&moto, &["report", "--spec", spec_arg]));
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    eprintln!("{text}");
    assert!(
        text.contains("[MET] checkout/checkout-success-rate"),
        "{text}"
    );
    assert!(text.contains("SLI 99.950% (60 bad of 120000 events), objective 99.9% over 30d, error budget left 50.0%"), "{text}");
    assert!(
        text.contains("page 1h/5m ≥ 14.4×: 0.00× / 0.00× → ok"),
        "{text}"
    );
    assert!(
        text.contains("page 6h/30m ≥ 6×: 0.50× / 0.00× → ok"),
        "{text}"
    );
    assert!(
        text.contains("resolved") && text.contains("(40m)"),
        "{text}"
    );
    assert!(
        text.contains("[NO DATA] checkout/checkout-latency"),
        "{text}"
    );
    assert!(text.contains("SLI no data (0 bad of 0 events)"), "{text}");
    assert!(
        text.contains("ticket target_group:checkout:shop-checkout: opened"),
        "{text}"
    );
    assert!(text.contains("still open"), "{text}");

    let md = run_ok(watchdog(
        &moto,
        &["report", "--spec", spec_arg, "--format", "markdown"],
    ));
    let md = String::from_utf8_lossy(&md.stdout).to_string();
    assert!(
        md.contains("*checkout/checkout-success-rate* — MET"),
        "{md}"
    );
    assert!(md.contains("1 of 2 SLOs within budget"), "{md}");

    // The month: a bad one is refused, a future one too; the current one reports.
    let out = watchdog(&moto, &["report", "--spec", spec_arg, "--month", "2026-13"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`2026-13` is not a month like 2026-11"));
    let out = watchdog(&moto, &["report", "--spec", spec_arg, "--month", "2999-01"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("month 2999-01 has not started yet"));
    let this_month = jiff::Timestamp::from_second(t as i64)
        .unwrap()
        .strftime("%Y-%m")
        .to_string();
    let month = run_ok(watchdog(
        &moto,
        &["report", "--spec", spec_arg, "--month", &this_month],
    ));
    assert!(
        String::from_utf8_lossy(&month.stdout)
            .contains(&format!("SLO compliance for {this_month}"))
    );

    // The objective changed half an hour ago: the budget is measured from the first whole
    // hour after the change, where no errors were put.
    let since = jiff::Timestamp::from_second(t as i64 - 1800)
        .unwrap()
        .to_string();
    let changed = spec_dir(&format!(
        "services:\n  checkout:\n    slos:\n      - name: checkout-success-rate\n        objective: 99.5\n        objective_since: \"{since}\"\n        sli: {{ span_errors: {{ service: checkout, route: \"POST /checkout\" }} }}\n"
    ));
    let out = run_ok(watchdog(
        &moto,
        &["report", "--spec", changed.path().to_str().unwrap()],
    ));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("(0 bad of ") && out.contains("when the objective became 99.5%)"),
        "{out}"
    );
    let bad = spec_dir(
        "services:\n  checkout:\n    slos:\n      - name: s\n        objective: 99\n        objective_since: yesterday\n        sli: { span_errors: { service: checkout, route: r } }\n",
    );
    let out = watchdog(&moto, &["report", "--spec", bad.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "services.checkout.slos[0].objective_since: `yesterday` is not an RFC 3339 time"
    ));

    let html_dir = tempfile::tempdir().unwrap();
    let html = html_dir.path().join("report.html");
    run_ok(watchdog(
        &moto,
        &[
            "report",
            "--spec",
            spec_arg,
            "--format",
            "html",
            "--out",
            html.to_str().unwrap(),
        ],
    ));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<script") && !page.contains("<link") && !page.contains("src="),
        "self-contained"
    );
    let rendered = chromium::render(&html, html_dir.path());
    // One chart per SLO, found in the DOM Chromium built.
    assert_eq!(
        rendered.dom.matches("<svg class=\"burndown\"").count(),
        2,
        "{}",
        rendered.dom
    );
    assert!(
        rendered
            .dom
            .contains("data-slo=\"checkout/checkout-success-rate\"")
    );
    assert!(rendered.dom.contains("<polyline class=\"budget\""));
    assert!(rendered.dom.contains("no data: no events in this range"));
    assert_eq!(rendered.dom.matches("<svg class=\"timeline\"").count(), 1);
    assert_eq!(rendered.dom.matches("<rect class=\"incident\"").count(), 2);
    // The screenshot is not blank: a good share of it is drawn.
    assert!(
        rendered.inked_share > 0.01 && rendered.distinct_colours >= 4,
        "blank screenshot? {:.4} inked, {} colours",
        rendered.inked_share,
        rendered.distinct_colours
    );
}
