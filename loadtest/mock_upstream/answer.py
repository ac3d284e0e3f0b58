"""What the mock answers, whatever the API shape: the words, an optional
tool call, and the usage to report. The shape modules only render it."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import msgspec

from loadtest.mock_upstream.faults import Behaviour
from loadtest.mock_upstream.schema_instance import instance

_json = msgspec.json.Encoder(order="sorted")
_BROKEN = '{"mock": "this answer does not match the schema"}'
_WORDS = ("Sluice", "routes", "this", "answer", "through", "a", "mock", "upstream", "for", "testing", "only.")


class ToolCall(msgspec.Struct):
    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return msgspec.json.encode(self.arguments).decode()


class Answer(msgspec.Struct):
    words: list[str]
    tool: ToolCall | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    behaviour: Behaviour
    # How many choices to give (OpenAI's ``n``); choice k > 0 ends in " #k".
    choices: int = 1

    @property
    def text(self) -> str:
        return "".join(self.words)

    def words_of(self, choice: int) -> list[str]:
        return self.words if choice == 0 else [*self.words, f" #{choice}"]


def answer_words(n: int) -> list[str]:
    return [(" " if i else "") + _WORDS[i % len(_WORDS)] for i in range(n)]


def count_prompt(prompt: str, messages: int) -> int:
    """The mock's input tokens: a word each, and 4 a message (its count
    endpoint says the same as its answers' usage)."""
    return len(prompt.split()) + 4 * messages


def plan(
    prompt: str,
    last_message: str,
    messages: int,
    tools: list[tuple[str, dict]],
    b: Behaviour,
    schema: dict[str, Any] | None = None,
    answered_before: bool = False,
) -> Answer:
    """``tools``: (name, JSON schema of the parameters) of each declared tool;
    ``schema``: the JSON Schema the request asks the answer to match."""
    tool = None
    if b.tool and tools:
        name, schema = tools[0]
        required = schema.get("required") or list(schema.get("properties") or {})[:1]
        tool = ToolCall(
            id=f"call_mock_{hashlib.sha1(prompt.encode()).hexdigest()[:12]}",
            name=name,
            # With echo, the first argument carries the last message (placeholders included).
            arguments={p: last_message if b.echo and i == 0 else "mock" for i, p in enumerate(required)},
        )
    if tool is not None:
        words: list[str] = []
    elif schema is not None:
        broken = b.bad_json or (b.bad_json_once and not answered_before)
        text = _BROKEN if broken else _json.encode(instance(schema)).decode()
        # Streamed a few characters at a time, as a model writes JSON.
        words = [text[i : i + 8] for i in range(0, len(text), 8)]
    elif b.echo and b.split > 0:
        words = [last_message[i : i + b.split] for i in range(0, len(last_message), b.split)]
    elif b.echo:
        words = [(" " if i else "") + w for i, w in enumerate(last_message.split(" "))]
    else:
        words = answer_words(b.chunks)
    prompt_tokens = count_prompt(prompt, messages)
    completion = len(words) if tool is None else 1 + len(tool.arguments_json) // 4
    if b.zero_usage:
        prompt_tokens = completion = 0
    return Answer(
        words=words,
        tool=tool,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion + b.reasoning,
        cached_tokens=min(b.cached, prompt_tokens),
        reasoning_tokens=b.reasoning,
        behaviour=b,
    )


def vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-free vector for a text: same text, same vector."""
    out: list[float] = []
    seed = text.encode()
    while len(out) < dimensions:
        seed = hashlib.sha256(seed).digest()
        out += [(v / 2**31) - 1.0 for v in struct.unpack("<8I", seed)]
    return out[:dimensions]
