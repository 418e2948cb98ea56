//! Notifier: Slack (a local stand-in), SNS and SSM (moto), alert state (moto's DynamoDB).

mod delivery;
mod email;
mod routing;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use serde_json::Value;
use vigil_test_support::Moto;
use vigil_test_support::slack::{BOT_TOKEN, SlackStandIn, WEBHOOK_PATH};

use crate::support::*;

/// A health endpoint whose status the test sets (`/health`).
pub(crate) fn serve_health(status: std::sync::Arc<std::sync::atomic::AtomicU16>) -> u16 {
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
pub(crate) fn sns_sent(moto: &Moto, topic_arn: &str) -> Vec<Value> {
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
pub(crate) fn archived_events(moto: &Moto) -> Vec<Value> {
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
pub(crate) struct Fixture {
    pub(crate) moto: Moto,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) slack: SlackStandIn,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) topic_arn: String,
    pub(crate) health: std::sync::Arc<std::sync::atomic::AtomicU16>,
    pub(crate) health_port: u16,
    /// Extra environment for the watchdog's runs.
    pub(crate) env: Vec<(String, String)>,
}

/// Bot, webhook, SNS and SES email for every page; resolve after two ok runs; one failing HTTP check.
pub(crate) const STANDARD_SPEC: &str = r##"settings:
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
    pub(crate) fn start() -> Fixture {
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
    pub(crate) fn standard() -> Fixture {
        let fx = Fixture::start();
        fx.spec(STANDARD_SPEC);
        fx
    }

    pub(crate) fn spec_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the spec (placeholders filled in) and makes sure the state table exists.
    pub(crate) fn spec(&self, text: &str) {
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

    pub(crate) fn dir_str(&self) -> &str {
        self.spec_dir().to_str().unwrap()
    }

    /// A `check --once --output json` run with debug logs and the webhook secret in the
    /// environment; returns the report and everything logged.
    pub(crate) fn run(&self) -> (Value, String) {
        let out = run_ok(self.command());
        let report = serde_json::from_slice(&out.stdout).unwrap();
        (report, String::from_utf8_lossy(&out.stderr).to_string())
    }

    pub(crate) fn command(&self) -> Command {
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

    pub(crate) fn set_health(&self, code: u16) {
        self.health.store(code, std::sync::atomic::Ordering::SeqCst);
    }

    /// The fingerprint of the `/health` check in service `shop`.
    pub(crate) fn health_fp(&self) -> String {
        format!("http:shop:http://127.0.0.1:{}/health", self.health_port)
    }

    pub(crate) fn sns(&self) -> Vec<Value> {
        sns_sent(&self.moto, &self.topic_arn)
    }

    /// Emails moto's SES accepted.
    pub(crate) fn ses(&self) -> Vec<Value> {
        let data: Value = serde_json::from_str(&self.moto.data()).unwrap();
        data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        archived_events(&self.moto)
    }

    pub(crate) fn item(
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
    pub(crate) fn ids(&self, fingerprint: &str) -> BTreeMap<String, String> {
        self.item(fingerprint)["message_ids"]
            .as_m()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_s().unwrap().clone()))
            .collect()
    }

    /// Every request the Slack stand-in got, on any path.
    pub(crate) fn slack_total(&self) -> usize {
        self.slack.requests.lock().unwrap().len()
    }
}
