"""Native pass-through: a request whose client API is the upstream's own
family goes up as the client wrote it, so what the unified format cannot
carry (Anthropic's ``cache_control``, ``thinking``, ``top_k``; OpenAI's
newer fields) still reaches the upstream. Only the model (the deployment's)
and the stream flag (and, streaming to OpenAI, a request for usage) change;
the answer is read by the family's adapter as always, so usage and cost are
recorded the same way.

The ingress keeps the original body only when it holds something the
unified request lost, and only requests from the ingress carry one (policy
checked the unified request parsed from those same bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

import msgspec

from schemas.chat import ChatBody, ToolChoiceOption, ToolDef
from schemas.envelope import Deployment, Envelope
from services.providers.azure import responses as azure_responses
from services.providers.base import UpstreamRequest
from services.providers.openai import responses as openai_responses
from services.providers.registry import provider

_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
# A chat request's typed fields that may hold what their types do not name.
_CHAT_TYPED: dict[str, Callable[[bytes], Any]] = {
    "tools": msgspec.json.Decoder(list[ToolDef] | None).decode,
    "tool_choice": msgspec.json.Decoder(ToolChoiceOption | None).decode,
}
# What the unified request carries of each API's top-level fields.
_CARRIED = {
    "chat": frozenset(ChatBody.__struct_fields__),
    "messages": frozenset(
        {"model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature", "top_p"}
        | {"tools", "tool_choice", "metadata"}
    ),
}
# A Responses request goes natively to OpenAI and Azure only: of the
# compatible servers, few serve /responses.
_NATIVE = {"chat": ("openai", "openai_compatible"), "messages": ("anthropic",), "responses": ("openai", "azure")}
_RESPONSES_AT = {"openai": openai_responses.endpoint, "azure": azure_responses.endpoint}


def uncarried(api: str, raw: bytes) -> list[str]:
    """The top-level fields of a request body that its unified form does not carry."""
    carried = _CARRIED.get(api)
    if carried is None:
        return []
    try:
        return [name for name in _fields(raw) if name not in carried]
    except msgspec.DecodeError:
        return []


def _typed_in_full(decode: Callable[[bytes], Any], raw: msgspec.Raw) -> bool:
    """Whether a field decoded into its type keeps all the client wrote: a
    Struct drops the fields it does not name (those of a tool of a type added
    after Sluice's, a null), which only the client's own body still holds."""
    try:
        return bool(msgspec.to_builtins(decode(raw)) == _any(raw))
    except msgspec.DecodeError:  # the unified body refuses it: a 400 either way
        return True


def worth_keeping(api: str, raw: bytes) -> bool:
    """Whether a request body holds more than its unified form, as far as its
    top-level fields, a chat request's tools and tool choice (typed, so a
    tool of another type than function and custom keeps only its ``type``),
    and Anthropic's ``cache_control`` anywhere tell. What is deeper in a
    Messages request (a ``system`` message, a thinking block, a server tool)
    the translation into the unified form tells (``anthropic_shapes.Inbound.lossy``)."""
    if api == "messages" and b'"cache_control"' in raw:
        return True
    carried = _CARRIED.get(api)
    if carried is None:
        return False
    try:
        doc = _fields(raw)
    except msgspec.DecodeError:
        return False
    if any(name not in carried for name in doc):
        return True
    return api == "chat" and not all(_typed_in_full(decode, doc[n]) for n, decode in _CHAT_TYPED.items() if n in doc)


def native(api: str, dep: Deployment) -> bool:
    return provider(dep.provider).family in _NATIVE.get(api, ())


def rewrite(raw: bytes, dep: Deployment, *, stream: bool, ask_usage: bool, drop: tuple[str, ...] = ()) -> bytes:
    """``drop``: fields the gateway itself served (the upstream must not act on them)."""
    doc = _fields(raw)
    for name in drop:
        doc.pop(name, None)
    doc["model"] = msgspec.Raw(_encode(dep.upstream_model))
    doc["stream"] = msgspec.Raw(b"true" if stream else b"false")
    if ask_usage:
        options = msgspec.json.decode(doc["stream_options"]) if "stream_options" in doc else {}
        options = options if isinstance(options, dict) else {}
        doc["stream_options"] = msgspec.Raw(_encode({**options, "include_usage": True}))
    elif not stream:
        doc.pop("stream_options", None)
    return _encode(doc)


class NativeAdapter(Protocol):
    """What the adapters of the native families (OpenAI's, Anthropic's) add."""

    def endpoint(self, deployment: Deployment, api_key: str | None) -> tuple[str, dict[str, str]]: ...


def request(dep: Deployment, raw: bytes, api_key: str | None, *, stream: bool, api: str = "chat") -> UpstreamRequest:
    """The upstream request for a native body, with the family adapter's own URL and headers."""
    known = provider(dep.provider)
    if api == "responses":  # every answer carries its usage: nothing to ask for
        url, headers = _RESPONSES_AT[known.family](dep, api_key)
        # The gateway keeps the conversation and runs background responses.
        content = rewrite(raw, dep, stream=stream, ask_usage=False, drop=("previous_response_id", "background"))
        return UpstreamRequest(url=url, headers=headers, content=content)
    url, headers = cast(NativeAdapter, known.chat).endpoint(dep, api_key)
    # OpenAI's family sends usage in a stream only when asked (and some of
    # its servers refuse being asked: the adapter knows which).
    ask_usage = stream and known.family != "anthropic" and bool(getattr(known.chat, "stream_usage", False))
    return UpstreamRequest(url=url, headers=headers, content=rewrite(raw, dep, stream=stream, ask_usage=ask_usage))


def dropped_for(env: Envelope, deployment: str) -> list[str]:
    """What the deployment that answered never got of the request: nothing
    when the client's own body went to it (its API's own family)."""
    if not env.dropped or not deployment:
        return []
    dep = next((d for d in (*env.candidates, *env.context_candidates) if d.name == deployment), None)
    return [] if dep is not None and env.raw and native(env.api, dep) else env.dropped
