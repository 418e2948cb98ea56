//! Slack: incoming webhooks and the Web API with a bot token.
//!
//! Both honour `429 Too Many Requests` by waiting `Retry-After` seconds (at most 30) and retry
//! 5xx and network errors with exponential backoff, a few times within one invocation. Errors
//! never carry the URL (a webhook URL is a secret) and the token header is marked sensitive.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};

use super::render::Message;
use super::secrets::Secret;
use crate::error::{CallError, ErrorKind};

/// How many times one request is tried within an invocation.
const ATTEMPTS: u32 = 4;
const MAX_RETRY_AFTER: u64 = 30;

pub enum Slack {
    Webhook {
        url: Secret,
    },
    Bot {
        token: Secret,
        channel: String,
        api_url: String,
    },
}

/// Id stored for a webhook message (a webhook cannot edit, so only "it was accepted" matters).
pub const WEBHOOK_ID: &str = "webhook";

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&Secret>,
    body: &Value,
) -> Result<String, CallError> {
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        let mut request = http.post(url).json(body);
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| CallError::bad_data("the bot token is not a valid header value"))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let backoff = Duration::from_millis(250 << attempt);
        match request.send().await {
            Err(e) => {
                last = Some(CallError::new(
                    ErrorKind::Unreachable,
                    format!("request failed: {}", e.without_url()),
                ));
                tokio::time::sleep(backoff).await;
            }
            Ok(response) => {
                let status = response.status();
                if status.as_u16() == 429 {
                    let wait = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(1)
                        .min(MAX_RETRY_AFTER);
                    tracing::warn!(retry_after_s = wait, attempt, "slack rate-limited us");
                    last = Some(CallError::new(
                        ErrorKind::Throttled,
                        format!("rate limited (429, Retry-After {wait}s)"),
                    ));
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    continue;
                }
                let text = response.text().await.map_err(|e| {
                    CallError::new(
                        ErrorKind::Unreachable,
                        format!("reading the answer: {}", e.without_url()),
                    )
                })?;
                if status.is_server_error() {
                    last = Some(CallError::new(
                        ErrorKind::Unreachable,
                        format!("HTTP {status}"),
                    ));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                if !status.is_success() {
                    let mut text = text;
                    super::render::truncate(&mut text, 200);
                    return Err(CallError::new(
                        ErrorKind::Refused,
                        format!("HTTP {status}: {text}"),
                    ));
                }
                return Ok(text);
            }
        }
    }
    let last = last.unwrap_or_else(|| CallError::new(ErrorKind::Unreachable, "no attempt made"));
    Err(last.context(format!("gave up after {ATTEMPTS} attempts")))
}

fn api_answer(text: &str) -> Result<Value, CallError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| CallError::bad_data(format!("Slack answered non-JSON: {e}")))?;
    if v["ok"] == true {
        Ok(v)
    } else {
        Err(CallError::new(
            ErrorKind::Refused,
            format!(
                "Slack refused: {}",
                v["error"].as_str().unwrap_or("no error given")
            ),
        ))
    }
}

impl Slack {
    /// Sends `message`. `previous` is the id this receiver returned for the incident's page:
    /// with a bot token the resolve updates that message in place. Returns the id to store.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        message: &Message,
        previous: Option<&str>,
    ) -> Result<String, CallError> {
        let body = message.slack();
        match self {
            Slack::Webhook { url } => {
                post(http, url.expose(), None, &body).await?;
                Ok(WEBHOOK_ID.to_string())
            }
            Slack::Bot {
                token,
                channel,
                api_url,
            } => {
                let api = api_url.trim_end_matches('/');
                let mut body = body;
                // `channel|ts` as stored by postMessage.
                let update = previous.and_then(|p| p.split_once('|'));
                match update {
                    Some((channel, ts)) if message.resolved && !message.partial => {
                        body["channel"] = json!(channel);
                        body["ts"] = json!(ts);
                        let text =
                            post(http, &format!("{api}/chat.update"), Some(token), &body).await?;
                        api_answer(&text)?;
                        Ok(format!("{channel}|{ts}"))
                    }
                    _ => {
                        body["channel"] = json!(channel);
                        // Part of a grouped page resolved while the rest still fires: a reply
                        // in the page's thread; the page itself turns green with the last one.
                        if let Some((page_channel, ts)) = update.filter(|_| message.partial) {
                            body["channel"] = json!(page_channel);
                            body["thread_ts"] = json!(ts);
                        }
                        let text =
                            post(http, &format!("{api}/chat.postMessage"), Some(token), &body)
                                .await?;
                        let v = api_answer(&text)?;
                        let ts = v["ts"]
                            .as_str()
                            .ok_or_else(|| CallError::bad_data("Slack answered without a ts"))?;
                        let channel = v["channel"].as_str().unwrap_or(channel);
                        Ok(format!("{channel}|{ts}"))
                    }
                }
            }
        }
    }
}
