"""Rate limits and budgets without I/O: which counters a request takes from,
the windows they count in, and the lease of units a replica holds.

Every limit is one shared counter (a JetStream counter subject): requests
and tokens per one-minute window, parallel requests in flight, spend per
budget period. A policy replica does not ask the counter for every request:
it takes a block of units (a lease) and admits from it locally, asking for
more when it runs short. Blocks shrink as a counter nears its limit, down to
one unit, so replicas together never admit past the limit, and a replica that
goes idle hands its unused units back; the cost of a shared, exact counter is
then one round trip per block instead of one per request.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from schemas import subjects
from schemas.chat import ChatBody, EmbeddingsBody
from schemas.control import Budget, Limits
from schemas.reservation import HOLD_PARALLEL, HOLD_REQUESTS, HOLD_SPEND, HOLD_TOKENS, Reservation
from schemas.tasks import TaskRequest
from services import pricing, task_usage, tokens, usage

MINUTE_MS = 60_000
DAY_MS = 86_400_000
# A lease asks for at most this share of a limit at a time. Spend leases are
# smaller: units a killed replica held stay counted until the period ends.
RATE_BLOCK_DIVISOR = 10
SPEND_BLOCK_DIVISOR = 50


def minute_window(anchor_ms: int, now_ms: int) -> tuple[int, int]:
    """The current one-minute window counted from ``anchor_ms`` (a record's
    creation), and the ms until it ends. Anchoring per record spreads the
    resets, where UTC minutes would reset every key at once."""
    elapsed = max(0, now_ms - anchor_ms)
    return elapsed // MINUTE_MS, MINUTE_MS - elapsed % MINUTE_MS


def budget_period(budget: Budget, now_ms: int) -> tuple[str, int]:
    """A budget period's label and the ms until it ends (0: never), in UTC."""
    if budget.period == "total":
        return "total", 0
    label, end_ms = _period_of_day(budget.period, now_ms // DAY_MS)
    return label, end_ms - now_ms


@functools.lru_cache(maxsize=8)
def _period_of_day(period: str, day: int) -> tuple[str, int]:
    """The label and end of the period holding UTC day ``day``: dates are
    worked out once a day, not per request."""
    now = dt.datetime.fromtimestamp(day * DAY_MS / 1000, dt.UTC)
    if period == "daily":
        label = now.strftime("d%Y%m%d")
        end = now + dt.timedelta(days=1)
    else:
        label = now.strftime("m%Y%m")
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        end = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    return label, int(end.timestamp() * 1000)


def spend_counter(scope: str, record_id: str, budget: Budget, now_ms: int) -> tuple[str, int]:
    """The counter of a budget's current period, and the ms until it ends (0: never)."""
    label, reset_ms = budget_period(budget, now_ms)
    return f"{subjects.QUOTA}.spend.{scope}.{record_id}.{label}", reset_ms


@dataclass(slots=True)
class Need:
    """``amount`` units of the counter at ``subject``, whose limit is ``limit``."""

    subject: str
    kind: int
    amount: int
    limit: int
    reset_ms: int
    scope: str


def needs(
    scope: str,
    record_id: str,
    limits: Limits,
    budget: Budget | None,
    anchor_ms: int,
    now_ms: int,
    tokens_estimate: int,
    cost_estimate: int,
) -> list[Need]:
    """What one request takes from a key's (or a tenant's) counters."""
    out: list[Need] = []
    base = f"{subjects.QUOTA}.rate.{scope}.{record_id}"
    if limits.rpm is not None or limits.tpm is not None:
        window, reset_ms = minute_window(anchor_ms, now_ms)
        if limits.rpm is not None:
            out.append(Need(f"{base}.rpm.{window}", HOLD_REQUESTS, 1, limits.rpm, reset_ms, scope))
        if limits.tpm is not None:
            out.append(Need(f"{base}.tpm.{window}", HOLD_TOKENS, tokens_estimate, limits.tpm, reset_ms, scope))
    if limits.max_parallel is not None:
        out.append(Need(f"{base}.par", HOLD_PARALLEL, 1, limits.max_parallel, 0, scope))
    if budget is not None:
        subject, reset_ms = spend_counter(scope, record_id, budget, now_ms)
        out.append(Need(subject, HOLD_SPEND, cost_estimate, budget.limit_pico_usd, reset_ms, scope))
    return out


class Lease:
    """Units of one counter that this replica took and has not handed out yet.

    ``total`` is the counter's value as last seen (every increment's answer
    carries it); other replicas move it meanwhile, so it is a floor.
    """

    __slots__ = ("divisor", "limit", "local", "total", "used_ms")

    def __init__(self, limit: int, divisor: int) -> None:
        self.limit = limit
        self.divisor = divisor
        self.local = 0
        self.total = 0
        self.used_ms = 0

    def take(self, n: int, now_ms: int) -> bool:
        self.used_ms = now_ms
        if self.local >= n:
            self.local -= n
            return True
        return False

    def ask_size(self, n: int) -> int:
        """How many units to ask the counter for, to cover ``n`` and what follows."""
        left = self.limit - self.total
        return max(n - self.local, min(self.limit // self.divisor, left // 4))

    def granted(self, asked: int, total: int) -> int:
        """The counter answered ``total`` after adding ``asked``: keep what
        fits under the limit and return the excess, which the caller must
        give back to the counter."""
        before = total - asked
        got = min(asked, max(0, self.limit - before))
        self.local += got
        self.total = before + got
        return asked - got

    def remaining(self) -> int:
        """Units left under the limit as far as this replica knows."""
        return max(0, self.limit - self.total + self.local)


def estimate(
    body: ChatBody | None, embeddings: EmbeddingsBody | None, catalog_model: str | None, default_max_output: int
) -> tuple[int, int]:
    """(prompt tokens counted, the most the answer may use): ``max_tokens`` if
    the caller set one, else ``default_max_output`` capped by the model's own
    output limit."""
    if embeddings is not None:
        return usage.settle_embeddings(None, embeddings, catalog_model).prompt_tokens, 0
    assert body is not None
    name, _ = usage.tokenizer_for(catalog_model)
    prompt = tokens.count_prompt(body.messages, tokens.encoding(name))
    out = body.max_completion_tokens or body.max_tokens
    if not out:
        entry = pricing.load_catalog().get(catalog_model or "")
        cap = entry.max_output_tokens if entry is not None and entry.max_output_tokens else default_max_output
        out = min(default_max_output, cap)
    return prompt, int(out)


def estimate_cost(prompt: int, output: int, catalog_model: str | None) -> int:
    """The most a request may cost: no cache discount assumed."""
    price = pricing.price_for(catalog_model or "")
    if price is None:
        return 0
    return prompt * price.input + output * price.output


def estimate_task(task: TaskRequest, catalog_models: list[str | None]) -> tuple[int, int]:
    """(tokens of its text, the most it may cost) of an image, audio,
    moderation or rerank request that a deployment priced as any of
    ``catalog_models`` may serve: the dearest (``task_usage.worst_case``)."""
    worst = [task_usage.worst_case(task, model) for model in dict.fromkeys(catalog_models or [None])]
    return max(tokens for tokens, _ in worst), max(cost for _, cost in worst)


def reserved_tokens(reservation: Reservation | None) -> int:
    """The tokens admission took for a request (its tokens-per-minute hold):
    what a task that reports none of its own used (its text, counted)."""
    if reservation is None:
        return 0
    return next((h.amount for h in reservation.holds if h.kind == HOLD_TOKENS), 0)
