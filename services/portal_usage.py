"""The portal's usage page, without I/O: what the named query is asked
(narrowed there to what the person may see), and its rows summed per API
and per day.

The narrowing is the query's own parameters, never a filter over rows
fetched for everyone: a developer's view is their tenant and the keys of
their apps (``key_ids``), a tenant admin's the tenant, a gateway admin's the
whole gateway. A developer with no key has nothing to ask for: no query is
made (an empty ``key_ids`` would mean every key).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import msgspec

from schemas.errors import InvalidRequest
from services import pricing
from services.portal_scope import Who

# The named query (``analytics/named/hourly.sql``): the hourly rollup, with
# re-costing corrections, so the spend is what the budgets count.
QUERY = "hourly"
DEFAULT_DAYS = 30
MAX_DAYS = 90
# A developer's keys travel in one query parameter; past this many the
# page asks for a tenant admin's view instead of a huge parameter.
MAX_KEYS = 1000
NS_PER_DAY = 86_400 * 10**9


def days_of(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_DAYS
    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise InvalidRequest(f"days must be a whole number from 1 to {MAX_DAYS}.", code="invalid_window")
    return int(value)


def query_params(who: Who, key_ids: Sequence[str], days: int, now_ns: int) -> dict[str, int | str] | None:
    """The query's parameters for the person's view; None when there is
    nothing they may see (a developer without keys)."""
    since = max(0, now_ns - days * NS_PER_DAY)
    # The start of that day (UTC), so the first day's bar is a whole day.
    since -= since % NS_PER_DAY
    if who.is_gateway_admin:
        return {"since_ns": since, "tenant_id": "", "key_ids": ""}
    if who.is_admin:
        return {"since_ns": since, "tenant_id": who.tenant_id, "key_ids": ""}
    if not key_ids:
        return None
    if len(key_ids) > MAX_KEYS:
        raise InvalidRequest(f"More than {MAX_KEYS} keys: ask a tenant admin for the tenant's usage.", code="too_many")
    return {"since_ns": since, "tenant_id": who.tenant_id, "key_ids": ",".join(key_ids)}


class Line(msgspec.Struct):
    """Requests, errors, tokens and exact spend of one API (on one day, or in all)."""

    api: str
    day: str = ""
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    cost_pico_usd: int = 0

    @property
    def cost_usd(self) -> str:
        return usd(self.cost_pico_usd)

    def add(self, requests: int, errors: int, tokens: int, cost: int) -> None:
        self.requests += requests
        self.errors += errors
        self.tokens += tokens
        self.cost_pico_usd += cost


class Usage(msgspec.Struct):
    days: list[str]
    # Per API and day, by day then API.
    daily: list[Line]
    # Per API over the window, the priciest first.
    per_api: list[Line]
    total: Line


def usd(pico: int) -> str:
    """Exact dollars: every pico-USD shown, no rounding."""
    return format(pricing.pico_to_usd(pico).normalize(), "f")


def _day(hour: Any) -> str:
    """The UTC day of a rollup hour, as the sink's JSON gives it (ISO text) or as seconds."""
    if isinstance(hour, int | float):
        return dt.datetime.fromtimestamp(hour, dt.UTC).date().isoformat()
    return str(hour)[:10]


def summarize(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Usage:
    at = {name: i for i, name in enumerate(columns)}
    daily: dict[tuple[str, str], Line] = {}
    per_api: dict[str, Line] = {}
    total = Line(api="")
    for row in rows:
        day, api = _day(row[at["hour"]]), str(row[at["model"]] or "(none)")
        counts = (
            int(row[at["requests"]]),
            int(row[at["errors"]]),
            int(row[at["prompt_tokens"]]) + int(row[at["completion_tokens"]]),
            int(row[at["cost_pico_usd"]]),
        )
        daily.setdefault((day, api), Line(api=api, day=day)).add(*counts)
        per_api.setdefault(api, Line(api=api)).add(*counts)
        total.add(*counts)
    return Usage(
        days=sorted({day for day, _ in daily}),
        daily=[daily[k] for k in sorted(daily)],
        per_api=sorted(per_api.values(), key=lambda line: (-line.cost_pico_usd, -line.requests, line.api)),
        total=total,
    )


def chart_data(usage: Usage) -> dict[str, Any]:
    """What the page's script draws: per API, a series over the days
    (requests, errors, spend). Spend in the chart is a float of dollars (a
    bar's height); the tables beside it give the exact amounts."""
    by_key = {(line.day, line.api): line for line in usage.daily}
    series = []
    for api in (line.api for line in usage.per_api):
        lines = [by_key.get((day, api)) for day in usage.days]
        series.append(
            {
                "api": api,
                "requests": [line.requests if line else 0 for line in lines],
                "errors": [line.errors if line else 0 for line in lines],
                "cost_usd": [float(pricing.pico_to_usd(line.cost_pico_usd)) if line else 0.0 for line in lines],
            }
        )
    return {"days": usage.days, "series": series}
