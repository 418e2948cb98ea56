"""A stand-in for AWS's OTLP endpoints (X-Ray /v1/traces, CloudWatch Logs /v1/logs) and for the
ECS container credentials endpoint, for Vigil's tests.

Every OTLP request is checked the way the real endpoints would, independently of the agent's
code: the SigV4 signature is recomputed with botocore from the request as received and the
secret of the access key it names (static test keys, or keys this server handed out on
/creds, refused once expired); the credential scope must name the endpoint's service and the
region; content-type, content-encoding (gzip) and, for logs, x-aws-log-group/x-aws-log-stream
must be present and signed; the body is decoded with the official OpenTelemetry protobuf
definitions and held to the published limits. A request holding a span of a chosen name is
answered 400 (as the real endpoint answers content it refuses). A failed check is answered 403/400/413 *and*
recorded as a violation. The test can queue answers (429 with Retry-After, 5xx, partial
success) and reads what arrived from GET /received.
"""

import argparse
import datetime
import gzip
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

# Published limits of the X-Ray OTLP endpoint, and CloudWatch Logs' request limits.
TRACES_MAX_BYTES = 5_000_000
TRACES_MAX_SPANS = 10_000
SPAN_MAX_BYTES = 200 * 1024
RESOURCE_SCOPE_MAX_BYTES = 16 * 1024
LOGS_MAX_BYTES = 1_048_576
LOGS_MAX_RECORDS = 10_000
MAX_AGE_NS = 14 * 24 * 3600 * 10**9
MAX_AHEAD_NS = 2 * 3600 * 10**9
CLOCK_SKEW_S = 300

SERVICE_OF_PATH = {"/v1/traces": "xray", "/v1/logs": "logs"}


class State:
    def __init__(self, region, static_keys, creds_lifetime):
        self.lock = threading.Lock()
        self.region = region
        # access key id -> (secret, session token or None, expiry epoch seconds or None)
        self.keys = {ak: (sk, None, None) for ak, sk in static_keys}
        self.creds_lifetime = creds_lifetime
        self.creds_issued = 0
        self.answers = []  # queued (status, retry_after) for the next valid requests
        self.partial = []  # queued rejected counts for the next accepted requests
        self.refuse_span_name = None  # requests holding a span of this name are answered 400
        self.requests = []  # one summary per OTLP request
        self.spans = []
        self.logs = []
        self.violations = []


def attrs(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = getattr(v, kind) if kind in ("string_value", "int_value", "double_value", "bool_value") else str(v)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State = None

    def log_message(self, fmt, *args):  # quiet; violations are recorded instead
        pass

    def reply(self, status, body=b"", content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        s = self.state
        if self.path == "/received":
            with s.lock:
                body = json.dumps(
                    {
                        "requests": s.requests,
                        "spans": s.spans,
                        "logs": s.logs,
                        "violations": s.violations,
                        "creds_issued": s.creds_issued,
                    }
                ).encode()
            return self.reply(200, body)
        if self.path == "/creds":
            # The ECS container credentials endpoint: a new key each time, valid briefly.
            with s.lock:
                s.creds_issued += 1
                ak = "ASIA" + secrets.token_hex(8).upper()
                sk = secrets.token_urlsafe(30)
                token = "token-" + secrets.token_urlsafe(20)
                expiry = time.time() + s.creds_lifetime
                s.keys[ak] = (sk, token, expiry)
            exp = datetime.datetime.fromtimestamp(expiry, datetime.timezone.utc)
            body = json.dumps(
                {
                    "AccessKeyId": ak,
                    "SecretAccessKey": sk,
                    "Token": token,
                    "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "RoleArn": "arn:aws:iam::123456789012:role/vigil-test",
                }
            ).encode()
            return self.reply(200, body)
        self.reply(404, b"{}")

    def read_body(self):
        n = int(self.headers.get("content-length", "0"))
        return self.rfile.read(n) if n else b""

    def do_POST(self):
        s = self.state
        raw = self.read_body()
        if self.path == "/control":
            c = json.loads(raw)
            with s.lock:
                s.answers.extend((a["status"], a.get("retry_after")) for a in c.get("answers", []))
                s.partial.extend(c.get("partial", []))
                s.refuse_span_name = c.get("refuse_span_name", s.refuse_span_name)
            return self.reply(200, b"{}")
        service = SERVICE_OF_PATH.get(self.path)
        if service is None:
            return self.reply(404, b"{}")
        problem = self.check_signature(service, raw)
        if problem:
            return self.refuse(403, problem, raw)
        problem = self.check_headers(service)
        if problem:
            return self.refuse(400, problem, raw)
        try:
            body = gzip.decompress(raw)
        except OSError as e:
            return self.refuse(400, f"body is not gzip: {e}", raw)
        limit = TRACES_MAX_BYTES if service == "xray" else LOGS_MAX_BYTES
        if len(body) > limit:
            return self.refuse(413, f"{len(body)} bytes uncompressed, over {limit}", raw)
        try:
            if service == "xray":
                msg = ExportTraceServiceRequest.FromString(body)
                items, problem = self.check_traces(msg)
            else:
                msg = ExportLogsServiceRequest.FromString(body)
                items, problem = self.check_logs(msg)
        except Exception as e:  # a body that does not decode is the client's fault
            return self.refuse(400, f"undecodable OTLP body: {e}", raw)
        if problem:
            return self.refuse(400, problem, raw)
        if service == "xray" and any(i["name"] == s.refuse_span_name for i in items):
            with s.lock:
                s.requests.append({"path": self.path, "status": 400, "access_key": self.access_key,
                                   "items": len(items), "wire_bytes": len(raw)})
            return self.reply(400, b'{"message":"span refused on request"}')
        with s.lock:
            answer = s.answers.pop(0) if s.answers else None
            rejected = s.partial.pop(0) if (answer is None and s.partial) else 0
            s.requests.append(
                {
                    "path": self.path,
                    "status": answer[0] if answer else 200,
                    "access_key": self.access_key,
                    "items": len(items),
                    "wire_bytes": len(raw),
                    "decoded_bytes": len(body),
                    "rejected": rejected,
                }
            )
            if answer is None:
                (s.spans if service == "xray" else s.logs).extend(items)
        if answer:
            status, retry_after = answer
            headers = [("retry-after", str(retry_after))] if retry_after is not None else []
            return self.reply(status, b'{"message":"try again"}', headers=headers)
        if service == "xray":
            resp = ExportTraceServiceResponse()
            if rejected:
                resp.partial_success.rejected_spans = rejected
                resp.partial_success.error_message = "rejected on request"
        else:
            resp = ExportLogsServiceResponse()
            if rejected:
                resp.partial_success.rejected_log_records = rejected
                resp.partial_success.error_message = "rejected on request"
        self.reply(200, resp.SerializeToString(), "application/x-protobuf")

    def refuse(self, status, problem, raw):
        with self.state.lock:
            self.state.violations.append(f"{self.path}: {problem}")
            self.state.requests.append({"path": self.path, "status": status, "wire_bytes": len(raw)})
        self.reply(status, json.dumps({"message": problem}).encode())

    def check_signature(self, service, raw):
        """None when the request carries a valid SigV4 signature, else what is wrong."""
        s = self.state
        self.access_key = None
        auth = self.headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "no SigV4 authorization header"
        try:
            parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
            ak, date, region, scope_service, term = parts["Credential"].split("/")
            signed = parts["SignedHeaders"].split(";")
            signature = parts["Signature"]
        except (KeyError, ValueError):
            return f"malformed authorization header: {auth!r}"
        self.access_key = ak
        if term != "aws4_request" or scope_service != service or region != s.region:
            return f"credential scope {region}/{scope_service}/{term} is not {s.region}/{service}/aws4_request"
        amz_date = self.headers.get("x-amz-date", "")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            return f"bad x-amz-date {amz_date!r}"
        if abs(time.time() - when.timestamp()) > CLOCK_SKEW_S or not amz_date.startswith(date):
            return f"x-amz-date {amz_date} is not now"
        with s.lock:
            known = s.keys.get(ak)
        if known is None:
            return f"unknown access key {ak}"
        secret, token, expiry = known
        if expiry is not None and time.time() > expiry:
            return f"ExpiredToken: access key {ak} expired"
        if token is not None and self.headers.get("x-amz-security-token") != token:
            return "x-amz-security-token missing or not the key's session token"
        for h in ["host", "x-amz-date", "content-type", "content-encoding"] + (
            ["x-amz-security-token"] if token else []
        ) + (["x-aws-log-group", "x-aws-log-stream"] if service == "logs" else []):
            if h not in signed:
                return f"header {h} is not signed (SignedHeaders={parts['SignedHeaders']})"
        content_sha = self.headers.get("x-amz-content-sha256")
        if content_sha and content_sha != hashlib.sha256(raw).hexdigest():
            return "x-amz-content-sha256 does not match the body"
        # Recompute the signature with botocore from exactly what arrived.
        headers = {h: self.headers.get(h, "") for h in signed}
        req = AWSRequest(method="POST", url=f"http://{headers.get('host', '')}{self.path}", data=raw, headers=headers)
        req.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(ak, secret, token), service, region)
        canonical = signer.canonical_request(req)
        expected = signer.signature(signer.string_to_sign(req, canonical), req)
        if not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch"
        return None

    def check_headers(self, service):
        if self.headers.get("content-type") != "application/x-protobuf":
            return f"content-type {self.headers.get('content-type')!r}"
        if self.headers.get("content-encoding") != "gzip":
            return f"content-encoding {self.headers.get('content-encoding')!r}"
        if service == "logs":
            for h in ("x-aws-log-group", "x-aws-log-stream"):
                if not self.headers.get(h):
                    return f"missing {h}"
        return None

    def check_traces(self, msg):
        now = time.time_ns()
        items = []
        for rs in msg.resource_spans:
            res = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                size = rs.resource.ByteSize() + ss.scope.ByteSize()
                if size > RESOURCE_SCOPE_MAX_BYTES:
                    return items, f"resource+scope of {size} bytes, over {RESOURCE_SCOPE_MAX_BYTES}"
                for sp in ss.spans:
                    if sp.ByteSize() > SPAN_MAX_BYTES:
                        return items, f"span of {sp.ByteSize()} bytes, over {SPAN_MAX_BYTES}"
                    if sp.start_time_unix_nano < now - MAX_AGE_NS or sp.end_time_unix_nano > now + MAX_AHEAD_NS:
                        return items, "span time outside 14 days back / 2 hours ahead"
                    items.append(
                        {
                            "trace_id": sp.trace_id.hex(),
                            "span_id": sp.span_id.hex(),
                            "parent_span_id": sp.parent_span_id.hex(),
                            "name": sp.name,
                            "error": sp.status.code == 2,
                            "duration_ms": (sp.end_time_unix_nano - sp.start_time_unix_nano) / 1e6,
                            "resource": res,
                        }
                    )
        if len(items) > TRACES_MAX_SPANS:
            return items, f"{len(items)} spans, over {TRACES_MAX_SPANS}"
        return items, None

    def check_logs(self, msg):
        items = []
        for rl in msg.resource_logs:
            res = attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    items.append(
                        {
                            "body": lr.body.string_value,
                            "trace_id": lr.trace_id.hex(),
                            "severity": lr.severity_text,
                            "group": self.headers.get("x-aws-log-group"),
                            "stream": self.headers.get("x-aws-log-stream"),
                            "resource": res,
                        }
                    )
        if len(items) > LOGS_MAX_RECORDS:
            return items, f"{len(items)} log records, over {LOGS_MAX_RECORDS}"
        return items, None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--static-key", action="append", default=[], help="ACCESS_KEY:SECRET")
    p.add_argument("--creds-lifetime", type=float, default=3600.0)
    a = p.parse_args()
    Handler.state = State(a.region, [k.split(":", 1) for k in a.static_key], a.creds_lifetime)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
