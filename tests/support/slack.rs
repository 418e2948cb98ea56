//! A local HTTP server standing in for Slack (incoming webhooks and the Web API's
//! `chat.postMessage` / `chat.update`), used by the watchdog's notifier tests and the demo.

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::Value;

/// One request the Slack stand-in received.
#[derive(Clone, Debug)]
pub struct SlackRequest {
    pub at: std::time::Instant,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// The status and body the stand-in answered (set once it answered).
    pub answer: Option<(u16, String)>,
}

/// A local HTTP server standing in for Slack: incoming webhooks under `/services/...`, the Web
/// API under `/api/chat.postMessage` and `/api/chat.update` (bot token checked). It records
/// every request, checks the Block Kit structure (a bad payload gets Slack's
/// `400 invalid_blocks`), and answers scripted statuses (429 + Retry-After, 500) first.
pub struct SlackStandIn {
    pub port: u16,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<SlackRequest>>>,
    /// (path, status, Retry-After seconds): the next request to `path` gets this answer.
    script: std::sync::Arc<std::sync::Mutex<Vec<Scripted>>>,
    /// How long every answer takes (a slow Slack widens every race window).
    delay: std::sync::Arc<std::sync::Mutex<std::time::Duration>>,
}

/// A scripted answer: (path, status, Retry-After seconds).
type Scripted = (String, u16, Option<u64>);

pub const BOT_TOKEN: &str = "xoxb-1111-2222-SeCrEtToKeN";
pub const WEBHOOK_PATH: &str = "/services/T000/B000/WeBhOoKsEcReT";

/// Why a Slack body would be refused, if it would.
pub fn block_kit_problem(body: &Value) -> Option<String> {
    let text = body["text"].as_str().unwrap_or("");
    if text.is_empty() {
        return Some("no fallback text".into());
    }
    let attachment = &body["attachments"][0];
    if !attachment["color"]
        .as_str()
        .is_some_and(|c| c.starts_with('#'))
    {
        return Some("no colour".into());
    }
    let blocks = attachment["blocks"].as_array()?;
    if blocks.first().map(|b| &b["type"]) != Some(&Value::from("header")) {
        return Some("first block is not a header".into());
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => {
                let t = b["text"]["text"].as_str().unwrap_or("");
                if b["text"]["type"] != "plain_text" || t.is_empty() || t.chars().count() > 150 {
                    return Some(format!("bad header {b}"));
                }
            }
            Some("section") => {
                let fields = b["fields"].as_array().map_or(0, Vec::len);
                if b["text"]["text"].as_str().is_none() && fields == 0 || fields > 10 {
                    return Some(format!("bad section {b}"));
                }
            }
            Some("context") => {
                if b["elements"]
                    .as_array()
                    .is_none_or(|e| e.is_empty() || e.len() > 10)
                {
                    return Some(format!("bad context {b}"));
                }
            }
            other => return Some(format!("unexpected block type {other:?}")),
        }
    }
    None
}

impl SlackStandIn {
    pub fn start() -> SlackStandIn {
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<SlackRequest>>> = Arc::default();
        let script: Arc<Mutex<Vec<Scripted>>> = Arc::default();
        let delay: Arc<Mutex<std::time::Duration>> = Arc::default();
        let (recorded, scripted, slow) = (requests.clone(), script.clone(), delay.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (recorded, scripted) = (recorded.clone(), scripted.clone());
                let slow = *slow.lock().unwrap();
                std::thread::spawn(move || {
                    std::thread::sleep(slow);
                    let mut data = Vec::new();
                    let mut buf = [0u8; 8192];
                    let header_end = loop {
                        let n = stream.read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&data[..header_end]).to_string();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                        })
                    };
                    let length: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while data.len() < header_end + length {
                        let n = stream.read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        data.extend_from_slice(&buf[..n]);
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let body: Value =
                        serde_json::from_slice(&data[header_end..]).unwrap_or(Value::Null);
                    let authorization = header("authorization");
                    let request_count = {
                        let mut r = recorded.lock().unwrap();
                        r.push(SlackRequest {
                            at: std::time::Instant::now(),
                            path: path.clone(),
                            authorization: authorization.clone(),
                            body: body.clone(),
                            answer: None,
                        });
                        r.len()
                    };
                    let scripted_answer = {
                        let mut s = scripted.lock().unwrap();
                        s.iter()
                            .position(|(p, _, _)| *p == path)
                            .map(|i| s.remove(i))
                    };
                    let (status, extra, answer) = if let Some((_, status, retry)) = scripted_answer
                    {
                        let extra =
                            retry.map_or(String::new(), |s| format!("retry-after: {s}\r\n"));
                        (status, extra, "rate_limited".to_string())
                    } else if let Some(problem) = block_kit_problem(&body) {
                        eprintln!("slack stand-in refuses {path}: {problem}");
                        (400, String::new(), "invalid_blocks".to_string())
                    } else if path == WEBHOOK_PATH {
                        (200, String::new(), "ok".to_string())
                    } else if path.starts_with("/api/") {
                        let answer = if authorization.as_deref()
                            != Some(&format!("Bearer {BOT_TOKEN}"))
                        {
                            serde_json::json!({"ok": false, "error": "invalid_auth"})
                        } else if path == "/api/chat.postMessage" {
                            serde_json::json!({"ok": true, "channel": "C0ALERTS",
                                "ts": format!("1700000000.{request_count:06}")})
                        } else if path == "/api/chat.update" && body["channel"] == "C0ALERTS" {
                            serde_json::json!({"ok": true, "channel": "C0ALERTS", "ts": body["ts"]})
                        } else {
                            serde_json::json!({"ok": false, "error": "channel_not_found"})
                        };
                        (200, String::new(), answer.to_string())
                    } else {
                        (404, String::new(), "no_service".to_string())
                    };
                    if let Some(r) = recorded.lock().unwrap().get_mut(request_count - 1) {
                        r.answer = Some((status, answer.clone()));
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                });
            }
        });
        SlackStandIn {
            port,
            requests,
            script,
            delay,
        }
    }

    /// Every answer from now on takes `delay`.
    pub fn answer_slowly(&self, delay: std::time::Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn answer_next(&self, path: &str, status: u16, retry_after: Option<u64>) {
        self.script
            .lock()
            .unwrap()
            .push((path.to_string(), status, retry_after));
    }

    pub fn requests(&self, path: &str) -> Vec<SlackRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The channel as a reader sees it: each accepted bot post (`chat.postMessage`) or webhook
    /// post, oldest first, with accepted `chat.update`s applied in place.
    pub fn channel(&self) -> Vec<ChannelMessage> {
        let mut shown: Vec<ChannelMessage> = Vec::new();
        for r in self.requests.lock().unwrap().iter() {
            let Some((200, answer)) = &r.answer else {
                continue;
            };
            let answer: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
            if r.path == WEBHOOK_PATH {
                shown.push(ChannelMessage {
                    ts: None,
                    posted: r.at,
                    updated: None,
                    body: r.body.clone(),
                });
            } else if answer["ok"] == true && r.path == "/api/chat.postMessage" {
                shown.push(ChannelMessage {
                    ts: answer["ts"].as_str().map(str::to_owned),
                    posted: r.at,
                    updated: None,
                    body: r.body.clone(),
                });
            } else if answer["ok"] == true && r.path == "/api/chat.update" {
                let ts = r.body["ts"].as_str();
                if let Some(m) = shown.iter_mut().find(|m| m.ts.as_deref() == ts) {
                    m.updated = Some(r.at);
                    m.body = r.body.clone();
                }
            }
        }
        shown
    }

    pub fn webhook_url(&self) -> String {
        format!("http://127.0.0.1:{}{WEBHOOK_PATH}", self.port)
    }
}

/// One message in the stand-in's channel.
#[derive(Clone, Debug)]
pub struct ChannelMessage {
    /// Slack's message id (bot posts only).
    pub ts: Option<String>,
    pub posted: std::time::Instant,
    /// When it was last changed by `chat.update`.
    pub updated: Option<std::time::Instant>,
    /// The body of the post, or of the latest update.
    pub body: Value,
}
