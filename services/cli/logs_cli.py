"""``sluice logs``: call logs (the bodies of opted-in tenants' calls), newest
last like a log file, read with the ``call_logs`` named query over NATS.
``--follow`` keeps printing calls as their rows land."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import nats.errors

from services.bus import process

Query = Callable[[str, dict, str, float, str | None], Coroutine[Any, Any, dict]]
# Whole bodies: a tenant's cap is at most 256 KiB, and the cut marker follows.
FULL_BODY_CHARS = 300_000
_AGO = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
# Rows of different stages land out of order by up to a batch interval and a
# pull: --follow looks back this far each time, and skips what it printed.
FOLLOW_LOOKBACK_NS = 30 * 1_000_000_000


def time_ns(text: str, now_ns: int) -> int:
    """``15m``, ``2h``, ``7d`` ago, or an ISO 8601 time (UTC unless it says)."""
    m = _AGO.match(text)
    if m:
        return now_ns - int(m.group(1)) * _UNIT_S[m.group(2)] * 1_000_000_000
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"sluice logs: {text!r} is not a time: write 15m, 2h, 7d or 2026-11-27T10:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1e9)


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KB"


def render(row: dict, full: bool) -> str:
    when = dt.datetime.fromtimestamp(row["ts_ns"] / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    head = (
        f"{when}  {row['request_id']}  {row['tenant_id']}/{row['key_id']}  {row['model']}  {row['status']}"
        f"  request {_size(row['request_bytes'])}, answer {_size(row['response_bytes'])}"
    )
    bodies = []
    for label, name in (("request", "request_body"), ("answer", "response_body")):
        body = row[name]
        if full:
            # A cut body is no longer JSON: shown as stored, marker and all.
            with contextlib.suppress(json.JSONDecodeError):
                body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        elif len(body) >= 300:
            body += " …"
        bodies.append(f"  {label}: {body}")
    return "\n".join([head, *bodies])


def _params(args: argparse.Namespace, now_ns: int) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": args.limit, "chars": FULL_BODY_CHARS if args.full else 300}
    for name, value in (
        ("tenant_id", args.tenant),
        ("key_id", args.key),
        ("model", args.model),
        ("status", args.status),
        ("request_id", args.request_id),
    ):
        if value:
            params[name] = value
    if args.since:
        params["since_ns"] = time_ns(args.since, now_ns)
    if args.until:
        params["until_ns"] = time_ns(args.until, now_ns)
    return params


async def _rows(query: Query, args: argparse.Namespace, params: dict) -> list[dict]:
    result = await query("call_logs", params, args.nats, 10.0, args.creds)
    if result.get("error"):
        raise SystemExit(f"sluice logs: the query failed: {result['error']}")
    rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
    return rows[::-1]  # oldest first: the newest line is the last one printed, as in a log file


async def run(args: argparse.Namespace, query: Query, out: Callable[[str], None] = print) -> int:
    params = _params(args, time.time_ns())

    def show(row: dict) -> None:
        out(json.dumps(row, ensure_ascii=False) if args.json else render(row, args.full))

    rows = await _rows(query, args, params)
    for row in rows:
        show(row)
    if not args.follow:
        if not rows and not args.json:
            out("No call logs match (tenants opt in with call_log_max_bytes).")
        return 0
    printed = {row["request_id"] for row in rows}
    newest = max((row["ts_ns"] for row in rows), default=time.time_ns())
    while True:
        await asyncio.sleep(args.interval)
        params["since_ns"] = max(0, newest - FOLLOW_LOOKBACK_NS)
        for row in await _rows(query, args, params):
            if row["request_id"] not in printed:
                printed.add(row["request_id"])
                newest = max(newest, row["ts_ns"])
                show(row)
        if len(printed) > 100_000:  # a long follow: forget what is far behind the look-back
            printed = set(list(printed)[-10_000:])


def add_parser(sub: argparse._SubParsersAction, nats_url: str, creds: str | None) -> None:
    p = sub.add_parser("logs", help="call logs: the bodies of opted-in tenants' calls (--follow for new ones)")
    p.add_argument("--tenant")
    p.add_argument("--key", help="an API key's id")
    p.add_argument("--model")
    p.add_argument("--status", help='a status code ("429") or "error" (400 and above)')
    p.add_argument("--request-id")
    p.add_argument("--since", default="1h", help="15m, 2h, 7d ago or an ISO time (default: 1h)")
    p.add_argument("--until", help="15m, 2h, 7d ago or an ISO time")
    p.add_argument("--limit", type=int, default=20, help="at most this many calls (default 20)")
    p.add_argument("--full", action="store_true", help="whole bodies, pretty-printed (default: their start)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new calls until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between looks with --follow")
    p.add_argument("--json", action="store_true", help="one JSON object per call")
    p.add_argument("--nats", default=nats_url)
    p.add_argument("--creds", default=creds, help="NATS credentials file (default: .sluice's admin)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from services.cli.named_query import query

    if not 1 <= args.limit <= 10_000:
        print("sluice logs: --limit must be between 1 and 10000", file=sys.stderr)
        return 1
    try:
        return asyncio.run(run(args, query))
    except KeyboardInterrupt:
        return 0
    except process.GatewayNotRunning as exc:
        print(f"sluice logs: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, nats.errors.Error) as exc:
        print(f"sluice logs: the analytics sink did not answer over NATS at {args.nats} ({exc!r})", file=sys.stderr)
        return 1
