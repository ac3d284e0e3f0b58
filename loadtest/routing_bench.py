"""What routing costs, what the cache saves, and how fast a breaker opens:
one gateway (the embedded one, every stage its own process), one mock
playing several upstreams ("/@name/"), one run.

1. Routing with 3 deployments per group: requests alternate between a
   one-deployment model and a weighted group of three, one at a time; the
   routing stage's own time (p50/p99, from the gateway's rows) and the
   latency of each, side by side. The same requests straight to the mock
   give the floor.
2. The cache: the same question asked with ``Cache-Control: max-age``
   (hits) and with ``no-store`` (a provider call to the mock), alternating;
   client-measured latency of each.
3. The breaker: 4 callers keep a two-deployment priority group busy; the
   first deployment starts answering 500 at t0; the time until its breaker
   is written open (watched in ``sluice_health``), and how many tries went
   to it meanwhile (every one of those requests still succeeded on the second).

    python -m loadtest.routing_bench [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from statistics import quantiles

import httpx

from loadtest.bench import PROMPT, embedded_gateway, write_results
from schemas import subjects
from schemas.health import decode_breaker
from services.bus import process
from services.cli.named_query import query
from tests.stack import mock_deployment as upstream

KEY = "sk-bench-routing-0123456789"


CONFIG = (
    """
[gateway]
request_timeout_s = 30
[[tenants]]
id = "bench"
cache = {{ max_age_s = 600 }}
[[models]]
name = "single"
"""
    + upstream("s1")
    + """
[[models]]
name = "trio"
"""
    + upstream("t1", weight=50)
    + upstream("t2", weight=30)
    + upstream("t3", weight=20)
    + """
[[models]]
name = "cached"
"""
    + upstream("c1")
    + """
[[models]]
name = "guarded"
strategy = "priority"
"""
    + upstream("g1", priority=0)
    + upstream("g2", priority=1)
)


def pct(values: list[float]) -> dict[str, float]:
    cuts = quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p99": round(cuts[98], 3), "n": len(values)}


async def timed(http: httpx.AsyncClient, url: str, body: dict, headers: dict) -> float:
    t0 = time.perf_counter()
    r = await http.post(url, json=body, headers=headers)
    elapsed = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    return elapsed


def chat(model: str, prompt: str = PROMPT) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


async def routing_cost(gateway: str, mock: str, n: int) -> dict:
    auth = {"authorization": f"Bearer {KEY}"}
    times: dict[str, list[float]] = {"single": [], "trio": [], "direct": []}
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(n + 100):
            for name in ("single", "trio"):
                ms = await timed(http, f"{gateway}/chat/completions", chat(name), auth)
                if i >= 100:  # the first hundred warm up
                    times[name].append(ms)
            ms = await timed(http, f"{mock}/@direct/v1/chat/completions", chat("gpt-4o-mini"), {})
            if i >= 100:
                times["direct"].append(ms)
    return {name: pct(values) for name, values in times.items()}


async def cache_gain(gateway: str, n: int) -> dict:
    auth = {"authorization": f"Bearer {KEY}"}
    hit, call = [], []
    url, keep, fresh = (
        f"{gateway}/chat/completions",
        auth | {"cache-control": "max-age=600"},
        auth | {"cache-control": "no-store"},
    )
    async with httpx.AsyncClient(timeout=30) as http:
        # "cached" is asked the same question with max-age (hits, after the
        # first), "single" with no-store (a provider call to the mock every time).
        await timed(http, url, chat("cached"), keep)
        for i in range(n + 100):
            h = await timed(http, url, chat("cached"), keep)
            c = await timed(http, url, chat("single"), fresh)
            if i >= 100:
                hit.append(h)
                call.append(c)
    return {"hit": pct(hit), "provider_call": pct(call)}


async def breaker_opening(gateway: str, mock: str, nats_url: str, creds: str) -> dict:
    nc = await process.connect("bench", nats_url, creds)
    kv = await nc.jetstream().key_value(subjects.KV_HEALTH)
    watcher = await kv.watch("g1")
    auth = {"authorization": f"Bearer {KEY}"}
    stop = asyncio.Event()
    done = [0]

    async def caller(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            await timed(http, f"{gateway}/chat/completions", chat("guarded", "short"), auth)
            done[0] += 1

    async with httpx.AsyncClient(timeout=30) as http:
        callers = [asyncio.create_task(caller(http)) for _ in range(4)]
        await asyncio.sleep(2)  # steady state
        before = (await http.get(f"{mock}/mock/stats")).json()["by_upstream"].get("g1", 0)
        requests_before = done[0]
        t0 = time.time()
        (await http.put(f"{mock}/mock/upstreams/g1", json={"directives": "[mock:status=500]"})).raise_for_status()
        opened_at = None
        while opened_at is None:
            entry = await watcher.updates(timeout=10)
            if entry is not None and entry.value:
                record = decode_breaker(entry.value)
                if record.state == "open" and record.since_ms / 1000 >= t0:
                    opened_at = time.time()
        tries = (await http.get(f"{mock}/mock/stats")).json()["by_upstream"].get("g1", 0) - before
        requests = done[0] - requests_before
        stop.set()
        await asyncio.gather(*callers)
        await http.delete(f"{mock}/mock/upstreams/g1")
    await watcher.stop()
    await nc.close()
    return {
        "open_after_ms": round((opened_at - t0) * 1000, 1),
        "tries_to_failing_deployment": tries,
        "requests_meanwhile": requests,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.routing_bench")
    parser.add_argument("--requests", type=int, default=2000, help="per kind, after 100 to warm up")
    parser.add_argument("--out", default="loadtest/results/routing.json")
    args = parser.parse_args()
    results: dict = {}
    with embedded_gateway(CONFIG, KEY, "sluice-routing-") as (layout, sup):
        gateway, mock = f"http://127.0.0.1:{layout.http_port}/v1", f"http://127.0.0.1:{layout.mock_port}"
        creds = str(sup.creds_path("admin"))
        since = time.time_ns()
        results["client_ms"] = asyncio.run(routing_cost(gateway, mock, args.requests))
        time.sleep(2)  # the sink writes in batches
        rows = asyncio.run(query("breakdown_by_model", {"since_ns": since}, layout.nats_url, creds=creds))
        results["inside"] = {r[0]: dict(zip(rows["columns"][1:], r[1:], strict=True)) for r in rows["rows"]}
        print("routing:", json.dumps(results["client_ms"]), json.dumps(results["inside"]), flush=True)
        since = time.time_ns()
        results["cache_ms"] = asyncio.run(cache_gain(gateway, args.requests))
        time.sleep(2)
        rows = asyncio.run(query("breakdown_by_model", {"since_ns": since}, layout.nats_url, creds=creds))
        results["cache_inside"] = {r[0]: dict(zip(rows["columns"][1:], r[1:], strict=True)) for r in rows["rows"]}
        print("cache:", json.dumps(results["cache_ms"]), json.dumps(results["cache_inside"]), flush=True)
        results["breaker"] = asyncio.run(breaker_opening(gateway, mock, layout.nats_url, creds))
        print("breaker:", json.dumps(results["breaker"]), flush=True)
    write_results(results, args.out, summary(results))
    return 0


def summary(r: dict) -> str:
    c, inside = r["client_ms"], r["inside"]
    lines = [
        "",
        "                     client p50/p99 ms     routing stage p50/p99 µs",
        f"direct to the mock   {c['direct']['p50']:>7.3f} / {c['direct']['p99']:<7.3f}",
    ]
    for name in ("single", "trio"):
        i = inside.get(name, {})
        lines.append(
            f"{name:<20} {c[name]['p50']:>7.3f} / {c[name]['p99']:<7.3f}   "
            f"{i.get('route_p50_us', 0):>8.1f} / {i.get('route_p99_us', 0):<8.1f}"
        )
    lines.append(
        f"3 deployments add: {c['trio']['p50'] - c['single']['p50']:+.3f} ms p50 end to end, "
        f"{inside['trio']['route_p50_us'] - inside['single']['route_p50_us']:+.1f} µs p50 in routing"
    )
    k, ki = r["cache_ms"], r["cache_inside"]
    hit, call = ki.get("cached", {}), ki.get("single", {})
    lines.append(
        f"cache hit {k['hit']['p50']:.3f} / {k['hit']['p99']:.3f} ms vs provider call "
        f"{k['provider_call']['p50']:.3f} / {k['provider_call']['p99']:.3f} ms (client p50 / p99); inside the "
        f"gateway {hit.get('latency_p50_ms')} / {hit.get('latency_p99_ms')} ms vs "
        f"{call.get('latency_p50_ms')} / {call.get('latency_p99_ms')} ms; cache stage p50 {hit.get('cache_p50_us')} µs"
    )
    b = r["breaker"]
    lines.append(
        f"breaker open {b['open_after_ms']} ms after the first 500; {b['tries_to_failing_deployment']} tries "
        f"went to it meanwhile ({b['requests_meanwhile']} requests, all answered by the second deployment)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
