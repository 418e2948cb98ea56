//! SLO burn-rate alerting over metric data the test puts into moto's CloudWatch, and the
//! once-per-incident property of alert state under concurrent invocations.

use serde_json::Value;
use vigil_test_support::{Moto, put_minutes};

use crate::support::*;

const CHECKOUT: [(&str, &str); 2] = [("service", "checkout"), ("route", "POST /checkout")];
const CART: [(&str, &str); 2] = [("service", "cart"), ("route", "POST /cart")];

/// Checkout: 1000 requests a minute for the last hour, 2% failing (a 20x burn at 99.9%) and
/// 99% under 300 ms. Cart: six clean hours of the same traffic except a 3-minute blip of 10%
/// errors in the last minutes.
pub(crate) async fn put_shop_traffic(cw: &aws_sdk_cloudwatch::Client) {
    start_of_a_minute().await;
    let hour = || (1..=60).map(minute_ago);
    put_minutes(
        cw,
        "Vigil/SpanMetrics",
        "requests",
        &CHECKOUT,
        hour().map(|t| (t, 1000.0)),
    )
    .await;
    put_minutes(
        cw,
        "Vigil/SpanMetrics",
        "errors",
        &CHECKOUT,
        hour().map(|t| (t, 20.0)),
    )
    .await;
    let under = [CHECKOUT[0], CHECKOUT[1], ("threshold_ms", "300")];
    put_minutes(
        cw,
        "Vigil/SpanMetrics",
        "requests_under_threshold",
        &under,
        hour().map(|t| (t, 990.0)),
    )
    .await;
    put_minutes(
        cw,
        "Vigil/SpanMetrics",
        "requests",
        &CART,
        (1..=360).map(|k| (minute_ago(k), 1000.0)),
    )
    .await;
    put_minutes(
        cw,
        "Vigil/SpanMetrics",
        "errors",
        &CART,
        (1..=3).map(|k| (minute_ago(k), 100.0)),
    )
    .await;
}

pub(crate) const SHOP_SLOS: &str = r#"
services:
  checkout:
    module: checkout
    labels: { team: shop-core }
    slos:
      - name: checkout-success-rate
        objective: 99.9
        sli: { span_errors: { service: checkout, route: "POST /checkout" } }
      - name: checkout-latency
        objective: 95
        sli: { span_latency: { service: checkout, route: "POST /checkout", threshold_ms: 300 } }
  cart:
    slos:
      - name: cart-success-rate
        objective: 99.9
        sli: { span_errors: { service: cart, route: "POST /cart" } }
"#;

#[test]
fn a_checkout_burst_pages_once_and_a_short_blip_does_not() {
    let moto = Moto::start();
    let rt = runtime();
    rt.block_on(async {
        let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
        put_shop_traffic(&cw).await;
    });
    let dir = tempfile::tempdir().unwrap();
    // Payment's metrics were never published (a misnamed route, say).
    let no_data = "  payment:\n    slos:\n      - name: payment-success-rate\n        objective: 99.9\n        sli: { span_errors: { service: payment, route: \"POST /pay\" } }\n";
    write_spec(dir.path(), &format!("{SHOP_SLOS}{no_data}"));

    let report = check_json(&moto, dir.path(), &["--dry-run"]);
    // All SLO windows of all three SLOs came from one batch: one call per resolution tier.
    assert!(
        report["metric_calls"].as_u64().unwrap() <= 3,
        "{}",
        report["metric_calls"]
    );

    let burst = finding(&report, "slo:checkout:checkout-success-rate");
    assert_eq!(burst["status"], "firing", "{burst:#}");
    assert_eq!(burst["severity"], "page");
    let rates = &burst["values"]["burn_rates"];
    for window in ["1h", "5m"] {
        let rate = rates[window].as_f64().unwrap();
        assert!((rate - 20.0).abs() < 0.01, "{window}: {rate}");
    }
    // The 30-day sum comes from the hourly tier, which ends on a 5-minute boundary.
    let period_events = burst["values"]["period_events"].as_f64().unwrap();
    assert!(
        (55_000.0..=60_000.0).contains(&period_events),
        "{period_events}"
    );

    // The blip: the 5m window burns far above 14.4x, the 1h window (5x) does not.
    let blip = finding(&report, "slo:cart:cart-success-rate");
    assert_eq!(blip["status"], "ok", "{blip:#}");
    assert!(blip["values"]["burn_rates"]["5m"].as_f64().unwrap() > 14.4);
    assert!(blip["values"]["burn_rates"]["1h"].as_f64().unwrap() < 14.4);

    // Threshold SLI from span-metric counts: 99% under 300 ms against a 95% objective.
    let latency = finding(&report, "slo:checkout:checkout-latency");
    assert_eq!(latency["status"], "ok", "{latency:#}");
    assert!((latency["values"]["sli"].as_f64().unwrap() - 0.99).abs() < 1e-9);
    assert!((latency["values"]["burn_rates"]["1h"].as_f64().unwrap() - 0.2).abs() < 1e-9);

    // Exactly one page-level decision, for the burst; none for the blip.
    let pages = decisions(&report, "page");
    assert_eq!(pages.len(), 1, "{:#}", report["decisions"]);
    assert_eq!(
        pages[0]["fingerprint"],
        "slo:checkout:checkout-success-rate"
    );
    // The SLO without any data is a ticket of its own, not silence and not a page.
    let silent = finding(&report, "slo:payment:payment-success-rate/unknown");
    assert!(
        silent["summary"].as_str().unwrap().contains(
            "no events in 30d; is Vigil/SpanMetrics/requests{route=POST /pay,service=payment} published?"
        ),
        "{silent:#}"
    );
    let tickets = decisions(&report, "ticket");
    assert_eq!(tickets.len(), 1, "{:#}", report["decisions"]);
    assert_eq!(
        tickets[0]["fingerprint"],
        "slo:payment:payment-success-rate/unknown"
    );
    assert_eq!(report["decisions"].as_array().unwrap().len(), 2);

    // The readable report explains every SLO.
    let out = run_ok(watchdog(
        &moto,
        &[
            "check",
            "--spec",
            dir.path().to_str().unwrap(),
            "--once",
            "--dry-run",
            "--explain",
        ],
    ));
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "[FIRING page] checkout/checkout-success-rate: burning error budget 20.00x over 1h and 20.00x over 5m",
        "SLI over 30d: 98.000% (",
        "page alert 1h/5m at 14.4x: burn 20.00x over 1h (60000 events), 20.00x over 5m (5000 events) -> FIRING",
        "page alert 1h/5m at 14.4x: burn 5.00x over 1h (60000 events), 60.00x over 5m (5000 events) -> ok: not both windows",
        "ticket alert 3d/6h at 1x: burn 0.83x over 3d (360000 events), 0.83x over 6h (360000 events) -> ok",
        "checkout/checkout-latency: within budget (SLI 99.000%",
        "Decisions (dry run: nothing sent, state not written)",
        "PAGE    slo:checkout:checkout-success-rate",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn concurrent_invocations_over_one_failing_state_page_once() {
    let moto = Moto::start();
    let rt = runtime();
    rt.block_on(async {
        let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
        put_shop_traffic(&cw).await;
    });
    let dir = tempfile::tempdir().unwrap();
    write_spec(
        dir.path(),
        &format!(
            "settings:\n  state: {{ table: alert-state, keep_resolved_for: 7d }}\n{SHOP_SLOS}"
        ),
    );
    let spec = dir.path().to_str().unwrap();
    run_ok(watchdog(&moto, &["create-state-table", "--spec", spec]));

    // Four invocations at once over the same burning SLO.
    let children: Vec<_> = (0..4)
        .map(|_| {
            watchdog(
                &moto,
                &["check", "--spec", spec, "--once", "--output", "json"],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn vigil-watchdog")
        })
        .collect();
    let reports: Vec<Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let pages: usize = reports.iter().map(|r| decisions(r, "page").len()).sum();
    let quiet: usize = reports
        .iter()
        .map(|r| decisions(r, "already_notified").len())
        .sum();
    assert_eq!(pages, 1, "{reports:#?}");
    assert_eq!(quiet, 3, "{reports:#?}");

    // A later run stays quiet too; a dry run reads state and agrees.
    for extra in [&[][..], &["--dry-run"][..]] {
        let report = check_json(&moto, dir.path(), extra);
        assert!(
            decisions(&report, "page").is_empty(),
            "{:#}",
            report["decisions"]
        );
        assert_eq!(decisions(&report, "already_notified").len(), 1);
    }

    // The state item: firing, with first seen, last notified, room for message IDs and a TTL.
    let item = rt.block_on(async {
        let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
        ddb.get_item()
            .table_name("alert-state")
            .key(
                "fingerprint",
                aws_sdk_dynamodb::types::AttributeValue::S(
                    "slo:checkout:checkout-success-rate".into(),
                ),
            )
            .send()
            .await
            .unwrap()
            .item
            .expect("state item")
    });
    assert_eq!(item["status"].as_s().unwrap(), "firing");
    assert_eq!(item["severity"].as_s().unwrap(), "page");
    let first_seen: u64 = item["first_seen"].as_n().unwrap().parse().unwrap();
    let expires: u64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(first_seen.abs_diff(now()) < 120);
    assert!(expires >= first_seen + 7 * 86_400);
    assert!(item["message_ids"].as_m().unwrap().is_empty());
    assert!(item.contains_key("last_notified"));
}
