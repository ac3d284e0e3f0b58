"""Mistral's chat completions: OpenAI's shape with a few renamed or missing
parameters. Mistral sends usage in the last stream chunk unasked and
rejects ``stream_options``."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.chat import ChatBody
from services.providers.openai.chat import OpenAIChat

_encode = msgspec.json.Encoder().encode
# OpenAI parameters Mistral's API reference does not list.
_UNSUPPORTED = ("user", "logit_bias", "logprobs", "top_logprobs", "reasoning_effort", "stream_options")


class MistralChat(OpenAIChat):
    def __init__(self) -> None:
        super().__init__(stream_usage=False)

    def encode_body(self, body: ChatBody) -> bytes:
        doc: dict[str, Any] = msgspec.to_builtins(body)
        for name in _UNSUPPORTED:
            doc.pop(name, None)
        if "seed" in doc:
            doc["random_seed"] = doc.pop("seed")
        if "max_completion_tokens" in doc:
            doc["max_tokens"] = doc.pop("max_completion_tokens")
        if doc.get("tool_choice") == "required":
            doc["tool_choice"] = "any"
        return _encode(doc)
