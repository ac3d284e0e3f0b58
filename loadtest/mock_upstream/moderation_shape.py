"""The mock's moderations, in OpenAI's shape (``POST /v1/moderations``).

Deterministic verdicts: a text holding a marker word ("attack", "kill",
...) is flagged in that word's category, and ``[mock:flag=<category>]``
(e.g. ``[mock:flag=self-harm/intent]``) flags the category it names; every
other score is small and fixed by the text. The omni models answer all 13
categories with ``category_applied_input_types``; the legacy text models
(``text-moderation-*``) the 11 they know, without applied input types, and
refuse image parts, as OpenAI does. An answer bills nothing, so its usage
is recorded as none (null in ``/mock/usage``). The chat faults apply
(``[mock:status=503]``, ``latency_ms``, ``hang``) from the input's text.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from types import SimpleNamespace
from typing import Any

import msgspec

from loadtest.mock_upstream import openai_shape
from loadtest.mock_upstream.faults import apply_directives

TEXT_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
OMNI_CATEGORIES = (*TEXT_CATEGORIES, "illicit", "illicit/violent")
# The categories OpenAI's omni models also judge images for.
IMAGE_CATEGORIES = frozenset(
    {"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"}
)
MARKERS = {"attack": "violence", "kill": "violence", "gore": "violence/graphic", "hate": "hate", "bully": "harassment"}
_FLAG = re.compile(r"\[mock:flag=([a-z/-]+)\]")
_WORD = re.compile(r"[a-z]+")
# OpenAI's error shape, for the faults.
SHAPE = SimpleNamespace(error=openai_shape.error)
_json = msgspec.json.Encoder()


def handles(path: str) -> bool:
    """Whether this shape answers path."""
    return path.endswith("/moderations")


async def handle(mock: Any, behaviour: Any, path: str, scope: dict, raw: bytes, send: Any) -> None:
    """Answer the request (raw: its whole body) through mock._send."""
    try:
        req = msgspec.json.decode(raw)
        model = req.get("model") or "omni-moderation-latest"
        inputs = _inputs(req["input"])
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        return await mock._send(send, 400, _json.encode(_bad_request(str(exc))))
    omni = not model.startswith("text-moderation")
    if not omni and any(images for _, images in inputs):
        return await mock._send(send, 400, _json.encode(_bad_request(f"{model} does not accept images")))
    b = apply_directives(behaviour, " ".join(text for text, _ in inputs))
    if await mock._fault(SHAPE, b, send):
        return
    results = [_verdict(text, images, omni) for text, images in inputs]
    mock.usages.append(_json.encode(None))
    answer = {"id": f"modr-{uuid.uuid4().hex[:24]}", "model": model, "results": results}
    await mock._send(send, 200, _json.encode(answer))
    mock.stats.completed_requests += 1


def _inputs(value: Any) -> list[tuple[str, int]]:
    """Each input as (its text, its images): a text, texts, or parts read
    together as one. Raises ValueError for what OpenAI refuses."""
    if isinstance(value, str):
        return [(value, 0)]
    if not isinstance(value, list) or not value:
        raise ValueError("input must be a string or a non-empty array")
    if all(isinstance(item, str) for item in value):
        return [(item, 0) for item in value]
    texts, images = [], 0
    for part in value:
        if part["type"] == "text":
            texts.append(str(part["text"]))
        elif part["type"] == "image_url":
            if not str(part["image_url"]["url"]):
                raise ValueError("image_url.url is required")
            images += 1
        else:
            raise ValueError(f"unknown part type {part['type']!r}")
    return [(" ".join(texts), images)]


def _verdict(text: str, images: int, omni: bool) -> dict[str, Any]:
    categories = OMNI_CATEGORIES if omni else TEXT_CATEGORIES
    flagged = {MARKERS[w] for w in _WORD.findall(text.lower()) if w in MARKERS}
    flagged |= {name for name in _FLAG.findall(text) if name in categories}
    scores = {name: 0.97 if name in flagged else _small_score(text, name) for name in categories}
    verdict: dict[str, Any] = {
        "flagged": bool(flagged),
        "categories": {name: name in flagged for name in categories},
        "category_scores": scores,
    }
    if omni:
        verdict["category_applied_input_types"] = {
            name: (["text"] if text else []) + (["image"] if images and name in IMAGE_CATEGORIES else [])
            for name in categories
        }
    return verdict


def _small_score(text: str, category: str) -> float:
    """A score well under any threshold, the same for the same text."""
    digest = hashlib.blake2b(f"{category}\0{text}".encode(), digest_size=2).digest()
    return int.from_bytes(digest) / 65536 / 100


def _bad_request(message: str) -> dict[str, Any]:
    body = openai_shape.error(400)
    body["error"]["message"] = f"Invalid moderation request: {message}"
    return body
