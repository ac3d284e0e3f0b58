"""Events -> ClickHouse rows, column order matching the migrations."""

from __future__ import annotations

import base64
import operator
from collections.abc import Sequence

import msgspec

from schemas.events import (
    AlertEvent,
    AlertStateEvent,
    ApiCallEvent,
    AttemptEvent,
    AuditEvent,
    CallLogEvent,
    DeadLetter,
    DetectionEvent,
    Event,
    RequestEvent,
    StageEvent,
)

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
    "model_group",
    "deployment",
    "provider",
    "arm",
    "attempts",
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
    "cache_ns",
    "provider_ns",
    "bus_ns",
    "upstream_ttfb_ns",
    "upstream_stream_ns",
    "client_disconnected",
    "cache_hit",
    "cost_saved_pico_usd",
    "prompt_name",
    "prompt_version",
    "prompt_label",
    "parent_id",
    "trace_id",
    "dropped",
    "mcp_server",
    "mcp_tool",
    "mcp_method",
    "request_bytes",
    "response_bytes",
    "tool_error",
    "rest_service",
    "rest_version",
    "http_method",
    "route",
    "units",
    "unit",
    "cost_units_pico_usd",
    "batch_id",
]
# The event field each requests column is filled from: its own name, but for these.
_REQUEST_SOURCES = {"ts": "received_at_ns"}
_request_values = operator.attrgetter(*(_REQUEST_SOURCES.get(c, c) for c in REQUEST_COLUMNS))
_USAGE_SOURCE = REQUEST_COLUMNS.index("usage_source")
API_CALL_COLUMNS = [
    "request_id",
    "ts",
    "slug",
    "prompt_name",
    "prompt_version",
    "prompt_label",
    "origin",
    "tenant_id",
    "key_id",
    "stream",
    "status",
    "error_type",
    "error_code",
    "calls",
    "schema_failures",
    "prompt_tokens",
    "completion_tokens",
    "cost_pico_usd",
    "latency_ns",
    "ttft_ns",
]
ATTEMPT_COLUMNS = [
    "event_id",
    "request_id",
    "number",
    "ts",
    "deployment",
    "provider",
    "upstream_model",
    "status",
    "stream",
    "error_code",
    "error_message",
    "ttfb_ns",
    "duration_ns",
]
ALERT_STATE_COLUMNS = [
    "alert_id",
    "ts",
    "state",
    "rule",
    "kind",
    "subject",
    "tenant_id",
    "value",
    "threshold",
    "detail",
]
DETECTION_COLUMNS = [
    "event_id",
    "request_id",
    "ts",
    "tenant_id",
    "detector",
    "action",
    "location",
    "start",
    "end",
    "rules_version",
]
CALL_LOG_COLUMNS = [
    "request_id",
    "ts",
    "tenant_id",
    "key_id",
    "model",
    "status",
    "request_body",
    "response_body",
    "request_bytes",
    "response_bytes",
]

DEAD_LETTER_COLUMNS = ["id", "ts", "subject", "request_id", "reason", "payload"]
AUDIT_COLUMNS = ["event_id", "ts", "actor", "action", "record_type", "record_id", "tenant_id", "before", "after"]

# What ClickHouse can hold in the columns events fill: a value outside these
# makes the whole insert fail, so it is caught per event before the insert.
_TS = (0, 2**63 - 1)  # DateTime64(9): nanoseconds in an Int64
_U16 = (0, 2**16 - 1)
_U32 = (0, 2**32 - 1)
_U64 = (0, 2**64 - 1)
_TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")
_REQUEST_U64 = tuple(c for c in REQUEST_COLUMNS if c.endswith(("_ns", "_usd", "_bytes")))
_LIMITS: dict[type, tuple[tuple[str, tuple[int, int]], ...]] = {
    RequestEvent: (
        ("received_at_ns", _TS),
        ("status", _U16),
        ("attempts", (0, 255)),
        ("prompt_version", _U32),
        ("rest_version", _U32),
        ("units", _U64),
        *((name, _U32) for name in _TOKENS),
        *((name, _U64) for name in _REQUEST_U64),
    ),
    ApiCallEvent: (
        ("received_at_ns", _TS),
        ("status", _U16),
        ("prompt_version", _U32),
        ("calls", (0, 255)),
        ("schema_failures", (0, 255)),
        ("prompt_tokens", _U32),
        ("completion_tokens", _U32),
        ("cost_pico_usd", _U64),
        ("latency_ns", _U64),
        ("ttft_ns", _U64),
    ),
    AttemptEvent: (
        ("started_at_ns", _TS),
        ("status", _U16),
        ("number", (0, 255)),
        ("ttfb_ns", _U64),
        ("duration_ns", _U64),
    ),
    StageEvent: (("started_at_ns", _TS),),
    AlertEvent: (("at_ns", _TS),),
    AlertStateEvent: (("at_ns", _TS), ("fired_at_ns", _TS)),
    DetectionEvent: (("at_ns", _TS), ("rules_version", _U32)),
    CallLogEvent: (("at_ns", _TS), ("status", _U16), ("request_bytes", _U32), ("response_bytes", _U32)),
    AuditEvent: (("at_ns", _TS),),
}


def problem(e: Event) -> str | None:
    """Why ``e`` cannot be stored, or None when it can."""
    for name, (low, high) in _LIMITS[type(e)]:
        value = getattr(e, name)
        if not low <= value <= high:
            return f"{type(e).__name__}.{name} = {value} is outside [{low}, {high}]"
    if isinstance(e, DetectionEvent):
        low, high = _U32
        for d in e.found:
            if not (low <= d.start <= high and low <= d.end <= high):
                return f"DetectionEvent span {d.start}..{d.end} is outside [{low}, {high}]"
    return None


def dead_letter_row(d: DeadLetter) -> list:
    try:
        payload = d.payload.decode()
    except UnicodeDecodeError:  # an undecodable msgpack batch: kept whole, readable as text
        payload = "base64:" + base64.b64encode(d.payload).decode()
    return [d.id, d.at_ns, d.subject, d.request_id, d.reason, payload]


class Rows(msgspec.Struct):
    events: list[list] = []
    requests: list[list] = []
    attempts: list[list] = []
    dead_letters: list[list] = []
    audit: list[list] = []
    api_calls: list[list] = []
    call_logs: list[list] = []
    alert_states: list[list] = []
    detections: list[list] = []

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
        case AuditEvent():
            return [e.event_id, "audit", "", e.at_ns, "control", _json.encode(e).decode()]
        case ApiCallEvent():
            return [e.event_id, "api_call", e.request_id, e.received_at_ns, "ingress", _json.encode(e).decode()]
    raise TypeError(f"unknown event {type(e).__name__}")


def _request_row(e: RequestEvent) -> list:
    """The event's fields in the columns' order: derived from
    ``REQUEST_COLUMNS``, so a column added there cannot go unfilled."""
    row = list(_request_values(e))
    row[_USAGE_SOURCE] = row[_USAGE_SOURCE] or ""  # None: no usage was settled
    return row


def _attempt_row(e: AttemptEvent) -> list:
    return [
        e.event_id,
        e.request_id,
        e.number,
        e.started_at_ns,
        e.deployment,
        e.provider,
        e.upstream_model,
        e.status,
        e.stream,
        e.error_code,
        e.error_message,
        e.ttfb_ns,
        e.duration_ns,
    ]


def to_rows(events: Sequence[Event], dead_letters: Sequence[DeadLetter] = ()) -> Rows:
    rows = Rows(dead_letters=[dead_letter_row(d) for d in dead_letters])
    for e in events:
        if isinstance(e, CallLogEvent):
            # Bodies go to their own table alone, kept for their own time (not in raw events).
            rows.call_logs.append([getattr(e, c) if c != "ts" else e.at_ns for c in CALL_LOG_COLUMNS])
            continue
        if isinstance(e, DetectionEvent):
            # Row ids derive from the event's, so a redelivered event replaces its rows.
            rows.detections += [
                [f"{e.event_id}.{i}", e.request_id, e.at_ns, e.tenant_id, d.detector, d.action, d.where, d.start,
                 d.end, e.rules_version]
                for i, d in enumerate(e.found)
            ]  # fmt: skip
            continue
        if isinstance(e, AlertStateEvent):
            rows.alert_states.append(
                [
                    e.alert_id,
                    e.at_ns,
                    e.state,
                    e.rule,
                    e.rule_kind,
                    e.subject,
                    e.tenant_id,
                    e.value,
                    e.threshold,
                    e.detail,
                ]
            )
            continue
        rows.events.append(_event_row(e))
        if isinstance(e, RequestEvent):
            rows.requests.append(_request_row(e))
        elif isinstance(e, AttemptEvent):
            rows.attempts.append(_attempt_row(e))
        elif isinstance(e, AuditEvent):
            rows.audit.append(
                [e.event_id, e.at_ns, e.actor, e.action, e.record_type, e.record_id, e.tenant_id, e.before, e.after]
            )
        elif isinstance(e, ApiCallEvent):
            rows.api_calls.append([getattr(e, c) if c != "ts" else e.received_at_ns for c in API_CALL_COLUMNS])
    return rows
