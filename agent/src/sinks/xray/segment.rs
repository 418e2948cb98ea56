//! One span → one X-Ray segment document (JSON).
//!
//! Server and consumer spans, and spans without a parent, become segments named after their
//! service; client, producer and internal spans become subsegments sent as documents of their
//! own (`type: "subsegment"`, with `parent_id` and `trace_id`), which X-Ray attaches to their
//! parent. HTTP and SQL attributes (old and new semantic-convention names) fill `http` and `sql`;
//! the HTTP status and span status set `error`/`throttle`/`fault`; exception events become the
//! `cause`; configured attributes become indexed `annotations`, the rest `metadata`.

use serde_json::{Map, Value, json};

use crate::event::{SpanEvent, SpanKind, StatusCode};
/// Ids in X-Ray documents are lowercase hex, as in OTLP/JSON.
pub use crate::otlp::value::hex;

/// X-Ray's limit on one segment document.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Longest segment name X-Ray accepts.
const MAX_NAME_CHARS: usize = 200;
/// Most stack frames kept per exception.
const MAX_FRAMES: usize = 50;

/// Attributes mapped to fields of their own, so they are not repeated in metadata.
const MAPPED: &[&str] = &[
    "http.method",
    "http.request.method",
    "http.url",
    "url.full",
    "http.target",
    "url.path",
    "url.query",
    "url.scheme",
    "http.scheme",
    "http.user_agent",
    "user_agent.original",
    "http.client_ip",
    "client.address",
    "http.status_code",
    "http.response.status_code",
    "http.response_content_length",
    "http.response.body.size",
    "db.statement",
    "db.query.text",
    "db.system",
    "db.system.name",
    "db.connection_string",
    "db.user",
    "db.name",
    "db.namespace",
    "peer.service",
];

/// `1-{8 hex: epoch seconds}-{24 hex}` from an OpenTelemetry trace id whose first four bytes
/// are its start time (the X-Ray id generator of the OpenTelemetry SDKs does that).
pub fn trace_id(id: &[u8; 16]) -> String {
    let hex = hex(id);
    format!("1-{}-{}", &hex[..8], &hex[8..])
}

/// The epoch seconds encoded in a trace id (X-Ray refuses ids older than 30 days).
pub fn trace_id_epoch(id: &[u8; 16]) -> u32 {
    u32::from_be_bytes([id[0], id[1], id[2], id[3]])
}

/// Segment names: Unicode letters and digits, white space, and `_ . : / % & # = + \ - @`, at
/// most 200 characters; anything else becomes `_`.
pub fn sanitize_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() || "_.:/%&#=+\\-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    if s.trim().is_empty() {
        "unknown_service".to_owned()
    } else {
        s
    }
}

/// Annotation keys: ASCII letters, digits and `_` only.
pub fn sanitize_annotation_key(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(500)
        .collect()
}

/// Whether the span is sent as a segment (else as a subsegment of its parent).
pub fn is_segment(span: &SpanEvent) -> bool {
    span.parent_span_id.is_none() || matches!(span.kind, SpanKind::Server | SpanKind::Consumer)
}

fn attr<'a>(span: &'a SpanEvent, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| span.attributes.get(*k))
}

fn attr_str<'a>(span: &'a SpanEvent, keys: &[&str]) -> Option<&'a str> {
    attr(span, keys).and_then(Value::as_str)
}

fn attr_int(span: &SpanEvent, keys: &[&str]) -> Option<i64> {
    attr(span, keys).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
}

/// Epoch seconds with the fraction (whole seconds first, so the fraction keeps its precision).
fn seconds(nanos: u64) -> f64 {
    (nanos / 1_000_000_000) as f64 + (nanos % 1_000_000_000) as f64 / 1e9
}

/// The document of one span. `annotation_keys` are the attribute keys indexed as annotations.
pub fn document(span: &SpanEvent, annotation_keys: &[String]) -> Map<String, Value> {
    let mut doc = Map::new();
    let segment = is_segment(span);
    let remote = matches!(span.kind, SpanKind::Client | SpanKind::Producer);
    let service = span
        .resource
        .attributes
        .get("service.name")
        .and_then(Value::as_str);
    let aws_call = attr_str(span, &["rpc.system"]) == Some("aws-api");

    let name = if segment {
        service.unwrap_or(&span.name).to_owned()
    } else {
        subsegment_name(span, aws_call, remote)
    };
    doc.insert("name".into(), sanitize_name(&name).into());
    doc.insert("id".into(), hex(&span.span_id).into());
    doc.insert("trace_id".into(), trace_id(&span.trace_id).into());
    doc.insert("start_time".into(), json!(seconds(span.start_unix_nano)));
    doc.insert(
        "end_time".into(),
        json!(seconds(span.end_unix_nano.max(span.start_unix_nano))),
    );
    if let Some(parent) = &span.parent_span_id {
        doc.insert("parent_id".into(), hex(parent).into());
    }
    if !segment {
        doc.insert("type".into(), "subsegment".into());
        if aws_call {
            doc.insert("namespace".into(), "aws".into());
        } else if remote {
            doc.insert("namespace".into(), "remote".into());
        }
    }
    if segment {
        if let Some((origin, aws)) = origin(span) {
            doc.insert("origin".into(), origin.into());
            doc.insert("aws".into(), aws);
        }
    } else if aws_call {
        doc.insert("aws".into(), aws_call_block(span));
    }

    let status = attr_int(span, &["http.response.status_code", "http.status_code"]);
    if let Some(http) = http_block(span, status) {
        doc.insert("http".into(), http);
    }
    if let Some(sql) = sql_block(span) {
        doc.insert("sql".into(), sql);
    }

    insert_flags(&mut doc, span, status);

    let (annotations, metadata) = annotations_and_metadata(span, annotation_keys, segment);
    if !annotations.is_empty() {
        doc.insert("annotations".into(), annotations.into());
    }
    doc.insert("metadata".into(), json!({ "default": metadata }));
    doc
}

/// A subsegment's name: the AWS service called, the remote service as well as it is known,
/// or the span's name.
fn subsegment_name(span: &SpanEvent, aws_call: bool, remote: bool) -> String {
    if aws_call {
        attr_str(span, &["rpc.service"])
            .unwrap_or(&span.name)
            .to_owned()
    } else if remote {
        // The called service, as well as it is known.
        attr_str(
            span,
            &[
                "peer.service",
                "db.system.name",
                "db.system",
                "server.address",
                "net.peer.name",
            ],
        )
        .map(str::to_owned)
        .unwrap_or_else(|| span.name.clone())
    } else {
        span.name.clone()
    }
}

/// The `aws` block of a call to an AWS API: operation, region, request id.
fn aws_call_block(span: &SpanEvent) -> Value {
    let mut aws = Map::new();
    if let Some(op) = attr_str(span, &["rpc.method"]) {
        aws.insert("operation".into(), op.into());
    }
    if let Some(region) = attr_str(span, &["cloud.region", "aws.region"]) {
        aws.insert("region".into(), region.into());
    }
    if let Some(id) = attr_str(span, &["aws.request_id", "aws.request.id"]) {
        aws.insert("request_id".into(), id.into());
    }
    aws.into()
}

/// The `error`, `throttle` and `fault` flags, and the `cause` when one of them is set.
fn insert_flags(doc: &mut Map<String, Value>, span: &SpanEvent, status: Option<i64>) {
    // Flags: 4xx = client error (429 also throttle), 5xx or an Error status = fault.
    let mut fault = false;
    match status {
        Some(429) => {
            doc.insert("error".into(), true.into());
            doc.insert("throttle".into(), true.into());
        }
        Some(s) if (400..500).contains(&s) => {
            doc.insert("error".into(), true.into());
        }
        Some(s) if s >= 500 => fault = true,
        _ => {}
    }
    if span.status.code == StatusCode::Error && !doc.contains_key("error") {
        fault = true;
    }
    if fault {
        doc.insert("fault".into(), true.into());
    }
    if let Some(cause) = cause(span, fault || doc.contains_key("error")) {
        doc.insert("cause".into(), cause);
    }
}

/// The span's attributes split into annotations (the indexed `annotation_keys`, also from
/// the resource) and metadata (the rest that no other field carries).
fn annotations_and_metadata(
    span: &SpanEvent,
    annotation_keys: &[String],
    segment: bool,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut annotations = Map::new();
    let mut metadata = Map::new();
    for (k, v) in &span.attributes {
        let scalar = matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
        if scalar && annotation_keys.iter().any(|a| a == k) {
            annotations.insert(sanitize_annotation_key(k), v.clone());
        } else if !MAPPED.contains(&k.as_str()) {
            metadata.insert(k.clone(), v.clone());
        }
    }
    // Annotations may also name resource attributes (`deployment.environment`).
    for key in annotation_keys {
        if span.attributes.contains_key(key) {
            continue;
        }
        if let Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) =
            span.resource.attributes.get(key)
        {
            annotations.insert(sanitize_annotation_key(key), v.clone());
        }
    }
    // A segment is named after its service; its span name (`GET /cart/{id}`) stays findable.
    if segment {
        metadata.insert("span.name".into(), span.name.clone().into());
    }
    metadata.insert(
        "span.kind".into(),
        format!("{:?}", span.kind).to_lowercase().into(),
    );
    (annotations, metadata)
}

/// `origin` and the `aws` block from the resource's cloud attributes.
fn origin(span: &SpanEvent) -> Option<(&'static str, Value)> {
    let r = &span.resource.attributes;
    let get = |k: &str| r.get(k).and_then(Value::as_str);
    let origin = match get("cloud.platform")? {
        "aws_ec2" => "AWS::EC2::Instance",
        "aws_ecs" => "AWS::ECS::Container",
        "aws_eks" => "AWS::EKS::Container",
        "aws_elastic_beanstalk" => "AWS::ElasticBeanstalk::Environment",
        "aws_lambda" => "AWS::Lambda::Function",
        _ => return None,
    };
    let mut aws = Map::new();
    let mut ec2 = Map::new();
    if let Some(id) = get("host.id") {
        ec2.insert("instance_id".into(), id.into());
    }
    if let Some(az) = get("cloud.availability_zone") {
        ec2.insert("availability_zone".into(), az.into());
    }
    if let Some(t) = get("host.type") {
        ec2.insert("instance_size".into(), t.into());
    }
    if !ec2.is_empty() {
        aws.insert("ec2".into(), ec2.into());
    }
    if origin == "AWS::ECS::Container" {
        let mut ecs = Map::new();
        if let Some(c) = get("container.name") {
            ecs.insert("container".into(), c.into());
        }
        if let Some(c) = get("container.id") {
            ecs.insert("container_id".into(), c.into());
        }
        if let Some(c) = get("aws.ecs.cluster.arn") {
            ecs.insert("cluster_arn".into(), c.into());
        }
        aws.insert("ecs".into(), ecs.into());
    }
    if let Some(acct) = get("cloud.account.id") {
        aws.insert("account_id".into(), acct.into());
    }
    Some((origin, aws.into()))
}

fn http_block(span: &SpanEvent, status: Option<i64>) -> Option<Value> {
    let mut request = Map::new();
    if let Some(m) = attr_str(span, &["http.request.method", "http.method"]) {
        request.insert("method".into(), m.into());
    }
    let url = attr_str(span, &["url.full", "http.url"])
        .map(str::to_owned)
        .or_else(|| {
            // Server spans carry the parts; rebuild what is known.
            let path = attr_str(span, &["url.path", "http.target"])?;
            let scheme = attr_str(span, &["url.scheme", "http.scheme"]).unwrap_or("http");
            let host = attr_str(span, &["server.address", "http.host", "net.host.name"]);
            let query = attr_str(span, &["url.query"])
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            Some(match host {
                Some(h) => format!("{scheme}://{h}{path}{query}"),
                None => format!("{path}{query}"),
            })
        });
    if let Some(u) = url {
        request.insert("url".into(), u.into());
    }
    if let Some(ua) = attr_str(span, &["user_agent.original", "http.user_agent"]) {
        request.insert("user_agent".into(), ua.into());
    }
    if let Some(ip) = attr_str(span, &["client.address", "http.client_ip"]) {
        request.insert("client_ip".into(), ip.into());
    }
    let mut response = Map::new();
    if let Some(s) = status {
        response.insert("status".into(), s.into());
    }
    if let Some(len) = attr_int(
        span,
        &["http.response.body.size", "http.response_content_length"],
    ) {
        response.insert("content_length".into(), len.into());
    }
    if request.is_empty() && response.is_empty() {
        return None;
    }
    let mut http = Map::new();
    if !request.is_empty() {
        http.insert("request".into(), request.into());
    }
    if !response.is_empty() {
        http.insert("response".into(), response.into());
    }
    Some(http.into())
}

fn sql_block(span: &SpanEvent) -> Option<Value> {
    let system = attr_str(span, &["db.system.name", "db.system"])?;
    let mut sql = Map::new();
    sql.insert("database_type".into(), system.into());
    if let Some(q) = attr_str(span, &["db.query.text", "db.statement"]) {
        sql.insert("sanitized_query".into(), q.into());
    }
    let url = attr_str(span, &["db.connection_string"])
        .map(str::to_owned)
        .or_else(|| {
            let db = attr_str(span, &["db.namespace", "db.name"]);
            let host = attr_str(span, &["server.address", "net.peer.name"]);
            match (host, db) {
                (Some(h), Some(d)) => Some(format!("{h}/{d}")),
                (Some(h), None) => Some(h.to_owned()),
                (None, Some(d)) => Some(d.to_owned()),
                (None, None) => None,
            }
        });
    if let Some(u) = url {
        sql.insert("url".into(), u.into());
    }
    if let Some(u) = attr_str(span, &["db.user"]) {
        sql.insert("user".into(), u.into());
    }
    Some(sql.into())
}

/// `cause` from `exception` events; a failed span without one gets its status message.
fn cause(span: &SpanEvent, failed: bool) -> Option<Value> {
    let mut exceptions = Vec::new();
    for (i, e) in span
        .events
        .iter()
        .filter(|e| e.name == "exception")
        .enumerate()
    {
        let get = |k: &str| e.attributes.get(k).and_then(Value::as_str);
        let mut ex = Map::new();
        // Exception ids are 16 hex digits, unique within the document.
        let mut id = span.span_id;
        id[7] ^= (i as u8).wrapping_add(1);
        ex.insert("id".into(), hex(&id).into());
        if let Some(t) = get("exception.type") {
            ex.insert("type".into(), t.into());
        }
        if let Some(m) = get("exception.message") {
            ex.insert("message".into(), m.into());
        }
        ex.insert(
            "remote".into(),
            matches!(span.kind, SpanKind::Client | SpanKind::Producer).into(),
        );
        if let Some(trace) = get("exception.stacktrace") {
            let lines: Vec<&str> = trace
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let frames: Vec<Value> = lines
                .iter()
                .take(MAX_FRAMES)
                .map(|l| json!({ "label": l }))
                .collect();
            ex.insert("stack".into(), frames.into());
            if lines.len() > MAX_FRAMES {
                ex.insert("truncated".into(), (lines.len() - MAX_FRAMES).into());
            }
        }
        exceptions.push(Value::Object(ex));
    }
    if exceptions.is_empty() {
        if !failed || span.status.message.is_empty() {
            return None;
        }
        let mut id = span.span_id;
        id[7] ^= 0xff;
        exceptions.push(json!({ "id": hex(&id), "message": span.status.message }));
    }
    Some(json!({ "exceptions": exceptions }))
}

/// Serialises a document within `max_bytes`: first as is, then without metadata, then without
/// the exception stacks. `None` if it still does not fit.
pub fn encode(mut doc: Map<String, Value>, max_bytes: usize, shed: &mut bool) -> Option<String> {
    let text = serde_json::to_string(&doc).ok()?;
    if text.len() <= max_bytes {
        return Some(text);
    }
    *shed = true;
    doc.remove("metadata");
    let text = serde_json::to_string(&doc).ok()?;
    if text.len() <= max_bytes {
        return Some(text);
    }
    if let Some(Value::Object(cause)) = doc.get_mut("cause")
        && let Some(Value::Array(list)) = cause.get_mut("exceptions")
    {
        for e in list.iter_mut().filter_map(Value::as_object_mut) {
            e.remove("stack");
        }
    }
    let text = serde_json::to_string(&doc).ok()?;
    (text.len() <= max_bytes).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Resource, SpanEventRecord, SpanStatus};
    use std::sync::Arc;

    fn span(kind: SpanKind, parent: bool) -> SpanEvent {
        let mut r = Resource::default();
        r.attributes
            .insert("service.name".into(), "check out!".into());
        r.attributes
            .insert("cloud.platform".into(), "aws_ec2".into());
        r.attributes.insert("host.id".into(), "i-0abc".into());
        let mut trace_id = [0xab; 16];
        trace_id[..4].copy_from_slice(&0x6720_0000u32.to_be_bytes());
        SpanEvent {
            resource: Arc::new(r),
            scope_name: String::new(),
            scope_version: String::new(),
            trace_id,
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: parent.then_some([9; 8]),
            trace_state: String::new(),
            name: "POST /checkout".into(),
            kind,
            start_unix_nano: 1_700_000_000_250_000_000,
            end_unix_nano: 1_700_000_000_500_000_000,
            attributes: Default::default(),
            events: vec![],
            links: vec![],
            status: SpanStatus {
                code: StatusCode::Unset,
                message: String::new(),
            },
        }
    }

    #[test]
    fn ids_times_and_names() {
        let s = span(SpanKind::Server, false);
        assert_eq!(trace_id(&s.trace_id), "1-67200000-abababababababababababab");
        let d = document(&s, &[]);
        assert_eq!(d["id"], "0102030405060708");
        assert_eq!(d["name"], "check out_");
        assert_eq!(d["start_time"], 1_700_000_000.25);
        assert_eq!(d["end_time"], 1_700_000_000.5);
        assert_eq!(d["origin"], "AWS::EC2::Instance");
        assert_eq!(d["aws"]["ec2"]["instance_id"], "i-0abc");
        assert!(d.get("type").is_none());
        assert!(d.get("parent_id").is_none());
        assert_eq!(sanitize_name(&"x".repeat(300)).len(), 200);
    }

    #[test]
    fn client_spans_are_remote_subsegments_with_http_and_flags() {
        let mut s = span(SpanKind::Client, true);
        for (k, v) in [
            ("http.request.method", json!("POST")),
            ("url.full", json!("http://payment/pay")),
            ("peer.service", json!("payment")),
            ("http.response.status_code", json!(503)),
            ("order.id", json!("o-1")),
        ] {
            s.attributes.insert(k.into(), v);
        }
        s.events.push(SpanEventRecord {
            time_unix_nano: 0,
            name: "exception".into(),
            attributes: serde_json::from_value(json!({
                "exception.type": "GatewayError",
                "exception.message": "card declined upstream",
                "exception.stacktrace": "at pay()\n at checkout()",
            }))
            .unwrap(),
        });
        let d = document(&s, &["order.id".into()]);
        assert_eq!(d["type"], "subsegment");
        assert_eq!(d["namespace"], "remote");
        assert_eq!(d["name"], "payment");
        assert_eq!(d["parent_id"], "0909090909090909");
        assert_eq!(d["http"]["request"]["method"], "POST");
        assert_eq!(d["http"]["response"]["status"], 503);
        assert_eq!(d["fault"], true);
        assert!(d.get("error").is_none());
        assert_eq!(d["annotations"]["order_id"], "o-1");
        assert!(d["metadata"]["default"].get("order.id").is_none());
        let ex = &d["cause"]["exceptions"][0];
        assert_eq!(ex["type"], "GatewayError");
        assert_eq!(ex["stack"][1]["label"], "at checkout()");
    }

    #[test]
    fn status_429_is_throttle_4xx_error_and_sql_mapped() {
        let mut s = span(SpanKind::Client, true);
        s.attributes.insert("http.status_code".into(), json!(429));
        let d = document(&s, &[]);
        assert_eq!(
            (d["error"].clone(), d["throttle"].clone()),
            (json!(true), json!(true))
        );
        let mut q = span(SpanKind::Client, true);
        q.attributes.insert("db.system".into(), json!("postgresql"));
        q.attributes.insert(
            "db.statement".into(),
            json!("SELECT * FROM stock WHERE sku = $1"),
        );
        q.attributes.insert("db.name".into(), json!("inventory"));
        q.attributes
            .insert("server.address".into(), json!("db.internal"));
        let d = document(&q, &[]);
        assert_eq!(d["name"], "postgresql");
        assert_eq!(d["sql"]["database_type"], "postgresql");
        assert_eq!(d["sql"]["url"], "db.internal/inventory");
        assert!(d.get("fault").is_none());
    }

    #[test]
    fn oversize_documents_shed_metadata_then_give_up() {
        let mut s = span(SpanKind::Server, false);
        s.attributes.insert("big".into(), json!("x".repeat(70_000)));
        let mut shed = false;
        let text = encode(document(&s, &[]), MAX_DOCUMENT_BYTES, &mut shed).unwrap();
        assert!(shed && text.len() < MAX_DOCUMENT_BYTES && !text.contains("xxxx"));
        let mut s = span(SpanKind::Server, false);
        s.attributes
            .insert("http.route".into(), json!("y".repeat(70_000)));
        let d = document(&s, &["http.route".into()]);
        assert!(encode(d, MAX_DOCUMENT_BYTES, &mut shed).is_none());
    }
}
