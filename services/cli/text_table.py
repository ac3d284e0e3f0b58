"""Plain aligned text tables for the terminal."""

from __future__ import annotations


def render_table(headers: list[str], lines: list[list[str]], align: str = "") -> list[str]:
    """``align``: one letter per column, "l" or "r"; by default the first
    column is left-aligned and the rest right-aligned (numbers)."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        padded = (c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align, strict=True))
        return "  ".join(padded).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines)]
