//! A fault-injecting HTTP proxy for a backend such as moto: forwards requests, and on command
//! answers a share of them with throttling errors (AWS JSON `ThrottlingException`, HTTP 400)
//! or 5xx, delays them, or refuses connections entirely (the backend is down: the listening
//! socket is closed, so clients get "connection refused"; open connections are cut).
//!
//! One thread per connection and one request per connection (answers carry `Connection:
//! close`), which keeps it simple and is plenty for tests.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::free_port;

/// What the proxy does to the requests it gets from now on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share of requests answered `400 ThrottlingException` (0.0–1.0).
    pub throttle: f64,
    /// Share of requests answered `503 ServiceUnavailableException`.
    pub server_error: f64,
    /// Added before each request is handled.
    pub delay: Duration,
    /// Refuse connections (the backend is down).
    pub down: bool,
    /// Forward one request at a time, so the backend sees them strictly in turn. moto's
    /// DynamoDB evaluates conditional writes non-atomically under load (two winners of one
    /// `attribute_not_exists` race were measured); in turn, each write is atomic, as in AWS.
    pub one_at_a_time: bool,
    /// Operations (the `X-Amz-Target` suffix, e.g. `GetLogEvents`) answered
    /// `400 AccessDeniedException`, as for credentials whose policy does not grant them.
    pub deny_operations: Vec<String>,
}

/// How many requests were handled, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    pub forwarded: u64,
    pub throttled: u64,
    pub server_errors: u64,
    /// Connections cut because the proxy was down.
    pub cut: u64,
    /// Requests answered AccessDenied (`deny_operations`).
    pub denied: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    cut: AtomicU64,
    denied: AtomicU64,
}

struct Inner {
    upstream: String,
    faults: Mutex<Faults>,
    counters: Counters,
    stop: AtomicBool,
    /// xorshift state for the fault draws.
    rng: Mutex<u64>,
    /// Held while forwarding when `one_at_a_time`.
    turn: Mutex<()>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    inner: Arc<Inner>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) on a free port, passing everything.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        let inner = Arc::new(Inner {
            upstream,
            faults: Mutex::new(Faults::default()),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            rng: Mutex::new(seed),
            turn: Mutex::new(()),
        });
        let (listener, port) = (0..20)
            .find_map(|_| {
                let port = free_port();
                TcpListener::bind(("127.0.0.1", port))
                    .ok()
                    .map(|l| (l, port))
            })
            .expect("bind a port for the fault proxy");
        let acceptor = {
            let inner = Arc::clone(&inner);
            std::thread::spawn(move || accept_loop(inner, listener, port))
        };
        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            inner,
            acceptor: Some(acceptor),
        }
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        *self.inner.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    pub fn faults(&self) -> Faults {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Refuses connections until [`FaultProxy::up`].
    pub fn down(&self) {
        let mut f = self.faults();
        f.down = true;
        self.set(f);
    }

    pub fn up(&self) {
        let mut f = self.faults();
        f.down = false;
        self.set(f);
    }

    pub fn counts(&self) -> ProxyCounts {
        let c = &self.inner.counters;
        ProxyCounts {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
            cut: c.cut.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
        }
    }

    /// The SDK's standard variables pointing at this proxy (as `Moto::env` does at moto).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(inner: Arc<Inner>, listener: TcpListener, port: u16) {
    let mut listener = Some(listener);
    while !inner.stop.load(Ordering::Relaxed) {
        let down = inner.faults.lock().unwrap_or_else(|e| e.into_inner()).down;
        if down {
            // Closing the socket makes new connections fail with "connection refused".
            listener = None;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let Some(l) = listener.as_ref() else {
            // Back up: listen on the same port again (retry while the old socket lingers).
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    l.set_nonblocking(true).expect("non-blocking listener");
                    listener = Some(l);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            continue;
        };
        l.set_nonblocking(true).expect("non-blocking listener");
        match l.accept() {
            Ok((stream, _)) => {
                let inner = Arc::clone(&inner);
                std::thread::spawn(move || {
                    let _ = handle(&inner, stream);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads an HTTP/1.1 message head (up to the blank line) and whatever body bytes came with it.
fn read_head(stream: &mut impl Read) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
            return Ok(Some((head, buf[p + 4..].to_vec())));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a whole HTTP/1.1 request: its head, and its body up to `Content-Length`. `None` when the
/// peer closed before the request was complete.
pub(crate) fn read_request(stream: &mut impl Read) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let Some((head, mut body)) = read_head(stream)? else {
        return Ok(None);
    };
    let want = content_length(&head);
    while body.len() < want {
        let mut chunk = vec![0u8; want - body.len()];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn close_head(head: &str) -> String {
    let mut out = String::with_capacity(head.len() + 20);
    for line in head.trim_end().split("\r\n") {
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn draw(inner: &Inner) -> f64 {
    let mut s = inner.rng.lock().unwrap_or_else(|e| e.into_inner());
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    (*s >> 11) as f64 / (1u64 << 53) as f64
}

fn handle(inner: &Inner, mut client: TcpStream) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let Some((head, body)) = read_request(&mut client)? else {
        return Ok(());
    };
    let faults = inner
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if faults.delay > Duration::ZERO {
        std::thread::sleep(faults.delay);
    }
    let down_now = inner.faults.lock().unwrap_or_else(|e| e.into_inner()).down;
    if faults.down || down_now {
        inner.counters.cut.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let roll = draw(inner);
    let target = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-amz-target"))
        .map(|(_, v)| v.trim().to_owned());
    let denied = target.as_deref().is_some_and(|t| {
        faults
            .deny_operations
            .iter()
            .any(|op| t.rsplit('.').next() == Some(op.as_str()))
    });
    let canned = if denied {
        inner.counters.denied.fetch_add(1, Ordering::Relaxed);
        Some((
            "400 Bad Request",
            "AccessDeniedException",
            "User is not authorized to perform this action (injected by the test proxy)",
        ))
    } else if roll < faults.throttle {
        inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
        Some((
            "400 Bad Request",
            "ThrottlingException",
            "Rate exceeded (injected by the test proxy)",
        ))
    } else if roll < faults.throttle + faults.server_error {
        inner.counters.server_errors.fetch_add(1, Ordering::Relaxed);
        Some((
            "503 Service Unavailable",
            "ServiceUnavailableException",
            "Service unavailable (injected by the test proxy)",
        ))
    } else {
        None
    };
    if let Some((status, kind, message)) = canned {
        let body = format!("{{\"__type\":\"{kind}\",\"message\":\"{message}\"}}");
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {kind}\r\nx-amzn-RequestId: fault-proxy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(response.as_bytes())?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let _turn = faults
        .one_at_a_time
        .then(|| inner.turn.lock().unwrap_or_else(|e| e.into_inner()));
    let mut upstream = match TcpStream::connect(&inner.upstream) {
        Ok(s) => s,
        Err(_) => {
            // The backend itself is gone: the client sees what it would see without us.
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
    };
    upstream.write_all(close_head(&head).as_bytes())?;
    upstream.write_all(&body)?;
    let Some((resp_head, mut resp_body)) = read_head(&mut upstream)? else {
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    };
    upstream.read_to_end(&mut resp_body)?;
    inner.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    client.write_all(close_head(&resp_head).as_bytes())?;
    client.write_all(&resp_body)?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}
