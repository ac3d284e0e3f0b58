"""OpenTelemetry spans of each request, when an exporter is configured.

Off unless ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP over HTTP; the SDK's other
``OTEL_*`` variables apply, e.g. ``OTEL_SERVICE_NAME``): then the process
that makes a request's row also sends its spans, one for the request and
one per stage visit, made from the row's own spans after the fact. So a
stage is timed wherever it ran (in a pipeline, handed over in memory), no
context is carried from stage to stage, and the request path does nothing
more than it does for the row. A request that came with a valid
``traceparent`` is a child of the caller's span, in the caller's trace.
"""

from __future__ import annotations

import os
from typing import Any

from schemas.events import RequestEvent

_tracer: Any = None
_provider: Any = None


def endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")


def setup(process_name: str) -> bool:
    """Start exporting if an endpoint is configured; True if it is."""
    global _tracer, _provider
    if not endpoint() or _tracer is not None:
        return _tracer is not None
    try:  # the `otel` extra: most gateways export no spans and need not install the SDK
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            f"an OTLP endpoint is set ({endpoint()[:200]}) but OpenTelemetry's SDK is not installed "
            f"({exc.name}): pip install 'sluice[otel]', or unset OTEL_EXPORTER_OTLP_ENDPOINT"
        ) from None

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "sluice"), "service.instance.id": process_name}
    )
    _provider = TracerProvider(resource=resource)
    # Batched, from the SDK's own thread: the event loop never waits on the collector.
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = _provider.get_tracer("sluice")
    return True


def request_ended(row: RequestEvent, parent_span_id: str = "") -> None:
    """The request's spans, if tracing is on. ``parent_span_id`` is the
    caller's span (from its ``traceparent``), with ``row.trace_id``."""
    if _tracer is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    context = None
    if row.trace_id and parent_span_id:
        try:  # policy set both from a valid header; anything else starts a trace of its own
            ids = int(row.trace_id, 16), int(parent_span_id, 16)
        except ValueError:
            ids = None
        if ids is not None:
            caller = SpanContext(*ids, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            context = trace.set_span_in_context(NonRecordingSpan(caller))
    attributes = {
        "sluice.request_id": row.request_id,
        "sluice.api": row.api,
        "sluice.origin": row.origin,
        "sluice.tenant_id": row.tenant_id,
        "sluice.key_id": row.key_id,
        "sluice.deployment": row.deployment,
        "sluice.cost_pico_usd": row.cost_pico_usd,
        "gen_ai.request.model": row.model,
        "gen_ai.system": row.provider,
        "gen_ai.usage.input_tokens": row.prompt_tokens,
        "gen_ai.usage.output_tokens": row.completion_tokens,
        "http.response.status_code": row.status,
    }
    end_ns = row.received_at_ns + row.latency_ns
    span = _tracer.start_span(
        f"{row.api or 'request'} {row.model}".strip(),
        context=context,
        kind=SpanKind.SERVER,
        start_time=row.received_at_ns,
        attributes=attributes,
    )
    if row.status >= 400:
        span.set_status(Status(StatusCode.ERROR, f"{row.error_type}: {row.error_code}"))
    inside = trace.set_span_in_context(span)
    for visit in row.spans:
        _tracer.start_span(visit.stage, context=inside, start_time=visit.start_ns).end(end_time=visit.end_ns)
    span.end(end_time=max(end_ns, row.received_at_ns))


def shutdown() -> None:
    """Send what is batched (a stopping process)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None
