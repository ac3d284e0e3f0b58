"""The one wide ``requests`` row per finished request, and where its time went.

Whoever ends a request builds it: the stage that sends its last reply
(``StageContext.finish``), whichever door the request came in by; the ingress
only for a request that ended without one (refused before it reached the bus,
or its deadline passed or the process holding it died first).
"""

from __future__ import annotations

from schemas.envelope import PromptRef, Span
from schemas.events import RequestEvent
from schemas.ids import new_id
from schemas.replies import Failure, Final, Timing

_STAGE_FIELDS = {
    "ingress": "ingress_ns",
    "policy": "policy_ns",
    "redact": "redact_ns",
    "route": "route_ns",
    "cache": "cache_ns",
    "provider": "provider_ns",
}


def time_split(timing: Timing, extra_spans: list[Span], latency_ns: int) -> dict[str, int]:
    """Stage time, upstream time, and the rest (time on the bus)."""
    out = dict.fromkeys(_STAGE_FIELDS.values(), 0)
    held = 0
    for span in (*timing.spans, *extra_spans):
        field = _STAGE_FIELDS.get(span.stage)
        if not field:
            continue  # a part of a stage's time told apart (the guardrail's moderation): inside that stage's span
        d = max(0, span.end_ns - span.start_ns)
        held += d
        out[field] += d
    upstream_ttfb = upstream_stream = 0
    if timing.upstream_start_ns:
        end = timing.upstream_end_ns or timing.upstream_first_byte_ns
        first = timing.upstream_first_byte_ns or end
        upstream_ttfb = max(0, first - timing.upstream_start_ns)
        upstream_stream = max(0, end - first)
        # The provider's span includes its wait on the upstream; report that apart.
        out["provider_ns"] = max(0, out["provider_ns"] - upstream_ttfb - upstream_stream)
    out["upstream_ttfb_ns"] = upstream_ttfb
    out["upstream_stream_ns"] = upstream_stream
    out["bus_ns"] = max(0, latency_ns - held)
    return out


def request_event(
    *,
    request_id: str,
    received_at_ns: int,
    origin: str,
    api: str,
    model: str,
    stream: bool,
    done_ns: int,
    reply: Final | Failure,
    ttft_ns: int = 0,
    extra_spans: list[Span] | None = None,
    client_disconnected: bool = False,
    status: int | None = None,
    prompt: PromptRef | None = None,
    trace_id: str = "",
    dropped: list[str] | None = None,
    batch_id: str = "",
) -> RequestEvent:
    latency = max(0, done_ns - received_at_ns)
    split = time_split(reply.timing, extra_spans or [], latency)
    event = RequestEvent(
        event_id=new_id(),
        request_id=request_id,
        received_at_ns=received_at_ns,
        origin=origin,
        api=api,
        model=model,
        stream=stream,
        tenant_id=reply.tenant_id,
        key_id=reply.key_id,
        deployment=reply.deployment,
        provider=reply.provider,
        model_group=reply.model_group,
        arm=reply.arm,
        attempts=reply.attempts,
        latency_ns=latency,
        ttft_ns=ttft_ns or latency,
        client_disconnected=client_disconnected,
        status=200,
        spans=[*reply.timing.spans, *(extra_spans or [])],
        trace_id=trace_id,
        dropped=dropped or [],
        batch_id=batch_id,
        **split,
    )
    if reply.usage is not None:
        event.prompt_tokens = reply.usage.prompt_tokens
        event.completion_tokens = reply.usage.completion_tokens
        event.cached_tokens = reply.usage.cached_tokens
        event.cache_write_tokens = reply.usage.cache_write_tokens
        event.reasoning_tokens = reply.usage.reasoning_tokens
        event.usage_source = reply.usage.source
        # Images made, ms of audio heard, characters spoken, search units.
        event.units, event.unit = reply.usage.units, reply.usage.unit
    if reply.cost is not None:
        # The total includes the units' part (``Cost.total``), so every sum of cost counts them.
        event.cost_pico_usd = reply.cost.total
        event.cost_input_pico_usd = reply.cost.input
        event.cost_cached_input_pico_usd = reply.cost.cached_input
        event.cost_output_pico_usd = reply.cost.output
        event.cost_units_pico_usd = reply.cost.units
    if isinstance(reply, Final) and reply.cache == "hit":
        event.cache_hit = True
        event.cost_saved_pico_usd = reply.cost_saved_pico_usd
    if isinstance(reply, Failure):
        event.status = reply.status
        event.error_type = reply.type
        event.error_code = reply.code
    if status is not None:
        event.status = status
    if prompt is not None:
        event.prompt_name, event.prompt_version = prompt.name, prompt.version
        event.prompt_label, event.parent_id = prompt.label, prompt.parent_id
    return event
