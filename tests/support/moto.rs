//! moto's server as every AWS API (CloudWatch, Logs, X-Ray, SNS, SES, SSM, DynamoDB, ...).

use std::process::Command;
use std::time::Duration;

use crate::fault_proxy::{FaultProxy, Faults};
use crate::{ChildGuard, free_port, venv_bin, wait_until};

/// One moto server on its own port, for one test.
///
/// DynamoDB requests from programs under test (through [`Moto::env`]) pass a proxy that
/// forwards them one at a time: moto's conditional writes are not atomic when requests
/// overlap, AWS's are, and the tests are about Vigil's use of them, not moto's.
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The in-turn proxy in front of moto for DynamoDB.
    dynamodb: FaultProxy,
    guard: ChildGuard,
}

impl Moto {
    /// Starts moto and waits until it answers.
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// Starts moto with extra environment (e.g. `MOTO_RECORDER_FILEPATH`, so a test's request
    /// recording is its own file).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        // A port can be taken between probing and binding by a parallel test: retry.
        for attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(venv_bin("moto_server"));
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().copied());
            let mut guard = ChildGuard::spawn("moto", cmd).expect("spawn moto_server");
            let endpoint = format!("http://127.0.0.1:{port}");
            let ready = wait_until(Duration::from_secs(30), || {
                if !guard.is_running() {
                    return true;
                }
                http_get(&format!("{endpoint}/moto-api/data.json")).is_ok()
            });
            if ready && guard.is_running() {
                let dynamodb = FaultProxy::start(&endpoint);
                dynamodb.set(Faults {
                    one_at_a_time: true,
                    ..Faults::default()
                });
                return Moto {
                    endpoint,
                    dynamodb,
                    guard,
                };
            }
            eprintln!(
                "moto did not start on port {port} (attempt {attempt}):\n{}",
                guard.log()
            );
            guard.kill();
        }
        panic!("moto_server did not start after 5 attempts");
    }

    /// Environment for a process under test: the SDK's standard variables only (DynamoDB's
    /// service-specific endpoint is the in-turn proxy).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.dynamodb.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// SDK configuration for the test's own clients (reading back what a program sent).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::local_sdk_config(&self.endpoint, "moto").await
    }

    /// Clears all of moto's state.
    pub fn reset(&self) {
        agent()
            .post(&format!("{}/moto-api/reset", self.endpoint))
            .send_empty()
            .expect("reset moto");
    }

    /// Everything moto recorded (sent SNS notifications, SES messages, ...), as JSON. moto
    /// serialises its whole state for this, which takes seconds on a busy 2-core machine: the
    /// deadline is 30 s, not the 5 s of a single API call.
    pub fn data(&self) -> String {
        let url = format!("{}/moto-api/data.json", self.endpoint);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let read = agent
            .get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string());
        read.expect("read moto data")
    }

    /// Starts moto's request recorder (`/moto-api/recorder/start-recording`); requests from
    /// then on are appended to the recording, which `recording` reads back.
    pub fn start_recording(&self) {
        agent()
            .post(&format!(
                "{}/moto-api/recorder/start-recording",
                self.endpoint
            ))
            .send_empty()
            .expect("start moto's recorder");
    }

    /// Stops the recorder and returns every recorded request: one JSON object per line with
    /// `method`, `url`, `headers`, `body` (base64 when `body_encoded`).
    pub fn recording(&self) -> String {
        agent()
            .post(&format!(
                "{}/moto-api/recorder/stop-recording",
                self.endpoint
            ))
            .send_empty()
            .expect("stop moto's recorder");
        http_get(&format!(
            "{}/moto-api/recorder/download-recording",
            self.endpoint
        ))
        .expect("download moto's recording")
    }

    /// Stops the server (to simulate an outage).
    pub fn stop(&mut self) {
        self.guard.kill();
    }

    pub fn log(&self) -> String {
        self.guard.log()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// GET `url` and return the body of a 2xx answer.
pub fn http_get(url: &str) -> Result<String, ureq::Error> {
    agent().get(url).call()?.body_mut().read_to_string()
}

/// Every message of every stream of a CloudWatch Logs group, stream by stream in the order the
/// service returns them (all pages); empty when the group does not exist.
pub async fn log_group_messages(logs: &aws_sdk_cloudwatchlogs::Client, group: &str) -> Vec<String> {
    let Ok(streams) = logs
        .describe_log_streams()
        .log_group_name(group)
        .send()
        .await
    else {
        return Vec::new();
    };
    let mut messages = Vec::new();
    for s in streams.log_streams() {
        let mut token: Option<String> = None;
        loop {
            let page = logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(s.log_stream_name().unwrap_or_default())
                .start_from_head(true)
                .set_next_token(token.clone())
                .send()
                .await
                .expect("get log events");
            let n = page.events().len();
            messages.extend(
                page.events()
                    .iter()
                    .filter_map(|e| e.message().map(str::to_owned)),
            );
            let next = page.next_forward_token().map(str::to_owned);
            if n == 0 || next == token {
                break;
            }
            token = next;
        }
    }
    messages
}

/// Puts into CloudWatch (moto) one datapoint per (minute start, value), with the given dimensions.
pub async fn put_minutes(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metric: &str,
    dims: &[(&str, &str)],
    points: impl IntoIterator<Item = (u64, f64)>,
) {
    let dimensions: Vec<aws_sdk_cloudwatch::types::Dimension> = dims
        .iter()
        .map(|(k, v)| {
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name(*k)
                .value(*v)
                .build()
        })
        .collect();
    let data: Vec<aws_sdk_cloudwatch::types::MetricDatum> = points
        .into_iter()
        .map(|(ts, value)| {
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name(metric)
                .set_dimensions(Some(dimensions.clone()))
                // Inside the minute's bucket, not on its edge.
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    ts as i64 + 1,
                ))
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
