//! The shop simulator runs, writes its modules' logs, exports every span it reports through the
//! OpenTelemetry SDK — OTLP/HTTP protobuf (received by a plain HTTP server that decodes each
//! request with the official protobuf definitions) and OTLP/gRPC (a tonic server with the
//! official service definition) — and its summary adds up.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use vigil_test_support::ShopSim;

/// Spans received: (service.name, span name, kind, trace id hex).
type Received = Arc<Mutex<Vec<(String, String, i32, String)>>>;

/// An OTLP/HTTP receiver just big enough for this test: HTTP/1.1 with keep-alive, protobuf
/// bodies, an empty (full success) response.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let spans = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let spans = Arc::clone(&spans);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    assert!(line.starts_with("POST /v1/traces "), "{line}");
                    let mut len = 0;
                    let mut content_type = String::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "content-type" => content_type = v.trim().to_owned(),
                            _ => {}
                        }
                    }
                    assert_eq!(content_type, "application/x-protobuf");
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    let req = ExportTraceServiceRequest::decode(&body[..]).expect("valid OTLP");
                    record(&spans, req);
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (endpoint, got)
}

fn record(spans: &Received, req: ExportTraceServiceRequest) {
    let mut out = spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.clone())
            .map(|v| match v {
                AnyValue::StringValue(s) => s,
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let hex: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                out.push((service.clone(), s.name, s.kind, hex));
            }
        }
    }
}

struct Collector(Received);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        record(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on its own runtime thread.
fn grpc_receiver() -> (String, Received) {
    let port = vigil_test_support::free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let got: Received = Arc::default();
    let spans = Arc::clone(&got);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            tonic::transport::Server::builder()
                .serve(addr, TraceServiceServer::new(Collector(spans)))
                .await
                .unwrap();
        });
    });
    assert!(vigil_test_support::wait_until(
        std::time::Duration::from_secs(5),
        || std::net::TcpStream::connect(addr).is_ok()
    ));
    (format!("http://{addr}"), got)
}

#[test]
fn simulator_exports_over_grpc() {
    let (endpoint, received) = grpc_receiver();
    let summary = ShopSim {
        otlp_endpoint: Some(endpoint),
        requests: 300,
        ..ShopSim::default()
    }
    .run();
    let got = received.lock().unwrap();
    assert_eq!(got.len() as u64, summary.spans);
    let traces: HashSet<&str> = got.iter().map(|s| s.3.as_str()).collect();
    assert_eq!(traces.len(), 300);
    assert!(
        summary
            .trace_ids
            .iter()
            .all(|t| traces.contains(t.as_str()))
    );
}

#[test]
fn simulator_exports_what_it_reports_and_writes_logs() {
    let (endpoint, received) = receiver();
    let logs = tempfile::tempdir().unwrap();
    let sim = ShopSim {
        otlp_endpoint: Some(endpoint),
        http: true,
        requests: 400,
        seed: 7,
        checkout_failure_rate: 0.1,
        slow_checkout_rate: 0.2,
        log_dir: Some(logs.path().to_owned()),
        ..ShopSim::default()
    };
    let summary = sim.run();
    assert_eq!(summary.requests, 400);
    assert_eq!(summary.trace_ids.len(), 400);

    // Every span the simulator made reached the receiver, from the right module.
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len() as u64, summary.spans);
    let services: HashSet<&str> = got.iter().map(|s| s.0.as_str()).collect();
    for m in [
        "proxy",
        "authentication",
        "cart",
        "checkout",
        "inventory",
        "payment",
        "notification",
    ] {
        assert!(services.contains(m), "{m} exported nothing");
    }
    // Server spans per (service, name) match the summary's request counts.
    let mut servers: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (service, name, kind, _) in &got {
        if *kind == 2 {
            *servers.entry((service.clone(), name.clone())).or_default() += 1;
        }
    }
    for s in &summary.series {
        assert_eq!(
            servers.get(&(s.service.clone(), s.route.clone())),
            Some(&s.requests),
            "{s:?}"
        );
    }
    // Trace ids are X-Ray compatible: the first 8 hex digits are a recent epoch second.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for t in &summary.trace_ids {
        let secs = i64::from_str_radix(&t[..8], 16).unwrap();
        assert!((now - secs).abs() < 600, "{t}");
    }

    // The summary adds up: checkout's errors and slow share follow the settings (roughly),
    // the proxy saw every request, error traces are listed.
    let checkout = summary
        .series("checkout", "POST /checkout")
        .expect("checkouts");
    let proxy_total: u64 = summary
        .series
        .iter()
        .filter(|s| s.service == "proxy")
        .map(|s| s.requests)
        .sum();
    assert_eq!(proxy_total, 400);
    let err = checkout.errors as f64 / checkout.requests as f64;
    assert!((0.02..0.25).contains(&err), "checkout error share {err}");
    assert!(
        checkout.under_300ms < checkout.requests - checkout.errors,
        "some slow checkouts"
    );
    assert!(summary.error_trace_ids.len() as u64 >= checkout.errors);
    assert!(summary.series("authentication", "POST /login").is_some());
    assert!(summary.series("payment", "POST /payments").is_some());

    // Each module wrote JSON lines carrying trace ids that exist.
    let traces: HashSet<&str> = summary.trace_ids.iter().map(String::as_str).collect();
    for m in ["proxy", "checkout", "payment"] {
        let text = std::fs::read_to_string(logs.path().join(format!("{m}.log"))).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!lines.is_empty());
        for l in &lines {
            assert_eq!(l["service"], m);
            assert!(traces.contains(l["trace_id"].as_str().unwrap()));
        }
    }

    // Same seed, same traffic.
    let again = ShopSim {
        otlp_endpoint: None,
        log_dir: None,
        ..sim
    }
    .run();
    let key = |s: &vigil_test_support::SimSummary| {
        s.series
            .iter()
            .map(|x| {
                (
                    x.service.clone(),
                    x.route.clone(),
                    x.requests,
                    x.errors,
                    x.under_300ms,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&again), key(&summary));
}
