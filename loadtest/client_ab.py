"""The provider's upstream client, measured alone: CPU µs per call and calls/s
in one process (uvloop), 64 calls in flight against nginx's fixed chat
completion (``make bench``'s upstream), the same ~1 KB request body, for the
lean client (``services.providers.lean_http``), aiohttp (as the provider
used it), and, when installed, pyreqwest and aiosonic (the clients found
that claim to be faster; not dependencies of Sluice). Each is run twice,
alternating, so drift shows.

    python -m loadtest.client_ab [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from loadtest import nginx_bench
from loadtest.bench import write_results
from services.providers.http import AiohttpUpstream, Upstream
from services.providers.lean_http import LeanUpstream

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": nginx_bench.PROMPT}]}).encode()
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
IN_FLIGHT = 64
Call = Callable[[], Awaitable[None]]


async def rate(one: Call, calls: int) -> dict[str, float]:
    left = [calls]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await one()

    for _ in range(1000):  # connections made, code warm
        await one()
    left[0] = calls
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us_per_call": round(cpu / calls * 1e6, 1), "calls_per_s": round(calls / wall)}


def ours(client: Upstream, url: str) -> Call:
    async def one() -> None:
        resp = await client.post(url, HEADERS, BODY, 30.0)
        try:
            assert resp.status_code == 200 and await resp.aread()
        finally:
            await resp.aclose()

    return one


async def others(url: str) -> dict[str, Call]:
    found: dict[str, Call] = {}
    try:
        from pyreqwest.client import ClientBuilder  # type: ignore[import-not-found]

        reqwest = ClientBuilder().error_for_status(False).build()

        async def one_reqwest() -> None:
            resp = await reqwest.post(url).headers(HEADERS).body_bytes(BODY).build().send()
            assert resp.status == 200 and await resp.bytes()

        found["pyreqwest"] = one_reqwest
    except ImportError:
        pass
    try:
        import aiosonic  # type: ignore[import-not-found]

        sonic = aiosonic.HTTPClient()

        async def one_sonic() -> None:
            resp = await sonic.post(url, headers=HEADERS, data=BODY)
            assert resp.status_code == 200 and await resp.content()

        found["aiosonic"] = one_sonic
    except ImportError:
        pass
    return found


async def measure(port: int, calls: int) -> dict[str, list[dict[str, float]]]:
    url = f"http://127.0.0.1:{port}/complete/v1/chat/completions"
    lean, aio = LeanUpstream(), AiohttpUpstream()
    clients = {"lean": ours(lean, url), "aiohttp": ours(aio, url), **(await others(url))}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    for _ in range(2):
        for name, one in clients.items():
            results[name].append(r := await rate(one, calls))
            print(f"  {name:10} {r['cpu_us_per_call']:7.1f} µs CPU per call  {r['calls_per_s']:>8} calls/s", flush=True)
    await lean.aclose()
    await aio.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.client_ab")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--out", default="loadtest/results/client_ab.json")
    args = parser.parse_args()
    with nginx_bench.nginx(Path(tempfile.mkdtemp(prefix="sluice-client-ab-")) / "nginx") as port:
        results = uvloop.run(measure(port, args.calls))
    lines = [f"{name:10} " + "  ".join(f"{r['cpu_us_per_call']} µs" for r in runs) for name, runs in results.items()]
    write_results({"in_flight": IN_FLIGHT, "calls": args.calls, "results": results}, args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
