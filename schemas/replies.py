"""What stages send to a request's reply subject: a tagged union.

A streamed answer is ``Chunk`` messages then one ``Final``; every reply has
a sequence number so the receiver can tell a gap. ``Failure`` may come at any
point and ends the request.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import BusMessage
from schemas.chat import Choice, Cost, Delta, Message, Usage
from schemas.envelope import Span
from schemas.errors import GatewayError
from schemas.reservation import RateState, Reservation
from schemas.rest import RestHead, RestResult
from schemas.tasks import TaskResult


class Timing(msgspec.Struct, omit_defaults=True):
    """Where the time went, filled in by the stages the request visited."""

    spans: list[Span] = []
    upstream_start_ns: int = 0
    upstream_first_byte_ns: int = 0
    upstream_end_ns: int = 0


class Chunk(BusMessage, tag="chat.chunk"):
    id: str
    seq: int
    delta: Delta
    model: str = ""
    # Only to a requester that asked (``Envelope.batch_chunks``): the deltas
    # after ``delta`` that came in the same read of the upstream's stream.
    more: list[Delta] = []
    # A slice of an embeddings answer too large for one message (see ``Final``).
    embeddings: list[list[float]] | None = None
    # On the first chunk of a stream only (its response headers go out with
    # it): who answers, and whether from the cache.
    deployment: str = ""
    cache: Literal["hit", "miss", ""] = ""
    # A REST call's answer (api "rest"): the first chunk carries the
    # response's head; every chunk a slice of its body, in order (``delta``
    # is empty). The ingress relays each as it comes.
    head: RestHead | None = None
    data: bytes = b""


class TokenCount(msgspec.Struct):
    """The answer to a token count (``Envelope.api`` "count_tokens"): the
    request's input tokens, counted by the deployment's own count endpoint
    ("upstream", Anthropic's) or by the gateway's tokenizer for the model
    ("gateway"). A count uses no tokens: its ``Final.usage`` is zero."""

    input_tokens: int
    by: Literal["upstream", "gateway"]


class Final(BusMessage, tag="chat.final"):
    """The end of an answer. A non-streamed answer too large for one NATS
    message comes as chunks first (content pieces, or slices of embeddings),
    then this with the rest; the receiver joins them."""

    id: str
    seq: int
    model: str
    usage: Usage
    # The total, kept for v1 readers that predate the split in ``cost``.
    cost_pico_usd: int = 0
    cost: Cost = msgspec.field(default_factory=Cost)
    # For a non-streamed answer the whole message (of the first choice); for
    # a streamed one None.
    message: Message | None = None
    # A non-streamed answer to a request with ``n`` > 1: choices 1, 2, ...
    other_choices: list[Choice] = []
    # For an embeddings request: one vector per input, in input order.
    embeddings: list[list[float]] | None = None
    finish_reason: str | None = None
    deployment: str = ""
    provider: str = ""
    key_id: str = ""
    tenant_id: str = ""
    timing: Timing = msgspec.field(default_factory=Timing)
    # The caller's rate limits as of admission (``x-ratelimit-*`` headers).
    rate: RateState | None = None
    # The model group (after aliases), A/B arm, and upstream tries it took.
    model_group: str = ""
    arm: str = ""
    attempts: int = 0
    # "hit": answered from the response cache (no upstream call), saving
    # ``cost_saved_pico_usd``; "miss": looked up, not found; "": not looked up.
    cache: Literal["hit", "miss", ""] = ""
    cost_saved_pico_usd: int = 0
    # For a token count: the count (no message, no usage).
    count: TokenCount | None = None
    # For an MCP call: the upstream's result as JSON (a CallToolResult,
    # GetPromptResult or ReadResourceResult), masked values restored.
    tool_result: bytes = b""
    # For a REST call: how it ended (see ``RestResult``), and the body's last
    # bytes (all of it for an answer that came in this reply alone).
    rest: RestResult | None = None
    data: bytes = b""
    # An image, audio, moderation or rerank request's answer (``schemas.tasks``);
    # a speech answer's audio itself is in ``data`` or went out as ``Chunk.data``.
    task_result: TaskResult | None = None


class Failure(BusMessage, tag="chat.failure"):
    id: str
    seq: int
    status: int
    type: str
    code: str
    message: str
    retry_after_s: float | None = None
    deployment: str = ""
    provider: str = ""
    key_id: str = ""
    tenant_id: str = ""
    timing: Timing = msgspec.field(default_factory=Timing)
    # What the upstream billed before the request failed or was cancelled
    # (a stream cut midway, a client gone): recorded and charged like any usage.
    usage: Usage | None = None
    cost: Cost | None = None
    rate: RateState | None = None
    model_group: str = ""
    arm: str = ""
    attempts: int = 0
    # A prompt API's answer that did not match its output schema, as given.
    raw_output: str = ""
    # A REST call cut after its head went out (the client left, its provider
    # died, the upstream broke off): the upstream's status and the body bytes
    # relayed before the end, for its row.
    rest: RestResult | None = None

    @classmethod
    def from_error(cls, request_id: str, error: GatewayError, seq: int = 0, **fields: str) -> Failure:
        return cls(
            id=request_id,
            seq=seq,
            status=error.status,
            type=error.type.value,
            code=error.code,
            message=error.message,
            retry_after_s=error.retry_after_s,
            rate=getattr(error, "rate", None),
            raw_output=getattr(error, "raw_output", ""),
            **fields,
        )


class Accepted(BusMessage, tag="chat.accepted"):
    """The provider took the request and is calling the upstream. Sent to a
    requester that asked for progress (``Envelope.progress``): it tells which
    process holds the request, so that if that process dies the request ends
    at once, and that it must not be sent again. Written to the bus before
    the upstream call starts."""

    id: str
    worker: str


class Admitted(BusMessage, tag="chat.admitted"):
    """Policy admitted the request under the caller's limits and took this
    from their counters. Sent to a requester that asked for progress: a copy of
    the request it sends again carries the same reservation, so a request is
    admitted (and counted) once however often it travels."""

    id: str
    quota: Reservation | None = None
    # When the tenant's privacy rules put redaction on the slip: the time by
    # which it must pass the request (a ``Redacted`` reply), else it fails closed.
    redaction_by_ns: int = 0


class Redacted(BusMessage, tag="chat.redacted"):
    """The redaction stage passed the request on (to a requester that asked for progress)."""

    id: str


class Cancel(BusMessage, tag="chat.cancel"):
    """The client went away: whoever works on ``id`` should stop."""

    id: str


class ReplayAsk(BusMessage, tag="chat.replay"):
    """The ingress heard nothing for a while from the provider that took
    ``id``, or a reply was missing (a NATS node died with it in flight): that
    provider sends its replies from ``from_seq`` on again. The ingress drops
    the ones it already has, by ``seq``."""

    id: str
    from_seq: int = 0


class Credit(BusMessage, tag="chat.credit"):
    """Flow control of a REST answer's body, from a requester that asked for
    it (``Envelope.flow_window``): it has taken ``through`` bytes of the body
    (written them on to its client), so the provider holding ``id`` may send
    up to ``through`` plus the window, then waits. Cumulative, so a credit
    lost or heard twice changes nothing: the requester sends its latest
    again while it waits. Heard by every provider on
    ``sluice.v1.control.credit`` (``sluice.v1.in.credit`` for services)."""

    id: str
    through: int


class Fence(BusMessage, tag="chat.fence"):
    """Before a request is sent again, every provider process is asked
    whether it holds it (``sluice.v1.control.fence``, answered on the
    message's reply subject with ``Fenced``). One that does not refuses from
    then on every copy of ``id`` numbered below ``copy``: a copy still on its
    way can no longer reach the upstream, so the new one may go out once
    every live provider has answered. This costs nothing on a request that
    is never sent again: the first copy is called without asking anyone."""

    id: str
    copy: int
    # The copy whose reservation the new copy brings (-1: none, policy admits
    # it afresh). A provider refusing an older copy settles that copy's
    # reservation unless it is this one: a fenced-off copy loses no slot or
    # budget, and none is given back twice. None: not said (an older
    # requester), nothing is settled.
    carries: int | None = None


class Fenced(BusMessage, tag="chat.fenced"):
    """A provider's answer to a ``Fence``: it holds the request (took a copy:
    the requester treats it as ``Accepted``), or it does not and will not."""

    id: str
    worker: str
    holds: bool
    # The fence's copy: an answer counts only for the round that asked it.
    copy: int = 0
