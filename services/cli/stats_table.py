"""Rendering the ``stats`` query for a terminal."""

from __future__ import annotations

from decimal import Decimal

from services.cli.text_table import render_table
from services.pricing import pico_to_usd

HEADERS = [
    "model",
    "requests",
    "errors",
    "prompt tok",
    "completion tok",
    "cost USD",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "ttft p50",
    "ttft p95",
    "ttft p99",
]


def _ms(values: list[float | None]) -> list[str]:
    # None: no rows to take a quantile of (e.g. ttft of a model whose requests all failed).
    return [f"{v:.1f}" if v is not None else "-" for v in (values or [None] * 3)]


def rows_as_dicts(columns: list[str], rows: list[list]) -> list[dict]:
    out = []
    for row in rows:
        d = dict(zip(columns, row, strict=True))
        d["cost_usd"] = str(pico_to_usd(int(d.pop("cost_pico_usd"))).normalize())
        out.append(d)
    return out


def _cell(column: str, value: object) -> str:
    if column.endswith("pico_usd") and value not in (None, ""):
        return f"{pico_to_usd(int(str(value))).normalize():f}"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, list):
        return " / ".join(_cell("", v) for v in value)
    return "-" if value is None or value == "" else str(value)


def render_named(columns: list[str], rows: list[list]) -> str:
    """Any named query's answer as a table; money columns in USD."""
    if not rows:
        return "No rows."
    headers = [c.replace("pico_usd", "usd") for c in columns]
    lines = [[_cell(c, v)[:80] for c, v in zip(columns, row, strict=True)] for row in rows]
    return "\n".join(render_table(headers, lines, "l" * len(headers)))


def render(records: list[dict], minutes: int) -> str:
    if not records:
        return f"No requests in the last {minutes} minutes."
    lines = []
    for r in records:
        cost = Decimal(r["cost_usd"]).quantize(Decimal("0.00000001"))
        lines.append(
            [
                r["model"] or "(none)",
                str(r["requests"]),
                str(r["errors"]),
                str(r["prompt_tokens"]),
                str(r["completion_tokens"]),
                f"{cost:.8f}",
                *_ms(r["latency_ms"]),
                *_ms(r["ttft_ms"]),
            ]
        )
    return "\n".join([f"Requests in the last {minutes} minutes, per model", *render_table(HEADERS, lines)])
