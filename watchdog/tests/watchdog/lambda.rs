//! The watchdog as a Lambda behind the real Runtime API (`cargo lambda watch`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_test_support::Moto;
use vigil_test_support::slack::{BOT_TOKEN, WEBHOOK_PATH};

use crate::checks::make_asg;
use crate::notify::Fixture;
use crate::slo::{SHOP_SLOS, put_shop_traffic};
use crate::support::*;

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
