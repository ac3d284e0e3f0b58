"""``sluice analytics``: the ClickHouse side, migrations and re-costing."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import msgspec
import nats.errors

from schemas import subjects
from services.bus import process


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the ordered migrations to chdb or a ClickHouse server (the sink
    also does at start): idempotent, each recorded in ``schema_migrations``."""
    from analytics.store import Store

    try:
        store = Store(args.clickhouse)
    except Exception as exc:  # a locked chdb directory, a server that does not answer
        print(f"sluice analytics migrate: cannot open {args.clickhouse.split('?')[0]}: {exc}", file=sys.stderr)
        return 1
    try:
        applied = store.migrate()
    finally:
        store.close()
    print("applied: " + ", ".join(applied) if applied else "already up to date")
    return 0


def cmd_recost(args: argparse.Namespace) -> int:
    """Recompute stored requests' cost from the current catalog (the sink
    does it, beside its ClickHouse) and print the difference per tenant."""
    from schemas.analytics import RecostRequest, RecostResult
    from services.cli.logs_cli import time_ns
    from services.cli.text_table import render_table
    from services.pricing import pico_to_usd

    now = time.time_ns()
    ask = RecostRequest(
        since_ns=time_ns(args.since, now),
        until_ns=time_ns(args.until, now) if args.until else 2**63 - 1,
        model=args.model or "",
        tenant_id=args.tenant or "",
        dry_run=args.dry_run,
    )

    async def send() -> RecostResult:
        nc = await process.connect_tool(args.nats, args.creds)
        try:
            msg = await nc.request(subjects.ANALYTICS_RECOST, msgspec.json.encode(ask), timeout=args.timeout)
        finally:
            await nc.close()
        return msgspec.json.decode(msg.data, type=RecostResult)

    try:
        result = asyncio.run(send())
    except process.GatewayNotRunning as exc:
        print(f"sluice analytics recost: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, nats.errors.Error) as exc:
        print(f"sluice analytics recost: the analytics sink did not answer at {args.nats} ({exc!r})", file=sys.stderr)
        return 1
    if result.error:
        print(f"sluice analytics recost: {result.error}", file=sys.stderr)
        return 1
    if args.json:
        print(msgspec.json.encode(result).decode())
        return 0

    def usd(pico: int) -> str:
        return f"{pico_to_usd(pico):.8f}"

    lines = []
    for t in result.tenants:
        change = t.new_cost_pico_usd - t.old_cost_pico_usd
        lines.append(
            [
                t.tenant_id or "(none)",
                str(t.requests),
                usd(t.old_cost_pico_usd),
                usd(t.new_cost_pico_usd),
                ("+" if change >= 0 else "-") + usd(abs(change)),
            ]
        )
    what = "Would change (dry run)" if args.dry_run else f"Corrected (recost {result.recost_id})"
    if lines:
        print(f"{what}, per tenant:")
        print("\n".join(render_table(["tenant", "requests", "old USD", "new USD", "difference USD"], lines, "lrrrr")))
    else:
        print("No stored cost differs from the current catalog: nothing to correct.")
    if result.unpriced:
        print(f"{result.unpriced} requests left as they were: their deployment is gone or has no catalog price.")
    return 0


def add_parser(sub: argparse._SubParsersAction, nats_url: str, creds: str | None) -> None:
    analytics = sub.add_parser("analytics", help="the ClickHouse side: migrations, re-costing")
    analytics_actions = analytics.add_subparsers(dest="action", required=True)
    migrate = analytics_actions.add_parser("migrate", help="apply the ordered SQL migrations (idempotent)")
    migrate.add_argument(
        "--clickhouse",
        default=os.environ.get("SLUICE_CLICKHOUSE_DSN", "chdb://.sluice/clickhouse"),
        help="chdb://PATH (stop the gateway first: one process owns it) or http://host:8123",
    )
    migrate.set_defaults(func=cmd_migrate)
    recost = analytics_actions.add_parser(
        "recost", help="recompute stored requests' cost from the current catalog (the originals are kept)"
    )
    recost.add_argument("--since", required=True, help="15m, 2h, 7d ago or an ISO time")
    recost.add_argument("--until", help="15m, 2h, 7d ago or an ISO time (default: now)")
    recost.add_argument("--model", help="only this model's requests")
    recost.add_argument("--tenant", help="only this tenant's requests")
    recost.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    recost.add_argument("--json", action="store_true")
    recost.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the sink")
    recost.add_argument("--nats", default=nats_url)
    recost.add_argument("--creds", default=creds, help="NATS credentials file (default: .sluice's admin)")
    recost.set_defaults(func=cmd_recost)
