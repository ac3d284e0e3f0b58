"""Server-sent event frames as the mock sends them."""

from __future__ import annotations

from typing import Any

import msgspec

_json = msgspec.json.Encoder()


class Frame(msgspec.Struct):
    data: bytes
    # A frame carrying part of the answer: ``chunk_ms`` and ``cut_after`` count these.
    word: bool


def data_frame(doc: Any, word: bool = True, event: str | None = None) -> Frame:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return Frame(head + b"data: " + _json.encode(doc) + b"\n\n", word)
