//! The watchdog end to end against real local servers: moto's server for CloudWatch, Auto
//! Scaling, ELBv2, RDS and DynamoDB, a local HTTP server for synthetic checks, and the real
//! `vigil-watchdog` binary. Metric data is put by the test and read back by the watchdog.
//!
//! All scenarios live in this one file so the AWS SDKs are linked into one test binary.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use serde_json::Value;
use vigil_test_support::Moto;

const BIN: &str = env!("CARGO_BIN_EXE_vigil-watchdog");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The start of the minute `k` minutes before the current one (k = 1: the last whole minute).
fn minute_ago(k: u64) -> u64 {
    now() / 60 * 60 - k * 60
}

fn write_spec(dir: &Path, text: &str) {
    std::fs::write(dir.join("spec.yaml"), text).expect("write spec");
}

/// `vigil-watchdog` with moto's environment (the SDK's standard variables only).
fn watchdog(moto: &Moto, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).envs(moto.env()).env("VIGIL_LOG", "warn");
    cmd
}

fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run vigil-watchdog");
    assert!(
        out.status.success(),
        "vigil-watchdog failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `check --once --output json` → the report.
fn check_json(moto: &Moto, spec: &Path, extra: &[&str]) -> Value {
    let spec = spec.to_str().unwrap();
    let mut args = vec!["check", "--spec", spec, "--once", "--output", "json"];
    args.extend_from_slice(extra);
    let out = run_ok(watchdog(moto, &args));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn finding<'a>(report: &'a Value, fingerprint: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fingerprint"] == fingerprint)
        .unwrap_or_else(|| panic!("no finding {fingerprint} in {report:#}"))
}

fn decisions<'a>(report: &'a Value, action: &str) -> Vec<&'a Value> {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == action)
        .collect()
}

/// Waits for a fresh minute when the current one is nearly over, so that data put relative to
/// this minute is read back within the same minute and exact event counts hold.
async fn start_of_a_minute() {
    let second = now() % 60;
    if second > 40 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
}

/// Puts one datapoint per (minute start, value), with the given dimensions.
async fn put_minutes(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metric: &str,
    dims: &[(&str, &str)],
    points: impl IntoIterator<Item = (u64, f64)>,
) {
    let dimensions: Vec<Dimension> = dims
        .iter()
        .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
        .collect();
    let data: Vec<MetricDatum> = points
        .into_iter()
        .map(|(ts, value)| {
            MetricDatum::builder()
                .metric_name(metric)
                .set_dimensions(Some(dimensions.clone()))
                // Inside the minute's bucket, not on its edge.
                .timestamp(DateTime::from_secs(ts as i64 + 1))
                .value(value)
                .build()
        })
        .collect();
    for chunk in data.chunks(500) {
        cw.put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .expect("PutMetricData");
    }
}

const CHECKOUT: [(&str, &str); 2] = [("service", "checkout"), ("route", "POST /checkout")];
const CART: [(&str, &str); 2] = [("service", "cart"), ("route", "POST /cart")];

/// Checkout: 1000 requests a minute for the last hour, 2% failing (a 20x burn at 99.9%) and
/// 99% under 300 ms. Cart: six clean hours of the same traffic except a 3-minute blip of 10%
/// errors in the last minutes.
async fn put_shop_traffic(cw: &aws_sdk_cloudwatch::Client) {
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

const SHOP_SLOS: &str = r#"
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

/// An Auto Scaling group of three instances over three AZs.
async fn make_asg(moto: &Moto, name: &str) -> Vec<String> {
    let asg = aws_sdk_autoscaling::Client::new(&moto.sdk_config().await);
    asg.create_launch_configuration()
        .launch_configuration_name(format!("{name}-lc"))
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .expect("CreateLaunchConfiguration");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(format!("{name}-lc"))
        .min_size(3)
        .max_size(3)
        .desired_capacity(3)
        .set_availability_zones(Some(vec![
            "us-east-1a".into(),
            "us-east-1b".into(),
            "us-east-1c".into(),
        ]))
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    groups.auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect()
}

async fn set_health(moto: &Moto, instance: &str, health: &str) {
    aws_sdk_autoscaling::Client::new(&moto.sdk_config().await)
        .set_instance_health()
        .instance_id(instance)
        .health_status(health)
        .should_respect_grace_period(false)
        .send()
        .await
        .expect("SetInstanceHealth");
}

#[test]
fn an_asg_with_in_service_but_unhealthy_instances_fails_then_resolves() {
    let moto = Moto::start();
    let rt = runtime();
    let instances = rt.block_on(make_asg(&moto, "shop-checkout"));
    assert_eq!(instances.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    write_spec(
        dir.path(),
        "settings:\n  state: { table: alert-state }\nservices:\n  checkout:\n    checks:\n      - asg: { group: shop-checkout, min_healthy: 2, min_azs: 1, severity: page }\n  spread:\n    checks:\n      - asg: { group: shop-checkout, min_healthy: 1, min_azs: 3 }\n",
    );
    let spec = dir.path().to_str().unwrap();
    run_ok(watchdog(&moto, &["create-state-table", "--spec", spec]));
    let fp = "asg:checkout:shop-checkout";

    let decided = |report: &Value, action: &str| {
        decisions(report, action)
            .iter()
            .filter(|d| d["fingerprint"] == fp)
            .count()
    };
    let report = check_json(&moto, dir.path(), &[]);
    assert_eq!(finding(&report, fp)["status"], "ok", "{report:#}");
    assert_eq!(
        report["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["fingerprint"] == fp)
            .count(),
        0
    );
    // AZ spread: moto places the group's instances itself; the check must agree with them.
    let spread = finding(&report, "asg:spread:shop-checkout");
    let azs = spread["values"]["azs"].as_array().unwrap().len();
    assert_eq!(
        spread["status"],
        if azs < 3 { "firing" } else { "ok" },
        "{spread:#}"
    );

    // Two instances stay InService but turn Unhealthy: only one still counts.
    rt.block_on(async {
        set_health(&moto, &instances[0], "Unhealthy").await;
        set_health(&moto, &instances[1], "Unhealthy").await;
    });
    let report = check_json(&moto, dir.path(), &[]);
    let f = finding(&report, fp);
    assert_eq!(f["status"], "firing", "{f:#}");
    assert_eq!(f["values"]["in_service_healthy"], 1);
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("only 1 InService and Healthy"),
        "{f:#}"
    );
    let details = f["details"].to_string();
    assert!(
        details.contains(&instances[0]) && details.contains("InService/Unhealthy (not counted)"),
        "{details}"
    );
    assert_eq!(decided(&report, "page"), 1);

    // Healthy again: the incident resolves once.
    rt.block_on(async {
        set_health(&moto, &instances[0], "Healthy").await;
        set_health(&moto, &instances[1], "Healthy").await;
    });
    let report = check_json(&moto, dir.path(), &[]);
    assert_eq!(finding(&report, fp)["status"], "ok");
    assert_eq!(decided(&report, "resolve"), 1, "{:#}", report["decisions"]);
    let report = check_json(&moto, dir.path(), &[]);
    assert_eq!(
        report["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["fingerprint"] == fp)
            .count(),
        0
    );
}

#[test]
fn a_host_whose_agent_stopped_reporting_is_found() {
    let moto = Moto::start();
    let rt = runtime();
    let members = rt.block_on(async {
        let members = make_asg(&moto, "shop-cart").await;
        let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
        // The group's first two instances report; the third never did.
        for member in &members[..2] {
            put_minutes(
                &cw,
                "Vigil/Agent",
                "heartbeat",
                &[("host", member.as_str())],
                (1..=10).map(|k| (minute_ago(k), 1.0)),
            )
            .await;
        }
        let host = |h| [("host", h)];
        // host-a reports every minute; host-b stopped 20 minutes ago.
        put_minutes(
            &cw,
            "Vigil/Agent",
            "heartbeat",
            &host("host-a"),
            (1..=30).map(|k| (minute_ago(k), 1.0)),
        )
        .await;
        put_minutes(
            &cw,
            "Vigil/Agent",
            "heartbeat",
            &host("host-b"),
            (20..=30).map(|k| (minute_ago(k), 1.0)),
        )
        .await;
        members
    });
    let dir = tempfile::tempdir().unwrap();
    // host-c is declared but never reported at all: absence of data is a finding too.
    write_spec(
        dir.path(),
        "services:\n  platform:\n    checks:\n      - heartbeat: { within: 5m, hosts: [host-c], discover: true, severity: page }\n  cart:\n    checks:\n      - heartbeat: { asgs: [shop-cart] }\n",
    );
    let report = check_json(&moto, dir.path(), &["--dry-run"]);
    let f = finding(&report, "heartbeat:platform:Vigil/Agent/heartbeat");
    assert_eq!(f["status"], "firing", "{f:#}");
    let silent: Vec<&str> = f["values"]["hosts_silent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(silent, ["host-b", "host-c"]);
    // Discovery found host-a, host-b and the two reporting group members.
    assert_eq!(f["values"]["hosts_expected"], 5);
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("2 hosts stopped reporting")
    );

    // Over the group: its InService members are expected; discovered hosts outside it are not.
    let cart = finding(&report, "heartbeat:cart:Vigil/Agent/heartbeat");
    assert_eq!(cart["values"]["hosts_expected"], 3, "{cart:#}");
    assert_eq!(
        cart["values"]["hosts_silent"],
        serde_json::json!([members[2]])
    );
}

/// A tiny HTTP server: `/ok` answers 200 with a JSON body, `/slow` after 600 ms, `/broken` 500.
fn serve_http() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let n = stream.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match path.as_str() {
                    "/ok" => ("200 OK", r#"{"status":"ok"}"#),
                    "/slow" => {
                        std::thread::sleep(Duration::from_millis(600));
                        ("200 OK", r#"{"status":"ok"}"#)
                    }
                    "/broken" => ("500 Internal Server Error", r#"{"status":"down"}"#),
                    _ => ("404 Not Found", ""),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

#[test]
fn desired_state_checks_report_why_and_one_bad_check_does_not_stop_the_rest() {
    let moto = Moto::start();
    let rt = runtime();
    rt.block_on(async {
        let config = moto.sdk_config().await;
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        ddb.create_table()
            .table_name("shop-users")
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .attribute_definitions(
                aws_sdk_dynamodb::types::AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                aws_sdk_dynamodb::types::KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("CreateTable");

        let rds = aws_sdk_rds::Client::new(&config);
        rds.create_db_instance()
            .db_instance_identifier("shop-inventory")
            .engine("postgres")
            .db_instance_class("db.t3.micro")
            .master_username("shop")
            .master_user_password("not-a-secret-1")
            .allocated_storage(20)
            .multi_az(false)
            .send()
            .await
            .expect("CreateDBInstance");

        let cw = aws_sdk_cloudwatch::Client::new(&config);
        for (name, state) in [
            ("shop-cart-redis-cpu", "OK"),
            ("shop-cart-redis-evictions", "ALARM"),
        ] {
            cw.put_metric_alarm()
                .alarm_name(name)
                .namespace("AWS/ElastiCache")
                .metric_name("CPUUtilization")
                .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
                .period(60)
                .evaluation_periods(1)
                .threshold(90.0)
                .comparison_operator(
                    aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
                )
                .send()
                .await
                .expect("PutMetricAlarm");
            cw.set_alarm_state()
                .alarm_name(name)
                .state_value(state.into())
                .state_reason("set by the test")
                .send()
                .await
                .expect("SetAlarmState");
        }
        let queue = [("QueueName", "shop-notifications-dlq")];
        put_minutes(
            &cw,
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            &queue,
            [(minute_ago(6), 0.0), (minute_ago(1), 3.0)],
        )
        .await;
    });
    let port = serve_http();
    let dir = tempfile::tempdir().unwrap();
    write_spec(
        dir.path(),
        &format!(
            r#"
services:
  shop:
    checks:
      - dynamodb_table: {{ table: shop-users }}
      - dynamodb_table: {{ table: shop-missing }}
      - rds_instance: {{ id: shop-inventory, multi_az: true, severity: page }}
      - rds_instance: {{ id: shop-inventory-replica }}
      - alarms: {{ prefix: shop-cart-redis- }}
      - sqs_dlq: {{ queue: shop-notifications-dlq }}
      - target_group: {{ name: shop-nowhere }}
      - http: {{ url: "http://127.0.0.1:{port}/ok", latency_budget: 500ms, body_contains: '"status":"ok"' }}
      - http: {{ url: "http://127.0.0.1:{port}/slow", latency_budget: 300ms }}
      - http: {{ url: "http://127.0.0.1:{port}/broken" }}
      - http: {{ url: "http://127.0.0.1:1/refused" }}
"#
        ),
    );
    let report = check_json(&moto, dir.path(), &["--dry-run"]);
    let status = |fp: &str| finding(&report, fp)["status"].as_str().unwrap().to_string();
    let summary = |fp: &str| {
        finding(&report, fp)["summary"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let expect: BTreeMap<&str, (&str, &str)> = BTreeMap::from([
        ("dynamodb_table:shop:shop-users", ("ok", "ACTIVE")),
        (
            "dynamodb_table:shop:shop-missing",
            ("firing", "does not exist"),
        ),
        (
            "rds_instance:shop:shop-inventory",
            ("firing", "not Multi-AZ"),
        ),
        (
            "rds_instance:shop:shop-inventory-replica",
            ("firing", "does not exist"),
        ),
        (
            "alarms:shop:shop-cart-redis-*",
            ("firing", "1 alarm in ALARM: shop-cart-redis-evictions"),
        ),
        (
            "sqs_dlq:shop:shop-notifications-dlq",
            ("firing", "3 messages (want <= 0)"),
        ),
        (
            "target_group:shop:shop-nowhere",
            ("firing", "does not exist"),
        ),
    ]);
    for (fp, (want_status, want_text)) in &expect {
        assert_eq!(status(fp), *want_status, "{fp}: {}", summary(fp));
        assert!(summary(fp).contains(want_text), "{fp}: {}", summary(fp));
    }
    let http = |path: &str| format!("http:shop:http://127.0.0.1:{port}/{path}");
    assert_eq!(status(&http("ok")), "ok", "{}", summary(&http("ok")));
    assert!(
        summary(&http("slow")).contains("budget 300ms"),
        "{}",
        summary(&http("slow"))
    );
    assert!(summary(&http("broken")).contains("status 500, want 200"));
    assert_eq!(status("http:shop:http://127.0.0.1:1/refused"), "firing");
    assert_eq!(report["findings"].as_array().unwrap().len(), 11);
    // Ticket severity by default, page where declared.
    assert_eq!(decisions(&report, "page").len(), 1);
    assert_eq!(decisions(&report, "ticket").len(), 8);
}

#[test]
fn an_invalid_spec_is_reported_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write_spec(
        dir.path(),
        "services:\n  checkout:\n    slos:\n      - name: ok\n        objective: 99.9\n        period: 30 days\n        sli: { span_errors: { service: checkout, route: r } }\n",
    );
    let out = Command::new(BIN)
        .args(["validate", "--spec", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:4:9: services.checkout.slos[0]: `30 days`",
        dir.path().join("spec.yaml").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    // The shipped spec validates.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts");
    let out = Command::new(BIN)
        .args(["validate", "--spec", shipped.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("8 services"));

    // Not a spec directory at all: a clear error naming it, no panic.
    let out = Command::new(BIN)
        .args(["check", "--once", "--spec", "/nonexistent/alerts"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/alerts: cannot read the spec directory")
    );
}

/// Real EventBridge payloads, as AWS delivers them.
fn event(source: &str, detail_type: &str, detail: Value) -> Value {
    serde_json::json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-11-22T05:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/vigil-watchdog-every-minute"],
        "detail": detail
    })
}

#[test]
fn the_lambda_answers_scheduled_and_alarm_events_through_cargo_lambda() {
    use vigil_test_support::{ChildGuard, free_port, venv_bin, wait_until};

    let moto = Moto::start();
    let rt = runtime();
    rt.block_on(async {
        let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
        put_shop_traffic(&cw).await;
        cw.put_metric_alarm()
            .alarm_name("shop-payment-gateway-latency")
            .namespace("Shop/Payments")
            .metric_name("GatewayLatency")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
            .period(60)
            .evaluation_periods(1)
            .threshold(2000.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            )
            .send()
            .await
            .expect("PutMetricAlarm");
        cw.set_alarm_state()
            .alarm_name("shop-payment-gateway-latency")
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .state_reason("gateway slow")
            .send()
            .await
            .expect("SetAlarmState");
    });
    let instances = rt.block_on(make_asg(&moto, "shop-checkout"));
    let dir = tempfile::tempdir().unwrap();
    write_spec(
        dir.path(),
        &format!(
            "{SHOP_SLOS}  payment:\n    checks:\n      - alarms: {{ prefix: shop-payment-gateway-, severity: ticket }}\n  capacity:\n    checks:\n      - asg: {{ group: shop-checkout, min_healthy: 3 }}\n"
        ),
    );

    // The Runtime API emulator only: the function is the debug binary cargo already built.
    let port = free_port();
    let mut emulator = Command::new(venv_bin("cargo-lambda"));
    emulator
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let emulator =
        ChildGuard::spawn("cargo-lambda-watch", emulator).expect("start cargo lambda watch");
    assert!(
        wait_until(Duration::from_secs(30), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "cargo lambda watch did not listen:\n{}",
        emulator.log()
    );
    let mut function = Command::new(BIN);
    function
        .envs(moto.env())
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("VIGIL_SPEC", dir.path())
        .env("VIGIL_DRY_RUN", "true");
    let function =
        ChildGuard::spawn("vigil-watchdog-lambda", function).expect("start the function");

    let invoke = |name: &str, payload: &Value| -> Value {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(payload).unwrap()).unwrap();
        let out = Command::new(venv_bin("cargo-lambda"))
            .args([
                "lambda",
                "invoke",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "--data-file",
            ])
            .arg(&file)
            .output()
            .expect("cargo lambda invoke");
        assert!(
            out.status.success(),
            "invoke {name} failed:\n{}\n{}\nfunction log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            function.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{name}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };

    // The scheduled tick evaluates everything.
    let scheduled = invoke(
        "scheduled",
        &event("aws.events", "Scheduled Event", serde_json::json!({})),
    );
    assert_eq!(scheduled["trigger"], "schedule");
    assert_eq!(
        scheduled["findings"].as_array().unwrap().len(),
        5,
        "{scheduled:#}"
    );
    assert_eq!(
        finding(&scheduled, "slo:checkout:checkout-success-rate")["status"],
        "firing"
    );
    assert_eq!(decisions(&scheduled, "page").len(), 1);

    // An alarm state change runs only the checks covering that alarm, at once.
    let alarm = invoke(
        "alarm",
        &event(
            "aws.cloudwatch",
            "CloudWatch Alarm State Change",
            serde_json::json!({
                "alarmName": "shop-payment-gateway-latency",
                "state": { "value": "ALARM", "reason": "Threshold Crossed", "timestamp": "2026-11-22T05:00:00.000+0000" },
                "previousState": { "value": "OK", "reason": "", "timestamp": "2026-11-22T04:00:00.000+0000" },
                "configuration": { "metrics": [] }
            }),
        ),
    );
    assert_eq!(
        alarm["trigger"], "alarm shop-payment-gateway-latency -> ALARM",
        "{alarm:#}"
    );
    let findings = alarm["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{alarm:#}");
    assert_eq!(findings[0]["status"], "firing");
    assert!(
        findings[0]["summary"]
            .as_str()
            .unwrap()
            .contains("shop-payment-gateway-latency")
    );
    assert_eq!(decisions(&alarm, "ticket").len(), 1);

    // Auto Scaling activity and an EC2 state change run the capacity checks of that group (the
    // instance's group comes from Auto Scaling, not from the EC2 API).
    let launch = invoke(
        "asg-launch",
        &event(
            "aws.autoscaling",
            "EC2 Instance Launch Successful",
            serde_json::json!({"AutoScalingGroupName": "shop-checkout", "EC2InstanceId": instances[0], "StatusCode": "InProgress"}),
        ),
    );
    assert_eq!(
        launch["trigger"],
        "EC2 Instance Launch Successful: shop-checkout"
    );
    let fingerprints = |r: &Value| -> Vec<String> {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["fingerprint"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        fingerprints(&launch),
        ["asg:capacity:shop-checkout"],
        "{launch:#}"
    );
    assert_eq!(launch["findings"][0]["status"], "ok");
    let stopped = invoke(
        "ec2-state",
        &event(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            serde_json::json!({"instance-id": instances[1], "state": "stopping"}),
        ),
    );
    assert_eq!(
        fingerprints(&stopped),
        ["asg:capacity:shop-checkout"],
        "{stopped:#}"
    );

    // An event type the watchdog does not handle is reported back, and the function lives on.
    let unknown = invoke(
        "unknown",
        &event(
            "aws.s3",
            "Object Created",
            serde_json::json!({"bucket": {"name": "x"}}),
        ),
    );
    assert!(
        unknown["note"]
            .as_str()
            .unwrap()
            .contains("no handler for this event type"),
        "{unknown:#}"
    );
    assert!(unknown["findings"].as_array().unwrap().is_empty());
    let again = invoke(
        "scheduled-again",
        &event("aws.events", "Scheduled Event", serde_json::json!({})),
    );
    assert_eq!(again["trigger"], "schedule");

    let log = function.log();
    assert!(log.contains("ready for events"), "{log}");
    drop(emulator);
}

#[test]
fn an_unreachable_service_is_an_unknown_finding_and_the_rest_still_run() {
    let moto = Moto::start();
    let rt = runtime();
    rt.block_on(make_asg(&moto, "shop-cart"));
    let dir = tempfile::tempdir().unwrap();
    write_spec(
        dir.path(),
        "settings:\n  state: { table: alert-state }\nservices:\n  cart:\n    checks:\n      - dynamodb_table: { table: shop-carts, severity: page }\n      - asg: { group: shop-cart, min_healthy: 4 }\n",
    );
    // DynamoDB (checks and alert state) answers nowhere; everything else is moto.
    let mut cmd = watchdog(
        &moto,
        &[
            "check",
            "--spec",
            dir.path().to_str().unwrap(),
            "--once",
            "--output",
            "json",
        ],
    );
    cmd.env("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:1");
    let report: Value = serde_json::from_slice(&run_ok(cmd).stdout).unwrap();

    let unknown = finding(&report, "dynamodb_table:cart:shop-carts/unknown");
    assert_eq!(unknown["status"], "unknown");
    // Could not tell is a ticket, never a page, and it does not touch the real fingerprint.
    assert_eq!(unknown["severity"], "ticket");
    assert!(
        unknown["summary"]
            .as_str()
            .unwrap()
            .contains("could not check"),
        "{unknown:#}"
    );
    let asg = finding(&report, "asg:cart:shop-cart");
    assert_eq!(asg["status"], "firing");
    assert!(
        asg["summary"]
            .as_str()
            .unwrap()
            .contains("only 3 InService and Healthy")
    );
    // Without readable state the watchdog still decides (a repeated page beats a missed one).
    let reasons: Vec<&str> = report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.contains("alert state unreadable")),
        "{reasons:?}"
    );
}

/// moto's EC2 Query API, called directly: the watchdog avoids the EC2 SDK crate (huge build),
/// and the test only needs subnets and a stopped instance. moto routes by the credential scope.
async fn ec2_query(moto: &Moto, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2016-11-15")];
    form.extend_from_slice(params);
    reqwest::Client::new()
        .post(&moto.endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261122/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        // Every value here is plain ASCII without reserved characters: no encoding needed.
        .body(form.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("EC2 query")
        .text()
        .await
        .unwrap()
}

/// Every `<tag>value</tag>` in an XML text.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

#[test]
fn alb_availability_and_target_health_per_az_come_from_elbv2_and_alb_metrics() {
    let moto = Moto::start();
    let rt = runtime();
    let (instances, lb_dim, tg_dim) = rt.block_on(async {
        let instances = make_asg(&moto, "shop-checkout").await;
        let subnets_xml = ec2_query(&moto, &[("Action", "DescribeSubnets")]).await;
        let subnets = xml_values(&subnets_xml, "subnetId");
        let vpc = xml_values(&subnets_xml, "vpcId").remove(0);
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&moto.sdk_config().await);
        let lb = elb
            .create_load_balancer()
            .name("shop-private")
            .scheme(aws_sdk_elasticloadbalancingv2::types::LoadBalancerSchemeEnum::Internal)
            .set_subnets(Some(subnets[..2].to_vec()))
            .send()
            .await
            .expect("CreateLoadBalancer");
        let lb_arn = lb.load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_string();
        let tg = elb
            .create_target_group()
            .name("shop-checkout")
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(8080)
            .vpc_id(vpc)
            .send()
            .await
            .expect("CreateTargetGroup");
        let tg_arn = tg.target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string();
        elb.register_targets()
            .target_group_arn(&tg_arn)
            .set_targets(Some(
                instances
                    .iter()
                    .map(|i| {
                        aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                            .id(i)
                            .port(8080)
                            .build()
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("RegisterTargets");
        // CloudWatch's ALB dimensions, derived here independently of the watchdog.
        let lb_dim = lb_arn.split_once(":loadbalancer/").unwrap().1.to_string();
        let tg_dim = tg_arn.rsplit_once(':').unwrap().1.to_string();
        // 500 requests a minute for an hour, 5% of them target 5xx: a 50x burn at 99.9%.
        let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
        let dims = [
            ("LoadBalancer", lb_dim.as_str()),
            ("TargetGroup", tg_dim.as_str()),
        ];
        put_minutes(
            &cw,
            "AWS/ApplicationELB",
            "RequestCount",
            &dims,
            (1..=60).map(|k| (minute_ago(k), 500.0)),
        )
        .await;
        put_minutes(
            &cw,
            "AWS/ApplicationELB",
            "TargetResponseTime",
            &dims,
            (1..=60).map(|k| (minute_ago(k), 0.12)),
        )
        .await;
        put_minutes(
            &cw,
            "AWS/ApplicationELB",
            "HTTPCode_Target_5XX_Count",
            &dims,
            (1..=60).map(|k| (minute_ago(k), 25.0)),
        )
        .await;
        // One instance stops: its target is no longer healthy.
        ec2_query(
            &moto,
            &[("Action", "StopInstances"), ("InstanceId.1", &instances[0])],
        )
        .await;
        (instances, lb_dim, tg_dim)
    });
    let dir = tempfile::tempdir().unwrap();
    write_spec(
        dir.path(),
        &format!(
            r#"
services:
  checkout:
    slos:
      - name: checkout-availability
        objective: 99.9
        sli: {{ alb_availability: {{ load_balancer: shop-private, target_group: shop-checkout }} }}
      - name: by-dimension
        objective: 99.9
        sli: {{ alb_availability: {{ load_balancer: "{lb_dim}", target_group: "{tg_dim}" }} }}
      - name: checkout-latency
        objective: 95
        sli: {{ alb_latency: {{ load_balancer: shop-private, target_group: shop-checkout, threshold_ms: 300 }} }}
      - name: misnamed
        objective: 99.9
        sli: {{ alb_availability: {{ load_balancer: shop-private, target_group: shop-chekout }} }}
    checks:
      - target_group: {{ name: shop-checkout, min_healthy: 2 }}
  checkout-per-az:
    checks:
      - target_group: {{ name: shop-checkout, min_healthy: 3, min_healthy_per_az: 1, azs: [us-east-1d] }}
"#
        ),
    );
    let report = check_json(&moto, dir.path(), &["--dry-run"]);

    for name in ["checkout-availability", "by-dimension"] {
        let slo = finding(&report, &format!("slo:checkout:{name}"));
        assert_eq!(slo["status"], "firing", "{slo:#}");
        assert!(
            (slo["values"]["burn_rates"]["1h"].as_f64().unwrap() - 50.0).abs() < 1e-6,
            "{slo:#}"
        );
    }
    // moto computes no percentile ranks (HTTP 500 for `PR(:0.3)`): that SLO is unknown, and
    // because extended statistics are read in calls of their own, nothing else is affected.
    let latency = finding(&report, "slo:checkout:checkout-latency/unknown");
    assert!(
        latency["summary"]
            .as_str()
            .unwrap()
            .contains("GetMetricData failed"),
        "{latency:#}"
    );
    let misnamed = finding(&report, "slo:checkout:misnamed/unknown");
    assert!(
        misnamed["summary"]
            .as_str()
            .unwrap()
            .contains("target group shop-chekout not found"),
        "{misnamed:#}"
    );

    // Two of three targets healthy: enough for min 2 but not 3, and none in us-east-1d.
    let findings = report["findings"].as_array().unwrap();
    let tgs: Vec<&Value> = findings
        .iter()
        .filter(|f| f["kind"] == "target_group")
        .collect();
    assert_eq!(tgs.len(), 2);
    let tg_min2 = tgs
        .iter()
        .find(|f| f["summary"].as_str().unwrap().contains("2 healthy targets"))
        .expect("min 2 finding");
    assert_eq!(tg_min2["values"]["healthy"], 2, "{tg_min2:#}");
    assert!(tg_min2["details"].to_string().contains(&instances[0]));
    assert!(
        tgs.iter().any(|f| f["status"] == "firing"
            && f["summary"]
                .as_str()
                .unwrap()
                .contains("2 healthy targets, want >= 3")
            && f["summary"]
                .as_str()
                .unwrap()
                .contains("us-east-1d has 0 healthy, want >= 1")),
        "{tgs:#?}"
    );
    // Instance targets have no AZ in DescribeTargetHealth: it came from Auto Scaling.
    let per_az = tgs.iter().find(|f| f["status"] == "firing").unwrap();
    let azs = per_az["values"]["healthy_per_az"].as_object().unwrap();
    assert!(azs.contains_key("us-east-1d"), "{per_az:#}");
    assert!(
        azs.keys().all(|az| az.starts_with("us-east-1")),
        "{per_az:#}"
    );
    assert_eq!(
        azs.values().filter_map(Value::as_u64).sum::<u64>(),
        2,
        "{per_az:#}"
    );
}
