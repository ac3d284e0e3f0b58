"""What a task's end leaves behind: its row's units, unit, units' cost and
batch, written by the stage that ends it (``StageContext.finish``) or by
the ingress when its provider died; and its reservation settled at its
real cost, its text's tokens kept on the per-minute limit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ingress import worker_died
from schemas.chat import ChatBody, Cost, Message, Usage
from schemas.control import ModelRoute
from schemas.envelope import Deployment, Envelope
from schemas.replies import Failure, Final
from schemas.reservation import HOLD_PARALLEL, HOLD_SPEND, HOLD_TOKENS, Hold, Reservation
from schemas.tasks import BlobRef, ImageRequest, SpeechRequest, TranscriptionRequest
from services import records, routing
from workers.runner import StageContext

IMAGE_HD = 80_000_000_000  # dall-e-3 1024x1024/hd


class _Events:
    def __init__(self) -> None:
        self.emitted: list = []

    def emit(self, event: object) -> None:
        self.emitted.append(event)

    async def flush_now(self) -> None:
        pass


class _Nats:
    async def publish(self, subject: str, payload: bytes) -> None:
        pass


class _Counters:
    """What settling added to each counter."""

    def __init__(self) -> None:
        self.added: dict[str, int] = {}

    def add_later(self, subject: str, delta: int, budget: int = 0) -> None:
        self.added[subject] = self.added.get(subject, 0) + delta

    def add_soon(self, subject: str, delta: int) -> None:
        self.add_later(subject, delta)


def test_a_rows_units_and_their_cost_come_from_the_reply_and_its_batch_from_the_caller() -> None:
    final = Final(id="r", seq=0, model="m", usage=Usage(units=3, unit="image", prompt_tokens=7),
                  cost=Cost(units=3 * IMAGE_HD))  # fmt: skip
    row = records.request_event(request_id="r", received_at_ns=1, origin="job", api="images", model="m",
                                stream=False, done_ns=2, reply=final, batch_id="batch_1")  # fmt: skip
    assert (row.units, row.unit, row.cost_units_pico_usd, row.cost_pico_usd) == (3, "image", 3 * IMAGE_HD, 3 * IMAGE_HD)
    assert (row.batch_id, row.prompt_tokens) == ("batch_1", 7)
    failure = Failure(id="r", seq=0, status=500, type="t", code="c", message="m")
    bare = records.request_event(request_id="r", received_at_ns=1, origin="http", api="chat", model="m",
                                 stream=False, done_ns=2, reply=failure)  # fmt: skip
    assert (bare.units, bare.unit, bare.cost_units_pico_usd, bare.batch_id) == (0, "", 0, "")


def test_the_stage_that_ends_a_task_settles_its_cost_and_keeps_its_texts_tokens() -> None:
    counters = _Counters()
    ctx = StageContext("provider", _Nats(), None, _Events(), counters, {})  # type: ignore[arg-type]
    holds = [Hold("tpm", HOLD_TOKENS, 12, 1000), Hold("spend", HOLD_SPEND, 5 * IMAGE_HD, 10**15)]
    reservation = Reservation(holds=[*holds, Hold("par", HOLD_PARALLEL, 1, 4)])
    env = Envelope(
        reply="_INBOX.x", task=ImageRequest(model="m", prompt="p", n=5), api="images", id="r", received_at_ns=1,
        tenant_id="t", key_id="k", quota=reservation, batch_id="batch_9", origin="job",
    )  # fmt: skip
    # Two images made of five asked: the upstream says units, not tokens.
    final = Final(id="r", seq=0, model="m", usage=Usage(units=2, unit="image"), cost=Cost(units=2 * IMAGE_HD))
    asyncio.run(ctx.finish(env, final, 1))
    # The tokens the text took stay counted (no change); the spend comes down to what was billed.
    assert counters.added == {"spend": -3 * IMAGE_HD, "par": -1}
    (row,) = ctx.events.emitted
    assert (row.batch_id, row.units, row.cost_pico_usd) == ("batch_9", 2, 2 * IMAGE_HD)


def test_a_chat_row_settles_its_tokens_as_before() -> None:
    counters = _Counters()
    ctx = StageContext("provider", _Nats(), None, _Events(), counters, {})  # type: ignore[arg-type]
    env = Envelope(reply="_INBOX.x", body=ChatBody(model="m", messages=[Message(role="user", content="x")]), id="r",
                   received_at_ns=1, quota=Reservation(holds=[Hold("tpm", HOLD_TOKENS, 100, 1000)]))  # fmt: skip
    asyncio.run(ctx.finish(env, Final(id="r", seq=0, model="m", usage=Usage(prompt_tokens=10, completion_tokens=5)), 1))
    assert counters.added == {"tpm": -85}


def test_a_task_whose_provider_died_is_billed_what_it_asked_at_the_dearest_deployment() -> None:
    deps = [Deployment(name=n, provider="openai", base_url="http://x", upstream_model="u", catalog_model=c)
            for n, c in (("sd", "tts-1"), ("hd", "tts-1-hd"))]  # fmt: skip
    table = routing.routes_by_name({"voice": ModelRoute(name="voice", deployments=deps)})
    speech = SpeechRequest(model="voice", input="Hello there", voice="alloy")
    session = SimpleNamespace(
        gw=SimpleNamespace(table=table), tool=None, rest=None, task=speech, model="voice", body=None, embeddings=None,
        quota=Reservation(holds=[Hold("tpm", HOLD_TOKENS, 3, 1000)]),
    )  # fmt: skip
    usage, cost = worker_died.billed_so_far(session)  # type: ignore[arg-type]
    assert (usage.units, usage.unit) == (11, "character")
    assert cost == Cost(units=11 * 30_000_000)  # tts-1-hd's price: the dearer of the two
    assert worker_died.tokens_held(session) == 3  # type: ignore[arg-type]
    image = ImageRequest(model="pics", prompt="p", n=2, size="1024x1024", quality="hd")
    pics = routing.routes_by_name({"pics": ModelRoute(name="pics", deployments=[Deployment(
        name="d", provider="openai", base_url="http://x", upstream_model="u", catalog_model="dall-e-3")])})  # fmt: skip
    session.gw, session.task, session.model = SimpleNamespace(table=pics), image, "pics"
    usage, cost = worker_died.billed_so_far(session)  # type: ignore[arg-type]
    assert (usage.units, cost) == (2, Cost(units=2 * IMAGE_HD))


def test_a_transcription_whose_provider_died_is_billed_its_size_based_length() -> None:
    """No header was read (the ingress reads none): its upload's size at 32 kbit/s, not $0."""
    dep = Deployment(name="w", provider="openai", base_url="http://x", upstream_model="u", catalog_model="whisper-1")
    table = routing.routes_by_name({"ears": ModelRoute(name="ears", deployments=[dep])})
    heard = TranscriptionRequest(model="ears", audio=BlobRef(name="t/upload/abcdefghijklmnopqrstuvwx", size=40_000))
    session = SimpleNamespace(
        gw=SimpleNamespace(table=table), tool=None, rest=None, task=heard, model="ears", body=None, embeddings=None,
        quota=None,
    )  # fmt: skip
    usage, cost = worker_died.billed_so_far(session)  # type: ignore[arg-type]
    assert (usage.units, usage.unit, usage.source) == (10_000, "audio_ms", "estimated")
    assert cost == Cost(units=10_000 * 100_000)  # whisper-1: $0.006 a minute
