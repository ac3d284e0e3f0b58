"""The analytics side on its own, in one process, on the embedded engine:

1. Sink throughput: batches of events (per request: its row, one upstream
   try, one stage visit) inserted as the sink inserts them, look-up of
   already-stored requests included; events per second.
2. Named queries over many rows: ``--rows`` request rows generated inside
   ClickHouse (through the same materialized views, so the rollups fill
   too), then each named query timed (median and worst of ``--repeat``):
   the analysts' ones, the dashboard's panels (one refresh) and the
   request view.

3. The process's memory (RSS) at rest after the migrations, after the
   inserts and after the queries, and its peak.

    python -m loadtest.analytics_bench [--seconds 15] [--rows 10000000] [--repeat 5] [--engine embedded]

``--engine clickhouse`` runs the engine with ClickHouse's own cache sizes
instead of ``analytics.store.EMBEDDED_ENGINE``: one engine per process, so
the two are compared in two runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from analytics.queries import NAMED
from analytics.rows import to_rows
from analytics.store import EMBEDDED_ENGINE, Store
from loadtest.bench import write_results
from schemas.events import AttemptEvent, Event, RequestEvent, StageEvent
from schemas.ids import new_id

# Rows spread over 30 days, 20 tenants, 200 keys, 8 models, 5% errors.
GENERATE = """
INSERT INTO requests (request_id, ts, origin, api, tenant_id, key_id, model, model_group, deployment, provider,
                      stream, status, prompt_tokens, completion_tokens, usage_source, cost_pico_usd,
                      latency_ns, ttft_ns, cache_hit)
SELECT
    concat('gen-', toString(number)),
    now64(9) - toIntervalSecond(number % (30 * 86400)),
    'http', 'chat',
    concat('tenant-', toString(number % 20)),
    concat('key-', toString(number % 200)),
    concat('model-', toString(number % 8)),
    concat('model-', toString(number % 8)),
    concat('dep-', toString(number % 16)),
    'openai',
    number % 3 = 0,
    if(number % 20 = 0, 500, 200),
    100 + number % 900,
    10 + number % 300,
    'reported',
    (100 + number % 900) * 150000 + (10 + number % 300) * 600000,
    (50 + number % 2000) * 1000000,
    (20 + number % 500) * 1000000,
    number % 10 = 0
FROM numbers({start:UInt64}, {rows:UInt64})
"""
# Rows generated per INSERT: one INSERT of millions, through the rollups'
# views, peaks at GBs (4.5 GB for 5 million rows), which a small machine
# running the gateway beside it does not have.
GENERATE_SLICE = 500_000
# Named queries worth timing over many rows, with their parameters.
TIMED = {
    "stats": {"minutes": 60 * 24 * 30},
    "spend": {"since_ns": 0},
    "hourly": {"since_ns": 0},
    "outcomes": {"since_ns": 0},
    "breakdown_by_model": {"since_ns": 0},
    "top_keys": {"hours": 24 * 30},
    "budget_burn": {"since_ns": 0, "tenant_id": "tenant-3"},
    "errors_by_type": {"minutes": 60 * 24},
}
# What one refresh of the dashboard asks (its default windows), and one request view.
DASHBOARD = {
    "per_minute": {"minutes": 60},
    "cost_by_tenant": {"hours": 24},
    "cost_by_model": {"hours": 24},
    "latency_by_model": {"hours": 24},
    "cache_savings": {"hours": 24},
    "recent_requests": {"minutes": 60},
    "alert_states": {"hours": 24},
}
REQUEST_VIEW = {
    "request": {"request_id": "gen-12345"},
    "stages": {"request_id": "gen-12345"},
    "attempts": {"request_id": "gen-12345"},
    "call_logs": {"request_id": "gen-12345"},
    "children": {"parent_id": "gen-12345"},
}


def request_events(n: int) -> list[Event]:
    now = time.time_ns()
    out: list[Event] = []
    for i in range(n):
        rid = new_id()
        out += [
            RequestEvent(
                event_id=new_id(), request_id=rid, received_at_ns=now + i, origin="http", api="chat",
                model="m", status=200, tenant_id="t", key_id="k", prompt_tokens=120, completion_tokens=40,
                cost_pico_usd=42_000_000, latency_ns=3_000_000,
            ),
            AttemptEvent(event_id=new_id(), request_id=rid, started_at_ns=now + i, deployment="d",
                         provider="openai", upstream_model="gpt-4o-mini", status=200),
            StageEvent(event_id=new_id(), request_id=rid, stage="policy", started_at_ns=now + i,
                       duration_ns=60_000, outcome="forward"),
        ]  # fmt: skip
    return out


def sink_throughput(store: Store, seconds: float, batch_requests: int) -> dict:
    """Only the sink's own work is timed: rows from events, and the insert."""
    inserted, elapsed = 0, 0.0
    while elapsed < seconds:
        events = request_events(batch_requests)
        t = time.perf_counter()
        store.insert(to_rows(events))
        elapsed += time.perf_counter() - t
        inserted += len(events)
    return {"events": inserted, "seconds": round(elapsed, 1), "events_per_s": round(inserted / elapsed)}


def query_latency(store: Store, rows: int, repeat: int) -> dict:
    t = time.perf_counter()
    for start in range(0, rows, GENERATE_SLICE):
        count = min(GENERATE_SLICE, rows - start)
        store.client.command(GENERATE.replace("{start:UInt64}", str(start)).replace("{rows:UInt64}", str(count)))
    generated_s = time.perf_counter() - t
    out: dict = {"rows": rows, "generate_s": round(generated_s, 1)}
    for group, queries in (("named", TIMED), ("dashboard", DASHBOARD), ("request_view", REQUEST_VIEW)):
        for name, params in queries.items():
            named = NAMED[name]
            bound = {k: params.get(k, default) for k, (_, default) in named.params.items()}
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                store.query(named.sql, bound)
                times.append((time.perf_counter() - t) * 1000)
            out.setdefault(group, {})[name] = {
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
            }
            print(f"{group} {name}: {out[group][name]}", flush=True)
        # The sink answers one query at a time: a refresh costs the sum.
        out[f"{group}_total_median_ms"] = round(sum(v["median_ms"] for v in out[group].values()), 1)
    return out


def memory_mb() -> dict:
    """This process's resident memory now and at its peak (Linux)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: round(int(status[key].split()[0]) / 1024, 1) for key in ("VmRSS", "VmHWM", "RssFile", "RssAnon")}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.analytics_bench")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--batch", type=int, default=1000, help="requests per insert (3 events each)")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--engine", choices=("embedded", "clickhouse"), default="embedded")
    parser.add_argument("--out", default="loadtest/results/analytics.json")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sluice-analytics-"))
    store = Store(f"chdb://{home / 'clickhouse'}", EMBEDDED_ENGINE if args.engine == "embedded" else {})
    results: dict = {"engine": args.engine, "memory_mb": {}}
    try:
        store.migrate()
        results["memory_mb"]["at rest"] = memory_mb()
        results["sink"] = sink_throughput(store, args.seconds, args.batch)
        results["memory_mb"]["after inserts"] = memory_mb()
        print("sink:", results["sink"], results["memory_mb"], flush=True)
        results["queries"] = query_latency(store, args.rows, args.repeat)
        results["memory_mb"]["after queries"] = memory_mb()
    finally:
        store.close()
        shutil.rmtree(home, ignore_errors=True)
    write_results(results, args.out, summary(results))
    return 0


def summary(r: dict) -> str:
    s, q = r["sink"], r["queries"]
    lines = [
        "",
        f"engine settings: {r['engine']}; memory, MB: "
        + "; ".join(f"{when} {m['VmRSS']} (peak {m['VmHWM']})" for when, m in r["memory_mb"].items()),
        f"sink: {s['events_per_s']} events/s into chdb ({s['events']} events in {s['seconds']} s, "
        "already-stored requests looked up per batch)",
        f"named queries over {q['rows']:,} generated request rows (generated in {q['generate_s']} s):",
    ]
    for group, title in (
        ("named", "named queries"),
        ("dashboard", "dashboard panels"),
        ("request_view", "request view"),
    ):
        lines.append(f"  {title}: {q[group + '_total_median_ms']:.1f} ms in all (medians summed)")
        lines += [
            f"    {name:<20} {v['median_ms']:>8.1f} ms median, {v['max_ms']:.1f} max" for name, v in q[group].items()
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
