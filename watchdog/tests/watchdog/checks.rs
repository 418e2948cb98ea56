//! Desired-state checks (Auto Scaling, heartbeat, HTTP, RDS, DynamoDB, ALB target groups, ...)
//! against moto and local HTTP servers, and spec errors.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_test_support::{Moto, put_minutes};

use crate::support::*;

/// An Auto Scaling group of three instances over three AZs.
pub(crate) async fn make_asg(moto: &Moto, name: &str) -> Vec<String> {
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
pub(crate) async fn ec2_query(moto: &Moto, params: &[(&str, &str)]) -> String {
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
pub(crate) async fn make_alb(moto: &Moto, instances: &[String]) -> (String, String) {
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
