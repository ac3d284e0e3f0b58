"""``sluice tenants|keys|subscriptions|limits|budgets``: the admin API from
the command line, as tables for people and ``--json`` for scripts.

The admin key comes from ``SLUICE_ADMIN_KEY``, else from the file ``sluice up``
wrote (``.sluice/admin-key``); the gateway from ``--url`` / ``SLUICE_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table


class AdminError(Exception):
    pass


def admin_key() -> str:
    key = os.environ.get("SLUICE_ADMIN_KEY")
    if key:
        return key.strip()
    path = Path(os.environ.get("SLUICE_HOME", ".sluice")) / "admin-key"
    if path.exists():
        return path.read_text().strip()
    raise AdminError(f"no admin key: set SLUICE_ADMIN_KEY, or run `sluice up` (it writes {path})")


def call(args: argparse.Namespace, method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
    url = f"{args.url.rstrip('/')}/admin/v1{path}"
    try:
        resp = httpx.request(
            method, url, json=body, params=params, headers={"authorization": f"Bearer {admin_key()}"}, timeout=30
        )
    except httpx.TransportError as exc:
        raise AdminError(f"no gateway answers at {args.url} ({exc}); start one with `sluice up`") from None
    if resp.status_code >= 400:
        try:
            err = resp.json()["error"]
            raise AdminError(f"{err['message']} (HTTP {resp.status_code}, {err['code']})")
        except (ValueError, KeyError, TypeError):
            raise AdminError(f"HTTP {resp.status_code}: {resp.text[:300]}") from None
    return resp.json()


# --- rendering -----------------------------------------------------------------


def _limits(d: dict) -> str:
    parts = [
        f"{d[k]} {label}" for k, label in (("rpm", "rpm"), ("tpm", "tpm"), ("max_parallel", "parallel")) if d.get(k)
    ]
    return ", ".join(parts) or "-"


def _budget(b: dict | None) -> str:
    return f"${b['usd']} {b['period']}" if b else "-"


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


COLUMNS: dict[str, list[tuple[str, Any]]] = {
    "tenant": [
        ("id", lambda r: r["id"]),
        ("limits", lambda r: _limits(r["limits"])),
        ("budget", lambda r: _budget(r["budget"])),
        ("owner", lambda r: r["owner"]),
        ("created", lambda r: _when(r["created_at"])),
    ],
    "key": [
        ("id", lambda r: r["id"]),
        ("tenant", lambda r: r["tenant"] or "-"),
        ("name", lambda r: r["name"] or "-"),
        ("role", lambda r: r["role"]),
        ("models", lambda r: " ".join(r["models"])),
        ("limits", lambda r: _limits(r["limits"])),
        ("budget", lambda r: _budget(r["budget"])),
        ("state", lambda r: "disabled" if r["disabled"] else "active"),
        ("expires", lambda r: _when(r["expires_at"])),
        ("last used", lambda r: _when(r["last_used_at"])),
    ],
    "subscription": [
        ("id", lambda r: r["id"]),
        ("tenant", lambda r: r["tenant"]),
        ("model", lambda r: r["model"]),
        ("state", lambda r: r["state"]),
        ("reason", lambda r: r["reason"] or "-"),
        ("decided by", lambda r: r["decided_by"] or "-"),
        ("created", lambda r: _when(r["created_at"])),
    ],
}


def show(args: argparse.Namespace, kind: str, data: Any) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
        return
    if kind == "usage":
        show_usage(data)
        return
    rows = data if isinstance(data, list) else [data]
    table = Table(show_edge=False, header_style="bold")
    for title, _ in COLUMNS[kind]:
        table.add_column(title, no_wrap=title in ("id", "tenant"), overflow="fold")
    for row in rows:
        table.add_row(*(str(get(row)) for _, get in COLUMNS[kind]))
    # Piped into a file or another program, rows stay whole rather than wrap at 80.
    console = Console(width=None if sys.stdout.isatty() else 250)
    console.print(table)
    if not isinstance(data, list) and data.get("secret"):
        console.print(f"\nsecret (shown once): [bold]{data['secret']}[/bold]")


def show_usage(data: dict) -> None:
    console = Console(width=None if sys.stdout.isatty() else 250)
    spend = Table(title=f"spend since {_when(data['since'])} UTC", show_edge=False, header_style="bold")
    for title in ("tenant", "key", "requests", "tokens", "cost USD"):
        spend.add_column(title, justify="right" if title in ("requests", "tokens", "cost USD") else "left")
    for r in data["spend"]:
        spend.add_row(r["tenant"], r["key"], str(r["requests"]), str(r["tokens"]), r["cost_usd"])
    console.print(spend)
    budgets = Table(title="budgets now", show_edge=False, header_style="bold")
    for title in ("scope", "id", "period", "limit USD", "committed USD", "remaining USD", "resets"):
        budgets.add_column(title)
    for b in data["budgets"]:
        budgets.add_row(
            b["scope"],
            b["id"],
            b["period"],
            b["limit_usd"],
            b["committed_usd"],
            b["remaining_usd"],
            _when(b["resets_at"]),
        )
    console.print(budgets)


# --- arguments shared by several commands --------------------------------------


def _add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpm", type=int, help="requests per minute")
    p.add_argument("--tpm", type=int, help="tokens per minute")
    p.add_argument("--max-parallel", type=int, help="requests in flight at once")


def _add_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-usd", help='spending cap in USD, e.g. "25.00"')
    p.add_argument("--budget-period", choices=["daily", "monthly", "total"], default="monthly")


def _add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-max-age", type=int, metavar="S", help="opt in to the response cache for up to S seconds")
    p.add_argument("--cache-default", type=int, metavar="S", help="cache requests that do not ask, for S seconds")


def _add_privacy(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--privacy-file",
        metavar="PATH",
        help='privacy rules as JSON, e.g. {"detectors": {"email": "mask"}} ("-": standard input; "off" removes them)',
    )


def _privacy_body(args: argparse.Namespace) -> Any:
    """The rules to send, UNSET-like None when not asked, "off" to remove them."""
    source = getattr(args, "privacy_file", None)
    if source is None or source == "off":
        return source
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AdminError(f"--privacy-file {source}: not JSON ({exc})") from None


def _cache_body(args: argparse.Namespace) -> dict | str | None:
    """The cache opt-in to send; "off" for --cache-max-age 0 (opt out)."""
    if args.cache_max_age is None:
        return None
    if args.cache_max_age == 0:
        return "off"
    return _without_none({"max_age_s": args.cache_max_age, "default_max_age_s": args.cache_default})


def _limits_body(args: argparse.Namespace) -> dict | None:
    pairs = (("rpm", args.rpm), ("tpm", args.tpm), ("max_parallel", args.max_parallel))
    limits = {k: v for k, v in pairs if v is not None}
    return limits or None


def _budget_body(args: argparse.Namespace) -> dict | None:
    return {"usd": args.budget_usd, "period": args.budget_period} if args.budget_usd is not None else None


def _metadata(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise AdminError(f"--meta {pair!r}: write NAME=VALUE")
        out[name] = value
    return out


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


# --- commands ------------------------------------------------------------------


def tenants(args: argparse.Namespace) -> Any:
    cache = _cache_body(args) if args.action in ("create", "update") else None
    if args.action == "create":
        body = _without_none({"id": args.name, "limits": _limits_body(args), "budget": _budget_body(args)})
        if isinstance(cache, dict):
            body["cache"] = cache
        rules = _privacy_body(args)
        if rules not in (None, "off"):
            body["privacy"] = rules
        return "tenant", call(args, "POST", "/tenants", body)
    if args.action == "list":
        return "tenant", call(args, "GET", "/tenants")
    if args.action == "show":
        return "tenant", call(args, "GET", f"/tenants/{args.name}")
    if args.action == "update":
        body = _without_none({"limits": _limits_body(args), "budget": _budget_body(args)})
        if cache is not None:
            body["cache"] = None if cache == "off" else cache
        rules = _privacy_body(args)
        if rules is not None:
            body["privacy"] = None if rules == "off" else rules
        return "tenant", call(args, "PATCH", f"/tenants/{args.name}", body)
    return None, call(args, "DELETE", f"/tenants/{args.name}")


def keys(args: argparse.Namespace) -> Any:
    if args.action == "create":
        body = _without_none(
            {
                "tenant": args.tenant,
                "name": args.name,
                "role": args.role,
                "models": args.models,
                "limits": _limits_body(args),
                "budget": _budget_body(args),
                "metadata": _metadata(args.meta) or None,
                "expires_at": args.expires_at,
                "may_pin": args.may_pin or None,
            }
        )
        return "key", call(args, "POST", "/keys", body)
    if args.action == "list":
        return "key", call(args, "GET", "/keys", params=_without_none({"tenant": args.tenant}))
    if args.action == "show":
        return "key", call(args, "GET", f"/keys/{args.id}")
    if args.action == "rotate":
        return "key", call(args, "POST", f"/keys/{args.id}/rotate", {"grace_seconds": args.grace_seconds})
    if args.action == "disable":
        return "key", call(args, "POST", f"/keys/{args.id}/disable")
    if args.action == "enable":
        return "key", call(args, "PATCH", f"/keys/{args.id}", {"disabled": False})
    return None, call(args, "DELETE", f"/keys/{args.id}")


def subscriptions(args: argparse.Namespace) -> Any:
    if args.action == "create":
        return "subscription", call(
            args, "POST", "/subscriptions", _without_none({"model": args.model, "tenant": args.tenant})
        )
    if args.action == "list":
        params = _without_none({"tenant": args.tenant, "status": args.status})
        return "subscription", call(args, "GET", "/subscriptions", params=params)
    if args.action == "show":
        return "subscription", call(args, "GET", f"/subscriptions/{args.id}")
    return "subscription", call(args, "POST", f"/subscriptions/{args.id}/{args.action}", {"reason": args.reason})


def _target(args: argparse.Namespace) -> tuple[str, str]:
    return ("key", f"/keys/{args.key}") if args.key else ("tenant", f"/tenants/{args.tenant}")


def limits(args: argparse.Namespace) -> Any:
    kind, path = _target(args)
    current = call(args, "GET", path)
    if args.action == "show":
        return kind, current
    # Only the limits named change; `--rpm 0` is refused by the API, not dropped.
    return kind, call(args, "PATCH", path, {"limits": {**current["limits"], **(_limits_body(args) or {})}})


def budgets(args: argparse.Namespace) -> Any:
    kind, path = _target(args)
    if args.action == "show":
        return kind, call(args, "GET", path)
    if args.action == "clear":
        return kind, call(args, "PATCH", path, {"budget": None})
    return kind, call(args, "PATCH", path, {"budget": {"usd": args.usd, "period": args.period}})


def usage(args: argparse.Namespace) -> Any:
    return "usage", call(args, "GET", "/usage", params=_without_none({"tenant": args.tenant, "since": args.since}))


def run(args: argparse.Namespace) -> int:
    try:
        kind, data = args.handler(args)
    except AdminError as exc:
        print(f"sluice {args.command} {args.action}: {exc}", file=sys.stderr)
        return 1
    if kind is None:  # a deletion
        print(json.dumps(data) if args.json else f"deleted {data['id']}")
    else:
        show(args, kind, data)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("SLUICE_URL", "http://127.0.0.1:8080"), help="the gateway")
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")

    def group(name: str, help_: str, handler: Any) -> argparse._SubParsersAction:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=run, handler=handler)
        return p.add_subparsers(dest="action", required=True)

    t = group("tenants", "tenants, with their limits and budgets", tenants)
    p = t.add_parser("create", parents=[common], help="a new tenant")
    p.add_argument("name")
    _add_limits(p)
    _add_budget(p)
    _add_cache(p)
    _add_privacy(p)
    t.add_parser("list", parents=[common])
    for action in ("show", "delete"):
        t.add_parser(action, parents=[common]).add_argument("name")
    p = t.add_parser(
        "update", parents=[common], help="change a tenant's limits, budget, cache (0: off) or privacy rules"
    )
    p.add_argument("name")
    _add_limits(p)
    _add_budget(p)
    _add_cache(p)
    _add_privacy(p)

    k = group("keys", "API keys: create (the secret is printed once), rotate, disable", keys)
    p = k.add_parser("create", parents=[common])
    p.add_argument("--tenant", help="required with a gateway admin key")
    p.add_argument("--name")
    p.add_argument("--role", choices=["caller", "tenant_admin", "gateway_admin"])
    p.add_argument("--models", nargs="+", metavar="PATTERN", help="model names or fnmatch patterns (default: all)")
    p.add_argument("--expires-at", help="ISO 8601 time with a zone, e.g. 2027-01-01T00:00:00Z")
    p.add_argument("--meta", nargs="+", metavar="NAME=VALUE")
    p.add_argument("--may-pin", action="store_true", help="may choose a deployment (x-sluice-deployment)")
    _add_limits(p)
    _add_budget(p)
    p = k.add_parser("list", parents=[common])
    p.add_argument("--tenant")
    for action in ("show", "disable", "enable", "delete"):
        k.add_parser(action, parents=[common]).add_argument("id")
    p = k.add_parser("rotate", parents=[common], help="a new secret; the old one works --grace-seconds more")
    p.add_argument("id")
    p.add_argument("--grace-seconds", type=int, default=0)

    s = group("subscriptions", "subscriptions to models that need approval", subscriptions)
    p = s.add_parser("create", parents=[common])
    p.add_argument("model", help="a model name or pattern")
    p.add_argument("--tenant")
    p = s.add_parser("list", parents=[common])
    p.add_argument("--tenant")
    p.add_argument("--status", choices=["pending", "approved", "rejected", "revoked"])
    s.add_parser("show", parents=[common]).add_argument("id")
    for action in ("approve", "reject", "revoke"):
        p = s.add_parser(action, parents=[common])
        p.add_argument("id")
        p.add_argument("--reason", default="")

    p = sub.add_parser("usage", parents=[common], help="spend per key, and where each budget stands")
    p.set_defaults(func=run, handler=usage, action="show")
    p.add_argument("--tenant")
    p.add_argument("--since", help="ISO 8601 time with a zone (default: the start of this UTC month)")

    for name, handler in (("limits", limits), ("budgets", budgets)):
        g = group(name, f"a key's or a tenant's {name}", handler)
        actions = ("set", "show") if name == "limits" else ("set", "show", "clear")
        for action in actions:
            p = g.add_parser(action, parents=[common])
            who = p.add_mutually_exclusive_group(required=True)
            who.add_argument("--key")
            who.add_argument("--tenant")
            if action == "set" and name == "limits":
                _add_limits(p)
            elif action == "set":
                p.add_argument("--usd", required=True)
                p.add_argument("--period", choices=["daily", "monthly", "total"], default="monthly")
