"""The exact-match response cache, without I/O: whether a request may use it,
the key its answer is kept under, a streamed answer joined back into one
message, and a kept answer replayed as a stream.

The key is the tenant, the model group (after aliases) and everything in the
request that changes the answer; what only changes how it is delivered
(``stream``, ``stream_options``), who asked (``user``) and the name the
model was called by are left out. Chat requests from either client API
share entries: the ingress renders the same unified answer in each shape.
"""

from __future__ import annotations

import hashlib
import re

import msgspec

from schemas.cached_answer import CachedAnswer
from schemas.chat import (
    ChatBody,
    Delta,
    EmbeddingsBody,
    FunctionDelta,
    Message,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from schemas.control import CachePolicy
from schemas.replies import Chunk, Final

# Sorted object keys: the free-form parts (tools, response_format) of two
# requests that differ only in key order key alike.
_encode = msgspec.msgpack.Encoder(order="deterministic").encode
# How many chunks a replayed answer's text is cut into, at most.
REPLAY_CHUNKS = 16
_WORD = re.compile(r"\S*\s*")


def decide(cache_control: str, policy: CachePolicy | None) -> tuple[int, bool]:
    """(seconds the answer may be kept, whether to look it up first) for a
    request's ``Cache-Control`` under its tenant's policy. ``no-store``: neither;
    ``no-cache``: a fresh answer, which may still be kept; ``max-age=N``: up
    to N seconds (capped by the tenant), and only an entry that young is served."""
    if policy is None:
        return 0, False
    asked: int | None = None
    no_cache = False
    for part in cache_control.lower().split(","):
        name, _, value = part.strip().partition("=")
        if name == "no-store":
            return 0, False
        if name == "no-cache":
            no_cache = True
        elif name == "max-age" and value.strip().isdigit():
            asked = int(value.strip())
    ttl = policy.default_max_age_s if asked is None else min(asked, policy.max_age_s)
    ttl = max(0, min(ttl, policy.max_age_s))
    return ttl, ttl > 0 and not no_cache


def key(tenant_id: str, group: str, body: ChatBody | None, embeddings: EmbeddingsBody | None, raw: bytes = b"") -> str:
    """``raw``: the client's own body when it rides along for pass-through:
    what it holds beyond ``body`` changes the answer too."""
    h = hashlib.sha256()
    h.update(f"{tenant_id}\0{group}\0".encode())
    if raw:
        h.update(b"raw\0" + raw + b"\0")
    if body is not None:
        h.update(b"chat\0")
        # Tools and a tool_choice object keyed as plain objects (keys sorted),
        # as they were before they were typed: the same request, the same key.
        tools, choice = body.tools, body.tool_choice
        same = msgspec.structs.replace(
            body,
            model="",
            stream=False,
            stream_options=None,
            user=None,
            tools=msgspec.to_builtins(tools) if tools else tools,
            tool_choice=msgspec.to_builtins(choice) if isinstance(choice, ToolChoice) else choice,
        )
        h.update(_encode(same))
    elif embeddings is not None:
        h.update(b"embeddings\0")
        # The gateway keeps vectors as floats; base64 is only how the ingress writes them.
        h.update(_encode(msgspec.structs.replace(embeddings, model="", user=None, encoding_format=None)))
    return h.hexdigest()


def cacheable(body: ChatBody | None) -> bool:
    """Answers the cache can give back whole: one choice."""
    return body is None or not body.n or body.n == 1


class Transcript:
    """A streamed answer's deltas joined into the message a non-streamed call
    would have returned, so a stream can be kept like any answer."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, ToolCall] = {}

    def add(self, delta: Delta) -> None:
        if delta.content:
            self.parts.append(delta.content)
        for tc in delta.tool_calls or ():
            call = self.calls.setdefault(tc.index, ToolCall())
            call.id = tc.id or call.id
            if tc.function is not None:
                call.function.name += tc.function.name or ""
                call.function.arguments += tc.function.arguments or ""

    def message(self) -> Message:
        text = "".join(self.parts)
        calls = [self.calls[i] for i in sorted(self.calls)]
        return Message(role="assistant", content=text if text or not calls else None, tool_calls=calls or None)  # type: ignore[arg-type]


def _pieces(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text) if w]
    per = max(1, -(-len(words) // REPLAY_CHUNKS))
    return ["".join(words[i : i + per]) for i in range(0, len(words), per)]


def replay(request_id: str, answer: CachedAnswer) -> list[Chunk]:
    """A kept answer as a stream: its text in several chunks, each tool call
    whole in one, then the finish reason."""
    message = answer.message or Message(role="assistant")
    text = message.content if isinstance(message.content, str) else ""
    deltas = [Delta(role="assistant", content=piece) for piece in _pieces(text or "")[:1]] or [Delta(role="assistant")]
    deltas += [Delta(content=piece) for piece in _pieces(text or "")[1:]]
    for i, call in enumerate(message.tool_calls or ()):
        if isinstance(call, ToolCall):
            fn = FunctionDelta(name=call.function.name, arguments=call.function.arguments)
            deltas.append(Delta(tool_calls=[ToolCallDelta(index=i, id=call.id, type="function", function=fn)]))
    deltas.append(Delta(finish_reason=answer.finish_reason or "stop"))
    chunks = [Chunk(id=request_id, seq=seq, delta=d, model=answer.model) for seq, d in enumerate(deltas)]
    chunks[0].deployment, chunks[0].cache = answer.deployment, "hit"
    return chunks


def hit(request_id: str, answer: CachedAnswer, *, streamed: bool, seq: int) -> Final:
    """The Final of an answer served from the cache: no tokens, no cost, and
    what the upstream call cost when it was made, as saved."""
    return Final(
        id=request_id,
        seq=seq,
        model=answer.model,
        usage=Usage(source="reported"),
        message=None if streamed else answer.message,
        embeddings=answer.embeddings,
        finish_reason=answer.finish_reason,
        deployment=answer.deployment,
        provider=answer.provider,
        cache="hit",
        cost_saved_pico_usd=answer.cost_pico_usd,
    )


def answer_of(final: Final, message: Message | None, now_ms: int, ttl_s: int) -> CachedAnswer:
    return CachedAnswer(
        model=final.model,
        usage=final.usage,
        cost_pico_usd=final.cost.total,
        stored_at_ms=now_ms,
        expires_at_ms=now_ms + ttl_s * 1000,
        message=message,
        embeddings=final.embeddings,
        finish_reason=final.finish_reason,
        deployment=final.deployment,
        provider=final.provider,
    )
