//! PutMetricData with our own retries: throttling, 5xx, timeouts and network errors are retried
//! with full-jitter exponential backoff until accepted; a request the service refuses for its
//! content is halved until the refused datum is alone, which is then counted and left out, so
//! one bad value never fails the others.

use crate::sinks::retry::{backoff, describe};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::error::ProvideErrorMetadata;

use super::config::CloudWatchMetricsConfig;
use super::request::Request;
use crate::telemetry::{Outcome, Stats};

pub struct Service {
    name: String,
    client: Client,
    resolution: i32,
    max_backoff: Duration,
    stats: Stats,
}

impl Service {
    pub async fn new(name: &str, config: &CloudWatchMetricsConfig, stats: Stats) -> Self {
        let sdk = vigil_common::aws::load().await;
        Self::with_sdk(name, config, stats, &sdk)
    }

    pub fn with_sdk(
        name: &str,
        config: &CloudWatchMetricsConfig,
        stats: Stats,
        sdk: &aws_config::SdkConfig,
    ) -> Self {
        let conf = aws_sdk_cloudwatch::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(config.request_timeout_ms))
                    .build(),
            )
            // The SDK gzips PutMetricData bodies above the threshold (Content-Encoding: gzip).
            .disable_request_compression(!config.compression)
            .request_min_compression_size_bytes(config.compression_min_bytes)
            .build();
        Self {
            name: name.to_owned(),
            client: Client::from_conf(conf),
            resolution: config.resolution_secs as i32,
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            stats,
        }
    }

    /// Delivers one request, however long it takes. Returns how many data were refused.
    pub async fn deliver(&self, req: Request) -> usize {
        let mut refused = 0;
        let mut queue = VecDeque::from([req]);
        let mut attempt: u32 = 0;
        while let Some(req) = queue.pop_front() {
            if req.data.is_empty() {
                continue;
            }
            let data: Vec<_> = req.data.iter().map(|d| d.to_sdk(self.resolution)).collect();
            loop {
                let started = Instant::now();
                let result = self
                    .client
                    .put_metric_data()
                    .namespace(&req.namespace)
                    .set_metric_data(Some(data.clone()))
                    .send()
                    .await;
                self.stats.request(started.elapsed(), result.is_ok());
                let e = match result {
                    Ok(_) => {
                        attempt = 0;
                        self.stats.batch_size(data.len());
                        break;
                    }
                    Err(e) => e,
                };
                let code = e.code().unwrap_or("");
                let content = matches!(
                    code,
                    "InvalidParameterValue"
                        | "InvalidParameterCombination"
                        | "MissingParameter"
                        | "InvalidParameterValueException"
                        | "ValidationError"
                );
                if content && req.data.len() > 1 {
                    tracing::debug!(sink = %self.name, namespace = %req.namespace, error = %describe(&e), "request refused; splitting it");
                    let (a, b) = req.split();
                    queue.push_front(b);
                    queue.push_front(a);
                    break;
                }
                if content {
                    refused += 1;
                    self.stats.error("datum_refused");
                    tracing::error!(sink = %self.name, namespace = %req.namespace, metric = %req.data[0].key.name,
                        error = %describe(&e), "CloudWatch refused a metric datum; it is left out");
                    break;
                }
                attempt += 1;
                self.stats.retry();
                self.stats.error("request_failed");
                let delay = backoff(attempt, self.max_backoff);
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::warn!(sink = %self.name, namespace = %req.namespace, attempt,
                        retry_in_ms = delay.as_millis() as u64, error = %describe(&e), "PutMetricData failed; will retry");
                }
                tokio::time::sleep(delay).await;
            }
        }
        if refused > 0 {
            self.stats.count(Outcome::Rejected, refused as u64);
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::cloudwatch_metrics::aggregate::SeriesKey;
    use crate::sinks::cloudwatch_metrics::request::{Datum, DatumValue};

    /// A datum CloudWatch refuses (here NaN, which the sink filters earlier; it stands for any
    /// value the service refuses) is isolated by halving and left out; the rest is delivered.
    #[tokio::test]
    async fn a_refused_datum_never_fails_the_others() {
        let moto = vigil_test_support::Moto::start();
        let sdk = moto.sdk_config().await;
        let config: CloudWatchMetricsConfig =
            toml::from_str("namespace = \"Shop\"\nmax_backoff_ms = 100\n").unwrap();
        let stats = Stats::new("refused_test");
        let service = Service::with_sdk("refused_test", &config, stats.clone(), &sdk);
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
        let refused = service
            .deliver(Request {
                namespace: "Shop".into(),
                data,
            })
            .await;
        assert_eq!(refused, 1);
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
