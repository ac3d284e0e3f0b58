"""What limits and budgets cost: the same gateway, two keys, one run.

One key has no limits; the other has requests, tokens and parallel limits and
a budget, all far above what the run reaches (so nothing is refused and only
the bookkeeping is measured). wrk drives each key in turn (open, limited,
open again, to see drift) at concurrency 1 and 64; the report gives the added
p50 and the requests/s lost.

Then the limiter alone, in this process against the same nats-server: how
many admissions per second one policy replica's leases sustain, and what one
awaited counter increment costs (the price of asking per request).

    python -m loadtest.limits_bench [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from loadtest.bench import CONFIG, LUA, PROMPT, run_wrk, write_results
from schemas.control import ApiKey, Budget, Limits
from services import quota as quota_svc
from services.bus import process
from services.bus.quota_ledger import Counters, QuotaLedger, settle
from services.cli.layout import Layout
from services.cli.named_query import query
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor

OPEN_KEY = "sk-bench-open-0123456789"
LIMITED_KEY = "sk-bench-limited-0123456789"
HIGH = Limits(rpm=10**9, tpm=10**12, max_parallel=100_000)
BUDGET = Budget(limit_pico_usd=10**6 * 10**12, period="monthly")  # $1,000,000


# Both keys in one run, request by request: the machine's noise (shared
# cores) falls on both alike, and the gateway's own rows tell them apart.
# With --unique-prompts every request's prompt differs (its number in front),
# so no count is remembered from an earlier request: the worst case for
# policy's token counting.
MIXED_LUA = """
wrk.method = "POST"
local template = {body}
wrk.headers["Content-Type"] = "application/json"
local keys = {{"Bearer {open}", "Bearer {limited}"}}
local n = 0
request = function()
  n = n + 1
  wrk.headers["Authorization"] = keys[n % 2 + 1]
  wrk.body = string.gsub(template, "@@N@@", {number})
  return wrk.format()
end
"""


def body(prefix: str = "") -> str:
    return json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": prefix + PROMPT}]})


async def limiter_alone(nats_url: str, creds: str, seconds: float) -> dict:
    nc = await process.connect("bench", nats_url, creds)
    try:
        counters = Counters(nc.jetstream())
        ledger = QuotaLedger(counters)
        subject = f"sluice.v1.quota.rate.key.bench-probe-{time.time_ns()}.rpm.0"
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            await counters.add(subject, 1)
            n += 1
        awaited_us = (time.perf_counter() - t0) / n * 1e6
        probe = f"probe{time.time_ns()}"
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            now_ms = int(time.time() * 1000)
            needs = quota_svc.needs("key", probe, HIGH, BUDGET, 0, now_ms, 1200, 3_000_000)
            reservation = await ledger.admit(needs, now_ms)
            # As the stage that ends each request does: the slot back, the estimate kept.
            settle(counters, reservation, 1200, 3_000_000)
            n += 1
        admissions = n / (time.perf_counter() - t0)
        await ledger.close()
        return {
            "awaited_increment_us": round(awaited_us, 1),
            "admissions_per_s": round(admissions),
            "holds_per_admission": len(reservation.holds),
        }
    finally:
        await nc.close()


def stage_times(layout: Layout, sup: Supervisor, since_ns: int) -> dict:
    """Median µs per stage for each key, from the gateway's own rows: the
    added time measured where it is spent, free of the client's noise."""
    time.sleep(2)  # the sink writes in batches
    params = {"since_ns": since_ns, "until_ns": time.time_ns()}
    res = asyncio.run(query("breakdown_by_key", params, layout.nats_url, creds=str(sup.creds_path("admin"))))
    return {row[0]: dict(zip(res["columns"][1:], row[1:], strict=True)) for row in res["rows"]}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.limits_bench")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--unique-prompts", action="store_true", help="the mixed run: every prompt different")
    parser.add_argument("--rounds", type=int, default=3, help="open/limited pairs per concurrency (medians reported)")
    parser.add_argument("--out", default="loadtest/results/limits.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="sluice-limits-"))
    mock = free_port()
    (home / "sluice.toml").write_text(CONFIG.format(mock=mock, provider="openai", base_path="/v1", model="gpt-4o-mini"))
    layout = Layout(
        home=home, config=home / "sluice.toml", nats_port=free_port(), http_port=free_port(), mock_port=mock
    )
    keys = {
        OPEN_KEY: ApiKey(id="open", tenant_id="bench"),
        LIMITED_KEY: ApiKey(id="limited", tenant_id="bench", limits=HIGH, budget=BUDGET),
    }
    sup = Supervisor(layout, extra_keys=keys)
    print(f"starting the gateway in {home} ...", flush=True)
    sup.start()
    results: dict = {"duration_s": args.duration, "runs": []}
    try:
        pids = sup.pids()
        url = f"http://127.0.0.1:{layout.http_port}/v1/chat/completions"
        scripts = {}
        for name, key in (("open", OPEN_KEY), ("limited", LIMITED_KEY)):
            scripts[name] = home / f"{name}.lua"
            scripts[name].write_text(LUA.format(body=json.dumps(body()), key=key))
        for concurrency in (1, args.concurrency):
            since = time.time_ns()
            for name in ("open", "limited") * args.rounds:
                run_wrk(url, scripts[name], concurrency, 2, pids)  # warm-up
                r = run_wrk(url, scripts[name], concurrency, args.duration, pids)
                r |= {"key": name, "concurrency": concurrency}
                results["runs"].append(r)
                print(
                    f"{name:8} c={concurrency:<3} rps={r['rps']:>8.0f} p50={r['p50_ms']:.3f}ms "
                    f"p99={r['p99_ms']:.3f}ms errors={r['errors']} policy_cpu_us={r['cpu_us_per_request']['policy']}",
                    flush=True,
                )
            results[f"stage_time_c{concurrency}"] = stage_times(layout, sup, since)
            print(f"median stage time per key, c={concurrency}: {results[f'stage_time_c{concurrency}']}")
            mixed = home / "mixed.lua"
            number = "tostring(n)" if args.unique_prompts else '""'
            template = json.dumps(body("@@N@@ "))
            mixed.write_text(MIXED_LUA.format(body=template, open=OPEN_KEY, limited=LIMITED_KEY, number=number))
            since = time.time_ns()
            r = run_wrk(url, mixed, concurrency, args.duration * 2, pids)
            r |= {"key": "mixed", "concurrency": concurrency}
            results["runs"].append(r)
            results[f"mixed_c{concurrency}"] = stage_times(layout, sup, since)
            print(f"mixed c={concurrency}: {results[f'mixed_c{concurrency}']}", flush=True)
        results["limiter"] = asyncio.run(limiter_alone(layout.nats_url, str(sup.creds_path("admin")), 4.0))
        print(f"limiter alone: {results['limiter']}")
    finally:
        sup.stop()
        shutil.rmtree(home, ignore_errors=True)
    write_results(results, args.out, summary(results))
    return 0


def summary(results: dict) -> str:
    lines = ["", "c     open rps  limited rps  change   open p50 ms  limited p50 ms  added p50 ms"]
    for c in sorted({r["concurrency"] for r in results["runs"]}):
        runs = [r for r in results["runs"] if r["concurrency"] == c and r["key"] != "mixed"]
        o = [r for r in runs if r["key"] == "open"]
        li = [r for r in runs if r["key"] == "limited"]
        o_rps, l_rps = median(r["rps"] for r in o), median(r["rps"] for r in li)
        o_p50, l_p50 = median(r["p50_ms"] for r in o), median(r["p50_ms"] for r in li)
        lines.append(
            f"{c:<3} {o_rps:>10.0f} {l_rps:>12.0f} {(l_rps / o_rps - 1) * 100:>+6.1f}% "
            f"{o_p50:>12.3f} {l_p50:>15.3f} {l_p50 - o_p50:>13.3f}"
        )
    lines.append("\nBoth keys in one run (medians from the requests rows):")
    lines.append("c     key       latency ms  policy µs  provider µs  ingress µs")
    for c in sorted({r["concurrency"] for r in results["runs"]}):
        mixed = results.get(f"mixed_c{c}", {})
        for key in ("open", "limited"):
            m = mixed.get(key)
            if m:
                lines.append(
                    f"{c:<5} {key:8} {m['latency_ms']:>11.3f} {m['policy_us']:>10.1f} "
                    f"{m['provider_us']:>12.1f} {m['ingress_us']:>11.1f}"
                )
        if "open" in mixed and "limited" in mixed:
            added = mixed["limited"]["latency_ms"] - mixed["open"]["latency_ms"]
            lines.append(f"      added by limits: {added:.3f} ms")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
