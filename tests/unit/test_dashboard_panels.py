"""The dashboard's panels as ``gather`` assembles them: each from its named
query with the window it takes, narrowed to a tenant admin's tenant on the
server whatever the page asks. The REST panel is ``rest_calls``."""

from __future__ import annotations

from typing import Any

import msgspec

from analytics.queries import NAMED
from ingress.dashboard import panels
from services.control import Actor


class _Result(msgspec.Struct):
    columns: list[str]
    rows: list[list[Any]]


class _Records:
    def all(self) -> list:
        return []


class _Store:
    """The named queries the dashboard asks, answered with one REST row."""

    def __init__(self) -> None:
        self.asked: dict[str, dict[str, Any]] = {}
        self.tenants = self.keys = _Records()

    async def named_query(self, name: str, params: dict[str, Any]) -> _Result:
        self.asked[name] = params
        if name == "rest_calls":
            columns = ["service", "version", "route", "method", "calls", "errors", "latency_ms", "cost_pico_usd"]
            return _Result(columns, [["billing", 2, "/invoices/{id}", "GET", 7, 1, [12.5, 80.0], "0"]])
        return _Result([], [])


async def test_the_rest_panel_is_rest_calls_over_the_hours_window() -> None:
    store = _Store()
    got = await panels.gather(store, Actor(key_id="a", role="gateway_admin", tenant_id=""), 60, 24)  # type: ignore[arg-type]
    assert store.asked["rest_calls"] == {"hours": 24, "tenant_id": ""}
    assert got["rest"] == [
        {
            "service": "billing",
            "version": 2,
            "route": "/invoices/{id}",
            "method": "GET",
            "calls": 7,
            "errors": 1,
            "latency_ms": [12.5, 80.0],
            "cost_pico_usd": "0",
        }
    ]


async def test_a_tenant_admin_s_rest_panel_is_its_tenant_s_calls_only() -> None:
    store = _Store()
    await panels.gather(store, Actor(key_id="t", role="tenant_admin", tenant_id="demo"), 15, 1)  # type: ignore[arg-type]
    assert store.asked["rest_calls"] == {"hours": 1, "tenant_id": "demo"}
    # Every panel's query takes the tenant, so none can show another tenant's numbers.
    assert all(params["tenant_id"] == "demo" for params in store.asked.values())


def test_every_panel_names_a_query_that_takes_its_window_and_a_tenant() -> None:
    for query, window in panels.PANELS.values():
        assert {window, "tenant_id"} <= set(NAMED[query].params), query
