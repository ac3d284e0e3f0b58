"""Durable jobs over a real nats-server (JetStream work queue), driven with
the package's Python client as an internal service would; outcomes checked
in the results bucket and in ClickHouse."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import httpx
import msgspec
import nats.js.errors
import pytest

from schemas import subjects
from schemas.chat import ChatBody, Message
from schemas.jobs import JobResult
from schemas.prompt_calls import ApiAnswer
from schemas.replies import Failure, Final
from services.bus.client import SluiceClient, SluiceError
from services.cli.supervisor import Supervisor
from tests.stack import ADMIN_KEY, DEMO_KEY, REDACT_KEY, Stack

# A thousand jobs, runners killed while a timed number is at the upstream, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

PROMPT = """
[[prompts]]
name = "shout"
model = "demo-model"
api = {{ slug = "shout", state = "published" }}
[[prompts.messages]]
role = "user"
template = "{{{{text}}}} [mock:echo]"
[[prompts.variables]]
name = "text"
"""
PER_TENANT = 4


@pytest.fixture(scope="module")
def jobs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("jobs"), timeout_s=20, extra_config=PROMPT, gateway=f"jobs_per_tenant = {PER_TENANT}"
    ).start()
    yield s
    s.stop()


def chat_job(text: str) -> dict:
    return {"model": "demo-model", "messages": [{"role": "user", "content": text}]}


async def client(stack: Stack, key: str = DEMO_KEY) -> SluiceClient:
    return await SluiceClient.connect(stack.nats_url, key, creds=stack.creds("svc-demo"))


def test_a_chat_job_and_a_prompt_job_end_with_results_and_rows(jobs_stack: Stack) -> None:
    async def go() -> tuple[JobResult, JobResult]:
        async with await client(jobs_stack) as sluice:
            chat = await sluice.submit_job("chat", chat_job("hi [mock:chunks=4]"))
            prompt = await sluice.submit_job("api.shout", variables={"text": "loud"})
            return await sluice.result(chat, wait_s=30), await sluice.result(prompt, wait_s=30)

    chat, prompt = asyncio.run(go())
    assert isinstance(chat.result, Final) and chat.result.message.content == "Sluice routes this answer"
    assert chat.result.usage.completion_tokens == 4 and chat.result.cost.total > 0
    assert isinstance(prompt.result, ApiAnswer) and prompt.result.output == "loud [mock:echo]"
    row = jobs_stack.request_row(chat.request_id)
    assert (row["origin"], row["status"], int(row["cost_pico_usd"])) == ("job", 200, chat.result.cost.total)


def test_a_jobs_traceparent_is_on_its_requests_rows(jobs_stack: Stack) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace}-00f067aa0ba902b7-01"

    async def go() -> tuple[JobResult, JobResult]:
        async with await client(jobs_stack) as sluice:
            chat = await sluice.submit_job("chat", chat_job("traced"), traceparent=traceparent)
            prompt = await sluice.submit_job("api.shout", variables={"text": "x"}, traceparent=traceparent)
            return await sluice.result(chat, wait_s=30), await sluice.result(prompt, wait_s=30)

    chat, prompt = asyncio.run(go())
    assert jobs_stack.request_row(chat.request_id)["trace_id"] == trace
    assert isinstance(prompt.result, ApiAnswer)
    deadline = time.monotonic() + 30
    while not (steps := jobs_stack.query("children", parent_id=prompt.result.request_id))["rows"]:
        assert time.monotonic() < deadline, "the prompt job's steps never landed"
        time.sleep(0.2)
    trace_col = steps["columns"].index("trace_id")
    assert all(row[trace_col] == trace for row in steps["rows"])


def test_bad_jobs_end_with_a_clear_failure_and_others_cannot_read_them(jobs_stack: Stack) -> None:
    async def go() -> tuple[JobResult, JobResult, JobResult, SluiceError]:
        async with await client(jobs_stack) as sluice:
            js = sluice.nc.jetstream()
            garbage = await js.publish(subjects.jobs("chat"), b"\xc1", headers=sluice.headers)
            # Without a key the job is refused as it comes in (nothing queued):
            # the publisher's acknowledgement says why, and so does the job's reply inbox.
            inbox = sluice.nc.new_inbox()
            told = await sluice.nc.subscribe(inbox)
            with pytest.raises(nats.js.errors.APIError) as refused:
                await js.publish(subjects.jobs("chat"), msgspec.json.encode({"body": chat_job("x"), "reply": inbox}))
            assert refused.value.code == 401 and "missing_api_key" in refused.value.description
            no_key = msgspec.msgpack.decode((await told.next_msg(timeout=30)).data, type=JobResult)
            unknown = await sluice.submit_job("chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
            first = await sluice.result(str(garbage.seq), wait_s=30)
            last = await sluice.result(unknown, wait_s=30)
        async with await client(jobs_stack, REDACT_KEY) as other:
            with pytest.raises(SluiceError) as hidden:
                await other.result(unknown)
        assert first is not None and last is not None
        return first, no_key, last, hidden.value

    garbage, no_key, unknown, hidden = asyncio.run(go())
    assert isinstance(garbage.result, Failure) and garbage.result.status == 400
    assert isinstance(no_key.result, Failure) and no_key.result.status == 401
    assert isinstance(unknown.result, Failure) and unknown.result.code == "model_not_found"
    assert (hidden.status, hidden.code) == (404, "job_not_found")


def test_a_tenants_jobs_run_at_its_concurrency_and_interactive_calls_still_pass(jobs_stack: Stack) -> None:
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    made = httpx.post(f"{jobs_stack.admin_url}/tenants", json={"id": "batchy", "job_concurrency": 3}, headers=admin)
    assert made.status_code == 201 and made.json()["job_concurrency"] == 3, made.text
    key = httpx.post(f"{jobs_stack.admin_url}/keys", json={"tenant": "batchy"}, headers=admin).json()["secret"]
    httpx.delete(f"{jobs_stack.mock_url}/mock/stats")

    async def go() -> list[JobResult | None]:
        async with await client(jobs_stack, key) as sluice:
            ids = [await sluice.submit_job("chat", chat_job(f"slow {i} [mock:latency_ms=150]")) for i in range(18)]
            # An interactive call meanwhile is not queued behind the batch.
            final = await sluice.request(ChatBody(model="demo-model", messages=[Message(role="user", content="now")]))
            assert final.usage.completion_tokens > 0
            return [await sluice.result(i, wait_s=60) for i in ids]

    results = asyncio.run(go())
    assert all(r is not None and isinstance(r.result, Final) for r in results)
    # The tenant's 3 jobs, plus the one interactive request, at most at once.
    assert jobs_stack.mock_stats()["peak_active_requests"] <= 3 + 1


def test_a_submission_sent_twice_makes_one_job(jobs_stack: Stack) -> None:
    async def go() -> tuple[str, str]:
        async with await client(jobs_stack) as sluice:
            first = await sluice.submit_job("chat", chat_job("once"), submission_id="sub-123")
            second = await sluice.submit_job("chat", chat_job("once"), submission_id="sub-123")
            return first, second

    first, second = asyncio.run(go())
    assert first == second


def submit_all(stack: Stack, texts: list[str]) -> list[str]:
    """A chat job for each text, submitted one after another; their ids."""

    async def go() -> list[str]:
        async with await client(stack) as sluice:
            return [await sluice.submit_job("chat", chat_job(text)) for text in texts]

    return asyncio.run(go())


def results_of(stack: Stack, ids: list[str], wait_s: float) -> list[JobResult | None]:
    """Each job's result, None for those not ended within ``wait_s`` in all
    (one deadline for every job: a stuck job then fails the test's own
    assertion, with ``unfinished``'s account, rather than its timeout)."""

    async def go() -> list[JobResult | None]:
        deadline = time.monotonic() + wait_s
        async with await client(stack) as sluice:
            return [await sluice.result(i, wait_s=max(0.0, deadline - time.monotonic())) for i in ids]

    return asyncio.run(go())


def unfinished(stack: Stack, ids: list[str], finished: list[JobResult | None]) -> str:
    """Which jobs never ended, and what the runners' and stages' logs say of them."""
    missing = [job_id for job_id, r in zip(ids, finished, strict=True) if r is None]
    if not missing:
        return ""
    said = []
    for name in ("ingress", "pipeline"):
        log = (stack.home / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
        said += [f"{name}: {line}" for line in log if any(f"job {j} " in line or f"job-{j}" in line for j in missing)]
        said += [f"{name} (last lines): {line}" for line in log[-15:]]
    return f"{len(missing)} jobs never ended: {missing[:20]}\n" + "\n".join(said[-80:])


def job_rows(stack: Stack, request_ids: set[str], timeout: float = 60) -> dict[str, list]:
    """``job_requests`` rows by request id, once every one of ``request_ids`` has one."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {row[0]: row for row in stack.query("job_requests")["rows"]}
        if request_ids <= set(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_jobs_of_a_killed_runner_are_taken_over_and_end_once(tmp_path) -> None:
    """The ingress (the jobs' runner) is killed -9 with jobs in flight: their
    requests go on without it and answer into the stream that keeps job
    replies; the restarted runner finds those answers, and runs the rest."""
    stack = Stack(tmp_path / "kill", timeout_s=20, gateway="jobs_per_tenant = 8").start()
    try:

        ids = submit_all(stack, [f"k{i} [mock:latency_ms=400]" for i in range(40)])
        time.sleep(0.6)  # the first eight are at the upstream
        before = stack.supervisor.pids()["ingress"]
        os.kill(before, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while stack.supervisor.pids().get("ingress") in (before, None):
            assert time.monotonic() < deadline, "the ingress was not restarted"
            time.sleep(0.1)

        finished = results_of(stack, ids, wait_s=90)
        assert all(r is not None and isinstance(r.result, Final) for r in finished), finished
        rows = job_rows(stack, {r.request_id for r in finished if r is not None})
    finally:
        stack.stop()
    for r in finished:
        assert r is not None
        assert rows[r.request_id][1] == 1 and int(rows[r.request_id][2]) == r.result.cost.total


@pytest.mark.timeout(240)
def test_a_thousand_jobs_survive_a_restart_of_every_process_none_lost_or_charged_twice(tmp_path) -> None:
    stack = Stack(tmp_path / "restart", timeout_s=20, gateway="jobs_per_tenant = 16").start()
    count = 1000
    try:

        ids = submit_all(stack, [f"job {i} [mock:chunks=3] [mock:latency_ms=30]" for i in range(count)])

        async def done_count() -> int:
            nc = await stack.connect("admin")
            try:
                info = await nc.jetstream().stream_info(f"KV_{subjects.KV_JOB_RESULTS}")
                return info.state.messages
            finally:
                await nc.close()

        deadline = time.monotonic() + 60
        while asyncio.run(done_count()) < count // 5:
            assert time.monotonic() < deadline, "jobs are not running"
            time.sleep(0.1)
        # Every process, nats-server included, goes down mid-batch and comes back.
        stack.supervisor.stop()
        stack.supervisor = Supervisor(stack.layout, extra_keys=stack.supervisor.extra_keys)
        stack.supervisor.start()

        finished = results_of(stack, ids, wait_s=120)
        lost = unfinished(stack, ids, finished)
        # Rows of the requests ended across the restart may still be on their way to ClickHouse.
        by_request = job_rows(stack, {r.request_id for r in finished if r is not None and isinstance(r.result, Final)})
    finally:
        stack.stop()
    assert not lost, lost
    outcomes = [r.result for r in finished if r is not None]
    succeeded = [o for o in outcomes if isinstance(o, Final)]
    assert len(succeeded) >= count * 0.95, {type(o).__name__ + getattr(o, "code", "") for o in outcomes}
    assert all(row[1] == 1 for row in by_request.values()), "a job was recorded (and charged) twice"
    for r in finished:
        assert r is not None
        if isinstance(r.result, Final):
            assert int(by_request[r.request_id][2]) == r.result.cost.total


@pytest.mark.timeout(240)
def test_a_thousand_jobs_with_the_pipeline_and_a_runner_killed_each_end_and_call_once(tmp_path) -> None:
    """SIGKILL, not a clean stop: the pipeline (holding calls in flight) and
    the ingress (holding jobs) die mid-run and are restarted. Every job ends
    with a result; no job's request reached the upstream twice (the mock
    counts bodies it saw before); the upstream's calls are the jobs answered
    plus those whose provider died holding them."""
    stack = Stack(tmp_path / "kill9", timeout_s=20, gateway="jobs_per_tenant = 16").start()
    count = 1000
    try:

        ids = submit_all(stack, [f"kill9 {i} [mock:latency_ms=40]" for i in range(count)])
        for name in ("pipeline", "ingress"):
            deadline = time.monotonic() + 60
            while stack.mock_stats()["requests"] < count // (4 if name == "pipeline" else 2):
                assert time.monotonic() < deadline, "jobs are not running"
                time.sleep(0.05)
            os.kill(stack.supervisor.pids()[name], signal.SIGKILL)

        finished = results_of(stack, ids, wait_s=120)
        mock = stack.mock_stats()
        lost = unfinished(stack, ids, finished)
        by_request = job_rows(stack, {r.request_id for r in finished if r is not None})
    finally:
        stack.stop()
    assert not lost, lost
    outcomes = [r.result for r in finished if r is not None]
    answered = sum(isinstance(o, Final) for o in outcomes)
    died = sum(isinstance(o, Failure) and o.code == "worker_died" for o in outcomes)
    assert answered + died == count, {type(o).__name__ + getattr(o, "code", "") for o in outcomes}
    assert mock["repeated"] == 0, "a job's request reached the upstream twice"
    assert answered <= mock["requests"] <= answered + died, (mock["requests"], answered, died)
    assert all(row[1] == 1 for row in by_request.values()), "a job was recorded (and charged) twice"
    print(f"kill -9 jobs: {count} jobs, {mock['requests']} upstream calls, {answered} answered, {died} worker_died")
