"""Units and batches in ClickHouse (migration 021): the row the stage that
ends a request writes (``StageContext.finish``) for an image, audio,
rerank or moderation request carries its units, their kind and their part
of the cost; a batch's line its ``batch_id``; stored through the sink's path
(a JetStream batch decoded, checked and inserted). The named query
``batches`` gives answers computed here from the same events, and the
rollups count units' cost in the total."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from analytics import intake
from analytics.intake import Pulled
from analytics.migrate import MIGRATIONS, statements
from analytics.queries import NAMED, bind
from analytics.store import Store
from schemas import bus
from schemas.analytics import QueryRequest
from schemas.chat import ChatBody, Cost, Message, Usage
from schemas.envelope import Envelope, Origin
from schemas.events import EventBatch, RequestEvent
from schemas.replies import Failure, Final
from schemas.tasks import (
    BlobRef,
    ImageRequest,
    ModerationRequest,
    RerankRequest,
    SpeechRequest,
    TaskRequest,
    TranscriptionRequest,
)
from services import records
from workers.runner import StageContext

MS = 1_000_000
S = 1_000_000_000
IMAGE = 40_000_000_000  # dall-e-3's 1024x1024/standard, in pico-USD
SEARCH = 2_000_000_000  # rerank-v3.5's search unit


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


class Line(msgspec.Struct, frozen=True):
    """One request of the data set and how it ended."""

    request_id: str
    tenant: str
    api: str
    task: TaskRequest | None = None
    usage: Usage = msgspec.field(default_factory=Usage)
    cost: Cost = msgspec.field(default_factory=Cost)
    batch_id: str = ""
    origin: Origin = "http"
    failed: bool = False


AUDIO = BlobRef(name="t1/upload/abcdefghijklmnopqrstuvwx", size=32_000)
LINES = [
    Line("i0", "t1", "images", ImageRequest(model="img", prompt="a cat", n=2), Usage(units=2, unit="image"),
         Cost(units=2 * IMAGE)),
    Line("a0", "t1", "transcriptions", TranscriptionRequest(model="asr", audio=AUDIO),
         Usage(units=61_500, unit="audio_ms"), Cost(units=61_500 * 100_000)),
    Line("s0", "t1", "speech", SpeechRequest(model="tts", input="hello there", voice="alloy"),
         Usage(units=11, unit="character"), Cost(units=11 * 15_000_000)),
    Line("r0", "t2", "rerank", RerankRequest(model="rr", query="q", documents=["a"] * 150),
         Usage(units=2, unit="search_unit"), Cost(units=2 * SEARCH)),
    # Free by design: its tokens are counted, its cost is 0, and that is no missing price.
    Line("m0", "t1", "moderations", ModerationRequest(model="mod", input="fine"), Usage(prompt_tokens=5)),
    # A batch's lines: chat requests the job runner published (origin "job").
    Line("b0", "t1", "chat", usage=Usage(prompt_tokens=10, completion_tokens=5), cost=Cost(input=100, output=50),
         batch_id="batch_A", origin="job"),
    Line("b1", "t1", "chat", usage=Usage(prompt_tokens=20, completion_tokens=7), cost=Cost(input=200, output=70),
         batch_id="batch_A", origin="job"),
    Line("b2", "t1", "chat", batch_id="batch_A", origin="job", failed=True),
    Line("b3", "t2", "images", ImageRequest(model="img", prompt="a dog"), Usage(units=1, unit="image"),
         Cost(units=IMAGE), batch_id="batch_B", origin="job"),
    # An image whose price went missing: units used, nothing billed. The zero-cost alert counts it.
    Line("z0", "t2", "images", ImageRequest(model="img", prompt="a cow"), Usage(units=1, unit="image")),
]  # fmt: skip
EVENTS: list[RequestEvent] = []
T0 = 0


async def end(line: Line, received_at_ns: int) -> RequestEvent:
    """The row ``StageContext.finish`` writes for ``line`` (as the provider stage ends it)."""
    ctx = StageContext("provider", _Nats(), None, _Events(), None, {})  # type: ignore[arg-type]
    body = None if line.task is not None else ChatBody(model="chat-model", messages=[Message(role="user", content="x")])
    env = Envelope(
        reply="_INBOX.test", body=body, task=line.task, id=line.request_id, received_at_ns=received_at_ns,
        api=line.api, origin=line.origin, key_id="k", tenant_id=line.tenant, batch_id=line.batch_id,
    )  # type: ignore[arg-type]  # fmt: skip
    reply: Final | Failure
    if line.failed:
        reply = Failure(id=line.request_id, seq=0, status=502, type="upstream_error", code="upstream_unreachable",
                        message="no", deployment="d1")  # fmt: skip
    else:
        reply = Final(id=line.request_id, seq=0, model=env.model, usage=line.usage, cost=line.cost,
                      cost_pico_usd=line.cost.total, deployment="d1", attempts=1)  # fmt: skip
    await ctx.finish(env, reply, received_at_ns)
    (row,) = ctx.events.emitted
    return row


def ingress_row(received_at_ns: int) -> RequestEvent:
    """A batch line the ingress ended itself (its provider died): its row names the batch too."""
    failure = Failure(id="b4", seq=0, status=502, type="upstream_error", code="worker_died", message="gone",
                      tenant_id="t1", key_id="k", usage=Usage(prompt_tokens=3), cost=Cost(input=30))  # fmt: skip
    return records.request_event(
        request_id="b4", received_at_ns=received_at_ns, origin="job", api="chat", model="chat-model",
        stream=False, done_ns=received_at_ns + 4 * MS, reply=failure, batch_id="batch_A",
    )  # fmt: skip


def through_sink(store: Store, events: list, name: str = "b") -> None:
    pulled = [Pulled(subject="sluice.v1.events.provider", data=bus.encode(EventBatch(id=name, events=events)))]
    good, dead = intake.sort(pulled)
    assert dead == []
    assert intake.store_all(good, dead, store.insert) == []


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    global T0
    T0 = time.time_ns() - 10 * 60 * S
    EVENTS[:] = [asyncio.run(end(line, T0 + i * S)) for i, line in enumerate(LINES)]
    EVENTS.append(ingress_row(T0 + len(LINES) * S))
    s = Store(f"chdb://{Path(tmp_path_factory.mktemp('units')) / 'data'}")
    s.migrate()
    through_sink(s, EVENTS)
    yield s
    s.close()


def run(store: Store, name: str, **params: object) -> list[dict]:
    sql, bound = bind(QueryRequest(name=name, params=params))  # type: ignore[arg-type]
    columns, rows = store.query(sql, bound)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_the_stage_that_ends_a_task_puts_its_units_and_batch_on_the_row(store: Store) -> None:
    by_id = {e.request_id: e for e in EVENTS}
    image = by_id["i0"]
    assert (image.api, image.units, image.unit, image.cost_units_pico_usd) == ("images", 2, "image", 2 * IMAGE)
    assert image.cost_pico_usd == 2 * IMAGE and image.batch_id == ""
    assert (by_id["a0"].units, by_id["a0"].unit) == (61_500, "audio_ms")
    assert (by_id["b1"].batch_id, by_id["b1"].origin, by_id["b1"].cost_units_pico_usd) == ("batch_A", "job", 0)
    assert (by_id["b4"].batch_id, by_id["b4"].cost_pico_usd) == ("batch_A", 30)


def test_each_row_is_stored_with_its_units_and_batch(store: Store) -> None:
    _, rows = store.query(
        "SELECT request_id, units, unit, cost_units_pico_usd, cost_pico_usd, batch_id FROM requests FINAL ORDER BY ts"
    )
    assert rows == [(e.request_id, e.units, e.unit, e.cost_units_pico_usd, e.cost_pico_usd, e.batch_id) for e in EVENTS]
    # Old readers (and rows of no units, no batch) see none of it: the fields are left out when unset.
    assert b"batch_id" not in msgspec.msgpack.encode(EVENTS[0]) and b"units" not in msgspec.msgpack.encode(EVENTS[5])


def test_batches_gives_lines_outcomes_tokens_units_cost_and_times_per_batch(store: Store) -> None:
    got = {r["batch_id"]: r for r in run(store, "batches")}
    assert set(got) == {"batch_A", "batch_B"}
    for batch, row in got.items():
        lines = [e for e in EVENTS if e.batch_id == batch]
        assert row["tenant_id"] == lines[0].tenant_id
        assert (row["lines"], row["succeeded"], row["failed"]) == (
            len(lines), sum(e.status < 400 for e in lines), sum(e.status >= 400 for e in lines),
        )  # fmt: skip
        assert (row["prompt_tokens"], row["completion_tokens"]) == (
            sum(e.prompt_tokens for e in lines), sum(e.completion_tokens for e in lines),
        )  # fmt: skip
        assert row["units"] == sum(e.units for e in lines)
        assert int(row["cost_pico_usd"]) == sum(e.cost_pico_usd for e in lines)
        assert row["first_ms"] == min(e.received_at_ns for e in lines) // MS
        assert row["last_ms"] == max(e.received_at_ns // MS + e.latency_ns // MS for e in lines)
    assert (got["batch_A"]["lines"], got["batch_A"]["failed"], got["batch_A"]["unit"]) == (4, 2, "")
    assert (got["batch_B"]["units"], got["batch_B"]["unit"]) == (1, "image")
    # The batch whose last line ended last comes first (a tie goes by name).
    newest_first = sorted(got, key=lambda b: (-got[b]["last_ms"], b))
    assert [r["batch_id"] for r in run(store, "batches")] == newest_first


def test_batches_narrows_to_a_tenant_and_a_batch(store: Store) -> None:
    assert [r["batch_id"] for r in run(store, "batches", tenant_id="t2")] == ["batch_B"]
    assert run(store, "batches", tenant_id="t2", batch_id="batch_A") == []
    assert [r["lines"] for r in run(store, "batches", batch_id="batch_A")] == [4]
    assert run(store, "batches", hours=0) == []
    assert NAMED["batches"].per_tenant
    assert set(NAMED["batches"].params) == {"hours", "tenant_id", "batch_id"}


def test_the_rollups_count_units_cost_in_the_total_exactly(store: Store) -> None:
    total = sum(e.cost_pico_usd for e in EVENTS)
    assert total > 2 * IMAGE  # units' cost is in it
    for table, merge in (("requests_minutely", "sumMerge"), ("requests_hourly", "sumMerge")):
        _, rows = store.query(f"SELECT toString({merge}(cost_pico_usd)) FROM {table}")
        assert rows == [(str(total),)], table


def test_the_zero_cost_count_takes_units_and_leaves_free_moderation_out(store: Store) -> None:
    _, rows = store.query(
        "SELECT model, countIfMerge(zero_cost_successes) FROM requests_minutely GROUP BY model HAVING"
        " countIfMerge(zero_cost_successes) > 0"
    )
    # The image with units and no cost; not the moderation (free by design).
    assert rows == [("img", 1)]


def test_a_batch_that_comes_again_adds_no_line(store: Store) -> None:
    before = sum(r["lines"] for r in run(store, "batches"))
    through_sink(store, EVENTS, "again")
    assert sum(r["lines"] for r in run(store, "batches")) == before == 5


def test_the_migration_applied_twice_changes_nothing(store: Store) -> None:
    assert store.migrate() == []
    for stmt in statements((MIGRATIONS / "021_units_and_batches.sql").read_text()):
        store.command(stmt)
    _, rows = store.query("SELECT count(), sum(units) FROM requests FINAL WHERE batch_id != ''")
    assert rows == [(5, 1)]
