"""A job's result asked for on ``sluice.v1.in.jobs.result`` (``JobRunner._on_query``)
when what is stored does not decode (kept by another version): the caller
is answered (the job failed, or "not found" if not even whose it is reads),
never left waiting out its timeout at every query, and it is logged once."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from ingress import jobs
from ingress.jobs import JobRunner
from schemas import bus, subjects
from schemas.control import ApiKey
from schemas.jobs import JobQuery, JobResult
from schemas.replies import Failure


class FakeNc:
    max_payload = 1024 * 1024

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def jetstream(self) -> object:
        return SimpleNamespace()

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append((subject, data))


class FakeKv:
    def __init__(self, stored: dict[str, bytes]) -> None:
        self.stored = stored

    async def get(self, key: str) -> SimpleNamespace:
        return SimpleNamespace(value=self.stored[key])


def ask(stored: bytes, tenant_id: str, monkeypatch: pytest.MonkeyPatch, times: int = 1) -> list[JobResult | Failure]:
    nc = FakeNc()
    runner = JobRunner(SimpleNamespace(nc=nc, keys=SimpleNamespace(by_hash={})))  # type: ignore[arg-type]
    runner.kv = FakeKv({"5": stored})  # type: ignore[assignment]
    monkeypatch.setattr(jobs.policy, "authenticate", lambda *a: ApiKey(id="k", tenant_id=tenant_id))
    msg = SimpleNamespace(
        reply="_INBOX.asker.1", data=bus.encode(JobQuery(id="5")), headers={subjects.API_KEY_HEADER: "Bearer sk"}
    )
    for _ in range(times):
        asyncio.run(runner._on_query(msg))  # type: ignore[arg-type]
    decode = msgspec.msgpack.Decoder(JobResult | Failure).decode
    return [decode(data) for subject, data in nc.published if subject == msg.reply]


def from_another_version(tenant_id: str) -> bytes:
    kept: dict[str, Any] = {
        "kind": "job.result",
        "id": "5",
        "api": "chat",
        "request_id": "job-5",
        "result": {"kind": "reply.from_a_later_version", "text": "?"},
        "tenant_id": tenant_id,
    }
    return msgspec.msgpack.encode(kept)


def test_a_stored_result_that_does_not_decode_is_its_owner_s_job_failed_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="sluice.ingress.jobs"):
        answers = ask(from_another_version("t"), "t", monkeypatch, times=3)
    assert len(answers) == 3
    for answer in answers:
        assert isinstance(answer, JobResult) and answer.tenant_id == "t" and answer.request_id == "job-5"
        assert isinstance(answer.result, Failure) and answer.result.code == "result_unreadable"
        assert answer.result.status == 500
    # Asked three times, said once.
    assert sum("does not decode" in r.getMessage() for r in caplog.records) == 1


def test_another_tenant_and_a_result_of_nobody_s_are_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    for stored, tenant in ((from_another_version("t"), "u"), (b"\xc1\xc1", "t")):
        (answer,) = ask(stored, tenant, monkeypatch)
        assert isinstance(answer, Failure) and answer.code == "job_not_found"


def test_a_runner_says_once_per_job_that_its_result_does_not_decode(caplog: pytest.LogCaptureFixture) -> None:
    runner = JobRunner(SimpleNamespace(nc=FakeNc()))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="sluice.ingress.jobs"):
        for _ in range(5):
            runner._readable("5", from_another_version("t"))
        runner._readable("6", from_another_version("t"))
    assert [r.getMessage().split()[5] for r in caplog.records] == ["5", "6"]
