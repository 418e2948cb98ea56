//! A scripted stand-in for a sink's backend: a real HTTP/1.1 server on a free loopback port
//! that answers each request from a script of canned answers (status, headers, body, delay)
//! and records what it got, so a sink's classification of every answer a service can give
//! (throttled, 5xx, refused item, unprocessed items, partial success, Retry-After, too slow)
//! is tested through the sink's real client and the real wire protocol.
//!
//! Answers are scripted per operation: the `X-Amz-Target` suffix (awsJson: `PutLogEvents`),
//! the `Action` of a form body (awsQuery: `PutMetricData`), otherwise the path (restJson and
//! OTLP: `/TraceSegments`, `/v1/traces`). Each operation's answers are used in turn; when they
//! run out its standing answer ([`ScriptedBackend::otherwise`]) is given, and without one a
//! `500` saying nothing was scripted (counted in [`ScriptedBackend::unscripted`]). Answers tied
//! to an item ([`ScriptedBackend::when_body_contains`]) come before both, so a refused item is
//! refused in whichever request it travels.
//!
//! The canned answers are written as each service writes them ([`Canned::aws_json_error`],
//! [`Canned::rest_json_error`], [`Canned::aws_query_error`]): the SDK reads the error code
//! from exactly those places. One request per connection (`Connection: close`), one thread per
//! connection, as in [`crate::FaultProxy`].

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fault_proxy::read_request;
use crate::free_port;

/// One answer: what the service sends back, after `delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waited before answering (longer than the client's timeout: the client gives up).
    pub delay: Duration,
}

impl Canned {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status,
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("x-amzn-RequestId".into(), "scripted-0000".into()),
            ],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// An awsJson 1.1 success (CloudWatch Logs).
    pub fn aws_json_ok(body: serde_json::Value) -> Canned {
        Canned::new(200, "application/x-amz-json-1.1", body.to_string())
    }

    /// An awsJson 1.1 error: the code in the body's `__type` (CloudWatch Logs:
    /// `ThrottlingException`, `ResourceNotFoundException`, `InvalidParameterException`, ...).
    pub fn aws_json_error(status: u16, code: &str, message: &str) -> Canned {
        let body = serde_json::json!({ "__type": code, "message": message });
        Canned::new(status, "application/x-amz-json-1.1", body.to_string())
    }

    /// A restJson 1 success (X-Ray).
    pub fn rest_json_ok(body: serde_json::Value) -> Canned {
        Canned::new(200, "application/json", body.to_string())
    }

    /// A restJson 1 error: the code in the `x-amzn-ErrorType` header, followed as AWS does by
    /// the service's namespace (X-Ray: `InvalidRequestException`, `ThrottledException`, ...).
    pub fn rest_json_error(status: u16, code: &str, message: &str) -> Canned {
        let body = serde_json::json!({ "message": message });
        Canned::new(status, "application/json", body.to_string()).with_header(
            "x-amzn-ErrorType",
            &format!("{code}:http://internal.amazon.com/coral/com.amazon.xray/"),
        )
    }

    /// An awsQuery success for `action` (CloudWatch's `PutMetricDataResponse`).
    pub fn aws_query_ok(action: &str) -> Canned {
        let body = format!(
            "<{action}Response xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
             <ResponseMetadata><RequestId>scripted-0000</RequestId></ResponseMetadata>\
             </{action}Response>"
        );
        Canned::new(200, "text/xml", body)
    }

    /// An awsQuery error: `ErrorResponse/Error/Code` (CloudWatch: `Throttling`,
    /// `InvalidParameterValue`, `InternalServiceError`, ...).
    pub fn aws_query_error(status: u16, code: &str, message: &str) -> Canned {
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        let body = format!(
            "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
             <Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>scripted-0000</RequestId></ErrorResponse>"
        );
        Canned::new(status, "text/xml", body)
    }

    /// A protobuf answer (OTLP/HTTP: an export response, possibly a partial success).
    pub fn protobuf(status: u16, body: Vec<u8>) -> Canned {
        Canned::new(status, "application/x-protobuf", body)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answered only after `delay`.
    pub fn after(mut self, delay: Duration) -> Canned {
        self.delay = delay;
        self
    }
}

/// One request as it arrived, and the status it was answered with.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub operation: String,
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when it came with `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (awsJson and restJson requests).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.operation,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Default)]
struct Script {
    /// Checked first, in order: (operation, text in the body, answer, times left).
    rules: Vec<(String, Vec<u8>, Canned, usize)>,
    answers: HashMap<String, VecDeque<Canned>>,
    standing: HashMap<String, Canned>,
}

impl Script {
    fn answer(&mut self, operation: &str, body: &[u8]) -> Option<Canned> {
        let rule = self.rules.iter_mut().find(|(op, needle, _, left)| {
            *left > 0 && op == operation && body.windows(needle.len()).any(|w| w == &needle[..])
        });
        if let Some((_, _, answer, left)) = rule {
            *left -= 1;
            return Some(answer.clone());
        }
        let next = self
            .answers
            .get_mut(operation)
            .and_then(VecDeque::pop_front);
        next.or_else(|| self.standing.get(operation).cloned())
    }
}

struct Inner {
    script: Mutex<Script>,
    recorded: Mutex<Vec<Recorded>>,
    unscripted: AtomicU64,
    stop: AtomicBool,
}

/// A running stand-in; stops accepting when dropped.
pub struct ScriptedBackend {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    inner: Arc<Inner>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedBackend {
    pub fn start() -> ScriptedBackend {
        let inner = Arc::new(Inner {
            script: Mutex::new(Script::default()),
            recorded: Mutex::new(Vec::new()),
            unscripted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let listener = (0..20)
            .find_map(|_| TcpListener::bind(("127.0.0.1", free_port())).ok())
            .expect("bind a port for the scripted backend");
        let port = listener.local_addr().expect("bound address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let acceptor = {
            let inner = Arc::clone(&inner);
            std::thread::spawn(move || accept_loop(&inner, &listener))
        };
        ScriptedBackend {
            endpoint: format!("http://127.0.0.1:{port}"),
            inner,
            acceptor: Some(acceptor),
        }
    }

    /// Appends answers for the next requests of `operation`, given in turn.
    pub fn script(&self, operation: &str, answers: impl IntoIterator<Item = Canned>) {
        self.lock_script()
            .answers
            .entry(operation.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Answers the next `times` requests of `operation` whose body contains `needle` with
    /// `answer`, before any other script: a backend refusing an item whenever a request holds
    /// it (`usize::MAX` times), or leaving a given item unprocessed once.
    pub fn when_body_contains(&self, operation: &str, needle: &str, answer: Canned, times: usize) {
        self.lock_script().rules.push((
            operation.to_owned(),
            needle.as_bytes().to_vec(),
            answer,
            times,
        ));
    }

    /// The answer to `operation` once its scripted answers are used up.
    pub fn otherwise(&self, operation: &str, answer: Canned) {
        self.lock_script()
            .standing
            .insert(operation.to_owned(), answer);
    }

    /// Scripted answers of `operation` not given yet.
    pub fn pending(&self, operation: &str) -> usize {
        self.lock_script()
            .answers
            .get(operation)
            .map_or(0, VecDeque::len)
    }

    /// Every request so far, in the order they were answered.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The requests of one operation.
    pub fn requests_for(&self, operation: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.operation == operation)
            .collect()
    }

    /// Requests that found neither a scripted nor a standing answer (a test's script missed
    /// something the sink did).
    pub fn unscripted(&self) -> u64 {
        self.inner.unscripted.load(Ordering::Relaxed)
    }

    /// SDK configuration pointing at the stand-in, with static test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::local_sdk_config(&self.endpoint, "scripted").await
    }

    fn lock_script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.inner.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(inner: &Arc<Inner>, listener: &TcpListener) {
    while !inner.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let inner = Arc::clone(inner);
                std::thread::spawn(move || {
                    let _ = handle(&inner, stream);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The operation a request is scripted under (see the module's doc).
fn operation(path: &str, headers: &[(String, String)], body: &[u8]) -> String {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(target) = header("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        && let Some(action) = String::from_utf8_lossy(body)
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
    {
        return action.to_owned();
    }
    path.split('?').next().unwrap_or(path).to_owned()
}

fn handle(inner: &Inner, mut client: TcpStream) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let Some((head, mut body)) = read_request(&mut client)? else {
        return Ok(());
    };
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let gzipped = headers
        .iter()
        .any(|(k, v)| k == "content-encoding" && v.eq_ignore_ascii_case("gzip"));
    if gzipped {
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .is_ok()
        {
            body = plain;
        }
    }
    let operation = operation(&path, &headers, &body);
    let answer = inner
        .script
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .answer(&operation, &body);
    let answer = answer.unwrap_or_else(|| {
        inner.unscripted.fetch_add(1, Ordering::Relaxed);
        Canned::new(
            500,
            "text/plain",
            format!("the scripted backend has no answer for {operation}"),
        )
    });
    inner
        .recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Recorded {
            operation,
            method,
            path,
            headers,
            body,
            status: answer.status,
        });
    if answer.delay > Duration::ZERO {
        std::thread::sleep(answer.delay);
    }
    let mut out = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
    for (k, v) in &answer.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.body.len()
    ));
    // The client may have given up already (a timeout test): that is not an error here.
    let _ = client.write_all(out.as_bytes());
    let _ = client.write_all(&answer.body);
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Scripted",
    }
}
