"""An application instrumented with the official OpenTelemetry Python SDK, default settings
(random W3C trace ids), sending checkout traces and logs over OTLP/HTTP to an agent.

Usage: otel_checkout.py ENDPOINT TRACES OUT.json
Each trace is a server span `POST /checkout` with two client children; every 10th fails
(status ERROR, and an error log inside the span), every 7th is slow (2.5 s, timestamps set
explicitly so the run stays fast). Writes what it sent to OUT.json.
"""

import json
import logging
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def main():
    endpoint, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    resource = Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")))
    set_logger_provider(logger_provider)
    log = logging.getLogger("checkout")
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    log.propagate = False

    tracer = trace.get_tracer("shop.checkout", "1.0.0")
    sent = []
    for i in range(n):
        error, slow = i % 10 == 3, i % 7 == 5
        start = time.time_ns() - 3_000_000_000
        duration = 2_500_000_000 if slow else 40_000_000
        root = tracer.start_span("POST /checkout", kind=SpanKind.SERVER, start_time=start,
                                 attributes={"http.request.method": "POST", "http.route": "/checkout",
                                             "http.response.status_code": 500 if error else 200})
        ctx = trace.set_span_in_context(root)
        for j, name in enumerate(["SELECT cart", "POST /payments/charge"]):
            child = tracer.start_span(name, kind=SpanKind.CLIENT, context=ctx, start_time=start + (j + 1) * 1_000_000)
            child.end(end_time=start + (j + 2) * 1_000_000)
        if error:
            root.set_status(Status(StatusCode.ERROR, "payment declined"))
            with trace.use_span(root, end_on_exit=False):
                log.error("checkout %d failed: payment declined", i)
        root.end(end_time=start + duration)
        sent.append({"trace_id": format(root.get_span_context().trace_id, "032x"),
                     "error": error, "slow": slow, "spans": 3})
    tracer_provider.force_flush()
    logger_provider.force_flush()
    tracer_provider.shutdown()
    logger_provider.shutdown()
    with open(out, "w") as f:
        json.dump(sent, f)


if __name__ == "__main__":
    main()
