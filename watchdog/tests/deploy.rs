//! Deploying the watchdog: the IAM policy `iam-policy` generates, proved against what the real
//! binary calls (moto's request recorder); the Lambda zip's `bootstrap` under the real Runtime
//! API (`cargo lambda watch`); one evaluation of the shipped spec under a memory limit; bad
//! deploy settings; and the Terraform module (python-hcl2 wiring, checkov).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};
use vigil_test_support::{ChildGuard, Moto, free_port, put_minutes, venv_bin, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_vigil-watchdog");
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

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

fn minute_ago(k: u64) -> u64 {
    now() / 60 * 60 - k * 60
}

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

/// `iam-policy` for the spec, with moto's account and region.
fn policy_for(spec: &Path) -> Value {
    let out = run_ok({
        let mut c = Command::new(BIN);
        c.args(["iam-policy", "--spec", spec.to_str().unwrap()])
            .args([
                "--account-id",
                ACCOUNT,
                "--region",
                REGION,
                "--partition",
                "aws",
            ]);
        c
    });
    serde_json::from_slice(&out.stdout).expect("iam-policy prints JSON")
}

// ---- moto's recording → the IAM actions and resources the watchdog used -----------------

/// One AWS request as moto recorded it, named as IAM names it.
#[derive(Debug)]
struct Call {
    /// `cloudwatch:GetMetricData`, `sns:Publish`, ...
    action: String,
    /// The ARNs the request acts on, where the action has resource-level permissions.
    resources: Vec<String>,
    /// Request parameters (form-encoded query APIs) or the JSON body.
    params: BTreeMap<String, String>,
}

fn arn(service: &str, resource: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}")
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_object()?
        .iter()
        .find_map(|(k, v)| k.eq_ignore_ascii_case(name).then(|| v.as_str()).flatten())
}

fn recorded_calls(recording: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for line in recording.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).expect("a recorded request is JSON");
        let headers = &entry["headers"];
        let body = entry["body"].as_str().unwrap_or_default();
        let body = if entry["body_encoded"] == true {
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .expect("recorded body is base64")
        } else {
            body.as_bytes().to_vec()
        };
        // The signing service from the credential scope: key/date/region/SERVICE/aws4_request.
        let auth = header(headers, "Authorization").unwrap_or_default();
        let service = auth
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').nth(3))
            .unwrap_or_else(|| panic!("unsigned request recorded: {line}"))
            .to_string();
        let prefix = match service.as_str() {
            "monitoring" => "cloudwatch",
            other => other,
        }
        .to_string();
        let url = entry["url"].as_str().unwrap_or_default();
        let mut params = BTreeMap::new();
        let operation = if let Some(target) = header(headers, "X-Amz-Target") {
            // awsJson: the body is the request.
            if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) {
                for (k, v) in map {
                    params.insert(k, v.to_string());
                }
            }
            target.rsplit('.').next().unwrap().to_string()
        } else if service == "ses" && url.contains("/v2/email/outbound-emails") {
            if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) {
                for (k, v) in map {
                    params.insert(k, v.as_str().map_or(v.to_string(), str::to_string));
                }
            }
            "SendEmail".to_string()
        } else {
            // awsQuery: form-encoded parameters, `Action` names the operation.
            for (k, v) in form_urlencoded::parse(&body) {
                params.insert(k.into_owned(), v.into_owned());
            }
            params
                .get("Action")
                .cloned()
                .unwrap_or_else(|| panic!("no operation in recorded request: {line}"))
        };
        let mut resources = Vec::new();
        let table = |name: &str| arn("dynamodb", &format!("table/{name}"));
        match (prefix.as_str(), operation.as_str()) {
            ("dynamodb", "BatchGetItem") => {
                let items: Value = serde_json::from_str(&params["RequestItems"]).unwrap();
                resources.extend(items.as_object().unwrap().keys().map(|t| table(t)));
            }
            ("dynamodb", _) => {
                let name: String = serde_json::from_str(&params["TableName"]).unwrap();
                resources.push(table(&name));
            }
            ("ssm", "GetParameter") => {
                let name: String = serde_json::from_str(&params["Name"]).unwrap();
                resources.push(arn("ssm", &format!("parameter{name}")));
            }
            ("sns", "Publish") => resources.push(params["TopicArn"].clone()),
            ("events", "PutEvents") => {
                let entries: Value = serde_json::from_str(&params["Entries"]).unwrap();
                for e in entries.as_array().unwrap() {
                    let bus = e["EventBusName"].as_str().unwrap();
                    resources.push(if bus.starts_with("arn:") {
                        bus.to_string()
                    } else {
                        arn("events", &format!("event-bus/{bus}"))
                    });
                }
            }
            ("rds", "DescribeDBInstances") => {
                resources.push(arn(
                    "rds",
                    &format!("db:{}", params["DBInstanceIdentifier"]),
                ));
            }
            ("rds", "DescribeDBClusters") => {
                resources.push(arn(
                    "rds",
                    &format!("cluster:{}", params["DBClusterIdentifier"]),
                ));
            }
            ("cloudwatch", "DescribeAlarms") => {
                for (k, v) in &params {
                    if k.starts_with("AlarmNames.member.") || k == "AlarmNamePrefix" {
                        resources.push(arn("cloudwatch", &format!("alarm:{v}")));
                    }
                }
            }
            ("ses", "SendEmail") => {
                let from = &params["FromEmailAddress"];
                let address = from
                    .rsplit_once('<')
                    .map_or(from.as_str(), |(_, a)| a.trim_end_matches('>'));
                resources.push(arn("ses", &format!("identity/{address}")));
            }
            _ => {}
        }
        calls.push(Call {
            action: format!("{prefix}:{operation}"),
            resources,
            params,
        });
    }
    calls
}

/// `*` as the only wildcard, as IAM matches ARNs.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            text.starts_with(head)
                && (0..=text.len() - head.len()).any(|i| glob(rest, &text[head.len() + i..]))
        }
    }
}

/// Every recorded call is allowed by a statement of `policy`: its action, each resource it
/// acts on, and (PutMetricData) the namespace condition. Returns the actions used.
fn assert_policy_covers(policy: &Value, calls: &[Call]) -> BTreeSet<String> {
    let statements = policy["Statement"].as_array().unwrap();
    for call in calls {
        let allowing: Vec<&Value> = statements
            .iter()
            .filter(|s| {
                s["Action"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a == call.action.as_str())
            })
            .collect();
        assert!(
            !allowing.is_empty(),
            "{} was called but is not granted:\n{policy:#}",
            call.action
        );
        for resource in &call.resources {
            assert!(
                allowing.iter().any(|s| s["Resource"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| glob(r.as_str().unwrap(), resource))),
                "{} on {resource} was called but no statement grants that resource:\n{policy:#}",
                call.action
            );
        }
        if call.action == "cloudwatch:PutMetricData" {
            let namespace = &call.params["Namespace"];
            assert!(
                allowing
                    .iter()
                    .any(|s| s["Condition"]["StringEquals"]["cloudwatch:namespace"]
                        == namespace.as_str()),
                "PutMetricData into {namespace} is not allowed by the namespace condition"
            );
        }
    }
    calls.iter().map(|c| c.action.clone()).collect()
}

/// Actions the policy grants that the watchdog calls itself (KMS is used by SSM and SNS on
/// its behalf, never called directly).
fn granted_calls(policy: &Value) -> BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .filter(|a| !a.starts_with("kms:"))
        .collect()
}

/// The guard's refusals would hide calls from the recording: none may have happened.
fn assert_no_refusals(text: &str) {
    for refusal in [
        "is not granted by the IAM policy",
        "is not in the watchdog's IAM table",
    ] {
        assert!(
            !text.contains(refusal),
            "the operation guard refused a call:\n{text}"
        );
    }
}

// ---- seeding moto ---------------------------------------------------------------------

/// Checkout burning its error budget: 1000 requests a minute for an hour, 2 % failing.
async fn put_burning_checkout(cw: &aws_sdk_cloudwatch::Client) {
    if now() % 60 > 40 {
        tokio::time::sleep(Duration::from_secs(61 - now() % 60)).await;
    }
    let dims = [("service", "checkout"), ("route", "POST /checkout")];
    let hour = || (1..=60).map(minute_ago);
    put_minutes(
        cw,
        "Vigil/SpanMetrics",
        "requests",
        &dims,
        hour().map(|t| (t, 1000.0)),
    )
    .await;
    put_minutes(
        cw,
        "Vigil/SpanMetrics",
        "errors",
        &dims,
        hour().map(|t| (t, 20.0)),
    )
    .await;
}

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
        .body(form.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("EC2 query")
        .text()
        .await
        .unwrap()
}

fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

/// An Auto Scaling group of three instances, and a target group holding them; the instances.
async fn make_group_and_target_group(moto: &Moto, name: &str) -> Vec<String> {
    let config = moto.sdk_config().await;
    let asg = aws_sdk_autoscaling::Client::new(&config);
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
        .set_availability_zones(Some(vec!["us-east-1a".into(), "us-east-1b".into()]))
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let instances: Vec<String> = groups.auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    let vpc = xml_values(
        &ec2_query(moto, &[("Action", "DescribeVpcs")]).await,
        "vpcId",
    )
    .remove(0);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let tg = elb
        .create_target_group()
        .name(name)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .send()
        .await
        .expect("CreateTargetGroup");
    elb.register_targets()
        .target_group_arn(tg.target_groups()[0].target_group_arn().unwrap())
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
    instances
}

/// A local endpoint answering every request with 200 (synthetic checks, the Slack webhook).
fn serve_ok() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 65536];
                let mut got = Vec::new();
                // Read the head and as much body as Content-Length says.
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            });
        }
    });
    port
}

/// A spec using every check kind, every AWS-backed receiver, alert state and the findings bus.
fn every_kind_spec(dir: &Path, http_port: u16) {
    let text = format!(
        r#"
settings:
  state: {{ table: vigil-state }}
  deploy: {{ function_name: vigil-watchdog-test, schedule: rate(1 minute) }}
  notify:
    receivers:
      chat: {{ slack_webhook: {{ url: {{ ssm: /vigil/slack/webhook }}, allow_insecure_http: true }} }}
      pager: {{ sns: {{ topic_arn: "arn:aws:sns:{REGION}:{ACCOUNT}:vigil-pages" }} }}
      mail: {{ ses_email: {{ from: "Vigil <vigil@shop.example>", to: [oncall@shop.example] }} }}
    default_receivers: [chat, pager, mail]
    event_bus: vigil-findings
services:
  checkout:
    slos:
      - name: checkout-success-rate
        objective: 99.9
        sli: {{ span_errors: {{ service: checkout, route: "POST /checkout" }} }}
      - name: checkout-availability
        objective: 99.9
        sli: {{ alb_availability: {{ load_balancer: shop-private, target_group: shop-checkout }} }}
    checks:
      - asg: {{ group: shop-checkout, min_healthy: 3 }}
      - target_group: {{ name: shop-checkout, min_healthy: 3, min_healthy_per_az: 1 }}
      - rds_instance: {{ id: shop-orders }}
      - rds_cluster: {{ id: shop-orders-cluster }}
      - dynamodb_table: {{ table: shop-carts }}
      - alarms: {{ names: [shop-payment-latency], prefix: shop-checkout- }}
      - sqs_dlq: {{ queue: shop-checkout-dlq }}
      - http: {{ url: "http://127.0.0.1:{http_port}/health" }}
      - heartbeat: {{ asgs: [shop-checkout], discover: true }}
"#
    );
    std::fs::write(dir.join("spec.yaml"), text).unwrap();
}

#[test]
fn the_generated_policy_grants_exactly_what_the_watchdog_calls_for_every_kind() {
    let recording_dir = tempfile::tempdir().unwrap();
    let recording = recording_dir.path().join("moto_recording");
    let moto = Moto::start_with_env(&[("MOTO_RECORDER_FILEPATH", recording.to_str().unwrap())]);
    let http = serve_ok();
    let rt = runtime();
    let instances = rt.block_on(async {
        let config = moto.sdk_config().await;
        put_burning_checkout(&aws_sdk_cloudwatch::Client::new(&config)).await;
        let instances = make_group_and_target_group(&moto, "shop-checkout").await;
        aws_sdk_ssm::Client::new(&config)
            .put_parameter()
            .name("/vigil/slack/webhook")
            .value(format!("http://127.0.0.1:{http}/webhook"))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("PutParameter");
        aws_sdk_sns::Client::new(&config)
            .create_topic()
            .name("vigil-pages")
            .send()
            .await
            .expect("CreateTopic");
        aws_sdk_sesv2::Client::new(&config)
            .create_email_identity()
            .email_identity("vigil@shop.example")
            .send()
            .await
            .expect("CreateEmailIdentity");
        aws_sdk_eventbridge::Client::new(&config)
            .create_event_bus()
            .name("vigil-findings")
            .send()
            .await
            .expect("CreateEventBus");
        instances
    });
    // The function as Lambda runs it: bootstrap and alerts/ in the task root.
    let work = tempfile::tempdir().unwrap();
    let task_root = work.path().join("task");
    let alerts = task_root.join("alerts");
    std::fs::create_dir_all(&alerts).unwrap();
    std::os::unix::fs::symlink(BIN, task_root.join("bootstrap")).unwrap();
    every_kind_spec(&alerts, http);
    let spec = alerts.to_str().unwrap();
    run_ok(watchdog(&moto, &["create-state-table", "--spec", spec]));

    moto.start_recording();
    let function = Function::start(&moto, &task_root, work.path());
    // The schedule runs everything; an EC2 state change looks the instance's group up; an RDS
    // event runs the RDS checks.
    let report = function.invoke("tick", &event("aws.events", "Scheduled Event", json!({})));
    let ec2 = function.invoke(
        "ec2",
        &event(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            json!({"instance-id": instances[0], "state": "stopping"}),
        ),
    );
    let rds = function.invoke(
        "rds",
        &event(
            "aws.rds",
            "RDS DB Instance Event",
            json!({"SourceIdentifier": "shop-orders", "EventID": "RDS-EVENT-0049", "Message": "failover"}),
        ),
    );
    let calls = recorded_calls(&moto.recording());
    for answer in [&report, &ec2, &rds] {
        assert_no_refusals(&answer.to_string());
    }
    assert_no_refusals(&function.process.log());
    assert!(!ec2["findings"].as_array().unwrap().is_empty(), "{ec2:#}");
    assert_eq!(rds["trigger"], "rds shop-orders: RDS-EVENT-0049", "{rds:#}");
    assert_eq!(rds["findings"].as_array().unwrap().len(), 1, "{rds:#}");
    // The run went through every path: a page went out to each receiver and the bus.
    let deliveries = report["deliveries"].as_array().unwrap();
    for receiver in ["chat", "pager", "mail"] {
        assert!(
            deliveries
                .iter()
                .any(|d| d["receiver"] == receiver && d["ok"] == true),
            "no delivery to {receiver}: {report:#}"
        );
    }
    assert!(
        !report["events"].as_array().unwrap().is_empty(),
        "{report:#}"
    );

    let policy = policy_for(&alerts);
    let used = assert_policy_covers(&policy, &calls);
    let granted = granted_calls(&policy);
    assert_eq!(
        used, granted,
        "called (left) and granted (right) differ: nothing may be granted that is not called"
    );
    // KMS only through SSM and SNS, conditioned on them.
    let kms: Vec<&Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"].to_string().contains("kms:"))
        .collect();
    assert_eq!(kms.len(), 2, "{policy:#}");
    for s in kms {
        let via = s["Condition"]["StringEquals"]["kms:ViaService"]
            .as_str()
            .unwrap();
        assert!(
            via == format!("ssm.{REGION}.amazonaws.com")
                || via == format!("sns.{REGION}.amazonaws.com"),
            "{via}"
        );
    }
    // `*` only for actions without resource-level permissions.
    let star_ok = [
        "cloudwatch:GetMetricData",
        "cloudwatch:ListMetrics",
        "cloudwatch:PutMetricData",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
    ];
    for s in policy["Statement"].as_array().unwrap() {
        if s["Resource"].as_array().unwrap().iter().any(|r| r == "*") {
            for a in s["Action"].as_array().unwrap() {
                assert!(star_ok.contains(&a.as_str().unwrap()), "{a} on *");
            }
        }
    }
    eprintln!("every-kind spec: {} calls, actions {used:?}", calls.len());
}

/// The shipped spec: the committed Terraform policy template is what `iam-policy` prints now,
/// its run against moto stays inside the policy, and one evaluation's cost is measured under
/// a 128 MB memory limit.
#[test]
fn the_shipped_spec_stays_inside_its_committed_policy_and_128_mb() {
    let alerts = repo().join("alerts");
    let template = run_ok({
        let mut c = Command::new(BIN);
        c.args(["iam-policy", "--spec", alerts.to_str().unwrap()]);
        c
    });
    let committed = std::fs::read_to_string(repo().join("watchdog/deploy/terraform/policy.json"))
        .expect("watchdog/deploy/terraform/policy.json");
    assert_eq!(
        String::from_utf8_lossy(&template.stdout).trim_end(),
        committed.trim_end(),
        "policy.json is stale: run `vigil-watchdog iam-policy --spec alerts/ > watchdog/deploy/terraform/policy.json`"
    );

    let recording_dir = tempfile::tempdir().unwrap();
    let recording = recording_dir.path().join("moto_recording");
    let moto = Moto::start_with_env(&[("MOTO_RECORDER_FILEPATH", recording.to_str().unwrap())]);
    let rt = runtime();
    rt.block_on(async {
        put_burning_checkout(&aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await)).await
    });
    let spec = alerts.to_str().unwrap();
    run_ok(watchdog(&moto, &["create-state-table", "--spec", spec]));
    moto.start_recording();

    // One evaluation as the Lambda's 128 MB would hold it: the process's writable private
    // memory (heap, anonymous maps, thread stacks: RLIMIT_DATA, `ulimit -d`) is capped, so an
    // allocation past it fails the run. Not the address space (`ulimit -v`): the debug binary's
    // mapped code alone is tens of MB that Lambda does not count against memory. Two malloc
    // arenas, as on a small Lambda; glibc would otherwise reserve one per thread.
    const LIMIT: u64 = 128 * 1024 * 1024;
    let mut cmd = watchdog(
        &moto,
        &["check", "--spec", spec, "--once", "--output", "json"],
    );
    cmd.env("MALLOC_ARENA_MAX", "2");
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let out = run_ok(cmd);
    let wall = started.elapsed();
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let peak_rss_kb = usage.ru_maxrss as u64;
    let cpu = Duration::from_micros(
        (usage.ru_utime.tv_sec * 1_000_000
            + usage.ru_utime.tv_usec
            + usage.ru_stime.tv_sec * 1_000_000
            + usage.ru_stime.tv_usec) as u64,
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_no_refusals(&String::from_utf8_lossy(&out.stdout));
    assert_no_refusals(&String::from_utf8_lossy(&out.stderr));
    // `validate` says how many SLOs and checks there are: each is one finding.
    let summary = String::from_utf8(
        run_ok({
            let mut c = Command::new(BIN);
            c.args(["validate", "--spec", spec]);
            c
        })
        .stdout,
    )
    .unwrap();
    let count = |what: &str| -> usize {
        let before = summary.split(what).next().unwrap();
        before.rsplit(" ").next().unwrap().parse().unwrap()
    };
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        count(" SLOs") + count(" checks"),
        "every SLO and check of the shipped spec is evaluated: {summary}"
    );
    assert_eq!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["fingerprint"] == "slo:checkout:checkout-success-rate")
            .map(|f| f["status"].clone()),
        Some(json!("firing"))
    );
    assert!(peak_rss_kb * 1024 < LIMIT, "peak RSS {peak_rss_kb} kB");
    let calls = recorded_calls(&moto.recording());
    let policy = policy_for(&alerts);
    let used = assert_policy_covers(&policy, &calls);
    assert!(used.is_subset(&granted_calls(&policy)));
    eprintln!(
        "shipped spec, one evaluation: wall {} ms (evaluation {} ms), CPU {} ms, peak RSS {} kB, GetMetricData calls {} ({} queries), AWS calls {}",
        wall.as_millis(),
        report["elapsed_ms"],
        cpu.as_millis(),
        peak_rss_kb,
        report["metric_calls"],
        report["metric_queries"],
        calls.len()
    );
}

#[test]
fn bad_deploy_settings_and_secrets_are_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("settings.yaml"),
        format!(
            r#"
settings:
  deploy:
    function_name: {}
    schedule: rate(1 minutes)
  notify:
    receivers:
      chat: {{ slack_webhook: {{ url: {{ ssm: vigil-webhook }} }} }}
    default_receivers: [chat]
"#,
            "w".repeat(70)
        ),
    )
    .unwrap();
    for command in ["validate", "iam-policy"] {
        let out = Command::new(BIN)
            .args([command, "--spec", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for expected in [
            "settings.yaml: settings.deploy.function_name: `wwww",
            "is 70 characters; a Lambda function name has 1 to 64",
            "settings.yaml: settings.deploy.schedule: `rate(1 minutes)` is not an EventBridge schedule expression",
            "settings.yaml: settings.notify.receivers.chat.slack_webhook.url.ssm: `vigil-webhook` is not an SSM parameter path",
        ] {
            assert!(
                stderr.contains(expected),
                "{command}: {expected:?} not in:\n{stderr}"
            );
        }
        assert!(
            out.stdout.is_empty(),
            "{command} printed a result for a bad spec"
        );
    }
}

// ---- the Lambda package -----------------------------------------------------------------

fn event(source: &str, detail_type: &str, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2026-11-22T05:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail
    })
}

/// `scripts/package-lambda.sh --binary` (the debug binary already built: no release build).
fn package(spec: &Path, out: &Path) -> PathBuf {
    let result = Command::new(repo().join("scripts/package-lambda.sh"))
        .args(["--binary", BIN, "--spec"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run scripts/package-lambda.sh");
    assert!(
        result.status.success(),
        "package-lambda.sh failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out.to_path_buf()
}

fn zip_entries(zip: &Path) -> Vec<String> {
    let out = Command::new("unzip").arg("-Z1").arg(zip).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The unpacked zip's `bootstrap` behind `cargo lambda watch`, as Lambda runs it: cwd and
/// LAMBDA_TASK_ROOT are the unpacked package, no VIGIL_SPEC.
struct Function {
    port: u16,
    dir: PathBuf,
    process: ChildGuard,
    _emulator: ChildGuard,
    started: Instant,
}

impl Function {
    fn start(moto: &Moto, task_root: &Path, work: &Path) -> Function {
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
            ])
            .arg(port.to_string())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        let emulator =
            ChildGuard::spawn("cargo-lambda-watch", emulator).expect("cargo lambda watch");
        assert!(
            wait_until(Duration::from_secs(30), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "cargo lambda watch did not listen:\n{}",
            emulator.log()
        );
        let mut bootstrap = Command::new(task_root.join("bootstrap"));
        bootstrap
            .current_dir(task_root)
            .envs(moto.env())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "vigil-watchdog")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("LAMBDA_TASK_ROOT", task_root)
            .env_remove("VIGIL_SPEC");
        let started = Instant::now();
        let process = ChildGuard::spawn("bootstrap", bootstrap).expect("start bootstrap");
        Function {
            port,
            dir: work.to_path_buf(),
            process,
            _emulator: emulator,
            started,
        }
    }

    fn invoke(&self, name: &str, payload: &Value) -> Value {
        let file = self.dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(payload).unwrap()).unwrap();
        let out = Command::new(venv_bin("cargo-lambda"))
            .args(["lambda", "invoke", "-A", "127.0.0.1", "-P"])
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(&file)
            .output()
            .expect("cargo lambda invoke");
        assert!(
            out.status.success(),
            "invoke {name} failed:\n{}\n{}\nfunction log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.process.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{name}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

fn actions(report: &Value, action: &str) -> Vec<String> {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == action)
        .map(|d| d["fingerprint"].as_str().unwrap().to_string())
        .collect()
}

fn sns_sent(moto: &Moto, topic_arn: &str) -> usize {
    let data: Value = serde_json::from_str(&moto.data()).unwrap();
    data["sns"]["Topic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["arn"] == topic_arn)
        .map(|t| t["sent_notifications"].as_array().map_or(0, Vec::len))
        .sum()
}

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:vigil-pages";

#[test]
fn the_packaged_bootstrap_pages_once_stays_quiet_and_resolves_through_the_runtime_api() {
    let work = tempfile::tempdir().unwrap();
    // The shipped spec packages as is: bootstrap + every alerts/ file.
    let shipped = package(&repo().join("alerts"), &work.path().join("shipped.zip"));
    let mut expected: Vec<String> = vec!["bootstrap".into()];
    // Every YAML file of the spec, at the top of alerts/ and under alerts/services/.
    let mut spec_files = Vec::new();
    for dir in ["alerts", "alerts/services"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            spec_files.push(format!("{dir}/{name}"));
        }
    }
    spec_files.retain(|f| f.ends_with(".yaml"));
    spec_files.sort();
    expected.extend(spec_files);
    assert_eq!(zip_entries(&shipped), expected);
    eprintln!(
        "zip with the debug binary: {} KiB",
        std::fs::metadata(&shipped).unwrap().len() / 1024
    );

    // The package under test bundles a spec with a burning SLO and an alarm-backed check.
    let spec = work.path().join("spec");
    std::fs::create_dir_all(&spec).unwrap();
    std::fs::write(
        spec.join("spec.yaml"),
        format!(
            r#"
settings:
  state: {{ table: vigil-state }}
  notify:
    receivers:
      pager: {{ sns: {{ topic_arn: "{TOPIC}" }} }}
    default_receivers: [pager]
services:
  checkout:
    slos:
      - name: checkout-success-rate
        objective: 99.9
        sli: {{ span_errors: {{ service: checkout, route: "POST /checkout" }} }}
  payment:
    checks:
      - alarms: {{ names: [shop-payment-gateway-latency], severity: page }}
"#
        ),
    )
    .unwrap();
    let zip = package(&spec, &work.path().join("vigil-watchdog.zip"));
    let task_root = work.path().join("task");
    let unzip = Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&task_root)
        .status()
        .unwrap();
    assert!(unzip.success());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(task_root.join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o111,
            0o111,
            "bootstrap must be executable after unzip"
        );
    }

    let moto = Moto::start();
    let rt = runtime();
    let cw = rt.block_on(async {
        let config = moto.sdk_config().await;
        let cw = aws_sdk_cloudwatch::Client::new(&config);
        put_burning_checkout(&cw).await;
        aws_sdk_sns::Client::new(&config)
            .create_topic()
            .name("vigil-pages")
            .send()
            .await
            .expect("CreateTopic");
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
        cw
    });
    let set_alarm = |state: aws_sdk_cloudwatch::types::StateValue| {
        rt.block_on(
            cw.set_alarm_state()
                .alarm_name("shop-payment-gateway-latency")
                .state_value(state)
                .state_reason("test")
                .send(),
        )
        .expect("SetAlarmState");
    };
    set_alarm(aws_sdk_cloudwatch::types::StateValue::Ok);
    run_ok(watchdog(
        &moto,
        &["create-state-table", "--spec", spec.to_str().unwrap()],
    ));

    let function = Function::start(&moto, &task_root, work.path());
    let tick = event("aws.events", "Scheduled Event", json!({}));
    let first = function.invoke("tick-1", &tick);
    let cold_start = function.started.elapsed();
    assert_eq!(first["trigger"], "schedule");
    assert_eq!(
        actions(&first, "page"),
        ["slo:checkout:checkout-success-rate"],
        "{first:#}"
    );
    assert_eq!(sns_sent(&moto, TOPIC), 1);

    // Still burning: quiet.
    let second = function.invoke("tick-2", &tick);
    assert!(actions(&second, "page").is_empty(), "{second:#}");
    assert_eq!(sns_sent(&moto, TOPIC), 1);

    // The alarm fires: its state-change event runs only the covering check, which pages.
    let alarm_event = |state: &str| {
        event(
            "aws.cloudwatch",
            "CloudWatch Alarm State Change",
            json!({
                "alarmName": "shop-payment-gateway-latency",
                "state": { "value": state, "reason": "test", "timestamp": "2026-11-22T05:00:00.000+0000" },
                "previousState": { "value": "OK", "reason": "", "timestamp": "2026-11-22T04:00:00.000+0000" },
                "configuration": { "metrics": [] }
            }),
        )
    };
    set_alarm(aws_sdk_cloudwatch::types::StateValue::Alarm);
    let fired = function.invoke("alarm", &alarm_event("ALARM"));
    assert_eq!(fired["findings"].as_array().unwrap().len(), 1, "{fired:#}");
    assert_eq!(
        actions(&fired, "page"),
        ["alarms:payment:shop-payment-gateway-latency"]
    );
    assert_eq!(sns_sent(&moto, TOPIC), 2);

    // Back to OK: the incident resolves, once.
    set_alarm(aws_sdk_cloudwatch::types::StateValue::Ok);
    let ok = function.invoke("alarm-ok", &alarm_event("OK"));
    assert_eq!(
        actions(&ok, "resolve"),
        ["alarms:payment:shop-payment-gateway-latency"],
        "{ok:#}"
    );
    assert_eq!(sns_sent(&moto, TOPIC), 3);
    let again = function.invoke("alarm-ok-again", &alarm_event("OK"));
    assert!(actions(&again, "resolve").is_empty(), "{again:#}");
    assert_eq!(sns_sent(&moto, TOPIC), 3);

    let log = function.process.log();
    assert!(log.contains("ready for events"), "{log}");
    eprintln!(
        "cold start (bootstrap spawned → first scheduled event answered, incl. one evaluation): {} ms",
        cold_start.as_millis()
    );
}

/// An invocation whose deadline comes while a check hangs: the other findings are decided and
/// sent, the hanging check is reported unknown, and the answer comes before the deadline.
#[test]
fn an_invocation_out_of_time_reports_skipped_checks_as_unknown_and_still_pages() {
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    // Accepts and never answers.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hang.incoming().flatten() {
            held.push(s);
        }
    });
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("spec");
    std::fs::create_dir_all(&spec).unwrap();
    std::fs::write(
        spec.join("spec.yaml"),
        format!(
            r#"
settings:
  state: {{ table: vigil-state }}
  notify:
    receivers:
      pager: {{ sns: {{ topic_arn: "{TOPIC}" }} }}
    default_receivers: [pager]
services:
  checkout:
    slos:
      - name: checkout-success-rate
        objective: 99.9
        sli: {{ span_errors: {{ service: checkout, route: "POST /checkout" }} }}
    checks:
      - http: {{ url: "http://127.0.0.1:{hang_port}/slow", latency_budget: 30s }}
"#
        ),
    )
    .unwrap();
    let zip = package(&spec, &work.path().join("vigil-watchdog.zip"));
    let task_root = work.path().join("task");
    assert!(
        Command::new("unzip")
            .arg("-q")
            .arg(&zip)
            .arg("-d")
            .arg(&task_root)
            .status()
            .unwrap()
            .success()
    );
    let moto = Moto::start();
    let rt = runtime();
    rt.block_on(async {
        let config = moto.sdk_config().await;
        put_burning_checkout(&aws_sdk_cloudwatch::Client::new(&config)).await;
        aws_sdk_sns::Client::new(&config)
            .create_topic()
            .name("vigil-pages")
            .send()
            .await
            .unwrap();
    });
    run_ok(watchdog(
        &moto,
        &["create-state-table", "--spec", spec.to_str().unwrap()],
    ));
    // cargo lambda's emulator sends no real deadline (600000, its timeout): a Runtime API
    // stand-in hands out one event with a deadline 6 s ahead, as Lambda does.
    let (port, answers) = runtime_api_once(
        &event("aws.events", "Scheduled Event", json!({})),
        Duration::from_secs(6),
    );
    let mut bootstrap = Command::new(task_root.join("bootstrap"));
    bootstrap
        .current_dir(&task_root)
        .envs(moto.env())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "vigil-watchdog")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("LAMBDA_TASK_ROOT", &task_root);
    let process = ChildGuard::spawn("bootstrap", bootstrap).expect("start bootstrap");
    let (answer, took) = answers
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no answer from the function:\n{}", process.log()));
    let report: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    assert!(took < Duration::from_secs(6), "answered after {took:?}");
    let http = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "http")
        .unwrap()
        .clone();
    assert_eq!(http["status"], "unknown", "{report:#}");
    assert!(
        http["summary"].as_str().unwrap().contains("deadline"),
        "{http:#}"
    );
    assert_eq!(
        actions(&report, "page"),
        ["slo:checkout:checkout-success-rate"],
        "{report:#}"
    );
    // What was decided was sent: the page reached the topic.
    assert!(
        report["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["receiver"] == "pager"
                && d["fingerprint"] == "slo:checkout:checkout-success-rate"
                && d["ok"] == true),
        "{report:#}"
    );
    assert!(sns_sent(&moto, TOPIC) >= 1);
    eprintln!("deadline 6 s: answered in {} ms", took.as_millis());
}

/// A Lambda Runtime API stand-in for one invocation: `/next` hands out `payload` with a
/// deadline `timeout` ahead (epoch milliseconds, as Lambda sends it); the function's answer
/// (body, and time since the event was handed out) comes back on the channel. Later `/next`
/// calls are held open, as Lambda freezes an idle function.
fn runtime_api_once(
    payload: &Value,
    timeout: Duration,
) -> (u16, std::sync::mpsc::Receiver<(Vec<u8>, Duration)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    let payload = serde_json::to_vec(payload).unwrap();
    let handed_out: std::sync::Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (tx, payload, handed_out) = (tx.clone(), payload.clone(), handed_out.clone());
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    // One request: head, then Content-Length bytes of body.
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        match std::io::BufRead::read_line(&mut reader, &mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => head.push_str(&line),
                        }
                    }
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    if path.ends_with("/invocation/next") {
                        let mut first = handed_out.lock().unwrap();
                        if first.is_some() {
                            drop(first);
                            std::thread::sleep(Duration::from_secs(3600));
                            return;
                        }
                        *first = Some(Instant::now());
                        let deadline =
                            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + timeout;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: req-1\r\nlambda-runtime-deadline-ms: {}\r\nlambda-runtime-invoked-function-arn: arn:aws:lambda:{REGION}:{ACCOUNT}:function:vigil-watchdog\r\nlambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\ncontent-length: {}\r\n\r\n",
                            deadline.as_millis(),
                            payload.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&payload);
                    } else {
                        let _ = stream
                            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}");
                        let since = handed_out
                            .lock()
                            .unwrap()
                            .map(|t| t.elapsed())
                            .unwrap_or_default();
                        let body = if path.ends_with("/response") {
                            body
                        } else {
                            format!("{{\"error\": {}}}", String::from_utf8_lossy(&body))
                                .into_bytes()
                        };
                        let _ = tx.send((body, since));
                    }
                }
            });
        }
    });
    (port, rx)
}

// ---- the Terraform module -------------------------------------------------------------

fn module_dir() -> PathBuf {
    repo().join("watchdog/deploy/terraform")
}

/// python-hcl2 parses the module and checks its wiring (tests/wiring.py says what).
#[test]
fn the_terraform_module_is_wired_to_the_function_and_the_generated_policy() {
    let out = Command::new(venv_bin("python"))
        .arg(module_dir().join("tests/wiring.py"))
        .arg(module_dir())
        .output()
        .expect("run wiring.py");
    assert!(
        out.status.success(),
        "wiring.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("wiring ok"), "{stdout}");
}

/// checkov (its own virtualenv, made by setup.sh) finds no failed check in the module.
#[test]
fn checkov_passes_the_terraform_module() {
    let cache = std::env::var_os("VIGIL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            vigil_test_support::venv_dir()
                .parent()
                .unwrap()
                .to_path_buf()
        });
    let checkov = cache.join("checkov-venv/bin/checkov");
    assert!(
        checkov.exists(),
        "{} not found: run scripts/setup.sh",
        checkov.display()
    );
    let out = Command::new(&checkov)
        .args(["--directory"])
        .arg(module_dir())
        // --skip-download: no network for the platform's guidelines (none here).
        .args([
            "--framework",
            "terraform",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ])
        .args(["--download-external-modules", "false"])
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .output()
        .expect("run checkov");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov output is not JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // One report per framework, or the report itself.
    let reports: Vec<&Value> = match &parsed {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut passed = 0;
    for r in &reports {
        let failed = r["results"]["failed_checks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let listing: Vec<String> = failed
            .iter()
            .map(|f| format!("{} {} ({})", f["check_id"], f["resource"], f["file_path"]))
            .collect();
        assert!(
            failed.is_empty(),
            "checkov failed checks:\n{}",
            listing.join("\n")
        );
        passed += r["summary"]["passed"].as_u64().unwrap_or(0);
        for s in r["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let why = s["check_result"]["suppress_comment"].as_str().unwrap_or("");
            assert!(why.len() > 15, "skip of {} without a reason", s["check_id"]);
        }
    }
    assert!(
        passed > 20,
        "checkov passed only {passed} checks: did it read the module?"
    );
    assert!(out.status.success(), "{stdout}");
}
