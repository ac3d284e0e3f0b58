"""The newer front doors, measured against the plain one in one run: the
embedded gateway (every stage its own process) and the mock upstream.

1. Prompt-API overhead: ``POST /apis/summarize`` against the same request
   sent to ``/v1/chat/completions`` (what the prompt renders to), one at a
   time, alternating; client-measured p50/p99 of each and the difference.
2. WebSocket streams per second: streamed chat requests (12 chunks) over
   ``/v1/ws``, on one connection (64 streams in flight on it) and on 64
   connections (one stream in flight on each); and the same streams as
   HTTP server-sent events on 64 connections, from the same kind of client.
3. Jobs per second: a batch submitted to the work queue with the Python
   client, from the first submit to the last result stored.

    python -m loadtest.front_doors_bench [--requests 1000] [--streams 2000] [--jobs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from statistics import quantiles

import aiohttp
import httpx
import nats
from websockets.asyncio.client import ClientConnection, connect

from loadtest.bench import embedded_gateway, write_results
from schemas import subjects
from schemas.replies import Final
from services.bus import credentials, process
from services.bus.client import SluiceClient
from services.cli.supervisor import DEMO_SERVICE

KEY = "sk-bench-doors-0123456789"
CONFIG = """
[gateway]
request_timeout_s = 30
jobs_per_tenant = 32
[[tenants]]
id = "bench"
[[models]]
name = "bench-model"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4o-mini"
[[prompts]]
name = "summarize"
model = "bench-model"
api = {{ slug = "summarize", state = "published" }}
[[prompts.messages]]
role = "system"
template = "Summarise the user's text in at most three sentences."
[[prompts.messages]]
role = "user"
template = "{{{{text}}}}"
[[prompts.variables]]
name = "text"
"""
TEXT = "Rivers carry water to the sea. " * 30


def pct(values: list[float]) -> dict[str, float]:
    cuts = quantiles(values, n=100)
    return {"p50": round(cuts[49], 3), "p99": round(cuts[98], 3), "n": len(values)}


async def prompt_overhead(root: str, n: int) -> dict:
    headers = {"authorization": f"Bearer {KEY}"}
    chat = {
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": "Summarise the user's text in at most three sentences."},
            {"role": "user", "content": TEXT},
        ],
    }
    times: dict[str, list[float]] = {"chat": [], "prompt_api": []}
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(n + 100):
            for kind, url, body in (
                ("chat", f"{root}/v1/chat/completions", chat),
                ("prompt_api", f"{root}/apis/summarize", {"text": TEXT}),
            ):
                t = time.perf_counter()
                r = await http.post(url, json=body, headers=headers)
                elapsed = (time.perf_counter() - t) * 1000
                assert r.status_code == 200, r.text
                if i >= 100:  # warm-up
                    times[kind].append(elapsed)
    out = {kind: pct(values) for kind, values in times.items()}
    out["added_p50_ms"] = round(out["prompt_api"]["p50"] - out["chat"]["p50"], 3)
    return out


def _stream(request_id: str) -> str:
    body = {"model": "bench-model", "stream": True, "messages": [{"role": "user", "content": TEXT}]}
    return json.dumps({"type": "request", "id": request_id, "api": "chat", "body": body})


async def _open(url: str) -> ClientConnection:
    ws = await connect(url, additional_headers={"authorization": f"Bearer {KEY}"}, max_size=None)
    await ws.recv()  # ready
    return ws


async def _drive(ws: ClientConnection, total: int, in_flight: int, counter: list[int], prefix: str) -> None:
    """Keep ``in_flight`` streams going on one connection until ``total`` ended."""
    sent = ended = 0
    while sent < min(in_flight, total):
        await ws.send(_stream(f"{prefix}{sent}"))
        sent += 1
    while ended < total:
        message = json.loads(await ws.recv())
        if message["type"] in ("done", "response"):
            assert message["type"] == "done", message
            ended += 1
            counter[0] += 1
            if sent < total:
                await ws.send(_stream(f"{prefix}{sent}"))
                sent += 1


async def ws_streams(url: str, total: int, connections: int, in_flight: int) -> dict:
    sockets = [await _open(url) for _ in range(connections)]
    counter = [0]
    try:
        t = time.perf_counter()
        per = total // connections
        await asyncio.gather(*(_drive(ws, per, in_flight, counter, f"c{i}-") for i, ws in enumerate(sockets)))
        elapsed = time.perf_counter() - t
    finally:
        for ws in sockets:
            await ws.close()
    return {"streams": counter[0], "seconds": round(elapsed, 2), "streams_per_s": round(counter[0] / elapsed, 1)}


async def sse_streams(root: str, total: int, concurrency: int) -> dict:
    """The same streams over HTTP (server-sent events), from a Python client
    as light as the WebSocket one (aiohttp: httpx's own cost would dominate)."""
    body = json.loads(_stream("x"))["body"]
    headers = {"authorization": f"Bearer {KEY}"}
    done = [0]

    async def worker(http: aiohttp.ClientSession, n: int) -> None:
        for _ in range(n):
            async with http.post(f"{root}/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status == 200
                async for _ in r.content.iter_any():
                    pass
            done[0] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        t = time.perf_counter()
        await asyncio.gather(*(worker(http, total // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t
    return {"streams": done[0], "seconds": round(elapsed, 2), "streams_per_s": round(done[0] / elapsed, 1)}


async def jobs_rate(nats_url: str, creds: str, admin_creds: str, n: int) -> dict:
    async with await SluiceClient.connect(nats_url, KEY, creds=creds) as sluice:
        body = {"model": "bench-model", "messages": [{"role": "user", "content": TEXT}]}
        t = time.perf_counter()
        ids = await asyncio.gather(*(sluice.submit_job("chat", body) for _ in range(n)))
        submitted = time.perf_counter() - t
        nc = await nats.connect(nats_url, **process.auth_options(admin_creds))
        try:
            js = nc.jetstream()
            while (await js.stream_info(f"KV_{subjects.KV_JOB_RESULTS}")).state.messages < n:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t
        finally:
            await nc.close()
        last = await sluice.result(ids[-1])
        assert last is not None and isinstance(last.result, Final), last
    return {
        "jobs": n,
        "submit_s": round(submitted, 2),
        "seconds": round(elapsed, 2),
        "jobs_per_s": round(n / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.front_doors_bench")
    parser.add_argument("--requests", type=int, default=1000, help="prompt API and chat each, after 100 to warm up")
    parser.add_argument("--streams", type=int, default=2000, help="WebSocket streams per run")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--out", default="loadtest/results/front_doors.json")
    args = parser.parse_args()
    results: dict = {}
    with embedded_gateway(CONFIG, KEY, "sluice-doors-") as (layout, sup):
        root, ws_url = f"http://127.0.0.1:{layout.http_port}", f"ws://127.0.0.1:{layout.http_port}/v1/ws"
        results["prompt_api_ms"] = asyncio.run(prompt_overhead(root, args.requests))
        print("prompt API:", json.dumps(results["prompt_api_ms"]), flush=True)
        results["ws_one_connection"] = asyncio.run(ws_streams(ws_url, args.streams, 1, 64))
        print("ws, 1 connection:", json.dumps(results["ws_one_connection"]), flush=True)
        results["ws_64_connections"] = asyncio.run(ws_streams(ws_url, args.streams, 64, 1))
        print("ws, 64 connections:", json.dumps(results["ws_64_connections"]), flush=True)
        results["sse_64_connections"] = asyncio.run(sse_streams(root, args.streams, 64))
        print("sse, 64 connections:", json.dumps(results["sse_64_connections"]), flush=True)
        # As an internal service would: its own NATS user, allowed only its entry points.
        svc = str(sup.creds_path(credentials.service_user(DEMO_SERVICE)))
        results["jobs"] = asyncio.run(jobs_rate(layout.nats_url, svc, str(sup.creds_path("admin")), args.jobs))
        print("jobs:", json.dumps(results["jobs"]), flush=True)
    write_results(results, args.out, summary(results))
    return 0


def summary(r: dict) -> str:
    p = r["prompt_api_ms"]
    one, many, sse, jobs = r["ws_one_connection"], r["ws_64_connections"], r["sse_64_connections"], r["jobs"]
    return "\n".join(
        [
            "",
            f"prompt API {p['prompt_api']['p50']:.3f} / {p['prompt_api']['p99']:.3f} ms vs the same chat request "
            f"{p['chat']['p50']:.3f} / {p['chat']['p99']:.3f} ms (p50 / p99, concurrency 1): "
            f"{p['added_p50_ms']:+.3f} ms at p50",
            f"WebSocket streams/s: {one['streams_per_s']} on 1 connection (64 in flight), "
            f"{many['streams_per_s']} on 64 connections (1 in flight each); the same streams as HTTP SSE on "
            f"64 connections: {sse['streams_per_s']}",
            f"jobs/s: {jobs['jobs_per_s']} ({jobs['jobs']} jobs, submitted in {jobs['submit_s']} s, "
            f"all results stored after {jobs['seconds']} s)",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
