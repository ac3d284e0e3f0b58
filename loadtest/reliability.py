"""The reliability table: each fault of the scale-out issue, under load, on a
gateway like ``sluice up --cluster 3`` (3 NATS nodes, streams R3, two
replicas of each stage and of the ingress; one sink, which owns the
embedded ClickHouse), and the numbers that say nothing was lost.

    python -m loadtest.reliability [--outage-s 60] [--callers 6] [--only NAME ...]

Per fault: requests attempted; succeeded; failed with a clear error (a JSON
error with a request id, an error event inside a stream, or a connection
refused or reset with no answer); lost (a success with no row, or a request
with no outcome: must be 0); duplicate rows (rows beyond one per request
in the raw table, no FINAL: must be 0) and conflicts (a request's second,
different row, kept in ``request_conflicts``: 0 unless a fault made a
request end twice); the spend difference (the rows' cost minus what the
upstream's complete answers cost, each priced as a baseline request of its
kind: 0, or more where work cut short was billed as it should be, a
killed provider's prompt or a cut stream's prompt and chunks); and
the time to recover (from the fault's end, a kill's instant, to the end of
the first success that started after it; for the sink, from its return
until the events that waited are stored).

Then a flood at 5x the ingress's capacity (``max_in_flight`` slots, on a
gateway of its own): how many were refused with 503 and Retry-After, how
fast /healthz answered meanwhile, and how soon after the flood requests
succeeded again. Results go to ``loadtest/results/reliability.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import nats.errors

from loadtest import faults
from loadtest.bench import parse_wrk, rss_mb
from loadtest.faults import Report
from schemas import subjects
from services.bus import process

if TYPE_CHECKING:
    from tests.stack import Stack

REPLICAS = {"provider": 2, "redact": 2, "cache": 2, "ingress": 2}
FLAKY = """
[[models]]
name = "flaky"
retries = 0
"""
FLOOD_SLOTS = 64


class Fault:
    def __init__(self, name: str, act: Callable[[], object], model: str = "demo-model") -> None:
        self.name, self.act, self.model = name, act, model
        # Set by a fault whose recovery is not the next answer (the sink's).
        self.recover_s: float | None = None


def faults_of(stack: Stack, outage_s: float) -> list[Fault]:
    sup = stack.supervisor
    upstream = f"{stack.mock_url}/mock/upstreams/flaky"

    def kill(name: str) -> Callable[[], None]:
        return lambda: faults.signal_to(sup.pids()[name], signal.SIGKILL)()

    def roll() -> None:
        for name in [n for n in sup.pids() if not n.startswith(("nats-server", "mock"))]:
            sup.restart(name)

    sink = Fault(f"sink stopped {outage_s:g} s", lambda: None)

    def sink_down() -> None:
        sup.hold("sink")
        time.sleep(outage_s)
        sup.release("sink")
        released = time.monotonic()
        # Back when it has taken every event that waited (new ones keep coming).
        while events_pending(stack) > 50:
            time.sleep(0.1)
        sink.recover_s = time.monotonic() - released

    sink.act = sink_down

    def upstream_for(directives: str) -> Callable[[], None]:
        def act() -> None:
            httpx.put(upstream, json={"directives": directives}, timeout=5).raise_for_status()
            time.sleep(min(outage_s, 10))
            httpx.delete(upstream, timeout=5).raise_for_status()

        return act

    return [
        Fault("SIGKILL a NATS node", kill("nats-server")),
        Fault("SIGKILL pipeline (1 of 2)", kill("pipeline")),
        Fault("SIGKILL redact (1 of 2)", kill("redact-1")),
        Fault("SIGKILL cache (1 of 2)", kill("cache")),
        Fault("SIGKILL ingress (1 of 2)", kill("ingress-1")),
        Fault("SIGTERM rolling restart", roll),
        sink,
        Fault("upstream 500s", upstream_for("[mock:status=500]"), "flaky"),
        Fault("upstream hangs (1 s timeout)", upstream_for("[mock:hang]"), "flaky"),
        Fault("upstream cuts streams", upstream_for("[mock:cut_after=2]"), "flaky"),
    ]


def events_pending(stack: Stack) -> int:
    async def ask() -> int:
        nc = await process.connect("reliability", stack.nats_url, stack.creds("admin"))
        try:
            info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, subjects.SINK_DURABLE)
            return info.num_pending + info.num_ack_pending
        finally:
            await nc.close()

    return asyncio.run(ask())


def rows_of(stack: Stack, request_id: str) -> list[dict]:
    try:
        result = stack.query("request", request_id=request_id)
    except nats.errors.NoRespondersError:  # the sink is (re)starting
        return []
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def wait_for_rows(stack: Stack, report: Report, timeout: float = 120) -> tuple[dict[str, list[dict]], float]:
    """Every outcome's rows, once the ones expected are stored (a success or a
    clear error with an id has one); and when that was (monotonic)."""
    started = time.monotonic()
    wanted = [o.request_id for o in report.outcomes if o.request_id]
    rows: dict[str, list[dict]] = {}
    while True:
        for rid in wanted:
            if not rows.get(rid):
                rows[rid] = rows_of(stack, rid)
        if all(rows[rid] for rid in wanted) or time.monotonic() - started > timeout:
            return rows, time.monotonic()
        time.sleep(0.5)


def baseline_costs(stack: Stack, model: str) -> dict[bool, int]:
    """The cost of one answer of each kind (streamed or not) of the fault load."""
    from tests.stack import DEMO_KEY

    report = faults.run(stack.base_url, [DEMO_KEY], stack.mock_url, "baseline", lambda: None,
                        callers=2, before_s=0.5, after_s=0.5, model=model)  # fmt: skip
    rows, _ = wait_for_rows(stack, report)
    cost: dict[bool, int] = {}
    for o in report.outcomes:
        if o.result == 200:
            cost[o.stream] = rows[o.request_id][0]["cost_pico_usd"]
    return cost


def measure(stack: Stack, fault: Fault, costs: dict[bool, int], callers: int) -> dict:
    from tests.stack import DEMO_KEY, REDACT_KEY

    before = stack.mock_stats()
    keys = [DEMO_KEY, REDACT_KEY] if fault.model == "demo-model" else [DEMO_KEY]
    report = faults.run(stack.base_url, keys, stack.mock_url, fault.name, fault.act,
                        callers=callers, after_s=5, model=fault.model)  # fmt: skip
    after = stack.mock_stats()
    rows, _ = wait_for_rows(stack, report)
    ok = [o for o in report.outcomes if o.result == 200]
    clear = [o for o in report.outcomes if o.result != 200 and (o.json_error or o.result == "connection")]
    lost = [o for o in ok if not rows.get(o.request_id)]
    lost += [o for o in report.outcomes if o.result != 200 and o not in clear]
    duplicates, conflicts = faults.rows_beyond_one(stack.query, report.window_ns[0])
    stored = sum(found[0]["cost_pico_usd"] for found in rows.values() if found)
    answered = {
        False: after["completed_requests"] - before["completed_requests"],
        True: after["completed_streams"] - before["completed_streams"],
    }
    expected = sum(answered[kind] * costs.get(kind, 0) for kind in (False, True))
    # From the fault's end (a kill's instant, an outage's last second) to the
    # first success started after it; the sink's outage never stopped
    # answers: it recovers when the events that waited are stored.
    firsts = [o.ended - report.fault_ended for o in ok if o.started >= report.fault_ended]
    recover = fault.recover_s if "sink" in fault.name else min(firsts, default=None)
    return {
        "fault": fault.name,
        "attempted": len(report.outcomes),
        "succeeded": len(ok),
        "failed_clearly": len(clear),
        "failed_by_kind": _kinds(clear),
        "lost": len(lost),
        "duplicate_rows": duplicates,
        "row_conflicts": conflicts,
        "spend_difference_usd": (stored - expected) / 1e12,
        "upstream_answers": answered[False] + answered[True],
        "recover_s": None if recover is None else round(max(recover, 0.0), 2),
    }


def _kinds(outcomes: list) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for o in outcomes:
        kinds[str(o.result)] = kinds.get(str(o.result), 0) + 1
    return kinds


def flood(stack: Stack, slots: int, seconds: int = 10) -> dict:
    """wrk at 5x ``slots`` connections for ``seconds``, each sending slow
    requests one after another: the slots stay full and every other request
    is refused, as fast as wrk can send them. Meanwhile a thread probes
    /healthz with its own connection, and one refusal is checked for its
    Retry-After; afterwards, how soon a request is answered again."""
    from tests.stack import DEMO_KEY

    body = {"model": "demo-model", "messages": [{"role": "user", "content": "flood [mock:latency_ms=1000]"}]}
    root = stack.base_url.removesuffix("/v1")
    script = stack.home / "flood.lua"
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{json.dumps(body)}'\n"
        f"wrk.headers['Content-Type'] = 'application/json'\nwrk.headers['Authorization'] = 'Bearer {DEMO_KEY}'\n"
    )
    ingress = stack.supervisor.pids()["ingress"]
    rss_before = rss_mb(ingress)
    health_ms: list[float] = []
    refusal: dict[str, str] = {}
    stop_probe = threading.Event()
    headers = {"authorization": f"Bearer {DEMO_KEY}"}

    def probe() -> None:
        with httpx.Client(base_url=root, timeout=10) as http:
            time.sleep(1)  # the slots are full by now
            while not refusal:
                r = http.post("/v1/chat/completions", json=body, headers=headers)
                if r.status_code == 503:
                    refusal.update(r.headers)
            while not stop_probe.is_set():
                t = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                health_ms.append((time.perf_counter() - t) * 1000)
                time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    cmd = ["wrk", "-t2", f"-c{5 * slots}", f"-d{seconds}s", "-s", str(script), f"{root}/v1/chat/completions"]
    try:
        result = parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    finally:
        stop_probe.set()
        prober.join()
    rss_during = rss_mb(ingress)
    flood_end = time.perf_counter()
    after = {**body, "messages": [{"role": "user", "content": "after the flood"}]}
    while httpx.post(f"{root}/v1/chat/completions", json=after, headers=headers, timeout=30).status_code != 200:
        time.sleep(0.05)
    return {
        "connections": 5 * slots,
        "slots": slots,
        "seconds": seconds,
        "requests": result["requests"],
        "requests_per_s": result["rps"],
        "refused_or_failed": result["errors"],
        "refusal_retry_after": refusal.get("retry-after"),
        "healthz_probes": len(health_ms),
        "healthz_ms_p50": round(statistics.median(health_ms), 1),
        "healthz_ms_p99": round(statistics.quantiles(health_ms, n=100)[98], 1),
        "healthz_ms_max": round(max(health_ms), 1),
        "ingress_rss_mb": [round(rss_before, 1), round(rss_during, 1)],
        "recovered_s": round(time.perf_counter() - flood_end, 3),
    }


def main() -> None:
    from tests.stack import Stack, mock_deployment

    parser = argparse.ArgumentParser(prog="python -m loadtest.reliability")
    parser.add_argument("--outage-s", type=float, default=60.0, help="how long the sink stays stopped")
    parser.add_argument("--callers", type=int, default=6)
    parser.add_argument("--only", nargs="*", help="faults whose name contains one of these words")
    parser.add_argument("--out", default="loadtest/results/reliability.json")
    args = parser.parse_args()
    extra = FLAKY + mock_deployment("flaky", timeout_s=1)
    home = Path(tempfile.mkdtemp(prefix="sluice-reliability-"))
    stack = Stack(home, timeout_s=30, extra_config=extra, cluster=3, replicas=REPLICAS)
    print(f"starting a 3-node cluster gateway in {home} ...", flush=True)
    stack.start()
    results: list[dict] = []
    try:
        costs = {"demo-model": baseline_costs(stack, "demo-model"), "flaky": baseline_costs(stack, "flaky")}
        header = (f"{'fault':30} {'tried':>6} {'ok':>6} {'clear err':>9} {'lost':>5} {'dup rows':>8} "
                  f"{'conflicts':>9} {'spend diff $':>12} {'recover s':>9}")  # fmt: skip
        print(header)
        for fault in faults_of(stack, args.outage_s):
            if args.only and not any(word in fault.name for word in args.only):
                continue
            r = measure(stack, fault, costs[fault.model], args.callers)
            results.append(r)
            recover = "-" if r["recover_s"] is None else f"{r['recover_s']:.2f}"
            print(f"{r['fault']:30} {r['attempted']:>6} {r['succeeded']:>6} {r['failed_clearly']:>9} {r['lost']:>5} "
                  f"{r['duplicate_rows']:>8} {r['row_conflicts']:>9} {r['spend_difference_usd']:>12.6f} {recover:>9}",
                  flush=True)  # fmt: skip
            time.sleep(2)
    finally:
        stack.stop()
    flood_home = Path(tempfile.mkdtemp(prefix="sluice-flood-"))
    flooded = Stack(flood_home, timeout_s=30, gateway=f"max_in_flight = {FLOOD_SLOTS}").start()
    try:
        f = flood(flooded, FLOOD_SLOTS)
    finally:
        flooded.stop()
    print(f"\nflood: wrk, {f['connections']} connections for {f['seconds']} s against {f['slots']} slots: "
          f"{f['requests']} requests ({f['requests_per_s']:.0f}/s), {f['refused_or_failed']} refused "
          f"(503, Retry-After: {f['refusal_retry_after']}); /healthz p50 {f['healthz_ms_p50']} ms, "
          f"p99 {f['healthz_ms_p99']} ms, max {f['healthz_ms_max']} ms over {f['healthz_probes']} probes; "
          f"ingress RSS {f['ingress_rss_mb'][0]} -> {f['ingress_rss_mb'][1]} MB; "
          f"answering again {f['recovered_s']} s after the flood")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"faults": results, "flood": f}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
