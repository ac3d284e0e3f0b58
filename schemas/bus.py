"""One encoder and one decoder for everything on the bus (msgpack)."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.chat import ToolChoice
from schemas.envelope import Envelope
from schemas.events import DeadLetter, EventBatch
from schemas.lifecycle import Beat, ProcessDied
from schemas.replies import (
    Accepted,
    Admitted,
    Cancel,
    Chunk,
    Credit,
    Failure,
    Fence,
    Fenced,
    Final,
    Redacted,
    ReplayAsk,
)

Reply = Chunk | Final | Failure | Accepted | Admitted | Redacted | Fenced
AnyMessage = (
    Envelope
    | Chunk
    | Final
    | Failure
    | Accepted
    | Admitted
    | Redacted
    | Cancel
    | ReplayAsk
    | Credit
    | Fence
    | Fenced
    | EventBatch
    | DeadLetter
    | ProcessDied
    | Beat
)

encoder = msgspec.msgpack.Encoder()
encode = encoder.encode

_any = msgspec.msgpack.Decoder(AnyMessage)
_envelope = msgspec.msgpack.Decoder(Envelope)
_reply = msgspec.msgpack.Decoder(Reply)
_batch = msgspec.msgpack.Decoder(EventBatch)
_died = msgspec.msgpack.Decoder(ProcessDied)

decode = _any.decode
decode_envelope = _envelope.decode
decode_reply = _reply.decode
decode_batch = _batch.decode
decode_died = _died.decode


def widen_huge_ints(value: Any) -> Any:
    """``value`` (builtins: dicts, lists, scalars) with every integer msgpack
    cannot hold (JSON has integers of any size, msgpack only 64-bit ones) as
    the nearest float, as most JSON parsers upstream would read it. Such an
    integer can only sit in the free-form parts of a request (tool parameter
    schemas, response formats, items kept as sent): the typed fields refuse it."""
    if isinstance(value, dict):
        return {k: widen_huge_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [widen_huge_ints(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    return value


def widen_envelope(env: Envelope) -> Envelope:
    """The envelope with integers past 64 bits in the free-form parts of its
    body as floats (``widen_huge_ints``)."""
    body = env.body
    if body is not None:
        for tool in body.tools or ():
            if tool.function is not None:
                tool.function.parameters = widen_huge_ints(tool.function.parameters)
            if tool.custom is not None:
                tool.custom.format = widen_huge_ints(tool.custom.format)
        choice = body.tool_choice
        if isinstance(choice, ToolChoice) and choice.allowed_tools is not None:
            choice.allowed_tools.tools = widen_huge_ints(choice.allowed_tools.tools)
        body.response_format = widen_huge_ints(body.response_format)
        body.logit_bias = widen_huge_ints(body.logit_bias)
    return env
