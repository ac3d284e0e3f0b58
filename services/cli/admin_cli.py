"""``sluice tenants|keys|subscriptions|limits|budgets``: the admin API from
the command line, as tables for people and ``--json`` for scripts.

The admin key comes from ``SLUICE_ADMIN_KEY``, else from the file ``sluice up``
wrote (``.sluice/admin-key``); the gateway from ``--url`` / ``SLUICE_URL``.

Requests are the admin API's own shapes (``schemas.admin``), encoded by
msgspec; answers are read back into them for the tables, and ``--json``
prints them as the API gave them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import httpx
import msgspec
from msgspec import UNSET, UnsetType
from rich.console import Console
from rich.table import Table

from schemas.admin import (
    BudgetIn,
    BudgetOut,
    CacheIn,
    Decision,
    Deleted,
    KeyCreate,
    KeyOut,
    KeyRotate,
    KeyUpdate,
    KeyWithSecret,
    LimitsIn,
    SubscriptionCreate,
    SubscriptionOut,
    TenantCreate,
    TenantOut,
    TenantUpdate,
    UsageOut,
)
from schemas.control import Period, PrivacyRules, Role, SubscriptionState

T = TypeVar("T")


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


_json = msgspec.json.Encoder()


def call(
    args: argparse.Namespace, method: str, path: str, body: msgspec.Struct | None = None, params: dict | None = None
) -> Any:
    """The admin API's JSON answer; ``body`` is one of its request shapes (``schemas.admin``)."""
    url = f"{args.url.rstrip('/')}/admin/v1{path}"
    headers = {"authorization": f"Bearer {admin_key()}"}
    content = None
    if body is not None:
        content = _json.encode(body)
        headers["content-type"] = "application/json"
    try:
        resp = httpx.request(method, url, content=content, params=params, headers=headers, timeout=30)
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


def _limits(limits: LimitsIn) -> str:
    pairs = ((limits.rpm, "rpm"), (limits.tpm, "tpm"), (limits.max_parallel, "parallel"))
    return ", ".join(f"{n} {label}" for n, label in pairs if n) or "-"


def _budget(b: BudgetOut | None) -> str:
    return f"${b.usd} {b.period}" if b else "-"


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _tenant_row(t: TenantOut) -> list[str]:
    return [t.id, _limits(t.limits), _budget(t.budget), t.owner, _when(t.created_at)]


def _key_row(k: KeyOut) -> list[str]:
    return [
        k.id,
        k.tenant or "-",
        k.name or "-",
        k.role,
        " ".join(k.models),
        _limits(k.limits),
        _budget(k.budget),
        "disabled" if k.disabled else "active",
        _when(k.expires_at),
        _when(k.last_used_at),
    ]


def _subscription_row(s: SubscriptionOut) -> list[str]:
    return [s.id, s.tenant, s.model, s.state, s.reason or "-", s.decided_by or "-", _when(s.created_at)]


_KEY_TABLE = (
    ["id", "tenant", "name", "role", "models", "limits", "budget", "state", "expires", "last used"],
    _key_row,
)
# An answer's shape -> its table's titles, and a row of it.
TABLES: dict[type, tuple[list[str], Callable[[Any], list[str]]]] = {
    TenantOut: (["id", "limits", "budget", "owner", "created"], _tenant_row),
    KeyOut: _KEY_TABLE,
    KeyWithSecret: _KEY_TABLE,
    SubscriptionOut: (["id", "tenant", "model", "state", "reason", "decided by", "created"], _subscription_row),
}


def show(args: argparse.Namespace, shape: type, data: Any) -> None:
    """The answer as the API gave it (``--json``), else read as ``shape`` into a table."""
    if args.json:
        print(json.dumps(data, indent=2))
        return
    if shape is UsageOut:
        show_usage(msgspec.convert(data, UsageOut))
        return
    rows = msgspec.convert(data if isinstance(data, list) else [data], list[shape])
    titles, row_of = TABLES[shape]
    table = Table(show_edge=False, header_style="bold")
    for title in titles:
        table.add_column(title, no_wrap=title in ("id", "tenant"), overflow="fold")
    for row in rows:
        table.add_row(*row_of(row))
    # Piped into a file or another program, rows stay whole rather than wrap at 80.
    console = Console(width=None if sys.stdout.isatty() else 250)
    console.print(table)
    for row in rows:
        if isinstance(row, KeyWithSecret):
            console.print(f"\nsecret (shown once): [bold]{row.secret}[/bold]")


def show_usage(data: UsageOut) -> None:
    console = Console(width=None if sys.stdout.isatty() else 250)
    spend = Table(title=f"spend since {_when(data.since)} UTC", show_edge=False, header_style="bold")
    for title in ("tenant", "key", "requests", "tokens", "cost USD"):
        spend.add_column(title, justify="right" if title in ("requests", "tokens", "cost USD") else "left")
    for r in data.spend:
        spend.add_row(r.tenant, r.key, str(r.requests), str(r.tokens), r.cost_usd)
    console.print(spend)
    budgets = Table(title="budgets now", show_edge=False, header_style="bold")
    for title in ("scope", "id", "period", "limit USD", "committed USD", "remaining USD", "resets"):
        budgets.add_column(title)
    for b in data.budgets:
        budgets.add_row(b.scope, b.id, b.period, b.limit_usd, b.committed_usd, b.remaining_usd, _when(b.resets_at))
    console.print(budgets)


# --- arguments shared by several commands --------------------------------------


def _add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpm", type=int, help="requests per minute")
    p.add_argument("--tpm", type=int, help="tokens per minute")
    p.add_argument("--max-parallel", type=int, help="requests in flight at once")


def _add_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-usd", help='spending cap in USD, e.g. "25.00"')
    p.add_argument("--budget-period", choices=get_args(Period), default="monthly")


def _add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-max-age", type=int, metavar="S", help="opt in to the response cache for up to S seconds")
    p.add_argument(
        "--cache-default", type=int, default=0, metavar="S", help="cache requests that do not ask, for S seconds"
    )


def _add_privacy(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--privacy-file",
        metavar="PATH",
        help='privacy rules as JSON, e.g. {"detectors": {"email": "mask"}} ("-": standard input; "off" removes them)',
    )


def _privacy_of(args: argparse.Namespace) -> PrivacyRules | UnsetType | None:
    """The rules to send: UNSET when not asked, None to remove them ("off")."""
    source = args.privacy_file
    if source is None:
        return UNSET
    if source == "off":
        return None
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        # As lax as the admin API's own reading (Litestar converts with strict=False).
        return msgspec.json.decode(text, type=PrivacyRules, strict=False)
    except msgspec.ValidationError as exc:
        raise AdminError(f"--privacy-file {source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise AdminError(f"--privacy-file {source}: not JSON ({exc})") from None


def _cache_of(args: argparse.Namespace) -> CacheIn | UnsetType | None:
    """The cache opt-in to send: UNSET when not asked, None to opt out (--cache-max-age 0)."""
    if args.cache_max_age is None:
        return UNSET
    if args.cache_max_age == 0:
        return None
    try:
        return CacheIn(max_age_s=args.cache_max_age, default_max_age_s=args.cache_default)
    except ValueError as exc:  # what the API would refuse too
        raise AdminError(f"--cache-default: {exc}") from None


def _limits_of(args: argparse.Namespace, base: LimitsIn | None = None) -> LimitsIn:
    """``base`` (no limits, unless given) with the limits named on the command line."""
    base = base or LimitsIn()
    return LimitsIn(
        rpm=base.rpm if args.rpm is None else args.rpm,
        tpm=base.tpm if args.tpm is None else args.tpm,
        max_parallel=base.max_parallel if args.max_parallel is None else args.max_parallel,
    )


def _budget_of(args: argparse.Namespace) -> BudgetIn | None:
    return BudgetIn(usd=args.budget_usd, period=args.budget_period) if args.budget_usd is not None else None


def _metadata(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise AdminError(f"--meta {pair!r}: write NAME=VALUE")
        out[name] = value
    return out


def _time_of(flag: str, text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return msgspec.convert(text, dt.datetime)
    except msgspec.ValidationError:
        raise AdminError(f"{flag} {text!r}: write an ISO 8601 time with a zone, e.g. 2027-01-01T00:00:00Z") from None


def _unset_if_none(value: T | None) -> T | UnsetType:
    return UNSET if value is None else value


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


# --- commands ------------------------------------------------------------------
# Each answers (the shape of the API's answer, the answer).


def tenants(args: argparse.Namespace) -> tuple[type, Any]:
    if args.action == "create":
        cache, rules = _cache_of(args), _privacy_of(args)
        body = TenantCreate(
            id=args.name,
            limits=_limits_of(args),
            budget=_budget_of(args),
            cache=cache if isinstance(cache, CacheIn) else None,
            privacy=rules if isinstance(rules, PrivacyRules) else None,
        )
        return TenantOut, call(args, "POST", "/tenants", body)
    if args.action == "list":
        return TenantOut, call(args, "GET", "/tenants")
    if args.action == "show":
        return TenantOut, call(args, "GET", f"/tenants/{args.name}")
    if args.action == "update":
        limits = _limits_of(args)
        change = TenantUpdate(
            limits=limits if limits != LimitsIn() else UNSET,
            budget=_unset_if_none(_budget_of(args)),
            cache=_cache_of(args),
            privacy=_privacy_of(args),
        )
        return TenantOut, call(args, "PATCH", f"/tenants/{args.name}", change)
    return Deleted, call(args, "DELETE", f"/tenants/{args.name}")


def keys(args: argparse.Namespace) -> tuple[type, Any]:
    if args.action == "create":
        body = KeyCreate(
            tenant=args.tenant,
            name=args.name,
            role=args.role,
            models=args.models,
            limits=_limits_of(args),
            budget=_budget_of(args),
            metadata=_metadata(args.meta),
            expires_at=_time_of("--expires-at", args.expires_at),
            may_pin=args.may_pin,
        )
        return KeyWithSecret, call(args, "POST", "/keys", body)
    if args.action == "list":
        return KeyOut, call(args, "GET", "/keys", params=_without_none({"tenant": args.tenant}))
    if args.action == "show":
        return KeyOut, call(args, "GET", f"/keys/{args.id}")
    if args.action == "rotate":
        return KeyWithSecret, call(args, "POST", f"/keys/{args.id}/rotate", KeyRotate(grace_seconds=args.grace_seconds))
    if args.action == "disable":
        return KeyOut, call(args, "POST", f"/keys/{args.id}/disable")
    if args.action == "enable":
        return KeyOut, call(args, "PATCH", f"/keys/{args.id}", KeyUpdate(disabled=False))
    return Deleted, call(args, "DELETE", f"/keys/{args.id}")


def subscriptions(args: argparse.Namespace) -> tuple[type, Any]:
    if args.action == "create":
        return SubscriptionOut, call(
            args, "POST", "/subscriptions", SubscriptionCreate(model=args.model, tenant=args.tenant)
        )
    if args.action == "list":
        params = _without_none({"tenant": args.tenant, "status": args.status})
        return SubscriptionOut, call(args, "GET", "/subscriptions", params=params)
    if args.action == "show":
        return SubscriptionOut, call(args, "GET", f"/subscriptions/{args.id}")
    decision = Decision(reason=args.reason)
    return SubscriptionOut, call(args, "POST", f"/subscriptions/{args.id}/{args.action}", decision)


def _target(args: argparse.Namespace) -> tuple[type[KeyOut] | type[TenantOut], type[KeyUpdate | TenantUpdate], str]:
    """(its answer's shape, its change's shape, its path) for --key or --tenant."""
    if args.key:
        return KeyOut, KeyUpdate, f"/keys/{args.key}"
    return TenantOut, TenantUpdate, f"/tenants/{args.tenant}"


def limits(args: argparse.Namespace) -> tuple[type, Any]:
    shape, update, path = _target(args)
    current = call(args, "GET", path)
    if args.action == "show":
        return shape, current
    # Only the limits named change; `--rpm 0` is refused by the API, not dropped.
    now = msgspec.convert(current, shape).limits
    return shape, call(args, "PATCH", path, update(limits=_limits_of(args, now)))


def budgets(args: argparse.Namespace) -> tuple[type, Any]:
    shape, update, path = _target(args)
    if args.action == "show":
        return shape, call(args, "GET", path)
    if args.action == "clear":
        return shape, call(args, "PATCH", path, update(budget=None))
    return shape, call(args, "PATCH", path, update(budget=BudgetIn(usd=args.usd, period=args.period)))


def usage(args: argparse.Namespace) -> tuple[type, Any]:
    return UsageOut, call(args, "GET", "/usage", params=_without_none({"tenant": args.tenant, "since": args.since}))


def run(args: argparse.Namespace) -> int:
    try:
        shape, data = args.handler(args)
    except AdminError as exc:
        print(f"sluice {args.command} {args.action}: {exc}", file=sys.stderr)
        return 1
    if shape is Deleted:
        print(json.dumps(data) if args.json else f"deleted {msgspec.convert(data, Deleted).id}")
    else:
        show(args, shape, data)
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
    p.add_argument("--name", default="")
    p.add_argument("--role", choices=get_args(Role), default="caller")
    p.add_argument(
        "--models", nargs="+", default=["*"], metavar="PATTERN", help="model names or fnmatch patterns (default: all)"
    )
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
    p.add_argument("--status", choices=get_args(SubscriptionState))
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
                p.add_argument("--period", choices=get_args(Period), default="monthly")
