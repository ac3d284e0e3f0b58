"""Whether Plotly drew each chart of a page as the page asked, for the
browser tests. A chart's ``data`` is only what the page passed in: Plotly
keeps it even when it draws nothing. The served bundle is plotly.js's basic
one (scatter, bar, pie), and a trace type missing from a bundle is not an
error there, it quietly becomes a scatter; so each trace's type as drawn
(``_fullData``) is compared with the type asked for, and a chart with
numbers must have marks on it."""

from __future__ import annotations

import time

from playwright.sync_api import Page

_CHARTS = """(selector) => [...document.querySelectorAll(selector)].map((gd) => ({
  id: gd.id,
  asked: (gd.data || []).map((t) => t.type || "scatter"),
  drawn: (gd._fullData || []).map((t) => t.type),
  svg: gd.querySelectorAll(".main-svg").length,
  numbers: (gd.data || []).some((t) => [...(t.x || []), ...(t.y || [])].some((v) => Number.isFinite(v))),
  marks: gd.querySelectorAll(".mlayer .point").length,
}))"""


def undrawn(page: Page, selector: str = ".chart", wait_s: float = 10.0) -> list[str]:
    """What is wrong with the charts ``selector`` finds (none found is wrong
    too), once ``wait_s`` has passed without them all drawn; [] as soon as
    they are (Plotly may finish a chart after the call that asked for it)."""
    deadline = time.monotonic() + wait_s
    while True:
        wrong = _wrong(page.evaluate(_CHARTS, selector), selector)
        if not wrong or time.monotonic() > deadline:
            return wrong
        time.sleep(0.2)


def _wrong(charts: list[dict], selector: str) -> list[str]:
    if not charts:
        return [f"no chart matches {selector!r}"]
    wrong = []
    for c in charts:
        if not c["svg"] or not c["asked"]:
            wrong.append(f"{c['id']}: not drawn")
        elif c["drawn"] != c["asked"]:
            wrong.append(f"{c['id']}: traces {c['asked']} drawn as {c['drawn']}")
        elif c["numbers"] and not c["marks"]:
            wrong.append(f"{c['id']}: has numbers but no bar or marker on it")
    return wrong
