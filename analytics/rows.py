"""Events -> ClickHouse rows, column order matching the migrations."""

from __future__ import annotations

import msgspec

from schemas.events import AlertEvent, AttemptEvent, Event, RequestEvent, StageEvent

_json = msgspec.json.Encoder()

EVENT_COLUMNS = ["event_id", "kind", "request_id", "ts", "stage", "body"]
REQUEST_COLUMNS = [
    "request_id",
    "ts",
    "origin",
    "api",
    "tenant_id",
    "key_id",
    "model",
    "deployment",
    "provider",
    "stream",
    "status",
    "error_type",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_source",
    "cost_pico_usd",
    "cost_input_pico_usd",
    "cost_cached_input_pico_usd",
    "cost_output_pico_usd",
    "latency_ns",
    "ttft_ns",
    "ingress_ns",
    "policy_ns",
    "redact_ns",
    "route_ns",
    "provider_ns",
    "bus_ns",
    "upstream_ttfb_ns",
    "upstream_stream_ns",
    "client_disconnected",
]
ATTEMPT_COLUMNS = [
    "event_id",
    "request_id",
    "ts",
    "deployment",
    "provider",
    "upstream_model",
    "status",
    "stream",
    "error_code",
    "ttfb_ns",
    "duration_ns",
]


class Rows(msgspec.Struct):
    events: list[list] = []
    requests: list[list] = []
    attempts: list[list] = []

    def __len__(self) -> int:
        return len(self.events)


def _event_row(e: Event) -> list:
    match e:
        case RequestEvent():
            return [e.event_id, "request", e.request_id, e.received_at_ns, "", _json.encode(e).decode()]
        case AttemptEvent():
            return [e.event_id, "attempt", e.request_id, e.started_at_ns, "provider", _json.encode(e).decode()]
        case StageEvent():
            return [e.event_id, "stage", e.request_id, e.started_at_ns, e.stage, _json.encode(e).decode()]
        case AlertEvent():
            return [e.event_id, "alert", e.request_id, e.at_ns, "provider", _json.encode(e).decode()]
    raise TypeError(f"unknown event {type(e).__name__}")


def _request_row(e: RequestEvent) -> list:
    return [
        e.request_id,
        e.received_at_ns,
        e.origin,
        e.api,
        e.tenant_id,
        e.key_id,
        e.model,
        e.deployment,
        e.provider,
        e.stream,
        e.status,
        e.error_type,
        e.error_code,
        e.prompt_tokens,
        e.completion_tokens,
        e.cached_tokens,
        e.cache_write_tokens,
        e.reasoning_tokens,
        e.usage_source or "",
        e.cost_pico_usd,
        e.cost_input_pico_usd,
        e.cost_cached_input_pico_usd,
        e.cost_output_pico_usd,
        e.latency_ns,
        e.ttft_ns,
        e.ingress_ns,
        e.policy_ns,
        e.redact_ns,
        e.route_ns,
        e.provider_ns,
        e.bus_ns,
        e.upstream_ttfb_ns,
        e.upstream_stream_ns,
        e.client_disconnected,
    ]


def _attempt_row(e: AttemptEvent) -> list:
    return [
        e.event_id,
        e.request_id,
        e.started_at_ns,
        e.deployment,
        e.provider,
        e.upstream_model,
        e.status,
        e.stream,
        e.error_code,
        e.ttfb_ns,
        e.duration_ns,
    ]


def to_rows(events: list[Event]) -> Rows:
    rows = Rows()
    for e in events:
        rows.events.append(_event_row(e))
        if isinstance(e, RequestEvent):
            rows.requests.append(_request_row(e))
        elif isinstance(e, AttemptEvent):
            rows.attempts.append(_attempt_row(e))
    return rows
