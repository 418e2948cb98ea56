//! One attempt at sending a request to an AWS OTLP endpoint, signed with SigV4 (fresh time,
//! current credentials), and what the answer means for the delivery driver.
//!
//! 429, 408, 5xx, timeouts and network errors back off (full jitter, `Retry-After` honoured up to
//! `request.max_backoff_ms`) and retry forever; 403 does too, after dropping the cached credentials (an
//! expired or rotated key); 400 and 413 halve the request until the refused item is isolated
//! and counted; other 4xx refuse the request (counted). A 2xx may carry a partial success, whose
//! rejected items are counted.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use reqwest::StatusCode;

use super::config::Signal;
use super::credentials::CredentialsCache;
use crate::sinks::driver::{Backend, Verdict};
use crate::sinks::otlp_http::batch::OtlpRequest;
use crate::sinks::otlp_http::{self, Answer, partial_success};

pub struct Service {
    client: reqwest::Client,
    region: String,
    traces_url: String,
    logs_url: String,
    /// `x-aws-log-group`, `x-aws-log-stream`.
    log_destination: Option<(String, String)>,
    credentials: CredentialsCache,
}

pub struct Endpoints {
    pub region: String,
    pub traces_url: String,
    pub logs_url: String,
    pub log_destination: Option<(String, String)>,
}

impl Service {
    pub fn new(
        endpoints: Endpoints,
        credentials: CredentialsCache,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: otlp_http::client(timeout)?,
            region: endpoints.region,
            traces_url: endpoints.traces_url,
            logs_url: endpoints.logs_url,
            log_destination: endpoints.log_destination,
            credentials,
        })
    }
}

impl Backend for Service {
    /// The signal decides the endpoint and the signing service.
    type Key = Signal;
    type Request = OtlpRequest;
    type Lane = ();
    const OPERATION: &'static str = "sending to AWS";

    async fn send(&self, signal: &Signal, req: &mut OtlpRequest) -> Verdict<OtlpRequest> {
        let url = match signal {
            Signal::Traces => &self.traces_url,
            Signal::Logs => &self.logs_url,
        };
        let mut headers: Vec<(&'static str, &str)> = vec![
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ];
        if *signal == Signal::Logs
            && let Some((group, stream)) = &self.log_destination
        {
            headers.push(("x-aws-log-group", group));
            headers.push(("x-aws-log-stream", stream));
        }
        let credentials = match self.credentials.get().await {
            Ok(c) => c,
            Err(why) => {
                return Verdict::Retry {
                    after: None,
                    why: format!("no AWS credentials: {why}"),
                };
            }
        };
        let identity: Identity = credentials.into();
        let body = req.body();
        let signed = match sign_headers(
            &self.region,
            signal.service(),
            url,
            &headers,
            &body,
            &identity,
        ) {
            Ok(s) => s,
            Err(why) => return Verdict::Refused { why },
        };
        let mut builder = self.client.post(url.as_str()).body(body);
        for (k, v) in headers
            .iter()
            .copied()
            .chain(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            builder = builder.header(k, v);
        }
        let answer = match Answer::read(builder.send().await).await {
            Ok(a) => a,
            Err(why) => return Verdict::Retry { after: None, why },
        };
        if answer.status.is_success() {
            let (rejected, why) = partial_success(signal.path(), &answer.body);
            return Verdict::Accepted { rejected, why };
        }
        let (after, why) = (answer.retry_after, answer.describe());
        match answer.status {
            StatusCode::FORBIDDEN => {
                // An expired or rotated key: ask the chain again before the next attempt.
                self.credentials.invalidate().await;
                Verdict::Retry { after: None, why }
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                Verdict::Retry { after, why }
            }
            s if s.is_server_error() => Verdict::Retry { after, why },
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Verdict::Split { why },
            _ => Verdict::Refused { why },
        }
    }
}

/// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for a POST of
/// `body` with `headers` to `url`.
pub fn sign_headers(
    region: &str,
    service: &str,
    url: &str,
    headers: &[(&'static str, &str)],
    body: &[u8],
    identity: &Identity,
) -> Result<Vec<(String, String)>, String> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign a request to {url}: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("signing failed: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}
