"""Rendering the ``stats`` query for a terminal."""

from __future__ import annotations

from decimal import Decimal

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
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(HEADERS)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [f"Requests in the last {minutes} minutes, per model", fmt(HEADERS), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    return "\n".join(out)
