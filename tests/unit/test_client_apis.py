"""The client API table: every front door serves these rows, each parsing
into the unified request and rendering in its own shape."""

from __future__ import annotations

import msgspec
import pytest

from schemas.chat import Delta, Message, Usage
from schemas.errors import InvalidRequest
from schemas.replies import Chunk, Failure, Final, TokenCount
from services.apis.base import RequestView
from services.apis.table import APIS, BY_PATH

BODIES = {
    "chat": b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}',
    "messages": b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stream": true}',
    "count_tokens": b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": []}',
    "embeddings": b'{"model": "m", "input": "hi"}',
    "responses": b'{"model": "m", "input": "hi", "stream": true}',
}


def test_each_api_is_one_row_by_its_path() -> None:
    assert {a.name for a in APIS} == {
        *BODIES,
        # Issue 28's rows (each tested with its own module's tests: test_images_api, test_rerank_adapters, ...).
        *("images", "image_edits", "transcriptions", "translations", "speech", "moderations", "rerank"),
    }
    assert BY_PATH["/v1/messages"].name == "messages" and len(BY_PATH) == len(APIS)
    assert BY_PATH["/v1/messages/count_tokens"].name == "count_tokens"


@pytest.mark.parametrize("api", [a for a in APIS if a.name in BODIES], ids=lambda a: a.name)
def test_a_body_parses_into_the_unified_request_and_renders_back(api) -> None:
    parsed = api.parse(BODIES[api.name])
    if api.conversation is not None:  # the unified body is made once the conversation is known
        parsed = api.conversation.resume(parsed, None)
    assert parsed.model == "m" and parsed.stream == api.streams
    assert (parsed.body or parsed.embeddings) is not None
    renderer = api.renderer(RequestView("rid", 0, "m", parsed))
    usage = Usage(prompt_tokens=3, completion_tokens=2)
    if api.name == "embeddings":
        out = msgspec.json.decode(renderer.final(Final(id="rid", seq=0, model="m", usage=usage, embeddings=[[0.5]])))
        assert out["data"][0]["embedding"] == [0.5]
    elif api.name == "count_tokens":
        counted = Final(id="rid", seq=0, model="m", usage=Usage(), count=TokenCount(7, "gateway"))
        assert msgspec.json.decode(renderer.final(counted)) == {"input_tokens": 7}
    else:
        streamed = renderer.chunk(Chunk(id="rid", seq=0, delta=Delta(role="assistant", content="Hel")))
        assert b"Hel" in streamed
        answer = Final(id="rid", seq=1, model="m", usage=usage, message=Message(role="assistant", content="Hello"))
        assert b"Hello" in renderer.final(answer)
    error = msgspec.json.decode(
        api.error_body(Failure(id="rid", seq=0, status=429, type="rate_limit_exceeded", code="x", message="slow"))
    )
    assert "slow" in str(error)


@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
def test_bad_bodies_are_the_callers_400(api) -> None:
    for bad in (b"", b"{", b"[]", b'{"model": 1}'):
        with pytest.raises(InvalidRequest):
            api.parse(bad)


def test_keys_come_from_the_header_each_sdk_sends() -> None:
    headers = {b"x-api-key": "sk-a", b"authorization": "Bearer sk-b"}
    assert BY_PATH["/v1/messages"].api_key(headers.get) == "Bearer sk-a"
    assert BY_PATH["/v1/messages/count_tokens"].api_key(headers.get) == "Bearer sk-a"
    assert BY_PATH["/v1/chat/completions"].api_key(headers.get) == "Bearer sk-b"
