"""How long a tenant's first durable job waits behind another tenant's
backlog: tenant "busy" queues ``--backlog`` jobs (10,000 by default), then
tenant "demo" queues one. Its wait (submitted to result stored) is reported
beside one job's own run time (the same job with nothing queued), and how
much of the backlog was still queued when it came.

    python -m loadtest.jobs_fairness [--backlog 10000] [--latency-ms 200] [--concurrency 4]

Runs the whole gateway on loopback (``tests.stack``) with the mock upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from schemas import subjects
from services.bus.client import SluiceClient
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack


def _job(text: str, latency_ms: int) -> dict:
    return {"model": "demo-model", "messages": [{"role": "user", "content": f"{text} [mock:latency_ms={latency_ms}]"}]}


async def _one(sluice: SluiceClient, text: str, latency_ms: int) -> float:
    started = time.monotonic()
    job = await sluice.submit_job("chat", _job(text, latency_ms))
    result = await sluice.result(job, wait_s=600, poll_s=0.02)
    assert result is not None, "the job has no result"
    return time.monotonic() - started


async def _measure(stack: Stack, busy_key: str, args: argparse.Namespace) -> dict[str, float]:
    async with (
        await SluiceClient.connect(stack.nats_url, busy_key, creds=stack.creds("svc-demo")) as busy,
        await SluiceClient.connect(stack.nats_url, DEMO_KEY, creds=stack.creds("svc-demo")) as other,
    ):
        alone = await _one(other, "alone", args.latency_ms)
        started = time.monotonic()
        for i in range(args.backlog):
            await busy.submit_job("chat", _job(f"b{i}", args.latency_ms))
        queued_s = time.monotonic() - started
        waiting = await _still_queued(stack, "busy")
        waited = await _one(other, "behind the backlog", args.latency_ms)
    return {"alone_s": alone, "behind_backlog_s": waited, "backlog_queued_s": queued_s, "still_queued": waiting}


async def _still_queued(stack: Stack, tenant: str) -> int:
    nc = await stack.connect("admin")
    try:
        info = await nc.jetstream().consumer_info(subjects.JOBS_STREAM, subjects.jobs_consumer(tenant))
        return info.num_pending
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.jobs_fairness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="the busy tenant's job concurrency")
    args = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="sluice-fairness-")), timeout_s=30).start()
    try:
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        made = {"id": "busy", "job_concurrency": args.concurrency}
        httpx.post(f"{stack.admin_url}/tenants", json=made, headers=admin).raise_for_status()
        key = httpx.post(f"{stack.admin_url}/keys", json={"tenant": "busy"}, headers=admin).json()["secret"]
        got = asyncio.run(_measure(stack, key, args))
    finally:
        stack.stop()
    print(
        f"backlog of {args.backlog} jobs (queued in {got['backlog_queued_s']:.1f} s, concurrency "
        f"{args.concurrency}, {args.latency_ms} ms each): the other tenant's first job took "
        f"{got['behind_backlog_s']:.3f} s against {got['alone_s']:.3f} s alone "
        f"({got['behind_backlog_s'] / got['alone_s']:.2f}x), with {got['still_queued']:.0f} of the backlog "
        "still queued ahead of it"
    )


if __name__ == "__main__":
    main()
