"""With an OTLP exporter configured, each request's spans reach the
collector: one for the request, a child of the caller's span when it sent a
``traceparent``, and one per stage visit inside it. The collector here is a
real OTLP/HTTP endpoint (protobuf), on loopback."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.stack import DEMO_KEY, Stack

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Collector:
    """Keeps every span posted to /v1/traces, as (resource attributes, span)."""

    def __init__(self) -> None:
        self.spans: list = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        for scope in resource_spans.scope_spans:
                            collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def of_request(self, request_id: str, timeout: float = 20.0) -> tuple[object, list]:
        """The request's span (by its sluice.request_id), and its children."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            tops = [s for s in spans if _attrs(s).get("sluice.request_id") == request_id]
            if tops:
                top = tops[0]
                children = [s for s in spans if s.parent_span_id == top.span_id and s.trace_id == top.trace_id]
                if children:
                    return top, children
            assert time.monotonic() < deadline, f"no spans for {request_id}"
            time.sleep(0.1)


def _attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = value.string_value if value.HasField("string_value") else value.int_value
    return out


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Collector]]:
    collector = Collector()
    saved = {k: os.environ.get(k) for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_BSP_SCHEDULE_DELAY")}
    # The supervisor passes its environment on to every process.
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.url
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    try:
        s = Stack(Path(tmp_path_factory.mktemp("otel"))).start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield s, collector
    s.stop()
    collector.server.shutdown()
    collector.server.server_close()


@pytest.mark.parametrize("stream", [False, True])
def test_a_traced_request_is_a_child_of_the_callers_span(traced: tuple[Stack, Collector], stream: bool) -> None:
    stack, collector = traced
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="demo-model",
            messages=[{"role": "user", "content": "traced"}],
            stream=stream,
            extra_headers={"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"},
        )
        request_id = raw.headers["x-request-id"]
        if stream:
            list(raw.parse())
    top, children = collector.of_request(request_id)
    assert top.trace_id.hex() == TRACE and top.parent_span_id.hex() == CALLER_SPAN
    attrs = _attrs(top)
    assert attrs["gen_ai.request.model"] == "demo-model" and attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.usage.output_tokens"] > 0
    stages = [c.name for c in sorted(children, key=lambda c: c.start_time_unix_nano)]
    assert stages[0] == "ingress" and {"policy", "route", "provider"} <= set(stages)
    for child in children:  # each visit inside the request's own time
        assert top.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano
        assert child.end_time_unix_nano <= top.end_time_unix_nano


def test_a_request_without_a_traceparent_starts_its_own_trace(traced: tuple[Stack, Collector]) -> None:
    stack, collector = traced
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="demo-model", messages=[{"role": "user", "content": "untraced"}]
        )
    top, _ = collector.of_request(raw.headers["x-request-id"])
    assert top.parent_span_id == b"" and top.trace_id.hex() != TRACE
