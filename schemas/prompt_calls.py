"""A prompt API called over the bus (``sluice.v1.in.api.<slug>``), and its answer."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.base import BusMessage
from schemas.chat import Cost, Usage
from schemas.envelope import PromptRef
from schemas.prompts import ApiState


class ApiCall(BusMessage, tag="api.request"):
    # The subject that receives the answer (an inbox of the caller's); the
    # NATS message's own reply subject is used when this is empty.
    reply: str = ""
    variables: dict[str, Any] = {}
    # Stream the last step's text as Chunk replies before the answer.
    stream: bool = False
    # Call a draft API: only an admin key may.
    test: bool = False


class ApiAnswer(BusMessage, tag="api.answer"):
    """What a prompt API answers: the model's text, or the parsed JSON object
    when the prompt has an output schema."""

    request_id: str
    output: Any
    prompt: PromptRef
    usage: Usage = msgspec.field(default_factory=Usage)
    cost: Cost = msgspec.field(default_factory=Cost)
    # The API's lifecycle, so a caller sees a deprecation as HTTP callers do in headers.
    state: ApiState = "published"
    successor: str = ""
    sunset_at_ms: int = 0
    # Requests made: one per step, plus repair retries.
    calls: int = 1
