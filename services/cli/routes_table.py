"""``sluice routes``: every model group with its deployments, their weights
and priorities, breaker states (the ``sluice_health`` bucket routing replicas
write) and recent tries and latency (ClickHouse, through the analytics sink)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client

from schemas import subjects
from schemas.control import decode_route
from schemas.health import decode_breaker
from services.bus.kv import read_bucket
from services.cli.text_table import render_table

HEADERS = [
    "model",
    "strategy",
    "deployment",
    "provider",
    "weight",
    "prio",
    "split %",
    "breaker",
    "tries",
    "fail",
    "p50 ms",
]


async def gather(nc: Client, minutes: int = 15) -> list[dict[str, Any]]:
    groups = await read_bucket(nc, subjects.KV_MODELS, decode_route)
    breakers = await read_bucket(nc, subjects.KV_HEALTH, decode_breaker)
    recent: dict[str, dict[str, Any]] = {}
    try:
        ask = msgspec.json.encode({"name": "deployments", "params": {"minutes": minutes}})
        result = msgspec.json.decode((await nc.request(subjects.ANALYTICS_QUERY, ask, timeout=5)).data)
        if not result.get("error"):
            recent = {row[0]: dict(zip(result["columns"], row, strict=True)) for row in result["rows"]}
    except (TimeoutError, nats.errors.Error):
        pass  # without the sink the table still shows the groups and breakers
    now_ms = int(time.time() * 1000)
    rows = []
    for name, group in sorted(groups.items()):
        for dep in group.deployments:
            breaker = breakers.get(dep.name)
            seen = recent.get(dep.name, {})
            rows.append(
                {
                    "model": name,
                    "aliases": group.aliases,
                    "strategy": group.strategy,
                    "deployment": dep.name,
                    "provider": dep.provider,
                    "weight": dep.weight,
                    "priority": dep.priority,
                    "split_percent": group.split.get(dep.name),
                    "breaker": breaker.state if breaker else "closed",
                    "breaker_for_s": round((now_ms - breaker.since_ms) / 1000) if breaker else None,
                    "tries": int(seen.get("tries", 0)),
                    "failed": int(seen.get("failed", 0)),
                    "p50_ttfb_ms": seen.get("p50_ttfb_ms"),
                }
            )
    return rows


def render(rows: list[dict[str, Any]], minutes: int) -> str:
    lines = []
    for r in rows:
        breaker = r["breaker"] if r["breaker_for_s"] is None else f"{r['breaker']} {r['breaker_for_s']}s"
        name = r["model"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "")
        p50 = r["p50_ttfb_ms"]
        lines.append(
            [
                name,
                r["strategy"],
                r["deployment"],
                r["provider"],
                f"{r['weight']:g}",
                str(r["priority"]),
                "-" if r["split_percent"] is None else f"{r['split_percent']:g}",
                breaker,
                str(r["tries"]),
                str(r["failed"]),
                "-" if p50 is None or p50 != p50 else f"{p50:.1f}",  # NaN: no success yet
            ]
        )
    title = f"Model groups (tries and latency: last {minutes} min; breaker: state and how long it has held)"
    return "\n".join([title, *render_table(HEADERS, lines, "llllrrrlrrr")])
