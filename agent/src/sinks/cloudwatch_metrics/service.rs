//! One PutMetricData call, and what its answer means for the delivery driver: throttling, 5xx,
//! timeouts and network errors are retried with full-jitter backoff until accepted; a request
//! the service refuses for its content is halved until the refused datum is alone, which is then
//! counted and left out, so one bad value never fails the others.

use aws_sdk_cloudwatch::Client;
use vigil_common::aws_error::{code, error_text};

use super::config::CloudWatchMetricsConfig;
use super::request::Request;
use crate::sinks::driver::{Backend, ErrorNames, Verdict};

/// Error codes for a request CloudWatch refuses for its content.
const CONTENT_REFUSED: &[&str] = &[
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
    "InvalidParameterValueException",
    "ValidationError",
];

pub struct Service {
    client: Client,
    resolution: i32,
}

impl Service {
    pub async fn new(config: &CloudWatchMetricsConfig) -> Self {
        Self::with_sdk(config, vigil_common::aws::load().await)
    }

    pub fn with_sdk(config: &CloudWatchMetricsConfig, sdk: aws_config::SdkConfig) -> Self {
        // Retries are the driver's.
        let sdk = vigil_common::aws::without_retries(sdk, config.request_settings().timeout);
        let conf = aws_sdk_cloudwatch::config::Builder::from(&sdk)
            // The SDK gzips PutMetricData bodies above the threshold (Content-Encoding: gzip).
            .disable_request_compression(!config.compression)
            .request_min_compression_size_bytes(config.compression_min_bytes)
            .build();
        Self {
            client: Client::from_conf(conf),
            resolution: config.resolution_secs as i32,
        }
    }
}

impl Backend for Service {
    type Key = ();
    type Request = Request;
    type Lane = ();
    const OPERATION: &'static str = "PutMetricData";
    const ERRORS: ErrorNames = ErrorNames {
        item_refused: "datum_refused",
        ..ErrorNames::DEFAULT
    };
    /// The sink counts as `sent` the events whose aggregates were stored, not the data.
    const COUNTS_SENT: bool = false;

    async fn send(&self, _: &(), req: &mut Request) -> Verdict<Request> {
        let data = req.data.iter().map(|d| d.to_sdk(self.resolution)).collect();
        let result = self
            .client
            .put_metric_data()
            .namespace(&req.namespace)
            .set_metric_data(Some(data))
            .send()
            .await;
        match result {
            Ok(_) => Verdict::Accepted {
                rejected: 0,
                why: String::new(),
            },
            Err(e) if code(&e).is_some_and(|c| CONTENT_REFUSED.contains(&c)) => Verdict::Split {
                why: format!("{}: {}", req.data[0].key.name, error_text(&e)),
            },
            Err(e) => Verdict::Retry {
                after: None,
                why: error_text(&e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::sinks::cloudwatch_metrics::aggregate::SeriesKey;
    use crate::sinks::cloudwatch_metrics::request::{Datum, DatumValue};
    use crate::sinks::driver::{Delivery, Job, RetryPolicy};
    use crate::telemetry::{Outcome, Stats};

    /// A datum CloudWatch refuses (here NaN, which the sink filters earlier; it stands for any
    /// value the service refuses) is isolated by halving and left out; the rest is delivered.
    #[tokio::test]
    async fn a_refused_datum_never_fails_the_others() {
        let moto = vigil_test_support::Moto::start();
        let sdk = moto.sdk_config().await;
        let config: CloudWatchMetricsConfig =
            toml::from_str("namespace = \"Shop\"\nrequest.max_backoff_ms = 100\n").unwrap();
        let stats = Stats::new("refused_test");
        let service = Service::with_sdk(&config, sdk.clone());
        let policy = RetryPolicy {
            max_backoff: Duration::from_millis(100),
            partial_retries: 0,
        };
        let delivery = Delivery::new("refused_test", Arc::new(service), stats.clone(), policy, 1);
        let ts = (crate::event::now_ms() / 60_000 - 2) * 60_000;
        let data = (0..7)
            .map(|i| Datum {
                key: SeriesKey {
                    namespace: "Shop".into(),
                    name: format!("m{i}"),
                    dimensions: vec![],
                    unit: "Count",
                },
                timestamp_ms: ts,
                value: DatumValue::Value(if i == 4 { f64::NAN } else { f64::from(i) }),
            })
            .collect();
        let request = Request {
            namespace: "Shop".into(),
            data,
        };
        let job = Job {
            request,
            acks: Vec::new(),
        };
        let tally = delivery.deliver(&(), job).await;
        assert_eq!(tally.rejected, 1);
        assert_eq!(stats.get(Outcome::Rejected), 1);
        let cw = Client::new(&sdk);
        let listed = cw.list_metrics().namespace("Shop").send().await.unwrap();
        let mut names: Vec<_> = listed
            .metrics()
            .iter()
            .filter_map(|m| m.metric_name())
            .collect();
        names.sort();
        assert_eq!(names, ["m0", "m1", "m2", "m3", "m5", "m6"]);
    }
}
