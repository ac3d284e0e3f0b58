"""Native pass-through: which bodies ride along, and what of them changes."""

from __future__ import annotations

import msgspec
import pytest

from schemas.envelope import Deployment
from services.providers import passthrough


def dep(provider: str) -> Deployment:
    return Deployment(name="d", provider=provider, base_url="http://u.test", upstream_model="up-model")


@pytest.mark.parametrize(
    ("api", "raw", "kept"),
    [
        ("chat", b'{"model": "m", "messages": [], "temperature": 1}', False),
        ("chat", b'{"model": "m", "messages": [], "prediction": {"type": "content"}}', True),
        ("messages", b'{"model": "m", "max_tokens": 5, "messages": []}', False),
        ("messages", b'{"model": "m", "max_tokens": 5, "messages": [], "top_k": 3}', True),
        ("messages", b'{"model": "m", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}}', True),
        (
            "messages",
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", '
            b'"cache_control": {"type": "ephemeral"}}]}]}',
            True,
        ),
        ("embeddings", b'{"model": "m", "input": "x", "new": 1}', False),
        ("chat", b"not json", False),
    ],
)
def test_a_body_is_kept_only_when_it_holds_more_than_the_unified_one(api: str, raw: bytes, kept: bool) -> None:
    assert passthrough.worth_keeping(api, raw) is kept


def test_only_the_model_and_stream_change_and_a_stream_asks_for_usage() -> None:
    raw = b'{"model": "alias", "stream": false, "messages": [1, 2], "x-new": {"deep": [1]}, "stream_options": {"a": 1}}'
    out = msgspec.json.decode(passthrough.rewrite(raw, dep("openai"), stream=True, ask_usage=True))
    assert out == {
        "model": "up-model",
        "stream": True,
        "messages": [1, 2],
        "x-new": {"deep": [1]},
        "stream_options": {"a": 1, "include_usage": True},
    }
    unstreamed = msgspec.json.decode(passthrough.rewrite(raw, dep("openai"), stream=False, ask_usage=False))
    assert "stream_options" not in unstreamed and unstreamed["stream"] is False


def test_the_native_families_and_their_endpoints() -> None:
    assert passthrough.native("messages", dep("anthropic")) and passthrough.native("chat", dep("groq"))
    assert not passthrough.native("chat", dep("anthropic")) and not passthrough.native("messages", dep("openai"))
    assert not passthrough.native("chat", dep("gemini"))
    req = passthrough.request(dep("anthropic"), b'{"model": "m", "top_k": 2}', "key", stream=False)
    assert req.url == "http://u.test/v1/messages" and req.headers["x-api-key"] == "key"
    assert msgspec.json.decode(req.content) == {"model": "up-model", "top_k": 2, "stream": False}
