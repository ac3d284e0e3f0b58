"""How a Responses answer is packed for its KV entry (no NATS here)."""

from __future__ import annotations

from schemas.chat import Message
from schemas.responses import KeptItem, MessageItem, decode_request
from schemas.stored_response import StoredResponse
from services.apis import responses_shapes as shapes
from services.bus.stored_responses import COMPRESS_ABOVE, pack, unpack

HUGE = -32763996130504179420495872  # JSON holds it; msgpack's integers stop at 64 bits


def record(raw: bytes, text: str = "Hi") -> StoredResponse:
    request = decode_request(raw)
    answer = shapes.response("resp_x", 1, "m", request, Message(role="assistant", content=text), "stop", None)
    return StoredResponse(tenant_id="t", key_id="k", response=answer, input=shapes.items_of(request.input))


def test_a_record_comes_back_as_it_was_packed_small_or_compressed() -> None:
    for text in ("Hi", "x" * (COMPRESS_ABOVE * 2)):
        kept = record(b'{"model": "m", "input": "Hello"}', text)
        packed = pack(kept)
        assert packed[:1] == (b"\x01" if len(text) > COMPRESS_ABOVE else b"\x00")
        assert unpack(packed) == kept


def test_an_integer_past_64_bits_in_a_free_form_part_is_kept_as_its_float() -> None:
    """A tool's parameter schema and an item kept as sent may hold any JSON
    number: the answer is stored (a 500 before), the number as the upstream read it."""
    raw = (
        b'{"model": "m", "input": [{"type": "message", "role": "user", "content": "Hi"},'
        b' {"type": "mcp_call", "id": "m1", "arguments": "{}", "n": %d}],'
        b' "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "maximum": %d}}]}'
    ) % (HUGE, HUGE)
    back = unpack(pack(record(raw)))
    assert back.response.tools[0].parameters == {"type": "object", "maximum": float(HUGE)}  # type: ignore[union-attr]
    kept = back.input[1]
    assert isinstance(kept, KeptItem) and kept.item["n"] == float(HUGE)
    assert isinstance(back.input[0], MessageItem) and back.response.output[0].content[0].text == "Hi"  # type: ignore[union-attr]
