"""Analytics events. Stages publish them in batches to JetStream; the sink
writes each to ClickHouse (``events`` raw, plus ``requests``/``attempts``).

Durations are integer nanoseconds; money is integer pico-USD (see
``services.pricing``), so nothing on the way to ClickHouse is a float.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import BusMessage
from schemas.chat import UsageSource
from schemas.envelope import Span, StageName
from schemas.mcp import McpCall
from schemas.replies import Failure, Final
from schemas.rest import RestCall


class RequestEvent(BusMessage, tag="event.request"):
    """One per finished request (success or not): the wide ``requests`` row."""

    event_id: str
    request_id: str
    received_at_ns: int
    origin: str
    api: str
    model: str
    status: int
    stream: bool = False
    tenant_id: str = ""
    key_id: str = ""
    deployment: str = ""
    provider: str = ""
    # The model group that served it (after aliases), its A/B arm if the
    # group splits, and how many upstream tries it took.
    model_group: str = ""
    arm: str = ""
    attempts: int = 0
    error_type: str = ""
    error_code: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_source: UsageSource | None = None
    # The total, and its split: uncached input (cache writes included), cached input, output.
    cost_pico_usd: int = 0
    cost_input_pico_usd: int = 0
    cost_cached_input_pico_usd: int = 0
    cost_output_pico_usd: int = 0
    latency_ns: int = 0
    ttft_ns: int = 0
    ingress_ns: int = 0
    policy_ns: int = 0
    redact_ns: int = 0
    route_ns: int = 0
    cache_ns: int = 0
    provider_ns: int = 0
    bus_ns: int = 0
    upstream_ttfb_ns: int = 0
    upstream_stream_ns: int = 0
    client_disconnected: bool = False
    # Answered from the response cache: no upstream call, and what the call
    # would have cost at catalog prices.
    cache_hit: bool = False
    cost_saved_pico_usd: int = 0
    # Made by a prompt API: the prompt, its version and label, and the API
    # call (its ``api_calls`` row) this request is a step of.
    prompt_name: str = ""
    prompt_version: int = 0
    prompt_label: str = ""
    parent_id: str = ""
    # The caller's W3C trace id, when it sent a valid traceparent.
    trace_id: str = ""
    # What the answering deployment never got of the request (its family
    # cannot take it): e.g. "context_management", "tools:web_search".
    dropped: list[str] = []
    # An MCP call (``api`` "mcp"): the server, the upstream's own tool or
    # prompt name (or the resource's URI), the method, the sizes in bytes of
    # the arguments (as the stage that ended the call held them: masked after
    # redaction) and of the result JSON; ``tool_error`` when the tool answered
    # ``isError: true`` (a 200: the call worked, the tool said it failed).
    # Its row is also a ``tool_calls`` row (migration 019).
    mcp_server: str = ""
    mcp_tool: str = ""
    mcp_method: str = ""
    request_bytes: int = 0
    response_bytes: int = 0
    tool_error: bool = False
    # A REST call (``api`` "rest"): the service's slug and version, the
    # method, and the OpenAPI route template it matched (``/users/{id}``);
    # ``request_bytes``/``response_bytes`` are its body sizes (migration 020).
    rest_service: str = ""
    rest_version: int = 0
    http_method: str = ""
    route: str = ""
    # A request priced per unit (images, audio, characters, search units:
    # ``Usage.units``/``unit``) and that part of its cost; the batch it is
    # a line of, if any (migration 021).
    units: int = 0
    unit: str = ""
    cost_units_pico_usd: int = 0
    batch_id: str = ""
    # Each stage's visit in order, the ingress's too (the request view's
    # "stages"); kept in the ``events`` row, not as columns.
    spans: list[Span] = []


def add_tool_call(event: RequestEvent, call: McpCall, reply: Final | Failure) -> None:
    """Put what the row of an MCP call needs on its request event."""
    event.mcp_server, event.mcp_tool, event.mcp_method = call.server, call.name, call.method
    event.request_bytes = len(call.arguments)
    if isinstance(reply, Final):
        event.response_bytes = len(reply.tool_result)
        event.tool_error = reply.finish_reason == "is_error"


def add_rest_call(event: RequestEvent, call: RestCall, reply: Final | Failure) -> None:
    """Put what the row of a REST call needs on its request event: the
    service, method and route template, the body sizes, and the upstream's
    own status (a 404 the service answered is a 404 row, not a 200)."""
    event.rest_service, event.rest_version = call.service, call.version
    event.http_method, event.route = call.method, call.route
    event.request_bytes = len(call.body)
    if reply.rest is None:
        return
    event.response_bytes = reply.rest.response_bytes
    # A failure keeps its own status (the row says how the call ended); an
    # answer's row has the upstream's.
    if isinstance(reply, Final) and reply.rest.status:
        event.status = reply.rest.status


class ApiCallEvent(BusMessage, tag="event.api_call"):
    """One per prompt-API call: the parent of the requests its steps (and
    repair retries) made, with their totals. Its cost is theirs summed, so
    spend is counted from ``requests`` alone."""

    event_id: str
    request_id: str
    received_at_ns: int
    slug: str
    prompt_name: str
    prompt_version: int
    prompt_label: str
    origin: str
    status: int
    stream: bool = False
    tenant_id: str = ""
    key_id: str = ""
    error_type: str = ""
    error_code: str = ""
    # Requests made (steps plus repairs), and answers that did not match the output schema.
    calls: int = 0
    schema_failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_pico_usd: int = 0
    latency_ns: int = 0
    ttft_ns: int = 0


class AttemptEvent(BusMessage, tag="event.attempt"):
    """One per upstream try."""

    event_id: str
    request_id: str
    started_at_ns: int
    deployment: str
    provider: str
    upstream_model: str
    status: int
    stream: bool = False
    error_code: str = ""
    ttfb_ns: int = 0
    duration_ns: int = 0
    # 1 for the request's first try, then 2, 3, ...
    number: int = 0
    error_message: str = ""


class StageEvent(BusMessage, tag="event.stage"):
    """One per stage visit: who held the request, for how long, and how it
    left. No longer sent (the visits ride on the request's own event, its
    ``spans``); still stored, from streams and tables written before."""

    event_id: str
    request_id: str
    stage: StageName
    started_at_ns: int
    duration_ns: int
    # "forward" (next hop), "reply" (answered), "failure" (ended with an error)
    outcome: Literal["forward", "reply", "failure"]


class AlertEvent(BusMessage, tag="event.alert"):
    """Something an operator should look at, e.g. a priced model that cost nothing."""

    event_id: str
    request_id: str
    at_ns: int
    alert: str
    model: str = ""
    deployment: str = ""
    detail: str = ""


class AuditEvent(BusMessage, tag="event.audit"):
    """One change to a control-plane record: who, what, before and after (as
    JSON, secrets removed)."""

    event_id: str
    at_ns: int
    # The admin key's id, or "config" for a seed from the config file.
    actor: str
    # create, update, delete, approve, reject, revoke, rotate, disable
    action: str
    # The bucket's record kind (key, tenant, subscription, model, approval_rule) and id.
    record_type: str
    record_id: str
    tenant_id: str = ""
    before: str = ""
    after: str = ""


class CallLogEvent(BusMessage, tag="event.call_log"):
    """A call's request and answer bodies, for tenants that opt in: as the
    upstream saw them (after redaction), each cut at the tenant's cap."""

    event_id: str
    request_id: str
    at_ns: int
    tenant_id: str
    key_id: str
    model: str
    status: int
    # JSON. A cut body ends with a marker saying how much was left out.
    request_body: str
    response_body: str
    # Each body's whole size in bytes, before any cut.
    request_bytes: int = 0
    response_bytes: int = 0


class AlertStateEvent(BusMessage, tag="event.alert_state"):
    """An alert rule's alert firing or resolving: a row of ``alert_events``,
    and what its webhooks are sent (once each)."""

    alert_id: str
    state: Literal["firing", "resolved"]
    rule: str
    # The rule's kind (error_rate, budget, ...).
    rule_kind: str
    # What it is about: a model, a deployment, a key or a budget.
    subject: str
    at_ns: int
    fired_at_ns: int
    value: float
    threshold: float
    tenant_id: str = ""
    detail: str = ""


class Detection(msgspec.Struct, array_like=True, frozen=True):
    """One detection: which detector, what was done, and where (the text,
    "messages[2].content" or "choices[0].content", and the span in it). Never
    the value."""

    detector: str
    action: str
    where: str
    start: int
    end: int


class DetectionEvent(BusMessage, tag="event.detection"):
    """What a privacy check found in one request (or its answer): one event
    for all of it, one ClickHouse row per detection. A dense prompt holds
    hundreds, and an event per detection cost more than the scan."""

    event_id: str
    request_id: str
    at_ns: int
    tenant_id: str
    found: list[Detection]
    rules_version: int = 0


Event = (
    RequestEvent
    | AttemptEvent
    | StageEvent
    | AlertEvent
    | AuditEvent
    | ApiCallEvent
    | CallLogEvent
    | AlertStateEvent
    | DetectionEvent
)


class DeadLetter(BusMessage, tag="event.dead_letter"):
    """An event (or a whole batch) the sink could not decode or store, kept
    with the reason so one bad message never blocks the stream behind it."""

    id: str
    at_ns: int
    # The JetStream subject the message came in on.
    subject: str
    reason: str
    # The event as JSON when it decoded, else the raw message bytes.
    payload: bytes
    request_id: str = ""


class EventBatch(BusMessage, tag="event.batch"):
    """One JetStream message; ``id`` is its Nats-Msg-Id for publish dedupe."""

    id: str
    events: list[Event]
