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
use serde_json::Value;
use vigil_test_support::slack::{BOT_TOKEN, SlackStandIn, WEBHOOK_PATH};
use vigil_test_support::{Moto, put_minutes};

const BIN: &str = env!("CARGO_BIN_EXE_vigil-watchdog");

// `render` and `report`: dashboards, alarms and the SLO report (watchdog/tests/dashboards/).
mod dashboards;

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
    // What an unreadable state table makes the watchdog remember lives per run here, never in
    // a file shared by tests (or by later runs of the suite).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    cmd.env(
        "VIGIL_FALLBACK_LEDGER",
        std::env::temp_dir().join(format!("vigil-ledger-{}-{nanos}.json", std::process::id())),
    );
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

/// The watchdog as a Lambda function behind the real Runtime API: `cargo lambda watch` (the
/// emulator only; the function is the debug binary cargo already built) and `cargo lambda
/// invoke` for each event.
struct LambdaRuntime {
    port: u16,
    /// Where invoke payloads are written.
    dir: tempfile::TempDir,
    function: vigil_test_support::ChildGuard,
    _emulator: vigil_test_support::ChildGuard,
}

impl LambdaRuntime {
    fn start(moto: &Moto, spec: &Path, env: &[(&str, &str)]) -> LambdaRuntime {
        use vigil_test_support::{ChildGuard, free_port, venv_bin, wait_until};
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
            .env("VIGIL_SPEC", spec)
            .envs(env.iter().copied());
        let function =
            ChildGuard::spawn("vigil-watchdog-lambda", function).expect("start the function");
        LambdaRuntime {
            port,
            dir: tempfile::tempdir().unwrap(),
            function,
            _emulator: emulator,
        }
    }

    /// `cargo lambda invoke` with `payload`; the function's answer.
    fn invoke(&self, name: &str, payload: &Value) -> Value {
        use vigil_test_support::venv_bin;
        let file = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(payload).unwrap()).unwrap();
        let out = Command::new(venv_bin("cargo-lambda"))
            .args([
                "lambda",
                "invoke",
                "-A",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
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
            self.function.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{name}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

#[test]
fn the_lambda_answers_scheduled_and_alarm_events_through_cargo_lambda() {
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

    let lambda = LambdaRuntime::start(&moto, dir.path(), &[("VIGIL_DRY_RUN", "true")]);
    let invoke = |name: &str, payload: &Value| lambda.invoke(name, payload);

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

    let log = lambda.function.log();
    assert!(log.contains("ready for events"), "{log}");
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
    // Without readable state the watchdog still decides (a repeated page beats a missed one),
    // and reports the outage of its own state as a third finding.
    let reasons: Vec<&str> = report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    finding(&report, "watchdog:watchdog:state:alert-state");
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

/// An internal ALB `shop-private` with target group `shop-checkout` (HTTP 8080) holding the
/// given instances: (load balancer ARN, target group ARN).
async fn make_alb(moto: &Moto, instances: &[String]) -> (String, String) {
    let subnets_xml = ec2_query(moto, &[("Action", "DescribeSubnets")]).await;
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
    (lb_arn, tg_arn)
}

#[test]
fn alb_availability_and_target_health_per_az_come_from_elbv2_and_alb_metrics() {
    let moto = Moto::start();
    let rt = runtime();
    let (instances, lb_dim, tg_dim) = rt.block_on(async {
        let instances = make_asg(&moto, "shop-checkout").await;
        let (lb_arn, tg_arn) = make_alb(&moto, &instances).await;
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

// ---------------------------------------------------------------------------------------------
// Notifier: Slack (a local stand-in), SNS and SSM (moto), alert state (moto's DynamoDB).

/// A health endpoint whose status the test sets (`/health`).
fn serve_health(status: std::sync::Arc<std::sync::atomic::AtomicU16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let code = status.load(std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"
            );
        }
    });
    port
}

/// SNS messages moto says were published to `topic_arn`: (subject, message, attributes).
fn sns_sent(moto: &Moto, topic_arn: &str) -> Vec<Value> {
    let data: Value = serde_json::from_str(&moto.data()).unwrap();
    data["sns"]["Topic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["arn"] == topic_arn)
        .flat_map(|t| {
            t["sent_notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// Events moto archived from the `vigil` bus.
fn archived_events(moto: &Moto) -> Vec<Value> {
    let data: Value = serde_json::from_str(&moto.data()).unwrap();
    data["events"]["Archive"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"] == "vigil-all")
        .flat_map(|a| a["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// A notifier scenario, so each test states only what differs: moto seeded with the bot token
/// (SSM SecureString), the `vigil` bus with an archive, the `shop-oncall` SNS topic and a
/// verified SES sender; the Slack stand-in; a `/health` endpoint answering `health` (500 at
/// start); and a spec directory. Specs name these through `$SLACK_PORT`, `$TOPIC_ARN` and
/// `$HEALTH_PORT`.
struct Fixture {
    moto: Moto,
    rt: tokio::runtime::Runtime,
    slack: SlackStandIn,
    dir: tempfile::TempDir,
    topic_arn: String,
    health: std::sync::Arc<std::sync::atomic::AtomicU16>,
    health_port: u16,
    /// Extra environment for the watchdog's runs.
    env: Vec<(String, String)>,
}

/// Bot, webhook, SNS and SES email for every page; resolve after two ok runs; one failing HTTP check.
const STANDARD_SPEC: &str = r##"settings:
  state: { table: alert-state, resolve_after: 2 }
  notify:
    dashboard_url: https://grafana.example/d/shop
    event_bus: vigil
    receivers:
      oncall-bot: { slack_bot: { token: { ssm: /vigil/slack/bot-token }, channel: "#shop-oncall", api_url: "http://127.0.0.1:$SLACK_PORT/api", allow_insecure_http: true } }
      oncall-hook: { slack_webhook: { url: { env: VIGIL_TEST_SLACK_WEBHOOK }, allow_insecure_http: true } }
      oncall-sns: { sns: { topic_arn: "$TOPIC_ARN" } }
      oncall-mail: { ses_email: { from: watchdog@shop.example, to: [oncall@shop.example] } }
    routes:
      - match: { severity: page }
        receivers: [oncall-bot, oncall-hook, oncall-sns, oncall-mail]
services:
  shop:
    labels: { runbook: "https://runbooks.example/shop" }
    checks:
      - http: { url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }
"##;

impl Fixture {
    fn start() -> Fixture {
        let moto = Moto::start();
        let rt = runtime();
        let topic_arn = rt.block_on(async {
            let config = moto.sdk_config().await;
            aws_sdk_ssm::Client::new(&config)
                .put_parameter()
                .name("/vigil/slack/bot-token")
                .value(BOT_TOKEN)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .send()
                .await
                .expect("PutParameter");
            // A custom bus (moto's default bus fails PutEvents when a rule has a Lambda
            // target), and an archive on it, from which moto's API shows every event put.
            let events = aws_sdk_eventbridge::Client::new(&config);
            let bus = events
                .create_event_bus()
                .name("vigil")
                .send()
                .await
                .expect("CreateEventBus")
                .event_bus_arn
                .unwrap();
            events
                .create_archive()
                .archive_name("vigil-all")
                .event_source_arn(bus)
                .event_pattern(r#"{"source":["vigil.watchdog"]}"#)
                .send()
                .await
                .expect("CreateArchive");
            aws_sdk_sesv2::Client::new(&config)
                .create_email_identity()
                .email_identity("watchdog@shop.example")
                .send()
                .await
                .expect("CreateEmailIdentity");
            aws_sdk_sns::Client::new(&config)
                .create_topic()
                .name("shop-oncall")
                .send()
                .await
                .expect("CreateTopic")
                .topic_arn
                .unwrap()
        });
        let health = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(500));
        let health_port = serve_health(health.clone());
        Fixture {
            moto,
            rt,
            slack: SlackStandIn::start(),
            dir: tempfile::tempdir().unwrap(),
            topic_arn,
            health,
            health_port,
            env: Vec::new(),
        }
    }

    /// `start` with `STANDARD_SPEC` in place.
    fn standard() -> Fixture {
        let fx = Fixture::start();
        fx.spec(STANDARD_SPEC);
        fx
    }

    fn spec_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the spec (placeholders filled in) and makes sure the state table exists.
    fn spec(&self, text: &str) {
        let text = text
            .replace("$SLACK_PORT", &self.slack.port.to_string())
            .replace("$TOPIC_ARN", &self.topic_arn)
            .replace("$HEALTH_PORT", &self.health_port.to_string());
        write_spec(self.spec_dir(), &text);
        if text.contains("state:") {
            run_ok(watchdog(
                &self.moto,
                &["create-state-table", "--spec", self.dir_str()],
            ));
        }
    }

    fn dir_str(&self) -> &str {
        self.spec_dir().to_str().unwrap()
    }

    /// A `check --once --output json` run with debug logs and the webhook secret in the
    /// environment; returns the report and everything logged.
    fn run(&self) -> (Value, String) {
        let out = run_ok(self.command());
        let report = serde_json::from_slice(&out.stdout).unwrap();
        (report, String::from_utf8_lossy(&out.stderr).to_string())
    }

    fn command(&self) -> Command {
        let mut cmd = watchdog(
            &self.moto,
            &[
                "check",
                "--spec",
                self.dir_str(),
                "--once",
                "--output",
                "json",
            ],
        );
        cmd.env("VIGIL_LOG", "debug")
            .env("VIGIL_TEST_SLACK_WEBHOOK", self.slack.webhook_url())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn set_health(&self, code: u16) {
        self.health.store(code, std::sync::atomic::Ordering::SeqCst);
    }

    /// The fingerprint of the `/health` check in service `shop`.
    fn health_fp(&self) -> String {
        format!("http:shop:http://127.0.0.1:{}/health", self.health_port)
    }

    fn sns(&self) -> Vec<Value> {
        sns_sent(&self.moto, &self.topic_arn)
    }

    /// Emails moto's SES accepted.
    fn ses(&self) -> Vec<Value> {
        let data: Value = serde_json::from_str(&self.moto.data()).unwrap();
        data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn events(&self) -> Vec<Value> {
        archived_events(&self.moto)
    }

    fn item(
        &self,
        fingerprint: &str,
    ) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        self.rt.block_on(async {
            let ddb = aws_sdk_dynamodb::Client::new(&self.moto.sdk_config().await);
            ddb.get_item()
                .table_name("alert-state")
                .key(
                    "fingerprint",
                    aws_sdk_dynamodb::types::AttributeValue::S(fingerprint.into()),
                )
                .send()
                .await
                .unwrap()
                .item
                .expect("state item")
        })
    }

    /// The incident's `message_ids` (receiver -> id).
    fn ids(&self, fingerprint: &str) -> BTreeMap<String, String> {
        self.item(fingerprint)["message_ids"]
            .as_m()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_s().unwrap().clone()))
            .collect()
    }

    /// Every request the Slack stand-in got, on any path.
    fn slack_total(&self) -> usize {
        self.slack.requests.lock().unwrap().len()
    }
}

/// The schedule and state-change events start invocations exactly during incidents. Counted
/// at the receivers: four invocations over one failing check, started 0.4 s apart, with a
/// Slack that takes two seconds per call — so the later ones read state after the first opened
/// the incident but while it is still sending — give each receiver exactly one message; the
/// same for the resolve.
#[test]
fn concurrent_invocations_deliver_one_message_per_receiver() {
    let fx = Fixture::standard();
    fx.slack.answer_slowly(Duration::from_secs(2));
    let run_four = || {
        let children: Vec<_> = (0..4)
            .map(|i| {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(400));
                }
                fx.command()
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn vigil-watchdog")
            })
            .collect();
        children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                let log = String::from_utf8_lossy(&out.stderr).to_string();
                assert!(out.status.success(), "{log}");
                assert!(!log.contains(BOT_TOKEN), "the bot token was logged");
                serde_json::from_slice::<Value>(&out.stdout).unwrap()
            })
            .collect::<Vec<Value>>()
    };
    let reports = run_four();
    let pages: usize = reports.iter().map(|r| decisions(r, "page").len()).sum();
    assert_eq!(pages, 1, "{reports:#?}");
    assert_eq!(fx.slack.requests("/api/chat.postMessage").len(), 1);
    assert_eq!(fx.slack.requests(WEBHOOK_PATH).len(), 1);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);
    let ids = fx.ids(&fx.health_fp());
    assert_eq!(ids.len(), 4, "{ids:?}");
    // No claim is left behind once every message is recorded.
    let item = fx.item(&fx.health_fp());
    assert!(item["claims"].as_m().unwrap().is_empty(), "{item:?}");

    // Recovered: two ok rounds (resolve_after: 2), four invocations each.
    fx.set_health(200);
    run_four();
    run_four();
    assert_eq!(fx.slack.requests("/api/chat.update").len(), 1);
    assert_eq!(fx.slack.requests(WEBHOOK_PATH).len(), 2);
    assert_eq!(fx.sns().len(), 2);
    assert_eq!(fx.ses().len(), 2);
    assert_eq!(fx.slack_total(), 4);
}

/// DynamoDB unreadable: the watchdog cannot know what it sent. It still pages — the failing
/// check, and the outage of its own state — but not again on the next run: at most once per
/// `unreadable_repeat`.
#[test]
fn unreadable_state_pages_once_per_interval_and_reports_itself() {
    let mut fx = Fixture::standard();
    fx.env.push((
        "AWS_ENDPOINT_URL_DYNAMODB".into(),
        "http://127.0.0.1:1".into(),
    ));
    fx.env.push((
        "VIGIL_FALLBACK_LEDGER".into(),
        fx.spec_dir().join("ledger.json").display().to_string(),
    ));
    let (report, _) = fx.run();
    let pages: Vec<&str> = decisions(&report, "page")
        .iter()
        .map(|d| d["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(pages.len(), 2, "{report:#}");
    assert!(pages.contains(&fx.health_fp().as_str()), "{pages:?}");
    assert!(
        pages.contains(&"watchdog:watchdog:state:alert-state"),
        "{pages:?}"
    );
    assert!(
        decisions(&report, "page")
            .iter()
            .all(|d| d["cause"]["kind"] == "state_unreadable"),
        "{report:#}"
    );
    let posts = fx.slack.requests("/api/chat.postMessage").len();
    assert_eq!(posts, 2, "the check and the state outage");
    // The next run, still unreadable: nothing new is sent.
    let (report, _) = fx.run();
    assert!(decisions(&report, "page").is_empty(), "{report:#}");
    assert_eq!(fx.slack.requests("/api/chat.postMessage").len(), posts);
}

#[test]
fn one_incident_pages_each_receiver_once_and_resolves_in_place() {
    let fx = Fixture::standard();
    let slack = &fx.slack;
    let fingerprint = fx.health_fp();
    // Slack rate-limits the first webhook post.
    slack.answer_next(WEBHOOK_PATH, 429, Some(1));
    let mut logs = String::new();

    // Run 1: the incident opens; every receiver gets exactly one message.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(decisions(&report, "page").len(), 1, "{report:#}");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 4, "{deliveries:#?}");
    assert!(
        deliveries.iter().all(|d| d["ok"] == true),
        "{deliveries:#?}"
    );
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["channel"], "#shop-oncall");
    assert!(
        posts[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] shop: http://")
    );
    assert_eq!(posts[0].body["attachments"][0]["color"], "#e01e5a");
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 2, "the 429 is retried once");
    let waited = hooks[1].at - hooks[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After 1 honoured: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let sent = fx.sns();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    // moto keeps [message id, message, subject, attributes, group id].
    let structure: Value = serde_json::from_str(sent[0][1].as_str().unwrap()).unwrap();
    assert!(structure["sms"].as_str().unwrap().chars().count() <= 140);
    assert!(
        structure["email"]
            .as_str()
            .unwrap()
            .contains("Runbook: https://runbooks.example/shop")
    );
    assert!(
        structure["default"]
            .as_str()
            .unwrap()
            .contains("Fingerprint: http:shop:")
    );
    let subject = sent[0][2].as_str().unwrap();
    assert!(
        subject.starts_with("[PAGE] shop: ") && subject.chars().count() < 100,
        "{subject}"
    );
    assert_eq!(sent[0][3]["severity"]["Value"], "page");
    assert_eq!(sent[0][3]["status"]["Value"], "firing");
    assert_eq!(sent[0][3]["service"]["Value"], "shop");
    // One email (SES), text + HTML.
    let mails = fx.ses();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = mails[0].to_string();
    assert!(mail.contains("[PAGE] shop: http://127.0.0.1"), "{mail}");
    assert!(mail.contains("<!DOCTYPE html>"), "{mail}");
    assert!(mail.contains("oncall@shop.example"), "{mail}");
    let ids = fx.ids(&fingerprint);
    assert_eq!(
        ids.keys().collect::<Vec<_>>(),
        ["oncall-bot", "oncall-hook", "oncall-mail", "oncall-sns"]
    );
    let page_ts = ids["oncall-bot"].clone();
    // `channel|ts` as Slack answered the postMessage (the stand-in's ts counts requests).
    assert!(page_ts.starts_with("C0ALERTS|1700000000.0000"), "{page_ts}");

    // The page is also an event on the bus, with the finding in its detail.
    let events = fx.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["source"], "vigil.watchdog");
    assert_eq!(events[0]["detail-type"], "Vigil Page");
    assert_eq!(events[0]["detail"]["fingerprint"], fingerprint.as_str());
    assert_eq!(events[0]["detail"]["service"], "shop");
    assert_eq!(events[0]["detail"]["status"], "firing");
    assert_eq!(report["events"][0]["ok"], true, "{report:#}");

    // Run 2: still failing; nothing is sent again.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(
        decisions(&report, "already_notified").len(),
        1,
        "{report:#}"
    );
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 1);
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 2);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);

    // Recovered, but one ok evaluation is not enough (resolve_after: 2); a failure in between
    // starts the count again: no flapping and nothing sent.
    let quiet_run = |code: u16, reason: &str, logs: &mut String| {
        fx.set_health(code);
        let (report, log) = fx.run();
        logs.push_str(&log);
        let quiet = decisions(&report, "already_notified");
        assert_eq!(quiet.len(), 1, "{report:#}");
        assert_eq!(quiet[0]["reason"], reason);
        assert!(report.get("deliveries").is_none(), "{report:#}");
    };
    quiet_run(
        200,
        "ok 1 of 2 consecutive evaluations needed to resolve",
        &mut logs,
    );
    quiet_run(500, "still firing; already notified", &mut logs);
    quiet_run(
        200,
        "ok 1 of 2 consecutive evaluations needed to resolve",
        &mut logs,
    );
    assert_eq!(fx.slack_total(), 3);
    assert_eq!(fx.sns().len(), 1);

    // The second ok in a row resolves. The bot's message is updated in place; the webhook and
    // SNS get a resolved message.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 1);
    let updates = slack.requests("/api/chat.update");
    assert_eq!(updates.len(), 1);
    let (channel, ts) = page_ts.split_once('|').unwrap();
    assert_eq!(updates[0].body["channel"], channel);
    assert_eq!(updates[0].body["ts"], ts);
    assert!(
        updates[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop")
    );
    assert_eq!(updates[0].body["attachments"][0]["color"], "#2eb67d");
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 3);
    assert!(
        hooks[2].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED]")
    );
    let sent = fx.sns();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[1][2].as_str().unwrap().starts_with("[RESOLVED] shop"),
        "{sent:#?}"
    );
    assert_eq!(sent[1][3]["status"]["Value"], "resolved");
    let mails = fx.ses();
    assert_eq!(mails.len(), 2);
    assert!(
        mails[1].to_string().contains("[RESOLVED] shop"),
        "{:#}",
        mails[1]
    );
    let events = fx.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["detail-type"], "Vigil Resolve");
    assert_eq!(events[1]["detail"]["status"], "ok");

    // Healthy and resolved: silence.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert!(
        report["decisions"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(fx.slack_total(), 5);
    assert_eq!(fx.sns().len(), 2);
    assert_eq!(fx.ses().len(), 2);

    // Every run put the watchdog's own heartbeat (seven runs) and counted what it sent.
    let sums = fx.rt.block_on(async {
        let cw = aws_sdk_cloudwatch::Client::new(&fx.moto.sdk_config().await);
        let mut sums = BTreeMap::new();
        for metric in ["heartbeat", "notifications_sent", "notifications_failed"] {
            let out = cw
                .get_metric_statistics()
                .namespace("Vigil/Watchdog")
                .metric_name(metric)
                .start_time(DateTime::from_secs(now() as i64 - 900))
                .end_time(DateTime::from_secs(now() as i64 + 60))
                .period(60)
                .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
                .send()
                .await
                .unwrap();
            let sum: f64 = out.datapoints().iter().filter_map(|d| d.sum()).sum();
            sums.insert(metric, sum);
        }
        sums
    });
    assert_eq!(sums["heartbeat"], 7.0, "{sums:?}");
    assert_eq!(sums["notifications_sent"], 8.0, "{sums:?}");
    assert_eq!(sums["notifications_failed"], 0.0, "{sums:?}");

    // The bot token went only into the Authorization header; no secret reached the logs.
    assert!(posts[0].authorization.as_deref() == Some(&format!("Bearer {BOT_TOKEN}")));
    assert!(
        logs.contains("notified"),
        "debug logs were captured:\n{logs}"
    );
    for secret in [BOT_TOKEN, "SeCrEtToKeN", "WeBhOoKsEcReT"] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
}

#[test]
fn a_failing_receiver_gets_its_page_and_its_resolve_on_the_next_run_exactly_once() {
    let fx = Fixture::standard();
    let slack = &fx.slack;
    let fingerprint = fx.health_fp();
    let failed = |report: &Value| -> Vec<Value> {
        report["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["ok"] == false)
            .cloned()
            .collect()
    };
    // Slack's Web API is down for every attempt of this invocation.
    for _ in 0..4 {
        slack.answer_next("/api/chat.postMessage", 500, None);
    }

    let (report, mut logs) = fx.run();
    let failed_now = failed(&report);
    assert_eq!(failed_now.len(), 1, "{report:#}");
    assert_eq!(failed_now[0]["receiver"], "oncall-bot");
    assert!(
        failed_now[0]["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 4 attempts"),
        "{failed_now:#?}"
    );
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 4);
    // The others were not held back, and only they are recorded as notified.
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 1);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);
    assert_eq!(
        fx.ids(&fingerprint).keys().collect::<Vec<_>>(),
        ["oncall-hook", "oncall-mail", "oncall-sns"]
    );

    // Next run: the incident is already notified, but the bot never accepted: it alone is sent.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(
        decisions(&report, "already_notified").len(),
        1,
        "{report:#}"
    );
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0]["receiver"], "oncall-bot");
    assert_eq!(deliveries[0]["ok"], true);
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 5);
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 1);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);
    let ids = fx.ids(&fingerprint);
    assert_eq!(ids.len(), 4, "{ids:?}");

    // And then nothing more while it fires.
    let (report, _) = fx.run();
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert_eq!(fx.slack_total(), 6);

    // Recovered (two ok runs); on the resolving run Slack's chat.update is down throughout.
    fx.set_health(200);
    fx.run();
    for _ in 0..4 {
        slack.answer_next("/api/chat.update", 500, None);
    }
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    let failed_now = failed(&report);
    assert_eq!(failed_now.len(), 1, "{report:#}");
    assert_eq!(failed_now[0]["receiver"], "oncall-bot");
    assert_eq!(failed_now[0]["message"], "resolved");
    assert_eq!(slack.requests("/api/chat.update").len(), 4);
    // The webhook, SNS and email got their resolve at once; only the bot is still owed one.
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 2);
    assert_eq!(fx.sns().len(), 2);
    assert_eq!(fx.ses().len(), 2);
    let item = fx.item(&fingerprint);
    assert_eq!(item["status"].as_s().unwrap(), "resolved");
    assert_eq!(item["resolve_pending"].as_ss().unwrap(), &["oncall-bot"]);
    assert_eq!(fx.events().len(), 2, "a page and a resolve event");

    // Next run: Slack is back; the resolve is retried on the bot alone and updates the page.
    let (report, log) = fx.run();
    logs.push_str(&log);
    let resolves = decisions(&report, "resolve");
    assert_eq!(resolves.len(), 1, "{report:#}");
    assert_eq!(resolves[0]["cause"]["kind"], "resolve_owed", "{report:#}");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0]["receiver"], "oncall-bot");
    assert_eq!(deliveries[0]["ok"], true);
    let updates = slack.requests("/api/chat.update");
    assert_eq!(updates.len(), 5);
    let (channel, ts) = ids["oncall-bot"].split_once('|').unwrap();
    assert_eq!(updates[4].body["channel"], channel);
    assert_eq!(updates[4].body["ts"], ts);
    assert!(
        updates[4].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop")
    );
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 2);
    assert_eq!(fx.sns().len(), 2);
    assert_eq!(fx.ses().len(), 2);
    assert_eq!(fx.events().len(), 2, "a retried resolve is no new event");
    assert!(!fx.item(&fingerprint).contains_key("resolve_pending"));

    // Then quiet: nothing is owed any more.
    let (report, _) = fx.run();
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert!(
        report["decisions"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(fx.slack_total(), 6 + 5 + 1);
    for secret in [BOT_TOKEN, "SeCrEtToKeN", "WeBhOoKsEcReT"] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
}

#[test]
fn a_missing_secret_is_a_clear_error_naming_it() {
    let fx = Fixture::start();
    let ssm = |put: bool| {
        fx.rt.block_on(async {
            let ssm = aws_sdk_ssm::Client::new(&fx.moto.sdk_config().await);
            if put {
                ssm.put_parameter()
                    .name("/vigil/slack/bot-token")
                    .value(BOT_TOKEN)
                    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                    .send()
                    .await
                    .expect("PutParameter");
            } else {
                ssm.delete_parameter()
                    .name("/vigil/slack/bot-token")
                    .send()
                    .await
                    .expect("DeleteParameter");
            }
        })
    };
    ssm(false);
    fx.spec(STANDARD_SPEC);
    let check = |with_webhook: bool| {
        let mut cmd = watchdog(&fx.moto, &["check", "--spec", fx.dir_str(), "--once"]);
        if with_webhook {
            cmd.env("VIGIL_TEST_SLACK_WEBHOOK", fx.slack.webhook_url());
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // The bot token's SSM parameter does not exist.
    let stderr = check(true);
    assert!(
        stderr.contains(
            "receiver oncall-bot: secret SSM parameter /vigil/slack/bot-token does not exist"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("WeBhOoKsEcReT"), "{stderr}");
    // With it in place, the webhook's environment variable is what is missing.
    ssm(true);
    let stderr = check(false);
    assert!(
        stderr.contains(
            "receiver oncall-hook: secret environment variable VIGIL_TEST_SLACK_WEBHOOK is not set"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("SeCrEtToKeN"), "{stderr}");
    // A Slack URL over plain HTTP would carry the secret in clear: refused unless allowed.
    fx.spec(&STANDARD_SPEC.replace(", allow_insecure_http: true", ""));
    let stderr = check(true);
    assert!(
        stderr.contains(
            "receiver oncall-bot: api_url uses http://, which would send the secret in clear"
        ),
        "{stderr}"
    );
    // Nothing was sent by a watchdog that could not start its notifier.
    assert_eq!(fx.slack_total(), 0);
}

/// Messages aiosmtpd printed (its debugging handler prints each one whole).
fn smtp_messages(log: &str) -> Vec<String> {
    log.split("---------- MESSAGE FOLLOWS ----------")
        .skip(1)
        .map(|m| {
            m.split("------------ END MESSAGE ------------")
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// The value of a header in one printed message.
fn mail_header(message: &str, name: &str) -> Option<String> {
    message.lines().find_map(|l| {
        let (k, v) = l.split_once(": ")?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// An SMTP server (`python -u ARGS...`) on a free port, once it listens: (process, port).
/// `{port}` in the arguments is replaced by the port.
fn smtp_server(args: &[&str]) -> (vigil_test_support::ChildGuard, u16) {
    let port = vigil_test_support::free_port();
    let mut cmd = Command::new(vigil_test_support::venv_bin("python"));
    cmd.arg("-u")
        .args(args.iter().map(|a| a.replace("{port}", &port.to_string())));
    let server = vigil_test_support::ChildGuard::spawn("smtp-server", cmd).unwrap();
    assert!(
        vigil_test_support::wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "the SMTP server did not start:\n{}",
        server.log()
    );
    (server, port)
}

#[test]
fn email_goes_out_once_through_ses_and_smtp_and_the_resolve_follows() {
    let fx = Fixture::start();
    let (smtp, smtp_port) = smtp_server(&["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:{port}"]);
    fx.spec(&format!(
        r#"settings:
  state: {{ table: alert-state }}
  notify:
    receivers:
      mail-ses: {{ ses_email: {{ from: watchdog@shop.example, to: [oncall@shop.example] }} }}
      mail-smtp: {{ smtp_email: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: "Vigil <watchdog@shop.example>", to: [oncall@shop.example, lead@shop.example] }} }}
    routes:
      - match: {{ service: shop }}
        receivers: [mail-ses, mail-smtp]
services:
  shop:
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
"#
    ));
    let ses_sent = || fx.ses();

    let (report, _) = fx.run();
    let deliveries = report["deliveries"].as_array().unwrap();
    assert!(
        deliveries.len() == 2 && deliveries.iter().all(|d| d["ok"] == true),
        "{deliveries:#?}"
    );
    let ses = ses_sent();
    assert_eq!(ses.len(), 1, "{ses:#?}");
    let ses_text = ses[0].to_string();
    assert!(
        ses_text.contains("[PAGE] shop: http://127.0.0.1"),
        "{ses_text}"
    );
    assert!(ses_text.contains("oncall@shop.example"), "{ses_text}");
    let mails = smtp_messages(&smtp.log());
    assert_eq!(mails.len(), 1, "{}", smtp.log());
    let page = &mails[0];
    assert!(
        mail_header(page, "Subject")
            .unwrap()
            .starts_with("[PAGE] shop: http://127.0.0.1")
    );
    assert!(
        mail_header(page, "To")
            .unwrap()
            .contains("lead@shop.example")
    );
    assert!(
        mail_header(page, "Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    assert!(page.contains("Content-Type: text/plain"), "{page}");
    assert!(page.contains("Content-Type: text/html"), "{page}");
    let page_id = mail_header(page, "Message-ID").unwrap();

    // Still firing: no second email.
    fx.run();
    assert_eq!(ses_sent().len(), 1);
    assert_eq!(smtp_messages(&smtp.log()).len(), 1);

    // Recovered: a resolve email on both, the SMTP one a reply to the page.
    fx.set_health(200);
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    let ses = ses_sent();
    assert_eq!(ses.len(), 2);
    assert!(
        ses[1].to_string().contains("[RESOLVED] shop"),
        "{:#}",
        ses[1]
    );
    let mails = smtp_messages(&smtp.log());
    assert_eq!(mails.len(), 2);
    assert!(
        mail_header(&mails[1], "Subject")
            .unwrap()
            .starts_with("[RESOLVED] shop")
    );
    assert_eq!(mail_header(&mails[1], "In-Reply-To"), Some(page_id));
    assert_eq!(fx.slack_total(), 0);
}

#[test]
fn a_silence_holds_a_page_until_it_ends_and_module_pages_fold_into_the_alb_page() {
    use std::sync::atomic::AtomicU16;
    let fx = Fixture::start();
    let slack = &fx.slack;
    // The ALB is the fixture's health endpoint.
    fx.set_health(502);
    let alb_port = fx.health_port;
    let modules_port = serve_health(std::sync::Arc::new(AtomicU16::new(503)));
    let cart_port = serve_health(std::sync::Arc::new(AtomicU16::new(500)));
    let rfc3339 = |t: u64| {
        aws_sdk_cloudwatch::primitives::DateTime::from_secs(t as i64)
            .fmt(aws_sdk_cloudwatch::primitives::DateTimeFormat::DateTime)
            .unwrap()
    };
    let spec = |silence_start: u64, silence_end: u64| {
        format!(
            r#"settings:
  state: {{ table: alert-state }}
  notify:
    receivers:
      hook: {{ slack_webhook: {{ url: {{ env: VIGIL_TEST_SLACK_WEBHOOK }}, allow_insecure_http: true }} }}
    routes:
      - receivers: [hook]
    silences:
      - name: cart-maintenance
        match: {{ service: cart }}
        start: "{}"
        end: "{}"
      - name: weekly-never-now
        match: {{ service: platform }}
        days: [mon]
        from: "00:00"
        to: "00:00"
        time_zone: Europe/Berlin
    inhibit:
      - source: {{ service: platform, kind: http }}
        target: {{ labels: {{ availability: module }} }}
services:
  platform:
    checks:
      - http: {{ url: "http://127.0.0.1:{alb_port}/alb", severity: page }}
  checkout:
    labels: {{ availability: module }}
    checks:
      - http: {{ url: "http://127.0.0.1:{modules_port}/checkout", severity: page }}
  payment:
    labels: {{ availability: module }}
    checks:
      - http: {{ url: "http://127.0.0.1:{modules_port}/payment", severity: page }}
  cart:
    checks:
      - http: {{ url: "http://127.0.0.1:{cart_port}/cart", severity: page }}
"#,
            rfc3339(silence_start),
            rfc3339(silence_end)
        )
    };
    // The cart's maintenance window is on now.
    fx.spec(&spec(now() - 60, now() + 3600));
    let alb_fp = format!("http:platform:http://127.0.0.1:{alb_port}/alb");
    let checkout_fp = format!("http:checkout:http://127.0.0.1:{modules_port}/checkout");
    let payment_fp = format!("http:payment:http://127.0.0.1:{modules_port}/payment");
    let cart_fp = format!("http:cart:http://127.0.0.1:{cart_port}/cart");

    // Everything fails: four incidents open, but one message goes out: the ALB page, listing
    // the module pages it holds back. The cart page is silenced.
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "page").len(), 4, "{report:#}");
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let alb_page = hooks[0].body.to_string();
    assert!(alb_page.contains(&format!("`{alb_fp}`")), "{alb_page}");
    assert!(alb_page.contains("Also affected (held back)"), "{alb_page}");
    assert!(
        alb_page.contains(&checkout_fp) && alb_page.contains(&payment_fp),
        "{alb_page}"
    );
    assert!(!alb_page.contains(&cart_fp), "{alb_page}");
    let held: BTreeMap<String, String> = report["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["fingerprint"].as_str().unwrap().to_string(),
                h["why"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(held[&cart_fp], "silenced by cart-maintenance");
    assert_eq!(held[&checkout_fp], format!("inhibited by {alb_fp}"));
    assert_eq!(held[&payment_fp], format!("inhibited by {alb_fp}"));

    // The window ends while the cart still fails, and the ALB recovers while the modules still
    // fail: the cart page goes out, the ALB page resolves, the module pages go out.
    fx.spec(&spec(now() - 7200, now() - 3600));
    fx.set_health(200);
    let (report, _) = fx.run();
    assert!(report.get("held").is_none(), "{report:#}");
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 5, "{hooks:#?}");
    let texts: Vec<String> = hooks[1..]
        .iter()
        .map(|h| h.body["text"].as_str().unwrap().to_string())
        .collect();
    for expected in [
        "[RESOLVED] platform: ",
        "[PAGE] cart: ",
        "[PAGE] checkout: ",
        "[PAGE] payment: ",
    ] {
        assert_eq!(
            texts.iter().filter(|t| t.starts_with(expected)).count(),
            1,
            "{expected} in {texts:#?}"
        );
    }

    // Then quiet.
    fx.run();
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 5);
}

#[test]
fn a_route_repeat_interval_sends_a_reminder_while_the_incident_fires() {
    let fx = Fixture::start();
    let slack = &fx.slack;
    fx.spec(
        r#"settings:
  state: { table: alert-state }
  notify:
    receivers:
      hook: { slack_webhook: { url: { env: VIGIL_TEST_SLACK_WEBHOOK }, allow_insecure_http: true } }
    routes:
      - match: { severity: page }
        receivers: [hook]
        repeat_interval: 2s
services:
  shop:
    checks:
      - http: { url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }
"#,
    );
    fx.run();
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 1);
    // Within the interval: quiet.
    fx.run();
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 1);
    // After it: one reminder, then quiet again.
    std::thread::sleep(Duration::from_millis(2100));
    let (report, _) = fx.run();
    assert_eq!(
        report["deliveries"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 2);
    assert!(
        hooks[1].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] shop")
    );
    fx.run();
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 2);
}

/// Another `/health`-style endpoint whose status the test sets: (status, port).
fn endpoint(code: u16) -> (std::sync::Arc<std::sync::atomic::AtomicU16>, u16) {
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(code));
    let port = serve_health(status.clone());
    (status, port)
}

#[test]
fn findings_firing_together_go_out_as_one_message_per_receiver_and_resolve_per_group() {
    use std::sync::atomic::Ordering;
    let fx = Fixture::start();
    let slack = &fx.slack;
    let (a, a_port) = endpoint(500);
    let (b, b_port) = endpoint(500);
    let (_cart, cart_port) = endpoint(500);
    fx.spec(&format!(
        r##"settings:
  state: {{ table: alert-state, resolve_after: 1 }}
  notify:
    group_by: [service]
    receivers:
      oncall-bot: {{ slack_bot: {{ token: {{ ssm: /vigil/slack/bot-token }}, channel: "#shop-oncall", api_url: "http://127.0.0.1:$SLACK_PORT/api", allow_insecure_http: true }} }}
      oncall-sns: {{ sns: {{ topic_arn: "$TOPIC_ARN" }} }}
      oncall-mail: {{ ses_email: {{ from: watchdog@shop.example, to: [oncall@shop.example] }} }}
    routes:
      - receivers: [oncall-bot, oncall-sns, oncall-mail]
services:
  shop:
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
      - http: {{ url: "http://127.0.0.1:{a_port}/a", severity: page }}
      - http: {{ url: "http://127.0.0.1:{b_port}/b", severity: ticket }}
  cart:
    checks:
      - http: {{ url: "http://127.0.0.1:{cart_port}/cart", severity: page }}
"##
    ));
    let health_fp = fx.health_fp();
    let a_fp = format!("http:shop:http://127.0.0.1:{a_port}/a");
    let b_fp = format!("http:shop:http://127.0.0.1:{b_port}/b");
    let cart_fp = format!("http:cart:http://127.0.0.1:{cart_port}/cart");
    let shop = [health_fp.as_str(), a_fp.as_str(), b_fp.as_str()];

    // Four incidents open together: shop's three are one message per receiver, cart its own.
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "page").len(), 3, "{report:#}");
    assert_eq!(decisions(&report, "ticket").len(), 1, "{report:#}");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 6, "{deliveries:#?}");
    assert!(
        deliveries.iter().all(|d| d["ok"] == true),
        "{deliveries:#?}"
    );
    let grouped: Vec<&Value> = deliveries
        .iter()
        .filter(|d| d["fingerprint"] == "group:shop")
        .collect();
    assert_eq!(grouped.len(), 3, "{deliveries:#?}");
    for d in &grouped {
        let mut carried: Vec<&str> = d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        carried.sort();
        let mut want = shop.to_vec();
        want.sort();
        assert_eq!(carried, want, "{d:#}");
    }
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let shop_post = posts
        .iter()
        .find(|p| {
            p.body["text"]
                .as_str()
                .unwrap()
                .starts_with("[PAGE] shop: 3 findings")
        })
        .unwrap_or_else(|| panic!("{posts:#?}"));
    let shop_body = shop_post.body.to_string();
    for fp in shop {
        assert!(shop_body.contains(fp), "{fp} in {shop_body}");
    }
    assert!(shop_body.contains("[ticket]"), "{shop_body}");
    assert!(!shop_body.contains(&cart_fp), "{shop_body}");
    // The page colour is the most severe finding's.
    assert_eq!(shop_post.body["attachments"][0]["color"], "#e01e5a");
    let sns = fx.sns();
    assert_eq!(sns.len(), 2, "{sns:#?}");
    let shop_sns = sns
        .iter()
        .find(|m| {
            m[2].as_str()
                .unwrap()
                .starts_with("[PAGE] shop: 3 findings")
        })
        .unwrap_or_else(|| panic!("{sns:#?}"));
    let structure: Value = serde_json::from_str(shop_sns[1].as_str().unwrap()).unwrap();
    let email = structure["email"].as_str().unwrap();
    assert!(email.contains("Findings (3):"), "{email}");
    for fp in shop {
        assert!(email.contains(fp), "{fp} in {email}");
    }
    let mails = fx.ses();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let shop_mail = mails
        .iter()
        .map(Value::to_string)
        .find(|m| m.contains("[PAGE] shop: 3 findings"))
        .unwrap_or_else(|| panic!("{mails:#?}"));
    for fp in shop {
        assert!(shop_mail.contains(fp), "{fp} in {shop_mail}");
    }
    // Every finding of the group records the one message each receiver accepted.
    let page_ids = fx.ids(&health_fp);
    assert_eq!(page_ids.len(), 3, "{page_ids:?}");
    for fp in [&a_fp, &b_fp] {
        assert_eq!(fx.ids(fp), page_ids, "{fp}");
    }
    assert_ne!(fx.ids(&cart_fp)["oncall-bot"], page_ids["oncall-bot"]);
    let (channel, ts) = page_ids["oncall-bot"].split_once('|').unwrap();

    // Still firing: nothing more.
    fx.run();
    assert_eq!(fx.slack_total(), 2);

    // One finding of the group recovers while the others fire: its resolve goes out alone, and
    // the bot answers in the page's thread instead of turning the whole page green.
    a.store(200, Ordering::SeqCst);
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    assert!(slack.requests("/api/chat.update").is_empty());
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[2].body["channel"], channel);
    assert_eq!(posts[2].body["thread_ts"], ts);
    assert!(
        posts[2].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop: http://127.0.0.1"),
        "{:#}",
        posts[2].body
    );
    assert_eq!(fx.sns().len(), 3);
    assert_eq!(fx.ses().len(), 3);

    // The rest of the group recovers in one run: one resolve per receiver for both, and the
    // page itself is updated to resolved.
    fx.set_health(200);
    b.store(200, Ordering::SeqCst);
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "resolve").len(), 2, "{report:#}");
    let updates = slack.requests("/api/chat.update");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].body["channel"], channel);
    assert_eq!(updates[0].body["ts"], ts);
    let update = updates[0].body.to_string();
    assert!(
        updates[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop: 2 findings"),
        "{update}"
    );
    assert!(
        update.contains(&health_fp) && update.contains(&b_fp),
        "{update}"
    );
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 3);
    let sns = fx.sns();
    assert_eq!(sns.len(), 4);
    assert!(
        sns[3][2]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop: 2 findings")
    );
    assert_eq!(fx.ses().len(), 4);

    // Cart fires on, untouched; nothing else goes out.
    let (report, _) = fx.run();
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert_eq!(fx.slack_total(), 4);
}

#[test]
fn a_group_waits_for_findings_that_join_it_within_group_wait() {
    use std::sync::atomic::Ordering;
    let fx = Fixture::start();
    let (b, b_port) = endpoint(200);
    fx.spec(&format!(
        r#"settings:
  state: {{ table: alert-state }}
  notify:
    group_by: [service]
    group_wait: 3s
    receivers:
      hook: {{ slack_webhook: {{ url: {{ env: VIGIL_TEST_SLACK_WEBHOOK }}, allow_insecure_http: true }} }}
    routes:
      - receivers: [hook]
services:
  shop:
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
      - http: {{ url: "http://127.0.0.1:{b_port}/b", severity: page }}
"#
    ));
    let b_fp = format!("http:shop:http://127.0.0.1:{b_port}/b");
    let opened = std::time::Instant::now();

    // The first finding opens the incident, but the group waits for company.
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "page").len(), 1, "{report:#}");
    assert!(report.get("deliveries").is_none(), "{report:#}");
    let held = report["held"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{report:#}");
    assert!(
        held[0]["why"]
            .as_str()
            .unwrap()
            .starts_with("grouped by service=shop: waiting"),
        "{held:#?}"
    );
    // A second one starts failing within the wait: it joins.
    b.store(500, Ordering::SeqCst);
    let (report, _) = fx.run();
    assert_eq!(report["held"].as_array().unwrap().len(), 2, "{report:#}");
    assert!(fx.slack.requests(WEBHOOK_PATH).is_empty());
    // Once the wait is over, one message carries both.
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(opened.elapsed()) + Duration::from_millis(1100),
    );
    let (report, _) = fx.run();
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{report:#}");
    let hooks = fx.slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 1);
    let body = hooks[0].body.to_string();
    assert!(
        hooks[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] shop: 2 findings"),
        "{body}"
    );
    assert!(
        body.contains(&fx.health_fp()) && body.contains(&b_fp),
        "{body}"
    );
    // Recorded for both: quiet afterwards.
    fx.run();
    assert_eq!(fx.slack.requests(WEBHOOK_PATH).len(), 1);
}

/// aiosmtpd requiring STARTTLS (with the given certificate) and a login before MAIL, printing
/// each message with the TLS version and login it came with (never the password).
const STARTTLS_SERVER: &str = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, port, user, password = sys.argv[1:6]

class Printer:
    async def handle_DATA(self, server, session, envelope):
        tls = session.ssl["cipher"][1] if session.ssl else "none"
        print("---------- MESSAGE FOLLOWS ----------")
        print(f"X-Test-Tls: {tls}")
        print(f"X-Test-Login: {session.auth_data.login.decode() if session.authenticated else 'none'}")
        print(envelope.content.decode("utf-8", "replace"))
        print("------------ END MESSAGE ------------", flush=True)
        return "250 OK"

def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
Controller(Printer(), hostname="127.0.0.1", port=int(port), tls_context=context,
           require_starttls=True, authenticator=authenticate, auth_require_tls=True,
           auth_required=True).start()
print("listening", flush=True)
while True:
    time.sleep(3600)
"#;

/// A private CA and a server certificate for 127.0.0.1 signed by it, made with the openssl
/// CLI: (CA pem, server cert pem, server key pem).
fn make_certificates(dir: &Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec[..],
            &["-days", "2", "-subj", "/CN=Vigil test CA"][..],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-keyout".into(),
            path("ca.key"),
            "-out".into(),
            path("ca.pem"),
        ])
        .collect(),
        [&["req"][..], &ec[..], &["-subj", "/CN=127.0.0.1"][..]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .chain([
                "-keyout".into(),
                path("server.key"),
                "-out".into(),
                path("server.csr"),
            ])
            .collect(),
        [
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &path("server.ext"),
            "-out",
            &path("server.pem"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

#[test]
fn smtp_over_starttls_trusts_the_configured_ca_and_never_logs_the_password() {
    const PASSWORD: &str = "SmTp-PaSsWoRd-7731";
    let mut fx = Fixture::start();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let script = certs.path().join("server.py");
    std::fs::write(&script, STARTTLS_SERVER).unwrap();
    let (smtp, smtp_port) = smtp_server(&[
        script.to_str().unwrap(),
        &cert,
        &key,
        "{port}",
        "vigil",
        PASSWORD,
    ]);
    fx.env
        .push(("VIGIL_TEST_SMTP_PASSWORD".into(), PASSWORD.into()));
    // `mail` trusts the private CA; `mail-untrusted` is the same server without it.
    fx.spec(&format!(
        r#"settings:
  state: {{ table: alert-state }}
  notify:
    receivers:
      mail: {{ smtp_email: {{ host: 127.0.0.1, port: {smtp_port}, tls: starttls, ca_file: "{ca}", from: watchdog@shop.example, to: [oncall@shop.example], username: vigil, password: {{ env: VIGIL_TEST_SMTP_PASSWORD }} }} }}
      mail-untrusted: {{ smtp_email: {{ host: 127.0.0.1, port: {smtp_port}, from: watchdog@shop.example, to: [oncall@shop.example], username: vigil, password: {{ env: VIGIL_TEST_SMTP_PASSWORD }} }} }}
    routes:
      - receivers: [mail, mail-untrusted]
services:
  shop:
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
"#
    ));

    let (report, mut logs) = fx.run();
    let deliveries = report["deliveries"].as_array().unwrap();
    let outcome = |receiver: &str| {
        deliveries
            .iter()
            .find(|d| d["receiver"] == receiver)
            .unwrap_or_else(|| panic!("{deliveries:#?}"))
            .clone()
    };
    assert_eq!(outcome("mail")["ok"], true, "{deliveries:#?}");
    let untrusted = outcome("mail-untrusted");
    assert_eq!(untrusted["ok"], false, "{deliveries:#?}");
    assert!(
        untrusted["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{untrusted:#}"
    );
    let mails = smtp_messages(&smtp.log());
    assert_eq!(mails.len(), 1, "{}", smtp.log());
    let tls = mail_header(&mails[0], "X-Test-Tls").unwrap();
    assert!(tls.starts_with("TLSv1."), "{tls}");
    assert_eq!(
        mail_header(&mails[0], "X-Test-Login").as_deref(),
        Some("vigil")
    );
    assert!(
        mail_header(&mails[0], "Subject")
            .unwrap()
            .starts_with("[PAGE] shop:")
    );
    assert_eq!(fx.ids(&fx.health_fp()).keys().collect::<Vec<_>>(), ["mail"]);

    // The resolve goes the same way, as a reply to the page.
    fx.set_health(200);
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    let mails = smtp_messages(&smtp.log());
    assert_eq!(mails.len(), 2, "{}", smtp.log());
    assert!(
        mail_header(&mails[1], "X-Test-Tls")
            .unwrap()
            .starts_with("TLSv1.")
    );
    assert!(
        mail_header(&mails[1], "Subject")
            .unwrap()
            .starts_with("[RESOLVED] shop:")
    );
    assert_eq!(
        mail_header(&mails[1], "In-Reply-To"),
        mail_header(&mails[0], "Message-ID")
    );
    assert!(logs.contains("notification failed"), "{logs}");
    assert!(
        !logs.contains(PASSWORD),
        "the password is in the logs:\n{logs}"
    );
    assert!(!report.to_string().contains(PASSWORD));
}

#[test]
fn a_scheduled_lambda_run_pages_slack_sns_and_email_once() {
    let fx = Fixture::standard();
    let webhook = fx.slack.webhook_url();
    let lambda = LambdaRuntime::start(
        &fx.moto,
        fx.spec_dir(),
        &[
            ("VIGIL_TEST_SLACK_WEBHOOK", &webhook),
            ("VIGIL_LOG", "debug"),
        ],
    );
    let tick = event("aws.events", "Scheduled Event", serde_json::json!({}));

    // The scheduled tick finds the failing check and pages through every receiver.
    let report = lambda.invoke("tick-1", &tick);
    assert_eq!(report["trigger"], "schedule", "{report:#}");
    assert_eq!(decisions(&report, "page").len(), 1, "{report:#}");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 4, "{deliveries:#?}");
    assert!(
        deliveries.iter().all(|d| d["ok"] == true),
        "{deliveries:#?}"
    );
    let posts = fx.slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert!(
        posts[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] shop: http://")
    );
    assert_eq!(fx.slack.requests(WEBHOOK_PATH).len(), 1);
    let sns = fx.sns();
    assert_eq!(sns.len(), 1, "{sns:#?}");
    assert!(sns[0][2].as_str().unwrap().starts_with("[PAGE] shop: "));
    assert_eq!(fx.ses().len(), 1);
    assert_eq!(fx.ids(&fx.health_fp()).len(), 4);
    assert_eq!(fx.events().len(), 1);

    // The next tick: already notified, nothing more.
    let report = lambda.invoke("tick-2", &tick);
    assert_eq!(
        decisions(&report, "already_notified").len(),
        1,
        "{report:#}"
    );
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert_eq!(fx.slack_total(), 2);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);

    let log = lambda.function.log();
    assert!(log.contains("notified"), "{log}");
    for secret in [BOT_TOKEN, "SeCrEtToKeN", "WeBhOoKsEcReT"] {
        assert!(!log.contains(secret), "{secret} in the function's log");
    }
}

#[test]
fn module_pages_fold_into_the_alb_target_group_page_while_it_fails() {
    let fx = Fixture::start();
    let slack = &fx.slack;
    let (_payment, payment_port) = endpoint(503);
    // One of the ALB's three targets is stopped: the target group is below its minimum.
    let instances = fx.rt.block_on(async {
        let instances = make_asg(&fx.moto, "shop-checkout").await;
        make_alb(&fx.moto, &instances).await;
        ec2_query(
            &fx.moto,
            &[("Action", "StopInstances"), ("InstanceId.1", &instances[0])],
        )
        .await;
        instances
    });
    fx.spec(&format!(
        r##"settings:
  state: {{ table: alert-state }}
  notify:
    receivers:
      oncall-bot: {{ slack_bot: {{ token: {{ ssm: /vigil/slack/bot-token }}, channel: "#shop-oncall", api_url: "http://127.0.0.1:$SLACK_PORT/api", allow_insecure_http: true }} }}
      oncall-sns: {{ sns: {{ topic_arn: "$TOPIC_ARN" }} }}
    routes:
      - receivers: [oncall-bot, oncall-sns]
    inhibit:
      - source: {{ service: platform, kind: target_group }}
        target: {{ labels: {{ availability: module }} }}
services:
  platform:
    checks:
      - target_group: {{ name: shop-checkout, min_healthy: 3, severity: page }}
  checkout:
    labels: {{ availability: module }}
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
  payment:
    labels: {{ availability: module }}
    checks:
      - http: {{ url: "http://127.0.0.1:{payment_port}/health", severity: page }}
"##
    ));
    let alb_fp = "target_group:platform:shop-checkout";
    let checkout_fp = format!("http:checkout:http://127.0.0.1:{}/health", fx.health_port);
    let payment_fp = format!("http:payment:http://127.0.0.1:{payment_port}/health");

    // All three fail: one page goes out, the ALB's, listing the module pages it holds back.
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "page").len(), 3, "{report:#}");
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let page = posts[0].body.to_string();
    assert!(
        posts[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] platform: shop-checkout"),
        "{page}"
    );
    assert!(page.contains("Also affected (held back)"), "{page}");
    assert!(
        page.contains(&checkout_fp) && page.contains(&payment_fp),
        "{page}"
    );
    let sns = fx.sns();
    assert_eq!(sns.len(), 1, "{sns:#?}");
    let email: Value = serde_json::from_str(sns[0][1].as_str().unwrap()).unwrap();
    let email = email["email"].as_str().unwrap();
    assert!(
        email.contains("Also affected (held back):") && email.contains(&payment_fp),
        "{email}"
    );
    let held: Vec<(&str, &str)> = report["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["fingerprint"].as_str().unwrap(),
                h["why"].as_str().unwrap(),
            )
        })
        .collect();
    let why = format!("inhibited by {alb_fp}");
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.iter().all(|(_, w)| *w == why), "{held:?}");

    // Still failing: nothing new.
    fx.run();
    assert_eq!(fx.slack_total(), 1);

    // The instance is back, the modules still fail: the ALB page turns resolved in place and
    // the module pages go out on their own.
    fx.rt.block_on(ec2_query(
        &fx.moto,
        &[
            ("Action", "StartInstances"),
            ("InstanceId.1", &instances[0]),
        ],
    ));
    let (report, _) = fx.run();
    assert_eq!(
        finding(&report, alb_fp)["status"],
        "ok",
        "the target group recovered: {report:#}"
    );
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    assert!(report.get("held").is_none(), "{report:#}");
    let updates = slack.requests("/api/chat.update");
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] platform")
    );
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 3, "{posts:#?}");
    for (service, fp) in [("checkout", &checkout_fp), ("payment", &payment_fp)] {
        assert_eq!(
            posts
                .iter()
                .filter(|p| p.body["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("[PAGE] {service}:"))
                    && p.body.to_string().contains(fp.as_str()))
                .count(),
            1,
            "{service}: {posts:#?}"
        );
    }
    assert_eq!(fx.sns().len(), 4, "a resolve and two pages");
}
