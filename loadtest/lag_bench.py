"""Lag from a response to its row in ClickHouse, under a steady load.

The embedded gateway (every stage its own process, events into chdb) is
driven open-loop at ``--rate`` requests per second for ``--seconds``; each
response's end is noted. A watcher asks the sink every ``--poll-ms`` for the
ids stored since the oldest request still unseen (the ``stored_since`` named
query, over NATS as any tool would), and notes when each id first shows. The
lag of a request is the time from its response's last byte to the first look
that found its row (so it is over-stated by up to one poll interval).

    python -m loadtest.lag_bench [--rate 1000] [--seconds 20] [--poll-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from statistics import quantiles

import aiohttp
import msgspec
import nats

from analytics.sink import DURABLE
from loadtest.bench import embedded_gateway, write_results
from schemas import subjects
from services.bus import process

KEY = "sk-bench-lag-0123456789"
CONFIG = """
[gateway]
request_timeout_s = 30
[[tenants]]
id = "bench"
[[models]]
name = "bench-model"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4o-mini"
"""
BODY = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "lag [mock:chunks=8]"}]})


def pct(values: list[float]) -> dict[str, float]:
    cuts = quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p99": round(cuts[98], 1), "max": round(max(values), 1)}


class Watch:
    """Requests answered and not yet seen in ClickHouse, and the lags found."""

    def __init__(self) -> None:
        self.sent_ns: dict[str, int] = {}
        self.done_ns: dict[str, int] = {}
        self.lags_ms: list[float] = []
        self.looks = 0
        self.slowest_look_ms = 0.0

    async def look(self, nc: nats.aio.client.Client) -> None:
        if not self.done_ns:
            return
        since = min(self.sent_ns[rid] for rid in self.done_ns) - 2_000_000_000
        ask = msgspec.json.encode({"name": "stored_since", "params": {"since_ns": max(0, since)}})
        asked_ns = time.time_ns()
        reply = msgspec.json.decode((await nc.request(subjects.ANALYTICS_QUERY, ask, timeout=10)).data)
        seen_ns = time.time_ns()
        self.slowest_look_ms = max(self.slowest_look_ms, (seen_ns - asked_ns) / 1e6)
        self.looks += 1
        for (rid,) in reply["rows"]:
            done = self.done_ns.pop(rid, None)
            if done is not None:
                self.lags_ms.append((seen_ns - done) / 1e6)
                del self.sent_ns[rid]


async def drive(
    url: str, rate: int, seconds: float, watch: Watch, in_flight: int, key: str = KEY, body: str = BODY
) -> dict:
    latencies: list[float] = []
    errors = 0
    gate = asyncio.Semaphore(in_flight)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        async with gate:
            sent = time.time_ns()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                done = time.time_ns()
                if resp.status != 200:
                    errors += 1
                    return
                rid = resp.headers["x-request-id"]
            watch.sent_ns[rid], watch.done_ns[rid] = sent, done
            latencies.append((done - sent) / 1e6)

    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            # Open loop: request i leaves at its time, whatever the others are doing.
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"requests": total, "errors": errors, "seconds": round(elapsed, 1),
            "achieved_rps": round(total / elapsed), "latency_ms": pct(latencies)}  # fmt: skip


async def run(
    layout_nats: str, creds: str, url: str, args: argparse.Namespace, key: str = KEY, body: str = BODY
) -> dict:
    nc = await process.connect_tool(layout_nats, creds)
    watch = Watch()
    stop = asyncio.Event()

    async def watcher() -> None:
        while not stop.is_set() or (watch.done_ns and time.monotonic() < give_up):
            await watch.look(nc)
            await asyncio.sleep(args.poll_ms / 1000)

    give_up = float("inf")
    watching = asyncio.create_task(watcher())
    try:
        load = await drive(url, args.rate, args.seconds, watch, args.in_flight, key, body)
        give_up = time.monotonic() + 60
        stop.set()
        await watching
        # Events the sink was sent more than once (its ack wait ran out): each waited that long.
        sink = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, DURABLE)
    finally:
        await nc.close()
    slow = sum(lag > 2000 for lag in watch.lags_ms)
    return {**load, "lag_ms": pct(watch.lags_ms), "rows_seen": len(watch.lags_ms), "over_2s": slow,
            "never_seen": len(watch.done_ns), "looks": watch.looks, "poll_ms": args.poll_ms,
            "slowest_look_ms": round(watch.slowest_look_ms), "sink_redelivered": sink.num_redelivered}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.lag_bench")
    parser.add_argument("--rate", type=int, default=1000, help="requests per second, open loop")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--poll-ms", type=int, default=50, help="how often the watcher looks")
    parser.add_argument("--in-flight", type=int, default=256, help="most requests in flight at once")
    parser.add_argument("--out", default="loadtest/results/lag.json")
    args = parser.parse_args()
    with embedded_gateway(CONFIG, KEY, "sluice-lag-") as (layout, sup):
        url = f"http://127.0.0.1:{layout.http_port}/v1/chat/completions"
        results = asyncio.run(run(layout.nats_url, str(sup.creds_path("admin")), url, args))
    print(json.dumps(results), flush=True)
    write_results(results, args.out, summary(results))
    return 0


def summary(r: dict) -> str:
    lag, lat = r["lag_ms"], r["latency_ms"]
    return "\n".join(
        [
            "",
            f"{r['requests']} requests at {r['achieved_rps']}/s ({r['errors']} errors), "
            f"response p50 {lat['p50']} ms, p99 {lat['p99']} ms",
            f"lag from response to row visible: p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms "
            f"({r['rows_seen']} rows seen, {r['never_seen']} never; looked every {r['poll_ms']} ms)",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
