//! One attempt at sending a request to New Relic, and what the answer means for the delivery
//! driver: `429` and `503` wait for `Retry-After` (capped at `request.max_backoff_ms`), other 5xx, 408,
//! timeouts and network errors back off exponentially with full jitter; any other 4xx is a
//! permanent refusal (counted as rejected and logged with New Relic's answer). A 2xx may report
//! a partial success, whose rejected items are counted too.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};

use super::secret::LicenseKey;
use crate::sinks::driver::{Backend, Verdict};
use crate::sinks::otlp_http::batch::OtlpRequest;
use crate::sinks::otlp_http::{self, Answer, partial_success};

pub struct Service {
    client: reqwest::Client,
    endpoint: String,
    key: LicenseKey,
}

impl Service {
    pub fn new(endpoint: String, key: LicenseKey, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: otlp_http::client(timeout)?,
            endpoint,
            key,
        })
    }
}

impl Backend for Service {
    type Key = ();
    type Request = OtlpRequest;
    type Lane = ();
    const OPERATION: &'static str = "sending to New Relic";

    async fn send(&self, _: &(), req: &mut OtlpRequest) -> Verdict<OtlpRequest> {
        let path = req.message.path();
        let sent = self
            .client
            .post(format!("{}{path}", self.endpoint))
            .header("api-key", self.key.header())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_ENCODING, "gzip")
            .body(req.body())
            .send()
            .await;
        let answer = match Answer::read(sent).await {
            Ok(a) => a,
            Err(why) => return Verdict::Retry { after: None, why },
        };
        if answer.status.is_success() {
            let (rejected, why) = partial_success(path, &answer.body);
            return Verdict::Accepted { rejected, why };
        }
        let (after, why) = (answer.retry_after, answer.describe());
        match answer.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                Verdict::Retry { after, why }
            }
            s if s.is_server_error() => Verdict::Retry { after, why },
            _ => Verdict::Refused { why },
        }
    }
}
