"""How each API in the catalog is doing now: p50 latency and error rate
over the last hour, from two named queries for every API at once (never a
query per entry: the catalog lists hundreds).

``stats`` (per requested model, per-minute rollup) covers model groups,
REST services (``service:<slug>``) and MCP tools (``<server>__<tool>``);
``prompt_versions`` (the ``api_calls`` table) covers prompt APIs. The
numbers are the API's across every tenant, as a status page's are: a rate
and a median, never another tenant's counts. Analytics that does not answer
in time leaves them unknown ("—"), never an error page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.analytics import QueryResult
from schemas.errors import GatewayError

log = logging.getLogger("sluice.portal")
WINDOW_MINUTES = 60
# A page waits this long for analytics, then shows what it has.
QUERY_TIMEOUT_S = 2.0
# Numbers an hour wide need not be fresher than this; a burst of page views
# asks analytics once.
FRESH_S = 15.0

Ask = Callable[[str, dict[str, int | str]], Awaitable[QueryResult]]


@dataclass(frozen=True, slots=True)
class Health:
    requests: int
    errors: int
    p50_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True, slots=True)
class Stats:
    """The last hour's numbers by requested model name and by prompt name;
    ``known`` False when analytics did not answer."""

    by_model: Mapping[str, Health] = field(default_factory=dict)
    by_prompt: Mapping[str, Health] = field(default_factory=dict)
    known: bool = False

    def combined(self, names: Iterable[str]) -> Health | None:
        """One API reached under several names (a group and its aliases, a
        server's tools): requests and errors add up; the median is the
        busiest name's (medians do not add)."""
        return _combine(self.by_model.get(n) for n in names)

    def prompt(self, name: str) -> Health | None:
        return self.by_prompt.get(name)


def _combine(found: Iterable[Health | None]) -> Health | None:
    parts = [h for h in found if h is not None]
    if not parts:
        return None
    busiest = max(parts, key=lambda h: h.requests)
    return Health(sum(h.requests for h in parts), sum(h.errors for h in parts), busiest.p50_ms)


def _rows(result: QueryResult) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def _p50(value: Any) -> float | None:
    if isinstance(value, list | tuple) and value and isinstance(value[0], int | float):
        return float(value[0])
    return float(value) if isinstance(value, int | float) else None


def by_model(result: QueryResult) -> dict[str, Health]:
    return {
        str(r["model"]): Health(int(r["requests"]), int(r["errors"]), _p50(r.get("latency_ms"))) for r in _rows(result)
    }


def by_prompt(result: QueryResult) -> dict[str, Health]:
    """Per prompt, over its versions (a rollout runs two at once)."""
    grouped: dict[str, list[Health | None]] = {}
    for r in _rows(result):
        health = Health(int(r["calls"]), int(r["errors"]), _p50(r.get("p50_latency_ms")))
        grouped.setdefault(str(r["prompt_name"]), []).append(health)
    return {name: h for name, parts in grouped.items() if (h := _combine(parts)) is not None}


async def gather(ask: Ask, now_ns: int) -> Stats:
    """Both queries at once, each bounded; either failing leaves all unknown
    (a half-known catalog would read as "no traffic" for the other half)."""
    since_ns = now_ns - WINDOW_MINUTES * 60 * 10**9
    try:
        models, prompts = await asyncio.wait_for(
            asyncio.gather(
                ask("stats", {"minutes": WINDOW_MINUTES, "tenant_id": ""}),
                ask("prompt_versions", {"since_ns": since_ns, "prompt": ""}),
            ),
            QUERY_TIMEOUT_S,
        )
        return Stats(by_model(models), by_prompt(prompts), known=True)
    except (TimeoutError, GatewayError, KeyError, ValueError, TypeError) as exc:
        log.warning("portal: the catalog's numbers are unknown now: %r", exc)
        return Stats()


class HealthCache:
    """The last ``Stats`` for ``FRESH_S`` seconds (one per app)."""

    def __init__(self, ask: Ask, clock: Callable[[], float] = time.monotonic) -> None:
        self._ask = ask
        self._clock = clock
        self._stats = Stats()
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> Stats:
        if self._clock() - self._at < FRESH_S:
            return self._stats
        async with self._lock:  # page views arriving together ask once
            if self._clock() - self._at >= FRESH_S:
                self._stats = await gather(self._ask, time.time_ns())
                self._at = self._clock()
        return self._stats
