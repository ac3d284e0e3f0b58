"""Limits, budgets and policy on image, audio and moderation requests, on
one whole gateway: a budget reserves a task's worst case before the
upstream sees it and settles at its real cost; a tokens-per-minute limit
counts the text it sends; a tenant's detectors mask the text it sends; a
bus caller can point no request at another tenant's upload, and claims no
batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from schemas import bus, subjects
from schemas.envelope import Envelope
from schemas.tasks import BlobRef, SpeechRequest, TranscriptionRequest
from services.keys import hash_key
from tests.stack import PRIVATE_KEY, TASK_MODELS, Stack

THRIFTY, COUNTED = "sk-test-thrifty-0123456789", "sk-test-counted-0123456789"
TTS_1 = 15_000_000  # pico-USD a character
# Formatted by the Stack ({mock}): its own braces doubled.
EXTRA = (
    TASK_MODELS
    + """
[[tenants]]
id = "thrifty"
budget = {{ usd = "0.002", period = "total" }}

[[tenants]]
id = "counted"
limits = {{ tpm = 40 }}

[[keys]]
id = "thrifty"
tenant = "thrifty"
sha256 = "THRIFTY_SHA"

[[keys]]
id = "counted"
tenant = "counted"
sha256 = "COUNTED_SHA"
""".replace("THRIFTY_SHA", hash_key(THRIFTY)).replace("COUNTED_SHA", hash_key(COUNTED))
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("task_admission")), timeout_s=10.0, extra_config=EXTRA).start()
    yield s
    s.stop()


def post(stack: Stack, key: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=20)


@pytest.mark.timeout(60)
def test_a_budget_reserves_a_tasks_worst_case_and_settles_at_its_cost(stack: Stack) -> None:
    seen = stack.mock_stats()["requests"]
    # Ten images of unset quality: up to 10 x $0.25 (gpt-image-1), past the $0.002 budget before any is made.
    images = post(stack, THRIFTY, "/images/generations", {"model": "demo-image", "prompt": "a cat", "n": 10})
    assert images.status_code == 429 and images.json()["error"]["type"] == "insufficient_quota"
    assert stack.mock_stats()["requests"] == seen
    # 100 characters at $15 a million: $0.0015, reserved and then billed exactly.
    speech = post(stack, THRIFTY, "/audio/speech", {"model": "demo-speech", "input": "x" * 100, "voice": "alloy"})
    assert speech.status_code == 200, speech.text
    row = stack.request_row(speech.headers["x-request-id"])
    assert (row["api"], row["units"], row["unit"]) == ("speech", 100, "character")
    assert int(row["cost_units_pico_usd"]) == int(row["cost_pico_usd"]) == 100 * TTS_1
    # Another $0.0015 would pass the budget's $0.002: refused, and the upstream never asked.
    seen = stack.mock_stats()["requests"]
    again = post(stack, THRIFTY, "/audio/speech", {"model": "demo-speech", "input": "y" * 100, "voice": "alloy"})
    assert again.status_code == 429 and again.json()["error"]["type"] == "insufficient_quota"
    assert stack.mock_stats()["requests"] == seen
    # What is left ($0.0005) still admits a request that fits: 20 characters.
    fits = post(stack, THRIFTY, "/audio/speech", {"model": "demo-speech", "input": "z" * 20, "voice": "alloy"})
    assert fits.status_code == 200, fits.text


@pytest.mark.timeout(60)
def test_a_tokens_per_minute_limit_counts_the_text_a_task_sends(stack: Stack) -> None:
    long = post(stack, COUNTED, "/moderations", {"model": "demo-moderation", "input": "word " * 60})
    assert long.status_code == 429 and long.json()["error"]["type"] == "rate_limit_error" and "tokens" in long.text
    short = post(stack, COUNTED, "/moderations", {"model": "demo-moderation", "input": "a short text"})
    assert short.status_code == 200, short.text
    assert short.headers["x-ratelimit-limit-tokens"] == "40"
    assert 30 <= int(short.headers["x-ratelimit-remaining-tokens"]) < 40  # its few tokens taken, no more
    row = stack.request_row(short.headers["x-request-id"])
    assert (row["api"], row["cost_pico_usd"], row["status"]) == ("moderations", 0, 200)


async def on_the_bus(stack: Stack, env: Envelope) -> dict:
    """Publish ``env`` as a service would, and its last reply."""
    nc = await stack.connect()
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        env.reply = inbox
        await nc.publish(subjects.IN_CHAT, bus.encode(env), headers={"Authorization": "Bearer sk-test-demo-0123456789"})
        while True:
            reply = msgspec.msgpack.decode((await sub.next_msg(timeout=20)).data)
            if reply["kind"] in ("chat.final", "chat.failure"):
                return reply
    finally:
        await nc.close()


@pytest.mark.timeout(60)
def test_a_bus_caller_sends_no_other_tenants_upload_upstream_and_claims_no_batch(stack: Stack) -> None:
    seen = stack.mock_stats()["requests"]
    theirs = BlobRef(name="thrifty/upload/abcdefghijklmnopqrstuvwx", size=1000, filename="a.wav")
    stolen = Envelope(reply="", task=TranscriptionRequest(model="demo-transcribe", audio=theirs), api="chat")
    reply = asyncio.run(on_the_bus(stack, stolen))
    assert (reply["kind"], reply["status"], reply["code"]) == ("chat.failure", 403, "blob_not_yours")
    assert stack.mock_stats()["requests"] == seen
    claimed = Envelope(reply="", task=SpeechRequest(model="demo-speech", input="hi", voice="alloy"), api="chat",
                       batch_id="batch_forged")  # fmt: skip
    reply = asyncio.run(on_the_bus(stack, claimed))
    assert reply["kind"] == "chat.final" and reply["cost"]["units"] == 2 * TTS_1
    row = stack.request_row(reply["id"])
    # The kind says the api; only the gateway's job runner names a batch.
    assert (row["api"], row["batch_id"], row["units"]) == ("speech", "", 2)
    # Its row is stored (above), and no batch has it.
    assert stack.query("batches", batch_id="batch_forged")["rows"] == []


@pytest.mark.timeout(60)
def test_a_tenants_detectors_mask_the_text_a_task_sends_upstream(stack: Stack) -> None:
    text = "write to bob@example.com about 4111 1111 1111 1111"
    answer = post(stack, PRIVATE_KEY, "/moderations", {"model": "demo-moderation", "input": [text, "and me"]})
    assert answer.status_code == 200, answer.text
    sent = httpx.get(f"{stack.mock_url}/mock/last-request").json()
    assert sent["input"] == ["write to [EMAIL_1] about [CARD_1]", "and me"]
    image = post(stack, PRIVATE_KEY, "/images/generations", {"model": "demo-image", "prompt": f"a poster: {text}"})
    assert image.status_code == 200, image.text
    assert (
        httpx.get(f"{stack.mock_url}/mock/last-request").json()["prompt"]
        == "a poster: write to [EMAIL_1] about [CARD_1]"
    )
